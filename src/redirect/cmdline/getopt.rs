//! Options as the programs read them: the option strings of OpenSSH 9.x
//! `ssh.c`, `scp.c` and `sftp.c`, and getopt(3) as OpenSSH's bundled BSD
//! getopt runs it (stop at the first operand, `--` ends options, clusters
//! like `-vp22`). Each [`Opt`] remembers where it sat in argv, so that the
//! command can later be rewritten without it.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use super::{CmdlineError, OpensshVersion, Program};

/// ssh.c's option string up to OpenSSH 9.3: `-P` is an ignored flag.
const SSH_OPTS_BEFORE_9_4: &[u8] =
    b"1246ab:c:e:fgi:kl:m:no:p:qstvxAB:CD:E:F:GI:J:KL:MNO:PQ:R:S:TVw:W:XYy";
/// ssh.c's option string from OpenSSH 9.4: `-P tag` selects `Match tagged`.
const SSH_OPTS_SINCE_9_4: &[u8] =
    b"1246ab:c:e:fgi:kl:m:no:p:qstvxAB:CD:E:F:GI:J:KL:MNO:P:Q:R:S:TVw:W:XYy";
/// scp.c's option string (OpenSSH 9.x).
pub(super) const SCP_OPTS: &[u8] = b"12346ABCTdfOpqRrstvD:F:J:M:P:S:c:i:l:o:X:";
/// sftp.c's option string (OpenSSH 9.x).
pub(super) const SFTP_OPTS: &[u8] = b"1246AafhNpqrvCc:D:i:l:o:s:S:b:B:F:J:P:R:X:";

impl OpensshVersion {
    /// A release of each of ssh's option strings.
    pub(super) const OPTION_SETS: [OpensshVersion; 2] = [
        OpensshVersion { major: 9, minor: 3 },
        OpensshVersion { major: 9, minor: 4 },
    ];

    /// ssh's option string in this release.
    pub(super) fn ssh_opts(self) -> &'static [u8] {
        if self >= (OpensshVersion { major: 9, minor: 4 }) {
            SSH_OPTS_SINCE_9_4
        } else {
            SSH_OPTS_BEFORE_9_4
        }
    }
}

/// One option as getopt(3) saw it, with where it sat in argv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Opt {
    /// The option letter.
    pub(super) letter: u8,
    /// argv index of the word holding the letter.
    pub(super) word: usize,
    /// Byte offset of the letter in that word.
    pub(super) offset: usize,
    /// The option's value and the argv index it came from.
    pub(super) value: Option<(OsString, usize)>,
}

impl Opt {
    /// The value, empty for a flag.
    pub(super) fn value(&self) -> OsString {
        self.value
            .as_ref()
            .map(|(v, _)| v.clone())
            .unwrap_or_default()
    }
}

/// getopt(3) as OpenSSH's bundled BSD getopt runs it, from `argv[start]`.
/// Returns the options and the index of the first operand.
pub(super) fn getopt(
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
pub(super) fn refuse(program: Program, opts: &[Opt], letters: &[u8]) -> Result<(), CmdlineError> {
    match opts.iter().find(|o| letters.contains(&o.letter)) {
        Some(o) => Err(CmdlineError::NotAConnection {
            program,
            letter: char::from(o.letter),
        }),
        None => Ok(()),
    }
}

/// Refuses ssh's connection sharing options, `-M` and `-S`: given on the
/// command line they beat the `-o ControlMaster=no -o ControlPath=none`
/// rock adds.
pub(super) fn refuse_sharing(opts: &[Opt]) -> Result<(), CmdlineError> {
    match opts.iter().find(|o| b"MS".contains(&o.letter)) {
        Some(o) => Err(CmdlineError::ConnectionSharing {
            letter: char::from(o.letter),
        }),
        None => Ok(()),
    }
}

/// `argv[from..]` without its `-J` options, read as `opts` (indices into
/// `argv`): a `-J` word and its value word go, a cluster like `-vJjump`
/// keeps what comes before the `J`.
pub(super) fn without_jumps(argv: &[OsString], from: usize, opts: &[Opt]) -> Vec<OsString> {
    let jumps: Vec<&Opt> = opts.iter().filter(|o| o.letter == b'J').collect();
    let mut out = Vec::with_capacity(argv.len());
    for (i, word) in argv.iter().enumerate().skip(from) {
        if jumps
            .iter()
            .any(|j| matches!(j.value, Some((_, w)) if w == i && w != j.word))
        {
            continue;
        }
        match jumps.iter().find(|j| j.word == i) {
            Some(j) if j.offset > 1 => {
                out.push(OsString::from_vec(word.as_bytes()[..j.offset].to_vec()));
            }
            Some(_) => {}
            None => out.push(word.clone()),
        }
    }
    out
}

/// The value of the last `-letter`, as the programs keep it.
pub(super) fn last_value(opts: &[Opt], letter: u8) -> Option<OsString> {
    opts.iter()
        .rev()
        .find(|o| o.letter == letter)
        .map(Opt::value)
}

/// `-letter`, as a word of its own.
pub(super) fn dash(letter: u8) -> OsString {
    OsString::from_vec(vec![b'-', letter])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redirect::cmdline::ParsedCommand;
    use crate::redirect::cmdline::test_util::*;

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
    fn ssh_capital_p_depends_on_the_version() {
        let argv = args(&["ssh", "-P", "work", "host"]);
        let old = ParsedCommand::parse(&argv, V9_2).unwrap();
        assert_eq!(old.destination().host, "work");
        let new = ParsedCommand::parse(&argv, V9_6).unwrap();
        assert_eq!(new.destination().host, "host");
        assert_eq!(strings(new.resolve_args()), ["-P", "work"]);
    }
}
