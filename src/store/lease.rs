//! The SQL of the one-writer lease: a PostgreSQL session advisory lock per site, taken and
//! held on a connection of its own ([`LeaseConnection`]). What the daemon does with it (wait,
//! hold, give up when the connection breaks) is `crate::daemon::lease`.
//!
//! The key is the two-integer form `(LOCK_CLASS, hash of the site)`, which lives in a different
//! key space from sqlx's single-`bigint` migration lock. Two sites whose hashes collide merely
//! take turns; they never write at once.

use super::{connect_options, describe_url};
use crate::settings::DatabaseSettings;
use anyhow::Context;
use sqlx::{Connection, PgConnection};
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

/// Who this process is, as `pg_stat_activity.application_name` shows it (at most 63 bytes):
/// `jira-sync <command> on <host> pid <pid>`, so a waiting writer can name the holder.
pub fn process_name(command: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown host".to_owned());
    let mut name = format!("jira-sync {command} on {host} pid {}", std::process::id());
    while name.len() > 63 {
        name.pop();
    }
    name
}

/// Opens one connection (not a pool) as `[database]` says, failing fast when the server
/// refuses it.
pub async fn connect_one(database: &DatabaseSettings) -> anyhow::Result<PgConnection> {
    connect_as(database, "jira-sync").await
}

/// [`connect_one`], naming the connection `application_name`.
async fn connect_as(
    database: &DatabaseSettings,
    application_name: &str,
) -> anyhow::Result<PgConnection> {
    let options = connect_options(database, application_name)?;
    let place = describe_url(database.require_url()?);
    let wait = Duration::from_secs(database.connect_timeout_secs).min(QUERY_TIMEOUT);
    match tokio::time::timeout(wait, PgConnection::connect_with(&options)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(err)) => Err(anyhow::Error::new(err).context(format!(
            "cannot connect to PostgreSQL at {place}: check database.url (or DATABASE_URL) and \
             that the server runs"
        ))),
        Err(_) => Err(
            anyhow::Error::new(sqlx::Error::PoolTimedOut).context(format!(
                "PostgreSQL at {place} did not answer within {}s (database.connect_timeout_secs)",
                wait.as_secs()
            )),
        ),
    }
}

/// Another process holds the site's writer lease (exit code 8).
#[derive(Debug, thiserror::Error)]
#[error(
    "another jira-sync holds this site's writer lease ({}): one process writes a site at a \
     time; wait for it to finish, or stop it (a `jira-sync run` daemon syncs on its own \
     schedule)",
    holder.as_deref().unwrap_or("its name is unknown")
)]
pub struct LeaseHeld {
    pub holder: Option<String>,
}

/// The connection the lease is taken and held on; every query on it gives up after
/// [`QUERY_TIMEOUT`].
pub struct LeaseConnection {
    conn: PgConnection,
    site: String,
    key: i32,
    /// Who holds it ([`process_name`]).
    holder: String,
}

const TAKE_EPOCH: &str = "INSERT INTO jira.writer_leases AS l (site, epoch, holder) \
     VALUES ($1, 1, $2) ON CONFLICT (site) DO UPDATE SET epoch = l.epoch + 1, \
     holder = excluded.holder, acquired_at = now() RETURNING epoch";

/// Who holds the advisory lock of a site in this database now: the application name of the
/// session holding it, and since when that session exists. (`pg_locks` shows the locks of
/// every database of the server; advisory locks are per database.)
const HOLDER: &str = "SELECT a.application_name, a.backend_start FROM pg_locks l \
     JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted \
     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
     AND l.classid::int8 = $1 AND l.objid::int8 = $2 AND l.objsubid = 2 LIMIT 1";

impl LeaseConnection {
    /// Connects for the lease of `site`, as `holder` ([`process_name`]).
    pub async fn open(
        database: &DatabaseSettings,
        site: &str,
        holder: &str,
    ) -> anyhow::Result<LeaseConnection> {
        Ok(LeaseConnection {
            conn: connect_as(database, holder).await?,
            site: site.to_owned(),
            key: site_key(site),
            holder: holder.to_owned(),
        })
    }

    /// Asks for the site's lock without waiting. When this connection gets it, the site's
    /// fencing epoch moves on and is returned: pages written under an older epoch are refused
    /// from now on ([`super::Store::fence`]).
    pub async fn try_lock(&mut self) -> anyhow::Result<Option<i64>> {
        let ask = sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1, $2)")
            .bind(LOCK_CLASS)
            .bind(self.key)
            .fetch_one(&mut self.conn);
        let locked = match tokio::time::timeout(QUERY_TIMEOUT, ask).await {
            Ok(result) => result?,
            Err(_) => anyhow::bail!(
                "the database did not answer within {}s",
                QUERY_TIMEOUT.as_secs()
            ),
        };
        if !locked {
            return Ok(None);
        }
        let take = sqlx::query_scalar::<_, i64>(TAKE_EPOCH)
            .bind(&self.site)
            .bind(&self.holder)
            .fetch_one(&mut self.conn);
        match tokio::time::timeout(QUERY_TIMEOUT, take).await {
            Ok(epoch) => Ok(Some(epoch.context(
                "cannot move the writer lease's epoch on (jira.writer_leases): is the database \
                 migrated?",
            )?)),
            Err(_) => anyhow::bail!(
                "the database did not answer within {}s",
                QUERY_TIMEOUT.as_secs()
            ),
        }
    }

    /// Who holds the site's lock now, in words, if the database can tell.
    pub async fn holder(&mut self) -> Option<String> {
        holder(&mut self.conn, &self.site).await.ok().flatten()
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

/// Who holds the writer lease of `site` now (`jira-sync run on host pid 7, since …`), if
/// anyone does.
pub async fn holder(conn: &mut PgConnection, site: &str) -> anyhow::Result<Option<String>> {
    let row: Option<(Option<String>, Option<chrono::DateTime<chrono::Utc>>)> =
        sqlx::query_as(HOLDER)
            .bind(i64::from(LOCK_CLASS))
            .bind(i64::from(site_key(site)))
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(name, since)| {
        let name = name
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "an unnamed session".to_owned());
        match since {
            Some(at) => format!(
                "{name}, connected since {}",
                at.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            None => name,
        }
    }))
}

/// Whether any session holds the writer lease of `site` (for `jira-sync status`).
pub async fn is_held(conn: &mut PgConnection, site: &str) -> anyhow::Result<bool> {
    let held: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
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
