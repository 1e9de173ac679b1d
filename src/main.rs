//! The `jira-sync` binary: everything lives in the library; see [`jira_sync::cli::run`].

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    jira_sync::cli::run(jira_sync::cli::Cli::parse())
}
