//! Handing rock clients over between the supervisors of one user on one
//! host. Only one process can hold the rendezvous port; the others' command
//! listeners would go unannounced. So every supervisor with a registered
//! listener also answers on a unix socket in its private session directory
//! (`rendezvous-<rock_port>.sock`), and the one holding the port asks the
//! others there what its own listeners cannot answer: a PROBE answered yes
//! there is yes, an OPEN opened there is relayed through the unix socket.
//!
//! On that socket, before the 8-byte rendezvous message, the holder says
//! who asked and where (`from <socket-address> to <ip-address>\n`) so that
//! the owner can offer only the listeners reachable at that address and
//! tell its program the rock client's real address. The sockets live in
//! the user's private runtime directory (mode 0700, peers checked to be the
//! same user): other users' supervisors are never asked, nor ask.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use rock_proto::rendezvous::{LEN, Question, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use super::carried;
use super::rendezvous::{Decision, QUESTION_WITHIN, State, decide, read_question};
use crate::control_socket;

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

/// Answers one handed-over question.
async fn handle(mut stream: UnixStream, state: State) {
    let decided = tokio::time::timeout(QUESTION_WITHIN, async {
        let (from, arrived) = read_header(&mut stream).await?;
        let question = read_question(&mut stream, state.port, from).await?;
        Some(decide(&state, question, from, arrived).await)
    })
    .await
    .ok()
    .flatten();
    match decided {
        Some(Decision::Probe(rock)) => {
            let _ = stream.write_all(&Reply::Probe { rock }.encode()).await;
        }
        Some(Decision::Opened(program, _entry)) => {
            let reply = Reply::Open { opened: true }.encode();
            if stream.write_all(&reply).await.is_ok() {
                carried::relay(stream, program).await;
            }
        }
        Some(Decision::Refused) => {
            let _ = stream
                .write_all(&Reply::Open { opened: false }.encode())
                .await;
        }
        None => {}
    }
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

/// Asks the other supervisors of this user, with the same rendezvous port,
/// what this one could not answer: the reply, and for an OPEN that one of
/// them opened, the connection to relay. `None` when none of them says yes.
pub(super) async fn forward(
    state: &State,
    question: Question,
    from: SocketAddr,
    arrived: IpAddr,
) -> Option<(Reply, Option<UnixStream>)> {
    let base = crate::rundir::user_dir().ok()?;
    let name = socket_name(state.port);
    for entry in std::fs::read_dir(base).ok()?.flatten() {
        let dir = entry.path();
        let is_supervisor = entry
            .file_name()
            .to_string_lossy()
            .starts_with("supervisor-");
        if !is_supervisor || dir == state.session {
            continue;
        }
        let socket = dir.join(&name);
        if !socket.exists() {
            continue;
        }
        let asked = tokio::time::timeout(ANSWER_WITHIN, ask(&socket, question, from, arrived));
        match asked.await {
            Ok(Some((reply @ Reply::Probe { rock: true }, _))) => return Some((reply, None)),
            Ok(Some((reply @ Reply::Open { opened: true }, stream))) => {
                tracing::debug!(
                    "rendezvous port {}: {question:?} from {from} handed over to {}",
                    state.port,
                    dir.display()
                );
                return Some((reply, Some(stream)));
            }
            _ => {}
        }
    }
    None
}

/// Asks one other supervisor at `socket`.
async fn ask(
    socket: &std::path::Path,
    question: Question,
    from: SocketAddr,
    arrived: IpAddr,
) -> Option<(Reply, UnixStream)> {
    let mut stream = UnixStream::connect(socket).await.ok()?;
    let mut out = header(from, arrived).into_bytes();
    out.extend_from_slice(&question.encode());
    stream.write_all(&out).await.ok()?;
    let mut buf = [0u8; LEN];
    stream.read_exact(&mut buf).await.ok()?;
    let reply = Reply::parse(&buf).ok()?;
    Some((reply, stream))
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
