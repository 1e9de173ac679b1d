//! Log lines an operator reads: progress lines under `run` without a terminal, and one JSON
//! summary line per stream at the end of `sync --once`.

use super::Daemon;
use crate::support::Env;
use crate::support::cli::{jira_sync, run, site_toml, text, write_config};
use jira_sim::{FaultPlan, SimConfig};
use serde_json::Value;

#[tokio::test]
async fn without_a_terminal_a_long_run_logs_progress_with_done_total_and_an_estimate() {
    // Enough pages, each slow enough, that the issues run lasts several progress intervals
    // however the work is spread over requests in flight.
    let env = Env::start(SimConfig {
        projects: 2,
        issues: 3_000,
        ..SimConfig::small()
    })
    .await;
    env.sim.set_faults(FaultPlan {
        latency_ms: 300,
        ..FaultPlan::default()
    });
    let every = ("JIRA_SYNC__LOG__PROGRESS_INTERVAL_SECS", "1");
    let daemon = Daemon::spawn(&env.sim, &env.db.url, &[every]);
    // The issues stream's lines: Jira counts its issues, so they carry a total and an estimate.
    let line = daemon
        .wait_for("a progress line of the issues stream", |l| {
            l["message"] == "progress" && l["stream"] == "issues"
        })
        .await;
    for key in ["stream", "done", "total", "per_sec", "site"] {
        assert!(!line[key].is_null(), "{key} missing in {line}");
    }
    assert!(line["done"].as_u64() <= line["total"].as_u64(), "{line}");
    assert_eq!(line["level"], "INFO");
    daemon.stop().await;
}

#[tokio::test]
async fn sync_once_with_json_logs_ends_each_stream_with_one_info_summary_line() {
    let env = Env::start(SimConfig::small()).await;
    let c = env.sim.config();
    let config = write_config(&site_toml(&env.sim.base_url(), &c.email, &c.api_token));
    let mut cmd = jira_sync();
    cmd.arg("--config")
        .arg(&config.path)
        .args(["sync", "--once"]);
    cmd.env("DATABASE_URL", &env.db.url)
        .env("JIRA_SYNC__LOG__FORMAT", "json");
    let output = run(cmd).await;
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    // The fixed keys come first, in this order, on every line.
    for line in stderr.lines() {
        let at = |key: &str| line.find(&format!("\"{key}\":")).unwrap_or(usize::MAX);
        assert_eq!(at("timestamp"), 1, "{line}");
        assert!(
            at("level") < at("target") && at("target") < at("message"),
            "{line}"
        );
    }
    let summaries: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "stream run succeeded")
        .collect();
    let mut streams: Vec<&str> = summaries
        .iter()
        .filter_map(|l| l["stream"].as_str())
        .collect();
    streams.sort();
    assert_eq!(
        streams,
        [
            "audit_records",
            "boards",
            "census",
            "components",
            "field_options",
            "fields",
            "issue_types",
            "issues",
            "priorities",
            "project_categories",
            "projects",
            "resolutions",
            "sprints",
            "status_categories",
            "statuses",
            "user_groups",
            "users",
            "versions"
        ],
        "{stderr}"
    );
    let mut run_ids: Vec<u64> = summaries
        .iter()
        .filter_map(|l| l["run_id"].as_u64())
        .collect();
    run_ids.dedup();
    assert_eq!(run_ids.len(), 18, "one run id each: {stderr}");
    for line in summaries {
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["site"], env.site());
    }
}
