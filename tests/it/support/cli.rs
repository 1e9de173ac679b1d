//! Helpers to run the real `jira-sync` binary with a temporary configuration file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use tempfile::TempDir;

/// A configuration file in a temporary directory, removed on drop.
pub struct ConfigFile {
    _dir: TempDir,
    pub path: PathBuf,
}

/// Writes `toml` to a fresh temporary `jira-sync.toml`.
pub fn write_config(toml: &str) -> ConfigFile {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let path = dir.path().join("jira-sync.toml");
    std::fs::write(&path, toml).expect("write the config file");
    ConfigFile { _dir: dir, path }
}

/// A config for a site at `base_url` with Basic credentials, and retries fast enough for tests
/// (a `Retry-After` from the server still sets the minimum wait). `jira-sync run` serves its
/// health endpoints on a free port, so daemons of tests running at once do not collide;
/// `[rate_limit]` stays the last table, so tests may append keys to it.
pub fn site_toml(base_url: &str, email: &str, token: &str) -> String {
    format!(
        r#"[jira]
email = "{email}"
api_token = "{token}"
base_url = "{base_url}"

[server]
listen = "127.0.0.1:0"

[rate_limit]
requests_per_second = 100.0
burst = 50
max_retries = 3
backoff_base_ms = 10
backoff_max_ms = 50
request_timeout_secs = 10
connect_timeout_secs = 5
"#
    )
}

/// The binary, with none of the caller's `JIRA_SYNC__*`, `DATABASE_URL`, `RUST_LOG` or
/// `JIRA_SYNC_CONFIG` leaking into the test.
pub fn jira_sync() -> assert_cmd::Command {
    let mut cmd = assert_cmd::cargo::cargo_bin_cmd!("jira-sync");
    for (name, _) in std::env::vars() {
        if name.starts_with("JIRA_SYNC") || name == "DATABASE_URL" || name == "RUST_LOG" {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Runs `jira-sync --config <file> <args>` on a blocking thread, so a simulator served by the
/// test's own runtime keeps answering while the binary talks to it.
pub async fn run_with_config(config: &ConfigFile, args: &[&str]) -> Output {
    let mut cmd = jira_sync();
    cmd.arg("--config").arg(&config.path).args(args);
    run(cmd).await
}

/// `jira-sync --config <config> sync --once --no-progress <args>` writing to `database_url`, as a
/// plain process that logs warnings only and discards its output: for tests that kill it.
pub fn quiet_sync(config: &Path, database_url: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jira-sync"));
    cmd.arg("--config")
        .arg(config)
        .args(["sync", "--once", "--no-progress"])
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("JIRA_SYNC__LOG__LEVEL", "warn")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Runs a `quiet_sync` process to its end on a blocking thread; fails unless it succeeded.
pub async fn sync_to_the_end(mut cmd: Command) {
    let status = tokio::task::spawn_blocking(move || cmd.status().expect("run jira-sync"))
        .await
        .expect("thread");
    assert!(status.success(), "the run to the end failed: {status}");
}

/// Runs a prepared command on a blocking thread and returns its output.
pub async fn run(mut cmd: assert_cmd::Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().expect("run jira-sync"))
        .await
        .expect("the command thread finished")
}

/// stdout and stderr of a run, as text, for assertions and failure messages.
pub fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// stdout and stderr of a run that must have exited with `code`; both are shown if it did not.
pub fn expect_exit(output: &Output, code: i32) -> (String, String) {
    let (stdout, stderr) = text(output);
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    (stdout, stderr)
}

/// A server on 127.0.0.1 that answers every request with an HTML page, like a marketing site
/// or a proxy's login page at a mistyped base_url. Returns its base URL.
pub async fn html_server() -> String {
    use axum::response::Html;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local address");
    let app = axum::Router::new().fallback(|| async {
        Html("<!DOCTYPE html><html><head><title>Welcome</title></head><body>Hello</body></html>")
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// A loopback port with nothing listening on it.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("local address").port();
    drop(listener);
    port
}
