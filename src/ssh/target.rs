//! [`BootstrapTarget`]: where and how to reach the remote host, as
//! `ssh -G` resolved it or with OpenSSH's defaults, and the local paths
//! (known_hosts files, agent socket) those defaults name.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::connect::AddressFamily;
use crate::ssh::known_hosts;
use crate::ssh::proxy::Proxy;

/// Where and how to reach the remote host: what `ssh -G` resolved.
#[derive(Debug, Clone)]
pub struct BootstrapTarget {
    /// The destination as the user typed it, for messages.
    pub destination: String,
    /// Plain ssh's command line for this destination, for advice such as
    /// recording a host key: the user's ssh, the options of theirs that
    /// change what `ssh -G` resolves (`-F`, `-o UserKnownHostsFile=…`,
    /// `-l`, `-p`, …) and the destination. What it records lands where rock
    /// looks.
    pub ssh_command: Vec<String>,
    /// Remote user name.
    pub user: String,
    /// Host name or address to connect to (`HostName`).
    pub hostname: String,
    /// TCP port.
    pub port: u16,
    /// `IdentityFile`s, in order; empty means OpenSSH's defaults.
    pub identity_files: Vec<PathBuf>,
    /// `IdentitiesOnly`: use only agent keys that match `identity_files`.
    pub identities_only: bool,
    /// `UserKnownHostsFile`s then `GlobalKnownHostsFile`s.
    pub known_hosts_files: Vec<PathBuf>,
    /// `HostKeyAlias`: the name the host key is recorded under.
    pub host_key_alias: Option<String>,
    /// `BatchMode`: never prompt.
    pub batch_mode: bool,
    /// `ConnectTimeout`: bounds the name lookup, each TCP connect and the
    /// SSH handshake.
    pub connect_timeout: Option<Duration>,
    /// `AddressFamily` (`-4`, `-6`): the addresses every connection rock
    /// makes to the host may use.
    pub address_family: AddressFamily,
    /// `PubkeyAuthentication`: agent and key files.
    pub pubkey_authentication: bool,
    /// `PasswordAuthentication`.
    pub password_authentication: bool,
    /// `KbdInteractiveAuthentication`.
    pub kbd_interactive_authentication: bool,
    /// `NumberOfPasswordPrompts`: how many times a password, a key's
    /// passphrase or keyboard-interactive is tried before moving on.
    pub number_of_password_prompts: u32,
    /// The agent's socket (`IdentityAgent`, else `SSH_AUTH_SOCK`), already
    /// resolved by the caller; `None` means no agent.
    pub agent_socket: Option<PathBuf>,
    /// `ProxyCommand` or `ProxyJump`: the process that carries the
    /// connection, instead of a TCP connection of our own. The host key
    /// checked is still the target's, under its known_hosts name.
    pub proxy: Option<Proxy>,
}

impl BootstrapTarget {
    /// A target with OpenSSH's defaults: default known_hosts files, the
    /// agent from `SSH_AUTH_SOCK`, password and keyboard-interactive on,
    /// three tries for each secret.
    pub fn new(destination: &str, user: &str, hostname: &str, port: u16) -> BootstrapTarget {
        BootstrapTarget {
            destination: destination.to_owned(),
            ssh_command: vec!["ssh".to_owned(), destination.to_owned()],
            user: user.to_owned(),
            hostname: hostname.to_owned(),
            port,
            identity_files: Vec::new(),
            identities_only: false,
            known_hosts_files: default_known_hosts_files(),
            host_key_alias: None,
            batch_mode: false,
            connect_timeout: None,
            address_family: AddressFamily::Any,
            pubkey_authentication: true,
            password_authentication: true,
            kbd_interactive_authentication: true,
            number_of_password_prompts: 3,
            agent_socket: agent_socket_from_env(),
            proxy: None,
        }
    }

    /// The host as OpenSSH names it in prompts: the alias if set.
    pub fn prompt_host(&self) -> &str {
        self.host_key_alias.as_deref().unwrap_or(&self.hostname)
    }

    /// The name the host key is looked up under in known_hosts.
    pub fn known_hosts_name(&self) -> String {
        known_hosts::lookup_name(&self.hostname, self.port, self.host_key_alias.as_deref())
    }

    /// The known_hosts files, `~` expanded.
    pub(super) fn known_hosts_paths(&self) -> Vec<PathBuf> {
        self.known_hosts_files
            .iter()
            .map(|p| expand_tilde(p))
            .collect()
    }
}

/// OpenSSH's default known_hosts files: the user's, then the global ones.
pub fn default_known_hosts_files() -> Vec<PathBuf> {
    [
        "~/.ssh/known_hosts",
        "~/.ssh/known_hosts2",
        "/etc/ssh/ssh_known_hosts",
        "/etc/ssh/ssh_known_hosts2",
    ]
    .iter()
    .map(|p| expand_tilde(Path::new(p)))
    .collect()
}

/// The agent socket named by `SSH_AUTH_SOCK`, if set and not empty.
pub fn agent_socket_from_env() -> Option<PathBuf> {
    std::env::var_os("SSH_AUTH_SOCK")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
}

/// Expands a leading `~` to the local home directory.
pub(crate) fn expand_tilde(path: &Path) -> PathBuf {
    let Ok(rest) = path.strip_prefix("~") else {
        return path.to_path_buf();
    };
    match dirs::home_dir() {
        Some(home) => home.join(rest),
        None => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tilde_expands_to_home() {
        let home = dirs::home_dir().expect("home");
        assert_eq!(expand_tilde(Path::new("~/.ssh/x")), home.join(".ssh/x"));
        assert_eq!(expand_tilde(Path::new("/etc/x")), PathBuf::from("/etc/x"));
    }
}
