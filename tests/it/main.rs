//! The one integration-test binary: real PostgreSQL, real HTTP to the built-in Jira simulator.

// A test awaiting a whole sync (client, auth, engine, streams) nests async state machines
// deeper than the default query limit of 128 lets a clean build lay out.
#![recursion_limit = "256"]

mod architecture;
mod auth;
mod check;
mod children;
mod client;
mod commands;
mod components;
mod config;
mod crash;
mod daemon;
mod dbt;
mod deploy;
mod fivetran;
mod hostile;
mod incremental;
mod ops;
mod org_events;
mod rate_limit;
mod reference;
mod schema;
mod support;
mod sync;
