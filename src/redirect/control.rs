//! What `rock -d`'s control socket answers (the socket itself is
//! [`crate::control_socket`]'s): the proxy helper delivers the inner ssh's
//! connection (`proxy`), the askpass helper asks for the password
//! (`askpass PROMPT`), and `rock status` asks how the session is doing
//! (see [`crate::status`]).
//!
//! Each secret the user typed during the
//! bootstrap is answered at most once, and only to the prompt it belongs
//! to: the password to an account-password prompt, a key's passphrase to
//! the passphrase prompt naming that key file.

use std::io;
use std::path::Path;

use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use zeroize::Zeroizing;

use crate::control_socket::{self, STATUS_REQUEST};
use crate::relay::StatusWatch;
use crate::ssh::auth::Secrets;
use crate::ssh::prompt::{is_password_prompt, passphrase_prompt_key};
use crate::status::{Report, SessionInfo};

/// The listening control socket, the secrets it may hand out and what it
/// tells `rock status`.
pub struct Control {
    listener: UnixListener,
    /// Everything the user typed; each connection's askpass may have it.
    typed: Secrets,
    /// What the current connection's askpass may still be told.
    secrets: Secrets,
    info: SessionInfo,
    /// The relay's live status, once the relay runs.
    status: Option<StatusWatch>,
}

impl Control {
    /// Listens in `dir`; `secrets` are what askpass may be told, `info`
    /// what `rock status` is.
    pub fn bind(dir: &Path, secrets: Secrets, info: SessionInfo) -> io::Result<Control> {
        let listener = control_socket::bind(dir)?;
        Ok(Control {
            listener,
            typed: secrets.clone(),
            secrets,
            info,
            status: None,
        })
    }

    /// What askpass may be told, once the bootstrap has them (a session
    /// is listed while the bootstrap still asks for them).
    pub fn set_secrets(&mut self, secrets: Secrets) {
        self.typed = secrets.clone();
        self.secrets = secrets;
    }

    /// Serves askpass and status requests until the proxy helper delivers
    /// the inner ssh's connection, and returns that connection.
    pub async fn next_proxy(&mut self) -> io::Result<UnixStream> {
        loop {
            let (mut stream, _) = self.listener.accept().await?;
            if !control_socket::same_user(&stream) {
                tracing::warn!("refused a control connection from another user");
                continue;
            }
            let line = match control_socket::read_request(&mut stream).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::debug!("bad control request: {e}");
                    continue;
                }
            };
            if line.as_str() == "proxy" {
                // A new connection logs in anew: its askpass may be told
                // each secret once again.
                self.secrets = self.typed.clone();
                return Ok(stream);
            }
            if line.as_str() == STATUS_REQUEST {
                let now = tokio::time::Instant::now().into_std();
                let status = self.status.as_ref().map(|w| w.borrow().clone());
                let report = Report::new(&self.info, status.as_ref(), now);
                let _ = stream.write_all(report.encode().as_bytes()).await;
                continue;
            }
            if let Some(prompt) = line.strip_prefix("askpass ") {
                self.answer(&mut stream, prompt).await;
            }
        }
    }

    /// Serves askpass and status requests for as long as it runs (after
    /// the first proxy), reporting the relay's `status`, and hands each
    /// further ssh connection of the command to `further`.
    pub async fn serve(
        mut self,
        status: StatusWatch,
        further: tokio::sync::mpsc::UnboundedSender<UnixStream>,
    ) {
        self.status = Some(status);
        loop {
            match self.next_proxy().await {
                Ok(stream) => {
                    if further.send(stream).is_err() {
                        tracing::debug!("a further ssh connection came as rock was ending");
                    }
                }
                Err(e) => {
                    tracing::debug!("control socket stopped: {e}");
                    return;
                }
            }
        }
    }

    async fn answer(&mut self, stream: &mut UnixStream, prompt: &str) {
        // Each secret once: a second request means it did not work.
        let secret = if is_password_prompt(prompt) {
            self.secrets.password.take()
        } else if let Some(key) = passphrase_prompt_key(prompt)
            && self
                .secrets
                .key_passphrase
                .as_ref()
                .is_some_and(|(path, _)| path.as_os_str() == key)
        {
            self.secrets.key_passphrase.take().map(|(_, p)| p)
        } else {
            None
        };
        let reply = match secret {
            Some(secret) => Zeroizing::new(format!("ok {}\n", secret.as_str())),
            None => {
                tracing::debug!("declined askpass prompt {prompt:?}");
                Zeroizing::new("no\n".to_owned())
            }
        };
        let _ = stream.write_all(reply.as_bytes()).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::control_socket::CONTROL_SOCKET;
    use crate::redirect::helper;

    #[tokio::test]
    async fn the_password_is_given_once_and_only_for_a_password_prompt() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = Secrets {
            password: Some(Zeroizing::new("s3cret pw".into())),
            key_passphrase: Some(("/k/id".into(), Zeroizing::new("key pass".into()))),
        };
        let info = SessionInfo::new("ssh", "host");
        let mut control = Control::bind(dir.path(), secrets, info).unwrap();
        let path = dir.path().to_owned();
        let asks = tokio::task::spawn_blocking(move || {
            let host_key = helper::ask(&path, "Are you sure (yes/no)? ").unwrap();
            let first = helper::ask(&path, "me@host's password: ").unwrap();
            let second = helper::ask(&path, "me@host's password: ").unwrap();
            let other_key = helper::ask(&path, "Enter passphrase for key '/k/other': ").unwrap();
            let key = helper::ask(&path, "Enter passphrase for key '/k/id': ").unwrap();
            assert_eq!(other_key, None);
            assert_eq!(key.as_deref().map(String::as_str), Some("key pass"));
            let mut s = std::os::unix::net::UnixStream::connect(path.join(CONTROL_SOCKET)).unwrap();
            std::io::Write::write_all(&mut s, b"proxy\n").unwrap();
            (host_key, first, second)
        });
        let proxy = control.next_proxy().await;
        assert!(proxy.is_ok());
        let (host_key, first, second) = asks.await.unwrap();
        assert_eq!(host_key, None);
        assert_eq!(first.as_deref().map(String::as_str), Some("s3cret pw"));
        assert_eq!(second, None);
    }

    #[tokio::test]
    async fn each_connection_may_be_told_the_password_once() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = Secrets {
            password: Some(Zeroizing::new("pw".into())),
            key_passphrase: None,
        };
        let mut control =
            Control::bind(dir.path(), secrets, SessionInfo::new("scp", "host")).unwrap();
        for _ in 0..2 {
            let path = dir.path().to_owned();
            let asks = tokio::task::spawn_blocking(move || {
                let mut s =
                    std::os::unix::net::UnixStream::connect(path.join(CONTROL_SOCKET)).unwrap();
                std::io::Write::write_all(&mut s, b"proxy\n").unwrap();
                // The connection's ssh asks after it is connected.
                let first = helper::ask(&path, "me@host's password: ").unwrap();
                let again = helper::ask(&path, "me@host's password: ").unwrap();
                (first, again)
            });
            let _proxy = control.next_proxy().await.unwrap();
            // Serve the two askpass requests, then stop at the next proxy.
            let serve = tokio::time::timeout(Duration::from_millis(500), control.next_proxy());
            let (asked, _) = tokio::join!(asks, serve);
            let (first, again) = asked.unwrap();
            assert_eq!(first.as_deref().map(String::as_str), Some("pw"));
            assert_eq!(again, None);
        }
    }

    #[tokio::test]
    async fn status_is_answered_before_and_after_the_proxy() {
        use std::io::{Read, Write};
        let dir = tempfile::tempdir().unwrap();
        let info = SessionInfo::new("rsync", "u@files");
        let mut control = Control::bind(dir.path(), Secrets::default(), info.clone()).unwrap();
        let path = dir.path().join(CONTROL_SOCKET);
        let asker = tokio::task::spawn_blocking(move || {
            let mut s = std::os::unix::net::UnixStream::connect(&path).unwrap();
            s.write_all(b"status\n").unwrap();
            let mut text = String::new();
            s.read_to_string(&mut text).unwrap();
            let mut p = std::os::unix::net::UnixStream::connect(&path).unwrap();
            p.write_all(b"proxy\n").unwrap();
            text
        });
        let _proxy = control.next_proxy().await.unwrap();
        let report = Report::decode(&asker.await.unwrap()).unwrap();
        assert_eq!(report.info, info);
        assert_eq!(report.phase, crate::status::Phase::Starting);
    }
}
