//! The command after `rock -d`: which program it runs (ssh, scp, sftp,
//! rsync or git), which host it reaches, and which of its options change how
//! `ssh -G` resolves that host. argv in, [`ParsedCommand`] out; the only I/O
//! is what rsync and git themselves would consult (environment variables,
//! git's configuration), asked through [`Surroundings`].
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
//! rsync and git start ssh themselves, from a command line in a string
//! (`-e`, `RSYNC_RSH`, `GIT_SSH_COMMAND`, `core.sshCommand`); rock's options
//! go into that string, right after the program, and the string goes back
//! where it came from (argv for `-e`, else the environment variable).
//!
//! This file holds [`ParsedCommand`] and [`Program`];
//! the parts it is built from, one job each:
//! * `getopt` — the option strings of ssh, scp and sftp and the getopt(3)
//!   scanner that reads them.
//! * `programs` — what each program hands to `ssh -G`: its options, the
//!   user and port of its destination, the ssh it runs.
//! * `destination` — which operand is the remote end, and the
//!   [`Destination`] it names.
//! * `operand` — OpenSSH's misc.c operand splitters (`parse_uri`, `colon`,
//!   …), on bytes.
//! * `rsync`, `git` — what rsync's and git's command lines reach, and the
//!   ssh command each runs.
//! * `remote_shell` — that ssh command: its options, and rock's added.
//! * `shell` — splitting and quoting command lines held in a string.
//! * `surroundings` — [`Surroundings`]: the environment and git config.
//! * `error` — [`CmdlineError`] and the messages built from the command.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

pub use crate::ssh::resolve::OpensshVersion;

mod destination;
mod error;
mod getopt;
mod git;
mod operand;
mod programs;
mod remote_shell;
mod rsync;
mod shell;
mod surroundings;
#[cfg(test)]
mod test_util;

pub use destination::Destination;
pub use error::CmdlineError;
pub use shell::ShellError;
pub use surroundings::{GitError, Surroundings, System};

use getopt::Opt;
use programs::{parse_scp, parse_sftp, parse_ssh};
use remote_shell::RemoteShell;

/// The OpenSSH client the command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    /// `ssh` (also `slogin`).
    Ssh,
    /// `scp`.
    Scp,
    /// `sftp`.
    Sftp,
    /// `rsync`, over its remote shell.
    Rsync,
    /// `git`: clone, fetch, pull, push, ls-remote.
    Git,
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
            b"rsync" => Ok(Program::Rsync),
            b"git" => Ok(Program::Git),
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
            Program::Rsync => "rsync",
            Program::Git => "git",
        }
    }
}

impl std::fmt::Display for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How rock's options reach the ssh the command starts.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Transport {
    /// ssh, scp, sftp: as options right after `argv[0]`.
    Argv,
    /// rsync: into its remote shell, written back to the `-e` values at
    /// these places in argv, or to `RSYNC_RSH` if there are none.
    Rsync {
        shell: RemoteShell,
        values: Vec<rsync::ValueAt>,
    },
    /// git: into its ssh command, given to it as `GIT_SSH_COMMAND`.
    Git { shell: RemoteShell },
}

/// The command to start, with its transport redirected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transported {
    /// Its argv.
    pub argv: Vec<OsString>,
    /// Environment variables to set for it.
    pub env: Vec<(OsString, OsString)>,
}

/// The user's command after `rock -d`, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedCommand {
    program: Program,
    argv: Vec<OsString>,
    destination: Destination,
    resolve_args: Vec<OsString>,
    ssh_program: OsString,
    opts: Vec<Opt>,
    transport: Transport,
}

/// The ssh program the command will start, whose version decides how its
/// options read (see [`OpensshVersion`]): `argv[0]` for ssh, the first
/// word of rsync's or git's ssh command, else `ssh`.
pub fn transport_ssh(argv: &[OsString], env: &dyn Surroundings) -> OsString {
    let Some(program) = argv.first().and_then(|a| Program::from_argv0(a).ok()) else {
        return "ssh".into();
    };
    match program {
        Program::Ssh => argv[0].clone(),
        Program::Scp | Program::Sftp => "ssh".into(),
        Program::Rsync => rsync::rsync_ssh(argv, env),
        Program::Git => git::git_ssh(argv, env),
    }
}

impl ParsedCommand {
    /// Parses `argv` (`argv[0]` is the program) in this process's
    /// environment. `version` is the OpenSSH release of the ssh that will
    /// run ([`transport_ssh`]); only ssh's own options depend on it.
    pub fn parse(argv: &[OsString], version: OpensshVersion) -> Result<Self, CmdlineError> {
        Self::parse_in(argv, version, &System)
    }

    /// [`ParsedCommand::parse`] without knowing the ssh's release: the
    /// command, when it reads the same under every release's options —
    /// ssh's options differ only in `-P` (a flag before OpenSSH 9.4, a tag
    /// since), and scp's and sftp's not at all. `None` when the release
    /// matters (or the command is refused): then ask ssh (`ssh -V`, a
    /// process start rock saves otherwise) and [`ParsedCommand::parse`].
    /// Also `None` for git, whose reading runs git itself: reading it twice
    /// would cost more than `ssh -V` saves.
    pub fn parse_any_release(argv: &[OsString]) -> Option<Self> {
        let program = Program::from_argv0(argv.first()?).ok()?;
        if program == Program::Git {
            return None;
        }
        let [oldest, newest] =
            OpensshVersion::OPTION_SETS.map(|version| Self::parse_in(argv, version, &System).ok());
        oldest.filter(|parsed| newest.as_ref() == Some(parsed))
    }

    /// [`ParsedCommand::parse`], with rsync's and git's environment and
    /// configuration read from `env`.
    pub fn parse_in(
        argv: &[OsString],
        version: OpensshVersion,
        env: &dyn Surroundings,
    ) -> Result<Self, CmdlineError> {
        let argv0 = argv.first().ok_or(CmdlineError::Empty)?;
        let program = Program::from_argv0(argv0)?;
        let parts = match program {
            Program::Ssh => parse_ssh(argv, version.ssh_opts())?,
            Program::Scp => parse_scp(argv)?,
            Program::Sftp => parse_sftp(argv)?,
            Program::Rsync => rsync::parse_rsync(argv, version.ssh_opts(), env)?,
            Program::Git => git::parse_git(argv, version.ssh_opts(), env)?,
        };
        Ok(ParsedCommand {
            program,
            argv: argv.to_vec(),
            destination: parts.destination,
            resolve_args: parts.resolve_args,
            ssh_program: parts.ssh_program.unwrap_or_else(|| match program {
                Program::Ssh => argv0.clone(),
                _ => "ssh".into(),
            }),
            opts: parts.opts,
            transport: parts.transport,
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

    /// The last `-F` the command gives ssh (ssh's own rule: the last one
    /// wins), which ssh passes on to the ssh it runs for `ProxyJump`.
    pub fn config_file(&self) -> Option<&OsStr> {
        let mut config = None;
        let mut words = self.resolve_args.iter();
        while let Some(word) = words.next() {
            match word.as_bytes() {
                b"-F" => config = words.next().map(OsString::as_os_str),
                // Every other option with a value: skip the value.
                [b'-', letter] if b"oiJlpbBP".contains(letter) => {
                    words.next();
                }
                _ => {}
            }
        }
        config
    }

    /// How many `-v` the command gives ssh (scp and sftp hand theirs on),
    /// which ssh passes on to the ssh it runs for `ProxyJump`. rsync's and
    /// git's own `-v` are theirs, not ssh's: 0.
    pub fn verbosity(&self) -> u8 {
        let n = self.opts.iter().filter(|o| o.letter == b'v').count();
        u8::try_from(n).unwrap_or(u8::MAX)
    }

    /// The ssh the command runs: `argv[0]` for ssh, `-S program` for scp
    /// and sftp, else `ssh` from PATH (scp and sftp have a built-in path,
    /// `/usr/bin/ssh` in most builds, normally the same program).
    pub fn ssh_program(&self) -> &OsStr {
        &self.ssh_program
    }

    /// The command with its transport redirected: `-o ProxyCommand=<cmd>
    /// -o ProxyUseFdpass=yes -o ControlMaster=no -o ControlPath=none
    /// -o ServerAliveInterval=0` (and
    /// `-o User=<user>` for `rock -d USER`)
    /// given to the ssh it starts, where they beat any later `-o` and the
    /// config files (ssh keeps the first value of each setting). ssh
    /// percent-expands `proxy_command` and runs it with the user's shell,
    /// so quote it for `sh`.
    ///
    /// ssh, scp, sftp: the options go right after `argv[0]` (scp and sftp
    /// hand `-o` to ssh in order), and every `-J` is removed: ssh refuses
    /// `-J` once a ProxyCommand is set, and the jump host is the
    /// bootstrap's business (see `Resolved::proxy_jump`). rsync and git:
    /// they go into the ssh command line, right after its program.
    pub fn with_transport(&self, proxy_command: &str, user: Option<&str>) -> Transported {
        let mut ours: Vec<OsString> = vec![
            "-o".into(),
            format!("ProxyCommand={proxy_command}").into(),
            "-o".into(),
            "ProxyUseFdpass=yes".into(),
            // Connection sharing would defeat us both ways: an existing
            // master carries the session outside rock, and a new master
            // (with ControlPersist) outlives the rock it depends on.
            "-o".into(),
            "ControlMaster=no".into(),
            "-o".into(),
            "ControlPath=none".into(),
            // The link's liveness is rock's job: ssh's own keepalives
            // would give up on a session rock is still reconnecting, and
            // cannot be answered for sshd while the link is down.
            "-o".into(),
            "ServerAliveInterval=0".into(),
        ];
        if let Some(user) = user {
            ours.extend(["-o".into(), format!("User={user}").into()]);
        }
        match &self.transport {
            Transport::Argv => Transported {
                argv: self.argv_with(&ours),
                env: Vec::new(),
            },
            Transport::Rsync { shell, values } => {
                let command = shell.with(&ours);
                let mut argv = self.argv.clone();
                for at in values {
                    let mut word = argv[at.word].as_bytes()[..at.offset].to_vec();
                    word.extend_from_slice(command.as_bytes());
                    argv[at.word] = OsString::from_vec(word);
                }
                let env = if values.is_empty() {
                    vec![("RSYNC_RSH".into(), command)]
                } else {
                    Vec::new()
                };
                Transported { argv, env }
            }
            Transport::Git { shell } => Transported {
                argv: self.argv.clone(),
                env: vec![("GIT_SSH_COMMAND".into(), shell.with(&ours))],
            },
        }
    }

    /// argv with `ours` after `argv[0]` and every `-J` removed.
    fn argv_with(&self, ours: &[OsString]) -> Vec<OsString> {
        let mut out = Vec::with_capacity(self.argv.len() + ours.len());
        out.push(self.argv[0].clone());
        out.extend(ours.iter().cloned());
        out.extend(getopt::without_jumps(&self.argv, 1, &self.opts));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redirect::cmdline::test_util::*;

    #[test]
    fn program_is_recognised_by_base_name() {
        assert_eq!(ok(&["/usr/bin/ssh", "h"]).program(), Program::Ssh);
        assert_eq!(ok(&["slogin", "h"]).program(), Program::Ssh);
        assert_eq!(ok(&["scp", "a", "h:"]).program(), Program::Scp);
        assert_eq!(ok(&["./bin/sftp", "h"]).program(), Program::Sftp);
        assert_eq!(ok(&["/usr/bin/rsync", "a", "h:"]).program(), Program::Rsync);
        assert!(err(&["curl", "a", "h:"]).contains("cannot carry `curl`"));
        assert!(matches!(
            ParsedCommand::parse(&[], V9_2),
            Err(CmdlineError::Empty)
        ));
    }

    #[test]
    fn a_command_that_reads_alike_under_every_release_needs_no_ssh_v() {
        for words in [
            &["ssh", "-v", "-p", "2222", "user@h", "uptime"][..],
            &["scp", "-P", "2222", "file", "h:"],
            &["sftp", "-P", "2222", "h"],
            &["rsync", "-a", "-e", "ssh -p 2222", "d/", "h:d/"],
        ] {
            let quick = ParsedCommand::parse_any_release(&args(words));
            assert_eq!(quick.as_ref(), Some(&ok(words)), "{words:?}");
            assert_eq!(quick, ParsedCommand::parse(&args(words), V9_6).ok());
        }
        // ssh's -P takes a tag since 9.4 and was a flag before: the
        // release decides, so ssh -V is asked.
        for words in [
            &["ssh", "-P", "tag", "h"][..],
            &["ssh", "-vP", "h"],
            &["rsync", "-a", "-e", "ssh -P tag", "d/", "h:d/"],
        ] {
            assert_eq!(
                ParsedCommand::parse_any_release(&args(words)),
                None,
                "{words:?}"
            );
        }
        // Refused whatever the release: the release is asked for, and the
        // refusal comes from the full reading.
        assert_eq!(
            ParsedCommand::parse_any_release(&args(&["curl", "h"])),
            None
        );
        assert_eq!(ParsedCommand::parse_any_release(&[]), None);
        // git's reading runs git: not read twice.
        assert_eq!(
            ParsedCommand::parse_any_release(&args(&["git", "fetch", "h:r.git"])),
            None
        );
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
        let out = strings(&p.with_transport("rock --helper 3", None).argv);
        assert_eq!(
            out,
            [
                "ssh",
                "-o",
                "ProxyCommand=rock --helper 3",
                "-o",
                "ProxyUseFdpass=yes",
                "-o",
                "ControlMaster=no",
                "-o",
                "ControlPath=none",
                "-o",
                "ServerAliveInterval=0",
                "-v",
                "-A",
                "host",
                "ls"
            ]
        );
        let p = ok(&["scp", "-J", "j", "f", "h:"]);
        assert_eq!(
            strings(&p.with_transport("x", Some("bob")).argv),
            [
                "scp",
                "-o",
                "ProxyCommand=x",
                "-o",
                "ProxyUseFdpass=yes",
                "-o",
                "ControlMaster=no",
                "-o",
                "ControlPath=none",
                "-o",
                "ServerAliveInterval=0",
                "-o",
                "User=bob",
                "f",
                "h:"
            ]
        );
        // After the destination, `-J` is still an ssh option; in the command it is not.
        let p = ok(&["ssh", "h", "-J", "j", "ls", "-J"]);
        assert_eq!(
            strings(&p.with_transport("x", None).argv)[11..],
            ["h", "ls", "-J"]
        );
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
            let argv = ok(&words).with_transport("rock --fd %h %p", None).argv;
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
    fn the_last_config_file_is_the_one_ssh_uses() {
        let p = ok(&["ssh", "-F", "a", "-o", "-F", "-Fb", "h"]);
        assert_eq!(p.config_file(), Some(OsStr::new("b")));
        let p = ok(&["scp", "-F", "c", "-J", "-F", "f", "h:"]);
        assert_eq!(p.config_file(), Some(OsStr::new("c")));
        assert_eq!(ok(&["sftp", "h"]).config_file(), None);
    }

    #[test]
    fn verbosity_counts_the_v_flags_ssh_sees() {
        assert_eq!(ok(&["ssh", "-vv", "h", "-v", "ls"]).verbosity(), 3);
        assert_eq!(ok(&["scp", "-v", "f", "h:"]).verbosity(), 1);
        assert_eq!(ok(&["sftp", "-o", "-v", "h"]).verbosity(), 0);
    }

    #[test]
    fn non_utf8_paths_survive() {
        let weird = OsString::from_vec(b"caf\xe9.txt".to_vec());
        let argv = vec![OsString::from("scp"), weird.clone(), OsString::from("h:")];
        let p = ParsedCommand::parse(&argv, V9_2).unwrap();
        assert_eq!(p.with_transport("x", None).argv[11], weird);
        let bad_host = vec![OsString::from("ssh"), OsString::from_vec(b"h\xff".to_vec())];
        assert!(matches!(
            ParsedCommand::parse(&bad_host, V9_2),
            Err(CmdlineError::NotUtf8 { .. })
        ));
    }

    /// Real `ssh -G` with a temporary config: the options rock hands it
    /// from the command line win over the config file, as in ssh.
    #[test]
    fn real_ssh_g_sees_the_command_line_before_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config");
        std::fs::write(
            &cfg,
            "Host work\n  HostName w.example\n  User alice\n  Port 2200\n  HostKeyAlias wk\n",
        )
        .unwrap();
        let argv: Vec<OsString> = [
            "scp",
            "-F",
            cfg.to_str().unwrap(),
            "-P",
            "2222",
            "-4",
            "-B",
            "f",
            "bob@work:p",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let cmd = ParsedCommand::parse(&argv, OpensshVersion { major: 9, minor: 2 }).unwrap();
        let r = crate::ssh::resolve::resolve(
            cmd.ssh_program(),
            cmd.resolve_args(),
            &cmd.destination().host,
        )
        .unwrap();
        assert_eq!(
            (r.user.as_str(), r.hostname.as_str(), r.port),
            ("bob", "w.example", 2222)
        );
        assert_eq!(r.address_family, crate::ssh::resolve::AddressFamily::Inet);
        assert!(r.batch_mode);
        assert_eq!(r.host_key_alias.as_deref(), Some("wk"));
    }
}
