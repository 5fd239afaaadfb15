//! One transport connection as the engine sees it: where its handshake
//! stands, its input and output buffers, and its timers.
//!
//! A link never outlives its transport, and a session outlives many links.
//! Buffers are bounded: input by [`INPUT_CAP`] (the shell reads at most
//! [`Link::read_window`] bytes), output by the engine refusing to encode new
//! data while [`OUTPUT_HIGH`] bytes are pending.

use std::time::Instant;

use crate::error::LinkError;
use crate::handshake::{ClientHello, Nonce, ServerHello};
use crate::outbox::Outbox;
use crate::wire::MAX_FRAME;

/// Most bytes of input a link takes in one go (and buffers): four whole
/// frames, so that few frames are cut by the end of a read.
pub(crate) const INPUT_CAP: usize = 4 * MAX_FRAME;
/// The engine queues new data only while less than this is waiting to go:
/// several frames, for one vectored write (their payloads are not copied).
pub(crate) const OUTPUT_HIGH: usize = 3 * MAX_FRAME;
/// Control frames are skipped (pings, pongs) or wait (acks) rather than
/// queue beyond this; above the most data can fill, so data never starves
/// them.
pub(crate) const OUTPUT_CONTROL_CAP: usize = 8 * MAX_FRAME;

/// Names one link of a session. Ids are never reused within a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub(crate) u64);

impl std::fmt::Display for LinkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "link#{}", self.0)
    }
}

/// Where a link's handshake stands.
#[derive(Debug)]
pub(crate) enum Phase {
    /// Client: hello sent, waiting for the server's answer.
    ClientAwaitServer { hello: ClientHello },
    /// Server: waiting for the client's hello.
    ServerAwaitHello,
    /// Server: hello answered, waiting for the client's proof.
    ServerAwaitAuth {
        hello: ClientHello,
        server: ServerHello,
    },
    /// Authenticated; carries the stream.
    Established(Flow),
    /// Sending its last bytes (a reject or a close), then down.
    Closing {
        error: LinkError,
        deadline: Instant,
        /// It carries the session's close: once sent, nothing is owed.
        farewell: bool,
    },
}

/// Stream positions and timers of an established link.
#[derive(Debug)]
pub(crate) struct Flow {
    /// Stream position of the next unit that arrives on this link.
    pub rx_pos: u64,
    /// Stream position of the next unit to send on this link.
    pub tx_pos: u64,
    /// The received count in the last ack (or handshake) we sent.
    pub last_ack_sent: u64,
    /// When a delayed ack must go out.
    pub ack_due: Option<Instant>,
    /// When the next heartbeat is due.
    pub next_ping: Instant,
    /// Input waits for the application to read: liveness is not judged.
    pub rx_blocked: bool,
    /// A probe is out (the network changed): the link must answer by then.
    pub probe_deadline: Option<Instant>,
}

/// A byte buffer consumed from the front, compacted lazily.
#[derive(Debug, Default)]
pub(crate) struct ByteQueue {
    buf: Vec<u8>,
    start: usize,
}

impl ByteQueue {
    pub(crate) fn pending(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// The vector to append to; compacts first when the dead prefix is large.
    pub(crate) fn tail(&mut self) -> &mut Vec<u8> {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        &mut self.buf
    }

    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
    }
}

/// One link of a session.
#[derive(Debug)]
pub(crate) struct Link {
    pub id: LinkId,
    pub phase: Phase,
    pub input: ByteQueue,
    pub output: Outbox,
    pub opened_at: Instant,
    pub last_rx: Instant,
    /// Our nonce for this link's handshake.
    pub nonce: Nonce,
}

impl Link {
    pub(crate) fn new(id: LinkId, phase: Phase, now: Instant, nonce: Nonce) -> Self {
        Link {
            id,
            phase,
            input: ByteQueue::default(),
            output: Outbox::default(),
            opened_at: now,
            last_rx: now,
            nonce,
        }
    }

    pub(crate) fn flow(&mut self) -> Option<&mut Flow> {
        match &mut self.phase {
            Phase::Established(flow) => Some(flow),
            _ => None,
        }
    }

    pub(crate) fn is_handshaking(&self) -> bool {
        matches!(
            self.phase,
            Phase::ServerAwaitHello
                | Phase::ServerAwaitAuth { .. }
                | Phase::ClientAwaitServer { .. }
        )
    }

    /// How many bytes the shell may read from the transport for this link.
    pub(crate) fn read_window(&self) -> usize {
        match &self.phase {
            Phase::Established(flow) if flow.rx_blocked => 0,
            // Input on a closing link is read and thrown away.
            Phase::Closing { .. } => MAX_FRAME,
            Phase::Established(_) => INPUT_CAP.saturating_sub(self.input.len()),
            // A handshake is a few hundred bytes: an unauthenticated peer
            // gets no more room than one frame's worth.
            _ => MAX_FRAME.saturating_sub(self.input.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_queue_consumes_and_compacts() {
        let mut q = ByteQueue::default();
        q.tail().extend_from_slice(b"abcdef");
        q.consume(4);
        assert_eq!(q.pending(), b"ef");
        q.tail().extend_from_slice(b"gh");
        assert_eq!(q.pending(), b"efgh");
        q.consume(10);
        assert!(q.is_empty());
    }
}
