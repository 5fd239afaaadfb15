//! OpenSSH's operand splitters from `misc.c`, as they behave: `parse_uri`,
//! `hpdelim2`, `cleanhostname`, `valid_domain`, `urldecode`, `colon`,
//! `parse_user_host_path` and `parse_user_host_port`. Bytes in, bytes out;
//! turning them into text is the caller's business.

/// What OpenSSH's `parse_uri` makes of an operand.
#[derive(Debug, PartialEq)]
pub(super) enum UriParse {
    NotUri,
    Invalid,
    Uri {
        user: Option<Vec<u8>>,
        host: Vec<u8>,
        port: Option<u16>,
        path: Option<Vec<u8>>,
    },
}

/// `scheme://[user[;params]@]host[:port][/path]`, as misc.c parses it:
/// user and path URL-decoded, host checked like a domain name (so no IPv6
/// literals) and stripped of one trailing dot. Ports must be numeric here;
/// OpenSSH also looks up service names.
pub(super) fn parse_uri(prefix: &[u8], s: &[u8]) -> UriParse {
    let Some(mut rest) = s.strip_prefix(prefix) else {
        return UriParse::NotUri;
    };
    let mut user = None;
    if let Some(at) = rest.iter().position(|&b| b == b'@') {
        let info = &rest[..at];
        let name = info.split(|&b| b == b';').next().unwrap_or(info);
        match url_decode(name) {
            Some(name) if !name.is_empty() => user = Some(name),
            _ => return UriParse::Invalid,
        }
        rest = &rest[at + 1..];
    }
    let Some(HostPart {
        host,
        rest: tail,
        delim,
    }) = hpdelim(rest)
    else {
        return UriParse::Invalid;
    };
    let mut host = clean_hostname(host).to_vec();
    if !valid_domain(&host) {
        return UriParse::Invalid;
    }
    if host.last() == Some(&b'.') {
        host.pop();
    }
    let (mut port, mut path) = (None, None);
    let mut tail = tail.unwrap_or_default();
    if delim == Some(b':') && !tail.is_empty() {
        let end = tail.iter().position(|&b| b == b'/').unwrap_or(tail.len());
        match numeric_port(&tail[..end]) {
            Some(p) => port = Some(p),
            None => return UriParse::Invalid,
        }
        tail = tail.get(end + 1..).unwrap_or_default();
    }
    if !tail.is_empty() {
        match url_decode(tail) {
            Some(p) => path = Some(p),
            None => return UriParse::Invalid,
        }
    }
    UriParse::Uri {
        user,
        host,
        port,
        path,
    }
}

/// A host split from what follows it, by misc.c `hpdelim2`.
struct HostPart<'a> {
    /// The host, brackets included.
    host: &'a [u8],
    /// What follows the delimiter, if there was one.
    rest: Option<&'a [u8]>,
    /// `:` or `/`.
    delim: Option<u8>,
}

/// misc.c `hpdelim2`: splits `host` (bracketed or not) from what follows a
/// `:` or `/`.
fn hpdelim(s: &[u8]) -> Option<HostPart<'_>> {
    let end = if s.first() == Some(&b'[') {
        s.iter().position(|&b| b == b']')? + 1
    } else {
        s.iter()
            .position(|&b| b == b':' || b == b'/')
            .unwrap_or(s.len())
    };
    match s.get(end) {
        None => Some(HostPart {
            host: s,
            rest: None,
            delim: None,
        }),
        Some(&d @ (b':' | b'/')) => Some(HostPart {
            host: &s[..end],
            rest: Some(&s[end + 1..]),
            delim: Some(d),
        }),
        Some(_) => None,
    }
}

/// misc.c `cleanhostname`: `[addr]` loses its brackets.
pub(super) fn clean_hostname(host: &[u8]) -> &[u8] {
    match host {
        [b'[', inner @ .., b']'] => inner,
        _ => host,
    }
}

/// misc.c `valid_domain`: letters, digits, `.`, `-`, `_`, starting with a
/// letter or digit, no empty labels.
fn valid_domain(host: &[u8]) -> bool {
    host.first().is_some_and(u8::is_ascii_alphanumeric)
        && host
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        && !host.windows(2).any(|w| w == b"..")
}

/// misc.c `urldecode`: `%XX` and `+` for space. `%00` is refused.
fn url_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(s.get(i + 1..i + 3)?).ok()?;
                let byte = u8::from_str_radix(hex, 16).ok().filter(|&c| c != 0)?;
                out.push(byte);
                i += 2;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

/// A port in 1..=65535, digits only.
pub(super) fn numeric_port(s: &[u8]) -> Option<u16> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok().filter(|&p| p > 0)
}

/// misc.c `colon`: the `:` that makes an scp operand remote, if any. A
/// leading `:` or a `/` before the colon means a local path; brackets
/// protect an IPv6 address.
fn colon(s: &[u8]) -> Option<usize> {
    if s.first() == Some(&b':') {
        return None;
    }
    let mut bracketed = s.first() == Some(&b'[');
    for (i, &b) in s.iter().enumerate() {
        let next = s.get(i + 1).copied();
        if b == b'@' && next == Some(b'[') {
            bracketed = true;
        }
        if b == b']' && next == Some(b':') && bracketed {
            return Some(i + 1);
        }
        if b == b':' && !bracketed {
            return Some(i);
        }
        if b == b'/' {
            return None;
        }
    }
    None
}

/// misc.c `parse_user_host_path`: `[user@]host:[path]`, user split at the
/// last `@`. Returns the user and the (unbracketed) host.
pub(super) fn user_host_of_path(s: &[u8]) -> Option<(Option<Vec<u8>>, Vec<u8>)> {
    let target = &s[..colon(s)?];
    Some(match target.iter().rposition(|&b| b == b'@') {
        Some(at) => {
            let user = Some(&target[..at])
                .filter(|u| !u.is_empty())
                .map(<[u8]>::to_vec);
            (user, clean_hostname(&target[at + 1..]).to_vec())
        }
        None => (None, clean_hostname(target).to_vec()),
    })
}

/// misc.c `parse_user_host_port`: `[user@]host[:port]` (sftp ignores the
/// port, but a bad one makes the whole operand a plain host name).
pub(super) fn user_host_port(s: &[u8]) -> Option<(Option<Vec<u8>>, Vec<u8>)> {
    let (user, rest) = match s.iter().rposition(|&b| b == b'@') {
        Some(0) => return None,
        Some(at) => (Some(s[..at].to_vec()), &s[at + 1..]),
        None => (None, s),
    };
    let HostPart {
        host, rest: tail, ..
    } = hpdelim(rest)?;
    if host.is_empty() {
        return None;
    }
    if let Some(port) = tail.filter(|t| !t.is_empty()) {
        numeric_port(port)?;
    }
    Some((user, clean_hostname(host).to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colon_rules() {
        assert_eq!(colon(b"h:p"), Some(1));
        assert_eq!(colon(b":p"), None);
        assert_eq!(colon(b"./a:b"), None);
        assert_eq!(colon(b"[::1]:p"), Some(5));
        assert_eq!(colon(b"u@[::1]:p"), Some(7));
        assert_eq!(colon(b"[::1]"), None);
    }
}
