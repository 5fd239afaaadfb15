//! The local side of `rock -d` around the relay: the private session
//! directory, the control socket, and the helpers the inner ssh starts.
//!
//! * [`rundir`] — private per-user and per-session directories.
//! * [`control`] — the rock process's control socket (proxy, askpass and
//!   `rock status`).
//! * [`helper`] — the proxy and askpass helper modes of the rock binary.
//! * [`fdpass`] — passing a descriptor with SCM_RIGHTS.
//! * [`notice`] — the terminal title that shows a suspended session.

pub mod control;
pub mod fdpass;
pub mod helper;
pub mod notice;
pub mod rundir;
