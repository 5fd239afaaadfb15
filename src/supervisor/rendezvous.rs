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
//! connect as ordinary ones. A PROBE gets one answer, then the connection
//! closes; an OPEN that succeeds makes the connection the first link of a
//! rock (`super::rocks`) to the program's listener, which the supervisor
//! connects to over loopback; a link that resumes a rock is handed to it
//! by session id. A caller has [`QUESTION_WITHIN`] to ask and
//! be answered; at most [`MAX_PENDING`] questions are open at once, and
//! [`MAX_PENDING_PER_ADDRESS`] from one address (a caller past either is
//! closed at once).
//!
//! The library hears of `listen`, not of `close`: a port whose listener
//! refuses the supervisor's connection is forgotten.
//!
//! A listener is only ever offered at the address it listens on: one bound
//! to 127.0.0.1 is no rock listener for a question that came in on another
//! address, so the rendezvous port never exposes a loopback-only server.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::path::PathBuf;

use rock_proto::SessionId;
use rock_proto::handshake::{
    CLIENT_HELLO_LEN, ClientHello, Reject, RejectReason, SUPPORTED_VERSIONS,
};
use rock_proto::kex::PublicKey;
use rock_proto::rendezvous::{self, Question, Reply};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UnixStream};

use super::carried::{self, Carried, Ends, Entry};
use super::handover;
use super::messages::{ReadError, read_message};
use super::rocks::Rocks;
use crate::relay::{BoxLink, Prefixed};

/// How often a rendezvous port held by another process is tried again.
pub const RETRY_BIND: Duration = Duration::from_secs(2);
/// How long a caller has to ask its question.
pub const QUESTION_WITHIN: Duration = Duration::from_secs(2);
/// The most questions answered at once.
pub const MAX_PENDING: usize = 256;
/// The most questions answered at once from one address.
pub const MAX_PENDING_PER_ADDRESS: usize = 16;

/// The command's TCP listeners: the addresses each port listens on.
#[derive(Debug, Default)]
pub struct Listeners {
    ports: Mutex<BTreeMap<u16, Vec<IpAddr>>>,
}

impl Listeners {
    /// Registers a listener at `addr`; whether it is new.
    pub fn register(&self, addr: SocketAddr) -> bool {
        let Ok(mut ports) = self.ports.lock() else {
            return false;
        };
        let ips = ports.entry(addr.port()).or_default();
        let ip = addr.ip().to_canonical();
        if ips.contains(&ip) {
            return false;
        }
        ips.push(ip);
        true
    }

    /// Forgets every listener on `port` (the program closed them).
    pub fn forget(&self, port: u16) {
        if let Ok(mut ports) = self.ports.lock() {
            ports.remove(&port);
        }
    }

    /// Where the supervisor connects to reach the command's listener on
    /// `port` for a question that arrived at address `arrived`: `None` if
    /// no listener of the command takes connections there.
    pub fn reachable(&self, port: u16, arrived: IpAddr) -> Option<SocketAddr> {
        let arrived = arrived.to_canonical();
        let ports = self.ports.lock().ok()?;
        let ips = ports.get(&port)?;
        let to = |ip: IpAddr| Some(SocketAddr::new(ip, port));
        for &ip in ips {
            match ip {
                // 0.0.0.0 takes IPv4; [::] takes both (unless V6ONLY,
                // which the kernel then refuses, and the OPEN says so).
                IpAddr::V4(v4) if v4.is_unspecified() && arrived.is_ipv4() => {
                    return to(Ipv4Addr::LOCALHOST.into());
                }
                IpAddr::V6(v6) if v6.is_unspecified() => {
                    return match arrived {
                        IpAddr::V4(_) => to(Ipv4Addr::LOCALHOST.into()),
                        IpAddr::V6(_) => to(Ipv6Addr::LOCALHOST.into()),
                    };
                }
                ip if ip == arrived => return to(ip),
                _ => {}
            }
        }
        None
    }
}

/// The rendezvous port of this supervisor: the listeners it announces and
/// the port it answers on (0: none).
pub struct Rendezvous {
    listeners: Arc<Listeners>,
    carried: Arc<Carried>,
    rocks: Arc<Rocks>,
    port: u16,
    session: PathBuf,
    started: std::sync::Once,
}

impl Rendezvous {
    /// A rendezvous on `port` (0: the rendezvous is off), not bound yet;
    /// the connections it opens go into `carried` and become `rocks`; its
    /// hand-over socket lives in `session`, the supervisor's session
    /// directory.
    pub fn new(
        port: u16,
        carried: Arc<Carried>,
        rocks: Arc<Rocks>,
        session: PathBuf,
    ) -> Rendezvous {
        Rendezvous {
            listeners: Arc::new(Listeners::default()),
            carried,
            rocks,
            port,
            session,
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
            let state = State {
                port: self.port,
                listeners: self.listeners.clone(),
                carried: self.carried.clone(),
                rocks: self.rocks.clone(),
                session: self.session.clone(),
            };
            self.started.call_once(|| {
                tokio::spawn(handover::serve(state.clone()));
                tokio::spawn(run(state));
            });
        }
    }
}

/// What the rendezvous port's tasks work with.
#[derive(Clone)]
pub(super) struct State {
    /// The rendezvous port.
    pub(super) port: u16,
    listeners: Arc<Listeners>,
    carried: Arc<Carried>,
    /// The rocks this supervisor serves.
    pub(super) rocks: Arc<Rocks>,
    /// This supervisor's session directory (its hand-over socket).
    pub(super) session: PathBuf,
}

/// Binds the rendezvous port (retrying while it is taken) and answers on
/// it until the task is dropped.
async fn run(state: State) {
    let port = state.port;
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
    let pending = Arc::new(Pending::default());
    loop {
        match listener.accept().await {
            Ok((stream, from)) => {
                let Some(place) = pending.enter(from.ip()) else {
                    // Closed at once: too many questions open, from this
                    // address or in all.
                    tracing::debug!("rendezvous port {port}: {from} turned away: too many open");
                    continue;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    let answered =
                        tokio::time::timeout(QUESTION_WITHIN, answer(stream, from, &state)).await;
                    // A rock or a pipe does not hold a place among the
                    // questions.
                    drop(place);
                    match answered {
                        Ok(Next::Rock(rock)) => rock.run(&state).await,
                        Ok(Next::Piped(link, other)) => carried::relay(link, other).await,
                        Ok(Next::Done) | Err(_) => {}
                    }
                });
            }
            Err(e) => {
                tracing::debug!("rendezvous port {port}: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The questions being answered: at most [`MAX_PENDING`] in all and
/// [`MAX_PENDING_PER_ADDRESS`] from one address, so that callers that say
/// nothing, from one address, cannot keep everyone else's questions out.
#[derive(Debug, Default)]
struct Pending {
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One open question's place, given back when dropped.
struct Place {
    pending: Arc<Pending>,
    from: IpAddr,
}

impl Pending {
    /// A place for a question from `from`, if there is one.
    fn enter(self: &Arc<Self>, from: IpAddr) -> Option<Place> {
        let from = from.to_canonical();
        let mut open = self.open.lock().ok()?;
        let (total, by_address) = &mut *open;
        let mine = by_address.entry(from).or_default();
        if *total >= MAX_PENDING || *mine >= MAX_PENDING_PER_ADDRESS {
            if *mine == 0 {
                by_address.remove(&from);
            }
            return None;
        }
        *mine += 1;
        *total += 1;
        Some(Place {
            pending: self.clone(),
            from,
        })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if let Ok(mut open) = self.pending.open.lock() {
            let (total, by_address) = &mut *open;
            *total = total.saturating_sub(1);
            if let Some(mine) = by_address.get_mut(&self.from) {
                *mine -= 1;
                if *mine == 0 {
                    by_address.remove(&self.from);
                }
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

/// Reads the rest of one rendezvous question from `stream`, whose first
/// bytes are `have`; `None` for anything else (said in the log, as coming
/// from `from`).
pub(super) async fn read_question<S: AsyncRead + Unpin>(
    stream: &mut S,
    have: Vec<u8>,
    port: u16,
    from: SocketAddr,
) -> Option<Question> {
    let parsed = match read_message(stream, have).await {
        Ok(bytes) => Question::parse(&bytes).map_err(ReadError::Invalid),
        Err(e) => Err(e),
    };
    parsed
        .inspect_err(|e| tracing::debug!("rendezvous port {port}: {from} sent something else: {e}"))
        .ok()
}

/// Reads the rest of a resuming link's ClientHello, whose first bytes are
/// `have`: the whole hello's bytes and the session it names.
pub(super) async fn read_hello<S: AsyncRead + Unpin>(
    stream: &mut S,
    mut have: Vec<u8>,
) -> Option<(Vec<u8>, SessionId)> {
    let at = have.len();
    if at > CLIENT_HELLO_LEN {
        return None;
    }
    have.resize(CLIENT_HELLO_LEN, 0);
    stream.read_exact(&mut have[at..]).await.ok()?;
    let hello = ClientHello::decode(&have).ok()??;
    Some((have, hello.session))
}

/// What this supervisor's own listeners make of a question.
pub(super) enum Decision {
    /// The answer to a PROBE.
    Probe(bool),
    /// An OPEN: connected to the program's listener.
    Opened(TcpStream, Entry),
    /// An OPEN this supervisor cannot serve.
    Refused,
}

/// Decides `question` from the rock client at `from`, which arrived at
/// address `arrived`, with this supervisor's own listeners.
pub(super) async fn decide(
    state: &State,
    question: Question,
    from: SocketAddr,
    arrived: IpAddr,
) -> Decision {
    let port = state.port;
    match question {
        Question::Probe(asked) => {
            let rock = state.listeners.reachable(asked, arrived).is_some();
            tracing::debug!("rendezvous port {port}: {from} asks about port {asked}: {rock}");
            Decision::Probe(rock)
        }
        Question::Open { port: asked, .. } => {
            let Some(target) = state.listeners.reachable(asked, arrived) else {
                return Decision::Refused;
            };
            let ends = Ends {
                peer: from,
                local: SocketAddr::new(arrived.to_canonical(), asked),
            };
            match open(target, ends, &state.carried).await {
                Ok((program, entry)) => {
                    tracing::debug!(
                        "rendezvous port {port}: open {asked} from {from}: relaying through {}",
                        program
                            .local_addr()
                            .map_or("?".to_owned(), |a| a.to_string())
                    );
                    Decision::Opened(program, entry)
                }
                Err(e) => {
                    if e.kind() == std::io::ErrorKind::ConnectionRefused {
                        // The library hears of listen, not of close.
                        tracing::debug!("rendezvous port {port}: port {asked} refused: forgotten");
                        state.listeners.forget(asked);
                    }
                    Decision::Refused
                }
            }
        }
    }
}

/// What follows a question once it is answered.
enum Next {
    /// Nothing: a PROBE answered, a refusal, a resume handed to its rock,
    /// or bytes that were not a question.
    Done,
    /// An OPEN this supervisor's own listener took: a rock to run.
    Rock(NewRock),
    /// An OPEN or a resume another supervisor of this host took: its bytes
    /// are piped between the rock client and that supervisor.
    Piped(TcpStream, UnixStream),
}

/// An OPEN this supervisor's listener took, not yet answered.
pub(super) struct NewRock {
    /// The connection the OPEN came on: the rock's first link.
    pub(super) link: BoxLink,
    /// The supervisor's connection to the program's listener.
    pub(super) program: TcpStream,
    /// The program's view of that connection, recorded.
    pub(super) entry: Entry,
    /// The rock client.
    pub(super) from: SocketAddr,
    /// The listener's port the OPEN asked for.
    pub(super) port: u16,
    /// The rock client's key share.
    pub(super) key: PublicKey,
}

impl NewRock {
    /// Answers the OPEN and runs the rock until it ends.
    pub(super) async fn run(self, state: &State) {
        let rocks = state.rocks.clone();
        rocks
            .serve(
                self.link,
                self.program,
                self.entry,
                self.from,
                self.port,
                self.key,
            )
            .await;
    }
}

/// Reads one question (or a resuming link's hello) from `stream` and
/// answers it. What this supervisor's listeners and rocks cannot serve is
/// asked of the other supervisors of this user on this host with the same
/// rendezvous port.
async fn answer(mut stream: TcpStream, from: SocketAddr, state: &State) -> Next {
    let from = SocketAddr::new(from.ip().to_canonical(), from.port());
    let Ok(arrived) = stream.local_addr().map(|a| a.ip().to_canonical()) else {
        return Next::Done;
    };
    // "RK" begins a question, "RO" a resuming link's hello.
    let mut first = [0u8; 2];
    if stream.read_exact(&mut first).await.is_err() {
        return Next::Done;
    }
    if rendezvous::is_link(&first) {
        return resume(stream, first.to_vec(), from, arrived, state).await;
    }
    let Some(question) = read_question(&mut stream, first.to_vec(), state.port, from).await else {
        return Next::Done;
    };
    let reply = match decide(state, question, from, arrived).await {
        Decision::Probe(true) => Reply::Probe { rock: true },
        Decision::Opened(program, entry) => {
            let Question::Open { port, key } = question else {
                return Next::Done;
            };
            return Next::Rock(NewRock {
                link: Box::new(stream),
                program,
                entry,
                from,
                port,
                key,
            });
        }
        Decision::Probe(false) | Decision::Refused => {
            match handover::forward(state, question, from, arrived).await {
                Some(handover::Forwarded::Reply(reply)) => reply,
                Some(handover::Forwarded::Opened(reply, other)) => {
                    if stream.write_all(&reply).await.is_err() {
                        return Next::Done;
                    }
                    return Next::Piped(stream, other);
                }
                None => match question {
                    Question::Probe(_) => Reply::Probe { rock: false },
                    Question::Open { port: asked, .. } => {
                        tracing::debug!(
                            "rendezvous port {}: open {asked} from {from}: refused",
                            state.port
                        );
                        Reply::Open(None)
                    }
                },
            }
        }
    };
    let _ = stream.write_all(&reply.encode()).await;
    Next::Done
}

/// A link that resumes a rock: handed to the rock, here or at another
/// supervisor of this host; refused as the engine refuses an unknown
/// session when none serves it.
async fn resume(
    mut stream: TcpStream,
    have: Vec<u8>,
    from: SocketAddr,
    arrived: IpAddr,
    state: &State,
) -> Next {
    let Some((hello, id)) = read_hello(&mut stream, have).await else {
        tracing::debug!("rendezvous port {}: {from} sent a broken hello", state.port);
        return Next::Done;
    };
    if state.rocks.serves(&id) {
        tracing::debug!("rock {id}: a link from {from}");
        state
            .rocks
            .hand(&id, Box::new(Prefixed::new(hello, stream)));
        return Next::Done;
    }
    if let Some(other) = handover::forward_link(state, &hello, from, arrived).await {
        return Next::Piped(stream, other);
    }
    tracing::debug!(
        "rendezvous port {}: {from} resumes rock {id}, unknown here",
        state.port
    );
    let reject = Reject {
        reason: RejectReason::UnknownSession,
        versions: SUPPORTED_VERSIONS,
    };
    let _ = stream.write_all(&reject.encode()).await;
    Next::Done
}

/// Connects to the program's listener at `target` for a rock client,
/// recording the connection as carried with its real `ends` before the
/// program can accept it.
async fn open(
    target: SocketAddr,
    ends: Ends,
    carried: &Arc<Carried>,
) -> std::io::Result<(TcpStream, Entry)> {
    let socket = match target {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }?;
    // From loopback, so that the program's accept sees a loopback peer
    // and its library asks who it really is.
    let from = match target {
        SocketAddr::V4(_) => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0),
        SocketAddr::V6(_) => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 0),
    };
    socket.bind(from)?;
    let entry = carried.insert(socket.local_addr()?, ends);
    let stream = socket.connect(target).await?;
    Ok((stream, entry))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::peers::{Finding, probe};

    fn rocks() -> Arc<Rocks> {
        Arc::new(Rocks::new("test", Default::default(), Default::default()))
    }

    /// The first probe of `port` at `at` that is not refused: the
    /// rendezvous port is bound by a task of its own, a moment after the
    /// first listener registers.
    async fn once_bound(at: SocketAddr, port: u16) -> Finding {
        let mut finding = Finding::Refused;
        for _ in 0..100 {
            finding = probe(at, port).await;
            if finding != Finding::Refused {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        finding
    }

    fn free_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("address").port()
    }

    #[tokio::test]
    async fn the_first_listener_opens_the_rendezvous_which_answers_for_its_ports() {
        let port = free_port();
        let rendezvous = Rendezvous::new(port, Arc::default(), rocks(), std::env::temp_dir());
        let at: SocketAddr = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port);
        // Real listeners: the rendezvous checks the kernel's tables.
        let v4 = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
        let a = v4.local_addr().expect("address").port();
        let v6 = std::net::TcpListener::bind("[::]:0").ok();
        let b = v6.as_ref().map(|l| l.local_addr().expect("address").port());
        assert_eq!(
            probe(at, a).await,
            Finding::Refused,
            "not before a listener"
        );
        rendezvous.register(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), a));
        if let Some(b) = b {
            rendezvous.register(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), b));
        }
        assert_eq!(once_bound(at, a).await, Finding::Rock);
        assert_eq!(probe(at, free_port()).await, Finding::NotRock);
        if let Some(b) = b {
            // [::] takes both families; 0.0.0.0 only IPv4.
            assert_eq!(probe(at, b).await, Finding::Rock);
            let v6at = SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port);
            assert_eq!(probe(v6at, b).await, Finding::Rock);
            assert_eq!(
                probe(v6at, a).await,
                Finding::NotRock,
                "0.0.0.0 is IPv4 only"
            );
        }
        // Nonsense ends its own connection only.
        let mut s = TcpStream::connect(at).await.expect("connect");
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.expect("write");
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
        assert!(rest.is_empty());
        assert_eq!(probe(at, a).await, Finding::Rock);
        // A listener the program closed refuses the OPEN, and is no
        // longer offered.
        drop(v4);
        assert!(crate::supervisor::peers::open(at, a).await.is_none());
        assert_eq!(probe(at, a).await, Finding::NotRock);
    }

    #[tokio::test]
    async fn callers_that_never_ask_hold_places_of_their_own_address_only() {
        let port = free_port();
        let rendezvous = Rendezvous::new(port, Arc::default(), rocks(), std::env::temp_dir());
        let at: SocketAddr = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port);
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = l.local_addr().expect("address").port();
        rendezvous.register(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), a));
        assert_eq!(once_bound(at, a).await, Finding::Rock);
        // More silent callers from 127.0.0.1 than it may hold places...
        let mut silent = Vec::new();
        for _ in 0..MAX_PENDING_PER_ADDRESS + 8 {
            silent.push(TcpStream::connect(at).await.expect("connect"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // ...keep its own further questions out (turned away at once)...
        assert_eq!(probe(at, a).await, Finding::Other);
        // ...but not another address's.
        let other = IpAddr::from(Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(probe_from(other, at, a).await, Some(true));
        // Once QUESTION_WITHIN has passed, the silent ones are gone.
        tokio::time::sleep(QUESTION_WITHIN + Duration::from_millis(300)).await;
        assert_eq!(probe(at, a).await, Finding::Rock);
        drop(silent);
    }

    /// A PROBE for `asked` at `at`, from source address `from`.
    async fn probe_from(from: IpAddr, at: SocketAddr, asked: u16) -> Option<bool> {
        let socket = TcpSocket::new_v4().ok()?;
        socket.bind(SocketAddr::new(from, 0)).ok()?;
        let mut stream = socket.connect(at).await.ok()?;
        stream
            .write_all(&Question::Probe(asked).encode())
            .await
            .ok()?;
        let bytes = read_message(&mut stream, Vec::new()).await.ok()?;
        match Reply::parse(&bytes).ok()? {
            Reply::Probe { rock } => Some(rock),
            Reply::Open(_) => None,
        }
    }

    #[test]
    fn no_rendezvous_when_the_port_is_zero() {
        // Registering needs no runtime when nothing is to be started.
        let rendezvous = Rendezvous::new(0, Arc::default(), rocks(), std::env::temp_dir());
        rendezvous.register("0.0.0.0:8080".parse().expect("an address"));
        let here = IpAddr::from(Ipv4Addr::LOCALHOST);
        assert!(rendezvous.listeners.reachable(8080, here).is_some());
    }

    #[test]
    fn a_listener_is_offered_only_where_it_listens() {
        let l = Listeners::default();
        let (lo, out): (IpAddr, IpAddr) = (
            "127.0.0.1".parse().expect("an address"),
            "192.0.2.9".parse().expect("an address"),
        );
        let v6: IpAddr = "2001:db8::9".parse().expect("an address");
        l.register("127.0.0.1:6379".parse().expect("an address"));
        assert_eq!(
            l.reachable(6379, lo),
            Some("127.0.0.1:6379".parse().expect("an address"))
        );
        assert_eq!(l.reachable(6379, out), None, "loopback-only stays so");
        assert_eq!(l.reachable(6380, lo), None);
        l.register("0.0.0.0:80".parse().expect("an address"));
        assert_eq!(
            l.reachable(80, out),
            Some("127.0.0.1:80".parse().expect("an address"))
        );
        assert_eq!(l.reachable(80, v6), None);
        l.register("[::]:443".parse().expect("an address"));
        assert_eq!(
            l.reachable(443, v6),
            Some("[::1]:443".parse().expect("an address"))
        );
        let mapped: IpAddr = "::ffff:192.0.2.9".parse().expect("an address");
        assert_eq!(
            l.reachable(443, mapped),
            Some("127.0.0.1:443".parse().expect("an address"))
        );
        l.register("192.0.2.9:22".parse().expect("an address"));
        assert_eq!(
            l.reachable(22, mapped),
            Some("192.0.2.9:22".parse().expect("an address"))
        );
    }
}
