//! `rock -d` end to end: the real rock and rockd binaries, a real sshd, the
//! real OpenSSH clients, and real kernel faults on the rock link.

mod common;
use common::text;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::faults::{Blackhole, link_port_of, listener_pid, reset_link};
use common::live::timed_stdout_lines;
use common::pty::PtyChild;
use common::transfer::{self, LinkFaults, file_len};
use common::{ROCK, ROCKD, Sshd, assert_exit, require_root, rock_command, run_with_timeout};

/// `rock --rockd <ours> [extra] -d <program> -F <fixture config> ...`.
fn rock(sshd: &Sshd, extra: &[&str], program: &str) -> Command {
    rock_command(sshd, ROCKD, extra, program)
}

#[test]
fn a_remote_command_runs_and_its_exit_status_comes_back() {
    require_root("the sshd fixture");
    let sshd = Sshd::start();
    let out = run_with_timeout(
        rock(&sshd, &[], "ssh").args(["rocktest", "echo hello from $(hostname); exit 7"]),
        Duration::from_secs(60),
    );
    assert_exit(
        &out,
        7,
        &format!("{}\nsshd log:\n{}", text(&out), sshd.log()),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("hello from"),
        "{}",
        text(&out)
    );
}

#[test]
fn rock_is_quiet_by_default_and_tells_its_story_with_v() {
    require_root("the sshd fixture");
    let sshd = Sshd::start();
    let quiet = run_with_timeout(
        rock(&sshd, &[], "ssh")
            .env_remove("RUST_LOG")
            .args(["rocktest", "echo done"]),
        Duration::from_secs(60),
    );
    assert_exit(&quiet, 0, &text(&quiet));
    assert!(
        quiet.stderr.is_empty(),
        "a session that goes well prints nothing of rock's own:\n{}",
        text(&quiet)
    );
    let told = run_with_timeout(
        rock(&sshd, &["-v"], "ssh")
            .env_remove("RUST_LOG")
            .args(["rocktest", "echo done"]),
        Duration::from_secs(60),
    );
    assert_exit(&told, 0, &text(&told));
    let stderr = String::from_utf8_lossy(&told.stderr);
    assert!(
        stderr.contains("rockd") && stderr.contains("link up"),
        "-v logs where rockd listens and the link coming up:\n{}",
        text(&told)
    );
    // Regression: colour codes went into pipes and files too.
    assert!(
        !stderr.contains('\x1b'),
        "-v into a pipe carries no terminal escapes:\n{stderr:?}"
    );
    assert_eq!(String::from_utf8_lossy(&told.stdout).trim(), "done");
}

/// Waits until `rock` (pid) has its link to rockd up; returns rockd's port.
fn wait_link_port(pid: u32) -> u16 {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(port) = link_port_of(pid) {
            return port;
        }
        assert!(Instant::now() < end, "rock never connected to rockd");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `rock [extra] -d ssh rocktest <script>` with its output piped, and
/// collects its lines as they arrive.
fn spawn_script(
    sshd: &Sshd,
    extra: &[&str],
    script: &str,
) -> (Child, mpsc::Receiver<(Instant, String)>) {
    let mut child = rock(sshd, extra, "ssh")
        .args(["rocktest", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rock");
    let lines = timed_stdout_lines(&mut child);
    (child, lines)
}

#[test]
fn an_ssh_session_survives_resets_and_a_blackhole_exactly_once() {
    require_root("ss -K and iptables on the rock link");
    let sshd = Sshd::start();
    const LINES: u32 = 400;
    let script = format!("for i in $(seq 1 {LINES}); do echo line $i; sleep 0.1; done; exit 7");
    let (mut child, lines) = spawn_script(&sshd, &[], &script);
    let mut got = Vec::new();
    let next_line = |got: &mut Vec<String>| {
        let (at, line) = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the session stalled for a minute");
        got.push(line);
        at
    };
    // The first line that arrives after `cut`: how long the stream stood still.
    let first_after = |got: &mut Vec<String>, cut: Instant| loop {
        let at = next_line(got);
        if at > cut {
            return at.duration_since(cut);
        }
    };
    next_line(&mut got);
    let port = wait_link_port(child.id());
    let rockd = listener_pid(port).expect("rockd listens on the link port");

    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(700));
        let cut = Instant::now();
        reset_link(port);
        eprintln!(
            "after a reset, next line in {:?}",
            first_after(&mut got, cut)
        );
    }
    let hole = Blackhole::new(port);
    std::thread::sleep(Duration::from_secs(30));
    drop(hole);
    let lifted = Instant::now();
    eprintln!(
        "after a 30 s blackhole, next line in {:?}",
        first_after(&mut got, lifted)
    );
    while let Ok((_, line)) = lines.recv_timeout(Duration::from_secs(60)) {
        got.push(line);
    }
    let status = child.wait().expect("wait for rock");
    let expected: Vec<String> = (1..=LINES).map(|i| format!("line {i}")).collect();
    assert_eq!(got, expected, "lines lost, duplicated or reordered");
    assert_eq!(status.code(), Some(7), "the remote command's exit status");
    wait_gone(rockd, Duration::from_secs(20));
}

/// Regression: ssh's own keepalives (`ServerAliveInterval`, set in many
/// users' configs) ended sessions a few seconds into an outage that rock
/// was riding out. rock tells the inner ssh to leave the link's liveness to
/// rock, even over the user's own `-o`.
#[test]
fn server_alive_interval_does_not_end_a_session_during_an_outage() {
    require_root("iptables on the rock link");
    let sshd = Sshd::start();
    const LINES: u32 = 150;
    let script = format!("for i in $(seq 1 {LINES}); do echo line $i; sleep 0.1; done; exit 3");
    let mut child = rock(&sshd, &[], "ssh")
        .args([
            "-o",
            "ServerAliveInterval=1",
            "-o",
            "ServerAliveCountMax=2",
            "rocktest",
            &script,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rock");
    let lines = timed_stdout_lines(&mut child);
    let mut got = Vec::new();
    let (_, first) = lines
        .recv_timeout(Duration::from_secs(60))
        .expect("the session never started");
    got.push(first);
    let port = wait_link_port(child.id());
    // Three times what ssh's keepalives would allow (1 s x 2 unanswered).
    let hole = Blackhole::new(port);
    std::thread::sleep(Duration::from_secs(9));
    drop(hole);
    while let Ok((_, line)) = lines.recv_timeout(Duration::from_secs(60)) {
        got.push(line);
    }
    let out = child.wait_with_output().expect("wait for rock");
    let expected: Vec<String> = (1..=LINES).map(|i| format!("line {i}")).collect();
    assert_eq!(
        got,
        expected,
        "lines lost, duplicated or reordered: {}",
        text(&out)
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
}

/// Waits for process `pid` to disappear.
fn wait_gone(pid: u32, limit: Duration) {
    let end = Instant::now() + limit;
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            Instant::now() < end,
            "process {pid} is still running after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Faults on rock's direct TCP link to rockd.
struct DirectLink {
    sshd_port: u16,
    /// rockd's port, once rock's link to it is seen; every later link goes
    /// to the same port.
    port: Option<u16>,
}

impl LinkFaults for DirectLink {
    type Link = u16;
    type Hole = Blackhole;

    fn find(&mut self, rock_pid: u32) -> Option<u16> {
        let sshd_port = self.sshd_port;
        self.port = self
            .port
            .or_else(|| link_port_of(rock_pid).filter(|&p| p != sshd_port));
        self.port
    }

    fn reset(&self, port: &u16) {
        reset_link(*port);
    }

    fn blackhole(&self, port: &u16) -> Blackhole {
        Blackhole::new(*port)
    }
}

/// Runs `cmd` (a transfer through rock) with its link reset ten times and
/// blackholed once ([`transfer::transfer_under_faults`]).
fn transfer_under_faults(
    sshd: &Sshd,
    cmd: &mut Command,
    total: u64,
    progress: impl Fn() -> u64,
) -> Output {
    let faults = DirectLink {
        sshd_port: sshd.port(),
        port: None,
    };
    transfer::transfer_under_faults(cmd, total, progress, Duration::from_secs(300), faults)
}

const BIG: u64 = 256 << 20;

#[test]
fn scp_upload_and_download_survive_resets_and_a_blackhole() {
    require_root("ss -K and iptables on the rock link");
    let sshd = Sshd::start();
    let dir = common::temp_dir();
    let original = dir.path().join("original");
    common::random_file(&original, BIG);
    let sum = common::sha256_file(&original);

    let uploaded = dir.path().join("uploaded");
    let out = transfer_under_faults(
        &sshd,
        rock(&sshd, &[], "scp")
            .arg(&original)
            .arg(format!("rocktest:{}", uploaded.display())),
        BIG,
        || file_len(&uploaded),
    );
    assert_exit(&out, 0, &text(&out));
    assert_eq!(common::sha256_file(&uploaded), sum, "upload corrupted");

    let downloaded = dir.path().join("downloaded");
    let out = transfer_under_faults(
        &sshd,
        rock(&sshd, &[], "scp")
            .arg(format!("rocktest:{}", original.display()))
            .arg(&downloaded),
        BIG,
        || file_len(&downloaded),
    );
    assert_exit(&out, 0, &text(&out));
    assert_eq!(common::sha256_file(&downloaded), sum, "download corrupted");
}

#[test]
fn sftp_put_and_get_survive_resets_and_a_blackhole() {
    require_root("ss -K and iptables on the rock link");
    let sshd = Sshd::start();
    let dir = common::temp_dir();
    let original = dir.path().join("original");
    common::random_file(&original, BIG);
    let sum = common::sha256_file(&original);
    let (put, got) = (dir.path().join("put"), dir.path().join("got"));

    for (batch, watched) in [
        (
            format!("put {} {}\n", original.display(), put.display()),
            &put,
        ),
        (
            format!("get {} {}\n", original.display(), got.display()),
            &got,
        ),
    ] {
        let batch_file = dir.path().join("batch");
        std::fs::write(&batch_file, batch).unwrap();
        let out = transfer_under_faults(
            &sshd,
            rock(&sshd, &[], "sftp")
                .arg("-b")
                .arg(&batch_file)
                .arg("rocktest"),
            BIG,
            || file_len(watched),
        );
        assert_exit(&out, 0, &text(&out));
        assert_eq!(
            common::sha256_file(watched),
            sum,
            "{} corrupted",
            watched.display()
        );
    }
}

/// `rock -d ssh -F <config> <args...>` for a pty: interactive, so no
/// BatchMode, and no agent.
fn interactive_ssh(config: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(ROCK);
    cmd.arg("--rockd")
        .arg(ROCKD)
        .args(["-d", "ssh", "-F"])
        .arg(config)
        .args(["-o", "BatchMode=no"])
        .args(args)
        .env_remove("SSH_AUTH_SOCK");
    cmd
}

/// The password user's login, keys off, running `remote`.
fn password_login(sshd: &Sshd, remote: &str) -> Command {
    let user = format!("User={}", common::PASSWORD_USER);
    interactive_ssh(
        sshd.ssh_config(),
        &[
            "-o",
            &user,
            "-o",
            "PubkeyAuthentication=no",
            "rocktest",
            remote,
        ],
    )
}

#[test]
fn a_password_is_typed_once() {
    let sshd = Sshd::builder().with_password_user().start();
    let mut pty = PtyChild::spawn(&mut password_login(&sshd, "echo logged in as $(id -un)"));
    // "user@host's password: " or, through keyboard-interactive,
    // "(user@host) Password: ".
    pty.expect("assword: ", Duration::from_secs(30));
    pty.send(&format!("{}\n", common::PASSWORD));
    let status = pty.wait(Duration::from_secs(60));
    assert!(
        pty.seen
            .contains(&format!("logged in as {}", common::PASSWORD_USER)),
        "{}",
        pty.seen
    );
    assert_eq!(
        pty.seen.matches("assword").count(),
        1,
        "prompted more than once:\n{}",
        pty.seen
    );
    assert!(status.success(), "{status:?}\n{}", pty.seen);
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_finished_session_leaves_no_process_behind() {
    require_root("the sshd fixture");
    let sshd = Sshd::start();
    let out = run_with_timeout(
        rock(&sshd, &[], "ssh").args(["rocktest", "echo done"]),
        Duration::from_secs(60),
    );
    assert_exit(&out, 0, &text(&out));
    // sshd is a subreaper: a detached rockd would still be its descendant.
    sshd.wait_no_descendants(Duration::from_secs(15));
}

#[test]
fn an_unknown_host_key_is_refused_with_advice_that_records_it_where_rock_looks() {
    require_root("the sshd fixture");
    let sshd = Sshd::start();
    let unknown = sshd.known_hosts_without_key();
    let known_hosts = format!("UserKnownHostsFile={}", unknown.display());
    let rock_with_the_file = || {
        let mut cmd = rock(&sshd, &[], "ssh");
        cmd.args(["-o", &known_hosts]);
        cmd
    };
    let out = run_with_timeout(
        rock_with_the_file().args(["rocktest", "echo must not run"]),
        Duration::from_secs(60),
    );
    assert_exit(&out, 255, &text(&out));
    let err = stderr(&out);
    eprintln!("{err}");
    assert!(err.contains("SHA256:"), "no fingerprint shown:\n{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("must not run"));
    assert!(
        !sshd.log().contains("Accepted"),
        "logged in despite the unknown key"
    );

    // Regression: the advice was `ssh rocktest`, which records the key in
    // ~/.ssh/known_hosts, not in the file rock was told to look in.
    let advised = err
        .lines()
        .skip_while(|line| !line.contains("connecting once with plain ssh"))
        .nth(1)
        .unwrap_or_else(|| panic!("no command advised:\n{err}"))
        .trim()
        .to_owned();
    assert!(advised.starts_with("ssh "), "{advised}");
    assert!(advised.ends_with(" rocktest"), "{advised}");
    assert!(advised.contains(&known_hosts), "{advised}");
    assert!(
        advised.contains(&sshd.ssh_config().display().to_string()),
        "the user's -F is dropped: {advised}"
    );

    // Follow it, accepting the key as the user would after checking the
    // fingerprint (the fixture's config says StrictHostKeyChecking yes).
    let (program, options) = advised.split_once(' ').expect("ssh and its options");
    let follow = format!("{program} -o StrictHostKeyChecking=accept-new {options} true");
    let out = run_with_timeout(
        Command::new("sh")
            .args(["-c", &follow])
            .stdin(Stdio::null())
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("SSH_ASKPASS"),
        Duration::from_secs(60),
    );
    assert_exit(&out, 0, &format!("{follow}\n{}", text(&out)));

    let out = run_with_timeout(
        rock_with_the_file().args(["rocktest", "echo known now"]),
        Duration::from_secs(60),
    );
    assert_exit(&out, 0, &text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("known now"),
        "{}",
        text(&out)
    );
}

/// What ssh prints between password tries.
const TRY_AGAIN: &str = "Permission denied, please try again.";

/// sshd with password authentication alone (no PAM, no
/// keyboard-interactive) for the password user: OpenSSH's
/// `user@host's password: ` path, with `Permission denied, please try
/// again.` between tries.
fn password_only_sshd() -> Sshd {
    require_root("sshd checks another user's password only when it runs as root");
    assert!(
        common::user_exists(common::PASSWORD_USER),
        "the password test user `{}` does not exist: run scripts/setup (as root)",
        common::PASSWORD_USER
    );
    Sshd::builder()
        .password_auth(true)
        .allow_users([common::current_user(), common::PASSWORD_USER.to_owned()])
        .start()
}

#[test]
fn a_wrong_password_then_the_right_one_logs_in_and_the_inner_ssh_asks_nothing() {
    let sshd = password_only_sshd();
    let mut pty = PtyChild::spawn(&mut password_login(&sshd, "echo logged in as $(id -un)"));
    pty.expect_nth("'s password: ", 1, Duration::from_secs(30));
    pty.send("not the password\n");
    pty.expect_nth("'s password: ", 2, Duration::from_secs(30));
    pty.send(&format!("{}\n", common::PASSWORD));
    let status = pty.wait(Duration::from_secs(60));
    assert!(status.success(), "{status:?}\n{}", pty.seen);
    assert!(
        pty.seen
            .contains(&format!("logged in as {}", common::PASSWORD_USER)),
        "{}",
        pty.seen
    );
    // Two prompts with ssh's words between them; the inner ssh was
    // answered with the password that worked (a third prompt, or a
    // refused login, would mean the wrong one was kept).
    assert_eq!(pty.seen.matches("assword").count(), 2, "{}", pty.seen);
    let again = pty.seen.find(TRY_AGAIN).expect("ssh's words between tries");
    let second = pty.seen.rfind("'s password: ").expect("the second prompt");
    assert!(again < second, "{}", pty.seen);
}

#[test]
fn three_wrong_passwords_exit_255_with_a_clear_message_and_rock_reads_every_try() {
    let sshd = password_only_sshd();
    let mut pty = PtyChild::spawn(&mut password_login(&sshd, "echo must not run"));
    for n in 1..=3 {
        // Each try is typed once its prompt shows, as a person would:
        // before the fix the second landed in the shell rock returned to.
        pty.expect_nth("'s password: ", n, Duration::from_secs(30));
        pty.send(&format!("wrong-try-{n}\n"));
    }
    let status = pty.wait(Duration::from_secs(60));
    assert_eq!(status.code(), Some(255), "{}", pty.seen);
    assert!(
        pty.seen.to_lowercase().contains("permission denied"),
        "no clear message:\n{}",
        pty.seen
    );
    assert_eq!(pty.seen.matches("'s password: ").count(), 3, "{}", pty.seen);
    assert_eq!(pty.seen.matches(TRY_AGAIN).count(), 2, "{}", pty.seen);
    // Read by rock with echo off: none of it was echoed, so none was left
    // for whatever reads the terminal next.
    assert!(!pty.seen.contains("wrong-try-"), "{}", pty.seen);
    assert!(!pty.seen.contains("must not run"));
}

#[test]
fn number_of_password_prompts_sets_the_tries() {
    let sshd = password_only_sshd();
    let user = format!("User={}", common::PASSWORD_USER);
    for tries in [1, 2] {
        let prompts = format!("NumberOfPasswordPrompts={tries}");
        let mut pty = PtyChild::spawn(&mut interactive_ssh(
            sshd.ssh_config(),
            &[
                "-o",
                &user,
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                &prompts,
                "rocktest",
                "echo must not run",
            ],
        ));
        for n in 1..=tries {
            pty.expect_nth("'s password: ", n, Duration::from_secs(30));
            pty.send("not the password\n");
        }
        let status = pty.wait(Duration::from_secs(60));
        assert_eq!(status.code(), Some(255), "{}", pty.seen);
        assert_eq!(
            pty.seen.matches("'s password: ").count(),
            tries,
            "{prompts}:\n{}",
            pty.seen
        );
        assert!(pty.seen.to_lowercase().contains("permission denied"));
    }
}

/// Whether `line` (the terminal's line, trimmed) is a password prompt:
/// ssh's `user@host's password: ` or keyboard-interactive's
/// `(user@host) Password: `.
fn is_password_prompt(line: &str) -> bool {
    line.trim().ends_with("assword:")
}

/// How many password prompts `seen` shows: each on a line of its own once
/// answered, the last perhaps still waiting at the end.
fn password_prompts(seen: &str) -> usize {
    seen.split('\n')
        .filter(|line| is_password_prompt(line))
        .count()
}

/// Runs `cmd` on a pty and answers every password prompt wrongly until it
/// exits; returns its exit status, the prompts and ssh's words between
/// tries in the order they showed, and everything it showed.
fn refuse_every_try(cmd: &mut Command) -> (Option<i32>, Vec<String>, String) {
    let mut pty = PtyChild::spawn(cmd);
    let mut asked = 0;
    while pty.expect_or_exit(
        "the next password prompt",
        |seen| password_prompts(seen) > asked,
        Duration::from_secs(60),
    ) {
        asked += 1;
        assert!(asked <= 10, "asked without end:\n{}", pty.seen);
        pty.send("not the password\n");
    }
    let status = pty.wait(Duration::from_secs(30));
    let shown = pty
        .seen
        .lines()
        .map(str::trim)
        .filter(|line| is_password_prompt(line) || line.contains(TRY_AGAIN))
        .map(ToOwned::to_owned)
        .collect();
    (status.code(), shown, pty.seen.clone())
}

#[test]
fn wrong_passwords_are_asked_as_often_as_plain_ssh_asks() {
    // Keyboard-interactive (PAM) and password: ssh tries each
    // NumberOfPasswordPrompts times, until sshd's MaxAuthTries.
    let sshd = Sshd::builder().with_password_user().start();
    let mut ssh = sshd.command("ssh");
    ssh.args(["-o", "BatchMode=no", "-o"])
        .arg(format!("User={}", common::PASSWORD_USER))
        .args([
            "-o",
            "PubkeyAuthentication=no",
            "rocktest",
            "echo must not run",
        ]);
    let (ssh_status, ssh_shown, ssh_seen) = refuse_every_try(&mut ssh);
    let (rock_status, rock_shown, rock_seen) =
        refuse_every_try(&mut password_login(&sshd, "echo must not run"));
    assert_eq!(ssh_status, Some(255), "{ssh_seen}");
    assert_eq!(rock_status, Some(255), "{rock_seen}");
    assert!(ssh_shown.len() > 1, "ssh asked once only?\n{ssh_seen}");
    assert_eq!(
        rock_shown, ssh_shown,
        "rock asked otherwise than ssh\n--- rock:\n{rock_seen}\n--- ssh:\n{ssh_seen}"
    );
}

#[test]
fn a_missing_rockd_is_reported_with_the_paths_tried() {
    require_root("the sshd fixture");
    let sshd = Sshd::start();
    let mut cmd = Command::new(ROCK);
    cmd.args(["--rockd", "/nonexistent/rockd", "-d", "ssh", "-F"])
        .arg(sshd.ssh_config())
        .args(["rocktest", "true"])
        .stdin(Stdio::null())
        .env("PATH", "/usr/bin:/bin");
    let out = run_with_timeout(&mut cmd, Duration::from_secs(60));
    assert_exit(&out, 255, &text(&out));
    let err = stderr(&out);
    assert!(err.contains("/nonexistent/rockd"), "{err}");
    assert!(err.contains("rockd"), "{err}");
    sshd.wait_no_descendants(Duration::from_secs(15));
}

#[test]
fn a_link_dead_past_the_suspension_timeout_ends_both_sides() {
    require_root("iptables on the rock link");
    let sshd = Sshd::start();
    let (child, lines) = spawn_script(
        &sshd,
        &["--suspend-timeout", "5"],
        "echo started; sleep 300",
    );
    lines
        .recv_timeout(Duration::from_secs(30))
        .expect("the session started");
    let port = wait_link_port(child.id());
    let rockd = listener_pid(port).expect("rockd listens");
    let _hole = Blackhole::new(port);
    let start = Instant::now();
    let out = {
        let waiter = std::thread::spawn(move || child.wait_with_output().expect("wait"));
        while !waiter.is_finished() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "rock did not give up"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        waiter.join().unwrap()
    };
    eprintln!("rock gave up after {:?}", start.elapsed());
    assert_eq!(out.status.code(), Some(255), "{}", text(&out));
    assert!(
        stderr(&out).contains("suspension timeout"),
        "{}",
        text(&out)
    );
    wait_gone(rockd, Duration::from_secs(30));
    // The remote `sleep` may outlive its session, as with plain ssh (sshd
    // does not signal a command without a pty); rockd must not.
    assert!(
        sshd.descendants()
            .iter()
            .all(|p| !p.cmdline.contains("rockd")),
        "rockd left behind: {:?}",
        sshd.descendants()
    );
}

#[test]
fn hostile_connections_to_rockd_do_not_disturb_a_live_session() {
    require_root("the sshd fixture");
    let sshd = Sshd::start();
    const LINES: u32 = 60;
    let script = format!("for i in $(seq 1 {LINES}); do echo line $i; sleep 0.05; done");
    let (mut child, lines) = spawn_script(&sshd, &[], &script);
    let mut got = vec![
        lines
            .recv_timeout(Duration::from_secs(30))
            .expect("started")
            .1,
    ];
    let port = wait_link_port(child.id());
    let hostile = std::thread::spawn(move || {
        use std::io::Write as _;
        use std::net::TcpStream;
        let mut held = Vec::new();
        // Garbage, a hello for another session, silence, and a flood.
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: rockd\r\n\r\n");
        held.push(s);
        let mut hello = b"ROCK\x01\x00\x01\x00\x01".to_vec();
        hello.extend_from_slice(&[0x77; 16 + 32]);
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _ = s.write_all(&hello);
        held.push(s);
        for _ in 0..50 {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                held.push(s);
            }
        }
        std::thread::sleep(Duration::from_secs(2));
        held.len()
    });
    while let Ok((_, line)) = lines.recv_timeout(Duration::from_secs(30)) {
        got.push(line);
    }
    assert!(
        hostile.join().unwrap() > 40,
        "the hostile connections were not made"
    );
    let status = child.wait().unwrap();
    let expected: Vec<String> = (1..=LINES).map(|i| format!("line {i}")).collect();
    assert_eq!(got, expected);
    assert!(status.success());
}

/// An echo server on loopback for one connection at a time; returns its port.
fn echo_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            std::thread::spawn(move || {
                let mut out = conn.try_clone().unwrap();
                let _ = std::io::copy(&mut conn, &mut out);
            });
        }
    });
    port
}

#[test]
fn a_forwarded_port_keeps_its_connection_across_a_reset() {
    use std::io::{Read, Write};
    require_root("ss -K on the rock link");
    let sshd = Sshd::start();
    let (echo, local) = (echo_server(), common::rocked::free_port());
    let mut child = rock(&sshd, &[], "ssh")
        .args(["-o", "ExitOnForwardFailure=yes", "-L"])
        .arg(format!("127.0.0.1:{local}:127.0.0.1:{echo}"))
        .args(["rocktest", "echo forwarding; sleep 30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rock");
    let lines = timed_stdout_lines(&mut child);
    lines
        .recv_timeout(Duration::from_secs(30))
        .expect("session up");
    let port = wait_link_port(child.id());
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", local)).expect("forwarded port");
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut round = |i: u32| {
        let msg = format!("message {i}\n");
        conn.write_all(msg.as_bytes()).unwrap();
        let mut back = vec![0u8; msg.len()];
        conn.read_exact(&mut back)
            .expect("echo through the forwarded port");
        assert_eq!(back, msg.as_bytes());
    };
    round(1);
    reset_link(port);
    round(2);
    reset_link(port);
    round(3);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn agent_forwarding_works_through_rock() {
    require_root("the sshd fixture");
    let sshd = Sshd::start();
    let dir = common::temp_dir();
    let sock = dir.path().join("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .args(["-D", "-a"])
        .arg(&sock)
        .stdout(Stdio::null())
        .spawn()
        .expect("start ssh-agent");
    let end = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(Instant::now() < end, "ssh-agent did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let added = Command::new("ssh-add")
        .arg(sshd.client_key())
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    assert!(added.status.success(), "{added:?}");
    let out = run_with_timeout(
        rock(&sshd, &[], "ssh")
            .env("SSH_AUTH_SOCK", &sock)
            .args(["-A", "rocktest", "ssh-add -l"]),
        Duration::from_secs(60),
    );
    let _ = agent.kill();
    let _ = agent.wait();
    assert_exit(&out, 0, &text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ED25519"),
        "the forwarded agent did not list the key:\n{}",
        text(&out)
    );
}

#[test]
fn the_escape_sequence_ends_the_session_and_rockd() {
    require_root("the sshd fixture");
    let sshd = Sshd::start();
    let mut cmd = Command::new(ROCK);
    cmd.arg("--rockd")
        .arg(ROCKD)
        .args(["-d", "ssh", "-F"])
        .arg(sshd.ssh_config())
        .args(["-tt", "rocktest", "echo ready; sleep 120"])
        .env_remove("SSH_AUTH_SOCK");
    let mut pty = PtyChild::spawn(&mut cmd);
    pty.expect("ready", Duration::from_secs(30));
    pty.send("\r~.");
    let status = pty.wait(Duration::from_secs(30));
    // ssh's own status for `~.`; its "closed" notice is silenced by the
    // fixture's LogLevel ERROR.
    assert_eq!(status.code(), Some(255), "{}", pty.seen);
    assert!(
        !pty.seen.contains("rock:"),
        "rock complained:\n{}",
        pty.seen
    );
    let end = Instant::now() + Duration::from_secs(20);
    while sshd
        .descendants()
        .iter()
        .any(|p| p.cmdline.contains("rockd"))
    {
        assert!(
            Instant::now() < end,
            "rockd still runs: {:?}",
            sshd.descendants()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn dash_d_user_sets_the_remote_login() {
    let sshd = Sshd::builder().with_password_user().start();
    let mut cmd = Command::new(ROCK);
    cmd.arg("--rockd")
        .arg(ROCKD)
        .args(["-d", common::PASSWORD_USER, "ssh", "-F"])
        .arg(sshd.ssh_config())
        .args(["rocktest", "id -un"])
        .stdin(Stdio::null());
    let out = run_with_timeout(&mut cmd, Duration::from_secs(60));
    assert_exit(&out, 0, &text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        common::PASSWORD_USER,
        "{}",
        text(&out)
    );
}

/// A session whose login completes and whose command ends at once with
/// ssh's own failure status gets no word from rock: rockd saw the login
/// (the test user is not root, so rockd can tell), and rock explains only
/// logins that never completed (`netns.rs` has the refused one).
#[test]
fn a_quick_status_255_after_a_login_is_not_taken_for_a_refusal() {
    let sshd = Sshd::builder().with_password_user().start();
    let mut cmd = Command::new(ROCK);
    cmd.arg("--rockd")
        .arg(ROCKD)
        .args(["-d", common::PASSWORD_USER, "ssh", "-F"])
        .arg(sshd.ssh_config())
        .args(["rocktest", "exit 255"])
        .stdin(Stdio::null());
    let out = run_with_timeout(&mut cmd, Duration::from_secs(60));
    assert_exit(&out, 255, &text(&out));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("rock:"),
        "rock spoke: {}",
        text(&out)
    );
}

#[test]
fn an_unreachable_host_exits_255_naming_it() {
    let port = common::rocked::free_port(); // nothing listens there
    let dir = common::temp_dir();
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        format!("Host nowhere\n  HostName 127.0.0.1\n  Port {port}\n  BatchMode yes\n"),
    )
    .unwrap();
    let mut cmd = Command::new(ROCK);
    cmd.args(["-d", "ssh", "-F"])
        .arg(&config)
        .args(["nowhere", "true"])
        .stdin(Stdio::null());
    let out = run_with_timeout(&mut cmd, Duration::from_secs(60));
    assert_exit(&out, 255, &text(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&port.to_string()) && err.contains("127.0.0.1"),
        "{err}"
    );
    // Regression: connection errors lacked the prefix other errors have.
    assert!(err.starts_with("rock: "), "{err}");
}

/// Regression: rock's own connections ignored `-4`, `-6` and
/// `AddressFamily`, so `rock -d ssh -6` reached an IPv4-only host that ssh
/// itself refuses. Now every connection rock makes keeps ssh's rule.
#[test]
fn address_family_rules_rocks_own_connections_as_ssh_s() {
    require_root("the sshd fixture");
    let sshd = Sshd::start();
    let config = sshd.ssh_config().display().to_string();
    // The fixture's sshd is on 127.0.0.1 only.
    let plain = run_with_timeout(
        Command::new("ssh")
            .args(["-F", &config, "-6", "rocktest", "true"])
            .stdin(Stdio::null()),
        Duration::from_secs(30),
    );
    assert_exit(&plain, 255, &text(&plain));
    let out = run_with_timeout(
        rock(&sshd, &[], "ssh").args(["-6", "rocktest", "true"]),
        Duration::from_secs(30),
    );
    assert_exit(&out, 255, &text(&out));
    assert!(
        stderr(&out).contains("has no IPv6 address"),
        "{}",
        text(&out)
    );
    // -4 is the family the host has: it works.
    let out = run_with_timeout(
        rock(&sshd, &[], "ssh").args(["-4", "rocktest", "echo v4"]),
        Duration::from_secs(60),
    );
    assert_exit(&out, 0, &text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "v4");
}

#[test]
fn an_incompatible_rockd_is_reported_with_its_version() {
    require_root("the sshd fixture");
    let sshd = Sshd::start();
    let dir = common::temp_dir();
    let old = dir.path().join("old-rockd");
    // A rockd from a future (or ancient) release: speaks link protocol 9 only.
    std::fs::write(
        &old,
        "#!/bin/sh\nhead -n 4 >/dev/null\necho 'rockd-ready 1 version 9.9.9 proto 9-9 port 1'\n",
    )
    .unwrap();
    std::fs::set_permissions(&old, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut cmd = rock_command(&sshd, &old, &[], "ssh");
    cmd.args(["rocktest", "echo must not run"]);
    let out = run_with_timeout(&mut cmd, Duration::from_secs(60));
    assert_exit(&out, 255, &text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("9.9.9") && err.contains("matching rockd"),
        "{err}"
    );
}

#[test]
fn a_key_passphrase_is_typed_once() {
    require_root("the sshd fixture");
    let sshd = Sshd::start();
    let dir = common::temp_dir();
    // The fixture's authorised key, encrypted with a passphrase.
    let key = dir.path().join("id_encrypted");
    std::fs::copy(sshd.client_key(), &key).unwrap();
    let reencrypted = Command::new("ssh-keygen")
        .args(["-q", "-p", "-P", "", "-N", "open sesame", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(reencrypted.status.success(), "{reencrypted:?}");
    let config = sshd.ssh_config_with("IdentityFile", &key.display().to_string());
    let mut pty = PtyChild::spawn(&mut interactive_ssh(
        &config,
        &["rocktest", "echo unlocked"],
    ));
    pty.expect("Enter passphrase for key", Duration::from_secs(30));
    pty.send("open sesame\n");
    let status = pty.wait(Duration::from_secs(60));
    assert!(pty.seen.contains("unlocked"), "{}", pty.seen);
    assert_eq!(
        pty.seen.matches("passphrase").count(),
        1,
        "asked more than once:\n{}",
        pty.seen
    );
    assert!(status.success(), "{status:?}\n{}", pty.seen);
}

#[test]
fn a_wrong_passphrase_then_the_right_one_works() {
    require_root("the sshd fixture");
    let sshd = Sshd::start();
    let dir = common::temp_dir();
    // The fixture's authorised key, encrypted with a passphrase.
    let key = dir.path().join("id_encrypted");
    std::fs::copy(sshd.client_key(), &key).unwrap();
    let reencrypted = Command::new("ssh-keygen")
        .args(["-q", "-p", "-P", "", "-N", "open sesame", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(reencrypted.status.success(), "{reencrypted:?}");
    let config = sshd.ssh_config_with("IdentityFile", &key.display().to_string());
    let mut pty = PtyChild::spawn(&mut interactive_ssh(
        &config,
        &["rocktest", "echo unlocked"],
    ));
    pty.expect_nth("Enter passphrase for key", 1, Duration::from_secs(30));
    pty.send("open sesame street\n");
    pty.expect_nth("Enter passphrase for key", 2, Duration::from_secs(30));
    pty.send("open sesame\n");
    let status = pty.wait(Duration::from_secs(60));
    assert!(status.success(), "{status:?}\n{}", pty.seen);
    assert!(pty.seen.contains("unlocked"), "{}", pty.seen);
    // The inner ssh was answered with the passphrase that worked.
    assert_eq!(
        pty.seen.matches("passphrase").count(),
        2,
        "asked otherwise than twice:\n{}",
        pty.seen
    );
}

/// Size of each file in the several-sources copy: large enough that a
/// reset at each of its first three fifths lands while the copy runs.
const EACH: u64 = 96 << 20;

#[test]
fn scp_of_several_remote_files_carries_each_connection_through_resets() {
    require_root("ss -K on the rock links");
    let sshd = Sshd::start();
    let dir = common::temp_dir();
    let sources = [dir.path().join("a.bin"), dir.path().join("b.bin")];
    for source in &sources {
        common::random_file(source, EACH);
    }
    let into = dir.path().join("into");
    std::fs::create_dir(&into).expect("mkdir");
    let copies = [into.join("a.bin"), into.join("b.bin")];
    // scp runs one ssh per remote source, one after the other: each is a
    // session of its own, with its own rockd and links.
    let (pid, waiter) = transfer::spawn_waited(
        rock(&sshd, &[], "scp")
            .arg(format!("rocktest:{}", sources[0].display()))
            .arg(format!("rocktest:{}", sources[1].display()))
            .arg(&into),
    );
    let mut resets = [0u64; 2];
    let end = Instant::now() + Duration::from_secs(300);
    while !waiter.is_finished() {
        assert!(Instant::now() < end, "the copy did not finish in 300 s");
        for (copy, made) in copies.iter().zip(resets.iter_mut()) {
            let done = file_len(copy);
            // At a fifth, two fifths and three fifths: the last leaves two
            // fifths to go, room for a slow turn of this loop on a loaded
            // machine (a quarter was once outrun).
            let due = *made < 3 && done >= (*made + 1) * EACH / 5 && done < EACH;
            // rock's link to this copy's rockd; not a bootstrap to sshd.
            if let Some(port) = link_port_of(pid).filter(|&p| due && p != sshd.port()) {
                reset_link(port);
                *made += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = waiter.join().expect("waiter thread");
    assert_exit(&out, 0, &text(&out));
    assert_eq!(
        resets,
        [3, 3],
        "the copies outran the resets\n{}",
        text(&out)
    );
    for (source, copy) in sources.iter().zip(&copies) {
        assert_eq!(
            common::sha256_file(copy),
            common::sha256_file(source),
            "{} corrupted",
            copy.display()
        );
    }
    // Both sessions' rockds are gone.
    sshd.wait_no_descendants(Duration::from_secs(15));
}

#[test]
fn several_connections_of_one_command_ask_for_the_password_once() {
    let sshd = Sshd::builder().with_password_user().start();
    let dir = common::temp_dir();
    let user = format!("User={}", common::PASSWORD_USER);
    let mut cmd = common::rock_base(ROCKD);
    cmd.args(["-d", "scp", "-F"])
        .arg(sshd.ssh_config())
        .args(["-o", "BatchMode=no", "-o", &user])
        .args(["-o", "PubkeyAuthentication=no"])
        .args(["rocktest:/etc/hostname", "rocktest:/etc/passwd"])
        .arg(dir.path());
    let mut pty = PtyChild::spawn(&mut cmd);
    pty.expect("assword: ", Duration::from_secs(30));
    pty.send(&format!("{}\n", common::PASSWORD));
    let status = pty.wait(Duration::from_secs(60));
    assert!(status.success(), "{status:?}\n{}", pty.seen);
    assert_eq!(
        pty.seen.matches("assword").count(),
        1,
        "prompted more than once:\n{}",
        pty.seen
    );
    for name in ["hostname", "passwd"] {
        let copy = std::fs::read(dir.path().join(name)).expect("the copy");
        let original = std::fs::read(Path::new("/etc").join(name)).expect("the original");
        assert_eq!(copy, original, "{name} differs");
    }
}

/// rock with its configuration directory set to `config_home`.
fn rock_with_config(config_home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(ROCK);
    cmd.args(args)
        .env("XDG_CONFIG_HOME", config_home)
        .stdin(Stdio::null())
        .env_remove("SSH_AUTH_SOCK");
    cmd
}

#[test]
fn a_host_profile_supplies_rockd_path() {
    require_root("the sshd fixture");
    let sshd = Sshd::start();
    let home = common::temp_dir();
    std::fs::create_dir_all(home.path().join("rock")).unwrap();
    std::fs::write(
        home.path().join("rock/config.toml"),
        format!(
            "[[profile]]\nhosts = [\"rock*\"]\nrockd_path = \"{ROCKD}\"\nlink_timeout = \"9s\"\n"
        ),
    )
    .unwrap();
    let config = sshd.ssh_config().display().to_string();
    let mut cmd = rock_with_config(
        home.path(),
        &["-d", "ssh", "-F", &config, "rocktest", "echo via profile"],
    );
    cmd.env("PATH", "/usr/bin:/bin");
    let out = run_with_timeout(&mut cmd, Duration::from_secs(60));
    assert_exit(&out, 0, &text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("via profile"));

    let out = run_with_timeout(
        &mut rock_with_config(home.path(), &["config", "check", "rocktest"]),
        Duration::from_secs(10),
    );
    assert_exit(&out, 0, &text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains(ROCKD) && shown.contains("[[profile]] 1"),
        "{shown}"
    );
    assert!(shown.contains("link_timeout = \"9s\""), "{shown}");
}

#[test]
fn a_mistake_in_the_config_file_is_reported_with_its_place() {
    let home = common::temp_dir();
    std::fs::create_dir_all(home.path().join("rock")).unwrap();
    let file = home.path().join("rock/config.toml");
    std::fs::write(
        &file,
        "[defaults]\nsuspend_timeout = \"2h\"\nlink_timout = \"9s\"\n",
    )
    .unwrap();
    for args in [
        &["-d", "ssh", "somewhere", "true"][..],
        &["config", "check"][..],
    ] {
        let out = run_with_timeout(
            &mut rock_with_config(home.path(), args),
            Duration::from_secs(30),
        );
        assert_ne!(out.status.code(), Some(0), "{}", text(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&file.display().to_string())
                && err.contains("line 3")
                && err.contains("link_timout"),
            "{err}"
        );
    }
}

/// Regression: values that parse but that no session can run with
/// (`suspend_timeout = "0s"` broke sessions with a confusing ssh error)
/// are refused by `rock -d` and `rock config check HOST` alike, naming the
/// key and the file, before anything connects.
#[test]
fn settings_no_session_can_run_with_are_refused_by_rock_d_and_config_check_alike() {
    let home = common::temp_dir();
    std::fs::create_dir_all(home.path().join("rock")).unwrap();
    let file = home.path().join("rock/config.toml");
    for (toml, key) in [
        ("[defaults]\nsuspend_timeout = \"0s\"\n", "suspend_timeout"),
        (
            "[defaults]\nlink_timeout = \"0s\"\nheartbeat_interval = \"10s\"\n",
            "link_timeout",
        ),
        ("[defaults]\nreplay_buffer = \"0\"\n", "replay_buffer"),
        (
            "[[profile]]\nhosts = [\"some*\"]\nheartbeat_interval = \"0s\"\n",
            "heartbeat_interval",
        ),
    ] {
        std::fs::write(&file, toml).unwrap();
        for args in [
            &["-d", "ssh", "somewhere", "true"][..],
            &["config", "check", "somewhere"][..],
        ] {
            let out = run_with_timeout(
                &mut rock_with_config(home.path(), args),
                Duration::from_secs(30),
            );
            assert_ne!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
            let err = stderr(&out);
            assert!(
                err.contains(&format!("{key} = "))
                    && err.contains(&file.display().to_string())
                    && err.contains("somewhere"),
                "{args:?} with {toml:?}: {err}"
            );
        }
        // The same file, for a host no profile refuses, is fine.
        if key == "heartbeat_interval" {
            let out = run_with_timeout(
                &mut rock_with_config(home.path(), &["config", "check", "elsewhere"]),
                Duration::from_secs(30),
            );
            assert_exit(&out, 0, &text(&out));
        }
    }
    let out = run_with_timeout(
        &mut rock_with_config(
            home.path(),
            &["--suspend-timeout", "0", "-d", "ssh", "elsewhere", "true"],
        ),
        Duration::from_secs(30),
    );
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stderr(&out).contains("suspend_timeout = \"0s\" (command line --suspend-timeout)"),
        "{}",
        text(&out)
    );
}

/// Stops the connection-sharing master of `config`, if one runs.
struct MasterGuard<'a>(&'a Path);

impl Drop for MasterGuard<'_> {
    fn drop(&mut self) {
        let _ = Command::new("ssh")
            .arg("-F")
            .arg(self.0)
            .args(["-O", "exit", "rocktest"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Whether a connection-sharing master of `config` answers.
fn master_runs(config: &Path) -> bool {
    Command::new("ssh")
        .arg("-F")
        .arg(config)
        .args(["-O", "check", "rocktest"])
        .stdin(Stdio::null())
        .output()
        .expect("run ssh -O check")
        .status
        .success()
}

#[test]
fn connection_sharing_in_the_users_config_is_neither_used_nor_made() {
    require_root("ss -K on the rock link");
    let sshd = Sshd::start();
    // The fixture's config turns sharing off; this one turns it on.
    let config = std::fs::read_to_string(sshd.ssh_config())
        .expect("read the ssh config")
        .replace(
            "ControlMaster no",
            "ControlMaster auto\n    ControlPersist 120",
        )
        .replace(
            "ControlPath none",
            &format!("ControlPath {}/cm-%C", sshd.dir().display()),
        );
    assert!(config.contains("ControlPersist"), "{config}");
    let config_path = sshd.dir().join("ssh_config_shared");
    std::fs::write(&config_path, config).expect("write the ssh config");
    let _master = MasterGuard(&config_path);
    let rock_shared = || {
        let mut cmd = rock_command(&sshd, ROCKD, &[], "ssh");
        // A second -F: ssh uses the last one given.
        cmd.arg("-F").arg(&config_path);
        cmd
    };

    // No master yet: rock's session must not become one (with
    // ControlPersist it would outlive rock, its transport gone).
    let out = run_with_timeout(
        rock_shared().args(["rocktest", "echo carried"]),
        Duration::from_secs(60),
    );
    assert_exit(&out, 0, "rock -d ssh with connection sharing configured");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "carried");
    assert!(
        !master_runs(&config_path),
        "rock's ssh left a master behind"
    );

    // A master made by plain ssh: rock's session must not ride on it.
    let out = run_with_timeout(
        Command::new("ssh")
            .arg("-F")
            .arg(&config_path)
            .args(["rocktest", "true"])
            .stdin(Stdio::null()),
        Duration::from_secs(60),
    );
    assert_exit(&out, 0, "plain ssh making a master");
    assert!(master_runs(&config_path), "plain ssh made no master");
    const LINES: u32 = 60;
    let script = format!("for i in $(seq 1 {LINES}); do echo line $i; sleep 0.05; done; exit 3");
    let mut child = rock_shared()
        .args(["rocktest", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rock");
    let lines = timed_stdout_lines(&mut child);
    let mut got = vec![
        lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the first line")
            .1,
    ];
    // The session has a rock link (through the master it would have none),
    // and it survives that link's reset.
    reset_link(wait_link_port(child.id()));
    while let Ok((_, line)) = lines.recv_timeout(Duration::from_secs(60)) {
        got.push(line);
    }
    let status = child.wait().expect("wait for rock");
    let expected: Vec<String> = (1..=LINES).map(|i| format!("line {i}")).collect();
    assert_eq!(got, expected, "lines lost, duplicated or reordered");
    assert_eq!(status.code(), Some(3));

    // Sharing asked for on the command line would beat rock's options:
    // refused before anything runs, the master left alone.
    let ctl = std::fs::read_dir(sshd.dir())
        .expect("list the fixture's directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("cm-"))
        })
        .expect("the master's control socket");
    for sharing in [&["-S"][..], &["-M", "-S"]] {
        let out = run_with_timeout(
            rock_shared()
                .args(sharing)
                .arg(&ctl)
                .args(["rocktest", "echo must not run"]),
            Duration::from_secs(60),
        );
        assert_exit(&out, 255, "rock -d ssh with -M/-S");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("shares one connection"), "{err}");
        assert!(out.stdout.is_empty(), "{out:?}");
    }
    assert!(master_runs(&config_path), "the user's master was disturbed");
}
