//! The SSH side of `rock -d`: resolving the destination as OpenSSH would,
//! checking the host key, authenticating once and starting rockd, and
//! (in the firewall-friendly modes) reaching rockd through ssh again.
//!
//! * [`cmdline`] — understands the ssh, scp or sftp command after `rock -d`.
//! * [`resolve`] — resolves its destination with `ssh -G`.
//! * [`known_hosts`] — checks the server's host key against known_hosts.
//! * [`prompt`] — asks the user for passwords and passphrases.
//! * [`auth`] — authenticates once: agent, key files, keyboard-interactive,
//!   password.
//! * [`bootstrap`] — connects, authenticates and starts rockd.
//! * [`proxy`] — `ProxyCommand` and `ProxyJump`: the process that carries
//!   the connection to a host behind a bastion.
//! * [`tunnel`] — reconnecting through ssh: a new SSH connection and a
//!   channel to rockd for each link.
//! * [`reconnect`] — the reconnect modes (direct, ssh, auto) and the
//!   dialer each one uses.

pub mod auth;
pub mod bootstrap;
pub mod cmdline;
pub mod known_hosts;
pub mod prompt;
pub mod proxy;
pub mod reconnect;
pub mod resolve;
pub mod tunnel;
