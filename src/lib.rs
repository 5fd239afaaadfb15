//! rock and rockd: network connections that survive address changes,
//! outages and sleep.
//!
//! The protocol engine lives in its own crate, [`rock_proto`], because the
//! preload library shares it and must not link tokio or russh. This crate
//! holds everything that does I/O around it: one folder per way of running
//! rock, and the shared parts they are built from. Data flows one way (the
//! user's command → the local side → the link → the remote side → the
//! server); no mode's folder imports from another's.
//!
//! Ways of running:
//! * [`redirect`] — `rock -d` on the local side: resolve, bootstrap, run the
//!   user's ssh through the session, further connections, helpers, link
//!   policy.
//! * [`rockd`] — `rock -d` on the remote side: boot, detach, bridge to sshd.
//! * [`supervisor`] — `rock COMMAND`: runs the command with `librocks.so`
//!   preloaded and stays its parent.
//! * [`checkpoint`] — `rock -k`, `rock checkpoint`, `rock restore`: a
//!   session dumped with CRIU and restored later or elsewhere.
//!
//! Shared:
//! * [`relay`] — the tokio shell that drives a session over real streams,
//!   and the dialers that make its links.
//! * [`connect`] — connecting to any of a host name's addresses within a
//!   time limit: the one way every part of rock dials TCP.
//! * [`ssh`] — the SSH bootstrap: resolve with `ssh -G`, check the host
//!   key, authenticate once, start rockd, and links through ssh.
//! * [`boot`] — the boot exchange between rock and a new rockd.
//! * [`chain`] — an error with its causes on one line, as `{:#}` prints it.
//! * [`digest`] — SHA-256 of bytes and files.
//! * [`exit_status`] — the shell's status for a process that ended.
//! * [`settings`] — host profiles, the command line and the defaults,
//!   resolved once into the settings a session runs with.
//! * [`rundir`] — the private per-user and per-session directories.
//! * [`control_socket`] — the control socket every session has in its
//!   directory: its name, who may ask, how a request is read.
//! * [`status`] — `rock status`: each session's report, and the listing.

#![warn(missing_docs)]

pub mod boot;
pub mod chain;
pub mod checkpoint;
pub mod connect;

pub mod control_socket;
pub mod digest;
pub mod exit_status;
pub mod redirect;
pub mod relay;
pub mod rockd;
pub mod rundir;
pub mod settings;
pub mod ssh;
pub mod status;
pub mod supervisor;

pub use rock_proto as proto;
