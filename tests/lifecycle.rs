//! How a `rock -d` session ends and lives in the user's shell: a closed
//! terminal, `kill` and `~.` end the remote login (at once when the link
//! is up, from the background once it is back when it is down), `ssh -f`
//! tunnels go to the background with rock, and `~^Z` stops the job as it
//! stops plain ssh. Real rock, rockd, sshd and ssh; a real pseudo-terminal
//! and a real interactive bash where the terminal matters; real
//! blackholes (iptables) on the link.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::faults::{Blackhole, link_port_of, listener_pid};
use common::pty::PtyChild;
use common::{ROCK, ROCKD, Sshd, require_root, rock_worker, run_with_timeout};

/// `rock --rockd <ours> -d ssh -F <fixture> -tt rocktest <remote>`, for a
/// terminal, with its own runtime and configuration directories.
fn on_terminal(sshd: &Sshd, dirs: &Dirs, remote: &str) -> Command {
    let mut cmd = Command::new(ROCK);
    cmd.arg("--rockd")
        .arg(ROCKD)
        .args(["-d", "ssh", "-F"])
        .arg(sshd.ssh_config())
        .args(["-tt", "rocktest", remote]);
    dirs.apply(&mut cmd);
    cmd
}

/// A remote interactive shell that first says its pid.
const REMOTE_SHELL: &str = "echo shell=$$.; exec bash --norc --noprofile -i";

/// A test's own runtime directory (for rock status and the sessions'
/// directories) and configuration home.
struct Dirs {
    runtime: common::TempDir,
    config: common::TempDir,
}

impl Dirs {
    fn new() -> Dirs {
        Dirs {
            runtime: common::temp_dir(),
            config: common::temp_dir(),
        }
    }

    /// With `text` as rock's configuration file.
    fn with_config(text: &str) -> Dirs {
        let dirs = Dirs::new();
        let file = dirs.config.path().join("rock").join("config.toml");
        std::fs::create_dir_all(file.parent().expect("a parent")).expect("the config dir");
        std::fs::write(file, text).expect("write the config");
        dirs
    }

    fn apply(&self, cmd: &mut Command) {
        cmd.env("XDG_RUNTIME_DIR", self.runtime.path())
            .env("XDG_CONFIG_HOME", self.config.path())
            .env_remove("SSH_AUTH_SOCK");
    }

    /// The session directories left in the runtime directory.
    fn sessions(&self) -> Vec<String> {
        std::fs::read_dir(self.runtime.path().join("rock"))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `rock status`, as this test's user sees it.
    fn status(&self) -> String {
        let out = run_with_timeout(
            Command::new(ROCK)
                .arg("status")
                .env("XDG_RUNTIME_DIR", self.runtime.path())
                .stdin(Stdio::null()),
            Duration::from_secs(30),
        );
        assert!(out.status.success(), "rock status failed: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// The remote shell's pid, once it has said it.
fn remote_shell(pty: &mut PtyChild) -> u32 {
    pty.expect("shell=", Duration::from_secs(60));
    pty.expect(".", Duration::from_secs(10));
    let at = pty.seen.rfind("shell=").expect("seen") + "shell=".len();
    let digits: String = pty.seen[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().expect("the remote shell's pid")
}

/// `text` without the terminal titles (OSC 2) that show an outage.
fn without_titles(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("\x1b]2;") {
        out.push_str(&rest[..at]);
        rest = rest[at..].split_once('\x07').map_or("", |(_, after)| after);
    }
    out.push_str(rest);
    out
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // A zombie is gone, only not yet reaped.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}

/// How long until the pty's child (rock's front) exits; panics after
/// `limit`. Its output is collected afterwards with [`PtyChild::wait`].
fn time_until_exit(pty: &mut PtyChild, limit: Duration) -> Duration {
    let start = Instant::now();
    while pty.child.try_wait().expect("wait for rock").is_none() {
        assert!(
            start.elapsed() < limit,
            "rock did not exit within {limit:?}; seen:\n{}",
            pty.seen
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    start.elapsed()
}

/// How long until process `pid` is gone; panics after `limit`.
fn time_until_gone(pid: u32, limit: Duration, what: &str) -> Duration {
    let start = Instant::now();
    while alive(pid) {
        assert!(
            start.elapsed() < limit,
            "{what} (pid {pid}) still runs after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

/// Waits until rock (the front, `pid`) has its link up; rockd's port.
fn wait_link_port(pid: u32, sshd: &Sshd) -> u16 {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(port) = link_port_of(pid).filter(|&p| p != sshd.port()) {
            return port;
        }
        assert!(Instant::now() < end, "rock never connected to rockd");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts that nothing of the session is left: no rock process, no
/// session directory, no rockd.
fn assert_nothing_left(dirs: &Dirs, sshd: &Sshd, rock: &[u32], rockd: u32) {
    for &pid in rock {
        time_until_gone(pid, Duration::from_secs(20), "a rock process");
    }
    time_until_gone(rockd, Duration::from_secs(20), "rockd");
    let end = Instant::now() + Duration::from_secs(5);
    while !dirs.sessions().is_empty() {
        assert!(
            Instant::now() < end,
            "left in the runtime directory: {:?}",
            dirs.sessions()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        sshd.descendants()
            .iter()
            .all(|p| !p.cmdline.contains("rockd")),
        "rockd left behind: {:?}",
        sshd.descendants()
    );
}

// Regression: closing the terminal killed rock on the spot, leaving rockd
// (for its 72 h suspension timeout) and the remote shell behind.
#[test]
fn closing_the_terminal_ends_the_remote_shell_at_once() {
    require_root("the sshd fixture");
    let sshd = Sshd::start();
    let dirs = Dirs::new();
    let mut pty = PtyChild::spawn(&mut on_terminal(&sshd, &dirs, REMOTE_SHELL));
    let shell = remote_shell(&mut pty);
    let front = pty.child.id();
    let worker = rock_worker(front);
    let rockd = listener_pid(wait_link_port(front, &sshd)).expect("rockd listens");
    pty.hang_up();
    let gone = time_until_gone(shell, Duration::from_secs(20), "the remote shell");
    let returned = time_until_exit(&mut pty, Duration::from_secs(20));
    eprintln!(
        "link up, terminal closed: the remote shell was gone after {gone:?}, rock {:?}",
        gone + returned
    );
    let status = pty.wait(Duration::from_secs(20));
    assert!(!status.success(), "{status:?}");
    assert_nothing_left(&dirs, &sshd, &[worker], rockd);
}

// Regression: SIGTERM killed rock on the spot, as SIGHUP did.
#[test]
fn killing_rock_ends_the_remote_shell_at_once() {
    require_root("the sshd fixture");
    let sshd = Sshd::start();
    let dirs = Dirs::new();
    let mut pty = PtyChild::spawn(&mut on_terminal(&sshd, &dirs, REMOTE_SHELL));
    let shell = remote_shell(&mut pty);
    let front = pty.child.id();
    let worker = rock_worker(front);
    let rockd = listener_pid(wait_link_port(front, &sshd)).expect("rockd listens");
    common::netns::signal(front, libc::SIGTERM);
    let gone = time_until_gone(shell, Duration::from_secs(20), "the remote shell");
    let returned = gone + time_until_exit(&mut pty, Duration::from_secs(20));
    eprintln!("link up, SIGTERM: the remote shell was gone after {gone:?}, rock {returned:?}");
    // ssh's own status when a signal ends it.
    let status = pty.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(255), "{status:?}\n{}", pty.seen);
    assert!(
        returned < Duration::from_secs(3),
        "rock took {returned:?} to end"
    );
    assert_nothing_left(&dirs, &sshd, &[worker], rockd);
}

// Regression: `~.` during an outage took 12 s to give the prompt back, and
// left the remote shell and rockd behind for the suspension timeout.
#[test]
fn the_escape_during_an_outage_returns_at_once_and_the_end_follows_the_link() {
    require_root("iptables on the rock link");
    let sshd = Sshd::start();
    let dirs = Dirs::new();
    let mut pty = PtyChild::spawn(&mut on_terminal(&sshd, &dirs, REMOTE_SHELL));
    let shell = remote_shell(&mut pty);
    let front = pty.child.id();
    let worker = rock_worker(front);
    let port = wait_link_port(front, &sshd);
    let rockd = listener_pid(port).expect("rockd listens");
    let hole = Blackhole::new(port);
    // Until rock has noticed: its link timeout is 6 s.
    let end = Instant::now() + Duration::from_secs(30);
    while !dirs.status().contains("suspended") {
        assert!(Instant::now() < end, "rock never noticed the outage");
        std::thread::sleep(Duration::from_millis(100));
    }
    pty.send("\r~.");
    let returned = time_until_exit(&mut pty, Duration::from_secs(30));
    let status = pty.wait(Duration::from_secs(30));
    eprintln!("link down, ~.: rock returned after {returned:?}");
    assert_eq!(status.code(), Some(255), "{status:?}\n{}", pty.seen);
    assert!(
        returned < Duration::from_secs(2),
        "rock took {returned:?} to give the terminal back"
    );
    assert!(
        !without_titles(&pty.seen).contains("rock:"),
        "rock complained:\n{}",
        pty.seen
    );
    // rock stays behind, alone, to deliver the end once the link is back.
    std::thread::sleep(Duration::from_secs(2));
    assert!(alive(worker), "no rock stayed behind to end the session");
    assert!(alive(shell), "the remote shell ended without a link");
    let shown = dirs.status();
    assert!(shown.contains(&worker.to_string()), "{shown}");
    drop(hole);
    let back = Instant::now();
    let gone = time_until_gone(shell, Duration::from_secs(30), "the remote shell");
    eprintln!("link down, ~.: the remote shell was gone {gone:?} after the link came back");
    assert!(back.elapsed() < Duration::from_secs(15));
    assert_nothing_left(&dirs, &sshd, &[worker], rockd);
}

#[test]
fn a_kill_during_an_outage_returns_at_once_and_the_end_follows_the_link() {
    require_root("iptables on the rock link");
    let sshd = Sshd::start();
    let dirs = Dirs::new();
    let mut pty = PtyChild::spawn(&mut on_terminal(&sshd, &dirs, REMOTE_SHELL));
    let shell = remote_shell(&mut pty);
    let front = pty.child.id();
    let worker = rock_worker(front);
    let port = wait_link_port(front, &sshd);
    let rockd = listener_pid(port).expect("rockd listens");
    let hole = Blackhole::new(port);
    let end = Instant::now() + Duration::from_secs(30);
    while !dirs.status().contains("suspended") {
        assert!(Instant::now() < end, "rock never noticed the outage");
        std::thread::sleep(Duration::from_millis(100));
    }
    common::netns::signal(front, libc::SIGTERM);
    let returned = time_until_exit(&mut pty, Duration::from_secs(30));
    let status = pty.wait(Duration::from_secs(30));
    eprintln!("link down, SIGTERM: rock returned after {returned:?}");
    assert_eq!(status.code(), Some(255), "{status:?}\n{}", pty.seen);
    assert!(returned < Duration::from_secs(2), "took {returned:?}");
    std::thread::sleep(Duration::from_secs(1));
    assert!(alive(worker), "no rock stayed behind to end the session");
    drop(hole);
    let gone = time_until_gone(shell, Duration::from_secs(30), "the remote shell");
    eprintln!("link down, SIGTERM: the remote shell was gone {gone:?} after the link came back");
    assert_nothing_left(&dirs, &sshd, &[worker], rockd);
}

#[test]
fn the_rock_left_behind_gives_up_after_close_timeout() {
    require_root("iptables on the rock link");
    let sshd = Sshd::start();
    let dirs = Dirs::with_config("[defaults]\nclose_timeout = \"2s\"\n");
    let mut pty = PtyChild::spawn(&mut on_terminal(&sshd, &dirs, REMOTE_SHELL));
    remote_shell(&mut pty);
    let front = pty.child.id();
    let worker = rock_worker(front);
    let port = wait_link_port(front, &sshd);
    let _hole = Blackhole::new(port);
    let end = Instant::now() + Duration::from_secs(30);
    while !dirs.status().contains("suspended") {
        assert!(Instant::now() < end, "rock never noticed the outage");
        std::thread::sleep(Duration::from_millis(100));
    }
    pty.send("\r~.");
    pty.wait(Duration::from_secs(30));
    let left = Instant::now();
    // close_timeout, then the close's own farewell time (5 s) and a dial.
    let gone = time_until_gone(worker, Duration::from_secs(20), "the rock left behind");
    eprintln!("the rock left behind gave up after {gone:?}");
    assert!(left.elapsed() >= Duration::from_secs(2));
    assert!(dirs.sessions().is_empty(), "{:?}", dirs.sessions());
}

/// A TCP echo server on 127.0.0.1; its port.
fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            std::thread::spawn(move || {
                let Ok(mut out) = conn.try_clone() else {
                    return;
                };
                let _ = std::io::copy(&mut conn, &mut out);
            });
        }
    });
    port
}

/// One round trip through the forwarded port.
fn echo_through(port: u16) {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("the forwarded port");
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    conn.write_all(b"through the tunnel\n").expect("write");
    let mut back = [0u8; 19];
    conn.read_exact(&mut back).expect("the echo");
    assert_eq!(&back, b"through the tunnel\n");
}

// Regression: `rock -d ssh -N -f -L ...` blocked the terminal for 10 s,
// printed "the session was closed (aborted: stopped)" and left the tunnel
// dead.
#[test]
fn ssh_dash_f_goes_to_the_background_with_rock() {
    require_root("the sshd fixture");
    let sshd = Sshd::start();
    let echo = echo_server();

    // Plain ssh, for the time it takes to give the shell back.
    let plain_port = common::rocked::free_port();
    let started = Instant::now();
    let plain = run_with_timeout(
        sshd.command("ssh").args([
            "-N",
            "-f",
            "-L",
            &format!("{plain_port}:127.0.0.1:{echo}"),
            "rocktest",
        ]),
        Duration::from_secs(60),
    );
    let plain_took = started.elapsed();
    assert!(plain.status.success(), "{plain:?}");
    echo_through(plain_port);
    let plain_ssh = listener_pid(plain_port).expect("plain ssh listens");
    common::netns::signal(plain_ssh, libc::SIGTERM);

    let dirs = Dirs::new();
    let port = common::rocked::free_port();
    let mut cmd = common::rock_command(&sshd, ROCKD, &[], "ssh");
    dirs.apply(&mut cmd);
    cmd.args([
        "-N",
        "-f",
        "-o",
        "ExitOnForwardFailure=yes",
        "-L",
        &format!("{port}:127.0.0.1:{echo}"),
        "rocktest",
    ]);
    let started = Instant::now();
    let out = run_with_timeout(&mut cmd, Duration::from_secs(60));
    let took = started.elapsed();
    eprintln!("ssh -N -f returned after {plain_took:?} plain, {took:?} through rock");
    common::assert_exit(&out, 0, "rock -d ssh -N -f");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        took < plain_took + Duration::from_secs(3),
        "rock took {took:?} to give the shell back, plain ssh {plain_took:?}"
    );
    echo_through(port);

    // rock status shows the session, carried by the rock in the background.
    let shown = dirs.status();
    let row = shown
        .lines()
        .find(|l| l.contains("rocktest"))
        .unwrap_or_else(|| panic!("rock status does not show it:\n{shown}"));
    assert!(row.contains("connected"), "{shown}");
    let rock: u32 = row
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a pid");
    assert!(alive(rock), "{shown}");
    echo_through(port);

    // It ends when the backgrounded ssh does, and leaves nothing behind.
    let ssh = listener_pid(port).expect("the backgrounded ssh listens");
    let link = link_port_of(rock).filter(|&p| p != sshd.port());
    let rockd = link.and_then(listener_pid).expect("rockd listens");
    common::netns::signal(ssh, libc::SIGTERM);
    assert_nothing_left(&dirs, &sshd, &[rock], rockd);

    // Ending the rock that `rock status` names ends the tunnel too.
    let out = run_with_timeout(&mut cmd, Duration::from_secs(60));
    common::assert_exit(&out, 0, "rock -d ssh -N -f, again");
    echo_through(port);
    let ssh = listener_pid(port).expect("the backgrounded ssh listens");
    let shown = dirs.status();
    let rock: u32 = shown
        .lines()
        .find(|l| l.contains("rocktest"))
        .and_then(|row| row.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("rock status does not show it:\n{shown}"));
    let link = link_port_of(rock).filter(|&p| p != sshd.port());
    let rockd = link.and_then(listener_pid).expect("rockd listens");
    common::netns::signal(rock, libc::SIGTERM);
    time_until_gone(ssh, Duration::from_secs(20), "the backgrounded ssh");
    assert_nothing_left(&dirs, &sshd, &[rock], rockd);
}

/// An interactive bash on a terminal, with job control, whose prompt is
/// `bash$ `.
fn interactive_bash(dirs: &Dirs) -> PtyChild {
    let mut cmd = Command::new("bash");
    cmd.args(["--norc", "--noprofile", "-i"])
        .env("PS1", "bash$ ")
        .env("TERM", "dumb");
    dirs.apply(&mut cmd);
    let mut pty = PtyChild::spawn(&mut cmd);
    pty.expect("bash$ ", Duration::from_secs(10));
    pty
}

/// The words of `cmd` as a line for the shell (the fixture's paths have
/// no spaces or quotes).
fn shell_line(cmd: &Command) -> String {
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    for arg in cmd.get_args() {
        words.push(format!("'{}'", arg.to_string_lossy()));
    }
    words.join(" ")
}

// Regression: `~^Z` stopped ssh while rock stayed in the foreground, and
// the terminal was dead until a second Ctrl-Z.
#[test]
fn the_suspend_escape_stops_the_job_and_fg_resumes_the_session() {
    require_root("the sshd fixture");
    let sshd = Sshd::start();
    let dirs = Dirs::new();
    let mut bash = interactive_bash(&dirs);
    let rock = on_terminal(&sshd, &dirs, "echo ready; exec cat");
    bash.send(&format!("{}\r", shell_line(&rock)));
    bash.expect("ready", Duration::from_secs(60));
    let port = wait_link_port_of_session(&dirs, &sshd);

    let from = bash.seen.len();
    bash.send("\r~\x1a");
    let stopped = bash.expect_after(from, "Stopped", Duration::from_secs(10));
    bash.expect_after(stopped, "bash$ ", Duration::from_secs(10));
    // The shell has the terminal: it runs a command.
    bash.send("echo the shell is back\r");
    bash.expect("the shell is back\r\n", Duration::from_secs(10));
    // Stopped for longer than a link timeout (6 s): the session lives on.
    std::thread::sleep(Duration::from_secs(8));
    assert!(dirs.status().contains("rocktest"));

    let from = bash.seen.len();
    bash.send("fg\r");
    bash.expect_after(from, "fg", Duration::from_secs(10));
    // ssh, continued, takes the terminal back.
    std::thread::sleep(Duration::from_millis(300));
    let from = bash.seen.len();
    bash.send("again\r");
    // Echoed by the remote terminal, then by cat.
    let first = bash.expect_after(from, "again", Duration::from_secs(30));
    bash.expect_after(first + 5, "again", Duration::from_secs(30));
    let rockd = listener_pid(port).expect("rockd listens");
    let from = bash.seen.len();
    bash.send("\r~.");
    bash.expect_after(from, "bash$ ", Duration::from_secs(30));
    bash.send("exit\r");
    bash.wait(Duration::from_secs(20));
    assert!(
        !without_titles(&bash.seen).contains("rock:"),
        "rock complained:\n{}",
        bash.seen
    );
    time_until_gone(rockd, Duration::from_secs(20), "rockd");
}

/// rockd's port, for the one session in `dirs`, once its link is up.
fn wait_link_port_of_session(dirs: &Dirs, sshd: &Sshd) -> u16 {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let shown = dirs.status();
        let pid = shown
            .lines()
            .find(|l| l.contains("rocktest") && l.contains("connected"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|p| p.parse().ok());
        if let Some(port) = pid.and_then(link_port_of).filter(|&p| p != sshd.port()) {
            return port;
        }
        assert!(Instant::now() < end, "no connected session:\n{shown}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

// The front must stop when the worker does: a rock started in the
// background that asks for a password stops for terminal input, as ssh
// would, and goes on after `fg`.
#[test]
fn a_background_rock_asking_for_a_password_stops_until_fg() {
    let sshd = Sshd::builder().with_password_user().start();
    let dirs = Dirs::new();
    let mut bash = interactive_bash(&dirs);
    let mut rock = Command::new(ROCK);
    rock.arg("--rockd")
        .arg(ROCKD)
        .args(["-d", "ssh", "-F"])
        .arg(sshd.ssh_config())
        .args([
            "-o",
            "BatchMode=no",
            "-o",
            &format!("User={}", common::PASSWORD_USER),
            "-o",
            "PubkeyAuthentication=no",
            "rocktest",
            "echo logged in as $(id -un)",
        ]);
    // Job notices at once, not at the next prompt.
    bash.send("set -b\r");
    let from = bash.seen.len();
    bash.send(&format!("{} &\r", shell_line(&rock)));
    bash.expect_after(from, "Stopped", Duration::from_secs(60));
    let from = bash.seen.len();
    bash.send("fg\r");
    bash.expect_after(from, "assword", Duration::from_secs(30));
    // Enter sends `\r`; the shell left the terminal without ICRNL when
    // it stopped the job, and the prompt must still end on it.
    bash.send(&format!("{}\r", common::PASSWORD));
    let logged_in = bash.expect_after(
        from,
        &format!("logged in as {}", common::PASSWORD_USER),
        Duration::from_secs(60),
    );
    // The shell's turn again (typed earlier, it would go to ssh).
    bash.expect_after(logged_in, "bash$ ", Duration::from_secs(30));
    let from = bash.seen.len();
    bash.send("echo status $?\r");
    bash.expect_after(from, "status 0", Duration::from_secs(30));
    bash.send("exit\r");
    bash.wait(Duration::from_secs(20));
}
