//! The connection to the remote host: TCP by [`crate::connect`]'s rule
//! (the lookup and each address bounded by `ConnectTimeout`, only the
//! addresses `AddressFamily` allows); or, with `ProxyCommand` or
//! `ProxyJump`, the proxy process's stream.

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

/// Connects to the first address of the target that answers, by the one
/// rule of [`crate::connect`], within `ConnectTimeout`.
pub(super) async fn connect_tcp(target: &BootstrapTarget) -> Result<TcpStream, BootstrapError> {
    let stream = crate::connect::connect(
        &target.hostname,
        target.port,
        target.address_family,
        target.connect_timeout,
    )
    .await?;
    Ok(stream)
}
