//! [`Resolved`]: the settings of `ssh -G` that rock acts on, with the
//! paths expanded as ssh expands them when it connects, and the rest of the
//! dump kept for lookups by keyword.

use std::path::PathBuf;
use std::time::Duration;

use super::ResolveError;
use super::dump::{Dump, comma_list};
use super::expand::{Tokens, last_jump_host, percent_expand};
use super::local::LocalContext;

/// `StrictHostKeyChecking`: what to do with an unknown or changed host key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrictHostKeyChecking {
    /// Refuse unknown keys.
    Yes,
    /// Accept and add unknown keys (changed keys are still refused).
    No,
    /// Ask the user (ssh's default).
    Ask,
    /// Add unknown keys, refuse changed ones.
    AcceptNew,
}

/// `AddressFamily`: which addresses rock's own connections may use.
pub use crate::connect::AddressFamily;

/// `IdentityAgent`: where the agent socket is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityAgent {
    /// The socket in `$SSH_AUTH_SOCK` (also `IdentityAgent SSH_AUTH_SOCK`).
    Default,
    /// No agent.
    None,
    /// The socket named by another environment variable (`$NAME`).
    Env(String),
    /// A socket path.
    Path(PathBuf),
}

/// The destination's effective configuration, as `ssh -G` printed it, with
/// paths expanded the way ssh expands them when it connects.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// `%n`: the host as given on the command line (alias).
    pub host_alias: String,
    /// `user`: the remote login name.
    pub user: String,
    /// `hostname`: the name or address to connect to.
    pub hostname: String,
    /// `port`.
    pub port: u16,
    /// `identityfile`, in order, expanded.
    pub identity_files: Vec<PathBuf>,
    /// `identitiesonly`.
    pub identities_only: bool,
    /// `identityagent`.
    pub identity_agent: IdentityAgent,
    /// `certificatefile`, in order, expanded.
    pub certificate_files: Vec<PathBuf>,
    /// `userknownhostsfile`, expanded (`none` gives an empty list).
    pub user_known_hosts_files: Vec<PathBuf>,
    /// `globalknownhostsfile`.
    pub global_known_hosts_files: Vec<PathBuf>,
    /// `knownhostscommand`, raw.
    pub known_hosts_command: Option<String>,
    /// `hostkeyalias`: the name to look up in known_hosts instead of
    /// `hostname` (`%k` is this, else the alias).
    pub host_key_alias: Option<String>,
    /// `stricthostkeychecking`.
    pub strict_host_key_checking: StrictHostKeyChecking,
    /// `hashknownhosts`: write new known_hosts entries hashed.
    pub hash_known_hosts: bool,
    /// `checkhostip`.
    pub check_host_ip: bool,
    /// `batchmode`: never prompt.
    pub batch_mode: bool,
    /// `connecttimeout` (`none` and 0 mean the kernel's timeout).
    pub connect_timeout: Option<Duration>,
    /// `connectionattempts`.
    pub connection_attempts: u32,
    /// `passwordauthentication`.
    pub password_authentication: bool,
    /// `kbdinteractiveauthentication`.
    pub kbd_interactive_authentication: bool,
    /// `pubkeyauthentication` (`unbound` and `host-bound` are on).
    pub pubkey_authentication: bool,
    /// `preferredauthentications`, if set.
    pub preferred_authentications: Option<Vec<String>>,
    /// `numberofpasswordprompts`.
    pub number_of_password_prompts: u32,
    /// `proxyjump`, raw (`[user@]host[:port]`, comma-separated hops).
    pub proxy_jump: Option<String>,
    /// `proxycommand`, raw; see [`Resolved::proxy_command_line`].
    pub proxy_command: Option<String>,
    /// `serveraliveinterval` (0 means off).
    pub server_alive_interval: Option<Duration>,
    /// `serveralivecountmax`.
    pub server_alive_count_max: u32,
    /// `tcpkeepalive`.
    pub tcp_keep_alive: bool,
    /// `addressfamily`.
    pub address_family: AddressFamily,
    /// `bindaddress`.
    pub bind_address: Option<String>,
    /// `bindinterface`.
    pub bind_interface: Option<String>,
    /// `hostkeyalgorithms`, in order of preference.
    pub host_key_algorithms: Vec<String>,
    /// `pubkeyacceptedalgorithms`.
    pub pubkey_accepted_algorithms: Vec<String>,
    /// What ssh printed on stderr while succeeding (e.g. a missing `-i` file).
    pub warnings: Vec<String>,
    /// Every `key value` line, for settings without a field.
    dump: Vec<(String, String)>,
}

impl Resolved {
    /// Reads an `ssh -G` dump for `host`. `conn_hash` is `%C`, needed only
    /// if an identity or certificate file uses it.
    pub fn from_dump(
        host: &str,
        dump: &str,
        local: &LocalContext,
        conn_hash: Option<&str>,
    ) -> Result<Self, ResolveError> {
        let d = Dump::parse(host, dump);
        let user = d.required("user")?.to_string();
        let hostname = d.required("hostname")?.to_string();
        let port = d.number("port", 22)?;
        let host_key_alias = d.one("hostkeyalias").map(String::from);
        let proxy_jump = d
            .one("proxyjump")
            .filter(|v| *v != "none")
            .map(String::from);
        let tokens = Tokens {
            local,
            alias: host,
            hostname: &hostname,
            port,
            user: &user,
            key_alias: host_key_alias.as_deref().unwrap_or(host),
            jump_host: proxy_jump
                .as_deref()
                .map(last_jump_host)
                .unwrap_or_default(),
            conn_hash,
        };
        let expand_all = |key: &'static str| -> Result<Vec<PathBuf>, ResolveError> {
            d.all(key)
                .map(|raw| {
                    tokens
                        .expand(raw, true)
                        .map(PathBuf::from)
                        .map_err(|why| d.expand_error(key, raw, why))
                })
                .collect()
        };
        Ok(Resolved {
            host_alias: host.to_string(),
            identity_files: expand_all("identityfile")?,
            certificate_files: expand_all("certificatefile")?,
            identities_only: d.flag("identitiesonly", false)?,
            identity_agent: d.identity_agent(local)?,
            user_known_hosts_files: d.path_list("userknownhostsfile", local)?,
            global_known_hosts_files: d.path_list("globalknownhostsfile", local)?,
            known_hosts_command: d
                .one("knownhostscommand")
                .filter(|v| *v != "none")
                .map(String::from),
            strict_host_key_checking: d.strict_host_key_checking()?,
            hash_known_hosts: d.flag("hashknownhosts", false)?,
            check_host_ip: d.flag("checkhostip", false)?,
            batch_mode: d.flag("batchmode", false)?,
            connect_timeout: d.seconds("connecttimeout")?,
            connection_attempts: d.number("connectionattempts", 1)?,
            password_authentication: d.flag("passwordauthentication", true)?,
            kbd_interactive_authentication: d.flag("kbdinteractiveauthentication", true)?,
            pubkey_authentication: d.pubkey_authentication()?,
            preferred_authentications: d.one("preferredauthentications").map(comma_list),
            number_of_password_prompts: d.number("numberofpasswordprompts", 3)?,
            proxy_command: d
                .one("proxycommand")
                .filter(|v| *v != "none")
                .map(String::from),
            server_alive_interval: d.seconds("serveraliveinterval")?,
            server_alive_count_max: d.number("serveralivecountmax", 3)?,
            tcp_keep_alive: d.flag("tcpkeepalive", true)?,
            address_family: d.address_family()?,
            bind_address: d.one("bindaddress").map(String::from),
            bind_interface: d.one("bindinterface").map(String::from),
            host_key_algorithms: d
                .one("hostkeyalgorithms")
                .map(comma_list)
                .unwrap_or_default(),
            pubkey_accepted_algorithms: d
                .one("pubkeyacceptedalgorithms")
                .map(comma_list)
                .unwrap_or_default(),
            warnings: Vec::new(),
            user,
            hostname,
            port,
            host_key_alias,
            proxy_jump,
            dump: d.entries,
        })
    }

    /// The first value ssh printed for `key` (lowercase), for settings
    /// without a field of their own.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.get_all(key).next()
    }

    /// Every value ssh printed for `key` (lowercase), in order.
    pub fn get_all<'a, 'k>(&'a self, key: &'k str) -> impl Iterator<Item = &'a str> + use<'a, 'k> {
        self.dump
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The ProxyCommand as ssh runs it (through the user's shell), with
    /// `%h`, `%n`, `%p`, `%r` and `%%` expanded; `None` without one.
    pub fn proxy_command_line(&self) -> Result<Option<String>, ResolveError> {
        let Some(raw) = &self.proxy_command else {
            return Ok(None);
        };
        let port = self.port.to_string();
        let tokens = [
            ('h', self.hostname.as_str()),
            ('n', &self.host_alias),
            ('p', &port),
            ('r', &self.user),
        ];
        percent_expand(raw, &tokens, false)
            .map(Some)
            .map_err(|source| ResolveError::Expand {
                host: self.host_alias.clone(),
                key: "proxycommand",
                value: raw.clone(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::resolve::local::me;

    const DUMP: &str = "\
host work
user alice
hostname work.example.com
port 2200
addressfamily inet6
batchmode yes
checkhostip no
hashknownhosts yes
identitiesonly yes
kbdinteractiveauthentication no
passwordauthentication yes
pubkeyauthentication host-bound
stricthostkeychecking accept-new
tcpkeepalive no
connectionattempts 2
numberofpasswordprompts 1
serveralivecountmax 4
serveraliveinterval 15
hostkeyalias alias-%h
identityagent /home/me/agent.sock
identityfile ~/.ssh/id_%r@%h:%p
identityfile /keys/%n-%k-%%-%l-%L-%u-%d-%i-%j
certificatefile ~/.ssh/%r-cert.pub
globalknownhostsfile /etc/ssh/ssh_known_hosts /etc/ssh/ssh_known_hosts2
userknownhostsfile /home/me/.ssh/kh_work.example.com ~/.ssh/old
preferredauthentications publickey,password
hostkeyalgorithms ssh-ed25519,rsa-sha2-512
pubkeyacceptedalgorithms ssh-ed25519
connecttimeout 7
bindaddress 192.0.2.1
proxyjump jumper@bastion:2022
proxycommand ssh -W %h:%p gw
canonicalizePermittedcnames none
";

    #[test]
    fn canned_dump_gives_every_field() {
        let r = Resolved::from_dump("work", DUMP, &me(), None).unwrap();
        assert_eq!(r.host_alias, "work");
        assert_eq!(r.user, "alice");
        assert_eq!(r.hostname, "work.example.com");
        assert_eq!(r.port, 2200);
        assert_eq!(
            r.identity_files,
            [
                PathBuf::from("/home/me/.ssh/id_alice@work.example.com:2200"),
                PathBuf::from("/keys/work-alias-%h-%-box.lan-box-me-/home/me-1000-bastion"),
            ]
        );
        assert!(r.identities_only);
        assert_eq!(
            r.identity_agent,
            IdentityAgent::Path("/home/me/agent.sock".into())
        );
        assert_eq!(
            r.certificate_files,
            [PathBuf::from("/home/me/.ssh/alice-cert.pub")]
        );
        assert_eq!(
            r.user_known_hosts_files,
            [
                PathBuf::from("/home/me/.ssh/kh_work.example.com"),
                PathBuf::from("/home/me/.ssh/old")
            ]
        );
        assert_eq!(
            r.global_known_hosts_files,
            [
                PathBuf::from("/etc/ssh/ssh_known_hosts"),
                PathBuf::from("/etc/ssh/ssh_known_hosts2")
            ]
        );
        assert_eq!(r.known_hosts_command, None);
        assert_eq!(r.host_key_alias.as_deref(), Some("alias-%h"));
        assert_eq!(r.strict_host_key_checking, StrictHostKeyChecking::AcceptNew);
        assert!(r.hash_known_hosts && !r.check_host_ip && r.batch_mode);
        assert_eq!(r.connect_timeout, Some(Duration::from_secs(7)));
        assert_eq!(r.connection_attempts, 2);
        assert!(
            r.password_authentication
                && !r.kbd_interactive_authentication
                && r.pubkey_authentication
        );
        assert_eq!(
            r.preferred_authentications,
            Some(vec!["publickey".into(), "password".into()])
        );
        assert_eq!(r.number_of_password_prompts, 1);
        assert_eq!(r.proxy_jump.as_deref(), Some("jumper@bastion:2022"));
        assert_eq!(r.proxy_command.as_deref(), Some("ssh -W %h:%p gw"));
        assert_eq!(
            r.proxy_command_line().unwrap().as_deref(),
            Some("ssh -W work.example.com:2200 gw")
        );
        assert_eq!(r.server_alive_interval, Some(Duration::from_secs(15)));
        assert_eq!(r.server_alive_count_max, 4);
        assert!(!r.tcp_keep_alive);
        assert_eq!(r.address_family, AddressFamily::Inet6);
        assert_eq!(r.bind_address.as_deref(), Some("192.0.2.1"));
        assert_eq!(r.bind_interface, None);
        assert_eq!(r.host_key_algorithms, ["ssh-ed25519", "rsa-sha2-512"]);
        assert_eq!(r.pubkey_accepted_algorithms, ["ssh-ed25519"]);
        assert_eq!(r.get("canonicalizepermittedcnames"), Some("none"));
        assert_eq!(r.get_all("identityfile").count(), 2);
    }

    #[test]
    fn defaults_and_special_values() {
        let dump = "user u\nhostname h\nport 22\nconnecttimeout none\nserveraliveinterval 0\n\
                    userknownhostsfile none\nidentityagent SSH_AUTH_SOCK\nstricthostkeychecking false\n\
                    pubkeyauthentication unbound\n";
        let r = Resolved::from_dump("h", dump, &me(), None).unwrap();
        assert_eq!(r.connect_timeout, None);
        assert_eq!(r.server_alive_interval, None);
        assert!(r.user_known_hosts_files.is_empty());
        assert_eq!(r.identity_agent, IdentityAgent::Default);
        assert_eq!(r.strict_host_key_checking, StrictHostKeyChecking::No);
        assert!(r.pubkey_authentication && r.password_authentication && !r.batch_mode);
        assert_eq!(r.preferred_authentications, None);
        assert_eq!(r.proxy_command_line().unwrap(), None);
        let agent = |v: &str| {
            let dump = format!("user u\nhostname h\nidentityagent {v}\n");
            Resolved::from_dump("h", &dump, &me(), None)
                .unwrap()
                .identity_agent
        };
        assert_eq!(agent("none"), IdentityAgent::None);
        assert_eq!(agent("$MY_AGENT"), IdentityAgent::Env("MY_AGENT".into()));
        assert_eq!(
            agent("~/a.sock"),
            IdentityAgent::Path("/home/me/a.sock".into())
        );
    }

    #[test]
    fn unknown_percent_token_in_identity_file_names_the_setting() {
        let dump = "user u\nhostname h\nidentityfile ~/.ssh/%T\n";
        let e = Resolved::from_dump("h", dump, &me(), None).unwrap_err();
        assert_eq!(
            crate::chain::chain(&e),
            "cannot expand `~/.ssh/%T` from the identityfile setting for `h` (fix it in your ssh \
             configuration): unknown token %T"
        );
    }
}
