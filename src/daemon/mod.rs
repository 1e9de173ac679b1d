//! `jira-sync run`: the daemon. It checks the connection, migrates, takes the site's writer
//! lease, then runs each enabled stream on its own schedule until SIGTERM or SIGINT.
//!
//! Every stream has one task that sleeps, runs [`Engine::run_once_with`], and sleeps again,
//! so a stream never runs twice at once and a run that overruns its interval is not stacked:
//! the next one is due an interval after the previous one ended. The first run of a stream is
//! due an interval after its last success (at once if it never succeeded), so the initial bulk
//! sync, or the resumption of a half-done one from its checkpoints, is simply that first run.
//! A failed run is retried after 5 s, 10 s, 20 s, … capped at the stream's interval.
//!
//! A follow-up stream (the census of deleted issues) never overlaps a run of the stream it
//! follows (both write the issues table) and waits for that stream's first success, since a
//! census of a table that is still empty would fetch every issue a second time.
//!
//! Lifecycle: the schedule runs in "epochs", each under one holding of the lease. When the
//! lease's connection breaks (a database restart), the epoch's runs are cancelled, since
//! another replica may now own the site, and the lease is taken again before anything else
//! runs. The first signal cancels everything and leaves `sync.shutdown_timeout_secs` for runs
//! to record their end and the lease to be released; a second signal exits at once.
//!
//! Before anything else the daemon binds `[server] listen` and serves `/healthz`, `/readyz`
//! and `/metrics` ([`server`]) until the first signal. It feeds the listener's
//! [`Monitor`]: a heartbeat every few seconds, its role (starting, standby, writer), each
//! stream's schedule and every run's outcome; the same heartbeat logs stalled streams.

pub mod lease;
pub mod monitor;
pub mod server;

use crate::engine::progress::{Counts, Observer};
use crate::engine::runner::select;
use crate::engine::{Engine, OutcomeStatus};
use crate::settings::{DatabaseSettings, Settings};
use crate::store::Store;
use crate::streams::Progress;
use anyhow::Context;
use chrono::Utc;
use lease::Lease;
use monitor::{Monitor, Role, Sources};
use rand::Rng;
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The first retry delay after a failed run; it doubles up to the stream's interval.
const FIRST_RETRY: Duration = Duration::from_secs(5);
/// Jitter adds up to a tenth of the interval, and never more than this.
const MAX_JITTER: Duration = Duration::from_secs(60);
/// The exit code after a second signal, as a shell reports an interrupted command.
const EXIT_AT_ONCE: i32 = 130;
/// How often the scheduler's heartbeat beats and stalls are looked for.
const HEARTBEAT: Duration = Duration::from_secs(2);

/// What every stream task shares for the daemon's whole life.
struct Daemon {
    engine: Engine,
    database: DatabaseSettings,
    site: String,
    /// The enabled streams, as `sync --once` would run them, then their follow-ups.
    streams: Vec<&'static str>,
    monitor: Arc<Monitor>,
}

/// One stream's schedule within an epoch.
struct StreamTask {
    daemon: Arc<Daemon>,
    stream: &'static str,
    /// The stream it follows, if it is a follow-up.
    follows: Option<&'static str>,
    interval: Duration,
    first_delay: Duration,
    epoch: CancellationToken,
    /// Held by a run of a stream or of its follow-ups, so the two never overlap.
    turn: Arc<Mutex<()>>,
    /// `true` once the stream a follow-up waits for has succeeded.
    led_done: Arc<watch::Sender<bool>>,
    /// What this stream's own success tells its follow-ups.
    done: Arc<watch::Sender<bool>>,
}

/// The daemon's progress: log lines every `log.progress_interval_secs`, and each stream's
/// activity noted in the monitor, whose stall check tells a long run that moves from one that
/// hangs.
struct Activity {
    every: Duration,
    monitor: Arc<Monitor>,
}

impl Observer for Activity {
    fn start(&self, stream: &'static str) -> Box<dyn Progress> {
        Box::new(Noted {
            counts: Counts::new(stream, Some(self.every)),
            stream,
            monitor: self.monitor.clone(),
        })
    }
}

struct Noted {
    counts: Counts,
    stream: &'static str,
    monitor: Arc<Monitor>,
}

impl Progress for Noted {
    fn add_total(&self, n: u64) {
        self.monitor.note_activity(self.stream);
        self.counts.add_total(n);
    }

    fn advance(&self, n: u64) {
        self.monitor.note_activity(self.stream);
        self.counts.advance(n);
    }
}

/// `jira-sync run`.
pub async fn command(settings: Settings) -> anyhow::Result<ExitCode> {
    let shutdown = CancellationToken::new();
    let grace = Duration::from_secs(settings.sync.shutdown_timeout_secs);
    handle_signals(shutdown.clone(), grace)?;
    let monitor = Arc::new(Monitor::new(&settings));
    let listener = server::bind(&settings.server).await?;
    let address = listener.local_addr()?;
    tracing::info!(%address, "serving /healthz, /readyz and /metrics");
    server::spawn(listener, monitor.clone(), shutdown.clone());
    tokio::spawn(heartbeat(monitor.clone(), shutdown.clone()));
    let started = start(&settings, monitor.clone());
    let Some(daemon) = shutdown.run_until_cancelled(started).await else {
        tracing::info!("stopped during start-up");
        return Ok(ExitCode::SUCCESS);
    };
    let daemon = Arc::new(daemon?);
    monitor.set_role(Role::Standby);
    let mut supervisor = std::pin::pin!(supervise(daemon, shutdown.clone()));
    let finished = tokio::select! {
        () = &mut supervisor => true,
        () = shutdown.cancelled() => false,
    };
    monitor.set_role(Role::Stopping);
    if !finished && tokio::time::timeout(grace, &mut supervisor).await.is_err() {
        tracing::error!(
            timeout_secs = grace.as_secs(),
            "runs did not stop within sync.shutdown_timeout_secs; exiting anyway (open \
             transactions roll back when their connections close)"
        );
        return Err(anyhow::anyhow!(
            "runs did not stop within sync.shutdown_timeout_secs"
        ));
    }
    tracing::info!("jira-sync stopped");
    Ok(ExitCode::SUCCESS)
}

/// Start-up: the connection check (its failures end the process with `check`'s exit codes),
/// then the database and its migrations, then the engine.
async fn start(settings: &Settings, monitor: Arc<Monitor>) -> anyhow::Result<Daemon> {
    let report = crate::engine::check::run(settings).await?;
    report.require_browse()?;
    tracing::info!(connection = %report.headline(), "connected to Jira");
    for warning in &report.warnings {
        tracing::warn!(%warning, "connection check");
    }
    let store = Store::open(&settings.database).await?;
    store.migrate().await?;
    store
        .install_compat(&settings.database.fivetran_schema, &settings.site())
        .await?;
    let observer = Arc::new(Activity {
        every: Duration::from_secs(settings.log.progress_interval_secs.max(1)),
        monitor: monitor.clone(),
    });
    let engine = Engine::new(settings, store, observer).await?;
    let mut streams = select(engine.registry(), &[])?;
    for stream in engine.registry().iter() {
        let schedule = stream.schedule();
        if schedule.enabled
            && schedule
                .follows
                .is_some_and(|leader| streams.contains(&leader))
        {
            streams.push(stream.name());
        }
    }
    let ctx = engine.context();
    let mut clients = vec![ctx.client.clone()];
    clients.extend(engine.registry().iter().flat_map(|s| s.clients()));
    monitor.attach(Sources {
        clients,
        store: ctx.store.clone(),
    });
    Ok(Daemon {
        engine,
        database: settings.database.clone(),
        site: settings.site(),
        streams,
        monitor,
    })
}

/// Beats the monitor's heartbeat (what `/healthz` reads) and logs stalled streams, every
/// [`HEARTBEAT`] until `shutdown`.
async fn heartbeat(monitor: Arc<Monitor>, shutdown: CancellationToken) {
    loop {
        monitor.beat();
        monitor.log_stall_changes();
        let pause = tokio::time::sleep(HEARTBEAT);
        if shutdown.run_until_cancelled(pause).await.is_none() {
            return;
        }
    }
}

/// Installs the one place that handles signals: the first SIGTERM/SIGINT cancels `shutdown`,
/// the second exits the process at once.
fn handle_signals(shutdown: CancellationToken, grace: Duration) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    tokio::spawn(async move {
        let name = next_signal(&mut term, &mut int).await;
        tracing::info!(
            signal = name,
            timeout_secs = grace.as_secs(),
            "shutting down: no new runs; runs in progress stop at their last committed page"
        );
        shutdown.cancel();
        let name = next_signal(&mut term, &mut int).await;
        tracing::warn!(signal = name, "second signal: exiting at once");
        std::process::exit(EXIT_AT_ONCE);
    });
    Ok(())
}

async fn next_signal(term: &mut Signal, int: &mut Signal) -> &'static str {
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// Takes the lease, runs the schedule while it is held, and takes it again when it is lost,
/// until `shutdown`.
async fn supervise(daemon: Arc<Daemon>, shutdown: CancellationToken) {
    loop {
        let Some(lease) = Lease::acquire(&daemon.database, &daemon.site, &shutdown).await else {
            return;
        };
        // From here on, a page this process writes after another one took over is refused.
        daemon
            .engine
            .context()
            .store
            .fence(&daemon.site, lease.epoch);
        daemon.monitor.set_role(Role::Writer);
        let epoch = shutdown.child_token();
        let holder = {
            let epoch = epoch.clone();
            tokio::spawn(async move {
                let kept = lease.hold(&epoch).await;
                // A lost lease ends the epoch: another replica may be writing already.
                epoch.cancel();
                kept
            })
        };
        run_epoch(&daemon, &epoch).await;
        epoch.cancel();
        daemon.monitor.set_role(Role::Standby);
        daemon.monitor.schedule(&[]);
        let kept = holder.await.ok().flatten();
        let lost = kept.is_none();
        if let Some(lease) = kept {
            lease.release().await;
        }
        if shutdown.is_cancelled() {
            return;
        }
        if lost {
            tracing::warn!(
                site = %daemon.site,
                "runs stopped after the writer lease was lost; taking it again before syncing on"
            );
        } else {
            // A stream task panicked: pause so that a repeating failure cannot spin.
            let pause = tokio::time::sleep(FIRST_RETRY);
            if shutdown.run_until_cancelled(pause).await.is_none() {
                return;
            }
        }
    }
}

/// Runs every enabled stream on its schedule until `epoch` is cancelled.
async fn run_epoch(daemon: &Arc<Daemon>, epoch: &CancellationToken) {
    let ctx = daemon.engine.context();
    let successes = ctx
        .store
        .last_successes(&daemon.site)
        .await
        .unwrap_or_else(|err| {
            tracing::warn!(error = %format!("{err:#}"), "cannot read past runs; every stream runs now");
            Default::default()
        });
    let registry = daemon.engine.registry();
    let mut schedule = Vec::new();
    for &name in &daemon.streams {
        let Some(stream) = registry.get(name) else {
            continue;
        };
        let last = successes.get(name).copied();
        schedule.push((name, stream.schedule(), last));
    }
    daemon.monitor.schedule(
        &schedule
            .iter()
            .map(|(name, s, last)| (*name, s.interval, *last))
            .collect::<Vec<_>>(),
    );
    // A stream and its follow-ups share a turn; a follow-up waits for its stream's success.
    let mut turns: HashMap<&'static str, Arc<Mutex<()>>> = HashMap::new();
    let mut dones: HashMap<&'static str, Arc<watch::Sender<bool>>> = HashMap::new();
    for (name, s, _) in &schedule {
        let leader = s.follows.unwrap_or(name);
        turns.entry(leader).or_default();
        dones
            .entry(name)
            .or_insert_with(|| Arc::new(watch::Sender::new(successes.contains_key(*name))));
    }
    let mut tasks = JoinSet::new();
    for (stream, s, last) in schedule {
        let interval = s.interval;
        let first_delay = last.map_or(Duration::ZERO, |at| {
            let since = (Utc::now() - at).to_std().unwrap_or_default();
            interval.saturating_sub(since)
        });
        tracing::info!(
            stream,
            interval_secs = interval.as_secs(),
            first_run_in_secs = first_delay.as_secs(),
            "stream scheduled"
        );
        let leader = s.follows.unwrap_or(stream);
        let led_done = dones.get(leader).cloned().unwrap_or_default();
        tasks.spawn(run_stream(StreamTask {
            daemon: daemon.clone(),
            stream,
            follows: s.follows,
            interval,
            first_delay,
            epoch: epoch.clone(),
            turn: turns.get(leader).cloned().unwrap_or_default(),
            led_done,
            done: dones.get(stream).cloned().unwrap_or_default(),
        }));
    }
    while let Some(ended) = tasks.join_next().await {
        if let Err(err) = ended {
            // Only a panic ends a stream task early; stop the epoch so the schedule restarts.
            tracing::error!(error = %err, "a stream task stopped unexpectedly; restarting the schedule");
            epoch.cancel();
        }
    }
}

/// One stream's loop: wait, run, and schedule the next run after this one ends.
async fn run_stream(task: StreamTask) {
    if task.follows.is_some() {
        let mut done = task.led_done.subscribe();
        let wait = done.wait_for(|done| *done);
        if !matches!(task.epoch.run_until_cancelled(wait).await, Some(Ok(_))) {
            return;
        }
    }
    let mut delay = task.first_delay;
    let mut failures = 0u32;
    loop {
        if task
            .epoch
            .run_until_cancelled(tokio::time::sleep(delay))
            .await
            .is_none()
        {
            return;
        }
        let outcome = {
            let _turn = task.turn.lock().await;
            if task.epoch.is_cancelled() {
                return;
            }
            let engine = &task.daemon.engine;
            task.daemon.monitor.run_started(task.stream);
            let outcome = engine.run_once_with(task.stream, false, &task.epoch).await;
            task.daemon.monitor.run_finished(&outcome);
            outcome
        };
        if task.epoch.is_cancelled() {
            return;
        }
        if outcome.failed() {
            failures += 1;
            delay = retry_delay(failures, task.interval);
            tracing::info!(
                stream = task.stream,
                attempt = failures,
                retry_in_secs = delay.as_secs_f64(),
                "run failed; retrying with backoff"
            );
        } else {
            failures = 0;
            delay = jittered(task.interval);
            if matches!(outcome.status, OutcomeStatus::Succeeded) {
                task.done.send_replace(true);
            }
            tracing::debug!(
                stream = task.stream,
                next_run_in_secs = delay.as_secs(),
                "next run scheduled"
            );
        }
    }
}

/// `interval` plus up to a tenth of it (at most [`MAX_JITTER`]), so replicas of many sites
/// started together do not hit Jira in step.
fn jittered(interval: Duration) -> Duration {
    let most = (interval / 10).min(MAX_JITTER);
    let extra = rand::rng().random_range(0..=most.as_millis() as u64);
    interval + Duration::from_millis(extra)
}

/// The wait before retry number `failures`: 5 s doubling, capped at the stream's interval.
fn retry_delay(failures: u32, interval: Duration) -> Duration {
    let doubled = FIRST_RETRY.saturating_mul(1 << failures.saturating_sub(1).min(20));
    jittered(doubled.min(interval))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_adds_at_most_a_tenth_of_the_interval_and_at_most_a_minute() {
        for _ in 0..100 {
            let short = jittered(Duration::from_secs(10));
            assert!(short >= Duration::from_secs(10) && short <= Duration::from_secs(11));
            let long = jittered(Duration::from_secs(86_400));
            assert!(long <= Duration::from_secs(86_400) + MAX_JITTER);
        }
    }

    #[test]
    fn retries_back_off_from_five_seconds_up_to_the_interval() {
        let hour = Duration::from_secs(3600);
        let first = retry_delay(1, hour);
        assert!(first >= FIRST_RETRY && first <= FIRST_RETRY + Duration::from_millis(500));
        assert!(retry_delay(2, hour) >= Duration::from_secs(10));
        assert!(retry_delay(30, hour) <= hour + MAX_JITTER);
        assert!(retry_delay(30, hour) >= hour);
        assert!(retry_delay(3, Duration::from_secs(1)) <= Duration::from_millis(1100));
    }
}
