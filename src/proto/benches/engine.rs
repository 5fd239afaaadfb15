//! Micro-benchmark of the protocol engine alone: two sessions joined by
//! in-memory pipes, driven only through the public API, with the real clock
//! (so delayed acks and heartbeats happen as they would in a shell).
//!
//! It measures what the engine costs per byte and per message, and how many
//! bytes its framing adds on the wire; not what a network or a kernel costs.
//! The one-time handshake (177 bytes per link) is left out of the overhead.
//!
//! Run with `cargo bench -p rock-proto --bench engine`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use rock_proto::{Config, Event, LinkId, Role, Session, SessionId, SessionKey};

/// Bytes one in-memory pipe holds before the sender must wait, like a
/// socket's send and receive buffers together.
const PIPE_CAP: usize = 256 << 10;
/// The bulk run moves at least this much…
const BULK_BYTES: u64 = 1 << 30;
/// …and every run lasts at least this long.
const MIN_TIME: Duration = Duration::from_secs(2);

/// One direction of a transport: bytes written by one engine, not yet read
/// by the other. Counts everything that ever went through it.
struct Pipe {
    buf: Vec<u8>,
    start: usize,
    total: u64,
}

impl Pipe {
    fn new() -> Pipe {
        Pipe {
            buf: Vec::with_capacity(PIPE_CAP),
            start: 0,
            total: 0,
        }
    }

    fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Moves what `from` has to send on `link` into the pipe, as far as
    /// the pipe has room.
    fn fill(&mut self, from: &mut Session, link: LinkId) -> bool {
        let mut moved = false;
        loop {
            let room = PIPE_CAP - self.len();
            let out = from.poll_transmit(link);
            let n = out.len().min(room);
            if n == 0 {
                return moved;
            }
            if self.start > 0 && self.start == self.buf.len() {
                self.buf.clear();
                self.start = 0;
            } else if self.start >= PIPE_CAP {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            self.buf.extend_from_slice(&out[..n]);
            from.advance_transmit(link, n);
            self.total += n as u64;
            moved = true;
        }
    }

    /// Hands the pipe's bytes to `to`, as far as its read window allows.
    fn drain(&mut self, to: &mut Session, link: LinkId, now: Instant) -> bool {
        let mut moved = false;
        loop {
            let n = to.link_read_window(link).min(self.len());
            if n == 0 {
                return moved;
            }
            to.handle_link_input(now, link, &self.buf[self.start..self.start + n]);
            self.start += n;
            moved = true;
        }
    }
}

/// A connected client and server and the transport between them.
struct Pair {
    client: Session,
    server: Session,
    cl: LinkId,
    sl: LinkId,
    to_server: Pipe,
    to_client: Pipe,
}

impl Pair {
    /// Two sessions with the default configuration, handshake done.
    fn connected() -> Pair {
        let now = Instant::now();
        let id = SessionId([0x5a; 16]);
        let key = || SessionKey([0x42; 32]);
        let mut client = Session::new(Role::Client, id, key(), Config::default(), now).unwrap();
        let mut server = Session::new(Role::Server, id, key(), Config::default(), now).unwrap();
        let cl = client.open_link(now, [1; 32]);
        let sl = server.accept_link(now, [2; 32]);
        let mut pair = Pair {
            client,
            server,
            cl,
            sl,
            to_server: Pipe::new(),
            to_client: Pipe::new(),
        };
        while pair.step(now) {}
        let mut up = 0;
        for s in [&mut pair.client, &mut pair.server] {
            while let Some(e) = s.poll_event() {
                match e {
                    Event::LinkUp { .. } => up += 1,
                    other => panic!("unexpected event during the handshake: {other:?}"),
                }
            }
        }
        assert_eq!(up, 2, "the handshake did not complete");
        pair
    }

    /// Bytes on the wire so far, both directions.
    fn wire(&self) -> u64 {
        self.to_server.total + self.to_client.total
    }

    /// Moves bytes both ways once; returns whether anything moved.
    fn step(&mut self, now: Instant) -> bool {
        let a = self.to_server.fill(&mut self.client, self.cl);
        let b = self.to_server.drain(&mut self.server, self.sl, now);
        let c = self.to_client.fill(&mut self.server, self.sl);
        let d = self.to_client.drain(&mut self.client, self.cl, now);
        a | b | c | d
    }

    /// Runs due timers and fails loudly on any event a healthy run never
    /// sees.
    fn housekeeping(&mut self, now: Instant) {
        for s in [&mut self.client, &mut self.server] {
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.handle_timeout(now);
            }
            if let Some(e) = s.poll_event() {
                panic!("unexpected event: {e:?}");
            }
        }
    }

    /// Moves everything until both sides have nothing left to say and
    /// every byte written has been acknowledged.
    fn settle(&mut self, sink: &mut impl FnMut(&mut Session)) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let now = Instant::now();
            let moved = self.step(now);
            sink(&mut self.server);
            sink(&mut self.client);
            self.housekeeping(now);
            let acked = self.client.stats().acked == self.client.stats().written
                && self.server.stats().acked == self.server.stats().written;
            if !moved && acked {
                return;
            }
            assert!(now < deadline, "the pair did not settle");
        }
    }
}

/// Reads everything the application has been given, without copying.
fn read_all(s: &mut Session) -> u64 {
    let mut total = 0;
    loop {
        let run = black_box(s.peek()).len();
        if run == 0 {
            return total;
        }
        s.consume(run);
        total += run as u64;
    }
}

/// One measured run.
struct Outcome {
    name: &'static str,
    payload: u64,
    wire: u64,
    messages: u64,
    elapsed: Duration,
}

impl Outcome {
    fn mib_per_s(&self) -> f64 {
        self.payload as f64 / (1 << 20) as f64 / self.elapsed.as_secs_f64()
    }

    fn msgs_per_s(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }

    fn overhead_pct(&self) -> f64 {
        (self.wire - self.payload) as f64 * 100.0 / self.payload as f64
    }
}

/// (a)+(b): 64 KiB application writes, client to server.
fn bulk() -> Outcome {
    let mut pair = Pair::connected();
    let data: Vec<u8> = (0..64 << 10).map(|i| (i * 31 % 251) as u8).collect();
    let wire0 = pair.wire();
    let (mut written, mut read, mut writes) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    let mut now = start;
    while read < BULK_BYTES || now - start < MIN_TIME {
        let n = pair.client.write(&data);
        if n > 0 {
            written += n as u64;
            writes += 1;
        }
        // Deliver, read, repeat until the pipe is empty.
        loop {
            let moved = pair.step(now);
            let got = read_all(&mut pair.server);
            read += got;
            if !moved && got == 0 {
                break;
            }
        }
        now = Instant::now();
        pair.housekeeping(now);
    }
    pair.settle(&mut |s| read += read_all(s));
    let elapsed = start.elapsed();
    assert_eq!(read, written, "bytes lost or duplicated");
    Outcome {
        name: "64 KiB writes, one way",
        payload: written,
        wire: pair.wire() - wire0,
        messages: writes,
        elapsed,
    }
}

/// (c): 1-byte writes, each sent and read before the next, as keystrokes.
/// With `echo`, the server writes every byte back and the client reads it
/// before typing the next: a full round trip per keystroke.
fn tiny(echo: bool, per_poll: usize) -> Outcome {
    let mut pair = Pair::connected();
    let wire0 = pair.wire();
    let (mut payload, mut messages) = (0u64, 0u64);
    let start = Instant::now();
    let mut now = start;
    let mut check = 0u32;
    while now - start < MIN_TIME {
        for _ in 0..per_poll {
            assert_eq!(pair.client.write(b"k"), 1);
        }
        payload += per_poll as u64;
        messages += per_poll as u64;
        pair.step(now);
        let got = read_all(&mut pair.server);
        assert_eq!(got, per_poll as u64);
        if echo {
            for _ in 0..per_poll {
                assert_eq!(pair.server.write(b"k"), 1);
            }
            payload += per_poll as u64;
            pair.step(now);
            assert_eq!(read_all(&mut pair.client), per_poll as u64);
        }
        // Reading the clock every 64 rounds is often enough for the 20 ms
        // delayed ack and the 1 s heartbeat, and keeps it out of the figure.
        check += 1;
        if check.is_multiple_of(64) {
            now = Instant::now();
            pair.housekeeping(now);
        }
    }
    pair.settle(&mut |s| {
        read_all(s);
    });
    let elapsed = start.elapsed();
    let name = match (echo, per_poll) {
        (false, 1) => "1-byte writes, one way",
        (true, 1) => "1-byte writes, echoed",
        _ => "1-byte writes, 16 per poll",
    };
    Outcome {
        name,
        payload,
        wire: pair.wire() - wire0,
        messages,
        elapsed,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is understood.
    println!("rock-proto engine benchmark (release build, real clock, Config::default())");
    println!("client and server sessions joined by in-memory pipes of {PIPE_CAP} bytes;");
    println!("overhead = (all bytes on the wire, both directions - payload) / payload,");
    println!("excluding the one-time 177-byte handshake.\n");

    let runs = [bulk(), tiny(false, 1), tiny(true, 1), tiny(false, 16)];
    println!(
        "{:<28} {:>10} {:>12} {:>14} {:>12} {:>10}",
        "scenario", "payload", "MiB/s", "writes/s", "wire B", "overhead"
    );
    for r in &runs {
        println!(
            "{:<28} {:>10} {:>12.1} {:>14.0} {:>12} {:>9.3}%",
            r.name,
            human(r.payload),
            r.mib_per_s(),
            r.msgs_per_s(),
            r.wire,
            r.overhead_pct()
        );
    }
    println!("\nwrites/s counts application writes (for echo: keystrokes, each a round trip).");
}

fn human(n: u64) -> String {
    if n >= 1 << 30 {
        format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64)
    } else if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    } else {
        format!("{n} B")
    }
}
