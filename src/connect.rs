//! Connecting to any of a host name's addresses within a time limit: the
//! one way every part of rock dials TCP — the bootstrap's SSH connection,
//! each direct link to rockd, each SSH connection that carries a link, and
//! rockd's connection to sshd.
//!
//! The rule: the name is looked up afresh on every call (a server that
//! moved and whose name followed is found), the lookup is bounded by the
//! limit (`ConnectTimeout`), and then the addresses are raced as browsers
//! do (RFC 8305): the first at once, each next one a quarter second later
//! or as soon as the one before fails, each within the limit; the first to
//! answer wins. The address that worked last goes first when the caller
//! knows it ([`connect_preferring`]), so a reconnection does not wait for
//! dead addresses. With no limit the kernel's own timeouts apply, as in
//! ssh.
//!
//! `AddressFamily` (`-4`, `-6`) keeps only the addresses of that family,
//! and a name without one is an error naming the family, as in ssh.
//!
//! The blocking twin [`connect_blocking`] is for rockd before it detaches
//! (no runtime, no thread may exist there): the same rule, the same errors.
//! The connection returned has `TCP_NODELAY` set: rock's traffic is
//! interactive first, and the engine does its own batching.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use tokio::net::TcpStream;

/// Which addresses of a name may be used (`AddressFamily` in ssh_config).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AddressFamily {
    /// IPv4 or IPv6.
    #[default]
    Any,
    /// IPv4 only (`-4`).
    Inet,
    /// IPv6 only (`-6`).
    Inet6,
}

impl AddressFamily {
    /// Whether `addr` is of this family.
    pub fn admits(self, addr: &SocketAddr) -> bool {
        match self {
            AddressFamily::Any => true,
            AddressFamily::Inet => addr.is_ipv4(),
            AddressFamily::Inet6 => addr.is_ipv6(),
        }
    }
}

impl fmt::Display for AddressFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressFamily::Any => "IP",
            AddressFamily::Inet => "IPv4",
            AddressFamily::Inet6 => "IPv6",
        })
    }
}

/// Why no connection was made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The name did not resolve within the limit.
    #[error("looking up {host} (to connect to port {port}) took longer than {limit:?}")]
    LookupTimedOut {
        /// The name.
        host: String,
        /// The port.
        port: u16,
        /// The limit.
        limit: Duration,
    },
    /// The name did not resolve.
    #[error("cannot look up {host} (to connect to port {port})")]
    Lookup {
        /// The name.
        host: String,
        /// The port.
        port: u16,
        /// The resolver's answer.
        #[source]
        error: io::Error,
    },
    /// The name has addresses, but none of the wanted family.
    #[error("{host} has no {family} address (AddressFamily, -4 or -6) to connect to port {port}")]
    NoAddress {
        /// The name.
        host: String,
        /// The port.
        port: u16,
        /// The family wanted.
        family: AddressFamily,
    },
    /// No address answered.
    #[error("cannot connect to {host} port {port} (tried {})", list(.tried))]
    Unanswered {
        /// The name.
        host: String,
        /// The port.
        port: u16,
        /// The addresses tried, in order.
        tried: Vec<SocketAddr>,
        /// What the last one said.
        #[source]
        last: io::Error,
    },
}

fn list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl ConnectError {
    /// The kind of failure, as an `io::ErrorKind`, for callers that pass
    /// it on as an `io::Error` (see the `From` conversion, which keeps this
    /// error, and so its cause, inside).
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            ConnectError::LookupTimedOut { .. } => io::ErrorKind::TimedOut,
            ConnectError::Lookup { error, .. } => error.kind(),
            ConnectError::NoAddress { .. } => io::ErrorKind::AddrNotAvailable,
            ConnectError::Unanswered { last, .. } => last.kind(),
        }
    }
}

impl From<ConnectError> for io::Error {
    fn from(e: ConnectError) -> io::Error {
        io::Error::new(e.kind(), e)
    }
}

/// The error for an address that did not answer within `limit`.
fn timed_out(limit: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no answer within {limit:?}"),
    )
}

/// The addresses of the wanted family, in the resolver's order.
fn usable(
    host: &str,
    port: u16,
    addrs: impl Iterator<Item = SocketAddr>,
    family: AddressFamily,
) -> Result<Vec<SocketAddr>, ConnectError> {
    let all: Vec<SocketAddr> = addrs.collect();
    let wanted: Vec<SocketAddr> = all.iter().copied().filter(|a| family.admits(a)).collect();
    if wanted.is_empty() {
        return Err(match all.is_empty() {
            true => ConnectError::Lookup {
                host: host.to_owned(),
                port,
                error: io::Error::new(io::ErrorKind::NotFound, "no address found"),
            },
            false => ConnectError::NoAddress {
                host: host.to_owned(),
                port,
                family,
            },
        });
    }
    Ok(wanted)
}

/// Connects to `host` (a name or an address) on `port`, by the rule above.
pub async fn connect(
    host: &str,
    port: u16,
    family: AddressFamily,
    limit: Option<Duration>,
) -> Result<TcpStream, ConnectError> {
    connect_preferring(host, port, family, limit, None).await
}

/// [`connect`], trying `preferred` first when the name still has it (the
/// address that worked last time: a reconnection should not pay again for
/// the dead addresses before it).
pub async fn connect_preferring(
    host: &str,
    port: u16,
    family: AddressFamily,
    limit: Option<Duration>,
    preferred: Option<SocketAddr>,
) -> Result<TcpStream, ConnectError> {
    let lookup = async { Ok(tokio::net::lookup_host((host, port)).await?.collect()) };
    connect_after(lookup, host, port, family, limit, preferred).await
}

/// [`connect_preferring`], with the addresses `lookup` finds.
async fn connect_after(
    lookup: impl Future<Output = io::Result<Vec<SocketAddr>>>,
    host: &str,
    port: u16,
    family: AddressFamily,
    limit: Option<Duration>,
    preferred: Option<SocketAddr>,
) -> Result<TcpStream, ConnectError> {
    let found =
        match limit {
            Some(limit) => tokio::time::timeout(limit, lookup).await.map_err(|_| {
                ConnectError::LookupTimedOut {
                    host: host.to_owned(),
                    port,
                    limit,
                }
            })?,
            None => lookup.await,
        };
    let found = found.map_err(|error| ConnectError::Lookup {
        host: host.to_owned(),
        port,
        error,
    })?;
    let mut addrs = usable(host, port, found.into_iter(), family)?;
    if let Some(at) = preferred.and_then(|p| addrs.iter().position(|a| *a == p)) {
        let first = addrs.remove(at);
        addrs.insert(0, first);
    }
    race(host, port, addrs, limit).await
}

/// Connects to the first of `addrs` to answer: the first attempt starts at
/// once and each next one [`NEXT_ATTEMPT_AFTER`] later, or as soon as the
/// one before fails (RFC 8305's "Happy Eyeballs"), each within `limit`.
/// A dead first address then costs a quarter of a second, not a limit.
pub async fn race(
    host: &str,
    port: u16,
    addrs: Vec<SocketAddr>,
    limit: Option<Duration>,
) -> Result<TcpStream, ConnectError> {
    let mut attempts = tokio::task::JoinSet::new();
    let mut next = 0;
    let mut last = None;
    loop {
        if next < addrs.len() {
            let addr = addrs[next];
            next += 1;
            attempts.spawn(async move {
                let attempt = TcpStream::connect(addr);
                let result = match limit {
                    Some(limit) => tokio::time::timeout(limit, attempt)
                        .await
                        .unwrap_or_else(|_| Err(timed_out(limit))),
                    None => attempt.await,
                };
                (addr, result)
            });
        }
        let more = next < addrs.len();
        let finished = tokio::select! {
            joined = attempts.join_next() => joined,
            () = tokio::time::sleep(NEXT_ATTEMPT_AFTER), if more => continue,
        };
        match finished {
            Some(Ok((_, Ok(stream)))) => {
                // The others are dropped with the set, and their sockets.
                // Best effort: a socket that refuses it still carries bytes.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Some(Ok((addr, Err(e)))) => {
                tracing::debug!("connect {addr}: {e}");
                last = Some(e);
            }
            Some(Err(join)) => last = Some(io::Error::other(join)),
            // Every attempt has ended, and none is left to start.
            None => break,
        }
        if !more && attempts.is_empty() {
            break;
        }
    }
    Err(ConnectError::Unanswered {
        host: host.to_owned(),
        port,
        tried: addrs,
        last: last.unwrap_or_else(|| io::Error::other("no address tried")),
    })
}

/// How long an attempt has alone before the next address is tried beside
/// it (RFC 8305 recommends 250 ms).
pub const NEXT_ATTEMPT_AFTER: Duration = Duration::from_millis(250);

/// [`connect`] without a runtime, for rockd before it detaches: the
/// addresses in turn, each within `limit`, no race (rockd is given one
/// address, which needs no lookup and has no rival).
pub fn connect_blocking(
    host: &str,
    port: u16,
    family: AddressFamily,
    limit: Duration,
) -> Result<std::net::TcpStream, ConnectError> {
    let found = (host, port)
        .to_socket_addrs()
        .map_err(|error| ConnectError::Lookup {
            host: host.to_owned(),
            port,
            error,
        })?;
    let addrs = usable(host, port, found, family)?;
    let mut last = None;
    for &addr in &addrs {
        match std::net::TcpStream::connect_timeout(&addr, limit) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(ConnectError::Unanswered {
        host: host.to_owned(),
        port,
        tried: addrs,
        last: last.unwrap_or_else(|| io::Error::other("no address tried")),
    })
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[tokio::test]
    async fn the_first_address_that_answers_is_used() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let stream = connect(
            "localhost",
            port,
            AddressFamily::Inet,
            Some(Duration::from_secs(5)),
        )
        .await
        .expect("connected");
        assert!(stream.nodelay().expect("nodelay"));
        let blocking = connect_blocking(
            "127.0.0.1",
            port,
            AddressFamily::Any,
            Duration::from_secs(5),
        )
        .expect("connected without a runtime");
        assert!(blocking.nodelay().expect("nodelay"));
    }

    #[tokio::test]
    async fn a_refused_port_names_host_port_and_addresses_and_keeps_its_cause() {
        // Bound but not listening: connections are refused.
        let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = socket.local_addr().expect("address").port();
        drop(socket);
        let err = connect(
            "127.0.0.1",
            port,
            AddressFamily::Any,
            Some(Duration::from_secs(5)),
        )
        .await
        .expect_err("refused");
        let text = err.to_string();
        assert!(
            text.contains(&format!("127.0.0.1 port {port}")) && text.contains("tried 127.0.0.1:"),
            "{text}"
        );
        let cause = err.source().expect("the cause is kept").to_string();
        assert!(!text.contains(&cause), "the cause is not repeated: {text}");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        let io: io::Error = err.into();
        assert_eq!(io.kind(), io::ErrorKind::ConnectionRefused);
    }

    #[tokio::test]
    async fn a_name_without_an_address_of_the_family_is_refused_by_name() {
        let err = connect(
            "127.0.0.1",
            9,
            AddressFamily::Inet6,
            Some(Duration::from_secs(5)),
        )
        .await
        .expect_err("no IPv6 address");
        assert!(matches!(err, ConnectError::NoAddress { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "127.0.0.1 has no IPv6 address (AddressFamily, -4 or -6) to connect to port 9"
        );
        let err = connect_blocking("::1", 9, AddressFamily::Inet, Duration::from_secs(1))
            .expect_err("no IPv4 address");
        assert!(err.to_string().contains("::1 has no IPv4 address"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn each_address_gets_the_limit_and_no_more() {
        // A listener whose backlog is full and whose SYNs are dropped is
        // the kernel's own blackhole on loopback: connect() hangs.
        let socket = socket2_like_full_backlog();
        let port = socket.local_addr().expect("address").port();
        let started = tokio::time::Instant::now();
        let err = connect(
            "127.0.0.1",
            port,
            AddressFamily::Any,
            Some(Duration::from_secs(2)),
        )
        .await
        .expect_err("nothing answers");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(started.elapsed() >= Duration::from_secs(2));
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    /// Regression: with a name whose first address was dead, every
    /// reconnection waited out the connect limit (1.04 s) before trying
    /// the next. Now the next starts a quarter second later at most, and
    /// the address that worked last is tried first.
    #[tokio::test(start_paused = true)]
    async fn a_dead_first_address_costs_a_quarter_second_and_then_nothing() {
        let dead = socket2_like_full_backlog();
        let dead_addr = dead.local_addr().expect("address");
        let good = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let good_addr = good.local_addr().expect("address");
        let one_second = Duration::from_secs(1);
        let limit = Some(one_second);

        let started = tokio::time::Instant::now();
        let stream = race("h", 1, vec![dead_addr, good_addr], limit)
            .await
            .expect("the second address answers");
        assert_eq!(stream.peer_addr().expect("peer"), good_addr);
        let raced = started.elapsed();
        assert!(
            raced >= NEXT_ATTEMPT_AFTER && raced < one_second,
            "{raced:?}"
        );

        // Both dead: every address is tried, each within the limit, and the
        // error lists them.
        let err = race("h", 1, vec![dead_addr, dead_addr], limit)
            .await
            .expect_err("nothing answers");
        assert!(
            matches!(&err, ConnectError::Unanswered { tried, .. } if tried.len() == 2),
            "{err}"
        );
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);

        // A refusal does not wait for the quarter second.
        let refused = {
            let s = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            s.local_addr().expect("address")
        };
        let started = tokio::time::Instant::now();
        race("h", 1, vec![refused, good_addr], limit)
            .await
            .expect("the second address answers");
        assert!(
            started.elapsed() < NEXT_ATTEMPT_AFTER,
            "{:?}",
            started.elapsed()
        );
    }

    /// The limit bounds the lookup too: a resolver that went silent with
    /// the network costs an attempt the limit, not the resolver's own
    /// timeouts (seconds per server, per retry).
    #[tokio::test(start_paused = true)]
    async fn the_limit_covers_the_lookup() {
        let limit = Duration::from_secs(1);
        let started = tokio::time::Instant::now();
        let err = connect_after(
            std::future::pending(),
            "silent.test",
            22,
            AddressFamily::Any,
            Some(limit),
            None,
        )
        .await
        .expect_err("the lookup never ends");
        assert_eq!(started.elapsed(), limit);
        assert!(
            matches!(err, ConnectError::LookupTimedOut { .. }),
            "{err:?}"
        );
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(
            err.to_string(),
            "looking up silent.test (to connect to port 22) took longer than 1s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_address_that_answered_last_goes_first() {
        let good = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = good.local_addr().expect("address").port();
        // "localhost" may also have ::1, where nothing listens on that port;
        // preferring 127.0.0.1 must reach it without any wait.
        let preferred = Some(SocketAddr::from(([127, 0, 0, 1], port)));
        let started = tokio::time::Instant::now();
        let stream = connect_preferring(
            "localhost",
            port,
            AddressFamily::Any,
            Some(Duration::from_secs(1)),
            preferred,
        )
        .await
        .expect("connected");
        assert_eq!(stream.peer_addr().ok(), preferred);
        assert!(started.elapsed() < NEXT_ATTEMPT_AFTER);
    }

    /// A listening socket with a backlog of 0 that already holds a
    /// connection, so new SYNs are dropped and connects hang.
    fn socket2_like_full_backlog() -> std::net::TcpListener {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        // SAFETY: listen(2) on a descriptor the listener owns.
        unsafe {
            use std::os::fd::AsRawFd;
            libc::listen(listener.as_raw_fd(), 0);
        }
        let addr = listener.local_addr().expect("address");
        let mut held = Vec::new();
        // Fill the accept queue (never accepted) until a connect would hang.
        for _ in 0..4 {
            if let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                held.push(s);
            }
        }
        std::mem::forget(held);
        listener
    }
}
