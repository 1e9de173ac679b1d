//! The command line: flags and subcommands, and [`run`], which loads the settings, starts
//! logging and the runtime, runs one command and turns its outcome into an exit code (the one
//! place where exit codes are chosen: [`exit`]).

pub mod auth;
pub mod bars;
pub mod check;
#[cfg(feature = "simulator")]
pub mod demo;
pub mod exit;
pub mod healthcheck;
pub mod status;
pub mod sync;
pub mod telemetry;

use crate::settings::{LogSettings, Settings};
use crate::streams::Registry;
use bars::Bars;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
    Auth(auth::AuthArgs),
    /// Tests the connection to Jira: identity, time zone, clock skew, which streams can sync.
    Check(check::CheckArgs),
    /// Serves the built-in Jira Cloud simulator over HTTP, with no configuration.
    #[cfg(feature = "simulator")]
    Simulate(jira_sim::SimulateArgs),
    /// Applies the database migrations.
    Migrate,
    /// Syncs Jira into PostgreSQL.
    Sync(sync::SyncArgs),
    /// Runs the daemon: checks the connection, migrates, then keeps every enabled stream in
    /// sync on its `[sync]` schedule until SIGTERM or SIGINT.
    Run,
    /// Shows each stream's last run, cursor, rows and lag, read from the database.
    Status(status::StatusArgs),
    /// Runs the simulator, a throwaway PostgreSQL and a full sync, with no configuration.
    #[cfg(feature = "simulator")]
    Demo(demo::DemoArgs),
    /// Asks a running `jira-sync run` whether it is healthy (GET /healthz at `server.listen`,
    /// or --url): exit 0 when it answers 2xx, 1 otherwise. For container HEALTHCHECKs.
    Healthcheck(healthcheck::HealthcheckArgs),
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
        // The streams read their own settings; building them checks those too.
        match Settings::load(cli.config.as_deref())
            .and_then(|settings| Registry::new(&settings).map(|_| settings))
        {
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
    let bars = Bars::new(Duration::from_secs(log.progress_interval_secs));
    telemetry::init(&log, cli.log_level.as_deref(), &bars);
    for warning in settings.iter().flat_map(|s| &s.warnings) {
        tracing::warn!("{warning}");
    }
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
    match runtime.block_on(dispatch(cli.command, settings, bars)) {
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

async fn dispatch(
    command: Command,
    settings: Option<Settings>,
    bars: Bars,
) -> anyhow::Result<ExitCode> {
    let server = settings.as_ref().map(|s| s.server.clone());
    let settings =
        || settings.ok_or_else(|| anyhow::anyhow!("internal error: settings were not loaded"));
    match command {
        Command::Auth(args) => auth::command(&settings()?, &args).await,
        Command::Check(args) => check::command(&settings()?, &args).await,
        #[cfg(feature = "simulator")]
        Command::Simulate(args) => {
            jira_sim::serve_cli(args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let settings = settings()?;
            let store = crate::store::Store::open(&settings.database).await?;
            store.migrate().await?;
            store
                .install_compat(&settings.database.fivetran_schema, &settings.site())
                .await?;
            let url = settings.database.require_url()?;
            tracing::info!(database = %crate::store::describe_url(url), "migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Sync(args) => sync::command(settings()?, args, &bars).await,
        Command::Run => crate::daemon::command(settings()?).await,
        Command::Status(args) => status::command(&settings()?, &args).await,
        #[cfg(feature = "simulator")]
        Command::Demo(args) => demo::command(args, &bars).await,
        Command::Healthcheck(args) => healthcheck::command(server.as_ref(), &args).await,
    }
}
