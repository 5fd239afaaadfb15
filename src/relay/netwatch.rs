//! Notices when this host's network changes — an address, a route or a
//! link comes or goes (Linux rtnetlink) — so that a client relay checks its
//! link at once, and redials at once when suspended, instead of waiting for
//! the heartbeat timeout or the next backoff step.
//!
//! Only "something changed" is reported; the messages are not parsed. A
//! change that does not affect the link costs one ping.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::task::{Context, Poll};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A subscription to the kernel's network change notifications.
pub struct NetWatch {
    fd: AsyncFd<OwnedFd>,
}

impl NetWatch {
    /// Subscribes to address, route and link changes.
    pub fn new() -> io::Result<NetWatch> {
        // SAFETY: plain socket(2); the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = (libc::RTMGRP_LINK
            | libc::RTMGRP_IPV4_IFADDR
            | libc::RTMGRP_IPV6_IFADDR
            | libc::RTMGRP_IPV4_ROUTE
            | libc::RTMGRP_IPV6_ROUTE) as u32;
        // SAFETY: `addr` is a valid sockaddr_nl of the size passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(io::Error::other(
                "no tokio runtime to watch the network from",
            ));
        }
        // SAFETY: the OwnedFd is moved into the AsyncFd, stays open for its
        // whole life and always yields the same descriptor.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(NetWatch { fd })
    }

    /// `Ready` when the network changed since the last call; drains every
    /// pending notification so a burst counts once.
    pub fn poll_changed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut changed = false;
        let mut buf = [0u8; 8192];
        // Stops when nothing more is pending (or the socket broke: then no
        // more notices, and no busy loop).
        while let Poll::Ready(Ok(mut guard)) = self.fd.poll_read_ready(cx) {
            let read = guard.try_io(|fd| {
                // SAFETY: `buf` is valid for writes of its length.
                let n =
                    unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n)
                }
            });
            match read {
                Ok(Ok(_)) => changed = true,
                // The kernel dropped notices for us: something changed.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => changed = true,
                Ok(Err(_)) => break,
                // Would block: readiness is cleared; poll again to register.
                Err(_) => continue,
            }
        }
        if changed {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}
