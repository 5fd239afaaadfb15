//! What a running process costs, read from `/proc`: open descriptors,
//! resident memory and CPU time, for tests that check that rock and rockd
//! stay bounded under attack, through many reconnects, and when idle.
//!
//! Every reader panics with the pid and file when the process is gone: a
//! test that measures a process expects it to be there.

use std::fmt;
use std::time::Duration;

/// Descriptors and resident memory of one process at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Entries in `/proc/PID/fd`.
    pub fds: usize,
    /// `VmRSS` from `/proc/PID/status`, in KiB.
    pub rss_kib: u64,
}

impl Usage {
    /// Samples process `pid` now.
    pub fn of(pid: u32) -> Usage {
        Usage {
            fds: fd_count(pid),
            rss_kib: rss_kib(pid),
        }
    }

    /// How much more resident memory `later` holds than `self`, in KiB
    /// (0 if it holds less).
    pub fn rss_growth_kib(&self, later: &Usage) -> u64 {
        later.rss_kib.saturating_sub(self.rss_kib)
    }

    /// How far apart the descriptor counts are.
    pub fn fd_distance(&self, other: &Usage) -> usize {
        self.fds.abs_diff(other.fds)
    }
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} fds, RSS {} KiB ({:.1} MiB)",
            self.fds,
            self.rss_kib,
            self.rss_kib as f64 / 1024.0
        )
    }
}

/// The number of descriptors process `pid` has open.
pub fn fd_count(pid: u32) -> usize {
    let dir = format!("/proc/{pid}/fd");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("list {dir} (is process {pid} still running?): {e}"))
        .count()
}

/// The resident set size of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {path} (is process {pid} still running?): {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS line in {path}:\n{status}"))
}

/// The CPU time process `pid` has used so far, user plus system, over all
/// its threads (living and exited), from `/proc/PID/stat`. The kernel
/// counts it in clock ticks (usually 10 ms each).
pub fn cpu_time(pid: u32) -> Duration {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {path} (is process {pid} still running?): {e}"));
    // The command name (field 2) is in parentheses and may hold spaces;
    // fields are counted after its closing one. utime and stime are
    // fields 14 and 15, so the 12th and 13th after the name.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_else(|| panic!("no command name in {path}: {stat}"));
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| -> u64 {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .unwrap_or_else(|| panic!("field {} of {path} is not a number: {stat}", i + 3))
    };
    let total = ticks(11) + ticks(12);
    Duration::from_nanos(total * 1_000_000_000 / ticks_per_second())
}

/// The time the living threads of process `pid` have spent on a CPU, in
/// nanoseconds, from `/proc/PID/task/*/schedstat`: finer than
/// [`cpu_time`]'s ticks, but threads that have exited are not counted.
pub fn run_time_of_threads(pid: u32) -> Duration {
    let dir = format!("/proc/{pid}/task");
    let tasks = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("list {dir} (is process {pid} still running?): {e}"));
    let mut total = 0u64;
    for task in tasks.flatten() {
        let path = task.path().join("schedstat");
        // A thread may end between the listing and the read.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        total += text
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{} is not `NS WAIT SLICES`: {text}", path.display()));
    }
    Duration::from_nanos(total)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    assert!(hz > 0, "sysconf(_SC_CLK_TCK) failed");
    hz as u64
}
