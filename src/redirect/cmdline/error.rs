//! Why a command cannot be carried: [`CmdlineError`], and the helpers that
//! build its variants from the command or the operand at fault.
//!
//! Messages carry no `rock -d:` prefix: the binary says `rock:` before
//! whatever it prints.

use std::ffi::{OsStr, OsString};

use super::Program;
use super::shell::ShellError;
use super::surroundings::GitError;

/// Why the command after `rock -d` cannot be carried.
#[derive(Debug, thiserror::Error)]
pub enum CmdlineError {
    /// Nothing followed `rock -d`.
    #[error(
        "no command given — write an ssh, scp, sftp, rsync or git command after -d, e.g. `rock -d ssh host`"
    )]
    Empty,
    /// The program is not one of OpenSSH's clients.
    #[error(
        "cannot carry `{program}` — only ssh, scp, sftp, rsync and git run over a rock link; write one of them after -d"
    )]
    UnsupportedProgram {
        /// The program as typed.
        program: String,
    },
    /// An option letter the program does not have.
    #[error("`{program}` has no option -{letter} — check the command against {program}(1)")]
    UnknownOption {
        /// ssh, scp or sftp.
        program: Program,
        /// The unknown letter.
        letter: char,
    },
    /// An option that takes a value ended the command.
    #[error("option -{letter} of `{program}` needs a value")]
    MissingValue {
        /// ssh, scp or sftp.
        program: Program,
        /// The option letter.
        letter: char,
    },
    /// An option that makes the program do something other than connect.
    #[error(
        "`{program} -{letter}` does not open a connection to a remote host — run it without rock -d"
    )]
    NotAConnection {
        /// ssh, scp or sftp.
        program: Program,
        /// The option letter.
        letter: char,
    },
    /// ssh's connection sharing (`-M`, `-S`), which would carry the
    /// session outside rock or outlive it.
    #[error(
        "`ssh -{letter}` shares one connection between ssh processes, which would \
         carry the session outside rock or outlive it — drop -{letter} (rock turns connection \
         sharing off for the sessions it carries)"
    )]
    ConnectionSharing {
        /// The option letter.
        letter: char,
    },
    /// No operand names a remote host.
    #[error("cannot find the destination host in `{command}` — {hint}")]
    NoDestination {
        /// The whole command, for the message.
        command: String,
        /// What to write instead.
        hint: &'static str,
    },
    /// A `scheme://` operand that OpenSSH would refuse.
    #[error(
        "`{operand}` is not a valid {scheme}:// address — write it as {scheme}://[user@]host[:port]{path}, with a numeric port"
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
    #[error("`{operand}` {why} — write the destination as [user@]host")]
    BadDestination {
        /// The operand as typed.
        operand: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A user or host name that is not text.
    #[error("the {what} in `{operand}` is not valid UTF-8 — user and host names must be text")]
    NotUtf8 {
        /// "user name" or "host name".
        what: &'static str,
        /// The operand, lossily decoded.
        operand: String,
    },
    /// A user name scp itself refuses.
    #[error(
        "scp refuses the user name `{user}` (quotes, spaces, `#` and non-ASCII are not allowed) — set it with -o User=… instead"
    )]
    BadUser {
        /// The user name.
        user: String,
    },
    /// An scp command that copies between two remote hosts.
    #[error(
        "`{command}` names two remote destinations, `{first}` and `{second}`, but rock -d needs exactly one remote host — copy in two steps through this machine"
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
        "`{command}` has {count} operands, but sftp takes a destination and at most one local directory"
    )]
    TooManyOperands {
        /// The whole command, for the message.
        command: String,
        /// How many operands there were.
        count: usize,
    },
    /// An rsync operand that names an rsync daemon, reached without ssh.
    #[error(
        "`{operand}` names an rsync daemon (rsync://… or host::module), which rsync reaches without ssh — rock -d carries rsync over ssh only: write [user@]host:path"
    )]
    Daemon {
        /// The operand as typed.
        operand: String,
    },
    /// A git repository that is not reached over ssh.
    #[error(
        "the repository `{url}` is not reached over ssh — rock -d carries git over ssh only: ssh://[user@]host[:port]/path or [user@]host:path"
    )]
    NotOverSsh {
        /// The URL, as git resolved it.
        url: String,
    },
    /// The remote-shell command of rsync or git cannot be carried.
    #[error("cannot use {what} `{command}`: {why}")]
    RemoteShell {
        /// Where it came from: rsync's -e, RSYNC_RSH, GIT_SSH_COMMAND, …
        what: String,
        /// The command as written.
        command: String,
        /// What is wrong with it.
        why: String,
    },
    /// The remote-shell command of rsync or git cannot be read.
    #[error("cannot use {what} `{command}`")]
    ShellSyntax {
        /// Where it came from: rsync's -e, RSYNC_RSH, GIT_SSH_COMMAND, …
        what: String,
        /// The command as written.
        command: String,
        /// What cannot be read.
        #[source]
        source: ShellError,
    },
    /// Asking git for the repository's URL failed.
    #[error("cannot find which repository `{command}` reaches: `{lookup}` failed")]
    GitLookup {
        /// The whole command, for the message.
        command: String,
        /// The git command that was asked.
        lookup: String,
        /// Why: git's own message, or why it could not run.
        #[source]
        source: GitError,
    },
    /// A command rock -d cannot carry, for the reason given.
    #[error("`{command}` {why}")]
    NotCarried {
        /// The whole command, for the message.
        command: String,
        /// Why, and what to do instead.
        why: String,
    },
}

/// The command as one line, for messages.
pub(super) fn show(argv: &[OsString]) -> String {
    argv.iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// No operand names a remote host; the hint depends on the program.
pub(super) fn no_destination(program: Program, argv: &[OsString]) -> CmdlineError {
    let hint = match program {
        Program::Ssh => "name the host to connect to, e.g. `ssh user@host`",
        Program::Scp => "name a remote file as host:path",
        Program::Sftp => "name the host to connect to, e.g. `sftp user@host`",
        Program::Rsync => "name a remote file or directory as [user@]host:path",
        Program::Git => "name the repository to clone, e.g. `git clone host:path/repo.git`",
    };
    CmdlineError::NoDestination {
        command: show(argv),
        hint,
    }
}

/// A `scheme://` operand OpenSSH would refuse.
pub(super) fn bad_uri(operand: &OsStr, scheme: Program) -> CmdlineError {
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

/// A destination operand that names no usable host or user.
pub(super) fn bad_destination(operand: &OsStr, why: &'static str) -> CmdlineError {
    CmdlineError::BadDestination {
        operand: operand.to_string_lossy().into_owned(),
        why,
    }
}
