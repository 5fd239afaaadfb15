//! The C library's own functions behind the ones this library exports.
//!
//! An exported `connect` shadows libc's for the whole process, this
//! library included: every call the library makes for itself must go
//! through these pointers, or it would call itself. Each is looked up once
//! with `dlsym(RTLD_NEXT, …)` and kept; a lookup that fails leaves the call
//! failing with ENOSYS rather than recursing.

use std::ffi::{CStr, c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};

use libc::{msghdr, size_t, sockaddr, socklen_t, ssize_t};

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
static SENDTO: Next = Next::new(c"sendto");
static SENDMSG: Next = Next::new(c"sendmsg");
static LISTEN: Next = Next::new(c"listen");
static ACCEPT: Next = Next::new(c"accept");
static ACCEPT4: Next = Next::new(c"accept4");
static GETPEERNAME: Next = Next::new(c"getpeername");
static GETSOCKNAME: Next = Next::new(c"getsockname");

fn enosys<T: From<i8>>() -> T {
    // SAFETY: errno is thread-local; writing it is always allowed.
    unsafe { *libc::__errno_location() = libc::ENOSYS };
    T::from(-1)
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

/// libc's `sendto`.
///
/// # Safety
/// As `sendto(2)`: `buf` points to `len` readable bytes, `addr` to
/// `addr_len` (or is null).
pub unsafe fn sendto(
    fd: c_int,
    buf: *const c_void,
    len: size_t,
    flags: c_int,
    addr: *const sockaddr,
    addr_len: socklen_t,
) -> ssize_t {
    type SendTo = unsafe extern "C" fn(
        c_int,
        *const c_void,
        size_t,
        c_int,
        *const sockaddr,
        socklen_t,
    ) -> ssize_t;
    match SENDTO.get() {
        0 => enosys(),
        f => {
            // SAFETY: the address is libc's `sendto`, of this signature.
            let f: SendTo = unsafe { std::mem::transmute::<usize, SendTo>(f) };
            // SAFETY: the caller's guarantee.
            unsafe { f(fd, buf, len, flags, addr, addr_len) }
        }
    }
}

/// libc's `sendmsg`.
///
/// # Safety
/// As `sendmsg(2)`: `msg` points to a valid `msghdr`.
pub unsafe fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    type SendMsg = unsafe extern "C" fn(c_int, *const msghdr, c_int) -> ssize_t;
    match SENDMSG.get() {
        0 => enosys(),
        f => {
            // SAFETY: the address is libc's `sendmsg`, of this signature.
            let f: SendMsg = unsafe { std::mem::transmute::<usize, SendMsg>(f) };
            // SAFETY: the caller's guarantee.
            unsafe { f(fd, msg, flags) }
        }
    }
}

/// libc's `listen`.
pub fn listen(fd: c_int, backlog: c_int) -> c_int {
    type Listen = unsafe extern "C" fn(c_int, c_int) -> c_int;
    match LISTEN.get() {
        0 => enosys(),
        f => {
            // SAFETY: the address is libc's `listen`, of this signature.
            let f: Listen = unsafe { std::mem::transmute::<usize, Listen>(f) };
            // SAFETY: listen takes no pointers.
            unsafe { f(fd, backlog) }
        }
    }
}

/// libc's `accept`.
///
/// # Safety
/// As `accept(2)`: `addr` and `len` are null or valid.
pub unsafe fn accept(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    type Accept = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int;
    match ACCEPT.get() {
        0 => enosys(),
        f => {
            // SAFETY: the address is libc's `accept`, of this signature.
            let f: Accept = unsafe { std::mem::transmute::<usize, Accept>(f) };
            // SAFETY: the caller's guarantee.
            unsafe { f(fd, addr, len) }
        }
    }
}

/// libc's `accept4`.
///
/// # Safety
/// As `accept4(2)`: `addr` and `len` are null or valid.
pub unsafe fn accept4(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t, flags: c_int) -> c_int {
    type Accept4 = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t, c_int) -> c_int;
    match ACCEPT4.get() {
        0 => enosys(),
        f => {
            // SAFETY: the address is libc's `accept4`, of this signature.
            let f: Accept4 = unsafe { std::mem::transmute::<usize, Accept4>(f) };
            // SAFETY: the caller's guarantee.
            unsafe { f(fd, addr, len, flags) }
        }
    }
}

/// libc's `getpeername`.
///
/// # Safety
/// As `getpeername(2)`: `addr` points to `*len` writable bytes.
pub unsafe fn getpeername(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    type GetPeerName = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int;
    match GETPEERNAME.get() {
        0 => enosys(),
        f => {
            // SAFETY: the address is libc's `getpeername`, of this signature.
            let f: GetPeerName = unsafe { std::mem::transmute::<usize, GetPeerName>(f) };
            // SAFETY: the caller's guarantee.
            unsafe { f(fd, addr, len) }
        }
    }
}

/// libc's `getsockname`.
///
/// # Safety
/// As `getsockname(2)`: `addr` points to `*len` writable bytes.
pub unsafe fn getsockname(fd: c_int, addr: *mut sockaddr, len: *mut socklen_t) -> c_int {
    type GetSockName = unsafe extern "C" fn(c_int, *mut sockaddr, *mut socklen_t) -> c_int;
    match GETSOCKNAME.get() {
        0 => enosys(),
        f => {
            // SAFETY: the address is libc's `getsockname`, of this signature.
            let f: GetSockName = unsafe { std::mem::transmute::<usize, GetSockName>(f) };
            // SAFETY: the caller's guarantee.
            unsafe { f(fd, addr, len) }
        }
    }
}
