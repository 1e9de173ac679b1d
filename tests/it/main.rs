//! The one integration-test binary: real PostgreSQL, real HTTP to the built-in Jira simulator.

mod auth;
mod check;
mod commands;
mod config;
mod crash;
mod daemon;
mod deploy;
mod incremental;
mod ops;
mod org_events;
mod rate_limit;
mod schema;
mod simulator;
mod support;
mod sync;
