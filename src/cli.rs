//! The command line: flags and subcommands, and [`run`], which loads the settings, starts
//! logging and the runtime, runs one command and turns its outcome into an exit code.

use crate::config::{LogSettings, Settings};
use crate::exit;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Keeps an exact, fresh PostgreSQL copy of a Jira Cloud site.
#[derive(Debug, Parser)]
#[command(name = "jira-sync", version, about)]
pub struct Cli {
    /// A TOML file layered over the built-in defaults and ./config/default.toml.
    #[arg(long, global = true, env = "JIRA_SYNC_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log filter, e.g. `debug` or `jira_sync=trace`; overrides RUST_LOG and log.level.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// OAuth 2.0 sign-in (`auth login`) for jira.auth = "oauth".
    Auth(crate::auth_cmd::AuthArgs),
    /// Tests the connection to Jira: identity, time zone, clock skew, which streams can sync.
    Check(crate::check::CheckArgs),
    /// Serves the built-in Jira Cloud simulator over HTTP, with no configuration.
    #[cfg(feature = "simulator")]
    Simulate(jira_sim::SimulateArgs),
    /// Applies the database migrations.
    Migrate,
    /// Syncs Jira into PostgreSQL.
    Sync(crate::sync::SyncArgs),
    /// Runs the daemon: checks the connection, migrates, then keeps every enabled stream in
    /// sync on its `[sync]` schedule until SIGTERM or SIGINT.
    Run,
    /// Shows each stream's last run, cursor, rows and lag, read from the database.
    Status(crate::status::StatusArgs),
    /// Runs the simulator, a throwaway PostgreSQL and a full sync, with no configuration.
    #[cfg(feature = "simulator")]
    Demo(crate::demo::DemoArgs),
    /// Asks a running `jira-sync run` whether it is healthy (GET /healthz at `server.listen`,
    /// or --url): exit 0 when it answers 2xx, 1 otherwise. For container HEALTHCHECKs.
    Healthcheck(crate::server::HealthcheckArgs),
}

/// Runs the parsed command line to completion and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    if let Some(level) = &cli.log_level
        && let Err(e) = tracing_subscriber::EnvFilter::try_new(level)
    {
        eprintln!(
            "error: --log-level {level:?} is not a valid filter ({e}): use e.g. info or debug"
        );
        return ExitCode::from(exit::INVALID_CONFIG);
    }
    let settings = if needs_settings(&cli.command) {
        match Settings::load(cli.config.as_deref()) {
            Ok(settings) => Some(settings),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(exit::INVALID_CONFIG);
            }
        }
    } else {
        None
    };
    let log = settings
        .as_ref()
        .map_or_else(LogSettings::default, |s| s.log.clone());
    crate::telemetry::init(&log, cli.log_level.as_deref());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    match runtime.block_on(dispatch(cli.command, settings)) {
        Ok(code) => code,
        Err(e) => {
            tracing::debug!("command failed: {e:#}");
            eprintln!("error: {e:#}");
            ExitCode::from(exit::code_for(&e))
        }
    }
}

/// Whether a command reads the configuration; the self-contained ones do not, nor does a
/// healthcheck told its URL (a simulator's container has no site configured).
fn needs_settings(command: &Command) -> bool {
    match command {
        #[cfg(feature = "simulator")]
        Command::Demo(_) | Command::Simulate(_) => false,
        Command::Healthcheck(args) => args.url.is_none(),
        _ => true,
    }
}

async fn dispatch(command: Command, settings: Option<Settings>) -> anyhow::Result<ExitCode> {
    let server = settings.as_ref().map(|s| s.server.clone());
    let settings =
        || settings.ok_or_else(|| anyhow::anyhow!("internal error: settings were not loaded"));
    match command {
        Command::Auth(args) => crate::auth_cmd::command(&settings()?, &args).await,
        Command::Check(args) => crate::check::command(&settings()?, &args).await,
        #[cfg(feature = "simulator")]
        Command::Simulate(args) => {
            jira_sim::serve_cli(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            crate::store::migrate_command(&settings()?).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sync(args) => crate::sync::command(settings()?, args).await,
        Command::Run => crate::sync::scheduler::command(settings()?).await,
        Command::Status(args) => crate::status::command(&settings()?, &args).await,
        #[cfg(feature = "simulator")]
        Command::Demo(args) => crate::demo::command(args).await,
        Command::Healthcheck(args) => crate::server::healthcheck(server.as_ref(), &args).await,
    }
}
