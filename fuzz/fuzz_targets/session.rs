//! Fuzzes a whole session engine with a hostile peer. The input is a small
//! program: its first byte picks the engine under test, the rest is a list
//! of operations — bytes from the peer in chunks of any size, the clock
//! moving, application reads, writes, finish and close, partial transmits,
//! new and failed links, and a correctly authenticated handshake message
//! from the peer (the fuzzer cannot forge a proof, but it chooses the
//! nonces, versions and resume counts that go into one). Nothing may panic, and the engine's promises must
//! hold throughout: every link it hands out goes down at most once, the
//! session closes and finishes at most once, and memory stays in its bounds.
//!
//! Engines under test (first byte, modulo 4):
//! 0. a server after `accept_link`, peer bytes from the first byte on;
//! 1. a client after `open_link`, likewise;
//! 2. a server whose first link finished a real handshake with a real
//!    client, the fuzzer then speaking for that client;
//! 3. a client in the same position, the fuzzer speaking for the server.

#![no_main]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rock_proto::handshake::{
    ClientAuth, ClientHello, SUPPORTED_VERSIONS, ServerHello, ServerReply,
};
use rock_proto::wire::MAX_DATA;
use rock_proto::{
    CloseCode, Config, Event, LinkId, Role, Session, SessionId, SessionKey, VersionRange,
};

const ID: SessionId = SessionId([0x5e; 16]);

fn key() -> SessionKey {
    SessionKey([0x42; 32])
}

/// Reads the fuzz input front to back; runs dry with zeros.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u16(&mut self) -> usize {
        let hi = self.byte().unwrap_or(0) as usize;
        let lo = self.byte().unwrap_or(0) as usize;
        hi << 8 | lo
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

/// The engine under test and what it has promised so far.
struct Harness {
    s: Session,
    now: Instant,
    /// The link the fuzzer's bytes go to.
    target: Option<LinkId>,
    /// The first bytes the target link sent, for the peer's handshake.
    sent: Vec<u8>,
    handed_out: HashSet<LinkId>,
    down: HashSet<LinkId>,
    closed: bool,
    finished: bool,
    /// Whether every link's output is written out after each operation.
    auto_transmit: bool,
    nonces: u64,
}

impl Harness {
    fn new(s: Session, now: Instant, link: LinkId) -> Harness {
        let mut h = Harness {
            s,
            now,
            target: Some(link),
            sent: Vec::new(),
            handed_out: HashSet::from([link]),
            down: HashSet::new(),
            closed: false,
            finished: false,
            auto_transmit: true,
            nonces: 100,
        };
        h.check();
        h
    }

    fn nonce(&mut self, input: &mut Input<'_>) -> [u8; 32] {
        // Usually fresh; sometimes chosen by the input, so that it repeats.
        let mut n = [0u8; 32];
        match input.byte() {
            Some(b) if b & 1 == 1 => n[0] = b,
            _ => {
                self.nonces += 1;
                n[..8].copy_from_slice(&self.nonces.to_be_bytes());
                n[31] = 0xff;
            }
        }
        n
    }

    /// Drains events, checking that each keeps the engine's promises.
    fn drain_events(&mut self) {
        while let Some(e) = self.s.poll_event() {
            match e {
                Event::LinkDown { link, .. } => {
                    assert!(self.handed_out.contains(&link), "{link} never handed out");
                    assert!(self.down.insert(link), "{link} reported down twice");
                    if self.target == Some(link) {
                        self.set_target(None);
                    }
                }
                Event::LinkUp { link, .. } => {
                    assert!(self.handed_out.contains(&link), "{link} never handed out");
                    assert!(!self.down.contains(&link), "{link} up after down");
                }
                Event::Closed(_) => {
                    assert!(!self.closed, "closed twice");
                    self.closed = true;
                }
                Event::Finished => {
                    assert!(!self.finished, "finished twice");
                    self.finished = true;
                }
                Event::PeerFinished => {}
            }
        }
    }

    /// Drains the outputs as a shell would and checks the invariants.
    fn check(&mut self) {
        self.drain_events();
        if self.auto_transmit {
            let links: Vec<LinkId> = self.s.links().collect();
            for l in links {
                self.transmit(l, usize::MAX);
            }
            // Writing out its last bytes lets a closing link go.
            self.drain_events();
        }
        for l in self.s.links() {
            assert!(!self.down.contains(&l), "{l} listed after it went down");
        }
        let st = self.s.stats();
        let c = self.s.config();
        assert!(st.replay_buffered <= c.replay_bound);
        assert!(st.readable < c.receive_bound + MAX_DATA);
        assert!(st.acked <= st.written + 1);
        let _ = self.s.poll_timeout();
    }

    /// The shell writes up to `max` bytes of what `l` has to send.
    fn transmit(&mut self, l: LinkId, max: usize) {
        let out = self.s.poll_transmit(l);
        let n = out.len().min(max);
        if Some(l) == self.target && self.sent.len() < 4096 {
            self.sent.extend_from_slice(&out[..n]);
        }
        self.s.advance_transmit(l, n);
    }

    fn set_target(&mut self, l: Option<LinkId>) {
        if l != self.target {
            self.target = l;
            self.sent.clear();
        }
    }

    /// What the target link has sent, followed by what it would send now.
    fn history(&mut self) -> Option<(LinkId, Vec<u8>)> {
        let l = self.target?;
        let mut h = self.sent.clone();
        h.extend_from_slice(self.s.poll_transmit(l));
        Some((l, h))
    }

    /// A resume count for the peer to claim, near the interesting values.
    fn count(&self, input: &mut Input<'_>) -> u64 {
        let st = self.s.stats();
        match input.byte().unwrap_or(0) % 6 {
            0 => 0,
            1 => st.written,
            2 => st.written + 1,
            3 => st.acked,
            4 => st.acked.saturating_sub(1),
            _ => u64::from_be_bytes(std::array::from_fn(|_| input.byte().unwrap_or(0))),
        }
    }

    /// The peer sends its next handshake message, correctly proven.
    fn handshake_as_peer(&mut self, input: &mut Input<'_>) {
        let b = input.byte().unwrap_or(0);
        let versions = if b & 1 == 0 {
            SUPPORTED_VERSIONS
        } else {
            VersionRange {
                min: input.u16() as u16,
                max: input.u16() as u16,
            }
        };
        match self.s.role() {
            Role::Server => {
                // A client hello, then the proof once the server answered.
                let hello = ClientHello {
                    versions,
                    session: if b & 2 == 0 { ID } else { SessionId([b; 16]) },
                    nonce: self.nonce(input),
                };
                self.feed(&hello.encode());
                let Some((_, history)) = self.history() else {
                    return;
                };
                if let Ok(Some((ServerReply::Hello(sh), _))) = ServerReply::decode(&history) {
                    let received = self.count(input);
                    let auth = ClientAuth::new(&key(), &hello, &sh, received);
                    self.feed(&auth.encode());
                }
            }
            Role::Client => {
                let Some((_, history)) = self.history() else {
                    return;
                };
                let Ok(Some(hello)) = ClientHello::decode(&history) else {
                    return;
                };
                let version = if b & 1 == 0 { 1 } else { versions.max };
                let nonce = self.nonce(input);
                let received = self.count(input);
                let sh = ServerHello::new(&key(), &hello, version, nonce, received);
                self.feed(&sh.encode());
            }
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        if let Some(l) = self.target {
            self.s.handle_link_input(self.now, l, bytes);
        }
    }

    /// Bytes from the peer, never more than the read window allows.
    fn feed_chunk(&mut self, input: &mut Input<'_>, n: usize) {
        let Some(l) = self.target else {
            input.take(n);
            return;
        };
        let window = self.s.link_read_window(l);
        let chunk = input.take(n.min(window));
        self.s.handle_link_input(self.now, l, chunk);
    }

    fn run(&mut self, input: &mut Input<'_>) {
        while let Some(op) = input.byte() {
            match op % 11 {
                0..=2 => {
                    let n = input.byte().unwrap_or(0) as usize + 1;
                    self.feed_chunk(input, n);
                }
                3 => {
                    let n = input.u16() + 1;
                    self.feed_chunk(input, n);
                }
                4 => {
                    let b = input.byte().unwrap_or(0);
                    let unit = match b % 8 {
                        0 => Duration::from_millis(1),
                        1 => Duration::from_millis(20),
                        2 => Duration::from_millis(500),
                        3 => Duration::from_secs(1),
                        4 => Duration::from_secs(6),
                        5 => Duration::from_secs(10),
                        6 => Duration::from_secs(3600),
                        _ => Duration::from_secs(72 * 3600),
                    };
                    self.now += unit * (u32::from(b >> 3) + 1);
                    // As a shell would, and also when nothing is due.
                    if b & 0x80 == 0 || self.s.poll_timeout().is_some_and(|t| t <= self.now) {
                        self.s.handle_timeout(self.now);
                    }
                }
                5 => {
                    let b = input.byte().unwrap_or(0);
                    match b % 4 {
                        0 | 1 => {
                            let len = (b as usize >> 2) * 1021 + 1;
                            let data = vec![b; len];
                            let n = self.s.write(&data);
                            assert!(n <= len);
                        }
                        2 => self.s.finish(),
                        _ => {
                            let code = match b >> 2 {
                                0 => CloseCode::Normal,
                                1 => CloseCode::Aborted,
                                2 => CloseCode::Error,
                                c => CloseCode::Other(c),
                            };
                            self.s.close(self.now, code, "fuzz");
                        }
                    }
                }
                6 => {
                    let b = input.byte().unwrap_or(0);
                    if b & 1 == 0 {
                        let mut buf = vec![0u8; (b as usize) * 512 + 1];
                        self.s.read(&mut buf);
                    } else {
                        let run = self.s.peek().len();
                        self.s.consume(run.min(b as usize * 4096));
                    }
                }
                7 => {
                    // A partial write by the shell, and auto-transmit on/off.
                    let b = input.byte().unwrap_or(0);
                    self.auto_transmit = b & 1 == 0;
                    let nth = self.s.links().nth(usize::from(b >> 5));
                    if let Some(l) = nth {
                        self.transmit(l, usize::from(b >> 1) * 7);
                    }
                }
                8 => {
                    let nonce = self.nonce(input);
                    let l = match self.s.role() {
                        Role::Client => self.s.open_link(self.now, nonce),
                        Role::Server => self.s.accept_link(self.now, nonce),
                    };
                    assert!(self.handed_out.insert(l), "{l} handed out twice");
                    self.set_target(Some(l));
                }
                9 => {
                    let b = input.byte().unwrap_or(0);
                    if b & 1 == 0 {
                        if let Some(l) = self.target {
                            self.s.link_failed(self.now, l);
                        }
                    } else {
                        // Speak on another live link from now on.
                        let nth = self.s.links().nth(usize::from(b >> 1));
                        self.set_target(nth);
                    }
                }
                _ => self.handshake_as_peer(input),
            }
            self.check();
        }
        // Whatever is left goes in whole, then time runs out.
        self.feed(&[]);
        self.now += Duration::from_secs(100 * 3600);
        self.s.handle_timeout(self.now);
        self.check();
    }
}

/// A client and a server joined until their first link is up; returns the
/// one under test and its link.
fn established(role: Role, now: Instant) -> (Session, LinkId) {
    let config = Config::default;
    let mut c = Session::new(Role::Client, ID, key(), config(), now).expect("valid config");
    let mut s = Session::new(Role::Server, ID, key(), config(), now).expect("valid config");
    let cl = c.open_link(now, [1; 32]);
    let sl = s.accept_link(now, [2; 32]);
    loop {
        let to_s = c.poll_transmit(cl).to_vec();
        c.advance_transmit(cl, to_s.len());
        s.handle_link_input(now, sl, &to_s);
        let to_c = s.poll_transmit(sl).to_vec();
        s.advance_transmit(sl, to_c.len());
        c.handle_link_input(now, cl, &to_c);
        if to_s.is_empty() && to_c.is_empty() {
            break;
        }
    }
    assert_eq!(c.current_link(), Some(cl));
    assert_eq!(s.current_link(), Some(sl));
    match role {
        Role::Client => (c, cl),
        Role::Server => (s, sl),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let now = Instant::now();
    let mode = input.byte().unwrap_or(0) % 4;
    let (session, link) = match mode {
        0 => {
            let mut s = Session::new(Role::Server, ID, key(), Config::default(), now)
                .expect("valid config");
            let l = s.accept_link(now, [2; 32]);
            (s, l)
        }
        1 => {
            let mut s = Session::new(Role::Client, ID, key(), Config::default(), now)
                .expect("valid config");
            let l = s.open_link(now, [1; 32]);
            (s, l)
        }
        2 => established(Role::Server, now),
        _ => established(Role::Client, now),
    };
    let mut h = Harness::new(session, now, link);
    h.run(&mut input);
});
