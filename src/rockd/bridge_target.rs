//! Where rockd connects to reach the sshd it was started through.
//!
//! `SSH_CONNECTION` names the address the client reached sshd on. A
//! connection from rockd to that address lives on it: if the server's
//! address changes (a laptop as server, DHCP, a moved VM), the bridge to
//! sshd dies with the old address even though rock finds rockd again. When
//! the very listening socket that took the client's connection — a
//! wildcard one, `0.0.0.0:port` or `[::]:port` — also serves the loopback
//! address, rockd goes through loopback instead, which no address change
//! can take away. The kernel's own table of listening sockets
//! (`/proc/net/tcp`, `/proc/net/tcp6`, per network namespace) tells; where
//! it cannot be read or another socket would answer on loopback, the
//! address from `SSH_CONNECTION` is used as before.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// TCP state `LISTEN` in `/proc/net/tcp*`.
const LISTEN: &str = "0A";

/// The address to reach the sshd that accepted a connection on `server`.
pub fn bridge_target(server: SocketAddr) -> SocketAddr {
    let mut listeners = Vec::new();
    for (path, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        if let Ok(text) = std::fs::read_to_string(path) {
            listeners.extend(parse_listeners(&text, v6));
        }
    }
    choose(server, &listeners)
}

/// The loopback twin of `server` when the socket that serves `server` is a
/// wildcard listener, which also serves loopback; otherwise `server`.
fn choose(server: SocketAddr, listeners: &[SocketAddr]) -> SocketAddr {
    if server.ip().is_loopback() {
        return server;
    }
    let port = server.port();
    let (wildcard, loopback): (IpAddr, IpAddr) = match server.ip() {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED.into(), Ipv4Addr::LOCALHOST.into()),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED.into(), Ipv6Addr::LOCALHOST.into()),
    };
    let has = |ip: IpAddr| listeners.contains(&SocketAddr::new(ip, port));
    // A socket bound to the server address itself took the connection, or
    // one bound to loopback would take ours: not the same listener.
    if has(wildcard) && !has(server.ip()) && !has(loopback) {
        SocketAddr::new(loopback, port)
    } else {
        server
    }
}

/// The local addresses of the listening sockets in a `/proc/net/tcp` (or,
/// with `v6`, `tcp6`) table. Lines that do not parse are skipped.
fn parse_listeners(text: &str, v6: bool) -> Vec<SocketAddr> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let local = fields.nth(1)?;
            let state = fields.nth(1)?;
            if state != LISTEN {
                return None;
            }
            let (ip, port) = local.split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            let ip = if v6 { parse_v6(ip)? } else { parse_v4(ip)? };
            Some(SocketAddr::new(ip, port))
        })
        .collect()
}

/// An IPv4 address as the kernel prints it: one 32-bit word, in host order.
fn parse_v4(hex: &str) -> Option<IpAddr> {
    if hex.len() != 8 {
        return None;
    }
    let word = u32::from_str_radix(hex, 16).ok()?;
    Some(Ipv4Addr::from(word.to_ne_bytes()).into())
}

/// An IPv6 address as the kernel prints it: four 32-bit words, each in
/// host order.
fn parse_v6(hex: &str) -> Option<IpAddr> {
    if hex.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, chunk) in bytes.chunks_mut(4).enumerate() {
        let word = u32::from_str_radix(hex.get(8 * i..8 * i + 8)?, 16).ok()?;
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    Some(Ipv6Addr::from(bytes).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("a socket address")
    }

    // Written as a little-endian machine prints them (as the ones that run
    // these tests are); `parse_*` use native order like the kernel.
    #[cfg(target_endian = "little")]
    #[test]
    fn reads_the_kernels_listening_sockets() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n\
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1\n\
   2: 0200020A:0016 0100020A:D4A4 01 00000000:00000000 00:00000000 00000000     0        0 3 1\n\
   garbage\n";
        assert_eq!(
            parse_listeners(tcp, false),
            [addr("0.0.0.0:22"), addr("127.0.0.1:8080")]
        );
        let tcp6 = "  sl  local_address                         remote_address                        st\n\
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 0\n\
   1: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 0\n";
        assert_eq!(
            parse_listeners(tcp6, true),
            [addr("[::]:22"), addr("[::1]:80")]
        );
    }

    #[test]
    fn a_wildcard_listener_is_reached_over_loopback() {
        let server = addr("10.2.0.2:22");
        assert_eq!(choose(server, &[addr("0.0.0.0:22")]), addr("127.0.0.1:22"));
        let server6 = addr("[2001:db8::2]:22");
        assert_eq!(choose(server6, &[addr("[::]:22")]), addr("[::1]:22"));
    }

    #[test]
    fn anything_else_keeps_the_address_from_ssh_connection() {
        let server = addr("10.2.0.2:22");
        // sshd bound to that address only.
        assert_eq!(choose(server, &[addr("10.2.0.2:22")]), server);
        // Another daemon would answer on loopback.
        let both = [addr("0.0.0.0:22"), addr("127.0.0.1:22")];
        assert_eq!(choose(server, &both), server);
        // Only an IPv6 wildcard: it may be v6-only.
        assert_eq!(choose(server, &[addr("[::]:22")]), server);
        // No table at all, a wildcard on another port, a loopback server.
        assert_eq!(choose(server, &[]), server);
        assert_eq!(choose(server, &[addr("0.0.0.0:2222")]), server);
        let local = addr("127.0.0.1:2222");
        assert_eq!(choose(local, &[addr("0.0.0.0:2222")]), local);
    }
}
