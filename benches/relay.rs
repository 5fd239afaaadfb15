//! CPU cost of the relay itself: how many CPU-seconds the client relay and
//! the server relay each spend per GiB they carry, split into user and
//! kernel time, beside two bare copy loops laid out the same way.
//!
//! ```sh
//! cargo bench --bench relay            # 1 GiB, three runs each
//! ROCK_BENCH_MIB=256 cargo bench --bench relay
//! ```
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

/// One transfer through client relay → server relay; returns the CPU
/// times of both relays and the wall time.
fn relay_run(total: u64) -> ((f64, f64), (f64, f64), Duration) {
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
    let wall = transfer(total, writer, reader, start);
    let c = client.join().expect("the client relay thread");
    let s = server.join().expect("the server relay thread");
    (c, s, wall)
}

/// The same transfer through two bare copy loops (no protocol): what two
/// extra hops cost whoever makes them.
fn bare_run(total: u64) -> ((f64, f64), (f64, f64), Duration) {
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
    let wall = transfer(total, writer, reader, start);
    let c = client.join().expect("the client copy thread");
    let s = server.join().expect("the server copy thread");
    (c, s, wall)
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

fn main() {
    let mib: u64 = std::env::var("ROCK_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let total = mib << 20;
    let gib = total as f64 / (1u64 << 30) as f64;
    println!("relay CPU per GiB, {mib} MiB per run, {RUNS} runs each (user + sys seconds)");
    let line = |name: &str, (c, s, wall): ((f64, f64), (f64, f64), Duration)| {
        println!(
            "{name:<6} client {:.3} + {:.3}  server {:.3} + {:.3}  total {:.3} CPU-s/GiB  ({:.0} MiB/s)",
            c.0 / gib,
            c.1 / gib,
            s.0 / gib,
            s.1 / gib,
            (c.0 + c.1 + s.0 + s.1) / gib,
            mib as f64 / wall.as_secs_f64()
        );
        c.0 + c.1 + s.0 + s.1
    };
    // `cargo bench --bench relay -- rock` runs only one kind (for strace).
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |kind: &str| only.is_empty() || only.iter().any(|a| a == kind);
    let (mut rock, mut bare) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        if wanted("rock") {
            rock.push(line("rock", relay_run(total)));
        }
        if wanted("bare") {
            bare.push(line("bare", bare_run(total)));
        }
    }
    rock.sort_by(f64::total_cmp);
    bare.sort_by(f64::total_cmp);
    if let (Some(r), Some(b)) = (rock.get(RUNS / 2), bare.get(RUNS / 2)) {
        let (r, b) = (r / gib, b / gib);
        println!(
            "median: rock {r:.3}, bare {b:.3} CPU-s/GiB; rock/bare {:.2}",
            r / b
        );
    }
}
