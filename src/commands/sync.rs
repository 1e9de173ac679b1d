//! `jira-sync sync --once`: migrate, then run the selected streams once, all at the same time
//! ([`crate::engine::runner`]), and print a line per stream.

use super::bars::Bars;
use crate::daemon::lease::Lease;
use crate::engine::runner::{run_streams, select};
use crate::engine::{Engine, OutcomeStatus, StreamOutcome};
use crate::settings::Settings;
use crate::store::Store;
use std::process::ExitCode;
use std::sync::Arc;

/// Arguments of `jira-sync sync`.
#[derive(Debug, Clone, clap::Args)]
pub struct SyncArgs {
    /// Run the selected streams once and exit.
    #[arg(long)]
    pub once: bool,
    /// Full sync even where a stream has a checkpoint.
    #[arg(long)]
    pub full: bool,
    /// Comma-separated streams: projects,issues,users,audit,org_events (default: those enabled
    /// in [sync]).
    #[arg(long, value_delimiter = ',')]
    pub stream: Vec<String>,
    /// Run the delete census of issues now, even if it is not due (`sync.census_interval_secs`).
    #[arg(long, conflicts_with = "no_census")]
    pub census: bool,
    /// Skip the delete census even if it is due.
    #[arg(long)]
    pub no_census: bool,
    /// No progress bars, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
}

/// `jira-sync sync`.
pub async fn command(settings: Settings, args: SyncArgs, bars: &Bars) -> anyhow::Result<ExitCode> {
    if !args.once {
        anyhow::bail!(
            "`jira-sync sync` needs --once (run the streams once and exit); the daemon that \
             keeps syncing on a schedule is `jira-sync run`"
        );
    }
    let store = Store::open(&settings.database).await?;
    store.migrate().await?;
    store
        .install_compat(&settings.database.fivetran_schema, &settings.site())
        .await?;
    // One writer per site: beside a daemon (or another one-shot run) this one does not start.
    let site = settings.site();
    let lease = Lease::try_acquire(&settings.database, &site, "sync --once").await?;
    store.fence(&site, lease.epoch);
    let engine = Engine::new(&settings, store, bars.observer(!args.no_progress)).await?;
    let mut streams = select(engine.registry(), &args.stream)?;
    // Follow-ups (the census) of a selected stream run after it, when due or asked for.
    let mut followers = Vec::new();
    for stream in engine.registry().iter() {
        let Some(leader) = stream.schedule().follows else {
            continue;
        };
        let wanted = args.census
            || (!args.no_census
                && stream.schedule().enabled
                && stream.due(engine.context()).await?);
        if streams.contains(&leader) && wanted && !streams.contains(&stream.name()) {
            followers.push(stream.name());
        }
    }
    streams.extend(followers);
    let outcomes = run_streams(Arc::new(engine), &streams, args.full).await;
    lease.release().await;
    for outcome in &outcomes {
        println!("{}", outcome.summary());
    }
    Ok(exit_code(&outcomes))
}

/// 0 when every stream succeeded or was skipped; else the code of the first failure.
pub fn exit_code(outcomes: &[StreamOutcome]) -> ExitCode {
    for outcome in outcomes {
        if let OutcomeStatus::Failed(err) = &outcome.status {
            return ExitCode::from(super::exit::code_for(err).max(1));
        }
    }
    ExitCode::SUCCESS
}
