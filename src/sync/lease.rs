//! The one-writer lease: a PostgreSQL session advisory lock per site, held on a connection of
//! its own for as long as the daemon syncs that site.
//!
//! A session lock lives exactly as long as the connection that took it, so a writer that dies
//! in any way (crash, SIGKILL, lost network) frees the site for the next one without a timeout
//! to tune. The key is the two-integer form `(LOCK_CLASS, hash of the site)`, which lives in a
//! different key space from sqlx's single-`bigint` migration lock. Two sites whose hashes
//! collide merely take turns; they never write at once.
//!
//! Taking the lease is also the one moment at which no other writer can be running for the
//! site, so it is where runs left `running` by a writer that died are closed as failed.

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use std::str::FromStr;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The first half of every jira-sync lock key ("JSYN"), so other applications' advisory locks
/// on the same database are unlikely to collide with ours.
pub const LOCK_CLASS: i32 = 0x4A53_594E;
/// How often a waiting replica asks for the lock again.
const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// How often the holder checks that its lock connection is alive.
const CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// A database that does not answer within this long is treated as unreachable.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest wait between attempts while the database is unreachable.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

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
    let place = crate::store::describe_url(url);
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

/// The lock, held: dropping it closes the connection, which frees the lock too.
pub struct Lease {
    conn: PgConnection,
    site: String,
}

impl Lease {
    /// Waits until this process holds the site's lease, or returns `None` once `stop` fires.
    ///
    /// While another writer holds it, says so once and asks again every few seconds; while
    /// the database is unreachable, retries with a growing delay. Neither is an error: a
    /// replica is meant to wait here for as long as the other one lives.
    pub async fn acquire(
        url: &SecretString,
        site: &str,
        stop: &CancellationToken,
    ) -> Option<Lease> {
        let key = site_key(site);
        let mut conn: Option<PgConnection> = None;
        let mut said_waiting = false;
        let mut failures = 0u32;
        loop {
            let delay = match try_lock(&mut conn, url, key).await {
                Ok(true) => {
                    let Some(conn) = conn.take() else { continue };
                    tracing::info!(
                        site,
                        "writer lease acquired: this process now syncs the site"
                    );
                    return Some(
                        Lease {
                            conn,
                            site: site.to_owned(),
                        }
                        .closing_abandoned_runs()
                        .await,
                    );
                }
                Ok(false) => {
                    failures = 0;
                    if !said_waiting {
                        tracing::info!(
                            site,
                            "another jira-sync holds the writer lease for this site; waiting \
                             to take over when it stops"
                        );
                        said_waiting = true;
                    }
                    tracing::debug!(site, "writer lease is still busy");
                    POLL_INTERVAL
                }
                Err(err) => {
                    conn = None;
                    failures += 1;
                    let delay = retry_delay(failures);
                    tracing::warn!(
                        site, error = %format!("{err:#}"), retry_in_secs = delay.as_secs(),
                        "cannot take the writer lease: the database is unreachable; retrying"
                    );
                    delay
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return None,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Holds the lease until `stop` fires (then returns it, to be released) or until its
    /// connection stops answering (then returns `None`: the lock may already be someone
    /// else's, so the caller must stop writing).
    pub async fn hold(mut self, stop: &CancellationToken) -> Option<Lease> {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Some(self),
                _ = tokio::time::sleep(CHECK_INTERVAL) => {}
            }
            let ping = sqlx::query("SELECT 1").execute(&mut self.conn);
            match tokio::time::timeout(QUERY_TIMEOUT, ping).await {
                Ok(Ok(_)) => {}
                Ok(Err(err)) => {
                    tracing::warn!(site = %self.site, error = %err, "lost the writer lease: its database connection broke");
                    return None;
                }
                Err(_) => {
                    tracing::warn!(site = %self.site, "lost the writer lease: the database stopped answering");
                    return None;
                }
            }
        }
    }

    /// Gives the lock back so a waiting replica can take over at once.
    pub async fn release(mut self) {
        let unlock = sqlx::query("SELECT pg_advisory_unlock($1, $2)")
            .bind(LOCK_CLASS)
            .bind(site_key(&self.site))
            .execute(&mut self.conn);
        // On failure the connection is dropped below, which frees the lock all the same.
        if let Ok(Ok(_)) = tokio::time::timeout(QUERY_TIMEOUT, unlock).await {
            let _ = tokio::time::timeout(QUERY_TIMEOUT, self.conn.close()).await;
        }
        tracing::info!(site = %self.site, "writer lease released");
    }

    /// Closes as failed the runs a dead writer left `running`: nobody else can be running
    /// them while we hold the lease. Failure here is only logged; the rows are history.
    async fn closing_abandoned_runs(mut self) -> Lease {
        let closed = crate::store::runs::close_abandoned_runs(&mut self.conn, &self.site);
        match tokio::time::timeout(QUERY_TIMEOUT, closed).await {
            Ok(Ok(runs)) if runs > 0 => tracing::warn!(
                site = %self.site, runs,
                "closed runs left unfinished by a previous writer as failed"
            ),
            Ok(Ok(_)) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "cannot close abandoned runs"),
            Err(_) => tracing::warn!("cannot close abandoned runs: the database did not answer"),
        }
        self
    }
}

/// One attempt: (re)connects when needed, then asks for the lock without waiting.
async fn try_lock(
    conn: &mut Option<PgConnection>,
    url: &SecretString,
    key: i32,
) -> anyhow::Result<bool> {
    if conn.is_none() {
        *conn = Some(connect_one(url).await?);
    }
    let conn = conn.as_mut().context("no lease connection")?;
    let ask = sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1, $2)")
        .bind(LOCK_CLASS)
        .bind(key)
        .fetch_one(conn);
    match tokio::time::timeout(QUERY_TIMEOUT, ask).await {
        Ok(result) => Ok(result?),
        Err(_) => anyhow::bail!(
            "the database did not answer within {}s",
            QUERY_TIMEOUT.as_secs()
        ),
    }
}

/// 1 s, 2 s, 4 s, … up to [`MAX_RETRY_DELAY`].
fn retry_delay(failures: u32) -> Duration {
    let secs = 1u64 << failures.saturating_sub(1).min(16);
    Duration::from_secs(secs).min(MAX_RETRY_DELAY)
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

    #[test]
    fn retry_delays_double_and_stop_growing_at_the_cap() {
        assert_eq!(retry_delay(1), Duration::from_secs(1));
        assert_eq!(retry_delay(3), Duration::from_secs(4));
        assert_eq!(retry_delay(40), MAX_RETRY_DELAY);
    }
}
