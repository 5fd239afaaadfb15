//! The messages of the rendezvous port (`rock_port`), where a rock
//! client's supervisor asks a host's rock supervisor whether a TCP port is
//! a rock-enabled listener before the program connects to it. No I/O here;
//! decoded in two steps (check the length and the fixed bytes, then
//! parse). docs/PROTOCOL.md §13 has the layout byte by byte.
//!
//! Every message is [`LEN`] bytes: the magic `RKRV`, the version, a kind,
//! and two bytes that depend on the kind. Anything else is an error, never
//! a panic: the rendezvous port is open to the network.
//!
//! After an [`Reply::Open`] that says `opened`, the connection carries the
//! two programs' bytes as they are, both ways (slice 3 of docs/PRELOAD.md:
//! a plain relay; the rock's key exchange and engine replace it later).

/// The first four bytes of every message.
pub const MAGIC: [u8; 4] = *b"RKRV";
/// The version this code speaks.
pub const VERSION: u8 = 1;
/// The length of every message.
pub const LEN: usize = 8;

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
    /// Connect me to the rock-enabled listener at this TCP port (never 0).
    Open(u16),
}

/// What the rendezvous port answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// The answer to [`Question::Probe`].
    Probe {
        /// Whether the port is a rock-enabled listener.
        rock: bool,
    },
    /// The answer to [`Question::Open`].
    Open {
        /// Whether the connection now reaches the listener (else it
        /// refused, or is not a rock listener, and the connection closes).
        opened: bool,
    },
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
    /// A kind this version does not know, or not expected here.
    #[error("unknown rendezvous message kind {0:#04x}")]
    Kind(u8),
    /// The kind's two bytes are out of range.
    #[error("malformed rendezvous message of kind {0:#04x}")]
    Malformed(u8),
}

/// Whether `bytes` begin with a whole message: `Ok(None)` when more bytes
/// are needed (a normal event), an error as soon as the bytes there cannot
/// begin a message of this version.
pub fn check(bytes: &[u8]) -> Result<Option<usize>, RendezvousError> {
    let magic = bytes.len().min(MAGIC.len());
    if bytes[..magic] != MAGIC[..magic] {
        return Err(RendezvousError::Magic);
    }
    match bytes.get(4) {
        Some(&v) if v != VERSION => Err(RendezvousError::Version(v)),
        _ if bytes.len() < LEN => Ok(None),
        _ => Ok(Some(LEN)),
    }
}

/// The kind byte and the two argument bytes of a message that [`check`]
/// accepted.
fn fields(bytes: &[u8]) -> Result<(u8, [u8; 2]), RendezvousError> {
    match check(bytes)? {
        Some(_) => Ok((bytes[5], [bytes[6], bytes[7]])),
        // A caller that skipped check: too short is not a message.
        None => Err(RendezvousError::Magic),
    }
}

fn message(kind: u8, args: [u8; 2]) -> [u8; LEN] {
    let [m0, m1, m2, m3] = MAGIC;
    [m0, m1, m2, m3, VERSION, kind, args[0], args[1]]
}

impl Question {
    /// Parses the first [`LEN`] bytes of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Question, RendezvousError> {
        let (kind, port) = fields(bytes)?;
        let port = match u16::from_be_bytes(port) {
            0 if kind == KIND_PROBE || kind == KIND_OPEN => {
                return Err(RendezvousError::Malformed(kind));
            }
            port => port,
        };
        match kind {
            KIND_PROBE => Ok(Question::Probe(port)),
            KIND_OPEN => Ok(Question::Open(port)),
            kind => Err(RendezvousError::Kind(kind)),
        }
    }

    /// The message's bytes.
    pub fn encode(&self) -> [u8; LEN] {
        match self {
            Question::Probe(port) => message(KIND_PROBE, port.to_be_bytes()),
            Question::Open(port) => message(KIND_OPEN, port.to_be_bytes()),
        }
    }
}

impl Reply {
    /// Parses the first [`LEN`] bytes of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Reply, RendezvousError> {
        match fields(bytes)? {
            (KIND_PROBE_REPLY, [answer, 0]) if answer <= 1 => {
                Ok(Reply::Probe { rock: answer == 1 })
            }
            (KIND_OPEN_REPLY, [answer, 0]) if answer <= 1 => Ok(Reply::Open {
                opened: answer == 1,
            }),
            (kind @ (KIND_PROBE_REPLY | KIND_OPEN_REPLY), _) => {
                Err(RendezvousError::Malformed(kind))
            }
            (kind, _) => Err(RendezvousError::Kind(kind)),
        }
    }

    /// The message's bytes.
    pub fn encode(&self) -> [u8; LEN] {
        match self {
            Reply::Probe { rock } => message(KIND_PROBE_REPLY, [u8::from(*rock), 0]),
            Reply::Open { opened } => message(KIND_OPEN_REPLY, [u8::from(*opened), 0]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_bytes_are_as_documented() {
        assert_eq!(
            Question::Probe(6379).encode(),
            [b'R', b'K', b'R', b'V', 1, 0x01, 0x18, 0xeb]
        );
        assert_eq!(
            Reply::Probe { rock: true }.encode(),
            [b'R', b'K', b'R', b'V', 1, 0x81, 1, 0]
        );
        assert_eq!(
            Reply::Probe { rock: false }.encode(),
            [b'R', b'K', b'R', b'V', 1, 0x81, 0, 0]
        );
        assert_eq!(
            Question::Open(443).encode(),
            [b'R', b'K', b'R', b'V', 1, 0x02, 0x01, 0xbb]
        );
        assert_eq!(
            Reply::Open { opened: true }.encode(),
            [b'R', b'K', b'R', b'V', 1, 0x82, 1, 0]
        );
    }

    #[test]
    fn short_wrong_and_strange_messages() {
        assert_eq!(check(b""), Ok(None));
        assert_eq!(check(b"RK"), Ok(None));
        assert_eq!(check(b"RKRV\x01\x01\x00"), Ok(None));
        assert_eq!(check(b"HTTP/1.1"), Err(RendezvousError::Magic));
        assert_eq!(check(b"SSH-"), Err(RendezvousError::Magic));
        assert_eq!(check(b"RKRV\x02"), Err(RendezvousError::Version(2)));
        assert_eq!(check(b"RKRV\x01\x01\x00\x16extra"), Ok(Some(LEN)));
        assert_eq!(
            Question::parse(b"RKRV\x01\x01\x00\x00"),
            Err(RendezvousError::Malformed(0x01))
        );
        assert_eq!(
            Question::parse(b"RKRV\x01\x81\x01\x00"),
            Err(RendezvousError::Kind(0x81))
        );
        assert_eq!(
            Reply::parse(b"RKRV\x01\x81\x02\x00"),
            Err(RendezvousError::Malformed(0x81))
        );
        assert_eq!(
            Reply::parse(b"RKRV\x01\x81\x01\x01"),
            Err(RendezvousError::Malformed(0x81))
        );
        assert_eq!(
            Reply::parse(b"RKRV\x01\x01\x00\x16"),
            Err(RendezvousError::Kind(0x01))
        );
        assert_eq!(Reply::parse(b"RKRV"), Err(RendezvousError::Magic));
        assert_eq!(
            Question::parse(b"RKRV\x01\x02\x00\x00"),
            Err(RendezvousError::Malformed(0x02))
        );
        assert_eq!(
            Reply::parse(b"RKRV\x01\x82\x01\x07"),
            Err(RendezvousError::Malformed(0x82))
        );
        assert_eq!(
            Question::parse(b"RKRV\x01\x03\x00\x01"),
            Err(RendezvousError::Kind(0x03))
        );
    }

    proptest! {
        #[test]
        fn any_bytes_are_a_message_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..20)) {
            let checked = check(&bytes);
            if let Ok(Some(end)) = checked {
                prop_assert_eq!(end, LEN);
            }
            if let Ok(q) = Question::parse(&bytes) {
                prop_assert!(checked.is_ok());
                prop_assert_eq!(&q.encode()[..], &bytes[..LEN]);
            }
            if let Ok(r) = Reply::parse(&bytes) {
                prop_assert_eq!(&r.encode()[..], &bytes[..LEN]);
            }
        }

        #[test]
        fn messages_read_back(port in 1u16.., yes: bool) {
            for q in [Question::Probe(port), Question::Open(port)] {
                prop_assert_eq!(Question::parse(&q.encode()), Ok(q));
            }
            for r in [Reply::Probe { rock: yes }, Reply::Open { opened: yes }] {
                prop_assert_eq!(Reply::parse(&r.encode()), Ok(r));
            }
        }

        #[test]
        fn any_message_of_this_version_parses_or_is_refused(tail in proptest::collection::vec(any::<u8>(), 0..6)) {
            let mut bytes = b"RKRV\x01".to_vec();
            bytes.extend_from_slice(&tail);
            let whole = bytes.len() >= LEN;
            prop_assert_eq!(check(&bytes), Ok(whole.then_some(LEN)));
            if let Ok(q) = Question::parse(&bytes) {
                prop_assert_eq!(&q.encode()[..], &bytes[..LEN]);
            }
            if let Ok(r) = Reply::parse(&bytes) {
                prop_assert_eq!(&r.encode()[..], &bytes[..LEN]);
            }
        }
    }
}
