//! The SQL of the one-writer lease: a PostgreSQL session advisory lock per site, taken and
//! held on a connection of its own ([`LeaseConnection`]). What the daemon does with it (wait,
//! hold, give up when the connection breaks) is `crate::daemon::lease`.
//!
//! The key is the two-integer form `(LOCK_CLASS, hash of the site)`, which lives in a different
//! key space from sqlx's single-`bigint` migration lock. Two sites whose hashes collide merely
//! take turns; they never write at once.

use super::describe_url;
use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use std::str::FromStr;
use std::time::Duration;

/// The first half of every jira-sync lock key ("JSYN"), so other applications' advisory locks
/// on the same database are unlikely to collide with ours.
pub const LOCK_CLASS: i32 = 0x4A53_594E;
/// A database that does not answer within this long is treated as unreachable.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// The second half of the lock key: FNV-1a of the site, kept non-negative so that
/// `pg_locks.objid` (an unsigned `oid`) shows the same number.
pub fn site_key(site: &str) -> i32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in b"jira-sync:".iter().chain(site.as_bytes()) {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    i32::try_from(hash & 0x7fff_ffff).unwrap_or(0)
}

/// Opens one connection (not a pool) to `url`, failing fast when the server refuses it.
pub async fn connect_one(url: &SecretString) -> anyhow::Result<PgConnection> {
    // The parse error is not quoted: it could contain the password.
    let options = PgConnectOptions::from_str(url.expose_secret())
        .map_err(|_| anyhow::anyhow!("database.url is not a valid PostgreSQL URL"))?
        .application_name("jira-sync");
    let place = describe_url(url);
    match tokio::time::timeout(QUERY_TIMEOUT, PgConnection::connect_with(&options)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(err)) => Err(anyhow::Error::new(err).context(format!(
            "cannot connect to PostgreSQL at {place}: check database.url (or DATABASE_URL) and \
             that the server runs"
        ))),
        Err(_) => Err(
            anyhow::Error::new(sqlx::Error::PoolTimedOut).context(format!(
                "PostgreSQL at {place} did not answer within {}s",
                QUERY_TIMEOUT.as_secs()
            )),
        ),
    }
}

/// The connection the lease is taken and held on; every query on it gives up after
/// [`QUERY_TIMEOUT`].
pub struct LeaseConnection {
    conn: PgConnection,
    key: i32,
}

impl LeaseConnection {
    /// Connects for the lease of `site`.
    pub async fn open(url: &SecretString, site: &str) -> anyhow::Result<LeaseConnection> {
        Ok(LeaseConnection {
            conn: connect_one(url).await?,
            key: site_key(site),
        })
    }

    /// Asks for the site's lock without waiting: `true` when this connection holds it now.
    pub async fn try_lock(&mut self) -> anyhow::Result<bool> {
        let ask = sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1, $2)")
            .bind(LOCK_CLASS)
            .bind(self.key)
            .fetch_one(&mut self.conn);
        match tokio::time::timeout(QUERY_TIMEOUT, ask).await {
            Ok(result) => Ok(result?),
            Err(_) => anyhow::bail!(
                "the database did not answer within {}s",
                QUERY_TIMEOUT.as_secs()
            ),
        }
    }

    /// Whether the connection still answers (and so still holds the lock it took).
    pub async fn ping(&mut self) -> anyhow::Result<()> {
        let ping = sqlx::query("SELECT 1").execute(&mut self.conn);
        tokio::time::timeout(QUERY_TIMEOUT, ping)
            .await
            .context("the database stopped answering")??;
        Ok(())
    }

    /// Closes as failed the runs of `site` a dead writer left `running`.
    pub async fn close_abandoned_runs(&mut self, site: &str) -> anyhow::Result<u64> {
        let closed = super::runs::close_abandoned_runs(&mut self.conn, site);
        tokio::time::timeout(QUERY_TIMEOUT, closed)
            .await
            .context("the database did not answer")?
            .map_err(Into::into)
    }

    /// Gives the lock back and closes the connection. On failure the connection is dropped,
    /// which frees the lock all the same.
    pub async fn release(mut self) {
        let unlock = sqlx::query("SELECT pg_advisory_unlock($1, $2)")
            .bind(LOCK_CLASS)
            .bind(self.key)
            .execute(&mut self.conn);
        if let Ok(Ok(_)) = tokio::time::timeout(QUERY_TIMEOUT, unlock).await {
            let _ = tokio::time::timeout(QUERY_TIMEOUT, self.conn.close()).await;
        }
    }
}

/// Whether any session holds the writer lease of `site` (for `jira-sync status`).
pub async fn is_held(conn: &mut PgConnection, site: &str) -> anyhow::Result<bool> {
    let held: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND classid::int8 = $1 AND objid::int8 = $2 AND objsubid = 2)",
    )
    .bind(i64::from(LOCK_CLASS))
    .bind(i64::from(site_key(site)))
    .fetch_one(conn)
    .await?;
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_keys_are_stable_non_negative_and_differ_between_sites() {
        let a = site_key("acme.atlassian.net");
        assert_eq!(a, site_key("acme.atlassian.net"));
        assert!(a >= 0);
        assert_ne!(a, site_key("other.atlassian.net"));
    }
}
