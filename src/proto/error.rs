//! Error types of the protocol engine, one enum per kind of failure.
//!
//! A [`DecodeError`] says a byte sequence is not a valid message; a
//! [`HandshakeError`] says a link could not be authenticated; a
//! [`ProtocolViolation`] says an authenticated peer broke the stream's rules.
//! All of them end one link ([`LinkError`]), never the process.

use crate::handshake::{RejectReason, VersionRange};

/// Bytes that do not form a valid frame or handshake message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The first bytes are not the rock magic: the peer is not a rock peer.
    #[error("bad magic: the peer does not speak the rock protocol")]
    BadMagic,
    /// A handshake message type this version does not know.
    #[error("unknown handshake message type {0:#04x}")]
    UnknownMessage(u8),
    /// A frame type this version does not know.
    #[error("unknown frame type {0:#04x}")]
    UnknownFrame(u8),
    /// A frame declares a body longer than its type allows.
    #[error("{kind} frame declares {len} bytes; at most {max} are allowed")]
    TooLong {
        /// Frame kind.
        kind: &'static str,
        /// Declared body length.
        len: u32,
        /// Largest body this kind may carry.
        max: usize,
    },
    /// A fixed-size frame has the wrong body length.
    #[error("{kind} frame must carry {expected} bytes, not {len}")]
    BadLength {
        /// Frame kind.
        kind: &'static str,
        /// Declared body length.
        len: u32,
        /// The only valid body length.
        expected: usize,
    },
    /// A data frame with no payload.
    #[error("empty data frame")]
    EmptyData,
    /// A close frame whose message is not UTF-8.
    #[error("close message is not valid UTF-8")]
    BadUtf8,
}

/// Why a link could not be authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// A handshake message did not decode.
    #[error("malformed handshake: {0}")]
    Decode(#[from] DecodeError),
    /// The two version ranges do not overlap.
    #[error("no common protocol version: we speak {ours}, the peer speaks {theirs}")]
    UnsupportedVersion {
        /// Versions this side speaks.
        ours: VersionRange,
        /// Versions the peer speaks.
        theirs: VersionRange,
    },
    /// The server chose a version outside the range the client offered.
    #[error("the server chose protocol version {0}, which we did not offer")]
    BadVersionChoice(u16),
    /// The hello names a session this server does not have.
    #[error("the server has no such session")]
    UnknownSession,
    /// The peer's proof does not verify: it does not hold the session key.
    #[error("the peer's proof of the session key is wrong")]
    BadProof,
    /// The peer sent back a proof made with our own role label.
    #[error("the peer reflected a proof made for the other role")]
    ReflectedProof,
    /// The client hello repeats a nonce already used with this session.
    #[error("the client hello replays a nonce already seen")]
    ReplayedHello,
    /// The server refused the session.
    #[error("the server refused the session: {0}")]
    Rejected(RejectReason),
    /// The handshake did not finish in time.
    #[error("the handshake did not finish in time")]
    Timeout,
}

/// An authenticated peer broke the rules of the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolViolation {
    /// The peer acknowledged bytes that were never sent.
    #[error("the peer acknowledged {ack} units but only {end} exist")]
    AckBeyondEnd {
        /// Acknowledged count.
        ack: u64,
        /// Units this side has produced.
        end: u64,
    },
    /// On resume the peer claimed fewer bytes than it had already acknowledged.
    #[error("the peer resumed at {resume}, below the {acked} it had acknowledged")]
    ResumeBelowAcked {
        /// The peer's claimed received count.
        resume: u64,
        /// What it had acknowledged before.
        acked: u64,
    },
    /// The peer's data left a gap in the stream.
    #[error("the peer's data starts at {at}, after the {received} received")]
    Gap {
        /// Where the peer's data starts.
        at: u64,
        /// What this side has received.
        received: u64,
    },
    /// The peer sent data after its end of stream.
    #[error("the peer sent data after its end of stream")]
    DataAfterFin,
    /// A frame that only makes sense after the handshake arrived outside it.
    #[error("the peer sent a frame before the handshake finished")]
    FrameBeforeHandshake,
}

/// Why one link ended. The session itself survives all of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The handshake failed.
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The peer sent bytes that are not a frame.
    #[error("malformed frame: {0}")]
    Decode(#[from] DecodeError),
    /// The peer broke the stream's rules.
    #[error("protocol violation: {0}")]
    Protocol(#[from] ProtocolViolation),
    /// Nothing arrived from the peer for the configured link timeout.
    #[error("no sign of life from the peer for {0:?}")]
    Timeout(std::time::Duration),
    /// After a network change the link answered nothing in time.
    #[error("no answer within {0:?} after the network changed")]
    Unanswered(std::time::Duration),
    /// The transport reported an error or end of stream.
    #[error("the transport closed")]
    TransportClosed,
    /// A newer authenticated link took this one's place.
    #[error("superseded by a newer link")]
    Superseded,
    /// Too many links were waiting for their handshake; this, the oldest, went.
    #[error("too many links waiting for their handshake")]
    TooManyPending,
    /// The session ended.
    #[error("the session ended")]
    SessionClosed,
}
