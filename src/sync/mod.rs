//! The sync engine ([`engine::Engine::run_once`]) and the `jira-sync sync` command around it.

pub mod engine;
pub mod lease;
pub mod progress;
pub mod scheduler;

use crate::config::Settings;
use crate::store::Store;
use crate::streams::StreamKind;
use engine::{Engine, OutcomeStatus, StreamOutcome};
use std::process::ExitCode;
use std::sync::Arc;
use tokio::task::JoinSet;

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
pub async fn command(settings: Settings, args: SyncArgs) -> anyhow::Result<ExitCode> {
    if !args.once {
        anyhow::bail!(
            "`jira-sync sync` needs --once (run the streams once and exit); the daemon that \
             keeps syncing on a schedule is `jira-sync run`"
        );
    }
    let mut streams = select_streams(&settings, &args.stream)?;
    let store = crate::store::connect_from_settings(&settings).await?;
    store.migrate().await?;
    let engine = Engine::new(&settings, store).await?;
    let census_wanted =
        args.census || (!args.no_census && crate::streams::census::due(engine.context()).await?);
    if streams.contains(&StreamKind::Issues) && census_wanted {
        streams.push(StreamKind::Census);
        streams.dedup();
    }
    let outcomes = run_streams(Arc::new(engine), &streams, args.full, !args.no_progress).await;
    for outcome in &outcomes {
        println!("{}", outcome.summary());
    }
    Ok(exit_code(&outcomes))
}

/// Runs `streams` once and returns what each did, in the order of [`StreamKind`].
pub async fn sync_once(
    settings: &Settings,
    store: Store,
    streams: &[StreamKind],
    full: bool,
    interactive: bool,
) -> anyhow::Result<Vec<StreamOutcome>> {
    let engine = Engine::new(settings, store).await?;
    Ok(run_streams(Arc::new(engine), streams, full, interactive).await)
}

/// Runs `streams` once, all at the same time, and returns their outcomes in the order of
/// [`StreamKind`] (whatever order they ended in).
///
/// The streams read different endpoints and write different tables, so nothing orders them
/// but the census: it runs once the issues stream has succeeded, as in the daemon (against a
/// table the issues run left partial it would only fetch again what that run could not). Every stream goes through the engine's one client, so the limiter and the
/// `max_in_flight` cap are shared: running them together fills the slots that one stream's
/// chain of dependent requests (user pages, audit pages, project listings) leaves idle, rather
/// than sending more than the site allows. Each stream runs on its own task, so decoding
/// pages of one does not hold up the others.
pub async fn run_streams(
    engine: Arc<Engine>,
    streams: &[StreamKind],
    full: bool,
    interactive: bool,
) -> Vec<StreamOutcome> {
    let census = streams.contains(&StreamKind::Census);
    let issues = streams.contains(&StreamKind::Issues);
    let mut tasks = JoinSet::new();
    for &stream in streams {
        if stream == StreamKind::Census && issues {
            continue;
        }
        let engine = engine.clone();
        tasks.spawn(async move {
            let mut ended = vec![engine.run_once(stream, full, interactive).await];
            if stream == StreamKind::Issues && census {
                ended.push(match &ended[0].status {
                    OutcomeStatus::Succeeded => {
                        engine.run_once(StreamKind::Census, full, interactive).await
                    }
                    _ => census_not_run(),
                });
            }
            ended
        });
    }
    let mut outcomes = Vec::new();
    while let Some(ended) = tasks.join_next().await {
        match ended {
            Ok(ended) => outcomes.extend(ended),
            // A panic is a bug; it is not a result to report as a stream's outcome.
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(err) => panic!("a stream task was cancelled: {err}"),
        }
    }
    outcomes.sort_by_key(|outcome| outcome.stream);
    outcomes
}

/// The outcome of a census left out because the issues stream did not succeed.
fn census_not_run() -> StreamOutcome {
    StreamOutcome {
        stream: StreamKind::Census,
        mode: crate::streams::Mode::Full,
        status: OutcomeStatus::Skipped(
            "the issues stream did not succeed; the census runs after one that does".to_owned(),
        ),
        rows_seen: 0,
        rows_written: 0,
        requests: 0,
        duration: std::time::Duration::ZERO,
        http: Default::default(),
    }
}

/// The streams named by `--stream`, or those enabled in `[sync]`, in dependency order.
pub fn select_streams(settings: &Settings, names: &[String]) -> anyhow::Result<Vec<StreamKind>> {
    let mut streams = if names.is_empty() {
        StreamKind::ALL
            .into_iter()
            .chain([StreamKind::OrgEvents])
            .filter(|s| s.enabled_in(&settings.sync))
            .collect::<Vec<_>>()
    } else {
        names
            .iter()
            .filter(|n| !n.trim().is_empty())
            .map(|n| {
                StreamKind::parse(n).ok_or_else(|| {
                    anyhow::anyhow!(
                        "unknown stream `{n}` in --stream: use projects, issues, users, audit \
                         or org_events"
                    )
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    streams.sort();
    streams.dedup();
    if streams.contains(&StreamKind::OrgEvents) && !settings.jira.org_events_configured() {
        return Err(crate::config::ConfigError::Invalid {
            key: "jira.org_api_key".to_owned(),
            message: "is not set: the org_events stream needs jira.org_id and an organization \
                      API key (jira.org_api_key or jira.org_api_key_file)"
                .to_owned(),
        }
        .into());
    }
    if streams.is_empty() {
        anyhow::bail!("no stream is enabled: enable one in [sync] or name it with --stream");
    }
    Ok(streams)
}

/// 0 when every stream succeeded or was skipped; else the code of the first failure.
pub fn exit_code(outcomes: &[StreamOutcome]) -> ExitCode {
    for outcome in outcomes {
        if let OutcomeStatus::Failed(err) = &outcome.status {
            return ExitCode::from(crate::exit::code_for(err).max(1));
        }
    }
    ExitCode::SUCCESS
}
