//! The questions `librocks.so` asks its supervisor, and the answers: one
//! line each way over the supervisor's control socket, decoded in two steps
//! (check the whole line, then parse), with no I/O here.
//!
//! ```text
//! request  = "connect " socket-address "\n"    ; 192.0.2.7:80, [2001:db8::1]:443
//!          / "listen " socket-address "\n"     ; the program listens there
//!          / "peer " socket-address " " socket-address "\n"
//!                                   ; who is the peer of this (local, remote)?
//!          / "from " socket-address " via " port "\n"
//!                                   ; my socket at that address went to via port
//! answer   = "direct\n"                         ; connect to it yourself
//!          / "via " port "\n"                   ; connect to 127.0.0.1:port
//!          / "ok\n"                             ; heard (to listen)
//!          / "real " socket-address " " socket-address "\n"
//!                                   ; the real (peer, local) ends of it
//!          / "none\n"                           ; the peer is who it seems
//! ```
//!
//! Anything else — a longer line, a line without its newline, bytes that
//! are not UTF-8, an unknown verb, an address that does not parse — is an
//! error, never a panic: the control socket is open to every process of the
//! user, and the library must survive a supervisor that answers nonsense
//! (it then connects directly, as if rock were not there).

use std::net::SocketAddr;

/// The longest line either side sends or accepts, newline included.
pub const MAX_LINE: usize = 128;

/// What the library asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// The program connects a TCP socket to this address.
    Connect(SocketAddr),
    /// The program listens for TCP connections at this address (its
    /// socket's own address: a wildcard address, port never 0).
    Listen(SocketAddr),
    /// The program's socket, whose local address is `local`, has just
    /// connected to the supervisor's `via` port (the supervisor relays
    /// that connection only, answering [`Answer::Ok`]).
    From {
        /// The program's end.
        local: SocketAddr,
        /// The port the supervisor answered [`Answer::Via`] with.
        via: u16,
    },
    /// Who really is at the other end of the program's connection from
    /// `local` to `remote` (a loopback connection that the supervisor may
    /// carry for a rock peer)?
    Peer {
        /// The program's end.
        local: SocketAddr,
        /// The other end, as the kernel reports it.
        remote: SocketAddr,
    },
}

/// What the supervisor answers: [`Answer::Direct`] or [`Answer::Via`] to
/// [`Request::Connect`], [`Answer::Ok`] to [`Request::Listen`],
/// [`Answer::Real`] or [`Answer::NotCarried`] to [`Request::Peer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Connect to the address itself: the peer is ordinary.
    Direct,
    /// Connect to this port on 127.0.0.1 instead: the supervisor carries
    /// the connection.
    Via(u16),
    /// Heard.
    Ok,
    /// The connection is carried for a peer at `peer`, over a connection
    /// whose own end is `local`.
    Real {
        /// The real peer.
        peer: SocketAddr,
        /// The real local end.
        local: SocketAddr,
    },
    /// The connection is not one the supervisor carries.
    NotCarried,
}

/// A line that is not a request or an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// No newline within [`MAX_LINE`] bytes.
    #[error("no newline within {MAX_LINE} bytes")]
    TooLong,
    /// The line is not UTF-8 text.
    #[error("the line is not UTF-8 text")]
    NotText,
    /// Not a verb of this protocol, or its argument does not parse.
    #[error("not understood: {0:?}")]
    Unknown(String),
}

/// Where the first complete line of `bytes` ends (just past its newline):
/// `Ok(None)` when more bytes are needed, an error when none can come.
pub fn check(bytes: &[u8]) -> Result<Option<usize>, LineError> {
    match bytes.iter().take(MAX_LINE).position(|&b| b == b'\n') {
        Some(at) => Ok(Some(at + 1)),
        None if bytes.len() >= MAX_LINE => Err(LineError::TooLong),
        None => Ok(None),
    }
}

/// The text of a checked line, without its newline.
fn text(line: &[u8]) -> Result<&str, LineError> {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    std::str::from_utf8(body).map_err(|_| LineError::NotText)
}

fn unknown(text: &str) -> LineError {
    LineError::Unknown(text.chars().take(MAX_LINE).collect())
}

impl Request {
    /// Parses a line that [`check`] accepted.
    pub fn parse(line: &[u8]) -> Result<Request, LineError> {
        let text = text(line)?;
        match text.split_once(' ') {
            Some(("connect", addr)) => addr
                .parse()
                .map(Request::Connect)
                .map_err(|_| unknown(text)),
            Some(("listen", addr)) => match addr.parse::<SocketAddr>() {
                Ok(addr) if addr.port() != 0 => Ok(Request::Listen(addr)),
                _ => Err(unknown(text)),
            },
            Some(("from", pair)) => match pair.split_once(" via ") {
                Some((local, via)) => match (local.parse(), via.parse::<u16>()) {
                    (Ok(local), Ok(via)) if via != 0 => Ok(Request::From { local, via }),
                    _ => Err(unknown(text)),
                },
                None => Err(unknown(text)),
            },
            Some(("peer", pair)) => match pair.split_once(' ') {
                Some((local, remote)) => match (local.parse(), remote.parse()) {
                    (Ok(local), Ok(remote)) => Ok(Request::Peer { local, remote }),
                    _ => Err(unknown(text)),
                },
                None => Err(unknown(text)),
            },
            _ => Err(unknown(text)),
        }
    }

    /// The request as a line.
    pub fn encode(&self) -> String {
        match self {
            Request::Connect(addr) => format!("connect {addr}\n"),
            Request::Listen(addr) => format!("listen {addr}\n"),
            Request::Peer { local, remote } => format!("peer {local} {remote}\n"),
            Request::From { local, via } => format!("from {local} via {via}\n"),
        }
    }
}

impl Answer {
    /// Parses a line that [`check`] accepted.
    pub fn parse(line: &[u8]) -> Result<Answer, LineError> {
        let text = text(line)?;
        match text.split_once(' ') {
            None if text == "direct" => Ok(Answer::Direct),
            None if text == "ok" => Ok(Answer::Ok),
            None if text == "none" => Ok(Answer::NotCarried),
            Some(("real", pair)) => match pair.split_once(' ') {
                Some((peer, local)) => match (peer.parse(), local.parse()) {
                    (Ok(peer), Ok(local)) => Ok(Answer::Real { peer, local }),
                    _ => Err(unknown(text)),
                },
                None => Err(unknown(text)),
            },
            Some(("via", port)) => match port.parse::<u16>() {
                Ok(port) if port != 0 => Ok(Answer::Via(port)),
                _ => Err(unknown(text)),
            },
            _ => Err(unknown(text)),
        }
    }

    /// The answer as a line.
    pub fn encode(&self) -> String {
        match self {
            Answer::Direct => "direct\n".to_owned(),
            Answer::Via(port) => format!("via {port}\n"),
            Answer::Ok => "ok\n".to_owned(),
            Answer::Real { peer, local } => format!("real {peer} {local}\n"),
            Answer::NotCarried => "none\n".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers_read_back() {
        for addr in ["192.0.2.7:80", "[2001:db8::1]:443", "[::ffff:10.0.0.1]:1"] {
            let r = Request::Connect(addr.parse().expect("an address"));
            let line = r.encode();
            assert!(line.len() <= MAX_LINE);
            assert_eq!(check(line.as_bytes()), Ok(Some(line.len())));
            assert_eq!(Request::parse(line.as_bytes()), Ok(r));
            let r = Request::Listen(addr.parse().expect("an address"));
            assert_eq!(Request::parse(r.encode().as_bytes()), Ok(r));
        }
        assert_eq!(
            Request::parse(b"listen 0.0.0.0:8080\n"),
            Ok(Request::Listen("0.0.0.0:8080".parse().expect("an address")))
        );
        for a in [
            Answer::Direct,
            Answer::Via(1),
            Answer::Via(65535),
            Answer::Ok,
            Answer::NotCarried,
            Answer::Real {
                peer: "[2001:db8::1]:443".parse().expect("an address"),
                local: "192.0.2.1:50000".parse().expect("an address"),
            },
        ] {
            assert_eq!(Answer::parse(a.encode().as_bytes()), Ok(a));
        }
        // The longest address, with a scope id, fits.
        let longest = std::net::SocketAddrV6::new(
            std::net::Ipv6Addr::from([0xffff; 8]),
            65535,
            0, // flow labels are not part of the text form
            u32::MAX,
        );
        let line = Request::Connect(longest.into()).encode();
        assert!(line.len() <= MAX_LINE, "{line}");
        assert_eq!(
            Request::parse(line.as_bytes()),
            Ok(Request::Connect(longest.into()))
        );
        let peer = Request::Peer {
            local: longest.into(),
            remote: longest.into(),
        };
        let line = peer.encode();
        assert!(line.len() <= MAX_LINE, "{line}");
        assert_eq!(Request::parse(line.as_bytes()), Ok(peer));
        let from = Request::From {
            local: longest.into(),
            via: 65535,
        };
        let line = from.encode();
        assert!(line.len() <= MAX_LINE, "{line}");
        assert_eq!(Request::parse(line.as_bytes()), Ok(from));
        assert_eq!(
            Request::parse(b"from 127.0.0.1:5 via 7\n"),
            Ok(Request::From {
                local: "127.0.0.1:5".parse().expect("an address"),
                via: 7
            })
        );
        let line = Answer::Real {
            peer: longest.into(),
            local: longest.into(),
        }
        .encode();
        assert!(line.len() <= MAX_LINE, "{line}");
    }

    #[test]
    fn incomplete_long_and_strange_lines() {
        assert_eq!(check(b"connect 1.2.3.4:5"), Ok(None));
        assert_eq!(check(&[b'x'; MAX_LINE]), Err(LineError::TooLong));
        assert_eq!(Request::parse(b"\xff\xfe\n"), Err(LineError::NotText));
        for bad in [
            &b"connect\n"[..],
            b"connect 1.2.3.4\n",
            b"connect 1.2.3.4:99999\n",
            b"CONNECT 1.2.3.4:5\n",
            b"\n",
            b"listen 0.0.0.0:0\n",
            b"listen [::]\n",
            b"from 127.0.0.1:5 via 0\n",
            b"from 127.0.0.1:5\n",
            b"from 127.0.0.1:5 via\n",
            b"peer 127.0.0.1:1\n",
            b"peer 127.0.0.1:1  127.0.0.1:2\n",
            b"peer 127.0.0.1:1 127.0.0.1:2 \n",
        ] {
            assert!(Request::parse(bad).is_err(), "{bad:?}");
        }
        for bad in [
            &b"via 0\n"[..],
            b"via -1\n",
            b"via\n",
            b"direct \n",
            b"ok \n",
            b"OK\n",
            b"real\n",
            b"real 1.2.3.4\n",
            b"none \n",
        ] {
            assert!(Answer::parse(bad).is_err(), "{bad:?}");
        }
    }
}
