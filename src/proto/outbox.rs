//! What a link has to send, in order, without copying stream data: encoded
//! frames (handshake messages, control frames, data frame headers) are
//! owned bytes, and the payload of each data frame is a reference into the
//! send half's replay buffer, handed to the shell as its own slice so that
//! the shell can write everything with one vectored write.
//!
//! Invariant: while a payload is queued here, the bytes it refers to stay
//! in the replay buffer, acknowledged or not — the session passes
//! [`Outbox::pinned`] to [`SendHalf::release`] — because once a frame's
//! header has gone out its payload must follow in full.

use std::collections::VecDeque;
use std::io::IoSlice;

use crate::link::ByteQueue;
use crate::stream::SendHalf;
use crate::wire::{self, Frame};

/// One run of output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment {
    /// The next `n` bytes of the owned queue.
    Own(usize),
    /// `len` bytes of the stream starting at position `pos`.
    Payload { pos: u64, len: usize },
}

/// A link's pending output.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    bytes: ByteQueue,
    segments: VecDeque<Segment>,
    len: usize,
}

impl Outbox {
    /// Bytes waiting to be written, payloads included.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends bytes the outbox owns.
    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        self.own(|out| out.extend_from_slice(bytes));
    }

    /// Appends an encoded control frame (not data: see [`Outbox::push_data`]).
    pub(crate) fn encode(&mut self, frame: &Frame<'_>) {
        self.own(|out| wire::encode(frame, out));
    }

    /// Appends a data frame carrying `len` stream bytes from `pos`, which
    /// the replay buffer holds.
    pub(crate) fn push_data(&mut self, pos: u64, len: usize) {
        self.own(|out| wire::encode_data_header(len, out));
        self.segments.push_back(Segment::Payload { pos, len });
        self.len += len;
    }

    fn own(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let tail = self.bytes.tail();
        let before = tail.len();
        write(tail);
        let n = tail.len() - before;
        if n == 0 {
            return;
        }
        match self.segments.back_mut() {
            Some(Segment::Own(k)) => *k += n,
            _ => self.segments.push_back(Segment::Own(n)),
        }
        self.len += n;
    }

    /// The lowest stream position a queued payload still needs.
    pub(crate) fn pinned(&self) -> Option<u64> {
        // Payloads are queued in stream order.
        self.segments.iter().find_map(|s| match *s {
            Segment::Payload { pos, .. } => Some(pos),
            Segment::Own(_) => None,
        })
    }

    /// The first contiguous run of output (empty when there is none).
    pub(crate) fn first<'a>(&'a self, send: &'a SendHalf) -> &'a [u8] {
        match self.segments.front() {
            Some(&Segment::Own(n)) => &self.bytes.pending()[..n],
            Some(&Segment::Payload { pos, len }) => send.slices_at(pos, len).0,
            None => &[],
        }
    }

    /// Fills `out` with the output in order; returns how many slices.
    pub(crate) fn slices<'a>(&'a self, send: &'a SendHalf, out: &mut [IoSlice<'a>]) -> usize {
        let mut used = 0;
        let mut owned = self.bytes.pending();
        for segment in &self.segments {
            let parts = match *segment {
                Segment::Own(n) => {
                    let (run, rest) = owned.split_at(n);
                    owned = rest;
                    (run, &[][..])
                }
                Segment::Payload { pos, len } => send.slices_at(pos, len),
            };
            for part in [parts.0, parts.1] {
                if part.is_empty() {
                    continue;
                }
                let Some(slot) = out.get_mut(used) else {
                    return used;
                };
                *slot = IoSlice::new(part);
                used += 1;
            }
        }
        used
    }

    /// `n` bytes of the output were written.
    pub(crate) fn consume(&mut self, mut n: usize) {
        n = n.min(self.len);
        self.len -= n;
        while n > 0 {
            let Some(front) = self.segments.front_mut() else {
                break;
            };
            match front {
                Segment::Own(k) => {
                    let m = n.min(*k);
                    self.bytes.consume(m);
                    *k -= m;
                    n -= m;
                    if *k == 0 {
                        self.segments.pop_front();
                    }
                }
                Segment::Payload { pos, len } => {
                    let m = n.min(*len);
                    *pos += m as u64;
                    *len -= m;
                    n -= m;
                    if *len == 0 {
                        self.segments.pop_front();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(outbox: &Outbox, send: &SendHalf) -> Vec<u8> {
        let mut slices = [IoSlice::new(&[]); 16];
        let n = outbox.slices(send, &mut slices);
        slices[..n].iter().flat_map(|s| s.iter().copied()).collect()
    }

    #[test]
    fn frames_and_payloads_come_out_in_order_and_consume_across_segments() {
        let mut send = SendHalf::new(64);
        send.write(b"hello world");
        let mut outbox = Outbox::default();
        outbox.encode(&Frame::Ack(7));
        outbox.push_data(0, 5);
        outbox.push_data(5, 6);
        outbox.encode(&Frame::Fin);
        let mut expected = Vec::new();
        wire::encode(&Frame::Ack(7), &mut expected);
        wire::encode(&Frame::Data(b"hello"), &mut expected);
        wire::encode(&Frame::Data(b" world"), &mut expected);
        wire::encode(&Frame::Fin, &mut expected);
        assert_eq!(all(&outbox, &send), expected);
        assert_eq!(outbox.len(), expected.len());
        assert_eq!(outbox.pinned(), Some(0));

        // Write it out a few bytes at a time through `first`.
        let mut written = Vec::new();
        while !outbox.is_empty() {
            let run = outbox.first(&send);
            let take = run.len().min(3);
            written.extend_from_slice(&run[..take]);
            outbox.consume(take);
            if let Some(pin) = outbox.pinned() {
                assert!(pin <= 11);
            }
        }
        assert_eq!(written, expected);
        assert_eq!(outbox.pinned(), None);
    }

    #[test]
    fn a_payload_across_the_ring_seam_is_two_slices() {
        let mut send = SendHalf::new(8);
        send.write(b"abcdefgh");
        send.ack(6).unwrap();
        send.release(None);
        send.write(b"123456");
        let mut outbox = Outbox::default();
        outbox.push_data(6, 8);
        let mut expected = Vec::new();
        wire::encode(&Frame::Data(b"gh123456"), &mut expected);
        assert_eq!(all(&outbox, &send), expected);
    }
}
