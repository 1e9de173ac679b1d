//! The JQL subset the simulator understands: parsing, then compiling against the site.
//!
//! Fields: `project`, `key`/`issuekey`/`id`/`issue`, `updated`, `created`. Operators
//! `= != > >= < <= in, not in, is [not] empty`; `AND`, `OR`, `NOT`, parentheses; `ORDER BY`
//! with at most seven fields. Keywords and field names are case-insensitive. Date literals are
//! read in the user's time zone at minute precision; a bare integer is epoch milliseconds.
//! Issues of the archived project are searchable like any others.

mod eval;
mod parse;

pub(crate) use eval::{compile, missing_issue, sort};
pub(crate) use parse::{UNBOUNDED, parse};
