//! Whether the login that comes through rockd's sshd connection ever
//! completes, so that rock can explain a refusal that only the bridged login
//! meets (sshd sees it from the server itself: see "What sshd sees" in
//! rockd(8)).
//!
//! The sign is one sshd itself gives: after authentication it runs the
//! session in a new process under the user's own uid (privilege separation,
//! in every OpenSSH since 7.5), and before it, no process of that uid serves
//! the connection. So a new `sshd`/`sshd-session` process of rockd's uid
//! appearing while sshd talks on the connection means a login completed.
//! [`LoginWatch`] looks in `/proc` each time a chunk arrives from sshd,
//! before the chunk goes on to the client: the client cannot have reacted
//! to it yet, so the process that wrote it is still there. If sshd's side
//! ends and no login was seen, it leaves [`NO_LOGIN_NOTE`] for rock, which
//! the session carries as its finish note.
//!
//! Nothing is claimed when the sign cannot be read: as root (sshd's own
//! processes are root too), when `/proc` hides other processes (`hidepid`),
//! or after [`MAX_LOOKS`] chunks without a login (a long conversation
//! before authentication, such as many keyboard-interactive prompts). A
//! login of the same user that completes through another connection at the
//! same moment can be taken for ours: rock then just gives no hint.

use std::collections::HashSet;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub use crate::boot::NO_LOGIN_NOTE;

/// Chunks from sshd looked at, at most, before giving up (each look reads
/// every process's name, and the status of those named like sshd).
pub const MAX_LOOKS: u32 = 64;

/// The names sshd's post-authentication process has: `sshd`, and
/// `sshd-session` since OpenSSH 9.8.
const SSHD_NAMES: [&str; 2] = ["sshd", "sshd-session"];

/// The sshd processes of one user when rockd connected to sshd, before any
/// login through rockd could complete.
#[derive(Debug, Clone)]
pub struct Baseline {
    uid: u32,
    before: HashSet<u32>,
}

impl Baseline {
    /// Takes the baseline now, or `None` when the sign cannot be read
    /// here (see the module documentation).
    pub fn take() -> Option<Baseline> {
        let uid = own_uid()?;
        if uid == 0 || proc_hides_processes() {
            return None;
        }
        Some(Baseline {
            uid,
            before: sshd_processes(uid).collect(),
        })
    }

    /// A process that shows a completed login exists now.
    fn login_seen(&self) -> bool {
        sshd_processes(self.uid).any(|pid| !self.before.contains(&pid))
    }
}

/// rockd's uid: the owner of `/proc/self`.
fn own_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// Whether `/proc` is mounted with `hidepid`, hiding processes whose
/// `/proc` entries are not ours (sshd's post-login process is among them:
/// it is not dumpable, so root owns its entry).
fn proc_hides_processes() -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return true;
    };
    mounts
        .lines()
        .filter(|l| l.split_whitespace().nth(4) == Some("/proc"))
        .any(|l| {
            l.split([' ', ',']).any(|o| {
                o.strip_prefix("hidepid=")
                    .is_some_and(|v| !matches!(v, "0" | "off"))
            })
        })
}

/// Pids of the processes named like sshd whose real uid is `uid`.
fn sshd_processes(uid: u32) -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        // The name first, in one short read: this runs for every chunk
        // sshd sends before the login, over every process of the host,
        // and only sshd's few processes need their status read.
        .filter(|&pid| named_sshd(pid))
        .filter(move |&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .is_ok_and(|status| is_sshd_of(&status, uid))
        })
}

/// Whether process `pid` is named like sshd (`/proc/PID/comm`).
fn named_sshd(pid: u32) -> bool {
    let Ok(mut comm) = std::fs::File::open(format!("/proc/{pid}/comm")) else {
        return false;
    };
    // A name is at most 15 bytes and a newline; one read returns it whole.
    let mut name = [0u8; 64];
    let Ok(n) = std::io::Read::read(&mut comm, &mut name) else {
        return false;
    };
    let name = name[..n].strip_suffix(b"\n").unwrap_or(&name[..n]);
    SSHD_NAMES.iter().any(|sshd| sshd.as_bytes() == name)
}

/// Whether a `/proc/PID/status` text is an sshd process of real uid `uid`.
fn is_sshd_of(status: &str, uid: u32) -> bool {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let named = field("Name:").is_some_and(|n| SSHD_NAMES.contains(&n));
    let real_uid = field("Uid:")
        .and_then(|u| u.split_whitespace().next())
        .and_then(|u| u.parse::<u32>().ok());
    named && real_uid == Some(uid)
}

enum Watch {
    Looking { baseline: Baseline, looks: u32 },
    Done,
}

/// rockd's connection to sshd, watched for a completed login; reads and
/// writes pass through unchanged.
pub struct LoginWatch<S> {
    inner: S,
    watch: Watch,
    note: Arc<OnceLock<String>>,
}

impl<S> LoginWatch<S> {
    /// Watches `inner` from `baseline` (`None`: nothing to watch); the note,
    /// if any, is left in `note` when sshd's side ends.
    pub fn new(inner: S, baseline: Option<Baseline>, note: Arc<OnceLock<String>>) -> Self {
        let watch = match baseline {
            Some(baseline) => Watch::Looking { baseline, looks: 0 },
            None => Watch::Done,
        };
        LoginWatch { inner, watch, note }
    }

    /// A chunk came from sshd: look for the sign, a bounded number of times.
    fn saw_data(&mut self) {
        if let Watch::Looking { baseline, looks } = &mut self.watch {
            *looks += 1;
            if baseline.login_seen() {
                tracing::debug!("a login through rockd completed");
                self.watch = Watch::Done;
            } else if *looks >= MAX_LOOKS {
                self.watch = Watch::Done;
            }
        }
    }

    /// sshd's side ended: if no login was seen, say so.
    fn saw_end(&mut self) {
        if let Watch::Looking { .. } = std::mem::replace(&mut self.watch, Watch::Done) {
            tracing::info!("sshd's connection ended before any login completed through it");
            let _ = self.note.set(NO_LOGIN_NOTE.to_owned());
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LoginWatch<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let (before, room) = (buf.filled().len(), buf.remaining());
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            if buf.filled().len() > before {
                this.saw_data();
            } else if room > 0 {
                this.saw_end();
            }
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LoginWatch<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    const STATUS: &str = "Name:\tsshd-session\nUmask:\t0022\nState:\tS (sleeping)\n\
                          Uid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\n";

    #[test]
    fn an_sshd_process_is_told_by_name_and_real_uid() {
        assert!(is_sshd_of(STATUS, 1000));
        assert!(!is_sshd_of(STATUS, 1001));
        assert!(!is_sshd_of(&STATUS.replace("sshd-session", "bash"), 1000));
        assert!(is_sshd_of(&STATUS.replace("sshd-session", "sshd"), 1000));
        assert!(!is_sshd_of("Name:\tsshd\n", 1000));
        assert!(!is_sshd_of("", 1000));
    }

    #[test]
    fn sshd_processes_are_found_by_name_then_uid() {
        // A process whose name is sshd's: `sleep` under that name.
        let dir = tempfile::tempdir().expect("tempdir");
        let named = dir.path().join("sshd-session");
        std::os::unix::fs::symlink("/bin/sleep", &named).expect("symlink");
        let mut child = std::process::Command::new(&named)
            .arg("30")
            .spawn()
            .expect("start sleep as sshd-session");
        // Named so once it has exec'd.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !named_sshd(child.id()) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let uid = own_uid().expect("own uid");
        let found: Vec<u32> = sshd_processes(uid).collect();
        let other_uid: Vec<u32> = sshd_processes(uid.wrapping_add(12_345)).collect();
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.contains(&child.id()), "{found:?}");
        assert!(!found.contains(&std::process::id()), "{found:?}");
        assert!(!other_uid.contains(&child.id()), "{other_uid:?}");
    }

    /// A baseline that sees every sshd process of the uid as new, or none.
    fn baseline(uid: u32) -> Baseline {
        Baseline {
            uid,
            before: HashSet::new(),
        }
    }

    #[tokio::test]
    async fn an_end_without_a_login_leaves_the_note() {
        // No process of this uid exists, so no login is ever seen.
        let note = Arc::new(OnceLock::new());
        let data: &[u8] = b"SSH-2.0-OpenSSH_9.2\r\n";
        let mut watch = LoginWatch::new(data, Some(baseline(u32::MAX - 7)), note.clone());
        let mut got = Vec::new();
        watch.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, data);
        assert_eq!(note.get().map(String::as_str), Some(NO_LOGIN_NOTE));
    }

    #[tokio::test]
    async fn nothing_is_said_when_there_was_nothing_to_watch() {
        let note = Arc::new(OnceLock::new());
        let mut watch = LoginWatch::new(&b"x"[..], None, note.clone());
        let mut got = Vec::new();
        watch.read_to_end(&mut got).await.expect("read");
        assert_eq!(note.get(), None);
    }

    #[tokio::test]
    async fn looking_stops_after_its_bound() {
        let note = Arc::new(OnceLock::new());
        let mut watch = LoginWatch::new(&b""[..], Some(baseline(u32::MAX - 7)), note.clone());
        for _ in 0..MAX_LOOKS {
            watch.saw_data();
        }
        assert!(matches!(watch.watch, Watch::Done));
        watch.saw_end();
        assert_eq!(note.get(), None, "no claim after the bound");
    }
}
