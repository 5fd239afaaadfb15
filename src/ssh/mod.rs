//! The SSH bootstrap of `rock -d`: resolving the destination as OpenSSH
//! would, checking the host key, authenticating once and starting rockd,
//! and (in the firewall-friendly modes) reaching rockd through ssh again.
//!
//! * [`resolve`] — resolves a destination with `ssh -G`; OpenSSH's version.
//! * [`target`] — [`target::BootstrapTarget`]: where to connect, as whom,
//!   with which of ssh's settings.
//! * [`known_hosts`] — checks the server's host key against known_hosts.
//! * [`prompt`] — asks the user for passwords and passphrases, and tells
//!   ssh's prompts apart.
//! * [`auth`] — authenticates once: agent, key files, keyboard-interactive,
//!   password.
//! * [`bootstrap`] — connects, authenticates and starts rockd.
//! * [`proxy`] — `ProxyCommand` and `ProxyJump`: the process that carries
//!   the connection to a host behind a bastion.
//! * [`tunnel`] — links through ssh: a new SSH connection and a channel to
//!   rockd for each link.

pub mod auth;
pub mod bootstrap;
pub mod known_hosts;
pub mod prompt;
pub mod proxy;
pub mod resolve;
pub mod target;
pub mod tunnel;
