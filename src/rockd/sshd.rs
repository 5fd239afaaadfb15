//! The sshd rockd bridges to: which one (`SSH_CONNECTION`, or
//! `--target`), and the connection to it, over loopback when the same
//! listening socket serves there (see [`super::bridge_target`]).

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::RockdError;
use super::bridge_target::bridge_target;

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

pub(super) fn connect_target(target: &str) -> Result<TcpStream, RockdError> {
    let failed = |error| RockdError::Target {
        addr: target.to_owned(),
        error,
    };
    let mut last = None;
    for addr in target.to_socket_addrs().map_err(failed)? {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
            Ok(s) => {
                s.set_nodelay(true).map_err(failed)?;
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(failed(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no address")
    })))
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
}
