//! The connection to the remote host: TCP to every address the name
//! resolves to, in order, each connect (and the lookup) bounded by
//! `ConnectTimeout`; or, with `ProxyCommand` or `ProxyJump`, the proxy
//! process's stream.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use super::BootstrapError;
use crate::ssh::proxy::{Proxy, ProxyGuard, ProxyStream};
use crate::ssh::target::BootstrapTarget;

/// Starts the target's proxy (prompts allowed: this is the bootstrap).
pub(super) fn connect_proxy(
    target: &BootstrapTarget,
    proxy: &Proxy,
) -> Result<(ProxyStream, ProxyGuard), BootstrapError> {
    ProxyStream::spawn(proxy, false).map_err(|e| BootstrapError::Proxy {
        host: target.hostname.clone(),
        proxy: proxy.to_string(),
        detail: e.to_string(),
        destination: target.destination.clone(),
    })
}

/// The error for a handshake through `guard`'s proxy that failed with
/// `error`: when the proxy has exited, that is the cause to report.
pub(super) async fn proxy_failure(
    target: &BootstrapTarget,
    guard: &ProxyGuard,
    error: BootstrapError,
) -> BootstrapError {
    let BootstrapError::Protocol { detail, .. } = &error else {
        return error;
    };
    if guard
        .exit_status(std::time::Duration::from_millis(500))
        .await
        .is_none()
    {
        return error;
    }
    BootstrapError::Proxy {
        host: target.hostname.clone(),
        proxy: guard.proxy().to_owned(),
        detail: guard.explain(detail.clone()).await,
        destination: target.destination.clone(),
    }
}

/// Connects to the first address of the target that answers.
pub(super) async fn connect_tcp(target: &BootstrapTarget) -> Result<TcpStream, BootstrapError> {
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
