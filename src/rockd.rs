//! rockd, the remote end of `rock -d`: reads the session key from the SSH
//! channel, connects to the sshd that channel came through, listens for rock
//! links, reports its port, detaches, and bridges the two until the session
//! ends or its suspension timeout passes.
//!
//! Everything up to the ready line happens before any thread exists, so the
//! process can fork safely to detach; the tokio runtime starts afterwards.

use std::io::{BufRead, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Duration;

use rock_proto::handshake::SUPPORTED_VERSIONS;
use rock_proto::{Config, Role, Session};

use crate::boot::{self, BootReady, BootRequest};
use crate::relay::{Outcome, Relay, RelayOptions};

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
    /// The boot request did not arrive or did not parse.
    #[error("reading the boot request from stdin: {0}")]
    Boot(String),
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
    #[error("cannot connect to sshd at {addr}: {error}")]
    Target {
        /// Where.
        addr: String,
        /// Why.
        error: std::io::Error,
    },
    /// No port to listen on.
    #[error("cannot listen for rock links on {what}: {error}")]
    Listen {
        /// Address or range tried.
        what: String,
        /// Why.
        error: std::io::Error,
    },
    /// The engine settings are unusable.
    #[error("invalid settings: {0}")]
    Config(#[from] rock_proto::ConfigError),
    /// Detaching failed.
    #[error("cannot detach from the ssh session: {0}")]
    Detach(std::io::Error),
}

/// Reads the boot request: four short lines.
pub fn read_request(input: &mut impl BufRead) -> Result<BootRequest, RockdError> {
    let mut lines = Vec::new();
    for _ in 0..4 {
        let mut line = String::new();
        // Bounded: a line longer than MAX_LINE is not a boot request.
        let n = std::io::Read::take(&mut *input, boot::MAX_LINE as u64)
            .read_line(&mut line)
            .map_err(|e| RockdError::Boot(e.to_string()))?;
        if n == 0 {
            return Err(RockdError::Boot("stdin ended early".into()));
        }
        lines.push(line.trim_end().to_owned());
    }
    BootRequest::parse(lines.iter().map(String::as_str))
        .map_err(|e| RockdError::Boot(e.to_string()))
}

/// The sshd address from `SSH_CONNECTION` (`client_ip client_port server_ip
/// server_port`).
pub fn target_from_ssh_connection(value: &str) -> Result<String, RockdError> {
    let f: Vec<&str> = value.split_ascii_whitespace().collect();
    let [_, _, ip, port] = f.as_slice() else {
        return Err(RockdError::BadTarget(value.to_owned()));
    };
    let ip: std::net::IpAddr = ip
        .parse()
        .map_err(|_| RockdError::BadTarget(value.to_owned()))?;
    let port: u16 = port
        .parse()
        .map_err(|_| RockdError::BadTarget(value.to_owned()))?;
    Ok(SocketAddr::new(ip, port).to_string())
}

/// Connects to the sshd that took the client's connection on `server`:
/// over loopback when the same listening socket serves it there (so that
/// the bridge outlives a change of the server's address), else on `server`.
fn connect_sshd(server: &str) -> Result<TcpStream, RockdError> {
    if let Ok(addr) = server.parse::<SocketAddr>() {
        let via = crate::bridge_target::bridge_target(addr);
        if via != addr
            && let Ok(stream) = connect_target(&via.to_string())
        {
            return Ok(stream);
        }
    }
    connect_target(server)
}

fn connect_target(target: &str) -> Result<TcpStream, RockdError> {
    let failed = |error| RockdError::Target {
        addr: target.to_owned(),
        error,
    };
    let mut last = None;
    for addr in target.to_socket_addrs().map_err(failed)? {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
            Ok(s) => {
                s.set_nodelay(true).map_err(failed)?;
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(failed(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no address")
    })))
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
            listener,
            options,
        },
        ready,
    ))
}

/// Detaches from the SSH session: a new process in its own session, with
/// standard streams on /dev/null (or the log file), so the exec channel
/// ends while rockd lives on. Returns in the child only.
pub fn detach(log: Option<&std::fs::File>) -> Result<(), RockdError> {
    // SAFETY: called before any thread exists (the runtime starts later);
    // the parent only calls async-signal-safe `_exit`.
    match unsafe { libc::fork() } {
        -1 => return Err(RockdError::Detach(std::io::Error::last_os_error())),
        0 => {}
        _ => unsafe { libc::_exit(0) },
    }
    // SAFETY: plain system calls on descriptors this process owns.
    unsafe {
        if libc::setsid() == -1 {
            return Err(RockdError::Detach(std::io::Error::last_os_error()));
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null < 0 {
            return Err(RockdError::Detach(std::io::Error::last_os_error()));
        }
        let err = log.map_or(null, |f| f.as_raw_fd());
        libc::dup2(null, 0);
        libc::dup2(null, 1);
        libc::dup2(err, 2);
        if null > 2 {
            libc::close(null);
        }
        libc::chdir(c"/".as_ptr());
    }
    Ok(())
}

/// Runs the bridge until the session ends.
pub fn serve(prepared: Prepared) -> std::io::Result<Outcome> {
    let Prepared {
        request,
        sshd,
        listener,
        options,
    } = prepared;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        sshd.set_nonblocking(true)?;
        listener.set_nonblocking(true)?;
        let sshd = tokio::net::TcpStream::from_std(sshd)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let now = tokio::time::Instant::now().into_std();
        let session = Session::new(Role::Server, request.id, request.key, options.config, now)
            .map_err(std::io::Error::other)?;
        let relay_options = RelayOptions {
            first_link_timeout: Some(options.first_link_timeout),
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

/// A log file larger than this is moved aside (to `NAME.1`, replacing the
/// previous one) when the next rockd starts, so logs stay bounded.
pub const LOG_ROTATE_BYTES: u64 = 1 << 20;

/// Opens (appending) the log file, creating its directory privately and
/// rotating it first when it has grown past [`LOG_ROTATE_BYTES`].
/// Logging is best effort: rockd runs without a log rather than not at all.
pub fn open_log(path: Option<PathBuf>) -> Option<std::fs::File> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let path = path?;
    if let Some(dir) = path.parent() {
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir);
    }
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        let mut old = path.clone().into_os_string();
        old.push(".1");
        let _ = std::fs::rename(&path, old);
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .ok()
}

/// Sends tracing output to the log file (or stderr), `RUST_LOG` or `info`.
pub fn init_logging(log: Option<std::fs::File>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    match log {
        Some(file) => builder.with_writer(std::sync::Mutex::new(file)).init(),
        None => builder.with_writer(std::io::stderr).init(),
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
    fn a_large_log_is_moved_aside_and_a_small_one_kept() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("state").join("rockd.log");
        let mut log = open_log(Some(path.clone())).expect("the log opens");
        log.write_all(b"first\n").expect("the log is writable");
        drop(log);
        let log = open_log(Some(path.clone())).expect("the log opens again");
        drop(log);
        assert_eq!(std::fs::read(&path).expect("the log"), b"first\n");

        std::fs::write(&path, vec![b'x'; LOG_ROTATE_BYTES as usize + 1]).expect("a big log");
        let mut log = open_log(Some(path.clone())).expect("the log opens after rotating");
        log.write_all(b"fresh\n").expect("the log is writable");
        assert_eq!(std::fs::read(&path).expect("the new log"), b"fresh\n");
        let old = std::fs::metadata(dir.path().join("state").join("rockd.log.1"))
            .expect("the old log is kept once");
        assert_eq!(old.len(), LOG_ROTATE_BYTES + 1);
    }

    #[test]
    fn ssh_connection_names_the_server_side() {
        assert_eq!(
            target_from_ssh_connection("10.0.0.5 51234 10.0.0.9 22").unwrap(),
            "10.0.0.9:22"
        );
        assert_eq!(
            target_from_ssh_connection("::1 5 ::1 2222").unwrap(),
            "[::1]:2222"
        );
        assert!(target_from_ssh_connection("garbage").is_err());
    }

    #[test]
    fn a_short_or_long_request_is_an_error() {
        let mut short = std::io::Cursor::new(b"rock-boot 1\n".to_vec());
        assert!(matches!(read_request(&mut short), Err(RockdError::Boot(_))));
        let mut long = std::io::Cursor::new(vec![b'x'; 10_000]);
        assert!(read_request(&mut long).is_err());
    }
}
