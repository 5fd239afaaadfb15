//! `rock -d` across a real network that breaks: a laptop, a router and a
//! server in network namespaces (`tests/common/netns.rs`), the fixture's
//! sshd in the server namespace, rock in the laptop's, rockd started by
//! rock's bootstrap on the server. The laptop changes address, loses its
//! link, sleeps; the server moves; fifty sessions ride through cuts; `rock
//! -d scp` copies up and down through an address change and an outage,
//! through the laptop's sleep, through the server's move.
//!
//! Every session runs a remote command that prints `line N TIME` every
//! 100 ms (TIME: the server's clock when it printed the line) until the test
//! creates a stop file, then `end N` and exits 7: every line must arrive
//! exactly once and in order, and rock must exit 7. Transfers compare the
//! sha256 of a 256 MiB random file.
//!
//! Each fault's recovery is printed (`netns figures:` lines, shown with
//! `--nocapture`) and never asserted: the machine is shared and slow.
//!
//! Durations: `ROCK_TEST_OUTAGE_SECS` (default 20) is the length of a link
//! outage, `ROCK_TEST_SLEEP_SECS` (default 20) of the laptop's sleep.
//! `scripts/test-long` runs this file with the full lengths (3 minutes and
//! 2 minutes).

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::netns::{Net, signal};
use common::transfer::file_len;
use common::{ROCKD, Sshd, TempDir, require_root, rock_command};

/// Safety limit for anything that should take seconds: a bootstrap, a
/// recovery, the end of a session. Generous, because the machine is shared.
const LIMIT: Duration = Duration::from_secs(180);
/// Lines a session must deliver before a fault, and after it.
const SETTLE_LINES: usize = 20;
/// The transfers' size.
const BIG: u64 = 256 << 20;

fn env_secs(name: &str, default: u64) -> Duration {
    let secs = match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number of seconds")),
        Err(_) => default,
    };
    Duration::from_secs(secs)
}

/// How long a link outage lasts.
fn outage() -> Duration {
    env_secs("ROCK_TEST_OUTAGE_SECS", 20)
}

/// How long the laptop sleeps.
fn sleep_time() -> Duration {
    env_secs("ROCK_TEST_SLEEP_SECS", 20)
}

/// The clock the server's `$EPOCHREALTIME` reads (same machine).
fn wall() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs_f64()
}

fn figure(text: &str) {
    eprintln!("netns figures: {text}");
}

/// The remote command's stop file and the FIFO it idles on, in a
/// directory the laptop and the server both see (one file system).
struct Remote {
    dir: TempDir,
}

impl Remote {
    fn new() -> Remote {
        let dir = common::temp_dir();
        let fifo = dir.path().join("idle");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("run mkfifo");
        assert!(status.success(), "mkfifo {} failed", fifo.display());
        Remote { dir }
    }

    fn stop_file(&self) -> PathBuf {
        self.dir.path().join("stop")
    }

    /// Numbered lines every 100 ms until the stop file exists, then
    /// `end N`, exit 7. bash builtins only (`read -t` on a FIFO nobody
    /// writes is the sleep), so fifty sessions do not fork 500 times a
    /// second.
    fn script(&self) -> String {
        format!(
            "exec bash -c 'exec 3<>{fifo}; i=0; while [ ! -e {stop} ]; do i=$((i+1)); \
             echo \"line $i $EPOCHREALTIME\"; read -t 0.1 -u 3 x; done; echo \"end $i\"; exit 7'",
            fifo = self.dir.path().join("idle").display(),
            stop = self.stop_file().display(),
        )
    }

    fn stop(&self) {
        std::fs::write(self.stop_file(), "").expect("create the stop file");
    }
}

/// A line as it arrived: when, and what it says.
#[derive(Debug, Clone)]
struct Arrival {
    at: Instant,
    text: String,
}

impl Arrival {
    /// The server's clock when it printed a `line N TIME`.
    fn printed(&self) -> Option<f64> {
        let mut words = self.text.split_whitespace();
        (words.next() == Some("line"))
            .then(|| words.nth(1)?.replace(',', ".").parse().ok())
            .flatten()
    }
}

/// One fault: when it started and ended, by the wall clock (to compare
/// with the server's) and by the monotonic one (to compare arrivals).
#[derive(Debug, Clone)]
struct Fault {
    what: String,
    start_wall: f64,
    end_wall: f64,
    end: Instant,
}

impl Fault {
    /// Runs `cause` (which breaks the network and, for an outage, restores
    /// it) and records when.
    fn cause(what: impl Into<String>, cause: impl FnOnce()) -> Fault {
        let start_wall = wall();
        cause();
        Fault {
            what: what.into(),
            start_wall,
            end_wall: wall(),
            end: Instant::now(),
        }
    }

    /// (next, live): from the fault's end to the first line that arrived
    /// after it and was printed after the fault began (so it crossed the
    /// network after the fault, not before), and to the first line printed
    /// after the fault ended (the backlog delivered, the stream live
    /// again).
    fn recovery(&self, lines: &[Arrival]) -> (Option<Duration>, Option<Duration>) {
        let after = |pred: &dyn Fn(&Arrival, f64) -> bool| {
            lines.iter().find_map(|a| {
                let t = a.printed()?;
                (a.at > self.end && pred(a, t)).then(|| a.at - self.end)
            })
        };
        (
            after(&|_, t| t > self.start_wall),
            after(&|_, t| t >= self.end_wall),
        )
    }

    /// Lines the server printed while the fault lasted.
    fn printed_during(&self, lines: &[Arrival]) -> usize {
        lines
            .iter()
            .filter_map(Arrival::printed)
            .filter(|&t| t > self.start_wall && t < self.end_wall)
            .count()
    }

    fn report(&self, scenario: &str, lines: &[Arrival]) {
        let (next, live) = self.recovery(lines);
        let secs =
            |d: Option<Duration>| d.map_or("never".into(), |d| format!("{:.2} s", d.as_secs_f64()));
        figure(&format!(
            "{scenario}: {} (lasted {:.1} s): next line {} after it ended, live again after {}; \
             {} lines printed during it",
            self.what,
            self.end_wall - self.start_wall,
            secs(next),
            secs(live),
            self.printed_during(lines),
        ));
    }
}

/// A `rock -d ssh rocktest <script>` running on the laptop.
struct Session {
    child: Child,
    lines: mpsc::Receiver<Arrival>,
    got: Vec<Arrival>,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// The thread that reads rock's stderr into `stderr`.
    stderr_reader: thread::JoinHandle<()>,
    /// Closed: the reader saw the end of rock's output.
    closed: bool,
}

impl Session {
    fn start(net: &Net, sshd: &Sshd, remote: &Remote) -> Session {
        let mut cmd = rock_command(sshd, ROCKD, &["-v"], "ssh");
        cmd.args(["rocktest", &remote.script()]);
        let mut child = net
            .on_laptop(&cmd)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rock in the laptop namespace");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(text) = line else { break };
                let at = Instant::now();
                if tx.send(Arrival { at, text }).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        let mut from = child.stderr.take().expect("piped stderr");
        let stderr_reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .expect("stderr buffer")
                    .extend_from_slice(&buf[..n]);
            }
        });
        Session {
            child,
            lines,
            got: Vec::new(),
            stderr,
            stderr_reader,
            closed: false,
        }
    }

    /// The rock process that carries the session (its worker).
    fn pid(&self) -> u32 {
        common::rock_worker(self.child.id())
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().expect("stderr buffer")).into_owned()
    }

    /// What went wrong, with everything rock printed.
    fn fail(&self, what: &str) -> ! {
        let last = self.got.last().map_or("(none)", |a| a.text.as_str());
        panic!(
            "rock (pid {}): {what}; {} lines so far, the last {last:?}\n--- rock's stderr ---\n{}",
            self.pid(),
            self.got.len(),
            self.stderr()
        );
    }

    /// Takes the next line, waiting up to `limit`; false at the end.
    fn take(&mut self, limit: Duration) -> bool {
        if self.closed {
            return false;
        }
        match self.lines.recv_timeout(limit) {
            Ok(line) => {
                self.got.push(line);
                true
            }
            Err(mpsc::RecvTimeoutError::Timeout) => self.fail(&format!("no line for {limit:?}")),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.closed = true;
                false
            }
        }
    }

    /// Waits until `n` more lines have arrived.
    fn wait_lines(&mut self, n: usize) {
        let want = self.got.len() + n;
        while self.got.len() < want {
            if !self.take(LIMIT) {
                self.fail(&format!("output ended before {want} lines"));
            }
        }
    }

    /// Waits until a line printed after `fault` ended has arrived, then for
    /// `more` lines.
    fn wait_live(&mut self, fault: &Fault, more: usize) {
        if !self.try_wait_live(fault, LIMIT) {
            self.fail(&format!("no line for {LIMIT:?} after {}", fault.what));
        }
        self.wait_lines(more);
    }

    /// Waits up to `limit` for a line printed after `fault` ended; false if
    /// none came.
    fn try_wait_live(&mut self, fault: &Fault, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        while !self
            .got
            .iter()
            .rev()
            .any(|a| a.printed().is_some_and(|t| t >= fault.end_wall))
        {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.lines.recv_timeout(left) {
                Ok(line) => self.got.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) => return false,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.closed = true;
                    self.fail(&format!(
                        "output ended before it resumed after {}",
                        fault.what
                    ));
                }
            }
        }
        true
    }

    /// Collects the rest of the output and the exit status (call after the
    /// stop file exists).
    fn finish(mut self) -> Finished {
        while self.take(LIMIT) {}
        let end = Instant::now() + LIMIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for rock") {
                break status;
            }
            if Instant::now() > end {
                self.fail("rock did not exit after its output ended");
            }
            thread::sleep(Duration::from_millis(20));
        };
        // The stderr reader ends when rock and its ssh have closed it.
        let end = Instant::now() + Duration::from_secs(10);
        while !self.stderr_reader.is_finished() && Instant::now() < end {
            thread::sleep(Duration::from_millis(10));
        }
        Finished {
            pid: self.pid(),
            status,
            stderr: self.stderr(),
            lines: self.got,
        }
    }
}

/// A session's whole output and status.
struct Finished {
    pid: u32,
    status: ExitStatus,
    lines: Vec<Arrival>,
    stderr: String,
}

impl Finished {
    /// How many links rock made, by its `-v` log (for the figures only).
    fn links(&self) -> usize {
        self.stderr.matches("link up").count()
    }

    /// Every line once, in order, then `end N`, and exit status 7; and the
    /// server printed lines during each fault that lasted a while (lines
    /// that were held back, then delivered).
    fn check(&self, faults: &[Fault]) {
        let texts: Vec<&str> = self.lines.iter().map(|a| a.text.as_str()).collect();
        let context = || {
            format!(
                "rock pid {}, status {:?}\n--- rock's stderr ---\n{}",
                self.pid, self.status, self.stderr
            )
        };
        let Some((last, numbered)) = texts.split_last() else {
            panic!("no output at all; {}", context());
        };
        let n = numbered.len();
        for (i, text) in numbered.iter().enumerate() {
            let mut words = text.split_whitespace();
            let ok = words.next() == Some("line")
                && words.next() == Some(&(i + 1).to_string())
                && words.next().is_some()
                && words.next().is_none();
            assert!(
                ok,
                "line {} should be `line {} TIME`, is {text:?}: lost, duplicated or reordered \
                 (around it: {:?}); {}",
                i + 1,
                i + 1,
                &texts[i.saturating_sub(3)..(i + 4).min(texts.len())],
                context()
            );
        }
        assert_eq!(
            *last,
            format!("end {n}"),
            "the last line should say how many lines were printed; {}",
            context()
        );
        assert_eq!(
            self.status.code(),
            Some(7),
            "the remote command's exit status; {}",
            context()
        );
        for fault in faults {
            if fault.end_wall - fault.start_wall >= 2.0 {
                assert!(
                    fault.printed_during(&self.lines) > 0,
                    "no line printed during {} arrived; {}",
                    fault.what,
                    context()
                );
            }
        }
    }
}

/// Asserts that rock's link now leaves the laptop from `addr`.
fn assert_link_from(net: &Net, session: &Session, addr: std::net::Ipv4Addr) {
    let sockets = net.sockets(&net.laptop);
    let needle = format!("pid={},", session.pid());
    let from = format!("{addr}:");
    assert!(
        sockets
            .lines()
            .any(|l| l.starts_with("ESTAB") && l.contains(&needle) && l.contains(&from)),
        "rock has no established link from {addr}:\n{sockets}"
    );
}

#[test]
fn the_laptop_changes_address_mid_session() {
    require_root("network namespaces");
    let mut net = Net::new();
    let sshd = net.start_sshd(Sshd::builder());
    let remote = Remote::new();
    let mut session = Session::start(&net, &sshd, &remote);
    session.wait_lines(SETTLE_LINES);

    let old = net.laptop_addr();
    let mut new = old;
    let fault = Fault::cause("laptop address change", || new = net.move_laptop());
    session.wait_live(&fault, SETTLE_LINES);
    assert_link_from(&net, &session, new);

    remote.stop();
    let done = session.finish();
    fault.report(&format!("1 ({old} -> {new})"), &done.lines);
    figure(&format!("1: rock made {} links in all", done.links()));
    done.check(&[]);
    // The old address left the laptop: its link was dead at once, with no
    // probe to wait for (issue 14).
    assert!(
        done.stderr.contains(&format!(
            "this host's address {old} is gone; its link is dead"
        )),
        "rock should have dropped the link on {old} as soon as the address went:\n{}",
        done.stderr
    );
}

#[test]
fn the_link_goes_down_and_comes_back() {
    require_root("network namespaces");
    let net = Net::new();
    let sshd = net.start_sshd(Sshd::builder());
    let remote = Remote::new();
    let mut session = Session::start(&net, &sshd, &remote);
    session.wait_lines(SETTLE_LINES);

    let outage = outage();
    let fault = Fault::cause(format!("link down for {outage:?}"), || {
        net.laptop_link_down();
        thread::sleep(outage);
        net.laptop_link_up();
    });
    session.wait_live(&fault, SETTLE_LINES);

    remote.stop();
    let done = session.finish();
    fault.report("2", &done.lines);
    figure(&format!("2: rock made {} links in all", done.links()));
    done.check(&[fault]);
}

#[test]
fn the_laptop_sleeps_and_wakes_up() {
    require_root("network namespaces");
    let net = Net::new();
    let sshd = net.start_sshd(Sshd::builder());
    let remote = Remote::new();
    let mut session = Session::start(&net, &sshd, &remote);
    session.wait_lines(SETTLE_LINES);

    let length = sleep_time();
    let fault = Fault::cause(format!("SIGSTOP for {length:?}"), || {
        laptop_sleeps_for(&net, session.pid(), length);
    });
    session.wait_live(&fault, SETTLE_LINES);

    remote.stop();
    let done = session.finish();
    fault.report("3", &done.lines);
    figure(&format!("3: rock made {} links in all", done.links()));
    done.check(&[fault]);
}

/// The laptop sleeps for `length`: every process running on it (rock, ssh,
/// the helper, scp) is stopped, then continued. Asserts that rock (pid
/// `rock`) is among them.
fn laptop_sleeps_for(net: &Net, rock: u32, length: Duration) {
    let sleepers = net.laptop_pids();
    assert!(
        sleepers.contains(&rock),
        "rock (pid {rock}) is not among the laptop's processes {sleepers:?}"
    );
    for &pid in &sleepers {
        signal(pid, libc::SIGSTOP);
    }
    thread::sleep(length);
    for &pid in &sleepers {
        signal(pid, libc::SIGCONT);
    }
}

/// How long the server-move test waits for the stream once rock has found
/// the server again.
const MOVED_LIMIT: Duration = Duration::from_secs(60);

// rock re-resolves the name and dials the new address; rockd's own
// connection to sshd must survive the move too, which it does because rockd
// reaches a wildcard-listening sshd over loopback (src/bridge_target.rs),
// not over the server address the move removes.
#[test]
fn the_server_moves_and_its_name_follows() {
    require_root("network namespaces");
    let mut net = Net::new();
    let sshd = net.start_sshd(Sshd::builder());
    let remote = Remote::new();
    let mut session = Session::start(&net, &sshd, &remote);
    session.wait_lines(SETTLE_LINES);

    let old = net.server_addr();
    let mut new = old;
    let fault = Fault::cause("server move", || new = net.move_server());
    // First rock must find the server at its new address...
    let end = Instant::now() + LIMIT;
    let to_new = format!("{new}:");
    let needle = format!("pid={},", session.pid());
    while !net
        .sockets(&net.laptop)
        .lines()
        .any(|l| l.starts_with("ESTAB") && l.contains(&needle) && l.contains(&to_new))
    {
        assert!(
            Instant::now() < end,
            "rock did not link to the server's new address {new} within {LIMIT:?}:\n{}\n\
             --- rock's stderr ---\n{}",
            net.sockets(&net.laptop),
            session.stderr()
        );
        thread::sleep(Duration::from_millis(50));
    }
    // ... then the stream must go on through it.
    if !session.try_wait_live(&fault, MOVED_LIMIT) {
        panic!(
            "rock linked to the server's new address {new}, but no line came through it within \
             {MOVED_LIMIT:?}. The server's sockets (rockd's connection to sshd is the one to \
             look at):\n{}\n--- rock's stderr ---\n{}",
            net.sockets(&net.server),
            session.stderr()
        );
    }
    session.wait_lines(SETTLE_LINES);

    remote.stop();
    let done = session.finish();
    fault.report(&format!("4 ({old} -> {new})"), &done.lines);
    figure(&format!("4: rock made {} links in all", done.links()));
    done.check(&[]);
    // Make before break: the link to the old address fell silent, a spare
    // was dialled beside it, and it was let go only once the spare stood
    // (not after its own timeout, which says "nothing arrived").
    assert!(
        done.stderr.contains("superseded by a newer link"),
        "the silent link should have been superseded by a spare:\n{}",
        done.stderr
    );
}

/// A fault during a transfer, and when the copy moved on.
#[derive(Debug)]
struct TransferFault {
    what: String,
    /// The copy's size when the fault ended.
    size: u64,
    ended: Instant,
    /// When the copy had grown [`MOVED_ON`] past `size`.
    moved_on: Option<Instant>,
}

/// How much the copy must grow after a fault to count as moving again: more
/// than the socket and pipe buffers past the broken link can hold, so that
/// it is data that crossed a new link.
const MOVED_ON: u64 = 16 << 20;

/// A fault [`scp_with_faults`] injects once the copy has reached `at`
/// bytes (and has moved on after the fault before it).
struct ScpFault {
    at: u64,
    /// Breaks the network (and mends it, for an outage or a sleep) while
    /// rock (the pid) copies; says what it did.
    cause: fn(&mut Net, u32) -> String,
}

/// A transfer scenario: its name in the figures, and the faults it injects
/// in order.
struct ScpScenario {
    name: &'static str,
    faults: &'static [ScpFault],
}

/// The laptop changes address.
fn laptop_moves(net: &mut Net, _rock: u32) -> String {
    format!("address change to {}", net.move_laptop())
}

/// The laptop's link goes down for [`outage`].
fn link_outage(net: &mut Net, _rock: u32) -> String {
    let outage = outage();
    net.laptop_link_down();
    thread::sleep(outage);
    net.laptop_link_up();
    format!("link down for {outage:?}")
}

/// The laptop sleeps for [`sleep_time`].
fn laptop_sleeps(net: &mut Net, rock: u32) -> String {
    let length = sleep_time();
    laptop_sleeps_for(net, rock, length);
    format!("SIGSTOP for {length:?}")
}

/// The server moves and its name follows.
fn server_moves(net: &mut Net, _rock: u32) -> String {
    let old = net.server_addr();
    let new = net.move_server();
    format!("server move {old} -> {new}")
}

/// Runs `rock -d scp FROM TO` on the laptop and injects the `scenario`'s
/// faults as `progress()` passes each one's threshold. Asserts that every
/// fault happened mid-transfer and that scp succeeded; prints the
/// recoveries.
fn scp_with_faults(
    net: &mut Net,
    sshd: &Sshd,
    scenario: &ScpScenario,
    from: &str,
    to: &str,
    progress: impl Fn() -> u64,
    what: &str,
) {
    let mut cmd = rock_command(sshd, ROCKD, &["-v"], "scp");
    cmd.args([from, to]);
    let child = net
        .on_laptop(&cmd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rock -d scp in the laptop namespace");
    let rock = child.id();
    let waiter = thread::spawn(move || child.wait_with_output().expect("wait for rock"));
    let end = Instant::now() + LIMIT * 5;
    let mut faults: Vec<TransferFault> = Vec::new();
    while !waiter.is_finished() {
        assert!(
            Instant::now() < end,
            "the {what} did not finish in {:?}",
            LIMIT * 5
        );
        let done = progress();
        if let Some(last) = faults.last_mut()
            && last.moved_on.is_none()
            && done >= last.size + MOVED_ON
        {
            last.moved_on = Some(Instant::now());
        }
        if let Some(next) = scenario.faults.get(faults.len())
            && faults.last().is_none_or(|f| f.moved_on.is_some())
            && done >= next.at
        {
            let at = progress();
            let did = (next.cause)(net, rock);
            faults.push(TransferFault {
                what: format!("{did} at {} MiB", at >> 20),
                size: progress(),
                ended: Instant::now(),
                moved_on: None,
            });
        }
        thread::sleep(Duration::from_millis(5));
    }
    let out = waiter.join().expect("the waiter thread");
    let text = format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "rock -d scp ({what}) failed: {text}"
    );
    assert_eq!(
        faults.len(),
        scenario.faults.len(),
        "the {what} finished before all {} faults: {faults:?}\n{text}",
        scenario.faults.len()
    );
    figure(&format!(
        "{} ({what}): rock made {} links in all",
        scenario.name,
        String::from_utf8_lossy(&out.stderr)
            .matches("link up")
            .count()
    ));
    for fault in &faults {
        assert!(
            fault.size < BIG,
            "{} came after the {what} was complete\n{text}",
            fault.what
        );
        let secs = fault
            .moved_on
            .map_or("never (it finished first)".into(), |at| {
                format!("{:.2} s", (at - fault.ended).as_secs_f64())
            });
        figure(&format!(
            "{} ({what}): {}: the copy grew {} MiB past its size at the fault's end {secs} after it",
            scenario.name,
            fault.what,
            MOVED_ON >> 20
        ));
    }
}

/// Uploads a [`BIG`] random file with `rock -d scp`, then downloads it,
/// each through the `scenario`'s faults; both copies must have the
/// original's sha256.
fn scp_up_and_down(scenario: &ScpScenario) {
    require_root("network namespaces");
    let mut net = Net::new();
    let sshd = net.start_sshd(Sshd::builder());
    let dir = common::temp_dir();
    let original = dir.path().join("original");
    common::random_file(&original, BIG);
    let sum = common::sha256_file(&original);

    let uploaded = dir.path().join("uploaded");
    scp_with_faults(
        &mut net,
        &sshd,
        scenario,
        &original.display().to_string(),
        &format!("rocktest:{}", uploaded.display()),
        || file_len(&uploaded),
        "upload",
    );
    assert_eq!(
        common::sha256_file(&uploaded),
        sum,
        "the upload is corrupted"
    );

    let downloaded = dir.path().join("downloaded");
    scp_with_faults(
        &mut net,
        &sshd,
        scenario,
        &format!("rocktest:{}", original.display()),
        &downloaded.display().to_string(),
        || file_len(&downloaded),
        "download",
    );
    assert_eq!(
        common::sha256_file(&downloaded),
        sum,
        "the download is corrupted"
    );
}

#[test]
fn scp_up_and_down_survive_an_address_change_and_an_outage() {
    scp_up_and_down(&ScpScenario {
        name: "5",
        faults: &[
            ScpFault {
                at: BIG / 3,
                cause: laptop_moves,
            },
            ScpFault {
                at: 2 * BIG / 3,
                cause: link_outage,
            },
        ],
    });
}

#[test]
fn scp_up_and_down_survive_the_laptop_sleeping() {
    scp_up_and_down(&ScpScenario {
        name: "3 scp",
        faults: &[ScpFault {
            at: BIG / 2,
            cause: laptop_sleeps,
        }],
    });
}

// As in `the_server_moves_and_its_name_follows`: rock re-resolves the name
// and dials the new address; rockd's connection to sshd is over loopback.
#[test]
fn scp_up_and_down_survive_the_server_moving() {
    scp_up_and_down(&ScpScenario {
        name: "4 scp",
        faults: &[ScpFault {
            at: BIG / 2,
            cause: server_moves,
        }],
    });
}

/// Concurrent sessions in [`fifty_sessions_ride_through_repeated_cuts`].
const SESSIONS: usize = 50;
/// How long each cut of that test lasts.
const CUT: Duration = Duration::from_secs(10);

#[test]
fn fifty_sessions_ride_through_repeated_cuts() {
    require_root("network namespaces");
    let mut net = Net::new();
    // Fifty logins at once, each with a bootstrap and then ssh's own.
    let sshd = net.start_sshd(
        Sshd::builder()
            .option("MaxStartups 200")
            .option("MaxSessions 200"),
    );
    let remote = Remote::new();
    let started = Instant::now();
    let mut sessions: Vec<Session> = (0..SESSIONS)
        .map(|_| Session::start(&net, &sshd, &remote))
        .collect();
    for s in &mut sessions {
        s.wait_lines(5);
    }
    figure(&format!(
        "6: {SESSIONS} sessions streaming {:.1} s after the first start",
        started.elapsed().as_secs_f64()
    ));

    let mut faults = Vec::new();
    faults.push(Fault::cause(format!("link down for {CUT:?}"), || {
        net.laptop_link_down();
        thread::sleep(CUT);
        net.laptop_link_up();
    }));
    for s in &mut sessions {
        s.wait_live(faults.last().expect("a fault"), 5);
    }
    faults.push(Fault::cause("laptop address change", || {
        net.move_laptop();
    }));
    for s in &mut sessions {
        s.wait_live(faults.last().expect("a fault"), 5);
    }
    faults.push(Fault::cause(
        format!("link down for {CUT:?} and back on a new address"),
        || {
            net.laptop_link_down();
            net.move_laptop();
            thread::sleep(CUT);
            net.laptop_link_up();
        },
    ));
    for s in &mut sessions {
        s.wait_live(faults.last().expect("a fault"), 5);
    }

    remote.stop();
    let done: Vec<Finished> = sessions.into_iter().map(Session::finish).collect();
    for fault in &faults {
        let mut next: Vec<f64> = Vec::new();
        let mut live: Vec<f64> = Vec::new();
        for d in &done {
            let (n, l) = fault.recovery(&d.lines);
            next.extend(n.map(|d| d.as_secs_f64()));
            live.extend(l.map(|d| d.as_secs_f64()));
        }
        figure(&format!(
            "6: {}: next line {}; live again {}",
            fault.what,
            spread(&mut next),
            spread(&mut live)
        ));
    }
    for d in &done {
        d.check(&faults);
    }
}

/// "min / median / max over N sessions".
fn spread(values: &mut [f64]) -> String {
    if values.is_empty() {
        return "never".into();
    }
    values.sort_by(f64::total_cmp);
    format!(
        "min {:.2} s, median {:.2} s, max {:.2} s over {} sessions",
        values[0],
        values[values.len() / 2],
        values[values.len() - 1],
        values.len()
    )
}

/// The server's sshd lets the test user in from the laptop's subnet only
/// (`AllowUsers user@10.1.*`): rock's bootstrap, which comes from the
/// laptop, logs in, and the login through rockd, which sshd sees from the
/// server itself, is refused. ssh says "Permission denied" and exits 255;
/// rock then names the likely cause. (The same user's ordinary sessions,
/// whose login completes, get no such words: `rock_d.rs`.)
#[test]
fn a_login_refused_by_address_rules_is_explained() {
    require_root("network namespaces");
    let net = Net::new();
    let user = common::PASSWORD_USER;
    let sshd = net.start_sshd(
        Sshd::builder()
            .with_password_user()
            .allow_users([common::current_user(), format!("{user}@10.1.*")]),
    );
    let mut cmd = common::rock_base(ROCKD);
    cmd.args(["-d", user, "ssh", "-F"])
        .arg(sshd.ssh_config())
        .args(["rocktest", "echo logged in"])
        .stdin(Stdio::null());
    let out = common::run_with_timeout(&mut net.on_laptop(&cmd), LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let context = format!(
        "status {:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- sshd log ---\n{}",
        out.status,
        sshd.log()
    );
    assert_eq!(out.status.code(), Some(255), "ssh's status; {context}");
    assert!(
        !stdout.contains("logged in"),
        "the login went through; {context}"
    );
    assert!(
        stderr.contains("Permission denied"),
        "ssh's own words; {context}"
    );
    assert!(
        stderr.contains("rock: no login completed through rockd on rocktest,")
            && stderr.contains("from= in authorized_keys, Match Address"),
        "rock's explanation; {context}"
    );
    assert!(
        sshd.log()
            .contains(&format!("User {user} from 127.0.0.1 not allowed")),
        "sshd should have refused the bridged login from 127.0.0.1; {context}"
    );
}

/// Item 8 of issue 11: the server's name has a dead address first (a
/// silent blackhole on the router) and the live one second. The bootstrap
/// and the first link pay the happy-eyeballs delay once; every later
/// reconnection dials the address that worked last first, so no SYN goes to
/// the dead address again (asserted with the DROP rule's packet counter)
/// and recovery does not wait for it (printed, not asserted).
#[test]
fn reconnections_do_not_pay_for_a_dead_first_address() {
    require_root("network namespaces");
    let net = Net::new();
    let sshd = net.start_sshd(Sshd::builder());
    let live = net.server_addr();
    let o = live.octets();
    let dead = std::net::Ipv4Addr::new(o[0], o[1], o[2], 200);
    common::netns::write_hosts(
        &net.laptop,
        &[
            (dead.into(), common::netns::SERVER_NAME),
            (live.into(), common::netns::SERVER_NAME),
        ],
    );
    let order = run_in(
        &net.laptop,
        "getent",
        &["ahostsv4", common::netns::SERVER_NAME],
    );
    assert!(
        order
            .lines()
            .next()
            .is_some_and(|l| l.starts_with(&dead.to_string())),
        "the resolver should give the dead address first, or this test tests nothing:\n{order}"
    );
    let rule = ["FORWARD", "-d", &dead.to_string(), "-j", "DROP"];
    run_in(&net.router, "iptables", &[&["-I"][..], &rule].concat());
    let dropped = || -> u64 {
        let listing = run_in(
            &net.router,
            "iptables",
            &["-L", "FORWARD", "-v", "-x", "-n"],
        );
        listing
            .lines()
            .find(|l| l.contains("DROP") && l.contains(&dead.to_string()))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no DROP rule for {dead} in:\n{listing}"))
    };

    let remote = Remote::new();
    let mut session = Session::start(&net, &sshd, &remote);
    session.wait_lines(SETTLE_LINES);
    let before = dropped();
    assert!(
        before >= 1,
        "the first dials should have tried the dead address once"
    );
    let mut faults = Vec::new();
    for i in 0..5 {
        faults.push(Fault::cause(format!("reset {}", i + 1), || {
            run_in(&net.laptop, "ss", &["-K", "dst", &live.to_string()]);
        }));
        session.wait_live(faults.last().expect("a fault"), 5);
    }
    let after = dropped();
    remote.stop();
    let done = session.finish();
    let mut next: Vec<f64> = faults
        .iter()
        .filter_map(|f| f.recovery(&done.lines).0)
        .map(|d| d.as_secs_f64())
        .collect();
    figure(&format!(
        "8: dead first address: {} links, next line after a reset {}; SYNs to the dead address: \
         {before} before the resets, {} during them",
        done.links(),
        spread(&mut next),
        after - before
    ));
    done.check(&faults);
    assert_eq!(
        after, before,
        "reconnections dialled the dead address again; rock's log:\n{}",
        done.stderr
    );
}

/// Runs `program args` in namespace `ns` and returns its stdout; panics
/// with its stderr when it fails.
fn run_in(ns: &str, program: &str, args: &[&str]) -> String {
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    let out = common::netns::in_netns(ns, &cmd)
        .output()
        .unwrap_or_else(|e| panic!("run {program} in {ns}: {e}"));
    assert!(
        out.status.success(),
        "`{program} {}` in {ns} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
