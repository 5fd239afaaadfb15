//! The supervisor's side of the library's questions: the control socket in
//! the supervisor's session directory, where each thread of each process of
//! the command keeps a line open and asks, one line at a time, where a
//! connection should go (`rock_proto::supervise`).
//!
//! Only processes of the same user may ask (`crate::control_socket`). A
//! line that does not parse closes that line and nothing else; every other
//! line, and the command, go on. `rock status` asks here too
//! ([`STATUS_REQUEST`]), and is answered every rock's report; and `rock
//! checkpoint` asks the rocks to hold their links off ([`HOLD_REQUEST`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rock_proto::supervise::{self, Answer, MAX_LINE, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;

use super::carried::{Carried, Ends};
use super::peers::{self, Known, Peers};
use super::rendezvous::Rendezvous;
use super::rocks::Rocks;
use crate::control_socket::{self, HOLD_REQUEST, STATUS_REQUEST};

/// The longest hold `rock checkpoint` may ask for.
const MAX_HOLD_MS: u64 = 60_000;

/// What the answers depend on: what is known of peers (the client side)
/// and the command's listeners (the server side).
pub struct Context {
    /// Destinations, probed and cached.
    pub peers: Peers,
    /// The command's listeners and the rendezvous port.
    pub rendezvous: Rendezvous,
    /// The connections the supervisor carries, and for whom.
    pub carried: Arc<Carried>,
    /// The rocks, client and server.
    pub rocks: Arc<Rocks>,
    /// The `via` listeners waiting to hear which socket of the program
    /// connected to them, by port.
    pub expected: Mutex<HashMap<u16, oneshot::Sender<SocketAddr>>>,
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// How long a `via` listener waits for the program to connect.
const VIA_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Where a connection to `dest` goes: directly to an ordinary peer; to a
/// rock listener, through a rock the supervisor opens at its host's
/// rendezvous port and carries (`super::rocks`), the program connecting to
/// the supervisor's loopback end.
async fn route(context: &Arc<Context>, dest: SocketAddr) -> Answer {
    let (rock, how) = match context.peers.find(dest).await {
        Known::Probed(finding, took) => (
            finding.is_rock(),
            format!("{}; probed in {} ms", finding.describe(), took.as_millis()),
        ),
        Known::Cached(true) => (true, "a rock listener, known".to_owned()),
        Known::Cached(false) => (false, "ordinary, known".to_owned()),
        Known::Off => (false, "rock_port = 0: no probe".to_owned()),
    };
    if rock {
        let rendezvous = SocketAddr::new(dest.ip(), context.peers.rock_port(dest));
        if let Some(answer) = via(context, dest, rendezvous).await {
            tracing::debug!("connect {dest}: {} ({how})", answer.encode().trim_end());
            return answer;
        }
        tracing::debug!("connect {dest}: direct ({how}; its OPEN failed)");
        return Answer::Direct;
    }
    tracing::debug!("connect {dest}: direct ({how})");
    Answer::Direct
}

/// Opens a rock to the rock listener `dest` at `rendezvous`, and a
/// one-shot loopback listener for the program's end of it. Only the
/// connection from the socket the library names (`from … via …`) is
/// carried: another local process that raced to the port gets nothing.
async fn via(context: &Arc<Context>, dest: SocketAddr, rendezvous: SocketAddr) -> Option<Answer> {
    let opened = peers::open(rendezvous, dest.port()).await?;
    let local = opened.link.local_addr().ok()?;
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .await
        .ok()?;
    let end = listener.local_addr().ok()?;
    tracing::debug!(
        "connect {dest}: link from {local} to {rendezvous}: rock {}",
        opened.session
    );
    let entry = context.carried.insert(end, Ends { peer: dest, local });
    let (tell, told) = oneshot::channel();
    if let Ok(mut expected) = context.expected.lock() {
        expected.insert(end.port(), tell);
    }
    let context = context.clone();
    tokio::spawn(async move {
        let _entry = entry;
        let deadline = tokio::time::Instant::now() + VIA_WITHIN;
        let program = match tokio::time::timeout_at(deadline, told).await {
            Ok(Ok(program)) => canonical(program),
            _ => {
                tracing::debug!("connect {dest}: the program never came to {end}");
                if let Ok(mut expected) = context.expected.lock() {
                    expected.remove(&end.port());
                }
                return;
            }
        };
        loop {
            match tokio::time::timeout_at(deadline, listener.accept()).await {
                Ok(Ok((stream, from))) if canonical(from) == program => {
                    drop(listener);
                    let _ = stream.set_nodelay(true);
                    let rocks = context.rocks.clone();
                    rocks.run_client(stream, opened, dest, rendezvous).await;
                    return;
                }
                Ok(Ok((_, from))) => {
                    tracing::warn!(
                        "connect {dest}: {from} is not the program's socket {program}: \
                         dropped (another local process at the supervisor's port {end})"
                    );
                }
                _ => {
                    tracing::debug!("connect {dest}: the program never came to {end}");
                    return;
                }
            }
        }
    });
    Some(Answer::Via(end.port()))
}

/// Answers one request.
async fn reply(context: &Arc<Context>, request: Request) -> Answer {
    match request {
        Request::Connect(dest) => route(context, dest).await,
        Request::Listen(addr) => {
            context.rendezvous.register(addr);
            Answer::Ok
        }
        Request::From { local, via } => {
            let waiting = context
                .expected
                .lock()
                .ok()
                .and_then(|mut expected| expected.remove(&via));
            if let Some(tell) = waiting {
                let _ = tell.send(local);
            }
            Answer::Ok
        }
        Request::Peer { local, remote } => match context.carried.ends(remote) {
            Some(Ends { peer, local: real }) => {
                tracing::debug!("{local} to {remote} is really {real} to {peer}");
                Answer::Real { peer, local: real }
            }
            None => Answer::NotCarried,
        },
    }
}

/// Answers every line that `listener` accepts, until the task is dropped.
pub async fn serve(listener: UnixListener, context: Arc<Context>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                if !control_socket::same_user(&stream) {
                    tracing::warn!("refused a control connection from another user");
                    continue;
                }
                tokio::spawn(answer(stream, context.clone()));
            }
            Err(e) => {
                tracing::debug!("the supervisor's control socket stopped: {e}");
                return;
            }
        }
    }
}

/// Answers one line's questions until it closes or says something wrong.
async fn answer(mut stream: UnixStream, context: Arc<Context>) {
    let mut buf = Vec::with_capacity(MAX_LINE);
    let mut piece = [0u8; MAX_LINE];
    loop {
        match supervise::check(&buf) {
            Ok(Some(end)) if buf[..end] == *format!("{STATUS_REQUEST}\n").as_bytes() => {
                // `rock status`: every rock's report, then the end.
                let _ = stream.write_all(context.rocks.reports().as_bytes()).await;
                return;
            }
            Ok(Some(end)) if buf.starts_with(format!("{HOLD_REQUEST} ").as_bytes()) => {
                // `rock checkpoint`: links held off for a moment.
                let millis = std::str::from_utf8(&buf[HOLD_REQUEST.len() + 1..end])
                    .ok()
                    .and_then(|t| t.trim_end().parse::<u64>().ok());
                if let Some(ms) = millis.filter(|&ms| ms <= MAX_HOLD_MS) {
                    context.rocks.hold(std::time::Duration::from_millis(ms));
                    let _ = stream.write_all(b"ok\n").await;
                }
                return;
            }
            Ok(Some(end)) => {
                let reply = match Request::parse(&buf[..end]) {
                    Ok(request) => reply(&context, request).await,
                    Err(e) => {
                        tracing::debug!("a library line said something wrong: {e}");
                        return;
                    }
                };
                buf.drain(..end);
                if stream.write_all(reply.encode().as_bytes()).await.is_err() {
                    return;
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::debug!("a library line said something wrong: {e}");
                return;
            }
        }
        match stream.read(&mut piece).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&piece[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `bytes` and reads the answer; a closed line (an end of
    /// stream, or a reset when the supervisor left bytes unread) is empty.
    async fn ask(stream: &mut UnixStream, bytes: &[u8]) -> Vec<u8> {
        stream.write_all(bytes).await.expect("write");
        let mut out = vec![0; MAX_LINE];
        let n = match stream.read(&mut out).await {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
            Err(e) => panic!("read: {e}"),
        };
        out.truncate(n);
        out
    }

    /// A context with the rendezvous off, so that nothing is probed.
    fn quiet() -> Arc<Context> {
        let file = crate::settings::ConfigFile::parse(
            std::path::Path::new("test.toml"),
            "[defaults]\nrock_port = 0\n",
        )
        .expect("a config");
        let profiles = crate::settings::Profiles::from_files(vec![file]);
        let rocks = Arc::new(Rocks::new("test", profiles.clone(), Default::default()));
        Arc::new(Context {
            peers: Peers::new(profiles),
            rendezvous: Rendezvous::new(0, Arc::default(), rocks.clone(), std::env::temp_dir()),
            carried: Arc::default(),
            rocks,
            expected: Mutex::default(),
        })
    }

    #[tokio::test]
    async fn questions_are_answered_and_nonsense_ends_only_its_line() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let listener = control_socket::bind(dir.path()).expect("bind");
        tokio::spawn(serve(listener, quiet()));
        let path = dir.path().join(control_socket::CONTROL_SOCKET);
        let mut good = UnixStream::connect(&path).await.expect("connect");
        assert_eq!(ask(&mut good, b"connect 192.0.2.1:80\n").await, b"direct\n");
        // Two questions in one write, answered in turn.
        good.write_all(b"connect [::1]:22\nconnect 10.0.0.1:6379\n")
            .await
            .expect("write");
        let mut both = vec![0; 14];
        good.read_exact(&mut both).await.expect("two answers");
        assert_eq!(both, b"direct\ndirect\n");
        assert_eq!(ask(&mut good, b"listen 0.0.0.0:8080\n").await, b"ok\n");
        assert_eq!(
            ask(&mut good, b"peer 127.0.0.1:5000 127.0.0.1:6000\n").await,
            b"none\n"
        );

        let mut bad = UnixStream::connect(&path).await.expect("connect");
        assert_eq!(ask(&mut bad, b"connect nowhere\n").await, b"");
        let mut long = UnixStream::connect(&path).await.expect("connect");
        assert_eq!(ask(&mut long, &[b'x'; 4 * MAX_LINE]).await, b"");
        // The good line is untouched.
        assert_eq!(
            ask(&mut good, b"connect 192.0.2.1:443\n").await,
            b"direct\n"
        );
    }
}
