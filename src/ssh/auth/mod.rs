//! User authentication for the bootstrap connection, in OpenSSH's order.
//!
//! Owns the choice and order of methods: `none` (to learn what the server
//! accepts), then public keys — the agent's (unless `IdentitiesOnly`
//! limits them to the configured files' keys), then identity files — then
//! keyboard-interactive, then password.
//!
//! Invariants:
//! * Secrets are asked for as often as OpenSSH asks (sshconnect2.c), up
//!   to `NumberOfPasswordPrompts` times each: a key file's passphrase (an
//!   empty answer moves on at once), keyboard-interactive, then password,
//!   each with its own count. A prompt that gets no answer ends its
//!   method, so a prompter with nothing more to give (a reconnection's
//!   replay) is never asked in a loop. A key file is decrypted (and its
//!   passphrase asked) only after the server said it would accept that
//!   key, as OpenSSH does.
//! * RSA signatures use the best hash the server supports
//!   (`best_supported_rsa_hash`), for agent keys too: OpenSSH 8.8+ refuses
//!   SHA-1.
//! * Under `BatchMode` nothing is asked; `PasswordAuthentication no` and
//!   `KbdInteractiveAuthentication no` switch those methods off.
//! * The password or passphrase the user typed is kept (in [`Zeroizing`])
//!   only if it authenticated — the try that worked, never a refused one:
//!   it is handed to the inner ssh later, and to rock's own logins when it
//!   reconnects through ssh, so that the user types it once.
//!
//! This file holds the order, the outcome and the public keys; the rest:
//! * `interactive` — keyboard-interactive and password, the methods the
//!   user types for.
//! * `key_file` — key files: their public half, the passphrase, signing.

use std::path::PathBuf;
use std::sync::Arc;

use russh::client::{AuthResult, Handle, Handler};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{HashAlg, PublicKey};
use russh::{MethodKind, MethodSet};
use zeroize::Zeroizing;

use super::known_hosts::fingerprint;
use super::prompt::{PromptError, Prompter};
use super::target::{BootstrapTarget, expand_tilde};

mod interactive;
mod key_file;

use key_file::{FileSigner, IdentityFile, PassphrasePrompt, SignError};

/// The keys OpenSSH tries when no `IdentityFile` is configured (those rock
/// can use).
pub const DEFAULT_IDENTITY_FILES: [&str; 3] =
    ["~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa"];

/// Most keyboard-interactive rounds answered before giving up.
const MAX_KBD_ROUNDS: usize = 16;

/// A successful authentication.
#[derive(Debug)]
pub struct Authenticated {
    /// The method that succeeded (`publickey`, `password`, ...).
    pub method: &'static str,
    /// What the user typed for the method that succeeded.
    pub secrets: Secrets,
}

/// The secrets the user typed for the authentication that succeeded, kept
/// so the inner ssh (and, with `reconnect = "ssh"`, each new link) can be
/// answered without asking again. Its `Debug` output says which secrets
/// are held, never what they are.
#[derive(Default, Clone)]
pub struct Secrets {
    /// The account password (password or keyboard-interactive).
    pub password: Option<Zeroizing<String>>,
    /// The key file that authenticated and the passphrase that unlocked it.
    pub key_passphrase: Option<(PathBuf, Zeroizing<String>)>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = |present: bool| if present { "<held>" } else { "<none>" };
        f.debug_struct("Secrets")
            .field("password", &held(self.password.is_some()))
            .field(
                "key_passphrase",
                &self
                    .key_passphrase
                    .as_ref()
                    .map(|(path, _)| (path, "<held>")),
            )
            .finish()
    }
}

impl Secrets {
    /// Nothing was typed.
    pub fn is_empty(&self) -> bool {
        self.password.is_none() && self.key_passphrase.is_none()
    }

    fn password(password: Option<Zeroizing<String>>) -> Secrets {
        Secrets {
            password,
            key_passphrase: None,
        }
    }
}

/// Authentication did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Every method available was tried and refused.
    #[error("{}", denied_message(.user, .host, .tried, .server_methods, .notes))]
    Denied {
        /// The user name.
        user: String,
        /// The host as shown in prompts.
        host: String,
        /// What was tried, in order ("publickey /home/u/.ssh/id_ed25519").
        tried: Vec<String>,
        /// The methods the server accepts.
        server_methods: Vec<String>,
        /// Why methods were skipped or failed (no agent, no terminal, ...).
        notes: Vec<String>,
    },
    /// The connection failed during authentication.
    #[error("connection lost during authentication: {0}")]
    Transport(#[source] russh::Error),
}

fn denied_message(
    user: &str,
    host: &str,
    tried: &[String],
    server_methods: &[String],
    notes: &[String],
) -> String {
    let tried = if tried.is_empty() {
        "nothing".to_owned()
    } else {
        tried.join(", ")
    };
    let mut msg = format!(
        "{user}@{host}: permission denied (the server accepts {}; rock tried {tried})",
        server_methods.join(",")
    );
    for note in notes {
        msg.push_str("\n  ");
        msg.push_str(note);
    }
    msg.push_str(
        "\n  Check that `ssh` alone can log in (key in authorized_keys, agent running, \
         right password).",
    );
    msg
}

/// Authenticates `target.user` on `handle`, asking `prompter` for secrets.
pub async fn authenticate<H: Handler>(
    handle: &mut Handle<H>,
    target: &BootstrapTarget,
    prompter: Arc<dyn Prompter>,
) -> Result<Authenticated, AuthError> {
    let mut auth = Auth {
        handle,
        target,
        prompter,
        allowed: MethodSet::empty(),
        listed: MethodSet::empty(),
        tried: Vec::new(),
        notes: Vec::new(),
        offered: Vec::new(),
        rsa_hash: None,
    };
    auth.run().await
}

/// What one attempt led to.
enum Step {
    Done(Authenticated),
    Continue,
}

struct Auth<'a, H: Handler> {
    handle: &'a mut Handle<H>,
    target: &'a BootstrapTarget,
    prompter: Arc<dyn Prompter>,
    /// What the server still accepts, from its last failure message.
    allowed: MethodSet,
    /// The last list of methods the server sent: what the refusal names
    /// when the connection ended (russh reports that as an empty list).
    listed: MethodSet,
    tried: Vec<String>,
    notes: Vec<String>,
    /// Public keys already offered, so a key is never offered twice.
    offered: Vec<PublicKey>,
    /// The server's preferred RSA hash, once asked.
    rsa_hash: Option<Option<HashAlg>>,
}

impl<H: Handler> Auth<'_, H> {
    async fn run(&mut self) -> Result<Authenticated, AuthError> {
        let none = self
            .handle
            .authenticate_none(self.target.user.clone())
            .await
            .map_err(AuthError::Transport)?;
        if let Step::Done(done) = self.settle(none, "none", Secrets::default()) {
            return Ok(done);
        }
        if let Step::Done(done) = self.public_keys().await? {
            return Ok(done);
        }
        // As OpenSSH: keyboard-interactive's tries, then password's.
        if let Step::Done(done) = self.keyboard_interactive().await? {
            return Ok(done);
        }
        if let Step::Done(done) = self.password().await? {
            return Ok(done);
        }
        Err(self.denied())
    }

    fn denied(&mut self) -> AuthError {
        AuthError::Denied {
            user: self.target.user.clone(),
            host: self.target.prompt_host().to_owned(),
            tried: std::mem::take(&mut self.tried),
            server_methods: self.listed.iter().map(String::from).collect(),
            notes: std::mem::take(&mut self.notes),
        }
    }

    fn allows(&self, method: MethodKind) -> bool {
        self.allowed.contains(&method)
    }

    /// Records the server's answer to one attempt.
    fn settle(&mut self, result: AuthResult, method: &'static str, secrets: Secrets) -> Step {
        match result {
            AuthResult::Success => Step::Done(Authenticated { method, secrets }),
            AuthResult::Failure {
                remaining_methods,
                partial_success,
            } => {
                if partial_success {
                    self.notes.push(format!(
                        "{method}: accepted, but the server requires a further method"
                    ));
                }
                if remaining_methods.is_empty() {
                    if !self.listed.is_empty() {
                        self.notes.push(format!(
                            "{method}: the server closed the connection (sshd does after \
                             MaxAuthTries failed attempts)"
                        ));
                    }
                } else {
                    self.listed = remaining_methods.clone();
                }
                self.allowed = remaining_methods;
                Step::Continue
            }
        }
    }

    fn can_prompt(&self) -> bool {
        !self.target.batch_mode
    }

    /// How many times a secret may be asked (`NumberOfPasswordPrompts`).
    fn tries(&self) -> u32 {
        self.target.number_of_password_prompts
    }

    /// Records that `method` was tried `times` times, for the refusal.
    fn tried_times(&mut self, method: &str, times: u32) {
        match times {
            0 => {}
            1 => self.tried.push(method.to_owned()),
            n => self.tried.push(format!("{method} ({n} tries)")),
        }
    }

    fn passphrase_prompt(&self) -> PassphrasePrompt {
        PassphrasePrompt {
            prompter: Arc::clone(&self.prompter),
            allowed: self.can_prompt(),
            tries: self.tries(),
        }
    }

    async fn ask(&self, prompt: String, echo: bool) -> Result<Zeroizing<String>, PromptError> {
        ask(&self.prompter, prompt, echo).await
    }

    async fn rsa_hash(&mut self) -> Option<HashAlg> {
        if let Some(hash) = self.rsa_hash {
            return hash;
        }
        // Ok(Some(h)): the server listed its signature algorithms.
        // Anything else: it did not, and only SHA-1 is safe to assume.
        let hash = match self.handle.best_supported_rsa_hash().await {
            Ok(Some(hash)) => hash,
            _ => None,
        };
        self.rsa_hash = Some(hash);
        hash
    }

    async fn hash_for(&mut self, key: &PublicKey) -> Option<HashAlg> {
        if key.algorithm().is_rsa() {
            self.rsa_hash().await
        } else {
            None
        }
    }

    // ---- public keys -------------------------------------------------

    async fn public_keys(&mut self) -> Result<Step, AuthError> {
        if !self.target.pubkey_authentication {
            self.notes
                .push("public keys: off (PubkeyAuthentication no)".to_owned());
            return Ok(Step::Continue);
        }
        let files = self.identity_files();
        let file_publics: Vec<PublicKey> = files.iter().filter_map(|f| f.public.clone()).collect();
        if let Step::Done(done) = self.agent_keys(&file_publics).await? {
            return Ok(Step::Done(done));
        }
        for file in files {
            if !self.allows(MethodKind::PublicKey) {
                break;
            }
            if let Step::Done(done) = self.file_key(file).await? {
                return Ok(Step::Done(done));
            }
        }
        Ok(Step::Continue)
    }

    fn identity_files(&mut self) -> Vec<IdentityFile> {
        let configured: Vec<PathBuf> = if self.target.identity_files.is_empty() {
            DEFAULT_IDENTITY_FILES.iter().map(PathBuf::from).collect()
        } else {
            self.target.identity_files.clone()
        };
        let mut files = Vec::new();
        for path in configured.iter().map(|p| expand_tilde(p)) {
            if files.iter().any(|f: &IdentityFile| f.path == path) {
                continue;
            }
            match IdentityFile::read(&path) {
                Ok(Some(file)) => files.push(file),
                Ok(None) => tracing::debug!("identity file {} does not exist", path.display()),
                Err(why) => self.notes.push(format!("{}: {why}", path.display())),
            }
        }
        files
    }

    async fn agent_keys(&mut self, file_publics: &[PublicKey]) -> Result<Step, AuthError> {
        let Some(socket) = self.target.agent_socket.clone() else {
            return Ok(Step::Continue);
        };
        if !self.allows(MethodKind::PublicKey) {
            return Ok(Step::Continue);
        }
        let mut agent = match AgentClient::connect_uds(&socket).await {
            Ok(agent) => agent,
            Err(e) => {
                self.notes
                    .push(format!("agent {}: cannot connect: {e}", socket.display()));
                return Ok(Step::Continue);
            }
        };
        if let Some(binding) = self.handle.agent_session_binding() {
            // Older agents do not know session binding; that is not an error.
            if let Err(e) = agent.bind_session(binding, false).await {
                tracing::debug!("agent session-bind: {e}");
            }
        }
        let identities = match agent.request_identities().await {
            Ok(ids) => ids,
            Err(e) => {
                self.notes.push(format!("agent: cannot list keys: {e}"));
                return Ok(Step::Continue);
            }
        };
        for identity in identities {
            let public = identity.public_key().into_owned();
            if self.target.identities_only
                && !file_publics
                    .iter()
                    .any(|p| p.key_data() == public.key_data())
            {
                continue;
            }
            if !self.allows(MethodKind::PublicKey) {
                break;
            }
            if let Step::Done(done) = self.agent_key(&mut agent, identity, &public).await? {
                return Ok(Step::Done(done));
            }
        }
        Ok(Step::Continue)
    }

    async fn agent_key(
        &mut self,
        agent: &mut AgentClient<tokio::net::UnixStream>,
        identity: AgentIdentity,
        public: &PublicKey,
    ) -> Result<Step, AuthError> {
        if self.already_offered(public) {
            return Ok(Step::Continue);
        }
        let hash = self.hash_for(public).await;
        let user = self.target.user.clone();
        self.tried
            .push(format!("publickey (agent key {})", fingerprint(public)));
        let result = match identity {
            AgentIdentity::PublicKey { key, .. } => {
                self.handle
                    .authenticate_publickey_with(user, key, hash, agent)
                    .await
            }
            AgentIdentity::Certificate { certificate, .. } => {
                self.handle
                    .authenticate_certificate_with(user, certificate, hash, agent)
                    .await
            }
        };
        match result {
            Ok(result) => Ok(self.settle(result, "publickey", Secrets::default())),
            Err(e) => {
                self.notes
                    .push(format!("agent key {}: {e}", fingerprint(public)));
                Ok(Step::Continue)
            }
        }
    }

    fn already_offered(&mut self, key: &PublicKey) -> bool {
        if self.offered.iter().any(|k| k.key_data() == key.key_data()) {
            return true;
        }
        self.offered.push(key.clone());
        false
    }

    async fn file_key(&mut self, mut file: IdentityFile) -> Result<Step, AuthError> {
        let public = match file.public.clone() {
            Some(public) => public,
            // No public half anywhere: the key must be decrypted first.
            None => match file.unlock(&self.passphrase_prompt()).await {
                Ok(key) => key.public_key().clone(),
                Err(why) => {
                    self.notes.push(format!("{}: {why}", file.path.display()));
                    return Ok(Step::Continue);
                }
            },
        };
        if self.already_offered(&public) {
            return Ok(Step::Continue);
        }
        let hash = self.hash_for(&public).await;
        self.tried
            .push(format!("publickey ({})", file.path.display()));
        let mut signer = FileSigner {
            file: &mut file,
            asking: self.passphrase_prompt(),
        };
        let user = self.target.user.clone();
        match self
            .handle
            .authenticate_publickey_with(user, public, hash, &mut signer)
            .await
        {
            Ok(result) => {
                let key_passphrase = file.passphrase.take().map(|p| (file.path.clone(), p));
                let secrets = Secrets {
                    password: None,
                    key_passphrase,
                };
                Ok(self.settle(result, "publickey", secrets))
            }
            Err(SignError::Send(_)) => Err(AuthError::Transport(russh::Error::SendError)),
            Err(e) => {
                self.notes.push(format!("{}: {e}", file.path.display()));
                Ok(Step::Continue)
            }
        }
    }
}

/// Runs a prompt on tokio's blocking pool: the terminal read blocks.
async fn ask(
    prompter: &Arc<dyn Prompter>,
    prompt: String,
    echo: bool,
) -> Result<Zeroizing<String>, PromptError> {
    let prompter = Arc::clone(prompter);
    let what = prompt.clone();
    tokio::task::spawn_blocking(move || {
        if echo {
            prompter.answer(&prompt)
        } else {
            prompter.password(&prompt)
        }
    })
    .await
    .unwrap_or_else(|e| {
        Err(PromptError::Io {
            what,
            source: std::io::Error::other(e),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_a_secret() {
        let secrets = Secrets {
            password: Some(Zeroizing::new("hunter2-password".into())),
            key_passphrase: Some((
                PathBuf::from("/home/u/.ssh/id_ed25519"),
                Zeroizing::new("open-sesame".into()),
            )),
        };
        let shown = format!("{secrets:?} {secrets:#?}");
        assert!(!shown.contains("hunter2-password"), "{shown}");
        assert!(!shown.contains("open-sesame"), "{shown}");
        assert!(
            shown.contains("id_ed25519"),
            "which key is held may show: {shown}"
        );
        assert!(format!("{:?}", Secrets::default()).contains("<none>"));
    }
}
