//! Everything that speaks to Jira over HTTP: the client (auth, pacing, retries), its error
//! classification, the wire types that mirror Jira's JSON, and time handling for JQL.

pub mod auth;
pub mod client;
pub mod error;
pub mod json;
pub mod metrics;
pub mod model;
pub mod rate_limit;
pub mod retry;
pub mod time;

pub use client::{Flavor, JiraClient};
pub use error::JiraError;
