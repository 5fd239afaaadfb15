//! The settings that are a choice among names: [`ReconnectMode`] and
//! [`AutoInstall`]. serde reads them from the configuration files and clap
//! from the command line, both from the one list of names derived here.

use std::fmt;

use clap::ValueEnum;
use serde::Deserialize;

/// How new links reach rockd.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ReconnectMode {
    /// TCP to rockd's own port.
    #[default]
    Direct,
    /// A new SSH connection and a channel to rockd's loopback port.
    Ssh,
    /// Direct while it works, else ssh.
    Auto,
}

/// Whether rock copies its own rockd to a host that lacks a usable one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AutoInstall {
    /// Ask on the terminal (never under BatchMode or without one).
    #[default]
    Ask,
    /// Copy without asking.
    Yes,
    /// Never copy; say how to.
    No,
}

/// Writes `value`'s name, as the configuration and the command line
/// spell it.
fn write_name<T: ValueEnum>(value: &T, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match value.to_possible_value() {
        Some(v) => f.write_str(v.get_name()),
        // Only a variant marked `#[value(skip)]` has none; none is.
        None => Err(fmt::Error),
    }
}

impl fmt::Display for ReconnectMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_name(self, f)
    }
}

impl fmt::Display for AutoInstall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_name(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Holder<T> {
        v: T,
    }

    /// Each name reads back as the value it names, in the configuration
    /// files and on the command line alike.
    fn round_trip<T>()
    where
        T: ValueEnum + fmt::Display + PartialEq + fmt::Debug + for<'de> Deserialize<'de>,
    {
        for value in T::value_variants() {
            let name = value.to_string();
            let read: Holder<T> = toml::from_str(&format!("v = \"{name}\"")).unwrap();
            assert_eq!(&read.v, value);
            assert_eq!(&T::from_str(&name, false).unwrap(), value);
        }
    }

    #[test]
    fn names_read_back_from_toml_and_the_command_line() {
        round_trip::<ReconnectMode>();
        round_trip::<AutoInstall>();
        assert_eq!(ReconnectMode::default(), ReconnectMode::Direct);
        assert_eq!(AutoInstall::default(), AutoInstall::Ask);
    }

    #[test]
    fn a_wrong_name_lists_the_right_ones() {
        let err = toml::from_str::<Holder<ReconnectMode>>("v = \"tunnel\"")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("tunnel") && err.contains("`direct`, `ssh`, `auto`"),
            "{err}"
        );
        let err = toml::from_str::<Holder<AutoInstall>>("v = \"maybe\"")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("maybe") && err.contains("`ask`, `yes`, `no`"),
            "{err}"
        );
    }
}
