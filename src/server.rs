//! The daemon's HTTP listener (`[server] listen`): `GET /healthz`, `GET /readyz` and
//! `GET /metrics`, served by `jira-sync run` until its shutdown token fires; and
//! `jira-sync healthcheck`, the client a container's `HEALTHCHECK` runs (the image has no curl).
//!
//! - `/healthz` answers 200 while the scheduler's heartbeat is fresh: the process is alive and
//!   its runtime is not wedged. A standby replica waiting for the lease is healthy.
//! - `/readyz` answers 200 when start-up is done, the database answers and has every migration
//!   this binary knows, the last contact with Jira did not show broken credentials, a missing
//!   permission or an unreachable site, and no stream is stalled; else 503 with the reasons.
//! - `/metrics` is the OpenMetrics text format, which Prometheus scrapes ([`crate::metrics`]).

use crate::config::ConfigError;
use crate::metrics::{Monitor, Role};
use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A heartbeat older than this makes `/healthz` fail: the scheduler beats every few seconds.
pub const HEARTBEAT_STALE: Duration = Duration::from_secs(30);
/// How long `/readyz` waits for the database.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(2);

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// `ip:port` to listen on; port 0 picks a free port.
    pub listen: String,
    /// A stream with no successful run for this many intervals is stalled.
    pub stall_intervals: u32,
}

impl ServerSettings {
    /// The parsed `listen` address.
    pub fn addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen
            .trim()
            .parse()
            .map_err(|_| ConfigError::Invalid {
                key: "server.listen".to_owned(),
                message: format!(
                    "({:?}) is not an address and port: write it like 127.0.0.1:9464, or \
                 0.0.0.0:9464 to accept connections from other hosts",
                    self.listen
                ),
            })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.addr()?;
        if !(1..=1000).contains(&self.stall_intervals) {
            return Err(ConfigError::Invalid {
                key: "server.stall_intervals".to_owned(),
                message: format!("is {}: it must be between 1 and 1000", self.stall_intervals),
            });
        }
        Ok(())
    }
}

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
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
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
        && let Err(reason) = database_ready(&sources.pool).await
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
async fn database_ready(pool: &sqlx::PgPool) -> Result<(), String> {
    let query = sqlx::query_scalar::<_, i64>("SELECT version FROM _sqlx_migrations WHERE success")
        .fetch_all(pool);
    let applied = match tokio::time::timeout(DATABASE_TIMEOUT, query).await {
        Ok(Ok(versions)) => versions,
        Ok(Err(err)) => return Err(format!("the database is unreachable: {err}")),
        Err(_) => {
            return Err(format!(
                "the database did not answer within {}s",
                DATABASE_TIMEOUT.as_secs()
            ));
        }
    };
    let missing: Vec<String> = crate::store::MIGRATOR
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .map(|m| format!("{} {}", m.version, m.description))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "database migrations are not applied ({}): they are applied when `jira-sync run` \
             starts, or by `jira-sync migrate`",
            missing.join(", ")
        ));
    }
    Ok(())
}

/// Arguments of `jira-sync healthcheck`.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthcheckArgs {
    /// The URL to check (http only). Default: /healthz at `server.listen`, with 0.0.0.0 read
    /// as 127.0.0.1.
    #[arg(long)]
    pub url: Option<url::Url>,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3)]
    pub timeout_secs: u64,
}

/// `jira-sync healthcheck`: exit 0 when the URL answers 2xx, 1 otherwise.
pub async fn healthcheck(
    settings: Option<&ServerSettings>,
    args: &HealthcheckArgs,
) -> anyhow::Result<std::process::ExitCode> {
    let url = match (&args.url, settings) {
        (Some(url), _) => url.clone(),
        (None, Some(settings)) => local_url(settings.addr()?)?,
        (None, None) => anyhow::bail!("internal error: no URL and no settings to check"),
    };
    let timeout = Duration::from_secs(args.timeout_secs.max(1));
    let answer = tokio::time::timeout(timeout, http_get(&url))
        .await
        .map_err(|_| anyhow::anyhow!("{url} did not answer within {}s", timeout.as_secs()))??;
    println!("{} {}", answer.0, answer.1.trim());
    if (200..300).contains(&answer.0) {
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        Ok(std::process::ExitCode::from(crate::exit::FAILURE))
    }
}

/// `/healthz` at the listen address, reached over loopback when it listens on all addresses.
fn local_url(addr: SocketAddr) -> anyhow::Result<url::Url> {
    if addr.port() == 0 {
        anyhow::bail!("server.listen has port 0 (a free port chosen at start): pass --url");
    }
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let url = format!("http://{}/healthz", SocketAddr::new(ip, addr.port()));
    Ok(url::Url::parse(&url)?)
}

/// A plain HTTP/1.1 GET: the status code and the body. Written by hand because the check needs
/// nothing more, and so it works in an image without CA certificates or a TLS stack.
async fn http_get(url: &url::Url) -> anyhow::Result<(u16, String)> {
    if url.scheme() != "http" {
        anyhow::bail!("{url}: only http:// URLs can be checked");
    }
    let host = url
        .host_str()
        .ok_or_else(|| anyhow::anyhow!("{url} has no host"))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let mut stream = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .with_context(|| format!("cannot connect to {url}: is `jira-sync run` running?"))?;
    let path = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.take(1 << 20).read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let code = text
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("{url} did not answer HTTP"))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    Ok((code, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_healthcheck_reaches_a_wildcard_listener_over_loopback() {
        let url = |listen: &str| local_url(listen.parse().expect("address")).map(String::from);
        assert_eq!(
            url("0.0.0.0:9464").ok().as_deref(),
            Some("http://127.0.0.1:9464/healthz")
        );
        assert_eq!(
            url("[::]:9000").ok().as_deref(),
            Some("http://[::1]:9000/healthz")
        );
        assert!(url("127.0.0.1:0").is_err());
    }

    #[test]
    fn listen_addresses_are_an_ip_and_a_port() {
        let settings = |listen: &str| ServerSettings {
            listen: listen.to_owned(),
            stall_intervals: 3,
        };
        assert!(settings("127.0.0.1:9464").validate().is_ok());
        assert!(settings("localhost:9464").validate().is_err());
        assert!(settings("9464").validate().is_err());
    }
}
