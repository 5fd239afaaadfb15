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
//! Exported: `connect`.

// The exported functions are the C library's: unmangled, C ABI, and
// unsafe by nature (they take raw pointers from the program).
#![allow(clippy::missing_safety_doc)]

mod channel;
mod real;
mod sockets;

use std::ffi::c_int;

use libc::{sockaddr, socklen_t};
use rock_proto::supervise::Request;

/// `connect(2)`: a TCP connection is announced to the supervisor, which
/// answers where it should go; today every answer is "directly".
#[unsafe(no_mangle)]
pub unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: the program's pointer and length, as connect(2) takes them.
    if let Some(dest) = unsafe { sockets::tcp_destination(fd, addr, len) } {
        // The only answer a supervisor gives yet is Direct; any other, or
        // none, connects directly too.
        let _ = std::panic::catch_unwind(|| channel::ask(&Request::Connect(dest)));
    }
    // SAFETY: the program's own arguments, passed on unchanged.
    unsafe { real::connect(fd, addr, len) }
}
