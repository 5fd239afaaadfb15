//! `rock -d` end to end: the real rock and rockd binaries, a real sshd, the
//! real OpenSSH clients, and real kernel faults on the rock link.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{Sshd, assert_exit, require_root, run_with_timeout};

const ROCK: &str = env!("CARGO_BIN_EXE_rock");
const ROCKD: &str = env!("CARGO_BIN_EXE_rockd");

/// `rock --rockd <ours> [extra] -d <program> -F <fixture config> ...`.
fn rock(sshd: &Sshd, extra: &[&str], program: &str) -> Command {
    let mut cmd = Command::new(ROCK);
    cmd.arg("--rockd")
        .arg(ROCKD)
        .args(extra)
        .arg("-d")
        .arg(program)
        .arg("-F")
        .arg(sshd.ssh_config())
        .stdin(Stdio::null())
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("SSH_ASKPASS")
        .env_remove("SSH_ASKPASS_REQUIRE");
    cmd
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
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
