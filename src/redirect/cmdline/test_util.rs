//! Helpers shared by the unit tests of the command-line parser.

use std::ffi::OsString;

use super::{CmdlineError, Destination, OpensshVersion, ParsedCommand};

pub(super) const V9_2: OpensshVersion = OpensshVersion { major: 9, minor: 2 };

pub(super) const V9_6: OpensshVersion = OpensshVersion { major: 9, minor: 6 };

pub(super) fn args(words: &[&str]) -> Vec<OsString> {
    words.iter().map(OsString::from).collect()
}

pub(super) fn parse(words: &[&str]) -> Result<ParsedCommand, CmdlineError> {
    ParsedCommand::parse(&args(words), V9_2)
}

pub(super) fn ok(words: &[&str]) -> ParsedCommand {
    match parse(words) {
        Ok(p) => p,
        Err(e) => panic!("{words:?}: {e}"),
    }
}

/// The error's message with its causes, as rock shows it.
pub(super) fn err(words: &[&str]) -> String {
    match parse(words) {
        Ok(p) => panic!("{words:?} parsed as {p:?}"),
        Err(e) => crate::chain::chain(&e),
    }
}

pub(super) fn dest(user: Option<&str>, host: &str, port: Option<u16>) -> Destination {
    Destination {
        user: user.map(String::from),
        host: host.into(),
        port,
    }
}

pub(super) fn strings(v: &[OsString]) -> Vec<String> {
    v.iter().map(|s| s.to_string_lossy().into_owned()).collect()
}

/// Surroundings for parser tests: variables, and git's answers keyed by
/// its arguments joined with spaces (a missing key is a git error).
#[derive(Default)]
pub(super) struct FakeEnv {
    pub(super) vars: std::collections::HashMap<String, String>,
    pub(super) git: std::collections::HashMap<String, Result<String, String>>,
}

impl FakeEnv {
    pub(super) fn with_var(name: &str, value: &str) -> FakeEnv {
        let mut env = FakeEnv::default();
        env.vars.insert(name.into(), value.into());
        env
    }
}

impl super::Surroundings for FakeEnv {
    fn var(&self, name: &str) -> Option<OsString> {
        self.vars.get(name).map(OsString::from)
    }

    fn git(
        &self,
        _program: &std::ffi::OsStr,
        args: &[OsString],
    ) -> Result<String, super::surroundings::GitError> {
        let key = strings(args).join(" ");
        self.git
            .get(&key)
            .cloned()
            .unwrap_or_else(|| Err(format!("fatal: no answer for `git {key}`")))
            .map_err(super::surroundings::GitError::Failed)
    }
}

pub(super) fn ok_in(words: &[&str], env: &FakeEnv) -> ParsedCommand {
    match ParsedCommand::parse_in(&args(words), V9_2, env) {
        Ok(p) => p,
        Err(e) => panic!("{words:?}: {e}"),
    }
}

/// The error's message with its causes, as rock shows it.
pub(super) fn err_in(words: &[&str], env: &FakeEnv) -> String {
    match ParsedCommand::parse_in(&args(words), V9_2, env) {
        Ok(p) => panic!("{words:?} parsed as {p:?}"),
        Err(e) => crate::chain::chain(&e),
    }
}
