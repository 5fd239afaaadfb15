//! [`Settings`]: the settings one session runs with, resolved once from
//! the command line, the host's profiles and the built-in defaults, in
//! that order of precedence, and checked once. `rock -d` and
//! `rock config check HOST` both go through [`Settings::resolve`], so a
//! value one refuses the other refuses too, with the key's name and where
//! the value came from.
//!
//! The built-in defaults are written in one place: the engine's
//! ([`rock_proto::Config::default`]) for its tunables, and
//! [`Settings::resolve`] for the rest.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use super::modes::{AutoInstall, ReconnectMode};
use super::profiles::{Profiles, Sourced};
use super::values::{format_duration, format_size};

/// How long, by default, a rock left in the background tries to deliver
/// the end of a session: long enough for a Wi-Fi change or a short outage,
/// short enough that a forgotten process does not linger for days.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(600);
/// The rendezvous port of `rock COMMAND` when no profile sets `rock_port`.
pub const DEFAULT_ROCK_PORT: u16 = 4747;

/// What the user gave on rock's command line, over the profiles.
#[derive(Debug, Clone, Default)]
pub struct CommandLine {
    /// `--rockd PATH`.
    pub rockd_path: Option<String>,
    /// `--suspend-timeout SECS`.
    pub suspend_timeout: Option<Duration>,
    /// `--reconnect MODE`.
    pub reconnect: Option<ReconnectMode>,
    /// `--install-rockd`: `auto_install = "yes"` for this run.
    pub install_rockd: bool,
    /// `-l`: `reconnect_to_localhost = true` for this run.
    pub localhost: bool,
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// rock's built-in default.
    BuiltIn,
    /// An option on rock's command line.
    CommandLine(&'static str),
    /// A section of a configuration file (file and section).
    Profile(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::BuiltIn => f.write_str("built-in"),
            Source::CommandLine(option) => write!(f, "command line {option}"),
            Source::Profile(section) => f.write_str(section),
        }
    }
}

/// A resolved value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    /// The value in force.
    pub value: T,
    /// Where it was set.
    pub from: Source,
}

/// The settings of a session to one destination.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a session waits for a lost link before giving up.
    pub suspend_timeout: Setting<Duration>,
    /// Time between heartbeats.
    pub heartbeat_interval: Setting<Duration>,
    /// Silence after which a link is declared dead.
    pub link_timeout: Setting<Duration>,
    /// How long a rock left in the background keeps redialling to deliver
    /// the end of a session whose command ended while the link was down
    /// (zero: it does not stay; rockd then ends the session at its
    /// suspension timeout).
    pub close_timeout: Setting<Duration>,
    /// Most unacknowledged bytes kept for replay.
    pub replay_buffer: Setting<usize>,
    /// rockd's path on the remote; `None`: look for it (PATH, the usual
    /// places, an earlier install).
    pub rockd_path: Setting<Option<String>>,
    /// How new links reach rockd; `None`: direct, or through ssh when the
    /// bootstrap went through a proxy (see [`Settings::reconnect_mode`]).
    pub reconnect: Setting<Option<ReconnectMode>>,
    /// Redial 127.0.0.1 instead of the host's name.
    pub reconnect_to_localhost: Setting<bool>,
    /// The address rockd listens on; `None`: all of them.
    pub rockd_listen: Setting<Option<IpAddr>>,
    /// The ports rockd may listen on; `None`: any free port.
    pub rockd_port_range: Setting<Option<(u16, u16)>>,
    /// Show a suspended session in the terminal's title.
    pub sign_of_life: Setting<bool>,
    /// Whether to copy rock's own rockd to a host without a usable one.
    pub auto_install: Setting<AutoInstall>,
    /// The local rockd binary to copy; `None`: next to rock, else PATH.
    pub rockd_binary: Setting<Option<String>>,
    /// The host's rendezvous port for `rock COMMAND` (0: none).
    pub rock_port: Setting<u16>,
}

/// A setting rock cannot run a session with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid settings for {host}: {key} = {value} ({from}) {why}")]
pub struct SettingsError {
    /// The destination as typed.
    pub host: String,
    /// The configuration key (or the option that stands for it).
    pub key: &'static str,
    /// The value, as the configuration would write it.
    pub value: String,
    /// Where it came from.
    pub from: Source,
    /// What is wrong and what would do.
    pub why: String,
}

/// The value of the first of `cli`, `profile` that is set, else `default`.
fn pick<T>(cli: Option<(T, &'static str)>, profile: Option<Sourced<T>>, default: T) -> Setting<T> {
    match (cli, profile) {
        (Some((value, option)), _) => Setting {
            value,
            from: Source::CommandLine(option),
        },
        (None, Some(s)) => Setting {
            value: s.value,
            from: Source::Profile(s.from),
        },
        (None, None) => Setting {
            value: default,
            from: Source::BuiltIn,
        },
    }
}

/// [`pick`] for a setting whose built-in default is "not set".
fn pick_opt<T>(cli: Option<(T, &'static str)>, profile: Option<Sourced<T>>) -> Setting<Option<T>> {
    pick(
        cli.map(|(v, o)| (Some(v), o)),
        profile.map(|s| Sourced {
            value: Some(s.value),
            from: s.from,
        }),
        None,
    )
}

impl Settings {
    /// Resolves the settings for `host` (the destination as the user typed
    /// it: profiles match the alias) and checks them.
    pub fn resolve(
        profiles: &Profiles,
        host: &str,
        cli: &CommandLine,
    ) -> Result<Settings, SettingsError> {
        let p = profiles.for_host(host);
        let engine = rock_proto::Config::default();
        let settings = Settings {
            suspend_timeout: pick(
                cli.suspend_timeout.map(|t| (t, "--suspend-timeout")),
                p.suspend_timeout,
                engine.suspend_timeout,
            ),
            heartbeat_interval: pick(None, p.heartbeat_interval, engine.heartbeat_interval),
            link_timeout: pick(None, p.link_timeout, engine.link_timeout),
            close_timeout: pick(None, p.close_timeout, DEFAULT_CLOSE_TIMEOUT),
            replay_buffer: pick(None, p.replay_buffer, engine.replay_bound),
            rockd_path: pick_opt(cli.rockd_path.clone().map(|r| (r, "--rockd")), p.rockd_path),
            reconnect: pick_opt(cli.reconnect.map(|m| (m, "--reconnect")), p.reconnect),
            reconnect_to_localhost: pick(
                cli.localhost.then_some((true, "-l")),
                p.reconnect_to_localhost,
                false,
            ),
            rockd_listen: pick_opt(None, p.rockd_listen),
            rockd_port_range: pick_opt(None, p.rockd_port_range),
            sign_of_life: pick(None, p.sign_of_life, true),
            auto_install: pick(
                cli.install_rockd
                    .then_some((AutoInstall::Yes, "--install-rockd")),
                p.auto_install,
                AutoInstall::default(),
            ),
            rockd_binary: pick_opt(None, p.rockd_binary),
            rock_port: pick(None, p.rock_port, DEFAULT_ROCK_PORT),
        };
        settings.check(host)?;
        Ok(settings)
    }

    /// The rules a session needs, each naming the key that breaks it.
    fn check(&self, host: &str) -> Result<(), SettingsError> {
        let duration = |key, s: &Setting<Duration>, why: String| SettingsError {
            host: host.to_owned(),
            key,
            value: format!("\"{}\"", format_duration(s.value)),
            from: s.from.clone(),
            why,
        };
        // rockd takes it in whole seconds; less would end sessions at once.
        if self.suspend_timeout.value < Duration::from_secs(1) {
            return Err(duration(
                "suspend_timeout",
                &self.suspend_timeout,
                "is too short: a session must wait at least 1s for a lost link".into(),
            ));
        }
        if self.heartbeat_interval.value < Duration::from_millis(1) {
            return Err(duration(
                "heartbeat_interval",
                &self.heartbeat_interval,
                "must be at least 1ms".into(),
            ));
        }
        if self.link_timeout.value <= self.heartbeat_interval.value {
            return Err(duration(
                "link_timeout",
                &self.link_timeout,
                format!(
                    "must be longer than heartbeat_interval = \"{}\" ({}), or every link \
                     would be declared dead between two heartbeats",
                    format_duration(self.heartbeat_interval.value),
                    self.heartbeat_interval.from
                ),
            ));
        }
        if self.replay_buffer.value == 0 {
            return Err(SettingsError {
                host: host.to_owned(),
                key: "replay_buffer",
                value: "\"0\"".into(),
                from: self.replay_buffer.from.clone(),
                why: "must be greater than zero: unacknowledged bytes must be kept somewhere"
                    .into(),
            });
        }
        // Anything the engine still refuses is a rule missing above.
        self.engine().validate().map_err(|e| SettingsError {
            host: host.to_owned(),
            key: "engine",
            value: String::new(),
            from: Source::BuiltIn,
            why: e.to_string(),
        })
    }

    /// The engine's configuration: its defaults with these settings.
    pub fn engine(&self) -> rock_proto::Config {
        rock_proto::Config {
            suspend_timeout: self.suspend_timeout.value,
            heartbeat_interval: self.heartbeat_interval.value,
            link_timeout: self.link_timeout.value,
            replay_bound: self.replay_buffer.value,
            ..rock_proto::Config::default()
        }
    }

    /// The reconnect mode in force: the one set, else direct, or through
    /// ssh when the bootstrap went through a proxy (behind a bastion
    /// rockd's own port is rarely reachable).
    pub fn reconnect_mode(&self, behind_proxy: bool) -> ReconnectMode {
        match self.reconnect.value {
            Some(mode) => mode,
            None if behind_proxy => ReconnectMode::Ssh,
            None => ReconnectMode::default(),
        }
    }

    /// The settings as `rock config check HOST` shows them: one
    /// `key = value    # source` line each, values written as the
    /// configuration file would write them.
    pub fn render(&self) -> String {
        fn quoted(s: &str) -> String {
            format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
        }
        fn line<T>(out: &mut String, key: &str, s: &Setting<T>, show: impl Fn(&T) -> String) {
            out.push_str(&format!("  {key} = {}    # {}\n", show(&s.value), s.from));
        }
        let duration = |d: &Duration| quoted(&format_duration(*d));
        let mut out = String::new();
        let o = &mut out;
        line(o, "rockd_path", &self.rockd_path, |v| match v {
            Some(p) => quoted(p),
            None => "rockd on PATH, ~/.local/bin, ~/.cargo/bin".into(),
        });
        line(o, "suspend_timeout", &self.suspend_timeout, duration);
        line(o, "heartbeat_interval", &self.heartbeat_interval, duration);
        line(o, "link_timeout", &self.link_timeout, duration);
        line(o, "close_timeout", &self.close_timeout, duration);
        line(o, "replay_buffer", &self.replay_buffer, |n| {
            quoted(&format_size(*n))
        });
        line(
            o,
            "reconnect_to_localhost",
            &self.reconnect_to_localhost,
            |b| b.to_string(),
        );
        line(o, "reconnect", &self.reconnect, |m| match m {
            Some(m) => quoted(&m.to_string()),
            None => "\"direct\" (\"ssh\" through a ProxyJump or ProxyCommand)".into(),
        });
        line(o, "rockd_listen", &self.rockd_listen, |a| match a {
            Some(a) => quoted(&a.to_string()),
            None => "all addresses".into(),
        });
        line(o, "rockd_port_range", &self.rockd_port_range, |r| match r {
            Some((first, last)) => quoted(&format!("{first}-{last}")),
            None => "any free port".into(),
        });
        line(o, "sign_of_life", &self.sign_of_life, |b| b.to_string());
        line(o, "auto_install", &self.auto_install, |a| {
            quoted(&a.to_string())
        });
        line(o, "rockd_binary", &self.rockd_binary, |b| match b {
            Some(p) => quoted(p),
            None => "rockd next to rock, else on PATH".into(),
        });
        line(o, "rock_port", &self.rock_port, |p| match p {
            0 => "0 (no rendezvous)".into(),
            p => p.to_string(),
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::settings::profiles::ConfigFile;

    fn profiles(text: &str) -> Profiles {
        Profiles::from_files(vec![ConfigFile::parse(Path::new("c.toml"), text).unwrap()])
    }

    fn refused(text: &str, cli: &CommandLine) -> SettingsError {
        Settings::resolve(&profiles(text), "h", cli).unwrap_err()
    }

    #[test]
    fn the_command_line_beats_the_profile_which_beats_the_default() {
        let p = profiles(
            "[defaults]\nsuspend_timeout = \"10m\"\nreconnect = \"auto\"\n\
             [[profile]]\nhosts = [\"h\"]\nlink_timeout = \"9s\"\n",
        );
        let cli = CommandLine {
            suspend_timeout: Some(Duration::from_secs(30)),
            install_rockd: true,
            ..CommandLine::default()
        };
        let s = Settings::resolve(&p, "h", &cli).unwrap();
        assert_eq!(s.suspend_timeout.value, Duration::from_secs(30));
        assert_eq!(
            s.suspend_timeout.from,
            Source::CommandLine("--suspend-timeout")
        );
        assert_eq!(s.link_timeout.value, Duration::from_secs(9));
        assert!(matches!(&s.link_timeout.from, Source::Profile(l) if l.contains("[[profile]] 1")));
        assert_eq!(s.heartbeat_interval.from, Source::BuiltIn);
        assert_eq!(s.auto_install.value, AutoInstall::Yes);
        assert_eq!(s.reconnect_mode(true), ReconnectMode::Auto);
        let s = Settings::resolve(&profiles(""), "h", &CommandLine::default()).unwrap();
        assert_eq!(s.reconnect_mode(false), ReconnectMode::Direct);
        assert_eq!(s.reconnect_mode(true), ReconnectMode::Ssh);
        assert_eq!(s.engine(), rock_proto::Config::default());
    }

    #[test]
    fn settings_a_session_cannot_run_with_are_refused_by_key() {
        let e = refused(
            "[defaults]\nsuspend_timeout = \"0s\"\n",
            &CommandLine::default(),
        );
        assert_eq!(e.key, "suspend_timeout");
        assert!(e.to_string().contains("c.toml [defaults]"), "{e}");
        let e = refused(
            "[defaults]\nlink_timeout = \"0s\"\nheartbeat_interval = \"10s\"\n",
            &CommandLine::default(),
        );
        assert_eq!(e.key, "link_timeout");
        assert!(
            e.to_string().contains("heartbeat_interval = \"10s\""),
            "{e}"
        );
        let e = refused(
            "[defaults]\nreplay_buffer = \"0\"\n",
            &CommandLine::default(),
        );
        assert_eq!(e.key, "replay_buffer");
        let e = refused(
            "[defaults]\nheartbeat_interval = \"0ms\"\n",
            &CommandLine::default(),
        );
        assert_eq!(e.key, "heartbeat_interval");
        let cli = CommandLine {
            suspend_timeout: Some(Duration::ZERO),
            ..CommandLine::default()
        };
        let e = refused("", &cli);
        assert_eq!(e.from, Source::CommandLine("--suspend-timeout"));
    }

    #[test]
    fn check_shows_every_value_as_the_file_would_write_it() {
        let p = profiles(
            "[defaults]\nlink_timeout = \"9s\"\nrockd_port_range = \"60000-60100\"\n\
             reconnect = \"ssh\"\n",
        );
        let shown = Settings::resolve(&p, "h", &CommandLine::default())
            .unwrap()
            .render();
        assert!(
            shown.contains("  link_timeout = \"9s\"    # c.toml [defaults]\n"),
            "{shown}"
        );
        assert!(
            shown.contains("  suspend_timeout = \"72h\"    # built-in\n"),
            "{shown}"
        );
        assert!(
            shown.contains("  replay_buffer = \"4MiB\"    # built-in\n"),
            "{shown}"
        );
        assert!(
            shown.contains("rockd_port_range = \"60000-60100\""),
            "{shown}"
        );
        assert!(shown.contains("reconnect = \"ssh\""), "{shown}");
        assert!(
            shown.contains("  close_timeout = \"10m\"    # built-in\n"),
            "{shown}"
        );
    }

    #[test]
    fn close_timeout_comes_from_the_profile_and_zero_turns_it_off() {
        let p = profiles(
            "[defaults]\nclose_timeout = \"2m\"\n[[profile]]\nhosts = [\"h\"]\nclose_timeout = 0\n",
        );
        let s = Settings::resolve(&p, "h", &CommandLine::default()).unwrap();
        assert_eq!(s.close_timeout.value, Duration::ZERO);
        let s = Settings::resolve(&p, "other", &CommandLine::default()).unwrap();
        assert_eq!(s.close_timeout.value, Duration::from_secs(120));
        assert!(matches!(&s.close_timeout.from, Source::Profile(l) if l.contains("[defaults]")));
        let s = Settings::resolve(&profiles(""), "h", &CommandLine::default()).unwrap();
        assert_eq!(s.close_timeout.value, DEFAULT_CLOSE_TIMEOUT);
        assert_eq!(s.rock_port.value, DEFAULT_ROCK_PORT);
    }
}
