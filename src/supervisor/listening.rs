//! Whether a TCP port still has a listening socket on this host, read from
//! the kernel's tables (`/proc/net/tcp` and `/proc/net/tcp6`): the library
//! hears of `listen` but not of `close`, so the rendezvous port checks
//! before it offers a registered port.

/// The state `TCP_LISTEN` as those tables print it.
const LISTEN: &str = "0A";

/// Whether some socket listens on `port`: `None` when neither table can be
/// read (then nothing is known).
pub fn listening(port: u16) -> Option<bool> {
    let mut known = None;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            if listens_in(&text, port) {
                return Some(true);
            }
            known = Some(false);
        }
    }
    known
}

/// Whether a table's text has a socket in state LISTEN on `port`. Lines
/// that do not parse are skipped.
pub fn listens_in(table: &str, port: u16) -> bool {
    table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1);
        let state = fields.nth(1);
        let local_port = local
            .and_then(|l| l.rsplit_once(':'))
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
        local_port == Some(port) && state == Some(LISTEN)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:D431 0100007F:18EB 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn listeners_are_found_by_port_and_state() {
        assert!(listens_in(TABLE, 8080));
        // 6379 appears, but as the remote end of an established socket.
        assert!(!listens_in(TABLE, 6379));
        // 54321 is established, not listening.
        assert!(!listens_in(TABLE, 0xD431));
        assert!(!listens_in("", 8080));
        assert!(!listens_in(
            "header\n garbage\n0: zz:zz 0A\n1: 0100007F: 0A\n",
            8080
        ));
    }

    #[test]
    fn this_hosts_own_listener_is_seen() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("address").port();
        assert_eq!(listening(port), Some(true));
        drop(l);
        assert_eq!(listening(port), Some(false));
    }
}
