//! A transfer through rock with its link faulted along the way: ten resets,
//! one each time the copy passes another twelfth of its size, and an 8 s
//! blackhole after the fifth. What "the link" is and how it is reset or
//! blackholed is the caller's ([`LinkFaults`]): rock's TCP link to rockd in
//! direct mode, its SSH connection in ssh mode.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The faults a transfer test inflicts on rock's link.
pub trait LinkFaults {
    /// What names the link (a port, a socket pair).
    type Link;
    /// Undoes a blackhole when dropped.
    type Hole;
    /// rock's link, once data flows (`None` while there is none).
    fn find(&mut self, rock_pid: u32) -> Option<Self::Link>;
    /// Resets the link (`ss -K`).
    fn reset(&self, link: &Self::Link);
    /// Blackholes the link until the returned guard is dropped.
    fn blackhole(&self, link: &Self::Link) -> Self::Hole;
}

/// Starts `cmd` (rock) with its output piped, and a thread that waits for
/// it: its pid, and the thread that returns its output. The caller faults
/// the links while the thread is not finished.
pub fn spawn_waited(cmd: &mut Command) -> (u32, JoinHandle<Output>) {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rock");
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output().expect("wait for rock"));
    (pid, waiter)
}

/// Runs `cmd` (a transfer through rock) to its end, faulting its link as
/// the module says while `progress()` (bytes copied so far) grows towards
/// `total`; fails if it takes longer than `limit` or ends before every
/// fault was made. Returns the command's output.
pub fn transfer_under_faults<F: LinkFaults>(
    cmd: &mut Command,
    total: u64,
    progress: impl Fn() -> u64,
    limit: Duration,
    mut faults: F,
) -> Output {
    let (pid, waiter) = spawn_waited(cmd);
    let (mut resets, mut blackholed) = (0, false);
    let end = Instant::now() + limit;
    while !waiter.is_finished() {
        assert!(
            Instant::now() < end,
            "the transfer did not finish in {limit:?}"
        );
        let done = progress();
        // Only once data flows: during the bootstrap rock's one connection
        // is to sshd itself.
        let link = (done > 0).then(|| faults.find(pid)).flatten();
        if let Some(link) = link {
            if resets < 10 && done >= (resets + 1) * total / 12 {
                faults.reset(&link);
                resets += 1;
            }
            if !blackholed && resets >= 5 {
                let hole = faults.blackhole(&link);
                std::thread::sleep(Duration::from_secs(8));
                drop(hole);
                blackholed = true;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = waiter.join().expect("waiter thread");
    assert!(
        resets >= 10 && blackholed,
        "only {resets} resets, blackhole {blackholed}: the transfer outran the faults\n\
         status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The size of the file at `path`, 0 while it does not exist.
pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}
