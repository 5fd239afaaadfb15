//! Why a bootstrap failed: [`BootstrapError`], and the messages that tell
//! the user what was refused and what to do (record the host key with
//! plain ssh, install rockd, copy rock's own, ...).

use std::path::{Path, PathBuf};

use super::command::sh_quote;
use crate::ssh::auth::AuthError;
use crate::ssh::target::BootstrapTarget;

/// The host key a server presented, as host-key errors show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedKey {
    /// The name it was looked up under (`[host]:port`, the alias, ...).
    pub name: String,
    /// Its type (`ssh-ed25519`, ...).
    pub key_type: String,
    /// `SHA256:...`.
    pub fingerprint: String,
}

/// Why the bootstrap failed. Every variant maps to ssh's exit status 255.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// No TCP connection could be made: it names the host, the port,
    /// the addresses tried, and keeps the last one's cause.
    #[error(transparent)]
    Unreachable(#[from] crate::connect::ConnectError),
    /// The connection through `ProxyCommand` or `ProxyJump` failed: the
    /// proxy could not start, or ended before the SSH connection was made.
    #[error(
        "cannot reach {destination} ({host}) through its {proxy}: {detail}\n  \
         check that `ssh {destination}` works without rock"
    )]
    Proxy {
        /// The target host.
        host: String,
        /// `ProxyJump …` or `ProxyCommand …`.
        proxy: String,
        /// What happened (naming the proxy's command).
        detail: String,
        /// The destination as typed.
        destination: String,
    },
    /// The host key is not in any known_hosts file.
    #[error("{}", unknown_key_message(.key, .files, .other_types, .ssh_command))]
    HostKeyUnknown {
        /// The key the server presented.
        key: Box<PresentedKey>,
        /// The files searched.
        files: Vec<PathBuf>,
        /// Types recorded for the host that the server did not present.
        other_types: Vec<String>,
        /// The plain ssh command that records the key where rock looks for
        /// it: the user's options (`-F`, `-o UserKnownHostsFile=…`) kept.
        ssh_command: String,
    },
    /// The host presented a different key than the one recorded.
    #[error("{}", changed_key_message(.key, .file, *.line, .ssh_command))]
    HostKeyChanged {
        /// The key the server presented.
        key: Box<PresentedKey>,
        /// The file with the recorded key.
        file: PathBuf,
        /// Its line.
        line: usize,
        /// The plain ssh command that records the new key where rock
        /// looks for it.
        ssh_command: String,
    },
    /// The host presented a key marked `@revoked`.
    #[error(
        "the {} host key of {} ({}) is marked @revoked in {}:{line}; \
         rock refused to connect. Ask the host's administrator which key is valid.",
        .key.key_type, .key.name, .key.fingerprint, .file.display()
    )]
    HostKeyRevoked {
        /// The key the server presented.
        key: Box<PresentedKey>,
        /// The file with the `@revoked` line.
        file: PathBuf,
        /// Its line.
        line: usize,
    },
    /// Authentication failed.
    #[error(transparent)]
    AuthFailed(Box<AuthError>),
    /// No rockd candidate exists on the remote host.
    #[error(
        "rockd is not installed on {host} (tried: {}). Install it there \
         (for instance `cargo install rocks`, or copy the rockd binary to ~/.local/bin) \
         or set its path in the rock configuration.",
        .tried.join(", ")
    )]
    RockdNotFound {
        /// The host.
        host: String,
        /// Every name and path tried.
        tried: Vec<String>,
    },
    /// rockd ran but reported a failure, or ended without answering.
    #[error("rockd on {host} failed: {message}{}", stderr_suffix(.stderr))]
    RockdFailed {
        /// The host.
        host: String,
        /// rockd's message.
        message: String,
        /// The end of its stderr, if any.
        stderr: String,
    },
    /// rockd speaks no version this rock speaks.
    #[error(
        "rockd on {host} is incompatible with this rock: {detail}. Install a matching rockd there."
    )]
    RockdIncompatible {
        /// The host.
        host: String,
        /// Versions on both sides.
        detail: String,
    },
    /// rockd was missing or incompatible, and the policy (or the user)
    /// said not to copy rock's own.
    #[error("{cause}\n  {advice}")]
    InstallDeclined {
        /// rockd missing or incompatible.
        cause: Box<BootstrapError>,
        /// Why nothing was copied, and how to copy it.
        advice: String,
    },
    /// rockd was missing or incompatible, and rock's own could not be
    /// installed there or did not start.
    #[error("{cause}\n  {detail}{}", stderr_suffix(.stderr))]
    InstallFailed {
        /// What failed first: rockd missing or incompatible, or the
        /// installed rockd's own failure.
        cause: Box<BootstrapError>,
        /// What went wrong with the installation, and what to do.
        detail: String,
        /// The end of the remote stderr, if any.
        stderr: String,
    },
    /// The SSH connection or the boot exchange went wrong.
    #[error("ssh bootstrap to {host}: {detail}{}", stderr_suffix(.stderr))]
    Protocol {
        /// The host.
        host: String,
        /// What went wrong.
        detail: String,
        /// The end of the remote stderr, if any.
        stderr: String,
    },
}

impl BootstrapError {
    /// The exit status rock reports, as ssh does for its own failures.
    pub fn exit_code(&self) -> i32 {
        255
    }

    /// A [`BootstrapError::Protocol`] without remote stderr.
    pub(super) fn protocol(host: &str, detail: impl Into<String>) -> BootstrapError {
        BootstrapError::Protocol {
            host: host.to_owned(),
            detail: detail.into(),
            stderr: String::new(),
        }
    }
}

/// The target's plain ssh command ([`BootstrapTarget::ssh_command`]) as
/// one line to paste into a shell.
pub(super) fn plain_ssh(target: &BootstrapTarget) -> String {
    let words: Vec<String> = target.ssh_command.iter().map(|w| sh_quote(w)).collect();
    words.join(" ")
}

/// The end of the remote stderr, on lines of its own, if any.
fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!("\n  remote stderr: {}", stderr.replace('\n', "\n  "))
    }
}

fn unknown_key_message(
    key: &PresentedKey,
    files: &[PathBuf],
    other_types: &[String],
    ssh_command: &str,
) -> String {
    let PresentedKey {
        name,
        key_type,
        fingerprint,
    } = key;
    let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let mut msg = format!(
        "the host key of {name} is not known (searched {}).\n  \
         The server presented the {key_type} key {fingerprint}.",
        if files.is_empty() {
            "no known_hosts files".to_owned()
        } else {
            files.join(", ")
        }
    );
    if !other_types.is_empty() {
        msg.push_str(&format!(
            "\n  Keys of other types are recorded for this host ({}).",
            other_types.join(", ")
        ));
    }
    msg.push_str(&format!(
        "\n  rock never accepts an unknown host key. Verify the fingerprint and record \
         the key by connecting once with plain ssh:\n      {ssh_command}\n  \
         then run rock again."
    ));
    msg
}

fn changed_key_message(key: &PresentedKey, file: &Path, line: usize, ssh_command: &str) -> String {
    let PresentedKey {
        name,
        key_type,
        fingerprint,
    } = key;
    format!(
        "\n@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
         @    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
         @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
         The {key_type} host key of {name} is now {fingerprint},\n\
         which differs from the key recorded in {file}:{line}.\n\
         Someone may be intercepting this connection (a man-in-the-middle attack),\n\
         or the host's key was replaced. rock refused to connect.\n\
         If you know the key was replaced legitimately, remove the old entry with\n    \
         ssh-keygen -f '{file}' -R '{name}'\n\
         and record the new key by connecting once with plain `{ssh_command}`.",
        file = file.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presented() -> Box<PresentedKey> {
        Box::new(PresentedKey {
            name: "work".to_owned(),
            key_type: "ssh-ed25519".to_owned(),
            fingerprint: "SHA256:abc".to_owned(),
        })
    }

    /// A target whose user typed `-F` and `-o UserKnownHostsFile=…`.
    fn target() -> BootstrapTarget {
        let mut target = BootstrapTarget::new("work", "bob", "work.example", 22);
        target.ssh_command = [
            "ssh",
            "-F",
            "/home/bob/my config",
            "-o",
            "UserKnownHostsFile=/tmp/kh",
            "work",
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        target
    }

    #[test]
    fn unknown_key_advice_records_the_key_where_rock_looks() {
        let err = BootstrapError::HostKeyUnknown {
            key: presented(),
            files: vec![PathBuf::from("/tmp/kh")],
            other_types: vec![],
            ssh_command: plain_ssh(&target()),
        };
        let text = err.to_string();
        assert!(
            text.contains(
                "plain ssh:\n      ssh -F '/home/bob/my config' -o UserKnownHostsFile=/tmp/kh work\n"
            ),
            "{text}"
        );
        assert!(text.contains("SHA256:abc"), "{text}");
    }

    #[test]
    fn changed_key_advice_records_the_new_key_where_rock_looks() {
        let err = BootstrapError::HostKeyChanged {
            key: presented(),
            file: PathBuf::from("/tmp/kh"),
            line: 3,
            ssh_command: plain_ssh(&target()),
        };
        let text = err.to_string();
        assert!(text.contains("ssh-keygen -f '/tmp/kh' -R 'work'"), "{text}");
        assert!(
            text.contains("`ssh -F '/home/bob/my config' -o UserKnownHostsFile=/tmp/kh work`"),
            "{text}"
        );
    }

    #[test]
    fn without_options_the_advice_is_ssh_and_the_destination() {
        let target = BootstrapTarget::new("work", "bob", "work.example", 22);
        assert_eq!(plain_ssh(&target), "ssh work");
    }
}
