//! Handing rock clients over between the supervisors of one user on one
//! host. Only one process can hold the rendezvous port; the others' command
//! listeners would go unannounced. So every supervisor with a registered
//! listener also answers on a unix socket in its private session directory
//! (`rendezvous-<rock_port>.sock`), and the one holding the port asks the
//! others there what its own listeners and rocks cannot answer: a PROBE
//! answered yes there is yes; an OPEN opened there, and a link resuming a
//! rock that lives there, are piped through the unix socket (the rock runs
//! in the supervisor whose program it serves).
//!
//! On that socket, before the rendezvous message or the link's
//! ClientHello, the holder says who asked and where (`from
//! <socket-address> to <ip-address>\n`) so that the owner can offer only
//! the listeners reachable at that address and tell its program the rock
//! client's real address. The owner answers a question as the rendezvous
//! port would, and a hello with one byte: 1 (its rock: the link follows)
//! or 0 (not its rock). The sockets live in
//! the user's private runtime directory (mode 0700, peers checked to be the
//! same user): other users' supervisors are never asked, nor ask.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rock_proto::SessionId;
use rock_proto::rendezvous::{self, Question, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use super::messages::read_message;
use super::rendezvous::{
    Decision, NewRock, QUESTION_WITHIN, State, decide, read_hello, read_question,
};
use crate::control_socket;
use crate::relay::Prefixed;

/// The longest header line, newline included.
const HEADER_MAX: usize = 128;
/// How long the holder waits for another supervisor to answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);

/// The name of the hand-over socket for rendezvous port `port`.
fn socket_name(port: u16) -> String {
    format!("rendezvous-{port}.sock")
}

/// Answers on this supervisor's hand-over socket until the task is
/// dropped.
pub(super) async fn serve(state: State) {
    let path = state.session.join(socket_name(state.port));
    let _ = std::fs::remove_file(&path);
    let listener = match UnixListener::bind(&path) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::info!(
                "rendezvous port {}: no hand-over socket at {} ({e}): this command's \
                 listeners are announced only while it holds the port",
                state.port,
                path.display()
            );
            return;
        }
    };
    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        if !control_socket::same_user(&stream) {
            continue;
        }
        tokio::spawn(handle(stream, state.clone()));
    }
}

/// Answers one handed-over question or resuming link.
async fn handle(mut stream: UnixStream, state: State) {
    let decided = tokio::time::timeout(QUESTION_WITHIN, async {
        let (from, arrived) = read_header(&mut stream).await?;
        let mut first = [0u8; 2];
        stream.read_exact(&mut first).await.ok()?;
        if rendezvous::is_link(&first) {
            let (hello, id) = read_hello(&mut stream, first.to_vec()).await?;
            return Some(Handed::Link(hello, id));
        }
        let question = read_question(&mut stream, first.to_vec(), state.port, from).await?;
        let decision = decide(&state, question, from, arrived).await;
        Some(Handed::Question(question, decision, from))
    })
    .await
    .ok()
    .flatten();
    match decided {
        Some(Handed::Link(hello, id)) => {
            let ours = state.rocks.serves(&id);
            if stream.write_all(&[u8::from(ours)]).await.is_ok() && ours {
                tracing::debug!("rock {id}: a link handed over");
                state
                    .rocks
                    .hand(&id, Box::new(Prefixed::new(hello, stream)));
            }
        }
        Some(Handed::Question(_, Decision::Probe(rock), _)) => {
            let _ = stream.write_all(&Reply::Probe { rock }.encode()).await;
        }
        Some(Handed::Question(
            Question::Open { port, key },
            Decision::Opened(program, entry),
            from,
        )) => {
            let rock = NewRock {
                link: Box::new(stream),
                program,
                entry,
                from,
                port,
                key,
            };
            rock.run(&state).await;
        }
        Some(Handed::Question(..)) => {
            let _ = stream.write_all(&Reply::Open(None).encode()).await;
        }
        None => {}
    }
}

/// What came through the hand-over socket.
enum Handed {
    /// A question, as this supervisor decided it, from this rock client.
    Question(Question, Decision, SocketAddr),
    /// A link resuming a rock: its hello's bytes and the session it names.
    Link(Vec<u8>, SessionId),
}

/// The header line: who asked, and at which address.
fn header(from: SocketAddr, arrived: IpAddr) -> String {
    format!("from {from} to {arrived}\n")
}

/// Parses a header line (without its newline).
fn parse_header(line: &str) -> Option<(SocketAddr, IpAddr)> {
    let rest = line.strip_prefix("from ")?;
    let (from, to) = rest.split_once(" to ")?;
    Some((from.parse().ok()?, to.parse().ok()?))
}

/// Reads the header line, byte by byte so that nothing after it is taken.
async fn read_header(stream: &mut UnixStream) -> Option<(SocketAddr, IpAddr)> {
    let mut line = Vec::with_capacity(HEADER_MAX);
    loop {
        let b = stream.read_u8().await.ok()?;
        if b == b'\n' {
            break;
        }
        if line.len() + 1 >= HEADER_MAX {
            return None;
        }
        line.push(b);
    }
    parse_header(std::str::from_utf8(&line).ok()?)
}

/// The hand-over sockets of the other supervisors of this user with the
/// same rendezvous port.
fn others(state: &State) -> Vec<PathBuf> {
    let Ok(base) = crate::rundir::user_dir() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(base) else {
        return Vec::new();
    };
    let name = socket_name(state.port);
    entries
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("supervisor-")
        })
        .map(|entry| entry.path())
        .filter(|dir| *dir != state.session)
        .map(|dir| dir.join(&name))
        .filter(|socket| socket.exists())
        .collect()
}

/// What another supervisor said yes to.
pub(super) enum Forwarded {
    /// A PROBE it answered yes.
    Reply(Reply),
    /// An OPEN it opened: its reply's bytes, and the connection to pipe.
    Opened(Vec<u8>, UnixStream),
}

/// Asks the other supervisors of this user, with the same rendezvous port,
/// what this one could not answer. `None` when none of them says yes.
pub(super) async fn forward(
    state: &State,
    question: Question,
    from: SocketAddr,
    arrived: IpAddr,
) -> Option<Forwarded> {
    for socket in others(state) {
        let asked = tokio::time::timeout(ANSWER_WITHIN, ask(&socket, question, from, arrived));
        match asked.await {
            Ok(Some((reply @ Reply::Probe { rock: true }, _, _))) => {
                return Some(Forwarded::Reply(reply));
            }
            Ok(Some((Reply::Open(Some(_)), bytes, stream))) => {
                tracing::debug!(
                    "rendezvous port {}: {question:?} from {from} handed over to {}",
                    state.port,
                    socket.display()
                );
                return Some(Forwarded::Opened(bytes, stream));
            }
            _ => {}
        }
    }
    None
}

/// Asks one other supervisor at `socket`: its reply, the reply's bytes,
/// and the connection.
async fn ask(
    socket: &Path,
    question: Question,
    from: SocketAddr,
    arrived: IpAddr,
) -> Option<(Reply, Vec<u8>, UnixStream)> {
    let mut stream = UnixStream::connect(socket).await.ok()?;
    let mut out = header(from, arrived).into_bytes();
    out.extend_from_slice(&question.encode());
    stream.write_all(&out).await.ok()?;
    let bytes = read_message(&mut stream, Vec::new()).await.ok()?;
    let reply = Reply::parse(&bytes).ok()?;
    Some((reply, bytes, stream))
}

/// Finds the other supervisor whose rock the link with ClientHello `hello`
/// resumes: the connection to pipe the link through, or `None`.
pub(super) async fn forward_link(
    state: &State,
    hello: &[u8],
    from: SocketAddr,
    arrived: IpAddr,
) -> Option<UnixStream> {
    for socket in others(state) {
        let asked = async {
            let mut stream = UnixStream::connect(&socket).await.ok()?;
            let mut out = header(from, arrived).into_bytes();
            out.extend_from_slice(hello);
            stream.write_all(&out).await.ok()?;
            (stream.read_u8().await.ok()? == 1).then_some(stream)
        };
        if let Ok(Some(stream)) = tokio::time::timeout(ANSWER_WITHIN, asked).await {
            return Some(stream);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_read_back_and_nonsense_is_refused() {
        for (from, to) in [("192.0.2.7:50000", "192.0.2.1"), ("[2001:db8::7]:1", "::1")] {
            let from: SocketAddr = from.parse().expect("an address");
            let to: IpAddr = to.parse().expect("an address");
            let line = header(from, to);
            assert!(line.len() <= HEADER_MAX);
            assert_eq!(parse_header(line.trim_end()), Some((from, to)));
        }
        for bad in [
            "",
            "from",
            "from 1.2.3.4:5",
            "from 1.2.3.4 to 1.2.3.4",
            "to 1.2.3.4",
        ] {
            assert_eq!(parse_header(bad), None, "{bad}");
        }
    }
}
