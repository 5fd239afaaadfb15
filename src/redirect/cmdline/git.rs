//! git's command line: which repository a `clone`, `fetch`, `pull`, `push`
//! or `ls-remote` reaches, which ssh command git will run for it, and the
//! host in its URL.
//!
//! The URL comes from git itself, so that `url.<base>.insteadOf`, remote
//! names and the user's global options (`-C`, `-c`, `--git-dir`) count:
//! * `clone URL` and `fetch`/`pull`/`ls-remote [REMOTE]`: `git ls-remote
//!   --get-url [REMOTE]` — with no REMOTE, the current branch's remote or
//!   `origin`, as git picks it;
//! * `push [REMOTE]` (or `--repo=REMOTE`): `git remote get-url --push
//!   REMOTE`; with none, the first of `branch.<current>.pushRemote`,
//!   `remote.pushDefault`, `branch.<current>.remote` and `origin`.
//!
//! URLs that reach the host over ssh are `ssh://[user@]host[:port]/path`
//! (also `git+ssh://`, `ssh+git://`) and scp-like `[user@]host:path`, with
//! `[…]` around an IPv6 address or `host:port`, as `connect.c` reads them.
//! The ssh command is git's: `GIT_SSH_COMMAND`, else `core.sshCommand`,
//! else `GIT_SSH`, else `ssh`. git runs `<ssh command> [-o
//! SendEnv=GIT_PROTOCOL] [-p port] [user@]host <git command>`.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use super::destination::{destination, ssh_destination};
use super::error::{no_destination, show};
use super::operand::numeric_port;
use super::programs::{Parts, push_destination_args};
use super::remote_shell::RemoteShell;
use super::shell::{Syntax, quote};
use super::surroundings::{GitError, Surroundings};
use super::{CmdlineError, Destination, Program, Transport};

/// git's global options that take the next word as their value.
const GLOBAL_WITH_VALUE: &[&str] = &[
    "-C",
    "-c",
    "--git-dir",
    "--work-tree",
    "--namespace",
    "--config-env",
    "--super-prefix",
    "--attr-source",
];

/// The subcommands rock -d carries: each reaches one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sub {
    Clone,
    Fetch,
    Pull,
    Push,
    LsRemote,
}

impl Sub {
    fn from_name(name: &[u8]) -> Option<Sub> {
        Some(match name {
            b"clone" => Sub::Clone,
            b"fetch" => Sub::Fetch,
            b"pull" => Sub::Pull,
            b"push" => Sub::Push,
            b"ls-remote" => Sub::LsRemote,
            _ => return None,
        })
    }

    /// Short and long options that take a value in the next word (git's
    /// parse-options also accepts `-bVALUE` and `--opt=VALUE`).
    fn with_value(self) -> (&'static [u8], &'static [&'static str]) {
        const FETCH: &[&str] = &[
            "depth",
            "deepen",
            "shallow-since",
            "shallow-exclude",
            "refmap",
            "server-option",
            "negotiation-tip",
            "jobs",
            "upload-pack",
            "filter",
            "recurse-submodules-default",
            "submodule-prefix",
        ];
        const PULL: &[&str] = &[
            "depth",
            "deepen",
            "shallow-since",
            "shallow-exclude",
            "refmap",
            "server-option",
            "negotiation-tip",
            "jobs",
            "upload-pack",
            "filter",
            "strategy",
            "strategy-option",
            "cleanup",
        ];
        match self {
            Sub::Clone => (
                b"obucj",
                &[
                    "origin",
                    "branch",
                    "upload-pack",
                    "reference",
                    "reference-if-able",
                    "separate-git-dir",
                    "depth",
                    "shallow-since",
                    "shallow-exclude",
                    "config",
                    "template",
                    "jobs",
                    "filter",
                    "server-option",
                    "bundle-uri",
                    "ref-format",
                    "revision",
                ],
            ),
            Sub::Fetch => (b"oj", FETCH),
            Sub::Pull => (b"ojsX", PULL),
            Sub::Push => (
                b"o",
                &[
                    "repo",
                    "receive-pack",
                    "exec",
                    "push-option",
                    "recurse-submodules",
                ],
            ),
            Sub::LsRemote => (b"o", &["upload-pack", "exec", "server-option", "sort"]),
        }
    }
}

/// What the subcommand's arguments say.
struct Scan {
    operands: Vec<OsString>,
    /// `push --repo=…`.
    repo: Option<OsString>,
}

fn scan(sub: Sub, argv: &[OsString], from: usize) -> Result<Scan, CmdlineError> {
    let (short, long) = sub.with_value();
    let mut found = Scan {
        operands: Vec::new(),
        repo: None,
    };
    let mut i = from;
    while let Some(word) = argv.get(i).map(|w| w.as_bytes()) {
        if word == b"--" {
            found.operands.extend(argv[i + 1..].iter().cloned());
            break;
        }
        let next_value = |i: &mut usize| {
            *i += 1;
            argv.get(*i)
                .cloned()
                .ok_or_else(|| CmdlineError::NotCarried {
                    command: show(argv),
                    why: format!(
                        "ends without the value of {}",
                        String::from_utf8_lossy(word)
                    ),
                })
        };
        if let Some(name) = word.strip_prefix(b"--") {
            let (name, inline) = match name.iter().position(|&b| b == b'=') {
                Some(eq) => (&name[..eq], Some(OsStr::from_bytes(&name[eq + 1..]))),
                None => (name, None),
            };
            let name = String::from_utf8_lossy(name);
            if matches!(sub, Sub::Fetch | Sub::Pull) && matches!(name.as_ref(), "all" | "multiple")
            {
                return Err(CmdlineError::NotCarried {
                    command: show(argv),
                    why: format!(
                        "may reach several remotes (--{name}), but rock -d carries each \
                         command to one host; fetch from one remote at a time"
                    ),
                });
            }
            let value = match inline {
                Some(v) => Some(v.to_owned()),
                None if long.contains(&name.as_ref()) => Some(next_value(&mut i)?),
                None => None,
            };
            if name == "repo" {
                found.repo = value;
            }
        } else if word.len() > 1 && word[0] == b'-' {
            for (offset, letter) in word.iter().enumerate().skip(1) {
                if short.contains(letter) {
                    if offset + 1 == word.len() {
                        next_value(&mut i)?;
                    }
                    break;
                }
            }
        } else {
            found.operands.push(argv[i].clone());
        }
        i += 1;
    }
    Ok(found)
}

/// Where git's global options end: the subcommand's index.
fn subcommand_at(argv: &[OsString]) -> usize {
    let mut i = 1;
    while let Some(word) = argv.get(i).map(|w| w.as_bytes()) {
        if word.first() != Some(&b'-') {
            break;
        }
        if word == b"--" {
            return i + 1;
        }
        let takes_next = GLOBAL_WITH_VALUE.iter().any(|g| g.as_bytes() == word);
        i += if takes_next { 2 } else { 1 };
    }
    i
}

/// Runs `git <global> <args>` through the surroundings.
struct Git<'a> {
    program: &'a OsStr,
    global: &'a [OsString],
    env: &'a dyn Surroundings,
}

impl Git<'_> {
    fn run(&self, args: &[&OsStr]) -> Result<String, GitError> {
        let all: Vec<OsString> = self
            .global
            .iter()
            .cloned()
            .chain(args.iter().map(|a| a.to_os_string()))
            .collect();
        self.env.git(self.program, &all)
    }

    fn config(&self, key: &str) -> Option<String> {
        self.run(&["config".as_ref(), "--get".as_ref(), key.as_ref()])
            .ok()
            .filter(|v| !v.is_empty())
    }

    fn lookup(&self, args: &[&OsStr], argv: &[OsString]) -> Result<String, CmdlineError> {
        self.run(args).map_err(|source| CmdlineError::GitLookup {
            command: show(argv),
            lookup: std::iter::once("git")
                .chain(args.iter().map(|a| a.to_str().unwrap_or("…")))
                .collect::<Vec<_>>()
                .join(" "),
            source,
        })
    }

    /// The URL fetch, pull and ls-remote use, or clone's, expanded.
    fn fetch_url(&self, remote: Option<&OsStr>, argv: &[OsString]) -> Result<String, CmdlineError> {
        let mut args: Vec<&OsStr> = vec!["ls-remote".as_ref(), "--get-url".as_ref()];
        args.extend(remote);
        self.lookup(&args, argv)
    }

    /// The URL push uses.
    fn push_url(&self, remote: Option<&OsStr>, argv: &[OsString]) -> Result<String, CmdlineError> {
        let name: OsString = match remote {
            Some(r) => r.to_owned(),
            None => {
                let branch = self
                    .run(&[
                        "symbolic-ref".as_ref(),
                        "--short".as_ref(),
                        "-q".as_ref(),
                        "HEAD".as_ref(),
                    ])
                    .ok();
                let branch_key = |k: &str| branch.as_ref().map(|b| format!("branch.{b}.{k}"));
                [
                    branch_key("pushRemote"),
                    Some("remote.pushDefault".to_owned()),
                    branch_key("remote"),
                ]
                .into_iter()
                .flatten()
                .find_map(|key| self.config(&key))
                .unwrap_or_else(|| "origin".to_owned())
                .into()
            }
        };
        let get = [
            "remote".as_ref(),
            "get-url".as_ref(),
            "--push".as_ref(),
            name.as_os_str(),
        ];
        match self.run(&get) {
            Ok(url) => Ok(url),
            // Not a remote's name: a URL, as git push takes it.
            Err(_) if remote.is_some() => self.fetch_url(remote, argv),
            Err(_) => self.lookup(&get, argv),
        }
    }

    /// The ssh command git runs, read.
    fn ssh_command(&self, spec: &[u8]) -> Result<RemoteShell, CmdlineError> {
        if let Some(text) = self.env.var("GIT_SSH_COMMAND").filter(|v| !v.is_empty()) {
            return RemoteShell::read(
                Syntax::Shell,
                text.as_bytes(),
                "GIT_SSH_COMMAND",
                spec,
                self.env,
            );
        }
        if let Some(text) = self.config("core.sshCommand") {
            return RemoteShell::read(
                Syntax::Shell,
                text.as_bytes(),
                "core.sshCommand",
                spec,
                self.env,
            );
        }
        if let Some(program) = self.env.var("GIT_SSH").filter(|v| !v.is_empty()) {
            let text = quote(Syntax::Shell, program.as_bytes());
            return RemoteShell::read(Syntax::Shell, &text, "GIT_SSH", spec, self.env);
        }
        Ok(RemoteShell::default_ssh(Syntax::Shell))
    }
}

/// git: the repository's host, and git's ssh command with its options.
pub(super) fn parse_git(
    argv: &[OsString],
    ssh_spec: &[u8],
    env: &dyn Surroundings,
) -> Result<Parts, CmdlineError> {
    let at = subcommand_at(argv);
    let git = Git {
        program: &argv[0],
        global: &argv[1..at.min(argv.len())],
        env,
    };
    let sub = argv
        .get(at)
        .and_then(|w| Sub::from_name(w.as_bytes()))
        .ok_or_else(|| CmdlineError::NotCarried {
            command: show(argv),
            why: "is not a git command rock -d carries — use git clone, fetch, pull, push or \
                  ls-remote, each of which reaches one host"
                .into(),
        })?;
    let found = scan(sub, argv, at + 1)?;
    let first = found.operands.first().map(OsString::as_os_str);
    let url = match sub {
        Sub::Clone => {
            let operand = first.ok_or_else(|| no_destination(Program::Git, argv))?;
            git.fetch_url(Some(operand), argv)
                .unwrap_or_else(|_| operand.to_string_lossy().into_owned())
        }
        Sub::Fetch | Sub::Pull | Sub::LsRemote => git.fetch_url(first, argv)?,
        Sub::Push => git.push_url(found.repo.as_deref().or(first), argv)?,
    };
    let destination = git_url(&url)?;
    let shell = git.ssh_command(ssh_spec)?;
    let mut args = Vec::new();
    shell.resolve_args(&mut args);
    push_destination_args(&destination, None, &mut args);
    Ok(Parts {
        destination,
        resolve_args: args,
        ssh_program: Some(shell.program.clone()),
        opts: Vec::new(),
        transport: Transport::Git { shell },
    })
}

/// The ssh program git will run, for asking its version (ssh if the
/// command cannot be read; parsing says why).
pub(super) fn git_ssh(argv: &[OsString], env: &dyn Surroundings) -> OsString {
    let at = subcommand_at(argv);
    let git = Git {
        program: &argv[0],
        global: &argv[1..at.min(argv.len())],
        env,
    };
    let spec = super::OpensshVersion { major: 9, minor: 4 }.ssh_opts();
    git.ssh_command(spec)
        .map_or_else(|_| "ssh".into(), |shell| shell.program)
}

/// The host an ssh URL names, as git's `connect.c` reads it; other URLs
/// and local paths are refused.
pub(super) fn git_url(url: &str) -> Result<Destination, CmdlineError> {
    let not_ssh = || CmdlineError::NotOverSsh {
        url: url.to_owned(),
    };
    let lower = url.to_ascii_lowercase();
    let (host_port, operand) = if let Some(rest) = ["ssh://", "git+ssh://", "ssh+git://"]
        .iter()
        .find_map(|s| lower.starts_with(s).then(|| &url[s.len()..]))
    {
        (host_part(rest, b'/'), url)
    } else if url.contains("://") {
        return Err(not_ssh());
    } else {
        match (url.find(':'), url.find('/')) {
            (None, _) => return Err(not_ssh()),
            (Some(c), Some(s)) if s < c && !url.starts_with('[') && !url.contains("@[") => {
                return Err(not_ssh());
            }
            _ => (host_part(url, b':'), url),
        }
    };
    let bad = |why| super::error::bad_destination(OsStr::new(operand), why);
    // `[user@]host`, `[user@][host]`, `[user@][host:port]`, `host:port`.
    let (at, rest) = match host_port.rfind("@[").or_else(|| {
        host_port
            .find('[')
            .is_none()
            .then(|| host_port.rfind('@'))
            .flatten()
    }) {
        Some(i) => (Some(&host_port[..i]), &host_port[i + 1..]),
        None => (None, host_port),
    };
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let close = inner
            .find(']')
            .ok_or_else(|| bad("has a `[` without `]`"))?;
        let (inside, after) = (&inner[..close], &inner[close + 1..]);
        let after_port = after.strip_prefix(':').filter(|p| !p.is_empty());
        match (inside.matches(':').count(), inside.split_once(':')) {
            (1, Some((h, p))) if after_port.is_none() => (h, Some(p)),
            _ => (inside, after_port),
        }
    } else {
        match rest.split_once(':') {
            Some((h, "")) => (h, None),
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    let port = port
        .map(|p| {
            numeric_port(p.as_bytes())
                .ok_or_else(|| bad("has a port that is not a number from 1 to 65535"))
        })
        .transpose()?;
    if host.starts_with('-') {
        return Err(bad("names a host starting with `-`, which git refuses"));
    }
    let user_host = match at {
        Some(user) => format!("{user}@{host}"),
        None => host.to_owned(),
    };
    let d = ssh_destination(OsStr::new(&user_host))?;
    destination(
        OsStr::new(operand),
        d.user.map(String::into_bytes),
        d.host.into_bytes(),
        port,
    )
}

/// The host part of a URL or scp-like address: up to `separator`, but not
/// inside `[…]`.
fn host_part(s: &str, separator: u8) -> &str {
    let bracket = s
        .find("@[")
        .map(|i| i + 1)
        .or_else(|| s.starts_with('[').then_some(0));
    let from = match bracket {
        Some(open) => s[open..].find(']').map_or(0, |c| open + c),
        None => 0,
    };
    match s.as_bytes()[from..].iter().position(|&b| b == separator) {
        Some(p) => &s[..from + p],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::git_url;
    use crate::redirect::cmdline::test_util::*;

    #[test]
    fn ssh_urls_as_git_reads_them() {
        // Checked against git 2.47 with a GIT_SSH_COMMAND that prints its argv.
        for (url, user, host, port) in [
            ("ssh://u@h:2222/x", Some("u"), "h", Some(2222)),
            ("git+ssh://h/x", None, "h", None),
            ("ssh://[::1]:2/x", None, "::1", Some(2)),
            ("ssh://a@b@h/x", Some("a@b"), "h", None),
            ("u@[h:33]:x", Some("u"), "h", Some(33)),
            ("[::1]:x", None, "::1", None),
            ("rocktest:/srv/repo.git", None, "rocktest", None),
            ("u@h:path/with:colon", Some("u"), "h", None),
        ] {
            assert_eq!(git_url(url).unwrap(), dest(user, host, port), "{url}");
        }
        for url in [
            "https://h/x",
            "git://h/x",
            "file:///x",
            "./a:b",
            "/srv/x",
            "repo",
        ] {
            let e = git_url(url).unwrap_err().to_string();
            assert!(e.contains("not reached over ssh"), "{url}: {e}");
        }
        assert!(git_url("-oProxyCommand=x:y").is_err());
        assert!(git_url("ssh://h:port/x").is_err());
    }

    fn env() -> FakeEnv {
        let mut env = FakeEnv::default();
        env.git.insert(
            "ls-remote --get-url".into(),
            Ok("u@origin-host:o.git".into()),
        );
        env.git.insert(
            "ls-remote --get-url up".into(),
            Ok("ssh://up-host:2200/u.git".into()),
        );
        env.git.insert(
            "ls-remote --get-url me@x:r.git".into(),
            Ok("me@x:r.git".into()),
        );
        env.git
            .insert("symbolic-ref --short -q HEAD".into(), Ok("main".into()));
        env.git
            .insert("config --get remote.pushDefault".into(), Ok("pub".into()));
        env.git.insert(
            "remote get-url --push pub".into(),
            Ok("pub-host:p.git".into()),
        );
        env.git.insert(
            "remote get-url --push up".into(),
            Ok("push-host:u.git".into()),
        );
        env
    }

    #[test]
    fn the_repository_comes_from_the_command_or_git() {
        let env = env();
        let host = |words: &[&str]| ok_in(words, &env).destination().host.clone();
        assert_eq!(
            host(&["git", "clone", "-b", "dev", "me@x:r.git", "dir"]),
            "x"
        );
        assert_eq!(host(&["git", "fetch"]), "origin-host");
        assert_eq!(
            host(&["git", "fetch", "--depth", "1", "up", "main"]),
            "up-host"
        );
        assert_eq!(host(&["git", "pull", "-s", "ours", "up"]), "up-host");
        assert_eq!(host(&["git", "ls-remote"]), "origin-host");
        assert_eq!(host(&["git", "push"]), "pub-host");
        assert_eq!(
            host(&["git", "push", "-o", "ci.skip", "up", "main"]),
            "push-host"
        );
        assert_eq!(host(&["git", "push", "--repo=up"]), "push-host");
        let p = ok_in(&["git", "ls-remote", "up"], &env);
        assert_eq!(strings(p.resolve_args()), ["-p", "2200"]);
        // Global options reach the lookups.
        let mut env = FakeEnv::default();
        env.git
            .insert("-C /w -c a=b ls-remote --get-url".into(), Ok("h:x".into()));
        assert_eq!(
            ok_in(&["git", "-C", "/w", "-c", "a=b", "fetch"], &env)
                .destination()
                .host,
            "h"
        );
    }

    #[test]
    fn what_git_cannot_carry_is_refused() {
        let env = env();
        let e = err_in(&["git", "status"], &env);
        assert!(e.contains("clone, fetch, pull, push or ls-remote"), "{e}");
        let e = err_in(&["git", "fetch", "--all"], &env);
        assert!(e.contains("one host") && e.contains("--all"), "{e}");
        let e = err_in(&["git", "clone"], &env);
        assert!(e.contains("cannot find the destination host"), "{e}");
        let e = err_in(&["git", "clone", "https://example.org/r.git"], &env);
        assert!(e.contains("not reached over ssh"), "{e}");
        let e = err_in(&["git", "fetch", "nowhere"], &env);
        assert!(e.contains("git ls-remote --get-url nowhere"), "{e}");
    }

    #[test]
    fn the_ssh_command_is_gits_and_gets_the_transport() {
        let mut env = env();
        env.git.insert(
            "config --get core.sshCommand".into(),
            Ok("ssh -F '/my cfg'".into()),
        );
        let p = ok_in(&["git", "fetch"], &env);
        assert_eq!(strings(p.resolve_args()), ["-F", "/my cfg", "-l", "u"]);
        let t = p.with_transport("'/r/rock-proxy'", None);
        assert_eq!(strings(&t.argv), ["git", "fetch"]);
        assert_eq!(
            t.env,
            [(
                "GIT_SSH_COMMAND".into(),
                "ssh -o 'ProxyCommand='\\''/r/rock-proxy'\\''' -o ProxyUseFdpass=yes -o ControlMaster=no -o ControlPath=none -o ServerAliveInterval=0 -F '/my cfg'"
                    .into()
            )]
        );
        env.vars
            .insert("GIT_SSH_COMMAND".into(), "/usr/bin/ssh -v".into());
        let p = ok_in(&["git", "fetch"], &env);
        assert_eq!(p.ssh_program(), "/usr/bin/ssh");
        env.vars.insert("GIT_SSH_COMMAND".into(), "plink -v".into());
        assert!(err_in(&["git", "fetch"], &env).contains("not OpenSSH's ssh"));
        let mut env = self::env();
        env.vars.insert("GIT_SSH".into(), "/opt/my ssh/ssh".into());
        let t = ok_in(&["git", "push"], &env).with_transport("x", Some("bob"));
        assert_eq!(
            t.env[0].1,
            "'/opt/my ssh/ssh' -o ProxyCommand=x -o ProxyUseFdpass=yes -o ControlMaster=no -o ControlPath=none -o ServerAliveInterval=0 -o User=bob"
        );
    }

    #[test]
    fn a_jump_in_gits_ssh_command_is_resolved_and_left_out_of_it() {
        let mut env = env();
        env.vars.insert(
            "GIT_SSH_COMMAND".into(),
            "ssh -J \"$JUMP\" -o 'User=it'\\''s'".into(),
        );
        env.vars.insert("JUMP".into(), "u@bastion:2222".into());
        let p = ok_in(&["git", "fetch"], &env);
        assert_eq!(
            strings(p.resolve_args()),
            ["-J", "u@bastion:2222", "-o", "User=it's", "-l", "u"]
        );
        let t = p.with_transport("x", None);
        assert_eq!(
            t.env[0].1,
            "ssh -o ProxyCommand=x -o ProxyUseFdpass=yes -o ControlMaster=no -o ControlPath=none -o ServerAliveInterval=0 -o 'User=it'\\''s'"
        );
    }
}
