//! What an operator sees of `jira-sync run`: `/healthz`, `/readyz` (and its not-ready cases:
//! the database down, a stalled stream), `/metrics` parsed as Prometheus text while counters
//! move, `jira-sync healthcheck`, JSON log lines and progress lines. The real binary as a
//! process, the simulator over HTTP, real PostgreSQL.

mod exposition;
mod logs;

use crate::support::cli::{ConfigFile, closed_port, jira_sync, run, site_toml, text, write_config};
use crate::support::{Env, eventually};
use exposition::{scrape, series_key, value};
use jira_sim::{FaultKind, FaultPlan, SimConfig, Simulator};
use serde_json::Value;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use throwaway_pg::TempCluster;
use tokio::io::AsyncBufReadExt;

const DEADLINE: Duration = Duration::from_secs(60);

/// A `jira-sync run` with JSON logs, its log lines parsed as they arrive.
struct Daemon {
    child: tokio::process::Child,
    lines: Arc<Mutex<Vec<Value>>>,
    /// Lines that were not one JSON object (there must be none).
    garbage: Arc<Mutex<Vec<String>>>,
    config: ConfigFile,
}

impl Daemon {
    fn spawn(sim: &Simulator, database_url: &str, env: &[(&str, &str)]) -> Daemon {
        let c = sim.config();
        let config = write_config(&site_toml(&sim.base_url(), &c.email, &c.api_token));
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_jira-sync"));
        for (name, _) in std::env::vars() {
            if name.starts_with("JIRA_SYNC") || name == "DATABASE_URL" || name == "RUST_LOG" {
                cmd.env_remove(name);
            }
        }
        cmd.arg("--config").arg(&config.path).arg("run");
        cmd.env("DATABASE_URL", database_url)
            .env("JIRA_SYNC__LOG__FORMAT", "json")
            .envs(env.iter().copied());
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("start jira-sync run");
        let stderr = child.stderr.take().expect("stderr is piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let garbage = Arc::new(Mutex::new(Vec::new()));
        let (sink, junk) = (lines.clone(), garbage.clone());
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                match serde_json::from_str::<Value>(&line) {
                    Ok(value) if value.is_object() => sink.lock().expect("lock").push(value),
                    _ => junk.lock().expect("lock").push(line),
                }
            }
        });
        Daemon {
            child,
            lines,
            garbage,
            config,
        }
    }

    fn logs(&self) -> String {
        let lines = self.lines.lock().expect("lock");
        let mut text: Vec<String> = lines.iter().map(Value::to_string).collect();
        text.extend(self.garbage.lock().expect("lock").iter().cloned());
        text.join("\n")
    }

    /// The log lines whose message contains `needle`.
    fn find(&self, needle: &str) -> Vec<Value> {
        self.find_where(|l| l["message"].as_str().is_some_and(|m| m.contains(needle)))
    }

    fn find_where(&self, pick: impl Fn(&Value) -> bool) -> Vec<Value> {
        let lines = self.lines.lock().expect("lock");
        lines.iter().filter(|l| pick(l)).cloned().collect()
    }

    async fn wait_for_log(&self, needle: &str) -> Value {
        let message = |l: &Value| l["message"].as_str().is_some_and(|m| m.contains(needle));
        self.wait_for(&format!("a log line with {needle:?}"), message)
            .await
    }

    /// The first log line `pick` accepts, once there is one.
    async fn wait_for(&self, what: &str, pick: impl Fn(&Value) -> bool) -> Value {
        eventually(
            DEADLINE,
            what,
            || async { !self.find_where(&pick).is_empty() },
            || self.logs(),
        )
        .await;
        self.find_where(&pick).remove(0)
    }

    /// The listener's base URL, from the start-up line.
    async fn base_url(&self) -> String {
        let line = self.wait_for_log("serving /healthz").await;
        let address = line["address"].as_str().expect("an address field");
        format!("http://{address}")
    }

    async fn stop(mut self) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(status.success());
        let exit = tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .expect("jira-sync exits after SIGTERM")
            .expect("wait");
        assert_eq!(exit.code(), Some(0), "{}", self.logs());
    }
}

/// GETs `url`: the status code and the body (0 and the error when nothing answered).
async fn get(url: &str) -> (u16, String) {
    match reqwest::get(url).await {
        Ok(response) => {
            let code = response.status().as_u16();
            (code, response.text().await.unwrap_or_default())
        }
        Err(err) => (0, err.to_string()),
    }
}

/// `/readyz`'s status code and its reasons.
async fn readyz(base: &str) -> (u16, Vec<String>) {
    let (code, body) = get(&format!("{base}/readyz")).await;
    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let reasons = json["reasons"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    (code, reasons)
}

const FAST_ISSUES: (&str, &str) = ("JIRA_SYNC__SYNC__ISSUES_INTERVAL_SECS", "1");

#[tokio::test]
async fn the_daemon_serves_health_readiness_and_metrics_whose_counters_move_with_each_sync() {
    let env = Env::start(SimConfig::small()).await;
    let daemon = Daemon::spawn(&env.sim, &env.db.url, &[FAST_ISSUES]);
    let base = daemon.base_url().await;
    let (code, body) = get(&format!("{base}/healthz")).await;
    assert_eq!(code, 200, "{body}");
    eventually(
        DEADLINE,
        "a successful issues run",
        || async {
            let samples = scrape(&base).await;
            value(
                &samples,
                "jira_sync_runs_total{status=\"succeeded\",stream=\"issues\"}",
            ) >= 1.0
        },
        || daemon.logs(),
    )
    .await;
    let (code, reasons) = readyz(&base).await;
    assert_eq!((code, reasons.clone()), (200, vec![]), "{reasons:?}");
    let first = scrape(&base).await;
    let issues = env.sim.truth().issues.len() as f64;
    assert_eq!(
        value(&first, "jira_sync_rows_written_total{stream=\"issues\"}"),
        issues
    );
    let search = "jira_sync_http_requests_total{endpoint=\"POST /rest/api/3/search/jql\",status_class=\"2xx\"}";
    assert!(value(&first, search) >= 1.0, "{first:?}");
    for series in [
        "jira_sync_ready",
        "jira_sync_writer",
        "jira_sync_stream_running{stream=\"issues\"}",
    ] {
        assert!(
            first.contains_key(&series_key(series)),
            "{series} missing: {first:?}"
        );
    }
    let build = format!(
        "jira_sync_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(value(&first, &build), 1.0);
    assert_eq!(value(&first, "jira_sync_ready"), 1.0);
    assert_eq!(value(&first, "jira_sync_writer"), 1.0);
    eventually(
        DEADLINE,
        "the database view in /metrics",
        || async {
            let samples = scrape(&base).await;
            value(
                &samples,
                "jira_sync_last_success_timestamp_seconds{stream=\"issues\"}",
            ) > 0.0
                && samples.contains_key("jira_sync_lag_seconds{stream=\"issues\"}")
                && samples.contains_key("jira_sync_census_deleted_issues")
        },
        || daemon.logs(),
    )
    .await;

    // The next runs meet a 429 and a 500 and write a changed issue: the counters move.
    env.sim.set_faults(FaultPlan {
        script: vec![
            FaultKind::TooManyRequests {
                retry_after_secs: Some(1),
            },
            FaultKind::Status(500),
        ],
        ..FaultPlan::default()
    });
    let id = env.sim.truth().issues[0].id;
    env.sim.update_issue(id).expect("update an issue");
    let written = "jira_sync_rows_written_total{stream=\"issues\"}";
    eventually(
        DEADLINE,
        "the retried requests and the changed issue in /metrics",
        || async {
            let now = scrape(&base).await;
            value(&now, written) > value(&first, written)
                && value(&now, "jira_sync_http_throttled_total")
                    > value(&first, "jira_sync_http_throttled_total")
                && value(&now, "jira_sync_http_retries_total")
                    >= value(&first, "jira_sync_http_retries_total") + 2.0
        },
        || daemon.logs(),
    )
    .await;
    let last = scrape(&base).await;
    assert!(value(&last, search) > value(&first, search));
    assert!(
        value(
            &last,
            "jira_sync_http_wait_seconds_total{reason=\"retry_after\"}"
        ) >= 1.0,
        "{last:?}"
    );
    let durations = "jira_sync_run_duration_seconds_count{stream=\"issues\"}";
    assert_eq!(
        value(&last, durations),
        value(
            &last,
            "jira_sync_runs_total{status=\"succeeded\",stream=\"issues\"}"
        ) + value(
            &last,
            "jira_sync_runs_total{status=\"failed\",stream=\"issues\"}"
        )
    );

    // The container's HEALTHCHECK command, against the daemon and against nothing.
    let healthy = run_healthcheck(&daemon.config, &format!("{base}/healthz")).await;
    assert_eq!(healthy.0, Some(0), "{}", healthy.1);
    let nowhere = format!("http://127.0.0.1:{}/healthz", closed_port());
    assert_eq!(run_healthcheck(&daemon.config, &nowhere).await.0, Some(1));

    // Every line is one JSON object with the fixed keys first; run summaries carry the
    // site, the stream, the run id and the counts.
    assert!(
        daemon.garbage.lock().expect("lock").is_empty(),
        "{}",
        daemon.logs()
    );
    let summary = daemon.wait_for_log("stream run succeeded").await;
    for key in [
        "timestamp",
        "level",
        "target",
        "message",
        "site",
        "stream",
        "run_id",
    ] {
        assert!(!summary[key].is_null(), "{key} missing in {summary}");
    }
    for key in [
        "rows_seen",
        "rows_written",
        "requests",
        "duration_ms",
        "run_id",
    ] {
        assert!(summary[key].is_u64(), "{key} is not a number in {summary}");
    }
    assert_eq!(summary["level"], "INFO");
    assert_eq!(summary["site"], env.site());
    daemon.stop().await;
    assert_eq!(
        get(&format!("{base}/healthz")).await.0,
        0,
        "still listening"
    );
}

/// Runs `jira-sync healthcheck --url URL`: its exit code and output.
async fn run_healthcheck(config: &ConfigFile, url: &str) -> (Option<i32>, String) {
    let mut cmd = jira_sync();
    cmd.arg("--config")
        .arg(&config.path)
        .args(["healthcheck", "--url", url]);
    let output = run(cmd).await;
    let (stdout, stderr) = text(&output);
    (output.status.code(), format!("{stdout}{stderr}"))
}

#[tokio::test]
async fn readyz_answers_503_while_the_database_is_down_and_200_once_it_is_back() {
    let mut cluster = TempCluster::start().await.expect("a PostgreSQL of its own");
    let sim = Simulator::start(SimConfig::small())
        .await
        .expect("simulator");
    let daemon = Daemon::spawn(&sim, cluster.url(), &[]);
    let base = daemon.base_url().await;
    let ready = || async { readyz(&base).await.0 == 200 };
    eventually(DEADLINE, "/readyz to answer 200", ready, || daemon.logs()).await;

    cluster.stop_server().await.expect("stop PostgreSQL");
    eventually(
        DEADLINE,
        "/readyz to name the database",
        || async {
            let (code, reasons) = readyz(&base).await;
            code == 503 && reasons.iter().any(|r| r.contains("database"))
        },
        || daemon.logs(),
    )
    .await;
    let (code, body) = get(&format!("{base}/healthz")).await;
    assert_eq!(
        code, 200,
        "a database outage is not a reason to restart: {body}"
    );
    assert_eq!(value(&scrape(&base).await, "jira_sync_ready"), 0.0);

    cluster
        .start_server()
        .await
        .expect("start PostgreSQL again");
    eventually(DEADLINE, "/readyz to answer 200 again", ready, || {
        daemon.logs()
    })
    .await;
    daemon.stop().await;
}

#[tokio::test]
async fn a_stalled_stream_turns_readyz_503_logs_one_error_and_recovers() {
    let env = Env::start(SimConfig::small()).await;
    let stall = ("JIRA_SYNC__SERVER__STALL_INTERVALS", "2");
    let daemon = Daemon::spawn(&env.sim, &env.db.url, &[FAST_ISSUES, stall]);
    let base = daemon.base_url().await;
    eventually(
        DEADLINE,
        "/readyz to answer 200",
        || async { readyz(&base).await.0 == 200 },
        || daemon.logs(),
    )
    .await;

    env.sim.set_faults(FaultPlan {
        rate: 1.0,
        kinds: vec![FaultKind::Status(500)],
        ..FaultPlan::default()
    });
    eventually(
        DEADLINE,
        "/readyz to report the stalled issues stream",
        || async {
            let (code, reasons) = readyz(&base).await;
            code == 503
                && reasons
                    .iter()
                    .any(|r| r.contains("stream issues is stalled"))
        },
        || daemon.logs(),
    )
    .await;
    let samples = scrape(&base).await;
    assert_eq!(
        value(&samples, "jira_sync_stream_stalled{stream=\"issues\"}"),
        1.0
    );
    assert_eq!(
        value(&samples, "jira_sync_stream_stalled{stream=\"projects\"}"),
        0.0
    );
    // Several heartbeats later the stall has still been logged once.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let errors = daemon.find("stream issues is stalled");
    assert_eq!(errors.len(), 1, "{}", daemon.logs());
    assert_eq!(errors[0]["level"], "ERROR");

    env.sim.set_faults(FaultPlan::default());
    eventually(
        DEADLINE,
        "/readyz to answer 200 after the stream recovered",
        || async { readyz(&base).await.0 == 200 },
        || daemon.logs(),
    )
    .await;
    daemon.wait_for_log("stream no longer stalled").await;
    daemon.stop().await;
}
