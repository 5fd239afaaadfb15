//! The SSH bootstrap of `rock -d`: resolving the destination as OpenSSH
//! would, checking the host key, authenticating once and starting rockd.
//! (Built by the `rock -d` work; empty until then.)
//!
//! * [`cmdline`] — understands the ssh, scp or sftp command after `rock -d`.
//! * [`resolve`] — resolves its destination with `ssh -G`.
//! * [`known_hosts`] — checks the server's host key against known_hosts.
//! * [`prompt`] — asks the user for passwords and passphrases.
//! * [`auth`] — authenticates once: agent, key files, keyboard-interactive,
//!   password.
//! * [`bootstrap`] — connects, authenticates and starts rockd.

pub mod auth;
pub mod bootstrap;
pub mod cmdline;
pub mod known_hosts;
pub mod prompt;
pub mod resolve;
