//! [`ProxyStream`]: a proxy process's stdout and stdin as one byte stream,
//! and [`ProxyGuard`], which knows how the process ended and kills it when
//! dropped.
//!
//! One task per process owns the [`Child`]: it waits for the process to
//! exit, or for the stream or the guard to be dropped, then kills it (if
//! it still runs) and reaps it, and publishes the exit status.

use std::ffi::OsString;
use std::io;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{oneshot, watch};

use super::Proxy;

/// How the proxy process ended: its status, or why waiting for it failed.
type Ended = Option<Result<ExitStatus, String>>;

/// The proxy's stdout (what we read) and stdin (what we write).
pub struct ProxyStream {
    stdout: ChildStdout,
    /// `None` once shut down: closing the pipe is the process's EOF.
    stdin: Option<ChildStdin>,
    /// Dropped with the stream: the process is killed.
    _kill: oneshot::Sender<()>,
}

/// The other end of the process's life: its exit status, and its end
/// when dropped.
pub struct ProxyGuard {
    proxy: String,
    argv: Vec<OsString>,
    ended: watch::Receiver<Ended>,
    _kill: oneshot::Sender<()>,
}

impl ProxyStream {
    /// Starts `proxy` (with `-o BatchMode=yes` for a generated jump when
    /// `batch`; a batch proxy also gets a process group of its own, so an
    /// interrupt typed at the terminal, meant for the user's command, does
    /// not kill the link it carries). Its stderr is ours.
    pub fn spawn(proxy: &Proxy, batch: bool) -> io::Result<(ProxyStream, ProxyGuard)> {
        let argv = proxy.argv(batch);
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if batch {
            command.process_group(0);
        }
        let mut child = command.spawn().map_err(|e| {
            io::Error::new(e.kind(), format!("cannot start `{}`: {e}", shown(&argv)))
        })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(io::Error::other(format!(
                "the {proxy} started without its pipes"
            )));
        };
        tracing::debug!("started the {proxy}: {}", shown(&argv));
        let (stream_kill, stream_dropped) = oneshot::channel();
        let (guard_kill, guard_dropped) = oneshot::channel();
        let (ended_tx, ended) = watch::channel(None);
        tokio::spawn(own(child, stream_dropped, guard_dropped, ended_tx));
        Ok((
            ProxyStream {
                stdout,
                stdin: Some(stdin),
                _kill: stream_kill,
            },
            ProxyGuard {
                proxy: proxy.to_string(),
                argv,
                ended,
                _kill: guard_kill,
            },
        ))
    }
}

/// The task that owns the child: see the module documentation.
async fn own(
    mut child: Child,
    stream_dropped: oneshot::Receiver<()>,
    guard_dropped: oneshot::Receiver<()>,
    ended: watch::Sender<Ended>,
) {
    let status = tokio::select! {
        status = child.wait() => status,
        _ = stream_dropped => {
            let _ = child.start_kill();
            child.wait().await
        }
        _ = guard_dropped => {
            let _ = child.start_kill();
            child.wait().await
        }
    };
    let _ = ended.send(Some(status.map_err(|e| e.to_string())));
}

impl ProxyGuard {
    /// The proxy, for messages: `ProxyJump bastion`, ``ProxyCommand `…` ``.
    pub fn proxy(&self) -> &str {
        &self.proxy
    }

    /// The command that was started, for messages.
    pub fn command(&self) -> String {
        shown(&self.argv)
    }

    /// Waits up to `limit` for the process to exit; `None` if it still
    /// runs. Asked after the stream failed: a proxy that exited is the
    /// cause to report.
    pub async fn exit_status(&self, limit: Duration) -> Option<Result<ExitStatus, String>> {
        let mut ended = self.ended.clone();
        let wait = ended.wait_for(Option::is_some);
        match tokio::time::timeout(limit, wait).await {
            Ok(Ok(value)) => value.clone(),
            _ => self.ended.borrow().clone(),
        }
    }

    /// Why the connection through the proxy failed, for the user: the
    /// proxy's exit if it exited (its own message is on the terminal
    /// already), else `error`.
    pub async fn explain(&self, error: String) -> String {
        match self.exit_status(Duration::from_millis(500)).await {
            Some(Ok(status)) => format!(
                "`{}` {}; its own message, if any, is above",
                self.command(),
                describe_exit(status)
            ),
            Some(Err(e)) => format!("the {} could not be waited for: {e}", self.proxy),
            None => format!("through the {}: {error}", self.proxy),
        }
    }
}

/// "exited with status N" / "was killed by signal N".
fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => format!("ended ({status})"),
    }
}

/// argv as one line, for messages.
fn shown(argv: &[OsString]) -> String {
    argv.iter()
        .map(|w| w.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

impl AsyncRead for ProxyStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stdout).poll_read(cx, buf)
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the proxy's stdin is closed")
}

impl AsyncWrite for ProxyStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.stdin.as_mut() {
            Some(stdin) => Pin::new(stdin).poll_write(cx, buf),
            None => Poll::Ready(Err(closed())),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.stdin.as_mut() {
            Some(stdin) => Pin::new(stdin).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(stdin) = self.stdin.as_mut() {
            std::task::ready!(Pin::new(stdin).poll_flush(cx))?;
        }
        self.stdin = None;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn command(line: &str) -> Proxy {
        Proxy::Command { line: line.into() }
    }

    #[tokio::test]
    async fn a_proxy_command_carries_bytes_both_ways() {
        let (mut stream, _guard) = ProxyStream::spawn(&command("cat"), false).unwrap();
        stream.write_all(b"hello").await.unwrap();
        stream.shutdown().await.unwrap();
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"hello");
    }

    #[tokio::test]
    async fn an_early_exit_is_explained_with_its_status() {
        let (mut stream, guard) = ProxyStream::spawn(&command("sh -c 'exit 3'"), false).unwrap();
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.unwrap();
        let why = guard.explain("eof".into()).await;
        assert!(why.contains("exited with status 3"), "{why}");
        assert!(why.contains("-c exec sh -c 'exit 3'`"), "{why}");
    }

    #[tokio::test]
    async fn dropping_the_stream_kills_and_reaps_the_process() {
        let (stream, guard) = ProxyStream::spawn(&command("sleep 600"), false).unwrap();
        drop(stream);
        let status = guard.exit_status(Duration::from_secs(10)).await;
        let status = status.expect("the process ended").unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }
}
