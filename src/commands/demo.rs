//! `jira-sync demo`: the whole job on a fresh machine in one command. It starts the built-in Jira
//! simulator and, unless `DATABASE_URL` is set, a throwaway PostgreSQL from the machine's
//! binaries; then it checks the connection, migrates, runs a full sync, prints what landed and
//! how to query it, and keeps both running until Ctrl-C.

use super::bars::Bars;
use crate::engine::Engine;
use crate::engine::runner::{run_streams, select};
use crate::settings::Settings;
use crate::store::Store;
use crate::streams;
use anyhow::Context;
use jira_sim::{SimConfig, Simulator};
use secrecy::SecretString;
use std::process::ExitCode;
use std::sync::Arc;
use throwaway_pg::TempCluster;

/// Arguments of `jira-sync demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Size of the simulated site: small (~260 issues), medium (20,000), large (100,000).
    #[arg(long, default_value = "medium")]
    pub size: String,
    /// Exit after the sync instead of waiting for Ctrl-C.
    #[arg(long)]
    pub no_wait: bool,
}

/// `jira-sync demo`.
pub async fn command(args: DemoArgs, bars: &Bars) -> anyhow::Result<ExitCode> {
    let sim_config = match args.size.as_str() {
        "small" => SimConfig::small(),
        "medium" => SimConfig::medium(),
        "large" => SimConfig::large(),
        other => anyhow::bail!("unknown --size `{other}`: use small, medium or large"),
    };
    println!(
        "jira-sync demo: starting the built-in Jira Cloud simulator ({} site)",
        args.size
    );
    let sim = Simulator::start(sim_config.clone()).await?;
    println!(
        "  Jira simulator   {} (user {})",
        sim.base_url(),
        sim_config.email
    );

    let (database_url, _cluster) = database().await?;
    let mut settings = Settings::for_site(
        &url::Url::parse(&sim.base_url())?,
        &sim_config.email,
        SecretString::from(sim_config.api_token.clone()),
    )?;
    settings.database.url = Some(SecretString::from(database_url.clone()));
    // The simulator also plays the Atlassian Admin API, so the organization's audit events sync
    // too.
    settings.jira.org_id = Some(sim_config.org_id.clone());
    settings.jira.org_api_key = Some(SecretString::from(sim_config.org_api_key.clone()));
    settings.jira.admin_base_url = url::Url::parse(&sim.base_url())?;
    settings.sync.org_events = true;

    let report = crate::engine::check::run(&settings).await?;
    println!("  connection check ok: {}", report.headline());

    let store = Store::open(&settings.database).await?;
    store.migrate().await?;
    store
        .install_compat(&settings.database.fivetran_schema, &settings.site())
        .await?;
    println!("  migrations applied; running a full sync…\n");
    let engine = Engine::new(&settings, store.clone(), bars.observer(true)).await?;
    let streams = select(engine.registry(), &[])?;
    let outcomes = run_streams(Arc::new(engine), &streams, true).await;
    for outcome in &outcomes {
        println!("  {}", outcome.summary());
    }
    print_tables(&store).await?;
    print_queries(&database_url);
    let code = super::sync::exit_code(&outcomes);
    if args.no_wait {
        sim.shutdown().await;
        return Ok(code);
    }
    println!("\nThe simulator and the database keep running; press Ctrl-C to stop and clean up.");
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    sim.shutdown().await;
    Ok(code)
}

/// `DATABASE_URL` if set, else a fresh throwaway cluster with a `jira_demo` database. The
/// cluster is returned so it lives as long as the demo.
async fn database() -> anyhow::Result<(String, Option<TempCluster>)> {
    if let Ok(url) = std::env::var("DATABASE_URL")
        && !url.is_empty()
    {
        println!("  PostgreSQL       DATABASE_URL (as given)");
        return Ok((url, None));
    }
    let cluster = TempCluster::start().await.context(
        "cannot start a throwaway PostgreSQL; install the server binaries \
         (apt-get install postgresql) or set DATABASE_URL",
    )?;
    let url = cluster.create_database("jira_demo").await?;
    println!("  PostgreSQL       {url} (throwaway, removed on exit)");
    Ok((url, Some(cluster)))
}

async fn print_tables(store: &Store) -> anyhow::Result<()> {
    let tables = [
        &streams::projects::TABLE,
        &streams::issues::TABLE,
        &streams::users::TABLE,
        &streams::audit::TABLE,
        &streams::org_events::TABLE,
    ];
    let sizes = store.table_sizes(&tables).await?;
    println!("\nRows in PostgreSQL:");
    for (table, n) in tables.iter().zip(sizes) {
        println!("  {:<20} {n:>8}", table.name);
    }
    Ok(())
}

fn print_queries(url: &str) {
    println!(
        r#"
Try it:
  psql '{url}'

  -- open issues per project and status category
  SELECT p.key, i.status_category, count(*) FROM jira.issues i
    JOIN jira.projects p ON p.site = i.site AND p.id = i.project_id
   WHERE i.deleted_at IS NULL GROUP BY 1, 2 ORDER BY 1, 2;

  -- busiest assignees
  SELECT u.display_name, count(*) FROM jira.issues i
    JOIN jira.users u ON u.site = i.site AND u.account_id = i.assignee_account_id
   GROUP BY 1 ORDER BY 2 DESC LIMIT 10;

  -- any custom field straight from the raw JSON
  SELECT key, raw->'fields'->'customfield_10016' AS story_points FROM jira.issues LIMIT 5;

  -- what each sync did
  SELECT stream, mode, status, rows_written, requests, finished_at - started_at AS took
    FROM jira.sync_runs ORDER BY id;"#
    );
}
