//! Resolving the destination exactly as OpenSSH would: run `ssh -G` with the
//! user's own options and read the configuration it prints. There is no
//! ssh_config parser here, only a reader of ssh's lowercase `key value`
//! dump and the `~`, `%` and `${}` expansion ssh applies when it connects.
//!
//! What `ssh -G` leaves unexpanded differs by field: `identityfile` and
//! `certificatefile` come out raw, while OpenSSH 8.4 and later print
//! `userknownhostsfile` and `identityagent` already expanded (older releases
//! leave a `~`, which is expanded here). A value is expanded at most once.
//!
//! `ssh -G` never connects but may run `Match exec` commands and look names
//! up for `CanonicalizeHostname`, as ssh itself would; it blocks, so async
//! callers run it on a blocking thread.

use std::ffi::{CStr, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::cmdline::{OpensshVersion, ParsedCommand};

/// Why the destination could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// ssh could not be started.
    #[error(
        "cannot run `{program}` to {purpose}: {source} — is OpenSSH's ssh installed and on PATH?"
    )]
    Spawn {
        /// The ssh program.
        program: String,
        /// What it was run for.
        purpose: String,
        /// What exec said.
        source: std::io::Error,
    },
    /// `ssh -G` refused the command line or the configuration; `stderr` is
    /// ssh's own message, with the file and line at fault.
    #[error("ssh -G could not resolve `{host}`: {stderr}")]
    Config {
        /// The destination.
        host: String,
        /// ssh's stderr, verbatim.
        stderr: String,
    },
    /// A line of the dump that rock cannot read.
    #[error(
        "`ssh -G {host}` printed `{line}`, which rock cannot read ({why}) — please report it with the output of `ssh -V`"
    )]
    Output {
        /// The destination.
        host: String,
        /// The line.
        line: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A `~`, `%` or `${}` that OpenSSH would refuse to expand too.
    #[error(
        "cannot expand `{value}` from the {key} setting for `{host}`: {why} — fix it in your ssh configuration"
    )]
    Expand {
        /// The destination.
        host: String,
        /// The ssh_config keyword, lowercase.
        key: &'static str,
        /// The raw value.
        value: String,
        /// What failed.
        why: String,
    },
    /// The local user could not be looked up.
    #[error("cannot find who you are on this machine: {0}")]
    LocalUser(String),
    /// `ssh -V` printed something that is not an OpenSSH banner.
    #[error(
        "`{program} -V` printed `{output}`, which is not an OpenSSH version — rock -d needs OpenSSH's ssh"
    )]
    Version {
        /// The ssh program.
        program: String,
        /// What it printed.
        output: String,
    },
}

/// The local half of the `%` tokens: who runs ssh, where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalContext {
    /// `%u`: the login name of the real uid.
    pub user: String,
    /// `%d` and `~`: the home directory in the password database (not
    /// `$HOME`, as in ssh).
    pub home: PathBuf,
    /// `%i`: the real uid.
    pub uid: u32,
    /// `%l`: the host name; `%L` is its first label.
    pub hostname: String,
}

impl LocalContext {
    /// Looks up the real uid in the password database and the host name.
    pub fn current() -> Result<Self, ResolveError> {
        // SAFETY: getuid cannot fail and touches no memory of ours.
        let uid = unsafe { libc::getuid() };
        let (user, home) = passwd_entry(PasswdKey::Uid(uid)).ok_or_else(|| {
            ResolveError::LocalUser(format!("uid {uid} is not in the password database"))
        })?;
        let hostname =
            local_hostname().map_err(|e| ResolveError::LocalUser(format!("gethostname: {e}")))?;
        Ok(LocalContext {
            user,
            home,
            uid,
            hostname,
        })
    }
}

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

/// `AddressFamily`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressFamily {
    /// IPv4 or IPv6.
    Any,
    /// IPv4 only (`-4`).
    Inet,
    /// IPv6 only (`-6`).
    Inet6,
}

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

/// Resolves the destination of a parsed `rock -d` command with the ssh
/// that command runs.
pub fn resolve_command(cmd: &ParsedCommand) -> Result<Resolved, ResolveError> {
    resolve(
        cmd.ssh_program(),
        cmd.resolve_args(),
        &cmd.destination().host,
    )
}

/// Runs `<ssh_program> -G <resolve_args> -- <host>` and reads the result.
pub fn resolve(
    ssh_program: &OsStr,
    resolve_args: &[OsString],
    host: &str,
) -> Result<Resolved, ResolveError> {
    let local = LocalContext::current()?;
    let (dump, warnings) = run_ssh_g(ssh_program, &[], resolve_args, host)?;
    let needs_hash = dump.lines().any(|l| {
        (l.starts_with("identityfile ") || l.starts_with("certificatefile ")) && l.contains("%C")
    });
    let conn_hash = if needs_hash {
        Some(connection_hash(ssh_program, resolve_args, host)?)
    } else {
        None
    };
    let mut resolved = Resolved::from_dump(host, &dump, &local, conn_hash.as_deref())?;
    resolved.warnings = warnings;
    Ok(resolved)
}

/// Asks `<ssh_program> -V` which OpenSSH it is.
pub fn openssh_version(ssh_program: &OsStr) -> Result<OpensshVersion, ResolveError> {
    let program = ssh_program.to_string_lossy().into_owned();
    let out = Command::new(ssh_program)
        .arg("-V")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ResolveError::Spawn {
            program: program.clone(),
            purpose: "learn its OpenSSH version".into(),
            source,
        })?;
    // ssh prints its banner on stderr.
    let banner = String::from_utf8_lossy(if out.stderr.is_empty() {
        &out.stdout
    } else {
        &out.stderr
    })
    .trim()
    .to_string();
    OpensshVersion::from_banner(&banner).ok_or(ResolveError::Version {
        program,
        output: banner,
    })
}

/// `%C` as this ssh computes it (a hash whose inputs changed across
/// releases): ask ssh to expand it as the ControlPath.
fn connection_hash(
    ssh_program: &OsStr,
    resolve_args: &[OsString],
    host: &str,
) -> Result<String, ResolveError> {
    let (dump, _) = run_ssh_g(ssh_program, &["-o", "ControlPath=%C"], resolve_args, host)?;
    dump.lines()
        .find_map(|l| l.strip_prefix("controlpath "))
        .map(str::to_string)
        .ok_or_else(|| ResolveError::Output {
            host: host.into(),
            line: "(no controlpath line)".into(),
            why: "asked for ControlPath=%C",
        })
}

/// Runs `ssh -G -T <extra> <args> -- <host>`; returns stdout and the lines
/// of stderr. `-T` keeps ssh from warning that stdin is not a terminal.
fn run_ssh_g(
    ssh_program: &OsStr,
    extra: &[&str],
    args: &[OsString],
    host: &str,
) -> Result<(String, Vec<String>), ResolveError> {
    let out = Command::new(ssh_program)
        .args(["-G", "-T"])
        .args(extra)
        .args(args)
        .arg("--")
        .arg(host)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ResolveError::Spawn {
            program: ssh_program.to_string_lossy().into_owned(),
            purpose: format!("resolve `{host}`"),
            source,
        })?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim_end().to_string();
    if !out.status.success() {
        let stderr = if stderr.is_empty() {
            format!("ssh {}", out.status)
        } else {
            stderr
        };
        return Err(ResolveError::Config {
            host: host.into(),
            stderr,
        });
    }
    let warnings = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect();
    Ok((String::from_utf8_lossy(&out.stdout).into_owned(), warnings))
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
            .map_err(|why| ResolveError::Expand {
                host: self.host_alias.clone(),
                key: "proxycommand",
                value: raw.clone(),
                why,
            })
    }
}

/// The `key value` lines of a dump.
struct Dump<'a> {
    host: &'a str,
    entries: Vec<(String, String)>,
}

impl<'a> Dump<'a> {
    fn parse(host: &'a str, text: &str) -> Self {
        let entries = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let (k, v) = l.split_once(' ').unwrap_or((l, ""));
                (k.to_ascii_lowercase(), v.to_string())
            })
            .collect();
        Dump { host, entries }
    }

    fn all<'s, 'k>(&'s self, key: &'k str) -> impl Iterator<Item = &'s str> + use<'s, 'k, 'a> {
        self.entries
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn one(&self, key: &str) -> Option<&str> {
        self.all(key).next()
    }

    fn bad(&self, key: &str, value: &str, why: &'static str) -> ResolveError {
        ResolveError::Output {
            host: self.host.into(),
            line: format!("{key} {value}"),
            why,
        }
    }

    fn expand_error(&self, key: &'static str, value: &str, why: String) -> ResolveError {
        ResolveError::Expand {
            host: self.host.into(),
            key,
            value: value.into(),
            why,
        }
    }

    fn required(&self, key: &str) -> Result<&str, ResolveError> {
        self.one(key)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| self.bad(key, "", "missing"))
    }

    fn number<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, ResolveError> {
        match self.one(key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| self.bad(key, v, "not a number")),
        }
    }

    /// yes/true and no/false, as ssh prints booleans.
    fn flag(&self, key: &str, default: bool) -> Result<bool, ResolveError> {
        match self.one(key) {
            None => Ok(default),
            Some("yes" | "true") => Ok(true),
            Some("no" | "false") => Ok(false),
            Some(v) => Err(self.bad(key, v, "not yes or no")),
        }
    }

    /// Seconds; `none` and 0 mean no timer.
    fn seconds(&self, key: &str) -> Result<Option<Duration>, ResolveError> {
        match self.one(key) {
            None | Some("none") => Ok(None),
            Some(v) => match v.parse::<u64>() {
                Ok(0) => Ok(None),
                Ok(s) => Ok(Some(Duration::from_secs(s))),
                Err(_) => Err(self.bad(key, v, "not a number of seconds")),
            },
        }
    }

    fn strict_host_key_checking(&self) -> Result<StrictHostKeyChecking, ResolveError> {
        let key = "stricthostkeychecking";
        match self.one(key) {
            None | Some("ask") => Ok(StrictHostKeyChecking::Ask),
            Some("yes" | "true") => Ok(StrictHostKeyChecking::Yes),
            Some("no" | "false" | "off") => Ok(StrictHostKeyChecking::No),
            Some("accept-new") => Ok(StrictHostKeyChecking::AcceptNew),
            Some(v) => Err(self.bad(key, v, "unknown mode")),
        }
    }

    fn pubkey_authentication(&self) -> Result<bool, ResolveError> {
        match self.one("pubkeyauthentication") {
            Some("unbound" | "host-bound") => Ok(true),
            _ => self.flag("pubkeyauthentication", true),
        }
    }

    fn address_family(&self) -> Result<AddressFamily, ResolveError> {
        match self.one("addressfamily") {
            None | Some("any") => Ok(AddressFamily::Any),
            Some("inet") => Ok(AddressFamily::Inet),
            Some("inet6") => Ok(AddressFamily::Inet6),
            Some(v) => Err(self.bad("addressfamily", v, "unknown address family")),
        }
    }

    /// ssh.c: `none`, `SSH_AUTH_SOCK`, `$NAME` or a path.
    fn identity_agent(&self, local: &LocalContext) -> Result<IdentityAgent, ResolveError> {
        Ok(match self.one("identityagent") {
            None | Some("SSH_AUTH_SOCK") => IdentityAgent::Default,
            Some("none") => IdentityAgent::None,
            Some(v) if v.starts_with('$') && !v.starts_with("${") => {
                IdentityAgent::Env(v[1..].to_string())
            }
            Some(v) => IdentityAgent::Path(self.already_expanded("identityagent", v, local)?),
        })
    }

    /// A space-separated list of paths; a lone `none` means no files.
    fn path_list(
        &self,
        key: &'static str,
        local: &LocalContext,
    ) -> Result<Vec<PathBuf>, ResolveError> {
        let Some(value) = self.one(key) else {
            return Ok(Vec::new());
        };
        if value == "none" {
            return Ok(Vec::new());
        }
        value
            .split_whitespace()
            .map(|p| self.already_expanded(key, p, local))
            .collect()
    }

    /// A value ssh -G expands itself (8.4+); older releases leave the `~`.
    fn already_expanded(
        &self,
        key: &'static str,
        value: &str,
        local: &LocalContext,
    ) -> Result<PathBuf, ResolveError> {
        tilde_expand(value, local)
            .map(PathBuf::from)
            .map_err(|why| self.expand_error(key, value, why))
    }
}

/// The values of the client's `%` tokens for one destination.
struct Tokens<'a> {
    local: &'a LocalContext,
    alias: &'a str,
    hostname: &'a str,
    port: u16,
    user: &'a str,
    key_alias: &'a str,
    jump_host: &'a str,
    conn_hash: Option<&'a str>,
}

impl Tokens<'_> {
    /// ssh's expansion of IdentityFile and friends: `~` first, then `%x`
    /// tokens and, with `dollar`, `${VAR}`.
    fn expand(&self, raw: &str, dollar: bool) -> Result<String, String> {
        let tilded = tilde_expand(raw, self.local)?;
        let home = self.local.home.to_string_lossy();
        let short = self.local.hostname.split('.').next().unwrap_or_default();
        let (port, uid) = (self.port.to_string(), self.local.uid.to_string());
        let mut table = vec![
            ('L', short),
            ('i', &uid),
            ('k', self.key_alias),
            ('l', &self.local.hostname),
            ('n', self.alias),
            ('p', &port),
            ('d', &home),
            ('h', self.hostname),
            ('r', self.user),
            ('u', &self.local.user),
            ('j', self.jump_host),
        ];
        if let Some(hash) = self.conn_hash {
            table.push(('C', hash));
        }
        percent_expand(&tilded, &table, dollar)
    }
}

/// misc.c `percent_expand` (and `percent_dollar_expand` with `dollar`):
/// `%%`, the given `%x` tokens and `${VAR}` from the environment. Unknown
/// tokens and unset variables are errors, as in ssh.
fn percent_expand(s: &str, tokens: &[(char, &str)], dollar: bool) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if dollar && let Some(after) = rest.strip_prefix("${") {
            let end = after
                .find('}')
                .ok_or_else(|| format!("`{rest}` misses its closing `}}`"))?;
            let name = &after[..end];
            if name.is_empty() {
                return Err("`${}` names no environment variable".into());
            }
            let value = std::env::var(name)
                .map_err(|_| format!("environment variable ${{{name}}} has no value"))?;
            out.push_str(&value);
            rest = &after[end + 1..];
            continue;
        }
        rest = &rest[c.len_utf8()..];
        if c != '%' {
            out.push(c);
            continue;
        }
        let token = rest.chars().next().ok_or("it ends in a lone `%`")?;
        rest = &rest[token.len_utf8()..];
        match tokens.iter().find(|(k, _)| *k == token) {
            _ if token == '%' => out.push('%'),
            Some((_, v)) => out.push_str(v),
            None if token == 'C' => return Err("%C cannot be computed".into()),
            None => return Err(format!("unknown token %{token}")),
        }
    }
    Ok(out)
}

/// misc.c `tilde_expand`: `~` and `~/path` use the password database's home
/// of the real uid, `~user/path` that user's.
fn tilde_expand(s: &str, local: &LocalContext) -> Result<String, String> {
    let Some(rest) = s.strip_prefix('~') else {
        return Ok(s.to_string());
    };
    let (user, path) = match rest.split_once('/') {
        Some((user, path)) => (user, path.trim_start_matches('/')),
        None => (rest, ""),
    };
    let home = if user.is_empty() {
        local.home.clone()
    } else {
        passwd_entry(PasswdKey::Name(user))
            .map(|(_, home)| home)
            .ok_or_else(|| format!("no such user {user}"))?
    };
    let home = home.to_string_lossy();
    let sep = if home.ends_with('/') { "" } else { "/" };
    Ok(format!("{home}{sep}{path}"))
}

/// `%j`: the host of the last ProxyJump hop (the one ssh connects through).
fn last_jump_host(jump: &str) -> &str {
    let hop = jump.rsplit(',').next().unwrap_or(jump);
    let hop = hop.strip_prefix("ssh://").unwrap_or(hop);
    let hop = hop.rsplit_once('@').map_or(hop, |(_, h)| h);
    match hop.strip_prefix('[') {
        Some(inner) => inner.split(']').next().unwrap_or(inner),
        None => hop.split([':', '/']).next().unwrap_or(hop),
    }
}

fn comma_list(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect()
}

enum PasswdKey<'a> {
    Uid(u32),
    Name(&'a str),
}

/// The login name and home directory of a password database entry.
fn passwd_entry(key: PasswdKey<'_>) -> Option<(String, PathBuf)> {
    let name = match key {
        PasswdKey::Name(n) => Some(std::ffi::CString::new(n).ok()?),
        PasswdKey::Uid(_) => None,
    };
    let mut buf: Vec<libc::c_char> = vec![0; 4096];
    loop {
        // SAFETY: passwd is plain data; the _r calls write only into `pwd`
        // and `buf` (whose length we pass) and set `result` to &pwd or null.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            match (&key, &name) {
                (PasswdKey::Uid(uid), _) => {
                    libc::getpwuid_r(*uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result)
                }
                (PasswdKey::Name(_), Some(n)) => libc::getpwnam_r(
                    n.as_ptr(),
                    &mut pwd,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut result,
                ),
                (PasswdKey::Name(_), None) => return None,
            }
        };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() || pwd.pw_dir.is_null() {
            return None;
        }
        // SAFETY: on success both point to NUL-terminated strings in `buf`.
        let (user, dir) = unsafe { (CStr::from_ptr(pwd.pw_name), CStr::from_ptr(pwd.pw_dir)) };
        let home = PathBuf::from(OsStr::from_bytes(dir.to_bytes()));
        return Some((user.to_string_lossy().into_owned(), home));
    }
}

fn local_hostname() -> std::io::Result<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::cmdline::ParsedCommand;

    fn me() -> LocalContext {
        LocalContext {
            user: "me".into(),
            home: "/home/me".into(),
            uid: 1000,
            hostname: "box.lan".into(),
        }
    }

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
    fn unreadable_dumps_are_errors() {
        let e = Resolved::from_dump("h", "hostname h\n", &me(), None).unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        let e = Resolved::from_dump("h", "user u\nhostname h\nport x\n", &me(), None).unwrap_err();
        assert!(e.to_string().contains("`port x`"), "{e}");
        let e = Resolved::from_dump("h", "user u\nhostname h\nbatchmode maybe\n", &me(), None)
            .unwrap_err();
        assert!(e.to_string().contains("not yes or no"), "{e}");
    }

    #[test]
    fn percent_and_dollar_expansion() {
        let t = [('h', "host"), ('p', "22")];
        assert_eq!(
            percent_expand("%h:%p %%h", &t, false).unwrap(),
            "host:22 %h"
        );
        assert_eq!(percent_expand("${x}", &t, false).unwrap(), "${x}");
        assert_eq!(percent_expand("ünï%h", &t, false).unwrap(), "ünïhost");
        assert!(
            percent_expand("%z", &t, false)
                .unwrap_err()
                .contains("unknown token %z")
        );
        assert!(
            percent_expand("a%", &t, false)
                .unwrap_err()
                .contains("lone")
        );
        let path = std::env::var("PATH").unwrap();
        assert_eq!(
            percent_expand("${PATH}/x", &t, true).unwrap(),
            format!("{path}/x")
        );
        let e = percent_expand("${ROCK_TEST_SURELY_UNSET_3141}", &t, true).unwrap_err();
        assert!(
            e.contains("${ROCK_TEST_SURELY_UNSET_3141} has no value"),
            "{e}"
        );
        assert!(percent_expand("${}", &t, true).is_err());
        assert!(percent_expand("${PATH", &t, true).is_err());
    }

    #[test]
    fn tilde_expansion() {
        let me = me();
        assert_eq!(tilde_expand("~", &me).unwrap(), "/home/me/");
        assert_eq!(tilde_expand("~/x", &me).unwrap(), "/home/me/x");
        assert_eq!(tilde_expand("~//x", &me).unwrap(), "/home/me/x");
        assert_eq!(tilde_expand("/a/~", &me).unwrap(), "/a/~");
        let root_home = passwd_entry(PasswdKey::Uid(0)).unwrap().1;
        let root_home = root_home
            .to_string_lossy()
            .trim_end_matches('/')
            .to_string();
        assert_eq!(
            tilde_expand("~root/k", &me).unwrap(),
            format!("{root_home}/k")
        );
        assert!(
            tilde_expand("~no-such-user-rock/k", &me)
                .unwrap_err()
                .contains("no such user")
        );
    }

    #[test]
    fn unknown_percent_token_in_identity_file_names_the_setting() {
        let dump = "user u\nhostname h\nidentityfile ~/.ssh/%T\n";
        let e = Resolved::from_dump("h", dump, &me(), None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "cannot expand `~/.ssh/%T` from the identityfile setting for `h`: unknown token %T — fix it in your ssh configuration"
        );
    }

    #[test]
    fn jump_host_of_the_last_hop() {
        assert_eq!(last_jump_host("u@j1:2222,j2"), "j2");
        assert_eq!(last_jump_host("u@[::1]:22"), "::1");
        assert_eq!(last_jump_host("ssh://u@j:22"), "j");
    }

    // --- real `ssh -G` runs with temporary configs (no network) ---

    fn write(path: &std::path::Path, text: &str) {
        std::fs::write(path, text).unwrap();
    }

    fn ssh() -> &'static OsStr {
        OsStr::new("ssh")
    }

    #[test]
    fn real_ssh_g_with_include_match_and_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        std::fs::create_dir(dir.path().join("inc")).unwrap();
        write(
            &dir.path().join("inc/a.conf"),
            "Host work\n  StrictHostKeyChecking accept-new\n  PasswordAuthentication no\n  \
             PreferredAuthentications publickey,keyboard-interactive\n",
        );
        // The same token soup in IdentityFile (expanded here) and in
        // UserKnownHostsFile (expanded by ssh -G itself) must agree.
        let soup = "%r_%h_%p_%n_%l_%L_%u_%d_%i_%k_%%";
        let config = format!(
            "Include {d}/inc/*.conf\n\
             Host work\n  HostName %h.example.com\n  User alice\n  Port 2200\n  \
             IdentityFile ~/.ssh/id_{soup}\n  IdentityFile {d}/keys/%C\n  \
             CertificateFile ~/.ssh/%r-cert.pub\n  \
             UserKnownHostsFile ~/.ssh/id_{soup} {d}/keys/%C\n  \
             ProxyJump jumper@bastion:2022\n  IdentitiesOnly yes\n\
             Match host *.example.com\n  ConnectTimeout 7\n  ServerAliveInterval 15\n"
        );
        let cfg = dir.path().join("config");
        write(&cfg, &config);
        let mut args = vec![OsString::from("-F"), cfg.into_os_string()];
        let r = resolve(ssh(), &args, "work").unwrap();
        // With a HostKeyAlias, %k is the alias: check ssh agrees again.
        args.extend(["-o".into(), "HostKeyAlias=hka".into()]);
        let aliased = resolve(ssh(), &args, "work").unwrap();
        assert_eq!(aliased.identity_files, aliased.user_known_hosts_files);
        assert!(
            aliased.identity_files[0]
                .to_string_lossy()
                .ends_with("_hka_%")
        );
        let local = LocalContext::current().unwrap();
        let home = local
            .home
            .to_string_lossy()
            .trim_end_matches('/')
            .to_string();

        assert_eq!(r.host_alias, "work");
        assert_eq!(r.user, "alice");
        assert_eq!(r.hostname, "work.example.com");
        assert_eq!(r.port, 2200);
        assert_eq!(r.identity_files.len(), 2);
        assert_eq!(
            r.identity_files, r.user_known_hosts_files,
            "our expansion must equal ssh's"
        );
        let expected = format!(
            "{home}/.ssh/id_alice_work.example.com_2200_work_{l}_{short}_{u}_{home}_{i}_work_%",
            l = local.hostname,
            short = local.hostname.split('.').next().unwrap(),
            u = local.user,
            i = local.uid,
        );
        assert_eq!(r.identity_files[0], PathBuf::from(expected));
        let hash = r.identity_files[1]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            hash.len() == 40 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
            "{hash}"
        );
        assert_eq!(
            r.certificate_files,
            [PathBuf::from(format!("{home}/.ssh/alice-cert.pub"))]
        );
        assert!(r.identities_only);
        assert_eq!(r.proxy_jump.as_deref(), Some("jumper@bastion:2022"));
        assert_eq!(r.proxy_command, None);
        assert_eq!(r.strict_host_key_checking, StrictHostKeyChecking::AcceptNew);
        assert!(!r.password_authentication);
        assert_eq!(
            r.preferred_authentications,
            Some(vec!["publickey".into(), "keyboard-interactive".into()])
        );
        assert_eq!(r.connect_timeout, Some(Duration::from_secs(7)));
        assert_eq!(r.server_alive_interval, Some(Duration::from_secs(15)));
        assert_eq!(r.address_family, AddressFamily::Any);
        assert!(!r.batch_mode);
        assert_eq!(r.number_of_password_prompts, 3);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    #[test]
    fn real_ssh_g_command_line_beats_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config");
        write(
            &cfg,
            "Host work\n  HostName w.example\n  User alice\n  Port 2200\n  HostKeyAlias wk\n",
        );
        let argv: Vec<OsString> = [
            "scp",
            "-F",
            cfg.to_str().unwrap(),
            "-P",
            "2222",
            "-4",
            "-B",
            "f",
            "bob@work:p",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let cmd = ParsedCommand::parse(&argv, OpensshVersion { major: 9, minor: 2 }).unwrap();
        let r = resolve_command(&cmd).unwrap();
        assert_eq!(
            (r.user.as_str(), r.hostname.as_str(), r.port),
            ("bob", "w.example", 2222)
        );
        assert_eq!(r.address_family, AddressFamily::Inet);
        assert!(r.batch_mode);
        assert_eq!(r.host_key_alias.as_deref(), Some("wk"));
        // A ProxyCommand's tokens, as ssh would run it.
        let args = vec![
            OsString::from("-F"),
            cfg.clone().into_os_string(),
            "-o".into(),
            "ProxyCommand=nc %h %p # %r %n %%".into(),
        ];
        let r = resolve(ssh(), &args, "work").unwrap();
        assert_eq!(
            r.proxy_command_line().unwrap().as_deref(),
            Some("nc w.example 2200 # alice work %")
        );
    }

    #[test]
    fn real_ssh_g_bad_config_reports_ssh_words() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config");
        write(&cfg, "Host work\n  User x\n  Hostnme foo\n");
        let args = vec![OsString::from("-F"), cfg.clone().into_os_string()];
        let e = resolve(ssh(), &args, "work").unwrap_err().to_string();
        let want = format!(
            "ssh -G could not resolve `work`: {}: line 3: Bad configuration option: hostnme",
            cfg.display()
        );
        assert!(e.starts_with(&want), "{e}");
        let e = resolve(OsStr::new("/nonexistent/rock-ssh"), &[], "work")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cannot run `/nonexistent/rock-ssh` to resolve `work`: "),
            "{e}"
        );
    }

    #[test]
    fn real_openssh_version() {
        let v = openssh_version(ssh()).unwrap();
        assert!(v >= OpensshVersion { major: 8, minor: 4 }, "{v:?}");
    }
}
