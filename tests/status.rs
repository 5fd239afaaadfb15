//! `rock status` and the sign of life of a suspended session, end to end:
//! a real `rock -d ssh` session to the fixture's sshd, a real blackhole on
//! its link (iptables DROP), and the real `rock status` reading it. Each
//! test has its own runtime directory (`XDG_RUNTIME_DIR`), so it sees only
//! its own sessions.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::faults::{Blackhole, link_port_of};
use common::live::stdout_lines;
use common::pty::PtyChild;
use common::{ROCK, ROCKD, Sshd, require_root, run_with_timeout};

/// `rock status` with this runtime directory: its output.
fn rock_status(runtime: &Path) -> String {
    let out = run_with_timeout(
        Command::new(ROCK)
            .arg("status")
            .env("XDG_RUNTIME_DIR", runtime)
            .stdin(Stdio::null()),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "rock status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The table's rows as cells (columns are separated by two spaces or
/// more; no cell holds two spaces in a row).
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("removed "))
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect()
        })
        .collect()
}

/// Polls `rock status` until `ok` accepts its output; returns that output.
fn status_until(runtime: &Path, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let end = Instant::now() + Duration::from_secs(90);
    loop {
        let shown = rock_status(runtime);
        if ok(&shown) {
            return shown;
        }
        assert!(
            Instant::now() < end,
            "rock status never showed {what}; last:\n{shown}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `rock -d ssh -F <fixture> rocktest <script>`, its runtime directory
/// and configuration home set.
fn session(
    sshd: &Sshd,
    runtime: &Path,
    config_home: &Path,
    extra: &[&str],
    script: &str,
) -> Command {
    let mut cmd = Command::new(ROCK);
    cmd.arg("--rockd")
        .arg(ROCKD)
        .args(extra)
        .args(["-d", "ssh", "-F"])
        .arg(sshd.ssh_config())
        .args(["rocktest", script])
        .env("XDG_RUNTIME_DIR", runtime)
        .env("XDG_CONFIG_HOME", config_home)
        .env_remove("SSH_AUTH_SOCK");
    cmd
}

/// A remote script that prints `started`, waits for `stop` to exist (the
/// "remote" is this machine), then prints `finished`.
fn wait_for_stop(stop: &Path) -> String {
    format!(
        "echo started; while [ ! -e {} ]; do sleep 0.2; done; echo finished",
        stop.display()
    )
}

/// rockd's port, once `rock` (pid) has its link up.
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

/// The attempt number in a "reconnecting, attempt N" state.
fn attempt_of(state: &str) -> Option<u32> {
    state.split("attempt ").nth(1)?.trim().parse().ok()
}

/// Seconds in a "suspended since T (N s)" state.
fn down_secs(state: &str) -> Option<u64> {
    let inside = state.split('(').nth(1)?.split(" s)").next()?;
    inside.parse().ok()
}

#[test]
fn status_follows_a_session_through_a_blackhole_and_forgets_it_when_it_ends() {
    require_root("iptables on the rock link");
    let sshd = Sshd::start();
    let dir = common::temp_dir();
    let runtime = common::temp_dir();
    let stop = dir.path().join("stop");
    let mut child = session(
        &sshd,
        runtime.path(),
        dir.path(),
        &[],
        &wait_for_stop(&stop),
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start rock");
    let lines = stdout_lines(&mut child);
    assert_eq!(
        lines.recv_timeout(Duration::from_secs(60)).as_deref(),
        Ok("started")
    );
    // The process that carries the session, and answers for it.
    let pid = common::rock_worker(child.id()).to_string();

    // Connected, with a round-trip time once a heartbeat came back.
    let shown = status_until(runtime.path(), "the session connected with an RTT", |s| {
        rows(s)
            .first()
            .is_some_and(|r| r.len() == 7 && r[3] == "connected" && r[4].ends_with(" ms"))
    });
    let row = &rows(&shown)[0];
    assert_eq!(rows(&shown).len(), 1, "{shown}");
    assert_eq!(row[0], pid, "{shown}");
    assert_eq!(row[1], "ssh", "{shown}");
    assert_eq!(row[2], "rocktest", "{shown}");
    assert_eq!(row[6], "0", "no reconnects yet:\n{shown}");

    // Blackholed: suspended since some time, reconnecting, attempts counted.
    let port = wait_link_port(child.id(), &sshd);
    let hole = Blackhole::new(port);
    let shown = status_until(
        runtime.path(),
        "a suspended session on its 2nd attempt",
        |s| {
            rows(s).first().is_some_and(|r| {
                r.len() == 7
                    && r[3].starts_with("suspended since ")
                    && r[3].contains("reconnecting")
                    && attempt_of(&r[3]).is_some_and(|n| n >= 2)
            })
        },
    );
    eprintln!("while blackholed:\n{shown}");
    assert_eq!(
        rows(&shown)[0][4],
        "-",
        "no RTT while the link is down:\n{shown}"
    );
    drop(hole);

    // Back: connected again, one reconnect counted.
    let shown = status_until(runtime.path(), "the session connected again", |s| {
        rows(s)
            .first()
            .is_some_and(|r| r.len() == 7 && r[3] == "connected")
    });
    let reconnects: u64 = rows(&shown)[0][6].parse().expect("a number of reconnects");
    assert!(reconnects >= 1, "{shown}");

    // Ended: gone from the listing, and its directory with it.
    std::fs::write(&stop, b"").unwrap();
    assert_eq!(
        lines.recv_timeout(Duration::from_secs(60)).as_deref(),
        Ok("finished")
    );
    let status = child.wait().expect("wait for rock");
    assert!(status.success(), "{status:?}");
    assert_eq!(rock_status(runtime.path()), "no rock sessions\n");
    let left: Vec<_> = std::fs::read_dir(runtime.path().join("rock"))
        .expect("the runtime directory")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_session_whose_rock_was_killed_is_recognised_and_removed() {
    require_root("the sshd fixture");
    let sshd = Sshd::start();
    let dir = common::temp_dir();
    let runtime = common::temp_dir();
    let stop = dir.path().join("stop");
    let mut child = session(
        &sshd,
        runtime.path(),
        dir.path(),
        &["--suspend-timeout", "5"],
        &wait_for_stop(&stop),
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("start rock");
    let lines = stdout_lines(&mut child);
    assert_eq!(
        lines.recv_timeout(Duration::from_secs(60)).as_deref(),
        Ok("started")
    );
    status_until(runtime.path(), "the session", |s| {
        rows(s)
            .first()
            .is_some_and(|r| r.get(3).is_some_and(|s| s == "connected"))
    });
    let sessions = runtime.path().join("rock");
    let session_dir = std::fs::read_dir(&sessions)
        .expect("the runtime directory")
        .next()
        .expect("a session directory")
        .expect("read it")
        .path();

    // SIGKILL: rock cannot clean up; its directory and socket stay.
    child.kill().expect("kill rock");
    child.wait().expect("reap rock");
    std::fs::write(&stop, b"").unwrap();
    assert!(session_dir.join("ctl.sock").exists());
    let shown = status_until(runtime.path(), "the dead session removed", |s| {
        s.contains("removed ")
    });
    assert!(
        shown.contains(&format!("removed {}", session_dir.display()))
            && shown.contains("no longer running"),
        "{shown}"
    );
    assert!(rows(&shown).is_empty(), "a dead session listed:\n{shown}");
    assert!(!session_dir.exists());
    assert_eq!(rock_status(runtime.path()), "no rock sessions\n");
}

/// Regression: a session waiting at its password prompt was missing from
/// `rock status`, though rock.1 lists a "starting" state for it.
#[test]
fn a_session_at_its_password_prompt_is_listed_as_starting() {
    require_root("the sshd fixture and its password user");
    let sshd = Sshd::builder().with_password_user().start();
    let runtime = common::temp_dir();
    let home = common::temp_dir();
    let user = format!("User={}", common::PASSWORD_USER);
    // The password user, keys off, a prompt allowed: rock waits at it.
    let mut cmd = Command::new(ROCK);
    cmd.arg("--rockd")
        .arg(ROCKD)
        .args(["-d", "ssh", "-F"])
        .arg(sshd.ssh_config())
        .args([
            "-o",
            "BatchMode=no",
            "-o",
            &user,
            "-o",
            "PubkeyAuthentication=no",
        ])
        .args(["rocktest", "echo logged in"])
        .env("XDG_RUNTIME_DIR", runtime.path())
        .env("XDG_CONFIG_HOME", home.path())
        .env_remove("SSH_AUTH_SOCK");
    let mut pty = PtyChild::spawn(&mut cmd);
    // "user@host's password: " or, through keyboard-interactive,
    // "(user@host) Password: ".
    pty.expect("assword: ", Duration::from_secs(30));
    let shown = status_until(runtime.path(), "the session at its prompt", |s| {
        rows(s).iter().any(|r| r.iter().any(|c| c == "starting"))
    });
    assert!(shown.contains("rocktest"), "{shown}");
    pty.send(&format!("{}\n", common::PASSWORD));
    pty.expect("logged in", Duration::from_secs(60));
    let status = pty.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "{}", pty.seen);
    let shown = status_until(runtime.path(), "no session once it ended", |s| {
        s.contains("no rock sessions")
    });
    assert!(!shown.contains("rocktest"), "{shown}");
}

#[test]
fn no_sessions_says_so() {
    let runtime = common::temp_dir();
    assert_eq!(rock_status(runtime.path()), "no rock sessions\n");
    // Also before anything made the rock directory, and after.
    assert!(runtime.path().join("rock").is_dir());
    assert_eq!(rock_status(runtime.path()), "no rock sessions\n");
}

/// Runs a session on a pty, blackholes its link until `rock status` has
/// shown it suspended for at least 6 s (twice the delay before the title
/// shows), lifts the blackhole, lets the remote script finish, and returns
/// everything the terminal received.
fn terminal_through_an_outage(config: Option<&str>) -> String {
    let sshd = Sshd::start();
    let dir = common::temp_dir();
    let runtime = common::temp_dir();
    if let Some(text) = config {
        std::fs::create_dir_all(dir.path().join("rock")).unwrap();
        std::fs::write(dir.path().join("rock/config.toml"), text).unwrap();
    }
    let stop = dir.path().join("stop");
    let mut pty = PtyChild::spawn(&mut session(
        &sshd,
        runtime.path(),
        dir.path(),
        &[],
        &wait_for_stop(&stop),
    ));
    pty.expect("started", Duration::from_secs(60));
    let port = wait_link_port(pty.child.id(), &sshd);
    let hole = Blackhole::new(port);
    status_until(runtime.path(), "6 s of suspension", |s| {
        rows(s)
            .first()
            .and_then(|r| r.get(3))
            .and_then(|state| down_secs(state))
            .is_some_and(|secs| secs >= 6)
    });
    drop(hole);
    status_until(runtime.path(), "the session connected again", |s| {
        rows(s)
            .first()
            .is_some_and(|r| r.get(3).is_some_and(|s| s == "connected"))
    });
    std::fs::write(&stop, b"").unwrap();
    pty.expect("finished", Duration::from_secs(60));
    let status = pty.wait(Duration::from_secs(60));
    assert!(status.success(), "{status:?}\n{}", pty.seen);
    pty.seen.clone()
}

#[test]
fn a_suspended_session_shows_in_the_terminal_title_and_restores_it() {
    require_root("iptables on the rock link");
    let seen = terminal_through_an_outage(None);
    let set = seen
        .find("\x1b]2;rock: rocktest ")
        .unwrap_or_else(|| panic!("no title was set:\n{seen:?}"));
    assert!(seen[set..].contains("link down"), "{seen:?}");
    assert!(
        seen[..set].ends_with("\x1b[22;0t"),
        "the title was not saved first:\n{seen:?}"
    );
    let restored = seen
        .rfind("\x1b]2;\x07\x1b[23;0t")
        .unwrap_or_else(|| panic!("the title was not restored:\n{seen:?}"));
    assert!(restored > set);
    let finished = seen.find("finished").expect("the script finished");
    assert!(
        restored < finished,
        "restored only after the output:\n{seen:?}"
    );
    assert_eq!(
        seen.matches("\x1b[22;0t").count(),
        1,
        "saved more than once:\n{seen:?}"
    );
}

#[test]
fn sign_of_life_false_leaves_the_terminal_title_alone() {
    require_root("iptables on the rock link");
    let seen = terminal_through_an_outage(Some("[defaults]\nsign_of_life = false\n"));
    assert!(
        !seen.contains("\x1b]"),
        "an OSC sequence was written:\n{seen:?}"
    );
    assert!(
        !seen.contains("\x1b["),
        "a CSI sequence was written:\n{seen:?}"
    );
    assert!(seen.contains("finished"), "{seen:?}");
}
