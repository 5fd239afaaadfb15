//! One small `sh` script run on the remote host over its own exec channel
//! of the bootstrap connection (no new login): the command line, optional
//! bytes on stdin (sent while the output is read, so neither side can
//! block the other), and what came back, within a time limit.

use std::time::Duration;

use russh::ChannelMsg;
use russh::client::Handle;
use tokio::time::Instant;

use super::BootstrapError;
use super::command::sh_quote;
use super::handshake::BootHandler;

/// Bytes of stdout kept; a script's answer is a few lines.
const MAX_STDOUT: usize = 64 * 1024;
/// Bytes of stderr kept (the last ones), for messages.
const MAX_STDERR: usize = 4096;

/// What a script printed and how it ended.
#[derive(Debug, Default)]
pub(super) struct ScriptOutput {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// Its exit status, if the server sent one.
    pub(super) exit_status: Option<u32>,
}

impl ScriptOutput {
    /// The values of the stdout lines that start with `prefix` and a
    /// space, in order; other lines (shell start-up noise) are skipped.
    pub(super) fn values<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        std::str::from_utf8(&self.stdout)
            .unwrap_or_default()
            .lines()
            .filter_map(move |line| line.strip_prefix(prefix)?.strip_prefix(' '))
    }

    /// The end of stderr, trimmed.
    pub(super) fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_owned()
    }

    /// The exit status, for messages.
    pub(super) fn how_it_ended(&self) -> String {
        match self.exit_status {
            Some(status) => format!("exit status {status}"),
            None => "no exit status".to_owned(),
        }
    }
}

#[cfg(test)]
impl ScriptOutput {
    /// An output that printed `stdout` and exited 0.
    pub(super) fn from_stdout(stdout: &[u8]) -> ScriptOutput {
        ScriptOutput {
            stdout: stdout.to_vec(),
            stderr: Vec::new(),
            exit_status: Some(0),
        }
    }
}

/// The command that runs `script` with `sh`, whatever the login shell,
/// with `$0` = `name` and the arguments quoted for it.
pub(super) fn script_command(script: &str, name: &str, args: &[&str]) -> String {
    let mut command = format!("exec sh -c {} {name}", sh_quote(script));
    for arg in args {
        command.push(' ');
        command.push_str(&sh_quote(arg));
    }
    command
}

/// Runs `script` on the remote host; `stdin` (if any) is sent, then EOF.
/// `what` names the step in errors ("probing the remote system").
pub(super) async fn run_script(
    handle: &Handle<BootHandler>,
    command: String,
    stdin: Option<&[u8]>,
    limit: Duration,
    host: &str,
    what: &str,
) -> Result<ScriptOutput, BootstrapError> {
    let fail = |detail: String| BootstrapError::protocol(host, format!("{what}: {detail}"));
    let channel = handle
        .channel_open_session()
        .await
        .map_err(|e| fail(format!("opening a session channel: {e}")))?;
    let (mut read, write) = channel.split();
    write
        .exec(true, command)
        .await
        .map_err(|e| fail(format!("starting sh: {e}")))?;
    let send = async {
        if let Some(bytes) = stdin {
            write.data(bytes).await?;
        }
        write.eof().await
    };
    let mut send = std::pin::pin!(send);
    let mut sending = true;
    let mut output = ScriptOutput::default();
    let deadline = Instant::now() + limit;
    loop {
        tokio::select! {
            sent = &mut send, if sending => {
                sending = false;
                // The script may end before it read everything (it failed);
                // what it printed says why, so keep reading.
                if let Err(e) = sent {
                    tracing::debug!("{what}: sending stdin stopped: {e}");
                }
            }
            msg = tokio::time::timeout_at(deadline, read.wait()) => match msg {
                Err(_) => {
                    return Err(BootstrapError::Protocol {
                        host: host.to_owned(),
                        detail: format!("{what}: no end within {} s", limit.as_secs()),
                        stderr: output.stderr_text(),
                    });
                }
                Ok(None) | Ok(Some(ChannelMsg::Close)) => break,
                Ok(Some(ChannelMsg::Data { data })) => {
                    let room = MAX_STDOUT.saturating_sub(output.stdout.len());
                    output.stdout.extend_from_slice(&data[..data.len().min(room)]);
                }
                Ok(Some(ChannelMsg::ExtendedData { data, ext: 1 })) => {
                    output.stderr.extend_from_slice(&data);
                    if output.stderr.len() > MAX_STDERR {
                        let cut = output.stderr.len() - MAX_STDERR;
                        output.stderr.drain(..cut);
                    }
                }
                Ok(Some(ChannelMsg::ExitStatus { exit_status })) => {
                    output.exit_status = Some(exit_status);
                }
                Ok(Some(ChannelMsg::Failure)) => {
                    return Err(fail(
                        "the server refused to run a command (exec request failed)".to_owned(),
                    ));
                }
                Ok(Some(_)) => {}
            }
        }
    }
    Ok(output)
}
