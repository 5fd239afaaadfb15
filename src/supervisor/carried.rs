//! The connections the supervisor carries for the command, by the address
//! of the supervisor's own end of the loopback connection the program
//! holds: the `via` listener a client program connected to, or the socket
//! the supervisor connected to a server program's listener from. Each
//! maps to the real peer the program should see (`getpeername`,
//! `accept`). An entry is made before the program can see the connection
//! and lasts as long as the relay.
//!
//! Addresses are kept in their canonical form (IPv4-mapped IPv6 as IPv4),
//! as a program with IPv6 sockets sees IPv4 loopback mapped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// The table.
#[derive(Debug, Default)]
pub struct Carried {
    peers: Mutex<HashMap<SocketAddr, Ends>>,
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// The real ends of a carried connection, as its program should see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ends {
    /// The peer: the rock server's address the client program connected
    /// to, or the rock client's link address.
    pub peer: SocketAddr,
    /// The program's own end: the client's link address, or the address
    /// the rock client reached the server at.
    pub local: SocketAddr,
}

/// An entry of the table, removed when dropped.
pub struct Entry {
    table: Arc<Carried>,
    end: SocketAddr,
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Ok(mut peers) = self.table.peers.lock() {
            peers.remove(&self.end);
        }
    }
}

impl Carried {
    /// Records that the connection whose supervisor end is `end` is
    /// carried with these real `ends`, until the returned entry is dropped.
    pub fn insert(self: &Arc<Self>, end: SocketAddr, ends: Ends) -> Entry {
        let end = canonical(end);
        if let Ok(mut peers) = self.peers.lock() {
            peers.insert(end, ends);
        }
        Entry {
            table: self.clone(),
            end,
        }
    }

    /// The real ends of the program's connection to `remote`, if the
    /// supervisor carries it.
    pub fn ends(&self, remote: SocketAddr) -> Option<Ends> {
        let peers = self.peers.lock().ok()?;
        peers.get(&canonical(remote)).copied()
    }
}

/// Moves bytes both ways between `a` and `b` until both directions end,
/// passing each half-close on.
pub async fn relay<A, B>(mut a: A, mut b: B)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
    let _ = a.shutdown().await;
    let _ = b.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_last_as_long_as_their_guard_and_mapped_addresses_match() {
        let table = Arc::new(Carried::default());
        let end: SocketAddr = "127.0.0.1:40000".parse().expect("an address");
        let ends = Ends {
            peer: "192.0.2.7:6379".parse().expect("an address"),
            local: "192.0.2.1:50000".parse().expect("an address"),
        };
        let entry = table.insert(end, ends);
        assert_eq!(table.ends(end), Some(ends));
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:40000".parse().expect("an address");
        assert_eq!(table.ends(mapped), Some(ends));
        let other: SocketAddr = "127.0.0.1:40001".parse().expect("an address");
        assert_eq!(table.ends(other), None);
        drop(entry);
        assert_eq!(table.ends(end), None);
    }
}
