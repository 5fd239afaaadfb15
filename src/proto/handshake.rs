//! The handshake that authenticates every link: message layouts, version
//! negotiation and the transcript proofs.
//!
//! ```text
//! client → server  ClientHello  magic "ROCK", 0x01, versions, session id, client nonce
//! server → client  ServerHello  magic "ROCK", 0x02, version, server nonce, received, proof_s
//!              or  Reject       magic "ROCK", 0x03, reason, server versions
//! client → server  ClientAuth   0x04, received, proof_c
//! ```
//!
//! `proof_s = HMAC-SHA-256(key, SERVER_LABEL ‖ ClientHello ‖ ServerHello without proof)`
//! and `proof_c = HMAC-SHA-256(key, CLIENT_LABEL ‖ ClientHello ‖ ServerHello ‖ ClientAuth
//! without proof)`. Both nonces are in both proofs, so a recorded proof is
//! useless in a later handshake; the labels differ, so a proof made for one
//! role never verifies for the other. All messages have a fixed size, so the
//! concatenation is unambiguous. The layout is documented in docs/PROTOCOL.md.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::{DecodeError, HandshakeError};

/// First bytes of every hello: identifies a rock peer.
pub const MAGIC: [u8; 4] = *b"ROCK";
/// Protocol versions this build speaks.
pub const SUPPORTED_VERSIONS: VersionRange = VersionRange { min: 1, max: 1 };

/// Bytes in a [`ClientHello`].
pub const CLIENT_HELLO_LEN: usize = 4 + 1 + 2 + 2 + 16 + 32;
/// Bytes in a [`ServerHello`].
pub const SERVER_HELLO_LEN: usize = 4 + 1 + 2 + 32 + 8 + 32;
/// Bytes in a [`Reject`].
pub const REJECT_LEN: usize = 4 + 1 + 1 + 2 + 2;
/// Bytes in a [`ClientAuth`].
pub const CLIENT_AUTH_LEN: usize = 1 + 8 + 32;

const M_CLIENT_HELLO: u8 = 0x01;
const M_SERVER_HELLO: u8 = 0x02;
const M_REJECT: u8 = 0x03;
const M_CLIENT_AUTH: u8 = 0x04;

const SERVER_LABEL: &[u8; 16] = b"rock server prf\0";
const CLIENT_LABEL: &[u8; 16] = b"rock client prf\0";

/// A 256-bit secret shared by the two ends of one session.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey(pub [u8; 32]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl Drop for SessionKey {
    fn drop(&mut self) {
        // Best effort: do not leave the key in freed memory.
        for b in &mut self.0 {
            // SAFETY: `b` is a valid, aligned, exclusive reference.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

/// Names one session; public (it travels in clear), 128 random bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub [u8; 16]);

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionId({self})")
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A fresh random value each side contributes to each handshake.
pub type Nonce = [u8; 32];

/// An inclusive range of protocol versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRange {
    /// Oldest version spoken.
    pub min: u16,
    /// Newest version spoken.
    pub max: u16,
}

impl VersionRange {
    /// The newest version both ranges contain, if any.
    pub fn negotiate(self, other: VersionRange) -> Option<u16> {
        let v = self.max.min(other.max);
        (v >= self.min.max(other.min)).then_some(v)
    }

    /// Whether `v` is in the range.
    pub fn contains(self, v: u16) -> bool {
        (self.min..=self.max).contains(&v)
    }
}

impl std::fmt::Display for VersionRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.min == self.max {
            write!(f, "version {}", self.min)
        } else {
            write!(f, "versions {}–{}", self.min, self.max)
        }
    }
}

/// Why a server refused a hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// No protocol version in common.
    UnsupportedVersion,
    /// The server has no session with that id (it ended, or never existed).
    UnknownSession,
    /// A reason this version does not know.
    Other(u8),
}

impl RejectReason {
    fn to_byte(self) -> u8 {
        match self {
            RejectReason::UnsupportedVersion => 1,
            RejectReason::UnknownSession => 2,
            RejectReason::Other(b) => b,
        }
    }

    fn from_byte(b: u8) -> Self {
        match b {
            1 => RejectReason::UnsupportedVersion,
            2 => RejectReason::UnknownSession,
            other => RejectReason::Other(other),
        }
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RejectReason::UnsupportedVersion => f.write_str("no common protocol version"),
            RejectReason::UnknownSession => f.write_str("no such session"),
            RejectReason::Other(b) => write!(f, "reason {b}"),
        }
    }
}

/// The first message of a link, from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// Versions the client speaks.
    pub versions: VersionRange,
    /// The session the link belongs to.
    pub session: SessionId,
    /// The client's fresh nonce.
    pub nonce: Nonce,
}

/// The server's answer to an acceptable hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello {
    /// The version chosen for this link.
    pub version: u16,
    /// The server's fresh nonce.
    pub nonce: Nonce,
    /// Stream units the server has received; the client resumes from here.
    pub received: u64,
    /// Proof that the server holds the session key.
    pub proof: [u8; 32],
}

/// The server's refusal of a hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    /// Why.
    pub reason: RejectReason,
    /// The versions the server speaks, so the client can report them.
    pub versions: VersionRange,
}

/// The client's last handshake message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuth {
    /// Stream units the client has received; the server resumes from here.
    pub received: u64,
    /// Proof that the client holds the session key.
    pub proof: [u8; 32],
}

/// What a server can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerReply {
    /// Accepted: continue with the client's proof.
    Hello(ServerHello),
    /// Refused.
    Reject(Reject),
}

/// Reads the `N` bytes at `at`; callers have checked the length.
fn array<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&buf[at..at + N]);
    out
}

fn u16_at(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(array(buf, at))
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(array(buf, at))
}

/// Checks magic and message type as soon as their bytes are present.
fn check_head(buf: &[u8], allowed: &[u8]) -> Result<(), DecodeError> {
    let n = buf.len().min(MAGIC.len());
    if buf[..n] != MAGIC[..n] {
        return Err(DecodeError::BadMagic);
    }
    match buf.get(MAGIC.len()) {
        Some(t) if !allowed.contains(t) => Err(DecodeError::UnknownMessage(*t)),
        _ => Ok(()),
    }
}

impl ClientHello {
    /// Encodes the hello; it is part of both proofs' transcripts.
    pub fn encode(&self) -> [u8; CLIENT_HELLO_LEN] {
        let mut out = [0u8; CLIENT_HELLO_LEN];
        out[..4].copy_from_slice(&MAGIC);
        out[4] = M_CLIENT_HELLO;
        out[5..7].copy_from_slice(&self.versions.min.to_be_bytes());
        out[7..9].copy_from_slice(&self.versions.max.to_be_bytes());
        out[9..25].copy_from_slice(&self.session.0);
        out[25..57].copy_from_slice(&self.nonce);
        out
    }

    /// Decodes a hello from the start of `buf`; `Ok(None)` if incomplete.
    pub fn decode(buf: &[u8]) -> Result<Option<ClientHello>, DecodeError> {
        check_head(buf, &[M_CLIENT_HELLO])?;
        if buf.len() < CLIENT_HELLO_LEN {
            return Ok(None);
        }
        Ok(Some(ClientHello {
            versions: VersionRange {
                min: u16_at(buf, 5),
                max: u16_at(buf, 7),
            },
            session: SessionId(array(buf, 9)),
            nonce: array(buf, 25),
        }))
    }
}

impl ServerHello {
    /// Encodes the hello without its proof: the part the proof covers.
    fn encode_unproven(&self) -> [u8; SERVER_HELLO_LEN - 32] {
        let mut out = [0u8; SERVER_HELLO_LEN - 32];
        out[..4].copy_from_slice(&MAGIC);
        out[4] = M_SERVER_HELLO;
        out[5..7].copy_from_slice(&self.version.to_be_bytes());
        out[7..39].copy_from_slice(&self.nonce);
        out[39..47].copy_from_slice(&self.received.to_be_bytes());
        out
    }

    /// Encodes the whole hello.
    pub fn encode(&self) -> [u8; SERVER_HELLO_LEN] {
        let mut out = [0u8; SERVER_HELLO_LEN];
        out[..47].copy_from_slice(&self.encode_unproven());
        out[47..].copy_from_slice(&self.proof);
        out
    }
}

impl Reject {
    /// Encodes the refusal.
    pub fn encode(&self) -> [u8; REJECT_LEN] {
        let mut out = [0u8; REJECT_LEN];
        out[..4].copy_from_slice(&MAGIC);
        out[4] = M_REJECT;
        out[5] = self.reason.to_byte();
        out[6..8].copy_from_slice(&self.versions.min.to_be_bytes());
        out[8..10].copy_from_slice(&self.versions.max.to_be_bytes());
        out
    }
}

impl ServerReply {
    /// Decodes a server reply from the start of `buf`: `Ok(None)` if
    /// incomplete, otherwise the reply and the bytes it occupied.
    pub fn decode(buf: &[u8]) -> Result<Option<(ServerReply, usize)>, DecodeError> {
        check_head(buf, &[M_SERVER_HELLO, M_REJECT])?;
        match buf.get(4) {
            Some(&M_SERVER_HELLO) if buf.len() >= SERVER_HELLO_LEN => Ok(Some((
                ServerReply::Hello(ServerHello {
                    version: u16_at(buf, 5),
                    nonce: array(buf, 7),
                    received: u64_at(buf, 39),
                    proof: array(buf, 47),
                }),
                SERVER_HELLO_LEN,
            ))),
            Some(&M_REJECT) if buf.len() >= REJECT_LEN => Ok(Some((
                ServerReply::Reject(Reject {
                    reason: RejectReason::from_byte(buf[5]),
                    versions: VersionRange {
                        min: u16_at(buf, 6),
                        max: u16_at(buf, 8),
                    },
                }),
                REJECT_LEN,
            ))),
            _ => Ok(None),
        }
    }
}

impl ClientAuth {
    fn encode_unproven(&self) -> [u8; CLIENT_AUTH_LEN - 32] {
        let mut out = [0u8; CLIENT_AUTH_LEN - 32];
        out[0] = M_CLIENT_AUTH;
        out[1..9].copy_from_slice(&self.received.to_be_bytes());
        out
    }

    /// Encodes the message.
    pub fn encode(&self) -> [u8; CLIENT_AUTH_LEN] {
        let mut out = [0u8; CLIENT_AUTH_LEN];
        out[..9].copy_from_slice(&self.encode_unproven());
        out[9..].copy_from_slice(&self.proof);
        out
    }

    /// Decodes the message from the start of `buf`; `Ok(None)` if incomplete.
    pub fn decode(buf: &[u8]) -> Result<Option<ClientAuth>, DecodeError> {
        match buf.first() {
            None => Ok(None),
            Some(&M_CLIENT_AUTH) if buf.len() < CLIENT_AUTH_LEN => Ok(None),
            Some(&M_CLIENT_AUTH) => Ok(Some(ClientAuth {
                received: u64_at(buf, 1),
                proof: array(buf, 9),
            })),
            Some(&other) => Err(DecodeError::UnknownMessage(other)),
        }
    }
}

fn mac(key: &SessionKey, label: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; 32 bytes cannot fail.
    let mut m =
        <Hmac<Sha256> as KeyInit>::new_from_slice(&key.0).expect("HMAC takes any key length");
    m.update(label);
    for p in parts {
        m.update(p);
    }
    m
}

/// Which side made a proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prover {
    Server,
    Client,
}

/// The proof one role makes over a transcript.
fn prove(key: &SessionKey, who: Prover, transcript: &[&[u8]]) -> [u8; 32] {
    let label = match who {
        Prover::Server => SERVER_LABEL,
        Prover::Client => CLIENT_LABEL,
    };
    mac(key, label, transcript).finalize().into_bytes().into()
}

/// Verifies `proof` as made by `who`, in constant time. A proof that
/// instead verifies under the other role's label is reported as reflected.
fn verify(
    key: &SessionKey,
    who: Prover,
    transcript: &[&[u8]],
    proof: &[u8; 32],
) -> Result<(), HandshakeError> {
    let (mine, other) = match who {
        Prover::Server => (SERVER_LABEL, CLIENT_LABEL),
        Prover::Client => (CLIENT_LABEL, SERVER_LABEL),
    };
    if mac(key, mine, transcript).verify_slice(proof).is_ok() {
        Ok(())
    } else if mac(key, other, transcript).verify_slice(proof).is_ok() {
        Err(HandshakeError::ReflectedProof)
    } else {
        Err(HandshakeError::BadProof)
    }
}

impl ServerHello {
    /// Builds the server's hello for `hello`, proving the key.
    pub fn new(
        key: &SessionKey,
        hello: &ClientHello,
        version: u16,
        nonce: Nonce,
        received: u64,
    ) -> ServerHello {
        let mut sh = ServerHello {
            version,
            nonce,
            received,
            proof: [0; 32],
        };
        sh.proof = prove(
            key,
            Prover::Server,
            &[&hello.encode(), &sh.encode_unproven()],
        );
        sh
    }

    /// Verifies the server's proof, as the client that sent `hello`.
    pub fn verify(&self, key: &SessionKey, hello: &ClientHello) -> Result<(), HandshakeError> {
        verify(
            key,
            Prover::Server,
            &[&hello.encode(), &self.encode_unproven()],
            &self.proof,
        )
    }
}

impl ClientAuth {
    /// Builds the client's proof over the whole transcript.
    pub fn new(
        key: &SessionKey,
        hello: &ClientHello,
        server: &ServerHello,
        received: u64,
    ) -> ClientAuth {
        ClientAuth::proven_by(Prover::Client, key, hello, server, received)
    }

    /// A client message carrying the *server's* proof over the client's
    /// transcript: what a peer that reflects proofs would send.
    #[cfg(test)]
    pub(crate) fn reflected_for_tests(
        key: &SessionKey,
        hello: &ClientHello,
        server: &ServerHello,
        received: u64,
    ) -> ClientAuth {
        ClientAuth::proven_by(Prover::Server, key, hello, server, received)
    }

    /// The message with `prover`'s proof over the whole transcript.
    fn proven_by(
        prover: Prover,
        key: &SessionKey,
        hello: &ClientHello,
        server: &ServerHello,
        received: u64,
    ) -> ClientAuth {
        let mut ca = ClientAuth {
            received,
            proof: [0; 32],
        };
        ca.proof = prove(
            key,
            prover,
            &[&hello.encode(), &server.encode(), &ca.encode_unproven()],
        );
        ca
    }

    /// Verifies the client's proof, as the server that sent `server`.
    pub fn verify(
        &self,
        key: &SessionKey,
        hello: &ClientHello,
        server: &ServerHello,
    ) -> Result<(), HandshakeError> {
        verify(
            key,
            Prover::Client,
            &[&hello.encode(), &server.encode(), &self.encode_unproven()],
            &self.proof,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: SessionKey = SessionKey([7; 32]);

    fn hello() -> ClientHello {
        ClientHello {
            versions: SUPPORTED_VERSIONS,
            session: SessionId([1; 16]),
            nonce: [2; 32],
        }
    }

    #[test]
    fn messages_roundtrip_and_prefixes_are_incomplete() {
        let ch = hello().encode();
        for cut in 0..ch.len() {
            assert_eq!(ClientHello::decode(&ch[..cut]), Ok(None));
        }
        assert_eq!(ClientHello::decode(&ch), Ok(Some(hello())));

        let sh = ServerHello::new(&KEY, &hello(), 1, [3; 32], 99);
        let enc = sh.encode();
        for cut in 0..enc.len() {
            assert_eq!(ServerReply::decode(&enc[..cut]), Ok(None));
        }
        assert_eq!(
            ServerReply::decode(&enc),
            Ok(Some((ServerReply::Hello(sh.clone()), SERVER_HELLO_LEN)))
        );

        let rj = Reject {
            reason: RejectReason::UnknownSession,
            versions: SUPPORTED_VERSIONS,
        };
        assert_eq!(
            ServerReply::decode(&rj.encode()),
            Ok(Some((ServerReply::Reject(rj), REJECT_LEN)))
        );

        let ca = ClientAuth::new(&KEY, &hello(), &sh, 5);
        let enc = ca.encode();
        for cut in 0..enc.len() {
            assert_eq!(ClientAuth::decode(&enc[..cut]), Ok(None));
        }
        assert_eq!(ClientAuth::decode(&enc), Ok(Some(ca)));
    }

    #[test]
    fn magic_and_type_are_checked_as_soon_as_they_arrive() {
        assert_eq!(ClientHello::decode(b"RX"), Err(DecodeError::BadMagic));
        assert_eq!(
            ClientHello::decode(b"GET / HTTP/1.1"),
            Err(DecodeError::BadMagic)
        );
        assert_eq!(
            ClientHello::decode(b"ROCK\x02"),
            Err(DecodeError::UnknownMessage(2))
        );
        assert_eq!(
            ServerReply::decode(b"ROCK\x01"),
            Err(DecodeError::UnknownMessage(1))
        );
        assert_eq!(
            ClientAuth::decode(b"\x05"),
            Err(DecodeError::UnknownMessage(5))
        );
    }

    #[test]
    fn proofs_verify_only_with_the_key_and_the_role() {
        let ch = hello();
        let sh = ServerHello::new(&KEY, &ch, 1, [3; 32], 0);
        assert_eq!(sh.verify(&KEY, &ch), Ok(()));
        assert_eq!(
            sh.verify(&SessionKey([8; 32]), &ch),
            Err(HandshakeError::BadProof)
        );
        let other_nonce = ClientHello {
            nonce: [9; 32],
            ..hello()
        };
        assert_eq!(sh.verify(&KEY, &other_nonce), Err(HandshakeError::BadProof));

        let ca = ClientAuth::new(&KEY, &ch, &sh, 0);
        assert_eq!(ca.verify(&KEY, &ch, &sh), Ok(()));
        // The server's proof put where the client's belongs is a reflection.
        let reflected = ClientAuth {
            received: 0,
            proof: prove(
                &KEY,
                Prover::Server,
                &[&ch.encode(), &sh.encode(), &ca.encode_unproven()],
            ),
        };
        assert_eq!(
            reflected.verify(&KEY, &ch, &sh),
            Err(HandshakeError::ReflectedProof)
        );
        // Changing the claimed received count invalidates the proof.
        let tampered = ClientAuth {
            received: 1,
            ..ca.clone()
        };
        assert_eq!(
            tampered.verify(&KEY, &ch, &sh),
            Err(HandshakeError::BadProof)
        );
    }

    #[test]
    fn version_negotiation_picks_the_newest_common_version() {
        let r = |min, max| VersionRange { min, max };
        assert_eq!(r(1, 3).negotiate(r(1, 1)), Some(1));
        assert_eq!(r(1, 3).negotiate(r(2, 5)), Some(3));
        assert_eq!(r(2, 3).negotiate(r(1, 1)), None);
        assert_eq!(r(3, 1).negotiate(r(1, 3)), None);
    }
}
