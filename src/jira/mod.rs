//! Everything that speaks to Jira over HTTP: the client (auth, pacing, retries), its error
//! classification, the wire types that mirror Jira's JSON, and time handling for JQL.

pub mod client;
pub mod error;
pub mod model;
pub mod time;

pub use client::JiraClient;
pub use error::JiraError;
