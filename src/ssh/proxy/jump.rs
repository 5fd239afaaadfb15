//! `ProxyJump`, read from `ssh -G` and turned into the ssh command that
//! OpenSSH itself makes of it (`ssh.c`, after `parse_jump` in
//! `readconf.c`): the *last* hop is the host ssh connects to; the hops
//! before it are handed on with `-J`, so that ssh reaches the last one
//! through them.

use std::ffi::{OsStr, OsString};
use std::fmt;

/// One jump host: `[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpHop {
    /// `user@`, if given.
    pub user: Option<String>,
    /// The host (an IPv6 address without its brackets).
    pub host: String,
    /// `:port`, if given.
    pub port: Option<u16>,
}

/// A `ProxyJump` value: the hops before the last, and the last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpSpec {
    /// The value as `ssh -G` printed it.
    raw: String,
    /// Everything before the last comma (`-J` of the jump's ssh).
    earlier: Option<String>,
    /// The host the jump's ssh connects to.
    pub last: JumpHop,
}

impl JumpSpec {
    /// Reads the value of `proxyjump` in `ssh -G`'s output
    /// (`u@[::1]:2,a@b:3,c`); the error says what is wrong with it.
    pub fn parse(raw: &str) -> Result<JumpSpec, String> {
        let raw = raw.trim();
        let (earlier, last) = match raw.rsplit_once(',') {
            Some((earlier, last)) => (Some(earlier.to_owned()), last),
            None => (None, raw),
        };
        Ok(JumpSpec {
            raw: raw.to_owned(),
            earlier: earlier.filter(|e| !e.is_empty()),
            last: parse_hop(last)?,
        })
    }

    /// The jump's ssh command: `program [-o BatchMode=yes] [-l user]
    /// [-p port] [-J earlier] [-F config] [-v…] -W [host]:port lasthop`,
    /// with up to three `v`s for the user's `verbosity`, as ssh passes its
    /// own on.
    pub fn command(
        &self,
        program: &OsStr,
        target_host: &str,
        target_port: u16,
        config: Option<&OsStr>,
        verbosity: u8,
        batch: bool,
    ) -> Vec<OsString> {
        let mut argv: Vec<OsString> = vec![program.to_owned()];
        if batch {
            argv.extend(["-o".into(), "BatchMode=yes".into()]);
        }
        if let Some(user) = &self.last.user {
            argv.extend(["-l".into(), user.into()]);
        }
        if let Some(port) = self.last.port {
            argv.extend(["-p".into(), port.to_string().into()]);
        }
        if let Some(earlier) = &self.earlier {
            argv.extend(["-J".into(), earlier.into()]);
        }
        if let Some(config) = config {
            argv.extend(["-F".into(), config.to_owned()]);
        }
        if verbosity > 0 {
            argv.push(format!("-{}", "v".repeat(verbosity.min(3).into())).into());
        }
        argv.extend([
            "-W".into(),
            format!("[{target_host}]:{target_port}").into(),
            self.last.host.clone().into(),
        ]);
        argv
    }
}

impl fmt::Display for JumpSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// `[user@]host[:port]`, the host possibly `[bracketed]`
/// (OpenSSH's `parse_user_host_port`: the user ends at the last `@`).
fn parse_hop(text: &str) -> Result<JumpHop, String> {
    let text = text.strip_prefix("ssh://").unwrap_or(text);
    let text = text.strip_suffix('/').unwrap_or(text);
    let (user, rest) = match text.rsplit_once('@') {
        Some((user, rest)) => (Some(user.to_owned()), rest),
        None => (None, text),
    };
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (host, after) = inner
            .split_once(']')
            .ok_or_else(|| format!("`{text}` has an unclosed `[`"))?;
        match after {
            "" => (host, None),
            p => (
                host,
                Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("`{text}`: expected `:port` after `]`"))?,
                ),
            ),
        }
    } else {
        match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(format!("`{text}` names no host"));
    }
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| format!("`{text}`: `{p}` is not a port"))
        })
        .transpose()?;
    Ok(JumpHop {
        user: user.filter(|u| !u.is_empty()),
        host: host.to_owned(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(v: &[OsString]) -> Vec<&str> {
        v.iter().map(|w| w.to_str().unwrap()).collect()
    }

    #[test]
    fn the_last_hop_is_connected_to_through_the_others() {
        let j = JumpSpec::parse("u@[::1]:2,a@b:3,c").unwrap();
        assert_eq!(
            j.last,
            JumpHop {
                user: None,
                host: "c".into(),
                port: None
            }
        );
        assert_eq!(
            words(&j.command("ssh".as_ref(), "10.2.0.2", 22, None, 0, false)),
            ["ssh", "-J", "u@[::1]:2,a@b:3", "-W", "[10.2.0.2]:22", "c"]
        );
        assert_eq!(j.to_string(), "u@[::1]:2,a@b:3,c");
    }

    #[test]
    fn one_hop_with_user_port_config_and_batch_mode() {
        let j = JumpSpec::parse("jumper@[::1]:2022").unwrap();
        assert_eq!(
            words(&j.command(
                "/usr/bin/ssh".as_ref(),
                "fe80::1",
                2200,
                Some("/my cfg".as_ref()),
                5,
                true
            )),
            [
                "/usr/bin/ssh",
                "-o",
                "BatchMode=yes",
                "-l",
                "jumper",
                "-p",
                "2022",
                "-F",
                "/my cfg",
                "-vvv",
                "-W",
                "[fe80::1]:2200",
                "::1"
            ]
        );
        let j = JumpSpec::parse("bastion:2222").unwrap();
        assert_eq!(j.last.host, "bastion");
        assert_eq!(j.last.port, Some(2222));
        assert_eq!(j.last.user, None);
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        assert!(JumpSpec::parse("u@[::1").unwrap_err().contains("unclosed"));
        assert!(
            JumpSpec::parse("h:port")
                .unwrap_err()
                .contains("not a port")
        );
        assert!(JumpSpec::parse("u@").unwrap_err().contains("no host"));
    }

    #[test]
    fn real_ssh_prints_what_we_read() {
        let out = std::process::Command::new("ssh")
            .args(["-G", "-J", "ssh://u@j:5,a@[::1]:7", "target"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix("proxyjump "))
            .unwrap();
        let j = JumpSpec::parse(value).unwrap();
        assert_eq!(
            j.last,
            JumpHop {
                user: Some("a".into()),
                host: "::1".into(),
                port: Some(7)
            }
        );
    }
}
