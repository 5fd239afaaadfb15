//! A command's ssh connections after its first. `scp host:a host:b .` runs
//! one ssh per remote source, one after the other, and each is carried by
//! a rock session of its own: its own bootstrap, its own rockd, its own
//! links, made exactly as the first session's.
//!
//! The bootstrap is answered from what the user typed for the first one
//! ([`ReplayPrompter`]) and never asks again: a host key or a one-time
//! code it would need makes that one connection fail, with a message, and
//! the command sees it closed as ssh would see a refused connection.
//!
//! The first connection's session is the one `rock status` shows and whose
//! end rock reports; these report only their failures.

use std::future::Future;
use std::sync::Arc;

use rock_proto::{Config, Role, Session};
use tokio::net::UnixStream;

use crate::boot::BootRequest;
use crate::redirect::links::LinkPlan;
use crate::relay::{Outcome, Relay, RelayOptions};
use crate::ssh::auth::Secrets;
use crate::ssh::bootstrap::{self, RockdCommand};
use crate::ssh::tunnel::ReplayPrompter;

/// Why a further connection could not be carried.
#[derive(Debug, thiserror::Error)]
pub enum FurtherError {
    /// No session key could be made.
    #[error("reading random bytes for a session key")]
    Random(#[source] getrandom::Error),
    /// Its bootstrap failed.
    #[error(transparent)]
    Bootstrap(#[from] crate::ssh::bootstrap::BootstrapError),
    /// The engine refused the settings (the first session took them).
    #[error("invalid settings")]
    Settings(#[source] rock_proto::ConfigError),
    /// Its link to rockd failed.
    #[error("its link to rockd failed")]
    Relay(#[from] crate::relay::RelayError),
}

/// What a further connection's session is made from: the first's.
pub struct Further {
    /// How the first session's links are made (and its bootstrap target).
    pub links: LinkPlan,
    /// rockd's command line, as the first bootstrap ran it.
    pub rockd: RockdCommand,
    /// The engine's settings.
    pub config: Config,
    /// What the user typed for the first bootstrap.
    pub secrets: Secrets,
}

impl Further {
    /// Carries `app`, one more ssh connection of the command, until it
    /// ends, or until `shutdown` completes. Failures are reported on
    /// stderr; `app` is then dropped, which the command sees as a closed
    /// connection.
    pub async fn carry(self: Arc<Self>, app: UnixStream, shutdown: impl Future<Output = ()>) {
        let host = self.links.target.hostname.clone();
        if let Err(e) = self.run(app, shutdown).await {
            eprintln!(
                "rock: a further ssh connection to {host} could not be carried: {}",
                crate::chain::chain(&e)
            );
        }
    }

    async fn run(
        &self,
        app: UnixStream,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), FurtherError> {
        let request = BootRequest::random().map_err(FurtherError::Random)?;
        let prompter = Arc::new(ReplayPrompter::new(self.secrets.clone()));
        // The bootstrap refuses a rockd whose link protocols are not ours.
        let boot =
            bootstrap::bootstrap(&self.links.target, &self.rockd, &request, prompter).await?;
        tracing::info!(
            "a further ssh connection: rockd listening on port {}",
            boot.ready.port
        );
        let now = tokio::time::Instant::now().into_std();
        let session = Session::new(
            Role::Client,
            request.id,
            request.key,
            self.config.clone(),
            now,
        )
        .map_err(FurtherError::Settings)?;
        let dialer = self
            .links
            .clone()
            .dialer(boot.ready.port, self.secrets.clone());
        let relay = Relay::client(session, app, dialer, RelayOptions::default());
        match relay.run(shutdown).await {
            Ok(Outcome::Finished { .. }) => Ok(()),
            Ok(Outcome::Closed(reason)) => {
                tracing::info!(?reason, "a further connection's session closed");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}
