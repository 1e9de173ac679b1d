//! The database connection: TLS settings checked before anything connects, a server that does
//! not answer, a statement that waits on a lock forever. Each ends in an exit code and a
//! message that names the setting, in bounded time, never a hang.

use crate::support::Env;
use crate::support::cli::{expect_exit, run_with_config, site_toml, write_config};
use jira_sim::SimConfig;
use std::time::{Duration, Instant};

/// The simulator's site config with `[database]` as given (appended last).
fn config_with(env: &Env, database: &str) -> crate::support::cli::ConfigFile {
    let c = env.sim.config();
    let toml = site_toml(&env.sim.base_url(), &c.email, &c.api_token).replace(
        "[rate_limit]",
        &format!("[database]\n{database}\n\n[rate_limit]"),
    );
    write_config(&toml)
}

const ONCE: [&str; 3] = ["sync", "--once", "--no-progress"];

#[tokio::test]
async fn tls_settings_are_checked_and_honoured() {
    let env = Env::start(SimConfig::small()).await;
    let url = &env.db.url;
    let file = config_with(
        &env,
        &format!("url = \"{url}\"\nsslmode = \"verify-fullest\""),
    );
    let (_, stderr) = expect_exit(&run_with_config(&file, &ONCE).await, 2);
    assert!(
        stderr.contains("database.sslmode") && stderr.contains("verify-full"),
        "{stderr}"
    );
    let file = config_with(
        &env,
        &format!(
            "url = \"{url}\"\nsslmode = \"verify-full\"\nssl_root_cert = \"/nonexistent/ca.pem\""
        ),
    );
    let (_, stderr) = expect_exit(&run_with_config(&file, &ONCE).await, 2);
    assert!(stderr.contains("database.ssl_root_cert"), "{stderr}");

    // `require` refuses a server without TLS; with TLS it connects.
    let (ssl,): (String,) = sqlx::query_as("SHOW ssl")
        .fetch_one(&env.db.pool)
        .await
        .expect("SHOW ssl");
    let file = config_with(&env, &format!("url = \"{url}\"\nsslmode = \"require\""));
    let args = ["sync", "--once", "--no-progress", "--stream", "projects"];
    let output = run_with_config(&file, &args).await;
    if ssl == "on" {
        expect_exit(&output, 0);
    } else {
        let (_, stderr) = expect_exit(&output, 7);
        assert!(stderr.contains("database.sslmode"), "{stderr}");
    }
}

#[tokio::test]
async fn a_database_that_accepts_but_never_answers_exits_7_within_the_connect_timeout() {
    let env = Env::start(SimConfig::small()).await;
    // Accepts connections and holds them, silent: a firewall that drops, a hung server.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let file = config_with(
        &env,
        &format!(
            "url = \"postgres://jira:secret@127.0.0.1:{port}/jira\"\nconnect_timeout_secs = 2"
        ),
    );
    let started = Instant::now();
    let (_, stderr) = expect_exit(&run_with_config(&file, &ONCE).await, 7);
    assert!(started.elapsed() < Duration::from_secs(30), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(!stderr.contains("secret"), "the password leaked: {stderr}");
}

#[tokio::test]
async fn a_statement_blocked_by_a_lock_gives_up_at_the_statement_timeout() {
    let env = Env::start(SimConfig::small()).await;
    // Another session holds the runs table: every statement on it waits.
    let mut blocker = env.db.pool.begin().await.expect("begin");
    sqlx::query("LOCK TABLE jira.sync_runs IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .expect("lock");
    let file = config_with(
        &env,
        &format!("url = \"{}\"\nstatement_timeout_secs = 2", env.db.url),
    );
    let started = Instant::now();
    let output = run_with_config(&file, &ONCE).await;
    let elapsed = started.elapsed();
    blocker.rollback().await.expect("rollback");
    let (_, stderr) = expect_exit(&output, 7);
    assert!(
        elapsed < Duration::from_secs(60),
        "took {elapsed:?}: {stderr}"
    );
    assert!(stderr.contains("statement timeout"), "{stderr}");
}
