//! The one remote command: [`RockdCommand`]'s candidates and arguments,
//! quoted for `sh`, and the launch script that tries the candidates in
//! order and, when none exists, answers a `rockd-error` line naming every
//! candidate it tried.

/// How the launch script reports that no candidate exists.
const NOT_FOUND_PREFIX: &str = "rockd not found (tried: ";

/// Which rockd to run on the remote host, and with what arguments.
///
/// A candidate without `/` is a command looked up on the remote `PATH`; one
/// starting with `~/` is relative to the remote home; anything else is a
/// path (relative ones are relative to the remote home, where the command
/// starts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RockdCommand {
    /// Candidates, tried in order.
    pub candidates: Vec<String>,
    /// Extra arguments passed to rockd.
    pub args: Vec<String>,
}

impl RockdCommand {
    /// The usual candidates: the configured path (if any), `rockd` on
    /// `PATH`, `~/.local/bin/rockd`, `~/.cargo/bin/rockd`.
    pub fn with_defaults(configured: Option<&str>, args: Vec<String>) -> RockdCommand {
        RockdCommand::with_installed(configured, None, args)
    }

    /// The usual candidates with `installed` — where rock installs its own
    /// rockd (`~/.local/lib/rock/rockd-<version>-<hash>`) — right after the
    /// configured path and before the other places, so that a session
    /// finds what an earlier one installed without copying it again.
    pub fn with_installed(
        configured: Option<&str>,
        installed: Option<&str>,
        args: Vec<String>,
    ) -> RockdCommand {
        let mut candidates: Vec<String> = configured
            .into_iter()
            .chain(installed)
            .map(str::to_owned)
            .collect();
        for default in ["rockd", "~/.local/bin/rockd", "~/.cargo/bin/rockd"] {
            if !candidates.iter().any(|c| c == default) {
                candidates.push(default.to_owned());
            }
        }
        RockdCommand { candidates, args }
    }
}

/// The sh script that finds rockd. `$1` is the number of candidates, then
/// come the candidates, then rockd's arguments. One line and no single
/// quotes, so it survives being single-quoted for any login shell.
const LAUNCH_SCRIPT: &str = concat!(
    "n=$1; shift; found=; tried=; ",
    "while [ \"$n\" -gt 0 ]; do ",
    "c=$1; shift; n=$((n-1)); ",
    "case $c in \"~/\"*) c=$HOME/${c#\"~/\"};; esac; ",
    "case $c in */*) t=$c;; *) t=\"$c (on PATH)\";; esac; ",
    "tried=${tried:+$tried, }$t; ",
    "if [ -z \"$found\" ]; then case $c in ",
    "*/*) if [ -f \"$c\" ] && [ -x \"$c\" ]; then found=$c; fi;; ",
    "*) if command -v \"$c\" >/dev/null 2>&1; then found=$c; fi;; ",
    "esac; fi; ",
    "done; ",
    "if [ -n \"$found\" ]; then exec \"$found\" \"$@\"; fi; ",
    "printf \"%s\\n\" \"rockd-error rockd not found (tried: $tried)\"; ",
    "exit 127"
);

/// The one remote command: the launch script run by `sh`, whatever the
/// login shell, with candidates and arguments quoted for it.
pub fn remote_command(rockd: &RockdCommand) -> String {
    let mut command = format!(
        "exec sh -c {} rockd {}",
        sh_quote(LAUNCH_SCRIPT),
        rockd.candidates.len()
    );
    for word in rockd.candidates.iter().chain(&rockd.args) {
        command.push(' ');
        command.push_str(&sh_quote(word));
    }
    command
}

/// Quotes `word` for a POSIX shell.
pub(super) fn sh_quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The candidates listed in the launch script's "not found" message.
pub(super) fn not_found_list(message: &str) -> Option<Vec<String>> {
    let list = message.strip_prefix(NOT_FOUND_PREFIX)?.strip_suffix(')')?;
    Some(list.split(", ").map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn quoting_is_safe_for_sh() {
        assert_eq!(sh_quote("rockd"), "rockd");
        assert_eq!(sh_quote("~/.local/bin/rockd"), "'~/.local/bin/rockd'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("$(reboot)"), "'$(reboot)'");
        assert!(!LAUNCH_SCRIPT.contains('\''));
        assert!(!LAUNCH_SCRIPT.contains('\n'));
    }

    #[test]
    fn default_candidates_keep_order_without_duplicates() {
        let cmd = RockdCommand::with_defaults(Some("/opt/rockd"), vec![]);
        assert_eq!(
            cmd.candidates,
            [
                "/opt/rockd",
                "rockd",
                "~/.local/bin/rockd",
                "~/.cargo/bin/rockd"
            ]
        );
        let cmd = RockdCommand::with_defaults(Some("rockd"), vec![]);
        assert_eq!(cmd.candidates.len(), 3);
        let installed = "~/.local/lib/rock/rockd-0.1.0-0123456789abcdef";
        let cmd = RockdCommand::with_installed(Some("/opt/rockd"), Some(installed), vec![]);
        assert_eq!(cmd.candidates[..3], ["/opt/rockd", installed, "rockd"]);
        let cmd = RockdCommand::with_installed(None, Some(installed), vec![]);
        assert_eq!(cmd.candidates[..2], [installed, "rockd"]);
    }

    fn run_sh(command: &str, home: &Path) -> std::process::Output {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .env("HOME", home)
            .env("PATH", "/usr/bin:/bin")
            .output()
            .expect("sh runs")
    }

    #[test]
    fn launch_script_reports_every_candidate_when_none_exists() {
        let home = tempfile::tempdir().expect("tempdir");
        let cmd = RockdCommand::with_defaults(Some("/nonexistent/rockd"), vec![]);
        let out = run_sh(&remote_command(&cmd), home.path());
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .trim_end()
            .strip_prefix("rockd-error ")
            .expect(&stdout);
        let home = home.path().display();
        assert_eq!(
            not_found_list(line).expect(line),
            [
                "/nonexistent/rockd".to_owned(),
                "rockd (on PATH)".to_owned(),
                format!("{home}/.local/bin/rockd"),
                format!("{home}/.cargo/bin/rockd"),
            ]
        );
        assert_eq!(out.status.code(), Some(127));
    }

    #[test]
    fn launch_script_runs_the_first_existing_candidate_with_the_arguments() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().expect("tempdir");
        let bin = home.path().join(".cargo/bin");
        std::fs::create_dir_all(&bin).expect("mkdir");
        let stub = bin.join("rockd");
        std::fs::write(&stub, "#!/bin/sh\nfor a; do echo \"arg:$a\"; done\n").expect("write");
        std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let args = vec!["--port".to_owned(), "it's a $(test)".to_owned()];
        let cmd = RockdCommand::with_defaults(None, args);
        let out = run_sh(&remote_command(&cmd), home.path());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "arg:--port\narg:it's a $(test)\n"
        );
    }
}
