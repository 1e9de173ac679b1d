//! The `jira-sync` binary: everything lives in the library; see [`jira_sync::commands::run`].

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    jira_sync::commands::run(jira_sync::commands::Cli::parse())
}
