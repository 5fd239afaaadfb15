//! Running the user's ssh: `ssh -G` for the configuration it would use
//! (and for `%C`, which only ssh can compute), `ssh -V` for its release.
//! Both block until ssh exits.

use std::ffi::{OsStr, OsString};
use std::process::{Command, Stdio};

use super::ResolveError;

/// Asks `<ssh_program> -V` which OpenSSH it is.
pub fn openssh_version(ssh_program: &OsStr) -> Result<OpensshVersion, ResolveError> {
    let program = ssh_program.to_string_lossy().into_owned();
    let out = Command::new(ssh_program)
        .arg("-V")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ResolveError::Spawn {
            program: program.clone(),
            purpose: "learn its OpenSSH version".into(),
            source,
        })?;
    // ssh prints its banner on stderr.
    let banner = String::from_utf8_lossy(if out.stderr.is_empty() {
        &out.stdout
    } else {
        &out.stderr
    })
    .trim()
    .to_string();
    OpensshVersion::from_banner(&banner).ok_or(ResolveError::Version {
        program,
        output: banner,
    })
}

/// `%C` as this ssh computes it (a hash whose inputs changed across
/// releases): ask ssh to expand it as the ControlPath.
pub(super) fn connection_hash(
    ssh_program: &OsStr,
    resolve_args: &[OsString],
    host: &str,
) -> Result<String, ResolveError> {
    let (dump, _) = run_ssh_g(ssh_program, &["-o", "ControlPath=%C"], resolve_args, host)?;
    dump.lines()
        .find_map(|l| l.strip_prefix("controlpath "))
        .map(str::to_string)
        .ok_or_else(|| ResolveError::Output {
            host: host.into(),
            line: "(no controlpath line)".into(),
            why: "asked for ControlPath=%C",
        })
}

/// Runs `ssh -G -T <extra> <args> -- <host>`; returns stdout and the lines
/// of stderr. `-T` keeps ssh from warning that stdin is not a terminal.
pub(super) fn run_ssh_g(
    ssh_program: &OsStr,
    extra: &[&str],
    args: &[OsString],
    host: &str,
) -> Result<(String, Vec<String>), ResolveError> {
    let out = Command::new(ssh_program)
        .args(["-G", "-T"])
        .args(extra)
        .args(args)
        .arg("--")
        .arg(host)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ResolveError::Spawn {
            program: ssh_program.to_string_lossy().into_owned(),
            purpose: format!("resolve `{host}`"),
            source,
        })?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim_end().to_string();
    if !out.status.success() {
        let stderr = if stderr.is_empty() {
            format!("ssh {}", out.status)
        } else {
            stderr
        };
        return Err(ResolveError::Config {
            host: host.into(),
            stderr,
        });
    }
    let warnings = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect();
    Ok((String::from_utf8_lossy(&out.stdout).into_owned(), warnings))
}

/// An OpenSSH release, as far as option parsing cares (ssh's `-P` changed
/// meaning in 9.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct OpensshVersion {
    /// 9 in OpenSSH 9.2p1.
    pub major: u32,
    /// 2 in OpenSSH 9.2p1.
    pub minor: u32,
}

impl OpensshVersion {
    /// Reads the banner `ssh -V` prints, e.g.
    /// `OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15 3 Sep 2024`.
    pub fn from_banner(banner: &str) -> Option<Self> {
        let rest = banner.trim_start().strip_prefix("OpenSSH_")?;
        let (major, rest) = rest.split_once('.')?;
        let end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        Some(OpensshVersion {
            major: major.parse().ok()?,
            minor: rest[..end].parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_openssh_version() {
        let v = openssh_version(OsStr::new("ssh")).unwrap();
        assert!(v >= OpensshVersion { major: 8, minor: 4 }, "{v:?}");
    }
}
