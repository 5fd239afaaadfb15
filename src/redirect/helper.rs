//! The two short-lived helper modes of the rock binary, started by the
//! inner ssh: as `ProxyCommand` (named `rock-proxy`) it connects to the
//! rock process and hands that connection to ssh; as `SSH_ASKPASS` (named
//! `rock-askpass`) it asks the rock process for the password typed during
//! the bootstrap.
//!
//! The helpers are links in the session directory pointing at the rock
//! binary, so the mode is the name they were started under and the control
//! socket is found beside them: nothing travels in argv or the environment.

use std::ffi::{OsStr, OsString};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::fdpass::send_fd;
use crate::chain::Chain;
use crate::control_socket::{MAX_REQUEST, connect};

/// Name of the proxy helper link.
pub const PROXY_NAME: &str = "rock-proxy";
/// Name of the askpass helper link.
pub const ASKPASS_NAME: &str = "rock-askpass";

/// Which helper a process was started as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Helper {
    /// ssh's ProxyCommand.
    Proxy {
        /// The session directory.
        dir: PathBuf,
    },
    /// ssh's SSH_ASKPASS.
    Askpass {
        /// The session directory.
        dir: PathBuf,
    },
}

impl Helper {
    /// The helper named by `argv0`, if it names one.
    pub fn from_argv0(argv0: &OsStr) -> Option<Helper> {
        let path = Path::new(argv0);
        // Only a path: the helpers are always started by their full path.
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())?
            .to_owned();
        match path.file_name()?.to_str()? {
            PROXY_NAME => Some(Helper::Proxy { dir }),
            ASKPASS_NAME => Some(Helper::Askpass { dir }),
            _ => None,
        }
    }
}

/// Runs `helper` with the arguments ssh gave it; returns the exit status
/// ssh expects (a proxy that fails is a failed connection, 255; an askpass
/// that declines or fails makes ssh ask no more, 1). Errors are printed
/// here: ssh shows the helper's stderr to the user.
pub fn run(helper: Helper, args: &[OsString]) -> u8 {
    match helper {
        Helper::Proxy { dir } => match run_proxy(&dir) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("rock-proxy: {}", Chain(&e));
                255
            }
        },
        Helper::Askpass { dir } => {
            let prompt = args
                .first()
                .map(|a| a.to_string_lossy().into_owned())
                .unwrap_or_default();
            match ask(&dir, &prompt) {
                Ok(Some(password)) => {
                    println!("{}", password.as_str());
                    0
                }
                Ok(None) => 1,
                Err(e) => {
                    eprintln!("rock-askpass: {}", Chain(&e));
                    1
                }
            }
        }
    }
}

/// Proxy mode: connect to the rock process, say so, and pass the connected
/// socket to ssh on standard output (ProxyUseFdpass).
pub fn run_proxy(dir: &Path) -> io::Result<()> {
    let mut stream = connect(dir)?;
    stream.write_all(b"proxy\n")?;
    send_fd(io::stdout().as_fd(), stream.as_fd())
}

/// Askpass mode: ask the rock process to answer `prompt`. `Ok(None)` means
/// the rock process declined (not a password prompt, or already answered).
pub fn ask(dir: &Path, prompt: &str) -> io::Result<Option<Zeroizing<String>>> {
    let mut stream = connect(dir)?;
    let one_line: String = prompt
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .take(MAX_REQUEST - 16)
        .collect();
    stream.write_all(format!("askpass {one_line}\n").as_bytes())?;
    let mut reply = Zeroizing::new(String::new());
    BufReader::new(&stream)
        .take(MAX_REQUEST as u64)
        .read_line(&mut reply)?;
    Ok(reply
        .strip_suffix('\n')
        .and_then(|r| r.strip_prefix("ok "))
        .map(|p| Zeroizing::new(p.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_mode_comes_from_the_name() {
        assert_eq!(
            Helper::from_argv0(OsStr::new("/run/user/1/rock/ab/rock-proxy")),
            Some(Helper::Proxy {
                dir: "/run/user/1/rock/ab".into()
            })
        );
        assert!(matches!(
            Helper::from_argv0(OsStr::new("x/rock-askpass")),
            Some(Helper::Askpass { .. })
        ));
        assert_eq!(Helper::from_argv0(OsStr::new("/usr/bin/rock")), None);
        assert_eq!(Helper::from_argv0(OsStr::new("rock-proxy")), None);
    }
}
