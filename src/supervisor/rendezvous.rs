//! The server side of the rendezvous port (`rock_port`): the ports the
//! command listens on (registered by the library's `listen`), and the
//! rendezvous port itself, bound once the command has a listener, where
//! rock clients' supervisors ask whether a port of this host is a rock
//! listener (`rock_proto::rendezvous`).
//!
//! The port is bound on every address (IPv6 and IPv4) when the first
//! listener registers; while another process holds it (another rock
//! supervisor on this host), it is tried again every [`RETRY_BIND`], and
//! this command's listeners stay unannounced meanwhile — its clients then
//! connect as ordinary ones. Each question gets one answer, then the
//! connection closes; a caller has [`QUESTION_WITHIN`] to ask, and at most
//! [`MAX_PENDING`] questions are open at once.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rock_proto::rendezvous::{self, LEN, Question, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Semaphore;

/// How often a rendezvous port held by another process is tried again.
pub const RETRY_BIND: Duration = Duration::from_secs(2);
/// How long a caller has to ask its question.
pub const QUESTION_WITHIN: Duration = Duration::from_secs(2);
/// The most questions answered at once.
pub const MAX_PENDING: usize = 64;

/// The command's TCP listeners, by port.
#[derive(Debug, Default)]
pub struct Listeners {
    ports: Mutex<BTreeSet<u16>>,
}

impl Listeners {
    /// Registers a listener at `addr`; whether its port is new.
    pub fn register(&self, addr: SocketAddr) -> bool {
        self.ports
            .lock()
            .map(|mut ports| ports.insert(addr.port()))
            .unwrap_or(false)
    }

    /// Whether the command listens on `port`.
    pub fn has(&self, port: u16) -> bool {
        self.ports
            .lock()
            .map(|p| p.contains(&port))
            .unwrap_or(false)
    }
}

/// The rendezvous port of this supervisor: the listeners it announces and
/// the port it answers on (0: none).
pub struct Rendezvous {
    listeners: Arc<Listeners>,
    port: u16,
    started: std::sync::Once,
}

impl Rendezvous {
    /// A rendezvous on `port` (0: the rendezvous is off), not bound yet.
    pub fn new(port: u16) -> Rendezvous {
        Rendezvous {
            listeners: Arc::new(Listeners::default()),
            port,
            started: std::sync::Once::new(),
        }
    }

    /// Registers the command's listener at `addr`; the first one starts
    /// the rendezvous port. Must be called within the runtime.
    pub fn register(&self, addr: SocketAddr) {
        if self.listeners.register(addr) {
            tracing::debug!("listen {addr}: registered");
        }
        if self.port != 0 {
            let (listeners, port) = (self.listeners.clone(), self.port);
            self.started.call_once(|| {
                tokio::spawn(run(port, listeners));
            });
        }
    }
}

/// Binds the rendezvous port (retrying while it is taken) and answers on
/// it until the task is dropped.
async fn run(port: u16, listeners: Arc<Listeners>) {
    let mut said = false;
    let listener = loop {
        match bind(port) {
            Ok(listener) => break listener,
            Err(e) => {
                if !said {
                    tracing::info!(
                        "rendezvous port {port}: cannot listen ({e}); this command's \
                         listeners are not announced to rock clients until it is free \
                         (another rock on this host may hold it)"
                    );
                    said = true;
                }
                tokio::time::sleep(RETRY_BIND).await;
            }
        }
    };
    tracing::info!("rendezvous port {port}: listening");
    let pending = Arc::new(Semaphore::new(MAX_PENDING));
    loop {
        let Ok(permit) = pending.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, from)) => {
                let listeners = listeners.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let _ = tokio::time::timeout(
                        QUESTION_WITHIN,
                        answer(stream, from, port, &listeners),
                    )
                    .await;
                });
            }
            Err(e) => {
                tracing::debug!("rendezvous port {port}: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// A listener on `port` of every address: IPv6 and IPv4 together where
/// the host has IPv6, else IPv4 alone.
fn bind(port: u16) -> std::io::Result<TcpListener> {
    let on = |addr: SocketAddr| -> std::io::Result<TcpListener> {
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(128)
    };
    match on(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port)) {
        Ok(listener) => Ok(listener),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(e),
        Err(_) => on(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port)),
    }
}

/// Reads one question from `stream` and answers it.
async fn answer(mut stream: TcpStream, from: SocketAddr, port: u16, listeners: &Listeners) {
    let mut buf = [0u8; LEN];
    let mut have = 0;
    while have < LEN {
        match stream.read(&mut buf[have..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => have += n,
        }
        if let Err(e) = rendezvous::check(&buf[..have]) {
            tracing::debug!("rendezvous port {port}: {from} sent something else: {e}");
            return;
        }
    }
    match Question::parse(&buf) {
        Ok(Question::Probe(asked)) => {
            let rock = listeners.has(asked);
            tracing::debug!("rendezvous port {port}: {from} asks about port {asked}: {rock}");
            let _ = stream.write_all(&Reply::Probe { rock }.encode()).await;
        }
        Err(e) => tracing::debug!("rendezvous port {port}: {from} sent something else: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::peers::{Finding, probe};

    fn free_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("address").port()
    }

    #[tokio::test]
    async fn the_first_listener_opens_the_rendezvous_which_answers_for_its_ports() {
        let port = free_port();
        let rendezvous = Rendezvous::new(port);
        let at: SocketAddr = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port);
        assert_eq!(
            probe(at, 8080).await,
            Finding::Refused,
            "not before a listener"
        );
        rendezvous.register("0.0.0.0:8080".parse().expect("an address"));
        rendezvous.register("[::]:8081".parse().expect("an address"));
        let mut finding = Finding::Refused;
        for _ in 0..100 {
            finding = probe(at, 8080).await;
            if finding != Finding::Refused {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(finding, Finding::Rock);
        assert_eq!(probe(at, 8081).await, Finding::Rock);
        assert_eq!(probe(at, 8082).await, Finding::NotRock);
        // Over IPv6 too, where the host has it.
        let v6 = SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port);
        if std::net::TcpListener::bind("[::1]:0").is_ok() {
            assert_eq!(probe(v6, 8080).await, Finding::Rock);
        }
        // Nonsense ends its own connection only.
        let mut s = TcpStream::connect(at).await.expect("connect");
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.expect("write");
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
        assert!(rest.is_empty());
        assert_eq!(probe(at, 8080).await, Finding::Rock);
    }

    #[test]
    fn no_rendezvous_when_the_port_is_zero() {
        // Registering needs no runtime when nothing is to be started.
        let rendezvous = Rendezvous::new(0);
        rendezvous.register("0.0.0.0:8080".parse().expect("an address"));
        assert!(rendezvous.listeners.has(8080));
    }
}
