//! The real-sshd fixture, proved with the real OpenSSH clients. These are
//! also the project's baseline: what `rock -d ssh|scp|sftp` must match.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{
    PASSWORD, PASSWORD_USER, Sshd, assert_exit, random_file, run_with_timeout, sha256_file,
    temp_dir,
};

/// Size of the transfer tests' file.
const FILE_SIZE: u64 = 32 << 20;
/// Generous: a 32 MiB copy over loopback takes well under a second.
const TIMEOUT: Duration = Duration::from_secs(120);

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Whether a process with that pid runs (a zombie counts as gone).
fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

fn wait_dead(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

#[test]
fn ssh_runs_a_command_and_returns_its_exit_code() {
    let sshd = Sshd::start();
    let out = run_with_timeout(
        sshd.command("ssh").args([
            "rocktest",
            "echo remote-out; echo remote-err >&2; echo \"$SSH_CONNECTION\"; exit 7",
        ]),
        TIMEOUT,
    );
    assert_exit(&out, 7, "ssh rocktest 'exit 7'");
    let lines: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2, "remote stdout: {lines:?}");
    assert_eq!(lines[0], "remote-out");
    // SSH_CONNECTION = client ip, client port, server ip, server port: the
    // session really went through the fixture's sshd.
    let conn: Vec<&str> = lines[1].split(' ').collect();
    assert_eq!(conn.len(), 4, "SSH_CONNECTION = {:?}", lines[1]);
    assert_eq!(conn[2], "127.0.0.1");
    assert_eq!(conn[3], sshd.port().to_string());
    assert_eq!(stderr(&out), "remote-err\n");
    assert!(
        sshd.log()
            .contains(&format!("Accepted publickey for {}", sshd.user())),
        "sshd log: {}",
        sshd.log()
    );
}

#[test]
fn ssh_exit_code_zero_and_stdin_forwarding() {
    let sshd = Sshd::start();
    let data = temp_dir();
    let input = data.path().join("input");
    fs::write(&input, "line one\nline two\n").unwrap();
    let out = run_with_timeout(
        sshd.command("ssh")
            .args(["rocktest", "wc -l"])
            .stdin(fs::File::open(&input).unwrap()),
        TIMEOUT,
    );
    assert_exit(&out, 0, "ssh rocktest 'wc -l' < input");
    assert_eq!(stdout(&out).trim(), "2");
}

/// Uploads and downloads a random file with scp, comparing checksums of the
/// original, the uploaded copy and the downloaded copy. `extra` selects the
/// protocol; `log_mark` is what sshd logs for it, so that the test proves
/// which protocol really ran.
fn scp_round_trip(extra: &[&str], log_mark: &str) {
    let sshd = Sshd::start();
    let data = temp_dir();
    let original = data.path().join("original.bin");
    let remote = data.path().join("remote-copy.bin");
    let back = data.path().join("downloaded.bin");
    random_file(&original, FILE_SIZE);
    let sum = sha256_file(&original);

    let target = format!("rocktest:{}", remote.display());
    let up = run_with_timeout(
        sshd.command("scp").args(extra).arg(&original).arg(&target),
        TIMEOUT,
    );
    assert_exit(&up, 0, "scp upload");
    assert_eq!(fs::metadata(&remote).unwrap().len(), FILE_SIZE);
    assert_eq!(sha256_file(&remote), sum, "uploaded copy differs");

    let down = run_with_timeout(
        sshd.command("scp").args(extra).arg(&target).arg(&back),
        TIMEOUT,
    );
    assert_exit(&down, 0, "scp download");
    assert_eq!(sha256_file(&back), sum, "downloaded copy differs");

    let log = sshd.log();
    assert_eq!(
        log.matches(log_mark).count(),
        2,
        "expected `{log_mark}` once per transfer in the sshd log:\n{log}"
    );
}

#[test]
fn scp_sftp_mode_round_trip_32mib() {
    // OpenSSH ≥ 9.0 scp speaks SFTP by default.
    scp_round_trip(&[], "Starting session: subsystem 'sftp'");
}

#[test]
fn scp_legacy_mode_round_trip_32mib() {
    // -O: the old scp protocol, `scp -t`/`scp -f` run by the remote shell.
    scp_round_trip(&["-O"], "Starting session: command");
}

#[test]
fn sftp_batch_put_and_get_32mib() {
    let sshd = Sshd::start();
    let data = temp_dir();
    let original = data.path().join("original.bin");
    let remote = data.path().join("remote-copy.bin");
    let back = data.path().join("downloaded.bin");
    random_file(&original, FILE_SIZE);
    let sum = sha256_file(&original);
    let batch = data.path().join("batch");
    fs::write(
        &batch,
        format!(
            "put {} {}\nget {} {}\n",
            original.display(),
            remote.display(),
            remote.display(),
            back.display()
        ),
    )
    .unwrap();

    let out = run_with_timeout(
        sshd.command("sftp").arg("-b").arg(&batch).arg("rocktest"),
        TIMEOUT,
    );
    assert_exit(&out, 0, "sftp -b");
    assert_eq!(sha256_file(&remote), sum, "uploaded copy differs");
    assert_eq!(sha256_file(&back), sum, "downloaded copy differs");
}

#[test]
fn sftp_batch_fails_on_a_failing_command() {
    // The baseline that rock must keep: a failed batch command is an error.
    let sshd = Sshd::start();
    let data = temp_dir();
    let batch = data.path().join("batch");
    let missing = data.path().join("does-not-exist");
    fs::write(
        &batch,
        format!(
            "get {} {}\n",
            missing.display(),
            data.path().join("x").display()
        ),
    )
    .unwrap();
    let out = run_with_timeout(
        sshd.command("sftp").arg("-b").arg(&batch).arg("rocktest"),
        TIMEOUT,
    );
    assert_exit(&out, 1, "sftp -b with a failing get");
}

#[test]
fn unknown_host_key_is_refused() {
    let sshd = Sshd::start();
    let known_hosts = sshd.known_hosts_without_key();
    let out = run_with_timeout(
        sshd.command("ssh")
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .args(["rocktest", "echo should-not-run"]),
        TIMEOUT,
    );
    assert_exit(&out, 255, "ssh with a known_hosts lacking the key");
    assert_eq!(stdout(&out), "");
    assert!(
        stderr(&out).contains("Host key verification failed"),
        "stderr: {}",
        stderr(&out)
    );
    assert!(!sshd.log().contains("Accepted"), "sshd log: {}", sshd.log());
}

#[test]
fn changed_host_key_is_refused() {
    let sshd = Sshd::start();
    let known_hosts = sshd.known_hosts_with_wrong_key();
    let out = run_with_timeout(
        sshd.command("ssh")
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .args(["rocktest", "echo should-not-run"]),
        TIMEOUT,
    );
    assert_exit(&out, 255, "ssh with a known_hosts holding another key");
    assert_eq!(stdout(&out), "");
    assert!(
        stderr(&out).contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "stderr: {}",
        stderr(&out)
    );
    assert!(!sshd.log().contains("Accepted"), "sshd log: {}", sshd.log());
}

#[test]
fn wrong_client_key_is_refused() {
    let sshd = Sshd::start();
    let key = sshd.unauthorized_client_key();
    let config = sshd.ssh_config_with("IdentityFile", key.to_str().unwrap());
    let out = run_with_timeout(
        sshd.command_with_config("ssh", &config)
            .args(["rocktest", "echo should-not-run"]),
        TIMEOUT,
    );
    assert_exit(&out, 255, "ssh with a key not in authorized_keys");
    assert_eq!(stdout(&out), "");
    assert!(
        stderr(&out).contains("Permission denied"),
        "stderr: {}",
        stderr(&out)
    );
    assert!(!sshd.log().contains("Accepted"), "sshd log: {}", sshd.log());
}

/// An askpass program that prints `answer`, as OpenSSH runs it with
/// `SSH_ASKPASS_REQUIRE=force`.
fn askpass(dir: &Path, answer: &str) -> std::path::PathBuf {
    let path = dir.join("askpass");
    fs::write(&path, format!("#!/bin/sh\nprintf '%s\\n' '{answer}'\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).unwrap();
    path
}

/// `ssh rocktest 'id -un'` as [`PASSWORD_USER`] with only `method` allowed,
/// answering the prompt with `password` through askpass.
fn password_login(sshd: &Sshd, method: &str, password: &str) -> Output {
    let data = temp_dir();
    let askpass = askpass(data.path(), password);
    run_with_timeout(
        sshd.command("ssh")
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .args(["-o", "BatchMode=no", "-o", "PubkeyAuthentication=no"])
            .args(["-o", &format!("PreferredAuthentications={method}")])
            .args(["-o", "NumberOfPasswordPrompts=1"])
            .args(["-l", PASSWORD_USER, "rocktest", "id -un"]),
        TIMEOUT,
    )
}

#[test]
fn password_authentication_with_the_test_user() {
    let sshd = Sshd::builder().with_password_user().start();
    let out = password_login(&sshd, "password", PASSWORD);
    assert_exit(&out, 0, "ssh -l rocktest-pw with a password");
    assert_eq!(stdout(&out).trim(), PASSWORD_USER);
    assert!(
        sshd.log()
            .contains(&format!("Accepted password for {PASSWORD_USER}")),
        "sshd log: {}",
        sshd.log()
    );

    let wrong = password_login(&sshd, "password", "not-the-password");
    assert_exit(&wrong, 255, "ssh -l rocktest-pw with a wrong password");
    assert!(
        stderr(&wrong).contains("Permission denied"),
        "{}",
        stderr(&wrong)
    );
}

#[test]
fn keyboard_interactive_authentication_with_the_test_user() {
    let sshd = Sshd::builder().with_password_user().start();
    let out = password_login(&sshd, "keyboard-interactive", PASSWORD);
    assert_exit(&out, 0, "ssh -l rocktest-pw keyboard-interactive");
    assert_eq!(stdout(&out).trim(), PASSWORD_USER);
    assert!(
        sshd.log().contains(&format!(
            "Accepted keyboard-interactive/pam for {PASSWORD_USER}"
        )),
        "sshd log: {}",
        sshd.log()
    );
}

#[test]
fn default_fixture_refuses_passwords() {
    common::require_root("logging in as the password test user");
    assert!(
        common::user_exists(PASSWORD_USER),
        "the password test user `{PASSWORD_USER}` does not exist: run scripts/setup (as root)"
    );
    let sshd = Sshd::start();
    for method in ["password", "keyboard-interactive"] {
        let out = password_login(&sshd, method, PASSWORD);
        assert_exit(
            &out,
            255,
            &format!("{method} against the keys-only fixture"),
        );
        assert_eq!(stdout(&out), "");
    }
}

#[test]
fn drop_kills_sshd_sessions_and_daemonised_children() {
    let sshd = Sshd::start();
    // A session that leaves a detached process behind, as a daemon would.
    let out = run_with_timeout(
        sshd.command("ssh").args([
            "rocktest",
            "setsid sh -c 'sleep 600' </dev/null >/dev/null 2>&1 & echo started",
        ]),
        TIMEOUT,
    );
    assert_exit(&out, 0, "ssh starting a detached sleep");
    let deadline = Instant::now() + Duration::from_secs(10);
    let sleeper = loop {
        let procs = sshd.descendants();
        if let Some(p) = procs.iter().find(|p| p.cmdline.contains("sleep 600")) {
            break p.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the detached sleep is not among sshd's descendants: {procs:#?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // Orphaned, it was re-parented to the sshd listener (a subreaper).
    let listener = sshd.pid();
    let port = sshd.port();
    drop(sshd);
    assert!(wait_dead(listener, Duration::from_secs(5)), "sshd survived");
    assert!(
        wait_dead(sleeper.pid, Duration::from_secs(5)),
        "the detached process survived: {sleeper:?}"
    );
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is free again");
}

#[test]
fn a_panicking_test_leaves_no_sshd() {
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::panic::catch_unwind(move || {
        let sshd = Sshd::start();
        tx.send(sshd.pid()).unwrap();
        panic!("deliberate panic with a live fixture");
    });
    assert!(result.is_err());
    let pid = rx.recv().unwrap();
    assert!(
        wait_dead(pid, Duration::from_secs(5)),
        "sshd {pid} survived the panic"
    );
}

#[test]
fn a_finished_session_leaves_no_process_behind() {
    let sshd = Sshd::start();
    assert_eq!(sshd.descendants(), vec![], "fresh fixture");
    let out = run_with_timeout(sshd.command("ssh").args(["rocktest", "true"]), TIMEOUT);
    assert_exit(&out, 0, "ssh rocktest true");
    sshd.wait_no_descendants(Duration::from_secs(10));
}

#[test]
fn parallel_fixtures_get_their_own_ports() {
    let fixtures: Vec<Sshd> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(Sshd::start)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ports: Vec<u16> = fixtures.iter().map(Sshd::port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), fixtures.len());
    for sshd in &fixtures {
        let out = run_with_timeout(
            sshd.command("ssh")
                .args(["rocktest", "echo $SSH_CONNECTION"]),
            TIMEOUT,
        );
        assert_exit(&out, 0, "ssh to one of several fixtures");
        assert!(
            stdout(&out).trim().ends_with(&format!(" {}", sshd.port())),
            "{}",
            stdout(&out)
        );
    }
}
