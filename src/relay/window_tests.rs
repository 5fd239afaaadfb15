//! The send window against a link that says what its path holds: a long,
//! fast path widens the window to the replay bound, a short one leaves it
//! small. Two relays over an in-memory link whose client end stops
//! delivering once the session is up, so that nothing is acknowledged and
//! the client's replay buffer fills to exactly its window.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use rock_proto::{Config, MIN_SEND_WINDOW, Role, Session, SessionId, SessionKey};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::sync::mpsc;

use super::{BoxLink, DialFuture, Dialer, LinkIo, PathEstimate, Relay, RelayOptions};

/// One end of an in-memory link, reporting `path`; once `cut` is set, what
/// is written to it is swallowed.
struct FakeLink {
    io: DuplexStream,
    path: PathEstimate,
    cut: Arc<AtomicBool>,
}

impl AsyncRead for FakeLink {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for FakeLink {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.cut.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl LinkIo for FakeLink {
    fn measures_path(&self) -> bool {
        true
    }
    fn path(&self) -> Option<PathEstimate> {
        Some(self.path)
    }
}

/// Makes one link: its far end goes to the server relay.
struct FakeDialer {
    path: PathEstimate,
    cut: Arc<AtomicBool>,
    server: mpsc::Sender<BoxLink>,
}

impl Dialer for FakeDialer {
    fn dial(&mut self) -> DialFuture {
        let (near, far) = tokio::io::duplex(1 << 20);
        let (path, cut, server) = (self.path, self.cut.clone(), self.server.clone());
        Box::pin(async move {
            let far = FakeLink {
                io: far,
                path,
                cut: Arc::new(AtomicBool::new(false)),
            };
            server
                .send(Box::new(far))
                .await
                .map_err(|_| io::Error::other("the server relay is gone"))?;
            Ok(Box::new(FakeLink {
                io: near,
                path,
                cut,
            }) as BoxLink)
        })
    }
    fn describe(&self) -> String {
        "an in-memory link".into()
    }
}

/// The most bytes the client's replay buffer held, with a path of
/// `min_rtt` and `rate` and a writer that never stops.
async fn replay_filled(min_rtt: Duration, rate: u64) -> usize {
    let config = Config::default();
    let now = tokio::time::Instant::now().into_std();
    let (id, key) = (SessionId([3; 16]), SessionKey([4; 32]));
    let client = Session::new(Role::Client, id, key.clone(), config.clone(), now).unwrap();
    let server = Session::new(Role::Server, id, key, config, now).unwrap();
    let (client_app, mut writer) = tokio::io::duplex(1 << 16);
    let (server_app, _reader) = tokio::io::duplex(1 << 16);
    let (links_tx, links_rx) = mpsc::channel(4);
    let cut = Arc::new(AtomicBool::new(false));
    let path = PathEstimate {
        min_rtt,
        delivery_rate: rate,
    };
    let dialer = FakeDialer {
        path,
        cut: cut.clone(),
        server: links_tx,
    };
    let server = Relay::server_handed(server, server_app, links_rx, RelayOptions::default());
    let client = Relay::client(
        client,
        client_app,
        Box::new(dialer),
        RelayOptions::default(),
    );
    let mut status = client.status();
    tokio::spawn(server.run(std::future::pending()));
    tokio::spawn(client.run(std::future::pending()));
    tokio::spawn(async move {
        let chunk = vec![7u8; 64 << 10];
        while writer.write_all(&chunk).await.is_ok() {}
    });
    // Up, then nothing more reaches the server: nothing is acknowledged.
    while status.borrow_and_update().state != rock_proto::State::Connected {
        status.changed().await.unwrap();
    }
    cut.store(true, Ordering::SeqCst);
    let mut most = 0;
    let end = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < end {
        most = most.max(status.borrow().replay_buffered);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    most
}

#[tokio::test]
async fn a_long_fast_path_widens_the_window_to_the_bound() {
    // 100 Mbit/s at 100 ms: 1.25 MB in flight; four of those exceed the bound.
    let most = replay_filled(Duration::from_millis(100), 12_500_000).await;
    assert_eq!(most, Config::default().replay_bound);
}

#[tokio::test]
async fn a_short_path_keeps_the_window_small() {
    // Loopback-like: 2 GB/s at 20 µs, 40 kB in flight.
    let most = replay_filled(Duration::from_micros(20), 2_000_000_000).await;
    assert_eq!(most, MIN_SEND_WINDOW);
}
