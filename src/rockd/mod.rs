//! rockd, the remote end of `rock -d`: reads the session key from the SSH
//! channel, connects to the sshd that channel came through, listens for rock
//! links, reports its port, detaches, and bridges the two until the session
//! ends or its suspension timeout passes.
//!
//! Everything up to the ready line happens before any thread exists, so the
//! process can fork safely to detach; the tokio runtime starts afterwards.
//!
//! This file holds the sequence ([`run`]: [`prepare`], report, detach,
//! [`serve`]); its parts:
//! * [`sshd`] — which sshd to bridge to, and the connection to it.
//! * [`bridge_target`] — the loopback address of that same sshd, when it
//!   has one.
//! * [`detach`] — leaving the SSH session; rockd's log.
//! * [`login_watch`] — whether a login through the bridge ever completed.

use std::io::{BufRead, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rock_proto::handshake::SUPPORTED_VERSIONS;
use rock_proto::{Config, Role, Session};

pub mod bridge_target;
pub mod detach;
pub mod login_watch;
pub mod sshd;

use crate::boot::{self, BootReady, BootRequest};
use crate::relay::{Outcome, Relay, RelayOptions};
use login_watch::{Baseline, LoginWatch};
use sshd::{connect_sshd, connect_target, target_from_ssh_connection};

/// Runs rockd: reads the boot request from `input`, answers on `output`
/// (ready, or the error), detaches unless told to stay in the
/// foreground, and bridges until the session ends. `ssh_connection` is
/// `SSH_CONNECTION`, if set. Returns the exit status: before the answer
/// only the boot channel hears of a failure; after it, only the log.
pub fn run(
    options: RockdOptions,
    input: &mut impl BufRead,
    output: &mut impl Write,
    ssh_connection: Option<&str>,
) -> u8 {
    let (prepared, ready) = match prepare(options, input, ssh_connection) {
        Ok(p) => p,
        Err(e) => {
            // rock prints this line as rockd's answer: the whole chain.
            let _ = report(output, &boot::error_line(&crate::chain::chain(&e)));
            return 1;
        }
    };
    let log = detach::open_log(prepared.log_path());
    if let Err(e) = report(output, &ready.encode()) {
        eprintln!("rockd: cannot report readiness: {e}");
        return 1;
    }
    if !prepared.foreground()
        && let Err(e) = detach::detach(log.as_ref())
    {
        eprintln!("rockd: {}", crate::chain::chain(&e));
        return 1;
    }
    detach::init_logging(log);
    match serve(prepared) {
        Ok(outcome) => {
            tracing::info!(?outcome, "session over");
            0
        }
        Err(e) => {
            tracing::error!("rockd stopped: {e}");
            1
        }
    }
}

/// How rockd was asked to run.
#[derive(Debug, Clone)]
pub struct RockdOptions {
    /// Where to listen for links; port 0 picks a free one.
    pub listen: Vec<SocketAddr>,
    /// Inclusive port range to listen in, if restricted.
    pub port_range: Option<(u16, u16)>,
    /// The sshd to bridge to; by default the one in `SSH_CONNECTION`.
    pub target: Option<String>,
    /// Engine settings (suspension timeout, heartbeat, ...).
    pub config: Config,
    /// Stay in the foreground (for tests and debugging).
    pub foreground: bool,
    /// Log file; by default `rockd.log` in the user's state directory.
    pub log: Option<PathBuf>,
    /// Give up if rock has not made a first link by then: rock gives up
    /// within seconds when it cannot reach us, and nothing else would end
    /// the session before its suspension timeout.
    pub first_link_timeout: Duration,
}

/// What can stop rockd before it is ready; reported on the boot channel.
#[derive(Debug, thiserror::Error)]
pub enum RockdError {
    /// The boot request could not be read from stdin.
    #[error("reading the boot request from stdin")]
    BootRead(#[source] std::io::Error),
    /// stdin ended before the whole boot request.
    #[error("stdin ended before the whole boot request")]
    BootShort,
    /// The boot request did not parse.
    #[error("the boot request on stdin")]
    Boot(#[source] crate::boot::BootError),
    /// No sshd to bridge to.
    #[error(
        "SSH_CONNECTION is not set, so rockd cannot tell which sshd to bridge to; \
         start rockd over ssh, or give --target host:port"
    )]
    NoTarget,
    /// SSH_CONNECTION or --target does not name an address.
    #[error("cannot understand the sshd address {0:?}")]
    BadTarget(String),
    /// The sshd did not accept a connection.
    #[error("cannot connect to sshd at {addr}")]
    Target {
        /// Where.
        addr: String,
        /// Why.
        #[source]
        error: crate::connect::ConnectError,
    },
    /// No port to listen on.
    #[error("cannot listen for rock links on {what}")]
    Listen {
        /// Address or range tried.
        what: String,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// The engine settings are unusable.
    #[error("invalid settings")]
    Config(#[from] rock_proto::ConfigError),
    /// Detaching failed.
    #[error("cannot detach from the ssh session")]
    Detach(#[source] std::io::Error),
}

/// Reads the boot request: four short lines.
pub fn read_request(input: &mut impl BufRead) -> Result<BootRequest, RockdError> {
    let mut lines = Vec::new();
    for _ in 0..4 {
        let mut line = String::new();
        // Bounded: a line longer than MAX_LINE is not a boot request.
        let n = std::io::Read::take(&mut *input, boot::MAX_LINE as u64)
            .read_line(&mut line)
            .map_err(RockdError::BootRead)?;
        if n == 0 {
            return Err(RockdError::BootShort);
        }
        lines.push(line.trim_end().to_owned());
    }
    BootRequest::parse(lines.iter().map(String::as_str)).map_err(RockdError::Boot)
}

fn listen(options: &RockdOptions) -> Result<TcpListener, RockdError> {
    let mut last = None;
    let ports: Vec<u16> = match options.port_range {
        Some((a, b)) => (a..=b).collect(),
        None => vec![0],
    };
    for addr in &options.listen {
        for &port in &ports {
            match TcpListener::bind(SocketAddr::new(addr.ip(), port)) {
                Ok(l) => return Ok(l),
                Err(e) => last = Some(e),
            }
        }
    }
    let what = match options.port_range {
        Some((a, b)) => format!("ports {a}-{b}"),
        None => "any port".to_owned(),
    };
    Err(RockdError::Listen {
        what,
        error: last.unwrap_or_else(|| std::io::Error::other("no listen address")),
    })
}

/// Everything rockd needs once it is ready to detach.
pub struct Prepared {
    request: BootRequest,
    sshd: TcpStream,
    /// sshd's processes before any login through the bridge could
    /// complete (rock starts its ssh only after the ready line).
    logins: Option<Baseline>,
    listener: TcpListener,
    options: RockdOptions,
}

/// Reads the request, connects to sshd and listens. `ssh_connection` is the
/// value of `SSH_CONNECTION`, if set.
pub fn prepare(
    options: RockdOptions,
    input: &mut impl BufRead,
    ssh_connection: Option<&str>,
) -> Result<(Prepared, BootReady), RockdError> {
    options.config.validate()?;
    let request = read_request(input)?;
    let sshd = match (&options.target, ssh_connection) {
        (Some(t), _) => connect_target(t)?,
        (None, Some(conn)) => connect_sshd(&target_from_ssh_connection(conn)?)?,
        (None, None) => return Err(RockdError::NoTarget),
    };
    let logins = Baseline::take();
    let listener = listen(&options)?;
    let port = listener
        .local_addr()
        .map_err(|error| RockdError::Listen {
            what: "the bound socket".into(),
            error,
        })?
        .port();
    let ready = BootReady {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        proto: SUPPORTED_VERSIONS,
        port,
    };
    Ok((
        Prepared {
            request,
            sshd,
            logins,
            listener,
            options,
        },
        ready,
    ))
}

/// Runs the bridge until the session ends.
pub fn serve(prepared: Prepared) -> std::io::Result<Outcome> {
    let Prepared {
        request,
        sshd,
        logins,
        listener,
        options,
    } = prepared;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        sshd.set_nonblocking(true)?;
        listener.set_nonblocking(true)?;
        let note = Arc::new(OnceLock::new());
        let sshd = LoginWatch::new(tokio::net::TcpStream::from_std(sshd)?, logins, note.clone());
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let now = tokio::time::Instant::now().into_std();
        let session = Session::new(Role::Server, request.id, request.key, options.config, now)
            .map_err(std::io::Error::other)?;
        let relay_options = RelayOptions {
            first_link_timeout: Some(options.first_link_timeout),
            finish_note: Some(note),
            ..RelayOptions::default()
        };
        let relay = Relay::server(session, sshd, listener, relay_options);
        let stop = async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => return std::future::pending().await,
                };
            term.recv().await;
        };
        relay.run(stop).await.map_err(std::io::Error::other)
    })
}

impl Prepared {
    /// Where rockd logs once detached.
    pub fn log_path(&self) -> Option<PathBuf> {
        self.options.log.clone().or_else(|| {
            let dir =
                dirs::state_dir().or_else(|| dirs::home_dir().map(|h| h.join(".local/state")))?;
            Some(dir.join("rock").join("rockd.log"))
        })
    }

    /// Whether rockd stays in the foreground.
    pub fn foreground(&self) -> bool {
        self.options.foreground
    }
}

/// Writes the ready (or error) line to the boot channel.
pub fn report(out: &mut impl Write, line: &str) -> std::io::Result<()> {
    out.write_all(line.as_bytes())?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_or_long_request_is_an_error() {
        let mut short = std::io::Cursor::new(b"rock-boot 1\n".to_vec());
        assert!(matches!(
            read_request(&mut short),
            Err(RockdError::BootShort)
        ));
        let mut long = std::io::Cursor::new(vec![b'x'; 10_000]);
        assert!(read_request(&mut long).is_err());
    }
}
