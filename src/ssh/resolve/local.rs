//! The local half of ssh's `%` tokens: who runs ssh (the real uid, its
//! login name and its home in the password database) and on which host.

use std::ffi::{CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::ResolveError;

/// The local half of the `%` tokens: who runs ssh, where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalContext {
    /// `%u`: the login name of the real uid.
    pub user: String,
    /// `%d` and `~`: the home directory in the password database (not
    /// `$HOME`, as in ssh).
    pub home: PathBuf,
    /// `%i`: the real uid.
    pub uid: u32,
    /// `%l`: the host name; `%L` is its first label.
    pub hostname: String,
}

impl LocalContext {
    /// Looks up the real uid in the password database and the host name.
    pub fn current() -> Result<Self, ResolveError> {
        // SAFETY: getuid cannot fail and touches no memory of ours.
        let uid = unsafe { libc::getuid() };
        let (user, home) =
            passwd_entry(PasswdKey::Uid(uid)).ok_or(ResolveError::UnknownUid(uid))?;
        let hostname = local_hostname().map_err(ResolveError::Hostname)?;
        Ok(LocalContext {
            user,
            home,
            uid,
            hostname,
        })
    }
}

/// How to look up a password database entry.
pub(super) enum PasswdKey<'a> {
    Uid(u32),
    Name(&'a str),
}

/// The login name and home directory of a password database entry.
pub(super) fn passwd_entry(key: PasswdKey<'_>) -> Option<(String, PathBuf)> {
    let name = match key {
        PasswdKey::Name(n) => Some(std::ffi::CString::new(n).ok()?),
        PasswdKey::Uid(_) => None,
    };
    let mut buf: Vec<libc::c_char> = vec![0; 4096];
    loop {
        // SAFETY: passwd is plain data; the _r calls write only into `pwd`
        // and `buf` (whose length we pass) and set `result` to &pwd or null.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            match (&key, &name) {
                (PasswdKey::Uid(uid), _) => {
                    libc::getpwuid_r(*uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result)
                }
                (PasswdKey::Name(_), Some(n)) => libc::getpwnam_r(
                    n.as_ptr(),
                    &mut pwd,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut result,
                ),
                (PasswdKey::Name(_), None) => return None,
            }
        };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() || pwd.pw_dir.is_null() {
            return None;
        }
        // SAFETY: on success both point to NUL-terminated strings in `buf`.
        let (user, dir) = unsafe { (CStr::from_ptr(pwd.pw_name), CStr::from_ptr(pwd.pw_dir)) };
        let home = PathBuf::from(OsStr::from_bytes(dir.to_bytes()));
        return Some((user.to_string_lossy().into_owned(), home));
    }
}

/// gethostname(2), lossily decoded.
fn local_hostname() -> std::io::Result<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// A fixed context for unit tests.
#[cfg(test)]
pub(super) fn me() -> LocalContext {
    LocalContext {
        user: "me".into(),
        home: "/home/me".into(),
        uid: 1000,
        hostname: "box.lan".into(),
    }
}
