//! Tunables of one session: buffer bounds, heartbeat and timeouts.

use std::time::Duration;

use crate::handshake::{SUPPORTED_VERSIONS, VersionRange};

/// How a session behaves. [`Config::default`] is what rock and rockd use
/// unless a profile says otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Most unacknowledged bytes kept for replay; when full, the engine
    /// takes no more from the application (backpressure), and drops nothing.
    pub replay_bound: usize,
    /// Most received bytes held for the application; when full, the engine
    /// stops reading the link and TCP pushes back on the peer.
    pub receive_bound: usize,
    /// How often a heartbeat goes out on an established link.
    pub heartbeat_interval: Duration,
    /// A link from which nothing arrives for this long is declared dead.
    pub link_timeout: Duration,
    /// A link whose handshake takes longer than this is dropped.
    pub handshake_timeout: Duration,
    /// After a network change, a link that answers nothing for this long
    /// (or four round trips, if longer) is declared dead; see
    /// [`Session::probe_link`](crate::Session::probe_link).
    pub probe_timeout: Duration,
    /// A session with no link for this long gives up and closes.
    pub suspend_timeout: Duration,
    /// Acknowledge at once when this many new units have arrived.
    pub ack_threshold: u64,
    /// Otherwise acknowledge this long after the first unacknowledged unit.
    pub ack_delay: Duration,
    /// Links a server lets wait for their handshake at once; a newer one
    /// pushes the oldest out, so a flood cannot starve the session.
    pub max_pending_links: usize,
    /// Protocol versions offered (client) or accepted (server).
    pub versions: VersionRange,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            replay_bound: 4 << 20,
            receive_bound: 4 << 20,
            heartbeat_interval: Duration::from_secs(1),
            link_timeout: Duration::from_secs(6),
            handshake_timeout: Duration::from_secs(10),
            probe_timeout: Duration::from_secs(1),
            suspend_timeout: Duration::from_secs(72 * 3600),
            ack_threshold: 32 << 10,
            ack_delay: Duration::from_millis(20),
            max_pending_links: 8,
            versions: SUPPORTED_VERSIONS,
        }
    }
}

/// A configuration the engine cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A bound or count that must be positive is zero.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    /// The link timeout would fire between two heartbeats.
    #[error(
        "link timeout ({timeout:?}) must be longer than the heartbeat interval ({heartbeat:?})"
    )]
    TimeoutBelowHeartbeat {
        /// Configured link timeout.
        timeout: Duration,
        /// Configured heartbeat interval.
        heartbeat: Duration,
    },
}

impl Config {
    /// Checks the values the engine relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("replay_bound", self.replay_bound == 0),
            ("receive_bound", self.receive_bound == 0),
            ("heartbeat_interval", self.heartbeat_interval.is_zero()),
            ("handshake_timeout", self.handshake_timeout.is_zero()),
            ("probe_timeout", self.probe_timeout.is_zero()),
            ("ack_threshold", self.ack_threshold == 0),
            ("max_pending_links", self.max_pending_links == 0),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, zero)| *zero) {
            return Err(ConfigError::Zero(name));
        }
        if self.link_timeout <= self.heartbeat_interval {
            return Err(ConfigError::TimeoutBelowHeartbeat {
                timeout: self.link_timeout,
                heartbeat: self.heartbeat_interval,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_mistakes_are_named() {
        assert_eq!(Config::default().validate(), Ok(()));
        let c = Config {
            replay_bound: 0,
            ..Config::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::Zero("replay_bound")));
        let c = Config {
            link_timeout: Duration::from_millis(500),
            ..Config::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::TimeoutBelowHeartbeat { .. })
        ));
    }
}
