//! `rock -d`'s place in the user's shell job: the two processes it runs
//! as, how the terminal is given back before the session is over, job
//! control (`~^Z`, `fg`), and the signals that end it.
//!
//! # Two processes
//!
//! The shell waits for the process it started, and gives the prompt back
//! only when that process exits (or stops). Yet the session must
//! sometimes outlive that moment:
//!
//! * `ssh -f` (and `-N -f`) forks after logging in; the parent exits 0
//!   at once and a background ssh keeps the connection, so rock's relay
//!   must go on, in the background, for as long as that ssh does;
//! * a command that ends while the link is down (`~.` during an outage, a
//!   closed terminal, `kill`) leaves its end — the FIN that makes rockd
//!   hang up sshd and sshd the remote shell — to be delivered when the
//!   link is back, for up to `close_timeout`.
//!
//! So the relay must be able to leave the shell's job while it keeps
//! running. Forking there and then is not sound: rock runs a tokio
//! runtime by then. It is a current-thread runtime, but the runtime's
//! blocking pool has threads whenever something resolved a host name
//! (every redial does) or read a file, and a child of `fork` gets none of
//! them: tasks handed to the pool would never run, and a lock a lost
//! thread held (the pool's, the resolver's) would never be released.
//! Handing the session to a freshly started rock instead would mean
//! serialising the engine, its replay buffer and its sockets.
//!
//! Instead rock splits in two at the start, before any thread exists
//! ([`Job::split`], called before the runtime is built):
//!
//! * the **front** is the process the shell started. It does nothing but
//!   stand for the job: it passes the signals that concern the session
//!   (`SIGHUP`, `SIGINT`, `SIGTERM`, `SIGQUIT`, `SIGCONT`) on to the
//!   worker, is stopped and continued with the job (and stops when the
//!   worker does, for job control: a background rock reading a password
//!   from the terminal), and exits with the status the worker gives it —
//!   or, if the worker dies, with the worker's own status (the same signal
//!   re-raised);
//! * the **worker** is its child and does everything else: the
//!   bootstrap, the user's command, the relay. While the job is in the
//!   foreground it shares the front's process group and terminal. Its
//!   parent-death signal is `SIGKILL`, so `kill -9` of the front ends it
//!   as it ended the single process rock used to be.
//!
//! When the terminal must be given back before the session is over, the
//! worker [releases](Job::release) the front: it leaves the terminal's
//! session (`setsid`, standard streams on `/dev/null`), then tells the
//! front the exit status, and the front exits with it. The worker carries
//! on alone, in the background, and ends when the session does.
//!
//! # Job control
//!
//! When the command stops for job control (`~^Z` makes ssh send itself
//! `SIGTSTP`; a background ssh reading the terminal gets `SIGTTIN`), the
//! worker sees the stop report ([`stopped_by`]) and stops the front with
//! the same signal, so the shell sees its job stopped and takes the
//! terminal back. `fg` continues the whole process group — the front and
//! the command — and a `SIGCONT` that reaches only rock is passed on to
//! the command. The worker itself does not stop: it keeps the link alive
//! (heartbeats answered, nothing to reconnect) while the job is stopped.
//! A stop by `SIGSTOP` (a debugger, a test pausing the machine) is not
//! job control and is not followed.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::time::Sleep;

/// The signals the front passes on to the worker.
const FORWARDED: [libc::c_int; 5] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGQUIT,
    libc::SIGCONT,
];

/// The first byte of the worker's word to the front: "exit now with the
/// status in the next byte".
const RELEASE: u8 = b'E';

/// The worker's pid, for the front's signal handler.
static WORKER: AtomicI32 = AtomicI32::new(0);

extern "C" fn pass_on(sig: libc::c_int) {
    let worker = WORKER.load(Ordering::Relaxed);
    if worker > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(worker, sig) };
    }
}

fn last_error() -> io::Error {
    io::Error::last_os_error()
}

/// The worker's side of the split: how to reach the front.
#[derive(Debug)]
pub struct Job {
    front: libc::pid_t,
    /// The pipe the front reads the exit status from; `None` once the
    /// front was released.
    word: Option<OwnedFd>,
}

impl Job {
    /// Splits this process into the front and the worker (see the module
    /// comment). Returns in the worker only: the front waits for the
    /// worker and exits with its status.
    ///
    /// Must be called while the process has one thread: before the tokio
    /// runtime is built.
    pub fn split() -> io::Result<Job> {
        let mut fds = [0; 2];
        // SAFETY: fds has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(last_error());
        }
        // SAFETY: pipe2 succeeded; both descriptors are ours alone.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // Blocked over the fork, so that the front passes on even a
        // signal that arrives before its handlers are in place.
        let old = block(&FORWARDED)?;
        // SAFETY: getpid cannot fail.
        let front = unsafe { libc::getpid() };
        // SAFETY: the process has one thread (see above), so the child is
        // a faithful copy; the front runs only plain system calls after.
        match unsafe { libc::fork() } {
            -1 => {
                let e = last_error();
                set_mask(&old);
                Err(e)
            }
            0 => {
                drop(read);
                let job = Job {
                    front,
                    word: Some(write),
                };
                // Killed with the front, until released.
                // SAFETY: plain system calls.
                unsafe {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                    if libc::getppid() != front {
                        // The front died before the line above.
                        libc::_exit(255);
                    }
                }
                set_mask(&old);
                Ok(job)
            }
            worker => {
                drop(write);
                front_waits(worker, read, &old)
            }
        }
    }

    /// The front's process id, while it stands for the job.
    pub fn front(&self) -> Option<u32> {
        self.word.as_ref().and(u32::try_from(self.front).ok())
    }

    /// Gives the terminal back: this process leaves the terminal's session
    /// (its standard streams go to `/dev/null`, and neither the shell's
    /// job control nor the terminal's hangup reaches it any more), then the
    /// front exits with `code`. Does nothing the second time.
    pub fn release(&mut self, code: u8) -> io::Result<()> {
        let Some(word) = self.word.take() else {
            return Ok(());
        };
        // SAFETY: plain system calls on descriptors this process owns.
        unsafe {
            // No longer killed with the front: it is about to exit.
            libc::prctl(libc::PR_SET_PDEATHSIG, 0 as libc::c_ulong);
            // Its process group is the front's, never its own: setsid
            // succeeds.
            if libc::setsid() == -1 {
                tracing::debug!("setsid: {}", last_error());
            }
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
            if null >= 0 {
                for fd in 0..3 {
                    libc::dup2(null, fd);
                }
                libc::close(null);
            }
        }
        let bytes = [RELEASE, code];
        // SAFETY: bytes is valid for its length; two bytes are written
        // atomically to a pipe.
        let n = unsafe { libc::write(word.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
        if n != 2 {
            return Err(last_error());
        }
        Ok(())
    }

    /// The command was stopped by `sig` (see [`stopped_by`]): stop the
    /// front likewise, so that the shell sees the job stopped. The worker
    /// goes on.
    pub fn stop_like(&self, sig: libc::c_int) {
        if let Some(front) = self.front().and_then(|p| libc::pid_t::try_from(p).ok()) {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(front, sig) };
        }
    }
}

/// Blocks `signals`; returns the mask before.
fn block(signals: &[libc::c_int]) -> io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(old)
    }
}

fn set_mask(mask: &libc::sigset_t) {
    // SAFETY: mask is a valid, initialised signal set.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, mask, std::ptr::null_mut()) };
}

/// The front's self-pipe: the `SIGCHLD` handler writes a byte to it, so
/// that the front's loop wakes to look at the worker.
static NUDGE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn nudge(_: libc::c_int) {
    let fd = NUDGE.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write is async-signal-safe; errno is kept for the code
        // the signal interrupted.
        unsafe {
            let errno = *libc::__errno_location();
            libc::write(fd, [1u8].as_ptr().cast(), 1);
            *libc::__errno_location() = errno;
        }
    }
}

/// Installs `handler` for `signals`.
fn handle(signals: &[libc::c_int], handler: extern "C" fn(libc::c_int)) {
    // SAFETY: the structure is initialised before use; the handlers only
    // make async-signal-safe calls.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        for &sig in signals {
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

/// The front: passes signals on, stops when the worker stops for job
/// control (a background rock reading a password from the terminal, say),
/// waits for the worker's word or its end, and exits as it says.
fn front_waits(worker: libc::pid_t, word: OwnedFd, mask: &libc::sigset_t) -> ! {
    WORKER.store(worker, Ordering::Relaxed);
    handle(&FORWARDED, pass_on);
    let mut fds = [-1; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    let nudged =
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } == 0 {
            NUDGE.store(fds[1], Ordering::Relaxed);
            handle(&[libc::SIGCHLD], nudge);
            fds[0]
        } else {
            // Without it the worker's own stops are not followed; nothing else
            // changes.
            -1
        };
    set_mask(mask);
    let mut said = [0u8; 2];
    let mut got = 0;
    while got < said.len() {
        let mut polls = [
            libc::pollfd {
                fd: word.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: nudged,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds (a negative fd is ignored by poll).
        if unsafe { libc::poll(polls.as_mut_ptr(), 2, -1) } < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        if polls[1].revents != 0 {
            let mut drain = [0u8; 64];
            // SAFETY: the buffer is valid for its length; the pipe is
            // non-blocking.
            while unsafe { libc::read(nudged, drain.as_mut_ptr().cast(), drain.len()) } > 0 {}
            if let Some(sig) = u32::try_from(worker).ok().and_then(stopped_by) {
                // SAFETY: stops this process as the worker was stopped; it
                // goes on when the shell continues the job.
                unsafe { libc::kill(libc::getpid(), sig) };
            }
        }
        if polls[0].revents == 0 {
            continue;
        }
        // SAFETY: the buffer is valid for the length passed.
        let n = unsafe {
            libc::read(
                word.as_raw_fd(),
                said[got..].as_mut_ptr().cast(),
                said.len() - got,
            )
        };
        match n {
            n if n > 0 => got += n.unsigned_abs(),
            _ if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            _ => break,
        }
    }
    if got == 2 && said[0] == RELEASE {
        // SAFETY: _exit ends the process; nothing of ours needs flushing.
        unsafe { libc::_exit(i32::from(said[1])) };
    }
    // The worker ended without a word: end as it did.
    let mut status = 0;
    let reaped = loop {
        // SAFETY: status is a valid out pointer.
        let r = unsafe { libc::waitpid(worker, &mut status, 0) };
        if r == -1 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        break r == worker;
    };
    WORKER.store(0, Ordering::Relaxed);
    // SAFETY: plain system calls; the process ends here.
    unsafe {
        if reaped && libc::WIFEXITED(status) {
            libc::_exit(libc::WEXITSTATUS(status));
        }
        if reaped && libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            libc::signal(sig, libc::SIG_DFL);
            unblock_all();
            libc::raise(sig);
            libc::_exit(128 + sig);
        }
        libc::_exit(255)
    }
}

/// Unblocks every signal (for the front, about to re-raise one).
fn unblock_all() {
    // SAFETY: an empty, initialised set.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
}

/// The job-control signal (`SIGTSTP`, `SIGTTIN` or `SIGTTOU`) that
/// stopped `pid`, a child of this process, if a stop was reported and the
/// child is still stopped (a report that a `SIGCONT` already overtook is
/// stale). Reads stop reports only: the child's exit is left for whoever
/// reaps it (tokio, for the command). Call it only while the child has not
/// been reaped.
pub fn stopped_by(pid: u32) -> Option<libc::c_int> {
    let id = libc::id_t::from(pid);
    // SAFETY: siginfo_t is plain data that waitid fills in.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: info is a valid out pointer.
    let rc = unsafe { libc::waitid(libc::P_PID, id, &mut info, libc::WSTOPPED | libc::WNOHANG) };
    // SAFETY: waitid filled info in (si_pid is 0 when nothing was reported).
    let (reported, sig) = unsafe { (info.si_pid(), info.si_status()) };
    if rc != 0 || reported == 0 {
        return None;
    }
    let job_control = [libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU].contains(&sig);
    (job_control && is_stopped(pid)).then_some(sig)
}

/// Whether process `pid` is stopped now (state `T` in `/proc/PID/stat`).
fn is_stopped(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which may hold anything but
    // ends at the last ')'.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state == "T")
}

/// Sends `sig` to process `pid`.
pub fn send(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Whether the other end of the stream socket `fd` is still open: some
/// process holds it and has not shut it down.
pub fn peer_open(fd: BorrowedFd<'_>) -> bool {
    let mut poll = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd; a zero timeout does not block.
    let n = unsafe { libc::poll(&mut poll, 1, 0) };
    let gone = libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL;
    n == 0 || (n == 1 && poll.revents & gone == 0)
}

/// How long the command has to end after rock passed it `SIGHUP` or
/// `SIGTERM`, before it is killed.
pub const END_GRACE: Duration = Duration::from_secs(2);

/// The user's command, as rock looks after it while it runs: the signals
/// that end the session are passed on to it, and its job-control stops
/// are followed.
#[derive(Debug)]
pub struct UserCommand {
    pid: Option<u32>,
    /// When a command asked to end is killed.
    kill_at: Option<Pin<Box<Sleep>>>,
}

impl UserCommand {
    /// The command running as process `pid` (`None` if it already ended).
    pub fn new(pid: Option<u32>) -> UserCommand {
        UserCommand { pid, kill_at: None }
    }

    /// Acts on `sig`, which this process (the worker) received while the
    /// command runs. `SIGHUP` and `SIGTERM` are passed on (with a
    /// `SIGCONT`, in case the command is stopped), so that it ends as it
    /// would have ended on its own: its connection then ends, and the
    /// session is closed — not suspended. If it has not ended after
    /// [`END_GRACE`], [`UserCommand::overdue`] says so.
    pub fn on_signal(&mut self, sig: Sig, job: &Job) {
        let Some(pid) = self.pid else { return };
        match sig {
            Sig::Hangup | Sig::Terminate => {
                let raw = if sig == Sig::Hangup {
                    libc::SIGHUP
                } else {
                    libc::SIGTERM
                };
                tracing::debug!("passing signal {raw} on to the command");
                send(pid, raw);
                send(pid, libc::SIGCONT);
                self.kill_at
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(END_GRACE)));
            }
            Sig::Child => {
                if let Some(stop) = stopped_by(pid) {
                    tracing::debug!("the command stopped (signal {stop}); so does the job");
                    job.stop_like(stop);
                }
            }
            Sig::Continue => send(pid, libc::SIGCONT),
            Sig::Interrupt | Sig::Stop => {}
        }
    }

    /// Completes when the command, asked to end, has not: kill it.
    pub async fn overdue(&mut self) {
        match &mut self.kill_at {
            Some(at) => {
                at.as_mut().await;
                self.kill_at = None;
            }
            None => std::future::pending().await,
        }
    }
}

/// A signal that matters to a running `rock -d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    /// `SIGHUP`: the terminal is gone.
    Hangup,
    /// `SIGTERM`: asked to end.
    Terminate,
    /// `SIGINT`: typed at the terminal, for the command.
    Interrupt,
    /// `SIGCHLD`: a child changed state.
    Child,
    /// `SIGCONT`: continued.
    Continue,
    /// `SIGTSTP`: the worker does not stop (see the module comment).
    Stop,
}

/// The signals a running `rock -d` handles. Made after the command has
/// started; from then on none of them stops or ends the worker by itself.
pub struct Signals {
    hangup: Signal,
    terminate: Signal,
    interrupt: Signal,
    child: Signal,
    cont: Signal,
    stop: Signal,
}

impl Signals {
    /// Starts handling them.
    pub fn new() -> io::Result<Signals> {
        Ok(Signals {
            hangup: signal(SignalKind::hangup())?,
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            child: signal(SignalKind::child())?,
            cont: signal(SignalKind::from_raw(libc::SIGCONT))?,
            stop: signal(SignalKind::from_raw(libc::SIGTSTP))?,
        })
    }

    /// The next signal.
    pub async fn recv(&mut self) -> Sig {
        tokio::select! {
            Some(()) = self.hangup.recv() => Sig::Hangup,
            Some(()) = self.terminate.recv() => Sig::Terminate,
            Some(()) = self.interrupt.recv() => Sig::Interrupt,
            Some(()) = self.child.recv() => Sig::Child,
            Some(()) = self.cont.recv() => Sig::Continue,
            Some(()) = self.stop.recv() => Sig::Stop,
        }
    }

    /// Waits for `SIGHUP` or `SIGTERM`, handling the others as nothing.
    pub async fn ending(&mut self) -> Sig {
        loop {
            let sig = self.recv().await;
            if matches!(sig, Sig::Hangup | Sig::Terminate) {
                return sig;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_whose_peer_is_held_elsewhere_is_open() {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().expect("a socket pair");
        let held = theirs.try_clone().expect("a second descriptor");
        drop(theirs);
        assert!(peer_open(std::os::fd::AsFd::as_fd(&ours)));
        drop(held);
        assert!(!peer_open(std::os::fd::AsFd::as_fd(&ours)));
    }

    #[test]
    fn a_running_child_is_not_stopped_and_a_stopped_one_is() {
        use std::os::unix::process::CommandExt;
        // A group of its own, whose parent is in another group of the same
        // session: not orphaned, so SIGTSTP stops it.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .expect("start sleep");
        let pid = child.id();
        assert_eq!(stopped_by(pid), None);
        send(pid, libc::SIGTSTP);
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let sig = loop {
            if let Some(sig) = stopped_by(pid) {
                break sig;
            }
            assert!(std::time::Instant::now() < end, "no stop reported");
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert_eq!(sig, libc::SIGTSTP);
        // Reported once.
        assert_eq!(stopped_by(pid), None);
        send(pid, libc::SIGCONT);
        let _ = child.kill();
        let status = child.wait().expect("reap sleep");
        assert!(!status.success());
    }

    #[test]
    fn a_stop_by_sigstop_is_not_job_control() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("start sleep");
        let pid = child.id();
        send(pid, libc::SIGSTOP);
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !is_stopped(pid) {
            assert!(std::time::Instant::now() < end, "sleep did not stop");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(stopped_by(pid), None);
        let _ = child.kill();
        let _ = child.wait();
    }
}
