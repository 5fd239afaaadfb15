//! Reconnecting through ssh (`reconnect = "ssh"`): every new rock link is
//! a fresh SSH connection to the host's sshd, with a direct-tcpip channel
//! to rockd's loopback port, so only the ssh port needs to be reachable.
//!
//! Invariants:
//! * The host key is checked exactly as the bootstrap checks it
//!   ([`crate::ssh::bootstrap::handshake`]: known_hosts only, nothing ever
//!   added), and the user is authenticated in the bootstrap's order
//!   ([`crate::ssh::auth`]) — but nothing is ever asked: only the agent,
//!   key files, and the password or passphrase typed during the bootstrap
//!   ([`ReplayPrompter`]).
//! * The host name is looked up again on every attempt, as the TCP
//!   dialer does.
//! * An attempt is bounded: the name lookup and each TCP connect by
//!   `connect_timeout` ([`crate::connect`]'s rule, as for a direct link,
//!   with the target's `AddressFamily`) and the SSH handshake, authentication and channel open
//!   together by `setup_timeout`, so a blackholed attempt ends with
//!   `TimedOut` and the next one starts at once.
//! * Behind `ProxyCommand` or `ProxyJump`, each attempt starts a fresh
//!   proxy process instead of a TCP connection ([`crate::ssh::proxy`]); a
//!   generated jump runs with `-o BatchMode=yes`, as the terminal belongs
//!   to the user's command by then. Its start and the rest share
//!   `setup_timeout`; a proxy that hangs is killed with the attempt.
//!
//! * `link` — [`SshLink`], the channel as a link's byte stream.
//! * `replay` — [`ReplayPrompter`], the secrets typed once.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::relay::{BoxLink, DialFuture, Dialer};
use crate::ssh::auth::{AuthError, Secrets, authenticate};
use crate::ssh::bootstrap::{BootHandler, handshake};
use crate::ssh::prompt::Prompter;
use crate::ssh::proxy::ProxyStream;
use crate::ssh::target::BootstrapTarget;

mod link;
mod replay;

use link::{Cut, SshLink};
pub(crate) use replay::ReplayPrompter;

/// Default bound on the SSH handshake, authentication and channel open of
/// one attempt (the TCP connect has its own, shorter bound).
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(15);

/// Opens rock links to rockd through new SSH connections.
pub struct SshDialer {
    target: Arc<BootstrapTarget>,
    /// Where to connect: the target's host name, or 127.0.0.1 under `-l`.
    connect_host: String,
    /// The address sshd connects the channel to (rockd's listen address).
    rockd_host: String,
    rockd_port: u16,
    secrets: Secrets,
    connect_timeout: Duration,
    setup_timeout: Duration,
}

impl SshDialer {
    /// A dialer that logs in as the bootstrap did (`target`, with the
    /// `secrets` it was given) on `connect_host` (port `target.port`) and
    /// opens a channel to `rockd_host:rockd_port` from there.
    pub fn new(
        target: BootstrapTarget,
        connect_host: impl Into<String>,
        rockd_host: impl Into<String>,
        rockd_port: u16,
        secrets: Secrets,
    ) -> SshDialer {
        SshDialer {
            target: Arc::new(target),
            connect_host: connect_host.into(),
            rockd_host: rockd_host.into(),
            rockd_port,
            secrets,
            connect_timeout: Duration::from_secs(1),
            setup_timeout: SETUP_TIMEOUT,
        }
    }

    /// Sets the bounds of one attempt: the TCP connect, and the rest.
    pub fn with_timeouts(mut self, connect: Duration, setup: Duration) -> SshDialer {
        self.connect_timeout = connect;
        self.setup_timeout = setup;
        self
    }
}

impl Dialer for SshDialer {
    fn dial(&mut self) -> DialFuture {
        let attempt = Attempt {
            target: Arc::clone(&self.target),
            connect_host: self.connect_host.clone(),
            rockd_host: self.rockd_host.clone(),
            rockd_port: self.rockd_port,
            secrets: self.secrets.clone(),
            connect_timeout: self.connect_timeout,
            setup_timeout: self.setup_timeout,
        };
        Box::pin(attempt.run())
    }

    fn describe(&self) -> String {
        let host = if self.connect_host.contains(':') {
            format!("[{}]", self.connect_host)
        } else {
            self.connect_host.clone()
        };
        match &self.target.proxy {
            None => format!(
                "rockd through ssh to {}@{host} port {} (channel to {}:{})",
                self.target.user, self.target.port, self.rockd_host, self.rockd_port
            ),
            Some(proxy) => format!(
                "rockd through ssh to {}@{} port {} via its {proxy} (channel to {}:{})",
                self.target.user,
                self.target.hostname,
                self.target.port,
                self.rockd_host,
                self.rockd_port
            ),
        }
    }
}

/// One attempt's settings, owned by its future.
struct Attempt {
    target: Arc<BootstrapTarget>,
    connect_host: String,
    rockd_host: String,
    rockd_port: u16,
    secrets: Secrets,
    connect_timeout: Duration,
    setup_timeout: Duration,
}

impl Attempt {
    async fn run(self) -> io::Result<BoxLink> {
        let limit = self.setup_timeout;
        let timed_out = |what: &str| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("ssh to {what}: no session within {limit:?} (handshake, login, channel)"),
            )
        };
        let Some(proxy) = &self.target.proxy else {
            // Under `-l` the host is 127.0.0.1, whatever its family.
            let family = match self.connect_host == self.target.hostname {
                true => self.target.address_family,
                false => crate::connect::AddressFamily::Any,
            };
            let stream = crate::connect::connect(
                &self.connect_host,
                self.target.port,
                family,
                Some(self.connect_timeout),
            )
            .await?;
            let (stream, cut) = Cut::tcp(stream)?;
            return match tokio::time::timeout(limit, self.set_up(stream)).await {
                Ok(Ok((channel, handle))) => Ok(Box::new(SshLink::new(channel, handle, cut))),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(timed_out(&self.connect_host)),
            };
        };
        // A fresh proxy per attempt, never prompting; dropping its guard
        // (a failed or abandoned attempt, a dropped link) kills it.
        let (stream, guard) = ProxyStream::spawn(proxy, true)?;
        match tokio::time::timeout(limit, self.set_up(stream)).await {
            Ok(Ok((channel, handle))) => {
                Ok(Box::new(SshLink::new(channel, handle, Cut::proxy(guard))))
            }
            Ok(Err(e)) => {
                let why = guard.explain(e.to_string()).await;
                Err(io::Error::new(e.kind(), format!("reconnecting: {why}")))
            }
            Err(_) => Err(timed_out(&format!(
                "{} through the {}",
                self.target.hostname,
                guard.proxy()
            ))),
        }
    }

    /// Handshake, login and channel on a connected stream.
    async fn set_up<S>(
        &self,
        stream: S,
    ) -> io::Result<(
        russh::ChannelStream<russh::client::Msg>,
        russh::client::Handle<BootHandler>,
    )>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let prompter: Arc<dyn Prompter> = Arc::new(ReplayPrompter::new(self.secrets.clone()));
        let mut handle = handshake(&self.target, stream, Arc::clone(&prompter))
            .await
            .map_err(|e| io::Error::other(format!("reconnecting through ssh: {e}")))?;
        let auth = authenticate(&mut handle, &self.target, prompter)
            .await
            .map_err(|e| match e {
                AuthError::Transport(e) => io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    format!("ssh to {}: lost during login: {e}", self.connect_host),
                ),
                denied => io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("reconnecting through ssh: {denied}"),
                ),
            })?;
        tracing::debug!("reconnection authenticated with {}", auth.method);
        let channel = handle
            .channel_open_direct_tcpip(
                self.rockd_host.clone(),
                u32::from(self.rockd_port),
                "127.0.0.1",
                0,
            )
            .await
            .map_err(|e| {
                channel_error(&self.target.hostname, &self.rockd_host, self.rockd_port, e)
            })?;
        Ok((channel.into_stream(), handle))
    }
}

/// The error for a channel sshd would not open.
fn channel_error(host: &str, rockd_host: &str, port: u16, e: russh::Error) -> io::Error {
    let advice = match &e {
        russh::Error::ChannelOpenFailure(russh::ChannelOpenFailure::AdministrativelyProhibited) => {
            "; sshd refuses TCP forwarding (AllowTcpForwarding no?), so rockd cannot be \
             reached through ssh: use reconnect = \"direct\""
        }
        russh::Error::ChannelOpenFailure(russh::ChannelOpenFailure::ConnectFailed) => {
            "; rockd is not listening there any more (it ended, or its session timed out)"
        }
        _ => "",
    };
    io::Error::new(
        io::ErrorKind::ConnectionRefused,
        format!(
            "sshd on {host} could not open a channel to rockd at {rockd_host}:{port}: {e}{advice}"
        ),
    )
}
