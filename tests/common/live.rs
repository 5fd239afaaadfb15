//! A live `rock -d ssh` session for attack and endurance tests: the remote
//! prints numbered lines until the test asks it to stop, and the test checks
//! at the end that every line arrived exactly once, in order.
//!
//! Also reads the state of the session's rock link from the kernel (`ss`):
//! which local port rock's current link has, and whether frames have
//! arrived on it after the handshake, which says that rockd authenticated
//! it. Reconnect loops wait for that before they cut the link again, so
//! every cut hits an established link, never one still handshaking.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::faults::{link_port_of, listener_pid};
use super::{ROCKD, Sshd, TempDir, rock_command, temp_dir};

/// Bytes of a ServerHello: all a client receives on a link before the
/// server has verified its ClientAuth (docs/PROTOCOL.md §3.2).
const SERVER_HELLO_LEN: u64 = 79;

/// Starts `rock -d ssh rocktest <script>` on `sshd` with stdout and stderr
/// piped: returns the child, its stdout lines as they arrive, and its
/// stderr collected so far.
pub fn spawn_rock_script(
    sshd: &Sshd,
    script: &str,
) -> (Child, mpsc::Receiver<String>, Arc<Mutex<String>>) {
    let mut child = rock_command(sshd, ROCKD, &[], "ssh")
        .args(["rocktest", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rock -d ssh");
    let lines = stdout_lines(&mut child);
    let stderr = stderr_text(&mut child);
    (child, lines, stderr)
}

/// The child's stdout lines as they arrive, read by a thread.
pub fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    read_lines(child, |line| line)
}

/// The child's stdout lines, each with the moment it arrived.
pub fn timed_stdout_lines(child: &mut Child) -> mpsc::Receiver<(Instant, String)> {
    read_lines(child, |line| (Instant::now(), line))
}

fn read_lines<T: Send + 'static>(child: &mut Child, stamp: fn(String) -> T) -> mpsc::Receiver<T> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(stamp(line)).is_err() {
                break;
            }
        }
    });
    rx
}

/// The child's stderr, collected by a thread as it comes.
pub fn stderr_text(child: &mut Child) -> Arc<Mutex<String>> {
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut pipe = child.stderr.take().expect("piped stderr");
    let sink = stderr.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&buf[..n]);
            sink.lock().expect("stderr buffer").push_str(&text);
        }
    });
    stderr
}

/// One `rock -d ssh` session whose remote prints `line 1`, `line 2`, …
/// until the test stops it, then `end N`.
pub struct LiveSession {
    /// The pid of rock (the long-lived local process).
    pub rock_pid: u32,
    /// The pid of rockd.
    pub rockd_pid: u32,
    /// rockd's link port on 127.0.0.1.
    pub port: u16,
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
    got: Vec<String>,
    stop: PathBuf,
    // Kept for the stop file; sshd last, so rock and rockd end first.
    _dir: TempDir,
    sshd: Sshd,
}

impl LiveSession {
    /// Starts a fixture sshd and a session printing a line every `period`
    /// (a `sleep` argument, e.g. "0.02"); returns once the first line has
    /// arrived and rock's link to rockd is up.
    pub fn start(period: &str) -> LiveSession {
        LiveSession::start_with(period, 1)
    }

    /// Like [`LiveSession::start`], printing `batch` lines at a time.
    pub fn start_with(period: &str, batch: u32) -> LiveSession {
        let sshd = Sshd::start();
        let dir = temp_dir();
        let stop = dir.path().join("stop");
        let script = format!(
            "i=0; while [ ! -e '{stop}' ]; do \
             for j in $(seq {batch}); do i=$((i+1)); echo line $i; done; sleep {period}; \
             done; echo end $i",
            stop = stop.display()
        );
        let (child, lines, stderr) = spawn_rock_script(&sshd, &script);
        let mut live = LiveSession {
            rock_pid: child.id(),
            rockd_pid: 0,
            port: 0,
            child,
            lines,
            stderr,
            got: Vec::new(),
            stop,
            _dir: dir,
            sshd,
        };
        live.wait_lines(1, Duration::from_secs(60));
        // The worker carries the session; the front only stands for it.
        live.rock_pid = super::rock_worker(live.rock_pid);
        let end = Instant::now() + Duration::from_secs(30);
        live.port = loop {
            // Once lines flow, rock's only TCP connection is its link.
            if let Some(port) = link_port_of(live.rock_pid).filter(|&p| p != live.sshd.port()) {
                break port;
            }
            live.assert_before(end, "rock never connected to rockd");
            std::thread::sleep(Duration::from_millis(20));
        };
        live.rockd_pid = listener_pid(live.port).expect("rockd listens on the link port");
        live
    }

    /// The fixture sshd the session runs through.
    pub fn sshd(&self) -> &Sshd {
        &self.sshd
    }

    /// Lines received so far.
    pub fn received(&self) -> usize {
        self.got.len()
    }

    /// Takes every line that has arrived, without waiting.
    pub fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.got.push(line);
        }
    }

    /// Waits until `n` more lines than now have arrived: the stream still
    /// flows. Panics after `limit`.
    pub fn wait_lines(&mut self, n: usize, limit: Duration) {
        let want = self.got.len() + n;
        let end = Instant::now() + limit;
        while self.got.len() < want {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.got.push(line),
                Err(RecvTimeoutError::Timeout) => self.fail(&format!(
                    "the stream stalled: {} of {n} more lines in {limit:?}",
                    n + self.got.len() - want
                )),
                Err(RecvTimeoutError::Disconnected) => {
                    self.fail("rock's output ended while the stream should flow")
                }
            }
        }
    }

    /// What rock printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr buffer").clone()
    }

    #[track_caller]
    fn assert_before(&self, end: Instant, what: &str) {
        if Instant::now() >= end {
            self.fail(what);
        }
    }

    #[track_caller]
    fn fail(&self, what: &str) -> ! {
        panic!(
            "{what}\nlast lines: {:?}\nrock's stderr:\n{}",
            &self.got[self.got.len().saturating_sub(5)..],
            self.stderr()
        )
    }

    /// Stops the remote loop, collects every remaining line, and checks
    /// that rock exits 0, that every line arrived exactly once and in
    /// order, and that rockd leaves. Returns how many numbered lines came.
    pub fn finish(mut self) -> usize {
        std::fs::write(&self.stop, b"").expect("create the stop file");
        loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => self.got.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    self.fail("the stream stalled for a minute after the stop")
                }
            }
        }
        let status = self.wait_exit(Duration::from_secs(60));
        if !status.success() {
            self.fail(&format!("rock exited with {status:?}"));
        }
        let n = check_numbered_lines(&self.got);
        let end = Instant::now() + Duration::from_secs(30);
        while std::path::Path::new(&format!("/proc/{}", self.rockd_pid)).exists() {
            self.assert_before(end, "rockd still runs 30 s after the session ended");
            std::thread::sleep(Duration::from_millis(50));
        }
        n
    }

    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let end = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for rock") {
                return status;
            }
            if Instant::now() >= end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.fail(&format!("rock did not exit within {limit:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for LiveSession {
    fn drop(&mut self) {
        // After a panic: stop rock; the sshd fixture then kills rockd.
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Checks that `got` is exactly `line 1` … `line N` then `end N`: nothing
/// lost, duplicated or reordered. Returns N.
pub fn check_numbered_lines(got: &[String]) -> usize {
    let last = got.last().expect("no line arrived at all");
    let n: usize = last
        .strip_prefix("end ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the last line is {last:?}, not `end N`"));
    for (i, line) in got[..got.len() - 1].iter().enumerate() {
        let want = format!("line {}", i + 1);
        if *line != want {
            let around = &got[i.saturating_sub(3)..(i + 4).min(got.len())];
            panic!(
                "line {} is {line:?}, expected {want:?} (lost, duplicated or reordered); \
                 around it: {around:?}",
                i + 1
            );
        }
    }
    assert_eq!(
        got.len() - 1,
        n,
        "the remote printed {n} numbered lines but {} arrived",
        got.len() - 1
    );
    n
}

/// Established TCP connections to 127.0.0.1:`port` (under `rock -d`:
/// rock's links to rockd, and any other client's): for each, its local
/// port and the bytes it has received.
pub fn links_to(port: u16) -> Vec<(u16, u64)> {
    let out = Command::new("ss")
        .args(["-H", "-tni", "state", "established", "dst"])
        .arg(format!("127.0.0.1:{port}"))
        .output()
        .expect("run ss");
    assert!(out.status.success(), "ss failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    // Each socket is a line `Recv-Q Send-Q Local:Port Peer:Port`, then an
    // indented line of TCP info with `bytes_received:N` once any arrived.
    let mut links = Vec::new();
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) {
            let local = line
                .split_whitespace()
                .nth(2)
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(_, p)| p.parse().ok());
            if let Some(local) = local {
                links.push((local, 0));
            }
        } else if let Some(last) = links.last_mut() {
            last.1 = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("bytes_received:"))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        }
    }
    links
}

/// Waits until a link to 127.0.0.1:`port` whose local port is not in `old`
/// has received more than a ServerHello, i.e. rockd verified its
/// ClientAuth and sends frames on it; returns its local port. Panics after
/// `limit`. Only for moments when no other client connects to `port`.
pub fn wait_new_link(port: u16, old: &[u16], limit: Duration) -> u16 {
    let end = Instant::now() + limit;
    loop {
        let links = links_to(port);
        if let Some(&(local, _)) = links
            .iter()
            .find(|(local, bytes)| !old.contains(local) && *bytes > SERVER_HELLO_LEN)
        {
            return local;
        }
        assert!(
            Instant::now() < end,
            "no new established rock link to port {port} within {limit:?} \
             (old links {old:?}; now {links:?})"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}
