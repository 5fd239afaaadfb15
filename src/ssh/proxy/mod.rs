//! Reaching a host through a proxy process, as OpenSSH does for
//! `ProxyCommand` and `ProxyJump`: one job, to start the process that
//! carries the byte stream to the target's sshd and to hand its stdin and
//! stdout over as one stream ([`ProxyStream`]).
//!
//! * `ProxyCommand` runs exactly as ssh runs it: `exec COMMAND` through
//!   `$SHELL -c` (`/bin/sh` when `$SHELL` is unset or empty), its `%`
//!   tokens already expanded by `Resolved::proxy_command_line`.
//! * `ProxyJump` becomes the command ssh makes of it (`ssh.c`): the user's
//!   ssh with `[-l user] [-p port] [-J earlier,hops] [-F config] -W
//!   '[host]:port' lasthop`; only `-F` and `-v` of the user's options are
//!   passed on, as ssh passes them. For a reconnect (`batch`), `-o BatchMode=yes` goes
//!   first, so the jump never prompts while the terminal is the user's.
//!
//! Invariants:
//! * The child's stderr is ours (the terminal): a jump host's prompts and
//!   errors reach the user.
//! * The child is killed and reaped when the [`ProxyStream`] or its
//!   [`ProxyGuard`] is dropped, whichever comes first; no zombie is left.
//! * Its exit status, once it has one, is known to the guard, so a failed
//!   handshake can say that the proxy exited and how.
//!
//! * `jump` — the `ProxyJump` value read, and its ssh command.
//! * `stream` — [`ProxyStream`], [`ProxyGuard`] and the child's life.

use std::ffi::OsString;
use std::fmt;

mod jump;
mod stream;

pub use jump::{JumpHop, JumpSpec};
pub use stream::{ProxyGuard, ProxyStream};

/// How to reach the target: the process to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proxy {
    /// `ProxyCommand`, `%` tokens expanded, run through the user's shell.
    Command {
        /// The command line.
        line: String,
    },
    /// `ProxyJump`: the user's ssh, `-W` to the target through the hops.
    Jump {
        /// The ssh program to run (the user's, as their command names it).
        program: OsString,
        /// The jump hosts, as `ssh -G` printed them.
        spec: JumpSpec,
        /// The target's host name and port, for `-W`.
        target_host: String,
        /// The target's port.
        target_port: u16,
        /// The user's `-F`, which ssh passes on to the jump.
        config: Option<OsString>,
        /// How many `-v` the user gave, which ssh passes on too.
        verbosity: u8,
    },
}

impl Proxy {
    /// The program and arguments to start; `batch` (reconnects) adds
    /// `-o BatchMode=yes` to a generated jump command (a `ProxyCommand` is
    /// run as given).
    pub fn argv(&self, batch: bool) -> Vec<OsString> {
        match self {
            Proxy::Command { line } => {
                let shell = std::env::var_os("SHELL")
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "/bin/sh".into());
                vec![shell, "-c".into(), format!("exec {line}").into()]
            }
            Proxy::Jump {
                program,
                spec,
                target_host,
                target_port,
                config,
                verbosity,
            } => spec.command(
                program,
                target_host,
                *target_port,
                config.as_deref(),
                *verbosity,
                batch,
            ),
        }
    }
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proxy::Command { line } => write!(f, "ProxyCommand `{line}`"),
            Proxy::Jump { spec, .. } => write!(f, "ProxyJump {spec}"),
        }
    }
}
