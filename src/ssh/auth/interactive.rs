//! The methods the user types for: keyboard-interactive and password.

use russh::MethodKind;
use russh::client::{AuthResult, Handler, KeyboardInteractiveAuthResponse};
use zeroize::Zeroizing;

use super::{Auth, AuthError, Authenticated, MAX_KBD_ROUNDS, Secrets, Step};
use crate::ssh::prompt::PromptError;

impl<H: Handler> Auth<'_, H> {
    pub(super) async fn keyboard_interactive(
        &mut self,
        password_rejected: &mut bool,
    ) -> Result<Step, AuthError> {
        if !self.allows(MethodKind::KeyboardInteractive)
            || !self.target.kbd_interactive_authentication
        {
            return Ok(Step::Continue);
        }
        if !self.can_prompt() {
            self.notes
                .push("keyboard-interactive: not tried (BatchMode)".to_owned());
            return Ok(Step::Continue);
        }
        self.tried.push("keyboard-interactive".to_owned());
        let user = self.target.user.clone();
        let mut reply = self
            .handle
            .authenticate_keyboard_interactive_start(user, None)
            .await
            .map_err(AuthError::Transport)?;
        let mut typed_password: Option<Zeroizing<String>> = None;
        for _ in 0..MAX_KBD_ROUNDS {
            match reply {
                KeyboardInteractiveAuthResponse::Success => {
                    return Ok(Step::Done(Authenticated {
                        method: "keyboard-interactive",
                        secrets: Secrets::password(typed_password),
                    }));
                }
                KeyboardInteractiveAuthResponse::Failure {
                    remaining_methods,
                    partial_success,
                } => {
                    *password_rejected = typed_password.is_some();
                    let result = AuthResult::Failure {
                        remaining_methods,
                        partial_success,
                    };
                    return Ok(self.settle(result, "keyboard-interactive", Secrets::default()));
                }
                KeyboardInteractiveAuthResponse::InfoRequest {
                    name,
                    instructions,
                    prompts,
                } => {
                    let answers = match self
                        .kbd_answers(&name, &instructions, &prompts, &mut typed_password)
                        .await
                    {
                        Ok(answers) => answers,
                        Err(e) => {
                            self.notes.push(format!("keyboard-interactive: {e}"));
                            return Ok(Step::Continue);
                        }
                    };
                    reply = self
                        .handle
                        .authenticate_keyboard_interactive_respond(answers)
                        .await
                        .map_err(AuthError::Transport)?;
                }
            }
        }
        self.notes
            .push("keyboard-interactive: the server kept asking; gave up".to_owned());
        Ok(Step::Continue)
    }

    /// Answers one info request. A hidden prompt that asks for a password
    /// is remembered as the password.
    async fn kbd_answers(
        &self,
        name: &str,
        instructions: &str,
        prompts: &[russh::client::Prompt],
        typed_password: &mut Option<Zeroizing<String>>,
    ) -> Result<Vec<String>, PromptError> {
        for text in [name, instructions] {
            if !text.is_empty() {
                self.prompter.show(text);
            }
        }
        let mut answers = Vec::with_capacity(prompts.len());
        for prompt in prompts {
            // OpenSSH names the account in front of the server's prompt.
            let shown = format!(
                "({}@{}) {}",
                self.target.user,
                self.target.prompt_host(),
                prompt.prompt
            );
            let answer = self.ask(shown, prompt.echo).await?;
            if !prompt.echo && prompt.prompt.to_ascii_lowercase().contains("password") {
                *typed_password = Some(answer.clone());
            }
            answers.push(answer.as_str().to_owned());
        }
        Ok(answers)
    }

    // ---- password ------------------------------------------------------

    pub(super) async fn password(&mut self) -> Result<Step, AuthError> {
        if !self.allows(MethodKind::Password) || !self.target.password_authentication {
            return Ok(Step::Continue);
        }
        if !self.can_prompt() {
            self.notes
                .push("password: not asked (BatchMode)".to_owned());
            return Ok(Step::Continue);
        }
        let prompt = format!(
            "{}@{}'s password: ",
            self.target.user,
            self.target.prompt_host()
        );
        let password = match self.ask(prompt, false).await {
            Ok(password) => password,
            Err(e) => {
                self.notes.push(format!("password: {e}"));
                return Ok(Step::Continue);
            }
        };
        self.tried.push("password".to_owned());
        let user = self.target.user.clone();
        let result = self
            .handle
            .authenticate_password(user, password.as_str())
            .await
            .map_err(AuthError::Transport)?;
        Ok(self.settle(result, "password", Secrets::password(Some(password))))
    }
}
