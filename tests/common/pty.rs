//! Running a command on a pseudo-terminal, as a person would: it gets a
//! controlling terminal (so prompts go to /dev/tty), and the test reads what
//! it shows and types answers.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

/// A child on a pty, and everything it has shown so far.
pub struct PtyChild {
    pub child: Child,
    /// The master side; `None` once hung up.
    writer: Option<File>,
    output: mpsc::Receiver<Vec<u8>>,
    /// Tells the reader thread to let go of its master descriptor.
    stop: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// All output so far.
    pub seen: String,
}

impl PtyChild {
    /// Starts `cmd` with the pty's slave as its stdio and controlling tty.
    pub fn spawn(cmd: &mut Command) -> PtyChild {
        Self::spawn_sized(cmd, None)
    }

    /// Like [`PtyChild::spawn`], on a terminal of `rows` × `cols` when
    /// given (else the kernel's 0 × 0).
    pub fn spawn_sized(cmd: &mut Command, size: Option<(u16, u16)>) -> PtyChild {
        let (mut master, mut slave) = (0, 0);
        let winsize = size.map(|(rows, cols)| libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        });
        // SAFETY: openpty writes two descriptors and reads the winsize if
        // one is given; the name may be null.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                winsize.as_ref().map_or(std::ptr::null(), |w| w as *const _),
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // Not inherited by the child, nor by anything else the test starts:
        // a copy of the master elsewhere would keep the terminal from
        // ever hanging up.
        for fd in [master, slave] {
            // SAFETY: fcntl on descriptors openpty just returned.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
        // SAFETY: both descriptors were just returned by openpty and are ours.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let stdio = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup pty slave"));
        cmd.stdin(stdio(&slave))
            .stdout(stdio(&slave))
            .stderr(stdio(&slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() == -1 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn on a pty");
        drop(slave);
        let mut reader = File::from(master.try_clone().expect("dup pty master"));
        let (tx, output) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Polled, so that a hangup can take this descriptor away.
            while !stopping.load(Ordering::Relaxed) {
                let mut poll = libc::pollfd {
                    fd: reader.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                if unsafe { libc::poll(&mut poll, 1, 20) } <= 0 {
                    continue;
                }
                match reader.read(&mut buf) {
                    Ok(n) if n > 0 && tx.send(buf[..n].to_vec()).is_ok() => {}
                    _ => break,
                }
            }
        });
        PtyChild {
            child,
            writer: Some(File::from(master)),
            output,
            stop,
            reader: Some(reader),
            seen: String::new(),
        }
    }

    /// Closes the terminal, as a terminal emulator's window is closed: the
    /// last descriptor of the master side goes, and the kernel hangs up
    /// the terminal (`SIGHUP` to the session leader, the child).
    pub fn hang_up(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        while let Ok(chunk) = self.output.try_recv() {
            self.seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        self.writer = None;
    }

    /// Reads output until `pattern` appears in `seen`; panics with
    /// everything seen when it does not within `limit`.
    pub fn expect(&mut self, pattern: &str, limit: Duration) {
        self.expect_after(0, pattern, limit);
    }

    /// Like [`PtyChild::expect`], for output after byte `from` of `seen`;
    /// returns where the pattern begins.
    pub fn expect_after(&mut self, from: usize, pattern: &str, limit: Duration) -> usize {
        let end = Instant::now() + limit;
        let found = |seen: &str| seen.get(from..).and_then(|s| s.find(pattern));
        loop {
            if let Some(at) = found(&self.seen) {
                return from + at;
            }
            let left = end.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(chunk) => self.seen.push_str(&String::from_utf8_lossy(&chunk)),
                Err(_) => panic!(
                    "{pattern:?} did not appear within {limit:?}; seen:\n{}",
                    self.seen
                ),
            }
        }
    }

    /// Reads output until `pattern` has appeared `n` times in `seen`
    /// (true), or the child has exited with fewer (false); panics with
    /// everything seen when neither happens within `limit`.
    pub fn expect_nth_or_exit(&mut self, pattern: &str, n: usize, limit: Duration) -> bool {
        self.expect_or_exit(
            &format!("{pattern:?} {n} times"),
            |seen| seen.matches(pattern).count() >= n,
            limit,
        )
    }

    /// Reads output until `done(seen)` (true) or the child has exited
    /// before (false); panics with everything seen, saying it waited for
    /// `what`, when neither happens within `limit`.
    pub fn expect_or_exit(
        &mut self,
        what: &str,
        done: impl Fn(&str) -> bool,
        limit: Duration,
    ) -> bool {
        let end = Instant::now() + limit;
        loop {
            if done(&self.seen) {
                return true;
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                // What it wrote before exiting is still on its way.
                while let Ok(chunk) = self.output.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push_str(&String::from_utf8_lossy(&chunk));
                }
                return done(&self.seen);
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "{what} did not appear within {limit:?}; seen:\n{}",
                    self.seen
                );
            }
            if let Ok(chunk) = self
                .output
                .recv_timeout(left.min(Duration::from_millis(100)))
            {
                self.seen.push_str(&String::from_utf8_lossy(&chunk));
            }
        }
    }

    /// Reads output until `pattern` has appeared `n` times in `seen`;
    /// panics with everything seen when it does not within `limit`.
    pub fn expect_nth(&mut self, pattern: &str, n: usize, limit: Duration) {
        if !self.expect_nth_or_exit(pattern, n, limit) {
            panic!(
                "the command exited before {pattern:?} appeared {n} times; seen:\n{}",
                self.seen
            );
        }
    }

    /// Types `text`.
    pub fn send(&mut self, text: &str) {
        self.writer
            .as_mut()
            .expect("the terminal was hung up")
            .write_all(text.as_bytes())
            .expect("write to the pty");
    }

    /// Waits for the child to exit, collecting output; returns its status.
    pub fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let end = Instant::now() + limit;
        loop {
            while let Ok(chunk) = self.output.try_recv() {
                self.seen.push_str(&String::from_utf8_lossy(&chunk));
            }
            if let Some(status) = self.child.try_wait().expect("wait") {
                std::thread::sleep(Duration::from_millis(100));
                while let Ok(chunk) = self.output.try_recv() {
                    self.seen.push_str(&String::from_utf8_lossy(&chunk));
                }
                return status;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!(
                    "the command did not exit within {limit:?}; seen:\n{}",
                    self.seen
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PtyChild {
    /// A test that panics must not leave its command behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
