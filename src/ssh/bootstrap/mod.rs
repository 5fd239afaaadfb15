//! The bootstrap of `rock -d`: one SSH connection that starts rockd.
//!
//! Owns the sequence TCP connect (or proxy process) → SSH handshake with the host key checked
//! against known_hosts → authentication → one exec channel that starts
//! rockd, sends it the [`BootRequest`] on stdin and reads its
//! [`BootReady`] from stdout.
//!
//! Invariants:
//! * An unknown, changed or revoked host key ends the bootstrap before
//!   authentication; nothing is ever added to a known_hosts file.
//! * The session key crosses only the exec channel's stdin: never argv, the
//!   environment or a file.
//! * One remote command starts rockd; it tries the rockd candidates in
//!   order and, when none exists, answers a `rockd-error` line naming every
//!   candidate it tried. Only when that rockd is missing or incompatible,
//!   and an [`InstallPlan`] allows it, do more commands run on the same
//!   connection (probe, copy, start the copy): see `install`.
//! * The channel is read until it ends (the exit status arrives after
//!   EOF), but never longer than [`ANSWER_TIMEOUT`] for the answer and
//!   [`DRAIN_TIMEOUT`] after it.
//! * The client config leaves `inactivity_timeout` unset.
//!
//! This file holds [`bootstrap`] itself, the sequence; the steps, one job
//! each (authentication is [`super::auth`]'s, the target
//! [`super::target`]'s):
//! * `connect` — the TCP connection, within `ConnectTimeout`, or the
//!   proxy process ([`crate::ssh::proxy`]) under `ProxyCommand` or
//!   `ProxyJump`.
//! * `handshake` — the SSH handshake and the known_hosts check of the
//!   server's host key.
//! * `command` — [`RockdCommand`] and the one remote command that finds
//!   and starts rockd.
//! * `exec` — the exec channel: the request in, rockd's output out.
//! * `answer` — judges rockd's answer: ready, missing, failed or
//!   incompatible.
//! * `install` — [`InstallPlan`] and the steps that copy
//!   rock's own rockd to a host without a usable one.
//! * `local_rockd` — [`LocalRockd`]: the binary to copy, its hash and
//!   installed name.
//! * `platform` — [`Platform`]: OS and architecture here and there; the
//!   glibc floor.
//! * `script` — one small sh script over its own exec channel.
//! * `error` — [`BootstrapError`] and its messages.

use std::net::SocketAddr;
use std::sync::Arc;

use russh::Disconnect;
use russh::client::Handle;

use super::auth::{AuthError, Secrets, authenticate};
use super::prompt::Prompter;
use super::target::BootstrapTarget;
use crate::boot::{BootReady, BootRequest};

mod answer;
mod command;
mod connect;
mod error;
mod exec;
mod handshake;
mod install;
mod local_rockd;
mod platform;
mod script;

pub use command::{RockdCommand, remote_command};
pub use error::{BootstrapError, PresentedKey};
pub use exec::{ANSWER_TIMEOUT, DRAIN_TIMEOUT, MAX_NOISE_LINES};
pub use install::InstallPlan;
pub use local_rockd::{INSTALL_DIR, LocalRockd, LocalRockdError, Source};
pub use platform::{GLIBC_FLOOR, Platform};

use answer::interpret;
use connect::{connect_proxy, connect_tcp, proxy_failure};
use exec::run_rockd;
pub(crate) use handshake::{BootHandler, handshake};

/// The result of a successful bootstrap.
#[derive(Debug)]
pub struct Bootstrapped {
    /// rockd's answer: its version, protocol range and port.
    pub ready: BootReady,
    /// The server address the SSH connection reached (`None` through a
    /// proxy, which hides it).
    pub peer_addr: Option<SocketAddr>,
    /// What the user typed to authenticate (a password, a key's
    /// passphrase), for the inner ssh (through `SSH_ASKPASS`).
    pub secrets: Secrets,
}

/// Connects, checks the host key, authenticates, starts rockd and hands it
/// `request`. `prompter` is asked for passwords and passphrases (never
/// under `BatchMode`). A missing or incompatible rockd is an error; see
/// [`bootstrap_installing`] to copy rock's own instead.
pub async fn bootstrap(
    target: &BootstrapTarget,
    rockd: &RockdCommand,
    request: &BootRequest,
    prompter: Arc<dyn Prompter>,
) -> Result<Bootstrapped, BootstrapError> {
    start(target, rockd, request, prompter, None).await
}

/// [`bootstrap`], and when rockd is missing or incompatible, copies rock's
/// own there and starts it, as `plan` says (asking `prompter` under
/// [`crate::settings::AutoInstall::Ask`]).
pub async fn bootstrap_installing(
    target: &BootstrapTarget,
    rockd: &RockdCommand,
    request: &BootRequest,
    prompter: Arc<dyn Prompter>,
    plan: &InstallPlan,
) -> Result<Bootstrapped, BootstrapError> {
    start(target, rockd, request, prompter, Some(plan)).await
}

async fn start(
    target: &BootstrapTarget,
    rockd: &RockdCommand,
    request: &BootRequest,
    prompter: Arc<dyn Prompter>,
    plan: Option<&InstallPlan>,
) -> Result<Bootstrapped, BootstrapError> {
    // The proxy process, if any, lives until the bootstrap is done.
    let (mut handle, peer_addr, proxy) = match &target.proxy {
        None => {
            let stream = connect_tcp(target).await?;
            let peer_addr = stream.peer_addr().map_err(|e| {
                BootstrapError::protocol(&target.hostname, format!("peer address: {e}"))
            })?;
            let handle = handshake(target, stream, Arc::clone(&prompter)).await?;
            (handle, Some(peer_addr), None)
        }
        Some(proxy) => {
            let (stream, guard) = connect_proxy(target, proxy)?;
            match handshake(target, stream, Arc::clone(&prompter)).await {
                Ok(handle) => (handle, None, Some(guard)),
                Err(e) => return Err(proxy_failure(target, &guard, e).await),
            }
        }
    };
    let result = log_in_and_start(&mut handle, target, rockd, request, prompter, plan).await;
    // The bootstrap connection has done its job, whatever the outcome. It
    // is closed beside what comes next (the proxy, if any, lives until
    // then); a failure waits for it, so that the process can end.
    let goodbye = async move {
        let _ = handle.disconnect(Disconnect::ByApplication, "", "en").await;
        drop(proxy);
    };
    if result.is_ok() {
        tokio::spawn(goodbye);
    } else {
        goodbye.await;
    }
    let (ready, secrets) = result?;
    Ok(Bootstrapped {
        ready,
        peer_addr,
        secrets,
    })
}

/// Authenticates, then runs rockd (installing ours if `plan` says so);
/// returns its answer and the secrets typed, if any.
async fn log_in_and_start(
    handle: &mut Handle<BootHandler>,
    target: &BootstrapTarget,
    rockd: &RockdCommand,
    request: &BootRequest,
    prompter: Arc<dyn Prompter>,
    plan: Option<&InstallPlan>,
) -> Result<(BootReady, Secrets), BootstrapError> {
    let auth = authenticate(handle, target, Arc::clone(&prompter))
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
    let ready = match (interpret(output, &target.hostname), plan) {
        (Err(cause), Some(plan)) if install::curable(&cause) => {
            let remote = install::Remote {
                handle,
                target,
                rockd,
                request,
                prompter: &prompter,
            };
            install::install_and_start(&remote, plan, cause).await?
        }
        (result, _) => result?,
    };
    Ok((ready, auth.secrets))
}
