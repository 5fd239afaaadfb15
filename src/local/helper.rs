//! The two short-lived helper modes of the rock binary, started by the
//! inner ssh: as `ProxyCommand` (named `rock-proxy`) it connects to the
//! rock process and hands that connection to ssh; as `SSH_ASKPASS` (named
//! `rock-askpass`) it asks the rock process for the password typed during
//! the bootstrap.
//!
//! The helpers are links in the session directory pointing at the rock
//! binary, so the mode is the name they were started under and the control
//! socket is found beside them: nothing travels in argv or the environment.

use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::fdpass::send_fd;

/// Name of the proxy helper link.
pub const PROXY_NAME: &str = "rock-proxy";
/// Name of the askpass helper link.
pub const ASKPASS_NAME: &str = "rock-askpass";
/// Name of the control socket in the session directory.
pub const CONTROL_SOCKET: &str = "ctl.sock";
/// Longest request line the control socket reads.
pub const MAX_REQUEST: usize = 1024;

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

fn connect(dir: &Path) -> io::Result<UnixStream> {
    let path = dir.join(CONTROL_SOCKET);
    UnixStream::connect(&path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot reach the rock process at {}: {e}", path.display()),
        )
    })
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

/// Whether an ssh prompt asks for the account password (and nothing else:
/// not a key passphrase, a host-key confirmation, a one-time code or a new
/// password).
pub fn is_password_prompt(prompt: &str) -> bool {
    let p = prompt.trim_end().to_ascii_lowercase();
    let refused = [
        "passphrase",
        "new password",
        "yes/no",
        "verification",
        "otp",
        "token",
    ];
    p.ends_with("password:") && !refused.iter().any(|r| p.contains(r))
}

/// The key file an ssh passphrase prompt names, as in
/// `Enter passphrase for key '/home/a/.ssh/id_ed25519': `.
pub fn passphrase_prompt_key(prompt: &str) -> Option<&str> {
    prompt
        .strip_prefix("Enter passphrase for key '")?
        .trim_end()
        .strip_suffix("':")
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

    #[test]
    fn a_passphrase_prompt_names_its_key() {
        assert_eq!(
            passphrase_prompt_key("Enter passphrase for key '/root/.ssh/id_ed25519': "),
            Some("/root/.ssh/id_ed25519")
        );
        assert_eq!(passphrase_prompt_key("me@host's password: "), None);
        assert_eq!(passphrase_prompt_key("Enter passphrase for key 'x"), None);
    }

    #[test]
    fn only_account_password_prompts_are_answered() {
        assert!(is_password_prompt("alice@example.org's password: "));
        assert!(is_password_prompt("(alice@example.org) Password: "));
        assert!(!is_password_prompt(
            "Enter passphrase for key '/home/a/.ssh/id_ed25519': "
        ));
        assert!(!is_password_prompt(
            "Are you sure you want to continue connecting (yes/no/[fingerprint])? "
        ));
        assert!(!is_password_prompt("(alice@host) Verification code: "));
        assert!(!is_password_prompt("New password: "));
        assert!(!is_password_prompt("Retype new password: "));
    }
}
