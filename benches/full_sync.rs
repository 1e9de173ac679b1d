//! Benchmark: a full sync of the simulator's medium site (20,000 issues) by the real binary
//! into a real PostgreSQL, then an incremental cycle after 100 changes. Prints wall time,
//! issues per second, HTTP requests and the sync process's peak RSS.
//!
//! `cargo bench --bench full_sync` (set `BENCH_SIZE=small|medium|large`; `BENCH_RPS` and
//! `BENCH_BURST` to pace requests, default 1000 and 100; `DATABASE_URL` to use an existing
//! server). The simulator runs in this process at zero latency and shares the
//! machine's cores with the sync and PostgreSQL; the sync process alone is measured for memory.
//! Rate limits are lifted (`requests_per_second = 1000`) because the simulator has none: the
//! figure measures jira-sync, not a pacing policy.

use jira_sync::pg::TempCluster;
use jira_sync::simulator::{SimConfig, Simulator};
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(bench())
}

async fn bench() -> anyhow::Result<()> {
    let size = std::env::var("BENCH_SIZE").unwrap_or_else(|_| "medium".to_string());
    let config = match size.as_str() {
        "small" => SimConfig::small(),
        "large" => SimConfig::large(),
        _ => SimConfig::medium(),
    };
    let sim = Simulator::start(config.clone()).await?;
    let (url, _cluster) = database().await?;
    let issues = sim.truth().issues.len();
    let rps = std::env::var("BENCH_RPS").unwrap_or_else(|_| "1000".to_string());
    let burst = std::env::var("BENCH_BURST").unwrap_or_else(|_| "100".to_string());

    let base = [
        ("JIRA_SYNC__JIRA__BASE_URL", sim.base_url()),
        ("JIRA_SYNC__JIRA__EMAIL", config.email.clone()),
        ("JIRA_SYNC__JIRA__API_TOKEN", config.api_token.clone()),
        ("JIRA_SYNC__RATE_LIMIT__REQUESTS_PER_SECOND", rps.clone()),
        ("JIRA_SYNC__RATE_LIMIT__BURST", burst),
        ("JIRA_SYNC__LOG__LEVEL", "warn".to_string()),
        ("DATABASE_URL", url.clone()),
    ];

    let before = sim.request_count("/rest/");
    let full = run_sync(&base, &["sync", "--once", "--full", "--no-progress"]).await?;
    let requests = sim.request_count("/rest/") - before;
    println!(
        "full_sync/{size}: {issues} issues at up to {rps} requests/s (the census runs too: it is due on a first sync)"
    );
    println!("  wall time        {:.2} s", full.elapsed.as_secs_f64());
    println!(
        "  issues/second    {:.0}",
        issues as f64 / full.elapsed.as_secs_f64()
    );
    println!("  HTTP requests    {requests}");
    println!(
        "  peak RSS (sync)  {:.1} MiB",
        full.peak_kib as f64 / 1024.0
    );

    // An incremental cycle after k = 100 changes spread over the site.
    let truth = sim.truth();
    let step = (truth.issues.len() / 100).max(1);
    for issue in truth.issues.iter().step_by(step).take(100) {
        sim.update_issue(issue.id)?;
    }
    let before = sim.request_count("/rest/");
    let incremental = run_sync(&base, &["sync", "--once", "--no-census", "--no-progress"]).await?;
    let requests = sim.request_count("/rest/") - before;
    println!("incremental_sync/{size}: 100 changed issues");
    println!(
        "  wall time        {:.2} s",
        incremental.elapsed.as_secs_f64()
    );
    println!("  HTTP requests    {requests}");
    println!(
        "  peak RSS (sync)  {:.1} MiB",
        incremental.peak_kib as f64 / 1024.0
    );
    sim.shutdown().await;
    Ok(())
}

struct Run {
    elapsed: Duration,
    peak_kib: u64,
}

/// Runs the real binary with `env` and `args`, printing its summary lines, and measures its
/// wall time and peak RSS.
async fn run_sync(env: &[(&str, String)], args: &[&str]) -> anyhow::Result<Run> {
    let started = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_jira-sync"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let mut peak_kib = 0u64;
    let status = loop {
        if let Some(kib) = peak_rss_kib(pid) {
            peak_kib = peak_kib.max(kib);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let elapsed = started.elapsed();
    let output = child.wait_with_output()?;
    print!("{}", String::from_utf8_lossy(&output.stdout));
    anyhow::ensure!(status.success(), "the sync failed: {status}");
    Ok(Run { elapsed, peak_kib })
}

async fn database() -> anyhow::Result<(String, Option<TempCluster>)> {
    if let Ok(url) = std::env::var("DATABASE_URL")
        && !url.is_empty()
    {
        return Ok((url, None));
    }
    let cluster = TempCluster::start().await?;
    let pool = sqlx::PgPool::connect(cluster.url()).await?;
    sqlx::query("CREATE DATABASE bench").execute(&pool).await?;
    pool.close().await;
    Ok((cluster.url_for("bench"), Some(cluster)))
}

/// The process's peak resident set (VmHWM) in KiB, while it runs.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
