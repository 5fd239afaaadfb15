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

pub(super) fn err(words: &[&str]) -> String {
    match parse(words) {
        Ok(p) => panic!("{words:?} parsed as {p:?}"),
        Err(e) => e.to_string(),
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
