//! Which destinations are rock servers: the client side of the rendezvous
//! port. Before the program's first connection to an address and port, the
//! supervisor asks that host's rendezvous port (`rock_port`) whether the
//! port is a rock listener, within [`PROBE_WITHIN`]; the finding is kept
//! ([`Cache`]: rock servers for [`ROCK_KEPT`], ordinary ones for
//! [`ORDINARY_KEPT`]) so that later connections wait for nothing.
//!
//! Not a single byte goes to the destination's own port: an ordinary
//! server never sees the probe. An ordinary host costs one round trip (its
//! rendezvous port refuses), a firewalled one [`PROBE_WITHIN`], once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rock_proto::kex::KeyShare;
use rock_proto::rendezvous::{Question, Reply};
use rock_proto::{Role, SessionId, SessionKey};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::messages::read_message;
use crate::settings::Profiles;

/// The longest an OPEN may take, connection included.
pub const OPEN_WITHIN: Duration = Duration::from_secs(2);
pub use crate::settings::resolve::DEFAULT_ROCK_PORT;
/// The longest a probe may take, connection included.
pub const PROBE_WITHIN: Duration = Duration::from_millis(250);
/// How long a rock server is remembered as one.
pub const ROCK_KEPT: Duration = Duration::from_secs(60);
/// How long an ordinary destination is remembered as one.
pub const ORDINARY_KEPT: Duration = Duration::from_secs(300);
/// The most destinations remembered at once.
const CACHE_MAX: usize = 4096;

/// What a probe found out about a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finding {
    /// Its host's rendezvous port says the port is a rock listener.
    Rock,
    /// Its host's rendezvous port says the port is not a rock listener.
    NotRock,
    /// Nothing listens at its host's rendezvous port.
    Refused,
    /// No answer within [`PROBE_WITHIN`] (a firewall that drops, a
    /// rendezvous port that stays silent).
    Silent,
    /// Something that is not a rendezvous port answered, or the probe
    /// failed otherwise.
    Other,
}

impl Finding {
    /// Whether the destination is a rock server.
    pub fn is_rock(self) -> bool {
        self == Finding::Rock
    }

    /// In words, for the log.
    pub fn describe(self) -> &'static str {
        match self {
            Finding::Rock => "a rock listener",
            Finding::NotRock => "not a rock listener, says its rendezvous port",
            Finding::Refused => "ordinary: its rendezvous port refused",
            Finding::Silent => "ordinary: its rendezvous port did not answer in time",
            Finding::Other => "ordinary: its rendezvous port does not speak rock",
        }
    }
}

/// Findings about destinations, each with when it stops counting. No I/O,
/// no clock: time comes in as `now`.
#[derive(Debug, Default)]
pub struct Cache {
    entries: HashMap<SocketAddr, (bool, Instant)>,
}

impl Cache {
    /// Whether `dest` is a rock server, if that is still known at `now`.
    pub fn get(&mut self, dest: SocketAddr, now: Instant) -> Option<bool> {
        match self.entries.get(&dest) {
            Some(&(rock, until)) if now < until => Some(rock),
            Some(_) => {
                self.entries.remove(&dest);
                None
            }
            None => None,
        }
    }

    /// Remembers what a probe of `dest` found at `now`.
    pub fn put(&mut self, dest: SocketAddr, rock: bool, now: Instant) {
        if self.entries.len() >= CACHE_MAX {
            self.entries.retain(|_, (_, until)| now < *until);
        }
        if self.entries.len() >= CACHE_MAX {
            // Still full of live entries: start again rather than grow.
            self.entries.clear();
        }
        let kept = if rock { ROCK_KEPT } else { ORDINARY_KEPT };
        self.entries.insert(dest, (rock, now + kept));
    }
}

/// Asks the rendezvous port at `rendezvous` whether `port` there is a rock
/// listener, within [`PROBE_WITHIN`].
pub async fn probe(rendezvous: SocketAddr, port: u16) -> Finding {
    match tokio::time::timeout(PROBE_WITHIN, ask(rendezvous, port)).await {
        Ok(finding) => finding,
        Err(_) => Finding::Silent,
    }
}

async fn ask(rendezvous: SocketAddr, port: u16) -> Finding {
    let mut stream = match TcpStream::connect(rendezvous).await {
        Ok(stream) => stream,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Finding::Refused,
        Err(_) => return Finding::Other,
    };
    if stream
        .write_all(&Question::Probe(port).encode())
        .await
        .is_err()
    {
        return Finding::Other;
    }
    let Ok(bytes) = read_message(&mut stream, Vec::new()).await else {
        return Finding::Other;
    };
    match Reply::parse(&bytes) {
        Ok(Reply::Probe { rock: true }) => Finding::Rock,
        Ok(Reply::Probe { rock: false }) => Finding::NotRock,
        Ok(Reply::Open(_)) | Err(_) => Finding::Other,
    }
}

/// A rock opened at a rendezvous port: the connection, which is to be its
/// first link, and the session both ends now share.
pub struct OpenedRock {
    /// The connection to the rendezvous port; the link handshake is next.
    pub link: TcpStream,
    /// The session id the server chose.
    pub session: SessionId,
    /// The key both ends derived.
    pub key: SessionKey,
}

/// Opens a rock to the rock listener at `port` through the rendezvous port
/// at `rendezvous`, within [`OPEN_WITHIN`], agreeing a fresh key
/// (`rock_proto::kex`). `None` when it refused or failed.
pub async fn open(rendezvous: SocketAddr, port: u16) -> Option<OpenedRock> {
    tokio::time::timeout(OPEN_WITHIN, open_now(rendezvous, port))
        .await
        .ok()
        .flatten()
}

async fn open_now(rendezvous: SocketAddr, port: u16) -> Option<OpenedRock> {
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).ok()?;
    let share = KeyShare::new(random);
    let mut stream = TcpStream::connect(rendezvous).await.ok()?;
    let _ = stream.set_nodelay(true);
    let question = Question::Open {
        port,
        key: share.public(),
    };
    stream.write_all(&question.encode()).await.ok()?;
    let bytes = read_message(&mut stream, Vec::new()).await.ok()?;
    let Ok(Reply::Open(Some(opened))) = Reply::parse(&bytes) else {
        return None;
    };
    let key = share
        .agree(Role::Client, &opened.key, &opened.session)
        .inspect_err(|e| tracing::warn!("rendezvous port {rendezvous}: {e}"))
        .ok()?;
    Some(OpenedRock {
        link: stream,
        session: opened.session,
        key,
    })
}

/// The client side: which rendezvous port each destination has, and what
/// is known about destinations.
pub struct Peers {
    profiles: Profiles,
    cache: Mutex<Cache>,
}

/// What the supervisor knows of a destination, and how it learnt it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// Probed just now, taking this long.
    Probed(Finding, Duration),
    /// Remembered from an earlier probe: a rock server or not.
    Cached(bool),
    /// Its profile turns the rendezvous off (`rock_port = 0`).
    Off,
}

impl Peers {
    /// Destinations' rendezvous ports come from `profiles`.
    pub fn new(profiles: Profiles) -> Peers {
        Peers {
            profiles,
            cache: Mutex::new(Cache::default()),
        }
    }

    /// The rendezvous port of `dest`'s host (0: none).
    pub fn rock_port(&self, dest: SocketAddr) -> u16 {
        self.profiles
            .for_host(&dest.ip().to_string())
            .rock_port
            .map_or(DEFAULT_ROCK_PORT, |p| p.value)
    }

    /// Whether `dest` is a rock server: from the cache, else probed (and
    /// then cached). Two connections to a new destination at once may
    /// both probe; the second finding is kept.
    pub async fn find(&self, dest: SocketAddr) -> Known {
        let rock_port = self.rock_port(dest);
        if rock_port == 0 {
            return Known::Off;
        }
        let cached = match self.cache.lock() {
            Ok(mut cache) => cache.get(dest, Instant::now()),
            Err(_) => None,
        };
        if let Some(rock) = cached {
            return Known::Cached(rock);
        }
        let start = Instant::now();
        let finding = probe(SocketAddr::new(dest.ip(), rock_port), dest.port()).await;
        let now = Instant::now();
        if let Ok(mut cache) = self.cache.lock() {
            cache.put(dest, finding.is_rock(), now);
        }
        Known::Probed(finding, now - start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn findings_are_kept_for_their_lifetime_then_forgotten() {
        let mut cache = Cache::default();
        let t0 = Instant::now();
        let (rock, plain) = (addr("192.0.2.1:6379"), addr("192.0.2.2:80"));
        assert_eq!(cache.get(rock, t0), None);
        cache.put(rock, true, t0);
        cache.put(plain, false, t0);
        assert_eq!(cache.get(rock, t0 + ROCK_KEPT / 2), Some(true));
        assert_eq!(cache.get(plain, t0 + ROCK_KEPT / 2), Some(false));
        // Another port of the same host is another question.
        assert_eq!(cache.get(addr("192.0.2.1:6380"), t0), None);
        assert_eq!(cache.get(rock, t0 + ROCK_KEPT), None);
        assert_eq!(cache.get(plain, t0 + ROCK_KEPT), Some(false));
        assert_eq!(cache.get(plain, t0 + ORDINARY_KEPT), None);
    }

    #[test]
    fn the_cache_never_grows_past_its_bound() {
        let mut cache = Cache::default();
        let t0 = Instant::now();
        for i in 0..(CACHE_MAX as u32 + 10) {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            cache.put(SocketAddr::new(ip.into(), 80), false, t0);
            assert!(cache.entries.len() <= CACHE_MAX);
        }
    }

    /// A rendezvous port of the test's own that answers `reply` (or
    /// nothing) to one question.
    async fn rendezvous_answering(reply: Option<&'static [u8]>) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let at = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut q = [0u8; rock_proto::rendezvous::HEAD];
            s.read_exact(&mut q).await.expect("a question");
            assert_eq!(Question::parse(&q), Ok(Question::Probe(6379)));
            match reply {
                Some(bytes) => s.write_all(bytes).await.expect("answer"),
                None => tokio::time::sleep(Duration::from_secs(5)).await,
            }
        });
        at
    }

    #[tokio::test]
    async fn probes_find_rock_listeners_ordinary_hosts_and_impostors() {
        let yes = Reply::Probe { rock: true }.encode();
        let no = Reply::Probe { rock: false }.encode();
        let at = rendezvous_answering(Some(yes.leak())).await;
        assert_eq!(probe(at, 6379).await, Finding::Rock);
        let at = rendezvous_answering(Some(no.leak())).await;
        assert_eq!(probe(at, 6379).await, Finding::NotRock);
        let at = rendezvous_answering(Some(b"HTTP/1.1 400 Bad Request\r\n")).await;
        assert_eq!(probe(at, 6379).await, Finding::Other);
        let at = rendezvous_answering(Some(b"RKRV\x02")).await;
        assert_eq!(probe(at, 6379).await, Finding::Other, "cut short");
        let start = Instant::now();
        let at = rendezvous_answering(None).await;
        assert_eq!(probe(at, 6379).await, Finding::Silent);
        let took = start.elapsed();
        assert!(took >= PROBE_WITHIN && took < PROBE_WITHIN * 3, "{took:?}");
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let at = closed.local_addr().expect("address");
        drop(closed);
        assert_eq!(probe(at, 6379).await, Finding::Refused);
    }
}
