//! CPU cost of the relay itself: how many CPU-seconds the client relay and
//! the server relay each spend per GiB they carry, split into user and
//! kernel time, beside two bare copy loops laid out the same way.
//!
//! ```sh
//! cargo bench --bench relay            # 1 GiB, three runs each; then the echo
//! ROCK_BENCH_MIB=256 cargo bench --bench relay
//! cargo bench --bench relay -- echo rock   # one section, one kind
//! ```
//!
//! The echo section sends one byte at a time through the same layout to
//! an echo thread behind the server relay: round-trip time, and CPU per
//! round trip of the two relays. The bare loops run on the same
//! current-thread tokio runtime, so the difference is the protocol's and
//! the relay loop's, not tokio's and not the extra processes'.
//!
//! The layout mirrors `rock -d` with the ssh client and sshd replaced by a
//! writer and a reader thread: writer ─unix─▶ client relay ═TCP loopback═▶
//! server relay ─unix─▶ reader. Each relay runs on its own thread with a
//! current-thread runtime, as rock and rockd do, and its CPU time is read
//! with `getrusage(RUSAGE_THREAD)` on that thread, so the writer's and the
//! reader's own costs are not counted. CPU time, unlike throughput, hardly
//! depends on what else the machine is doing, which makes this the figure
//! to watch while tuning the relay; the end-to-end ratios against OpenSSH
//! are `benches/dmode.rs`'s job.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant};

use rock::proto::{Config, Role, Session, SessionId, SessionKey};
use rock::relay::{Relay, RelayOptions, TcpDialer};
use tokio::io::AsyncWriteExt;

const CHUNK: usize = 64 * 1024;
const RUNS: usize = 3;
const KEY: [u8; 32] = [9; 32];
/// Round trips per echo run, after the untimed first ones.
const ECHO_TRIPS: usize = 20_000;
const ECHO_WARMUP: usize = 200;

/// User and system CPU seconds of the calling thread.
fn thread_cpu() -> (f64, f64) {
    // SAFETY: getrusage writes into the struct we pass and nothing else.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_THREAD is valid on Linux.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    assert_eq!(rc, 0, "getrusage failed");
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_utime), secs(usage.ru_stime))
}

/// Runs `f` on a thread of its own with a current-thread runtime and
/// returns its CPU time.
fn on_own_thread<F>(name: &str, f: F) -> thread::JoinHandle<(f64, f64)>
where
    F: FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> + Send + 'static,
{
    thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            let start = thread_cpu();
            runtime.block_on(f());
            let end = thread_cpu();
            (end.0 - start.0, end.1 - start.1)
        })
        .expect("spawning a relay thread")
}

/// What goes through the relays in one run.
#[derive(Clone, Copy)]
enum Work {
    /// This many bytes one way, as fast as they go.
    Bulk(u64),
    /// This many one-byte round trips, echoed behind the server relay.
    Echo(usize),
}

impl Work {
    /// Drives `writer` (behind the client relay) and `reader` (behind the
    /// server relay); returns the wall time since `start`, and for an echo
    /// the round trips in µs.
    fn drive(self, writer: UnixStream, reader: UnixStream, start: Instant) -> (Duration, Vec<f64>) {
        match self {
            Work::Bulk(total) => (transfer(total, writer, reader, start), Vec::new()),
            Work::Echo(trips) => {
                let trips = echo(trips, writer, reader);
                (start.elapsed(), trips)
            }
        }
    }
}

type Run = ((f64, f64), (f64, f64), Duration, Vec<f64>);
/// A kind of relay pair: its name and how to run it.
type Kind = (&'static str, fn(Work) -> Run);

/// One run through client relay → server relay; returns the CPU times of
/// both relays, the wall time and any round trips.
fn relay_run(work: Work) -> Run {
    let (writer, client_app) = UnixStream::pair().expect("socketpair");
    let (server_app, reader) = UnixStream::pair().expect("socketpair");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding loopback");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let port = listener.local_addr().expect("listener address").port();
    let id = SessionId([7; 16]);
    let start = Instant::now();

    let server = on_own_thread("server-relay", move || {
        Box::pin(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            server_app.set_nonblocking(true).expect("non-blocking app");
            let app = tokio::net::UnixStream::from_std(server_app).expect("tokio app");
            let now = tokio::time::Instant::now().into_std();
            let session = Session::new(Role::Server, id, SessionKey(KEY), Config::default(), now)
                .expect("default config is valid");
            let relay = Relay::server(session, app, listener, RelayOptions::default());
            relay
                .run(std::future::pending())
                .await
                .expect("server relay");
        })
    });
    let client = on_own_thread("client-relay", move || {
        Box::pin(async move {
            client_app.set_nonblocking(true).expect("non-blocking app");
            let app = tokio::net::UnixStream::from_std(client_app).expect("tokio app");
            let now = tokio::time::Instant::now().into_std();
            let session = Session::new(Role::Client, id, SessionKey(KEY), Config::default(), now)
                .expect("default config is valid");
            let dialer = TcpDialer::new("127.0.0.1", port, Duration::from_secs(1));
            let relay = Relay::client(session, app, Box::new(dialer), RelayOptions::default());
            relay
                .run(std::future::pending())
                .await
                .expect("client relay");
        })
    });
    let (wall, trips) = work.drive(writer, reader, start);
    let c = client.join().expect("the client relay thread");
    let s = server.join().expect("the server relay thread");
    (c, s, wall, trips)
}

/// The same transfer through two bare copy loops (no protocol): what two
/// extra hops cost whoever makes them.
fn bare_run(work: Work) -> Run {
    let (writer, client_app) = UnixStream::pair().expect("socketpair");
    let (server_app, reader) = UnixStream::pair().expect("socketpair");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding loopback");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let port = listener.local_addr().expect("listener address").port();
    let start = Instant::now();
    let server = on_own_thread("server-copy", move || {
        Box::pin(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            let (mut link, _) = listener.accept().await.expect("accepting the link");
            let _ = link.set_nodelay(true);
            server_app.set_nonblocking(true).expect("non-blocking app");
            let mut app = tokio::net::UnixStream::from_std(server_app).expect("tokio app");
            tokio::io::copy_bidirectional_with_sizes(&mut app, &mut link, CHUNK, CHUNK)
                .await
                .expect("server copy");
        })
    });
    let client = on_own_thread("client-copy", move || {
        Box::pin(async move {
            let mut link = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connecting the link");
            let _ = link.set_nodelay(true);
            client_app.set_nonblocking(true).expect("non-blocking app");
            let mut app = tokio::net::UnixStream::from_std(client_app).expect("tokio app");
            tokio::io::copy_bidirectional_with_sizes(&mut app, &mut link, CHUNK, CHUNK)
                .await
                .expect("client copy");
            let _ = link.shutdown().await;
        })
    });
    let (wall, trips) = work.drive(writer, reader, start);
    let c = client.join().expect("the client copy thread");
    let s = server.join().expect("the server copy thread");
    (c, s, wall, trips)
}

/// The same through two pairs of blocking copy threads (std, no tokio, no
/// epoll): a read that blocks and a write, per direction and hop.
fn threads_run(work: Work) -> Run {
    let (writer, client_app) = UnixStream::pair().expect("socketpair");
    let (server_app, reader) = UnixStream::pair().expect("socketpair");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding loopback");
    let port = listener.local_addr().expect("listener address").port();
    let start = Instant::now();
    let server = thread::spawn(move || {
        let (link, _) = listener.accept().expect("accepting the link");
        let _ = link.set_nodelay(true);
        copy_both_ways(server_app, link)
    });
    let client = thread::spawn(move || {
        let link = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connecting the link");
        let _ = link.set_nodelay(true);
        copy_both_ways(client_app, link)
    });
    let (wall, trips) = work.drive(writer, reader, start);
    let c = client.join().expect("the client copy threads");
    let s = server.join().expect("the server copy threads");
    (c, s, wall, trips)
}

/// Copies `app` ⇄ `link` on two threads until both directions end;
/// returns the two threads' CPU time together.
fn copy_both_ways(app: UnixStream, link: std::net::TcpStream) -> (f64, f64) {
    fn pump(mut from: impl Read, mut to: impl Write, done: impl FnOnce()) -> (f64, f64) {
        let start = thread_cpu();
        let mut buf = vec![0u8; CHUNK];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        done();
        let end = thread_cpu();
        (end.0 - start.0, end.1 - start.1)
    }
    let (app2, link2) = (
        app.try_clone().expect("cloning the app socket"),
        link.try_clone().expect("cloning the link"),
    );
    let up = thread::spawn(move || {
        let shut = link2.try_clone().expect("cloning the link");
        pump(app2, link2, move || {
            let _ = shut.shutdown(std::net::Shutdown::Write);
        })
    });
    let shut = app.try_clone().expect("cloning the app socket");
    let down = pump(link, app, move || {
        let _ = shut.shutdown(std::net::Shutdown::Write);
    });
    let up = up.join().expect("the upward copy thread");
    (up.0 + down.0, up.1 + down.1)
}

/// `trips` one-byte round trips: written into `writer`, echoed by a
/// thread at `reader`, read back. Returns each round trip in µs; then
/// ends both directions.
fn echo(trips: usize, mut writer: UnixStream, mut reader: UnixStream) -> Vec<f64> {
    let echoer = thread::spawn(move || {
        let mut b = [0u8; 1];
        while reader.read_exact(&mut b).is_ok() {
            if reader.write_all(&b).is_err() {
                break;
            }
        }
        let _ = reader.shutdown(std::net::Shutdown::Write);
    });
    let mut out = Vec::with_capacity(trips);
    let mut b = [0u8; 1];
    for i in 0..trips + ECHO_WARMUP {
        let t = Instant::now();
        writer
            .write_all(&[i as u8])
            .expect("writing into the relay");
        writer.read_exact(&mut b).expect("reading the echo");
        assert_eq!(b[0], i as u8, "the echo came back wrong");
        if i >= ECHO_WARMUP {
            out.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    writer
        .shutdown(std::net::Shutdown::Write)
        .expect("half-closing the relay's input");
    let mut rest = Vec::new();
    let _ = writer.read_to_end(&mut rest);
    echoer.join().expect("the echo thread");
    out
}

/// Writes `total` bytes into `writer` and reads them from `reader`; ends
/// both directions; returns the wall time since `start`.
fn transfer(total: u64, writer: UnixStream, mut reader: UnixStream, start: Instant) -> Duration {
    let feeder = thread::spawn(move || {
        let mut writer = writer;
        let data = vec![0x5au8; CHUNK];
        let mut left = total;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            writer
                .write_all(&data[..n])
                .expect("writing into the relay");
            left -= n as u64;
        }
        writer
            .shutdown(std::net::Shutdown::Write)
            .expect("half-closing the relay's input");
        // Keep the socket until the far end is done.
        let mut rest = Vec::new();
        let _ = writer.read_to_end(&mut rest);
    });
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    loop {
        let n = reader.read(&mut buf).expect("reading from the relay");
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    assert_eq!(got, total, "every byte came through");
    let wall = start.elapsed();
    // The reverse direction is empty: end it so that the relays finish.
    reader
        .shutdown(std::net::Shutdown::Write)
        .expect("half-closing the reverse direction");
    feeder.join().expect("the feeder thread");
    wall
}

/// Median of `v` (sorted in place).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v.get(i).copied().unwrap_or(f64::NAN)
}

fn main() {
    let mib: u64 = std::env::var("ROCK_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let total = mib << 20;
    let gib = total as f64 / (1u64 << 30) as f64;
    // `cargo bench --bench relay -- rock echo` runs only those (for strace).
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let picked = |names: &[&str], name: &str| {
        !only.iter().any(|a| names.contains(&a.as_str())) || only.iter().any(|a| a == name)
    };
    let kinds: Vec<Kind> = [
        ("rock", relay_run as fn(Work) -> Run),
        ("bare", bare_run),
        ("threads", threads_run),
    ]
    .into_iter()
    .filter(|(k, _)| picked(&["rock", "bare", "threads"], k))
    .collect();
    let sections = ["bulk", "echo"];

    if picked(&sections, "bulk") {
        println!("relay CPU per GiB, {mib} MiB per run, {RUNS} runs each (user + sys seconds)");
        let mut totals: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for _ in 0..RUNS {
            for (kind, run) in &kinds {
                let (c, s, wall, _) = run(Work::Bulk(total));
                println!(
                    "{kind:<6} client {:.3} + {:.3}  server {:.3} + {:.3}  total {:.3} CPU-s/GiB  ({:.0} MiB/s)",
                    c.0 / gib,
                    c.1 / gib,
                    s.0 / gib,
                    s.1 / gib,
                    (c.0 + c.1 + s.0 + s.1) / gib,
                    mib as f64 / wall.as_secs_f64()
                );
                totals
                    .entry(kind)
                    .or_default()
                    .push((c.0 + c.1 + s.0 + s.1) / gib);
            }
        }
        let mut med = |kind: &str| totals.get_mut(kind).map(|v| median(v));
        if let (Some(r), Some(b)) = (med("rock"), med("bare")) {
            println!(
                "median: rock {r:.3}, bare {b:.3} CPU-s/GiB; rock/bare {:.2}",
                r / b
            );
        }
    }

    if picked(&sections, "echo") {
        println!(
            "\nrelay one-byte echo, {ECHO_TRIPS} round trips per run, {RUNS} runs each: \
             round trip (median, p99) and CPU per round trip of the two relays"
        );
        let mut rtts: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        let mut cpus: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for _ in 0..RUNS {
            for (kind, run) in &kinds {
                let (c, s, _, mut trips) = run(Work::Echo(ECHO_TRIPS));
                let n = (ECHO_TRIPS + ECHO_WARMUP) as f64;
                let cpu = |t: (f64, f64)| (t.0 + t.1) / n * 1e6;
                println!(
                    "{kind:<6} median {:.1} µs, p99 {:.1} µs; CPU per round trip: client {:.1} µs, server {:.1} µs",
                    median(&mut trips),
                    quantile(&mut trips, 0.99),
                    cpu(c),
                    cpu(s)
                );
                rtts.entry(kind).or_default().extend(trips);
                cpus.entry(kind).or_default().push(cpu(c) + cpu(s));
            }
        }
        for (kind, v) in &mut rtts {
            let cpu = median(cpus.get_mut(kind).map_or(&mut [][..], |c| &mut c[..]));
            println!(
                "{kind}: round trip median {:.1} µs, p99 {:.1} µs; both relays {cpu:.1} µs CPU per round trip",
                median(v),
                quantile(v, 0.99)
            );
        }
    }
}
