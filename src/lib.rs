//! rock and rockd: network connections that survive address changes,
//! outages and sleep.
//!
//! The protocol engine lives in its own crate, [`rock_proto`], because the
//! preload library shares it and must not link tokio or russh. This crate
//! holds everything that does I/O around it:
//!
//! * [`boot`] — the boot exchange between rock and a new rockd.
//! * [`config`] — host profiles from the configuration files.
//! * [`further`] — a command's ssh connections after its first, each in a
//!   session of its own.
//! * [`launch`] — `rock -d`: bootstrap, run the user's ssh, relay.
//! * [`local`] — session directory, control socket, ssh's helpers.
//! * [`relay`] — the tokio shell that drives a session over real streams.
//! * [`rockd`] — the remote end: boot, detach, bridge to sshd.
//! * [`ssh`] — the bootstrap: resolve the destination with `ssh -G`, check
//!   the host key, authenticate once, start rockd.
//! * [`status`] — `rock status`: each session's report, and the listing.

#![warn(missing_docs)]

pub mod boot;
pub mod bridge_target;
pub mod config;
pub mod further;
pub mod launch;
pub mod local;
pub mod relay;
pub mod rockd;
pub mod ssh;
pub mod status;

pub use rock_proto as proto;
