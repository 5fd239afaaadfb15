//! What an rsync or git command means beyond its argv: environment
//! variables (`RSYNC_RSH`, `GIT_SSH_COMMAND`, `GIT_SSH`, `HOME`) and, for
//! git, the repository's configuration (`core.sshCommand`, the remote's
//! URL). [`Surroundings`] is how the parser asks; [`System`] answers from
//! this process's environment and by running git. This is the only file
//! of the command-line parser that does I/O.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Stdio};

/// Why git gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// It could not be started.
    #[error("cannot run {program}")]
    Spawn {
        /// The git program.
        program: String,
        /// What exec said.
        #[source]
        source: std::io::Error,
    },
    /// It ran and failed: what it said on standard error.
    #[error("{}", said(.0))]
    Failed(String),
}

fn said(stderr: &str) -> &str {
    if stderr.is_empty() {
        "it failed without a message"
    } else {
        stderr
    }
}

/// Where the parser looks beyond the command line.
pub trait Surroundings {
    /// An environment variable of the command, if set.
    fn var(&self, name: &str) -> Option<OsString>;
    /// Runs `program args…` (git, with the user's global options first)
    /// without a terminal; its trimmed standard output if it succeeded,
    /// else what it said on standard error.
    fn git(&self, program: &OsStr, args: &[OsString]) -> Result<String, GitError>;
}

/// This process's environment, and the real git.
#[derive(Debug, Clone, Copy, Default)]
pub struct System;

impl Surroundings for System {
    fn var(&self, name: &str) -> Option<OsString> {
        std::env::var_os(name)
    }

    fn git(&self, program: &OsStr, args: &[OsString]) -> Result<String, GitError> {
        let out = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .map_err(|source| GitError::Spawn {
                program: program.to_string_lossy().into_owned(),
                source,
            })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(GitError::Failed(
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ))
        }
    }
}

/// Adapts [`Surroundings`] to the shell reader's variables.
pub(super) struct VarsOf<'a>(pub(super) &'a dyn Surroundings);

impl super::shell::Vars for VarsOf<'_> {
    fn var(&self, name: &str) -> Option<Vec<u8>> {
        self.0.var(name).map(|v| v.as_bytes().to_vec())
    }
}
