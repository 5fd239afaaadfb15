//! `rock -d` to a host behind a bastion, through `ProxyJump` and
//! `ProxyCommand`: a laptop, a router and a server in network namespaces
//! (`tests/common/netns.rs`), the fixture's sshd on the server, a second
//! fixture sshd on the router as the jump host, and the router told not to
//! forward from the laptop to the server (iptables FORWARD DROP inside the
//! router namespace). The laptop reaches the server only through the jump
//! host's `ssh -W`; [`a_direct_connection_to_the_server_fails`] proves it.
//!
//! Links are reset with `ss -K` on the laptop side of the jump ssh's TCP
//! connection (the only TCP connection the laptop has), and blackholed with
//! an iptables DROP inside the laptop namespace. Streams check that every
//! numbered line arrives exactly once, in order, and the command's exit
//! status; transfers compare sha256 of a 64 MiB random file.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use common::live::{stderr_text, stdout_lines};
use common::netns::{Net, in_netns};
use common::transfer::{LinkFaults, file_len, transfer_under_faults};
use common::{
    ROCKD, Sshd, assert_exit, random_file, require_root, rock_base, run_with_timeout, sha256_file,
    temp_dir,
};

/// Safety limit for anything that should take seconds; generous, because
/// the machine is shared.
const LIMIT: Duration = Duration::from_secs(180);
/// The transfers' size.
const BIG: u64 = 64 << 20;
/// Link resets in the stream tests.
const RESETS: usize = 4;

/// The network, the server, the jump host, and a client config that names
/// both (`Host rocktest`, `Host jump`).
struct Bastion {
    net: Net,
    server: Sshd,
    jump: Sshd,
    config: PathBuf,
}

impl Bastion {
    /// `rocktest` reaches the server with `route` as its last config line
    /// (`ProxyJump jump`, a `ProxyCommand`, or nothing).
    fn new(route: &str) -> Bastion {
        require_root("network namespaces");
        let net = Net::new();
        net.block_laptop_to_server();
        let server = net.start_sshd(Sshd::builder());
        let jump = net.start_jump_sshd(Sshd::builder());
        let config = server.dir().join("ssh_config.bastion");
        let mut b = Bastion {
            net,
            server,
            jump,
            config,
        };
        b.write_config(route);
        b
    }

    /// Writes the config: the server by address (the jump host resolves
    /// `-W`'s host, and the router has no name for it) with its host key
    /// under `HostKeyAlias rock-server`, as the fixture recorded it.
    fn write_config(&mut self, route: &str) {
        let server = std::fs::read_to_string(self.server.ssh_config()).expect("server config");
        let server = server.replace(
            &format!("HostName {}", self.server.client_host()),
            &format!(
                "HostName {}\n    HostKeyAlias {}",
                self.net.server_addr(),
                self.server.client_host()
            ),
        );
        let jump = std::fs::read_to_string(self.jump.ssh_config()).expect("jump config");
        let jump = jump.replace("Host rocktest", "Host jump");
        let text = format!("{server}    {route}\n{jump}");
        assert!(text.contains("Host jump") && text.contains("HostKeyAlias"));
        std::fs::write(&self.config, text).expect("write the bastion config");
    }

    /// `rock --rockd ROCKD -v -d PROGRAM -F CONFIG`, run on the laptop.
    fn rock(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = rock_base(ROCKD);
        cmd.arg("-v")
            .arg("-d")
            .arg(program)
            .arg("-F")
            .arg(&self.config)
            .args(args);
        self.net.on_laptop(&cmd)
    }

    /// `rock --rockd ROCKD -d ARGS…` on the laptop, without a `-F`: for
    /// rsync and git, whose ssh command names the config itself.
    fn rock_bare(&self, args: &[&str]) -> Command {
        let mut cmd = rock_base(ROCKD);
        cmd.arg("-d").args(args);
        self.net.on_laptop(&cmd)
    }

    /// Plain `ssh -F CONFIG ARGS…` on the laptop.
    fn ssh(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.arg("-F").arg(&self.config).args(args);
        self.net.on_laptop(&cmd)
    }

    /// The laptop's established TCP connections to the jump host's sshd.
    fn jump_connections(&self) -> usize {
        let out = in_netns(
            &self.net.laptop,
            Command::new("ss").args(["-H", "-tn", "state", "established", "( dport = :22 )"]),
        )
        .output()
        .expect("run ss");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count()
    }

    /// Resets every laptop connection to an sshd (`ss -K`); returns how
    /// many were killed.
    fn reset_links(&self) -> usize {
        let out = in_netns(
            &self.net.laptop,
            Command::new("ss").args(["-H", "-K", "-tn", "state", "established", "( dport = :22 )"]),
        )
        .output()
        .expect("run ss -K");
        assert!(out.status.success(), "ss -K failed: {out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count()
    }

    /// Logins the jump host's sshd accepted so far.
    fn jump_logins(&self) -> usize {
        self.jump.log().matches("Accepted publickey").count()
    }

    /// Waits until no process is left in the laptop namespace.
    fn assert_laptop_empty(&self) {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let left = self.net.laptop_pids();
            if left.is_empty() {
                return;
            }
            let cmdlines: Vec<String> = left
                .iter()
                .map(|p| {
                    std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                        .unwrap_or_default()
                        .replace('\0', " ")
                })
                .collect();
            assert!(
                Instant::now() < end,
                "processes left on the laptop after rock exited: {cmdlines:?}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The remote command: `line N` every 100 ms until the stop file exists,
/// then `end N`, exit 7.
fn script(stop: &Path) -> String {
    format!(
        "i=0; while [ ! -e {stop} ]; do i=$((i+1)); echo line $i; sleep 0.1; done; \
         echo end $i; exit 7",
        stop = stop.display()
    )
}

/// A running `rock -d ssh`, its lines as they come and its stderr.
struct Stream {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    got: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Stream {
    fn start(mut cmd: Command) -> Stream {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rock on the laptop");
        let lines = stdout_lines(&mut child);
        let stderr = stderr_text(&mut child);
        Stream {
            child,
            lines,
            got: Vec::new(),
            stderr,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr").clone()
    }

    /// Waits for `n` more lines.
    fn wait_lines(&mut self, n: usize) {
        let want = self.got.len() + n;
        while self.got.len() < want {
            match self.lines.recv_timeout(LIMIT) {
                Ok(line) => self.got.push(line),
                Err(e) => panic!(
                    "waiting for line {want}: {e:?}; got {:?}\n--- rock's stderr ---\n{}",
                    self.got.last(),
                    self.stderr()
                ),
            }
        }
    }

    /// The rest of the output, then the exit code.
    fn finish(mut self) -> (Vec<String>, Option<i32>, String) {
        loop {
            match self.lines.recv_timeout(LIMIT) {
                Ok(line) => self.got.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(e) => panic!("rock's output did not end: {e:?}\n{}", self.stderr()),
            }
        }
        let end = Instant::now() + LIMIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for rock") {
                break status;
            }
            assert!(Instant::now() < end, "rock did not exit\n{}", self.stderr());
            thread::sleep(Duration::from_millis(20));
        };
        thread::sleep(Duration::from_millis(200));
        let stderr = self.stderr();
        (self.got, status.code(), stderr)
    }
}

/// Every `line N` once and in order, then `end N`, and exit status 7.
fn check_stream(lines: &[String], code: Option<i32>, stderr: &str) {
    let (last, numbered) = lines.split_last().expect("some output");
    for (i, line) in numbered.iter().enumerate() {
        assert_eq!(
            line,
            &format!("line {}", i + 1),
            "lost, duplicated or reordered around line {}\n--- rock's stderr ---\n{stderr}",
            i + 1
        );
    }
    assert_eq!(last, &format!("end {}", numbered.len()), "{stderr}");
    assert_eq!(code, Some(7), "the command's exit status\n{stderr}");
}

/// A session through `route` survives [`RESETS`] resets of the jump ssh's
/// connection, each link a fresh jump.
fn stream_survives_resets(route: impl Fn(&Bastion) -> String) {
    let mut b = Bastion::new("");
    let route = route(&b);
    b.write_config(&route);
    let dir = temp_dir();
    let stop = dir.path().join("stop");
    let mut stream = Stream::start(b.rock("ssh", &["rocktest", &script(&stop)]));
    stream.wait_lines(10);
    for _ in 0..RESETS {
        let killed = b.reset_links();
        assert!(
            killed >= 1,
            "no laptop connection to the jump host to reset\n{}",
            stream.stderr()
        );
        stream.wait_lines(10);
    }
    std::fs::write(&stop, "").expect("create the stop file");
    let logins = b.jump_logins();
    let (lines, code, stderr) = stream.finish();
    check_stream(&lines, code, &stderr);
    eprintln!(
        "proxy figures: {route}: {} lines, {} links up, {logins} logins on the jump host",
        lines.len(),
        stderr.matches("link up").count()
    );
    // The bootstrap, the first link and one per reset went through the jump.
    assert!(
        logins >= RESETS + 2,
        "only {logins} logins on the jump host\n{stderr}"
    );
    b.assert_laptop_empty();
}

#[test]
fn an_ssh_session_through_proxyjump_survives_link_resets_exactly_once() {
    stream_survives_resets(|_| "ProxyJump jump".into());
}

#[test]
fn an_ssh_session_through_a_proxycommand_survives_link_resets_exactly_once() {
    stream_survives_resets(|b| format!("ProxyCommand ssh -F {} -W %h:%p jump", b.config.display()));
}

/// The link faults of a transfer: the laptop's connection to the jump
/// host, reset with `ss -K` and blackholed with a DROP in the laptop
/// namespace.
struct JumpLink<'a>(&'a Bastion);

/// Removes the laptop's DROP rule when dropped (the namespace is the
/// test's own, and goes with the test anyway).
struct Hole<'a>(&'a Bastion, Vec<String>);

impl Drop for Hole<'_> {
    fn drop(&mut self) {
        let _ = in_netns(
            &self.0.net.laptop,
            Command::new("iptables").arg("-D").args(&self.1),
        )
        .status();
    }
}

impl<'a> LinkFaults for JumpLink<'a> {
    type Link = ();
    type Hole = Hole<'a>;

    fn find(&mut self, _rock_pid: u32) -> Option<()> {
        (self.0.jump_connections() > 0).then_some(())
    }

    fn reset(&self, _: &()) {
        self.0.reset_links();
    }

    fn blackhole(&self, _: &()) -> Hole<'a> {
        let rule: Vec<String> = [
            "OUTPUT",
            "-p",
            "tcp",
            "-d",
            &self.0.net.router_laptop_addr().to_string(),
            "--dport",
            "22",
            "-j",
            "DROP",
        ]
        .map(String::from)
        .to_vec();
        let ok = in_netns(
            &self.0.net.laptop,
            Command::new("iptables").arg("-I").args(&rule),
        )
        .status()
        .expect("run iptables in the laptop namespace");
        assert!(ok.success(), "iptables -I {rule:?} in the laptop failed");
        Hole(self.0, rule)
    }
}

#[test]
fn scp_with_dash_j_copies_up_and_down_through_resets_and_a_blackhole() {
    // No ProxyJump in the config: `scp -J jump` asks for it.
    let b = Bastion::new("");
    let dir = temp_dir();
    let local = dir.path().join("up.bin");
    let remote = dir.path().join("remote.bin");
    let back = dir.path().join("down.bin");
    random_file(&local, BIG);
    let want = sha256_file(&local);

    let remote_arg = format!("rocktest:{}", remote.display());
    let mut up = b.rock(
        "scp",
        &["-J", "jump", local.to_str().expect("path"), &remote_arg],
    );
    let out = transfer_under_faults(&mut up, BIG, || file_len(&remote), LIMIT * 3, JumpLink(&b));
    assert_exit(&out, 0, "rock -d scp -J up");
    assert_eq!(sha256_file(&remote), want, "the upload's sha256");

    let mut down = b.rock(
        "scp",
        &["-J", "jump", &remote_arg, back.to_str().expect("path")],
    );
    let out = transfer_under_faults(&mut down, BIG, || file_len(&back), LIMIT * 3, JumpLink(&b));
    assert_exit(&out, 0, "rock -d scp -J down");
    assert_eq!(sha256_file(&back), want, "the download's sha256");
    eprintln!(
        "proxy figures: scp -J: {} logins on the jump host for two 64 MiB copies",
        b.jump_logins()
    );
    b.assert_laptop_empty();
}

#[test]
fn an_unreachable_jump_host_exits_255_clearly_and_leaves_nothing() {
    let b = Bastion::new("ProxyJump jump");
    // Nothing listens on port 2222 of the router: refused at once. The
    // command line's ProxyJump beats the config's.
    let bad = format!("root@{}:2222", b.net.router_laptop_addr());
    let out = run_with_timeout(
        &mut b.rock(
            "ssh",
            &["-o", &format!("ProxyJump={bad}"), "rocktest", "true"],
        ),
        LIMIT,
    );
    assert_exit(&out, 255, "rock -d ssh through an unreachable jump host");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("through its ProxyJump root@[")
            && stderr.contains("exited with status 255")
            && stderr.contains("Connection refused"),
        "the message should name the jump, its exit and ssh's own reason:\n{stderr}"
    );
    b.assert_laptop_empty();
    assert!(
        b.server.descendants().is_empty(),
        "the server started something: {:?}",
        b.server.descendants()
    );
}

#[test]
fn a_jump_host_that_refuses_the_login_exits_255_clearly() {
    let b = Bastion::new("ProxyJump jump");
    // The jump host's block with a key it does not know (BatchMode yes:
    // no prompt, the jump ssh gives up).
    let text = std::fs::read_to_string(&b.config).expect("config");
    let (server, jump) = text.split_once("Host jump").expect("jump block");
    let jump = jump.replace(
        &b.jump.client_key().display().to_string(),
        &b.jump.unauthorized_client_key().display().to_string(),
    );
    std::fs::write(&b.config, format!("{server}Host jump{jump}")).expect("write config");
    let out = run_with_timeout(&mut b.rock("ssh", &["rocktest", "true"]), LIMIT);
    assert_exit(&out, 255, "rock -d ssh through a jump host that refuses");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("through its ProxyJump jump")
            && stderr.contains("exited with status 255")
            && stderr.contains("Permission denied"),
        "the message should name the jump, its exit and ssh's own reason:\n{stderr}"
    );
    b.assert_laptop_empty();
}

#[test]
fn rsync_and_git_with_dash_j_in_their_ssh_command_go_through_the_jump() {
    // No ProxyJump in the config: only the ssh commands' -J reach the server.
    let b = Bastion::new("");
    let ssh = format!("ssh -F '{}' -J jump", b.config.display());
    let dir = temp_dir();
    let (local, remote, back) = (
        dir.path().join("local.bin"),
        dir.path().join("remote.bin"),
        dir.path().join("back.bin"),
    );
    random_file(&local, 4 << 20);
    let want = sha256_file(&local);
    let remote_arg = format!("rocktest:{}", remote.display());
    let up = run_with_timeout(
        &mut b.rock_bare(&["rsync", "-e", &ssh, path(&local), &remote_arg]),
        LIMIT,
    );
    assert_exit(&up, 0, "rock -d rsync -e 'ssh -J jump' up");
    assert_eq!(sha256_file(&remote), want, "the upload's sha256");
    let mut down = b.rock_bare(&["rsync", &remote_arg, path(&back)]);
    down.env("RSYNC_RSH", &ssh);
    let out = run_with_timeout(&mut down, LIMIT);
    assert_exit(&out, 0, "rock -d rsync with RSYNC_RSH='ssh -J jump' down");
    assert_eq!(sha256_file(&back), want, "the download's sha256");

    let repo = dir.path().join("repo.git");
    let init = Command::new("git")
        .args(["init", "-q", "--bare"])
        .arg(&repo)
        .output()
        .expect("run git init");
    assert!(init.status.success(), "{init:?}");
    let mut ls = b.rock_bare(&["git", "ls-remote", &format!("rocktest:{}", repo.display())]);
    ls.env("GIT_SSH_COMMAND", &ssh)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null");
    let out = run_with_timeout(&mut ls, LIMIT);
    assert_exit(
        &out,
        0,
        "rock -d git ls-remote with GIT_SSH_COMMAND='ssh -J jump'",
    );
    // The bootstrap and the first link of each of the three went through
    // the jump.
    let logins = b.jump_logins();
    assert!(logins >= 6, "only {logins} logins on the jump host");
    b.assert_laptop_empty();
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

#[test]
fn the_users_dash_v_reaches_the_jump_hosts_ssh_as_ssh_passes_it() {
    let b = Bastion::new("ProxyJump jump");
    let out = run_with_timeout(&mut b.rock("ssh", &["-v", "rocktest", "true"]), LIMIT);
    assert_exit(&out, 0, "rock -d ssh -v through a jump host");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Each ssh says whom it logged in to: the jump's ssh the jump host,
    // the user's own ssh the server.
    let jump = format!("Authenticated to {} ", b.net.router_laptop_addr());
    let jump_logins = stderr.lines().filter(|l| l.contains(&jump)).count();
    // The bootstrap's jump and the first link's.
    assert!(
        jump_logins >= 2,
        "{jump_logins} debug logins of the jump's ssh:\n{stderr}"
    );
    let server = format!("Authenticated to {} ", b.net.server_addr());
    assert!(stderr.contains(&server), "{stderr}");
    b.assert_laptop_empty();
}

#[test]
fn a_direct_connection_to_the_server_fails() {
    let b = Bastion::new("ProxyJump jump");
    let out = run_with_timeout(
        &mut b.ssh(&[
            "-o",
            "ProxyJump=none",
            "-o",
            "ConnectTimeout=3",
            "rocktest",
            "true",
        ]),
        LIMIT,
    );
    assert_exit(&out, 255, "plain ssh straight to the server");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("timed out"), "{stderr}");
    // Through the jump, plain ssh gets there: the setup is sound.
    let out = run_with_timeout(&mut b.ssh(&["rocktest", "echo", "through"]), LIMIT);
    assert_exit(&out, 0, "plain ssh through the jump host");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "through");
}
