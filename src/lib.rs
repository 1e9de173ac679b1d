//! jira-sync: keeps an exact, fresh PostgreSQL copy of a Jira Cloud site.
//!
//! The crate is a library with a thin binary on top (`src/main.rs`). See `ARCHITECTURE.md` for
//! the bird's-eye view and the invariants each module keeps.

pub mod auth_cmd;
pub mod check;
pub mod cli;
pub mod config;
#[cfg(feature = "simulator")]
pub mod demo;
pub mod exit;
pub mod jira;
pub mod metrics;
pub mod server;
pub mod status;
pub mod store;
pub mod streams;
pub mod sync;
pub mod telemetry;
