//! The relay and the real rockd binary under real kernel faults, without
//! ssh: rockd bridges to an echo server, an in-process client relay pushes a
//! pattern through it, and the link is reset with `ss -K` and blackholed
//! with iptables. Every byte must come back once, in order.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rock::boot::{BootReady, BootRequest};
use rock::relay::{Outcome, Relay, RelayOptions, TcpDialer};
use rock_proto::{Config, Role, Session, SessionId, SessionKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::faults::{Blackhole, reset_link};
use common::require_root;

/// An echo server for one connection; returns its port.
fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut out = conn.try_clone().unwrap();
        let mut buf = vec![0u8; 65536];
        loop {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = out.shutdown(std::net::Shutdown::Write);
    });
    port
}

struct Rockd {
    child: Child,
    port: u16,
}

impl Drop for Rockd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_rockd(request: &BootRequest, target_port: u16, log: &std::path::Path) -> Rockd {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rockd"))
        .args(["--foreground", "--listen", "127.0.0.1:0", "--target"])
        .arg(format!("127.0.0.1:{target_port}"))
        .arg("--log")
        .arg(log)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start rockd");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.encode().as_bytes())
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready = BootReady::parse(line.trim_end()).expect("rockd ready line");
    Rockd {
        child,
        port: ready.port,
    }
}

fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(2654435761) >> 13) as u8
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_survives_resets_and_a_blackhole_exactly_once() {
    require_root("ss -K and iptables faults");
    let dir = tempfile::tempdir().unwrap();
    let request = BootRequest {
        id: SessionId([3; 16]),
        key: SessionKey([9; 32]),
    };
    let rockd = start_rockd(&request, echo_server(), &dir.path().join("rockd.log"));

    let now = tokio::time::Instant::now().into_std();
    let session = Session::new(
        Role::Client,
        request.id,
        request.key.clone(),
        Config::default(),
        now,
    )
    .unwrap();
    let (app, mut test_end) = tokio::net::UnixStream::pair().unwrap();
    let dialer = TcpDialer::new("127.0.0.1", rockd.port, Duration::from_secs(1));
    let relay = Relay::client(session, app, Box::new(dialer), RelayOptions::default());
    let relay = tokio::spawn(relay.run(std::future::pending()));

    const TOTAL: u64 = 64 << 20;
    let (mut rd, mut wr) = test_end.split();
    let writer = async {
        let mut pos = 0u64;
        while pos < TOTAL {
            let chunk: Vec<u8> = (pos..(pos + 65536).min(TOTAL)).map(pattern).collect();
            wr.write_all(&chunk).await.unwrap();
            pos += chunk.len() as u64;
        }
        wr.shutdown().await.unwrap();
    };
    let port = rockd.port;
    let received = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let progress = received.clone();
    let reader = async move {
        let mut pos = 0u64;
        let mut buf = vec![0u8; 65536];
        loop {
            let n = rd.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            for (i, b) in buf[..n].iter().enumerate() {
                assert_eq!(*b, pattern(pos + i as u64), "byte {} wrong", pos + i as u64);
            }
            pos += n as u64;
            progress.store(pos, std::sync::atomic::Ordering::Relaxed);
        }
        pos
    };
    let faults = async move {
        let wait_for = |at: u64| {
            let received = received.clone();
            async move {
                while received.load(std::sync::atomic::Ordering::Relaxed) < at {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        };
        for k in 1..=5u64 {
            wait_for(k * TOTAL / 16).await;
            reset_link(port);
        }
        wait_for(TOTAL / 2).await;
        let before = received.load(std::sync::atomic::Ordering::Relaxed);
        let hole = Blackhole::new(port);
        tokio::time::sleep(Duration::from_secs(10)).await;
        drop(hole);
        let lifted = Instant::now();
        wait_for(before + 1).await;
        let stalled_at = received.load(std::sync::atomic::Ordering::Relaxed);
        wait_for(stalled_at + 1).await;
        eprintln!(
            "first byte after the blackhole lifted: {:?}",
            lifted.elapsed()
        );
    };
    let ((), got, ()) = tokio::join!(writer, reader, faults);
    assert_eq!(got, TOTAL);

    let outcome = tokio::time::timeout(Duration::from_secs(20), relay)
        .await
        .expect("the relay ends after both sides finish")
        .unwrap()
        .unwrap();
    assert!(matches!(outcome, Outcome::Finished { .. }), "{outcome:?}");
    let mut rockd = rockd;
    let status = wait_exit(&mut rockd.child, Duration::from_secs(20));
    assert!(status.success(), "rockd exit: {status:?}");
    let _ = TcpStream::connect(("127.0.0.1", rockd.port))
        .expect_err("rockd must have stopped listening");
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let end = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < end, "process did not exit in {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
