//! librocks.so: loaded with LD_PRELOAD by `rock COMMAND`, makes the TCP
//! connections of a dynamically linked program reliable when both ends run
//! under rock, and leaves them plain TCP otherwise (docs/PRELOAD.md has the
//! design and the slices it lands in).
//!
//! The program keeps its own kernel sockets; the library only asks its
//! supervisor where each connection should go. It depends on the protocol
//! crate and libc only — never on tokio or russh — because it runs inside
//! arbitrary processes, and it never panics across the C boundary: every
//! failure falls back to what the program would have done without rock.
//!
//! * [`real`] — libc's own functions behind the exported ones.
//! * [`channel`] — the per-thread line to the supervisor.
//! * [`sockets`] — what a descriptor and an address are (TCP? which peer?).
//!
//! Exported: `connect`, and `sendto`/`sendmsg` (which connect when they
//! carry `MSG_FASTOPEN`; every other call goes straight to libc after one
//! test of the flags), sent to the supervisor's loopback end instead when
//! it answers `via`; `listen`, which registers a TCP listener with the
//! supervisor once the kernel has made it one; `accept`, `accept4`,
//! `getpeername` and `getsockname`, which report the real ends of a
//! connection the supervisor carries (asked only when the kernel reports a
//! loopback peer: an ordinary connection costs nothing). The library's own
//! calls of every exported function go through [`real`].

// The exported functions are the C library's: unmangled, C ABI, and
// unsafe by nature (they take raw pointers from the program).
#![allow(clippy::missing_safety_doc)]

mod channel;
mod real;
mod sockets;

use std::ffi::{c_int, c_void};
use std::net::{Ipv4Addr, SocketAddr};

use libc::{msghdr, size_t, sockaddr, socklen_t, ssize_t};
use rock_proto::supervise::{Answer, Request};

/// Where `fd`'s connection to `addr` must really go: `None` for `addr`
/// itself (an ordinary peer, no supervisor, no answer, or not a TCP socket
/// about to connect), else the supervisor's loopback end, as a socket
/// address of `fd`'s family.
///
/// # Safety
/// `addr` points to `len` readable bytes, or is null.
unsafe fn redirect(
    fd: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> Option<(libc::sockaddr_storage, socklen_t, u16)> {
    // SAFETY: the caller's guarantee.
    let dest = unsafe { sockets::tcp_destination(fd, addr, len) }?;
    let answer = std::panic::catch_unwind(|| channel::ask(&Request::Connect(dest))).ok()??;
    let Answer::Via(port) = answer else {
        return None;
    };
    let family = sockets::family(fd)?;
    if family == libc::AF_INET6 && sockets::v6_only(fd) {
        // It cannot reach 127.0.0.1; the supervisor's end goes unused.
        return None;
    }
    let (via, via_len) =
        sockets::to_raw(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port), family)?;
    Some((via, via_len, port))
}

/// Tells the supervisor which socket went to its `via` port (it relays
/// that connection and no other), once the kernel has given `fd` its local
/// address. Keeps the caller's errno.
fn confirm(fd: c_int, via: u16) {
    // SAFETY: reading the thread's errno.
    let saved = unsafe { *libc::__errno_location() };
    if let Some(local) = sockets::local_addr(fd).filter(|a| a.port() != 0) {
        let _ = std::panic::catch_unwind(|| channel::ask(&Request::From { local, via }));
    }
    // SAFETY: restoring the thread's errno.
    unsafe { *libc::__errno_location() = saved };
}

/// `connect(2)`: a TCP connection is announced to the supervisor, which
/// answers where it should go: to `addr` itself, or to its own loopback
/// end of a connection it carries to a rock peer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: the program's pointer and length, as connect(2) takes them.
    match unsafe { redirect(fd, addr, len) } {
        Some((via, via_len, port)) => {
            // SAFETY: a socket address built within its storage.
            let rc = unsafe { real::connect(fd, (&raw const via).cast(), via_len) };
            confirm(fd, port);
            rc
        }
        // SAFETY: the program's own arguments, passed on unchanged.
        None => unsafe { real::connect(fd, addr, len) },
    }
}

/// `sendto(2)`: with `MSG_FASTOPEN` on a TCP socket not yet connected it
/// is a `connect` followed by a send (TCP Fast Open), asked as one.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    len: size_t,
    flags: c_int,
    addr: *const sockaddr,
    addr_len: socklen_t,
) -> ssize_t {
    if flags & libc::MSG_FASTOPEN != 0 {
        // SAFETY: the program's pointer and length, as sendto(2) takes them.
        if let Some((via, via_len, port)) = unsafe { redirect(fd, addr, addr_len) } {
            // SAFETY: the program's buffer; an address built within its storage.
            let sent =
                unsafe { real::sendto(fd, buf, len, flags, (&raw const via).cast(), via_len) };
            confirm(fd, port);
            return sent;
        }
    }
    // SAFETY: the program's own arguments, passed on unchanged.
    unsafe { real::sendto(fd, buf, len, flags, addr, addr_len) }
}

/// `sendmsg(2)`: as [`sendto`], the destination in `msg_name`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    if flags & libc::MSG_FASTOPEN != 0 && !msg.is_null() {
        // SAFETY: the program's msghdr, as sendmsg(2) takes it.
        let mut copy: msghdr = unsafe { std::ptr::read(msg) };
        // SAFETY: msg_name points to msg_namelen bytes, or is null.
        let via = unsafe { redirect(fd, copy.msg_name.cast(), copy.msg_namelen) };
        if let Some((mut via, via_len, port)) = via {
            copy.msg_name = (&raw mut via).cast();
            copy.msg_namelen = via_len;
            // SAFETY: the program's buffers, an address within its storage.
            let sent = unsafe { real::sendmsg(fd, &copy, flags) };
            confirm(fd, port);
            return sent;
        }
    }
    // SAFETY: the program's own arguments, passed on unchanged.
    unsafe { real::sendmsg(fd, msg, flags) }
}

/// `listen(2)`: once the kernel has made `fd` a listener, a TCP listener's
/// address is registered with the supervisor (which then tells rock
/// clients that ask that this port is a rock listener).
#[unsafe(no_mangle)]
pub extern "C" fn listen(fd: c_int, backlog: c_int) -> c_int {
    let rc = real::listen(fd, backlog);
    if rc == 0
        && let Some(addr) = sockets::tcp_listening(fd)
    {
        let _ = std::panic::catch_unwind(|| channel::ask(&Request::Listen(addr)));
    }
    rc
}

/// The real (peer, local) ends of `fd`'s connection if the supervisor
/// carries it: asked only when the kernel reports a loopback peer.
fn carried_ends(fd: c_int) -> Option<(SocketAddr, SocketAddr)> {
    let remote = sockets::peer_addr(fd)?;
    if !sockets::is_loopback(remote) {
        return None;
    }
    let local = sockets::local_addr(fd)?;
    let answer = std::panic::catch_unwind(|| channel::ask(&Request::Peer { local, remote }));
    match answer.ok()?? {
        Answer::Real { peer, local } => Some((peer, local)),
        _ => None,
    }
}

/// Which end of a connection to report.
#[derive(Clone, Copy)]
enum End {
    Peer,
    Local,
}

/// Puts the real `end` of `fd`'s connection into the program's
/// `addr`/`len`, if the supervisor carries it.
///
/// # Safety
/// `addr` and `len` are null, or valid as `getpeername(2)` takes them.
unsafe fn report_real(fd: c_int, end: End, addr: *mut sockaddr, len: *mut socklen_t) {
    if addr.is_null() || len.is_null() {
        return;
    }
    if let (Some((peer, local)), Some(family)) = (carried_ends(fd), sockets::family(fd)) {
        let real = match end {
            End::Peer => peer,
            End::Local => local,
        };
        // SAFETY: the caller's guarantee.
        unsafe { sockets::write_addr(real, family, addr, len) };
    }
}

/// `accept(2)`: a connection the supervisor carries for a rock client
/// reports that client's address.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: the program's own arguments, passed on unchanged.
    let new = unsafe { real::accept(fd, addr, len) };
    if new >= 0 {
        // SAFETY: the program's pointers, as accept(2) takes them.
        unsafe { report_real(new, End::Peer, addr, len) };
    }
    new
}

/// `accept4(2)`: as [`accept`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
    flags: c_int,
) -> c_int {
    // SAFETY: the program's own arguments, passed on unchanged.
    let new = unsafe { real::accept4(fd, addr, len, flags) };
    if new >= 0 {
        // SAFETY: the program's pointers, as accept4(2) takes them.
        unsafe { report_real(new, End::Peer, addr, len) };
    }
    new
}

/// `getpeername(2)`: a connection the supervisor carries reports its real
/// peer (the rock server the program connected to, or the rock client).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: the program's own arguments, passed on unchanged.
    let rc = unsafe { real::getpeername(fd, addr, len) };
    if rc == 0 {
        // SAFETY: the program's pointers, as getpeername(2) takes them.
        unsafe { report_real(fd, End::Peer, addr, len) };
    }
    rc
}

/// `getsockname(2)`: a connection the supervisor carries reports its real
/// local end (a client's link address, or the address a rock client
/// reached the server at).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    // SAFETY: the program's own arguments, passed on unchanged.
    let rc = unsafe { real::getsockname(fd, addr, len) };
    if rc == 0 {
        // SAFETY: the program's pointers, as getsockname(2) takes them.
        unsafe { report_real(fd, End::Local, addr, len) };
    }
    rc
}
