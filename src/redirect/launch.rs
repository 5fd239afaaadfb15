//! `rock -d`: runs the user's ssh, scp, sftp, rsync or git through a rock
//! session.
//!
//! Resolve the destination with `ssh -G`, bootstrap rockd over one russh
//! connection (the only authentication the user sees), then start the
//! user's own command with its transport redirected into this process (the
//! proxy helper) and, if a password or passphrase was typed, answered
//! from memory (the askpass helper). The relay carries the bytes to rockd
//! over links it re-makes whenever they die; each further ssh connection
//! of the command gets a session of its own ([`crate::redirect::further`]). The
//! command's exit status is rock's.
//!
//! When the command exits, its end (the FIN of its connection, which makes
//! rockd hang up sshd) goes to rockd while the terminal waits — only while
//! the link is up, and briefly. Otherwise, and when the command went on in
//! the background (`ssh -f`), the terminal is given back at once and this
//! process finishes in the background ([`crate::redirect::job`]).

use std::ffi::{OsStr, OsString};
use std::future::Future;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rock_proto::{CloseReason, Config, Role, Session, State};
use tokio::process::Command;

use crate::boot::{self, BootRequest};
use crate::redirect::cmdline::{self, CmdlineError, ParsedCommand, System, Transported};
use crate::redirect::control::Control;
use crate::redirect::further::Further;
use crate::redirect::helper::{ASKPASS_NAME, PROXY_NAME};
use crate::redirect::job::{self, Job, Signals, UserCommand};
use crate::redirect::links::{self, LinkPlan};
use crate::redirect::notice;
use crate::relay::{Outcome, Relay, RelayError, RelayOptions, StatusWatch};
use crate::rundir::{RunDirError, SessionDir};
use crate::settings::{CommandLine, Profiles, Settings, SettingsError};
use crate::ssh::auth::Secrets;
use crate::ssh::bootstrap::{
    self, BootstrapError, Bootstrapped, InstallPlan, LocalRockd, RockdCommand,
};
use crate::ssh::prompt::TerminalPrompter;
use crate::ssh::proxy::{JumpSpec, Proxy};
use crate::ssh::resolve::{self, IdentityAgent, ResolveError, Resolved};
use crate::ssh::target::{self, BootstrapTarget};
use crate::status::SessionInfo;

/// What `rock -d` was asked to do, and the job it runs in.
#[derive(Debug)]
pub struct LaunchOptions {
    /// The command after `-d`: ssh, scp, sftp, rsync or git and its arguments.
    pub command: Vec<OsString>,
    /// `-d user`: the remote login.
    pub user: Option<String>,
    /// rock's own options that override the profiles.
    pub cli: CommandLine,
    /// Host profiles from the configuration files.
    pub profiles: Profiles,
    /// How long the terminal waits, after the command exits, for the
    /// session to end while its link is up; past that (or as soon as the
    /// link is down) the end is delivered in the background.
    pub exit_linger: Duration,
    /// The front process the shell waits for (see [`job`]).
    pub job: Job,
    /// Started by `rock -k`: the session may be checkpointed.
    pub checkpointable: bool,
}

/// Why `rock -d` could not run the command. Each maps to ssh's 255.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The command line is not one rock can carry.
    #[error(transparent)]
    Cmdline(#[from] CmdlineError),
    /// `ssh -G` failed.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The configuration asks for something rock -d cannot do yet.
    #[error("{0}")]
    Unsupported(String),
    /// A setting a session cannot run with.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// Connecting, authenticating or starting rockd failed.
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    /// The private session directory could not be made.
    #[error(transparent)]
    RunDir(#[from] RunDirError),
    /// Something local failed.
    #[error("{what}")]
    Local {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        error: std::io::Error,
    },
    /// The rock link to rockd could not be made or was refused.
    #[error("the link to rockd failed")]
    Relay(#[from] RelayError),
    /// The same, with advice for the reconnect mode in use: the cause is
    /// written out here so that the advice comes last.
    #[error("the link to rockd failed: {}\n  {hint}", crate::chain::chain(.error))]
    RelayWithHint {
        /// The relay's error.
        error: RelayError,
        /// What to try.
        hint: &'static str,
    },
}

impl LaunchError {
    /// The exit status, as ssh would give for a connection failure.
    pub fn exit_code(&self) -> i32 {
        255
    }
}

fn local(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LaunchError {
    let what = what.into();
    move |error| LaunchError::Local { what, error }
}

/// The bootstrap's view of what `ssh -G` resolved.
fn target_of(destination: &str, ssh_command: Vec<String>, r: &Resolved) -> BootstrapTarget {
    let agent_socket = match &r.identity_agent {
        IdentityAgent::Default => target::agent_socket_from_env(),
        IdentityAgent::None => None,
        IdentityAgent::Env(name) => std::env::var_os(name).map(Into::into),
        IdentityAgent::Path(p) => Some(p.clone()),
    };
    BootstrapTarget {
        destination: destination.to_owned(),
        ssh_command,
        user: r.user.clone(),
        hostname: r.hostname.clone(),
        port: r.port,
        identity_files: r.identity_files.clone(),
        identities_only: r.identities_only,
        known_hosts_files: r
            .user_known_hosts_files
            .iter()
            .chain(&r.global_known_hosts_files)
            .cloned()
            .collect(),
        host_key_alias: r.host_key_alias.clone(),
        batch_mode: r.batch_mode,
        connect_timeout: r.connect_timeout,
        address_family: r.address_family,
        pubkey_authentication: r.pubkey_authentication,
        password_authentication: r.password_authentication,
        kbd_interactive_authentication: r.kbd_interactive_authentication,
        number_of_password_prompts: r.number_of_password_prompts,
        agent_socket,
        proxy: None,
    }
}

/// Plain ssh's command line for `host` with the options the user's
/// command gives ssh (`resolve_args`, those `ssh -G` resolved with): what
/// it does, such as recording a host key, it does where rock looks.
fn plain_ssh_command(program: &OsStr, resolve_args: &[OsString], host: &str) -> Vec<String> {
    let mut words = vec![program.to_string_lossy().into_owned()];
    words.extend(
        resolve_args
            .iter()
            .map(|a| a.to_string_lossy().into_owned()),
    );
    if host.starts_with('-') {
        words.push("--".to_owned());
    }
    words.push(host.to_owned());
    words
}

/// The proxy `ssh -G` resolved for the destination, if any: `ProxyJump`
/// as the user's own ssh would run it (with their `-F`), or
/// `ProxyCommand` with its tokens expanded.
fn proxy_of(
    host: &str,
    parsed: &ParsedCommand,
    resolved: &Resolved,
) -> Result<Option<Proxy>, LaunchError> {
    if let Some(jump) = &resolved.proxy_jump {
        let spec = JumpSpec::parse(jump).map_err(|why| {
            LaunchError::Unsupported(format!(
                "the ProxyJump of {host}, {jump}, cannot be read: {why}"
            ))
        })?;
        return Ok(Some(Proxy::Jump {
            program: parsed.ssh_program().to_owned(),
            spec,
            target_host: resolved.hostname.clone(),
            target_port: resolved.port,
            config: parsed.config_file().map(ToOwned::to_owned),
            verbosity: parsed.verbosity(),
        }));
    }
    let Some(line) = resolved.proxy_command_line()? else {
        return Ok(None);
    };
    if line == "-" {
        return Err(LaunchError::Unsupported(format!(
            "{host} has `ProxyCommand -` (the connection on ssh's own stdin and stdout), \
             which rock -d cannot carry"
        )));
    }
    if resolved.get("proxyusefdpass") == Some("yes") {
        return Err(LaunchError::Unsupported(format!(
            "{host} has ProxyUseFdpass yes, which rock -d cannot carry: its ProxyCommand \
             passes back a socket rather than carrying the bytes; set ProxyUseFdpass no \
             for rock -d"
        )));
    }
    Ok(Some(Proxy::Command { line }))
}

/// The proxy the links go through, for messages.
fn links_proxy(target: &BootstrapTarget) -> Option<String> {
    target.proxy.as_ref().map(ToString::to_string)
}

/// rockd's arguments for the engine settings both ends must share.
fn rockd_args(config: &Config) -> Vec<String> {
    vec![
        // Whole seconds, at least one (the settings check says so).
        format!("--suspend-timeout={}", config.suspend_timeout.as_secs()),
        format!("--heartbeat-ms={}", config.heartbeat_interval.as_millis()),
        format!("--link-timeout-ms={}", config.link_timeout.as_millis()),
    ]
}

/// Quotes a path for the shell ssh runs ProxyCommand with, and escapes
/// ssh's own `%` tokens.
fn proxy_command(path: &Path) -> String {
    let s = path.to_string_lossy().replace('%', "%%");
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Runs `rock -d <command>` and returns the command's exit status (given
/// to the front already, if the terminal was given back early).
pub async fn run(mut options: LaunchOptions) -> Result<i32, LaunchError> {
    let parsed = match ParsedCommand::parse_any_release(&options.command) {
        Some(parsed) => parsed,
        None => {
            let ssh = cmdline::transport_ssh(&options.command, &System);
            ParsedCommand::parse(&options.command, resolve::openssh_version(&ssh)?)?
        }
    };
    let mut resolve_args: Vec<OsString> = Vec::new();
    if let Some(user) = &options.user {
        resolve_args.extend(["-l".into(), user.into()]);
    }
    resolve_args.extend(parsed.resolve_args().iter().cloned());
    let host = parsed.destination().host.clone();
    // Profiles match the destination as typed; the command line wins.
    let settings = Settings::resolve(&options.profiles, &host, &options.cli)?;
    let config = settings.engine();
    // rock's own rockd, hashed (tens of MiB) while ssh -G runs: its
    // installed name is a candidate, and it is what an install copies.
    let rockd_binary = settings.rockd_binary.value.clone();
    let local_rockd =
        tokio::task::spawn_blocking(move || LocalRockd::find(rockd_binary.as_deref()));
    let resolved = resolve::resolve(parsed.ssh_program(), &resolve_args, &host)?;
    let proxy = proxy_of(&host, &parsed, &resolved)?;
    let mode = settings.reconnect_mode(proxy.is_some());
    let rockd_listen = links::rockd_listen(mode, settings.rockd_listen.value);

    let request = BootRequest::random().map_err(|e| LaunchError::Local {
        what: "reading random bytes for the session key".into(),
        error: std::io::Error::other(e),
    })?;
    let ssh_command = plain_ssh_command(parsed.ssh_program(), &resolve_args, &host);
    let mut target = target_of(&host, ssh_command, &resolved);
    target.proxy = proxy;
    let mut args = rockd_args(&config);
    args.extend(links::rockd_listen_args(
        rockd_listen,
        settings.rockd_port_range.value,
    ));
    let plan = InstallPlan {
        policy: settings.auto_install.value,
        local: local_rockd.await.map_err(|e| LaunchError::Local {
            what: "looking for the local rockd".into(),
            error: std::io::Error::other(e),
        })?,
    };
    if let Err(e) = &plan.local {
        tracing::debug!("no rockd to copy: {e}");
    }
    let installed = plan.installed_path();
    let rockd = RockdCommand::with_installed(
        settings.rockd_path.value.as_deref(),
        installed.as_deref(),
        args,
    );
    let prompter = Arc::new(TerminalPrompter);
    // The session is listed by `rock status` ("starting") from now on,
    // while the bootstrap may wait at a password prompt.
    let dir = SessionDir::create(&request.id.to_string()[..16])?;
    let info = SessionInfo {
        checkpointable: options.checkpointable,
        ..SessionInfo::new(parsed.program().name(), &parsed.destination().to_string())
    };
    let mut control = Control::bind(dir.path(), Secrets::default(), info)
        .map_err(local("opening the control socket"))?;
    let boot = tokio::select! {
        boot = bootstrap::bootstrap_installing(&target, &rockd, &request, prompter, &plan) => boot?,
        // Only status requests come before the command runs; a proxy
        // request cannot, as no command has the helper's path yet.
        _ = control.next_proxy() => {
            return Err(LaunchError::Unsupported(
                "the control socket was asked for a connection before the command ran".into(),
            ));
        }
    };
    control.set_secrets(boot.secrets.clone());
    // The bootstrap has refused a rockd whose link protocols are not ours.
    let reached = match (&links_proxy(&target), boot.peer_addr) {
        (Some(proxy), _) => format!("{host} (through its {proxy})"),
        (None, Some(addr)) => addr.ip().to_string(),
        (None, None) => host.clone(),
    };
    tracing::info!(
        "rockd {} listening on port {} of {reached}; reconnect mode {mode}",
        boot.ready.version,
        boot.ready.port,
    );
    let dial_host = if settings.reconnect_to_localhost.value {
        "127.0.0.1".to_owned()
    } else {
        resolved.hostname.clone()
    };
    let links = LinkPlan {
        mode,
        target,
        dial_host,
        rockd_listen,
        localhost_flag: dir.path().join(crate::rundir::LOCALHOST_FLAG),
    };
    let session = Prepared {
        dir,
        control,
        request,
        boot,
        links,
        rockd,
    };
    relay_command(&mut options, &settings, &parsed, session).await
}

/// A session whose rockd has answered: what the command is run with.
struct Prepared {
    /// The private session directory (the helpers, the control socket).
    dir: SessionDir,
    /// Its control socket, already answering `rock status`.
    control: Control,
    /// The session's id and key.
    request: BootRequest,
    /// rockd's answer and what the user typed.
    boot: Bootstrapped,
    /// How links are made.
    links: LinkPlan,
    /// rockd's command line, for further connections.
    rockd: RockdCommand,
}

/// Starts the user's command with its transport redirected to us, and
/// relays until both are done — in the background, once the terminal is
/// given back (see [`job`]).
async fn relay_command(
    options: &mut LaunchOptions,
    settings: &Settings,
    parsed: &ParsedCommand,
    session: Prepared,
) -> Result<i32, LaunchError> {
    let Prepared {
        dir,
        mut control,
        request,
        boot,
        links,
        rockd,
    } = session;
    let config = settings.engine();
    let exe = std::env::current_exe().map_err(local("finding rock's own executable"))?;
    for name in [PROXY_NAME, ASKPASS_NAME] {
        std::os::unix::fs::symlink(&exe, dir.path().join(name))
            .map_err(local(format!("linking the {name} helper")))?;
    }
    let use_askpass = !boot.secrets.is_empty();
    // Reconnecting through ssh logs in again with what was typed, unasked.
    let mode = links.mode;
    // Each further ssh connection of the command gets a session of its own.
    let further = Arc::new(Further {
        links: links.clone(),
        rockd,
        config: config.clone(),
        secrets: boot.secrets.clone(),
    });
    let dialer = links.dialer(boot.ready.port, boot.secrets.clone());

    let Transported { argv, env } = parsed.with_transport(
        &proxy_command(&dir.path().join(PROXY_NAME)),
        options.user.as_deref(),
    );
    let mut command = Command::new(&argv[0]);
    command.args(&argv[1..]).envs(env);
    if use_askpass {
        command
            .env("SSH_ASKPASS", dir.path().join(ASKPASS_NAME))
            .env("SSH_ASKPASS_REQUIRE", "force");
    }
    let mut child = command
        .spawn()
        .map_err(local(format!("starting {}", argv[0].to_string_lossy())))?;

    // From here on rock handles the signals that concern the session: an
    // interrupt typed at the terminal is for the command; a hangup or a
    // kill ends the command, and so the session; the command's stops are
    // the job's.
    let mut signals = Signals::new().map_err(local("handling signals"))?;
    let mut user = UserCommand::new(child.id());
    let app = loop {
        tokio::select! {
            proxy = control.next_proxy() => {
                break proxy.map_err(local("accepting the ssh connection"))?;
            }
            status = child.wait() => {
                // The command never connected (e.g. `ssh -V`, or a usage error).
                return Ok(crate::exit_status::shell_code(status.map_err(local("waiting for the command"))?));
            }
            sig = signals.recv() => user.on_signal(sig, &options.job),
            () = user.overdue() => { let _ = child.start_kill(); }
        }
    };
    // Our end of the command's connection, to see whether anyone still
    // holds the other end once the command has exited. Let go of as soon
    // as the relay ends: the command must see its connection close then.
    let mut app_end = Some(
        app.as_fd()
            .try_clone_to_owned()
            .map_err(local("watching the ssh connection"))?,
    );

    let now = tokio::time::Instant::now().into_std();
    let session = Session::new(Role::Client, request.id, request.key, config, now)
        .map_err(|e| LaunchError::Unsupported(format!("invalid settings: {e}")))?;
    let relay = Relay::client(session, app, dialer, RelayOptions::default());
    let watch = relay.status();
    let (further_tx, mut further_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(control.serve(watch.clone(), further_tx));
    let (stop_further, stop_further_rx) = tokio::sync::watch::channel(false);
    let mut carried = tokio::task::JoinSet::new();
    // A checkpointable session holds no terminal of its own: a restore
    // puts the session on another terminal, and a descriptor opened by the
    // old one's name would follow that name, not the session.
    let notice = (!options.checkpointable)
        .then(|| sign_of_life(settings, parsed, watch.clone()))
        .flatten();
    let stop = Arc::new(tokio::sync::Notify::new());
    let stopped = stop.clone();
    let mut relay = tokio::spawn(relay.run(async move { stopped.notified().await }));

    let mut ended_first: Option<Ended> = None;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.map_err(local("waiting for the command"))?,
            result = &mut relay, if ended_first.is_none() => {
                app_end = None;
                // The session ended first: a relay error is ours to report
                // and stops the command; otherwise the command sees its
                // connection close and exits on its own.
                if let Ok(Err(e)) = result {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    return Err(match links::hint(mode, &e) {
                        Some(hint) => LaunchError::RelayWithHint { error: e, hint },
                        None => e.into(),
                    });
                }
                ended_first = Some(result);
            }
            Some(app) = further_rx.recv() => {
                let mut stop = stop_further_rx.clone();
                let shutdown = async move {
                    let _ = stop.wait_for(|stop| *stop).await;
                };
                carried.spawn(Arc::clone(&further).carry(app, shutdown));
            }
            Some(_) = carried.join_next(), if !carried.is_empty() => {}
            sig = signals.recv() => user.on_signal(sig, &options.job),
            () = user.overdue() => { let _ = child.start_kill(); }
        }
    };
    let code = crate::exit_status::shell_code(status);
    // `ssh -f`: the command forked after logging in and its parent, which
    // we started, exited 0, while the child went on in the background with
    // the connection. rock goes with it.
    let follows = code == 0
        && app_end
            .take()
            .is_some_and(|end| job::peer_open(end.as_fd()));
    let mut ending = Ending {
        relay,
        result: ended_first,
        carried,
        stop,
        stop_further,
        notice,
    };
    if follows {
        tracing::info!("the command went on in the background with its connection; so does rock");
        ending.leave(&mut options.job, code).await;
        if !ending.until_over(signals.ending()).await {
            ending.stop().await;
        }
        return Ok(code);
    }
    // The command is done; its end goes to rockd while the terminal waits,
    // but not for a link that is down, nor for long.
    let in_foreground = async {
        tokio::select! {
            () = tokio::time::sleep(options.exit_linger) => {}
            () = link_down(watch) => {}
            _ = signals.ending() => {}
        }
    };
    if !ending.until_over(in_foreground).await {
        if settings.close_timeout.value.is_zero() {
            // Nothing stays behind: rockd ends the session at its
            // suspension timeout.
            return Ok(code);
        }
        // The rest happens in the background, for at most close_timeout:
        // the terminal is the user's again.
        tracing::info!("delivering the end of the session in the background");
        ending.leave(&mut options.job, code).await;
        let bounded = async {
            tokio::select! {
                () = tokio::time::sleep(settings.close_timeout.value) => {}
                _ = signals.ending() => {}
            }
        };
        if !ending.until_over(bounded).await {
            ending.stop().await;
        }
        return Ok(code);
    }
    ending.quiet().await;
    match ending.result {
        Some(Ok(Ok(Outcome::Closed(reason)))) if reason != CloseReason::Finished => {
            eprintln!("rock: {}", ended(&reason));
        }
        // Killed by a signal (the user's ^C at a prompt) is not a refusal.
        Some(Ok(Ok(Outcome::Finished { note })))
            if note == boot::NO_LOGIN_NOTE && status.code().is_some_and(|c| c != 0) =>
        {
            eprintln!("rock: {}", no_login(&parsed.destination().host));
        }
        Some(Ok(Err(e))) => match links::hint(mode, &e) {
            // The command has ended with its own status, which rock keeps:
            // this is a report, not rock's failure.
            Some(hint) => eprintln!("rock: {}\n  {hint}", crate::chain::chain(&e)),
            None => eprintln!("rock: {}", crate::chain::chain(&e)),
        },
        _ => {}
    }
    Ok(crate::exit_status::shell_code(status))
}

/// How a relay task ended.
type Ended = Result<Result<Outcome, RelayError>, tokio::task::JoinError>;

/// What is left to finish once the command has exited: the session's
/// relay, the further connections' and the sign of life.
struct Ending {
    relay: tokio::task::JoinHandle<Result<Outcome, RelayError>>,
    /// How the relay ended, once it has.
    result: Option<Ended>,
    carried: tokio::task::JoinSet<()>,
    /// Closes the session (aborted) when notified.
    stop: Arc<tokio::sync::Notify>,
    /// Stops the further connections' sessions.
    stop_further: tokio::sync::watch::Sender<bool>,
    notice: Option<tokio::task::JoinHandle<()>>,
}

impl Ending {
    /// Waits until every session has ended (true), or `until` completes
    /// first (false).
    async fn until_over(&mut self, until: impl Future) -> bool {
        let mut until = std::pin::pin!(until);
        loop {
            if self.result.is_some() && self.carried.is_empty() {
                return true;
            }
            tokio::select! {
                result = &mut self.relay, if self.result.is_none() => self.result = Some(result),
                Some(_) = self.carried.join_next(), if !self.carried.is_empty() => {}
                _ = &mut until => return false,
            }
        }
    }

    /// Closes every session still open (aborted); each tells rockd if a
    /// link comes up within its farewell time.
    async fn stop(&mut self) {
        self.stop.notify_one();
        let _ = self.stop_further.send(true);
        let farewell = RelayOptions::default().farewell_linger + FAREWELL_SLACK;
        let forever = std::future::pending::<()>();
        let _ = tokio::time::timeout(farewell, self.until_over(forever)).await;
    }

    /// Ends the sign of life, restoring the terminal's title.
    async fn quiet(&mut self) {
        if let Some(notice) = self.notice.take() {
            notice.abort();
            let _ = notice.await;
        }
    }

    /// Gives the terminal back, the front exiting with `code` (see
    /// [`job`]); this process goes on in the background.
    async fn leave(&mut self, job: &mut Job, code: i32) {
        self.quiet().await;
        if let Err(e) = job.release(u8::try_from(code).unwrap_or(255)) {
            tracing::warn!("cannot give the terminal back: {e}");
        }
    }
}

/// Beyond a relay's own farewell time: the dial under way when it ends.
const FAREWELL_SLACK: Duration = Duration::from_secs(3);

/// Completes when the session's link is down (or never, once the relay
/// is over: its end is noticed elsewhere).
async fn link_down(mut watch: StatusWatch) {
    let down = watch
        .wait_for(|s| matches!(s.state, State::Suspended { .. }))
        .await;
    if down.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Shows a suspended session in the terminal's title (see
/// [`notice`]), unless the host's profile says `sign_of_life = false`.
fn sign_of_life(
    settings: &Settings,
    parsed: &ParsedCommand,
    watch: StatusWatch,
) -> Option<tokio::task::JoinHandle<()>> {
    let host = &parsed.destination().host;
    let tty = settings
        .sign_of_life
        .value
        .then(notice::terminal)
        .flatten()?;
    Some(tokio::spawn(notice::run(host.clone(), watch, tty)))
}

/// Says why the login through rockd was likely refused when rock's own
/// login succeeded (rock.1, "What the server sees").
fn no_login(host: &str) -> String {
    format!(
        "no login completed through rockd on {host}, although rock's own login there \
         succeeded.\n  sshd sees the login through rockd come from {host} itself (127.0.0.1, \
         ::1 or its own address), not from this machine, so address-based rules on the server \
         are the likely cause: from= in authorized_keys, Match Address, or AllowUsers/DenyUsers \
         user@host in sshd_config. Allow the server's own addresses there (see \"What the \
         server sees\" in rock(1))."
    )
}

/// Says, for the user, why a session ended before the command did.
fn ended(reason: &CloseReason) -> String {
    match reason {
        CloseReason::Finished => "the session finished".into(),
        CloseReason::SuspendTimeout => {
            "the link to rockd stayed down for the whole suspension timeout; the session was given up"
                .into()
        }
        CloseReason::Peer { code, message } if message.is_empty() => {
            format!("rockd ended the session ({code})")
        }
        CloseReason::Peer { code, message } => format!("rockd ended the session ({code}: {message})"),
        CloseReason::Local { code, message } => format!("the session was closed ({code}: {message})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::resolve::OpensshVersion;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_plain_ssh_advice_keeps_the_options_that_say_where_keys_are() {
        // Regression: the unknown-host-key advice was `ssh work`, which
        // recorded the key in ~/.ssh/known_hosts, where rock did not look.
        let argv: Vec<OsString> = [
            "ssh",
            "-F",
            "/home/u/my config",
            "-o",
            "UserKnownHostsFile=/tmp/kh",
            "-v",
            "bob@work",
            "uptime",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let parsed =
            ParsedCommand::parse(&argv, OpensshVersion { major: 9, minor: 2 }).expect("parses");
        let command = plain_ssh_command(
            parsed.ssh_program(),
            parsed.resolve_args(),
            &parsed.destination().host,
        );
        assert_eq!(
            command,
            words(&[
                "ssh",
                "-F",
                "/home/u/my config",
                "-o",
                "UserKnownHostsFile=/tmp/kh",
                "-l",
                "bob",
                "work"
            ])
        );
    }

    #[test]
    fn a_host_like_an_option_follows_a_double_dash() {
        let command = plain_ssh_command(OsStr::new("ssh"), &[], "-odd");
        assert_eq!(command, words(&["ssh", "--", "-odd"]));
    }
}
