//! Which operand names the remote end, and what it says: ssh's
//! `[user@]host` or `ssh://` URI, scp's `host:path` or `scp://` operands,
//! sftp's `sftp://`, `host:path` or `[user@]host[:port]`. The result is a
//! [`Destination`] whose host is non-empty text.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use super::error::{bad_destination, bad_uri};
use super::operand::{UriParse, clean_hostname, parse_uri, user_host_of_path, user_host_port};
use super::{CmdlineError, Program};

/// The remote end the command names, as typed in its destination operand
/// (`[user@]host`, `ssh://…`, `host:path`, `scp://…`). The effective user and
/// port, after `-l`, `-p`, `-o` and the config files, come from `ssh -G`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The user in `user@host` or in a URI.
    pub user: Option<String>,
    /// The host as ssh receives it: an alias, a name or an address.
    pub host: String,
    /// The port of an `ssh://`, `scp://` or `sftp://` URI.
    pub port: Option<u16>,
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        f.write_str(&self.host)?;
        if let Some(port) = self.port {
            write!(f, " port {port}")?;
        }
        Ok(())
    }
}

/// ssh.c: an `ssh://` URI without a path, or `[user@]host` split at the
/// last `@`, the host taken verbatim (no port, brackets kept).
pub(super) fn ssh_destination(operand: &OsStr) -> Result<Destination, CmdlineError> {
    let bytes = operand.as_bytes();
    match parse_uri(b"ssh://", bytes) {
        UriParse::Uri {
            path: None,
            user,
            host,
            port,
        } => destination(operand, user, host, port),
        UriParse::Uri { .. } | UriParse::Invalid => Err(bad_uri(operand, Program::Ssh)),
        UriParse::NotUri => {
            let (user, host) = match bytes.iter().rposition(|&b| b == b'@') {
                Some(0) => {
                    return Err(bad_destination(
                        operand,
                        "has an empty user name before `@`",
                    ));
                }
                Some(at) => (Some(bytes[..at].to_vec()), &bytes[at + 1..]),
                None => (None, bytes),
            };
            destination(operand, user, host.to_vec(), None)
        }
    }
}

/// The remote end an scp operand names, or `None` for a local path.
pub(super) fn scp_remote(operand: &OsStr) -> Result<Option<Destination>, CmdlineError> {
    let bytes = operand.as_bytes();
    let found = match parse_uri(b"scp://", bytes) {
        UriParse::Invalid => return Err(bad_uri(operand, Program::Scp)),
        UriParse::Uri {
            user, host, port, ..
        } => destination(operand, user, host, port)?,
        UriParse::NotUri => match user_host_of_path(bytes) {
            Some((user, host)) => destination(operand, user, host, None)?,
            None => return Ok(None),
        },
    };
    if let Some(user) = &found.user
        && !scp_accepts_user(user)
    {
        return Err(CmdlineError::BadUser { user: user.clone() });
    }
    Ok(Some(found))
}

/// scp.c `okname`: the user name goes into a remote command line.
fn scp_accepts_user(user: &str) -> bool {
    user.bytes()
        .all(|b| b.is_ascii() && !matches!(b, b'\'' | b'"' | b'`' | b' ' | b'#'))
}

/// sftp.c: `sftp://…`, else `[user@]host:path`, else `[user@]host[:port]`
/// (port ignored), else the whole operand as a host.
pub(super) fn sftp_destination(operand: &OsStr) -> Result<Destination, CmdlineError> {
    let bytes = operand.as_bytes();
    match parse_uri(b"sftp://", bytes) {
        UriParse::Invalid => Err(bad_uri(operand, Program::Sftp)),
        UriParse::Uri {
            user, host, port, ..
        } => destination(operand, user, host, port),
        UriParse::NotUri => {
            let (user, host) = user_host_of_path(bytes)
                .or_else(|| user_host_port(bytes))
                .unwrap_or_else(|| (None, clean_hostname(bytes).to_vec()));
            destination(operand, user, host, None)
        }
    }
}

/// Builds a [`Destination`], insisting on a non-empty, UTF-8 host.
pub(super) fn destination(
    operand: &OsStr,
    user: Option<Vec<u8>>,
    host: Vec<u8>,
    port: Option<u16>,
) -> Result<Destination, CmdlineError> {
    let text = |what, bytes: Vec<u8>| {
        String::from_utf8(bytes).map_err(|_| CmdlineError::NotUtf8 {
            what,
            operand: operand.to_string_lossy().into_owned(),
        })
    };
    if host.is_empty() {
        return Err(bad_destination(operand, "names no host"));
    }
    Ok(Destination {
        user: user.map(|u| text("user name", u)).transpose()?,
        host: text("host name", host)?,
        port,
    })
}

#[cfg(test)]
mod tests {
    use crate::redirect::cmdline::test_util::*;

    #[test]
    fn ssh_plain_destination_splits_at_the_last_at_and_keeps_the_rest() {
        assert_eq!(
            *ok(&["ssh", "a@b@host"]).destination(),
            dest(Some("a@b"), "host", None)
        );
        // ssh gives no meaning to `:port` or brackets outside a URI.
        assert_eq!(
            *ok(&["ssh", "host:22"]).destination(),
            dest(None, "host:22", None)
        );
        assert_eq!(
            *ok(&["ssh", "[::1]"]).destination(),
            dest(None, "[::1]", None)
        );
        assert!(err(&["ssh", "@host"]).contains("empty user name"));
        assert!(err(&["ssh", "u@"]).contains("names no host"));
    }

    #[test]
    fn ssh_uri_destination() {
        assert_eq!(
            *ok(&["ssh", "ssh://u@h:2222"]).destination(),
            dest(Some("u"), "h", Some(2222))
        );
        assert_eq!(
            *ok(&["ssh", "ssh://a+b%40c;fp=x@h."]).destination(),
            dest(Some("a b@c"), "h", None)
        );
        for bad in [
            "ssh://h/path",
            "ssh://[::1]:22",
            "ssh://h:0",
            "ssh://h:99999",
            "ssh://@h",
            "ssh://-h",
            "ssh://h..x",
            "ssh://u%4@h",
            "ssh://h:ssh",
        ] {
            assert!(
                err(&["ssh", bad]).contains("not a valid ssh:// address"),
                "{bad}"
            );
        }
    }

    #[test]
    fn scp_remote_operands() {
        assert_eq!(
            *ok(&["scp", "f", "u@[::1]:p"]).destination(),
            dest(Some("u"), "::1", None)
        );
        assert_eq!(
            *ok(&["scp", "h:p", "."]).destination(),
            dest(None, "h", None)
        );
        assert_eq!(
            *ok(&["scp", "a@b@h:", "."]).destination(),
            dest(Some("a@b"), "h", None)
        );
        assert_eq!(
            *ok(&["scp", "f", "scp://u@h:2222/p"]).destination(),
            dest(Some("u"), "h", Some(2222))
        );
        assert_eq!(
            *ok(&["scp", "./a:b", ":c", "h:"]).destination(),
            dest(None, "h", None)
        );
        assert!(err(&["scp", "f", "scp://u@[::1]:2222/p"]).contains("not a valid scp:// address"));
        assert!(err(&["scp", "f", "it's@h:p"]).contains("scp refuses the user name"));
    }

    #[test]
    fn sftp_destinations() {
        assert_eq!(
            *ok(&["sftp", "u@h:path"]).destination(),
            dest(Some("u"), "h", None)
        );
        // `host:22` is a directory to sftp, not a port.
        assert_eq!(*ok(&["sftp", "h:22"]).destination(), dest(None, "h", None));
        assert_eq!(
            *ok(&["sftp", "sftp://u@h:5/p"]).destination(),
            dest(Some("u"), "h", Some(5))
        );
        assert_eq!(
            *ok(&["sftp", "[::1]"]).destination(),
            dest(None, "::1", None)
        );
        assert_eq!(
            *ok(&["sftp", "u@[::1]:22"]).destination(),
            dest(Some("u"), "::1", None)
        );
        assert_eq!(*ok(&["sftp", "h/x"]).destination(), dest(None, "h/x", None));
        assert_eq!(
            *ok(&["sftp", "h", "localdir"]).destination(),
            dest(None, "h", None)
        );
        assert!(err(&["sftp", "h", "a", "b"]).contains("has 3 operands"));
        assert!(err(&["sftp", "-v"]).contains("`sftp -v`"));
        assert!(err(&["sftp", "sftp://[::1]/p"]).contains("not a valid sftp:// address"));
    }
}
