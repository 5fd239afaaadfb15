//! The ssh command line that rsync (`-e`, `RSYNC_RSH`) or git
//! (`GIT_SSH_COMMAND`, `core.sshCommand`, `GIT_SSH`) runs as its transport:
//! which ssh, with which options, and how to add rock's options to it
//! without disturbing the user's quoting.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use super::Program;
use super::error::CmdlineError;
use super::getopt::{self, Opt, getopt, refuse, refuse_sharing};
use super::programs::ssh_resolve_args;
use super::shell::{self, Syntax};
use super::surroundings::{Surroundings, VarsOf};

/// A remote-shell command, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RemoteShell {
    /// How its text is split.
    syntax: Syntax,
    /// The text as the user wrote it.
    text: Vec<u8>,
    /// Where its first word (the program) ends in `text`.
    first_end: usize,
    /// Its words, as split (variables expanded, quotes removed).
    words: Vec<OsString>,
    /// The program: the first word.
    pub(super) program: OsString,
    /// ssh's options among the other words.
    opts: Vec<Opt>,
}

impl RemoteShell {
    /// Reads `text` (`what` names where it came from, for messages) as an
    /// OpenSSH ssh command without a destination. `spec` is ssh's option
    /// string.
    pub(super) fn read(
        syntax: Syntax,
        text: &[u8],
        what: &str,
        spec: &[u8],
        env: &dyn Surroundings,
    ) -> Result<RemoteShell, CmdlineError> {
        let fail = |why: String| CmdlineError::RemoteShell {
            what: what.to_owned(),
            command: String::from_utf8_lossy(text).into_owned(),
            why,
        };
        let split = shell::split(syntax, text, &VarsOf(env)).map_err(|source| {
            CmdlineError::ShellSyntax {
                what: what.to_owned(),
                command: String::from_utf8_lossy(text).into_owned(),
                source,
            }
        })?;
        let argv: Vec<OsString> = split.words.into_iter().map(OsString::from_vec).collect();
        let base = argv[0].as_bytes().rsplit(|&b| b == b'/').next();
        if base != Some(b"ssh".as_slice()) {
            return Err(fail(format!(
                "its program `{}` is not OpenSSH's ssh, the only remote shell rock -d can carry",
                argv[0].to_string_lossy()
            )));
        }
        let (opts, at) = getopt(Program::Ssh, &argv, 1, spec)?;
        refuse(Program::Ssh, &opts, b"GOQV")?;
        refuse_sharing(&opts)?;
        if let Some(extra) = argv.get(at) {
            return Err(fail(format!(
                "it names `{}` after its options, but the host and command are added by the \
                 program that runs it",
                extra.to_string_lossy()
            )));
        }
        Ok(RemoteShell {
            syntax,
            text: text.to_vec(),
            first_end: split.first_end,
            program: argv[0].clone(),
            words: argv,
            opts,
        })
    }

    /// The built-in default, `ssh`.
    pub(super) fn default_ssh(syntax: Syntax) -> RemoteShell {
        RemoteShell {
            syntax,
            text: b"ssh".to_vec(),
            first_end: 3,
            words: vec!["ssh".into()],
            program: "ssh".into(),
            opts: Vec::new(),
        }
    }

    /// The options that change what `ssh -G` resolves, in order.
    pub(super) fn resolve_args(&self, args: &mut Vec<OsString>) {
        ssh_resolve_args(&self.opts, args);
    }

    /// The text with `words` inserted right after the program, where they
    /// beat the user's later options and the config files (ssh keeps the
    /// first value of each setting).
    ///
    /// A command with `-J` is written anew from its words without them:
    /// ssh refuses `-J` beside a ProxyCommand, and the jump is the
    /// bootstrap's and the links' business, as for ssh's own command line.
    /// Its words are quoted for the same reader, so it runs the same argv.
    pub(super) fn with(&self, words: &[OsString]) -> OsString {
        let words: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
        if !self.opts.iter().any(|o| o.letter == b'J') {
            return OsString::from_vec(shell::insert_after_first(
                self.syntax,
                &self.text,
                self.first_end,
                &words,
            ));
        }
        let program = shell::quote(self.syntax, self.program.as_bytes());
        let mut text = program.clone();
        for word in getopt::without_jumps(&self.words, 1, &self.opts) {
            text.push(b' ');
            text.extend(shell::quote(self.syntax, word.as_bytes()));
        }
        OsString::from_vec(shell::insert_after_first(
            self.syntax,
            &text,
            program.len(),
            &words,
        ))
    }
}
