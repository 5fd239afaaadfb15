//! Settings: what the user wrote in the configuration files and typed on
//! rock's command line, resolved once into the [`Settings`] a session runs
//! with.
//!
//! * [`profiles`] — the configuration files: `[defaults]` and host
//!   `[[profile]]`s, each value with the section it came from.
//! * [`values`] — durations, sizes and port ranges as text.
//! * [`modes`] — the settings that are a choice among names.
//! * [`resolve`] — command line ⊕ profiles ⊕ defaults → [`Settings`],
//!   checked once, for `rock -d` and `rock config check` alike.

pub mod modes;
pub mod profiles;
pub mod resolve;
pub mod values;

pub use modes::{AutoInstall, ReconnectMode};
pub use profiles::{ConfigFile, ConfigFileError, Profiles, default_paths};
pub use resolve::{CommandLine, Setting, Settings, SettingsError, Source};

use std::path::PathBuf;

/// Why `rock config check` found the configuration unusable.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// A file cannot be read or parsed.
    #[error(transparent)]
    File(#[from] ConfigFileError),
    /// The settings for the host are refused.
    #[error(transparent)]
    Settings(#[from] SettingsError),
}

/// `rock config check [HOST]`: loads the files at `paths` (most important
/// first) and reports each one's state; with a host, resolves and shows
/// the settings a session to it would run with, exactly as `rock -d`
/// resolves them (without any of rock's command-line options).
pub fn check(paths: &[PathBuf], host: Option<&str>) -> Result<String, CheckError> {
    let profiles = Profiles::load(paths)?;
    let mut out = String::new();
    for path in paths {
        let state = if path.exists() { "ok" } else { "absent" };
        out.push_str(&format!("{}: {state}\n", path.display()));
    }
    if let Some(host) = host {
        let settings = Settings::resolve(&profiles, host, &CommandLine::default())?;
        out.push_str(&format!("settings for {host}:\n"));
        out.push_str(&settings.render());
    }
    Ok(out)
}
