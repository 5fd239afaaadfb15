//! Running a command on a pseudo-terminal, as a person would: it gets a
//! controlling terminal (so prompts go to /dev/tty), and the test reads what
//! it shows and types answers.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A child on a pty, and everything it has shown so far.
pub struct PtyChild {
    pub child: Child,
    writer: File,
    output: mpsc::Receiver<Vec<u8>>,
    /// All output so far.
    pub seen: String,
}

impl PtyChild {
    /// Starts `cmd` with the pty's slave as its stdio and controlling tty.
    pub fn spawn(cmd: &mut Command) -> PtyChild {
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty writes two descriptors; the other arguments may be null.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
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
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let _ = master.as_raw_fd();
        PtyChild {
            child,
            writer: File::from(master),
            output,
            seen: String::new(),
        }
    }

    /// Reads output until `pattern` appears after byte `from` of `seen`;
    /// panics with everything seen when it does not within `limit`.
    pub fn expect(&mut self, pattern: &str, limit: Duration) {
        let end = Instant::now() + limit;
        while !self.seen.contains(pattern) {
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
