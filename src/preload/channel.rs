//! The library's line to its supervisor: one unix stream socket per
//! thread, to the control socket `ROCK_SUPERVISOR` names, carrying one
//! [`Request`] and one [`Answer`] at a time.
//!
//! Per thread, so that no lock is ever held across `fork` (a lock held by
//! another thread would stay locked in the child forever): after `fork` the
//! child notices the pid changed and opens its own, leaving the parent's
//! copy alone. The descriptor is CLOEXEC and moved to [`FD_FLOOR`] or
//! above, out of the way of programs that expect small numbers. Before each
//! use it is checked to still be a socket connected to the supervisor: a
//! program that ran `close_range` or `closefrom` may have closed it and
//! reused the number for a file of its own, which must never receive a
//! request.
//!
//! Every failure — no supervisor, a refused or broken line, a timeout, an
//! answer that does not parse — is `None`, and the caller then does what it
//! would do without rock. A question unanswered within
//! [`ANSWER_WITHIN_SECS`] also keeps every thread of the process from
//! asking again for [`QUIET_AFTER_TIMEOUT_SECS`]: a supervisor that hangs
//! costs the program one wait, not one per connection.

use std::cell::RefCell;
use std::ffi::{CString, c_int};
use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, Ordering};

use rock_proto::supervise::{self, Answer, MAX_LINE, Request};

use crate::real;

/// The environment variable the supervisor sets: its control socket.
pub const SUPERVISOR_ENV: &str = "ROCK_SUPERVISOR";
/// The library's descriptors sit at or above this number.
pub const FD_FLOOR: c_int = 512;
/// How long one question may take before the library gives up on it.
pub const ANSWER_WITHIN_SECS: libc::time_t = 5;
/// How long the process asks nothing after a question went unanswered.
pub const QUIET_AFTER_TIMEOUT_SECS: i64 = 30;

/// Until when (CLOCK_MONOTONIC seconds) no question is asked; 0: none.
static QUIET_UNTIL: AtomicI64 = AtomicI64::new(0);

/// The monotonic clock in whole seconds.
fn now_secs() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime into a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec
}

/// Why a question got no answer.
enum Unanswered {
    /// The supervisor did not answer within [`ANSWER_WITHIN_SECS`].
    TimedOut,
    /// The line broke or carried something that is not an answer.
    Broken,
}

/// The control socket's path, read once.
fn supervisor_path() -> Option<&'static CString> {
    static PATH: OnceLock<Option<CString>> = OnceLock::new();
    PATH.get_or_init(|| {
        let value = std::env::var_os(SUPERVISOR_ENV)?;
        CString::new(value.as_bytes()).ok()
    })
    .as_ref()
}

/// An open line: its descriptor, the process that opened it, and the
/// supervisor's pid (the check that the descriptor is still ours).
struct Line {
    fd: c_int,
    owner: libc::pid_t,
    supervisor: libc::pid_t,
}

impl Line {
    fn open(path: &CString) -> Option<Line> {
        // SAFETY: plain system calls on a descriptor this function owns;
        // the address is built within its bounds.
        unsafe {
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                return None;
            }
            let close_on_error = |fd| {
                libc::close(fd);
                None
            };
            let mut addr: libc::sockaddr_un = std::mem::zeroed();
            addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
            let bytes = path.as_bytes();
            if bytes.len() >= addr.sun_path.len() {
                return close_on_error(fd);
            }
            for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
                *dst = src as libc::c_char;
            }
            let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            if real::connect(fd, (&raw const addr).cast(), len) != 0 {
                return close_on_error(fd);
            }
            let high = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, FD_FLOOR);
            libc::close(fd);
            if high < 0 {
                return None;
            }
            let limit = libc::timeval {
                tv_sec: ANSWER_WITHIN_SECS,
                tv_usec: 0,
            };
            let size = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
            for option in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
                libc::setsockopt(
                    high,
                    libc::SOL_SOCKET,
                    option,
                    (&raw const limit).cast(),
                    size,
                );
            }
            let Some(supervisor) = peer_pid(high) else {
                return close_on_error(high);
            };
            Some(Line {
                fd: high,
                owner: libc::getpid(),
                supervisor,
            })
        }
    }

    /// Whether the descriptor is still this line: same process, still a
    /// socket whose peer is the supervisor.
    fn intact(&self) -> bool {
        // SAFETY: getpid has no preconditions.
        self.owner == unsafe { libc::getpid() } && peer_pid(self.fd) == Some(self.supervisor)
    }

    fn ask(&self, request: &Request) -> Result<Answer, Unanswered> {
        let out = request.encode();
        write_all(self.fd, out.as_bytes())?;
        let mut buf = [0u8; MAX_LINE];
        let mut have = 0;
        loop {
            if let Ok(Some(end)) = supervise::check(&buf[..have]) {
                return Answer::parse(&buf[..end]).map_err(|_| Unanswered::Broken);
            }
            if have == buf.len() {
                return Err(Unanswered::Broken);
            }
            // SAFETY: reads into the unused tail of `buf`.
            let n =
                unsafe { libc::read(self.fd, buf[have..].as_mut_ptr().cast(), buf.len() - have) };
            match n {
                n if n > 0 => have += n as usize,
                n if n < 0 => failed(errno())?,
                _ => return Err(Unanswered::Broken),
            }
        }
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        // Only the opener closes: after fork the number is the parent's
        // line in the parent, and after close_range it may be the
        // program's own file.
        if self.intact() {
            // SAFETY: the descriptor is ours (checked just now).
            unsafe { libc::close(self.fd) };
        }
    }
}

fn errno() -> c_int {
    // SAFETY: reading the thread's errno.
    unsafe { *libc::__errno_location() }
}

/// The pid of the process at the other end of unix socket `fd`.
fn peer_pid(fd: c_int) -> Option<libc::pid_t> {
    // SAFETY: getsockopt into a properly sized ucred.
    unsafe {
        let mut cred: libc::ucred = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        let rc = libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        );
        (rc == 0 && cred.pid > 0).then_some(cred.pid)
    }
}

/// What a failed read or write of the line with `errno` means: `Ok` to
/// try again (EINTR), else why it is over.
fn failed(errno: c_int) -> Result<(), Unanswered> {
    match errno {
        libc::EINTR => Ok(()),
        libc::EAGAIN => Err(Unanswered::TimedOut),
        _ => Err(Unanswered::Broken),
    }
}

fn write_all(fd: c_int, mut bytes: &[u8]) -> Result<(), Unanswered> {
    while !bytes.is_empty() {
        // SAFETY: writes from a live slice; MSG_NOSIGNAL keeps a broken
        // line from killing the program with SIGPIPE.
        let n = unsafe { libc::send(fd, bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL) };
        match n {
            n if n > 0 => bytes = &bytes[n as usize..],
            n if n < 0 => failed(errno())?,
            _ => return Err(Unanswered::Broken),
        }
    }
    Ok(())
}

thread_local! {
    static LINE: RefCell<Option<Line>> = const { RefCell::new(None) };
}

/// Asks the supervisor; `None` when there is none or it did not answer.
/// Keeps the caller's errno.
pub fn ask(request: &Request) -> Option<Answer> {
    let path = supervisor_path()?;
    if now_secs() < QUIET_UNTIL.load(Ordering::Relaxed) {
        return None;
    }
    let saved = errno();
    let answer = LINE
        .try_with(|cell| {
            let mut line = cell.try_borrow_mut().ok()?;
            if line.as_ref().is_some_and(|l| !l.intact()) {
                // Not ours any more: forget it without closing it.
                if let Some(stale) = line.take() {
                    std::mem::forget(stale);
                }
            }
            if line.is_none() {
                *line = Line::open(path);
            }
            match line.as_ref()?.ask(request) {
                Ok(answer) => Some(answer),
                Err(why) => {
                    if let Unanswered::TimedOut = why {
                        QUIET_UNTIL.store(now_secs() + QUIET_AFTER_TIMEOUT_SECS, Ordering::Relaxed);
                    }
                    // A broken, late or confused line is not used again.
                    *line = None;
                    None
                }
            }
        })
        .ok()
        .flatten();
    // SAFETY: restoring the thread's errno.
    unsafe { *libc::__errno_location() = saved };
    answer
}
