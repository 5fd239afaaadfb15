//! The expansion ssh applies to paths and commands when it connects:
//! `~` and `~user` from the password database, the client's `%` tokens
//! and, where ssh allows them, `${VAR}` from the environment, with the
//! same errors as OpenSSH's `misc.c`.

use super::local::{LocalContext, PasswdKey, passwd_entry};

/// A `~`, `%` or `${}` that OpenSSH would refuse to expand too (its
/// messages, in rock's words).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// `${` without its `}`.
    #[error("`{0}` misses its closing `}}`")]
    Unclosed(String),
    /// `${}`.
    #[error("`${{}}` names no environment variable")]
    NoName,
    /// `${NAME}` of an unset variable.
    #[error("environment variable ${{{0}}} has no value")]
    Unset(String),
    /// A `%` at the very end.
    #[error("it ends in a lone `%`")]
    LonePercent,
    /// `%C` where rock has no connection hash to put.
    #[error("%C cannot be computed")]
    NoConnectionHash,
    /// A `%x` this setting does not take.
    #[error("unknown token %{0}")]
    UnknownToken(char),
    /// `~user` of a user the password database does not have.
    #[error("no such user {0}")]
    NoSuchUser(String),
}

/// The values of the client's `%` tokens for one destination.
pub(super) struct Tokens<'a> {
    pub(super) local: &'a LocalContext,
    pub(super) alias: &'a str,
    pub(super) hostname: &'a str,
    pub(super) port: u16,
    pub(super) user: &'a str,
    pub(super) key_alias: &'a str,
    pub(super) jump_host: &'a str,
    pub(super) conn_hash: Option<&'a str>,
}

impl Tokens<'_> {
    /// ssh's expansion of IdentityFile and friends: `~` first, then `%x`
    /// tokens and, with `dollar`, `${VAR}`.
    pub(super) fn expand(&self, raw: &str, dollar: bool) -> Result<String, ExpandError> {
        let tilded = tilde_expand(raw, self.local)?;
        let home = self.local.home.to_string_lossy();
        let short = self.local.hostname.split('.').next().unwrap_or_default();
        let (port, uid) = (self.port.to_string(), self.local.uid.to_string());
        let mut table = vec![
            ('L', short),
            ('i', &uid),
            ('k', self.key_alias),
            ('l', &self.local.hostname),
            ('n', self.alias),
            ('p', &port),
            ('d', &home),
            ('h', self.hostname),
            ('r', self.user),
            ('u', &self.local.user),
            ('j', self.jump_host),
        ];
        if let Some(hash) = self.conn_hash {
            table.push(('C', hash));
        }
        percent_expand(&tilded, &table, dollar)
    }
}

/// misc.c `percent_expand` (and `percent_dollar_expand` with `dollar`):
/// `%%`, the given `%x` tokens and `${VAR}` from the environment. Unknown
/// tokens and unset variables are errors, as in ssh.
pub(super) fn percent_expand(
    s: &str,
    tokens: &[(char, &str)],
    dollar: bool,
) -> Result<String, ExpandError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if dollar && let Some(after) = rest.strip_prefix("${") {
            let end = after
                .find('}')
                .ok_or_else(|| ExpandError::Unclosed(rest.to_owned()))?;
            let name = &after[..end];
            if name.is_empty() {
                return Err(ExpandError::NoName);
            }
            let value = std::env::var(name).map_err(|_| ExpandError::Unset(name.to_owned()))?;
            out.push_str(&value);
            rest = &after[end + 1..];
            continue;
        }
        rest = &rest[c.len_utf8()..];
        if c != '%' {
            out.push(c);
            continue;
        }
        let token = rest.chars().next().ok_or(ExpandError::LonePercent)?;
        rest = &rest[token.len_utf8()..];
        match tokens.iter().find(|(k, _)| *k == token) {
            _ if token == '%' => out.push('%'),
            Some((_, v)) => out.push_str(v),
            None if token == 'C' => return Err(ExpandError::NoConnectionHash),
            None => return Err(ExpandError::UnknownToken(token)),
        }
    }
    Ok(out)
}

/// misc.c `tilde_expand`: `~` and `~/path` use the password database's home
/// of the real uid, `~user/path` that user's.
pub(super) fn tilde_expand(s: &str, local: &LocalContext) -> Result<String, ExpandError> {
    let Some(rest) = s.strip_prefix('~') else {
        return Ok(s.to_string());
    };
    let (user, path) = match rest.split_once('/') {
        Some((user, path)) => (user, path.trim_start_matches('/')),
        None => (rest, ""),
    };
    let home = if user.is_empty() {
        local.home.clone()
    } else {
        passwd_entry(PasswdKey::Name(user))
            .map(|(_, home)| home)
            .ok_or_else(|| ExpandError::NoSuchUser(user.to_owned()))?
    };
    let home = home.to_string_lossy();
    let sep = if home.ends_with('/') { "" } else { "/" };
    Ok(format!("{home}{sep}{path}"))
}

/// `%j`: the host of the last ProxyJump hop (the one ssh connects through).
pub(super) fn last_jump_host(jump: &str) -> &str {
    let hop = jump.rsplit(',').next().unwrap_or(jump);
    let hop = hop.strip_prefix("ssh://").unwrap_or(hop);
    let hop = hop.rsplit_once('@').map_or(hop, |(_, h)| h);
    match hop.strip_prefix('[') {
        Some(inner) => inner.split(']').next().unwrap_or(inner),
        None => hop.split([':', '/']).next().unwrap_or(hop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::resolve::local::me;

    #[test]
    fn percent_and_dollar_expansion() {
        let t = [('h', "host"), ('p', "22")];
        assert_eq!(
            percent_expand("%h:%p %%h", &t, false).unwrap(),
            "host:22 %h"
        );
        assert_eq!(percent_expand("${x}", &t, false).unwrap(), "${x}");
        assert_eq!(percent_expand("ünï%h", &t, false).unwrap(), "ünïhost");
        let why = |s: &str| percent_expand(s, &t, false).unwrap_err().to_string();
        assert!(why("%z").contains("unknown token %z"));
        assert!(why("a%").contains("lone"));
        let path = std::env::var("PATH").unwrap();
        assert_eq!(
            percent_expand("${PATH}/x", &t, true).unwrap(),
            format!("{path}/x")
        );
        let e = percent_expand("${ROCK_TEST_SURELY_UNSET_3141}", &t, true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("${ROCK_TEST_SURELY_UNSET_3141} has no value"),
            "{e}"
        );
        assert!(percent_expand("${}", &t, true).is_err());
        assert!(percent_expand("${PATH", &t, true).is_err());
    }

    #[test]
    fn tilde_expansion() {
        let me = me();
        assert_eq!(tilde_expand("~", &me).unwrap(), "/home/me/");
        assert_eq!(tilde_expand("~/x", &me).unwrap(), "/home/me/x");
        assert_eq!(tilde_expand("~//x", &me).unwrap(), "/home/me/x");
        assert_eq!(tilde_expand("/a/~", &me).unwrap(), "/a/~");
        let root_home = passwd_entry(PasswdKey::Uid(0)).unwrap().1;
        let root_home = root_home
            .to_string_lossy()
            .trim_end_matches('/')
            .to_string();
        assert_eq!(
            tilde_expand("~root/k", &me).unwrap(),
            format!("{root_home}/k")
        );
        assert!(
            tilde_expand("~no-such-user-rock/k", &me)
                .unwrap_err()
                .to_string()
                .contains("no such user")
        );
    }

    #[test]
    fn jump_host_of_the_last_hop() {
        assert_eq!(last_jump_host("u@j1:2222,j2"), "j2");
        assert_eq!(last_jump_host("u@[::1]:22"), "::1");
        assert_eq!(last_jump_host("ssh://u@j:22"), "j");
    }
}
