//! The engine: one reliable, resumable byte stream carried by a succession
//! of authenticated links. It does no I/O — time and nonces come in as
//! arguments, bytes come in and go out through buffers the shell drains.
//!
//! # Driving a session
//!
//! The shell owns the transports and calls, in any order as things happen:
//!
//! * inputs — [`Session::open_link`] (client) or [`Session::accept_link`]
//!   (server) when a transport connects; [`Session::handle_link_input`] with
//!   bytes read from it (at most [`Session::link_read_window`]), or
//!   [`Session::handle_link_input_with`] to hand data straight to the
//!   application;
//!   [`Session::link_failed`] when it errors or ends;
//!   [`Session::handle_timeout`] when the time from
//!   [`Session::poll_timeout`] has come;
//! * the application side — [`Session::write`] (or [`Session::write_buf`] +
//!   [`Session::commit_write`], to read into the replay buffer in place),
//!   [`Session::finish`],
//!   [`Session::read`] (or [`Session::peek`] + [`Session::consume`]),
//!   [`Session::close`].
//!
//! After any of these, it drains the outputs in this order:
//!
//! 1. [`Session::poll_event`] until `None` — a `LinkDown` means close that
//!    transport;
//! 2. for each link, [`Session::poll_transmit`] (one run) or
//!    [`Session::poll_transmit_vectored`] (several, for `writev`), write
//!    them, report what was written with [`Session::advance_transmit`], and
//!    ask again until nothing is left or the transport is full;
//! 3. [`Session::poll_timeout`] to know when to call back.
//!
//! Every link the engine hands out is reported down by exactly one
//! `LinkDown` event, whatever ends it.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::time::{Duration, Instant};

use crate::config::{Config, ConfigError};
use crate::error::{HandshakeError, LinkError, ProtocolViolation};
use crate::handshake::{
    CLIENT_AUTH_LEN, CLIENT_HELLO_LEN, ClientAuth, ClientHello, Nonce, Reject, RejectReason,
    ServerHello, ServerReply, SessionId, SessionKey,
};
use crate::link::{Flow, Link, LinkId, OUTPUT_CONTROL_CAP, OUTPUT_HIGH, Phase};
use crate::outbox::Outbox;
use crate::stream::{RecvHalf, SendHalf};
use crate::wire::{self, CloseCode, Frame, MAX_DATA};

/// Client hello nonces a server remembers, to refuse replayed hellos early.
const REMEMBERED_NONCES: usize = 256;

/// The smallest send window [`Session::set_send_window`] sets (unless the
/// replay bound itself is smaller): enough for about 40 Mbit/s at 100 ms
/// before the window has to grow, and small enough to stay in a CPU's
/// second-level cache.
pub const MIN_SEND_WINDOW: usize = 512 << 10;

/// Which end of the session this is. The client starts every link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Opens links (rock).
    Client,
    /// Accepts links (rockd, or the accepting side under the preload library).
    Server,
}

/// What a session tells its shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A link finished its handshake and now carries the stream.
    LinkUp {
        /// The link.
        link: LinkId,
        /// Whether an earlier link carried this session before.
        resumed: bool,
    },
    /// A link is gone; the shell closes its transport.
    LinkDown {
        /// The link.
        link: LinkId,
        /// Why it went down.
        error: LinkError,
    },
    /// The peer ended its stream: every byte it sent is readable now.
    PeerFinished,
    /// Both directions ended: our end acknowledged and the peer's end
    /// received. (A client may learn it from the server's close before its
    /// application has read the last bytes; they stay readable.)
    Finished,
    /// The session is over. Bytes already readable stay readable.
    Closed(CloseReason),
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// Both directions ended and were acknowledged.
    Finished,
    /// This side closed it.
    Local {
        /// Code sent to the peer.
        code: CloseCode,
        /// Message sent to the peer.
        message: String,
    },
    /// The peer closed it.
    Peer {
        /// The peer's code.
        code: CloseCode,
        /// The peer's message.
        message: String,
    },
    /// No link for the whole suspension timeout.
    SuspendTimeout,
}

/// Where the session stands, for status displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No link has been established yet.
    Connecting,
    /// A link carries the stream.
    Connected,
    /// The last link was lost at `since`; waiting for a new one.
    Suspended {
        /// When the last link went down.
        since: Instant,
        /// When anything last arrived on it: the outage began no later
        /// (a link is declared dead only a link timeout after that).
        heard: Instant,
    },
    /// The session is over.
    Closed,
}

/// Counters for status displays and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Where the session stands.
    pub state: State,
    /// Bytes the application wrote.
    pub written: u64,
    /// Units (bytes and FIN) the peer acknowledged.
    pub acked: u64,
    /// Units (bytes and FIN) received from the peer.
    pub received: u64,
    /// Bytes held for replay.
    pub replay_buffered: usize,
    /// Bytes waiting for the application to read.
    pub readable: usize,
    /// Latest heartbeat round-trip time.
    pub rtt: Option<Duration>,
    /// Links that completed their handshake; the first is not a reconnect.
    pub links_established: u64,
}

/// The stream state shared by all links, split from the link list so a
/// frame borrowed from a link's input can update it.
#[derive(Debug)]
struct Stream {
    send: SendHalf,
    recv: RecvHalf,
    rtt: Option<Duration>,
}

/// What a frame asks of the session beyond the stream state.
enum Control {
    None,
    PeerFin,
    PeerClose { code: CloseCode, message: String },
}

/// One reliable byte stream and the links that carry it.
#[derive(Debug)]
pub struct Session {
    role: Role,
    id: SessionId,
    key: SessionKey,
    config: Config,
    /// Origin of heartbeat timestamps.
    epoch: Instant,
    /// The latest time passed in.
    now: Instant,
    stream: Stream,
    links: Vec<Link>,
    next_link: u64,
    /// The established link, if any; at most one link is established.
    current: Option<LinkId>,
    /// When the last established link went down (or the session began).
    suspended_since: Instant,
    /// When anything last arrived on that link (or the session began).
    last_heard: Instant,
    links_established: u64,
    closed: Option<CloseReason>,
    /// The close frame a closed session still owes its peer: sent on the
    /// carrier if there was one, and on any link that authenticates later,
    /// for as long as the session object lives.
    farewell: Option<(CloseCode, String)>,
    /// A link has written the farewell out at least once. Written is not
    /// delivered, so the farewell is still answered on later links.
    farewell_flushed: bool,
    /// Server: the text of the CLOSE(Normal) it sends on finishing; client:
    /// the text of the CLOSE(Normal) that finished it. Empty when none.
    finish_note: String,
    finished_reported: bool,
    events: VecDeque<Event>,
    /// Server: recent client nonces, to spot replayed hellos.
    seen_nonces: VecDeque<Nonce>,
}

impl Session {
    /// Creates a session. Both ends must use the same `id` and `key`.
    pub fn new(
        role: Role,
        id: SessionId,
        key: SessionKey,
        config: Config,
        now: Instant,
    ) -> Result<Session, ConfigError> {
        config.validate()?;
        Ok(Session {
            role,
            id,
            key,
            stream: Stream {
                send: SendHalf::new(config.replay_bound),
                recv: RecvHalf::new(config.receive_bound),
                rtt: None,
            },
            config,
            epoch: now,
            now,
            links: Vec::new(),
            next_link: 0,
            current: None,
            suspended_since: now,
            last_heard: now,
            links_established: 0,
            closed: None,
            farewell: None,
            farewell_flushed: false,
            finish_note: String::new(),
            finished_reported: false,
            events: VecDeque::new(),
            seen_nonces: VecDeque::new(),
        })
    }

    // ----- getters -----

    /// This end's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The session id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The established link, if any.
    pub fn current_link(&self) -> Option<LinkId> {
        self.current
    }

    /// Every link the engine has not yet reported down.
    pub fn links(&self) -> impl Iterator<Item = LinkId> + '_ {
        self.links.iter().map(|l| l.id)
    }

    /// Why the session ended, once it has.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.closed.as_ref()
    }

    /// The session is closed but its close has not been written out on any
    /// link yet: a link that authenticates now carries it. Shells keep
    /// trying briefly before they exit.
    pub fn has_farewell(&self) -> bool {
        self.farewell.is_some() && !self.farewell_flushed
    }

    /// Server: a short note for the client, carried as the text of the
    /// CLOSE(Normal) that confirms the end of the session (§9.2 of
    /// docs/PROTOCOL.md); cut to 255 bytes at a character boundary. Set it
    /// before the session finishes: a note set later is not sent.
    pub fn set_finish_note(&mut self, note: &str) {
        self.finish_note = wire::cut_close_text(note).to_owned();
    }

    /// The note that came with the end of the session: on a client, the
    /// text of the server's CLOSE(Normal) that finished it (empty if it had
    /// none or the session did not finish that way); on a server, the note
    /// it set.
    pub fn finish_note(&self) -> &str {
        &self.finish_note
    }

    /// Both directions ended (see [`Event::Finished`]).
    pub fn is_finished(&self) -> bool {
        self.finished_reported
    }

    /// Counters and state.
    pub fn stats(&self) -> Stats {
        let state = if self.closed.is_some() {
            State::Closed
        } else if self.current.is_some() {
            State::Connected
        } else if self.links_established == 0 {
            State::Connecting
        } else {
            State::Suspended {
                since: self.suspended_since,
                heard: self.last_heard.min(self.suspended_since),
            }
        };
        Stats {
            state,
            written: self.stream.send.written(),
            acked: self.stream.send.acked(),
            received: self.stream.recv.received(),
            replay_buffered: self.stream.send.buffered(),
            readable: self.stream.recv.readable(),
            rtt: self.stream.rtt,
            links_established: self.links_established,
        }
    }

    // ----- link inputs -----

    /// Client: a transport connected; the engine starts its handshake.
    /// Any older link is abandoned (reported down as superseded).
    pub fn open_link(&mut self, now: Instant, nonce: Nonce) -> LinkId {
        self.open_link_keeping(now, nonce, None)
    }

    /// Client: a transport connected while the current link still carries
    /// the stream but has gone silent ([`Session::is_stalled`]): make
    /// before break. The new link's handshake runs beside the current
    /// link, which goes on carrying the stream until the new one is
    /// established and supersedes it — or until it dies of its own
    /// timeout, and the new one simply takes over. Any other link still in
    /// its handshake is abandoned.
    pub fn open_spare_link(&mut self, now: Instant, nonce: Nonce) -> LinkId {
        self.open_link_keeping(now, nonce, self.current)
    }

    fn open_link_keeping(&mut self, now: Instant, nonce: Nonce, keep: Option<LinkId>) -> LinkId {
        assert_eq!(self.role, Role::Client, "only a client opens links");
        self.tick(now);
        let old: Vec<LinkId> = self.links().filter(|&id| Some(id) != keep).collect();
        for id in old {
            self.drop_link(id, LinkError::Superseded);
        }
        let hello = ClientHello {
            versions: self.config.versions,
            session: self.id,
            nonce,
        };
        let id = self.new_link_id();
        let mut link = Link::new(id, Phase::ClientAwaitServer { hello }, now, nonce);
        if let Phase::ClientAwaitServer { hello } = &link.phase {
            link.output.extend(&hello.encode());
        }
        self.links.push(link);
        if self.closed.is_some() && self.farewell.is_none() {
            self.drop_link(id, LinkError::SessionClosed);
        }
        id
    }

    /// Server: a transport was accepted; the engine waits for its hello.
    /// When too many links are waiting, the oldest is dropped.
    pub fn accept_link(&mut self, now: Instant, nonce: Nonce) -> LinkId {
        assert_eq!(self.role, Role::Server, "only a server accepts links");
        self.tick(now);
        let waiting: Vec<LinkId> = self
            .links
            .iter()
            .filter(|l| l.is_handshaking())
            .map(|l| l.id)
            .collect();
        let excess = (waiting.len() + 1).saturating_sub(self.config.max_pending_links);
        for &id in &waiting[..excess] {
            self.drop_link(id, LinkError::TooManyPending);
        }
        let id = self.new_link_id();
        self.links
            .push(Link::new(id, Phase::ServerAwaitHello, now, nonce));
        id
    }

    /// How many bytes the shell may read from `link`'s transport now;
    /// zero while received data waits for the application.
    pub fn link_read_window(&self, link: LinkId) -> usize {
        self.link(link).map_or(0, Link::read_window)
    }

    /// Bytes arrived on `link`.
    pub fn handle_link_input(&mut self, now: Instant, link: LinkId, bytes: &[u8]) {
        self.handle_link_input_with(now, link, bytes, &mut |_| 0);
    }

    /// Bytes arrived on `link`; stream data that nothing buffered waits
    /// ahead of is first offered to `deliver` — a non-blocking write to the
    /// application that returns how many bytes it took (0 when it cannot
    /// take any now) — and only the rest is buffered for
    /// [`Session::read`]. This saves the shell a copy per byte.
    pub fn handle_link_input_with(
        &mut self,
        now: Instant,
        link: LinkId,
        bytes: &[u8],
        deliver: &mut dyn FnMut(&[u8]) -> usize,
    ) {
        self.tick(now);
        let Some(l) = self.link_mut(link) else { return };
        if matches!(l.phase, Phase::Closing { .. }) {
            return;
        }
        l.last_rx = now;
        if let Some(flow) = l.flow() {
            // Any answer settles a probe.
            flow.probe_deadline = None;
        }
        // Frames are decoded straight from `bytes`; only a frame cut by the
        // end of a read (or what must wait for room, or a handshake) is
        // copied into the link's input queue, and a queued frame is
        // completed from `bytes` before the rest is decoded in place.
        let mut rest = bytes;
        while !rest.is_empty() {
            let Some(l) = self.link_mut(link) else { break };
            let open = match &l.phase {
                Phase::Established(flow) => !flow.rx_blocked,
                Phase::Closing { .. } => break,
                _ => false,
            };
            if open && l.input.is_empty() {
                let used = match self.process_frames(link, Some(rest), deliver) {
                    Ok(used) => used,
                    Err(error) => {
                        self.drop_link(link, error);
                        break;
                    }
                };
                if let Some(l) = self.link_mut(link)
                    && !matches!(l.phase, Phase::Closing { .. })
                {
                    l.input.tail().extend_from_slice(&rest[used..]);
                }
                break;
            }
            let take = match wire::missing(l.input.pending()) {
                n if open && n > 0 => n.min(rest.len()),
                _ => rest.len(),
            };
            l.input.tail().extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if let Err(error) = self.try_process_input(link, deliver) {
                self.drop_link(link, error);
                break;
            }
        }
        self.release_acked();
        self.after_input(link);
    }

    /// The transport of `link` failed or ended.
    pub fn link_failed(&mut self, now: Instant, link: LinkId) {
        self.tick(now);
        self.drop_link(link, LinkError::TransportClosed);
    }

    // ----- link outputs -----

    /// The next bytes to write to `link`'s transport (empty when there are
    /// none). More may follow once these are written: report what was
    /// written with [`Session::advance_transmit`] and ask again.
    pub fn poll_transmit(&mut self, link: LinkId) -> &[u8] {
        let Some(i) = self.prepare_transmit(link) else {
            return &[];
        };
        self.links[i].output.first(&self.stream.send)
    }

    /// Like [`Session::poll_transmit`], but as many pending runs as fit in
    /// `out`, for one vectored write; returns how many slices were filled.
    /// Stream data comes straight from the replay buffer, uncopied.
    pub fn poll_transmit_vectored<'a>(
        &'a mut self,
        link: LinkId,
        out: &mut [IoSlice<'a>],
    ) -> usize {
        let Some(i) = self.prepare_transmit(link) else {
            return 0;
        };
        self.links[i].output.slices(&self.stream.send, out)
    }

    /// Queues what may be sent on `link` now; returns its index.
    fn prepare_transmit(&mut self, link: LinkId) -> Option<usize> {
        let i = self.index(link)?;
        let Session { links, stream, .. } = self;
        let l = &mut links[i];
        if let Phase::Established(flow) = &mut l.phase {
            fill_data(flow, &mut l.output, &stream.send, stream.recv.received());
        }
        Some(i)
    }

    /// `n` bytes from [`Session::poll_transmit`] (or the slices of
    /// [`Session::poll_transmit_vectored`], in order) were written.
    pub fn advance_transmit(&mut self, link: LinkId, n: usize) {
        let Some(l) = self.link_mut(link) else { return };
        l.output.consume(n);
        self.release_acked();
        let Some(l) = self.link_mut(link) else { return };
        if let Phase::Closing {
            error, farewell, ..
        } = &l.phase
            && l.output.is_empty()
        {
            let (error, carried_farewell) = (error.clone(), *farewell);
            self.farewell_flushed |= carried_farewell;
            self.drop_link(link, error);
        }
    }

    // ----- application side -----

    /// Bytes the application may write now; zero means backpressure.
    pub fn write_capacity(&self) -> usize {
        if self.closed.is_some() {
            0
        } else {
            self.stream.send.capacity()
        }
    }

    /// Limits the replay buffer to `bytes` (within `replay_bound`, and no
    /// less than [`MIN_SEND_WINDOW`] unless the bound is smaller): the
    /// application may have at most this many bytes unacknowledged. A
    /// shell that knows how much its path holds (the bandwidth-delay
    /// product) keeps the window a few times that, so that the bytes in
    /// flight stay in the CPU's cache instead of cycling through
    /// megabytes; the default window is the whole bound. Lowering it drops
    /// nothing: the application waits until acknowledgements bring the
    /// bytes held below it.
    pub fn set_send_window(&mut self, bytes: usize) {
        let bound = self.config.replay_bound;
        self.stream
            .send
            .set_window(bytes.clamp(MIN_SEND_WINDOW.min(bound), bound));
    }

    /// The replay buffer's current limit ([`Session::set_send_window`]).
    pub fn send_window(&self) -> usize {
        self.stream.send.window()
    }

    /// Takes as much of `data` as the replay buffer has room for and
    /// returns how much that was. Nothing taken is ever dropped.
    pub fn write(&mut self, data: &[u8]) -> usize {
        if self.closed.is_some() {
            return 0;
        }
        let n = self.stream.send.write(data);
        self.after_write();
        n
    }

    /// Room to write up to `want` application bytes into, in place — the
    /// replay buffer itself, so that the shell can read from the
    /// application straight into it; empty means backpressure. Report
    /// what was filled with [`Session::commit_write`].
    pub fn write_buf(&mut self, want: usize) -> &mut [u8] {
        if self.closed.is_some() {
            return &mut [];
        }
        self.stream.send.write_buf(want)
    }

    /// `n` bytes of [`Session::write_buf`] were filled: they are written.
    pub fn commit_write(&mut self, n: usize) {
        if self.closed.is_none() {
            self.stream.send.commit(n);
            self.after_write();
        }
    }

    /// The application wrote: once the send window is full, input that
    /// waited for the application must be read for the acknowledgements
    /// in it ([`Session::wants_input`]).
    fn after_write(&mut self) {
        if self.stream.send.capacity() == 0 && self.wants_input() {
            self.resume_input();
        }
    }

    /// Ends our stream after the bytes written so far (half-close).
    pub fn finish(&mut self) {
        if self.closed.is_none() {
            self.stream.send.finish();
        }
    }

    /// Whether [`Session::finish`] was called.
    pub fn is_write_finished(&self) -> bool {
        self.stream.send.is_finished()
    }

    /// Bytes ready for the application, as one contiguous run.
    pub fn peek(&self) -> &[u8] {
        self.stream.recv.peek()
    }

    /// Bytes ready for the application, in total.
    pub fn readable(&self) -> usize {
        self.stream.recv.readable()
    }

    /// The application consumed `n` bytes from [`Session::peek`].
    pub fn consume(&mut self, n: usize) {
        self.stream.recv.consume(n);
        self.after_read();
    }

    /// Copies readable bytes into `out`; returns how many.
    pub fn read(&mut self, out: &mut [u8]) -> usize {
        let n = self.stream.recv.read(out);
        self.after_read();
        n
    }

    /// The peer's stream has ended and every byte of it has been read.
    pub fn is_read_finished(&self) -> bool {
        self.stream.recv.is_complete()
    }

    /// Ends the session deliberately; the peer learns `code` and `message`.
    pub fn close(&mut self, now: Instant, code: CloseCode, message: &str) {
        self.tick(now);
        if self.closed.is_none() {
            let reason = CloseReason::Local {
                code,
                message: message.to_owned(),
            };
            self.shut_down(reason, Some((code, message)), self.current);
        }
    }

    /// The network changed under the current link (an address or a route
    /// came or went): check the link now rather than at the next heartbeat.
    /// A ping goes out at once; if nothing arrives within the probe timeout
    /// (or four round trips, if longer) the link is declared dead.
    pub fn probe_link(&mut self, now: Instant) {
        self.tick(now);
        let patience = self
            .config
            .probe_timeout
            .max(self.stream.rtt.unwrap_or_default() * 4);
        let stamp = self.micros(now);
        let Some(id) = self.current else { return };
        let Some(l) = self.link_mut(id) else { return };
        let Phase::Established(flow) = &mut l.phase else {
            return;
        };
        if flow.probe_deadline.is_none() {
            flow.probe_deadline = Some(now + patience);
            if l.output.len() < OUTPUT_CONTROL_CAP {
                l.output.encode(&Frame::Ping(stamp));
            }
        }
    }

    /// Client: whether the current link has been silent for longer than
    /// a healthy peer ever leaves it — the peer's own heartbeats come
    /// every heartbeat interval — while we read it: for one and a half
    /// heartbeat intervals, or four round trips if longer. A client then
    /// dials a spare link ([`Session::open_spare_link`]) without waiting
    /// for the link timeout: a path that died silently, or a server that
    /// moved, costs about that long instead of the whole timeout.
    pub fn is_stalled(&self, now: Instant) -> bool {
        self.stall_deadline().is_some_and(|t| now >= t)
    }

    /// When the current link counts as stalled if nothing arrives before.
    fn stall_deadline(&self) -> Option<Instant> {
        if self.role != Role::Client || self.closed.is_some() {
            return None;
        }
        let l = self.link(self.current?)?;
        let Phase::Established(flow) = &l.phase else {
            return None;
        };
        if flow.rx_blocked {
            return None;
        }
        let silence =
            (self.config.heartbeat_interval * 3 / 2).max(self.stream.rtt.unwrap_or_default() * 4);
        Some(l.last_rx + silence)
    }

    // ----- time -----

    /// When [`Session::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let c = &self.config;
        let links = self.links.iter().flat_map(|l| {
            let deadlines: [Option<Instant>; 3] = match &l.phase {
                Phase::Established(f) => [
                    (!f.rx_blocked).then(|| {
                        let dead = l.last_rx + c.link_timeout;
                        f.probe_deadline.map_or(dead, |p| p.min(dead))
                    }),
                    Some(f.next_ping),
                    f.ack_due,
                ],
                Phase::Closing { deadline, .. } => [Some(*deadline), None, None],
                _ => [Some(l.opened_at + c.handshake_timeout), None, None],
            };
            deadlines.into_iter().flatten()
        });
        let suspend = (self.closed.is_none() && self.current.is_none())
            .then(|| self.suspended_since + c.suspend_timeout);
        // A stall is no timer of the engine's, but the shell must look
        // when one begins (and only then: once passed, it is not due again).
        let stall = self.stall_deadline().filter(|&t| t > self.now);
        links.chain(suspend).chain(stall).min()
    }

    /// Runs the timers that are due at `now`: heartbeats, delayed acks,
    /// dead links, handshake and suspension timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tick(now);
        let c = &self.config;
        let stamp = self.micros(now);
        let received = self.stream.recv.received();
        let mut dead = Vec::new();
        for l in &mut self.links {
            match &mut l.phase {
                Phase::Established(flow) => {
                    if !flow.rx_blocked && now >= l.last_rx + c.link_timeout {
                        dead.push((l.id, LinkError::Timeout(c.link_timeout)));
                        continue;
                    }
                    if let Some(probe) = flow.probe_deadline
                        && !flow.rx_blocked
                        && now >= probe
                    {
                        let waited = now.saturating_duration_since(l.last_rx);
                        dead.push((l.id, LinkError::Unanswered(waited)));
                        continue;
                    }
                    if now >= flow.next_ping {
                        // A peer that reads nothing gets no more heartbeats.
                        if l.output.len() < OUTPUT_CONTROL_CAP {
                            l.output.encode(&Frame::Ping(stamp));
                        }
                        flow.next_ping = now + c.heartbeat_interval;
                    }
                    if flow.ack_due.is_some_and(|t| now >= t) {
                        send_ack(flow, &mut l.output, received);
                    }
                }
                Phase::Closing {
                    error, deadline, ..
                } => {
                    if now >= *deadline {
                        dead.push((l.id, error.clone()));
                    }
                }
                _ => {
                    if now >= l.opened_at + c.handshake_timeout {
                        dead.push((l.id, HandshakeError::Timeout.into()));
                    }
                }
            }
        }
        for (id, error) in dead {
            self.drop_link(id, error);
        }
        if self.closed.is_none()
            && self.current.is_none()
            && now >= self.suspended_since + self.config.suspend_timeout
        {
            self.shut_down(CloseReason::SuspendTimeout, None, self.current);
        }
    }

    // ----- events -----

    /// The next event, if any. Drain until `None` after every input.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ----- internals -----

    fn tick(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    fn micros(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX)
    }

    fn new_link_id(&mut self) -> LinkId {
        self.next_link += 1;
        LinkId(self.next_link)
    }

    fn index(&self, id: LinkId) -> Option<usize> {
        self.links.iter().position(|l| l.id == id)
    }

    fn link(&self, id: LinkId) -> Option<&Link> {
        self.links.iter().find(|l| l.id == id)
    }

    fn link_mut(&mut self, id: LinkId) -> Option<&mut Link> {
        self.links.iter_mut().find(|l| l.id == id)
    }

    /// Removes a link and reports it down; the session notices if it was
    /// the one carrying the stream.
    fn drop_link(&mut self, id: LinkId, error: LinkError) {
        let Some(i) = self.index(id) else { return };
        let link = self.links.remove(i);
        if self.current == Some(id) {
            self.current = None;
            self.suspended_since = self.now;
            self.last_heard = link.last_rx;
        }
        self.events.push_back(Event::LinkDown { link: id, error });
        // Its queued payloads no longer hold the replay buffer.
        self.release_acked();
    }

    /// Sends its last bytes on a link, then lets it go down with `error`.
    fn close_link_after(&mut self, id: LinkId, bytes: &[u8], error: LinkError) {
        self.close_link_with(id, bytes, error, false);
    }

    /// Sends the session's close frame on a link, then lets it go down.
    fn send_farewell(&mut self, id: LinkId) {
        let (code, message) = self
            .farewell
            .clone()
            .unwrap_or((CloseCode::Normal, String::new()));
        let mut frame = Vec::new();
        wire::encode(
            &Frame::Close {
                code,
                message: &message,
            },
            &mut frame,
        );
        self.close_link_with(id, &frame, LinkError::SessionClosed, true);
    }

    fn close_link_with(&mut self, id: LinkId, bytes: &[u8], error: LinkError, farewell: bool) {
        let deadline = self.now + self.config.handshake_timeout;
        if self.current == Some(id) {
            self.current = None;
            self.suspended_since = self.now;
            let now = self.now;
            self.last_heard = self.link_mut(id).map_or(now, |l| l.last_rx);
        }
        if let Some(l) = self.link_mut(id) {
            l.output.extend(bytes);
            l.input.clear();
            l.phase = Phase::Closing {
                error,
                deadline,
                farewell,
            };
        }
    }

    /// Ends the session: the current link, if `close` says so, carries a
    /// close frame before going down; every other link goes down now.
    fn shut_down(
        &mut self,
        reason: CloseReason,
        close: Option<(CloseCode, &str)>,
        via: Option<LinkId>,
    ) {
        let carrier = via.filter(|_| close.is_some());
        let others: Vec<LinkId> = self.links().filter(|&id| Some(id) != carrier).collect();
        for id in others {
            self.drop_link(id, LinkError::SessionClosed);
        }
        self.farewell = close.map(|(code, message)| (code, message.to_owned()));
        if let Some(id) = carrier {
            self.send_farewell(id);
        }
        self.current = None;
        self.closed = Some(reason.clone());
        self.events.push_back(Event::Closed(reason));
    }

    /// Makes `id` the link that carries the stream.
    fn establish(&mut self, id: LinkId, flow: Flow) {
        if let Some(old) = self.current.filter(|&old| old != id) {
            self.drop_link(old, LinkError::Superseded);
        }
        let Some(l) = self.link_mut(id) else { return };
        l.phase = Phase::Established(flow);
        self.current = Some(id);
        self.links_established += 1;
        self.events.push_back(Event::LinkUp {
            link: id,
            resumed: self.links_established > 1,
        });
    }

    /// Checks a peer's resume point and frees what it says it holds.
    fn resume_from(&mut self, peer_received: u64) -> Result<(), ProtocolViolation> {
        let acked = self.stream.send.acked();
        if peer_received < acked {
            return Err(ProtocolViolation::ResumeBelowAcked {
                resume: peer_received,
                acked,
            });
        }
        self.stream.send.ack(peer_received)?;
        self.release_acked();
        Ok(())
    }

    /// The authenticated peer's resume point contradicts what it
    /// acknowledged before (only a forged ack leads here): bytes it lacks
    /// were freed, so the stream can never be made whole. Ends the session
    /// rather than resuming it wrongly, telling the peer on link `id`.
    fn diverged(&mut self, id: LinkId, violation: ProtocolViolation) {
        if self.closed.is_some() {
            return self.send_farewell(id);
        }
        let message = format!("the byte streams diverged: {violation}");
        let reason = CloseReason::Local {
            code: CloseCode::Error,
            message: message.clone(),
        };
        self.shut_down(reason, Some((CloseCode::Error, &message)), Some(id));
    }

    fn process_input(&mut self, id: LinkId) {
        if let Err(error) = self.try_process_input(id, &mut |_| 0) {
            self.drop_link(id, error);
        }
        self.release_acked();
        self.after_input(id);
    }

    /// Frees acknowledged bytes that no link still has to send.
    fn release_acked(&mut self) {
        let pinned = self.links.iter().filter_map(|l| l.output.pinned()).min();
        self.stream.send.release(pinned);
    }

    /// Runs the link's input through its handshake, then its frames, until
    /// input runs out or must wait.
    fn try_process_input(
        &mut self,
        id: LinkId,
        deliver: &mut dyn FnMut(&[u8]) -> usize,
    ) -> Result<(), LinkError> {
        loop {
            let Some(l) = self.link_mut(id) else {
                return Ok(());
            };
            match &l.phase {
                Phase::ServerAwaitHello => {
                    let Some(hello) =
                        ClientHello::decode(l.input.pending()).map_err(HandshakeError::from)?
                    else {
                        return Ok(());
                    };
                    l.input.consume(CLIENT_HELLO_LEN);
                    if !self.on_client_hello(id, hello)? {
                        return Ok(());
                    }
                }
                Phase::ServerAwaitAuth { .. } => {
                    let Some(auth) =
                        ClientAuth::decode(l.input.pending()).map_err(HandshakeError::from)?
                    else {
                        return Ok(());
                    };
                    l.input.consume(CLIENT_AUTH_LEN);
                    self.on_client_auth(id, auth)?;
                }
                Phase::ClientAwaitServer { .. } => {
                    let Some((reply, used)) =
                        ServerReply::decode(l.input.pending()).map_err(HandshakeError::from)?
                    else {
                        return Ok(());
                    };
                    l.input.consume(used);
                    self.on_server_reply(id, reply)?;
                }
                Phase::Established(_) => {
                    return self.process_frames(id, None, deliver).map(|_| ());
                }
                Phase::Closing { .. } => return Ok(()),
            }
        }
    }

    /// Server: answers a hello. Returns whether the handshake goes on.
    fn on_client_hello(&mut self, id: LinkId, hello: ClientHello) -> Result<bool, LinkError> {
        let ours = self.config.versions;
        let reject = |reason| {
            Reject {
                reason,
                versions: ours,
            }
            .encode()
        };
        let Some(version) = ours.negotiate(hello.versions) else {
            let error = HandshakeError::UnsupportedVersion {
                ours,
                theirs: hello.versions,
            };
            self.close_link_after(id, &reject(RejectReason::UnsupportedVersion), error.into());
            return Ok(false);
        };
        // A closed session still answers while it owes its close: the client
        // may have lost it and resumes to learn the end (see on_client_auth).
        let ended = self.closed.is_some() && self.farewell.is_none();
        if hello.session != self.id || ended {
            let error = HandshakeError::UnknownSession.into();
            self.close_link_after(id, &reject(RejectReason::UnknownSession), error);
            return Ok(false);
        }
        if self.seen_nonces.contains(&hello.nonce) {
            return Err(HandshakeError::ReplayedHello.into());
        }
        if self.seen_nonces.len() == REMEMBERED_NONCES {
            self.seen_nonces.pop_front();
        }
        self.seen_nonces.push_back(hello.nonce);

        let received = self.stream.recv.received();
        let Some(l) = self.links.iter_mut().find(|l| l.id == id) else {
            return Ok(false);
        };
        let server = ServerHello::new(&self.key, &hello, version, l.nonce, received);
        l.output.extend(&server.encode());
        l.phase = Phase::ServerAwaitAuth { hello, server };
        Ok(true)
    }

    /// Server: checks the client's proof and installs the link.
    fn on_client_auth(&mut self, id: LinkId, auth: ClientAuth) -> Result<(), LinkError> {
        let Some(Link {
            phase: Phase::ServerAwaitAuth { hello, server },
            ..
        }) = self.link(id)
        else {
            return Ok(());
        };
        auth.verify(&self.key, hello, server)?;
        let resume_rx = server.received;
        if let Err(violation) = self.resume_from(auth.received) {
            self.diverged(id, violation);
            return Ok(());
        }
        if self.closed.is_some() {
            // Closed already: the hello told the client what arrived; now it
            // learns the end, and the link goes.
            self.send_farewell(id);
            return Ok(());
        }
        let flow = self.new_flow(resume_rx, auth.received);
        self.establish(id, flow);
        Ok(())
    }

    /// Client: checks the server's answer and, if it proves the key,
    /// sends our proof and installs the link.
    fn on_server_reply(&mut self, id: LinkId, reply: ServerReply) -> Result<(), LinkError> {
        let server = match reply {
            ServerReply::Reject(r) => {
                return Err(match r.reason {
                    RejectReason::UnsupportedVersion => HandshakeError::UnsupportedVersion {
                        ours: self.config.versions,
                        theirs: r.versions,
                    },
                    reason => HandshakeError::Rejected(reason),
                }
                .into());
            }
            ServerReply::Hello(server) => server,
        };
        let Some(Link {
            phase: Phase::ClientAwaitServer { hello },
            ..
        }) = self.link(id)
        else {
            return Ok(());
        };
        if !self.config.versions.contains(server.version) {
            return Err(HandshakeError::BadVersionChoice(server.version).into());
        }
        server.verify(&self.key, hello)?;
        let received = self.stream.recv.received();
        let auth = ClientAuth::new(&self.key, hello, &server, received);
        // Our proof goes first: the server reads nothing else before it.
        if let Some(l) = self.link_mut(id) {
            l.output.extend(&auth.encode());
        }
        if let Err(violation) = self.resume_from(server.received) {
            self.diverged(id, violation);
            return Ok(());
        }
        let flow = self.new_flow(received, server.received);
        if self.closed.is_some() {
            // This link exists only to deliver our close.
            self.send_farewell(id);
            return Ok(());
        }
        self.establish(id, flow);
        Ok(())
    }

    fn new_flow(&self, rx_pos: u64, tx_pos: u64) -> Flow {
        Flow {
            rx_pos,
            tx_pos,
            last_ack_sent: rx_pos,
            ack_due: None,
            next_ping: self.now + self.config.heartbeat_interval,
            rx_blocked: false,
            probe_deadline: None,
        }
    }

    /// Decodes and applies frames on an established link: from `fresh`, the
    /// shell's bytes, when given (the link's queued input is then empty),
    /// otherwise from the queued input. Returns how many bytes of `fresh`
    /// were used; the caller keeps the rest.
    fn process_frames(
        &mut self,
        id: LinkId,
        fresh: Option<&[u8]>,
        deliver: &mut dyn FnMut(&[u8]) -> usize,
    ) -> Result<usize, LinkError> {
        let Some(i) = self.index(id) else {
            return Ok(0);
        };
        let now_us = self.micros(self.now);
        let Session {
            links,
            stream,
            events,
            ..
        } = self;
        let Link {
            phase: Phase::Established(flow),
            input,
            output,
            ..
        } = &mut links[i]
        else {
            return Ok(0);
        };
        let mut frames = Frames {
            flow,
            output,
            stream,
            events,
            now_us,
            deliver,
        };
        let (used, result) = match fresh {
            Some(bytes) => frames.apply_all(bytes),
            None => {
                let (used, result) = frames.apply_all(input.pending());
                input.consume(used);
                (0, result)
            }
        };
        let peer_close = result?;
        if let Some((code, message)) = peer_close {
            let reason = if code == CloseCode::Normal
                && self.stream.send.is_complete()
                && self.stream.recv.fin_received()
            {
                if !self.finished_reported {
                    // The last ack and the close came in one read.
                    self.finished_reported = true;
                    self.events.push_back(Event::Finished);
                }
                self.finish_note = message;
                CloseReason::Finished
            } else {
                CloseReason::Peer { code, message }
            };
            self.shut_down(reason, None, self.current);
        }
        Ok(used)
    }

    /// After input on a link: acknowledge what arrived, as the policy says,
    /// and notice whether the session has finished.
    fn after_input(&mut self, id: LinkId) {
        let received = self.stream.recv.received();
        let fin = self.stream.recv.fin_received();
        let (threshold, delay, now) = (self.config.ack_threshold, self.config.ack_delay, self.now);
        if let Some(l) = self.link_mut(id)
            && let Phase::Established(flow) = &mut l.phase
        {
            let unacked = received - flow.last_ack_sent;
            if unacked >= threshold || (fin && unacked > 0) {
                send_ack(flow, &mut l.output, received);
            } else if unacked > 0 && flow.ack_due.is_none() {
                flow.ack_due = Some(now + delay);
            }
        }
        if self.current == Some(id)
            && !self.wants_input()
            && let Some(flow) = self.link_mut(id).and_then(Link::flow)
        {
            flow.rx_blocked = true;
        }
        self.check_finished();
    }

    /// The application read: resume input that waited for it.
    fn after_read(&mut self) {
        if self.wants_input() {
            self.resume_input();
        } else {
            self.check_finished();
        }
    }

    /// Whether the current link should be read now. While received bytes
    /// wait for the application, it is slower than the link: what the
    /// link brings next waits in the transport, where TCP pushes back on
    /// the peer, instead of taking a copy and a wakeup into the receive
    /// buffer for nothing. Except while our own bytes wait for the peer's
    /// acknowledgements (the send window is full): those come on the link,
    /// so it is read, into the receive buffer up to its bound — two
    /// applications that each write before they read must not hold each
    /// other up through us.
    fn wants_input(&self) -> bool {
        !self.stream.recv.is_full()
            && (self.stream.recv.readable() == 0 || self.stream.send.capacity() == 0)
    }

    /// Reads the current link again if input waited ([`Flow::rx_blocked`]),
    /// starting with what is queued.
    fn resume_input(&mut self) {
        let now = self.now;
        let Some(id) = self.current else {
            return self.check_finished();
        };
        let unblocked = self
            .link_mut(id)
            .and_then(Link::flow)
            .is_some_and(|f| std::mem::replace(&mut f.rx_blocked, false));
        if unblocked {
            if let Some(l) = self.link_mut(id) {
                // The peer was not silent; we were not listening.
                l.last_rx = now;
            }
            self.process_input(id);
        } else {
            self.check_finished();
        }
    }

    fn check_finished(&mut self) {
        if self.finished_reported
            || self.closed.is_some()
            || !self.stream.send.is_complete()
            || !self.stream.recv.is_complete()
        {
            return;
        }
        self.finished_reported = true;
        self.events.push_back(Event::Finished);
        // The server confirms the end; the client waits for that close,
        // so neither side leaves the other waiting for a last ack.
        if self.role == Role::Server {
            let note = std::mem::take(&mut self.finish_note);
            self.shut_down(
                CloseReason::Finished,
                Some((CloseCode::Normal, &note)),
                self.current,
            );
            self.finish_note = note;
        }
    }
}

/// What the frames of an established link act on, borrowed apart from the
/// link's input so that frames can be decoded from it in place.
struct Frames<'a> {
    flow: &'a mut Flow,
    output: &'a mut Outbox,
    stream: &'a mut Stream,
    events: &'a mut VecDeque<Event>,
    now_us: u64,
    /// Writes data straight to the application; see `accept_data`.
    deliver: &'a mut dyn FnMut(&[u8]) -> usize,
}

impl Frames<'_> {
    /// Applies the whole frames at the start of `bytes` until they run out,
    /// the receive buffer fills or the peer closes. Returns how many bytes
    /// the applied frames took, and the peer's close if one came.
    fn apply_all(
        &mut self,
        bytes: &[u8],
    ) -> (usize, Result<Option<(CloseCode, String)>, LinkError>) {
        let mut used = 0;
        loop {
            if self.stream.recv.is_full() {
                self.flow.rx_blocked = true;
                return (used, Ok(None));
            }
            let (frame, len) = match wire::decode(&bytes[used..]) {
                Ok(Some(decoded)) => decoded,
                Ok(None) => return (used, Ok(None)),
                Err(e) => return (used, Err(e.into())),
            };
            let control = match self.apply(frame) {
                Ok(control) => control,
                Err(e) => return (used, Err(e)),
            };
            used += len;
            match control {
                Control::None => {}
                Control::PeerFin => self.events.push_back(Event::PeerFinished),
                Control::PeerClose { code, message } => return (used, Ok(Some((code, message)))),
            }
        }
    }

    /// Applies one frame to the stream.
    fn apply(&mut self, frame: Frame<'_>) -> Result<Control, LinkError> {
        let Frames {
            flow,
            output,
            stream,
            now_us,
            deliver,
            ..
        } = self;
        let now_us = *now_us;
        match frame {
            Frame::Data(data) => {
                stream.recv.accept_data(flow.rx_pos, data, *deliver)?;
                flow.rx_pos += data.len() as u64;
            }
            Frame::Fin => {
                let new = stream.recv.accept_fin(flow.rx_pos)?;
                flow.rx_pos += 1;
                if new {
                    return Ok(Control::PeerFin);
                }
            }
            Frame::Ack(n) => {
                stream.send.ack(n)?;
                // Acks may run ahead of what this link resent (the peer got
                // those bytes on an earlier link); never resend below them.
                flow.tx_pos = flow.tx_pos.max(stream.send.acked());
            }
            Frame::Ping(stamp) => {
                if output.len() < OUTPUT_CONTROL_CAP {
                    output.encode(&Frame::Pong(stamp));
                }
            }
            Frame::Pong(stamp) => {
                if stamp <= now_us {
                    stream.rtt = Some(Duration::from_micros(now_us - stamp));
                }
            }
            Frame::Close { code, message } => {
                return Ok(Control::PeerClose {
                    code,
                    message: message.to_owned(),
                });
            }
        }
        Ok(Control::None)
    }
}

/// Encodes an ack of everything received and records it. Acks are
/// cumulative, so when a peer reads nothing the ack waits for the next
/// input instead of piling up.
fn send_ack(flow: &mut Flow, output: &mut Outbox, received: u64) {
    flow.ack_due = None;
    if output.len() < OUTPUT_CONTROL_CAP {
        output.encode(&Frame::Ack(received));
        flow.last_ack_sent = received;
    }
}

/// Queues stream data (and the FIN) on the link's output while there is
/// room, from the link's send position. Payloads are not copied: the
/// outbox refers to the replay buffer. Data that goes out while something
/// received is unacknowledged carries an ACK in front of it, so a peer
/// that sends back as well as receiving needs few ACKs of their own.
fn fill_data(flow: &mut Flow, output: &mut Outbox, send: &SendHalf, received: u64) {
    flow.tx_pos = flow.tx_pos.max(send.acked());
    let mut queued = false;
    while output.len() < OUTPUT_HIGH && flow.tx_pos < send.written() {
        if !queued && received > flow.last_ack_sent {
            send_ack(flow, output, received);
        }
        queued = true;
        let len = (send.written() - flow.tx_pos).min(MAX_DATA as u64) as usize;
        output.push_data(flow.tx_pos, len);
        flow.tx_pos += len as u64;
    }
    if send.is_finished() && flow.tx_pos == send.written() && output.len() < OUTPUT_HIGH {
        output.encode(&Frame::Fin);
        flow.tx_pos += 1;
    }
}
