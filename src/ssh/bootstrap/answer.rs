//! Judging rockd's answer: ready and speaking a link protocol this rock
//! speaks, not installed (the launch script's list of candidates), failed,
//! or gone without answering.

use super::BootstrapError;
use super::command::not_found_list;
use super::exec::Output;
use crate::boot::{BootError, BootReady};

/// Turns the channel's output into rockd's answer or an error.
pub(super) fn interpret(output: Output, host: &str) -> Result<BootReady, BootstrapError> {
    let stderr = output.stderr_text();
    let ended = output.how_it_ended();
    match output.answer {
        Some(Ok(ready)) => check_compatible(ready, host),
        Some(Err(BootError::Remote(message))) => match not_found_list(&message) {
            Some(tried) => Err(BootstrapError::RockdNotFound {
                host: host.to_owned(),
                tried,
            }),
            None => Err(BootstrapError::RockdFailed {
                host: host.to_owned(),
                message,
                stderr,
            }),
        },
        Some(Err(BootError::Version(v))) => Err(BootstrapError::RockdIncompatible {
            host: host.to_owned(),
            detail: format!(
                "it speaks boot exchange {v}, this rock speaks {}",
                crate::boot::BOOT_VERSION
            ),
        }),
        Some(Err(e)) => Err(BootstrapError::Protocol {
            host: host.to_owned(),
            detail: e.to_string(),
            stderr,
        }),
        None => Err(BootstrapError::RockdFailed {
            host: host.to_owned(),
            message: format!("it ended without answering ({ended})"),
            stderr,
        }),
    }
}

/// Refuses a rockd whose link protocol range has nothing in common with
/// this rock's.
fn check_compatible(ready: BootReady, host: &str) -> Result<BootReady, BootstrapError> {
    let ours = rock_proto::handshake::SUPPORTED_VERSIONS;
    if ours.negotiate(ready.proto).is_some() {
        return Ok(ready);
    }
    Err(BootstrapError::RockdIncompatible {
        host: host.to_owned(),
        detail: format!(
            "rockd {} speaks link protocol {}, this rock ({}) speaks {}",
            ready.version,
            ready.proto,
            env!("CARGO_PKG_VERSION"),
            ours
        ),
    })
}

#[cfg(test)]
mod tests {
    use rock_proto::VersionRange;

    use super::*;

    #[test]
    fn interpret_classifies_answers() {
        let with = |answer| {
            let mut output = Output::default();
            output.answer = Some(answer);
            output
        };
        let ready = BootReady {
            version: "9.9.9".into(),
            proto: VersionRange { min: 7, max: 9 },
            port: 1,
        };
        assert!(matches!(
            interpret(with(Ok(ready)), "h"),
            Err(BootstrapError::RockdIncompatible { .. })
        ));
        let missing = BootError::Remote("rockd not found (tried: a, b (on PATH))".into());
        match interpret(with(Err(missing)), "h") {
            Err(BootstrapError::RockdNotFound { tried, .. }) => {
                assert_eq!(tried, ["a", "b (on PATH)"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            interpret(with(Err(BootError::Remote("no port".into()))), "h"),
            Err(BootstrapError::RockdFailed { .. })
        ));
        assert!(matches!(
            interpret(Output::default(), "h"),
            Err(BootstrapError::RockdFailed { .. })
        ));
    }
}
