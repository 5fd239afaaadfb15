//! The C library's own functions behind the ones this library exports.
//!
//! An exported `connect` shadows libc's for the whole process, this
//! library included: every call the library makes for itself must go
//! through these pointers, or it would call itself. Each is looked up once
//! with `dlsym(RTLD_NEXT, …)` and kept; a lookup that fails leaves the call
//! failing with ENOSYS rather than recursing.

use std::ffi::{CStr, c_int};
use std::sync::atomic::{AtomicUsize, Ordering};

use libc::{sockaddr, socklen_t};

/// A symbol looked up once.
struct Next {
    name: &'static CStr,
    addr: AtomicUsize,
}

impl Next {
    const fn new(name: &'static CStr) -> Next {
        Next {
            name,
            addr: AtomicUsize::new(0),
        }
    }

    /// The next definition's address, or 0.
    fn get(&self) -> usize {
        let cached = self.addr.load(Ordering::Acquire);
        if cached != 0 {
            return cached;
        }
        // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name; a race
        // only looks the same symbol up twice.
        let found = unsafe { libc::dlsym(libc::RTLD_NEXT, self.name.as_ptr()) } as usize;
        self.addr.store(found, Ordering::Release);
        found
    }
}

static CONNECT: Next = Next::new(c"connect");

fn enosys() -> c_int {
    // SAFETY: errno is thread-local; writing it is always allowed.
    unsafe { *libc::__errno_location() = libc::ENOSYS };
    -1
}

/// libc's `connect`.
///
/// # Safety
/// As `connect(2)`: `addr` points to `len` readable bytes.
pub unsafe fn connect(fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    type Connect = unsafe extern "C" fn(c_int, *const sockaddr, socklen_t) -> c_int;
    match CONNECT.get() {
        0 => enosys(),
        f => {
            // SAFETY: the address is libc's `connect`, of this signature.
            let f: Connect = unsafe { std::mem::transmute::<usize, Connect>(f) };
            // SAFETY: the caller's guarantee.
            unsafe { f(fd, addr, len) }
        }
    }
}
