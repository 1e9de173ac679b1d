//! The one-writer lease: a PostgreSQL session advisory lock per site, held on a connection of
//! its own for as long as the daemon syncs that site ([`crate::store::lease`] has the SQL).
//!
//! A session lock lives exactly as long as the connection that took it, so a writer that dies
//! in any way (crash, SIGKILL, lost network) frees the site for the next one without a timeout
//! to tune. Taking the lease is also the one moment at which no other writer can be running for
//! the site, so it is where runs left `running` by a writer that died are closed as failed.

use crate::settings::DatabaseSettings;
use crate::store::lease::{LeaseConnection, LeaseHeld, process_name};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often a waiting replica asks for the lock again.
const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// How often the holder checks that its lock connection is alive.
const CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// The longest wait between attempts while the database is unreachable.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// The lock, held: dropping it closes the connection, which frees the lock too.
pub struct Lease {
    conn: LeaseConnection,
    site: String,
    /// The fencing epoch this holding took ([`crate::store::Store::fence`]).
    pub epoch: i64,
}

impl Lease {
    /// Waits until this process holds the site's lease, or returns `None` once `stop` fires.
    ///
    /// While another writer holds it, says so once and asks again every few seconds; while
    /// the database is unreachable, retries with a growing delay. Neither is an error: a
    /// replica is meant to wait here for as long as the other one lives.
    pub async fn acquire(
        database: &DatabaseSettings,
        site: &str,
        stop: &CancellationToken,
    ) -> Option<Lease> {
        let holder = process_name("run");
        let mut conn: Option<LeaseConnection> = None;
        let mut said_waiting = false;
        let mut failures = 0u32;
        loop {
            let delay = match try_lock(&mut conn, database, site, &holder).await {
                Ok(Some(epoch)) => {
                    let Some(conn) = conn.take() else { continue };
                    tracing::info!(
                        site,
                        epoch,
                        "writer lease acquired: this process now syncs the site"
                    );
                    let lease = Lease {
                        conn,
                        site: site.to_owned(),
                        epoch,
                    };
                    return Some(lease.closing_abandoned_runs().await);
                }
                Ok(None) => {
                    failures = 0;
                    if !said_waiting {
                        let other = match conn.as_mut() {
                            Some(conn) => conn.holder().await,
                            None => None,
                        };
                        tracing::info!(
                            site,
                            holder = other.as_deref().unwrap_or("unknown"),
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

    /// One attempt, for `sync --once` (as `command`): the lease, or the error that names who
    /// holds it.
    pub async fn try_acquire(
        database: &DatabaseSettings,
        site: &str,
        command: &str,
    ) -> anyhow::Result<Lease> {
        let mut conn = LeaseConnection::open(database, site, &process_name(command)).await?;
        match conn.try_lock().await? {
            Some(epoch) => Ok(Lease {
                conn,
                site: site.to_owned(),
                epoch,
            }
            .closing_abandoned_runs()
            .await),
            None => Err(LeaseHeld {
                holder: conn.holder().await,
            }
            .into()),
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
            if let Err(err) = self.conn.ping().await {
                tracing::warn!(site = %self.site, error = %format!("{err:#}"), "lost the writer lease: its database connection broke or stopped answering");
                return None;
            }
        }
    }

    /// Gives the lock back so a waiting replica can take over at once.
    pub async fn release(self) {
        self.conn.release().await;
        tracing::info!(site = %self.site, "writer lease released");
    }

    /// Closes as failed the runs a dead writer left `running`: nobody else can be running
    /// them while we hold the lock. Failure here is only logged; the rows are history.
    async fn closing_abandoned_runs(mut self) -> Lease {
        match self.conn.close_abandoned_runs(&self.site).await {
            Ok(runs) if runs > 0 => tracing::warn!(
                site = %self.site, runs,
                "closed runs left unfinished by a previous writer as failed"
            ),
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %format!("{err:#}"), "cannot close abandoned runs"),
        }
        self
    }
}

/// One attempt: (re)connects when needed, then asks for the lock without waiting.
async fn try_lock(
    conn: &mut Option<LeaseConnection>,
    database: &DatabaseSettings,
    site: &str,
    holder: &str,
) -> anyhow::Result<Option<i64>> {
    if conn.is_none() {
        *conn = Some(LeaseConnection::open(database, site, holder).await?);
    }
    match conn.as_mut() {
        Some(conn) => conn.try_lock().await,
        None => anyhow::bail!("no lease connection"),
    }
}

/// 1 s, 2 s, 4 s, … up to [`MAX_RETRY_DELAY`].
fn retry_delay(failures: u32) -> Duration {
    let secs = 1u64 << failures.saturating_sub(1).min(16);
    Duration::from_secs(secs).min(MAX_RETRY_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_and_stop_growing_at_the_cap() {
        assert_eq!(retry_delay(1), Duration::from_secs(1));
        assert_eq!(retry_delay(3), Duration::from_secs(4));
        assert_eq!(retry_delay(40), MAX_RETRY_DELAY);
    }
}
