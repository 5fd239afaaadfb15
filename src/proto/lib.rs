//! The rock protocol engine: a byte stream delivered exactly once, in order,
//! across any number of broken and re-established links. It does no I/O: no
//! sockets, no threads, no clock reads, no randomness.
//!
//! Two shells drive it — the tokio relay of `rock -d` and `rockd`, and the
//! preload library inside arbitrary programs — so everything that decides
//! what goes on the wire lives here, and is tested here byte by byte.
//!
//! * [`session`] — the engine: links, stream, timers, events.
//! * [`handshake`] — hello, proof and resume messages; version negotiation.
//! * [`kex`] — agreeing a session key (X25519, HKDF) where no SSH channel
//!   carries one.
//! * [`wire`] — the frames of an established link, check-then-parse.
//! * [`config`] — bounds and timeouts.
//! * [`error`] — what can go wrong, by kind.
//! * [`supervise`] — the lines `librocks.so` and its supervisor exchange.
//! * [`rendezvous`] — the messages of a host's rendezvous port.
//!
//! The byte-level format is described in `docs/PROTOCOL.md`.

#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod handshake;
pub mod kex;
mod link;
mod outbox;
pub mod rendezvous;
mod ring;
pub mod session;
mod stream;
pub mod supervise;
pub mod wire;

#[cfg(test)]
mod tests;

pub use config::{Config, ConfigError};
pub use error::{DecodeError, HandshakeError, LinkError, ProtocolViolation};
pub use handshake::{Nonce, SessionId, SessionKey, VersionRange};
pub use link::LinkId;
pub use session::{CloseReason, Event, MIN_SEND_WINDOW, Role, Session, State, Stats};
pub use wire::CloseCode;
