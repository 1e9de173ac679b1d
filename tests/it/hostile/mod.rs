//! Hostile conditions: records that cannot be stored, clocks that disagree, rival writers,
//! servers that lie, credentials short of a scope, a database that does not answer, paging
//! while the site changes. Each test shows that nothing is lost and the user is told.

mod clocks;
mod credentials;
mod database;
mod lies;
mod paging;
mod poison;
mod writers;
