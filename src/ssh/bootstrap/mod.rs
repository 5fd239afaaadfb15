//! The bootstrap of `rock -d`: one SSH connection that starts rockd.
//!
//! Owns the sequence TCP connect → SSH handshake with the host key checked
//! against known_hosts → authentication → one exec channel that starts
//! rockd, sends it the [`BootRequest`] on stdin and reads its
//! [`BootReady`] from stdout.
//!
//! Invariants:
//! * An unknown, changed or revoked host key ends the bootstrap before
//!   authentication; nothing is ever added to a known_hosts file.
//! * The session key crosses only the exec channel's stdin: never argv, the
//!   environment or a file.
//! * Exactly one remote command runs; it tries the rockd candidates in
//!   order and, when none exists, answers a `rockd-error` line naming every
//!   candidate it tried.
//! * The channel is read until it ends (the exit status arrives after
//!   EOF), but never longer than [`ANSWER_TIMEOUT`] for the answer and
//!   [`DRAIN_TIMEOUT`] after it.
//! * The client config leaves `inactivity_timeout` unset.
//!
//! This file holds [`bootstrap`] itself, the sequence; the steps, one job
//! each (authentication is [`super::auth`]'s):
//! * `target` — [`BootstrapTarget`]: where to connect, with which settings.
//! * `connect` — the TCP connection, within `ConnectTimeout`.
//! * `handshake` — the SSH handshake and the known_hosts check of the
//!   server's host key.
//! * `command` — [`RockdCommand`] and the one remote command that finds
//!   and starts rockd.
//! * `exec` — the exec channel: the request in, rockd's output out.
//! * `answer` — judges rockd's answer: ready, missing, failed or
//!   incompatible.
//! * `error` — [`BootstrapError`] and its messages.

use std::net::SocketAddr;
use std::sync::Arc;

use russh::Disconnect;
use russh::client::Handle;

use super::auth::{AuthError, Secrets, authenticate};
use super::prompt::Prompter;
use crate::boot::{BootReady, BootRequest};

mod answer;
mod command;
mod connect;
mod error;
mod exec;
mod handshake;
mod target;

pub use command::{RockdCommand, remote_command};
pub use error::{BootstrapError, PresentedKey};
pub use exec::{ANSWER_TIMEOUT, DRAIN_TIMEOUT, MAX_NOISE_LINES};
pub(crate) use target::expand_tilde;
pub use target::{BootstrapTarget, agent_socket_from_env, default_known_hosts_files};

use answer::interpret;
use connect::connect_tcp;
use exec::{Output, run_rockd};
pub(crate) use handshake::{BootHandler, handshake};

/// The result of a successful bootstrap.
#[derive(Debug)]
pub struct Bootstrapped {
    /// rockd's answer: its version, protocol range and port.
    pub ready: BootReady,
    /// The server address the SSH connection reached; the rock link dials
    /// rockd's port on this IP.
    pub peer_addr: SocketAddr,
    /// What the user typed to authenticate (a password, a key's
    /// passphrase), for the inner ssh (through `SSH_ASKPASS`).
    pub secrets: Secrets,
}

/// Connects, checks the host key, authenticates, starts rockd and hands it
/// `request`. `prompter` is asked for passwords and passphrases (never
/// under `BatchMode`).
pub async fn bootstrap(
    target: &BootstrapTarget,
    rockd: &RockdCommand,
    request: &BootRequest,
    prompter: Arc<dyn Prompter>,
) -> Result<Bootstrapped, BootstrapError> {
    let stream = connect_tcp(target).await?;
    let peer_addr = stream
        .peer_addr()
        .map_err(|e| BootstrapError::protocol(&target.hostname, format!("peer address: {e}")))?;
    let mut handle = handshake(target, stream, Arc::clone(&prompter)).await?;
    let result = log_in_and_start(&mut handle, target, rockd, request, prompter).await;
    // The bootstrap connection has done its job, whatever the outcome.
    let _ = handle.disconnect(Disconnect::ByApplication, "", "en").await;
    let (output, secrets) = result?;
    let ready = interpret(output, &target.hostname)?;
    Ok(Bootstrapped {
        ready,
        peer_addr,
        secrets,
    })
}

/// Authenticates, then runs rockd; returns its output and the secrets
/// typed, if any.
async fn log_in_and_start(
    handle: &mut Handle<BootHandler>,
    target: &BootstrapTarget,
    rockd: &RockdCommand,
    request: &BootRequest,
    prompter: Arc<dyn Prompter>,
) -> Result<(Output, Secrets), BootstrapError> {
    let auth = authenticate(handle, target, prompter)
        .await
        .map_err(|e| match e {
            AuthError::Transport(e) => BootstrapError::protocol(
                &target.hostname,
                format!("connection lost during authentication: {e}"),
            ),
            denied => BootstrapError::AuthFailed(Box::new(denied)),
        })?;
    tracing::debug!("authenticated with {}", auth.method);
    let output = run_rockd(handle, rockd, request, &target.hostname).await?;
    Ok((output, auth.secrets))
}
