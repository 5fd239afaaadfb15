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
//! Exported: `connect`, and `sendto`/`sendmsg` for `MSG_FASTOPEN`, which
//! connect as they send.

// The exported functions are the C library's: unmangled, C ABI, and
// unsafe by nature (they take raw pointers from the program).
#![allow(clippy::missing_safety_doc)]

mod channel;
mod real;
mod sockets;

use std::ffi::c_int;

use libc::{sockaddr, socklen_t};
use rock_proto::supervise::Request;

/// Announces the connection `fd` is about to make to `addr`, if it is a
/// TCP one, to the supervisor, which answers where it should go; today
/// every answer is "directly".
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

/// `connect(2)`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: the program's pointer and length, as connect(2) takes them.
    unsafe { announce(fd, addr, len) };
    // SAFETY: the program's own arguments, passed on unchanged.
    unsafe { real::connect(fd, addr, len) }
}

/// `sendto(2)`: with `MSG_FASTOPEN` on an unconnected TCP socket it
/// connects as it sends (TCP Fast Open), so it is announced as `connect`
/// is. Every other call passes straight through.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const libc::c_void,
    len: usize,
    flags: c_int,
    addr: *const sockaddr,
    addr_len: socklen_t,
) -> isize {
    if flags & libc::MSG_FASTOPEN != 0 {
        // SAFETY: the program's pointer and length, as sendto(2) takes them.
        unsafe { announce(fd, addr, addr_len) };
    }
    // SAFETY: the program's own arguments, passed on unchanged.
    unsafe { real::sendto(fd, buf, len, flags, addr, addr_len) }
}

/// `sendmsg(2)`: as [`sendto`], the address in `msg_name`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sendmsg(fd: c_int, msg: *const libc::msghdr, flags: c_int) -> isize {
    if flags & libc::MSG_FASTOPEN != 0 && !msg.is_null() {
        // SAFETY: a non-null msghdr from the program, as sendmsg(2) takes it.
        let (name, name_len) = unsafe { ((*msg).msg_name, (*msg).msg_namelen) };
        // SAFETY: msg_name points to msg_namelen bytes, or is null.
        unsafe { announce(fd, name.cast(), name_len) };
    }
    // SAFETY: the program's own arguments, passed on unchanged.
    unsafe { real::sendmsg(fd, msg, flags) }
}
