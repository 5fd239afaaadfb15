//! Helpers shared by the black-box tests: a real OpenSSH sshd per test
//! ([`Sshd`]), real faults ([`faults`]) and networks of namespaces
//! ([`netns`]), test data with checksums, a bounded way to run a client,
//! and a guard for tests that need root.
//!
//! Each integration test file includes this with `mod common;` and uses what
//! it needs; the rest would be dead code in that test crate, hence the allow.
//!
//! Nothing here skips a test: a missing tool, user or privilege is a panic
//! that says what to run (`scripts/setup`), because a test that quietly
//! passes without testing anything is worse than one that fails.

#![allow(dead_code)]

pub mod faults;
pub mod live;
pub mod netns;
pub mod procstat;
pub mod pty;
pub mod rocked;
mod sshd;
pub mod transfer;

// Not every test file uses every item.
#[allow(unused_imports)]
pub use sshd::{PASSWORD, PASSWORD_USER, Proc, Sshd, SshdBuilder};
pub use tempfile::TempDir;

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// A fresh temporary directory for a test's data, removed when dropped.
pub fn temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("rock-test-")
        .tempdir()
        .expect("create a temporary directory for test data")
}

/// Writes `bytes` random bytes (from `/dev/urandom`) to `path`.
pub fn random_file(path: &Path, bytes: u64) {
    let mut urandom = File::open("/dev/urandom").expect("open /dev/urandom");
    let file = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let copied = io::copy(&mut (&mut urandom).take(bytes), &mut out)
        .unwrap_or_else(|e| panic!("write random data to {}: {e}", path.display()));
    assert_eq!(copied, bytes, "short read from /dev/urandom");
    out.flush()
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The SHA-256 of a file's contents, as lowercase hex.
pub fn sha256_file(path: &Path) -> String {
    let mut file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut hasher = Sha256::new();
    let mut piece = vec![0; 1 << 20];
    loop {
        let n = file
            .read(&mut piece)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if n == 0 {
            break;
        }
        hasher.update(&piece[..n]);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Panics unless the tests run as root. Call it first in a test that needs
/// root (network namespaces, iptables, a second local user): such a test
/// must fail loudly, never pass by skipping.
pub fn require_root(why: &str) {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "this test needs root ({why}) but runs as uid {euid}. \
         Run the suite as root, e.g. `sudo scripts/test` (CI runs as root). \
         It is not skipped on purpose: a skipped test proves nothing."
    );
}

/// The name of the user the tests run as.
pub fn current_user() -> String {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    user_name(uid).unwrap_or_else(|| panic!("uid {uid} has no entry in the user database"))
}

/// Whether a local user of that name exists.
pub fn user_exists(name: &str) -> bool {
    let name = CString::new(name).expect("user name without NUL");
    let mut pwd = std::mem::MaybeUninit::<libc::passwd>::uninit();
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and buf's length is passed.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            pwd.as_mut_ptr(),
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    rc == 0 && !result.is_null()
}

fn user_name(uid: libc::uid_t) -> Option<String> {
    let mut pwd = std::mem::MaybeUninit::<libc::passwd>::uninit();
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and buf's length is passed.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            pwd.as_mut_ptr(),
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded, so pwd is initialised and pw_name points
    // to a NUL-terminated string inside buf, which is still alive.
    let name = unsafe { CStr::from_ptr(pwd.assume_init().pw_name) };
    Some(name.to_string_lossy().into_owned())
}

/// Runs `cmd` to completion and returns what it printed, like
/// [`Command::output`], but kills it and panics (with what it printed so
/// far) if it takes longer than `timeout`: a hung client must fail the test,
/// not hang the suite. Stdout and stderr are captured; stdin is left as the
/// command has it (the fixture's commands read from `/dev/null`).
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    run_with_timeout_exit(cmd, timeout).0
}

/// [`run_with_timeout`], and when the command itself exited (its output
/// may stay open longer, held by a descendant).
pub fn run_with_timeout_exit(cmd: &mut Command, timeout: Duration) -> (Output, Instant) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
    let stdout = collect(child.stdout.take().expect("piped stdout"));
    let stderr = collect(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let out = String::from_utf8_lossy(
                &stdout
                    .recv_timeout(Duration::from_secs(2))
                    .unwrap_or_default(),
            )
            .into_owned();
            let err = String::from_utf8_lossy(
                &stderr
                    .recv_timeout(Duration::from_secs(2))
                    .unwrap_or_default(),
            )
            .into_owned();
            panic!(
                "{cmd:?} did not finish within {timeout:?} and was killed\n\
                 --- stdout ---\n{out}\n--- stderr ---\n{err}"
            );
        }
        thread::sleep(Duration::from_millis(10));
    };
    let exited = Instant::now();
    // A grandchild that inherited the pipes could keep them open; don't wait
    // for it forever.
    let wait = Duration::from_secs(10);
    let output = Output {
        status,
        stdout: stdout
            .recv_timeout(wait)
            .expect("stdout still open after the command exited"),
        stderr: stderr
            .recv_timeout(wait)
            .expect("stderr still open after the command exited"),
    };
    (output, exited)
}

/// Reads `from` to its end on a thread and sends everything at once.
fn collect(mut from: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut all = Vec::new();
        let _ = from.read_to_end(&mut all);
        let _ = tx.send(all);
    });
    rx
}

/// A finished command's status and output, for an assertion's message.
pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts that a finished command exited with `code`, printing its output
/// (and the caller's context) when it did not.
#[track_caller]
pub fn assert_exit(output: &Output, code: i32, context: &str) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{context}: expected exit code {code}, got {}",
        text(output),
    );
}

/// The process of `rock -d` that carries the session: the worker that the
/// process the shell (or the test) started, the front, forks at once (see
/// `src/redirect/job.rs`). Its links, control socket and memory are the
/// worker's. Given a process that is not a front (a worker, or anything
/// else), returns it.
pub fn rock_worker(pid: u32) -> u32 {
    let comm = |p: &str| {
        std::fs::read_to_string(format!("/proc/{p}/comm"))
            .map(|c| c.trim_end().to_owned())
            .unwrap_or_default()
    };
    let parent = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            rest.split_whitespace().nth(1).map(str::to_owned)
        })
        .unwrap_or_default();
    if comm(&parent) == "rock" {
        // Already a worker.
        return pid;
    }
    // A front forks its worker within milliseconds of starting.
    let end = Instant::now() + Duration::from_secs(1);
    loop {
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        let mut children = children.split_whitespace().peekable();
        if let Some(worker) = children.clone().find(|c| comm(c) == "rock") {
            return worker.parse().unwrap_or(pid);
        }
        // A process without children may be a front about to fork, or a
        // worker carrying on alone.
        let starting = children.peek().is_none() && comm(&pid.to_string()) == "rock";
        if !starting || Instant::now() >= end {
            return pid;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// The rock binary under test.
pub const ROCK: &str = env!("CARGO_BIN_EXE_rock");
/// The rockd binary under test.
pub const ROCKD: &str = env!("CARGO_BIN_EXE_rockd");

/// `rock --rockd <rockd>`, inheriting none of the caller's agent, askpass,
/// display, or rsync and git ssh commands: each test says what it wants.
pub fn rock_base(rockd: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(ROCK);
    cmd.arg("--rockd").arg(rockd);
    for var in [
        "SSH_AUTH_SOCK",
        "SSH_ASKPASS",
        "SSH_ASKPASS_REQUIRE",
        "DISPLAY",
        "RSYNC_RSH",
        "GIT_SSH",
        "GIT_SSH_COMMAND",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// `rock --rockd <rockd> [extra] -d <program> -F <fixture config>`, with
/// stdin from /dev/null and no agent or askpass inherited, as
/// [`Sshd::command`] runs the plain clients.
pub fn rock_command(
    sshd: &Sshd,
    rockd: impl AsRef<std::ffi::OsStr>,
    extra: &[&str],
    program: &str,
) -> Command {
    let mut cmd = rock_base(rockd);
    cmd.args(extra)
        .arg("-d")
        .arg(program)
        .arg("-F")
        .arg(sshd.ssh_config())
        .stdin(Stdio::null());
    cmd
}
