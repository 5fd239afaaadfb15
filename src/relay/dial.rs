//! Making client links: the dialer that opens a transport, and the retry
//! policy (at once after a loss, then backing off to about a second).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rock_proto::LinkId;

use super::BoxLink;
use crate::connect::AddressFamily;

/// A transport being opened.
pub type DialFuture = Pin<Box<dyn Future<Output = io::Result<BoxLink>> + Send>>;

/// Opens a new transport to the server each time it is asked.
pub trait Dialer: Send {
    /// Starts opening a transport.
    fn dial(&mut self) -> DialFuture;
    /// Names the target, for messages.
    fn describe(&self) -> String;
    /// The transport of the last dial that succeeded finished its
    /// handshake (`true`), or was lost before it did (`false`). A route
    /// that connects but carries nothing can only be told from one that
    /// works this way.
    fn handshake_done(&mut self, _established: bool) {}
    /// How long the transport just made may take over its handshake
    /// before it is given up as a failure of its route (the engine's own
    /// handshake timeout when `None`).
    fn handshake_limit(&self) -> Option<Duration> {
        None
    }
    /// The host's addresses or routes changed: what was learnt about the
    /// routes may no longer hold.
    fn network_changed(&mut self) {}
}

/// Dials `host:port` over TCP by [`crate::connect`]'s rule: the name
/// looked up again on every attempt, so a server that moved (and whose
/// name followed) is found; the lookup and each address bounded by the
/// connect timeout; only the addresses of the family allowed; the
/// address that answered last tried first.
#[derive(Debug, Clone)]
pub struct TcpDialer {
    host: String,
    port: u16,
    connect_timeout: Duration,
    family: AddressFamily,
    /// The address of the last link made (shared with dials in flight).
    last_good: Arc<Mutex<Option<SocketAddr>>>,
    /// While this file exists, dial 127.0.0.1 instead (see
    /// [`TcpDialer::localhost_while`]).
    localhost_flag: Option<std::path::PathBuf>,
}

impl TcpDialer {
    /// A dialer for `host` (name or address) and `port`, any family.
    pub fn new(host: impl Into<String>, port: u16, connect_timeout: Duration) -> Self {
        TcpDialer {
            host: host.into(),
            port,
            connect_timeout,
            family: AddressFamily::Any,
            last_good: Arc::default(),
            localhost_flag: None,
        }
    }

    /// The same, dialling 127.0.0.1 instead of `host` whenever the file
    /// `flag` exists: a session restored onto its peer's own machine is
    /// told so by `rock restore -l` without being asked anything.
    pub fn localhost_while(mut self, flag: std::path::PathBuf) -> Self {
        self.localhost_flag = Some(flag);
        self
    }

    /// The same, limited to the addresses of `family` (`-4`, `-6`).
    pub fn with_family(mut self, family: AddressFamily) -> Self {
        self.family = family;
        self
    }
}

impl Dialer for TcpDialer {
    fn dial(&mut self) -> DialFuture {
        let local = self.localhost_flag.as_ref().is_some_and(|f| f.exists());
        let (host, port, limit, family) = match local {
            true => (
                "127.0.0.1".to_owned(),
                self.port,
                self.connect_timeout,
                AddressFamily::Any,
            ),
            false => (
                self.host.clone(),
                self.port,
                self.connect_timeout,
                self.family,
            ),
        };
        let last_good = Arc::clone(&self.last_good);
        Box::pin(async move {
            let preferred = *last_good.lock().unwrap_or_else(PoisonError::into_inner);
            let stream =
                crate::connect::connect_preferring(&host, port, family, Some(limit), preferred)
                    .await?;
            if let Ok(addr) = stream.peer_addr() {
                *last_good.lock().unwrap_or_else(PoisonError::into_inner) = Some(addr);
            }
            Ok(Box::new(stream) as BoxLink)
        })
    }

    fn describe(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Delays between failed attempts: doubling from `first` up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A backoff from `first` doubling to `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// Starts over (after a success).
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(1))
    }
}

/// The client relay's dialling state.
pub(crate) struct DialState {
    dialer: Box<dyn Dialer>,
    pub(crate) connecting: Option<DialFuture>,
    pub(crate) next_attempt: Instant,
    /// Failed attempts since the last established link.
    pub(crate) failures: u32,
    pub(crate) last_error: Option<io::Error>,
    backoff: Backoff,
    /// The link the last dial made, until its handshake ends, and when
    /// the dialer wants it given up if it has not.
    unproven: Option<(LinkId, Option<Instant>)>,
}

impl DialState {
    pub(crate) fn new(dialer: Box<dyn Dialer>) -> Self {
        DialState {
            dialer,
            connecting: None,
            next_attempt: Instant::now(),
            failures: 0,
            last_error: None,
            backoff: Backoff::default(),
            unproven: None,
        }
    }

    pub(crate) fn describe(&self) -> String {
        self.dialer.describe()
    }

    pub(crate) fn start(&mut self) {
        self.connecting = Some(self.dialer.dial());
    }

    /// An attempt failed: wait before the next. An attempt that timed out
    /// has waited already, so the next one starts at once — after a
    /// blackhole lifts, a fresh SYN is never more than a timeout away.
    pub(crate) fn failed(&mut self, now: Instant, error: io::Error, timed_out: bool) {
        self.failures += 1;
        self.last_error = Some(error);
        self.next_attempt = if timed_out {
            now
        } else {
            now + self.backoff.next_delay()
        };
    }

    /// An established link was lost: try again at once.
    pub(crate) fn lost(&mut self, now: Instant) {
        self.next_attempt = now;
    }

    /// The network changed: an attempt in flight may use a route or source
    /// address that is gone, and waiting out the backoff is pointless.
    /// A link in its handshake then fails for the change, not its route,
    /// so its end is not reported to the dialer.
    pub(crate) fn network_changed(&mut self, now: Instant) {
        self.connecting = None;
        self.next_attempt = now;
        self.backoff.reset();
        self.unproven = None;
        self.dialer.network_changed();
    }

    /// A dialled transport became link `id`; its handshake starts.
    pub(crate) fn opened(&mut self, id: LinkId, now: Instant) {
        let deadline = self.dialer.handshake_limit().map(|limit| now + limit);
        self.unproven = Some((id, deadline));
    }

    /// When the link in its handshake is to be given up, if the dialer set
    /// a limit.
    pub(crate) fn handshake_deadline(&self) -> Option<Instant> {
        self.unproven.and_then(|(_, deadline)| deadline)
    }

    /// The link in its handshake, if it is past the dialer's limit.
    pub(crate) fn overdue(&self, now: Instant) -> Option<LinkId> {
        match self.unproven {
            Some((id, Some(deadline))) if now >= deadline => Some(id),
            _ => None,
        }
    }

    /// Link `id` was established.
    pub(crate) fn connected(&mut self, id: LinkId) {
        self.failures = 0;
        self.last_error = None;
        self.backoff.reset();
        if self.unproven.take_if(|(u, _)| *u == id).is_some() {
            self.dialer.handshake_done(true);
        }
    }

    /// Link `id` went down; tells the dialer if it never got through its
    /// handshake.
    pub(crate) fn down(&mut self, id: LinkId) {
        if self.unproven.take_if(|(u, _)| *u == id).is_some() {
            self.dialer.handshake_done(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Records what the relay tells it; dials nothing.
    struct Recorder {
        told: Arc<Mutex<Vec<bool>>>,
        limit: Option<Duration>,
    }

    impl Dialer for Recorder {
        fn dial(&mut self) -> DialFuture {
            Box::pin(async { Err(io::Error::other("not dialling in this test")) })
        }
        fn describe(&self) -> String {
            "recorder".into()
        }
        fn handshake_done(&mut self, established: bool) {
            self.told.lock().unwrap().push(established);
        }
        fn handshake_limit(&self) -> Option<Duration> {
            self.limit
        }
    }

    /// Ids of `n` links, as a client session numbers them.
    fn links(n: usize) -> Vec<LinkId> {
        use rock_proto::{Config, Role, Session, SessionId, SessionKey};
        let now = Instant::now();
        let mut s = Session::new(
            Role::Client,
            SessionId([1; 16]),
            SessionKey([2; 32]),
            Config::default(),
            now,
        )
        .unwrap();
        (0..n).map(|_| s.open_link(now, [0; 32])).collect()
    }

    fn state(limit: Option<Duration>) -> (DialState, Arc<Mutex<Vec<bool>>>) {
        let told = Arc::default();
        let dialer = Recorder {
            told: Arc::clone(&told),
            limit,
        };
        (DialState::new(Box::new(dialer)), told)
    }

    #[test]
    fn the_dialer_learns_how_each_dialled_links_handshake_ended() {
        let (mut d, told) = state(None);
        let now = Instant::now();
        let link = links(4);
        let link = |n: usize| link[n];
        d.opened(link(1), now);
        d.connected(link(1));
        // Lost after its handshake: not the route's failure.
        d.down(link(1));
        d.opened(link(2), now);
        d.down(link(2));
        // Another link's end says nothing of the one in its handshake.
        d.opened(link(3), now);
        d.down(link(2));
        assert_eq!(*told.lock().unwrap(), [true, false]);
        // A network change forgets it: its failure is the change's.
        d.network_changed(now);
        d.down(link(3));
        assert_eq!(*told.lock().unwrap(), [true, false]);
    }

    #[test]
    fn a_link_past_its_dialers_handshake_limit_is_overdue() {
        let (mut d, _) = state(Some(Duration::from_secs(3)));
        let now = Instant::now();
        let link = links(3);
        let link = |n: usize| link[n];
        d.opened(link(1), now);
        assert_eq!(d.handshake_deadline(), Some(now + Duration::from_secs(3)));
        assert_eq!(d.overdue(now + Duration::from_millis(2999)), None);
        assert_eq!(d.overdue(now + Duration::from_secs(3)), Some(link(1)));
        d.connected(link(1));
        assert_eq!(d.overdue(now + Duration::from_secs(9)), None);
        // Without a limit, only the engine's handshake timeout applies.
        let (mut d, _) = state(None);
        d.opened(link(2), now);
        assert_eq!(d.handshake_deadline(), None);
        assert_eq!(d.overdue(now + Duration::from_secs(3600)), None);
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = Backoff::default();
        let delays: Vec<u64> = (0..6).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }
}
