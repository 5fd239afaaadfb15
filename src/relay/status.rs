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

/// A change of the figures alone (RTT, replay bytes) is published at most
/// this often; a change of state, attempts or reconnections at once. So a
/// busy transfer does not wake the status readers on every write.
const FIGURES_EVERY: Duration = Duration::from_millis(250);

pub(crate) struct StatusTx {
    tx: watch::Sender<Status>,
    /// When the figures were last published.
    last: Option<Instant>,
}

fn snapshot(session: &Session, attempts: u32) -> Status {
    let s = session.stats();
    Status {
        state: s.state,
        rtt: s.rtt,
        replay_buffered: s.replay_buffered,
        reconnects: s.links_established.saturating_sub(1),
        attempts,
    }
}

impl StatusTx {
    pub(crate) fn new(session: &Session) -> Self {
        StatusTx {
            tx: watch::Sender::new(snapshot(session, 0)),
            last: None,
        }
    }

    pub(crate) fn subscribe(&self) -> StatusWatch {
        self.tx.subscribe()
    }

    pub(crate) fn publish(&mut self, session: &Session, attempts: u32, now: Instant) {
        let next = snapshot(session, attempts);
        let figures_due = self
            .last
            .is_none_or(|t| now.saturating_duration_since(t) >= FIGURES_EVERY);
        let mut published = false;
        self.tx.send_if_modified(|cur| {
            let moved = (cur.state, cur.attempts, cur.reconnects)
                != (next.state, next.attempts, next.reconnects);
            let changed = if moved || figures_due {
                *cur != next
            } else {
                false
            };
            if changed {
                *cur = next;
                published = true;
            }
            changed
        });
        if published {
            self.last = Some(now);
        }
    }
}

/// How long a suspended session's link has been silent, if it is
/// suspended: from the last bytes heard, not from when the silence was
/// declared a failure.
pub fn suspended_for(status: &Status, now: Instant) -> Option<Duration> {
    match status.state {
        // From the outage's start as far as we can tell: the last bytes heard.
        State::Suspended { heard, .. } => Some(now.saturating_duration_since(heard)),
        _ => None,
    }
}
