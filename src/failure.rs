//! What kind of failure an error is: the one thing callers above the HTTP and SQL layers branch
//! on (the daemon, to tell a retryable run from one only the operator can mend; the command
//! line, to pick the exit code). Errors carry a kind; exit codes are mapped from it once, at
//! the command line's edge ([`crate::commands::exit`]).

/// The kinds of failure, from the operator's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The configuration is invalid: an unknown key, a missing or malformed value.
    Config,
    /// Jira rejected the credentials (HTTP 401 on the identity probe; never retried).
    Credentials,
    /// A permission is missing (HTTP 403, or no Browse Projects permission).
    Permission,
    /// Jira is unreachable, or the address is not a Jira site.
    Unreachable,
    /// Still rate limited after the bounded wait.
    RateLimited,
    /// The database is unreachable, or a statement or a migration failed.
    Database,
    /// Another jira-sync process holds the site's writer lease.
    LeaseHeld,
    /// Anything else: a run failed in a way none of the above covers.
    Other,
}

impl Failure {
    /// Whether only the operator can mend it (a retry will fail the same way).
    pub fn needs_operator(self) -> bool {
        matches!(
            self,
            Failure::Config | Failure::Credentials | Failure::Permission
        )
    }

    /// Whether it says the connection to Jira itself is broken, rather than one run going wrong.
    pub fn breaks_connection(self) -> bool {
        matches!(
            self,
            Failure::Credentials | Failure::Permission | Failure::Unreachable
        )
    }
}
