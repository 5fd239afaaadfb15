//! The rocks a supervisor runs: each connection between a rock client and a
//! rock server is one session of the protocol engine, driven by the same
//! relay as `rock -d` (`crate::relay`), between the program's loopback
//! connection to the supervisor and links to the peer's rendezvous port.
//!
//! * Client: the rock is opened at the server's rendezvous port with a
//!   fresh key (`super::peers::open`); that connection is its first link,
//!   and every later link is dialled to the same rendezvous port (to
//!   127.0.0.1's with `-l`), where the engine's authenticated resume finds
//!   the session again.
//! * Server: an OPEN that reached the program's listener becomes a rock
//!   here ([`Rocks::serve`]); links that resume it arrive at the rendezvous
//!   port, which hands them over by session id ([`Rocks::hand`]). The
//!   server program never has to call `accept` again.
//!
//! Each running rock is a row of `rock status` ([`Rocks::reports`]).
//!
//! Every rock ends with its session: both programs' streams finished and
//! delivered, or a close (the peer's, the suspension timeout, or the
//! supervisor's own when told to stop).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rock_proto::kex::{KeyShare, PublicKey};
use rock_proto::rendezvous::{Opened, Reply};
use rock_proto::{Role, Session, SessionId};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::carried::Entry;
use crate::relay::{
    BoxLink, DialFuture, Dialer, Outcome, Relay, RelayOptions, StatusWatch, TcpDialer,
};
use crate::settings::{CommandLine, Profiles, Settings};
use crate::status::{Report, SessionInfo};

/// Links waiting for a rock's relay to take them, at most.
const PENDING_LINKS: usize = 8;
/// How long a server-side rock waits for its first link's handshake.
const FIRST_LINK_WITHIN: Duration = Duration::from_secs(30);
/// How long one redial of a rendezvous port may take.
const DIAL_WITHIN: Duration = Duration::from_secs(5);

/// The supervisor's rocks.
pub struct Rocks {
    /// What `rock status` shows of each running rock, by a number of its
    /// own.
    rows: Mutex<BTreeMap<u64, (SessionInfo, StatusWatch)>>,
    next_row: AtomicU64,
    /// The command's name, for `rock status`.
    program: String,
    /// Where each running rock hears of holds ([`Rocks::hold`]), by row.
    holds: Mutex<HashMap<u64, mpsc::UnboundedSender<std::time::Instant>>>,
    /// Started with `-k`: `rock checkpoint` may dump the supervisor.
    checkpointable: bool,
    /// The supervisor's session directory; while it holds
    /// [`crate::rundir::LOCALHOST_FLAG`], rocks redial 127.0.0.1 (set by
    /// `rock restore -l`).
    session_dir: Option<std::path::PathBuf>,
    /// Server side: the rocks links can be handed to, by session id.
    serving: Mutex<HashMap<SessionId, mpsc::Sender<BoxLink>>>,
    /// How many rocks are running, client and server; 0 when idle.
    running: watch::Sender<usize>,
    /// Set when the supervisor stops: every rock closes (aborted).
    stop: watch::Sender<bool>,
    profiles: Profiles,
    cli: CommandLine,
}

/// A rock's row in `rock status`, removed when dropped.
struct Row<'a> {
    rocks: &'a Rocks,
    number: u64,
}

impl Drop for Row<'_> {
    fn drop(&mut self) {
        if let Ok(mut rows) = self.rocks.rows.lock() {
            rows.remove(&self.number);
        }
        if let Ok(mut holds) = self.rocks.holds.lock() {
            holds.remove(&self.number);
        }
    }
}

/// Counts a rock as running until dropped.
struct Running(watch::Sender<usize>);

impl Running {
    fn new(count: &watch::Sender<usize>) -> Running {
        count.send_modify(|n| *n += 1);
        Running(count.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

fn random<const N: usize>() -> Option<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .inspect_err(|e| tracing::warn!("no random bytes for a rock: {e}"))
        .ok()?;
    Some(bytes)
}

impl Rocks {
    /// Rocks of the command `program` whose engine settings come from
    /// `profiles` and the command line (`-l`, `--suspend-timeout`).
    pub fn new(program: &str, profiles: Profiles, cli: CommandLine) -> Rocks {
        Rocks {
            rows: Mutex::default(),
            next_row: AtomicU64::new(0),
            program: program.to_owned(),
            holds: Mutex::default(),
            checkpointable: false,
            session_dir: None,
            serving: Mutex::default(),
            running: watch::Sender::new(0),
            stop: watch::Sender::new(false),
            profiles,
            cli,
        }
    }

    /// The settings for a rock with `peer` (profiles match the
    /// peer's address as written), or `None` when the profile is invalid.
    fn settings(&self, peer: SocketAddr) -> Option<Settings> {
        Settings::resolve(&self.profiles, &peer.ip().to_string(), &self.cli)
            .inspect_err(|e| tracing::warn!("{e}"))
            .ok()
    }

    /// The same, checkpointable (`rock -k`), its session directory being
    /// `session_dir`.
    pub fn checkpointable(mut self, session_dir: std::path::PathBuf) -> Rocks {
        self.checkpointable = true;
        self.session_dir = Some(session_dir);
        self
    }

    /// Shows a running rock in `rock status` (peer as `peer`) until the
    /// returned row is dropped; its relay hears of holds through the
    /// receiver returned.
    fn show(
        &self,
        peer: &str,
        status: StatusWatch,
    ) -> (Row<'_>, mpsc::UnboundedReceiver<std::time::Instant>) {
        let number = self.next_row.fetch_add(1, Ordering::Relaxed);
        let info = SessionInfo {
            checkpointable: self.checkpointable,
            ..SessionInfo::new(&self.program, peer)
        };
        if let Ok(mut rows) = self.rows.lock() {
            rows.insert(number, (info, status));
        }
        let (tell, hear) = mpsc::unbounded_channel();
        if let Ok(mut holds) = self.holds.lock() {
            holds.insert(number, tell);
        }
        (
            Row {
                rocks: self,
                number,
            },
            hear,
        )
    }

    /// Holds every rock's links off for `length`: each lets its link go at
    /// once and makes or takes none before that time (for a checkpoint,
    /// which must find no connection to a peer).
    pub fn hold(&self, length: Duration) {
        let until = tokio::time::Instant::now().into_std() + length;
        if let Ok(holds) = self.holds.lock() {
            for tell in holds.values() {
                let _ = tell.send(until);
            }
        }
    }

    /// Every running rock's report for `rock status`, oldest first, each
    /// followed by an empty line (`crate::status`).
    pub fn reports(&self) -> String {
        let now = tokio::time::Instant::now().into_std();
        let Ok(rows) = self.rows.lock() else {
            return String::new();
        };
        rows.values()
            .map(|(info, status)| {
                let status = status.borrow().clone();
                Report::new(info, Some(&status), now).encode() + "\n"
            })
            .collect()
    }

    /// How many rocks are running.
    pub fn running(&self) -> usize {
        *self.running.borrow()
    }

    /// Waits until no rock runs.
    pub async fn idle(&self) {
        let mut count = self.running.subscribe();
        let _ = count.wait_for(|n| *n == 0).await;
    }

    /// Closes every rock (each tells its peer when a link is up).
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Completes when the supervisor stops.
    fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stop = self.stop.subscribe();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    }

    /// Client: runs the rock `opened` (to `dest`, through the rendezvous
    /// port at `rendezvous`) for the program's connection `program`, until
    /// it ends.
    pub async fn run_client<A>(
        self: Arc<Self>,
        program: A,
        opened: super::peers::OpenedRock,
        dest: SocketAddr,
        rendezvous: SocketAddr,
    ) where
        A: AsyncRead + AsyncWrite + Unpin,
    {
        let _running = Running::new(&self.running);
        let Some(settings) = self.settings(dest) else {
            return;
        };
        let session = match Session::new(
            Role::Client,
            opened.session,
            opened.key,
            settings.engine(),
            tokio::time::Instant::now().into_std(),
        ) {
            Ok(session) => session,
            Err(e) => {
                tracing::warn!("rock to {dest}: {e}");
                return;
            }
        };
        // `-l`, or the profile's `reconnect_to_localhost`.
        let redial_to = if settings.reconnect_to_localhost.value {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), rendezvous.port())
        } else {
            rendezvous
        };
        let mut redial = TcpDialer::new(redial_to.ip().to_string(), redial_to.port(), DIAL_WITHIN);
        if let Some(dir) = &self.session_dir {
            redial = redial.localhost_while(dir.join(crate::rundir::LOCALHOST_FLAG));
        }
        let dialer = RockDialer {
            first: Some(opened.link),
            redial,
        };
        let relay = Relay::client(session, program, Box::new(dialer), RelayOptions::default());
        let (_row, holds) = self.show(&dest.to_string(), relay.status());
        let relay = relay.with_hold(holds);
        let id = opened.session;
        report(
            &format!("rock {id} to {dest}"),
            relay.run(self.stopped()).await,
        );
    }

    /// Server: makes the OPEN from `client` for the listener on `port`
    /// (the client's key share being `client_key`) a rock between `link`, where the reply goes and the
    /// handshake follows, and the program's connection `program` (recorded
    /// as carried by `entry`); runs it until it ends.
    pub async fn serve(
        self: Arc<Self>,
        mut link: BoxLink,
        program: TcpStream,
        entry: Entry,
        client: SocketAddr,
        port: u16,
        client_key: PublicKey,
    ) {
        let _running = Running::new(&self.running);
        let _entry = entry;
        let refuse = Reply::Open(None).encode();
        let (Some(secret), Some(config)) =
            (random::<32>(), self.settings(client).map(|s| s.engine()))
        else {
            let _ = link.write_all(&refuse).await;
            return;
        };
        let share = KeyShare::new(secret);
        let public = share.public();
        let (links, handed) = mpsc::channel(PENDING_LINKS);
        let Some(id) = self.reserve(links) else {
            let _ = link.write_all(&refuse).await;
            return;
        };
        let _served = Served {
            rocks: self.clone(),
            id,
        };
        let session = share
            .agree(Role::Server, &client_key, &id)
            .map_err(|e| e.to_string())
            .and_then(|key| {
                let now = tokio::time::Instant::now().into_std();
                Session::new(Role::Server, id, key, config, now).map_err(|e| e.to_string())
            });
        let session = match session {
            Ok(session) => session,
            Err(e) => {
                tracing::debug!("open from {client}: refused: {e}");
                let _ = link.write_all(&refuse).await;
                return;
            }
        };
        let reply = Reply::Open(Some(Opened {
            session: id,
            key: public,
        }));
        if link.write_all(&reply.encode()).await.is_err() {
            return;
        }
        let relay = {
            let Ok(serving) = self.serving.lock() else {
                return;
            };
            let Some(sender) = serving.get(&id) else {
                return;
            };
            if sender.try_send(link).is_err() {
                return;
            }
            let options = RelayOptions {
                first_link_timeout: Some(FIRST_LINK_WITHIN),
                ..RelayOptions::default()
            };
            Relay::server_handed(session, program, handed, options)
        };
        tracing::debug!("rock {id} from {client}: open");
        let (_row, holds) = self.show(&format!("{client} to port {port}"), relay.status());
        let relay = relay.with_hold(holds);
        report(
            &format!("rock {id} from {client}"),
            relay.run(self.stopped()).await,
        );
    }

    /// A fresh session id, registered with the sender of its links.
    fn reserve(&self, links: mpsc::Sender<BoxLink>) -> Option<SessionId> {
        let mut serving = self.serving.lock().ok()?;
        loop {
            let id = SessionId(random::<16>()?);
            if let std::collections::hash_map::Entry::Vacant(v) = serving.entry(id) {
                v.insert(links);
                return Some(id);
            }
        }
    }

    /// Whether this supervisor serves the rock `id`.
    pub fn serves(&self, id: &SessionId) -> bool {
        self.serving.lock().is_ok_and(|s| s.contains_key(id))
    }

    /// Hands `link` (whose ClientHello names `id`) to the rock `id`;
    /// whether this supervisor serves that rock. A rock with too many
    /// links waiting drops this one (its client dials again).
    pub fn hand(&self, id: &SessionId, link: BoxLink) -> bool {
        let Ok(serving) = self.serving.lock() else {
            return false;
        };
        match serving.get(id) {
            Some(sender) => {
                if sender.try_send(link).is_err() {
                    tracing::debug!("rock {id}: too many links waiting; one dropped");
                }
                true
            }
            None => false,
        }
    }
}

/// Forgets a served rock's id when dropped.
struct Served {
    rocks: Arc<Rocks>,
    id: SessionId,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(mut serving) = self.rocks.serving.lock() {
            serving.remove(&self.id);
        }
    }
}

/// Says in the log how a rock ended.
fn report(what: &str, ended: Result<Outcome, crate::relay::RelayError>) {
    match ended {
        Ok(Outcome::Finished { .. }) => tracing::debug!("{what}: finished"),
        Ok(Outcome::Closed(reason)) => tracing::info!("{what}: closed ({reason:?})"),
        Err(e) => tracing::info!("{what}: {e}"),
    }
}

/// The client's links: the connection the OPEN made first, then a new
/// connection to the rendezvous port for every resume.
struct RockDialer {
    first: Option<TcpStream>,
    redial: TcpDialer,
}

impl Dialer for RockDialer {
    fn dial(&mut self) -> DialFuture {
        match self.first.take() {
            Some(link) => Box::pin(async move { Ok(Box::new(link) as BoxLink) }),
            None => self.redial.dial(),
        }
    }

    fn describe(&self) -> String {
        self.redial.describe()
    }
}
