//! librocks.so: loaded with LD_PRELOAD, makes the TCP connections of a
//! dynamically linked program reliable when both ends run under rock, and
//! leaves them plain TCP otherwise.
//!
//! Placeholder: the interposition comes with the preload work. It depends on
//! the protocol engine only — never on tokio or russh — because it runs
//! inside arbitrary processes.

pub use rock_proto::handshake::SUPPORTED_VERSIONS;
