//! The messages of the rendezvous port (`rock_port`), where a rock
//! client's supervisor asks a host's rock supervisor whether a TCP port is
//! a rock-enabled listener, and opens a rock to it. No I/O here; decoded in
//! two steps (check the length and the fixed bytes, then parse).
//! docs/PROTOCOL.md §13 has the layout byte by byte.
//!
//! Every message starts with the magic `RKRV`, the version, a kind, and
//! two bytes that depend on the kind ([`HEAD`] bytes); an OPEN carries the
//! client's X25519 public key behind them, and an OPEN reply that says
//! "opened" the session id and the server's public key. Anything else is an
//! error, never a panic: the rendezvous port is open to the network.
//!
//! After an opened [`Reply::Open`], the connection is the rock's first
//! link: the engine's handshake (docs/PROTOCOL.md §3) follows, proved with
//! the key both sides derive ([`crate::kex`]).

use crate::handshake::SessionId;
use crate::kex::PublicKey;

/// The first four bytes of every message.
pub const MAGIC: [u8; 4] = *b"RKRV";
/// The version this code speaks.
pub const VERSION: u8 = 2;
/// The length of a message's fixed head (and of every message but an
/// OPEN and an opened OPEN reply).
pub const HEAD: usize = 8;
/// The length of an OPEN: the head and the client's public key.
pub const OPEN_LEN: usize = HEAD + 32;
/// The length of an opened OPEN reply: the head, the session id and the
/// server's public key.
pub const OPENED_LEN: usize = HEAD + 16 + 32;
/// The longest message.
pub const MAX_LEN: usize = OPENED_LEN;

/// The kind byte of a [`Question::Probe`].
const KIND_PROBE: u8 = 0x01;
/// The kind byte of a [`Reply::Probe`].
const KIND_PROBE_REPLY: u8 = 0x81;
/// The kind byte of a [`Question::Open`].
const KIND_OPEN: u8 = 0x02;
/// The kind byte of a [`Reply::Open`].
const KIND_OPEN_REPLY: u8 = 0x82;

/// What a client asks the rendezvous port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Question {
    /// Is this TCP port (never 0) of the host a rock-enabled listener?
    Probe(u16),
    /// Open a rock to the rock-enabled listener at this TCP port (never
    /// 0); the client's key share for the session key.
    Open {
        /// The listener's port.
        port: u16,
        /// The client's X25519 public key.
        key: PublicKey,
    },
}

/// What the rendezvous side says when it opens a rock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// The rock's session id, chosen by the server.
    pub session: SessionId,
    /// The server's X25519 public key.
    pub key: PublicKey,
}

/// What the rendezvous port answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// The answer to [`Question::Probe`].
    Probe {
        /// Whether the port is a rock-enabled listener.
        rock: bool,
    },
    /// The answer to [`Question::Open`]: `Some` when the rock is open
    /// (its first link's handshake follows), `None` when it was refused
    /// (the connection then closes).
    Open(Option<Opened>),
}

/// Bytes that are not a rendezvous message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RendezvousError {
    /// The first bytes are not [`MAGIC`]: not a rock peer.
    #[error("not a rock rendezvous message (no RKRV magic)")]
    Magic,
    /// Another version of the rendezvous messages.
    #[error("rendezvous version {0}, this rock speaks version {VERSION}")]
    Version(u8),
    /// A kind this version does not know.
    #[error("unknown rendezvous message kind {0:#04x}")]
    Kind(u8),
    /// The kind's two bytes are out of range, or a question came where a
    /// reply was expected (or the other way round).
    #[error("malformed or unexpected rendezvous message of kind {0:#04x}")]
    Malformed(u8),
}

/// Whether `bytes` begin with a whole message: `Ok(Some(length))` when
/// they do, `Ok(None)` when more bytes are needed (a normal event), an
/// error as soon as the bytes there cannot begin a message of this
/// version.
pub fn check(bytes: &[u8]) -> Result<Option<usize>, RendezvousError> {
    Ok(length(bytes)?.filter(|&len| bytes.len() >= len))
}

/// The length of the message that `bytes` begin, as soon as the bytes
/// there tell it (the head's first seven bytes at most), whether or not
/// the rest has arrived: a reader then asks for exactly that many bytes,
/// and none of what follows. Errors as [`check`].
pub fn length(bytes: &[u8]) -> Result<Option<usize>, RendezvousError> {
    let magic = bytes.len().min(MAGIC.len());
    if bytes[..magic] != MAGIC[..magic] {
        return Err(RendezvousError::Magic);
    }
    match bytes.get(4) {
        Some(&v) if v != VERSION => return Err(RendezvousError::Version(v)),
        None => return Ok(None),
        Some(_) => {}
    }
    let len = match bytes.get(5) {
        None => return Ok(None),
        Some(&KIND_PROBE | &KIND_PROBE_REPLY) => HEAD,
        Some(&KIND_OPEN) => OPEN_LEN,
        Some(&KIND_OPEN_REPLY) => match bytes.get(6) {
            None => return Ok(None),
            Some(0) => HEAD,
            Some(1) => OPENED_LEN,
            Some(_) => return Err(RendezvousError::Malformed(KIND_OPEN_REPLY)),
        },
        Some(&kind) => return Err(RendezvousError::Kind(kind)),
    };
    Ok(Some(len))
}

/// The kind byte, the two argument bytes and the rest of a whole message
/// at the start of `bytes`.
fn fields(bytes: &[u8]) -> Result<(u8, [u8; 2], &[u8]), RendezvousError> {
    match check(bytes)? {
        Some(len) => Ok((bytes[5], [bytes[6], bytes[7]], &bytes[HEAD..len])),
        // A caller that skipped check: too short is not a message.
        None => Err(RendezvousError::Magic),
    }
}

fn message(kind: u8, args: [u8; 2], rest: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAX_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[VERSION, kind, args[0], args[1]]);
    for part in rest {
        out.extend_from_slice(part);
    }
    out
}

/// The 32 bytes at the start of `rest` (which [`check`] made long enough).
fn key_at(rest: &[u8]) -> PublicKey {
    let mut key = [0u8; 32];
    key.copy_from_slice(&rest[..32]);
    PublicKey(key)
}

impl Question {
    /// Parses the message at the start of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Question, RendezvousError> {
        let (kind, port, rest) = fields(bytes)?;
        let port = u16::from_be_bytes(port);
        match kind {
            KIND_PROBE | KIND_OPEN if port == 0 => Err(RendezvousError::Malformed(kind)),
            KIND_PROBE => Ok(Question::Probe(port)),
            KIND_OPEN => Ok(Question::Open {
                port,
                key: key_at(rest),
            }),
            kind => Err(RendezvousError::Malformed(kind)),
        }
    }

    /// The message's bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Question::Probe(port) => message(KIND_PROBE, port.to_be_bytes(), &[]),
            Question::Open { port, key } => message(KIND_OPEN, port.to_be_bytes(), &[&key.0]),
        }
    }

    /// The port asked about.
    pub fn port(&self) -> u16 {
        match self {
            Question::Probe(port) | Question::Open { port, .. } => *port,
        }
    }
}

impl Reply {
    /// Parses the message at the start of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Reply, RendezvousError> {
        match fields(bytes)? {
            (KIND_PROBE_REPLY, [answer, 0], _) if answer <= 1 => {
                Ok(Reply::Probe { rock: answer == 1 })
            }
            (KIND_OPEN_REPLY, [0, 0], _) => Ok(Reply::Open(None)),
            (KIND_OPEN_REPLY, [1, 0], rest) => {
                let mut session = [0u8; 16];
                session.copy_from_slice(&rest[..16]);
                Ok(Reply::Open(Some(Opened {
                    session: SessionId(session),
                    key: key_at(&rest[16..]),
                })))
            }
            (kind, _, _) => Err(RendezvousError::Malformed(kind)),
        }
    }

    /// The message's bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Reply::Probe { rock } => message(KIND_PROBE_REPLY, [u8::from(*rock), 0], &[]),
            Reply::Open(None) => message(KIND_OPEN_REPLY, [0, 0], &[]),
            Reply::Open(Some(Opened { session, key })) => {
                message(KIND_OPEN_REPLY, [1, 0], &[&session.0, &key.0])
            }
        }
    }
}

/// Whether `bytes` (at least two: `RO` against `RK`) begin what may be
/// the engine's ClientHello (`ROCK`, docs/PROTOCOL.md §3.1) rather than a
/// rendezvous message: a rock client resuming its rock sends the hello
/// first.
pub fn is_link(bytes: &[u8]) -> bool {
    let magic = &crate::handshake::MAGIC;
    let n = bytes.len().min(magic.len());
    n >= 2 && bytes[..n] == magic[..n]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const K: PublicKey = PublicKey([0xab; 32]);

    #[test]
    fn the_bytes_are_as_documented() {
        assert_eq!(
            Question::Probe(6379).encode(),
            [b'R', b'K', b'R', b'V', 2, 0x01, 0x18, 0xeb]
        );
        assert_eq!(
            Reply::Probe { rock: true }.encode(),
            [b'R', b'K', b'R', b'V', 2, 0x81, 1, 0]
        );
        assert_eq!(
            Reply::Probe { rock: false }.encode(),
            [b'R', b'K', b'R', b'V', 2, 0x81, 0, 0]
        );
        let open = Question::Open { port: 443, key: K }.encode();
        assert_eq!(open.len(), OPEN_LEN);
        assert_eq!(open[..HEAD], [b'R', b'K', b'R', b'V', 2, 0x02, 0x01, 0xbb]);
        assert_eq!(open[HEAD..], [0xab; 32]);
        assert_eq!(
            Reply::Open(None).encode(),
            [b'R', b'K', b'R', b'V', 2, 0x82, 0, 0]
        );
        let opened = Reply::Open(Some(Opened {
            session: SessionId([0x5e; 16]),
            key: K,
        }))
        .encode();
        assert_eq!(opened.len(), OPENED_LEN);
        assert_eq!(opened[..HEAD], [b'R', b'K', b'R', b'V', 2, 0x82, 1, 0]);
        assert_eq!(opened[HEAD..HEAD + 16], [0x5e; 16]);
        assert_eq!(opened[HEAD + 16..], [0xab; 32]);
    }

    #[test]
    fn short_wrong_and_strange_messages() {
        assert_eq!(check(b""), Ok(None));
        assert_eq!(check(b"RK"), Ok(None));
        assert_eq!(check(b"RKRV\x02\x01\x00"), Ok(None));
        assert_eq!(check(b"HTTP/1.1"), Err(RendezvousError::Magic));
        assert_eq!(check(b"SSH-"), Err(RendezvousError::Magic));
        assert_eq!(check(b"RKRV\x01"), Err(RendezvousError::Version(1)));
        assert_eq!(check(b"RKRV\x02\x01\x00\x16extra"), Ok(Some(HEAD)));
        assert_eq!(
            check(b"RKRV\x02\x02\x00\x16"),
            Ok(None),
            "an OPEN needs its key"
        );
        assert_eq!(check(b"RKRV\x02\x82"), Ok(None));
        assert_eq!(check(b"RKRV\x02\x82\x01\x00"), Ok(None));
        assert_eq!(check(b"RKRV\x02\x82\x00\x00"), Ok(Some(HEAD)));
        assert_eq!(
            check(b"RKRV\x02\x82\x02"),
            Err(RendezvousError::Malformed(0x82))
        );
        assert_eq!(check(b"RKRV\x02\x03"), Err(RendezvousError::Kind(0x03)));
        assert_eq!(length(b"RKRV\x02\x02"), Ok(Some(OPEN_LEN)));
        assert_eq!(length(b"RKRV\x02\x82\x01"), Ok(Some(OPENED_LEN)));
        assert_eq!(length(b"RKRV\x02\x82"), Ok(None));
        assert_eq!(
            Question::parse(b"RKRV\x02\x01\x00\x00"),
            Err(RendezvousError::Malformed(0x01))
        );
        assert_eq!(
            Question::parse(b"RKRV\x02\x81\x01\x00"),
            Err(RendezvousError::Malformed(0x81))
        );
        assert_eq!(
            Reply::parse(b"RKRV\x02\x81\x02\x00"),
            Err(RendezvousError::Malformed(0x81))
        );
        assert_eq!(
            Reply::parse(b"RKRV\x02\x81\x01\x01"),
            Err(RendezvousError::Malformed(0x81))
        );
        assert_eq!(
            Reply::parse(b"RKRV\x02\x01\x00\x16"),
            Err(RendezvousError::Malformed(0x01))
        );
        assert_eq!(Reply::parse(b"RKRV"), Err(RendezvousError::Magic));
        let mut zero = Question::Open { port: 1, key: K }.encode();
        zero[7] = 0;
        assert_eq!(
            Question::parse(&zero),
            Err(RendezvousError::Malformed(0x02))
        );
        assert_eq!(
            Reply::parse(b"RKRV\x02\x82\x00\x07"),
            Err(RendezvousError::Malformed(0x82))
        );
    }

    #[test]
    fn a_resuming_link_is_told_from_a_question_by_its_first_byte() {
        assert!(!is_link(b"R"), "both begin so");
        assert!(is_link(b"RO"));
        assert!(is_link(b"ROCK\x01"));
        assert!(!is_link(b"RK"));
        assert!(!is_link(b""));
        assert!(!is_link(&Question::Probe(1).encode()));
    }

    proptest! {
        #[test]
        fn any_bytes_are_a_message_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let checked = check(&bytes);
            if let Ok(Some(end)) = checked {
                prop_assert!(end <= bytes.len() && end <= MAX_LEN);
            }
            if let Ok(q) = Question::parse(&bytes) {
                let encoded = q.encode();
                prop_assert_eq!(&encoded[..], &bytes[..encoded.len()]);
            }
            if let Ok(r) = Reply::parse(&bytes) {
                let encoded = r.encode();
                prop_assert_eq!(&encoded[..], &bytes[..encoded.len()]);
            }
        }

        #[test]
        fn messages_read_back(port in 1u16.., yes: bool, key: [u8; 32], session: [u8; 16]) {
            let key = PublicKey(key);
            for q in [Question::Probe(port), Question::Open { port, key }] {
                prop_assert_eq!(Question::parse(&q.encode()), Ok(q));
            }
            let opened = Opened { session: SessionId(session), key };
            for r in [Reply::Probe { rock: yes }, Reply::Open(None), Reply::Open(Some(opened))] {
                prop_assert_eq!(Reply::parse(&r.encode()), Ok(r));
            }
        }

        #[test]
        fn any_message_of_this_version_parses_or_is_refused(tail in proptest::collection::vec(any::<u8>(), 0..60)) {
            let mut bytes = b"RKRV\x02".to_vec();
            bytes.extend_from_slice(&tail);
            if let Ok(Some(end)) = check(&bytes) {
                prop_assert!(end <= bytes.len());
            }
            if let Ok(q) = Question::parse(&bytes) {
                let encoded = q.encode();
                prop_assert_eq!(&encoded[..], &bytes[..encoded.len()]);
            }
            if let Ok(r) = Reply::parse(&bytes) {
                let encoded = r.encode();
                prop_assert_eq!(&encoded[..], &bytes[..encoded.len()]);
            }
        }
    }
}
