//! [`ReplayPrompter`]: answers a reconnection's authentication prompts
//! from what the user typed during the bootstrap, and never asks the
//! terminal. Each secret is handed out at most once per attempt, and only
//! to the prompt it belongs to (the rule the askpass helper follows too):
//! the password to an account-password prompt, a key's passphrase to the
//! prompt naming that key file. Authentication asks again after a refusal
//! (as ssh does, up to `NumberOfPasswordPrompts` times); such a retry gets
//! an error from here, which ends that method, never the refused secret
//! once more.

use std::sync::Mutex;

use zeroize::Zeroizing;

use crate::ssh::auth::Secrets;
use crate::ssh::prompt::{PromptError, Prompter, describe};
use crate::ssh::prompt::{is_password_prompt, passphrase_prompt_key};

/// A [`Prompter`] for one reconnection attempt; see the module docs.
pub(crate) struct ReplayPrompter {
    secrets: Mutex<Secrets>,
}

impl ReplayPrompter {
    /// A prompter that may hand out `secrets`, each once.
    pub(crate) fn new(secrets: Secrets) -> ReplayPrompter {
        ReplayPrompter {
            secrets: Mutex::new(secrets),
        }
    }

    fn take(&self, prompt: &str) -> Option<Zeroizing<String>> {
        let mut secrets = self.secrets.lock().ok()?;
        if is_password_prompt(prompt) {
            return secrets.password.take();
        }
        let key = passphrase_prompt_key(prompt)?;
        let matches = secrets
            .key_passphrase
            .as_ref()
            .is_some_and(|(path, _)| path.as_os_str() == key);
        if matches {
            secrets.key_passphrase.take().map(|(_, p)| p)
        } else {
            None
        }
    }
}

impl Prompter for ReplayPrompter {
    fn password(&self, prompt: &str) -> Result<Zeroizing<String>, PromptError> {
        self.take(prompt).ok_or_else(|| PromptError::Reconnecting {
            what: describe(prompt),
        })
    }

    fn answer(&self, prompt: &str) -> Result<Zeroizing<String>, PromptError> {
        Err(PromptError::Reconnecting {
            what: describe(prompt),
        })
    }

    /// Banners were shown once, by the bootstrap; a reconnection must not
    /// write over the user's session.
    fn show(&self, message: &str) {
        tracing::debug!("server message while reconnecting: {message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> Secrets {
        Secrets {
            password: Some(Zeroizing::new("pw".into())),
            key_passphrase: Some(("/k/id".into(), Zeroizing::new("pass".into()))),
        }
    }

    #[test]
    fn each_secret_goes_once_to_its_own_prompt() {
        let p = ReplayPrompter::new(secrets());
        assert!(p.password("Verification code: ").is_err());
        assert!(p.password("Enter passphrase for key '/k/other': ").is_err());
        assert_eq!(p.password("(u@h) Password: ").unwrap().as_str(), "pw");
        assert!(p.password("u@h's password: ").is_err());
        let key = p.password("Enter passphrase for key '/k/id': ").unwrap();
        assert_eq!(key.as_str(), "pass");
        assert!(p.password("Enter passphrase for key '/k/id': ").is_err());
    }

    #[test]
    fn nothing_is_ever_asked_on_the_terminal() {
        let p = ReplayPrompter::new(Secrets::default());
        let err = p.password("u@h's password: ").unwrap_err().to_string();
        assert!(err.contains("while reconnecting"), "{err}");
        assert!(p.answer("User name: ").is_err());
    }
}
