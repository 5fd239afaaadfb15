//! Host-key verification against OpenSSH `known_hosts` files.
//!
//! Owns the decision whether a server's host key is known, unknown,
//! changed or revoked for a host, made the way OpenSSH decides it with
//! `StrictHostKeyChecking=yes`: host patterns (comma lists, `*`/`?`
//! wildcards, `!` negation, case-insensitive), `[host]:port` names for
//! ports other than 22, `HostKeyAlias`, hashed `|1|salt|hash` entries,
//! `@revoked` and `@cert-authority` markers, comments.
//!
//! Invariants:
//! * Nothing here writes a file or asks a question: recording a new key is
//!   left to the user's own `ssh`, which shows the fingerprint and asks.
//! * A line that does not parse is skipped with a debug log, never fatal;
//!   a missing or unreadable file counts as empty.
//! * A key listed under `@revoked` for the host is refused whatever else
//!   matches.
//! * `@cert-authority` lines are skipped: the bootstrap offers no
//!   certificate host-key algorithms, so a CA can never vouch for a key.
//! * A key is "changed" only when the host has an entry of the same key
//!   type with different key material; entries of other types alone leave
//!   the key "unknown" (as in OpenSSH).

use std::path::{Path, PathBuf};

use data_encoding::BASE64;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::{Algorithm, HashAlg, PublicKey};
use sha1::Sha1;

/// What the known_hosts files say about a host's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyStatus {
    /// An entry for the host holds exactly this key.
    Known {
        /// The file holding the entry.
        file: PathBuf,
        /// Its line number, from 1.
        line: usize,
    },
    /// No entry of this key's type for the host.
    Unknown {
        /// Key types recorded for the host under other types, if any
        /// (`ssh-rsa`, `ecdsa-sha2-nistp256`, ...).
        other_types: Vec<String>,
    },
    /// The host has an entry of the same type with a different key.
    Changed {
        /// The file holding the conflicting entry.
        file: PathBuf,
        /// Its line number, from 1.
        line: usize,
    },
    /// The key is listed under `@revoked`.
    Revoked {
        /// The file holding the `@revoked` line.
        file: PathBuf,
        /// Its line number, from 1.
        line: usize,
    },
}

/// The name a host's keys are recorded under: the `HostKeyAlias` if set,
/// else the host name, in brackets with the port when it is not 22.
pub fn lookup_name(hostname: &str, port: u16, host_key_alias: Option<&str>) -> String {
    match host_key_alias {
        Some(alias) => alias.to_owned(),
        None if port == 22 => hostname.to_ascii_lowercase(),
        None => format!("[{}]:{port}", hostname.to_ascii_lowercase()),
    }
}

/// The key's SHA-256 fingerprint as OpenSSH prints it (`SHA256:...`).
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Checks `key` for the host recorded as `name` (see [`lookup_name`])
/// against `files`, in order (the user's files, then the global ones).
pub fn check_host_key(files: &[PathBuf], name: &str, key: &PublicKey) -> HostKeyStatus {
    let entries = matching_entries(files, name);
    if let Some(revoked) = entries
        .iter()
        .find(|e| e.marker == Marker::Revoked && same_key(&e.key, key))
    {
        return HostKeyStatus::Revoked {
            file: revoked.file.clone(),
            line: revoked.line,
        };
    }
    let plain = || entries.iter().filter(|e| e.marker == Marker::None);
    if let Some(known) = plain().find(|e| same_key(&e.key, key)) {
        return HostKeyStatus::Known {
            file: known.file.clone(),
            line: known.line,
        };
    }
    if let Some(conflict) = plain().find(|e| e.key.algorithm() == key.algorithm()) {
        return HostKeyStatus::Changed {
            file: conflict.file.clone(),
            line: conflict.line,
        };
    }
    let mut other_types: Vec<String> = plain()
        .map(|e| e.key.algorithm().as_str().to_owned())
        .collect();
    other_types.dedup();
    HostKeyStatus::Unknown { other_types }
}

/// Key algorithms recorded (and not revoked) for the host, in file order,
/// without duplicates. The bootstrap offers these first, as OpenSSH does,
/// so that a server with several host keys shows the one already known.
pub fn known_key_algorithms(files: &[PathBuf], name: &str) -> Vec<Algorithm> {
    let mut algorithms: Vec<Algorithm> = Vec::new();
    for entry in matching_entries(files, name) {
        let algorithm = entry.key.algorithm();
        if entry.marker == Marker::None && !algorithms.contains(&algorithm) {
            algorithms.push(algorithm);
        }
    }
    algorithms
}

fn same_key(a: &PublicKey, b: &PublicKey) -> bool {
    a.key_data() == b.key_data()
}

/// The marker in front of a line, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

/// One parsed line whose host field matched the name.
#[derive(Debug)]
struct Entry {
    marker: Marker,
    key: PublicKey,
    file: PathBuf,
    line: usize,
}

/// A parsed line, host field not yet matched.
struct Line<'a> {
    marker: Marker,
    hosts: &'a str,
    key: PublicKey,
}

fn matching_entries(files: &[PathBuf], name: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for file in files {
        read_matching(file, name, &mut out);
    }
    out
}

fn read_matching(file: &Path, name: &str, out: &mut Vec<Entry>) {
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            tracing::debug!("known_hosts {}: {e}; skipped", file.display());
            return;
        }
    };
    let text = String::from_utf8_lossy(&bytes);
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        match parse_line(raw) {
            Ok(Some(parsed)) if parsed.marker != Marker::CertAuthority => {
                if hosts_match(parsed.hosts, name) {
                    out.push(Entry {
                        marker: parsed.marker,
                        key: parsed.key,
                        file: file.to_path_buf(),
                        line,
                    });
                }
            }
            Ok(_) => {}
            Err(why) => tracing::debug!("{}:{line}: {why}; line ignored", file.display()),
        }
    }
}

/// Parses one line: `[@marker] hosts keytype base64 [comment]`. Blank
/// lines and comments give `Ok(None)`.
fn parse_line(raw: &str) -> Result<Option<Line<'_>>, &'static str> {
    let text = raw.trim();
    if text.is_empty() || text.starts_with('#') {
        return Ok(None);
    }
    let mut fields = text.split_ascii_whitespace();
    let mut first = fields.next().ok_or("empty line")?;
    let marker = match first {
        "@revoked" => Marker::Revoked,
        "@cert-authority" => Marker::CertAuthority,
        m if m.starts_with('@') => return Err("unknown marker"),
        _ => Marker::None,
    };
    if marker != Marker::None {
        first = fields.next().ok_or("no host field after the marker")?;
    }
    let key_type = fields.next().ok_or("no key type")?;
    let key_b64 = fields.next().ok_or("no key")?;
    let key = PublicKey::from_openssh(&format!("{key_type} {key_b64}"))
        .map_err(|_| "key does not parse")?;
    Ok(Some(Line {
        marker,
        hosts: first,
        key,
    }))
}

/// Whether a line's host field names `name`: a hashed entry, or a
/// comma-separated list of patterns.
fn hosts_match(field: &str, name: &str) -> bool {
    match field.strip_prefix("|1|") {
        Some(hashed) => hashed_match(hashed, name),
        None => pattern_list_match(field, name),
    }
}

/// `salt|hash`, both base64: HMAC-SHA1 of the name keyed with the salt.
fn hashed_match(hashed: &str, name: &str) -> bool {
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (
        BASE64.decode(salt.as_bytes()),
        BASE64.decode(hash.as_bytes()),
    ) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// OpenSSH's pattern-list rule: a matching negated pattern rejects the
/// name outright; otherwise any matching positive pattern accepts it.
fn pattern_list_match(list: &str, name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let mut accepted = false;
    for pattern in list.split(',') {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        if wildcard_match(&pattern.to_ascii_lowercase(), &name) {
            if negated {
                return false;
            }
            accepted = true;
        }
    }
    accepted
}

/// `*` matches any run of characters, `?` exactly one.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it is trying to cover.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    // Produced by `ssh-keygen -t ed25519|ecdsa|rsa`.
    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICmkDodHX2R77fn4vvtPsd7IZDzpbB02kjVrSgGNnje0";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO8xbMSSHC+JvtIqQomcqyUrdNF7x8iL8gNHKva2+Ev4";
    const KEY_C: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBMjx78PRwy8p0pbLnUJs3Eo2+8N557Z6aoqnhg/AWFHZneToQVrJb0aYHtCjKK7pqbBhTjEVSM9W2DFswuaYGNM=";
    const KEY_D: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCr7ojvUxN3dzNQ2/VcGxJMeVSiehnchPviaBmVZvHf7G61HPQTMPBmkGJyjtw/rDbbYg/kvdqT7IkL2bQj2zrXSbzC+g7J58MjGbxiw6oIeirUd1/rVEHDgqsuFxpDc7bmgKirJu3KVf72lcB+Fii7L+SCERsuzU6noSo8Xc7iIQ==";
    const FP_A: &str = "SHA256:d9m3aIgddUny5McPKbAXeivsjtADjxwPqI6QVB7Hi5E";

    // `ssh-keygen -H` of `example.com KEY_A`, `[127.0.0.1]:2222 KEY_B` and
    // `hashed.example KEY_C`.
    const HASHED: &str = "\
|1|h1KiAFZtN9XoW86qH4t2QtHQAIU=|IjfadwrI726K63XI7wGH1HhmODc= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICmkDodHX2R77fn4vvtPsd7IZDzpbB02kjVrSgGNnje0
|1|C0m12fje8A6qf2Juwuj64PZRTTE=|v3H6Tuf8jJ5wGn8Krigml7wqM+I= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO8xbMSSHC+JvtIqQomcqyUrdNF7x8iL8gNHKva2+Ev4
|1|yYATLBnVHkM8P2yOh5ri9Fb7V7Q=|4U7210SYQiuGDFYGkNetd7qDiWU= ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBMjx78PRwy8p0pbLnUJs3Eo2+8N557Z6aoqnhg/AWFHZneToQVrJb0aYHtCjKK7pqbBhTjEVSM9W2DFswuaYGNM=
";

    fn key(line: &str) -> PublicKey {
        PublicKey::from_openssh(line).expect("test key parses")
    }

    /// Writes `text` to a fresh file and returns it with its directory.
    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, text).expect("write known_hosts");
        (dir, path)
    }

    fn check(text: &str, name: &str, k: &str) -> HostKeyStatus {
        let (_dir, path) = file(text);
        match check_host_key(std::slice::from_ref(&path), name, &key(k)) {
            HostKeyStatus::Known { line, .. } => HostKeyStatus::Known {
                file: PathBuf::new(),
                line,
            },
            HostKeyStatus::Changed { line, .. } => HostKeyStatus::Changed {
                file: PathBuf::new(),
                line,
            },
            HostKeyStatus::Revoked { line, .. } => HostKeyStatus::Revoked {
                file: PathBuf::new(),
                line,
            },
            unknown => unknown,
        }
    }

    fn known(line: usize) -> HostKeyStatus {
        HostKeyStatus::Known {
            file: PathBuf::new(),
            line,
        }
    }

    fn unknown() -> HostKeyStatus {
        HostKeyStatus::Unknown {
            other_types: vec![],
        }
    }

    #[test]
    fn lookup_name_brackets_non_default_ports_and_prefers_the_alias() {
        assert_eq!(lookup_name("Example.COM", 22, None), "example.com");
        assert_eq!(lookup_name("127.0.0.1", 2222, None), "[127.0.0.1]:2222");
        assert_eq!(lookup_name("::1", 2222, None), "[::1]:2222");
        assert_eq!(lookup_name("10.0.0.1", 2222, Some("box")), "box");
    }

    #[test]
    fn fingerprint_matches_ssh_keygen() {
        assert_eq!(fingerprint(&key(KEY_A)), FP_A);
    }

    #[test]
    fn plain_entries_known_unknown_changed() {
        let text = format!("# comment\n\nexample.com {KEY_A} some comment\n");
        assert_eq!(check(&text, "example.com", KEY_A), known(3));
        assert_eq!(check(&text, "other.com", KEY_A), unknown());
        assert_eq!(
            check(&text, "example.com", KEY_B),
            HostKeyStatus::Changed {
                file: PathBuf::new(),
                line: 3
            }
        );
    }

    #[test]
    fn another_key_type_is_unknown_not_changed() {
        let text = format!("example.com {KEY_C}\n");
        assert_eq!(
            check(&text, "example.com", KEY_A),
            HostKeyStatus::Unknown {
                other_types: vec!["ecdsa-sha2-nistp256".into()]
            }
        );
    }

    #[test]
    fn any_matching_entry_wins_over_a_stale_one() {
        let text = format!("example.com {KEY_B}\nexample.com {KEY_A}\n");
        assert_eq!(check(&text, "example.com", KEY_A), known(2));
    }

    #[test]
    fn hashed_entries_from_ssh_keygen() {
        assert_eq!(check(HASHED, "example.com", KEY_A), known(1));
        assert_eq!(check(HASHED, "[127.0.0.1]:2222", KEY_B), known(2));
        assert_eq!(check(HASHED, "hashed.example", KEY_C), known(3));
        assert_eq!(check(HASHED, "127.0.0.1", KEY_B), unknown());
        assert!(matches!(
            check(HASHED, "[127.0.0.1]:2222", KEY_A),
            HostKeyStatus::Changed { line: 2, .. }
        ));
    }

    #[test]
    fn ports_are_part_of_the_name() {
        let text = format!("[127.0.0.1]:2222 {KEY_A}\n127.0.0.1 {KEY_B}\n");
        assert_eq!(check(&text, "[127.0.0.1]:2222", KEY_A), known(1));
        assert_eq!(check(&text, "127.0.0.1", KEY_B), known(2));
        assert!(matches!(
            check(&text, "[127.0.0.1]:2223", KEY_A),
            HostKeyStatus::Unknown { .. }
        ));
    }

    #[test]
    fn comma_lists_wildcards_negation_and_case() {
        let text = format!("alpha,*.example.com,!bad.example.com,host?? {KEY_A}\n");
        assert_eq!(check(&text, "alpha", KEY_A), known(1));
        assert_eq!(check(&text, "www.EXAMPLE.com", KEY_A), known(1));
        assert_eq!(check(&text, "host42", KEY_A), known(1));
        assert_eq!(check(&text, "host4", KEY_A), unknown());
        assert_eq!(check(&text, "bad.example.com", KEY_A), unknown());
        assert_eq!(check(&text, "example.com", KEY_A), unknown());
        let bracketed = format!("[*.lan]:* {KEY_A}\n");
        assert_eq!(check(&bracketed, "[box.lan]:2222", KEY_A), known(1));
    }

    #[test]
    fn revoked_refuses_even_a_recorded_key() {
        let text = format!("example.com {KEY_A}\n@revoked * {KEY_A}\n");
        assert_eq!(
            check(&text, "example.com", KEY_A),
            HostKeyStatus::Revoked {
                file: PathBuf::new(),
                line: 2
            }
        );
        assert!(matches!(
            check(&text, "example.com", KEY_B),
            HostKeyStatus::Changed { line: 1, .. }
        ));
    }

    #[test]
    fn cert_authority_lines_are_skipped() {
        let text = format!("@cert-authority *.example.com {KEY_A}\n");
        assert_eq!(check(&text, "www.example.com", KEY_A), unknown());
        assert_eq!(check(&text, "www.example.com", KEY_B), unknown());
    }

    #[test]
    fn bad_lines_are_ignored() {
        let text = format!(
            "garbage\nexample.com ssh-ed25519 !!notbase64!!\n@bogus example.com {KEY_B}\n\
             example.com\nexample.com {KEY_A}\n"
        );
        assert_eq!(check(&text, "example.com", KEY_A), known(5));
    }

    #[test]
    fn rsa_and_ecdsa_keys_are_compared_too() {
        let text = format!("example.com {KEY_D}\nexample.com {KEY_C}\n");
        assert_eq!(check(&text, "example.com", KEY_D), known(1));
        assert_eq!(check(&text, "example.com", KEY_C), known(2));
    }

    #[test]
    fn user_files_come_before_global_ones_and_missing_files_are_empty() {
        let (_d1, user) = file(&format!("example.com {KEY_A}\n"));
        let (_d2, global) = file(&format!("example.com {KEY_C}\n"));
        let missing = PathBuf::from("/nonexistent/known_hosts");
        let files = vec![missing, user.clone(), global.clone()];
        assert_eq!(
            check_host_key(&files, "example.com", &key(KEY_C)),
            HostKeyStatus::Known {
                file: global,
                line: 1
            }
        );
        assert_eq!(
            known_key_algorithms(&files, "example.com"),
            vec![
                Algorithm::Ed25519,
                Algorithm::Ecdsa {
                    curve: russh::keys::EcdsaCurve::NistP256
                }
            ]
        );
    }

    #[test]
    fn wildcard_matching() {
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a*b*c", "axxbyyc"));
        assert!(!wildcard_match("a*b*c", "axxbyy"));
        assert!(wildcard_match("*.*", "a.b"));
        assert!(!wildcard_match("?", ""));
        assert!(wildcard_match("", ""));
        assert!(!wildcard_match("", "a"));
    }
}
