//! Key files: reading one, finding its public half without the passphrase,
//! decrypting it (asking for the passphrase) only once the server has
//! accepted the key, and signing with it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::Signer;
use russh::keys::agent::AgentIdentity;
use russh::keys::{HashAlg, PrivateKey, PublicKey};
use zeroize::Zeroizing;

use super::ask;
use crate::ssh::prompt::{PromptError, Prompter};

/// A key file: its text, its public half if readable without the
/// passphrase, and the private key once decrypted.
pub(super) struct IdentityFile {
    pub(super) path: PathBuf,
    text: Zeroizing<String>,
    pub(super) public: Option<PublicKey>,
    private: Option<Arc<PrivateKey>>,
    /// The passphrase was asked already, and never right: not again.
    asked: bool,
    /// The passphrase that unlocked the key, if it needed one.
    pub(super) passphrase: Option<Zeroizing<String>>,
}

impl IdentityFile {
    /// Reads the file; `Ok(None)` if it does not exist.
    pub(super) fn read(path: &Path) -> Result<Option<IdentityFile>, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => Zeroizing::new(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read: {e}")),
        };
        let mut file = IdentityFile {
            path: path.to_path_buf(),
            text,
            public: None,
            private: None,
            asked: false,
            passphrase: None,
        };
        file.find_public();
        Ok(Some(file))
    }

    /// Finds the public key without a passphrase: from an unencrypted key,
    /// the public section of an OpenSSH-format key, or `<file>.pub`.
    fn find_public(&mut self) {
        if let Ok(key) = russh::keys::decode_secret_key(&self.text, None) {
            self.public = Some(key.public_key().clone());
            self.private = Some(Arc::new(key));
            return;
        }
        if let Ok(key) = PrivateKey::from_openssh(self.text.as_bytes()) {
            self.public = Some(key.public_key().clone());
            return;
        }
        let mut pub_path = self.path.clone().into_os_string();
        pub_path.push(".pub");
        if let Ok(key) = russh::keys::load_public_key(PathBuf::from(pub_path)) {
            self.public = Some(key);
        }
    }

    /// The private key, asking for the passphrase if needed as OpenSSH's
    /// `load_identity_file` does: up to `asking.tries` times, giving up at
    /// once on an empty answer or a prompt that got none. The passphrase
    /// kept is the one that decrypted the key; a key given up on is not
    /// asked for again.
    pub(super) async fn unlock(
        &mut self,
        asking: &PassphrasePrompt,
    ) -> Result<Arc<PrivateKey>, SignError> {
        if let Some(key) = &self.private {
            return Ok(Arc::clone(key));
        }
        match russh::keys::decode_secret_key(&self.text, None) {
            Ok(key) => return Ok(self.keep(key)),
            Err(russh::keys::Error::KeyIsEncrypted) => {}
            Err(e) => return Err(SignError::Key(e.to_string())),
        }
        if self.asked {
            return Err(SignError::Key("no right passphrase given".to_owned()));
        }
        if !asking.allowed {
            return Err(SignError::Prompt(PromptError::Disabled {
                what: "the key's passphrase".to_owned(),
            }));
        }
        self.asked = true;
        let prompt = format!("Enter passphrase for key '{}': ", self.path.display());
        for _ in 0..asking.tries {
            let passphrase = ask(&asking.prompter, prompt.clone(), false)
                .await
                .map_err(SignError::Prompt)?;
            if passphrase.is_empty() {
                return Err(SignError::Key("no passphrase given".to_owned()));
            }
            match russh::keys::decode_secret_key(&self.text, Some(passphrase.as_str())) {
                Ok(key) => {
                    self.passphrase = Some(passphrase);
                    return Ok(self.keep(key));
                }
                Err(e) => tracing::debug!("{}: bad passphrase given: {e}", self.path.display()),
            }
        }
        Err(SignError::Key(match asking.tries {
            0 => "encrypted, and NumberOfPasswordPrompts is 0: its passphrase was not asked"
                .to_owned(),
            1 => "wrong passphrase (or a key format rock cannot read)".to_owned(),
            n => format!("wrong passphrase, {n} times (or a key format rock cannot read)"),
        }))
    }

    fn keep(&mut self, key: PrivateKey) -> Arc<PrivateKey> {
        let key = Arc::new(key);
        self.private = Some(Arc::clone(&key));
        key
    }
}

/// Why a key file could not sign.
#[derive(Debug, thiserror::Error)]
pub(super) enum SignError {
    #[error("{0}")]
    Send(#[from] russh::SendError),
    #[error("{0}")]
    Prompt(PromptError),
    #[error("{0}")]
    Key(String),
}

/// Who asks for a key's passphrase, and how often.
pub(super) struct PassphrasePrompt {
    pub(super) prompter: Arc<dyn Prompter>,
    /// False under `BatchMode`: nothing is asked.
    pub(super) allowed: bool,
    /// `NumberOfPasswordPrompts`: the most tries.
    pub(super) tries: u32,
}

/// Signs with a key file, decrypting it only when the server has accepted
/// the key (SSH_MSG_USERAUTH_PK_OK), so that no passphrase is asked for a
/// key the server would refuse.
pub(super) struct FileSigner<'a> {
    pub(super) file: &'a mut IdentityFile,
    pub(super) asking: PassphrasePrompt,
}

impl Signer for FileSigner<'_> {
    type Error = SignError;

    async fn auth_sign(
        &mut self,
        _key: &AgentIdentity,
        hash_alg: Option<HashAlg>,
        to_sign: Vec<u8>,
    ) -> Result<Vec<u8>, SignError> {
        let key = self.file.unlock(&self.asking).await?;
        append_signature(&key, hash_alg, to_sign)
    }
}

/// Appends the SSH signature blob of `data` to `data`, as the agent
/// signer does: what russh sends after a `PK_OK`.
fn append_signature(
    key: &PrivateKey,
    hash_alg: Option<HashAlg>,
    mut data: Vec<u8>,
) -> Result<Vec<u8>, SignError> {
    use russh::keys::signature::Signer as _;
    use russh::keys::ssh_encoding::Encode as _;
    use russh::keys::ssh_key::Signature;
    use russh::keys::ssh_key::private::KeypairData;

    let signed: Result<Signature, _> = match key.key_data() {
        KeypairData::Rsa(pair) => (pair, hash_alg).try_sign(&data),
        _ => key.try_sign(&data),
    };
    let signature = signed.map_err(|e| SignError::Key(format!("cannot sign: {e}")))?;
    let blob = signature
        .encode_vec()
        .map_err(|e| SignError::Key(format!("cannot encode the signature: {e}")))?;
    blob.as_slice()
        .encode(&mut data)
        .map_err(|e| SignError::Key(format!("cannot encode the signature: {e}")))?;
    Ok(data)
}
