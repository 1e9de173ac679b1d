//! Process exit codes: the one place where a failure's kind ([`Failure`]) becomes a number.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success (for `check`: connected; streams the account cannot read are reported and skipped) |
//! | 1 | a sync or runtime failure not covered below |
//! | 2 | the configuration is invalid (unknown key, missing or malformed value) |
//! | 3 | Jira rejected the credentials (HTTP 401; never retried) |
//! | 4 | a permission is missing (HTTP 403, or no Browse Projects permission) |
//! | 5 | Jira is unreachable or `base_url` is not a Jira Cloud site (DNS, refused, TLS, timeout, 404/410, HTML) |
//! | 6 | still rate limited after the bounded wait |
//! | 7 | the database is unreachable, did not answer within the statement timeout, or a migration failed |
//! | 8 | another jira-sync holds this site's writer lease, or took it over mid-run |

use crate::engine::failure_of;
use crate::failure::Failure;

pub const SUCCESS: u8 = 0;
pub const FAILURE: u8 = 1;
pub const INVALID_CONFIG: u8 = 2;
pub const INVALID_CREDENTIALS: u8 = 3;
pub const PERMISSION_MISSING: u8 = 4;
pub const JIRA_UNREACHABLE: u8 = 5;
pub const RATE_LIMITED: u8 = 6;
pub const DATABASE_FAILURE: u8 = 7;
pub const LEASE_HELD: u8 = 8;

/// The exit code of a failure of `kind`.
pub fn code(kind: Failure) -> u8 {
    match kind {
        Failure::Config => INVALID_CONFIG,
        Failure::Credentials => INVALID_CREDENTIALS,
        Failure::Permission => PERMISSION_MISSING,
        Failure::Unreachable => JIRA_UNREACHABLE,
        Failure::RateLimited => RATE_LIMITED,
        Failure::Database => DATABASE_FAILURE,
        Failure::LeaseHeld => LEASE_HELD,
        Failure::Other => FAILURE,
    }
}

/// The exit code for `err`: the first error in its chain that has a kind decides, anything
/// else is a plain failure.
pub fn code_for(err: &anyhow::Error) -> u8 {
    code(failure_of(err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jira::JiraError;
    use crate::settings::ConfigError;
    use anyhow::Context;

    #[test]
    fn the_first_classified_error_in_the_chain_decides_the_code() {
        let jira: anyhow::Error = JiraError::Unauthorized { host: "h".into() }.into();
        assert_eq!(
            code_for(&jira.context("checking the connection")),
            INVALID_CREDENTIALS
        );
        let db = Err::<(), _>(sqlx::Error::PoolTimedOut).context("connecting");
        assert_eq!(db.map_err(|e| code_for(&e)), Err(DATABASE_FAILURE));
        let config = ConfigError::Load("x".into());
        assert_eq!(code_for(&anyhow::Error::new(config)), INVALID_CONFIG);
        assert_eq!(code_for(&anyhow::anyhow!("something else")), FAILURE);
    }
}
