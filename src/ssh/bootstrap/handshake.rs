//! The SSH handshake: russh's client config (known host-key types
//! first), the handler that checks the server's host key against
//! known_hosts and shows banners, and the errors for a refused key.
//! Nothing is ever added to a known_hosts file.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use russh::client::{Handle, Handler, Session};
use russh::keys::{Algorithm, PublicKey, PublicKeyOrCertificate};
use tokio::io::{AsyncRead, AsyncWrite};

use super::error::plain_ssh;
use super::{BootstrapError, PresentedKey};
use crate::ssh::known_hosts::{self, HostKeyStatus};
use crate::ssh::prompt::Prompter;
use crate::ssh::target::BootstrapTarget;

/// A host-key check that refused the server.
#[derive(Debug, Clone)]
struct Refusal {
    status: HostKeyStatus,
    key: PublicKey,
}

/// The russh handler: checks the host key, shows banners.
pub(crate) struct BootHandler {
    files: Vec<PathBuf>,
    name: String,
    prompter: Arc<dyn Prompter>,
    batch_mode: bool,
    /// Filled when the host key is refused, read after `connect` fails.
    refusal: Arc<Mutex<Option<Refusal>>>,
}

/// The handler's error: russh's own, or a refused host key.
#[derive(Debug)]
pub(crate) enum HandlerError {
    Ssh(russh::Error),
    HostKey,
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> Self {
        HandlerError::Ssh(e)
    }
}

impl Handler for BootHandler {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, HandlerError> {
        // No certificate algorithms are offered, but should a certificate
        // come, its plain key is checked, as OpenSSH does without a CA.
        let key = match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => {
                PublicKey::new(cert.public_key().clone(), "")
            }
        };
        let status = known_hosts::check_host_key(&self.files, &self.name, &key);
        if let HostKeyStatus::Known { file, line } = &status {
            tracing::debug!(
                "host key of {} found in {}:{line}",
                self.name,
                file.display()
            );
            return Ok(true);
        }
        if let Ok(mut slot) = self.refusal.lock() {
            *slot = Some(Refusal { status, key });
        }
        Err(HandlerError::HostKey)
    }

    async fn auth_banner(
        &mut self,
        banner: &str,
        _session: &mut Session,
    ) -> Result<(), HandlerError> {
        if !self.batch_mode {
            self.prompter.show(banner);
        }
        Ok(())
    }
}

/// Runs the SSH handshake on `stream` (a TCP connection, or a proxy
/// process's stream); a host key not recorded as known
/// ends it with the matching [`BootstrapError`]. The reconnection through
/// ssh (`crate::ssh::tunnel`) runs the very same check on every new link.
pub(crate) async fn handshake<S>(
    target: &BootstrapTarget,
    stream: S,
    prompter: Arc<dyn Prompter>,
) -> Result<Handle<BootHandler>, BootstrapError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let files = target.known_hosts_paths();
    let name = target.known_hosts_name();
    let refusal = Arc::new(Mutex::new(None));
    let handler = BootHandler {
        files: files.clone(),
        name: name.clone(),
        prompter,
        batch_mode: target.batch_mode,
        refusal: Arc::clone(&refusal),
    };
    let config = Arc::new(client_config(&known_hosts::known_key_algorithms(
        &files, &name,
    )));
    let connect = russh::client::connect_stream(config, stream, handler);
    let result = match target.connect_timeout {
        None => connect.await,
        Some(limit) => match tokio::time::timeout(limit, connect).await {
            Ok(result) => result,
            Err(_) => {
                return Err(BootstrapError::protocol(
                    &target.hostname,
                    format!("SSH handshake timed out after {limit:?}"),
                ));
            }
        },
    };
    let error = match result {
        Ok(handle) => return Ok(handle),
        Err(error) => error,
    };
    let refused = refusal.lock().ok().and_then(|mut slot| slot.take());
    Err(match refused {
        Some(refusal) => host_key_error(target, files, &name, refusal),
        None => BootstrapError::protocol(
            &target.hostname,
            format!("SSH handshake failed: {}", handler_error_text(&error)),
        ),
    })
}

/// What a failed handshake reports.
fn handler_error_text(error: &HandlerError) -> String {
    match error {
        HandlerError::Ssh(e) => e.to_string(),
        HandlerError::HostKey => "host key refused".to_owned(),
    }
}

/// The error for a refused host key.
fn host_key_error(
    target: &BootstrapTarget,
    files: Vec<PathBuf>,
    name: &str,
    refusal: Refusal,
) -> BootstrapError {
    let key = Box::new(PresentedKey {
        name: name.to_owned(),
        key_type: refusal.key.algorithm().as_str().to_owned(),
        fingerprint: known_hosts::fingerprint(&refusal.key),
    });
    match refusal.status {
        HostKeyStatus::Changed { file, line } => BootstrapError::HostKeyChanged {
            key,
            file,
            line,
            ssh_command: plain_ssh(target),
        },
        HostKeyStatus::Revoked { file, line } => BootstrapError::HostKeyRevoked { key, file, line },
        HostKeyStatus::Unknown { other_types } => BootstrapError::HostKeyUnknown {
            key,
            files,
            other_types,
            ssh_command: plain_ssh(target),
        },
        HostKeyStatus::Known { .. } => BootstrapError::protocol(
            &target.hostname,
            "SSH handshake failed after the host key was accepted",
        ),
    }
}

/// russh's defaults, with the host-key algorithms already recorded for
/// this host offered first (as OpenSSH orders them), so that a server
/// with several host keys presents the known one.
fn client_config(known: &[Algorithm]) -> russh::client::Config {
    let mut config = russh::client::Config::default();
    let defaults = config.preferred.key.to_vec();
    let (mut first, rest): (Vec<Algorithm>, Vec<Algorithm>) = defaults
        .into_iter()
        .partition(|a| known.iter().any(|k| same_key_type(k, a)));
    first.extend(rest);
    config.preferred.key = first.into();
    config.nodelay = true;
    config
}

/// RSA keys are one type whatever the signature hash.
fn same_key_type(a: &Algorithm, b: &Algorithm) -> bool {
    let rsa = |x: &Algorithm| matches!(x, Algorithm::Rsa { .. });
    (rsa(a) && rsa(b)) || a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_key_types_are_offered_first() {
        let config = client_config(&[Algorithm::Rsa { hash: None }]);
        assert!(same_key_type(
            &config.preferred.key[0],
            &Algorithm::Rsa { hash: None }
        ));
        assert!(same_key_type(
            &config.preferred.key[1],
            &Algorithm::Rsa { hash: None }
        ));
        assert_eq!(
            config.preferred.key.len(),
            russh::Preferred::DEFAULT.key.len()
        );
        assert!(config.inactivity_timeout.is_none());
    }
}
