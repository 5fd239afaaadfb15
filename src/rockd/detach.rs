//! Leaving the SSH session behind: rockd forks into a session of its own
//! with its standard streams on /dev/null (or its log), and logs to a
//! private, bounded file.

use std::os::fd::AsRawFd;
use std::path::PathBuf;

use super::RockdError;

/// Detaches from the SSH session: a new process in its own session, with
/// standard streams on /dev/null (or the log file), so the exec channel
/// ends while rockd lives on. Returns in the child only.
pub fn detach(log: Option<&std::fs::File>) -> Result<(), RockdError> {
    // SAFETY: called before any thread exists (the runtime starts later);
    // the parent only calls async-signal-safe `_exit`.
    match unsafe { libc::fork() } {
        -1 => return Err(RockdError::Detach(std::io::Error::last_os_error())),
        0 => {}
        _ => unsafe { libc::_exit(0) },
    }
    // SAFETY: plain system calls on descriptors this process owns.
    unsafe {
        if libc::setsid() == -1 {
            return Err(RockdError::Detach(std::io::Error::last_os_error()));
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null < 0 {
            return Err(RockdError::Detach(std::io::Error::last_os_error()));
        }
        let err = log.map_or(null, |f| f.as_raw_fd());
        libc::dup2(null, 0);
        libc::dup2(null, 1);
        libc::dup2(err, 2);
        if null > 2 {
            libc::close(null);
        }
        libc::chdir(c"/".as_ptr());
    }
    Ok(())
}

/// A log file larger than this is moved aside (to `NAME.1`, replacing the
/// previous one) when the next rockd starts, so logs stay bounded.
pub const LOG_ROTATE_BYTES: u64 = 1 << 20;

/// Opens (appending) the log file, creating its directory privately and
/// rotating it first when it has grown past [`LOG_ROTATE_BYTES`].
/// Logging is best effort: rockd runs without a log rather than not at all.
pub fn open_log(path: Option<PathBuf>) -> Option<std::fs::File> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let path = path?;
    if let Some(dir) = path.parent() {
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir);
    }
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        let mut old = path.clone().into_os_string();
        old.push(".1");
        let _ = std::fs::rename(&path, old);
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .ok()
}

/// Sends tracing output to the log file (or stderr), `RUST_LOG` or `info`.
pub fn init_logging(log: Option<std::fs::File>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    match log {
        Some(file) => builder.with_writer(std::sync::Mutex::new(file)).init(),
        None => builder.with_writer(std::io::stderr).init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_log_is_moved_aside_and_a_small_one_kept() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("state").join("rockd.log");
        let mut log = open_log(Some(path.clone())).expect("the log opens");
        log.write_all(b"first\n").expect("the log is writable");
        drop(log);
        let log = open_log(Some(path.clone())).expect("the log opens again");
        drop(log);
        assert_eq!(std::fs::read(&path).expect("the log"), b"first\n");

        std::fs::write(&path, vec![b'x'; LOG_ROTATE_BYTES as usize + 1]).expect("a big log");
        let mut log = open_log(Some(path.clone())).expect("the log opens after rotating");
        log.write_all(b"fresh\n").expect("the log is writable");
        assert_eq!(std::fs::read(&path).expect("the new log"), b"fresh\n");
        let old = std::fs::metadata(dir.path().join("state").join("rockd.log.1"))
            .expect("the old log is kept once");
        assert_eq!(old.len(), LOG_ROTATE_BYTES + 1);
    }
}
