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
//! test of the flags); `listen`, which registers a TCP listener with the
//! supervisor once the kernel has made it one.

// The exported functions are the C library's: unmangled, C ABI, and
// unsafe by nature (they take raw pointers from the program).
#![allow(clippy::missing_safety_doc)]

mod channel;
mod real;
mod sockets;

use std::ffi::{c_int, c_void};

use libc::{msghdr, size_t, sockaddr, socklen_t, ssize_t};
use rock_proto::supervise::Request;

/// Tells the supervisor that `fd` is about to connect to `addr`, if it is
/// a TCP socket that has not connected yet.
///
/// # Safety
/// `addr` points to `len` readable bytes, or is null.
unsafe fn announce(fd: c_int, addr: *const sockaddr, len: socklen_t) {
    // SAFETY: the caller's guarantee.
    if let Some(dest) = unsafe { sockets::tcp_destination(fd, addr, len) } {
        // The only answer a supervisor gives yet is Direct; any other, or
        // none, connects directly too.
        let _ = std::panic::catch_unwind(|| channel::ask(&Request::Connect(dest)));
    }
}

/// `connect(2)`: a TCP connection is announced to the supervisor, which
/// answers where it should go; today every answer is "directly".
#[unsafe(no_mangle)]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: the program's pointer and length, as connect(2) takes them.
    unsafe { announce(fd, addr, len) };
    // SAFETY: the program's own arguments, passed on unchanged.
    unsafe { real::connect(fd, addr, len) }
}

/// `sendto(2)`: with `MSG_FASTOPEN` on a TCP socket not yet connected it
/// is a `connect` followed by a send (TCP Fast Open), announced as one.
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
        unsafe { announce(fd, addr, addr_len) };
    }
    // SAFETY: the program's own arguments, passed on unchanged.
    unsafe { real::sendto(fd, buf, len, flags, addr, addr_len) }
}

/// `sendmsg(2)`: as [`sendto`], the destination in `msg_name`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    if flags & libc::MSG_FASTOPEN != 0 && !msg.is_null() {
        // SAFETY: the program's msghdr, as sendmsg(2) takes it.
        let (name, name_len) = unsafe { ((*msg).msg_name, (*msg).msg_namelen) };
        // SAFETY: msg_name points to msg_namelen bytes, or is null.
        unsafe { announce(fd, name.cast(), name_len) };
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
