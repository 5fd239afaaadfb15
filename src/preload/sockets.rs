//! What the library needs to know about the program's sockets, read from
//! the kernel, never from memory of its own: whether a descriptor is a TCP
//! socket about to connect, and the address it connects to; whether it is
//! a TCP listener, and where.

use std::ffi::c_int;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use libc::{sockaddr, socklen_t};

/// `TCP_CLOSE` in `tcp_info.tcpi_state`: not connected, not connecting.
const TCP_CLOSE: u8 = 7;
/// `TCP_LISTEN` in `tcp_info.tcpi_state`.
const TCP_LISTEN: u8 = 10;

/// The destination of a `connect(fd, addr, len)` the supervisor should
/// hear of: an IPv4 or IPv6 address, on a TCP socket that is neither
/// connected nor already connecting (a non-blocking connect polled again
/// with `connect` is the kernel's business).
///
/// # Safety
/// `addr` points to `len` readable bytes, or is null.
pub unsafe fn tcp_destination(
    fd: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> Option<SocketAddr> {
    // SAFETY: the caller's guarantee about addr and len.
    let dest = unsafe { socket_addr(addr, len) }?;
    (is_stream(fd) && tcp_state(fd) == Some(TCP_CLOSE)).then_some(dest)
}

/// The address a listening TCP socket listens at (its own address), if
/// `fd` is one.
pub fn tcp_listening(fd: c_int) -> Option<SocketAddr> {
    if !is_stream(fd) || tcp_state(fd) != Some(TCP_LISTEN) {
        return None;
    }
    // SAFETY: getsockname into a sockaddr_storage of the size it says.
    unsafe {
        let mut storage: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as socklen_t;
        if libc::getsockname(fd, (&raw mut storage).cast(), &mut len) != 0 {
            return None;
        }
        socket_addr((&raw const storage).cast(), len)
    }
}

/// The address `addr` holds, if it is IPv4 or IPv6 and long enough.
///
/// # Safety
/// `addr` points to `len` readable bytes, or is null.
pub unsafe fn socket_addr(addr: *const sockaddr, len: socklen_t) -> Option<SocketAddr> {
    if addr.is_null() {
        return None;
    }
    let len = usize::try_from(len).ok()?;
    // SAFETY: at least a sa_family_t is readable when len says so.
    let family = if len >= std::mem::size_of::<libc::sa_family_t>() {
        c_int::from(unsafe { (*addr).sa_family })
    } else {
        return None;
    };
    match family {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: checked long enough; read unaligned to be safe.
            let a: libc::sockaddr_in = unsafe { std::ptr::read_unaligned(addr.cast()) };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddrV4::new(ip, u16::from_be(a.sin_port)).into())
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: checked long enough; read unaligned to be safe.
            let a: libc::sockaddr_in6 = unsafe { std::ptr::read_unaligned(addr.cast()) };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddrV6::new(ip, u16::from_be(a.sin6_port), 0, a.sin6_scope_id).into())
        }
        _ => None,
    }
}

fn is_stream(fd: c_int) -> bool {
    let mut kind: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as socklen_t;
    // SAFETY: getsockopt into a properly sized int.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&raw mut kind).cast(),
            &mut len,
        )
    };
    rc == 0 && kind == libc::SOCK_STREAM
}

/// The TCP state of `fd` (`tcpi_state`), if it is a TCP socket.
fn tcp_state(fd: c_int) -> Option<u8> {
    // SAFETY: getsockopt into a properly sized tcp_info.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as socklen_t;
        let rc = libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        );
        (rc == 0).then_some(info.tcpi_state)
    }
}
