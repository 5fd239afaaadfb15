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

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// ssh.c's option string up to OpenSSH 9.3: `-P` is an ignored flag.
const SSH_OPTS_BEFORE_9_4: &[u8] =
    b"1246ab:c:e:fgi:kl:m:no:p:qstvxAB:CD:E:F:GI:J:KL:MNO:PQ:R:S:TVw:W:XYy";
/// ssh.c's option string from OpenSSH 9.4: `-P tag` selects `Match tagged`.
const SSH_OPTS_SINCE_9_4: &[u8] =
    b"1246ab:c:e:fgi:kl:m:no:p:qstvxAB:CD:E:F:GI:J:KL:MNO:P:Q:R:S:TVw:W:XYy";
/// scp.c's option string (OpenSSH 9.x).
const SCP_OPTS: &[u8] = b"12346ABCTdfOpqRrstvD:F:J:M:P:S:c:i:l:o:X:";
/// sftp.c's option string (OpenSSH 9.x).
const SFTP_OPTS: &[u8] = b"1246AafhNpqrvCc:D:i:l:o:s:S:b:B:F:J:P:R:X:";

/// Why the command after `rock -d` cannot be carried.
#[derive(Debug, thiserror::Error)]
pub enum CmdlineError {
    /// Nothing followed `rock -d`.
    #[error(
        "rock -d: no command given — write an ssh, scp or sftp command after -d, e.g. `rock -d ssh host`"
    )]
    Empty,
    /// The program is not one of OpenSSH's clients.
    #[error(
        "rock -d: cannot carry `{program}` — only ssh, scp and sftp run over a rock link; write one of them after -d"
    )]
    UnsupportedProgram {
        /// The program as typed.
        program: String,
    },
    /// An option letter the program does not have.
    #[error(
        "rock -d: `{program}` has no option -{letter} — check the command against {program}(1)"
    )]
    UnknownOption {
        /// ssh, scp or sftp.
        program: Program,
        /// The unknown letter.
        letter: char,
    },
    /// An option that takes a value ended the command.
    #[error("rock -d: option -{letter} of `{program}` needs a value")]
    MissingValue {
        /// ssh, scp or sftp.
        program: Program,
        /// The option letter.
        letter: char,
    },
    /// An option that makes the program do something other than connect.
    #[error(
        "rock -d: `{program} -{letter}` does not open a connection to a remote host — run it without rock -d"
    )]
    NotAConnection {
        /// ssh, scp or sftp.
        program: Program,
        /// The option letter.
        letter: char,
    },
    /// No operand names a remote host.
    #[error("rock -d: cannot find the destination host in `{command}` — {hint}")]
    NoDestination {
        /// The whole command, for the message.
        command: String,
        /// What to write instead.
        hint: &'static str,
    },
    /// A `scheme://` operand that OpenSSH would refuse.
    #[error(
        "rock -d: `{operand}` is not a valid {scheme}:// address — write it as {scheme}://[user@]host[:port]{path}, with a numeric port"
    )]
    BadUri {
        /// The operand as typed.
        operand: String,
        /// ssh, scp or sftp.
        scheme: Program,
        /// `[/path]` where the scheme allows a path.
        path: &'static str,
    },
    /// A destination without a host, or with an empty user name.
    #[error("rock -d: `{operand}` {why} — write the destination as [user@]host")]
    BadDestination {
        /// The operand as typed.
        operand: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A user or host name that is not text.
    #[error(
        "rock -d: the {what} in `{operand}` is not valid UTF-8 — user and host names must be text"
    )]
    NotUtf8 {
        /// "user name" or "host name".
        what: &'static str,
        /// The operand, lossily decoded.
        operand: String,
    },
    /// A user name scp itself refuses.
    #[error(
        "rock -d: scp refuses the user name `{user}` (quotes, spaces, `#` and non-ASCII are not allowed) — set it with -o User=… instead"
    )]
    BadUser {
        /// The user name.
        user: String,
    },
    /// An scp command that copies between two remote hosts.
    #[error(
        "rock -d: `{command}` names two remote destinations, `{first}` and `{second}`, but rock -d needs exactly one remote host — copy in two steps through this machine"
    )]
    TwoRemotes {
        /// The whole command, for the message.
        command: String,
        /// The first remote destination.
        first: String,
        /// The other one.
        second: String,
    },
    /// sftp with more operands than a destination and a local directory.
    #[error(
        "rock -d: `{command}` has {count} operands, but sftp takes a destination and at most one local directory"
    )]
    TooManyOperands {
        /// The whole command, for the message.
        command: String,
        /// How many operands there were.
        count: usize,
    },
}

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

    fn ssh_opts(self) -> &'static [u8] {
        if self >= (OpensshVersion { major: 9, minor: 4 }) {
            SSH_OPTS_SINCE_9_4
        } else {
            SSH_OPTS_BEFORE_9_4
        }
    }
}

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

/// One option as getopt(3) saw it, with where it sat in argv.
#[derive(Debug, Clone)]
struct Opt {
    letter: u8,
    /// argv index of the word holding the letter.
    word: usize,
    /// Byte offset of the letter in that word.
    offset: usize,
    /// The option's value and the argv index it came from.
    value: Option<(OsString, usize)>,
}

impl Opt {
    fn value(&self) -> OsString {
        self.value
            .as_ref()
            .map(|(v, _)| v.clone())
            .unwrap_or_default()
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

/// What each program's parser finds.
struct Parts {
    destination: Destination,
    resolve_args: Vec<OsString>,
    ssh_program: Option<OsString>,
    opts: Vec<Opt>,
}

/// getopt(3) as OpenSSH's bundled BSD getopt runs it, from `argv[start]`.
/// Returns the options and the index of the first operand.
fn getopt(
    program: Program,
    argv: &[OsString],
    start: usize,
    spec: &[u8],
) -> Result<(Vec<Opt>, usize), CmdlineError> {
    let mut opts = Vec::new();
    let mut i = start;
    while let Some(word) = argv.get(i).map(|w| w.as_bytes()) {
        if word == b"--" {
            return Ok((opts, i + 1));
        }
        if word.len() < 2 || word[0] != b'-' {
            break;
        }
        let here = i;
        for (offset, &letter) in word.iter().enumerate().skip(1) {
            let takes_value = takes_value(spec, letter).ok_or(CmdlineError::UnknownOption {
                program,
                letter: char::from(letter),
            })?;
            if !takes_value {
                opts.push(Opt {
                    letter,
                    word: here,
                    offset,
                    value: None,
                });
                continue;
            }
            let value = if offset + 1 < word.len() {
                (OsString::from_vec(word[offset + 1..].to_vec()), here)
            } else {
                i += 1;
                let next = argv.get(i).ok_or(CmdlineError::MissingValue {
                    program,
                    letter: char::from(letter),
                })?;
                (next.clone(), i)
            };
            opts.push(Opt {
                letter,
                word: here,
                offset,
                value: Some(value),
            });
            break;
        }
        i += 1;
    }
    Ok((opts, i))
}

/// `Some(true)` if `letter` takes a value, `Some(false)` for a flag, `None`
/// if the program has no such option.
fn takes_value(spec: &[u8], letter: u8) -> Option<bool> {
    if letter == b':' {
        return None;
    }
    let at = spec.iter().position(|&c| c == letter)?;
    Some(spec.get(at + 1) == Some(&b':'))
}

/// Refuses options that make the program do something other than connect.
fn refuse(program: Program, opts: &[Opt], letters: &[u8]) -> Result<(), CmdlineError> {
    match opts.iter().find(|o| letters.contains(&o.letter)) {
        Some(o) => Err(CmdlineError::NotAConnection {
            program,
            letter: char::from(o.letter),
        }),
        None => Ok(()),
    }
}

fn parse_ssh(argv: &[OsString], spec: &[u8]) -> Result<Parts, CmdlineError> {
    let (mut opts, at) = getopt(Program::Ssh, argv, 1, spec)?;
    let Some(operand) = argv.get(at) else {
        return Err(no_destination(Program::Ssh, argv));
    };
    // ssh.c: `opt_terminated` looks at the word before the operand, which
    // is `--` also when `--` was an option's value.
    let terminated = at > 1 && argv[at - 1].as_bytes() == b"--";
    let destination = ssh_destination(operand)?;
    let before = opts.len();
    if at + 1 < argv.len() && !terminated {
        // ssh restarts getopt after the destination: `ssh host -p 22 cmd`.
        let (more, _) = getopt(Program::Ssh, argv, at + 1, spec)?;
        opts.extend(more);
    }
    refuse(Program::Ssh, &opts, b"GOQV")?;
    let mut args = Vec::new();
    ssh_resolve_args(&opts[..before], &mut args);
    push_destination_args(&destination, None, &mut args);
    ssh_resolve_args(&opts[before..], &mut args);
    Ok(Parts {
        destination,
        resolve_args: args,
        ssh_program: None,
        opts,
    })
}

/// ssh's own options that change what `ssh -G` prints.
fn ssh_resolve_args(opts: &[Opt], args: &mut Vec<OsString>) {
    for opt in opts {
        match opt.letter {
            b'F' | b'o' | b'i' | b'J' | b'l' | b'p' | b'b' | b'B' | b'P' if opt.value.is_some() => {
                args.push(dash(opt.letter));
                args.push(opt.value());
            }
            b'4' | b'6' => args.push(dash(opt.letter)),
            _ => {}
        }
    }
}

/// `-p port -l user`, as scp and sftp append them and as `user@host` and
/// `ssh://host:port` set them in ssh (only if no earlier option did).
fn push_destination_args(
    dest: &Destination,
    port_option: Option<OsString>,
    args: &mut Vec<OsString>,
) {
    if let Some(port) = dest
        .port
        .map(|p| OsString::from(p.to_string()))
        .or(port_option)
    {
        args.push("-p".into());
        args.push(port);
    }
    if let Some(user) = &dest.user {
        args.push("-l".into());
        args.push(user.into());
    }
}

fn dash(letter: u8) -> OsString {
    OsString::from_vec(vec![b'-', letter])
}

/// ssh.c: an `ssh://` URI without a path, or `[user@]host` split at the
/// last `@`, the host taken verbatim (no port, brackets kept).
fn ssh_destination(operand: &OsStr) -> Result<Destination, CmdlineError> {
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

fn parse_scp(argv: &[OsString]) -> Result<Parts, CmdlineError> {
    let (opts, at) = getopt(Program::Scp, argv, 1, SCP_OPTS)?;
    // -f and -t are the remote end's protocol modes; -D runs a local server.
    refuse(Program::Scp, &opts, b"ftD")?;
    let operands = &argv[at..];
    if operands.len() < 2 {
        return Err(no_destination(Program::Scp, argv));
    }
    let mut remote: Option<Destination> = None;
    for operand in operands {
        let Some(found) = scp_remote(operand)? else {
            continue;
        };
        match &remote {
            Some(first) if *first != found => {
                return Err(CmdlineError::TwoRemotes {
                    command: show(argv),
                    first: first.to_string(),
                    second: found.to_string(),
                });
            }
            Some(_) => {}
            None => remote = Some(found),
        }
    }
    let destination = remote.ok_or_else(|| no_destination(Program::Scp, argv))?;
    let mut args = Vec::new();
    for opt in &opts {
        match opt.letter {
            b'o' | b'i' | b'F' | b'J' => {
                args.push(dash(opt.letter));
                args.push(opt.value());
            }
            b'4' | b'6' => args.push(dash(opt.letter)),
            b'B' => args.push("-oBatchmode=yes".into()),
            _ => {}
        }
    }
    push_destination_args(&destination, last_value(&opts, b'P'), &mut args);
    Ok(Parts {
        destination,
        resolve_args: args,
        ssh_program: last_value(&opts, b'S'),
        opts,
    })
}

/// The remote end an scp operand names, or `None` for a local path.
fn scp_remote(operand: &OsStr) -> Result<Option<Destination>, CmdlineError> {
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

fn parse_sftp(argv: &[OsString]) -> Result<Parts, CmdlineError> {
    let (opts, at) = getopt(Program::Sftp, argv, 1, SFTP_OPTS)?;
    refuse(Program::Sftp, &opts, b"D")?;
    let operands = &argv[at..];
    let operand = match operands.len() {
        0 => return Err(no_destination(Program::Sftp, argv)),
        1 | 2 => &operands[0],
        count => {
            return Err(CmdlineError::TooManyOperands {
                command: show(argv),
                count,
            });
        }
    };
    let destination = sftp_destination(operand)?;
    let mut args = Vec::new();
    for opt in &opts {
        match opt.letter {
            b'o' | b'i' | b'F' | b'J' => {
                args.push(dash(opt.letter));
                args.push(opt.value());
            }
            b'4' | b'6' => args.push(dash(opt.letter)),
            b'b' => args.push("-obatchmode yes".into()),
            _ => {}
        }
    }
    push_destination_args(&destination, last_value(&opts, b'P'), &mut args);
    Ok(Parts {
        destination,
        resolve_args: args,
        ssh_program: last_value(&opts, b'S'),
        opts,
    })
}

/// sftp.c: `sftp://…`, else `[user@]host:path`, else `[user@]host[:port]`
/// (port ignored), else the whole operand as a host.
fn sftp_destination(operand: &OsStr) -> Result<Destination, CmdlineError> {
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
fn destination(
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

/// The value of the last `-letter`, as the programs keep it.
fn last_value(opts: &[Opt], letter: u8) -> Option<OsString> {
    opts.iter()
        .rev()
        .find(|o| o.letter == letter)
        .map(Opt::value)
}

/// What OpenSSH's `parse_uri` makes of an operand.
#[derive(Debug, PartialEq)]
enum UriParse {
    NotUri,
    Invalid,
    Uri {
        user: Option<Vec<u8>>,
        host: Vec<u8>,
        port: Option<u16>,
        path: Option<Vec<u8>>,
    },
}

/// `scheme://[user[;params]@]host[:port][/path]`, as misc.c parses it:
/// user and path URL-decoded, host checked like a domain name (so no IPv6
/// literals) and stripped of one trailing dot. Ports must be numeric here;
/// OpenSSH also looks up service names.
fn parse_uri(prefix: &[u8], s: &[u8]) -> UriParse {
    let Some(mut rest) = s.strip_prefix(prefix) else {
        return UriParse::NotUri;
    };
    let mut user = None;
    if let Some(at) = rest.iter().position(|&b| b == b'@') {
        let info = &rest[..at];
        let name = info.split(|&b| b == b';').next().unwrap_or(info);
        match url_decode(name) {
            Some(name) if !name.is_empty() => user = Some(name),
            _ => return UriParse::Invalid,
        }
        rest = &rest[at + 1..];
    }
    let Some(HostPart {
        host,
        rest: tail,
        delim,
    }) = hpdelim(rest)
    else {
        return UriParse::Invalid;
    };
    let mut host = clean_hostname(host).to_vec();
    if !valid_domain(&host) {
        return UriParse::Invalid;
    }
    if host.last() == Some(&b'.') {
        host.pop();
    }
    let (mut port, mut path) = (None, None);
    let mut tail = tail.unwrap_or_default();
    if delim == Some(b':') && !tail.is_empty() {
        let end = tail.iter().position(|&b| b == b'/').unwrap_or(tail.len());
        match numeric_port(&tail[..end]) {
            Some(p) => port = Some(p),
            None => return UriParse::Invalid,
        }
        tail = tail.get(end + 1..).unwrap_or_default();
    }
    if !tail.is_empty() {
        match url_decode(tail) {
            Some(p) => path = Some(p),
            None => return UriParse::Invalid,
        }
    }
    UriParse::Uri {
        user,
        host,
        port,
        path,
    }
}

/// A host split from what follows it, by misc.c `hpdelim2`.
struct HostPart<'a> {
    /// The host, brackets included.
    host: &'a [u8],
    /// What follows the delimiter, if there was one.
    rest: Option<&'a [u8]>,
    /// `:` or `/`.
    delim: Option<u8>,
}

/// misc.c `hpdelim2`: splits `host` (bracketed or not) from what follows a
/// `:` or `/`.
fn hpdelim(s: &[u8]) -> Option<HostPart<'_>> {
    let end = if s.first() == Some(&b'[') {
        s.iter().position(|&b| b == b']')? + 1
    } else {
        s.iter()
            .position(|&b| b == b':' || b == b'/')
            .unwrap_or(s.len())
    };
    match s.get(end) {
        None => Some(HostPart {
            host: s,
            rest: None,
            delim: None,
        }),
        Some(&d @ (b':' | b'/')) => Some(HostPart {
            host: &s[..end],
            rest: Some(&s[end + 1..]),
            delim: Some(d),
        }),
        Some(_) => None,
    }
}

/// misc.c `cleanhostname`: `[addr]` loses its brackets.
fn clean_hostname(host: &[u8]) -> &[u8] {
    match host {
        [b'[', inner @ .., b']'] => inner,
        _ => host,
    }
}

/// misc.c `valid_domain`: letters, digits, `.`, `-`, `_`, starting with a
/// letter or digit, no empty labels.
fn valid_domain(host: &[u8]) -> bool {
    host.first().is_some_and(u8::is_ascii_alphanumeric)
        && host
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        && !host.windows(2).any(|w| w == b"..")
}

/// misc.c `urldecode`: `%XX` and `+` for space. `%00` is refused.
fn url_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(s.get(i + 1..i + 3)?).ok()?;
                let byte = u8::from_str_radix(hex, 16).ok().filter(|&c| c != 0)?;
                out.push(byte);
                i += 2;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

/// A port in 1..=65535, digits only.
fn numeric_port(s: &[u8]) -> Option<u16> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok().filter(|&p| p > 0)
}

/// misc.c `colon`: the `:` that makes an scp operand remote, if any. A
/// leading `:` or a `/` before the colon means a local path; brackets
/// protect an IPv6 address.
fn colon(s: &[u8]) -> Option<usize> {
    if s.first() == Some(&b':') {
        return None;
    }
    let mut bracketed = s.first() == Some(&b'[');
    for (i, &b) in s.iter().enumerate() {
        let next = s.get(i + 1).copied();
        if b == b'@' && next == Some(b'[') {
            bracketed = true;
        }
        if b == b']' && next == Some(b':') && bracketed {
            return Some(i + 1);
        }
        if b == b':' && !bracketed {
            return Some(i);
        }
        if b == b'/' {
            return None;
        }
    }
    None
}

/// misc.c `parse_user_host_path`: `[user@]host:[path]`, user split at the
/// last `@`. Returns the user and the (unbracketed) host.
fn user_host_of_path(s: &[u8]) -> Option<(Option<Vec<u8>>, Vec<u8>)> {
    let target = &s[..colon(s)?];
    Some(match target.iter().rposition(|&b| b == b'@') {
        Some(at) => {
            let user = Some(&target[..at])
                .filter(|u| !u.is_empty())
                .map(<[u8]>::to_vec);
            (user, clean_hostname(&target[at + 1..]).to_vec())
        }
        None => (None, clean_hostname(target).to_vec()),
    })
}

/// misc.c `parse_user_host_port`: `[user@]host[:port]` (sftp ignores the
/// port, but a bad one makes the whole operand a plain host name).
fn user_host_port(s: &[u8]) -> Option<(Option<Vec<u8>>, Vec<u8>)> {
    let (user, rest) = match s.iter().rposition(|&b| b == b'@') {
        Some(0) => return None,
        Some(at) => (Some(s[..at].to_vec()), &s[at + 1..]),
        None => (None, s),
    };
    let HostPart {
        host, rest: tail, ..
    } = hpdelim(rest)?;
    if host.is_empty() {
        return None;
    }
    if let Some(port) = tail.filter(|t| !t.is_empty()) {
        numeric_port(port)?;
    }
    Some((user, clean_hostname(host).to_vec()))
}

fn show(argv: &[OsString]) -> String {
    argv.iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

fn no_destination(program: Program, argv: &[OsString]) -> CmdlineError {
    let hint = match program {
        Program::Ssh => "name the host to connect to, e.g. `ssh user@host`",
        Program::Scp => "name a remote file as host:path",
        Program::Sftp => "name the host to connect to, e.g. `sftp user@host`",
    };
    CmdlineError::NoDestination {
        command: show(argv),
        hint,
    }
}

fn bad_uri(operand: &OsStr, scheme: Program) -> CmdlineError {
    CmdlineError::BadUri {
        operand: operand.to_string_lossy().into_owned(),
        scheme,
        path: if scheme == Program::Ssh {
            ""
        } else {
            "[/path]"
        },
    }
}

fn bad_destination(operand: &OsStr, why: &'static str) -> CmdlineError {
    CmdlineError::BadDestination {
        operand: operand.to_string_lossy().into_owned(),
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V9_2: OpensshVersion = OpensshVersion { major: 9, minor: 2 };
    const V9_6: OpensshVersion = OpensshVersion { major: 9, minor: 6 };

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    fn parse(words: &[&str]) -> Result<ParsedCommand, CmdlineError> {
        ParsedCommand::parse(&args(words), V9_2)
    }

    fn ok(words: &[&str]) -> ParsedCommand {
        match parse(words) {
            Ok(p) => p,
            Err(e) => panic!("{words:?}: {e}"),
        }
    }

    fn err(words: &[&str]) -> String {
        match parse(words) {
            Ok(p) => panic!("{words:?} parsed as {p:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn dest(user: Option<&str>, host: &str, port: Option<u16>) -> Destination {
        Destination {
            user: user.map(String::from),
            host: host.into(),
            port,
        }
    }

    fn strings(v: &[OsString]) -> Vec<String> {
        v.iter().map(|s| s.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn option_strings_match_openssh_9_2_binaries() {
        // `strings /usr/bin/{ssh,scp,sftp}` on Debian 12's OpenSSH 9.2p1.
        assert_eq!(
            SSH_OPTS_BEFORE_9_4,
            b"1246ab:c:e:fgi:kl:m:no:p:qstvxAB:CD:E:F:GI:J:KL:MNO:PQ:R:S:TVw:W:XYy"
        );
        assert_eq!(SCP_OPTS, b"12346ABCTdfOpqRrstvD:F:J:M:P:S:c:i:l:o:X:");
        assert_eq!(SFTP_OPTS, b"1246AafhNpqrvCc:D:i:l:o:s:S:b:B:F:J:P:R:X:");
    }

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
    fn ssh_options_clusters_and_attached_values() {
        let p = ok(&[
            "ssh", "-vp", "22", "-oUser=x", "-i~/k", "-4AF", "cfg", "host", "ls", "-l",
        ]);
        assert_eq!(p.destination().host, "host");
        assert_eq!(
            strings(p.resolve_args()),
            ["-p", "22", "-o", "User=x", "-i", "~/k", "-4", "-F", "cfg"]
        );
        assert!(err(&["ssh", "-Z", "h"]).contains("has no option -Z"));
        assert!(err(&["ssh", "h", "-p"]).contains("option -p of `ssh` needs a value"));
    }

    #[test]
    fn ssh_reads_options_after_the_destination_with_lower_precedence() {
        // `ssh u@h -l x` logs in as u, `ssh -l x u@h` as x: first one wins.
        let p = ok(&[
            "ssh", "-l", "x", "u@h", "-l", "y", "-p", "2", "uptime", "-p", "3",
        ]);
        assert_eq!(
            strings(p.resolve_args()),
            ["-l", "x", "-l", "u", "-l", "y", "-p", "2"]
        );
        let p = ok(&["ssh", "-p", "5", "ssh://h:6", "-4"]);
        assert_eq!(strings(p.resolve_args()), ["-p", "5", "-p", "6", "-4"]);
    }

    #[test]
    fn double_dash_ends_ssh_options() {
        let p = ok(&["ssh", "-v", "--", "-host-", "-p", "2"]);
        assert_eq!(p.destination().host, "-host-");
        assert!(p.resolve_args().is_empty());
        // After `--` nothing is an option, and the restart does not happen.
        let p = ok(&["ssh", "--", "h", "-p", "2"]);
        assert!(p.resolve_args().is_empty());
        // `--` as a value counts too, as in ssh.c.
        let p = ok(&["ssh", "-l", "--", "h", "-p", "2"]);
        assert_eq!(strings(p.resolve_args()), ["-l", "--"]);
    }

    #[test]
    fn ssh_capital_p_depends_on_the_version() {
        let argv = args(&["ssh", "-P", "work", "host"]);
        let old = ParsedCommand::parse(&argv, V9_2).unwrap();
        assert_eq!(old.destination().host, "work");
        let new = ParsedCommand::parse(&argv, V9_6).unwrap();
        assert_eq!(new.destination().host, "host");
        assert_eq!(strings(new.resolve_args()), ["-P", "work"]);
    }

    #[test]
    fn ssh_options_that_do_not_connect_are_refused() {
        for flag in ["-V", "-G", "-Qcipher", "-Oexit"] {
            assert!(
                err(&["ssh", flag, "h"]).contains("does not open a connection"),
                "{flag}"
            );
        }
        assert!(err(&["ssh", "-v"]).contains("cannot find the destination host in `ssh -v`"));
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
    fn scp_needs_exactly_one_remote_host() {
        let e = err(&["scp", "a", "b"]);
        assert_eq!(
            e,
            "rock -d: cannot find the destination host in `scp a b` — name a remote file as host:path"
        );
        assert!(err(&["scp", "./x:y", "/tmp/a:b"]).contains("name a remote file as host:path"));
        assert!(
            err(&["scp", "h1:a", "h2:b"]).contains("names two remote destinations, `h1` and `h2`")
        );
        assert!(err(&["scp", "u@h:a", "h:b"]).contains("two remote destinations"));
        assert!(err(&["scp", "h:a"]).contains("cannot find the destination host"));
        // Several files from the same host are one destination.
        assert_eq!(ok(&["scp", "h:a", "h:b", "."]).destination().host, "h");
    }

    #[test]
    fn scp_resolve_args_follow_what_scp_gives_ssh() {
        // scp: user options in order, then `-p` (URI port beats -P), then `-l`.
        let p = ok(&[
            "scp", "-P", "7", "-o", "Port=9", "-rqB", "-J", "j", "-4", "-l", "100", "-i", "k",
            "-F", "cf", "-c", "aes", "f", "u@h:",
        ]);
        assert_eq!(
            strings(p.resolve_args()),
            [
                "-o",
                "Port=9",
                "-oBatchmode=yes",
                "-J",
                "j",
                "-4",
                "-i",
                "k",
                "-F",
                "cf",
                "-p",
                "7",
                "-l",
                "u"
            ]
        );
        let p = ok(&["scp", "-P7", "f", "scp://h:8/p"]);
        assert_eq!(strings(p.resolve_args()), ["-p", "8"]);
        assert_eq!(p.ssh_program(), "ssh");
        let p = ok(&["scp", "-S", "/opt/ssh", "f", "h:"]);
        assert_eq!(p.ssh_program(), "/opt/ssh");
    }

    #[test]
    fn scp_server_and_local_modes_are_refused() {
        assert!(err(&["scp", "-t", "x"]).contains("`scp -t` does not open a connection"));
        assert!(err(&["scp", "-D", "/usr/lib/sftp-server", "a", "h:"]).contains("`scp -D`"));
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

    #[test]
    fn sftp_resolve_args_follow_what_sftp_gives_ssh() {
        // -l is a bandwidth limit and -B a buffer size in sftp, not ssh's.
        let p = ok(&[
            "sftp", "-P", "7", "-b", "-", "-B", "1000", "-l", "10", "-6", "-oUser=z", "u@h",
        ]);
        assert_eq!(
            strings(p.resolve_args()),
            [
                "-obatchmode yes",
                "-6",
                "-o",
                "User=z",
                "-p",
                "7",
                "-l",
                "u"
            ]
        );
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

    #[test]
    fn colon_rules() {
        assert_eq!(colon(b"h:p"), Some(1));
        assert_eq!(colon(b":p"), None);
        assert_eq!(colon(b"./a:b"), None);
        assert_eq!(colon(b"[::1]:p"), Some(5));
        assert_eq!(colon(b"u@[::1]:p"), Some(7));
        assert_eq!(colon(b"[::1]"), None);
    }
}
