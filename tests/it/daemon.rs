//! Integration tests of `jira-sync run` and `jira-sync status`: the real binary as a process
//! (signals, a second replica, a database restart), the simulator over HTTP, real PostgreSQL.

use crate::support::cli::{ConfigFile, closed_port, jira_sync, run, site_toml, text, write_config};
use crate::support::{Env, eventually, sync_every_stream, test_db};
use jira_sim::{FaultKind, FaultPlan, SimConfig, Simulator, Truth};
use jira_sync::settings::Settings;
use secrecy::SecretString;
use sqlx::Connection;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use throwaway_pg::TempCluster;
use tokio::io::AsyncBufReadExt;

/// How long anything a test waits for may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(60);

/// A `jira-sync run` process whose log lines are collected as they arrive.
struct Daemon {
    child: tokio::process::Child,
    logs: Arc<Mutex<Vec<String>>>,
    /// Set when stderr closes, i.e. the process has ended: waiting on its log is then futile.
    ended: Arc<AtomicBool>,
    _config: ConfigFile,
}

impl Daemon {
    /// Starts `jira-sync [extra args] run` against the simulator and `database_url`, with
    /// `env` added to a clean environment.
    fn spawn(sim: &Simulator, database_url: &str, env: &[(&str, &str)], extra: &[&str]) -> Daemon {
        let config = sim.config();
        let file = write_config(&site_toml(
            &sim.base_url(),
            &config.email,
            &config.api_token,
        ));
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_jira-sync"));
        for (name, _) in std::env::vars() {
            if name.starts_with("JIRA_SYNC") || name == "DATABASE_URL" || name == "RUST_LOG" {
                cmd.env_remove(name);
            }
        }
        cmd.arg("--config").arg(&file.path).args(extra).arg("run");
        cmd.env("DATABASE_URL", database_url)
            .envs(env.iter().copied());
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd.kill_on_drop(true);
        let mut child = cmd.spawn().expect("start jira-sync run");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let (sink, ended) = (logs.clone(), Arc::new(AtomicBool::new(false)));
        let end = ended.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().expect("log lock").push(line);
            }
            end.store(true, Ordering::SeqCst);
        });
        Daemon {
            child,
            logs,
            ended,
            _config: file,
        }
    }

    fn pid(&self) -> String {
        self.child.id().expect("the daemon is running").to_string()
    }

    fn logs(&self) -> String {
        self.logs.lock().expect("log lock").join("\n")
    }

    fn count(&self, needle: &str) -> usize {
        self.count_with(&[needle])
    }

    /// How many log lines contain every one of `needles`.
    fn count_with(&self, needles: &[&str]) -> usize {
        self.logs
            .lock()
            .expect("log lock")
            .iter()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    }

    /// Waits until at least `times` log lines contain `needle`; fails at once if the process
    /// ends first.
    async fn wait_for_log(&self, needle: &str, times: usize) {
        self.wait_for_lines(&[needle], times).await;
    }

    /// Waits until at least `times` log lines contain every one of `needles`; fails at once if
    /// the process ends first.
    async fn wait_for_lines(&self, needles: &[&str], times: usize) {
        let what = format!("{times} log line(s) with {needles:?}");
        let check = || async {
            let ended = self.ended.load(Ordering::SeqCst);
            let found = self.count_with(needles) >= times;
            assert!(
                found || !ended,
                "jira-sync ended before {what}:\n{}",
                self.logs()
            );
            found
        };
        eventually(DEADLINE, &what, check, || self.logs()).await;
    }

    fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), self.pid()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Sends the signal `name` and fails unless the process then exits 0 in time.
    async fn stop(&mut self, name: &str) {
        self.signal(name);
        let status = self.wait_exit(DEADLINE).await;
        assert_eq!(status.code(), Some(0), "{}", self.logs());
    }

    /// Waits for the process to exit and for its last log lines to be read: the reader task
    /// may still hold lines the process wrote just before it ended.
    async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let status = match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.expect("wait for jira-sync"),
            Err(_) => panic!(
                "jira-sync did not exit within {within:?}; its log:\n{}",
                self.logs()
            ),
        };
        let ended = self.ended.clone();
        eventually(
            DEADLINE,
            "the end of jira-sync's log",
            || {
                let ended = ended.clone();
                async move { ended.load(Ordering::SeqCst) }
            },
            || self.logs(),
        )
        .await;
        status
    }

    fn still_running(&mut self) -> bool {
        self.child.try_wait().expect("poll jira-sync").is_none()
    }
}

/// Live issues in the database as (id, key, updated), or `None` if the database cannot be
/// read right now (a fresh connection each time, so a restarted server is seen).
async fn stored_issues(
    url: &str,
    site: &str,
) -> Option<Vec<(i64, String, chrono::DateTime<chrono::Utc>)>> {
    let mut conn = sqlx::PgConnection::connect(url).await.ok()?;
    let rows = sqlx::query_as(
        "SELECT id, key, updated FROM jira.issues WHERE site = $1 AND deleted_at IS NULL ORDER BY id",
    )
    .bind(site)
    .fetch_all(&mut conn)
    .await
    .ok();
    let _ = conn.close().await;
    rows
}

fn truth_issues(truth: &Truth) -> Vec<(i64, String, chrono::DateTime<chrono::Utc>)> {
    truth
        .issues
        .iter()
        .map(|i| (i.id, i.key.clone(), i.updated))
        .collect()
}

/// Waits until the database holds exactly the simulator's issues.
async fn wait_until_equal(sim: &Simulator, url: &str, site: &str, daemon: &Daemon) {
    eventually(
        DEADLINE,
        "the database to equal the simulator's issues",
        || async { stored_issues(url, site).await == Some(truth_issues(&sim.truth())) },
        || daemon.logs(),
    )
    .await;
}

fn site_of(sim: &Simulator) -> String {
    let url = url::Url::parse(&sim.base_url()).expect("simulator URL");
    let config = sim.config();
    Settings::for_site(
        &url,
        &config.email,
        SecretString::from(config.api_token.clone()),
    )
    .expect("settings")
    .site()
}

async fn count_runs(url: &str, condition: &'static str) -> i64 {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    let sql = format!("SELECT count(*) FROM jira.sync_runs WHERE {condition}");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(&mut conn)
        .await
        .expect("count runs")
}

const FAST_ISSUES: (&str, &str) = ("JIRA_SYNC__SYNC__ISSUES_INTERVAL_SECS", "1");

#[tokio::test]
async fn run_syncs_the_site_then_brings_in_updates_and_new_issues_on_its_next_scheduled_run() {
    let env = Env::start(SimConfig::small()).await;
    let site = env.site();
    let mut daemon = Daemon::spawn(&env.sim, &env.db.url, &[FAST_ISSUES], &[]);
    wait_until_equal(&env.sim, &env.db.url, &site, &daemon).await;

    let first = env.sim.truth().issues[0].id;
    let updated = env.sim.update_issue(first).expect("update an issue");
    let created = env
        .sim
        .create_issue(&env.sim.truth().projects[0].key)
        .expect("create an issue");
    wait_until_equal(&env.sim, &env.db.url, &site, &daemon).await;
    let stored = stored_issues(&env.db.url, &site)
        .await
        .expect("read issues");
    assert!(stored.contains(&(updated.id, updated.key.clone(), updated.updated)));
    assert!(
        stored
            .iter()
            .any(|(id, key, _)| *id == created.id && *key == created.key)
    );
    // The run that brought them in ends after the records of its issues are read.
    eventually(
        DEADLINE,
        "an incremental issues run to succeed",
        || async {
            count_runs(
                &env.db.url,
                "stream = 'issues' AND mode = 'incremental' AND status = 'succeeded'",
            )
            .await
                >= 1
        },
        || daemon.logs(),
    )
    .await;

    daemon.stop("TERM").await;
}

#[tokio::test]
async fn sigterm_interrupts_runs_in_progress_exits_0_in_time_and_frees_the_lease() {
    let env = Env::start(SimConfig::small()).await;
    // Every request takes a while, so runs are in progress when the signal comes.
    env.sim.set_faults(FaultPlan {
        rate: 1.0,
        kinds: vec![FaultKind::Slow { delay_ms: 300 }],
        ..FaultPlan::default()
    });
    let timeout = ("JIRA_SYNC__SYNC__SHUTDOWN_TIMEOUT_SECS", "10");
    let mut daemon = Daemon::spawn(&env.sim, &env.db.url, &[timeout], &[]);
    daemon.wait_for_log("stream run started", 1).await;
    let signalled = Instant::now();
    daemon.stop("TERM").await;
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "took {:?}",
        signalled.elapsed()
    );
    assert!(
        daemon.count("writer lease released") == 1,
        "{}",
        daemon.logs()
    );
    assert_eq!(
        count_runs(&env.db.url, "status = 'running'").await,
        0,
        "a run was left running"
    );
    let interrupted = count_runs(
        &env.db.url,
        "status = 'failed' AND error LIKE 'interrupted by shutdown%'",
    )
    .await;
    assert!(
        interrupted >= 1,
        "no run was recorded as interrupted:\n{}",
        daemon.logs()
    );

    // The lease is free: another daemon takes it at once.
    env.sim.set_faults(FaultPlan::default());
    let mut next = Daemon::spawn(&env.sim, &env.db.url, &[], &[]);
    next.wait_for_log("writer lease acquired", 1).await;
    assert_eq!(next.count("waiting to take over"), 0, "{}", next.logs());
    next.stop("INT").await;
}

#[tokio::test]
async fn a_second_replica_waits_without_searching_and_takes_over_when_the_first_is_killed() {
    let env = Env::start(SimConfig::small()).await;
    let site = env.site();
    let mut first = Daemon::spawn(&env.sim, &env.db.url, &[], &[]);
    wait_until_equal(&env.sim, &env.db.url, &site, &first).await;
    // All five streams (census included) have run once; with the default intervals the first
    // replica now stays idle, so any search from here on would come from the second one.
    eventually(
        DEADLINE,
        "every stream of the first replica to succeed once",
        || async {
            count_runs(&env.db.url, "status = 'succeeded'").await >= 5
                && count_runs(&env.db.url, "status = 'running'").await == 0
        },
        || first.logs(),
    )
    .await;
    let searches = env.sim.request_count("/rest/api/3/search");

    let debug_lease = ["--log-level", "info,jira_sync::daemon::lease=debug"];
    let mut second = Daemon::spawn(&env.sim, &env.db.url, &[FAST_ISSUES], &debug_lease);
    second.wait_for_log("waiting to take over", 1).await;
    second.wait_for_log("writer lease is still busy", 3).await;
    assert_eq!(
        second.count("waiting to take over"),
        1,
        "said more than once"
    );
    assert_eq!(
        env.sim.request_count("/rest/api/3/search"),
        searches,
        "searched while waiting"
    );
    assert_eq!(
        second.count("writer lease acquired"),
        0,
        "{}",
        second.logs()
    );

    first.signal("KILL");
    first.wait_exit(DEADLINE).await;
    second.wait_for_log("writer lease acquired", 1).await;
    let id = env.sim.truth().issues[1].id;
    env.sim.update_issue(id).expect("update an issue");
    wait_until_equal(&env.sim, &env.db.url, &site, &second).await;
    second.stop("TERM").await;
}

/// A daemon on a PostgreSQL of its own that has synced the site once; then every request is
/// made `slow_ms` slow, and the server is stopped just after an issues run has started, so that
/// run is in progress when the database goes away.
async fn stop_the_database_mid_run(slow_ms: u64) -> (TempCluster, Simulator, Daemon) {
    let mut cluster = TempCluster::start().await.expect("a PostgreSQL of its own");
    let sim = Simulator::start(SimConfig::small())
        .await
        .expect("simulator");
    let daemon = Daemon::spawn(&sim, cluster.url(), &[FAST_ISSUES], &[]);
    wait_until_equal(&sim, cluster.url(), &site_of(&sim), &daemon).await;
    // The census follows the first issues run at once, and finds its full scan stands for it.
    daemon.wait_for_log("census not needed", 1).await;
    sim.set_faults(FaultPlan {
        rate: 1.0,
        kinds: vec![FaultKind::Slow { delay_ms: slow_ms }],
        ..FaultPlan::default()
    });
    // Another stream's run may start now too and end at once (one with nothing to do): the
    // database stops while an issues run, whose every request is slow, is certainly in flight.
    let issues_run = ["stream run started", "stream=issues"];
    let started = daemon.count_with(&issues_run);
    daemon.wait_for_lines(&issues_run, started + 1).await;
    cluster.stop_server().await.expect("stop PostgreSQL");
    (cluster, sim, daemon)
}

#[tokio::test]
async fn the_daemon_survives_a_database_restart_mid_run_and_catches_up_when_it_returns() {
    let (mut cluster, sim, mut daemon) = stop_the_database_mid_run(300).await;
    let (url, site) = (cluster.url().to_string(), site_of(&sim));
    let id = sim.truth().issues[2].id;
    sim.update_issue(id)
        .expect("update an issue while the database is down");
    daemon.wait_for_log("lost the writer lease", 1).await;
    daemon
        .wait_for_log(
            "cannot take the writer lease: the database is unreachable",
            1,
        )
        .await;
    assert!(
        daemon.still_running(),
        "the daemon exited:\n{}",
        daemon.logs()
    );

    cluster
        .start_server()
        .await
        .expect("start PostgreSQL again");
    sim.set_faults(FaultPlan::default());
    daemon.wait_for_log("writer lease acquired", 2).await;
    wait_until_equal(&sim, &url, &site, &daemon).await;
    // The run in progress is closed as interrupted if the database came back in time to
    // record it, else as abandoned when the lease was taken again.
    let failed = count_runs(
        &url,
        "status = 'failed' AND (error LIKE 'interrupted%' OR error LIKE 'abandoned%')",
    )
    .await;
    assert!(
        failed >= 1,
        "the interrupted run was not marked failed:\n{}",
        daemon.logs()
    );

    daemon.stop("TERM").await;
    assert_eq!(count_runs(&url, "status = 'running'").await, 0);
}

#[tokio::test]
async fn a_second_signal_exits_at_once_while_the_first_shutdown_waits_for_the_database() {
    // Requests slower than the lease takes to notice the loss: the run in progress is
    // interrupted, then waits (up to its grace period) to record its end in a database that
    // is gone, which holds the first shutdown up.
    let (_cluster, _sim, mut daemon) = stop_the_database_mid_run(4000).await;
    daemon.wait_for_log("lost the writer lease", 1).await;
    daemon.signal("TERM");
    daemon.wait_for_log("shutting down", 1).await;
    let second = Instant::now();
    daemon.signal("TERM");
    let status = daemon.wait_exit(DEADLINE).await;
    assert_eq!(status.code(), Some(130), "{}", daemon.logs());
    assert!(
        second.elapsed() < Duration::from_secs(3),
        "took {:?}",
        second.elapsed()
    );
    assert_eq!(daemon.count("jira-sync stopped"), 0, "{}", daemon.logs());
}

#[tokio::test]
async fn run_with_a_revoked_token_exits_3_before_taking_the_lease() {
    let sim = Simulator::start(SimConfig::small())
        .await
        .expect("simulator");
    let db = test_db().await;
    let file = write_config(&site_toml(
        &sim.base_url(),
        &sim.config().email,
        "revoked-token",
    ));
    let mut cmd = jira_sync();
    cmd.arg("--config")
        .arg(&file.path)
        .arg("run")
        .env("DATABASE_URL", &db.url);
    let output = run(cmd).await;
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(!stderr.contains("writer lease"), "{stderr}");
}

/// Runs `jira-sync status [args]` against `env`'s simulator config and `database_url`.
async fn status(env: &Env, database_url: &str, args: &[&str]) -> std::process::Output {
    let config = env.sim.config();
    let file = write_config(&site_toml(
        &env.sim.base_url(),
        &config.email,
        &config.api_token,
    ));
    let mut cmd = jira_sync();
    cmd.arg("--config").arg(&file.path).arg("status").args(args);
    cmd.env("DATABASE_URL", database_url);
    run(cmd).await
}

#[tokio::test]
async fn status_after_a_sync_shows_every_stream_with_its_last_success_cursor_and_rows() {
    let env = Env::start(SimConfig::small()).await;
    sync_every_stream(&env).await;

    let output = status(&env, &env.db.url, &[]).await;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    for stream in ["projects", "issues", "users", "audit_records", "census"] {
        assert!(
            stdout.lines().any(|l| l == stream),
            "no block for {stream}:\n{stdout}"
        );
    }
    // Organization events need an org id and key, which this site has not: the one stream
    // that never succeeded.
    assert!(
        stdout.contains("org_events (disabled in [sync])"),
        "{stdout}"
    );
    // And the thirteen kinds of reference data, which this sync did not name.
    assert_eq!(
        stdout.matches("last success  never").count(),
        14,
        "{stdout}"
    );
    assert!(stdout.contains("oldest mark of 4 projects"), "{stdout}");
    assert!(
        stdout.contains("no jira-sync process holds the writer lease"),
        "{stdout}"
    );

    let output = status(&env, &env.db.url, &["--json"]).await;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(json["ok"], true);
    assert_eq!(json["site"], env.site());
    assert_eq!(json["writer_active"], false);
    let issues = &json["streams"]["issues"];
    for key in [
        "last_success",
        "since_last_success_secs",
        "cursor",
        "cursor_behind_secs",
    ] {
        assert!(
            !issues[key].is_null(),
            "streams.issues.{key} is null: {json}"
        );
    }
    assert_eq!(issues["rows"], env.sim.truth().issues.len());
    assert_eq!(issues["last_run"]["status"], "succeeded");
    assert!(
        !json["streams"]["audit_records"]["cursor"].is_null(),
        "{json}"
    );
    assert!(!json["streams"]["census"]["cursor"].is_null(), "{json}");
    assert!(json["streams"]["users"]["cursor"].is_null(), "{json}");
    assert_eq!(json["streams"]["org_events"]["enabled"], false, "{json}");
}

#[tokio::test]
async fn status_with_an_unreachable_database_exits_7_and_says_so_in_json() {
    let env = Env::start(SimConfig::small()).await;
    let nowhere = format!("postgres://postgres@127.0.0.1:{}/postgres", closed_port());
    let output = status(&env, &nowhere, &["--json"]).await;
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(7), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    assert_eq!(json["ok"], false);
    assert_eq!(json["exit_code"], 7);
    assert!(stderr.contains("cannot connect to PostgreSQL"), "{stderr}");
}

#[tokio::test]
async fn sync_once_beside_a_daemon_exits_8_naming_it_and_a_daemon_waits_for_a_one_shot_run() {
    let env = Env::start(SimConfig::small()).await;
    let site = env.site();
    let config = env.sim.config();
    let file = write_config(&site_toml(
        &env.sim.base_url(),
        &config.email,
        &config.api_token,
    ));
    let once = || {
        let mut cmd = jira_sync();
        cmd.arg("--config")
            .arg(&file.path)
            .args(["sync", "--once", "--no-progress"])
            .env("DATABASE_URL", &env.db.url);
        cmd
    };

    // A daemon writes the site: a one-shot run refuses to write beside it and names it.
    let mut daemon = Daemon::spawn(&env.sim, &env.db.url, &[], &[]);
    daemon.wait_for_log("writer lease acquired", 1).await;
    let output = run(once()).await;
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(8), "{stderr}");
    assert!(
        stderr.contains("another jira-sync holds this site's writer lease (jira-sync run on"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("pid {}", daemon.pid())),
        "{stderr}"
    );
    wait_until_equal(&env.sim, &env.db.url, &site, &daemon).await;
    daemon.stop("TERM").await;

    // A one-shot run holds the lease (paced at 2 requests a second: it takes a while). A
    // daemon started meanwhile waits for it, and does not mark its runs as failed.
    let slow = write_config(
        &site_toml(&env.sim.base_url(), &config.email, &config.api_token).replace(
            "requests_per_second = 100.0\nburst = 50",
            "requests_per_second = 2.0\nburst = 1",
        ),
    );
    // (Stopping the first daemon may have interrupted a run of its own.)
    let failed_before = count_runs(&env.db.url, "status = 'failed'").await;
    let mut full = jira_sync();
    full.arg("--config")
        .arg(&slow.path)
        .args(["sync", "--once", "--no-progress", "--full"])
        .env("DATABASE_URL", &env.db.url);
    let one_shot = tokio::task::spawn_blocking(move || full.output().expect("run jira-sync"));
    eventually(
        DEADLINE,
        "the one-shot run to start",
        || async { count_runs(&env.db.url, "status = 'running'").await > 0 },
        String::new,
    )
    .await;
    let debug_lease = ["--log-level", "info,jira_sync::daemon::lease=debug"];
    let mut waiting = Daemon::spawn(&env.sim, &env.db.url, &[], &debug_lease);
    waiting.wait_for_log("waiting to take over", 1).await;
    let output = one_shot.await.expect("the one-shot thread");
    let (_, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stderr}\nthe daemon:\n{}",
        waiting.logs()
    );
    assert_eq!(
        count_runs(&env.db.url, "status = 'failed'").await,
        failed_before,
        "{}",
        waiting.logs()
    );
    waiting.wait_for_log("writer lease acquired", 1).await;
    waiting.stop("TERM").await;
}
