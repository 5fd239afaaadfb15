//! The TCP connection to the remote host: every address the name
//! resolves to, in order, each connect (and the lookup) bounded by
//! `ConnectTimeout`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use super::{BootstrapError, BootstrapTarget};

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
