//! What a link runs over: any async byte stream that can say, when it is a
//! TCP connection, which local address carries it and what the kernel
//! knows of its path; and a stream whose first bytes were read already.

use std::io::IoSlice;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use super::path::{self, PathEstimate};

/// A byte stream a link can run over.
pub trait LinkIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// This host's address of the TCP connection that carries the link,
    /// when it is one: a link whose address has left the host is dead,
    /// and the relay redials at once instead of probing it.
    fn local_ip(&self) -> Option<IpAddr> {
        None
    }
    /// Whether the link can estimate its path ([`LinkIo::path`]); a link
    /// that cannot gets the whole replay bound as its send window.
    fn measures_path(&self) -> bool {
        false
    }
    /// The kernel's figures for the link's path, when it has them.
    fn path(&self) -> Option<PathEstimate> {
        None
    }
}

impl LinkIo for TcpStream {
    fn local_ip(&self) -> Option<IpAddr> {
        self.local_addr().ok().map(|a| a.ip())
    }
    fn measures_path(&self) -> bool {
        true
    }
    fn path(&self) -> Option<PathEstimate> {
        path::estimate(self)
    }
}

/// A link handed over by another supervisor of the same host.
impl LinkIo for UnixStream {}

/// A link's transport, whatever it is.
pub type BoxLink = Box<dyn LinkIo>;

/// A link whose first bytes were already read (by whoever had to look at
/// them to know where the link belongs): they are read again first.
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    /// `inner`, with `prefix` read from it already.
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Prefixed {
            prefix,
            at: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.at < this.prefix.len() {
            let n = (this.prefix.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: LinkIo> LinkIo for Prefixed<S> {
    fn local_ip(&self) -> Option<IpAddr> {
        self.inner.local_ip()
    }
    fn measures_path(&self) -> bool {
        self.inner.measures_path()
    }
    fn path(&self) -> Option<PathEstimate> {
        self.inner.path()
    }
}
