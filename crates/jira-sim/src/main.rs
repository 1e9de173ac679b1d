//! `jira-sim`: the Jira Cloud simulator as a program of its own (`jira-sync simulate` serves the
//! same thing).

use clap::Parser;

/// Serves a simulated Jira Cloud (or Data Center) site over HTTP until SIGTERM or Ctrl-C.
#[derive(Debug, Parser)]
#[command(name = "jira-sim", version, about)]
struct Cli {
    #[command(flatten)]
    args: jira_sim::SimulateArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    jira_sim::serve_cli(Cli::parse().args).await
}
