//! The exec channel that starts rockd: the remote command, the
//! [`BootRequest`] (with the session key) on stdin and EOF, then stdout
//! read line by line until rockd's answer. Start-up noise before rockd's
//! `rockd-` line is skipped up to a limit; a ready answer ends the reading
//! at once; after an error the channel is read on, for its stderr and exit
//! status, until it ends. The answer is waited for no longer than
//! [`ANSWER_TIMEOUT`], the end after an error no longer than
//! [`DRAIN_TIMEOUT`].

use std::time::Duration;

use russh::client::{Handle, Msg};
use russh::{Channel, ChannelMsg};
use tokio::time::Instant;
use zeroize::Zeroizing;

use super::handshake::BootHandler;
use super::{BootstrapError, RockdCommand, remote_command};
use crate::boot::{BootError, BootReady, BootRequest};

/// How long rockd may take to answer once the channel is open.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for the channel to end after rockd answered with an
/// error.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of other output (shell start-up noise) skipped before giving up.
pub const MAX_NOISE_LINES: usize = 200;
/// Bytes of other output skipped before giving up.
const MAX_NOISE_BYTES: usize = 64 * 1024;
/// Bytes of rockd's stderr kept for messages (the last ones).
const MAX_STDERR: usize = 4096;

/// What the exec channel produced.
#[derive(Debug, Default)]
pub(super) struct Output {
    /// The first `rockd-` line, parsed.
    pub(super) answer: Option<Result<BootReady, BootError>>,
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

    /// Takes stderr bytes; only the last [`MAX_STDERR`] are kept.
    fn stderr(&mut self, data: &[u8]) {
        self.stderr.extend_from_slice(data);
        if self.stderr.len() > MAX_STDERR {
            let cut = self.stderr.len() - MAX_STDERR;
            self.stderr.drain(..cut);
        }
    }

    /// The end of the remote stderr, trimmed.
    pub(super) fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_owned()
    }

    /// The exit status or signal, for messages.
    pub(super) fn how_it_ended(&self) -> String {
        match (&self.exit_status, &self.exit_signal) {
            (Some(status), _) => format!("exit status {status}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => "no exit status".to_owned(),
        }
    }
}

/// Opens the exec channel, sends the request, reads until the channel
/// ends.
pub(super) async fn run_rockd(
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

/// Reads the channel into `output` until it ends or a deadline passes.
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
            ChannelMsg::Data { data } => {
                output.stdout(&data)?;
                if matches!(output.answer, Some(Ok(_))) {
                    // Ready: rockd detaches now, and nothing after its
                    // answer changes what it means. Waiting for the channel
                    // to end would only delay the session.
                    return Ok(());
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
