//! The two halves of the reliable byte stream: what we send (with its replay
//! buffer) and what we receive.
//!
//! Positions count *units*: every byte is one unit and the end of stream
//! (FIN) is one more unit after the last byte, as in TCP. A received count is
//! therefore enough to say both which bytes arrived and whether the FIN did.
//!
//! Invariants: the send half keeps exactly the bytes `[acked, written)` and
//! never holds more than its bound; the receive half never takes a unit
//! twice and never leaves a gap.

use std::collections::VecDeque;

use crate::error::ProtocolViolation;

/// Outgoing stream: bytes accepted from the application and kept until the
/// peer acknowledges them.
#[derive(Debug)]
pub(crate) struct SendHalf {
    /// Bytes `[acked_bytes(), written)`.
    replay: VecDeque<u8>,
    /// Units the peer has acknowledged.
    acked: u64,
    /// Bytes the application has written.
    written: u64,
    /// The application has finished writing.
    fin: bool,
    /// Most bytes `replay` may hold.
    bound: usize,
}

impl SendHalf {
    pub(crate) fn new(bound: usize) -> Self {
        SendHalf {
            replay: VecDeque::new(),
            acked: 0,
            written: 0,
            fin: false,
            bound,
        }
    }

    /// Bytes the application may write now.
    pub(crate) fn capacity(&self) -> usize {
        if self.fin {
            0
        } else {
            self.bound - self.replay.len()
        }
    }

    /// Takes as much of `data` as fits and returns how much that was.
    pub(crate) fn write(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.capacity());
        self.replay.extend(&data[..n]);
        self.written += n as u64;
        n
    }

    /// Marks the end of the stream after the bytes written so far.
    pub(crate) fn finish(&mut self) {
        self.fin = true;
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.fin
    }

    /// Units produced so far: bytes, plus one for the FIN.
    pub(crate) fn end(&self) -> u64 {
        self.written + u64::from(self.fin)
    }

    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    pub(crate) fn acked(&self) -> u64 {
        self.acked
    }

    pub(crate) fn buffered(&self) -> usize {
        self.replay.len()
    }

    /// Everything, FIN included, has been acknowledged.
    pub(crate) fn is_complete(&self) -> bool {
        self.fin && self.acked == self.end()
    }

    /// Records that the peer holds the first `upto` units and frees them.
    /// A count below what is already acknowledged changes nothing.
    pub(crate) fn ack(&mut self, upto: u64) -> Result<(), ProtocolViolation> {
        if upto > self.end() {
            return Err(ProtocolViolation::AckBeyondEnd {
                ack: upto,
                end: self.end(),
            });
        }
        if upto > self.acked {
            let freed = upto.min(self.written) - self.acked.min(self.written);
            // `freed` <= replay.len() because replay holds [acked, written).
            self.replay.drain(..freed as usize);
            self.acked = upto;
        }
        Ok(())
    }

    /// The longest contiguous run of bytes starting at `pos`, at most `max`
    /// long. `pos` must lie in `[acked, written)`.
    pub(crate) fn chunk_at(&self, pos: u64, max: usize) -> &[u8] {
        let offset = (pos - self.acked) as usize;
        let (a, b) = self.replay.as_slices();
        let run = if offset < a.len() {
            &a[offset..]
        } else {
            &b[offset - a.len()..]
        };
        &run[..run.len().min(max)]
    }
}

/// Incoming stream: bytes received from the peer, waiting for the
/// application to read them.
#[derive(Debug)]
pub(crate) struct RecvHalf {
    buf: VecDeque<u8>,
    /// Units received: bytes, plus one once the FIN arrived.
    received: u64,
    fin: bool,
    /// When `buf` holds this many bytes, the engine stops taking data.
    bound: usize,
}

impl RecvHalf {
    pub(crate) fn new(bound: usize) -> Self {
        RecvHalf {
            buf: VecDeque::new(),
            received: 0,
            fin: false,
            bound,
        }
    }

    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    /// The buffer is full: data must wait until the application reads.
    pub(crate) fn is_full(&self) -> bool {
        self.buf.len() >= self.bound
    }

    pub(crate) fn fin_received(&self) -> bool {
        self.fin
    }

    /// Takes the data that starts at stream position `pos`, skipping any
    /// part already received. Returns the number of new bytes.
    pub(crate) fn accept_data(
        &mut self,
        pos: u64,
        data: &[u8],
    ) -> Result<usize, ProtocolViolation> {
        let end = pos + data.len() as u64;
        if self.fin && end > self.received - 1 {
            return Err(ProtocolViolation::DataAfterFin);
        }
        if pos > self.received {
            return Err(ProtocolViolation::Gap {
                at: pos,
                received: self.received,
            });
        }
        let skip = (self.received - pos) as usize;
        let fresh = data.get(skip..).unwrap_or(&[]);
        self.buf.extend(fresh);
        self.received += fresh.len() as u64;
        Ok(fresh.len())
    }

    /// Takes a FIN at stream position `pos`. Returns whether it was new.
    pub(crate) fn accept_fin(&mut self, pos: u64) -> Result<bool, ProtocolViolation> {
        if pos > self.received {
            return Err(ProtocolViolation::Gap {
                at: pos,
                received: self.received,
            });
        }
        if self.fin && pos == self.received - 1 {
            return Ok(false); // a retransmission of the FIN we have
        }
        if self.fin || pos < self.received {
            // The stream would end before bytes we already hold.
            return Err(ProtocolViolation::DataAfterFin);
        }
        self.fin = true;
        self.received += 1;
        Ok(true)
    }

    /// The bytes ready for the application, as one contiguous run.
    pub(crate) fn peek(&self) -> &[u8] {
        self.buf.as_slices().0
    }

    /// Bytes ready for the application, in total.
    pub(crate) fn readable(&self) -> usize {
        self.buf.len()
    }

    /// Drops the first `n` readable bytes (the application consumed them).
    pub(crate) fn consume(&mut self, n: usize) {
        self.buf.drain(..n.min(self.buf.len()));
    }

    /// Copies readable bytes into `out` and consumes them.
    pub(crate) fn read(&mut self, out: &mut [u8]) -> usize {
        let mut n = 0;
        while n < out.len() && !self.buf.is_empty() {
            let run = self.peek();
            let m = run.len().min(out.len() - n);
            out[n..n + m].copy_from_slice(&run[..m]);
            self.consume(m);
            n += m;
        }
        n
    }

    /// The peer's FIN arrived and the application has read every byte.
    pub(crate) fn is_complete(&self) -> bool {
        self.fin && self.buf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_half_applies_backpressure_and_frees_on_ack() {
        let mut s = SendHalf::new(10);
        assert_eq!(s.write(b"0123456789abc"), 10);
        assert_eq!(s.write(b"x"), 0);
        assert_eq!(s.chunk_at(3, 4), b"3456");
        s.ack(4).unwrap();
        assert_eq!(s.capacity(), 4);
        assert_eq!(s.chunk_at(4, 100), b"456789");
        s.ack(2).unwrap(); // stale ack: no change
        assert_eq!(s.acked(), 4);
        assert!(s.ack(11).is_err());
        s.finish();
        assert_eq!(s.capacity(), 0);
        s.ack(11).unwrap();
        assert!(s.is_complete());
        assert_eq!(s.buffered(), 0);
    }

    #[test]
    fn chunk_at_crosses_the_ring_seam() {
        let mut s = SendHalf::new(8);
        s.write(b"abcdefgh");
        s.ack(6).unwrap();
        s.write(b"123456");
        let mut got = Vec::new();
        let mut pos = 6;
        while pos < s.written() {
            let c = s.chunk_at(pos, 3);
            got.extend_from_slice(c);
            pos += c.len() as u64;
        }
        assert_eq!(got, b"gh123456");
    }

    #[test]
    fn recv_half_skips_duplicates_and_refuses_gaps() {
        let mut r = RecvHalf::new(100);
        assert_eq!(r.accept_data(0, b"hello"), Ok(5));
        assert_eq!(r.accept_data(3, b"lo wo"), Ok(3));
        assert!(r.accept_data(9, b"x").is_err());
        assert_eq!(r.accept_fin(8), Ok(true));
        assert_eq!(r.accept_fin(8), Ok(false));
        assert_eq!(r.accept_data(8, b"x"), Err(ProtocolViolation::DataAfterFin));
        // A duplicate of data before the FIN is still fine.
        assert_eq!(r.accept_data(6, b"wo"), Ok(0));
        let mut out = [0u8; 16];
        assert_eq!(r.read(&mut out), 8);
        assert_eq!(&out[..8], b"hello wo");
        assert!(r.is_complete());
    }
}
