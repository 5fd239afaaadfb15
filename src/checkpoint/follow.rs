//! A parent that stands for its child in the user's shell job, blocking,
//! without threads: the `rock -k` process outside the session's time
//! namespace, and `rock restore` once CRIU has made the restored session
//! its child. It passes the signals that end a session on, stops when the
//! child stops for job control (so the shell sees its job stopped) and
//! continues it with itself, and reports how the child ended (see
//! [`crate::exit_status`] for the status to exit with).

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

static CHILD: AtomicI32 = AtomicI32::new(0);
/// The child is in another process group: the terminal's signals do not
/// reach it by themselves.
static APART: AtomicBool = AtomicBool::new(false);

extern "C" fn pass_on(sig: libc::c_int) {
    let child = CHILD.load(Ordering::Relaxed);
    let group_signal = matches!(sig, libc::SIGINT | libc::SIGQUIT);
    if child > 0 && (!group_signal || APART.load(Ordering::Relaxed)) {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(child, sig) };
    }
}

/// The signals passed on while following.
const PASSED: [libc::c_int; 4] = [libc::SIGTERM, libc::SIGHUP, libc::SIGINT, libc::SIGQUIT];

/// Waits for `child` as described in the module documentation; the
/// signals' own actions are back when it returns.
pub fn follow(child: libc::pid_t) -> std::io::Result<ExitStatus> {
    let ended = wait_for(child);
    CHILD.store(0, Ordering::Relaxed);
    for sig in PASSED {
        // SAFETY: restores the default action.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    ended
}

fn wait_for(child: libc::pid_t) -> std::io::Result<ExitStatus> {
    CHILD.store(child, Ordering::Relaxed);
    // SAFETY: plain queries of process groups.
    APART.store(
        unsafe { libc::getpgid(child) != libc::getpgrp() },
        Ordering::Relaxed,
    );
    for sig in PASSED {
        // SAFETY: `pass_on` only loads atomics and calls kill, both
        // async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = pass_on as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
    loop {
        let mut status = 0;
        // SAFETY: waits for our own child, with a valid status pointer.
        let rc = unsafe { libc::waitpid(child, &mut status, libc::WUNTRACED) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            return Ok(ExitStatus::from_raw(status));
        }
        if libc::WIFSTOPPED(status) {
            let sig = libc::WSTOPSIG(status);
            if matches!(sig, libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU) {
                // Job control: stop with it, so the shell takes the
                // terminal back; when `fg` continues us, continue it too.
                // SAFETY: signals to ourselves and to our child.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGSTOP);
                    libc::kill(child, libc::SIGCONT);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    #[test]
    #[expect(clippy::zombie_processes, reason = "follow() reaps them with waitpid")]
    fn the_childs_status_and_signal_are_reported() {
        let child = std::process::Command::new("sh")
            .args(["-c", "exit 7"])
            .spawn()
            .unwrap();
        let ended = follow(child.id() as libc::pid_t).unwrap();
        assert_eq!(ended.code(), Some(7));
        let child = std::process::Command::new("sh")
            .args(["-c", "kill -TERM $$"])
            .process_group(0)
            .spawn()
            .unwrap();
        let ended = follow(child.id() as libc::pid_t).unwrap();
        assert_eq!(ended.signal(), Some(libc::SIGTERM));
    }
}
