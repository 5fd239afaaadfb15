//! The command after `rock -d`: which OpenSSH program it runs (ssh, scp or
//! sftp), which host it reaches, and which of its options change how
//! `ssh -G` resolves that host. No I/O: argv in, [`ParsedCommand`] out.
//!
//! Options are read the way the programs themselves read them: POSIX getopt
//! (stop at the first operand, `--` ends options, clusters like `-vp22`) with
//! the option strings of OpenSSH 9.x `ssh.c`, `scp.c` and `sftp.c`, checked
//! against the binaries. Destinations follow OpenSSH's `parse_uri`,
//! `parse_user_host_path`, `colon` and `cleanhostname`, including their
//! surprises: `ssh host:22` names a host called `host:22`, `sftp host:22`
//! opens the directory `22`, and `[::1]` loses its brackets in scp and sftp
//! but keeps them in ssh. Arguments stay `OsString`s; only the user and host
//! names must be text.
//!
//! Invariant: `ssh -G <resolve_args> -- <host>` sees the same options, in the
//! same precedence order, as the ssh the user's command would start.
//!
//! This file holds [`ParsedCommand`], [`Program`] and [`OpensshVersion`];
//! the parts it is built from, one job each:
//! * `getopt` — the option strings of ssh, scp and sftp and the getopt(3)
//!   scanner that reads them.
//! * `programs` — what each program hands to `ssh -G`: its options, the
//!   user and port of its destination, the ssh it runs.
//! * `destination` — which operand is the remote end, and the
//!   [`Destination`] it names.
//! * `operand` — OpenSSH's misc.c operand splitters (`parse_uri`, `colon`,
//!   …), on bytes.
//! * `error` — [`CmdlineError`] and the messages built from the command.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

mod destination;
mod error;
mod getopt;
mod operand;
mod programs;
#[cfg(test)]
mod test_util;

pub use destination::Destination;
pub use error::CmdlineError;

use getopt::Opt;
use programs::{parse_scp, parse_sftp, parse_ssh};

/// The OpenSSH client the command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    /// `ssh` (also `slogin`).
    Ssh,
    /// `scp`.
    Scp,
    /// `sftp`.
    Sftp,
}

impl Program {
    /// Recognises the program by the base name of `argv[0]`
    /// (`ssh`, `/usr/bin/scp`, …).
    pub fn from_argv0(argv0: &OsStr) -> Result<Self, CmdlineError> {
        let bytes = argv0.as_bytes();
        let base = bytes.rsplit(|&b| b == b'/').next().unwrap_or(bytes);
        match base {
            b"ssh" | b"slogin" => Ok(Program::Ssh),
            b"scp" => Ok(Program::Scp),
            b"sftp" => Ok(Program::Sftp),
            _ => Err(CmdlineError::UnsupportedProgram {
                program: argv0.to_string_lossy().into_owned(),
            }),
        }
    }

    /// The program's name, as in its man page.
    pub fn name(self) -> &'static str {
        match self {
            Program::Ssh => "ssh",
            Program::Scp => "scp",
            Program::Sftp => "sftp",
        }
    }
}

impl std::fmt::Display for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
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

/// The user's command after `rock -d`, understood.
#[derive(Debug, Clone)]
pub struct ParsedCommand {
    program: Program,
    argv: Vec<OsString>,
    destination: Destination,
    resolve_args: Vec<OsString>,
    ssh_program: OsString,
    opts: Vec<Opt>,
}

impl ParsedCommand {
    /// Parses `argv` (`argv[0]` is the program). `version` is the OpenSSH
    /// release of the ssh that will run; only ssh's own options depend on it.
    pub fn parse(argv: &[OsString], version: OpensshVersion) -> Result<Self, CmdlineError> {
        let argv0 = argv.first().ok_or(CmdlineError::Empty)?;
        let program = Program::from_argv0(argv0)?;
        let parts = match program {
            Program::Ssh => parse_ssh(argv, version.ssh_opts())?,
            Program::Scp => parse_scp(argv)?,
            Program::Sftp => parse_sftp(argv)?,
        };
        Ok(ParsedCommand {
            program,
            argv: argv.to_vec(),
            destination: parts.destination,
            resolve_args: parts.resolve_args,
            ssh_program: parts.ssh_program.unwrap_or_else(|| match program {
                Program::Ssh => argv0.clone(),
                Program::Scp | Program::Sftp => "ssh".into(),
            }),
            opts: parts.opts,
        })
    }

    /// Which client the command runs.
    pub fn program(&self) -> Program {
        self.program
    }

    /// The command exactly as the user typed it.
    pub fn argv(&self) -> &[OsString] {
        &self.argv
    }

    /// The remote end, as typed.
    pub fn destination(&self) -> &Destination {
        &self.destination
    }

    /// The options to put before `-- <host>` in `ssh -G`: everything the
    /// program would give ssh that changes the resolved configuration (`-F`,
    /// `-o`, `-i`, `-J`, `-l`, `-p`, `-4`, `-6`, `-b`, `-B`, `-P`, batch
    /// mode), including the user and port of the destination operand, in the
    /// order that gives them ssh's first-one-wins precedence.
    pub fn resolve_args(&self) -> &[OsString] {
        &self.resolve_args
    }

    /// The ssh the command runs: `argv[0]` for ssh, `-S program` for scp
    /// and sftp, else `ssh` from PATH (scp and sftp have a built-in path,
    /// `/usr/bin/ssh` in most builds, normally the same program).
    pub fn ssh_program(&self) -> &OsStr {
        &self.ssh_program
    }

    /// The command with its transport redirected: `-o ProxyCommand=<cmd>
    /// -o ProxyUseFdpass=yes` right after `argv[0]`, where they beat any
    /// later `-o` and the config files (scp and sftp hand `-o` to ssh in
    /// order). ssh percent-expands `proxy_command` and runs it with the
    /// user's shell, so quote it for `sh`. Every `-J` is removed: ssh refuses
    /// `-J` once a ProxyCommand is set, and the jump host is the bootstrap's
    /// business (see `Resolved::proxy_jump`).
    pub fn with_transport(&self, proxy_command: &str) -> Vec<OsString> {
        let mut out = Vec::with_capacity(self.argv.len() + 4);
        out.push(self.argv[0].clone());
        out.push("-o".into());
        out.push(format!("ProxyCommand={proxy_command}").into());
        out.push("-o".into());
        out.push("ProxyUseFdpass=yes".into());
        let jumps: Vec<&Opt> = self.opts.iter().filter(|o| o.letter == b'J').collect();
        for (i, word) in self.argv.iter().enumerate().skip(1) {
            if jumps
                .iter()
                .any(|j| matches!(j.value, Some((_, w)) if w == i && w != j.word))
            {
                continue;
            }
            match jumps.iter().find(|j| j.word == i) {
                // `-J`: the whole word goes; `-vJ…`: keep `-v`.
                Some(j) if j.offset > 1 => {
                    out.push(OsString::from_vec(word.as_bytes()[..j.offset].to_vec()));
                }
                Some(_) => {}
                None => out.push(word.clone()),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::cmdline::test_util::*;

    #[test]
    fn program_is_recognised_by_base_name() {
        assert_eq!(ok(&["/usr/bin/ssh", "h"]).program(), Program::Ssh);
        assert_eq!(ok(&["slogin", "h"]).program(), Program::Ssh);
        assert_eq!(ok(&["scp", "a", "h:"]).program(), Program::Scp);
        assert_eq!(ok(&["./bin/sftp", "h"]).program(), Program::Sftp);
        assert!(err(&["rsync", "a", "h:"]).contains("cannot carry `rsync`"));
        assert!(matches!(
            ParsedCommand::parse(&[], V9_2),
            Err(CmdlineError::Empty)
        ));
    }

    #[test]
    fn version_banner() {
        let v = OpensshVersion::from_banner(
            "OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15 3 Sep 2024",
        );
        assert_eq!(v, Some(V9_2));
        assert_eq!(
            OpensshVersion::from_banner("OpenSSH_10.0p2, LibreSSL"),
            Some(OpensshVersion {
                major: 10,
                minor: 0
            })
        );
        assert_eq!(OpensshVersion::from_banner("Sun_SSH_1.1"), None);
    }

    #[test]
    fn transport_goes_first_and_jump_hosts_are_removed() {
        let p = ok(&["ssh", "-vJ", "j1", "-J", "j2", "-AJj3", "host", "ls"]);
        let out = strings(&p.with_transport("rock --helper 3"));
        assert_eq!(
            out,
            [
                "ssh",
                "-o",
                "ProxyCommand=rock --helper 3",
                "-o",
                "ProxyUseFdpass=yes",
                "-v",
                "-A",
                "host",
                "ls"
            ]
        );
        let p = ok(&["scp", "-J", "j", "f", "h:"]);
        assert_eq!(
            strings(&p.with_transport("x")),
            [
                "scp",
                "-o",
                "ProxyCommand=x",
                "-o",
                "ProxyUseFdpass=yes",
                "f",
                "h:"
            ]
        );
        // After the destination, `-J` is still an ssh option; in the command it is not.
        let p = ok(&["ssh", "h", "-J", "j", "ls", "-J"]);
        assert_eq!(strings(&p.with_transport("x"))[5..], ["h", "ls", "-J"]);
    }

    #[test]
    fn real_ssh_takes_the_transport_over_jumps_and_later_proxy_settings() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config");
        std::fs::write(
            &cfg,
            "Host work\n  ProxyJump cfgjump\n  ProxyCommand cfg %h\n",
        )
        .unwrap();
        let cfg = cfg.to_str().unwrap();
        for words in [
            vec!["ssh", "-F", cfg, "-J", "clijump", "work", "uptime"],
            vec![
                "ssh",
                "-F",
                cfg,
                "-o",
                "ProxyCommand=mine",
                "-oProxyUseFdpass=no",
                "work",
            ],
        ] {
            let argv = ok(&words).with_transport("rock --fd %h %p");
            let out = std::process::Command::new(&argv[0])
                .arg("-G")
                .args(&argv[1..])
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{words:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                stdout.lines().any(|l| l == "proxycommand rock --fd %h %p"),
                "{stdout}"
            );
            assert!(
                stdout.lines().any(|l| l == "proxyusefdpass yes"),
                "{stdout}"
            );
            assert!(!stdout.contains("proxyjump"), "{stdout}");
        }
    }

    #[test]
    fn non_utf8_paths_survive() {
        let weird = OsString::from_vec(b"caf\xe9.txt".to_vec());
        let argv = vec![OsString::from("scp"), weird.clone(), OsString::from("h:")];
        let p = ParsedCommand::parse(&argv, V9_2).unwrap();
        assert_eq!(p.with_transport("x")[5], weird);
        let bad_host = vec![OsString::from("ssh"), OsString::from_vec(b"h\xff".to_vec())];
        assert!(matches!(
            ParsedCommand::parse(&bad_host, V9_2),
            Err(CmdlineError::NotUtf8 { .. })
        ));
    }
}
