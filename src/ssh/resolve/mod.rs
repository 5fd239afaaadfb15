//! Resolving the destination exactly as OpenSSH would: run `ssh -G` with the
//! user's own options and read the configuration it prints. There is no
//! ssh_config parser here, only a reader of ssh's lowercase `key value`
//! dump and the `~`, `%` and `${}` expansion ssh applies when it connects.
//!
//! What `ssh -G` leaves unexpanded differs by field: `identityfile` and
//! `certificatefile` come out raw, while OpenSSH 8.4 and later print
//! `userknownhostsfile` and `identityagent` already expanded (older releases
//! leave a `~`, which is expanded here). A value is expanded at most once.
//!
//! `ssh -G` never connects but may run `Match exec` commands and look names
//! up for `CanonicalizeHostname`, as ssh itself would; it blocks, so async
//! callers run it on a blocking thread.
//!
//! This file holds [`resolve`] and [`ResolveError`]; the parts, one job
//! each:
//! * `run` — runs ssh: `ssh -G` for the dump, `ssh -V` for the version.
//! * `resolved` — [`Resolved`], the settings rock uses, built from a dump.
//! * `dump` — reads the dump's `key value` lines into typed values.
//! * `expand` — the `~`, `%` and `${}` expansion ssh applies.
//! * `local` — [`LocalContext`]: the local user, home and host name.

use std::ffi::{OsStr, OsString};

mod dump;
mod expand;
mod local;
mod resolved;
mod run;

pub use expand::ExpandError;
pub use local::LocalContext;
pub use resolved::{AddressFamily, IdentityAgent, Resolved, StrictHostKeyChecking};
pub use run::{OpensshVersion, openssh_version};

use run::{connection_hash, run_ssh_g};

/// Why the destination could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// ssh could not be started.
    #[error("cannot run `{program}` to {purpose} (is OpenSSH's ssh installed and on PATH?)")]
    Spawn {
        /// The ssh program.
        program: String,
        /// What it was run for.
        purpose: String,
        /// What exec said.
        source: std::io::Error,
    },
    /// `ssh -G` refused the command line or the configuration; `stderr` is
    /// ssh's own message, with the file and line at fault.
    #[error("ssh -G could not resolve `{host}`: {stderr}")]
    Config {
        /// The destination.
        host: String,
        /// ssh's stderr, verbatim.
        stderr: String,
    },
    /// A line of the dump that rock cannot read.
    #[error(
        "`ssh -G {host}` printed `{line}`, which rock cannot read ({why}) — please report it with the output of `ssh -V`"
    )]
    Output {
        /// The destination.
        host: String,
        /// The line.
        line: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A `~`, `%` or `${}` that OpenSSH would refuse to expand too.
    #[error(
        "cannot expand `{value}` from the {key} setting for `{host}` (fix it in your ssh configuration)"
    )]
    Expand {
        /// The destination.
        host: String,
        /// The ssh_config keyword, lowercase.
        key: &'static str,
        /// The raw value.
        value: String,
        /// What failed.
        #[source]
        source: ExpandError,
    },
    /// The real uid is not in the password database.
    #[error("cannot find who you are on this machine: uid {0} is not in the password database")]
    UnknownUid(u32),
    /// The local host name could not be read.
    #[error("cannot find this machine's host name")]
    Hostname(#[source] std::io::Error),
    /// `ssh -V` printed something that is not an OpenSSH banner.
    #[error(
        "`{program} -V` printed `{output}`, which is not an OpenSSH version — rock -d needs OpenSSH's ssh"
    )]
    Version {
        /// The ssh program.
        program: String,
        /// What it printed.
        output: String,
    },
}

/// Runs `<ssh_program> -G <resolve_args> -- <host>` and reads the result.
pub fn resolve(
    ssh_program: &OsStr,
    resolve_args: &[OsString],
    host: &str,
) -> Result<Resolved, ResolveError> {
    let local = LocalContext::current()?;
    let (dump, warnings) = run_ssh_g(ssh_program, &[], resolve_args, host)?;
    let needs_hash = dump.lines().any(|l| {
        (l.starts_with("identityfile ") || l.starts_with("certificatefile ")) && l.contains("%C")
    });
    let conn_hash = if needs_hash {
        Some(connection_hash(ssh_program, resolve_args, host)?)
    } else {
        None
    };
    let mut resolved = Resolved::from_dump(host, &dump, &local, conn_hash.as_deref())?;
    resolved.warnings = warnings;
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;

    // Real `ssh -G` runs with temporary configs (no network).

    fn write(path: &std::path::Path, text: &str) {
        std::fs::write(path, text).unwrap();
    }

    fn ssh() -> &'static OsStr {
        OsStr::new("ssh")
    }

    #[test]
    fn real_ssh_g_with_include_match_and_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        std::fs::create_dir(dir.path().join("inc")).unwrap();
        write(
            &dir.path().join("inc/a.conf"),
            "Host work\n  StrictHostKeyChecking accept-new\n  PasswordAuthentication no\n  \
             PreferredAuthentications publickey,keyboard-interactive\n",
        );
        // The same token soup in IdentityFile (expanded here) and in
        // UserKnownHostsFile (expanded by ssh -G itself) must agree.
        let soup = "%r_%h_%p_%n_%l_%L_%u_%d_%i_%k_%%";
        let config = format!(
            "Include {d}/inc/*.conf\n\
             Host work\n  HostName %h.example.com\n  User alice\n  Port 2200\n  \
             IdentityFile ~/.ssh/id_{soup}\n  IdentityFile {d}/keys/%C\n  \
             CertificateFile ~/.ssh/%r-cert.pub\n  \
             UserKnownHostsFile ~/.ssh/id_{soup} {d}/keys/%C\n  \
             ProxyJump jumper@bastion:2022\n  IdentitiesOnly yes\n\
             Match host *.example.com\n  ConnectTimeout 7\n  ServerAliveInterval 15\n"
        );
        let cfg = dir.path().join("config");
        write(&cfg, &config);
        let mut args = vec![OsString::from("-F"), cfg.into_os_string()];
        let r = resolve(ssh(), &args, "work").unwrap();
        // With a HostKeyAlias, %k is the alias: check ssh agrees again.
        args.extend(["-o".into(), "HostKeyAlias=hka".into()]);
        let aliased = resolve(ssh(), &args, "work").unwrap();
        assert_eq!(aliased.identity_files, aliased.user_known_hosts_files);
        assert!(
            aliased.identity_files[0]
                .to_string_lossy()
                .ends_with("_hka_%")
        );
        let local = LocalContext::current().unwrap();
        let home = local
            .home
            .to_string_lossy()
            .trim_end_matches('/')
            .to_string();

        assert_eq!(r.host_alias, "work");
        assert_eq!(r.user, "alice");
        assert_eq!(r.hostname, "work.example.com");
        assert_eq!(r.port, 2200);
        assert_eq!(r.identity_files.len(), 2);
        assert_eq!(
            r.identity_files, r.user_known_hosts_files,
            "our expansion must equal ssh's"
        );
        let expected = format!(
            "{home}/.ssh/id_alice_work.example.com_2200_work_{l}_{short}_{u}_{home}_{i}_work_%",
            l = local.hostname,
            short = local.hostname.split('.').next().unwrap(),
            u = local.user,
            i = local.uid,
        );
        assert_eq!(r.identity_files[0], PathBuf::from(expected));
        let hash = r.identity_files[1]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            hash.len() == 40 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
            "{hash}"
        );
        assert_eq!(
            r.certificate_files,
            [PathBuf::from(format!("{home}/.ssh/alice-cert.pub"))]
        );
        assert!(r.identities_only);
        assert_eq!(r.proxy_jump.as_deref(), Some("jumper@bastion:2022"));
        assert_eq!(r.proxy_command, None);
        assert_eq!(r.strict_host_key_checking, StrictHostKeyChecking::AcceptNew);
        assert!(!r.password_authentication);
        assert_eq!(
            r.preferred_authentications,
            Some(vec!["publickey".into(), "keyboard-interactive".into()])
        );
        assert_eq!(r.connect_timeout, Some(Duration::from_secs(7)));
        assert_eq!(r.server_alive_interval, Some(Duration::from_secs(15)));
        assert_eq!(r.address_family, AddressFamily::Any);
        assert!(!r.batch_mode);
        assert_eq!(r.number_of_password_prompts, 3);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    #[test]
    fn real_ssh_g_bad_config_reports_ssh_words() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config");
        write(&cfg, "Host work\n  User x\n  Hostnme foo\n");
        let args = vec![OsString::from("-F"), cfg.clone().into_os_string()];
        let e = resolve(ssh(), &args, "work").unwrap_err().to_string();
        let want = format!(
            "ssh -G could not resolve `work`: {}: line 3: Bad configuration option: hostnme",
            cfg.display()
        );
        assert!(e.starts_with(&want), "{e}");
        let e = resolve(OsStr::new("/nonexistent/rock-ssh"), &[], "work").unwrap_err();
        let shown = crate::chain::chain(&e);
        assert!(
            shown.starts_with("cannot run `/nonexistent/rock-ssh` to resolve `work` "),
            "{shown}"
        );
        // The cause, once: after the context, not inside it too.
        let cause = std::io::Error::from(std::io::ErrorKind::NotFound).to_string();
        assert!(!e.to_string().contains(&cause), "{e}");
        assert_eq!(shown.matches("No such file").count(), 1, "{shown}");
    }

    #[test]
    fn real_ssh_g_expands_proxy_command_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config");
        write(
            &cfg,
            "Host work\n  HostName w.example\n  User alice\n  Port 2200\n  HostKeyAlias wk\n",
        );
        // A ProxyCommand's tokens, as ssh would run it.
        let args = vec![
            OsString::from("-F"),
            cfg.clone().into_os_string(),
            "-o".into(),
            "ProxyCommand=nc %h %p # %r %n %%".into(),
        ];
        let r = resolve(ssh(), &args, "work").unwrap();
        assert_eq!(
            r.proxy_command_line().unwrap().as_deref(),
            Some("nc w.example 2200 # alice work %")
        );
    }
}
