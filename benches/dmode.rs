//! `rock -d` against plain OpenSSH: the same real sshd (the test fixture),
//! the same client config, the same machine, the same run. Every figure is
//! printed beside the plain OpenSSH figure it should be compared with, and
//! as a ratio, because the machines this runs on are shared and noisy and
//! an absolute time alone means little.
//!
//! Run it as root (it starts sshd, blackholes links with iptables and
//! resets them with `ss -K`) with
//!
//! ```sh
//! cargo build --release && cargo bench --bench dmode
//! ```
//!
//! `cargo bench` itself builds this file and the `rock` and `rockd`
//! binaries with the release settings, into `target/release/`, and hands
//! their paths over in `CARGO_BIN_EXE_*`; the `cargo build --release` first
//! does no harm and leaves the same binaries for a manual run.
//!
//! What is measured (the README's Benchmarks section says more):
//!
//! * `scp`: a 1 GiB random file up and down (to `/dev/null`, so that no disk
//!   write is timed; the source is read once before every run so that it
//!   comes from the page cache), throughput of the whole command;
//! * `link`: the same over a rate-limited link (network namespaces laptop ↔
//!   router ↔ server, the router's token buckets at 1 Gbit/s, then
//!   100 Mbit/s), where the network rather than this machine's CPU limits;
//! * `echo`: round trips of one byte through `ssh rocktest cat`;
//! * `startup`: wall time of `ssh rocktest true`;
//! * `idle`: CPU time of rock and rockd while a session carries nothing;
//! * `recovery`: a session printing a line every 10 ms; the time from
//!   lifting a 10–10.8 s blackhole (iptables DROP), or from a reset
//!   (`ss -K`), to the next line;
//! * `moves` (`dmode/moves.rs`): the same stream between network
//!   namespaces while the laptop's address changes, its link goes down
//!   and up, the server moves, and the path between them is blackholed.
//!
//! The clients take turns (AB, BA, …) so that drift hits them alike. The
//! scp and echo rows also run a reference: OpenSSH through two bare copy
//! relays (two processes running this program, handed to ssh by
//! `ProxyUseFdpass` as rock is), laid out like rock and rockd but with no
//! protocol, to show what two extra hops cost on this machine whoever
//! makes them. The relays copy with blocking threads, or, with
//! `ROCK_BENCH_RELAY=tokio`, with tokio copies on one thread: the event
//! loop rock and rockd run on.
//!
//! During every run the CPU time used by processes outside this program's
//! own process tree is read from `/proc`. A round in which others used more
//! than `ROCK_BENCH_MAX_FOREIGN` cores (default 0.3) during any run is
//! thrown away and taken again once the machine is quiet (up to three
//! times, then kept and counted as noisy); waiting for quiet is capped at
//! `ROCK_BENCH_WAIT_MINUTES` (default 30) for the whole run.
//!
//! Arguments select sections: `cargo bench --bench dmode -- scp echo`
//! (`scp`, `link`, `echo`, `startup`, `idle`, `recovery`, `moves`).
//! `ROCK_BENCH_MIB` (default 1024) sets the file size, `ROCK_BENCH_REPS`
//! (default 5) the number of transfers per direction and client.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "dmode/idle.rs"]
mod idle;
#[path = "dmode/moves.rs"]
mod moves;

use common::{ROCK, ROCKD};

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use common::Sshd;
use common::faults::{Blackhole, link_port_of, reset_link};

/// How many times a noisy measurement is taken again before it is kept.
const REDO: usize = 3;
/// Round trips per echo session, and echo sessions per client.
const ECHO_TRIPS: usize = 2000;
const ECHO_ROUNDS: usize = 5;
/// Untimed round trips first (the first one waits for the login).
const ECHO_WARMUP: usize = 100;
/// `ssh rocktest true` runs per client.
const STARTUP_RUNS: usize = 20;
/// Blackholes and resets per client in the recovery section.
const TRIALS: usize = 5;
const BLACKHOLE: Duration = Duration::from_secs(10);

/// How long blackhole `i` lasts: 10 s, 10.2 s, … 10.8 s. Recovery depends
/// on where in the client's retry cycle (about a second) the blackhole
/// lifts; a fixed length would sample one point of that cycle every time.
fn hole_length(i: usize) -> Duration {
    BLACKHOLE + Duration::from_millis(200 * (i % 5) as u64)
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Client {
    /// The user's OpenSSH, straight to sshd.
    Plain,
    /// `rock -d`.
    Rock,
    /// Reference: OpenSSH through two bare copy relays (threads of this
    /// program), laid out like rock and rockd but with no protocol.
    Relay,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Plain => "ssh",
            Client::Rock => "rock",
            Client::Relay => "relay",
        }
    }

    /// The clients in round `round`'s order: rotated each round, so that
    /// each goes first as often as the others.
    fn order(clients: &[Client], round: usize) -> Vec<Client> {
        let mut v = clients.to_vec();
        if !v.is_empty() {
            v.rotate_left(round % clients.len());
        }
        v
    }
}

struct Options {
    bytes: u64,
    reps: usize,
    max_foreign: f64,
    wait_minutes: u64,
    sections: Vec<String>,
}

impl Options {
    fn from_env() -> Options {
        fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
            match std::env::var(name) {
                Ok(v) => v
                    .parse()
                    .unwrap_or_else(|_| fail(&format!("{name}={v} is not a valid number"))),
                Err(_) => default,
            }
        }
        const KNOWN: [&str; 7] = [
            "scp", "link", "echo", "startup", "idle", "recovery", "moves",
        ];
        // cargo bench passes `--bench`; anything else not an option selects.
        let sections: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .collect();
        for s in &sections {
            if !KNOWN.contains(&s.as_str()) {
                fail(&format!(
                    "unknown section {s:?}; known: {}",
                    KNOWN.join(" ")
                ));
            }
        }
        Options {
            bytes: var("ROCK_BENCH_MIB", 1024u64) << 20,
            reps: var("ROCK_BENCH_REPS", 5usize).max(1),
            max_foreign: var("ROCK_BENCH_MAX_FOREIGN", 0.3f64),
            wait_minutes: var("ROCK_BENCH_WAIT_MINUTES", 30u64),
            sections,
        }
    }

    fn wants(&self, section: &str) -> bool {
        self.sections.is_empty() || self.sections.iter().any(|s| s == section)
    }
}

fn fail(why: &str) -> ! {
    eprintln!("dmode benchmark: {why}");
    std::process::exit(2);
}

// ---------------------------------------------------------------------
// CPU accounting: whose CPU time went where, from /proc.

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// One process from `/proc/PID/stat`.
struct ProcStat {
    pid: u32,
    ppid: u32,
    comm: String,
    /// utime + stime, in clock ticks.
    own: u64,
    /// cutime + cstime: children it has reaped.
    reaped: u64,
}

fn processes() -> Vec<ProcStat> {
    let mut all = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return all;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        all.push(ProcStat {
            pid,
            ppid: num(1) as u32,
            comm,
            own: num(11) + num(12),
            reaped: num(13) + num(14),
        });
    }
    all
}

/// This process and all its descendants (sshd, which the fixture started,
/// is one, and it is a subreaper: rockd stays in the tree).
fn our_tree(all: &[ProcStat]) -> Vec<&ProcStat> {
    let me = std::process::id();
    let mut pids = vec![me];
    loop {
        let before = pids.len();
        for p in all {
            if pids.contains(&p.ppid) && !pids.contains(&p.pid) {
                pids.push(p.pid);
            }
        }
        if pids.len() == before {
            break;
        }
    }
    all.iter().filter(|p| pids.contains(&p.pid)).collect()
}

/// CPU ticks used by our tree so far: live processes' own time plus what
/// they reaped (a reaped child's time moves into its parent's).
fn our_ticks() -> u64 {
    our_tree(&processes())
        .iter()
        .map(|p| p.own + p.reaped)
        .sum()
}

/// Ticks the whole machine spent in user and system mode, plus steal
/// (time the hypervisor gave to other guests). Interrupt time is left out:
/// it is not charged to processes, ours or not.
fn machine_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = stat.lines().next().unwrap_or_default();
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|s| s.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    at(0) + at(1) + at(2) + at(7)
}

/// Measures, over an interval, the CPU that others used.
struct Meter {
    at: Instant,
    machine: u64,
    ours: u64,
}

#[derive(Clone, Copy, Debug)]
struct Load {
    /// Cores used on average by processes outside our tree.
    foreign: f64,
    /// CPU seconds our tree used.
    ours: f64,
}

impl Meter {
    fn start() -> Meter {
        Meter {
            at: Instant::now(),
            machine: machine_ticks(),
            ours: our_ticks(),
        }
    }

    fn stop(&self) -> Load {
        let secs = self.at.elapsed().as_secs_f64().max(1e-3);
        let machine = machine_ticks().saturating_sub(self.machine) as f64;
        let ours = our_ticks().saturating_sub(self.ours) as f64;
        Load {
            foreign: ((machine - ours).max(0.0) / clk_tck()) / secs,
            ours: ours / clk_tck(),
        }
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("(no /proc/loadavg: {e})"))
}

/// Keeps measurements away from other people's work: waits until the
/// machine is quiet, within a budget of waiting for the whole run.
struct Quiet {
    /// Cores that others may use while we measure.
    max: f64,
    /// Waiting left for the rest of the run.
    budget: Duration,
    notes: Vec<String>,
}

impl Quiet {
    /// Waits until others use at most `max` cores over three seconds, or
    /// the budget is spent. Prints the load average either way.
    fn settle(&mut self, section: &str) {
        loop {
            let m = Meter::start();
            thread::sleep(Duration::from_secs(3));
            let foreign = m.stop().foreign;
            println!(
                "[{section}] loadavg {} | others use {foreign:.2} cores",
                loadavg()
            );
            if foreign <= self.max {
                return;
            }
            if self.budget.is_zero() {
                let note = format!(
                    "{section}: the machine stayed busy ({foreign:.2} cores used by others) \
                     after the waiting budget was spent; measured anyway"
                );
                println!("WARNING: {note}");
                self.notes.push(note);
                return;
            }
            println!(
                "[{section}] waiting for a quieter machine (others may use {} cores; {} s of waiting left)",
                self.max,
                self.budget.as_secs()
            );
            let nap = Duration::from_secs(15).min(self.budget);
            thread::sleep(nap);
            self.budget -= nap;
        }
    }
}

/// What one process has used so far: CPU ticks, read and write system
/// calls (`/proc/PID/io`, every thread's), context switches (every
/// thread's `/proc/PID/task/TID/status`) and run-queue wait (their
/// `schedstat`).
#[derive(Clone, Copy, Default)]
struct Usage {
    ticks: u64,
    reads: u64,
    writes: u64,
    switches: u64,
    /// Of which the scheduler took the CPU away (preemptions).
    preempted: u64,
    /// Nanoseconds spent runnable but waiting for a CPU.
    waited: u64,
}

impl Usage {
    fn of(p: &ProcStat) -> Usage {
        let dir = PathBuf::from(format!("/proc/{}", p.pid));
        let io = std::fs::read_to_string(dir.join("io")).unwrap_or_default();
        let field = |text: &str, name: &str| -> u64 {
            text.lines()
                .filter_map(|l| l.strip_prefix(name))
                .filter_map(|v| v.trim().parse::<u64>().ok())
                .sum()
        };
        let (mut switches, mut preempted, mut waited) = (0, 0, 0);
        if let Ok(tasks) = std::fs::read_dir(dir.join("task")) {
            for task in tasks.flatten() {
                let status =
                    std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
                let forced = field(&status, "nonvoluntary_ctxt_switches:");
                switches += field(&status, "voluntary_ctxt_switches:") + forced;
                preempted += forced;
                let sched =
                    std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
                waited += sched
                    .split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        Usage {
            ticks: p.own,
            reads: field(&io, "syscr:"),
            writes: field(&io, "syscw:"),
            switches,
            preempted,
            waited,
        }
    }

    fn max(self, o: Usage) -> Usage {
        Usage {
            ticks: self.ticks.max(o.ticks),
            reads: self.reads.max(o.reads),
            writes: self.writes.max(o.writes),
            switches: self.switches.max(o.switches),
            preempted: self.preempted.max(o.preempted),
            waited: self.waited.max(o.waited),
        }
    }

    fn since(self, base: Usage) -> Usage {
        Usage {
            ticks: self.ticks.saturating_sub(base.ticks),
            reads: self.reads.saturating_sub(base.reads),
            writes: self.writes.saturating_sub(base.writes),
            switches: self.switches.saturating_sub(base.switches),
            preempted: self.preempted.saturating_sub(base.preempted),
            waited: self.waited.saturating_sub(base.waited),
        }
    }

    fn add(&mut self, o: Usage) {
        self.ticks += o.ticks;
        self.reads += o.reads;
        self.writes += o.writes;
        self.switches += o.switches;
        self.preempted += o.preempted;
        self.waited += o.waited;
    }
}

/// One program's share of a run.
struct Share {
    name: String,
    usage: Usage,
}

impl Share {
    /// CPU seconds.
    fn cpu(&self) -> f64 {
        self.usage.ticks as f64 / clk_tck()
    }
}

/// Samples every process in our tree every 100 ms, for a breakdown of one
/// run by program (the last 100 ms of a process that exits are missed).
/// This process's own share (the reference relays, the sampler) shows as
/// "bench".
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: thread::JoinHandle<BTreeMap<u32, (String, Usage)>>,
    /// What each process had already used when sampling started.
    base: BTreeMap<u32, Usage>,
}

impl Sampler {
    fn start() -> Sampler {
        let base = our_tree(&processes())
            .iter()
            .map(|p| (p.pid, Usage::of(p)))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = thread::spawn(move || {
            let mut seen: BTreeMap<u32, (String, Usage)> = BTreeMap::new();
            loop {
                for p in our_tree(&processes()) {
                    // The latest name: a child forked by us shows our
                    // name until it executes its program.
                    let e = seen.entry(p.pid).or_default();
                    e.0.clone_from(&p.comm);
                    e.1 = e.1.max(Usage::of(p));
                }
                if flag.load(Ordering::Relaxed) {
                    return seen;
                }
                thread::sleep(Duration::from_millis(100));
            }
        });
        Sampler { stop, handle, base }
    }

    /// Each program's share, busiest first.
    fn finish(self) -> Vec<Share> {
        self.stop.store(true, Ordering::Relaxed);
        let seen = self.handle.join().expect("sampler thread");
        let me = std::process::id();
        let exe = processes()
            .into_iter()
            .find(|p| p.pid == me)
            .map(|p| p.comm)
            .unwrap_or_default();
        let mut by_name: BTreeMap<String, Usage> = BTreeMap::new();
        for (pid, (name, usage)) in seen {
            let used = usage.since(self.base.get(&pid).copied().unwrap_or_default());
            // This program: itself, or its ProxyCommand helper.
            let name = if name == exe { "bench".into() } else { name };
            by_name.entry(name).or_default().add(used);
        }
        let mut v: Vec<Share> = by_name
            .into_iter()
            .filter(|(_, u)| u.ticks > 0)
            .map(|(name, usage)| Share { name, usage })
            .collect();
        v.sort_by(|a, b| b.cpu().total_cmp(&a.cpu()));
        v
    }
}

/// "4.63 CPU s = sshd 1.59 + …", and per program the system calls and
/// context switches per MiB moved.
fn breakdown(v: &[Share], mib: f64) -> String {
    let total: f64 = v.iter().map(|s| s.cpu()).sum();
    let parts: Vec<String> = v
        .iter()
        .map(|s| format!("{} {:.2}", s.name, s.cpu()))
        .collect();
    let per = |n: u64| n as f64 / mib.max(1e-9);
    let calls: Vec<String> = v
        .iter()
        .map(|s| {
            format!(
                "{} {:.0}r/{:.0}w/{:.0}cs({:.0}p)/{:.2}ms",
                s.name,
                per(s.usage.reads),
                per(s.usage.writes),
                per(s.usage.switches),
                per(s.usage.preempted),
                per(s.usage.waited) / 1e6
            )
        })
        .collect();
    format!(
        "{total:.2} CPU s = {}; per MiB: {}",
        parts.join(" + "),
        calls.join(", ")
    )
}

// ---------------------------------------------------------------------
// Statistics.

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s
}

/// The q-quantile (nearest rank) of `v`.
fn quantile(v: &[f64], q: f64) -> f64 {
    let s = sorted(v);
    if s.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

fn median(v: &[f64]) -> f64 {
    let s = sorted(v);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// "median (min–max)" with `digits` decimals.
fn spread(v: &[f64], digits: usize) -> String {
    let s = sorted(v);
    match s.len() {
        0 => "-".into(),
        1 => format!("{:.digits$}", s[0]),
        _ => format!(
            "{:.digits$} ({:.digits$}–{:.digits$})",
            median(&s),
            s[0],
            s[s.len() - 1]
        ),
    }
}

// ---------------------------------------------------------------------
// Running the clients.

/// `ssh`, `scp` … `-F <fixture config>`, as the tests run it.
fn plain(sshd: &Sshd, program: &str) -> Command {
    sshd.command(program)
}

/// `rock --rockd <ours> -d <program> -F <fixture config>`.
fn rock(sshd: &Sshd, program: &str) -> Command {
    common::rock_command(sshd, ROCKD, &[], program)
}

fn client(sshd: &Sshd, who: Client, program: &str) -> Command {
    match who {
        Client::Plain => plain(sshd, program),
        Client::Rock => rock(sshd, program),
        Client::Relay => {
            let exe = std::env::current_exe().expect("the benchmark's own path");
            let mut cmd = plain(sshd, program);
            cmd.arg("-o")
                .arg(format!(
                    "ProxyCommand={} {RELAY_FDPASS} {}",
                    exe.display(),
                    relay_socket(sshd).display()
                ))
                .args(["-o", "ProxyUseFdpass=yes"]);
            cmd
        }
    }
}

// ---------------------------------------------------------------------
// The reference relay: rock's layout without rock's protocol. ssh gets,
// through `ProxyUseFdpass`, a Unix socket to a relay process (this program
// started again, as ssh gets a socketpair to rock); that relay copies to a
// second relay process over loopback TCP (as rock's link to rockd); the
// second copies to sshd over TCP (as rockd). Blocking read and write with
// 64 KiB buffers on a pair of threads per connection (no splice, no
// event loop; `ROCK_BENCH_RELAY=tokio` makes them tokio copies on one
// thread instead), TCP_NODELAY like rock's links. Processes of their own, as
// rock and rockd are: a hop between processes costs more than one
// between threads of one process (an address-space switch per wakeup),
// and the reference should pay what rock pays for its layout.

/// argv[1] that makes this program the reference's `ProxyCommand`.
const RELAY_FDPASS: &str = "--relay-fdpass";
const RELAY_BUF: usize = 64 << 10;

/// A byte stream the reference relay copies: TCP or Unix.
trait Hop: Read + Write + Send + Sized + 'static {
    fn dup(&self) -> std::io::Result<Self>;
    fn close_write(&self);
}

impl Hop for TcpStream {
    fn dup(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
    fn close_write(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

impl Hop for UnixStream {
    fn dup(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
    fn close_write(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

/// Copies until EOF or an error, then passes the EOF on.
fn pump(mut from: impl Hop, mut to: impl Hop) {
    let mut buf = vec![0u8; RELAY_BUF];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    to.close_write();
}

/// Copies both ways between `a` and `b` until both directions ended.
fn bridge(a: impl Hop, b: impl Hop) {
    let (Ok(a2), Ok(b2)) = (a.dup(), b.dup()) else {
        return;
    };
    let other = thread::spawn(move || pump(a2, b2));
    pump(b, a);
    let _ = other.join();
}

/// The `ProxyCommand`, like rock's proxy helper: connects to the local
/// relay and hands the connection to ssh over stdout, then exits.
fn relay_helper(socket: &str) -> ! {
    let conn = UnixStream::connect(socket)
        .unwrap_or_else(|e| fail(&format!("relay: connect to {socket}: {e}")));
    // SAFETY: with ProxyUseFdpass, ssh gives its proxy command a Unix
    // socket as stdout; it stays open while this process runs.
    let stdout = unsafe { BorrowedFd::borrow_raw(1) };
    rock::redirect::fdpass::send_fd(stdout, conn.as_fd())
        .unwrap_or_else(|e| fail(&format!("relay: pass the connection to ssh: {e}")));
    std::process::exit(0);
}

/// argv[1] that makes this program one of the reference's two relays, a
/// process of its own as rock and rockd are: `--relay-remote TARGET_PORT`
/// (in rockd's place: prints the port it listens on, bridges each
/// connection to sshd) or `--relay-local SOCKET REMOTE_PORT` (in rock's
/// place: bridges each connection on the Unix socket to the remote relay).
const RELAY_PROCESS: &str = "--relay-process";

/// Runs one reference relay process (see [`RELAY_PROCESS`]); never returns.
fn relay_process(args: &[String]) -> ! {
    // Ends with the benchmark, however that ends.
    // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a flag of this process.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let port = |s: &str| -> u16 { s.parse().unwrap_or_else(|_| fail(&format!("bad port {s}"))) };
    if std::env::var("ROCK_BENCH_RELAY").is_ok_and(|k| k == "tokio") {
        tokio_relay_process(args, port);
    }
    match args {
        [role, target] if role == "remote" => {
            let target = port(target);
            let remote = TcpListener::bind(("127.0.0.1", 0)).expect("bind the relay's port");
            let listening = remote.local_addr().expect("relay address").port();
            println!("{listening}");
            let _ = std::io::stdout().flush();
            for conn in remote.incoming().flatten() {
                thread::spawn(move || {
                    if let Ok(up) = TcpStream::connect(("127.0.0.1", target)) {
                        let _ = (conn.set_nodelay(true), up.set_nodelay(true));
                        bridge(conn, up);
                    }
                });
            }
        }
        [role, socket, remote] if role == "local" => {
            let remote = port(remote);
            let local = UnixListener::bind(socket).expect("bind the relay's socket");
            println!("ready");
            let _ = std::io::stdout().flush();
            for conn in local.incoming().flatten() {
                thread::spawn(move || {
                    if let Ok(link) = TcpStream::connect(("127.0.0.1", remote)) {
                        let _ = link.set_nodelay(true);
                        bridge(conn, link);
                    }
                });
            }
        }
        _ => fail(&format!("{RELAY_PROCESS}: bad arguments {args:?}")),
    }
    std::process::exit(0);
}

/// [`relay_process`] with tokio copies on one thread instead of blocking
/// copy threads: the event loop rock's relays run on, without the protocol.
fn tokio_relay_process(args: &[String], port: impl Fn(&str) -> u16) -> ! {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let announce = |line: &str| {
        println!("{line}");
        let _ = std::io::stdout().flush();
    };
    runtime.block_on(async {
        match args {
            [role, target] if role == "remote" => {
                let target = port(target);
                let remote = tokio::net::TcpListener::bind(("127.0.0.1", 0))
                    .await
                    .expect("bind the relay's port");
                announce(
                    &remote
                        .local_addr()
                        .expect("relay address")
                        .port()
                        .to_string(),
                );
                while let Ok((conn, _)) = remote.accept().await {
                    let _ = conn.set_nodelay(true);
                    tokio::spawn(copy_onward(conn, target));
                }
            }
            [role, socket, remote] if role == "local" => {
                let remote = port(remote);
                let local =
                    tokio::net::UnixListener::bind(socket).expect("bind the relay's socket");
                announce("ready");
                while let Ok((conn, _)) = local.accept().await {
                    tokio::spawn(copy_onward(conn, remote));
                }
            }
            _ => fail(&format!("{RELAY_PROCESS}: bad arguments {args:?}")),
        }
    });
    std::process::exit(0);
}

/// Copies both ways between `conn` and a new connection to `port` on
/// loopback (TCP_NODELAY), until both directions ended.
async fn copy_onward<S>(mut conn: S, port: u16)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Ok(mut onward) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
        let _ = onward.set_nodelay(true);
        let _ = tokio::io::copy_bidirectional(&mut conn, &mut onward).await;
    }
}

/// Starts a reference relay process and returns it with the first line
/// it printed.
fn start_relay(args: &[&str]) -> (Child, String) {
    let exe = std::env::current_exe().expect("this benchmark's own path");
    let mut child = Command::new(exe)
        .arg(RELAY_PROCESS)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start a reference relay process");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("read the relay's first line");
    (child, line.trim().to_owned())
}

/// Starts the two relay processes (once, for the whole run) and returns
/// the local one's socket path.
fn relay_socket(sshd: &Sshd) -> PathBuf {
    static SOCKET: OnceLock<(PathBuf, [Guard; 2])> = OnceLock::new();
    SOCKET
        .get_or_init(|| {
            let (remote, port) = start_relay(&["remote", &sshd.port().to_string()]);
            let path = sshd.dir().join("relay.sock");
            let path_arg = path.to_str().expect("a UTF-8 socket path");
            let (local, ready) = start_relay(&["local", path_arg, &port]);
            assert_eq!(ready, "ready", "the local relay did not start");
            (path, [Guard(remote), Guard(local)])
        })
        .0
        .clone()
}

/// Runs `cmd` to completion; panics unless it exits 0. Returns wall seconds.
fn timed_run(cmd: &mut Command, limit: Duration, sshd: &Sshd) -> f64 {
    let t0 = Instant::now();
    let (out, exited) = common::run_with_timeout_exit(cmd, limit);
    let secs = t0.elapsed().as_secs_f64();
    // Timed to the end of its output, as a user waits for it; say so
    // when something the command left behind kept that open.
    let held = exited.elapsed();
    if held > Duration::from_millis(20) {
        println!(
            "    ({} exited {:.0} ms before its output closed)",
            cmd.get_program().to_string_lossy(),
            held.as_secs_f64() * 1e3
        );
    }
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n--- sshd log ---\n{}",
        common::text(&out),
        sshd.log()
    );
    secs
}

/// Waits until nothing sshd started still runs, so that one run's
/// leftovers (a rockd finishing) do not overlap the next run.
fn quiesce(sshd: &Sshd) {
    sshd.wait_no_descendants(Duration::from_secs(60));
    // Let the listener reap the last zombies (their CPU time moves into it).
    thread::sleep(Duration::from_millis(30));
}

/// A child killed when dropped (a panicking benchmark leaves nothing).
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Measures each of `clients` `rounds` times, rotating which goes first.
/// A round during which others used too much CPU is taken again once the
/// machine is quiet. Returns the values per client, the number of rounds
/// redone and the number kept although noisy.
fn alternate<T>(
    quiet: &mut Quiet,
    label: &str,
    clients: &[Client],
    rounds: usize,
    mut measure: impl FnMut(Client) -> T,
    show: impl Fn(&T) -> String,
) -> (BTreeMap<Client, Vec<T>>, usize, usize) {
    let mut values: BTreeMap<Client, Vec<T>> = BTreeMap::new();
    let (mut redone, mut noisy) = (0, 0);
    for round in 0..rounds {
        for attempt in 0..=REDO {
            // Judged run by run: a burst of someone else's work during one
            // client's run would skew the comparison even if the round's
            // average looks quiet.
            let mut got: Vec<(Client, T)> = Vec::new();
            let mut line = Vec::new();
            let mut worst: f64 = 0.0;
            for who in Client::order(clients, round) {
                let meter = Meter::start();
                let v = measure(who);
                let load = meter.stop();
                worst = worst.max(load.foreign);
                line.push(format!(
                    "{} {} [others {:.2}]",
                    who.name(),
                    show(&v),
                    load.foreign
                ));
                got.push((who, v));
            }
            let too_busy = worst > quiet.max;
            let verdict = match (too_busy, attempt < REDO) {
                (false, _) => "ok",
                (true, true) => "NOISY, again",
                (true, false) => "NOISY, kept",
            };
            println!("  {label} #{}: {} | {verdict}", round + 1, line.join(", "));
            if too_busy && attempt < REDO {
                redone += 1;
                quiet.settle(label);
                continue;
            }
            if too_busy {
                noisy += 1;
            }
            for (who, v) in got {
                values.entry(who).or_default().push(v);
            }
            break;
        }
    }
    (values, redone, noisy)
}

// ---------------------------------------------------------------------
// The report.

struct Row {
    what: String,
    plain: String,
    rock: String,
    ratio: String,
    target: String,
}

struct Report {
    rows: Vec<Row>,
    notes: Vec<String>,
    quiet: Quiet,
}

impl Report {
    fn row(&mut self, what: &str, plain: String, rock: String, ratio: String, target: &str) {
        self.rows.push(Row {
            what: what.into(),
            plain,
            rock,
            ratio,
            target: target.into(),
        });
    }

    fn print(&self) {
        let head = Row {
            what: "measure".into(),
            plain: "plain OpenSSH".into(),
            rock: "rock -d".into(),
            ratio: "ratio / added".into(),
            target: "target".into(),
        };
        let w = |f: fn(&Row) -> &String| {
            self.rows
                .iter()
                .chain([&head])
                .map(|r| f(r).chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths = [
            w(|r| &r.what),
            w(|r| &r.plain),
            w(|r| &r.rock),
            w(|r| &r.ratio),
            w(|r| &r.target),
        ];
        let line = |r: &Row| {
            let cells = [&r.what, &r.plain, &r.rock, &r.ratio, &r.target];
            let mut s = String::from("|");
            for (c, width) in cells.iter().zip(widths) {
                let pad = width - c.chars().count();
                write!(s, " {c}{} |", " ".repeat(pad)).unwrap();
            }
            s
        };
        println!("\n{}", line(&head));
        let mut rule = String::from("|");
        for width in widths {
            write!(rule, "{}|", "-".repeat(width + 2)).unwrap();
        }
        println!("{rule}");
        for r in &self.rows {
            println!("{}", line(r));
        }
        if !self.notes.is_empty() || !self.quiet.notes.is_empty() {
            println!();
            for n in self.notes.iter().chain(&self.quiet.notes) {
                println!("* {n}");
            }
        }
    }
}

// ---------------------------------------------------------------------
// 1. scp throughput.

/// Reads `path` to the end; returns MiB/s.
fn pre_read(path: &Path) -> f64 {
    let t0 = Instant::now();
    let mut f = File::open(path).expect("open the source file");
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).expect("read the source file");
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    total as f64 / (1 << 20) as f64 / t0.elapsed().as_secs_f64()
}

#[derive(Clone, Copy)]
enum Way {
    Up,
    Down,
}

fn scp_cmd(sshd: &Sshd, who: Client, way: Way, src: &Path, dst: &Path) -> Command {
    let mut cmd = client(sshd, who, "scp");
    match way {
        Way::Up => cmd.arg(src).arg(format!("rocktest:{}", dst.display())),
        Way::Down => cmd.arg(format!("rocktest:{}", src.display())).arg(dst),
    };
    cmd
}

fn bench_scp(sshd: &Sshd, opts: &Options, report: &mut Report) {
    let mib = opts.bytes as f64 / (1 << 20) as f64;
    let src = sshd.dir().join("random.bin");
    println!("\n== scp: {mib:.0} MiB of random data ==");
    common::random_file(&src, opts.bytes);
    let sum = common::sha256_file(&src);
    let cached = pre_read(&src);
    println!(
        "  source {} read from the page cache at {cached:.0} MiB/s",
        src.display()
    );
    let limit = Duration::from_secs(900);

    // Untimed first runs: warm everything up, check that each client
    // delivers the file intact (to a real file), and see where the CPU goes.
    let clients = [Client::Plain, Client::Rock, Client::Relay];
    for (way, name) in [(Way::Up, "upload"), (Way::Down, "download")] {
        for who in clients {
            let dst = sshd.dir().join("received.bin");
            pre_read(&src);
            quiesce(sshd);
            let sampler = Sampler::start();
            let secs = timed_run(&mut scp_cmd(sshd, who, way, &src, &dst), limit, sshd);
            quiesce(sshd);
            let cpu = sampler.finish();
            assert_eq!(
                common::sha256_file(&dst),
                sum,
                "{} {name} delivered a corrupted copy",
                who.name()
            );
            std::fs::remove_file(&dst).expect("remove the copy");
            let note = format!(
                "warm-up {name} {} (to a file, sha256 checked): {:.0} MiB/s; {}",
                who.name(),
                mib / secs,
                breakdown(&cpu, mib)
            );
            println!("  {note}");
            report.notes.push(note);
        }
    }

    for (way, name) in [(Way::Up, "upload"), (Way::Down, "download")] {
        report.quiet.settle(&format!("scp {name}"));
        let (runs, redone, noisy) = alternate(
            &mut report.quiet,
            &format!("scp {name}"),
            &clients,
            opts.reps,
            |who| {
                pre_read(&src);
                quiesce(sshd);
                let m = Meter::start();
                let secs = timed_run(
                    &mut scp_cmd(sshd, who, way, &src, Path::new("/dev/null")),
                    limit,
                    sshd,
                );
                quiesce(sshd);
                (mib / secs, secs, m.stop().ours)
            },
            |(rate, secs, cpu)| format!("{rate:.0} MiB/s ({secs:.2} s, {cpu:.1} CPU s)"),
        );
        let rates = |who: Client| -> Vec<f64> { runs[&who].iter().map(|r| r.0).collect() };
        let cpu = |who: Client| -> Vec<f64> { runs[&who].iter().map(|r| r.2).collect() };
        let (p, r, x) = (
            rates(Client::Plain),
            rates(Client::Rock),
            rates(Client::Relay),
        );
        // Ratios within a round: the runs made next to each other.
        let ratio = |v: &[f64]| -> Vec<f64> { p.iter().zip(v).map(|(a, b)| b / a).collect() };
        report.row(
            &format!("scp {name} {mib:.0} MiB, MiB/s"),
            spread(&p, 0),
            spread(&r, 0),
            format!("{} ×", spread(&ratio(&r), 2)),
            "≥ 0.90 ×",
        );
        report.row(
            &format!("  reference: bare 2-hop relay instead of rock, {name}"),
            "(same as above)".into(),
            spread(&x, 0),
            format!("{} ×", spread(&ratio(&x), 2)),
            "-",
        );
        report.notes.push(format!(
            "scp {name}: CPU seconds per run, whole tree (scp, ssh, sshd, sftp-server, and rock+rockd \
             or the relays): plain {}, rock {}, bare relay {}; {redone} round(s) redone for load, \
             {noisy} kept noisy",
            spread(&cpu(Client::Plain), 2),
            spread(&cpu(Client::Rock), 2),
            spread(&cpu(Client::Relay), 2),
        ));
    }
    let _ = std::fs::remove_file(&src);
}

// ---------------------------------------------------------------------
// 1b. scp over a link of limited rate.

/// The rate-limited links of the `link` section: name, `tc` rate, and the
/// size in MiB of the file sent over it (1 GiB, as in the `scp` section,
/// where that takes about ten seconds; five seconds' worth on the slow one).
const LINKS: [(&str, &str, u64); 2] = [("1 Gbit/s", "1gbit", 1024), ("100 Mbit/s", "100mbit", 64)];

/// scp through network namespaces (laptop ↔ router ↔ server), the router
/// limiting each direction's rate with a token bucket: a network, not the
/// machine's CPU, is the bottleneck, as for a user. Plain and rock only
/// (the reference relays run in this process, outside the namespaces).
fn bench_link(opts: &Options, report: &mut Report) {
    for (name, rate, size_mib) in LINKS {
        let net = common::netns::Net::new();
        net.shape(rate, "50ms");
        let sshd = net.start_sshd(Sshd::builder());
        let bytes = size_mib << 20;
        let mib = size_mib as f64;
        let src = sshd.dir().join("random.bin");
        println!("\n== scp over a {name} link: {mib:.0} MiB of random data ==");
        common::random_file(&src, bytes);
        let sum = common::sha256_file(&src);
        let limit = Duration::from_secs(900);
        let clients = [Client::Plain, Client::Rock];
        let run = |who: Client, way: Way, dst: &Path| -> f64 {
            pre_read(&src);
            quiesce(&sshd);
            let secs = timed_run(
                &mut net.on_laptop(&scp_cmd(&sshd, who, way, &src, dst)),
                limit,
                &sshd,
            );
            quiesce(&sshd);
            secs
        };
        // One untimed, checked copy each way per client.
        for way in [Way::Up, Way::Down] {
            for who in clients {
                let dst = sshd.dir().join("received.bin");
                run(who, way, &dst);
                assert_eq!(
                    common::sha256_file(&dst),
                    sum,
                    "{} over {name} delivered a corrupted copy",
                    who.name()
                );
                std::fs::remove_file(&dst).expect("remove the copy");
            }
        }
        for (way, direction) in [(Way::Up, "upload"), (Way::Down, "download")] {
            let label = format!("scp {direction} over {name}");
            report.quiet.settle(&label);
            let (runs, redone, noisy) = alternate(
                &mut report.quiet,
                &label,
                &clients,
                opts.reps,
                |who| mib / run(who, way, Path::new("/dev/null")),
                |rate| format!("{rate:.1} MiB/s"),
            );
            let (p, r) = (&runs[&Client::Plain], &runs[&Client::Rock]);
            let ratio: Vec<f64> = p.iter().zip(r).map(|(a, b)| b / a).collect();
            report.row(
                &format!("scp {direction} {mib:.0} MiB over a {name} link, MiB/s"),
                spread(p, 1),
                spread(r, 1),
                format!("{} ×", spread(&ratio, 2)),
                "≥ 0.90 ×",
            );
            if redone + noisy > 0 {
                report.notes.push(format!(
                    "{label}: {redone} round(s) redone for load, {noisy} kept noisy"
                ));
            }
        }
    }
}

// ---------------------------------------------------------------------
// 2. One-byte echo round trips.

/// Round trips of one byte through `<client> rocktest cat`, in µs.
fn echo_session(sshd: &Sshd, who: Client) -> Vec<f64> {
    echo_session_via(sshd, who, |cmd| cmd)
}

/// The same, the client command made by `via` (run elsewhere, say).
fn echo_session_via(sshd: &Sshd, who: Client, via: impl FnOnce(Command) -> Command) -> Vec<f64> {
    let mut cmd = client(sshd, who, "ssh");
    cmd.args(["rocktest", "cat"]);
    let mut cmd = via(cmd);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Guard(cmd.spawn().expect("start the echo session"));
    let mut stdin = child.0.stdin.take().expect("piped stdin");
    let mut stdout = child.0.stdout.take().expect("piped stdout");
    let mut stderr = child.0.stderr.take().expect("piped stderr");
    let errors = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    // A watchdog: a hung session must fail the benchmark, not hang it.
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let done = done.clone();
        let pid = child.0.id() as libc::pid_t;
        thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(120);
            while !done.load(Ordering::Relaxed) {
                if Instant::now() > end {
                    // SAFETY: kill has no memory-safety preconditions.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    return;
                }
                thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let mut rtts = Vec::with_capacity(ECHO_TRIPS);
    let mut byte = [0u8; 1];
    for i in 0..ECHO_WARMUP + ECHO_TRIPS {
        let sent = [b'a' + (i % 26) as u8];
        let t0 = Instant::now();
        stdin.write_all(&sent).expect("write to the echo session");
        if let Err(e) = stdout.read_exact(&mut byte) {
            done.store(true, Ordering::Relaxed);
            drop(stdin);
            let _ = child.0.wait();
            panic!(
                "{} echo session broke after {i} round trips: {e}\n{}",
                who.name(),
                errors.join().unwrap_or_default()
            );
        }
        let rtt = t0.elapsed();
        assert_eq!(byte, sent, "the echo returned another byte");
        if i >= ECHO_WARMUP {
            rtts.push(rtt.as_secs_f64() * 1e6);
        }
    }
    drop(stdin);
    let mut rest = Vec::new();
    let _ = stdout.read_to_end(&mut rest);
    let status = child.0.wait().expect("wait for the echo session");
    done.store(true, Ordering::Relaxed);
    let _ = watchdog.join();
    assert!(
        status.success() && rest.is_empty(),
        "{} echo session ended badly: {status:?}, {} stray bytes\n{}",
        who.name(),
        rest.len(),
        errors.join().unwrap_or_default()
    );
    quiesce(sshd);
    rtts
}

fn bench_echo(sshd: &Sshd, report: &mut Report) {
    println!(
        "\n== echo: {ECHO_TRIPS} one-byte round trips through `cat`, {ECHO_ROUNDS} sessions each =="
    );
    report.quiet.settle("echo");
    let show = |v: &Vec<f64>| {
        format!(
            "median {:.0} µs, p99 {:.0} µs",
            median(v),
            quantile(v, 0.99)
        )
    };
    let (runs, redone, noisy) = alternate(
        &mut report.quiet,
        "echo",
        &[Client::Plain, Client::Rock, Client::Relay],
        ECHO_ROUNDS,
        |who| echo_session(sshd, who),
        show,
    );
    let p = &runs[&Client::Plain];
    let pooled = |who: Client| runs[&who].concat();
    let range = |who: Client, q: f64| {
        let s = sorted(
            &runs[&who]
                .iter()
                .map(|s| quantile(s, q))
                .collect::<Vec<_>>(),
        );
        format!("{:.0}–{:.0}", s[0], s[s.len() - 1])
    };
    for (name, q) in [("median", 0.5), ("p99", 0.99)] {
        let pm = quantile(&pooled(Client::Plain), q);
        for (who, what) in [
            (Client::Rock, format!("echo RTT {name}, µs")),
            (
                Client::Relay,
                format!("  reference: bare 2-hop relay, RTT {name}"),
            ),
        ] {
            let m = quantile(&pooled(who), q);
            report.row(
                &what,
                if who == Client::Rock {
                    format!("{pm:.0} ({})", range(Client::Plain, q))
                } else {
                    "(same as above)".into()
                },
                format!("{m:.0} ({})", range(who, q)),
                format!("+{:.0} µs ({:.2} ×)", m - pm, m / pm),
                "-",
            );
        }
    }
    report.notes.push(format!(
        "echo: {} round trips per client pooled over {ECHO_ROUNDS} sessions (ranges: per session); \
         {redone} round(s) redone for load, {noisy} kept noisy",
        p.iter().map(Vec::len).sum::<usize>()
    ));
}

// ---------------------------------------------------------------------
// 3. Start-up.

fn bench_startup(sshd: &Sshd, report: &mut Report) {
    // Every command ssh runs goes through the login shell, and rock -d runs
    // two (rockd's and yours): how slowly that shell starts shows. The
    // fixture's user is root, whose shell start-up on the machines this
    // runs on is slow (root's .bashrc runs `pyenv init`); the password
    // test user made by scripts/setup has a stock one.
    let mut logins = vec![(None, "the fixture's user")];
    if common::user_exists(common::PASSWORD_USER) {
        logins.push((Some(common::PASSWORD_USER), "a user with a stock .bashrc"));
    } else {
        report.notes.push(format!(
            "startup: no user {} (scripts/setup makes it), so start-up was measured for the \
             fixture's user only",
            common::PASSWORD_USER
        ));
    }
    for (login, whom) in logins {
        let label = format!("startup ({whom})");
        println!("\n== {label}: `ssh rocktest true`, {STARTUP_RUNS} runs each ==");
        report.quiet.settle(&label);
        let (mut runs, redone, noisy) = alternate(
            &mut report.quiet,
            &label,
            &[Client::Plain, Client::Rock],
            STARTUP_RUNS,
            |who| {
                quiesce(sshd);
                let mut cmd = client(sshd, who, "ssh");
                if let Some(user) = login {
                    cmd.args(["-l", user]);
                }
                cmd.args(["rocktest", "true"]);
                timed_run(&mut cmd, Duration::from_secs(60), sshd) * 1e3
            },
            |ms| format!("{ms:.0} ms"),
        );
        let (p, r) = (
            runs.remove(&Client::Plain).unwrap_or_default(),
            runs.remove(&Client::Rock).unwrap_or_default(),
        );
        let ratios: Vec<f64> = p.iter().zip(&r).map(|(a, b)| b / a).collect();
        report.row(
            &format!("startup `ssh rocktest true` as {whom}, ms"),
            spread(&p, 0),
            spread(&r, 0),
            format!(
                "{} × (+{:.0} ms)",
                spread(&ratios, 2),
                median(&r) - median(&p)
            ),
            "-",
        );
        report.notes.push(format!(
            "{label}: {redone} pair(s) redone for load, {noisy} kept noisy"
        ));
    }
}

// ---------------------------------------------------------------------
// 4. Recovery.

/// A session printing a numbered line every 10 ms until `stop` exists.
struct Stream {
    child: Guard,
    lines: mpsc::Receiver<(Instant, u64)>,
    last: u64,
    broken: Vec<String>,
}

impl Stream {
    fn start(sshd: &Sshd, who: Client, stop: &Path) -> Stream {
        Stream::start_via(sshd, who, stop, |cmd| cmd)
    }

    /// The same, the client command made by `via` (run elsewhere, say).
    fn start_via(
        sshd: &Sshd,
        who: Client,
        stop: &Path,
        via: impl FnOnce(Command) -> Command,
    ) -> Stream {
        let script = format!(
            "i=0; while [ ! -e {} ]; do i=$((i+1)); echo $i; sleep 0.01; done",
            stop.display()
        );
        let mut cmd = client(sshd, who, "ssh");
        cmd.args(["rocktest", &script]);
        let mut cmd = via(cmd);
        cmd.stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = Guard(cmd.spawn().expect("start the streaming session"));
        let out = child.0.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let n = line.trim().parse().unwrap_or(0);
                if tx.send((Instant::now(), n)).is_err() {
                    break;
                }
            }
        });
        let mut s = Stream {
            child,
            lines,
            last: 0,
            broken: Vec::new(),
        };
        s.next(Duration::from_secs(60))
            .expect("the streaming session printed nothing for a minute");
        s
    }

    /// The next line's arrival time, checking that lines come in order,
    /// once each. None when the stream ended or stalled for `limit`.
    fn next(&mut self, limit: Duration) -> Option<Instant> {
        let (at, n) = self.lines.recv_timeout(limit).ok()?;
        if n != self.last + 1 {
            self.broken
                .push(format!("line {n} after line {}", self.last));
        }
        self.last = n;
        Some(at)
    }

    /// Time from `since` to the first line that arrives after it.
    fn first_after(&mut self, since: Instant) -> Option<Duration> {
        self.first_within(since, Duration::from_secs(60))
    }

    /// The same, giving up when no line came for `limit`.
    fn first_within(&mut self, since: Instant, limit: Duration) -> Option<Duration> {
        loop {
            let at = self.next(limit)?;
            if at > since {
                return Some(at - since);
            }
        }
    }

    /// Reads lines for `d`, returning how many came.
    fn drain_for(&mut self, d: Duration) -> usize {
        let end = Instant::now() + d;
        let mut n = 0;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok((_, k)) => {
                    if k != self.last + 1 {
                        self.broken
                            .push(format!("line {k} after line {}", self.last));
                    }
                    self.last = k;
                    n += 1;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    thread::sleep(left);
                    break;
                }
            }
        }
        n
    }
}

/// The rock process's link to rockd (not its bootstrap connection to sshd).
fn rock_link_port(sshd: &Sshd, pid: u32) -> u16 {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(port) = link_port_of(pid).filter(|&p| p != sshd.port()) {
            return port;
        }
        assert!(Instant::now() < end, "rock never connected to rockd");
        thread::sleep(Duration::from_millis(20));
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn bench_recovery(sshd: &Sshd, report: &mut Report) {
    println!(
        "\n== recovery: a line every 10 ms; {TRIALS} blackholes of {}–{} ms, {TRIALS} resets ==",
        hole_length(0).as_millis(),
        hole_length(TRIALS - 1).as_millis()
    );
    report.quiet.settle("recovery");
    let mut holes: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut resets = Vec::new();
    let mut intact: BTreeMap<&str, String> = BTreeMap::new();

    // rock: blackholes and resets of the link to rockd.
    {
        let stop = sshd.dir().join("stop-rock");
        let mut s = Stream::start(sshd, Client::Rock, &stop);
        let port = rock_link_port(sshd, s.child.0.id());
        for i in 0..TRIALS {
            assert!(
                s.drain_for(Duration::from_secs(2)) > 20,
                "the stream is not flowing"
            );
            let hole = Blackhole::new(port);
            thread::sleep(hole_length(i));
            drop(hole);
            let lifted = Instant::now();
            let d = s
                .first_after(lifted)
                .expect("rock's stream never came back");
            println!(
                "  rock blackhole #{}: next line {:.0} ms after lifting",
                i + 1,
                ms(d)
            );
            holes.entry("rock").or_default().push(ms(d));
        }
        for i in 0..TRIALS {
            assert!(
                s.drain_for(Duration::from_secs(2)) > 20,
                "the stream is not flowing"
            );
            let cut = Instant::now();
            reset_link(port);
            let d = s.first_after(cut).expect("rock's stream never came back");
            println!(
                "  rock reset #{}: next line {:.0} ms after ss -K",
                i + 1,
                ms(d)
            );
            resets.push(ms(d));
        }
        s.drain_for(Duration::from_millis(500));
        std::fs::write(&stop, "").expect("write the stop file");
        while s.next(Duration::from_secs(30)).is_some() {}
        let status = s.child.0.wait().expect("wait for rock");
        intact.insert(
            "rock",
            if s.broken.is_empty() && status.success() {
                format!("{} lines, all once and in order, exit 0", s.last)
            } else {
                format!("BROKEN: {:?}, exit {status:?}", s.broken)
            },
        );
        quiesce(sshd);
    }

    // Plain ssh: the same blackholes on its connection to sshd (TCP's own
    // retransmission brings it back); a reset ends it.
    let plain_reset;
    {
        let stop = sshd.dir().join("stop-plain");
        let mut s = Stream::start(sshd, Client::Plain, &stop);
        for i in 0..TRIALS {
            assert!(
                s.drain_for(Duration::from_secs(2)) > 20,
                "the stream is not flowing"
            );
            let hole = Blackhole::new(sshd.port());
            thread::sleep(hole_length(i));
            drop(hole);
            let lifted = Instant::now();
            let d = s
                .first_after(lifted)
                .expect("plain ssh's stream never came back");
            println!(
                "  ssh blackhole #{}: next line {:.0} ms after lifting",
                i + 1,
                ms(d)
            );
            holes.entry("ssh").or_default().push(ms(d));
        }
        assert!(
            s.drain_for(Duration::from_secs(2)) > 20,
            "the stream is not flowing"
        );
        intact.insert(
            "ssh",
            if s.broken.is_empty() {
                format!("{} lines in order before the reset", s.last)
            } else {
                format!("BROKEN: {:?}", s.broken)
            },
        );
        reset_link(sshd.port());
        let cut = Instant::now();
        let came = s.first_after(cut);
        let status = s.child.0.wait().expect("wait for ssh");
        plain_reset = match came {
            Some(d) => format!("{:.0}", ms(d)),
            None => format!("dies (exit {})", status.code().unwrap_or(-1)),
        };
        println!("  ssh reset: {plain_reset}");
        quiesce(sshd);
    }

    report.row(
        "recovery after a 10–10.8 s blackhole, ms",
        spread(&holes["ssh"], 0),
        spread(&holes["rock"], 0),
        format!("{:.2} ×", median(&holes["rock"]) / median(&holes["ssh"])),
        "< 1000 ms",
    );
    report.row(
        "recovery after `ss -K` reset, ms",
        plain_reset,
        spread(&resets, 0),
        "-".into(),
        "< 1000 ms",
    );
    report.notes.push(format!(
        "recovery: rock stream {}; plain ssh stream {}",
        intact["rock"], intact["ssh"]
    ));
}

// ---------------------------------------------------------------------

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s.trim().to_string()
        })
        .unwrap_or_else(|e| format!("({program}: {e})"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 3 && args[1] == RELAY_FDPASS {
        relay_helper(&args[2]);
    }
    if args.len() > 2 && args[1] == RELAY_PROCESS {
        relay_process(&args[2..]);
    }
    let opts = Options::from_env();
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        fail(
            "needs root: it starts a real sshd (the test fixture), blackholes links with \
             iptables and resets them with `ss -K`. Run it as root, e.g. \
             `sudo cargo bench --bench dmode`.",
        );
    }
    for (tool, package) in [("iptables", "iptables"), ("ss", "iproute2")] {
        if Command::new(tool).arg("-V").output().is_err() {
            fail(&format!(
                "{tool} is missing: install {package} (scripts/setup)"
            ));
        }
    }
    for bin in [ROCK, ROCKD] {
        if !Path::new(bin).exists() {
            fail(&format!(
                "{bin} is missing: run `cargo build --release` first"
            ));
        }
        if !bin.contains("/release/") {
            fail(&format!(
                "{bin} is not a release build: run `cargo build --release && cargo bench --bench dmode`"
            ));
        }
    }

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_default();
    println!(
        "rock -d benchmark, {}",
        command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
    );
    println!(
        "machine: {} cores ({cpu}), {}",
        thread::available_parallelism().map_or(0, |n| n.get()),
        command_line("uname", &["-sr"])
    );
    println!("client: {}", command_line("ssh", &["-V"]));
    println!("rock: {ROCK}\nrockd: {ROCKD}");
    println!("loadavg at start: {}", loadavg());

    let mut report = Report {
        rows: Vec::new(),
        notes: vec![format!("loadavg at start: {}", loadavg())],
        quiet: Quiet {
            max: opts.max_foreign,
            budget: Duration::from_secs(opts.wait_minutes * 60),
            notes: Vec::new(),
        },
    };
    let sshd = Sshd::start();
    if opts.wants("scp") {
        bench_scp(&sshd, &opts, &mut report);
    }
    if opts.wants("link") {
        bench_link(&opts, &mut report);
    }
    if opts.wants("echo") {
        bench_echo(&sshd, &mut report);
    }
    if opts.wants("startup") {
        bench_startup(&sshd, &mut report);
    }
    if opts.wants("idle") {
        idle::bench_idle(&sshd, &mut report);
    }
    if opts.wants("recovery") {
        bench_recovery(&sshd, &mut report);
    }
    if opts.wants("moves") {
        moves::bench_moves(&mut report);
    }
    report.notes.push(format!("loadavg at end: {}", loadavg()));
    report.print();
}
