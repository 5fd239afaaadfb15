//! How rock reaches rockd for each new link: the reconnect modes.
//!
//! * `direct` (the default) — a TCP connection to rockd's own port on the
//!   host (or 127.0.0.1 under `-l`).
//! * `ssh` — a fresh SSH connection to the host's sshd and a direct-tcpip
//!   channel to rockd, which then listens on 127.0.0.1 only
//!   ([`crate::ssh::tunnel`]). Only the ssh port needs to be reachable.
//! * `auto` — direct while rockd's port answers, ssh when it does not;
//!   [`AutoDialer`] holds the exact rule.
//!
//! This module turns the mode, the bootstrap's target and rockd's answer
//! into the relay's [`Dialer`], and the profile's rockd settings into
//! rockd's arguments.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::connect::AddressFamily;
use crate::relay::{DialFuture, Dialer, RelayError, TcpDialer};
use crate::settings::ReconnectMode;
use crate::ssh::auth::Secrets;
use crate::ssh::target::BootstrapTarget;
use crate::ssh::tunnel::SshDialer;

/// Bound on connecting a TCP socket for one attempt, direct or ssh: a
/// blackholed SYN costs this long, and the next attempt starts at once.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// In `auto` mode, how long a direct link may take over its handshake
/// before its route counts as failed: a round trip or two where rockd's
/// port really answers, with room for a lost segment.
pub const DIRECT_HANDSHAKE_LIMIT: Duration = Duration::from_secs(3);

/// In `auto` mode, once direct links have worked in a session, how many
/// direct attempts in a row must fail before one goes on through ssh.
pub const DIRECT_FAILURES_BEFORE_SSH: u32 = 3;

/// Where rockd listens in `mode`: loopback only for `ssh` (links come
/// through sshd on the same host), else the configured address, if any.
pub fn rockd_listen(mode: ReconnectMode, configured: Option<IpAddr>) -> Option<IpAddr> {
    match mode {
        ReconnectMode::Ssh => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        _ => configured,
    }
}

/// rockd's arguments for its listen address and port range (rockd's own
/// defaults when `None`).
pub fn rockd_listen_args(listen: Option<IpAddr>, port_range: Option<(u16, u16)>) -> Vec<String> {
    let mut args = Vec::new();
    if let Some(ip) = listen {
        // rockd takes a socket address; the port is chosen by the range.
        args.push(format!("--listen={}", std::net::SocketAddr::new(ip, 0)));
    }
    if let Some((first, last)) = port_range {
        args.push(format!("--port-range={first}-{last}"));
    }
    args
}

/// Everything needed to make links once rockd has answered.
#[derive(Debug, Clone)]
pub struct LinkPlan {
    /// The reconnect mode.
    pub mode: ReconnectMode,
    /// How the bootstrap reached and logged in to the host.
    pub target: BootstrapTarget,
    /// The host to dial: the host name, or 127.0.0.1 under `-l`.
    pub dial_host: String,
    /// The address rockd was told to listen on, if any.
    pub rockd_listen: Option<IpAddr>,
    /// Direct links go to 127.0.0.1 while this file exists
    /// ([`crate::rundir::LOCALHOST_FLAG`] in the session's directory).
    pub localhost_flag: std::path::PathBuf,
}

impl LinkPlan {
    /// The dialer for rockd on `rockd_port`. `secrets` are what the user
    /// typed during the bootstrap; only the ssh route uses them.
    pub fn dialer(self, rockd_port: u16, secrets: Secrets) -> Box<dyn Dialer> {
        // The host's AddressFamily, as for every connection to it; under
        // `-l` the address is 127.0.0.1, whatever the host's family.
        let family = match self.dial_host == self.target.hostname {
            true => self.target.address_family,
            false => AddressFamily::Any,
        };
        let direct = TcpDialer::new(self.dial_host.clone(), rockd_port, CONNECT_TIMEOUT)
            .with_family(family)
            .localhost_while(self.localhost_flag.clone());
        // sshd reaches rockd on the host itself: at its listen address if
        // that is a specific one, else on loopback.
        let rockd_host = match self.rockd_listen {
            Some(ip) if !ip.is_unspecified() => ip.to_string(),
            _ => Ipv4Addr::LOCALHOST.to_string(),
        };
        let ssh = || {
            SshDialer::new(
                self.target,
                self.dial_host.clone(),
                rockd_host,
                rockd_port,
                secrets,
            )
            .with_timeouts(CONNECT_TIMEOUT, crate::ssh::tunnel::SETUP_TIMEOUT)
        };
        match self.mode {
            ReconnectMode::Direct => Box::new(direct),
            ReconnectMode::Ssh => Box::new(ssh()),
            ReconnectMode::Auto => Box::new(AutoDialer::new(direct, ssh())),
        }
    }
}

/// Advice to add when the relay failed in `mode`, if there is any.
pub fn hint(mode: ReconnectMode, error: &RelayError) -> Option<&'static str> {
    match (mode, error) {
        (ReconnectMode::Direct, RelayError::Unreachable { .. }) => Some(
            "rockd's port may be blocked by a firewall: `rock --reconnect ssh` (or \
             reconnect = \"ssh\" in the host's profile) reaches rockd through the ssh port",
        ),
        _ => None,
    }
}

/// `auto` mode: direct links while rockd's port answers, ssh when not.
///
/// The rule, per attempt:
/// 1. While rockd's port is known to be *silent* (see below), attempts go
///    through ssh only, until the host's network changes.
/// 2. Once a link has been made through ssh, later attempts go through
///    ssh, and rockd's port is dialled beside it at the same time: the
///    first of the two made becomes the link (direct when both are). A
///    direct link is a bare TCP connect, made long before an SSH login
///    completes. So a session that moved to ssh on a network that blocked
///    rockd's port moves back at its first reconnect on a network that
///    does not, and a port still blocked costs nothing but a SYN.
/// 3. Otherwise the attempt dials rockd's port. If that works, it is the
///    link. If it fails (refused, timed out, unreachable...), the same
///    attempt goes on through ssh when no direct link has ever worked in
///    this session, or when this is the [`DIRECT_FAILURES_BEFORE_SSH`]th
///    direct failure in a row; otherwise it fails, and the relay retries
///    as usual.
///
/// A direct link works when its handshake completes. One whose TCP
/// connection was made but whose handshake did not complete within
/// [`DIRECT_HANDSHAKE_LIMIT`] (a middlebox that accepts any connection and
/// passes nothing, say) counts as a direct failure too; and when that
/// failure would send the attempt on through ssh, or ssh links were
/// already known to work, rockd's port is marked silent (rule 1).
///
/// So a blocked port costs the first link one failed connect (at most
/// [`CONNECT_TIMEOUT`]), a silent one [`DIRECT_HANDSHAKE_LIMIT`], and a port
/// that stops answering later costs a few attempts before the session
/// moves to ssh.
pub struct AutoDialer {
    direct: TcpDialer,
    ssh: SshDialer,
    state: Arc<Mutex<AutoState>>,
}

impl AutoDialer {
    /// Tries `direct`, falling back to `ssh`.
    pub fn new(direct: TcpDialer, ssh: SshDialer) -> AutoDialer {
        AutoDialer {
            direct,
            ssh,
            state: Arc::default(),
        }
    }
}

/// The two routes to rockd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Direct,
    Ssh,
}

/// What [`AutoDialer`] has learnt in this session.
#[derive(Debug, Default)]
struct AutoState {
    /// The last link was made through ssh: race ssh and direct.
    through_ssh: bool,
    /// A direct link completed its handshake at least once.
    direct_worked: bool,
    /// Direct failures in a row.
    direct_failures: u32,
    /// rockd's port accepts connections that never complete a handshake:
    /// don't dial it until the network changes.
    direct_silent: bool,
    /// The route of the last link made, until its handshake ends.
    pending: Option<Route>,
}

impl AutoState {
    /// A direct attempt failed; whether to go on through ssh now.
    fn direct_failed(&mut self) -> bool {
        self.direct_failures += 1;
        !self.direct_worked || self.direct_failures >= DIRECT_FAILURES_BEFORE_SSH
    }

    /// A link was made through `route`; its handshake starts.
    fn made(&mut self, route: Route) {
        self.pending = Some(route);
        if route == Route::Ssh {
            self.through_ssh = true;
        }
    }

    /// The last link made finished its handshake, or failed before.
    fn handshake_done(&mut self, established: bool) {
        match (self.pending.take(), established) {
            (Some(Route::Direct), true) => {
                self.direct_worked = true;
                self.direct_failures = 0;
                self.through_ssh = false;
            }
            (Some(Route::Direct), false) => {
                // Connected, yet nothing came through.
                if self.direct_failed() || self.through_ssh {
                    self.direct_silent = true;
                }
            }
            (Some(Route::Ssh), _) | (None, _) => {}
        }
    }

    fn network_changed(&mut self) {
        self.direct_silent = false;
        self.direct_failures = 0;
        self.pending = None;
    }
}

fn update<R>(state: &Mutex<AutoState>, f: impl FnOnce(&mut AutoState) -> R) -> R {
    // A poisoned lock only means a panic elsewhere; the state is plain data.
    let mut guard = state.lock().unwrap_or_else(|p| p.into_inner());
    f(&mut guard)
}

impl Dialer for AutoDialer {
    fn dial(&mut self) -> DialFuture {
        let state = Arc::clone(&self.state);
        let ssh = self.ssh.dial();
        let target = self.direct.describe();
        let (silent, through_ssh) = update(&state, |s| (s.direct_silent, s.through_ssh));
        if silent {
            return Box::pin(async move {
                let link = ssh.await?;
                update(&state, |s| s.made(Route::Ssh));
                Ok(link)
            });
        }
        let direct = self.direct.dial();
        if through_ssh {
            return Box::pin(race(direct, ssh, state, target));
        }
        Box::pin(async move {
            let direct_error = match direct.await {
                Ok(link) => {
                    update(&state, |s| s.made(Route::Direct));
                    return Ok(link);
                }
                Err(e) => e,
            };
            if !update(&state, AutoState::direct_failed) {
                return Err(direct_error);
            }
            tracing::debug!("rockd's port {target}: {direct_error}; trying through ssh");
            match ssh.await {
                Ok(link) => {
                    tracing::info!(
                        "rockd's port {target} cannot be reached ({direct_error}); \
                         reconnecting through ssh from now on"
                    );
                    update(&state, |s| s.made(Route::Ssh));
                    Ok(link)
                }
                Err(ssh_error) => Err(both_failed(&target, direct_error, ssh_error)),
            }
        })
    }

    fn describe(&self) -> String {
        format!("{}, or {}", self.direct.describe(), self.ssh.describe())
    }

    fn handshake_done(&mut self, established: bool) {
        let target = self.direct.describe();
        update(&self.state, |s| {
            let was_silent = s.direct_silent;
            s.handshake_done(established);
            if s.direct_silent && !was_silent {
                tracing::info!(
                    "rockd's port {target} accepts connections but nothing comes through; \
                     reconnecting through ssh until the network changes"
                );
            }
        });
    }

    fn handshake_limit(&self) -> Option<Duration> {
        let direct = update(&self.state, |s| s.pending == Some(Route::Direct));
        direct.then_some(DIRECT_HANDSHAKE_LIMIT)
    }

    fn network_changed(&mut self) {
        update(&self.state, AutoState::network_changed);
    }
}

/// Rule 2 of [`AutoDialer`]: ssh and direct at once; the first link
/// made wins, direct if both are ready. An ssh error is the attempt's
/// error; a direct one only means waiting for ssh.
async fn race(
    direct: DialFuture,
    ssh: DialFuture,
    state: Arc<Mutex<AutoState>>,
    target: String,
) -> io::Result<crate::relay::BoxLink> {
    let (mut direct, mut ssh) = (direct, ssh);
    let mut direct_live = true;
    loop {
        tokio::select! {
            biased;
            made = &mut direct, if direct_live => match made {
                Ok(link) => {
                    tracing::info!("rockd's port {target} answers again; reconnecting directly");
                    update(&state, |s| s.made(Route::Direct));
                    return Ok(link);
                }
                Err(e) => {
                    tracing::debug!("rockd's port {target}, beside ssh: {e}");
                    direct_live = false;
                }
            },
            made = &mut ssh => {
                let link = made?;
                update(&state, |s| s.made(Route::Ssh));
                return Ok(link);
            }
        }
    }
}

/// Both routes failed: one error naming both, of the ssh one's kind (so a
/// timed-out ssh attempt is retried at once).
fn both_failed(target: &str, direct: io::Error, ssh: io::Error) -> io::Error {
    io::Error::new(
        ssh.kind(),
        format!("{target}: {direct}; through ssh: {ssh}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_mode_forces_rockd_onto_loopback() {
        let public: IpAddr = "0.0.0.0".parse().unwrap();
        assert_eq!(
            rockd_listen(ReconnectMode::Ssh, Some(public)),
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST))
        );
        assert_eq!(
            rockd_listen(ReconnectMode::Auto, Some(public)),
            Some(public)
        );
        assert_eq!(rockd_listen(ReconnectMode::Direct, None), None);
        assert_eq!(
            rockd_listen_args(Some("::1".parse().unwrap()), Some((60000, 60010))),
            ["--listen=[::1]:0", "--port-range=60000-60010"]
        );
        assert!(rockd_listen_args(None, None).is_empty());
    }

    #[test]
    fn auto_falls_back_at_once_before_any_direct_link() {
        let mut s = AutoState::default();
        assert!(s.direct_failed());
    }

    /// A direct link made and established.
    fn direct_ok(s: &mut AutoState) {
        s.made(Route::Direct);
        s.handshake_done(true);
    }

    #[test]
    fn auto_falls_back_after_repeated_failures_once_direct_worked() {
        let mut s = AutoState::default();
        direct_ok(&mut s);
        for _ in 1..DIRECT_FAILURES_BEFORE_SSH {
            assert!(!s.direct_failed());
        }
        assert!(s.direct_failed());
        // A success in between starts the count again.
        direct_ok(&mut s);
        assert!(!s.direct_failed());
    }

    #[test]
    fn a_connect_alone_is_not_a_direct_link_that_worked() {
        let mut s = AutoState::default();
        s.made(Route::Direct);
        assert!(!s.direct_worked);
        // Its handshake never completed: the port is silent at once, as
        // no direct link ever worked.
        s.handshake_done(false);
        assert!(s.direct_silent);
        assert!(!s.direct_worked);
    }

    #[test]
    fn a_silent_port_is_given_up_after_repeated_failures_once_direct_worked() {
        let mut s = AutoState::default();
        direct_ok(&mut s);
        for _ in 1..DIRECT_FAILURES_BEFORE_SSH {
            s.made(Route::Direct);
            s.handshake_done(false);
            assert!(!s.direct_silent);
        }
        s.made(Route::Direct);
        s.handshake_done(false);
        assert!(s.direct_silent);
        // A new network may not have the middlebox: direct is tried again.
        s.network_changed();
        assert!(!s.direct_silent);
        assert_eq!(s.direct_failures, 0);
    }

    #[test]
    fn a_direct_link_won_from_ssh_that_stays_silent_returns_to_ssh_at_once() {
        let mut s = AutoState::default();
        direct_ok(&mut s);
        s.made(Route::Ssh);
        assert!(s.through_ssh);
        // The race's direct connect won, then carried nothing.
        s.made(Route::Direct);
        s.handshake_done(false);
        assert!(s.direct_silent);
        assert!(s.through_ssh, "ssh still works");
    }

    #[test]
    fn a_direct_link_that_works_ends_the_race() {
        let mut s = AutoState::default();
        s.made(Route::Ssh);
        s.handshake_done(true);
        assert!(s.through_ssh);
        direct_ok(&mut s);
        assert!(!s.through_ssh);
        assert!(s.direct_worked);
    }
}
