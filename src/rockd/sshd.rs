//! The sshd rockd bridges to: which one (`SSH_CONNECTION`, or
//! `--target`), and the connection to it, over loopback when the same
//! listening socket serves there (see [`super::bridge_target`]).

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::RockdError;
use super::bridge_target::bridge_target;
use crate::connect::{AddressFamily, connect_blocking};

/// The sshd address from `SSH_CONNECTION` (`client_ip client_port server_ip
/// server_port`).
pub fn target_from_ssh_connection(value: &str) -> Result<String, RockdError> {
    let f: Vec<&str> = value.split_ascii_whitespace().collect();
    let [_, _, ip, port] = f.as_slice() else {
        return Err(RockdError::BadTarget(value.to_owned()));
    };
    let ip: std::net::IpAddr = ip
        .parse()
        .map_err(|_| RockdError::BadTarget(value.to_owned()))?;
    let port: u16 = port
        .parse()
        .map_err(|_| RockdError::BadTarget(value.to_owned()))?;
    Ok(SocketAddr::new(ip, port).to_string())
}

/// Connects to the sshd that took the client's connection on `server`:
/// over loopback when the same listening socket serves it there (so that
/// the bridge outlives a change of the server's address), else on `server`.
pub(super) fn connect_sshd(server: &str) -> Result<TcpStream, RockdError> {
    if let Ok(addr) = server.parse::<SocketAddr>() {
        let via = bridge_target(addr);
        if via != addr
            && let Ok(stream) = connect_target(&via.to_string())
        {
            return Ok(stream);
        }
    }
    connect_target(server)
}

/// How long rockd waits for each address of its sshd to answer.
const SSHD_CONNECT_LIMIT: Duration = Duration::from_secs(10);

/// Connects to `target` (`host:port`, `[v6]:port`) by [`crate::connect`]'s
/// rule, without a runtime (rockd has not detached yet).
pub(super) fn connect_target(target: &str) -> Result<TcpStream, RockdError> {
    let (host, port) = split_host_port(target)?;
    connect_blocking(host, port, AddressFamily::Any, SSHD_CONNECT_LIMIT).map_err(|error| {
        RockdError::Target {
            addr: target.to_owned(),
            error,
        }
    })
}

/// `host:port` or `[v6 address]:port`, split.
fn split_host_port(target: &str) -> Result<(&str, u16), RockdError> {
    let bad = || RockdError::BadTarget(target.to_owned());
    let (host, port) = target.rsplit_once(':').ok_or_else(bad)?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']').ok_or_else(bad)?,
        None => host,
    };
    let port = port.parse().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_connection_names_the_server_side() {
        assert_eq!(
            target_from_ssh_connection("10.0.0.5 51234 10.0.0.9 22").unwrap(),
            "10.0.0.9:22"
        );
        assert_eq!(
            target_from_ssh_connection("::1 5 ::1 2222").unwrap(),
            "[::1]:2222"
        );
        assert!(target_from_ssh_connection("garbage").is_err());
    }

    #[test]
    fn targets_split_into_host_and_port() {
        assert_eq!(split_host_port("10.0.0.9:22").ok(), Some(("10.0.0.9", 22)));
        assert_eq!(split_host_port("[::1]:2222").ok(), Some(("::1", 2222)));
        assert_eq!(
            split_host_port("sshd.example:22").ok(),
            Some(("sshd.example", 22))
        );
        for bad in ["nowhere", ":22", "[::1:22", "h:99999", "h:"] {
            assert!(split_host_port(bad).is_err(), "{bad}");
        }
    }
}
