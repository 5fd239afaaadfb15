//! Reconnecting through ssh (`rock --reconnect ssh|auto`) end to end: the
//! real rock and rockd, a real sshd, the real OpenSSH clients, and a real
//! firewall.
//!
//! Each firewalled test gives its sshd a loopback address of its own
//! (127.1xx.x.x, from the test's pid and a counter) and REJECTs or DROPs
//! every TCP SYN to that address except to sshd's port, so rockd's own port
//! is out of reach from rock exactly as behind a firewall that lets only
//! ssh through. rockd bridges to sshd at that (allowed) address, and in ssh
//! mode listens on 127.0.0.1, which sshd's direct-tcpip channel reaches.
//! Rules match only the test's own address (and ports), and are removed
//! when their guard drops, also when the test panics. Tests run in
//! parallel, so no test may firewall an address another one uses.

mod common;
use common::text;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use common::live::{stderr_text, timed_stdout_lines};
use common::pty::PtyChild;
use common::transfer::{self, LinkFaults, file_len};
use common::{ROCK, ROCKD, Sshd, assert_exit, require_root, rock_command, run_with_timeout};

// ---- addresses, connections and faults --------------------------------

/// A loopback address that no other test uses: 127.(100 + n).(pid >> 8).(pid),
/// the last two octets being the low 16 bits of the pid.
fn own_address() -> Ipv4Addr {
    static NEXT: AtomicU8 = AtomicU8::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    assert!(n < 100, "too many firewalled sshds in one test process");
    let pid = std::process::id();
    Ipv4Addr::new(127, 100 + n, (pid >> 8) as u8, pid as u8)
}

/// iptables rules in INPUT on loopback, deleted when dropped.
struct Rules(Vec<Vec<String>>);

impl Rules {
    fn insert(rules: Vec<Vec<String>>) -> Rules {
        let mut inserted = Rules(Vec::new());
        for rule in rules {
            let out = Command::new("iptables")
                .args(["-I", "INPUT"])
                .args(&rule)
                .output()
                .expect("run iptables");
            assert!(
                out.status.success(),
                "iptables -I INPUT {rule:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            // Pushed only once in: Drop deletes exactly what was added.
            inserted.0.push(rule);
        }
        inserted
    }
}

impl Drop for Rules {
    fn drop(&mut self) {
        for rule in &self.0 {
            let _ = Command::new("iptables")
                .args(["-D", "INPUT"])
                .args(rule)
                .status();
        }
    }
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

/// How the firewall turns a connection away.
#[derive(Debug, Clone, Copy)]
enum Block {
    /// Answer the SYN with a reset: "connection refused" at once.
    Reject,
    /// Drop the SYN: the connect times out.
    Drop,
}

/// Turns away every new TCP connection to sshd's address except to its
/// port, as a firewall that lets only ssh through.
fn only_ssh_open(sshd: &Sshd, block: Block) -> Rules {
    let target = match block {
        Block::Reject => "REJECT --reject-with tcp-reset",
        Block::Drop => "DROP",
    };
    Rules::insert(vec![words(&format!(
        "-i lo -p tcp --syn -d {} ! --dport {} -j {target}",
        sshd.ip(),
        sshd.port()
    ))])
}

/// Drops every packet to and from sshd's port except those of rockd's
/// own connection to sshd (local port `bridge`): rock's SSH link and every
/// new one it tries are blackholed, the ssh session behind rockd is not.
fn blackhole_links(sshd: &Sshd, bridge: u16) -> Rules {
    let (ip, port) = (sshd.ip(), sshd.port());
    Rules::insert(vec![
        words(&format!(
            "-i lo -p tcp -d {ip} --dport {port} ! --sport {bridge} -j DROP"
        )),
        words(&format!(
            "-i lo -p tcp -s {ip} --sport {port} ! --dport {bridge} -j DROP"
        )),
    ])
}

/// An established TCP connection, as `ss -tnp` shows it.
#[derive(Debug)]
struct Conn {
    local: SocketAddr,
    peer: SocketAddr,
    users: String,
}

fn connections() -> Vec<Conn> {
    let out = Command::new("ss")
        .args(["-H", "-tnp", "state", "established"])
        .output()
        .expect("run ss");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            // Recv-Q Send-Q Local:Port Peer:Port Process
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(Conn {
                local: f.get(2)?.parse().ok()?,
                peer: f.get(3)?.parse().ok()?,
                users: f.get(4..)?.join(" "),
            })
        })
        .collect()
}

fn of_pid(c: &Conn, pid: u32) -> bool {
    c.users.contains(&format!("pid={pid},"))
}

/// The local port of rock's SSH link to sshd, if it has one now.
fn ssh_link(rock: u32, sshd: &Sshd) -> Option<u16> {
    let rock = common::rock_worker(rock);
    connections()
        .into_iter()
        .find(|c| of_pid(c, rock) && c.peer == sshd.addr())
        .map(|c| c.local.port())
}

/// Waits for rock's SSH link to sshd; returns its local port.
fn wait_ssh_link(rock: u32, sshd: &Sshd) -> u16 {
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(port) = ssh_link(rock, sshd) {
            return port;
        }
        let worker = common::rock_worker(rock);
        assert!(
            Instant::now() < end,
            "rock (pid {worker}) has no SSH link to {}: {:#?}",
            sshd.addr(),
            connections()
                .into_iter()
                .filter(|c| of_pid(c, worker))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The pid of the rockd this sshd started.
fn rockd_pid(sshd: &Sshd) -> u32 {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        // The detached rockd; its launch shell (`sh -c ... rockd`) is gone.
        if let Some(p) = sshd
            .descendants()
            .into_iter()
            .find(|p| p.cmdline.starts_with(ROCKD))
        {
            return p.pid;
        }
        assert!(
            Instant::now() < end,
            "no rockd under sshd: {:#?}",
            sshd.descendants()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Where rockd `pid` listens, once it does (rockd is found as soon as it
/// runs, which on a loaded machine can be well before it listens).
fn listen_addr(pid: u32) -> SocketAddr {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new("ss")
            .args(["-H", "-tlnp"])
            .output()
            .expect("run ss");
        let found = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&format!("pid={pid},")))
            .find_map(|l| {
                // ss writes a dual-stack wildcard as `*`.
                let local = l.split_whitespace().nth(3)?;
                match local.strip_prefix("*:") {
                    Some(port) => format!("[::]:{port}").parse().ok(),
                    None => local.parse().ok(),
                }
            });
        if let Some(addr) = found {
            return addr;
        }
        assert!(
            Instant::now() < end,
            "rockd {pid} listens nowhere after 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The local port of rockd's connection to sshd (the bridge).
fn bridge_port(sshd: &Sshd, rockd: u32) -> u16 {
    connections()
        .into_iter()
        .find(|c| of_pid(c, rockd) && c.peer == sshd.addr())
        .map(|c| c.local.port())
        .unwrap_or_else(|| panic!("rockd {rockd} has no connection to sshd"))
}

/// Resets (both ends of) the connection between local port `port` and
/// sshd: rock's SSH link, and nothing else.
fn reset_ssh_link(sshd: &Sshd, port: u16) {
    let addr = sshd.addr();
    let filter =
        format!("( dst {addr} and sport = :{port} ) or ( src {addr} and dport = :{port} )");
    let out = Command::new("ss")
        .args(["-K", "state", "established", &filter])
        .output()
        .expect("run ss");
    assert!(out.status.success(), "ss -K failed: {out:?}");
}

// ---- running rock ------------------------------------------------------

/// `rock --rockd <ours> --reconnect <mode> -d <program> -F <config>`.
fn rock(sshd: &Sshd, mode: &str, program: &str) -> Command {
    rock_command(sshd, ROCKD, &["--reconnect", mode], program)
}

/// A remote script run through rock: its stdout lines as they arrive,
/// and rock's stderr, kept for messages.
struct Stream {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
    stderr: Arc<Mutex<String>>,
    got: Vec<String>,
}

impl Stream {
    /// Starts `cmd` on `rocktest` running `script`; waits for its first
    /// line.
    fn start(cmd: &mut Command, script: &str) -> Stream {
        let mut child = cmd
            .args(["rocktest", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rock");
        let lines = timed_stdout_lines(&mut child);
        let stderr = stderr_text(&mut child);
        let mut stream = Stream {
            child,
            lines,
            stderr,
            got: Vec::new(),
        };
        match stream.lines.recv_timeout(Duration::from_secs(60)) {
            Ok((_, line)) => stream.got.push(line),
            Err(e) => panic!("the session did not start ({e}):\n{}", stream.log()),
        }
        stream
    }

    /// The rock process that carries the session (its worker).
    fn pid(&self) -> u32 {
        common::rock_worker(self.child.id())
    }

    /// rock's stderr so far.
    fn log(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Receives lines until one arrives after `cut`; returns how long
    /// after `cut` that was.
    fn first_after(&mut self, cut: Instant) -> Duration {
        loop {
            let (at, line) = match self.lines.recv_timeout(Duration::from_secs(90)) {
                Ok(got) => got,
                Err(e) => panic!("the session stalled for 90 s ({e}):\n{}", self.log()),
            };
            self.got.push(line);
            if at > cut {
                return at.duration_since(cut);
            }
        }
    }

    /// Takes the rest of the lines and waits for rock: every line, the
    /// exit code, and rock's stderr.
    fn finish(mut self) -> (Vec<String>, Option<i32>, String) {
        while let Ok((_, line)) = self.lines.recv_timeout(Duration::from_secs(60)) {
            self.got.push(line);
        }
        let status = self.child.wait().expect("wait for rock");
        let log = self.log();
        (self.got, status.code(), log)
    }
}

/// The lines of a numbered stream as the remote script prints them.
fn numbered(lines: u32) -> Vec<String> {
    (1..=lines).map(|i| format!("line {i}")).collect()
}

/// Counts sshd's "Accepted" log lines for `user`: one per login.
fn logins(sshd: &Sshd, user: &str) -> usize {
    sshd.log()
        .lines()
        .filter(|l| l.contains("Accepted ") && l.contains(&format!(" for {user} ")))
        .count()
}

/// Waits until sshd has logged at least `n` logins of `user`. A link whose
/// TCP connection is up may still be in its key exchange, and a fault that
/// hits it there costs the login the test counts on.
fn wait_logins(sshd: &Sshd, user: &str, n: usize) {
    let end = Instant::now() + Duration::from_secs(60);
    while logins(sshd, user) < n {
        assert!(
            Instant::now() < end,
            "sshd never logged {n} logins of {user}:\n{}",
            sshd.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- ssh mode ------------------------------------------------------------

#[test]
fn an_ssh_session_survives_resets_and_a_blackhole_of_its_ssh_link_exactly_once() {
    require_root("iptables and ss -K");
    let sshd = Sshd::builder().listen_address(own_address()).start();
    let _firewall = only_ssh_open(&sshd, Block::Reject);
    const LINES: u32 = 400;
    let script = format!("for i in $(seq 1 {LINES}); do echo line $i; sleep 0.1; done; exit 7");
    let mut stream = Stream::start(&mut rock(&sshd, "ssh", "ssh"), &script);
    let rock_pid = stream.pid();
    let rockd = rockd_pid(&sshd);
    let listening = listen_addr(rockd);
    assert_eq!(
        listening.ip(),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        "in ssh mode rockd listens on loopback only"
    );
    assert!(
        !connections()
            .iter()
            .any(|c| of_pid(c, rock_pid) && c.peer.port() == listening.port()),
        "rock dialled rockd's port directly"
    );

    // The bootstrap, the inner ssh and the first link.
    wait_logins(&sshd, sshd.user(), 3);
    let mut link = wait_ssh_link(rock_pid, &sshd);
    for reset in 1..=5 {
        std::thread::sleep(Duration::from_millis(700));
        let cut = Instant::now();
        reset_ssh_link(&sshd, link);
        let waited = stream.first_after(cut);
        eprintln!("ssh mode: after a reset, next line in {waited:?}");
        wait_logins(&sshd, sshd.user(), 3 + reset);
        let new = wait_ssh_link(rock_pid, &sshd);
        assert_ne!(new, link, "the link after a reset is a new SSH connection");
        link = new;
    }
    let hole = blackhole_links(&sshd, bridge_port(&sshd, rockd));
    std::thread::sleep(Duration::from_secs(20));
    drop(hole);
    let lifted = Instant::now();
    eprintln!(
        "ssh mode: after a 20 s blackhole, next line in {:?}",
        stream.first_after(lifted)
    );
    let (got, code, log) = stream.finish();
    assert_eq!(got, numbered(LINES), "lines lost, duplicated or reordered");
    assert_eq!(code, Some(7), "the remote command's exit status\n{log}");
    // The bootstrap, the inner ssh, the first link, one per reset, and at
    // least one after the blackhole: each link logged in anew.
    let n = logins(&sshd, sshd.user());
    assert!(n >= 9, "only {n} logins:\n{}", sshd.log());
}

/// Faults on rock's link in ssh mode: its own SSH connection to sshd
/// (named by its local port, new after each reset). The blackhole spares
/// rockd's bridge to the same sshd.
struct SshModeLink<'a> {
    sshd: &'a Sshd,
}

impl LinkFaults for SshModeLink<'_> {
    type Link = u16;
    type Hole = Rules;

    fn find(&mut self, rock_pid: u32) -> Option<u16> {
        ssh_link(rock_pid, self.sshd)
    }

    fn reset(&self, port: &u16) {
        reset_ssh_link(self.sshd, *port);
    }

    fn blackhole(&self, _: &u16) -> Rules {
        blackhole_links(self.sshd, bridge_port(self.sshd, rockd_pid(self.sshd)))
    }
}

/// Runs `cmd` (an scp through rock in ssh mode) with its SSH link reset ten
/// times and blackholed once ([`transfer::transfer_under_faults`]).
fn transfer_under_faults(
    sshd: &Sshd,
    cmd: &mut Command,
    total: u64,
    progress: impl Fn() -> u64,
) -> Output {
    let faults = SshModeLink { sshd };
    transfer::transfer_under_faults(cmd, total, progress, Duration::from_secs(600), faults)
}

#[test]
fn scp_up_and_down_through_ssh_links_survives_resets_and_a_blackhole() {
    require_root("iptables and ss -K");
    const SIZE: u64 = 64 << 20;
    let sshd = Sshd::builder().listen_address(own_address()).start();
    let _firewall = only_ssh_open(&sshd, Block::Reject);
    let dir = common::temp_dir();
    let original = dir.path().join("original");
    common::random_file(&original, SIZE);
    let sum = common::sha256_file(&original);

    let uploaded = dir.path().join("uploaded");
    let started = Instant::now();
    let out = transfer_under_faults(
        &sshd,
        rock(&sshd, "ssh", "scp")
            .arg(&original)
            .arg(format!("rocktest:{}", uploaded.display())),
        SIZE,
        || file_len(&uploaded),
    );
    assert_exit(&out, 0, &text(&out));
    eprintln!(
        "ssh mode: 64 MiB up with 10 resets and an 8 s blackhole in {:?}",
        started.elapsed()
    );
    assert_eq!(common::sha256_file(&uploaded), sum, "upload corrupted");

    let downloaded = dir.path().join("downloaded");
    let started = Instant::now();
    let out = transfer_under_faults(
        &sshd,
        rock(&sshd, "ssh", "scp")
            .arg(format!("rocktest:{}", original.display()))
            .arg(&downloaded),
        SIZE,
        || file_len(&downloaded),
    );
    assert_exit(&out, 0, &text(&out));
    eprintln!(
        "ssh mode: 64 MiB down with 10 resets and an 8 s blackhole in {:?}",
        started.elapsed()
    );
    assert_eq!(common::sha256_file(&downloaded), sum, "download corrupted");
}

/// Runs `rock --reconnect ssh -d ssh -F <config> -o BatchMode=no
/// [options] rocktest <numbered lines>` on a pty, answers the one prompt
/// containing `prompt` with `answer`, resets the SSH link three times, and
/// checks that every line came once, in order, with no second prompt, and
/// that `user` logged in at least six times (bootstrap, inner ssh, first
/// link, three reconnections).
fn reconnects_without_asking_again(
    sshd: &Sshd,
    config: &Path,
    options: &[&str],
    prompt: &str,
    answer: &str,
    user: &str,
) {
    const LINES: u32 = 120;
    let mut cmd = Command::new(ROCK);
    cmd.args(["--rockd", ROCKD, "--reconnect", "ssh", "-d", "ssh", "-F"])
        .arg(config)
        .args(["-o", "BatchMode=no"])
        .args(options)
        .arg("rocktest")
        .arg(format!(
            "for i in $(seq 1 {LINES}); do echo line $i; sleep 0.1; done"
        ))
        .env_remove("SSH_AUTH_SOCK");
    let mut pty = PtyChild::spawn(&mut cmd);
    pty.expect(prompt, Duration::from_secs(30));
    pty.send(&format!("{answer}\n"));
    let rock_pid = common::rock_worker(pty.child.id());
    let mut link = None;
    for (i, seen) in ["line 5\r", "line 30\r", "line 60\r"]
        .into_iter()
        .enumerate()
    {
        pty.expect(seen, Duration::from_secs(90));
        let now = wait_ssh_link(rock_pid, sshd);
        assert_ne!(Some(now), link, "no new SSH link after reset {i}");
        reset_ssh_link(sshd, now);
        link = Some(now);
    }
    let status = pty.wait(Duration::from_secs(120));
    let got: Vec<String> = pty
        .seen
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("line "))
        .map(String::from)
        .collect();
    assert_eq!(got, numbered(LINES), "lines lost, duplicated or reordered");
    assert_eq!(
        pty.seen.matches(prompt).count(),
        1,
        "prompted more than once:\n{}",
        pty.seen
    );
    assert!(status.success(), "{status:?}\n{}", pty.seen);
    let n = logins(sshd, user);
    assert!(n >= 6, "only {n} logins of {user}:\n{}", sshd.log());
}

#[test]
fn a_password_session_reconnects_through_ssh_without_a_second_prompt() {
    let sshd = Sshd::builder().with_password_user().start();
    let user = format!("User={}", common::PASSWORD_USER);
    // "user@host's password: " or, through PAM, "(user@host) Password: ".
    reconnects_without_asking_again(
        &sshd,
        sshd.ssh_config(),
        &["-o", &user, "-o", "PubkeyAuthentication=no"],
        "assword: ",
        common::PASSWORD,
        common::PASSWORD_USER,
    );
}

#[test]
fn a_key_passphrase_session_reconnects_through_ssh_without_a_second_prompt() {
    require_root("the sshd fixture");
    let sshd = Sshd::start();
    let dir = common::temp_dir();
    // The fixture's authorised key, encrypted with a passphrase.
    let key = dir.path().join("id_encrypted");
    std::fs::copy(sshd.client_key(), &key).expect("copy the client key");
    let reencrypted = Command::new("ssh-keygen")
        .args(["-q", "-p", "-P", "", "-N", "open sesame", "-f"])
        .arg(&key)
        .output()
        .expect("run ssh-keygen");
    assert!(reencrypted.status.success(), "{reencrypted:?}");
    let config = sshd.ssh_config_with("IdentityFile", &key.display().to_string());
    reconnects_without_asking_again(
        &sshd,
        &config,
        &[],
        "Enter passphrase for key",
        "open sesame",
        sshd.user(),
    );
}

// ---- auto and direct behind the firewall -------------------------------

/// `--reconnect auto` with rockd's port blocked: every link goes through
/// ssh, including after a reset.
fn auto_falls_back(block: Block) {
    require_root("iptables and ss -K");
    let sshd = Sshd::builder().listen_address(own_address()).start();
    let _firewall = only_ssh_open(&sshd, block);
    const LINES: u32 = 40;
    let script = format!("for i in $(seq 1 {LINES}); do echo line $i; sleep 0.1; done; exit 3");
    let mut stream = Stream::start(&mut rock(&sshd, "auto", "ssh"), &script);
    let rock_pid = stream.pid();
    let listening = listen_addr(rockd_pid(&sshd));
    assert!(
        listening.ip().is_unspecified(),
        "in auto mode rockd listens on every address, not {listening}"
    );
    let link = wait_ssh_link(rock_pid, &sshd);
    let cut = Instant::now();
    reset_ssh_link(&sshd, link);
    let waited = stream.first_after(cut);
    eprintln!("auto mode ({block:?}): after a reset, next line in {waited:?}");
    assert_ne!(wait_ssh_link(rock_pid, &sshd), link, "no new SSH link");
    let (got, code, log) = stream.finish();
    assert_eq!(got, numbered(LINES), "lines lost, duplicated or reordered");
    assert_eq!(code, Some(3), "the remote command's exit status\n{log}");
}

#[test]
fn auto_falls_back_to_ssh_when_rockds_port_is_refused() {
    auto_falls_back(Block::Reject);
}

#[test]
fn auto_falls_back_to_ssh_when_rockds_port_is_dropped() {
    auto_falls_back(Block::Drop);
}

#[test]
fn auto_uses_rockds_own_port_when_it_answers() {
    require_root("ss -K");
    let sshd = Sshd::start();
    const LINES: u32 = 30;
    let script = format!("for i in $(seq 1 {LINES}); do echo line $i; sleep 0.1; done");
    let mut stream = Stream::start(&mut rock(&sshd, "auto", "ssh"), &script);
    let rock_pid = stream.pid();
    let rockd_port = listen_addr(rockd_pid(&sshd)).port();
    let direct = |c: &Conn| of_pid(c, rock_pid) && c.peer.port() == rockd_port;
    assert!(
        connections().iter().any(direct),
        "rock's link is not to rockd's port {rockd_port}"
    );
    assert_eq!(ssh_link(rock_pid, &sshd), None, "rock went through ssh");
    let cut = Instant::now();
    common::faults::reset_link(rockd_port);
    stream.first_after(cut);
    assert!(
        connections().iter().any(direct),
        "after a reset, rock's link is not to rockd's port"
    );
    let (got, code, log) = stream.finish();
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(got, numbered(LINES), "lines lost, duplicated or reordered");
}

#[test]
fn auto_returns_to_rockds_port_once_it_answers_again() {
    require_root("iptables and ss -K");
    let sshd = Sshd::builder().listen_address(own_address()).start();
    let firewall = only_ssh_open(&sshd, Block::Reject);
    const LINES: u32 = 60;
    let script = format!("for i in $(seq 1 {LINES}); do echo line $i; sleep 0.1; done; exit 5");
    let mut stream = Stream::start(&mut rock(&sshd, "auto", "ssh"), &script);
    let rock_pid = stream.pid();
    let link = wait_ssh_link(rock_pid, &sshd);
    // The network lets rockd's port through again; the next link uses it.
    drop(firewall);
    let rockd_port = listen_addr(rockd_pid(&sshd)).port();
    let direct = |c: &Conn| of_pid(c, rock_pid) && c.peer.port() == rockd_port;
    assert!(!connections().iter().any(direct), "direct before the reset");
    let cut = Instant::now();
    reset_ssh_link(&sshd, link);
    let waited = stream.first_after(cut);
    eprintln!("auto mode back to direct: after the reset, next line in {waited:?}");
    assert!(
        connections().iter().any(direct),
        "after the reset, rock's link is not to rockd's port {rockd_port}"
    );
    assert_eq!(ssh_link(rock_pid, &sshd), None, "rock kept an SSH link");
    let (got, code, log) = stream.finish();
    assert_eq!(got, numbered(LINES), "lines lost, duplicated or reordered");
    assert_eq!(code, Some(5), "the remote command's exit status\n{log}");
}

/// Drops every TCP segment with data that goes to sshd's address except to
/// its port: connections to rockd's port are made, and nothing passes
/// them, as through a middlebox that accepts any connection. (A segment
/// without data is at most 52 bytes: IP 20, TCP 20 and timestamps 12.)
fn only_ssh_carries(sshd: &Sshd) -> Rules {
    Rules::insert(vec![words(&format!(
        "-i lo -p tcp ! --syn -d {} ! --dport {} -m length --length 53:65535 -j DROP",
        sshd.ip(),
        sshd.port()
    ))])
}

#[test]
fn auto_goes_through_ssh_when_rockds_port_connects_but_carries_nothing() {
    require_root("iptables and ss -K");
    let sshd = Sshd::builder().listen_address(own_address()).start();
    let _middlebox = only_ssh_carries(&sshd);
    const LINES: u32 = 60;
    let script = format!("for i in $(seq 1 {LINES}); do echo line $i; sleep 0.1; done; exit 4");
    let mut cmd = rock_command(&sshd, ROCKD, &["-v", "--reconnect", "auto"], "ssh");
    // The first direct link waits out its handshake limit, then ssh.
    let mut stream = Stream::start(&mut cmd, &script);
    let rock_pid = stream.pid();
    let link = wait_ssh_link(rock_pid, &sshd);
    let cut = Instant::now();
    reset_ssh_link(&sshd, link);
    let waited = stream.first_after(cut);
    eprintln!("auto mode, silent port: after a reset, next line in {waited:?}");
    assert_ne!(wait_ssh_link(rock_pid, &sshd), link, "no new SSH link");
    let (got, code, log) = stream.finish();
    assert_eq!(got, numbered(LINES), "lines lost, duplicated or reordered");
    assert_eq!(code, Some(4), "the remote command's exit status\n{log}");
    assert_eq!(
        log.matches("nothing comes through").count(),
        1,
        "the silent port was not noticed once:\n{log}"
    );
    // After the reset the silent port is not dialled again: no race that a
    // connect would win and its handshake then lose.
    assert!(
        !log.contains("answers again"),
        "rock went back to the silent port:\n{log}"
    );
}

/// `--reconnect direct` (the default) behind the same firewall: the
/// bootstrap works, the link cannot be made, and rock says what to do.
fn direct_fails_clearly(block: Block) {
    require_root("iptables");
    let sshd = Sshd::builder().listen_address(own_address()).start();
    let _firewall = only_ssh_open(&sshd, block);
    let out = run_with_timeout(
        rock(&sshd, "direct", "ssh").args(["rocktest", "echo must not run"]),
        Duration::from_secs(120),
    );
    assert_exit(&out, 255, &text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("direct mode ({block:?}) says:\n{err}");
    assert!(
        err.contains("cannot reach") && err.contains(&sshd.ip().to_string()),
        "{err}"
    );
    assert!(err.contains("--reconnect ssh"), "no advice:\n{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("must not run"));
}

#[test]
fn direct_mode_behind_a_firewall_that_refuses_exits_255_with_advice() {
    direct_fails_clearly(Block::Reject);
}

#[test]
fn direct_mode_behind_a_firewall_that_drops_exits_255_with_advice() {
    direct_fails_clearly(Block::Drop);
}

#[test]
fn ssh_mode_without_tcp_forwarding_exits_255_naming_the_cause() {
    require_root("the sshd fixture");
    let sshd = Sshd::builder().option("AllowTcpForwarding no").start();
    let out = run_with_timeout(
        rock(&sshd, "ssh", "ssh").args(["rocktest", "echo must not run"]),
        Duration::from_secs(120),
    );
    assert_exit(&out, 255, &text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("ssh mode without forwarding says:\n{err}");
    assert!(
        err.contains("channel to rockd") && err.contains("AllowTcpForwarding"),
        "{err}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("must not run"));
}

// ---- configuration ---------------------------------------------------------

#[test]
fn a_host_profile_selects_ssh_mode_and_rockds_port_range() {
    require_root("iptables");
    let sshd = Sshd::builder().listen_address(own_address()).start();
    let _firewall = only_ssh_open(&sshd, Block::Reject);
    // Twenty ports between 10000 and 30000, below the kernel's ephemeral
    // range (so no connection on the machine takes them meanwhile): one is
    // free.
    let first = 10000 + (std::process::id() % 2000) as u16 * 10;
    let last = first + 19;
    let home = common::temp_dir();
    std::fs::create_dir_all(home.path().join("rock")).expect("mkdir");
    std::fs::write(
        home.path().join("rock/config.toml"),
        format!(
            "[[profile]]\nhosts = [\"rocktest\"]\nreconnect = \"ssh\"\n\
             rockd_port_range = \"{first}-{last}\"\nrockd_listen = \"0.0.0.0\"\n"
        ),
    )
    .expect("write the profile");
    let mut cmd = rock_command(&sshd, ROCKD, &[], "ssh");
    cmd.env("XDG_CONFIG_HOME", home.path());
    // The session lasts until the test has looked at rockd's listener and
    // rock's link (rockd ends with the session): until `go` exists (the
    // "remote" is this machine), a minute at most. A fixed 5 s was once
    // too short for a loaded machine.
    let go = home.path().join("go");
    let script = format!(
        "echo one; for i in $(seq 1200); do [ -e '{}' ] && break; sleep 0.05; done; echo two",
        go.display()
    );
    let stream = Stream::start(&mut cmd, &script);
    let listening = listen_addr(rockd_pid(&sshd));
    assert_eq!(
        listening.ip(),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        "ssh mode overrides rockd_listen"
    );
    assert!(
        (first..=last).contains(&listening.port()),
        "rockd listens on {listening}, outside {first}-{last}"
    );
    wait_ssh_link(stream.pid(), &sshd);
    std::fs::write(&go, b"").expect("write the go file");
    let (got, code, log) = stream.finish();
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(got, ["one", "two"]);

    let out = run_with_timeout(
        Command::new(ROCK)
            .args(["config", "check", "rocktest"])
            .env("XDG_CONFIG_HOME", home.path()),
        Duration::from_secs(10),
    );
    assert_exit(&out, 0, &text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("reconnect = \"ssh\""), "{shown}");
    assert!(
        shown.contains(&format!("rockd_port_range = \"{first}-{last}\"")),
        "{shown}"
    );
}
