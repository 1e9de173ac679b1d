//! A throwaway PostgreSQL cluster started from the machine's own server binaries.
//!
//! `jira-sync demo` and the test suite use it when no `DATABASE_URL` is given. The cluster lives
//! in a temporary directory on a free loopback port with trust authentication, and it removes
//! itself when its owner goes away, however that happens: the server runs under a small shell
//! supervisor that reads our end of a pipe, and when the pipe closes (drop, panic or a killed
//! process) the supervisor stops the server and deletes the directory.
//!
//! PostgreSQL refuses to run as root, so as root every step runs as the `postgres` system user
//! through `runuser`.

#![forbid(unsafe_code)]

use anyhow::{Context, bail};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a fresh cluster may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The supervisor: starts the server, then reads commands from its stdin (`stop` shuts the
/// server down keeping its data, `start` starts it again on the same port) until stdin closes,
/// when it stops the server and cleans up.
/// Arguments: data dir, port, socket dir, directory to remove, log file.
const SUPERVISOR: &str = r#"
pid=
start() {
  "$PG_BIN/postgres" -D "$1" -p "$2" -k "$3" -c listen_addresses=127.0.0.1 \
    -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
    -c max_connections=200 -c shared_buffers=128MB >>"$5" 2>&1 &
  pid=$!
}
stop() {
  if [ -n "$pid" ]; then
    kill -INT "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    pid=
  fi
}
start "$@"
while read -r command; do
  case "$command" in
    stop) stop ;;
    start) [ -n "$pid" ] || start "$@" ;;
  esac
done
stop
rm -rf "$4"
"#;

/// A running throwaway cluster. Dropping it stops the server and removes its files.
pub struct TempCluster {
    url: String,
    port: u16,
    log_file: PathBuf,
    supervisor: Child,
    /// Our end of the supervisor's stdin; closing it is the stop signal.
    stop_pipe: Option<ChildStdin>,
}

impl TempCluster {
    /// Creates and starts a cluster, and waits until it accepts connections.
    pub async fn start() -> anyhow::Result<TempCluster> {
        let bin = find_bin_dir()?;
        let as_root = running_as_root();
        let root = tempfile::Builder::new()
            .prefix("jira-sync-pg-")
            .tempdir()
            .context("cannot create a temporary directory for PostgreSQL")?
            .keep();
        let data = root.join("data");
        let log_file = root.join("postgres.log");
        if as_root {
            run_checked(Command::new("chown").arg("postgres:postgres").arg(&root))?;
        }
        let mut initdb = privileged(as_root, &bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .args(["--locale=C"]);
        run_checked(&mut initdb).context("initdb failed")?;

        let port = free_port()?;
        let mut sh = privileged(as_root, Path::new("sh"));
        sh.env("PG_BIN", &bin)
            .arg("-c")
            .arg(SUPERVISOR)
            .arg("supervisor")
            .arg(&data)
            .arg(port.to_string())
            .arg(&root)
            .arg(&root)
            .arg(&log_file)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut supervisor = sh
            .spawn()
            .context("cannot start the PostgreSQL supervisor")?;
        let stop_pipe = supervisor.stdin.take();
        let cluster = TempCluster {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            port,
            log_file,
            supervisor,
            stop_pipe,
        };
        cluster.wait_until_ready().await?;
        Ok(cluster)
    }

    /// The temporary directory holding the cluster's data and log; gone once the cluster is.
    pub fn directory(&self) -> &Path {
        self.log_file.parent().unwrap_or(&self.log_file)
    }

    /// Connection URL of the `postgres` database (superuser `postgres`, no password).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Connection URL of another database on this cluster.
    pub fn url_for(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates the database `name` (letters, digits and `_`) and returns its URL.
    pub async fn create_database(&self, name: &str) -> anyhow::Result<String> {
        use sqlx::Connection;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            bail!("{name:?} is not a plain database name (letters, digits and _)");
        }
        let mut conn = sqlx::PgConnection::connect(&self.url).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .with_context(|| format!("cannot create the database {name}"))?;
        conn.close().await?;
        Ok(self.url_for(name))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Shuts the server down (fast: open sessions are terminated, as in a restart) and keeps
    /// its data; returns once it refuses connections. [`TempCluster::start_server`] brings it
    /// back on the same port.
    pub async fn stop_server(&mut self) -> anyhow::Result<()> {
        use sqlx::Connection;
        self.send("stop")?;
        let deadline = Instant::now() + START_TIMEOUT;
        while let Ok(conn) = sqlx::PgConnection::connect(&self.url).await {
            let _ = conn.close().await;
            if Instant::now() > deadline {
                bail!(
                    "PostgreSQL still accepts connections {}s after being told to stop",
                    START_TIMEOUT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Starts a server stopped by [`TempCluster::stop_server`] on the same port and data, and
    /// waits until it accepts connections.
    pub async fn start_server(&mut self) -> anyhow::Result<()> {
        self.send("start")?;
        self.wait_until_ready().await
    }

    /// Writes one command line to the supervisor.
    fn send(&mut self, command: &str) -> anyhow::Result<()> {
        use std::io::Write;
        let pipe = self
            .stop_pipe
            .as_mut()
            .context("the PostgreSQL supervisor is already stopped")?;
        writeln!(pipe, "{command}").context("cannot talk to the PostgreSQL supervisor")?;
        pipe.flush()
            .context("cannot talk to the PostgreSQL supervisor")?;
        Ok(())
    }

    async fn wait_until_ready(&self) -> anyhow::Result<()> {
        use sqlx::Connection;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match sqlx::PgConnection::connect(&self.url).await {
                Ok(conn) => {
                    let _ = conn.close().await;
                    return Ok(());
                }
                Err(err) if Instant::now() > deadline => {
                    bail!(
                        "PostgreSQL did not start within {}s: {err}; its log says:\n{}",
                        START_TIMEOUT.as_secs(),
                        self.log_tail()
                    );
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_file).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        // Closing the pipe tells the supervisor to stop the server and remove the files.
        self.stop_pipe.take();
        let _ = self.supervisor.wait();
    }
}

/// Finds the directory holding `initdb` and `postgres`: `PG_BIN` if set, then the PATH, then
/// Debian's versioned directories (newest first).
pub fn find_bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    for dir in on_path {
        if dir.join("initdb").is_file() && dir.join("postgres").is_file() {
            // Resolve symlinks so the server finds its share directory next to the binary.
            let initdb = std::fs::canonicalize(dir.join("initdb"))?;
            if let Some(real) = initdb.parent() {
                return Ok(real.to_path_buf());
            }
        }
    }
    let mut versioned: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versioned.retain(|dir| dir.join("initdb").is_file());
    versioned.sort_by_key(|dir| {
        dir.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versioned.pop().context(
        "no PostgreSQL server binaries found (initdb, postgres): install them \
         (apt-get install postgresql) or set DATABASE_URL to an existing database",
    )
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A command that runs as the `postgres` user when we are root (PostgreSQL refuses root).
fn privileged(as_root: bool, program: &Path) -> Command {
    if as_root {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn run_checked(cmd: &mut Command) -> anyhow::Result<()> {
    let output = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !output.status.success() {
        bail!(
            "{cmd:?} exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .context("cannot find a free loopback port for PostgreSQL")?;
    Ok(listener.local_addr()?.port())
}
