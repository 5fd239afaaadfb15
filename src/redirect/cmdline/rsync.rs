//! rsync's command line, read as rsync 3.x reads it (popt: option clusters
//! like `-avessh`, long options with `=value` or the next word, options
//! anywhere before `--`): its remote shell (`-e`/`--rsh`, else
//! `RSYNC_RSH`, else `ssh`), `-4`/`-6`, and the operand that names the
//! remote host, found as `main.c` `check_for_hostspec` finds it —
//! `[user@]host:path`, a `/` before the first `:` making it local, `[…]`
//! protecting an IPv6 address. `rsync://…` and `host::module` reach an
//! rsync daemon without ssh and are refused.
//!
//! rsync runs `<remote shell words> [-l user] [-4|-6] host rsync --server …`
//! (checked against rsync 3.2 with a program that prints its argv), and
//! that is the order of the options handed to `ssh -G`.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use super::destination::destination;
use super::error::{bad_destination, no_destination, show};
use super::programs::{Parts, push_destination_args};
use super::remote_shell::RemoteShell;
use super::shell::Syntax;
use super::surroundings::Surroundings;
use super::{CmdlineError, Destination, Program, Transport};

/// rsync's short options that take a value.
const SHORT_WITH_VALUE: &[u8] = b"eBT@fM";
/// rsync's long options that take a value (rsync 3.2 to 3.4 `--help`,
/// with their aliases).
const LONG_WITH_VALUE: &[&str] = &[
    "address",
    "backup-dir",
    "block-size",
    "bwlimit",
    "cc",
    "checksum-choice",
    "checksum-seed",
    "chmod",
    "chown",
    "compare-dest",
    "compress-choice",
    "compress-level",
    "compress-threads",
    "config",
    "confine-root",
    "contimeout",
    "copy-as",
    "copy-dest",
    "debug",
    "dparam",
    "early-input",
    "exclude",
    "exclude-from",
    "files-from",
    "filter",
    "groupmap",
    "iconv",
    "include",
    "include-from",
    "info",
    "link-dest",
    "log-file",
    "log-file-format",
    "log-format",
    "max-alloc",
    "max-delete",
    "max-size",
    "min-size",
    "modify-window",
    "only-write-batch",
    "out-format",
    "outbuf",
    "partial-dir",
    "password-file",
    "port",
    "protocol",
    "read-batch",
    "remote-option",
    "rsh",
    "rsync-path",
    "skip-compress",
    "sockopts",
    "stderr",
    "stop-after",
    "stop-at",
    "suffix",
    "temp-dir",
    "time-limit",
    "timeout",
    "usermap",
    "write-batch",
    "zc",
    "zl",
    "zt",
];

/// Where a value of `-e`/`--rsh` sits in argv: it starts `offset` bytes
/// into word `word`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ValueAt {
    pub(super) word: usize,
    pub(super) offset: usize,
}

/// What the option scan finds.
struct Scan {
    operands: Vec<usize>,
    rsh: Vec<ValueAt>,
    family: Option<u8>,
}

fn scan(argv: &[OsString]) -> Result<Scan, CmdlineError> {
    let mut found = Scan {
        operands: Vec::new(),
        rsh: Vec::new(),
        family: None,
    };
    let missing = |letter: char| CmdlineError::MissingValue {
        program: Program::Rsync,
        letter,
    };
    let mut i = 1;
    while let Some(word) = argv.get(i).map(|w| w.as_bytes()) {
        if word == b"--" {
            found.operands.extend(i + 1..argv.len());
            break;
        }
        if let Some(long) = word.strip_prefix(b"--") {
            let (name, inline) = match long.iter().position(|&b| b == b'=') {
                Some(eq) => (&long[..eq], Some(eq + 3)),
                None => (long, None),
            };
            let name = String::from_utf8_lossy(name);
            if matches!(name.as_ref(), "server" | "daemon" | "sender") {
                return Err(CmdlineError::NotCarried {
                    command: show(argv),
                    why: format!("runs rsync's --{name} mode, which opens no connection"),
                });
            }
            match name.as_ref() {
                "ipv4" => found.family = Some(b'4'),
                "ipv6" => found.family = Some(b'6'),
                _ => {}
            }
            if LONG_WITH_VALUE.contains(&name.as_ref()) {
                let at = match inline {
                    Some(offset) => ValueAt { word: i, offset },
                    None => {
                        i += 1;
                        if i >= argv.len() {
                            return Err(CmdlineError::NotCarried {
                                command: show(argv),
                                why: format!("ends without the value of --{name}"),
                            });
                        }
                        ValueAt { word: i, offset: 0 }
                    }
                };
                if name == "rsh" {
                    found.rsh.push(at);
                }
            }
        } else if word.len() > 1 && word[0] == b'-' {
            for (offset, &letter) in word.iter().enumerate().skip(1) {
                match letter {
                    b'4' | b'6' => found.family = Some(letter),
                    _ => {}
                }
                if !SHORT_WITH_VALUE.contains(&letter) {
                    continue;
                }
                let at = if offset + 1 < word.len() {
                    ValueAt {
                        word: i,
                        offset: offset + 1,
                    }
                } else {
                    i += 1;
                    if i >= argv.len() {
                        return Err(missing(char::from(letter)));
                    }
                    ValueAt { word: i, offset: 0 }
                };
                if letter == b'e' {
                    found.rsh.push(at);
                }
                break;
            }
        } else {
            found.operands.push(i);
        }
        i += 1;
    }
    Ok(found)
}

/// What an operand is to rsync.
#[derive(Debug, PartialEq)]
enum Operand {
    Local,
    Remote(Destination),
    /// `:path` after a remote source: the same host.
    SameHost,
}

/// `check_for_hostspec`, for the remote-shell forms; daemon forms are an
/// error.
fn operand(word: &OsString) -> Result<Operand, CmdlineError> {
    let s = word.as_bytes();
    let daemon = || CmdlineError::Daemon {
        operand: word.to_string_lossy().into_owned(),
    };
    if s.len() >= 8 && s[..8].eq_ignore_ascii_case(b"rsync://") {
        return Err(daemon());
    }
    let mut host_start = 0;
    let mut i = 0;
    let colon = loop {
        match s.get(i) {
            None | Some(b'/') => return Ok(Operand::Local),
            Some(b':') => break i,
            Some(b'@') => host_start = i + 1,
            Some(b'[') if i == host_start => {
                let close = s[i..].iter().position(|&b| b == b']' || b == b'/');
                match close.map(|c| i + c) {
                    Some(end) if s[end] == b']' && matches!(s.get(end + 1), Some(b':')) => {
                        i = end;
                    }
                    _ => return Ok(Operand::Local),
                }
            }
            _ => {}
        }
        i += 1;
    };
    if s.get(colon + 1) == Some(&b':') {
        return Err(daemon());
    }
    if colon == 0 {
        return Ok(Operand::SameHost);
    }
    let user = (host_start > 0).then(|| s[..host_start - 1].to_vec());
    if user.as_ref().is_some_and(Vec::is_empty) {
        return Err(bad_destination(word, "has an empty user name before `@`"));
    }
    let host = &s[host_start..colon];
    let host = match host {
        [b'[', inner @ .., b']'] => inner,
        _ => host,
    };
    Ok(Operand::Remote(destination(
        word,
        user,
        host.to_vec(),
        None,
    )?))
}

/// The one remote host among the operands: the first source's (pull, or
/// a listing) or the last operand's (push).
fn remote_destination(argv: &[OsString], operands: &[usize]) -> Result<Destination, CmdlineError> {
    let words: Vec<&OsString> = operands.iter().map(|&i| &argv[i]).collect();
    let kinds = words
        .iter()
        .map(|w| operand(w))
        .collect::<Result<Vec<_>, _>>()?;
    let two = |first: &Destination, second: &Destination| CmdlineError::TwoRemotes {
        command: show(argv),
        first: first.to_string(),
        second: second.to_string(),
    };
    let (sources, target) = match kinds.split_last() {
        Some((last, rest)) if !rest.is_empty() => (rest, Some(last)),
        Some((only, _)) => (std::slice::from_ref(only), None),
        None => return Err(no_destination(Program::Rsync, argv)),
    };
    if let Some(Operand::Remote(from)) = sources.first() {
        for other in &sources[1..] {
            match other {
                Operand::Remote(d) if d != from => return Err(two(from, d)),
                Operand::Local => {
                    return Err(CmdlineError::NotCarried {
                        command: show(argv),
                        why: "mixes remote and local sources, which rsync refuses".into(),
                    });
                }
                _ => {}
            }
        }
        if let Some(Operand::Remote(to)) = target {
            return Err(two(from, to));
        }
        return Ok(from.clone());
    }
    let Some(Operand::Remote(to)) = target else {
        return Err(no_destination(Program::Rsync, argv));
    };
    if let Some(Operand::Remote(from)) = sources.iter().find(|k| matches!(k, Operand::Remote(_))) {
        return Err(two(from, to));
    }
    Ok(to.clone())
}

/// rsync: the remote host, and the remote shell with its ssh options.
pub(super) fn parse_rsync(
    argv: &[OsString],
    ssh_spec: &[u8],
    env: &dyn Surroundings,
) -> Result<Parts, CmdlineError> {
    let found = scan(argv)?;
    let destination = remote_destination(argv, &found.operands)?;
    let shell = remote_shell(argv, &found.rsh, ssh_spec, env)?;
    let mut args = Vec::new();
    shell.resolve_args(&mut args);
    push_destination_args(&destination, None, &mut args);
    if let Some(family) = found.family {
        args.push(OsString::from_vec(vec![b'-', family]));
    }
    Ok(Parts {
        destination,
        resolve_args: args,
        ssh_program: Some(shell.program.clone()),
        opts: Vec::new(),
        transport: Transport::Rsync {
            shell,
            values: found.rsh,
        },
    })
}

/// The remote shell rsync runs: the last `-e`, else `RSYNC_RSH`, else ssh.
fn remote_shell(
    argv: &[OsString],
    rsh: &[ValueAt],
    ssh_spec: &[u8],
    env: &dyn Surroundings,
) -> Result<RemoteShell, CmdlineError> {
    if let Some(at) = rsh.last() {
        let text = &argv[at.word].as_bytes()[at.offset..];
        return RemoteShell::read(Syntax::Rsync, text, "rsync's -e", ssh_spec, env);
    }
    match env.var("RSYNC_RSH").filter(|v| !v.is_empty()) {
        Some(text) => RemoteShell::read(Syntax::Rsync, text.as_bytes(), "RSYNC_RSH", ssh_spec, env),
        None => Ok(RemoteShell::default_ssh(Syntax::Rsync)),
    }
}

/// The ssh program rsync will run, for asking its version (ssh if the
/// command cannot be read; parsing says why).
pub(super) fn rsync_ssh(argv: &[OsString], env: &dyn Surroundings) -> OsString {
    let spec = super::OpensshVersion { major: 9, minor: 4 }.ssh_opts();
    scan(argv)
        .ok()
        .and_then(|found| remote_shell(argv, &found.rsh, spec, env).ok())
        .map_or_else(|| "ssh".into(), |shell| shell.program)
}

#[cfg(test)]
mod tests {
    use crate::redirect::cmdline::test_util::*;

    #[test]
    fn the_remote_operand_is_the_first_source_or_the_last() {
        let p = ok_in(
            &["rsync", "-av", "dir/", "u@h:backup/"],
            &FakeEnv::default(),
        );
        assert_eq!(*p.destination(), dest(Some("u"), "h", None));
        let p = ok_in(
            &["rsync", "-a", "h:a", ":b", "h:c", "./local"],
            &FakeEnv::default(),
        );
        assert_eq!(*p.destination(), dest(None, "h", None));
        // A listing: the only operand.
        let p = ok_in(&["rsync", "a@b@[::1]:x"], &FakeEnv::default());
        assert_eq!(*p.destination(), dest(Some("a@b"), "::1", None));
        // Options after operands are still options, values included.
        let p = ok_in(
            &["rsync", "x", "h:y", "--exclude", "k:v", "-T", "t:mp"],
            &FakeEnv::default(),
        );
        assert_eq!(p.destination().host, "h");
    }

    #[test]
    fn local_looking_operands_stay_local() {
        for words in [
            &["rsync", "./a:b", "c"][..],
            &["rsync", "/x/y:z", "dir"],
            &["rsync", "a"],
        ] {
            let e = err_in(words, &FakeEnv::default());
            assert!(
                e.contains("cannot find the destination host"),
                "{words:?}: {e}"
            );
        }
        let p = ok_in(&["rsync", "--", "-f", "h:x"], &FakeEnv::default());
        assert_eq!(p.destination().host, "h");
    }

    #[test]
    fn daemon_forms_and_two_hosts_are_refused() {
        for words in [
            &["rsync", "a", "rsync://h/mod/"][..],
            &["rsync", "RSYNC://h:873/mod", "."],
            &["rsync", "a", "h::mod"],
            &["rsync", "u@h::mod/x", "."],
        ] {
            let e = err_in(words, &FakeEnv::default());
            assert!(e.contains("rsync daemon"), "{words:?}: {e}");
        }
        let e = err_in(&["rsync", "h1:a", "h2:b"], &FakeEnv::default());
        assert!(e.contains("two remote destinations"), "{e}");
        let e = err_in(&["rsync", "h1:a", "h2:b", "."], &FakeEnv::default());
        assert!(e.contains("two remote destinations"), "{e}");
        let e = err_in(&["rsync", "--daemon"], &FakeEnv::default());
        assert!(e.contains("--daemon"), "{e}");
        let e = err_in(
            &["rsync", "-e", "ssh -S /tmp/ctl", "f", "h:"],
            &FakeEnv::default(),
        );
        assert!(e.contains("shares one connection"), "{e}");
    }

    #[test]
    fn the_remote_shell_comes_from_e_then_rsync_rsh_then_ssh() {
        let env = FakeEnv::with_var("RSYNC_RSH", "ssh -p 2");
        let p = ok_in(&["rsync", "-avessh -F 'my cfg'", "-4", "f", "u@h:"], &env);
        assert_eq!(strings(p.resolve_args()), ["-F", "my cfg", "-l", "u", "-4"]);
        assert_eq!(p.ssh_program(), "ssh");
        let p = ok_in(&["rsync", "f", "h:"], &env);
        assert_eq!(strings(p.resolve_args()), ["-p", "2"]);
        let p = ok_in(&["rsync", "--rsh=/usr/bin/ssh -i k", "f", "h:"], &env);
        assert_eq!(p.ssh_program(), "/usr/bin/ssh");
        let p = ok_in(&["rsync", "f", "h:"], &FakeEnv::default());
        assert!(p.resolve_args().is_empty());
        assert_eq!(p.ssh_program(), "ssh");
        let e = err_in(&["rsync", "-e", "rsh", "f", "h:"], &FakeEnv::default());
        assert!(e.contains("not OpenSSH's ssh"), "{e}");
        let e = err_in(
            &["rsync", "-e", "ssh other", "f", "h:"],
            &FakeEnv::default(),
        );
        assert!(e.contains("names `other`"), "{e}");
    }

    #[test]
    fn the_transport_goes_into_e_or_rsync_rsh() {
        let env = FakeEnv::default();
        let p = ok_in(&["rsync", "-ave", "ssh -v", "f", "h:"], &env);
        let t = p.with_transport("'/r/rock-proxy'", Some("bob"));
        assert!(t.env.is_empty());
        assert_eq!(
            strings(&t.argv),
            [
                "rsync",
                "-ave",
                "ssh -o \"ProxyCommand='/r/rock-proxy'\" -o ProxyUseFdpass=yes -o ControlMaster=no -o ControlPath=none -o ServerAliveInterval=0 -o User=bob -v",
                "f",
                "h:"
            ]
        );
        let p = ok_in(&["rsync", "--rsh=ssh", "-essh", "f", "h:"], &env);
        let t = p.with_transport("x", None);
        assert_eq!(
            strings(&t.argv)[1..3],
            [
                "--rsh=ssh -o ProxyCommand=x -o ProxyUseFdpass=yes -o ControlMaster=no -o ControlPath=none -o ServerAliveInterval=0",
                "-essh -o ProxyCommand=x -o ProxyUseFdpass=yes -o ControlMaster=no -o ControlPath=none -o ServerAliveInterval=0"
            ]
        );
        let p = ok_in(&["rsync", "f", "h:"], &env);
        let t = p.with_transport("x", None);
        assert_eq!(strings(&t.argv), ["rsync", "f", "h:"]);
        assert_eq!(
            t.env,
            [(
                "RSYNC_RSH".into(),
                "ssh -o ProxyCommand=x -o ProxyUseFdpass=yes -o ControlMaster=no -o ControlPath=none -o ServerAliveInterval=0".into()
            )]
        );
    }

    #[test]
    fn a_jump_in_the_remote_shell_is_resolved_and_left_out_of_it() {
        let env = FakeEnv::default();
        let p = ok_in(
            &["rsync", "-e", "ssh -J j1 -vJj2 -i \"my key\"", "f", "h:"],
            &env,
        );
        assert_eq!(
            strings(p.resolve_args()),
            ["-J", "j1", "-J", "j2", "-i", "my key"]
        );
        let t = p.with_transport("x", None);
        assert_eq!(
            strings(&t.argv)[2],
            "ssh -o ProxyCommand=x -o ProxyUseFdpass=yes -o ControlMaster=no -o ControlPath=none -o ServerAliveInterval=0 -v -i \"my key\""
        );
    }
}
