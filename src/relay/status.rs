//! A live, cheap view of a relay's session for status displays: published
//! by the relay loop only when something a person would see changed.

use std::time::{Duration, Instant};

use rock_proto::{Session, State};
use tokio::sync::watch;

/// What `rock status` and the suspended-session notice show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Connected, suspended since when, or closed.
    pub state: State,
    /// Latest heartbeat round trip.
    pub rtt: Option<Duration>,
    /// Bytes waiting for the peer's acknowledgement.
    pub replay_buffered: usize,
    /// Links after the first.
    pub reconnects: u64,
    /// Failed dial attempts since the last link (client).
    pub attempts: u32,
}

/// Receives status updates.
pub type StatusWatch = watch::Receiver<Status>;

pub(crate) struct StatusTx(watch::Sender<Status>);

fn snapshot(session: &Session, attempts: u32) -> Status {
    let s = session.stats();
    Status {
        state: s.state,
        rtt: s.rtt,
        // Rounded so a busy transfer does not publish on every byte.
        replay_buffered: s.replay_buffered & !0xffff,
        reconnects: s.links_established.saturating_sub(1),
        attempts,
    }
}

impl StatusTx {
    pub(crate) fn new(session: &Session) -> Self {
        StatusTx(watch::Sender::new(snapshot(session, 0)))
    }

    pub(crate) fn subscribe(&self) -> StatusWatch {
        self.0.subscribe()
    }

    pub(crate) fn publish(&self, session: &Session, attempts: u32) {
        let next = snapshot(session, attempts);
        self.0.send_if_modified(|cur| {
            let changed = *cur != next;
            if changed {
                *cur = next;
            }
            changed
        });
    }
}

/// How long a suspended session has been suspended, if it is.
pub fn suspended_for(status: &Status, now: Instant) -> Option<Duration> {
    match status.state {
        State::Suspended { since } => Some(now.saturating_duration_since(since)),
        _ => None,
    }
}
