//! Host profiles: `~/.config/rock/config.toml`, then `/etc/rock/config.toml`.
//!
//! A file has `[defaults]` and any number of `[[profile]]` sections, each
//! with `hosts = [...]` patterns (`*` and `?` globs, `!` to exclude, as in
//! ssh_config) matched against the destination the user typed — the alias,
//! before `ssh -G` resolves it. As in ssh, each setting takes the first value
//! found: matching profiles in file order, the user's file before the
//! system's, then the defaults (user's, then system's), then built-in
//! values. A mistake is an error naming the file, line and column; unknown
//! keys are errors, never ignored.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::modes::{AutoInstall, ReconnectMode};
use super::values::{duration, ip_address, port_range, size};

/// One `[defaults]` or `[[profile]]` section.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    /// Patterns of destinations this profile applies to (profiles only).
    pub hosts: Option<Vec<String>>,
    /// rockd's path on the remote host.
    pub rockd_path: Option<String>,
    /// How long a session waits for a lost link before giving up.
    #[serde(default, deserialize_with = "duration")]
    pub suspend_timeout: Option<Duration>,
    /// Time between heartbeats.
    #[serde(default, deserialize_with = "duration")]
    pub heartbeat_interval: Option<Duration>,
    /// Silence after which a link is declared dead.
    #[serde(default, deserialize_with = "duration")]
    pub link_timeout: Option<Duration>,
    /// How long a rock left in the background keeps trying to deliver
    /// the end of a session whose command ended while its link was down.
    #[serde(default, deserialize_with = "duration")]
    pub close_timeout: Option<Duration>,
    /// Most unacknowledged bytes kept for replay.
    #[serde(default, deserialize_with = "size")]
    pub replay_buffer: Option<usize>,
    /// Redial 127.0.0.1 instead of the host name (`-l`).
    pub reconnect_to_localhost: Option<bool>,
    /// How new links reach rockd: `direct`, `ssh` or `auto`.
    pub reconnect: Option<ReconnectMode>,
    /// The address rockd listens on (forced to 127.0.0.1 in ssh mode).
    #[serde(default, deserialize_with = "ip_address")]
    pub rockd_listen: Option<IpAddr>,
    /// The ports rockd may listen on, first and last.
    #[serde(default, deserialize_with = "port_range")]
    pub rockd_port_range: Option<(u16, u16)>,
    /// Show a suspended session in the terminal's title.
    pub sign_of_life: Option<bool>,
    /// Whether to copy rock's own rockd to a host without a usable one:
    /// `ask`, `yes` or `no`.
    pub auto_install: Option<AutoInstall>,
    /// The local rockd binary to copy (default: next to rock, else PATH).
    pub rockd_binary: Option<String>,
    /// The host's rendezvous port for `rock COMMAND` (0: none).
    pub rock_port: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileData {
    defaults: Option<Section>,
    #[serde(default)]
    profile: Vec<Section>,
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// It exists but cannot be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// It does not parse, or a value is wrong (toml says where).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What and where, with line and column.
        message: String,
    },
    /// A section is in the wrong place.
    #[error("{path}: {message}")]
    Structure {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// One parsed file.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    /// Where it came from.
    pub path: PathBuf,
    defaults: Section,
    profiles: Vec<Section>,
}

impl ConfigFile {
    /// Parses `text` as the contents of `path`.
    pub fn parse(path: &Path, text: &str) -> Result<ConfigFile, ConfigFileError> {
        let data: FileData = toml::from_str(text).map_err(|e| ConfigFileError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let defaults = data.defaults.unwrap_or_default();
        let structure = |message: String| ConfigFileError::Structure {
            path: path.to_owned(),
            message,
        };
        if defaults.hosts.is_some() {
            return Err(structure(
                "[defaults] applies to every host and takes no `hosts`; \
                 put host patterns in a [[profile]]"
                    .into(),
            ));
        }
        for (i, p) in data.profile.iter().enumerate() {
            if p.hosts.as_ref().is_none_or(Vec::is_empty) {
                return Err(structure(format!(
                    "[[profile]] number {} has no `hosts = [\"pattern\", ...]`",
                    i + 1
                )));
            }
        }
        Ok(ConfigFile {
            path: path.to_owned(),
            defaults,
            profiles: data.profile,
        })
    }

    /// Reads and parses `path`; `Ok(None)` if it does not exist.
    pub fn load(path: &Path) -> Result<Option<ConfigFile>, ConfigFileError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(ConfigFileError::Read {
                path: path.to_owned(),
                error,
            }),
        }
    }
}

/// The configuration files in force, most important first.
#[derive(Debug, Clone, Default)]
pub struct Profiles {
    files: Vec<ConfigFile>,
}

/// The user's file and the system's, in that order.
pub fn default_paths() -> Vec<PathBuf> {
    let user = dirs::config_dir().map(|d| d.join("rock").join("config.toml"));
    user.into_iter()
        .chain([PathBuf::from("/etc/rock/config.toml")])
        .collect()
}

impl Profiles {
    /// Loads the files that exist among `paths` (most important first).
    pub fn load(paths: &[PathBuf]) -> Result<Profiles, ConfigFileError> {
        let mut files = Vec::new();
        for path in paths {
            files.extend(ConfigFile::load(path)?);
        }
        Ok(Profiles { files })
    }

    /// From files already parsed (most important first).
    pub fn from_files(files: Vec<ConfigFile>) -> Profiles {
        Profiles { files }
    }

    /// The settings for `destination` (the host as the user typed it), each
    /// with the section it came from.
    pub fn for_host(&self, destination: &str) -> Effective {
        self.effective(Some(destination))
    }

    /// The settings of the `[defaults]` sections alone: those of this
    /// host itself (its own rendezvous port, say).
    pub fn defaults(&self) -> Effective {
        self.effective(None)
    }

    /// The settings for `destination`'s profiles and the defaults, or the
    /// defaults alone.
    fn effective(&self, destination: Option<&str>) -> Effective {
        let mut sources: Vec<(String, &Section)> = Vec::new();
        for file in destination.map_or(&[][..], |_| &self.files[..]) {
            for (i, p) in file.profiles.iter().enumerate() {
                let patterns = p.hosts.as_deref().unwrap_or_default();
                if destination.is_some_and(|d| host_matches(patterns, d)) {
                    let label = format!(
                        "{} [[profile]] {} {:?}",
                        file.path.display(),
                        i + 1,
                        patterns
                    );
                    sources.push((label, p));
                }
            }
        }
        for file in &self.files {
            sources.push((
                format!("{} [defaults]", file.path.display()),
                &file.defaults,
            ));
        }
        let first = |get: &dyn Fn(&Section) -> bool| {
            sources
                .iter()
                .find(|(_, s)| get(s))
                .map(|(l, s)| (l.clone(), *s))
        };
        macro_rules! pick {
            ($field:ident) => {
                first(&|s: &Section| s.$field.is_some()).map(|(label, s)| Sourced {
                    value: s.$field.clone().expect("checked is_some"),
                    from: label,
                })
            };
        }
        Effective {
            rockd_path: pick!(rockd_path),
            suspend_timeout: pick!(suspend_timeout),
            heartbeat_interval: pick!(heartbeat_interval),
            link_timeout: pick!(link_timeout),
            close_timeout: pick!(close_timeout),
            replay_buffer: pick!(replay_buffer),
            reconnect_to_localhost: pick!(reconnect_to_localhost),
            reconnect: pick!(reconnect),
            rockd_listen: pick!(rockd_listen),
            rockd_port_range: pick!(rockd_port_range),
            sign_of_life: pick!(sign_of_life),
            auto_install: pick!(auto_install),
            rockd_binary: pick!(rockd_binary),
            rock_port: pick!(rock_port),
        }
    }
}

/// A value and the section that set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sourced<T> {
    /// The value.
    pub value: T,
    /// Where it was set: file and section.
    pub from: String,
}

/// The settings for one destination; `None` means the built-in default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effective {
    /// rockd's path on the remote host.
    pub rockd_path: Option<Sourced<String>>,
    /// Suspension timeout.
    pub suspend_timeout: Option<Sourced<Duration>>,
    /// Heartbeat interval.
    pub heartbeat_interval: Option<Sourced<Duration>>,
    /// Dead-link timeout.
    pub link_timeout: Option<Sourced<Duration>>,
    /// How long the end of a session is delivered in the background.
    pub close_timeout: Option<Sourced<Duration>>,
    /// Replay-buffer bound in bytes.
    pub replay_buffer: Option<Sourced<usize>>,
    /// Redial 127.0.0.1.
    pub reconnect_to_localhost: Option<Sourced<bool>>,
    /// The reconnect mode.
    pub reconnect: Option<Sourced<ReconnectMode>>,
    /// rockd's listen address.
    pub rockd_listen: Option<Sourced<IpAddr>>,
    /// rockd's port range, first and last.
    pub rockd_port_range: Option<Sourced<(u16, u16)>>,
    /// Show a suspended session in the terminal's title.
    pub sign_of_life: Option<Sourced<bool>>,
    /// Whether to copy rock's own rockd.
    pub auto_install: Option<Sourced<AutoInstall>>,
    /// The local rockd to copy.
    pub rockd_binary: Option<Sourced<String>>,
    /// The rendezvous port of `rock COMMAND`.
    pub rock_port: Option<Sourced<u16>>,
}

/// Whether `host` matches the patterns: some positive pattern matches and
/// no `!` pattern does, as in ssh_config's `Host`.
pub fn host_matches(patterns: &[String], host: &str) -> bool {
    let mut matched = false;
    for p in patterns {
        if let Some(negated) = p.strip_prefix('!') {
            if glob(negated.as_bytes(), host.as_bytes()) {
                return false;
            }
        } else if glob(p.as_bytes(), host.as_bytes()) {
            matched = true;
        }
    }
    matched
}

/// `*` and `?` glob match, case-insensitive like host names.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.split_first(), text.split_first()) {
        (None, None) => true,
        (Some((b'*', rest)), _) => {
            glob(rest, text) || (!text.is_empty() && glob(pattern, &text[1..]))
        }
        (Some((b'?', rest)), Some((_, tail))) => glob(rest, tail),
        (Some((p, rest)), Some((t, tail))) if p.eq_ignore_ascii_case(t) => glob(rest, tail),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> ConfigFile {
        ConfigFile::parse(Path::new(name), text).unwrap()
    }

    #[test]
    fn the_first_matching_value_wins_user_before_system() {
        let user = file(
            "user.toml",
            r#"
            [defaults]
            link_timeout = "8s"

            [[profile]]
            hosts = ["work", "*.corp.example", "!secret.corp.example"]
            rockd_path = "/opt/rock/rockd"
            suspend_timeout = "10m"

            [[profile]]
            hosts = ["*"]
            rockd_path = "never used for work"
            heartbeat_interval = "500ms"
            "#,
        );
        let system = file(
            "system.toml",
            r#"
            [defaults]
            link_timeout = "20s"
            replay_buffer = "8MiB"
            reconnect_to_localhost = true
            "#,
        );
        let config = Profiles::from_files(vec![user, system]);
        let work = config.for_host("work");
        assert_eq!(work.rockd_path.as_ref().unwrap().value, "/opt/rock/rockd");
        assert!(
            work.rockd_path
                .unwrap()
                .from
                .contains("user.toml [[profile]] 1")
        );
        assert_eq!(
            work.suspend_timeout.unwrap().value,
            Duration::from_secs(600)
        );
        assert_eq!(
            work.heartbeat_interval.unwrap().value,
            Duration::from_millis(500)
        );
        assert_eq!(work.link_timeout.unwrap().value, Duration::from_secs(8));
        assert_eq!(work.replay_buffer.unwrap().value, 8 << 20);
        assert_eq!(
            work.reconnect_to_localhost.unwrap().from,
            "system.toml [defaults]"
        );

        let secret = config.for_host("secret.corp.example");
        assert_eq!(secret.rockd_path.unwrap().value, "never used for work");
        let db = config.for_host("DB.corp.example");
        assert_eq!(db.rockd_path.unwrap().value, "/opt/rock/rockd");
    }

    #[test]
    fn mistakes_name_the_file_line_and_column() {
        let err = ConfigFile::parse(
            Path::new("/home/u/.config/rock/config.toml"),
            "[defaults]\nlink_timout = \"8s\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("/home/u/.config/rock/config.toml"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("link_timout"), "{err}");

        let err = ConfigFile::parse(
            Path::new("c.toml"),
            "[defaults]\nlink_timeout = \"8 fortnights\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("line 2") && err.contains("fortnights"),
            "{err}"
        );

        let err = ConfigFile::parse(Path::new("c.toml"), "[[profile]]\nrockd_path = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no `hosts"), "{err}");
        let err = ConfigFile::parse(Path::new("c.toml"), "[defaults]\nhosts = [\"a\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("takes no `hosts`"), "{err}");
    }

    #[test]
    fn the_shipped_example_parses() {
        let example = include_str!("../../config/config.toml");
        let config = Profiles::from_files(vec![file("config/config.toml", example)]);
        let work = config.for_host("db.corp.example");
        assert_eq!(work.link_timeout.unwrap().value, Duration::from_secs(15));
        let bastion = config.for_host("bastion.corp.example");
        assert_eq!(bastion.link_timeout.unwrap().value, Duration::from_secs(6));
        assert_eq!(bastion.reconnect.unwrap().value, ReconnectMode::Direct);
        let cloud = config.for_host("cloud-db");
        assert_eq!(cloud.reconnect.unwrap().value, ReconnectMode::Ssh);
        let lab = config.for_host("lab-7");
        assert_eq!(lab.reconnect.unwrap().value, ReconnectMode::Auto);
        assert_eq!(lab.rockd_port_range.unwrap().value, (60000, 60100));
        assert!(lab.rockd_listen.unwrap().value.is_unspecified());
    }

    #[test]
    fn the_shipped_example_sets_the_install_keys() {
        let example = include_str!("../../config/config.toml");
        let config = Profiles::from_files(vec![file("config/config.toml", example)]);
        let other = config.for_host("anything");
        assert_eq!(other.auto_install.unwrap().value, AutoInstall::Ask);
        assert!(other.rockd_binary.is_none());
        let lab = config.for_host("lab-7");
        assert_eq!(lab.auto_install.unwrap().value, AutoInstall::Yes);
        let bastion = config.for_host("bastion.corp.example");
        assert_eq!(bastion.auto_install.unwrap().value, AutoInstall::No);
        let cloud = config.for_host("cloud-db");
        assert_eq!(
            cloud.rockd_binary.unwrap().value,
            "~/build/rocks/target/release/rockd"
        );
    }

    #[test]
    fn rock_port_per_host_and_the_hosts_own_from_the_defaults() {
        let config = Profiles::from_files(vec![file(
            "c.toml",
            "[defaults]\nrock_port = 4800\n\n[[profile]]\nhosts = [\"10.*\"]\n\
             rock_port = 4900\n\n[[profile]]\nhosts = [\"*\"]\nrock_port = 5000\n",
        )]);
        assert_eq!(config.for_host("10.1.2.3").rock_port.unwrap().value, 4900);
        assert_eq!(config.for_host("192.0.2.1").rock_port.unwrap().value, 5000);
        // The host's own: the defaults, whatever the profiles match.
        assert_eq!(config.defaults().rock_port.unwrap().value, 4800);
        let bad = ConfigFile::parse(Path::new("c.toml"), "[defaults]\nrock_port = 70000\n");
        assert!(bad.is_err(), "a port is at most 65535");
        let none = Profiles::from_files(Vec::new());
        assert!(none.defaults().rock_port.is_none());
    }

    #[test]
    fn auto_install_values_are_checked() {
        let config = Profiles::from_files(vec![file(
            "c.toml",
            "[defaults]\nauto_install = \"no\"\n\n[[profile]]\nhosts = [\"x\"]\n\
             auto_install = \"yes\"\nrockd_binary = \"/opt/rockd\"\n",
        )]);
        assert_eq!(
            config.for_host("x").auto_install.unwrap().value,
            AutoInstall::Yes
        );
        assert_eq!(
            config.for_host("y").auto_install.unwrap().value,
            AutoInstall::No
        );
        assert_eq!(
            config.for_host("x").rockd_binary.unwrap().value,
            "/opt/rockd"
        );
        let err = ConfigFile::parse(Path::new("c.toml"), "[defaults]\nauto_install = true\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("auto_install"),
            "{err}"
        );
        let err = ConfigFile::parse(
            Path::new("c.toml"),
            "[defaults]\nauto_install = \"maybe\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("line 2") && err.contains("`maybe`") && err.contains("`ask`, `yes`, `no`"),
            "{err}"
        );
    }

    #[test]
    fn reconnect_mode_and_rockd_listening() {
        let config = Profiles::from_files(vec![file(
            "c.toml",
            r#"
            [defaults]
            reconnect = "auto"
            rockd_listen = "::"
            rockd_port_range = "61000-61009"

            [[profile]]
            hosts = ["fw"]
            reconnect = "ssh"
            "#,
        )]);
        let fw = config.for_host("fw");
        assert_eq!(fw.reconnect.unwrap().value, ReconnectMode::Ssh);
        assert_eq!(fw.rockd_port_range.unwrap().value, (61000, 61009));
        let other = config.for_host("other");
        assert_eq!(other.reconnect.unwrap().value, ReconnectMode::Auto);
        assert_eq!(
            other.rockd_listen.unwrap().value,
            "::".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn bad_reconnect_and_rockd_values_name_their_place() {
        for (text, line, words) in [
            (
                "[defaults]\nreconnect = \"tunnel\"\n",
                "line 2",
                &["`tunnel`", "`direct`, `ssh`, `auto`"][..],
            ),
            (
                "[defaults]\n\n[[profile]]\nhosts = [\"x\"]\nreconnect = \"SSH\"\n",
                "line 5",
                &["`SSH`"][..],
            ),
            (
                "[defaults]\nrockd_listen = \"everywhere\"\n",
                "line 2",
                &["\"everywhere\"", "IP address"][..],
            ),
            (
                "[defaults]\nrockd_port_range = \"60100-60000\"\n",
                "line 2",
                &["60100-60000"][..],
            ),
            (
                "[defaults]\nrockd_port_range = \"0-10\"\n",
                "line 2",
                &["0-10"][..],
            ),
            (
                "[defaults]\nrockd_port_range = 60000\n",
                "line 2",
                &["rockd_port_range"][..],
            ),
        ] {
            let err = ConfigFile::parse(Path::new("c.toml"), text)
                .unwrap_err()
                .to_string();
            assert!(err.contains("c.toml") && err.contains(line), "{err}");
            assert!(err.contains("column"), "{err}");
            for w in words {
                assert!(err.contains(w), "{w} not in {err}");
            }
        }
    }

    #[test]
    fn sign_of_life_is_a_boolean_per_host() {
        let config = Profiles::from_files(vec![file(
            "c.toml",
            "[defaults]\nsign_of_life = true\n[[profile]]\nhosts = [\"quiet\"]\nsign_of_life = false\n",
        )]);
        assert!(!config.for_host("quiet").sign_of_life.unwrap().value);
        assert!(config.for_host("other").sign_of_life.unwrap().value);
        let err = ConfigFile::parse(Path::new("c.toml"), "[defaults]\nsign_of_life = \"no\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("sign_of_life") && err.contains("boolean"),
            "{err}"
        );
    }

    /// The names serde lists as expected when it meets an unknown key in
    /// `text`: every key the file format has, straight from the types.
    fn known_keys(text: &str) -> Vec<String> {
        let err = toml::from_str::<FileData>(text).unwrap_err().to_string();
        let list = err
            .split(", expected ")
            .nth(1)
            .unwrap_or_else(|| panic!("no list of keys in: {err}"));
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(String::from)
            .collect()
    }

    #[test]
    fn every_key_is_documented_in_the_man_page() {
        let man = include_str!("../../man/rock.toml.5");
        // A key is documented by a `.TP` entry tagged `.B key` or `.BI key …`.
        let tagged = |name: &str| {
            man.lines().any(|l| {
                (l.starts_with(".B ") || l.starts_with(".BI "))
                    && l.split_whitespace().nth(1).map(|w| w.trim_matches('"')) == Some(name)
            })
        };
        let keys = known_keys("[defaults]\nno_such_key = 1\n");
        assert!(keys.contains(&"sign_of_life".to_owned()), "{keys:?}");
        for key in &keys {
            assert!(tagged(key), "man/rock.toml.5 does not document `{key}`");
        }
        let tables = known_keys("no_such_table = 1\n");
        assert_eq!(tables, ["defaults", "profile"]);
        assert!(tagged("[defaults]") && tagged("[[profile]]"));
    }

    #[test]
    fn host_patterns_glob_and_exclude() {
        assert!(host_matches(&["web?".into()], "web1"));
        assert!(!host_matches(&["web?".into()], "web10"));
        assert!(!host_matches(&["!*".into()], "x"));
        assert!(host_matches(&["*".into()], ""));
    }
}
