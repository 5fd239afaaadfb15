//! Asking the user for secrets during the bootstrap.
//!
//! Owns the [`Prompter`] trait through which authentication asks for
//! passwords, key passphrases and keyboard-interactive answers, and its
//! terminal implementation, which talks to `/dev/tty` (never stdin or
//! stdout: those may carry the user's data). Also tells ssh's own prompts
//! apart ([`is_password_prompt`], [`passphrase_prompt_key`]), for the
//! askpass answers of `rock -d` and the replays of links through ssh.
//!
//! Invariants:
//! * Secrets are returned in [`Zeroizing`] buffers and never logged.
//! * With no terminal a prompt fails with [`PromptError::NoTty`] rather
//!   than reading from somewhere else; under `BatchMode` the caller never
//!   prompts at all (see [`NoPrompter`]).
//! * Echo is off before a secret's prompt is written (as in OpenSSH's
//!   readpassphrase), and every prompt reads whole lines that Enter ends,
//!   whatever modes a shell left the terminal in. rpassword writes the prompt first and hides input
//!   after, which echoed a reply typed or pasted in between; hence our own
//!   few lines of termios.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};

use zeroize::Zeroizing;

/// Why a prompt produced no answer.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// There is no controlling terminal to ask on.
    #[error(
        "cannot ask for {what}: no terminal ({source}); \
         use an ssh-agent or a key without a passphrase, or run rock from a terminal"
    )]
    NoTty {
        /// What was to be asked ("a password", ...).
        what: String,
        /// Why `/dev/tty` could not be opened.
        source: std::io::Error,
    },
    /// Prompting is switched off (BatchMode).
    #[error("cannot ask for {what}: prompting is disabled (BatchMode)")]
    Disabled {
        /// What was to be asked.
        what: String,
    },
    /// A reconnection asked something the user did not answer during the
    /// bootstrap: rock never prompts once the session runs.
    #[error(
        "cannot ask for {what} while reconnecting: only the password or passphrase \
         typed when the session started is reused; use an ssh-agent or keys to reconnect \
         through ssh"
    )]
    Reconnecting {
        /// What was asked.
        what: String,
    },
    /// The user ended the input (Ctrl-D) or interrupted it (Ctrl-C).
    #[error("{what}: input cancelled")]
    Cancelled {
        /// What was asked.
        what: String,
    },
    /// Reading from the terminal failed.
    #[error("reading {what} from the terminal: {source}")]
    Io {
        /// What was asked.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Asks the user things during authentication.
///
/// Each method is called from a blocking context (the bootstrap runs it on
/// tokio's blocking pool), so an implementation may block on input.
pub trait Prompter: Send + Sync {
    /// Asks for a secret without echo: a password, a key passphrase, a
    /// hidden keyboard-interactive answer. `prompt` is shown as is.
    fn password(&self, prompt: &str) -> Result<Zeroizing<String>, PromptError>;

    /// Asks for an answer that may be echoed (keyboard-interactive prompts
    /// marked for echo, such as a user name).
    fn answer(&self, prompt: &str) -> Result<Zeroizing<String>, PromptError>;

    /// Shows a message: a login banner, keyboard-interactive instructions.
    fn show(&self, message: &str);
}

/// Prompts on the controlling terminal.
#[derive(Debug, Default, Clone, Copy)]
pub struct TerminalPrompter;

/// Refuses every prompt: for `BatchMode` and for tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoPrompter;

const TTY: &str = "/dev/tty";

/// A short description of a prompt for error messages ("a password",
/// "the passphrase for ..."), taken from the prompt text itself.
pub(crate) fn describe(prompt: &str) -> String {
    let trimmed = prompt.trim().trim_end_matches(':').trim();
    if trimmed.is_empty() {
        "an answer".to_owned()
    } else {
        format!("\"{trimmed}\"")
    }
}

fn map_read_error(prompt: &str, e: std::io::Error) -> PromptError {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::UnexpectedEof | ErrorKind::Interrupted => PromptError::Cancelled {
            what: describe(prompt),
        },
        _ => PromptError::Io {
            what: describe(prompt),
            source: e,
        },
    }
}

/// Opens the terminal for reading and writing, or says why not.
fn open_tty(prompt: &str) -> Result<std::fs::File, PromptError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(TTY)
        .map_err(|source| PromptError::NoTty {
            what: describe(prompt),
            source,
        })
}

/// Reads one line from the terminal, without its line ending.
fn read_line(tty: &std::fs::File, prompt: &str) -> Result<Zeroizing<String>, PromptError> {
    let mut line = Zeroizing::new(String::new());
    let n = BufReader::new(tty)
        .read_line(&mut line)
        .map_err(|e| map_read_error(prompt, e))?;
    if n == 0 {
        return Err(PromptError::Cancelled {
            what: describe(prompt),
        });
    }
    let end = line.trim_end_matches(['\r', '\n']).len();
    line.truncate(end);
    Ok(line)
}

/// The terminal set up for one prompt until dropped: whole lines (a
/// shell's line editor may have left it character by character, and a job
/// continued by `fg` gets the modes the shell saved when it stopped), Enter
/// ending them as `\r` or `\n` alike (OpenSSH's readpassphrase accepts
/// both), and for a secret, echo off but for the newline.
struct PromptMode<'a> {
    tty: &'a std::fs::File,
    saved: libc::termios,
}

impl<'a> PromptMode<'a> {
    fn new(tty: &'a std::fs::File, secret: bool) -> std::io::Result<Self> {
        use std::os::fd::AsRawFd;
        // SAFETY: termios is plain data, filled in by tcgetattr before use.
        let mut term: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: a valid descriptor and a valid termios pointer.
        if unsafe { libc::tcgetattr(tty.as_raw_fd(), &mut term) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let saved = term;
        term.c_lflag |= libc::ICANON;
        term.c_iflag |= libc::ICRNL;
        term.c_iflag &= !(libc::IGNCR | libc::INLCR);
        if secret {
            term.c_lflag &= !libc::ECHO;
            term.c_lflag |= libc::ECHONL;
        }
        // TCSANOW, not TCSAFLUSH: keep what was typed ahead.
        // SAFETY: as above.
        if unsafe { libc::tcsetattr(tty.as_raw_fd(), libc::TCSANOW, &term) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(PromptMode { tty, saved })
    }
}

impl Drop for PromptMode<'_> {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: restores the settings read in `new` on the same terminal.
        unsafe { libc::tcsetattr(self.tty.as_raw_fd(), libc::TCSANOW, &self.saved) };
    }
}

impl Prompter for TerminalPrompter {
    fn password(&self, prompt: &str) -> Result<Zeroizing<String>, PromptError> {
        let tty = open_tty(prompt)?;
        // Echo goes off before the prompt appears, as OpenSSH's
        // readpassphrase does: whatever is typed once the prompt shows is
        // never echoed, however fast it comes.
        let _mode = PromptMode::new(&tty, true).map_err(|e| map_read_error(prompt, e))?;
        (&tty)
            .write_all(prompt.as_bytes())
            .and_then(|()| (&tty).flush())
            .map_err(|e| map_read_error(prompt, e))?;
        read_line(&tty, prompt)
    }

    fn answer(&self, prompt: &str) -> Result<Zeroizing<String>, PromptError> {
        let tty = open_tty(prompt)?;
        let _mode = PromptMode::new(&tty, false).map_err(|e| map_read_error(prompt, e))?;
        (&tty)
            .write_all(prompt.as_bytes())
            .and_then(|()| (&tty).flush())
            .map_err(|e| map_read_error(prompt, e))?;
        read_line(&tty, prompt)
    }

    fn show(&self, message: &str) {
        // Banners go to stderr, as OpenSSH writes them.
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(message.as_bytes());
        if !message.ends_with('\n') {
            let _ = err.write_all(b"\n");
        }
    }
}

impl Prompter for NoPrompter {
    fn password(&self, prompt: &str) -> Result<Zeroizing<String>, PromptError> {
        Err(PromptError::Disabled {
            what: describe(prompt),
        })
    }

    fn answer(&self, prompt: &str) -> Result<Zeroizing<String>, PromptError> {
        Err(PromptError::Disabled {
            what: describe(prompt),
        })
    }

    fn show(&self, _message: &str) {}
}

/// Whether an ssh prompt asks for the account password (and nothing else:
/// not a key passphrase, a host-key confirmation, a one-time code or a new
/// password).
pub fn is_password_prompt(prompt: &str) -> bool {
    let p = prompt.trim_end().to_ascii_lowercase();
    let refused = [
        "passphrase",
        "new password",
        "yes/no",
        "verification",
        "otp",
        "token",
    ];
    p.ends_with("password:") && !refused.iter().any(|r| p.contains(r))
}

/// The key file an ssh passphrase prompt names, as in
/// `Enter passphrase for key '/home/a/.ssh/id_ed25519': `.
pub fn passphrase_prompt_key(prompt: &str) -> Option<&str> {
    prompt
        .strip_prefix("Enter passphrase for key '")?
        .trim_end()
        .strip_suffix("':")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_prompter_refuses_and_names_the_prompt() {
        let err = NoPrompter
            .password("bob@host's password: ")
            .expect_err("refused");
        assert!(err.to_string().contains("bob@host's password"), "{err}");
        assert!(err.to_string().contains("BatchMode"), "{err}");
    }

    #[test]
    fn errors_are_specific() {
        let eof = map_read_error("Password:", std::io::ErrorKind::UnexpectedEof.into());
        assert!(matches!(eof, PromptError::Cancelled { .. }));
        let other = map_read_error("Password:", std::io::ErrorKind::PermissionDenied.into());
        assert!(matches!(other, PromptError::Io { .. }));
        assert_eq!(describe("  "), "an answer");
    }

    #[test]
    fn a_passphrase_prompt_names_its_key() {
        assert_eq!(
            passphrase_prompt_key("Enter passphrase for key '/root/.ssh/id_ed25519': "),
            Some("/root/.ssh/id_ed25519")
        );
        assert_eq!(passphrase_prompt_key("me@host's password: "), None);
        assert_eq!(passphrase_prompt_key("Enter passphrase for key 'x"), None);
    }

    #[test]
    fn only_account_password_prompts_are_answered() {
        assert!(is_password_prompt("alice@example.org's password: "));
        assert!(is_password_prompt("(alice@example.org) Password: "));
        assert!(!is_password_prompt(
            "Enter passphrase for key '/home/a/.ssh/id_ed25519': "
        ));
        assert!(!is_password_prompt(
            "Are you sure you want to continue connecting (yes/no/[fingerprint])? "
        ));
        assert!(!is_password_prompt("(alice@host) Verification code: "));
        assert!(!is_password_prompt("New password: "));
        assert!(!is_password_prompt("Retype new password: "));
    }
}
