//! Reading one rendezvous message (`rock_proto::rendezvous`) from a
//! stream: exactly its bytes and none of what follows, since after an OPEN
//! and its reply the same connection carries the rock's first link.

use rock_proto::rendezvous::{self, RendezvousError};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Why no message was read.
#[derive(Debug)]
pub enum ReadError {
    /// The stream ended or failed first.
    Io,
    /// The bytes are not a rendezvous message.
    Invalid(RendezvousError),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io => f.write_str("the connection ended before a whole message"),
            ReadError::Invalid(e) => e.fmt(f),
        }
    }
}

/// Reads the rest of the message whose first bytes are `have` (already
/// read, possibly none). Refuses as soon as the bytes cannot begin a
/// message; never reads past the message's end.
pub async fn read_message<S: AsyncRead + Unpin>(
    stream: &mut S,
    mut have: Vec<u8>,
) -> Result<Vec<u8>, ReadError> {
    loop {
        let want = match rendezvous::length(&have).map_err(ReadError::Invalid)? {
            Some(len) if have.len() >= len => {
                have.truncate(len);
                return Ok(have);
            }
            Some(len) => len,
            // The head (8 bytes) is part of every message.
            None => rendezvous::HEAD,
        };
        let at = have.len();
        // One byte at a time until the length is known, so that a wrong
        // magic or version is refused at its first byte.
        let step = if want == rendezvous::HEAD {
            1
        } else {
            want - at
        };
        have.resize(at + step, 0);
        match stream.read(&mut have[at..]).await {
            Ok(0) | Err(_) => return Err(ReadError::Io),
            Ok(n) => have.truncate(at + n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rock_proto::kex::PublicKey;
    use rock_proto::rendezvous::Question;

    #[tokio::test]
    async fn exactly_one_message_is_read_and_what_follows_is_left() {
        let open = Question::Open {
            port: 80,
            key: PublicKey([7; 32]),
        }
        .encode();
        let mut bytes = open.clone();
        bytes.extend_from_slice(b"ROCK and more");
        let mut reader = &bytes[..];
        assert_eq!(read_message(&mut reader, Vec::new()).await.ok(), Some(open));
        assert_eq!(reader, b"ROCK and more");
        // With its first bytes read already.
        let probe = Question::Probe(22).encode();
        let mut reader = &probe[2..];
        assert_eq!(
            read_message(&mut reader, probe[..2].to_vec()).await.ok(),
            Some(probe.clone())
        );
        // Refused at the first wrong byte; cut short.
        let mut reader = &b"GET / HTTP/1.1\r\n"[..];
        assert!(matches!(
            read_message(&mut reader, Vec::new()).await,
            Err(ReadError::Invalid(RendezvousError::Magic))
        ));
        assert_eq!(reader.len(), 15, "one byte was enough");
        let mut reader = &probe[..5];
        assert!(matches!(
            read_message(&mut reader, Vec::new()).await,
            Err(ReadError::Io)
        ));
    }
}
