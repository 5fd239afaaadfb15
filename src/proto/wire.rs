//! Frames carried by an authenticated link, and their two-step decoding.
//!
//! Every frame is `type: u8 | length: u32 (big-endian) | body[length]`.
//! Decoding is check-then-parse, as in mini-redis: [`check`] validates the
//! header and the declared length without allocating and answers `Ok(None)`
//! when bytes are still missing (a normal event, not an error); [`parse`]
//! then borrows the frame out of the buffer. No length is used before it is
//! checked against the limit for its frame type.

use crate::error::DecodeError;

/// Bytes in a frame header: type and body length.
pub const HEADER_LEN: usize = 5;
/// Largest payload of one data frame.
pub const MAX_DATA: usize = 64 * 1024;
/// Largest message a close frame may carry.
pub const MAX_CLOSE_MESSAGE: usize = 255;
/// Largest frame of any type, header included.
pub const MAX_FRAME: usize = HEADER_LEN + MAX_DATA;

const T_DATA: u8 = 0x10;
const T_ACK: u8 = 0x11;
const T_PING: u8 = 0x12;
const T_PONG: u8 = 0x13;
const T_FIN: u8 = 0x14;
const T_CLOSE: u8 = 0x15;
const KNOWN_TYPES: [u8; 6] = [T_DATA, T_ACK, T_PING, T_PONG, T_FIN, T_CLOSE];

/// Why a session was closed deliberately (the code of a close frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// The session finished: both directions ended and were acknowledged.
    Normal,
    /// The application aborted the session.
    Aborted,
    /// The peer gave up waiting for a link (suspension timeout).
    SuspendTimeout,
    /// The peer hit an error it cannot recover from (for rockd: its sshd
    /// connection failed).
    Error,
    /// A code this version does not know; kept so it can be reported.
    Other(u8),
}

impl CloseCode {
    fn to_byte(self) -> u8 {
        match self {
            CloseCode::Normal => 0,
            CloseCode::Aborted => 1,
            CloseCode::SuspendTimeout => 2,
            CloseCode::Error => 3,
            CloseCode::Other(b) => b,
        }
    }

    fn from_byte(b: u8) -> Self {
        match b {
            0 => CloseCode::Normal,
            1 => CloseCode::Aborted,
            2 => CloseCode::SuspendTimeout,
            3 => CloseCode::Error,
            other => CloseCode::Other(other),
        }
    }
}

impl std::fmt::Display for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseCode::Normal => f.write_str("finished"),
            CloseCode::Aborted => f.write_str("aborted"),
            CloseCode::SuspendTimeout => f.write_str("suspension timeout"),
            CloseCode::Error => f.write_str("error"),
            CloseCode::Other(b) => write!(f, "code {b}"),
        }
    }
}

/// One decoded frame, borrowing its payload from the input buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Stream bytes; their position is implicit (the next unit on this link).
    Data(&'a [u8]),
    /// Cumulative count of stream units the sender has received.
    Ack(u64),
    /// Heartbeat carrying an opaque timestamp to echo.
    Ping(u64),
    /// Echo of a ping's timestamp.
    Pong(u64),
    /// End of the sender's stream; occupies one unit after the last byte.
    Fin,
    /// Deliberate end of the session.
    Close {
        /// Why.
        code: CloseCode,
        /// Human-readable detail, at most [`MAX_CLOSE_MESSAGE`] bytes.
        message: &'a str,
    },
}

/// Validates the header of the frame at the start of `buf` — its type, and
/// its declared length against that type's limit — and returns the frame's
/// total length once all of it is here, or `Ok(None)` while bytes are
/// missing. The body's contents are checked by [`parse`].
pub fn check(buf: &[u8]) -> Result<Option<usize>, DecodeError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        // Reject an unknown type as soon as its byte is here.
        match buf.first() {
            Some(&t) if !KNOWN_TYPES.contains(&t) => return Err(DecodeError::UnknownFrame(t)),
            _ => return Ok(None),
        }
    };
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    body_limit(header[0], len)?;
    // body_limit bounded len by MAX_DATA, so this cannot overflow.
    let total = HEADER_LEN + len as usize;
    Ok((buf.len() >= total).then_some(total))
}

/// How many more bytes `buf` needs before it starts with a whole frame —
/// or, while it holds less than a header, a whole header. Zero when it
/// already does. An invalid header is [`check`]'s to report; here it only
/// yields some count.
pub fn missing(buf: &[u8]) -> usize {
    match buf.get(..HEADER_LEN) {
        None => HEADER_LEN - buf.len(),
        Some(header) => {
            let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
            HEADER_LEN.saturating_add(len).saturating_sub(buf.len())
        }
    }
}

/// Checks a declared body length against what the frame type allows.
fn body_limit(t: u8, len: u32) -> Result<(), DecodeError> {
    let exact = |kind, expected: usize| {
        if len as usize == expected {
            Ok(())
        } else {
            Err(DecodeError::BadLength {
                kind,
                len,
                expected,
            })
        }
    };
    let at_most = |kind, max: usize| {
        if len as usize <= max {
            Ok(())
        } else {
            Err(DecodeError::TooLong { kind, len, max })
        }
    };
    match t {
        // `parse` rejects empty data frames.
        T_DATA => at_most("data", MAX_DATA),
        T_ACK => exact("ack", 8),
        T_PING => exact("ping", 8),
        T_PONG => exact("pong", 8),
        T_FIN => exact("fin", 0),
        T_CLOSE => at_most("close", 1 + MAX_CLOSE_MESSAGE),
        other => Err(DecodeError::UnknownFrame(other)),
    }
}

/// Parses a frame that [`check`] accepted; `buf` is exactly that frame.
pub fn parse(buf: &[u8]) -> Result<Frame<'_>, DecodeError> {
    let (t, body) = (buf[0], &buf[HEADER_LEN..]);
    let u64_body = || {
        let mut b = [0u8; 8];
        b.copy_from_slice(body);
        u64::from_be_bytes(b)
    };
    Ok(match t {
        T_DATA if body.is_empty() => return Err(DecodeError::EmptyData),
        T_DATA => Frame::Data(body),
        T_ACK => Frame::Ack(u64_body()),
        T_PING => Frame::Ping(u64_body()),
        T_PONG => Frame::Pong(u64_body()),
        T_FIN => Frame::Fin,
        T_CLOSE => {
            let Some((&code, message)) = body.split_first() else {
                return Err(DecodeError::BadLength {
                    kind: "close",
                    len: 0,
                    expected: 1,
                });
            };
            let message = std::str::from_utf8(message).map_err(|_| DecodeError::BadUtf8)?;
            Frame::Close {
                code: CloseCode::from_byte(code),
                message,
            }
        }
        other => return Err(DecodeError::UnknownFrame(other)),
    })
}

/// Decodes the frame at the start of `buf`: `Ok(None)` if it is incomplete,
/// otherwise the frame and the number of bytes it occupied.
pub fn decode(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, DecodeError> {
    match check(buf)? {
        None => Ok(None),
        Some(len) => Ok(Some((parse(&buf[..len])?, len))),
    }
}

/// Appends the header of a data frame whose `len`-byte payload the caller
/// sends right after it (from wherever it lies).
///
/// Panics if `len` is zero or exceeds [`MAX_DATA`]; the engine never asks
/// for such a frame.
pub fn encode_data_header(len: usize, out: &mut Vec<u8>) {
    assert!(
        len > 0 && len <= MAX_DATA,
        "data frame payload of {len} bytes"
    );
    out.push(T_DATA);
    out.extend_from_slice(&(len as u32).to_be_bytes());
}

/// Appends the encoding of `frame` to `out`.
///
/// Panics if a data payload is empty or exceeds [`MAX_DATA`]; the engine
/// never builds one. Close messages longer than the limit are cut at a
/// character boundary.
pub fn encode(frame: &Frame<'_>, out: &mut Vec<u8>) {
    let header = |out: &mut Vec<u8>, t: u8, len: usize| {
        out.push(t);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    };
    match *frame {
        Frame::Data(payload) => {
            encode_data_header(payload.len(), out);
            out.extend_from_slice(payload);
        }
        Frame::Ack(n) => {
            header(out, T_ACK, 8);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Frame::Ping(ts) => {
            header(out, T_PING, 8);
            out.extend_from_slice(&ts.to_be_bytes());
        }
        Frame::Pong(ts) => {
            header(out, T_PONG, 8);
            out.extend_from_slice(&ts.to_be_bytes());
        }
        Frame::Fin => header(out, T_FIN, 0),
        Frame::Close { code, message } => {
            let text = cut_close_text(message);
            header(out, T_CLOSE, 1 + text.len());
            out.push(code.to_byte());
            out.extend_from_slice(text.as_bytes());
        }
    }
}

/// The part of `message` a CLOSE carries: at most [`MAX_CLOSE_MESSAGE`]
/// bytes, cut at a character boundary.
pub fn cut_close_text(message: &str) -> &str {
    let mut end = message.len().min(MAX_CLOSE_MESSAGE);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(frame: Frame<'_>) {
        let mut buf = Vec::new();
        encode(&frame, &mut buf);
        // Every strict prefix is incomplete, never an error.
        for cut in 0..buf.len() {
            assert_eq!(check(&buf[..cut]), Ok(None), "prefix {cut} of {frame:?}");
        }
        let (got, used) = decode(&buf).unwrap().unwrap();
        assert_eq!(got, frame);
        assert_eq!(used, buf.len());
    }

    #[test]
    fn every_frame_roundtrips() {
        roundtrip(Frame::Data(b"hello"));
        roundtrip(Frame::Data(&[7u8; MAX_DATA]));
        roundtrip(Frame::Ack(u64::MAX));
        roundtrip(Frame::Ping(12345));
        roundtrip(Frame::Pong(0));
        roundtrip(Frame::Fin);
        roundtrip(Frame::Close {
            code: CloseCode::SuspendTimeout,
            message: "gone",
        });
        roundtrip(Frame::Close {
            code: CloseCode::Other(200),
            message: "",
        });
    }

    #[test]
    fn unknown_type_is_rejected_from_its_first_byte() {
        assert_eq!(check(&[0x99]), Err(DecodeError::UnknownFrame(0x99)));
        assert_eq!(check(&[]), Ok(None));
    }

    #[test]
    fn huge_declared_length_is_rejected_before_the_body_arrives() {
        let buf = [T_DATA, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(check(&buf), Err(DecodeError::TooLong { .. })));
        let buf = [T_DATA, 0, 1, 0, 1];
        assert!(matches!(check(&buf), Err(DecodeError::TooLong { .. })));
    }

    #[test]
    fn fixed_size_frames_insist_on_their_size() {
        for t in [T_ACK, T_PING, T_PONG] {
            let buf = [t, 0, 0, 0, 9];
            assert!(matches!(check(&buf), Err(DecodeError::BadLength { .. })));
        }
        assert!(matches!(
            check(&[T_FIN, 0, 0, 0, 1, 0]),
            Err(DecodeError::BadLength { .. })
        ));
        assert!(matches!(
            check(&[T_CLOSE, 0, 0, 1, 1]),
            Err(DecodeError::TooLong { .. })
        ));
    }

    #[test]
    fn empty_data_and_empty_close_and_bad_utf8_are_errors() {
        assert_eq!(decode(&[T_DATA, 0, 0, 0, 0]), Err(DecodeError::EmptyData));
        assert!(matches!(
            decode(&[T_CLOSE, 0, 0, 0, 0]),
            Err(DecodeError::BadLength { .. })
        ));
        assert_eq!(
            decode(&[T_CLOSE, 0, 0, 0, 2, 0, 0xff]),
            Err(DecodeError::BadUtf8)
        );
    }

    #[test]
    fn long_close_message_is_cut_at_a_char_boundary() {
        let msg = "é".repeat(200);
        let mut buf = Vec::new();
        encode(
            &Frame::Close {
                code: CloseCode::Error,
                message: &msg,
            },
            &mut buf,
        );
        let (frame, _) = decode(&buf).unwrap().unwrap();
        let Frame::Close { message, .. } = frame else {
            panic!("not a close frame")
        };
        assert!(message.len() <= MAX_CLOSE_MESSAGE);
        assert!(msg.starts_with(message));
    }
}
