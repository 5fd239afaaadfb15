//! [`SshLink`]: a direct-tcpip channel as a rock link's byte stream, with
//! the SSH connection it runs in.
//!
//! Invariant: when the link is dropped (the relay gave it up, or a dial
//! was abandoned), its TCP socket is shut down at once (or its proxy
//! process killed), so russh's connection task ends even if it was blocked
//! writing into a blackholed socket, rather than lingering until the
//! kernel gives up.

use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::task::{Context, Poll};

use russh::ChannelStream;
use russh::client::{Handle, Msg};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::ssh::bootstrap::BootHandler;
use crate::ssh::proxy::ProxyGuard;

/// Ends the link's transport when dropped: shuts a TCP socket down
/// (through a second descriptor of the same socket, so it works while
/// russh owns the first), or kills the proxy process.
pub(super) enum Cut {
    Tcp(std::net::TcpStream),
    /// Dropping the guard kills the process.
    Proxy {
        _guard: ProxyGuard,
    },
}

impl Cut {
    /// Splits `stream` into itself and its cut.
    pub(super) fn tcp(stream: tokio::net::TcpStream) -> io::Result<(tokio::net::TcpStream, Cut)> {
        let std = stream.into_std()?;
        let cut = Cut::Tcp(std.try_clone()?);
        Ok((tokio::net::TcpStream::from_std(std)?, cut))
    }

    /// The cut of a proxy process's stream.
    pub(super) fn proxy(guard: ProxyGuard) -> Cut {
        Cut::Proxy { _guard: guard }
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        if let Cut::Tcp(socket) = self {
            // The socket may be dead already; nothing to report.
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

/// A rock link carried by a direct-tcpip channel to rockd.
pub(crate) struct SshLink {
    stream: ChannelStream<Msg>,
    /// Keeps the SSH connection's handle for as long as the link lives.
    _handle: Handle<BootHandler>,
    _cut: Cut,
}

/// Its SSH connection's own TCP connection is not at hand: a network
/// change probes the link instead.
impl crate::relay::LinkIo for SshLink {}

impl SshLink {
    pub(super) fn new(stream: ChannelStream<Msg>, handle: Handle<BootHandler>, cut: Cut) -> Self {
        SshLink {
            stream,
            _handle: handle,
            _cut: cut,
        }
    }
}

impl AsyncRead for SshLink {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for SshLink {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
