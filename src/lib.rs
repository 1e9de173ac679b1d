//! jira-sync: keeps an exact, fresh PostgreSQL copy of a Jira Cloud site.
//!
//! The crate is a library with a thin binary on top (`src/main.rs`). Its modules are layers,
//! each using only those below it (`tests/it/architecture.rs` fails on a `use` that breaks
//! this; see `ARCHITECTURE.md`):
//!
//! | layer | modules |
//! |---|---|
//! | commands | [`commands`]: the CLI, exit codes, logging, progress bars, the demo |
//! | daemon | [`daemon`]: the scheduler of `jira-sync run`, the writer lease, the health listener |
//! | engine | [`engine`]: `run_once`, running streams together, the connection check, status |
//! | streams | [`streams`]: one component per Jira entity, and the registry of them |
//! | HTTP, SQL | [`jira`] (knows no database), [`store`] (knows no Jira wire type) |
//! | settings | [`settings`], [`failure`]: leaves |

#![forbid(unsafe_code)]

pub mod commands;
pub mod daemon;
pub mod engine;
pub mod failure;
pub mod jira;
pub mod settings;
pub mod store;
pub mod streams;
