//! The daemon's HTTP listener (`[server] listen`): `GET /healthz`, `GET /readyz` and
//! `GET /metrics`, served by `jira-sync run` until its shutdown token fires. (Its client,
//! which a container's `HEALTHCHECK` runs, is `jira-sync healthcheck`.)
//!
//! - `/healthz` answers 200 while the scheduler's heartbeat is fresh: the process is alive and
//!   its runtime is not wedged. A standby replica waiting for the lease is healthy.
//! - `/readyz` answers 200 when start-up is done, the database answers and has every migration
//!   this binary knows, the last contact with Jira did not show broken credentials, a missing
//!   permission or an unreachable site, and no stream is stalled; else 503 with the reasons.
//! - `/metrics` is the OpenMetrics text format, which Prometheus scrapes ([`super::monitor`]).

use super::monitor::{CONTENT_TYPE, Monitor, Role};
use crate::settings::ServerSettings;
use crate::store::Store;
use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A heartbeat older than this makes `/healthz` fail: the scheduler beats every few seconds.
pub const HEARTBEAT_STALE: Duration = Duration::from_secs(30);
/// How long `/readyz` waits for the database.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(2);

/// Binds `[server] listen`; failing to is fatal, since probes would then fail anyway.
pub async fn bind(settings: &ServerSettings) -> anyhow::Result<TcpListener> {
    let addr = settings.addr()?;
    TcpListener::bind(addr).await.with_context(|| {
        format!(
            "cannot listen on {addr} for /healthz, /readyz and /metrics: is another process \
             using the port? Set server.listen (JIRA_SYNC__SERVER__LISTEN) to a free address"
        )
    })
}

/// Serves the endpoints on `listener` until `shutdown` fires.
pub fn spawn(
    listener: TcpListener,
    monitor: Arc<Monitor>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(monitor);
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
        if let Err(err) = served {
            tracing::error!(error = %err, "the health and metrics listener stopped");
        }
    })
}

async fn healthz(State(monitor): State<Arc<Monitor>>) -> Response {
    let since = monitor.since_heartbeat();
    let alive = since < HEARTBEAT_STALE;
    let body = json!({
        "status": if alive { "ok" } else { "stuck" },
        "role": monitor.role().name(),
        "heartbeat_secs_ago": since.as_secs(),
    });
    let code = if alive {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn readyz(State(monitor): State<Arc<Monitor>>) -> Response {
    let reasons = not_ready(&monitor).await;
    let ready = reasons.is_empty();
    let body = json!({
        "ready": ready,
        "role": monitor.role().name(),
        "reasons": reasons,
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(monitor): State<Arc<Monitor>>) -> Response {
    let ready = not_ready(&monitor).await.is_empty();
    let text = monitor.render(ready).await;
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

/// Why the daemon is not ready; empty when it is.
pub async fn not_ready(monitor: &Monitor) -> Vec<String> {
    let role = monitor.role();
    match role {
        Role::Starting => {
            return vec![
                "starting: checking the Jira connection, connecting to and migrating the database"
                    .to_owned(),
            ];
        }
        Role::Stopping => return vec!["stopping: a shutdown signal came".to_owned()],
        Role::Standby | Role::Writer => {}
    }
    let mut reasons = Vec::new();
    if let Some(sources) = monitor.sources()
        && let Err(reason) = database_ready(&sources.store).await
    {
        reasons.push(reason);
    }
    if let Some(problem) = monitor.jira_problem() {
        reasons.push(format!("the Jira connection check failed: {problem}"));
    }
    reasons.extend(monitor.stalls().into_iter().map(|stall| stall.reason));
    reasons
}

/// Whether the database answers and has every migration this binary carries (each one, not
/// just the latest: a migration added out of order must be applied too).
async fn database_ready(store: &Store) -> Result<(), String> {
    let missing = match tokio::time::timeout(DATABASE_TIMEOUT, store.missing_migrations()).await {
        Ok(Ok(missing)) => missing,
        Ok(Err(err)) => return Err(format!("the database is unreachable: {err:#}")),
        Err(_) => {
            return Err(format!(
                "the database did not answer within {}s",
                DATABASE_TIMEOUT.as_secs()
            ));
        }
    };
    if !missing.is_empty() {
        return Err(format!(
            "database migrations are not applied ({}): they are applied when `jira-sync run` \
             starts, or by `jira-sync migrate`",
            missing.join(", ")
        ));
    }
    Ok(())
}
