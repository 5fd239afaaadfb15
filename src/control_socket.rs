//! The control socket every session has in its private session directory
//! (see [`crate::rundir`]): its name, the longest request line, how it is
//! bound, who may talk to it, and how a request line is read and sent.
//!
//! A request is one line; the answer is whatever the request calls for,
//! then the connection closes. [`STATUS_REQUEST`] is the one every kind of
//! session answers (with a [`crate::status::Report`]); `rock -d` adds its
//! own requests on top (see `redirect::control`).
//!
//! Only processes of the same user may talk to it: the directory is
//! private, the socket is mode 0600, and the peer's uid is checked.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tokio::io::AsyncReadExt;
use tokio::net::{UnixListener, UnixStream};
use zeroize::Zeroizing;

/// Name of the control socket in the session directory.
pub const CONTROL_SOCKET: &str = "ctl.sock";
/// Longest request line the control socket reads.
pub const MAX_REQUEST: usize = 1024;
/// The request every session answers with its status report.
pub const STATUS_REQUEST: &str = "status";
/// What `rock checkpoint` asks a `rock COMMAND` supervisor before a dump:
/// let every link go and make none for the next MILLISECONDS (`hold MS`),
/// so that the dump finds no connection to a peer. Answered `ok`.
pub const HOLD_REQUEST: &str = "hold";

/// Binds the control socket in `dir`, readable and writable by its owner
/// only.
pub fn bind(dir: &Path) -> io::Result<UnixListener> {
    let path = dir.join(CONTROL_SOCKET);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Whether the peer of `stream` runs as this process's user.
pub fn same_user(stream: &UnixStream) -> bool {
    // SAFETY: getuid cannot fail.
    let me = unsafe { libc::getuid() };
    stream.peer_cred().map(|c| c.uid()).ok() == Some(me)
}

/// Reads one request line (without its newline), at most [`MAX_REQUEST`]
/// bytes, kept in a buffer that is wiped when dropped: askpass requests
/// carry no secret, but their answers' neighbours may.
pub async fn read_request(stream: &mut UnixStream) -> io::Result<Zeroizing<String>> {
    let mut line = Zeroizing::new(Vec::new());
    loop {
        let b = stream.read_u8().await?;
        if b == b'\n' {
            break;
        }
        if line.len() == MAX_REQUEST {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request too long",
            ));
        }
        line.push(b);
    }
    String::from_utf8(line.to_vec())
        .map(Zeroizing::new)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "request is not UTF-8"))
}

/// The control socket does not answer (inside the [`io::Error`] that
/// [`connect`] returns, of the same kind as its cause).
#[derive(Debug, thiserror::Error)]
#[error("cannot reach the rock process at {path}")]
pub struct Unreachable {
    /// The socket.
    pub path: std::path::PathBuf,
    /// Why.
    #[source]
    pub source: io::Error,
}

/// Connects to the control socket in `dir` (blocking: for the helpers and
/// `rock status`, which have no runtime).
pub fn connect(dir: &Path) -> io::Result<std::os::unix::net::UnixStream> {
    let path = dir.join(CONTROL_SOCKET);
    std::os::unix::net::UnixStream::connect(&path)
        .map_err(|source| io::Error::new(source.kind(), Unreachable { path, source }))
}
