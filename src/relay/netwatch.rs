//! Notices when this host's network changes — an address, a route or a
//! link comes or goes (Linux rtnetlink) — so that a client relay checks its
//! link at once, and redials at once when suspended, instead of waiting for
//! the heartbeat timeout or the next backoff step.
//!
//! Only "something changed" is reported; the messages are not parsed. The
//! relay then compares its link's local address with the host's
//! ([`host_addresses`]): a link whose address is gone is dead at once; any
//! other change costs one ping.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
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

/// Every address this host has now, on any interface (getifaddrs).
pub fn host_addresses() -> io::Result<Vec<IpAddr>> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a list freed below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut addresses = Vec::new();
    let mut at = list;
    while !at.is_null() {
        // SAFETY: `at` is a node of the list getifaddrs returned.
        let entry = unsafe { &*at };
        at = entry.ifa_next;
        let addr = entry.ifa_addr;
        if addr.is_null() {
            continue;
        }
        // SAFETY: a non-null ifa_addr points to a sockaddr whose family
        // says which sockaddr it is.
        match i32::from(unsafe { (*addr).sa_family }) {
            libc::AF_INET => {
                // SAFETY: as above, an AF_INET sockaddr is a sockaddr_in.
                let v4 = unsafe { &*addr.cast::<libc::sockaddr_in>() };
                addresses.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))));
            }
            libc::AF_INET6 => {
                // SAFETY: as above, an AF_INET6 sockaddr is a sockaddr_in6.
                let v6 = unsafe { &*addr.cast::<libc::sockaddr_in6>() };
                addresses.push(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)));
            }
            _ => {}
        }
    }
    // SAFETY: the list came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_has_its_loopback_address() {
        let all = host_addresses().expect("getifaddrs");
        assert!(all.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)), "{all:?}");
    }
}
