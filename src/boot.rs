//! The boot exchange between rock and a freshly started rockd, over the
//! SSH exec channel (encrypted, authenticated by the bootstrap).
//!
//! ```text
//! rock  → rockd (stdin)   rock-boot 1\n id <32 hex>\n key <64 hex>\n end\n
//! rockd → rock  (stdout)  rockd-ready 1 version <semver> proto <min>-<max> port <port>\n
//!                     or  rockd-error <one line of text>\n
//! ```
//!
//! The session key crosses only this channel: never argv, the environment
//! or a file. rockd answers once it listens and has detached, then closes
//! the channel. Lines are ASCII; unknown `key value` pairs in the ready line
//! are ignored so a newer rockd can say more.

use rock_proto::{SessionId, SessionKey, VersionRange};

/// Version of this exchange (not of the link protocol).
pub const BOOT_VERSION: u32 = 1;
/// Longest line either side accepts.
pub const MAX_LINE: usize = 512;

/// rockd's finish note (the text of the CLOSE(Normal) that ends the session,
/// docs/PROTOCOL.md §9.2) when sshd's side of the bridge ended before any
/// login through it completed: rock then explains the likely cause.
pub const NO_LOGIN_NOTE: &str = "sshd ended before any login through rockd completed";

/// What rock sends: the session's identity and secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootRequest {
    /// The session id.
    pub id: SessionId,
    /// The 256-bit session key.
    pub key: SessionKey,
}

impl BootRequest {
    /// A new session: a random id and key from the operating system.
    pub fn random() -> Result<BootRequest, getrandom::Error> {
        let mut id = [0u8; 16];
        let mut key = [0u8; 32];
        getrandom::fill(&mut id)?;
        getrandom::fill(&mut key)?;
        Ok(BootRequest {
            id: SessionId(id),
            key: SessionKey(key),
        })
    }
}

/// What rockd answers when it is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootReady {
    /// rockd's package version.
    pub version: String,
    /// Link protocol versions rockd speaks.
    pub proto: VersionRange,
    /// TCP port rockd listens on.
    pub port: u16,
}

/// A boot message that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootError {
    /// rockd reported a failure.
    #[error("rockd failed: {0}")]
    Remote(String),
    /// The line is not a boot message at all (for instance a login banner
    /// or a shell's "command not found").
    #[error("unexpected output from rockd: {0:?}")]
    Unexpected(String),
    /// A field is missing or malformed.
    #[error("malformed {what} in rockd boot message: {line:?}")]
    Malformed {
        /// Which field.
        what: &'static str,
        /// The offending line.
        line: String,
    },
    /// rockd speaks a newer boot exchange.
    #[error("rockd speaks boot exchange {0}, this rock speaks {BOOT_VERSION}")]
    Version(u32),
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    // from_str_radix would also take a sign; a key is hex digits only.
    if s.len() != 2 * N || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl BootRequest {
    /// The bytes rock writes to rockd's stdin.
    pub fn encode(&self) -> String {
        format!(
            "rock-boot {BOOT_VERSION}\nid {}\nkey {}\nend\n",
            hex(&self.id.0),
            hex(&self.key.0)
        )
    }

    /// Parses the request from its lines (without newlines), as rockd reads
    /// them.
    pub fn parse<'a>(mut lines: impl Iterator<Item = &'a str>) -> Result<BootRequest, BootError> {
        let mut next = |what| {
            lines.next().ok_or(BootError::Malformed {
                what,
                line: String::new(),
            })
        };
        let head = next("header")?;
        match head.strip_prefix("rock-boot ").map(str::parse::<u32>) {
            Some(Ok(BOOT_VERSION)) => {}
            Some(Ok(v)) => return Err(BootError::Version(v)),
            _ => return Err(BootError::Unexpected(head.to_owned())),
        }
        let field = |line: &str, name: &'static str| {
            line.strip_prefix(name)
                .and_then(|r| r.strip_prefix(' '))
                .map(str::to_owned)
                .ok_or(BootError::Malformed {
                    what: name,
                    line: line.to_owned(),
                })
        };
        let id_line = next("id")?;
        let id = unhex::<16>(&field(id_line, "id")?).ok_or(BootError::Malformed {
            what: "id",
            line: id_line.to_owned(),
        })?;
        let key_line = next("key")?;
        let key = unhex::<32>(&field(key_line, "key")?).ok_or(BootError::Malformed {
            what: "key",
            line: "key <redacted>".to_owned(),
        })?;
        if next("end")? != "end" {
            return Err(BootError::Malformed {
                what: "end",
                line: String::new(),
            });
        }
        Ok(BootRequest {
            id: SessionId(id),
            key: SessionKey(key),
        })
    }
}

impl BootReady {
    /// The line rockd prints when it is ready.
    pub fn encode(&self) -> String {
        format!(
            "rockd-ready {BOOT_VERSION} version {} proto {}-{} port {}\n",
            self.version, self.proto.min, self.proto.max, self.port
        )
    }

    /// Parses rockd's answer line (without its newline).
    pub fn parse(line: &str) -> Result<BootReady, BootError> {
        if let Some(msg) = line.strip_prefix("rockd-error ") {
            return Err(BootError::Remote(msg.to_owned()));
        }
        let Some(rest) = line.strip_prefix("rockd-ready ") else {
            return Err(BootError::Unexpected(line.to_owned()));
        };
        let mut words = rest.split_ascii_whitespace();
        let malformed = |what| BootError::Malformed {
            what,
            line: line.to_owned(),
        };
        match words.next().map(str::parse::<u32>) {
            Some(Ok(BOOT_VERSION)) => {}
            Some(Ok(v)) => return Err(BootError::Version(v)),
            _ => return Err(malformed("boot version")),
        }
        let (mut version, mut proto, mut port) = (None, None, None);
        while let (Some(k), Some(v)) = (words.next(), words.next()) {
            match k {
                "version" => version = Some(v.to_owned()),
                "proto" => {
                    let (a, b) = v.split_once('-').ok_or_else(|| malformed("proto"))?;
                    let min = a.parse().map_err(|_| malformed("proto"))?;
                    let max = b.parse().map_err(|_| malformed("proto"))?;
                    proto = Some(VersionRange { min, max });
                }
                "port" => port = Some(v.parse().map_err(|_| malformed("port"))?),
                _ => {} // a newer rockd may say more
            }
        }
        Ok(BootReady {
            version: version.ok_or_else(|| malformed("version"))?,
            proto: proto.ok_or_else(|| malformed("proto"))?,
            port: port.ok_or_else(|| malformed("port"))?,
        })
    }
}

/// Formats a failure as rockd reports it: one line.
pub fn error_line(message: &str) -> String {
    // One ASCII line that fits MAX_LINE bytes, whatever the message.
    let one_line: String = message
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_control() {
                c
            } else {
                ' '
            }
        })
        .take(MAX_LINE - 20)
        .collect();
    format!("rockd-error {one_line}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_roundtrips() {
        let req = BootRequest {
            id: SessionId([0xab; 16]),
            key: SessionKey([0x01; 32]),
        };
        let text = req.encode();
        assert_eq!(BootRequest::parse(text.lines()), Ok(req));
    }

    #[test]
    fn request_errors_are_specific_and_never_echo_the_key() {
        assert!(matches!(
            BootRequest::parse("bash: rockd: command not found".lines()),
            Err(BootError::Unexpected(_))
        ));
        assert_eq!(
            BootRequest::parse("rock-boot 9".lines()),
            Err(BootError::Version(9))
        );
        let bad_key = format!(
            "rock-boot 1\nid {}\nkey {}zz\nend",
            "00".repeat(16),
            "11".repeat(31)
        );
        let err = BootRequest::parse(bad_key.lines()).unwrap_err();
        assert!(!err.to_string().contains("1111"), "{err}");
        assert!(BootRequest::parse("rock-boot 1\n".lines()).is_err());
    }

    #[test]
    fn ready_roundtrips_and_ignores_unknown_fields() {
        let ready = BootReady {
            version: "0.1.0".into(),
            proto: VersionRange { min: 1, max: 2 },
            port: 40123,
        };
        let line = ready.encode();
        assert_eq!(BootReady::parse(line.trim_end()), Ok(ready.clone()));
        let newer = format!("{} flavour spicy", line.trim_end());
        assert_eq!(BootReady::parse(&newer), Ok(ready));
    }

    #[test]
    fn ready_errors_are_specific() {
        assert_eq!(
            BootReady::parse("rockd-error cannot listen: Address in use"),
            Err(BootError::Remote("cannot listen: Address in use".into()))
        );
        assert!(matches!(
            BootReady::parse("Welcome to Ubuntu"),
            Err(BootError::Unexpected(_))
        ));
        assert!(matches!(
            BootReady::parse("rockd-ready 1 version 0.1.0 proto 1-1 port 99999"),
            Err(BootError::Malformed { what: "port", .. })
        ));
        assert_eq!(error_line("a\nb"), "rockd-error a b\n");
        assert!(error_line(&"é".repeat(1000)).len() <= MAX_LINE);
        let signed = format!(
            "rock-boot 1\nid +{}\nkey {}\nend",
            "0".repeat(31),
            "11".repeat(32)
        );
        assert!(BootRequest::parse(signed.lines()).is_err());
    }
}
