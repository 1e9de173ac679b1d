//! Rival writers: a writer whose lease connection died commits nothing once a standby has
//! taken the lease (fencing). `sync --once` beside a daemon is in `daemon.rs`, which has the
//! daemon's harness.

use crate::support::Env;
use crate::support::cli::{site_toml, text, write_config};
use jira_sim::SimConfig;
use jira_sync::store::lease::{LOCK_CLASS, LeaseConnection};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// What a page commit changes: the issues stored and every stream's saved state.
async fn committed(env: &Env) -> (i64, String) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM jira.issues), \
                (SELECT coalesce(string_agg(stream || '=' || checkpoint::text, ';' ORDER BY stream), '') \
                   FROM jira.sync_state)",
    )
    .fetch_one(&env.db.pool)
    .await
    .expect("read what is committed")
}

#[tokio::test]
async fn a_writer_that_lost_its_lease_commits_nothing_once_a_standby_has_taken_it() {
    let env = Env::start(SimConfig {
        issues: 3_000,
        ..SimConfig::small()
    })
    .await;
    let config = env.sim.config();
    // Paced at 5 requests a second: the run takes several seconds, page after page.
    let toml = site_toml(&env.sim.base_url(), &config.email, &config.api_token).replace(
        "requests_per_second = 100.0\nburst = 50",
        "requests_per_second = 5.0\nburst = 1",
    );
    assert!(toml.contains("burst = 1\n"), "the pacing was not replaced");
    let file = write_config(&toml);
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_jira-sync"))
        .arg("--config")
        .arg(&file.path)
        .args(["sync", "--once", "--no-progress", "--stream", "projects"])
        .args(["--stream", "issues"])
        .env("DATABASE_URL", &env.db.url)
        .env("JIRA_SYNC__LOG__LEVEL", "warn")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start jira-sync sync --once");

    // Mid-run: some pages are in.
    let deadline = Instant::now() + Duration::from_secs(60);
    while committed(&env).await.0 < 100 {
        assert!(Instant::now() < deadline, "no page arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The writer's lock connection dies (a network cut, an admin's pg_terminate_backend)...
    let (pid,): (i32,) = sqlx::query_as(
        "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
         WHERE l.locktype = 'advisory' AND l.granted AND l.classid::int8 = $1 \
         AND d.datname = current_database()",
    )
    .bind(i64::from(LOCK_CLASS))
    .fetch_one(&env.db.pool)
    .await
    .expect("the writer holds the lease");
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .execute(&env.db.pool)
        .await
        .expect("terminate the lock's backend");
    // ... and a standby takes the lease at once.
    let mut standby = LeaseConnection::open(&env.settings.database, &env.site(), "standby")
        .await
        .expect("the standby connects");
    let deadline = Instant::now() + Duration::from_secs(10);
    let epoch = loop {
        if let Some(epoch) = standby.try_lock().await.expect("ask for the lock") {
            break epoch;
        }
        assert!(Instant::now() < deadline, "the lock was never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        epoch >= 2,
        "the writer's epoch was 1, the standby's is {epoch}"
    );
    let at_takeover = committed(&env).await;
    assert!(
        at_takeover.0 < i64::try_from(config.issues).expect("count"),
        "the run had ended before the takeover: the test proves nothing"
    );

    // The old writer goes on fetching, but not one page of it commits.
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the old writer ends")
        .expect("its output");
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(8), "{stderr}");
    assert!(stderr.contains("writer lease"), "{stderr}");
    assert_eq!(committed(&env).await, at_takeover, "{stderr}");
    standby.release().await;
}

/// Advisory locks are per database, and `pg_locks` shows every database's: the same site
/// synced into two databases of one server has two leases, and neither names the other's
/// holder.
#[tokio::test]
async fn the_lease_in_one_database_is_not_the_lease_in_another() {
    let site = "example.atlassian.net";
    let mut databases = Vec::new();
    for _ in 0..2 {
        let db = crate::support::test_db().await;
        db.store().migrate().await.expect("migrate");
        let mut settings = jira_sync::settings::Settings::for_site(
            &url::Url::parse("https://example.atlassian.net").expect("URL"),
            "demo@example.com",
            secrecy::SecretString::from("token"),
        )
        .expect("settings");
        settings.database.url = Some(secrecy::SecretString::from(db.url.clone()));
        databases.push((db, settings.database));
    }
    let (first, second) = (&databases[0].1, &databases[1].1);
    let mut holder = LeaseConnection::open(first, site, "holder in the first")
        .await
        .expect("connect");
    assert!(holder.try_lock().await.expect("lock").is_some());
    let mut other = LeaseConnection::open(second, site, "the second")
        .await
        .expect("connect");
    assert_eq!(
        other.holder().await,
        None,
        "named the other database's holder"
    );
    let mut conn = jira_sync::store::lease::connect_one(second)
        .await
        .expect("connect");
    let held = jira_sync::store::lease::is_held(&mut conn, site)
        .await
        .expect("is_held");
    assert!(!held, "the second database's lease looks held");
    assert!(other.try_lock().await.expect("lock").is_some());
    holder.release().await;
    other.release().await;
}
