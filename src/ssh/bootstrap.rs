//! The bootstrap of `rock -d`: one SSH connection that starts rockd.
//!
//! Owns the sequence TCP connect → SSH handshake with the host key checked
//! against known_hosts → authentication → one exec channel that starts
//! rockd, sends it the [`BootRequest`] on stdin and reads its
//! [`BootReady`] from stdout.
//!
//! Invariants:
//! * An unknown, changed or revoked host key ends the bootstrap before
//!   authentication; nothing is ever added to a known_hosts file.
//! * The session key crosses only the exec channel's stdin: never argv, the
//!   environment or a file.
//! * Exactly one remote command runs; it tries the rockd candidates in
//!   order and, when none exists, answers a `rockd-error` line naming every
//!   candidate it tried.
//! * The channel is read until it ends (the exit status arrives after
//!   EOF), but never longer than [`ANSWER_TIMEOUT`] for the answer and
//!   [`DRAIN_TIMEOUT`] after it.
//! * The client config leaves `inactivity_timeout` unset.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{Handle, Handler, Msg, Session};
use russh::keys::{Algorithm, PublicKey, PublicKeyOrCertificate};
use russh::{Channel, ChannelMsg, Disconnect};
use tokio::net::TcpStream;
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::auth::{AuthError, authenticate};
use super::known_hosts::{self, HostKeyStatus};
use super::prompt::Prompter;
use crate::boot::{BootError, BootReady, BootRequest};

/// How long rockd may take to answer once the channel is open.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for the channel to end after rockd answered.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of other output (shell start-up noise) skipped before giving up.
pub const MAX_NOISE_LINES: usize = 200;
/// Bytes of other output skipped before giving up.
const MAX_NOISE_BYTES: usize = 64 * 1024;
/// Bytes of rockd's stderr kept for messages (the last ones).
const MAX_STDERR: usize = 4096;

/// How the launch script reports that no candidate exists.
const NOT_FOUND_PREFIX: &str = "rockd not found (tried: ";

/// Where and how to reach the remote host: what `ssh -G` resolved.
#[derive(Debug, Clone)]
pub struct BootstrapTarget {
    /// The destination as the user typed it, for advice in messages
    /// (`ssh <destination>`).
    pub destination: String,
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
    /// `ConnectTimeout`: bounds each TCP connect and the SSH handshake.
    pub connect_timeout: Option<Duration>,
    /// `PubkeyAuthentication`: agent and key files.
    pub pubkey_authentication: bool,
    /// `PasswordAuthentication`.
    pub password_authentication: bool,
    /// `KbdInteractiveAuthentication`.
    pub kbd_interactive_authentication: bool,
    /// The agent's socket (`IdentityAgent`, else `SSH_AUTH_SOCK`), already
    /// resolved by the caller; `None` means no agent.
    pub agent_socket: Option<PathBuf>,
}

impl BootstrapTarget {
    /// A target with OpenSSH's defaults: default known_hosts files, the
    /// agent from `SSH_AUTH_SOCK`, password and keyboard-interactive on.
    pub fn new(destination: &str, user: &str, hostname: &str, port: u16) -> BootstrapTarget {
        BootstrapTarget {
            destination: destination.to_owned(),
            user: user.to_owned(),
            hostname: hostname.to_owned(),
            port,
            identity_files: Vec::new(),
            identities_only: false,
            known_hosts_files: default_known_hosts_files(),
            host_key_alias: None,
            batch_mode: false,
            connect_timeout: None,
            pubkey_authentication: true,
            password_authentication: true,
            kbd_interactive_authentication: true,
            agent_socket: agent_socket_from_env(),
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

    fn known_hosts_paths(&self) -> Vec<PathBuf> {
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

/// Which rockd to run on the remote host, and with what arguments.
///
/// A candidate without `/` is a command looked up on the remote `PATH`; one
/// starting with `~/` is relative to the remote home; anything else is a
/// path (relative ones are relative to the remote home, where the command
/// starts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RockdCommand {
    /// Candidates, tried in order.
    pub candidates: Vec<String>,
    /// Extra arguments passed to rockd.
    pub args: Vec<String>,
}

impl RockdCommand {
    /// The usual candidates: the configured path (if any), `rockd` on
    /// `PATH`, `~/.local/bin/rockd`, `~/.cargo/bin/rockd`.
    pub fn with_defaults(configured: Option<&str>, args: Vec<String>) -> RockdCommand {
        let mut candidates: Vec<String> = configured.map(str::to_owned).into_iter().collect();
        for default in ["rockd", "~/.local/bin/rockd", "~/.cargo/bin/rockd"] {
            if !candidates.iter().any(|c| c == default) {
                candidates.push(default.to_owned());
            }
        }
        RockdCommand { candidates, args }
    }
}

/// The result of a successful bootstrap.
#[derive(Debug)]
pub struct Bootstrapped {
    /// rockd's answer: its version, protocol range and port.
    pub ready: BootReady,
    /// The server address the SSH connection reached; the rock link dials
    /// rockd's port on this IP.
    pub peer_addr: SocketAddr,
    /// The password the user typed, if password authentication was used,
    /// for the inner ssh (through `SSH_ASKPASS`).
    pub password: Option<Zeroizing<String>>,
}

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
    /// No TCP connection could be made.
    #[error("cannot connect to {host} port {port}: {error}")]
    Unreachable {
        /// Host name.
        host: String,
        /// Port.
        port: u16,
        /// The last error (resolution or connect).
        error: std::io::Error,
    },
    /// The host key is not in any known_hosts file.
    #[error("{}", unknown_key_message(.key, .files, .other_types, .destination))]
    HostKeyUnknown {
        /// The key the server presented.
        key: Box<PresentedKey>,
        /// The files searched.
        files: Vec<PathBuf>,
        /// Types recorded for the host that the server did not present.
        other_types: Vec<String>,
        /// What to pass to plain `ssh` to record the key.
        destination: String,
    },
    /// The host presented a different key than the one recorded.
    #[error("{}", changed_key_message(.key, .file, *.line, .destination))]
    HostKeyChanged {
        /// The key the server presented.
        key: Box<PresentedKey>,
        /// The file with the recorded key.
        file: PathBuf,
        /// Its line.
        line: usize,
        /// The destination as typed.
        destination: String,
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

    fn protocol(host: &str, detail: impl Into<String>) -> BootstrapError {
        BootstrapError::Protocol {
            host: host.to_owned(),
            detail: detail.into(),
            stderr: String::new(),
        }
    }
}

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
    destination: &str,
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
         the key by connecting once with plain ssh:\n      ssh {destination}\n  \
         then run rock again."
    ));
    msg
}

fn changed_key_message(key: &PresentedKey, file: &Path, line: usize, destination: &str) -> String {
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
         and record the new key by connecting once with plain `ssh {destination}`.",
        file = file.display()
    )
}

/// Connects, checks the host key, authenticates, starts rockd and hands it
/// `request`. `prompter` is asked for passwords and passphrases (never
/// under `BatchMode`).
pub async fn bootstrap(
    target: &BootstrapTarget,
    rockd: &RockdCommand,
    request: &BootRequest,
    prompter: Arc<dyn Prompter>,
) -> Result<Bootstrapped, BootstrapError> {
    let stream = connect_tcp(target).await?;
    let peer_addr = stream
        .peer_addr()
        .map_err(|e| BootstrapError::protocol(&target.hostname, format!("peer address: {e}")))?;
    let mut handle = handshake(target, stream, Arc::clone(&prompter)).await?;
    let result = log_in_and_start(&mut handle, target, rockd, request, prompter).await;
    // The bootstrap connection has done its job, whatever the outcome.
    let _ = handle.disconnect(Disconnect::ByApplication, "", "en").await;
    let (output, password) = result?;
    let ready = interpret(output, &target.hostname)?;
    Ok(Bootstrapped {
        ready,
        peer_addr,
        password,
    })
}

/// Authenticates, then runs rockd; returns its output and the password
/// typed, if any.
async fn log_in_and_start(
    handle: &mut Handle<BootHandler>,
    target: &BootstrapTarget,
    rockd: &RockdCommand,
    request: &BootRequest,
    prompter: Arc<dyn Prompter>,
) -> Result<(Output, Option<Zeroizing<String>>), BootstrapError> {
    let auth = authenticate(handle, target, prompter)
        .await
        .map_err(|e| match e {
            AuthError::Transport(e) => BootstrapError::protocol(
                &target.hostname,
                format!("connection lost during authentication: {e}"),
            ),
            denied => BootstrapError::AuthFailed(Box::new(denied)),
        })?;
    tracing::debug!("authenticated with {}", auth.method);
    let output = run_rockd(handle, rockd, request, &target.hostname).await?;
    Ok((output, auth.password))
}

// ---- TCP ---------------------------------------------------------------

async fn connect_tcp(target: &BootstrapTarget) -> Result<TcpStream, BootstrapError> {
    let unreachable = |error| BootstrapError::Unreachable {
        host: target.hostname.clone(),
        port: target.port,
        error,
    };
    let lookup = tokio::net::lookup_host((target.hostname.as_str(), target.port));
    let addrs: Vec<SocketAddr> = within(target.connect_timeout, lookup)
        .await
        .map_err(unreachable)?
        .collect();
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address found");
    for addr in addrs {
        match within(target.connect_timeout, TcpStream::connect(addr)).await {
            Ok(stream) => {
                // Bootstrap traffic is small request/answer exchanges.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => {
                tracing::debug!("connect {addr}: {e}");
                last = e;
            }
        }
    }
    Err(unreachable(last))
}

/// Runs `fut` within `limit`, if any; running out is `TimedOut`.
async fn within<T>(
    limit: Option<Duration>,
    fut: impl Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    match limit {
        None => fut.await,
        Some(limit) => tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connection timed out",
            ))
        }),
    }
}

// ---- SSH handshake -----------------------------------------------------

/// A host-key check that refused the server.
#[derive(Debug, Clone)]
struct Refusal {
    status: HostKeyStatus,
    key: PublicKey,
}

/// The russh handler: checks the host key, shows banners.
struct BootHandler {
    files: Vec<PathBuf>,
    name: String,
    prompter: Arc<dyn Prompter>,
    batch_mode: bool,
    /// Filled when the host key is refused, read after `connect` fails.
    refusal: Arc<Mutex<Option<Refusal>>>,
}

/// The handler's error: russh's own, or a refused host key.
#[derive(Debug)]
enum HandlerError {
    Ssh(russh::Error),
    HostKey,
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> Self {
        HandlerError::Ssh(e)
    }
}

impl Handler for BootHandler {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, HandlerError> {
        // No certificate algorithms are offered, but should a certificate
        // come, its plain key is checked, as OpenSSH does without a CA.
        let key = match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => {
                PublicKey::new(cert.public_key().clone(), "")
            }
        };
        let status = known_hosts::check_host_key(&self.files, &self.name, &key);
        if let HostKeyStatus::Known { file, line } = &status {
            tracing::debug!(
                "host key of {} found in {}:{line}",
                self.name,
                file.display()
            );
            return Ok(true);
        }
        if let Ok(mut slot) = self.refusal.lock() {
            *slot = Some(Refusal { status, key });
        }
        Err(HandlerError::HostKey)
    }

    async fn auth_banner(
        &mut self,
        banner: &str,
        _session: &mut Session,
    ) -> Result<(), HandlerError> {
        if !self.batch_mode {
            self.prompter.show(banner);
        }
        Ok(())
    }
}

async fn handshake(
    target: &BootstrapTarget,
    stream: TcpStream,
    prompter: Arc<dyn Prompter>,
) -> Result<Handle<BootHandler>, BootstrapError> {
    let files = target.known_hosts_paths();
    let name = target.known_hosts_name();
    let refusal = Arc::new(Mutex::new(None));
    let handler = BootHandler {
        files: files.clone(),
        name: name.clone(),
        prompter,
        batch_mode: target.batch_mode,
        refusal: Arc::clone(&refusal),
    };
    let config = Arc::new(client_config(&known_hosts::known_key_algorithms(
        &files, &name,
    )));
    let connect = russh::client::connect_stream(config, stream, handler);
    let result = match target.connect_timeout {
        None => connect.await,
        Some(limit) => match tokio::time::timeout(limit, connect).await {
            Ok(result) => result,
            Err(_) => {
                return Err(BootstrapError::protocol(
                    &target.hostname,
                    format!("SSH handshake timed out after {limit:?}"),
                ));
            }
        },
    };
    let error = match result {
        Ok(handle) => return Ok(handle),
        Err(error) => error,
    };
    let refused = refusal.lock().ok().and_then(|mut slot| slot.take());
    Err(match refused {
        Some(refusal) => host_key_error(target, files, &name, refusal),
        None => BootstrapError::protocol(
            &target.hostname,
            format!("SSH handshake failed: {}", handler_error_text(&error)),
        ),
    })
}

fn handler_error_text(error: &HandlerError) -> String {
    match error {
        HandlerError::Ssh(e) => e.to_string(),
        HandlerError::HostKey => "host key refused".to_owned(),
    }
}

fn host_key_error(
    target: &BootstrapTarget,
    files: Vec<PathBuf>,
    name: &str,
    refusal: Refusal,
) -> BootstrapError {
    let key = Box::new(PresentedKey {
        name: name.to_owned(),
        key_type: refusal.key.algorithm().as_str().to_owned(),
        fingerprint: known_hosts::fingerprint(&refusal.key),
    });
    match refusal.status {
        HostKeyStatus::Changed { file, line } => BootstrapError::HostKeyChanged {
            key,
            file,
            line,
            destination: target.destination.clone(),
        },
        HostKeyStatus::Revoked { file, line } => BootstrapError::HostKeyRevoked { key, file, line },
        HostKeyStatus::Unknown { other_types } => BootstrapError::HostKeyUnknown {
            key,
            files,
            other_types,
            destination: target.destination.clone(),
        },
        HostKeyStatus::Known { .. } => BootstrapError::protocol(
            &target.hostname,
            "SSH handshake failed after the host key was accepted",
        ),
    }
}

/// russh's defaults, with the host-key algorithms already recorded for
/// this host offered first (as OpenSSH orders them), so that a server
/// with several host keys presents the known one.
fn client_config(known: &[Algorithm]) -> russh::client::Config {
    let mut config = russh::client::Config::default();
    let defaults = config.preferred.key.to_vec();
    let (mut first, rest): (Vec<Algorithm>, Vec<Algorithm>) = defaults
        .into_iter()
        .partition(|a| known.iter().any(|k| same_key_type(k, a)));
    first.extend(rest);
    config.preferred.key = first.into();
    config.nodelay = true;
    config
}

/// RSA keys are one type whatever the signature hash.
fn same_key_type(a: &Algorithm, b: &Algorithm) -> bool {
    let rsa = |x: &Algorithm| matches!(x, Algorithm::Rsa { .. });
    (rsa(a) && rsa(b)) || a == b
}

// ---- rockd -------------------------------------------------------------

/// The sh script that finds rockd. `$1` is the number of candidates, then
/// come the candidates, then rockd's arguments. One line and no single
/// quotes, so it survives being single-quoted for any login shell.
const LAUNCH_SCRIPT: &str = concat!(
    "n=$1; shift; found=; tried=; ",
    "while [ \"$n\" -gt 0 ]; do ",
    "c=$1; shift; n=$((n-1)); ",
    "case $c in \"~/\"*) c=$HOME/${c#\"~/\"};; esac; ",
    "case $c in */*) t=$c;; *) t=\"$c (on PATH)\";; esac; ",
    "tried=${tried:+$tried, }$t; ",
    "if [ -z \"$found\" ]; then case $c in ",
    "*/*) if [ -f \"$c\" ] && [ -x \"$c\" ]; then found=$c; fi;; ",
    "*) if command -v \"$c\" >/dev/null 2>&1; then found=$c; fi;; ",
    "esac; fi; ",
    "done; ",
    "if [ -n \"$found\" ]; then exec \"$found\" \"$@\"; fi; ",
    "printf \"%s\\n\" \"rockd-error rockd not found (tried: $tried)\"; ",
    "exit 127"
);

/// The one remote command: the launch script run by `sh`, whatever the
/// login shell, with candidates and arguments quoted for it.
pub fn remote_command(rockd: &RockdCommand) -> String {
    let mut command = format!(
        "exec sh -c {} rockd {}",
        sh_quote(LAUNCH_SCRIPT),
        rockd.candidates.len()
    );
    for word in rockd.candidates.iter().chain(&rockd.args) {
        command.push(' ');
        command.push_str(&sh_quote(word));
    }
    command
}

/// Quotes `word` for a POSIX shell.
fn sh_quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// What the exec channel produced.
#[derive(Debug, Default)]
struct Output {
    /// The first `rockd-` line, parsed.
    answer: Option<Result<BootReady, BootError>>,
    /// Stdout not yet split into lines.
    pending: Vec<u8>,
    noise_lines: usize,
    noise_bytes: usize,
    /// The first few noise lines, for messages.
    noise: Vec<String>,
    stderr: Vec<u8>,
    exit_status: Option<u32>,
    exit_signal: Option<String>,
}

impl Output {
    /// Takes stdout bytes; complete lines are examined.
    fn stdout(&mut self, data: &[u8]) -> Result<(), String> {
        if self.answer.is_some() {
            return Ok(());
        }
        self.pending.extend_from_slice(data);
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            self.line(&line)?;
            if self.answer.is_some() {
                self.pending.clear();
                return Ok(());
            }
        }
        if self.pending.len() > MAX_NOISE_BYTES {
            return Err("the remote command printed a line too long to be rockd's".to_owned());
        }
        Ok(())
    }

    /// Examines one line (with its newline, if any).
    fn line(&mut self, raw: &[u8]) -> Result<(), String> {
        let text = String::from_utf8_lossy(raw);
        let text = text.trim_end_matches(['\n', '\r']);
        if text.starts_with("rockd-") {
            self.answer = Some(BootReady::parse(text));
            return Ok(());
        }
        self.noise_lines += 1;
        self.noise_bytes += raw.len();
        if self.noise.len() < 5 {
            self.noise.push(text.to_owned());
        }
        if self.noise_lines > MAX_NOISE_LINES || self.noise_bytes > MAX_NOISE_BYTES {
            return Err(format!(
                "no answer from rockd among {} lines of other output (first: {:?})",
                self.noise_lines, self.noise
            ));
        }
        Ok(())
    }

    /// At the channel's end: a last line without a newline still counts.
    fn finish(&mut self) -> Result<(), String> {
        if self.answer.is_none() && !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.line(&rest)?;
        }
        Ok(())
    }

    fn stderr(&mut self, data: &[u8]) {
        self.stderr.extend_from_slice(data);
        if self.stderr.len() > MAX_STDERR {
            let cut = self.stderr.len() - MAX_STDERR;
            self.stderr.drain(..cut);
        }
    }

    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_owned()
    }

    fn how_it_ended(&self) -> String {
        match (&self.exit_status, &self.exit_signal) {
            (Some(status), _) => format!("exit status {status}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => "no exit status".to_owned(),
        }
    }
}

/// Opens the exec channel, sends the request, reads until the channel
/// ends.
async fn run_rockd(
    handle: &Handle<BootHandler>,
    rockd: &RockdCommand,
    request: &BootRequest,
    host: &str,
) -> Result<Output, BootstrapError> {
    let fail = |what: &str, e: russh::Error| BootstrapError::protocol(host, format!("{what}: {e}"));
    let mut channel = handle
        .channel_open_session()
        .await
        .map_err(|e| fail("opening a session channel", e))?;
    channel
        .exec(true, remote_command(rockd))
        .await
        .map_err(|e| fail("starting rockd", e))?;
    let secret = Zeroizing::new(request.encode());
    channel
        .data(secret.as_bytes())
        .await
        .map_err(|e| fail("sending the session key to rockd", e))?;
    channel
        .eof()
        .await
        .map_err(|e| fail("sending the session key to rockd", e))?;
    let mut output = Output::default();
    read_channel(&mut channel, &mut output)
        .await
        .map_err(|detail| BootstrapError::Protocol {
            host: host.to_owned(),
            detail,
            stderr: output.stderr_text(),
        })?;
    Ok(output)
}

async fn read_channel(channel: &mut Channel<Msg>, output: &mut Output) -> Result<(), String> {
    let answer_deadline = Instant::now() + ANSWER_TIMEOUT;
    let mut drain_deadline: Option<Instant> = None;
    loop {
        if output.answer.is_some() && drain_deadline.is_none() {
            drain_deadline = Some(Instant::now() + DRAIN_TIMEOUT);
        }
        let deadline = drain_deadline.unwrap_or(answer_deadline);
        let msg = match tokio::time::timeout_at(deadline, channel.wait()).await {
            Ok(Some(msg)) => msg,
            Ok(None) => break,
            Err(_) if drain_deadline.is_some() => {
                tracing::warn!("rockd answered but its channel stayed open; going on");
                return Ok(());
            }
            Err(_) => {
                return Err(format!(
                    "rockd did not answer within {} s",
                    ANSWER_TIMEOUT.as_secs()
                ));
            }
        };
        match msg {
            ChannelMsg::Data { data } => output.stdout(&data)?,
            ChannelMsg::ExtendedData { data, ext: 1 } => output.stderr(&data),
            ChannelMsg::ExitStatus { exit_status } => output.exit_status = Some(exit_status),
            ChannelMsg::ExitSignal { signal_name, .. } => {
                output.exit_signal = Some(format!("{signal_name:?}"));
            }
            ChannelMsg::Failure => {
                return Err("the server refused to run a command (exec request failed)".to_owned());
            }
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    output.finish()
}

/// Turns the channel's output into rockd's answer or an error.
fn interpret(output: Output, host: &str) -> Result<BootReady, BootstrapError> {
    let stderr = output.stderr_text();
    let ended = output.how_it_ended();
    match output.answer {
        Some(Ok(ready)) => check_compatible(ready, host),
        Some(Err(BootError::Remote(message))) => match not_found_list(&message) {
            Some(tried) => Err(BootstrapError::RockdNotFound {
                host: host.to_owned(),
                tried,
            }),
            None => Err(BootstrapError::RockdFailed {
                host: host.to_owned(),
                message,
                stderr,
            }),
        },
        Some(Err(BootError::Version(v))) => Err(BootstrapError::RockdIncompatible {
            host: host.to_owned(),
            detail: format!(
                "it speaks boot exchange {v}, this rock speaks {}",
                crate::boot::BOOT_VERSION
            ),
        }),
        Some(Err(e)) => Err(BootstrapError::Protocol {
            host: host.to_owned(),
            detail: e.to_string(),
            stderr,
        }),
        None => Err(BootstrapError::RockdFailed {
            host: host.to_owned(),
            message: format!("it ended without answering ({ended})"),
            stderr,
        }),
    }
}

/// The candidates listed in the launch script's "not found" message.
fn not_found_list(message: &str) -> Option<Vec<String>> {
    let list = message.strip_prefix(NOT_FOUND_PREFIX)?.strip_suffix(')')?;
    Some(list.split(", ").map(str::to_owned).collect())
}

fn check_compatible(ready: BootReady, host: &str) -> Result<BootReady, BootstrapError> {
    let ours = rock_proto::handshake::SUPPORTED_VERSIONS;
    if ours.negotiate(ready.proto).is_some() {
        return Ok(ready);
    }
    Err(BootstrapError::RockdIncompatible {
        host: host.to_owned(),
        detail: format!(
            "rockd {} speaks link protocol {}, this rock ({}) speaks {}",
            ready.version,
            ready.proto,
            env!("CARGO_PKG_VERSION"),
            ours
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rock_proto::VersionRange;

    #[test]
    fn quoting_is_safe_for_sh() {
        assert_eq!(sh_quote("rockd"), "rockd");
        assert_eq!(sh_quote("~/.local/bin/rockd"), "'~/.local/bin/rockd'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("$(reboot)"), "'$(reboot)'");
        assert!(!LAUNCH_SCRIPT.contains('\''));
        assert!(!LAUNCH_SCRIPT.contains('\n'));
    }

    #[test]
    fn default_candidates_keep_order_without_duplicates() {
        let cmd = RockdCommand::with_defaults(Some("/opt/rockd"), vec![]);
        assert_eq!(
            cmd.candidates,
            [
                "/opt/rockd",
                "rockd",
                "~/.local/bin/rockd",
                "~/.cargo/bin/rockd"
            ]
        );
        let cmd = RockdCommand::with_defaults(Some("rockd"), vec![]);
        assert_eq!(cmd.candidates.len(), 3);
    }

    fn run_sh(command: &str, home: &Path) -> std::process::Output {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .env("HOME", home)
            .env("PATH", "/usr/bin:/bin")
            .output()
            .expect("sh runs")
    }

    #[test]
    fn launch_script_reports_every_candidate_when_none_exists() {
        let home = tempfile::tempdir().expect("tempdir");
        let cmd = RockdCommand::with_defaults(Some("/nonexistent/rockd"), vec![]);
        let out = run_sh(&remote_command(&cmd), home.path());
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .trim_end()
            .strip_prefix("rockd-error ")
            .expect(&stdout);
        let home = home.path().display();
        assert_eq!(
            not_found_list(line).expect(line),
            [
                "/nonexistent/rockd".to_owned(),
                "rockd (on PATH)".to_owned(),
                format!("{home}/.local/bin/rockd"),
                format!("{home}/.cargo/bin/rockd"),
            ]
        );
        assert_eq!(out.status.code(), Some(127));
    }

    #[test]
    fn launch_script_runs_the_first_existing_candidate_with_the_arguments() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().expect("tempdir");
        let bin = home.path().join(".cargo/bin");
        std::fs::create_dir_all(&bin).expect("mkdir");
        let stub = bin.join("rockd");
        std::fs::write(&stub, "#!/bin/sh\nfor a; do echo \"arg:$a\"; done\n").expect("write");
        std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let args = vec!["--port".to_owned(), "it's a $(test)".to_owned()];
        let cmd = RockdCommand::with_defaults(None, args);
        let out = run_sh(&remote_command(&cmd), home.path());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "arg:--port\narg:it's a $(test)\n"
        );
    }

    #[test]
    fn output_skips_noise_and_parses_the_answer() {
        let mut out = Output::default();
        out.stdout(b"Welcome!\nrockd-ready 1 version 0.1.0 pro")
            .expect("ok");
        assert!(out.answer.is_none());
        out.stdout(b"to 1-1 port 4000\ntrailing\n").expect("ok");
        let ready = out.answer.clone().expect("answer").expect("ready");
        assert_eq!(ready.port, 4000);
        assert_eq!(out.noise, ["Welcome!"]);
    }

    #[test]
    fn output_gives_up_after_too_much_noise() {
        let mut out = Output::default();
        let noise = "motd\n".repeat(MAX_NOISE_LINES + 1);
        assert!(out.stdout(noise.as_bytes()).is_err());
        let mut out = Output::default();
        assert!(out.stdout(&vec![b'x'; MAX_NOISE_BYTES + 1]).is_err());
    }

    #[test]
    fn output_takes_a_last_line_without_newline() {
        let mut out = Output::default();
        out.stdout(b"rockd-error boom").expect("ok");
        out.finish().expect("ok");
        assert!(matches!(out.answer, Some(Err(BootError::Remote(ref m))) if m == "boom"));
    }

    #[test]
    fn interpret_classifies_answers() {
        let with = |answer| Output {
            answer: Some(answer),
            ..Output::default()
        };
        let ready = BootReady {
            version: "9.9.9".into(),
            proto: VersionRange { min: 7, max: 9 },
            port: 1,
        };
        assert!(matches!(
            interpret(with(Ok(ready)), "h"),
            Err(BootstrapError::RockdIncompatible { .. })
        ));
        let missing = BootError::Remote("rockd not found (tried: a, b (on PATH))".into());
        match interpret(with(Err(missing)), "h") {
            Err(BootstrapError::RockdNotFound { tried, .. }) => {
                assert_eq!(tried, ["a", "b (on PATH)"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            interpret(with(Err(BootError::Remote("no port".into()))), "h"),
            Err(BootstrapError::RockdFailed { .. })
        ));
        assert!(matches!(
            interpret(Output::default(), "h"),
            Err(BootstrapError::RockdFailed { .. })
        ));
    }

    #[test]
    fn known_key_types_are_offered_first() {
        let config = client_config(&[Algorithm::Rsa { hash: None }]);
        assert!(same_key_type(
            &config.preferred.key[0],
            &Algorithm::Rsa { hash: None }
        ));
        assert!(same_key_type(
            &config.preferred.key[1],
            &Algorithm::Rsa { hash: None }
        ));
        assert_eq!(
            config.preferred.key.len(),
            russh::Preferred::DEFAULT.key.len()
        );
        assert!(config.inactivity_timeout.is_none());
    }

    #[test]
    fn tilde_expands_to_home() {
        let home = dirs::home_dir().expect("home");
        assert_eq!(expand_tilde(Path::new("~/.ssh/x")), home.join(".ssh/x"));
        assert_eq!(expand_tilde(Path::new("/etc/x")), PathBuf::from("/etc/x"));
    }
}
