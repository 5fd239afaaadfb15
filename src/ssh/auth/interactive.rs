//! The methods the user types for: keyboard-interactive and password,
//! each tried up to `NumberOfPasswordPrompts` times with a count of its
//! own, as OpenSSH's `userauth_kbdint` and `userauth_passwd` do.
//!
//! Invariants:
//! * Keyboard-interactive starts again after each refusal, without a
//!   message of its own (the server's next prompt says it); it is not
//!   started again when the server never sent a prompt. Password shows
//!   `Permission denied, please try again.` before each try after the
//!   first, as ssh does.
//! * A prompt that produces no answer (cancelled, no terminal, a replay
//!   with nothing left to give) ends the method: it is not asked again.
//! * Only the attempt that succeeded hands back what was typed.

use russh::MethodKind;
use russh::client::{AuthResult, Handler, KeyboardInteractiveAuthResponse};
use zeroize::Zeroizing;

use super::{Auth, AuthError, Authenticated, MAX_KBD_ROUNDS, Secrets, Step};
use crate::ssh::prompt::PromptError;

/// What ssh prints between password tries.
const TRY_AGAIN: &str = "Permission denied, please try again.";

/// How one keyboard-interactive attempt ended.
enum Attempt {
    Done(Authenticated),
    /// The server refused the answers: another attempt may follow.
    Refused,
    /// No answer to give, or a server that never stops asking.
    GaveUp,
}

impl<H: Handler> Auth<'_, H> {
    pub(super) async fn keyboard_interactive(&mut self) -> Result<Step, AuthError> {
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
        let mut tries = 0;
        // OpenSSH's `info_req_seen`: a server that sent no prompt on the
        // first attempt has nothing to ask on the next.
        let mut prompted = false;
        let step = loop {
            if tries >= self.tries()
                || !self.allows(MethodKind::KeyboardInteractive)
                || (tries > 0 && !prompted)
            {
                break Step::Continue;
            }
            tries += 1;
            match self.kbd_attempt(&mut prompted).await? {
                Attempt::Done(done) => break Step::Done(done),
                Attempt::Refused => {}
                Attempt::GaveUp => break Step::Continue,
            }
        };
        self.tried_times("keyboard-interactive", tries);
        Ok(step)
    }

    /// One keyboard-interactive attempt: the server's rounds of prompts,
    /// answered until it says yes or no.
    async fn kbd_attempt(&mut self, prompted: &mut bool) -> Result<Attempt, AuthError> {
        let user = self.target.user.clone();
        let mut reply = self
            .handle
            .authenticate_keyboard_interactive_start(user, None)
            .await
            .map_err(AuthError::Transport)?;
        // The password typed in this attempt, kept only if it succeeds.
        let mut typed_password: Option<Zeroizing<String>> = None;
        for _ in 0..MAX_KBD_ROUNDS {
            match reply {
                KeyboardInteractiveAuthResponse::Success => {
                    return Ok(Attempt::Done(Authenticated {
                        method: "keyboard-interactive",
                        secrets: Secrets::password(typed_password),
                    }));
                }
                KeyboardInteractiveAuthResponse::Failure {
                    remaining_methods,
                    partial_success,
                } => {
                    let result = AuthResult::Failure {
                        remaining_methods,
                        partial_success,
                    };
                    return Ok(
                        match self.settle(result, "keyboard-interactive", Secrets::default()) {
                            Step::Done(done) => Attempt::Done(done),
                            Step::Continue => Attempt::Refused,
                        },
                    );
                }
                KeyboardInteractiveAuthResponse::InfoRequest {
                    name,
                    instructions,
                    prompts,
                } => {
                    *prompted = true;
                    let answers = match self
                        .kbd_answers(&name, &instructions, &prompts, &mut typed_password)
                        .await
                    {
                        Ok(answers) => answers,
                        Err(e) => {
                            self.notes.push(format!("keyboard-interactive: {e}"));
                            return Ok(Attempt::GaveUp);
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
        Ok(Attempt::GaveUp)
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
        let mut tries = 0;
        let step = loop {
            if tries >= self.tries() || !self.allows(MethodKind::Password) {
                break Step::Continue;
            }
            if tries > 0 {
                self.prompter.show(TRY_AGAIN);
            }
            let password = match self.ask(prompt.clone(), false).await {
                Ok(password) => password,
                Err(e) => {
                    self.notes.push(format!("password: {e}"));
                    break Step::Continue;
                }
            };
            tries += 1;
            let user = self.target.user.clone();
            let result = self
                .handle
                .authenticate_password(user, password.as_str())
                .await
                .map_err(AuthError::Transport)?;
            // The secret goes with the answer: kept only on success.
            if let Step::Done(done) =
                self.settle(result, "password", Secrets::password(Some(password)))
            {
                break Step::Done(done);
            }
        };
        self.tried_times("password", tries);
        Ok(step)
    }
}
