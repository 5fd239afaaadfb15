//! Reading the dump `ssh -G` prints: lowercase `key value` lines, looked
//! up by keyword and read as numbers, yes/no flags, seconds, path lists and
//! the enumerated settings. A value rock cannot read is an error that
//! quotes the line.

use std::path::PathBuf;
use std::time::Duration;

use super::ResolveError;
use super::expand::{ExpandError, tilde_expand};
use super::local::LocalContext;
use super::resolved::{AddressFamily, IdentityAgent, StrictHostKeyChecking};

/// The `key value` lines of a dump.
pub(super) struct Dump<'a> {
    host: &'a str,
    pub(super) entries: Vec<(String, String)>,
}

impl<'a> Dump<'a> {
    /// Splits `text` into lowercase keys and their values.
    pub(super) fn parse(host: &'a str, text: &str) -> Self {
        let entries = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let (k, v) = l.split_once(' ').unwrap_or((l, ""));
                (k.to_ascii_lowercase(), v.to_string())
            })
            .collect();
        Dump { host, entries }
    }

    pub(super) fn all<'s, 'k>(
        &'s self,
        key: &'k str,
    ) -> impl Iterator<Item = &'s str> + use<'s, 'k, 'a> {
        self.entries
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn one(&self, key: &str) -> Option<&str> {
        self.all(key).next()
    }

    fn bad(&self, key: &str, value: &str, why: &'static str) -> ResolveError {
        ResolveError::Output {
            host: self.host.into(),
            line: format!("{key} {value}"),
            why,
        }
    }

    pub(super) fn expand_error(
        &self,
        key: &'static str,
        value: &str,
        source: ExpandError,
    ) -> ResolveError {
        ResolveError::Expand {
            host: self.host.into(),
            key,
            value: value.into(),
            source,
        }
    }

    pub(super) fn required(&self, key: &str) -> Result<&str, ResolveError> {
        self.one(key)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| self.bad(key, "", "missing"))
    }

    pub(super) fn number<T: std::str::FromStr>(
        &self,
        key: &str,
        default: T,
    ) -> Result<T, ResolveError> {
        match self.one(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| self.bad(key, v, "not a number")),
        }
    }

    /// yes/true and no/false, as ssh prints booleans.
    pub(super) fn flag(&self, key: &str, default: bool) -> Result<bool, ResolveError> {
        match self.one(key) {
            None => Ok(default),
            Some("yes" | "true") => Ok(true),
            Some("no" | "false") => Ok(false),
            Some(v) => Err(self.bad(key, v, "not yes or no")),
        }
    }

    /// Seconds; `none` and 0 mean no timer.
    pub(super) fn seconds(&self, key: &str) -> Result<Option<Duration>, ResolveError> {
        match self.one(key) {
            None | Some("none") => Ok(None),
            Some(v) => match v.parse::<u64>() {
                Ok(0) => Ok(None),
                Ok(s) => Ok(Some(Duration::from_secs(s))),
                Err(_) => Err(self.bad(key, v, "not a number of seconds")),
            },
        }
    }

    pub(super) fn strict_host_key_checking(&self) -> Result<StrictHostKeyChecking, ResolveError> {
        let key = "stricthostkeychecking";
        match self.one(key) {
            None | Some("ask") => Ok(StrictHostKeyChecking::Ask),
            Some("yes" | "true") => Ok(StrictHostKeyChecking::Yes),
            Some("no" | "false" | "off") => Ok(StrictHostKeyChecking::No),
            Some("accept-new") => Ok(StrictHostKeyChecking::AcceptNew),
            Some(v) => Err(self.bad(key, v, "unknown mode")),
        }
    }

    pub(super) fn pubkey_authentication(&self) -> Result<bool, ResolveError> {
        match self.one("pubkeyauthentication") {
            Some("unbound" | "host-bound") => Ok(true),
            _ => self.flag("pubkeyauthentication", true),
        }
    }

    pub(super) fn address_family(&self) -> Result<AddressFamily, ResolveError> {
        match self.one("addressfamily") {
            None | Some("any") => Ok(AddressFamily::Any),
            Some("inet") => Ok(AddressFamily::Inet),
            Some("inet6") => Ok(AddressFamily::Inet6),
            Some(v) => Err(self.bad("addressfamily", v, "unknown address family")),
        }
    }

    /// ssh.c: `none`, `SSH_AUTH_SOCK`, `$NAME` or a path.
    pub(super) fn identity_agent(
        &self,
        local: &LocalContext,
    ) -> Result<IdentityAgent, ResolveError> {
        Ok(match self.one("identityagent") {
            None | Some("SSH_AUTH_SOCK") => IdentityAgent::Default,
            Some("none") => IdentityAgent::None,
            Some(v) if v.starts_with('$') && !v.starts_with("${") => {
                IdentityAgent::Env(v[1..].to_string())
            }
            Some(v) => IdentityAgent::Path(self.already_expanded("identityagent", v, local)?),
        })
    }

    /// A space-separated list of paths; a lone `none` means no files.
    pub(super) fn path_list(
        &self,
        key: &'static str,
        local: &LocalContext,
    ) -> Result<Vec<PathBuf>, ResolveError> {
        let Some(value) = self.one(key) else {
            return Ok(Vec::new());
        };
        if value == "none" {
            return Ok(Vec::new());
        }
        value
            .split_whitespace()
            .map(|p| self.already_expanded(key, p, local))
            .collect()
    }

    /// A value ssh -G expands itself (8.4+); older releases leave the `~`.
    fn already_expanded(
        &self,
        key: &'static str,
        value: &str,
        local: &LocalContext,
    ) -> Result<PathBuf, ResolveError> {
        tilde_expand(value, local)
            .map(PathBuf::from)
            .map_err(|why| self.expand_error(key, value, why))
    }
}

/// A comma-separated list, empty items dropped.
pub(super) fn comma_list(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::ssh::resolve::Resolved;
    use crate::ssh::resolve::local::me;

    #[test]
    fn unreadable_dumps_are_errors() {
        let e = Resolved::from_dump("h", "hostname h\n", &me(), None).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        let e = Resolved::from_dump("h", "user u\nhostname h\nport x\n", &me(), None).unwrap_err();
        assert!(e.to_string().contains("`port x`"), "{e}");
        let e = Resolved::from_dump("h", "user u\nhostname h\nbatchmode maybe\n", &me(), None)
            .unwrap_err();
        assert!(e.to_string().contains("not yes or no"), "{e}");
    }
}
