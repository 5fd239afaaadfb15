//! The two halves of the reliable byte stream: what we send (with its replay
//! buffer) and what we receive.
//!
//! Positions count *units*: every byte is one unit and the end of stream
//! (FIN) is one more unit after the last byte, as in TCP. A received count is
//! therefore enough to say both which bytes arrived and whether the FIN did.
//!
//! Invariants: the send half keeps the bytes `[freed, written)`, where
//! `freed <= acked` (acknowledged bytes stay while a link still has to send
//! them, see `outbox.rs`), and never holds more than its bound; the receive half never takes a unit
//! twice and never leaves a gap.

use std::collections::VecDeque;

use crate::error::ProtocolViolation;
use crate::ring::Ring;

/// Outgoing stream: bytes accepted from the application and kept until the
/// peer acknowledges them.
#[derive(Debug)]
pub(crate) struct SendHalf {
    /// Bytes `[freed, written)`.
    replay: Ring,
    /// Bytes dropped from the front of `replay`.
    freed: u64,
    /// Units the peer has acknowledged.
    acked: u64,
    /// Bytes the application has written.
    written: u64,
    /// The application has finished writing.
    fin: bool,
}

impl SendHalf {
    pub(crate) fn new(bound: usize) -> Self {
        SendHalf {
            replay: Ring::new(bound),
            freed: 0,
            acked: 0,
            written: 0,
            fin: false,
        }
    }

    /// Bytes the application may write now.
    pub(crate) fn capacity(&self) -> usize {
        if self.fin { 0 } else { self.replay.room() }
    }

    /// Takes as much of `data` as fits and returns how much that was.
    pub(crate) fn write(&mut self, data: &[u8]) -> usize {
        if self.fin {
            return 0;
        }
        let n = self.replay.push(data);
        self.written += n as u64;
        n
    }

    /// Limits the bytes held to `bytes` (see `Session::set_send_window`).
    pub(crate) fn set_window(&mut self, bytes: usize) {
        self.replay.set_limit(bytes);
    }

    pub(crate) fn window(&self) -> usize {
        self.replay.limit()
    }

    /// Room to write up to `want` bytes into, in place; empty when none.
    /// Report what was filled with [`SendHalf::commit`].
    pub(crate) fn write_buf(&mut self, want: usize) -> &mut [u8] {
        if self.fin {
            return &mut [];
        }
        self.replay.spare(want)
    }

    /// `n` bytes of [`SendHalf::write_buf`] were filled.
    pub(crate) fn commit(&mut self, n: usize) {
        self.replay.commit(n);
        self.written += n as u64;
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

    /// Records that the peer holds the first `upto` units. A count below
    /// what is already acknowledged changes nothing. The bytes are freed by
    /// [`SendHalf::release`].
    pub(crate) fn ack(&mut self, upto: u64) -> Result<(), ProtocolViolation> {
        if upto > self.end() {
            return Err(ProtocolViolation::AckBeyondEnd {
                ack: upto,
                end: self.end(),
            });
        }
        self.acked = self.acked.max(upto);
        Ok(())
    }

    /// Frees acknowledged bytes, but none at or after `pinned` (a position
    /// a link still has to send from).
    pub(crate) fn release(&mut self, pinned: Option<u64>) {
        let upto = self.acked.min(self.written).min(pinned.unwrap_or(u64::MAX));
        if upto > self.freed {
            // replay holds [freed, written) and upto <= written.
            self.replay.free_front((upto - self.freed) as usize);
            self.freed = upto;
        }
    }

    /// The `len` bytes from stream position `pos`, as the two runs of the
    /// ring (the second often empty). `[pos, pos + len)` must lie in
    /// `[freed, written)`.
    pub(crate) fn slices_at(&self, pos: u64, len: usize) -> (&[u8], &[u8]) {
        self.replay.slices((pos - self.freed) as usize, len)
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
    ///
    /// Buffered bytes and then the new ones are first offered, in order, to
    /// `deliver` (the application, written to directly), which returns how
    /// many it took; only what it did not take is buffered.
    pub(crate) fn accept_data(
        &mut self,
        pos: u64,
        data: &[u8],
        deliver: &mut dyn FnMut(&[u8]) -> usize,
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
        // Bytes waiting ahead go first; if they all go, the new ones may
        // follow them straight over.
        while !fresh.is_empty() && !self.buf.is_empty() {
            let taken = deliver(self.peek()).min(self.buf.len());
            if taken == 0 {
                break;
            }
            self.consume(taken);
        }
        let direct = if self.buf.is_empty() && !fresh.is_empty() {
            deliver(fresh).min(fresh.len())
        } else {
            0
        };
        self.buf.extend(&fresh[direct..]);
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

    fn bytes_at(s: &SendHalf, pos: u64, len: usize) -> Vec<u8> {
        let (a, b) = s.slices_at(pos, len);
        [a, b].concat()
    }

    #[test]
    fn send_half_applies_backpressure_and_frees_on_ack() {
        let mut s = SendHalf::new(10);
        assert_eq!(s.write(b"0123456789abc"), 10);
        assert_eq!(s.write(b"x"), 0);
        assert_eq!(bytes_at(&s, 3, 4), b"3456");
        s.ack(4).unwrap();
        s.release(None);
        assert_eq!(s.capacity(), 4);
        assert_eq!(bytes_at(&s, 4, 6), b"456789");
        s.ack(2).unwrap(); // stale ack: no change
        assert_eq!(s.acked(), 4);
        assert!(s.ack(11).is_err());
        s.finish();
        assert_eq!(s.capacity(), 0);
        s.ack(11).unwrap();
        s.release(None);
        assert!(s.is_complete());
        assert_eq!(s.buffered(), 0);
    }

    #[test]
    fn pinned_bytes_stay_after_their_ack() {
        let mut s = SendHalf::new(10);
        s.write(b"0123456789");
        s.ack(8).unwrap();
        s.release(Some(5));
        assert_eq!(s.buffered(), 5, "bytes from the pin on are kept");
        assert_eq!(bytes_at(&s, 5, 5), b"56789");
        s.release(None);
        assert_eq!(s.buffered(), 2);
        assert_eq!(s.capacity(), 8);
    }

    #[test]
    fn slices_at_crosses_the_ring_seam() {
        let mut s = SendHalf::new(8);
        s.write(b"abcdefgh");
        s.ack(6).unwrap();
        s.release(None);
        s.write(b"123456");
        let mut got = Vec::new();
        let mut pos = 6;
        while pos < s.written() {
            let len = (s.written() - pos).min(3) as usize;
            got.extend_from_slice(&bytes_at(&s, pos, len));
            pos += len as u64;
        }
        assert_eq!(got, b"gh123456");
        assert_eq!(bytes_at(&s, 6, 8), b"gh123456");
    }

    fn none(_: &[u8]) -> usize {
        0
    }

    #[test]
    fn recv_half_skips_duplicates_and_refuses_gaps() {
        let mut r = RecvHalf::new(100);
        assert_eq!(r.accept_data(0, b"hello", &mut none), Ok(5));
        assert_eq!(r.accept_data(3, b"lo wo", &mut none), Ok(3));
        assert!(r.accept_data(9, b"x", &mut none).is_err());
        assert_eq!(r.accept_fin(8), Ok(true));
        assert_eq!(r.accept_fin(8), Ok(false));
        assert_eq!(
            r.accept_data(8, b"x", &mut none),
            Err(ProtocolViolation::DataAfterFin)
        );
        // A duplicate of data before the FIN is still fine.
        assert_eq!(r.accept_data(6, b"wo", &mut none), Ok(0));
        let mut out = [0u8; 16];
        assert_eq!(r.read(&mut out), 8);
        assert_eq!(&out[..8], b"hello wo");
        assert!(r.is_complete());
    }

    #[test]
    fn recv_half_hands_data_over_in_order_buffering_only_what_is_refused() {
        let mut r = RecvHalf::new(100);
        let mut app = Vec::new();
        // The application takes three bytes; the rest is buffered.
        let mut take3 = |d: &[u8]| {
            app.extend_from_slice(&d[..3]);
            3
        };
        assert_eq!(r.accept_data(0, b"hello", &mut take3), Ok(5));
        assert_eq!(r.readable(), 2);
        // The application is full: everything queues, in order.
        assert_eq!(r.accept_data(5, b" wor", &mut none), Ok(4));
        assert_eq!(r.readable(), 6);
        // Room again: the queued bytes go first, then the new ones.
        let mut take_all = |d: &[u8]| {
            app.extend_from_slice(d);
            d.len()
        };
        assert_eq!(r.accept_data(9, b"ld!", &mut take_all), Ok(3));
        assert_eq!(r.readable(), 0);
        assert_eq!(app, b"hello world!");
        assert_eq!(r.received(), 12);
    }
}
