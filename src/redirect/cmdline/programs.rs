//! What each program hands to ssh, read from its argv as `ssh.c`, `scp.c`
//! and `sftp.c` read it: the options that change what `ssh -G` resolves, in
//! the order that gives them ssh's first-one-wins precedence, the user and
//! port of the destination operand, and the ssh to run (`-S`). Options that
//! make a program do something other than connect are refused here.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use super::destination::{scp_remote, sftp_destination, ssh_destination};
use super::error::{no_destination, show};
use super::getopt::{Opt, SCP_OPTS, SFTP_OPTS, dash, getopt, last_value, refuse, refuse_sharing};
use super::{CmdlineError, Destination, Program, Transport};

/// What each program's parser finds.
pub(super) struct Parts {
    pub(super) destination: Destination,
    pub(super) resolve_args: Vec<OsString>,
    pub(super) ssh_program: Option<OsString>,
    pub(super) opts: Vec<Opt>,
    pub(super) transport: Transport,
}

/// ssh: options, the destination, then (unless `--` came first) more
/// options after it.
pub(super) fn parse_ssh(argv: &[OsString], spec: &[u8]) -> Result<Parts, CmdlineError> {
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
    refuse_sharing(&opts)?;
    let mut args = Vec::new();
    ssh_resolve_args(&opts[..before], &mut args);
    push_destination_args(&destination, None, &mut args);
    ssh_resolve_args(&opts[before..], &mut args);
    Ok(Parts {
        destination,
        resolve_args: args,
        ssh_program: None,
        opts,
        transport: Transport::Argv,
    })
}

/// ssh's own options that change what `ssh -G` prints.
pub(super) fn ssh_resolve_args(opts: &[Opt], args: &mut Vec<OsString>) {
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
pub(super) fn push_destination_args(
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

/// scp: options, then the operands, exactly one remote host among them.
pub(super) fn parse_scp(argv: &[OsString]) -> Result<Parts, CmdlineError> {
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
    Ok(forwarded_parts(
        destination,
        opts,
        (b'B', "-oBatchmode=yes"),
    ))
}

/// sftp: options, then the destination and at most a local directory.
pub(super) fn parse_sftp(argv: &[OsString]) -> Result<Parts, CmdlineError> {
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
    Ok(forwarded_parts(
        destination,
        opts,
        (b'b', "-obatchmode yes"),
    ))
}

/// What scp and sftp hand ssh, in their order: `-o`, `-i`, `-F`, `-J`,
/// `-4`, `-6` and batch mode as given (`batch` is the program's batch-mode
/// letter and the `-o` it becomes), then `-p` and `-l` for the destination
/// (a URI port beats `-P`); `-S` names the ssh to run.
fn forwarded_parts(destination: Destination, opts: Vec<Opt>, batch: (u8, &str)) -> Parts {
    let mut args = Vec::new();
    for opt in &opts {
        match opt.letter {
            b'o' | b'i' | b'F' | b'J' => {
                args.push(dash(opt.letter));
                args.push(opt.value());
            }
            b'4' | b'6' => args.push(dash(opt.letter)),
            letter if letter == batch.0 => args.push(batch.1.into()),
            _ => {}
        }
    }
    push_destination_args(&destination, last_value(&opts, b'P'), &mut args);
    Parts {
        destination,
        resolve_args: args,
        ssh_program: last_value(&opts, b'S'),
        opts,
        transport: Transport::Argv,
    }
}

#[cfg(test)]
mod tests {
    use crate::redirect::cmdline::test_util::*;

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
    fn ssh_connection_sharing_on_the_command_line_is_refused() {
        for argv in [
            &["ssh", "-M", "h"][..],
            &["ssh", "-S", "/tmp/ctl", "h"],
            &["ssh", "h", "-S/tmp/ctl", "ls"],
        ] {
            let e = err(argv);
            assert!(
                e.contains("shares one connection") && e.contains("drop -"),
                "{e}"
            );
        }
        // scp's -S names the ssh program: nothing to do with sharing.
        ok(&["scp", "-S", "/opt/ssh", "f", "h:"]);
    }

    #[test]
    fn scp_needs_exactly_one_remote_host() {
        let e = err(&["scp", "a", "b"]);
        assert_eq!(
            e,
            "cannot find the destination host in `scp a b` — name a remote file as host:path"
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
}
