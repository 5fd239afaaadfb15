//! Installing rock's own rockd on a remote host that has none, or only an
//! incompatible one: the policy ([`AutoInstall`]) and the steps, each over
//! its own exec channel of the bootstrap connection (no new login):
//!
//! 1. probe the remote: `uname -sm`, its C library, a SHA-256 tool
//!    (`sha256sum`, `shasum -a 256` or `openssl dgst -sha256`), and the
//!    SHA-256 of an earlier install under the same name;
//! 2. ask, if the policy says so (only now: a remote that cannot run the
//!    binary is reported, not offered it);
//! 3. copy the binary through stdin into a temporary file in
//!    `~/.local/lib/rock/` (mode 0700), verify its SHA-256 there, make it
//!    executable and rename it to `rockd-<version>-<16 hex of sha256>`;
//! 4. start it as rockd, with the same request.
//!
//! Invariants:
//! * Nothing is copied to a remote whose OS or architecture differs from
//!   this machine's, nor to one without a SHA-256 tool: an unverified
//!   binary is never run.
//! * A file reaches its final name only after its hash matched there; a
//!   failed or interrupted copy removes its temporary file (whose name
//!   starts with a dot and never matches a candidate).
//! * "ask" never asks under BatchMode or without a terminal: that counts
//!   as "no", and the error says why and what to do.

use std::sync::Arc;
use std::time::Duration;

use russh::client::Handle;

use super::answer::interpret;
use super::exec::run_rockd;
use super::handshake::BootHandler;
use super::local_rockd::{INSTALL_DIR, LocalRockd, LocalRockdError, Source};
use super::platform::{GLIBC_FLOOR, Libc, Platform};
use super::script::{ScriptOutput, run_script, script_command};
use super::{BootstrapError, RockdCommand};
use crate::boot::{BootReady, BootRequest};
use crate::settings::AutoInstall;
use crate::ssh::prompt::{PromptError, Prompter};
use crate::ssh::target::BootstrapTarget;

/// How long the probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the copy may take (tens of MiB over a slow link).
const COPY_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The SHA-256 tools the scripts know, in the order they are looked for.
const SUM_TOOLS: [&str; 3] = ["sha256sum", "shasum", "openssl"];

/// `sum`: SHA-256 of stdin with the tool named in `$s`. Shared by both
/// scripts (a macro, for `concat!`).
macro_rules! sum_function {
    () => {
        concat!(
            "sum() { case $s in ",
            "sha256sum) sha256sum;; shasum) shasum -a 256;; openssl) openssl dgst -sha256;; ",
            "*) return 1;; esac; }; "
        )
    };
}

/// The probe. `$1` is the installed file name. Prints `rock-probe KEY
/// VALUE` lines and ends with `rock-probe end`.
const PROBE_SCRIPT: &str = concat!(
    sum_function!(),
    "d=$HOME/.local/lib/rock; f=$d/$1; ",
    "echo \"rock-probe os $(uname -sm 2>/dev/null)\"; ",
    "if v=$(getconf GNU_LIBC_VERSION 2>/dev/null); then echo \"rock-probe libc $v\"; ",
    "elif ls /lib/ld-musl-* >/dev/null 2>&1; then echo \"rock-probe libc musl\"; fi; ",
    "s=; for t in sha256sum shasum openssl; do ",
    "if [ -z \"$s\" ] && command -v \"$t\" >/dev/null 2>&1; then s=$t; fi; done; ",
    "echo \"rock-probe sum ${s:-none}\"; ",
    "if [ -n \"$s\" ] && [ -f \"$f\" ] && [ -x \"$f\" ]; then ",
    "echo \"rock-probe installed $(sum < \"$f\")\"; fi; ",
    "echo \"rock-probe end\""
);

/// The copy. `$1` is the SHA-256 tool, `$2` the file name, `$3` the
/// expected SHA-256; the binary comes on stdin. Prints `rock-install ok
/// SUM` or `rock-install mismatch SUM`. Temporary files a killed copy left
/// behind are removed after a day.
const INSTALL_SCRIPT: &str = concat!(
    sum_function!(),
    "s=$1; n=$2; want=$3; ",
    "mkdir -p \"$HOME/.local/lib\" || exit 1; ",
    "umask 077; d=$HOME/.local/lib/rock; ",
    "mkdir -p \"$d\" && chmod 700 \"$d\" || exit 1; ",
    "find \"$d\" -name \".tmp-*\" -mtime +0 -exec rm -f {} + 2>/dev/null; ",
    "t=$d/.tmp-$n-$$; ",
    "cleanup() { rm -f \"$t\"; }; ",
    "trap cleanup EXIT; trap \"exit 1\" HUP INT TERM PIPE; ",
    "rm -f \"$t\"; cat > \"$t\" || exit 1; ",
    "h=$(sum < \"$t\") || exit 1; ",
    "case $h in *\"$want\"*) ;; *) echo \"rock-install mismatch $h\"; exit 1;; esac; ",
    "chmod 755 \"$t\" && mv -f \"$t\" \"$d/$n\" || exit 1; ",
    "echo \"rock-install ok $h\""
);

/// What to do when the remote has no usable rockd.
#[derive(Debug, Clone)]
pub struct InstallPlan {
    /// Whether to copy ours.
    pub policy: AutoInstall,
    /// Ours, or why there is none.
    pub local: Result<LocalRockd, LocalRockdError>,
}

impl InstallPlan {
    /// Where an earlier session would have installed ours, for the
    /// candidates.
    pub fn installed_path(&self) -> Option<String> {
        self.local.as_ref().ok().map(LocalRockd::installed_path)
    }
}

/// Whether installing ours could cure this failure.
pub(super) fn curable(error: &BootstrapError) -> bool {
    matches!(
        error,
        BootstrapError::RockdNotFound { .. } | BootstrapError::RockdIncompatible { .. }
    )
}

/// What to do instead of asking.
const ADVICE: &str = "run rock with --install-rockd, or set auto_install = \"yes\" \
                      in the host's profile, to copy it without asking";

/// A failed step: what happened and the remote's stderr, if any.
struct Problem {
    detail: String,
    stderr: String,
}

impl From<String> for Problem {
    fn from(detail: String) -> Problem {
        Problem {
            detail,
            stderr: String::new(),
        }
    }
}

/// Everything the steps need from the bootstrap.
pub(super) struct Remote<'a> {
    /// The authenticated connection.
    pub(super) handle: &'a Handle<BootHandler>,
    /// The host.
    pub(super) target: &'a BootstrapTarget,
    /// The rockd command tried, for its arguments.
    pub(super) rockd: &'a RockdCommand,
    /// The request for rockd.
    pub(super) request: &'a BootRequest,
    /// Who to ask.
    pub(super) prompter: &'a Arc<dyn Prompter>,
}

/// Installs ours (if the plan allows and the remote can run it) after
/// `cause` (rockd missing or incompatible), and starts it.
pub(super) async fn install_and_start(
    remote: &Remote<'_>,
    plan: &InstallPlan,
    cause: BootstrapError,
) -> Result<BootReady, BootstrapError> {
    let host = remote.target.hostname.as_str();
    let declined = |cause, advice: String| BootstrapError::InstallDeclined {
        cause: Box::new(cause),
        advice,
    };
    let failed = |cause, problem: Problem| BootstrapError::InstallFailed {
        cause: Box::new(cause),
        detail: problem.detail,
        stderr: problem.stderr,
    };
    match plan.policy {
        AutoInstall::No => {
            return Err(declined(
                cause,
                "auto_install is \"no\" for this host; run rock with --install-rockd \
                 to copy this rock's rockd there"
                    .to_owned(),
            ));
        }
        AutoInstall::Ask if remote.target.batch_mode => {
            return Err(declined(
                cause,
                format!(
                    "rock did not offer to copy its own rockd there: BatchMode is on, \
                     so it asks nothing; {ADVICE}"
                ),
            ));
        }
        AutoInstall::Ask | AutoInstall::Yes => {}
    }
    let local = match &plan.local {
        Ok(local) => local,
        Err(e) => return Err(failed(cause, e.to_string().into())),
    };
    let probe = match probe(remote.handle, host, local).await {
        Ok(probe) => probe,
        Err(problem) => return Err(failed(cause, problem)),
    };
    if let Some(problem) = probe.unsuitable(host, local) {
        return Err(failed(cause, problem.into()));
    }
    let installed = local.installed_path();
    if probe.installed.as_deref() == Some(local.sha256.as_str()) {
        tracing::info!("{installed} on {host} is already there with the right sha256; not copying");
    } else {
        if plan.policy == AutoInstall::Ask {
            let question = question(&cause, host, local, &probe);
            if let Err(why) = ask(remote.prompter, question).await {
                return Err(declined(cause, why));
            }
        }
        let tool = probe.sum_tool.unwrap_or_default();
        if let Err(problem) = copy(remote.handle, host, local, tool).await {
            return Err(failed(cause, problem));
        }
        remote.prompter.show(&format!(
            "rock: copied rockd {} ({}) to {host}:{installed} and verified its sha256",
            local.version,
            local.size_text()
        ));
    }
    let ours = RockdCommand {
        candidates: vec![installed.clone()],
        args: remote.rockd.args.clone(),
    };
    let started = match run_rockd(remote.handle, &ours, remote.request, host).await {
        Ok(output) => interpret(output, host),
        Err(e) => Err(e),
    };
    started.map_err(|e| {
        failed(
            e,
            format!(
                "rock installed its own rockd at {installed} on {host}, but it did not start \
                 (on Linux it needs glibc >= {GLIBC_FLOOR})"
            )
            .into(),
        )
    })
}

/// What the probe found.
#[derive(Debug)]
struct Probe {
    /// `uname -sm` as printed.
    uname: String,
    libc: Libc,
    /// The first SHA-256 tool found.
    sum_tool: Option<&'static str>,
    /// The SHA-256 of the file already at the installed name, if any.
    installed: Option<String>,
}

impl Probe {
    /// Reads the probe's output.
    fn parse(out: &ScriptOutput) -> Result<Probe, Problem> {
        if out.values("rock-probe").all(|v| v != "end") {
            return Err(Problem {
                detail: format!(
                    "probing the remote system did not finish ({})",
                    out.how_it_ended()
                ),
                stderr: out.stderr_text(),
            });
        }
        let value = |key: &str| {
            out.values("rock-probe")
                .find_map(|v| v.strip_prefix(key)?.strip_prefix(' '))
        };
        let tool = value("sum").unwrap_or_default().trim();
        Ok(Probe {
            uname: value("os").unwrap_or_default().trim().to_owned(),
            libc: Libc::parse(value("libc")),
            sum_tool: SUM_TOOLS.into_iter().find(|t| *t == tool),
            installed: value("installed").and_then(find_sha256),
        })
    }

    /// Why ours cannot be installed there, if it cannot.
    fn unsuitable(&self, host: &str, local: &LocalRockd) -> Option<String> {
        let here = Platform::local();
        let path = local.path.display();
        let Some(there) = Platform::from_uname(&self.uname) else {
            return Some(format!(
                "cannot tell what system {host} is (`uname -sm` printed {:?}); \
                 install rockd there yourself, or set rockd_path to one",
                self.uname
            ));
        };
        if there != here {
            return Some(format!(
                "{host} is {there}, and this rock's rockd ({path}) is built for {here}; \
                 install a rockd built for {there} there, or set rockd_path to one"
            ));
        }
        // Only the rockd built with this rock is known to need glibc.
        let ours_needs_glibc = local.source == Source::BesideRock
            && cfg!(all(target_os = "linux", target_env = "gnu"));
        if let Some(why) = self.libc.refuses_glibc_rockd().filter(|_| ours_needs_glibc) {
            return Some(format!(
                "{host} cannot run this rock's rockd ({path}): {why}; \
                 install a rockd built for it there, or set rockd_path to one"
            ));
        }
        if self.sum_tool.is_none() {
            return Some(format!(
                "{host} has none of sha256sum, shasum or openssl to verify the copy with, \
                 and rock never runs an unverified rockd; install one of them there, \
                 or install rockd there yourself"
            ));
        }
        None
    }
}

/// Runs the probe.
async fn probe(
    handle: &Handle<BootHandler>,
    host: &str,
    local: &LocalRockd,
) -> Result<Probe, Problem> {
    let name = local.installed_name();
    let command = script_command(PROBE_SCRIPT, "rock-probe", &[&name]);
    let out = run_script(
        handle,
        command,
        None,
        PROBE_TIMEOUT,
        host,
        "probing the remote system",
    )
    .await
    .map_err(|e| Problem::from(e.to_string()))?;
    Probe::parse(&out)
}

/// The question asked under "ask".
fn question(cause: &BootstrapError, host: &str, local: &LocalRockd, probe: &Probe) -> String {
    let what = match cause {
        BootstrapError::RockdIncompatible { detail, .. } => {
            format!("the rockd on {host} is incompatible with this rock ({detail})")
        }
        _ => format!("rockd was not found on {host}"),
    };
    let there = Platform::from_uname(&probe.uname).map_or_else(String::new, |p| format!(", {p}"));
    format!(
        "{what}; copy {} ({}{there}) to {INSTALL_DIR}/ there? [y/N] ",
        local.path.display(),
        local.size_text()
    )
}

/// Asks on the terminal; `Err` says why not to copy.
async fn ask(prompter: &Arc<dyn Prompter>, question: String) -> Result<(), String> {
    let prompter = Arc::clone(prompter);
    let answer = tokio::task::spawn_blocking(move || prompter.answer(&question))
        .await
        .map_err(|e| format!("rock could not ask whether to copy its own rockd there ({e})"))?;
    match answer {
        Ok(text) if matches!(text.trim().to_lowercase().as_str(), "y" | "yes") => Ok(()),
        Ok(_) => Err(format!(
            "rockd was not copied there (you answered no); {ADVICE}"
        )),
        Err(PromptError::NoTty { source, .. }) => Err(format!(
            "rock did not copy its own rockd there: there is no terminal to ask on ({source}); \
             {ADVICE}"
        )),
        Err(e) => Err(format!(
            "rock did not copy its own rockd there: {e}; {ADVICE}"
        )),
    }
}

/// Copies `local` to the install directory, verified.
async fn copy(
    handle: &Handle<BootHandler>,
    host: &str,
    local: &LocalRockd,
    tool: &str,
) -> Result<(), Problem> {
    let reading = local.clone();
    let bytes = tokio::task::spawn_blocking(move || reading.read_checked())
        .await
        .map_err(|e| format!("reading {}: {e}", local.path.display()))?
        .map_err(|e| e.to_string())?;
    let name = local.installed_name();
    let command = script_command(
        INSTALL_SCRIPT,
        "rock-install",
        &[tool, &name, &local.sha256],
    );
    let out = run_script(
        handle,
        command,
        Some(&bytes),
        COPY_TIMEOUT,
        host,
        "copying rockd",
    )
    .await
    .map_err(|e| Problem::from(e.to_string()))?;
    let mut answers = out.values("rock-install");
    let verdict = answers.next();
    let sum = verdict
        .and_then(|v| v.split_once(' '))
        .and_then(|(_, sum)| find_sha256(sum));
    let shown = sum.as_deref().unwrap_or("unreadable");
    match verdict.map(|v| v.split(' ').next().unwrap_or_default()) {
        Some("ok") if sum.as_deref() == Some(local.sha256.as_str()) => Ok(()),
        Some("ok") | Some("mismatch") => Err(Problem {
            detail: format!(
                "the copy of {} on {host} has sha256 {shown}, not {}: it was damaged on the \
                 way; rock removed it and ran nothing. Try again; if it happens again, check \
                 the connection and the remote disk",
                local.path.display(),
                local.sha256
            ),
            stderr: out.stderr_text(),
        }),
        _ => Err(Problem {
            detail: format!(
                "copying {} to {INSTALL_DIR}/ on {host} failed ({}); nothing was installed",
                local.path.display(),
                out.how_it_ended()
            ),
            stderr: out.stderr_text(),
        }),
    }
}

/// The first run of 64 hex digits in `text`, lowercased: what any of the
/// SHA-256 tools prints, whatever its format.
fn find_sha256(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_hexdigit())
        .find(|word| word.len() == 64)
        .map(str::to_lowercase)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::process::{Command, Stdio};

    use super::*;
    use crate::ssh::bootstrap::local_rockd::sha256_hex;

    #[test]
    fn scripts_survive_single_quoting_and_use_the_install_dir() {
        let dir = INSTALL_DIR.replacen('~', "$HOME", 1);
        for script in [PROBE_SCRIPT, INSTALL_SCRIPT] {
            assert!(!script.contains('\'') && !script.contains('\n'), "{script}");
            assert!(script.contains(&format!("d={dir};")), "{script}");
        }
    }

    #[test]
    fn sha256_is_found_in_every_tool_format() {
        let sum = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        for line in [
            format!("{sum}  -"),
            format!("{} -", sum.to_uppercase()),
            format!("SHA2-256(stdin)= {sum}"),
            format!("(stdin)= {sum}"),
        ] {
            assert_eq!(find_sha256(&line).as_deref(), Some(sum), "{line}");
        }
        assert_eq!(find_sha256("deadbeef  -"), None);
    }

    /// Runs `script` under sh with `home` as HOME.
    fn run_sh(script: &str, args: &[&str], home: &Path, stdin: &[u8]) -> (String, i32) {
        use std::io::Write;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("rock-test")
            .args(args)
            .env("HOME", home)
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sh runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin)
            .expect("write stdin");
        let out = child.wait_with_output().expect("sh ends");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            out.status.code().unwrap_or(-1),
        )
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[test]
    fn the_install_script_verifies_then_renames_and_cleans_up_on_mismatch() {
        let home = tempfile::tempdir().expect("tempdir");
        let binary = b"#!/bin/sh\necho pretend rockd\n";
        let sum = sha256_hex(binary);
        let dir = home.path().join(".local/lib/rock");

        // A copy that does not hash to what was promised is not kept.
        let wrong = sha256_hex(b"something else");
        let (out, code) = run_sh(
            INSTALL_SCRIPT,
            &["sha256sum", "rockd-x", &wrong],
            home.path(),
            binary,
        );
        assert_eq!(code, 1, "{out}");
        assert!(out.starts_with("rock-install mismatch"), "{out}");
        assert!(out.contains(&sum), "{out}");
        assert_eq!(files_in(&dir), Vec::<String>::new());

        // The right one is renamed into place, executable, in a 0700 dir.
        let (out, code) = run_sh(
            INSTALL_SCRIPT,
            &["sha256sum", "rockd-x", &sum],
            home.path(),
            binary,
        );
        assert_eq!(code, 0, "{out}");
        assert_eq!(out.trim(), format!("rock-install ok {sum}  -"));
        assert_eq!(files_in(&dir), ["rockd-x"]);
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("rockd-x")), 0o755);
        assert_eq!(std::fs::read(dir.join("rockd-x")).expect("read"), binary);

        // The probe sees it, with its hash.
        let (out, code) = run_sh(PROBE_SCRIPT, &["rockd-x"], home.path(), b"");
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("rock-probe sum sha256sum\n"), "{out}");
        assert!(
            out.contains(&format!("rock-probe installed {sum}")),
            "{out}"
        );
        assert!(out.ends_with("rock-probe end\n"), "{out}");
    }

    #[test]
    fn the_probe_of_this_machine_parses() {
        let home = tempfile::tempdir().expect("tempdir");
        let (out, code) = run_sh(PROBE_SCRIPT, &["rockd-none"], home.path(), b"");
        assert_eq!(code, 0, "{out}");
        let output = ScriptOutput::from_stdout(out.as_bytes());
        let probe = Probe::parse(&output).unwrap_or_else(|p| panic!("{}", p.detail));
        assert_eq!(Platform::from_uname(&probe.uname), Some(Platform::local()));
        assert_eq!(probe.sum_tool, Some("sha256sum"));
        assert_eq!(probe.installed, None);
        let local = LocalRockd {
            path: "/here/rockd".into(),
            source: Source::BesideRock,
            size: 1 << 20,
            sha256: "ab".repeat(32),
            version: "0.1.0".into(),
        };
        assert_eq!(probe.unsuitable("h", &local), None);
        let elsewhere = Probe {
            uname: "Linux sparc64".into(),
            ..probe
        };
        let why = elsewhere.unsuitable("h", &local).expect("refused");
        assert!(
            why.contains("sparc64 Linux") && why.contains("rockd_path"),
            "{why}"
        );
        let question = question(
            &BootstrapError::RockdNotFound {
                host: "h".into(),
                tried: vec![],
            },
            "h",
            &local,
            &elsewhere,
        );
        assert_eq!(
            question,
            "rockd was not found on h; copy /here/rockd (1.0 MiB, sparc64 Linux) \
             to ~/.local/lib/rock/ there? [y/N] "
        );
    }
}
