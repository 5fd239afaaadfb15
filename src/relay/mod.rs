//! The tokio shell around the protocol engine: moves bytes between the
//! application stream, the engine and whatever link is current, runs the
//! engine's timers, and (as client) redials when a link is lost.
//!
//! The relay is one task and one poll loop over every readiness source —
//! application, links, link source, timer — so the engine is only ever
//! touched from one place and needs no locks. Links are any async byte
//! stream (a TCP connection, or an SSH channel in firewall-friendly mode).
//!
//! Invariant: the loop returns `Pending` only after every source it is
//! interested in has returned `Pending` (and so registered a wakeup).

mod dial;
mod link_io;
mod netwatch;
mod path;
mod status;
#[cfg(test)]
mod window_tests;

use std::future::Future;
use std::io::IoSlice;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rock_proto::{CloseCode, CloseReason, Event, HandshakeError, LinkError, LinkId, Session};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Sleep;

pub use dial::{Backoff, DialFuture, Dialer, TcpDialer};
pub use link_io::{BoxLink, LinkIo, Prefixed};
pub use netwatch::NetWatch;
pub use path::PathEstimate;
pub use status::{Status, StatusWatch, suspended_for};

/// Most bytes the relay reads at once, from a link (into its own buffer) or
/// from the application (straight into the replay buffer).
const BUF: usize = 256 * 1024;
/// Slices handed to one vectored write: a data frame is a header and one
/// or two runs of the replay buffer.
const WRITE_SLICES: usize = 16;
/// The send window is kept this many times the path's bandwidth-delay
/// product: room for the acknowledgements' own delay and for the rate to
/// grow (the window can at most quadruple per round trip).
const WINDOW_BDPS: usize = 4;
/// How often a window that holds the application back is reconsidered.
const WINDOW_EVERY: Duration = Duration::from_millis(5);
/// Consecutive "no such session" answers after which a client gives up.
const REJECTIONS_BEFORE_GIVING_UP: u32 = 3;

/// How a relay ended without error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Both directions ended and were delivered. `note` is the server's
    /// finish note, as the client received it (empty if none or unknown).
    Finished {
        /// See [`rock_proto::Session::finish_note`].
        note: String,
    },
    /// The session was closed (by either side, or the suspension timeout).
    Closed(CloseReason),
}

/// Why a relay stopped early.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The first link could never be made.
    #[error("cannot reach {target} ({attempts} attempts)")]
    Unreachable {
        /// What was dialled.
        target: String,
        /// How many times.
        attempts: u32,
        /// The last attempt's error.
        #[source]
        last: std::io::Error,
    },
    /// The server refused the session for good.
    #[error("the server refused the session")]
    Refused(#[source] HandshakeError),
    /// The operating system's random source failed.
    #[error("cannot read random bytes for a handshake nonce")]
    Random(#[source] getrandom::Error),
}

/// Where new links come from.
enum Source {
    /// Client: dial, and redial after a loss.
    Dial(dial::DialState),
    /// Server: accept.
    Listen(TcpListener),
    /// Server: take the links someone else accepted (the rendezvous port of
    /// `rock COMMAND`, shared by every rock of the host).
    Handed(mpsc::Receiver<BoxLink>),
}

/// Tunables of the shell (the engine's are in its `Config`).
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Dial failures before the first link after which the client gives up.
    pub first_connect_attempts: u32,
    /// After the session finished, how long a client waits for the server's
    /// confirmation before leaving anyway.
    pub finish_linger: Duration,
    /// After a close that no link carried out yet, how long to keep trying
    /// to deliver it before leaving anyway.
    pub farewell_linger: Duration,
    /// Server: give the session up if no link was ever established this
    /// long after the relay started (the client never came, so nothing
    /// could ever end it but the suspension timeout).
    pub first_link_timeout: Option<Duration>,
    /// Server: a note the application side leaves for the client, read
    /// when the application's stream ends and sent with the end of the
    /// session ([`rock_proto::Session::set_finish_note`]).
    pub finish_note: Option<Arc<OnceLock<String>>>,
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            first_connect_attempts: 3,
            finish_linger: Duration::from_secs(10),
            farewell_linger: Duration::from_secs(5),
            first_link_timeout: None,
            finish_note: None,
        }
    }
}

/// One session, its application stream and its links.
pub struct Relay<A> {
    session: Session,
    app: A,
    /// The application ended its stream (or failed); no more reads.
    app_eof: bool,
    /// Writing to the application failed: received bytes are discarded.
    app_write_dead: bool,
    /// The application's write side has been shut down after the peer's FIN.
    app_shut: bool,
    links: Vec<(LinkId, BoxLink)>,
    source: Source,
    options: RelayOptions,
    sleep: Pin<Box<Sleep>>,
    buf: Box<[u8]>,
    /// When a finished client stops waiting for the server's close.
    linger_until: Option<Instant>,
    /// When a closed session stops trying to deliver its close.
    farewell_until: Option<Instant>,
    /// When a session no link ever reached is given up.
    first_link_until: Option<Instant>,
    rejections: u32,
    status: status::StatusTx,
    /// Client: network change notices, when the platform gives them.
    netwatch: Option<NetWatch>,
    /// Where holds come from ([`Relay::with_hold`]).
    holds: Option<mpsc::UnboundedReceiver<Instant>>,
    /// Until when links are held off: none kept, none made.
    held_until: Option<Instant>,
    /// When the send window was last reconsidered.
    window_checked: Option<Instant>,
}

fn now() -> Instant {
    // Through tokio, so tests may pause and advance the clock.
    tokio::time::Instant::now().into_std()
}

fn nonce() -> Result<[u8; 32], RelayError> {
    let mut n = [0u8; 32];
    getrandom::fill(&mut n).map_err(RelayError::Random)?;
    Ok(n)
}

impl<A: AsyncRead + AsyncWrite + Unpin> Relay<A> {
    /// A client relay: `dialer` makes each new link.
    pub fn client(
        session: Session,
        app: A,
        dialer: Box<dyn Dialer>,
        options: RelayOptions,
    ) -> Self {
        let source = Source::Dial(dial::DialState::new(dialer));
        let mut relay = Self::new(session, app, source, options);
        relay.netwatch = NetWatch::new()
            .inspect_err(|e| tracing::debug!("no network change notices: {e}"))
            .ok();
        relay
    }

    /// A server relay: links arrive on `listener`.
    pub fn server(session: Session, app: A, listener: TcpListener, options: RelayOptions) -> Self {
        Self::new(session, app, Source::Listen(listener), options)
    }

    /// A server relay whose links arrive on `links`, accepted elsewhere.
    pub fn server_handed(
        session: Session,
        app: A,
        links: mpsc::Receiver<BoxLink>,
        options: RelayOptions,
    ) -> Self {
        Self::new(session, app, Source::Handed(links), options)
    }

    fn new(mut session: Session, app: A, source: Source, options: RelayOptions) -> Self {
        // Small until a link shows that its path holds more (see
        // `widen_window`), or that it cannot tell (see `drain_events`).
        session.set_send_window(rock_proto::MIN_SEND_WINDOW);
        let status = status::StatusTx::new(&session);
        Relay {
            session,
            app,
            app_eof: false,
            app_write_dead: false,
            app_shut: false,
            links: Vec::new(),
            source,
            options,
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            buf: vec![0u8; BUF].into_boxed_slice(),
            linger_until: None,
            farewell_until: None,
            first_link_until: None,
            rejections: 0,
            status,
            netwatch: None,
            holds: None,
            held_until: None,
            window_checked: None,
        }
    }

    /// Lets `holds` tell the relay to hold its links off until a moment:
    /// every link is let go at once, and none is dialled (client) or taken
    /// (server) before that moment. For a checkpoint, which must find no
    /// connection to the peer.
    pub fn with_hold(mut self, holds: mpsc::UnboundedReceiver<Instant>) -> Self {
        self.holds = Some(holds);
        self
    }

    /// Applies holds that arrived; whether one did.
    fn poll_holds(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let Some(holds) = &mut self.holds else {
            return false;
        };
        let mut progress = false;
        while let Poll::Ready(Some(until)) = holds.poll_recv(cx) {
            progress = true;
            if until <= now {
                continue;
            }
            self.held_until = Some(until);
            let links: Vec<LinkId> = self.links.iter().map(|(id, _)| *id).collect();
            tracing::debug!("links held off for {:?}", until - now);
            for id in links {
                self.session.link_failed(now, id);
            }
            if let Source::Dial(d) = &mut self.source {
                d.connecting = None;
            }
        }
        if self.held_until.is_some_and(|t| t <= now) {
            self.held_until = None;
            progress = true;
        }
        progress
    }

    fn held(&self, now: Instant) -> bool {
        self.held_until.is_some_and(|t| t > now)
    }

    /// A live view of the session's state, for status displays.
    pub fn status(&self) -> StatusWatch {
        self.status.subscribe()
    }

    /// Runs until the session ends. When `shutdown` completes first, the
    /// session is closed as aborted (the peer is told if a link is up).
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<Outcome, RelayError> {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut shut = false;
        self.first_link_until = self.options.first_link_timeout.map(|t| now() + t);
        std::future::poll_fn(|cx| {
            if !shut && shutdown.as_mut().poll(cx).is_ready() {
                shut = true;
                self.session.close(now(), CloseCode::Aborted, "stopped");
            }
            self.poll_run(cx)
        })
        .await
    }

    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<Result<Outcome, RelayError>> {
        loop {
            let now = now();
            let mut progress = false;
            if let Some(watch) = &mut self.netwatch
                && watch.poll_changed(cx).is_ready()
            {
                self.on_network_change(now);
                progress = true;
            }
            progress |= self.poll_holds(cx, now);
            progress |= self.poll_source(cx, now)?;
            progress |= self.poll_links(cx, now);
            progress |= self.poll_app(cx, now);
            if self.session.poll_timeout().is_some_and(|t| t <= now) {
                self.session.handle_timeout(now);
                progress = true;
            }
            progress |= self.check_first_link(now);
            progress |= self.check_handshake_limit(now);
            progress |= self.drain_events(now)?;
            let attempts = self.dial_attempts();
            self.status.publish(&self.session, attempts, now);
            if let Some(outcome) = self.outcome(now) {
                return Poll::Ready(Ok(outcome));
            }
            if progress {
                continue;
            }
            let wake = [
                self.session.poll_timeout(),
                self.next_dial(now),
                self.linger_until,
                self.farewell_until,
                self.first_link_until,
                self.handshake_deadline(),
                self.held_until,
            ]
            .into_iter()
            .flatten()
            .min();
            match wake {
                Some(t) => self.sleep.as_mut().reset(t.into()),
                None => self
                    .sleep
                    .as_mut()
                    .reset((now + Duration::from_secs(3600)).into()),
            }
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }

    /// Gives the session up when its first link is overdue.
    fn check_first_link(&mut self, now: Instant) -> bool {
        let Some(until) = self.first_link_until else {
            return false;
        };
        if self.session.stats().links_established > 0 || self.session.close_reason().is_some() {
            self.first_link_until = None;
            return false;
        }
        if now < until {
            return false;
        }
        self.first_link_until = None;
        let waited = self.options.first_link_timeout.unwrap_or_default();
        tracing::warn!("no link came within {waited:?} of the start; giving the session up");
        self.session.close(
            now,
            CloseCode::Aborted,
            &format!("no link came within {} s of the start", waited.as_secs()),
        );
        true
    }

    /// Gives up a dialled link whose handshake outlasted its dialer's limit.
    fn check_handshake_limit(&mut self, now: Instant) -> bool {
        let Source::Dial(d) = &self.source else {
            return false;
        };
        let Some(id) = d.overdue(now) else {
            return false;
        };
        tracing::debug!(%id, "no handshake within the route's limit; giving the link up");
        // Its LinkDown tells the dialer, and the relay redials at once.
        self.session.link_failed(now, id);
        true
    }

    fn handshake_deadline(&self) -> Option<Instant> {
        match &self.source {
            Source::Dial(d) => d.handshake_deadline(),
            Source::Listen(_) | Source::Handed(_) => None,
        }
    }

    /// The host's addresses or routes changed: the link may be stranded on
    /// an address that is gone. Check it now, and redial now if suspended.
    fn on_network_change(&mut self, now: Instant) {
        match self.link_on_a_gone_address() {
            Some((id, ip)) => {
                tracing::info!("this host's address {ip} is gone; its link is dead, redialling");
                self.session.link_failed(now, id);
            }
            None => {
                tracing::debug!("network changed; probing the link");
                self.session.probe_link(now);
            }
        }
        if let Source::Dial(d) = &mut self.source {
            d.network_changed(now);
        }
    }

    /// The established link, if its TCP connection's local address is no
    /// longer one of this host's.
    fn link_on_a_gone_address(&self) -> Option<(LinkId, IpAddr)> {
        let current = self.session.current_link()?;
        let (_, io) = self.links.iter().find(|(id, _)| *id == current)?;
        let ip = io.local_ip()?;
        let host = netwatch::host_addresses()
            .inspect_err(|e| tracing::debug!("cannot list this host's addresses: {e}"))
            .ok()?;
        (!ip.is_loopback() && !host.contains(&ip)).then_some((current, ip))
    }

    fn dial_attempts(&self) -> u32 {
        match &self.source {
            Source::Dial(d) => d.failures,
            Source::Listen(_) | Source::Handed(_) => 0,
        }
    }

    /// Whether a client needs a link dialled: it has none, or only a
    /// silent one, which gets a spare beside it (make before break; one
    /// spare at a time).
    fn wants_link(&self, now: Instant) -> bool {
        self.links.is_empty() || (self.links.len() == 1 && self.session.is_stalled(now))
    }

    fn next_dial(&self, now: Instant) -> Option<Instant> {
        match &self.source {
            Source::Dial(d) if self.wants_link(now) && d.connecting.is_none() => {
                Some(d.next_attempt)
            }
            _ => None,
        }
    }

    /// Makes new links: dials (client) or accepts (server).
    fn poll_source(&mut self, cx: &mut Context<'_>, now: Instant) -> Result<bool, RelayError> {
        let mut progress = false;
        let held = self.held(now);
        let wants_link = self.wants_link(now);
        match &mut self.source {
            Source::Dial(d) => {
                let open = self.session.close_reason().is_none() || self.session.has_farewell();
                let wanted = wants_link && open && !held;
                if wanted && d.connecting.is_none() && now >= d.next_attempt {
                    d.start();
                    progress = true;
                }
                if let Some(fut) = &mut d.connecting
                    && let Poll::Ready(result) = fut.as_mut().poll(cx)
                {
                    d.connecting = None;
                    progress = true;
                    match result {
                        Ok(io) => {
                            let id = if self.links.is_empty() {
                                self.session.open_link(now, nonce()?)
                            } else {
                                tracing::debug!("the link is silent; trying a spare beside it");
                                self.session.open_spare_link(now, nonce()?)
                            };
                            d.opened(id, now);
                            self.links.push((id, io));
                        }
                        Err(e) => {
                            tracing::debug!("dialling {} failed: {e}", d.describe());
                            let timed_out = e.kind() == std::io::ErrorKind::TimedOut;
                            d.failed(now, e, timed_out);
                            let never_connected = self.session.stats().links_established == 0;
                            if never_connected && d.failures >= self.options.first_connect_attempts
                            {
                                return Err(RelayError::Unreachable {
                                    target: d.describe(),
                                    attempts: d.failures,
                                    last: d.last_error.take().unwrap_or_else(|| {
                                        std::io::Error::other("no attempt was made")
                                    }),
                                });
                            }
                        }
                    }
                }
            }
            Source::Listen(listener) => {
                while let Poll::Ready(accepted) = listener.poll_accept(cx) {
                    progress = true;
                    match accepted {
                        Ok((stream, peer)) => {
                            tracing::debug!("link connection from {peer}");
                            let _ = stream.set_nodelay(true);
                            let id = self.session.accept_link(now, nonce()?);
                            self.links.push((id, Box::new(stream)));
                        }
                        Err(e) => {
                            // Out of descriptors, say: the pending-link cap
                            // frees some; try again on the next wakeup.
                            tracing::warn!("accepting a link failed: {e}");
                            break;
                        }
                    }
                }
            }
            Source::Handed(links) => {
                // A closed channel (its sender gone) hands no more links;
                // the session goes on with those it has.
                while let Poll::Ready(Some(io)) = links.poll_recv(cx) {
                    progress = true;
                    if held {
                        // Dropped: the client dials again.
                        continue;
                    }
                    let id = self.session.accept_link(now, nonce()?);
                    self.links.push((id, io));
                }
            }
        }
        Ok(progress)
    }

    /// Writes pending output to every link and reads what the engine can take.
    fn poll_links(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut progress = false;
        let mut failed = Vec::new();
        for (id, io) in &mut self.links {
            let id = *id;
            loop {
                // Frames and the replay buffer's data go out in one write.
                let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
                let count = self.session.poll_transmit_vectored(id, &mut slices);
                if count == 0 {
                    break;
                }
                let written = if io.is_write_vectored() {
                    Pin::new(&mut *io).poll_write_vectored(cx, &slices[..count])
                } else {
                    Pin::new(&mut *io).poll_write(cx, &slices[0])
                };
                match written {
                    Poll::Ready(Ok(n)) if n > 0 => {
                        self.session.advance_transmit(id, n);
                        progress = true;
                    }
                    Poll::Ready(_) => {
                        failed.push(id);
                        break;
                    }
                    Poll::Pending => break,
                }
            }
            // Channel-backed links buffer; TCP's flush is a no-op.
            let _ = Pin::new(&mut *io).poll_flush(cx);
            let window = self.session.link_read_window(id).min(BUF);
            if window == 0 {
                continue;
            }
            let mut rb = ReadBuf::new(&mut self.buf[..window]);
            match Pin::new(&mut *io).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if !rb.filled().is_empty() => {
                    // Data nothing waits ahead of goes straight to the
                    // application, when it can take it now.
                    let app = &mut self.app;
                    let app_ok = !self.app_write_dead;
                    let mut direct = |data: &[u8]| {
                        if !app_ok {
                            return 0;
                        }
                        match Pin::new(&mut *app).poll_write(cx, data) {
                            Poll::Ready(Ok(n)) => n,
                            // Errors are seen again, and handled, by poll_app.
                            _ => 0,
                        }
                    };
                    self.session
                        .handle_link_input_with(now, id, rb.filled(), &mut direct);
                    progress = true;
                }
                Poll::Ready(_) => failed.push(id),
                Poll::Pending => {}
            }
        }
        for id in failed {
            self.session.link_failed(now, id);
            progress = true;
        }
        progress
    }

    /// The application is held back while the link's path could carry
    /// more than the send window lets it have in flight: widens the window
    /// to [`WINDOW_BDPS`] bandwidth-delay products (a power of two, within
    /// the replay bound). Only widens: a window that fits the path once
    /// will fit it again. Returns whether it widened.
    fn widen_window(&mut self, now: Instant) -> bool {
        let window = self.session.send_window();
        if window >= self.session.config().replay_bound
            || self.window_checked.is_some_and(|t| now < t + WINDOW_EVERY)
        {
            return false;
        }
        self.window_checked = Some(now);
        let Some(current) = self.session.current_link() else {
            return false;
        };
        let Some(path) = self
            .links
            .iter()
            .find(|(id, _)| *id == current)
            .and_then(|(_, io)| io.path())
        else {
            return false;
        };
        let want = path.bdp().saturating_mul(WINDOW_BDPS);
        if want <= window {
            return false;
        }
        let wider = want.checked_next_power_of_two().unwrap_or(usize::MAX);
        self.session.set_send_window(wider);
        tracing::debug!(
            ?path,
            "send window {window} -> {}",
            self.session.send_window()
        );
        true
    }

    /// Moves bytes between the application and the engine.
    fn poll_app(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut progress = false;
        if !self.app_eof && self.session.write_capacity() == 0 {
            progress |= self.widen_window(now);
        }
        // Read straight into the replay buffer: no copy on the way in.
        let room = if self.app_eof {
            &mut [][..]
        } else {
            self.session.write_buf(BUF)
        };
        if !room.is_empty() {
            let mut rb = ReadBuf::new(room);
            match Pin::new(&mut self.app).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                    self.app_eof = true;
                    if let Some(note) = self.options.finish_note.as_ref().and_then(|n| n.get()) {
                        self.session.set_finish_note(note);
                    }
                    self.session.finish();
                    progress = true;
                }
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    self.session.commit_write(n);
                    progress = true;
                }
                Poll::Ready(Err(e)) => {
                    self.app_eof = true;
                    let message = format!("application stream failed: {e}");
                    self.session.close(now, CloseCode::Error, &message);
                    progress = true;
                }
                Poll::Pending => {}
            }
        }
        while self.session.readable() > 0 {
            if self.app_write_dead {
                self.session.consume(self.session.readable());
                progress = true;
                break;
            }
            match Pin::new(&mut self.app).poll_write(cx, self.session.peek()) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    self.session.consume(n);
                    progress = true;
                }
                Poll::Ready(_) => {
                    tracing::debug!("the application stopped reading; discarding its input");
                    self.app_write_dead = true;
                }
                Poll::Pending => break,
            }
        }
        if self.session.is_read_finished() && !self.app_shut {
            match Pin::new(&mut self.app).poll_shutdown(cx) {
                Poll::Ready(_) => {
                    self.app_shut = true;
                    progress = true;
                }
                Poll::Pending => {}
            }
        }
        progress
    }

    /// Applies the engine's events: closes dead links, schedules redials.
    fn drain_events(&mut self, now: Instant) -> Result<bool, RelayError> {
        let mut progress = false;
        while let Some(event) = self.session.poll_event() {
            progress = true;
            match event {
                Event::LinkUp { link, resumed } => {
                    tracing::info!(%link, resumed, "link up");
                    self.rejections = 0;
                    let measures = self
                        .links
                        .iter()
                        .any(|(id, io)| *id == link && io.measures_path());
                    if !measures {
                        // No way to size the window to the path: all of it.
                        self.session.set_send_window(usize::MAX);
                    }
                    if let Source::Dial(d) = &mut self.source {
                        d.connected(link);
                    }
                }
                Event::LinkDown { link, error } => {
                    tracing::info!(%link, %error, "link down");
                    self.links.retain(|(id, _)| *id != link);
                    self.on_link_down(now, link, &error)?;
                }
                Event::PeerFinished => tracing::debug!("peer finished its stream"),
                Event::Finished => {
                    tracing::debug!("session finished");
                    self.linger_until = Some(now + self.options.finish_linger);
                }
                Event::Closed(reason) => {
                    tracing::info!(?reason, "session closed");
                    self.farewell_until = Some(now + self.options.farewell_linger);
                }
            }
        }
        Ok(progress)
    }

    fn on_link_down(
        &mut self,
        now: Instant,
        link: LinkId,
        error: &LinkError,
    ) -> Result<(), RelayError> {
        let Source::Dial(d) = &mut self.source else {
            return Ok(());
        };
        d.down(link);
        let never_connected = self.session.stats().links_established == 0;
        match error {
            LinkError::Handshake(h @ HandshakeError::UnsupportedVersion { .. })
                if never_connected =>
            {
                return Err(RelayError::Refused(h.clone()));
            }
            LinkError::Handshake(
                h @ (HandshakeError::Rejected(_) | HandshakeError::UnsupportedVersion { .. }),
            ) => {
                // Unauthenticated: could be forged, so one is not enough —
                // unless we have everything and only wanted the goodbye.
                self.rejections += 1;
                if !self.session.is_finished() && self.rejections >= REJECTIONS_BEFORE_GIVING_UP {
                    return Err(RelayError::Refused(h.clone()));
                }
                d.failed(now, std::io::Error::other(error.clone()), false);
            }
            LinkError::Handshake(HandshakeError::Timeout) => d.failed(
                now,
                std::io::Error::new(std::io::ErrorKind::TimedOut, error.clone()),
                true,
            ),
            // Refused or garbled: not worth retrying in a tight loop.
            LinkError::Handshake(_) | LinkError::Protocol(_) | LinkError::Decode(_) => {
                d.failed(now, std::io::Error::other(error.clone()), false)
            }
            // An established link died: try again at once.
            _ => d.lost(now),
        }
        Ok(())
    }

    fn outcome(&self, now: Instant) -> Option<Outcome> {
        if let Some(reason) = self.session.close_reason() {
            let drained = self.session.readable() == 0 || self.app_write_dead;
            let owed = self.session.has_farewell() && self.farewell_until.is_some_and(|t| now < t);
            if self.links.is_empty() && drained && !owed {
                return Some(match reason {
                    CloseReason::Finished => Outcome::Finished {
                        note: self.session.finish_note().to_owned(),
                    },
                    other => Outcome::Closed(other.clone()),
                });
            }
        }
        let lingered = self.linger_until.is_some_and(|t| now >= t);
        let unreachable = self.session.is_finished()
            && self.links.is_empty()
            && matches!(&self.source, Source::Dial(d) if d.failures > 0);
        (self.session.is_finished() && (lingered || unreachable)).then(|| Outcome::Finished {
            note: String::new(),
        })
    }
}
