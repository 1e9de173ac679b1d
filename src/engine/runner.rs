//! Running several streams once, all at the same time: `jira-sync sync --once`, the demo, and
//! the tests. A follow-up stream ([`crate::streams::Schedule::follows`], the census) runs after
//! its leader, once the leader has succeeded.

use super::{Engine, OutcomeStatus, StreamOutcome};
use crate::settings::Settings;
use crate::store::Store;
use crate::streams::Registry;
use std::sync::Arc;
use tokio::task::JoinSet;

/// The streams named (`--stream`; aliases accepted), or every enabled stream that is not a
/// follow-up; in the registry's order. A stream named explicitly runs even where `[sync]`
/// disables it, unless what it needs is not configured.
pub fn select(registry: &Registry, names: &[String]) -> anyhow::Result<Vec<&'static str>> {
    let mut selected: Vec<&'static str> = Vec::new();
    if names.iter().all(|n| n.trim().is_empty()) {
        selected.extend(
            registry
                .iter()
                .filter(|s| s.schedule().enabled && s.schedule().follows.is_none())
                .map(|s| s.name()),
        );
    } else {
        for name in names.iter().filter(|n| !n.trim().is_empty()) {
            let stream = registry.get(name).ok_or_else(|| {
                anyhow::anyhow!(
                    "unknown stream `{name}` in --stream: use {}",
                    registry.names().join(", ")
                )
            })?;
            stream.configured()?;
            selected.push(stream.name());
        }
    }
    let order = registry.names();
    selected.sort_by_key(|name| order.iter().position(|n| n == name));
    selected.dedup();
    if selected.is_empty() {
        anyhow::bail!("no stream is enabled: enable one in [sync] or name it with --stream");
    }
    Ok(selected)
}

/// Runs `streams` once (see [`run_streams`]) on an engine built for the purpose.
pub async fn sync_once(
    settings: &Settings,
    store: Store,
    streams: &[&'static str],
    full: bool,
    observer: Arc<dyn super::progress::Observer>,
) -> anyhow::Result<Vec<StreamOutcome>> {
    let engine = Engine::new(settings, store, observer).await?;
    Ok(run_streams(Arc::new(engine), streams, full).await)
}

/// Runs `streams` once, all at the same time, and returns their outcomes in the registry's
/// order (whatever order they ended in).
///
/// The streams read different endpoints and write different tables, so nothing orders them
/// but follow-ups: the census runs once the issues stream has succeeded, as in the daemon
/// (against a table the issues run left partial it would only fetch again what that run could
/// not). Every stream goes through the engine's one client, so the limiter and the
/// `max_in_flight` cap are shared: running them together fills the slots that one stream's
/// chain of dependent requests (user pages, audit pages, project listings) leaves idle, rather
/// than sending more than the site allows. Each stream runs on its own task, so decoding pages
/// of one does not hold up the others.
pub async fn run_streams(
    engine: Arc<Engine>,
    streams: &[&'static str],
    full: bool,
) -> Vec<StreamOutcome> {
    let leader_of = |name: &str| {
        engine
            .registry()
            .get(name)
            .and_then(|s| s.schedule().follows)
            .filter(|leader| streams.contains(leader))
    };
    let mut tasks = JoinSet::new();
    for &stream in streams {
        if leader_of(stream).is_some() {
            continue;
        }
        let followers: Vec<&'static str> = streams
            .iter()
            .copied()
            .filter(|&f| leader_of(f) == Some(stream))
            .collect();
        let engine = engine.clone();
        tasks.spawn(async move {
            let led = engine.run_once(stream, full).await;
            let succeeded = matches!(led.status, OutcomeStatus::Succeeded);
            let mut ended = vec![led];
            for follower in followers {
                ended.push(match succeeded {
                    true => engine.run_once(follower, full).await,
                    false => StreamOutcome::skipped(
                        follower,
                        format!(
                            "the {stream} stream did not succeed; the {follower} runs after one \
                             that does"
                        ),
                    ),
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
    let order = engine.registry().names();
    outcomes.sort_by_key(|outcome| order.iter().position(|n| *n == outcome.stream));
    outcomes
}
