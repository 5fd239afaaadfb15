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
        if crate::real::getsockname(fd, (&raw mut storage).cast(), &mut len) != 0 {
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

/// The address family of socket `fd` (`SO_DOMAIN`).
pub fn family(fd: c_int) -> Option<c_int> {
    let mut domain: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as socklen_t;
    // SAFETY: getsockopt into a properly sized int.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            (&raw mut domain).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(domain)
}

/// Whether IPv6 socket `fd` refuses IPv4 (`IPV6_V6ONLY`).
pub fn v6_only(fd: c_int) -> bool {
    let mut on: c_int = 0;
    let mut len = std::mem::size_of::<c_int>() as socklen_t;
    // SAFETY: getsockopt into a properly sized int.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            (&raw mut on).cast(),
            &mut len,
        )
    };
    rc == 0 && on != 0
}

/// The local address of socket `fd`, as the kernel reports it (through
/// libc's own `getsockname`, never the exported one).
pub fn local_addr(fd: c_int) -> Option<SocketAddr> {
    // SAFETY: getsockname into a sockaddr_storage of the size it says.
    unsafe {
        let mut storage: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as socklen_t;
        if crate::real::getsockname(fd, (&raw mut storage).cast(), &mut len) != 0 {
            return None;
        }
        socket_addr((&raw const storage).cast(), len)
    }
}

/// Whether `addr` is a loopback address (IPv4-mapped ones included): the
/// only peers the supervisor may be standing in for.
pub fn is_loopback(addr: SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

/// `addr` as a socket address of `family`, ready to pass to the kernel:
/// IPv4 in an IPv6 socket becomes IPv4-mapped; IPv6 cannot go into an
/// IPv4 socket (`None`).
pub fn to_raw(addr: SocketAddr, family: c_int) -> Option<(libc::sockaddr_storage, socklen_t)> {
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match (family, addr) {
        (libc::AF_INET, SocketAddr::V4(a)) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&raw mut storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        (libc::AF_INET6, addr) => {
            let (ip, scope) = match addr {
                SocketAddr::V4(a) => (a.ip().to_ipv6_mapped(), 0),
                SocketAddr::V6(a) => (*a.ip(), a.scope_id()),
            };
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: addr.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: ip.octets(),
                },
                sin6_scope_id: scope,
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&raw mut storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
        _ => return None,
    };
    Some((storage, len as socklen_t))
}

/// Writes `addr` (as a socket address of `family`) to the program's
/// `out`/`out_len`, as the kernel does: at most `*out_len` bytes, and the
/// full length into `*out_len`. Nothing is written when `addr` does not
/// fit the family.
///
/// # Safety
/// `out` points to `*out_len` writable bytes; both are non-null.
pub unsafe fn write_addr(
    addr: SocketAddr,
    family: c_int,
    out: *mut sockaddr,
    out_len: *mut socklen_t,
) {
    let Some((storage, len)) = to_raw(addr, family) else {
        return;
    };
    // SAFETY: the caller's guarantee about out and out_len.
    unsafe {
        let room = usize::try_from(*out_len).unwrap_or(0);
        let n = room.min(len as usize);
        std::ptr::copy_nonoverlapping((&raw const storage).cast::<u8>(), out.cast::<u8>(), n);
        *out_len = len;
    }
}

/// The peer address of socket `fd`, as the kernel reports it (through
/// libc's own `getpeername`, never the exported one).
pub fn peer_addr(fd: c_int) -> Option<SocketAddr> {
    // SAFETY: getpeername into a sockaddr_storage of the size it says.
    unsafe {
        let mut storage: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as socklen_t;
        if crate::real::getpeername(fd, (&raw mut storage).cast(), &mut len) != 0 {
            return None;
        }
        socket_addr((&raw const storage).cast(), len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_back(storage: &libc::sockaddr_storage, len: socklen_t) -> Option<SocketAddr> {
        // SAFETY: a storage of its full size, len within it.
        unsafe { socket_addr((storage as *const libc::sockaddr_storage).cast(), len) }
    }

    #[test]
    fn addresses_go_into_the_socket_family_asked_for() {
        let v4: SocketAddr = "192.0.2.7:6379".parse().expect("an address");
        let v6: SocketAddr = "[2001:db8::1]:443".parse().expect("an address");
        let (s, len) = to_raw(v4, libc::AF_INET).expect("v4 in v4");
        assert_eq!(read_back(&s, len), Some(v4));
        let (s, len) = to_raw(v4, libc::AF_INET6).expect("v4 in v6");
        let mapped: SocketAddr = "[::ffff:192.0.2.7]:6379".parse().expect("an address");
        assert_eq!(read_back(&s, len), Some(mapped));
        assert!(is_loopback(
            "[::ffff:127.0.0.1]:1".parse().expect("an address")
        ));
        let (s, len) = to_raw(v6, libc::AF_INET6).expect("v6 in v6");
        assert_eq!(read_back(&s, len), Some(v6));
        assert!(
            to_raw(v6, libc::AF_INET).is_none(),
            "no IPv6 in an IPv4 socket"
        );
        assert!(to_raw(v4, libc::AF_UNIX).is_none());
    }

    #[test]
    fn a_short_buffer_gets_what_fits_and_the_full_length_as_the_kernel_does() {
        let v6: SocketAddr = "[2001:db8::1]:443".parse().expect("an address");
        let mut buf = [0xAAu8; 64];
        let mut len: socklen_t = 4;
        // SAFETY: buf has 64 writable bytes, len says 4.
        unsafe { write_addr(v6, libc::AF_INET6, buf.as_mut_ptr().cast(), &mut len) };
        assert_eq!(len as usize, std::mem::size_of::<libc::sockaddr_in6>());
        assert!(
            buf[4..].iter().all(|&b| b == 0xAA),
            "nothing past the room given"
        );
        assert_eq!(u16::from_ne_bytes([buf[0], buf[1]]), libc::AF_INET6 as u16);
        // An address that does not fit the family leaves the buffer alone.
        let mut len: socklen_t = 64;
        let before = buf;
        // SAFETY: as above.
        unsafe { write_addr(v6, libc::AF_INET, buf.as_mut_ptr().cast(), &mut len) };
        assert_eq!((buf, len), (before, 64));
    }

    #[test]
    fn short_and_foreign_addresses_are_none() {
        let (s, len) =
            to_raw("10.0.0.1:1".parse().expect("an address"), libc::AF_INET).expect("v4");
        assert_eq!(read_back(&s, len - 1), None);
        assert_eq!(read_back(&s, 1), None);
        // SAFETY: a null pointer is allowed.
        assert_eq!(unsafe { socket_addr(std::ptr::null(), 16) }, None);
    }
}
