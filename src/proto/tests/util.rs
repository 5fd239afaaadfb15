//! The two-engine harness: a client and a server session joined by a
//! simulated transport, a virtual clock, and faults injected by editing the
//! transport. Deterministic: nonces come from a seeded counter, time only
//! moves when a test moves it.
//!
//! A transport carries bytes in order and loses nothing — until it is cut:
//! each direction may be given a budget of bytes, after which everything is
//! lost. A cut transport is either *reset* (both ends are told at once, like
//! an RST) or *blackholed* (nobody is told; the engines must notice by their
//! own timeouts).

use std::collections::VecDeque;
use std::io::IoSlice;
use std::time::{Duration, Instant};

use crate::{CloseCode, Config, Event, LinkId, Nonce, Role, Session, SessionId, SessionKey};

pub const ID: SessionId = SessionId([0x5e; 16]);

pub fn key() -> SessionKey {
    SessionKey([0x42; 32])
}

/// The byte an application writes at stream position `pos`; the salt tells
/// the two directions apart, so misdelivery is caught too.
pub fn pattern(pos: u64, salt: u64) -> u8 {
    let mut z = pos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as u8
}

/// One end: its session, what its application wrote and read, and what it
/// was told.
pub struct Side {
    pub session: Session,
    salt: u64,
    /// Bytes the application wrote (and the engine took).
    pub written: u64,
    /// Bytes the application read, in order.
    pub delivered: Vec<u8>,
    /// `PeerFinished` events, with how many bytes were delivered or readable
    /// when each came.
    pub fins: Vec<u64>,
    pub events: Vec<Event>,
    /// The transport's link id on this side, while the engine has not
    /// reported it down.
    pub link: Option<LinkId>,
}

impl Side {
    fn new(role: Role, config: Config, now: Instant, salt: u64) -> Side {
        Side {
            session: Session::new(role, ID, key(), config, now).expect("valid test config"),
            salt,
            written: 0,
            delivered: Vec::new(),
            fins: Vec::new(),
            events: Vec::new(),
            link: None,
        }
    }

    /// Writes up to `len` pattern bytes; returns how many the engine took.
    /// Every other write fills the engine's buffer in place, as the relay
    /// does.
    pub fn write(&mut self, len: usize) -> usize {
        let (start, salt) = (self.written, self.salt);
        let n = if start % 2 == 0 {
            let buf = self.session.write_buf(len);
            for (i, byte) in buf.iter_mut().enumerate() {
                *byte = pattern(start + i as u64, salt);
            }
            let n = buf.len();
            self.session.commit_write(n);
            n
        } else {
            let data: Vec<u8> = (0..len as u64).map(|i| pattern(start + i, salt)).collect();
            self.session.write(&data)
        };
        self.written += n as u64;
        n
    }

    /// Reads up to `max` bytes into `delivered`.
    pub fn read(&mut self, max: usize) -> usize {
        let mut buf = vec![0u8; max.min(self.session.readable())];
        let n = self.session.read(&mut buf);
        self.delivered.extend_from_slice(&buf[..n]);
        n
    }

    /// Drains the engine's events; forgets the transport when it went down.
    fn drain_events(&mut self) -> bool {
        let mut any = false;
        while let Some(e) = self.session.poll_event() {
            any = true;
            match &e {
                Event::LinkDown { link, .. } if Some(*link) == self.link => self.link = None,
                Event::PeerFinished => self
                    .fins
                    .push(self.delivered.len() as u64 + self.session.readable() as u64),
                _ => {}
            }
            self.events.push(e);
        }
        any
    }

    /// Checks that what was delivered is exactly what `peer` wrote, as far
    /// as it goes: no byte lost, duplicated, reordered or altered.
    pub fn assert_delivered_prefix_of(&self, peer: &Side) {
        assert!(
            self.delivered.len() as u64 <= peer.written,
            "delivered {} bytes but the peer wrote only {}",
            self.delivered.len(),
            peer.written
        );
        if let Some(i) =
            (0..self.delivered.len()).find(|&i| self.delivered[i] != pattern(i as u64, peer.salt))
        {
            panic!("byte {i} delivered wrong");
        }
    }
}

/// One direction of a transport.
#[derive(Default)]
struct Pipe {
    queue: VecDeque<u8>,
    /// Bytes still carried before the cut; `None` means no cut planned.
    budget: Option<usize>,
    /// Everything that entered the pipe, for replay attacks.
    record: Vec<u8>,
}

impl Pipe {
    /// Takes bytes from a sender; returns whether the cut point was reached.
    fn push(&mut self, bytes: &[u8]) -> bool {
        let take = self.budget.map_or(bytes.len(), |b| b.min(bytes.len()));
        self.queue.extend(&bytes[..take]);
        self.record.extend_from_slice(&bytes[..take]);
        if let Some(b) = &mut self.budget {
            *b -= take;
            return *b == 0 && take < bytes.len();
        }
        false
    }
}

/// What happens once a transport's budget runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Both ends are told the transport failed.
    Reset,
    /// Nobody is told; bytes just stop.
    Blackhole,
}

struct Transport {
    client: LinkId,
    server: LinkId,
    to_server: Pipe,
    to_client: Pipe,
    cut: Cut,
    dead: bool,
}

/// Two engines, one transport at a time, one clock.
pub struct Pair {
    pub now: Instant,
    pub client: Side,
    pub server: Side,
    transport: Option<Transport>,
    /// Transports the client abandoned while the server still believes in
    /// them: they go on delivering what they held, a little each step.
    zombies: Vec<Transport>,
    /// Recordings of earlier transports: (client → server, server → client).
    pub recordings: Vec<(Vec<u8>, Vec<u8>)>,
    nonces: u64,
    /// Whether `drive` reconnects a client that lost its transport.
    pub auto_reconnect: bool,
}

impl Pair {
    pub fn new(config: Config) -> Pair {
        Pair::with_configs(config.clone(), config)
    }

    pub fn with_configs(client: Config, server: Config) -> Pair {
        let now = Instant::now();
        Pair {
            now,
            client: Side::new(Role::Client, client, now, 1),
            server: Side::new(Role::Server, server, now, 2),
            transport: None,
            zombies: Vec::new(),
            recordings: Vec::new(),
            nonces: 0,
            auto_reconnect: true,
        }
    }

    pub fn nonce(&mut self) -> Nonce {
        self.nonces += 1;
        let mut n = [0u8; 32];
        for (i, b) in n.iter_mut().enumerate() {
            *b = pattern(self.nonces * 32 + i as u64, 77);
        }
        n
    }

    /// Opens a new transport: the client connects, the server accepts. The
    /// old transport, if any, is dropped with whatever it still carried;
    /// its ends are told only if `reset_old`.
    pub fn connect(&mut self) {
        self.drop_transport(true);
        let (cn, sn) = (self.nonce(), self.nonce());
        let client = self.client.session.open_link(self.now, cn);
        let server = self.server.session.accept_link(self.now, sn);
        self.client.link = Some(client);
        self.server.link = Some(server);
        self.transport = Some(Transport {
            client,
            server,
            to_server: Pipe::default(),
            to_client: Pipe::default(),
            cut: Cut::Reset,
            dead: false,
        });
    }

    /// The client gives up on the current transport without the server
    /// knowing, and connects anew; the old transport keeps delivering the
    /// bytes it held to the server, interleaved with the new handshake.
    pub fn abandon(&mut self) {
        if let Some(mut t) = self.transport.take() {
            // What the client wrote before giving up is in the network.
            if !t.dead {
                pump(&mut self.client.session, t.client, &mut t.to_server);
            }
            self.client.session.link_failed(self.now, t.client);
            self.zombies.push(t);
        }
        self.connect();
    }

    /// Ends the current transport now; with `tell`, both ends learn it.
    pub fn drop_transport(&mut self, tell: bool) {
        if let Some(t) = self.transport.take() {
            if tell {
                self.client.session.link_failed(self.now, t.client);
                self.server.session.link_failed(self.now, t.server);
            }
            self.recordings
                .push((t.to_server.record, t.to_client.record));
        }
    }

    /// Plans a cut: the transport carries `to_server` and `to_client` more
    /// bytes, then `cut` happens.
    pub fn plan_cut(&mut self, to_server: usize, to_client: usize, cut: Cut) {
        if let Some(t) = &mut self.transport {
            t.to_server.budget = Some(to_server);
            t.to_client.budget = Some(to_client);
            t.cut = cut;
        }
    }

    /// Moves everything that can move without time passing. Returns whether
    /// anything happened.
    pub fn step(&mut self) -> bool {
        let mut moved = self.client.drain_events() | self.server.drain_events();
        if let Some(t) = &mut self.transport {
            if t.dead {
                // Cut: the ends keep writing into the void.
                moved |= sink(&mut self.client.session, t.client);
                moved |= sink(&mut self.server.session, t.server);
            } else {
                let a = pump(&mut self.client.session, t.client, &mut t.to_server);
                let b = pump(&mut self.server.session, t.server, &mut t.to_client);
                moved |= a.0 | b.0;
                if a.1 || b.1 {
                    t.dead = true;
                }
                moved |= deliver(&mut self.server, t.server, &mut t.to_server, self.now);
                moved |= deliver(&mut self.client, t.client, &mut t.to_client, self.now);
            }
        }
        let server_links: Vec<LinkId> = self.server.session.links().collect();
        self.zombies.retain(|z| server_links.contains(&z.server));
        for z in &mut self.zombies {
            moved |= sink(&mut self.server.session, z.server);
            let window = self.server.session.link_read_window(z.server).min(1000);
            let n = window.min(z.to_server.queue.len());
            if n > 0 {
                let bytes: Vec<u8> = z.to_server.queue.drain(..n).collect();
                self.server
                    .session
                    .handle_link_input(self.now, z.server, &bytes);
                moved = true;
            }
        }
        if self
            .transport
            .as_ref()
            .is_some_and(|t| t.dead && t.cut == Cut::Reset)
        {
            self.drop_transport(true);
            moved = true;
        }
        if self.transport.is_some() && (self.client.link.is_none() || self.server.link.is_none()) {
            // One engine gave up on the transport and closed its end; the
            // other end sees the connection fail.
            self.drop_transport(true);
        }
        moved |= self.client.drain_events() | self.server.drain_events();
        moved
    }

    /// Steps until nothing moves, reconnecting the client when it has no
    /// transport; the applications read nothing.
    pub fn settle(&mut self) {
        self.settle_with(false);
    }

    /// Like [`Pair::settle`], with both applications reading everything.
    pub fn settle_reading(&mut self) {
        self.settle_with(true);
    }

    fn settle_with(&mut self, reading: bool) {
        for _ in 0..100_000 {
            let mut moved = self.step();
            if reading {
                moved |= self.client.read(usize::MAX) > 0;
                moved |= self.server.read(usize::MAX) > 0;
            }
            if self.auto_reconnect
                && self.transport.is_none()
                && self.client.session.close_reason().is_none()
            {
                self.connect();
                moved = true;
            }
            if !moved {
                return;
            }
        }
        panic!("the pair did not settle");
    }

    /// Moves the clock to the earliest timer of either engine (at most
    /// `limit` ahead) and runs the timers.
    pub fn advance_to_next_timer(&mut self, limit: Duration) {
        let next = [
            self.client.session.poll_timeout(),
            self.server.session.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        let target = next.map_or(self.now + limit, |t| t.min(self.now + limit));
        self.advance(target.saturating_duration_since(self.now));
    }

    /// Moves the clock by `d` and runs whatever timers are due.
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        self.client.session.handle_timeout(self.now);
        self.server.session.handle_timeout(self.now);
    }

    /// Settles and lets virtual time run, up to `max`, until `done` holds.
    pub fn run_until(&mut self, max: Duration, mut done: impl FnMut(&Pair) -> bool) -> bool {
        let end = self.now + max;
        loop {
            self.settle_reading();
            if done(self) {
                return true;
            }
            if self.now >= end {
                return false;
            }
            self.advance_to_next_timer(end.saturating_duration_since(self.now));
        }
    }

    /// Both applications finish writing; the pair runs until the session
    /// has finished on both sides and closed.
    pub fn finish_both(&mut self) {
        self.client.session.finish();
        self.server.session.finish();
        let ok = self.run_until(Duration::from_secs(600), |p| {
            p.client.session.close_reason().is_some() && p.server.session.close_reason().is_some()
        });
        assert!(
            ok,
            "the session did not close: client {:?}, server {:?}",
            self.client.session.stats(),
            self.server.session.stats()
        );
    }

    /// Closes the session from the client with a reason.
    pub fn close_client(&mut self, code: CloseCode) {
        self.client.session.close(self.now, code, "test");
    }
}

/// Writes what the engine has for `link` into `pipe`, as a shell's vectored
/// write would (a few slices at a time); returns (moved, cut).
fn pump(session: &mut Session, link: LinkId, pipe: &mut Pipe) -> (bool, bool) {
    let mut slices = [IoSlice::new(&[]); 3];
    let count = session.poll_transmit_vectored(link, &mut slices);
    let out: Vec<u8> = slices[..count]
        .iter()
        .flat_map(|s| s.iter().copied())
        .collect();
    if out.is_empty() {
        return (false, false);
    }
    let cut = pipe.push(&out);
    session.advance_transmit(link, out.len());
    (true, cut)
}

/// Everything `session` has to send on `link` now, marked as written.
pub fn transmit_all(session: &mut Session, link: LinkId) -> Vec<u8> {
    let mut all = Vec::new();
    loop {
        let out = session.poll_transmit(link);
        if out.is_empty() {
            return all;
        }
        let n = out.len();
        all.extend_from_slice(out);
        session.advance_transmit(link, n);
    }
}

/// Lets the engine write into a dead transport; the bytes vanish.
fn sink(session: &mut Session, link: LinkId) -> bool {
    let n = session.poll_transmit(link).len();
    session.advance_transmit(link, n);
    n > 0
}

/// Hands queued bytes to the engine, as much as its read window allows.
/// The application takes some data straight from the link input, as the
/// relay's does: all of it, half, or none, varying with what it has read.
fn deliver(side: &mut Side, link: LinkId, pipe: &mut Pipe, now: Instant) -> bool {
    let window = side.session.link_read_window(link);
    let n = window.min(pipe.queue.len());
    if n == 0 {
        return false;
    }
    let bytes: Vec<u8> = pipe.queue.drain(..n).collect();
    let delivered = &mut side.delivered;
    let mut direct = |data: &[u8]| {
        let take = match delivered.len() % 3 {
            0 => data.len(),
            1 => data.len() / 2,
            _ => 0,
        };
        delivered.extend_from_slice(&data[..take]);
        take
    };
    side.session
        .handle_link_input_with(now, link, &bytes, &mut direct);
    true
}
