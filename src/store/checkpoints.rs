//! Checkpoints: one JSON document per site and stream in `jira.sync_state`.
//!
//! A checkpoint is only ever written inside the transaction that writes the page it covers, so
//! it can never run ahead of the data. The store does not know what a document holds: streams
//! give it typed checkpoints as JSON ([`crate::streams::checkpoint`]). A stream whose parallel
//! tasks each own a part of its document (issues: one cursor per project) changes its part with
//! [`CheckpointWrite::Update`], which reads the document under a row lock and writes it back in
//! the page's transaction, so concurrent pages never lose each other's changes.

use super::Store;
use serde_json::Value;
use sqlx::PgConnection;

/// A change of the stored document: it gets the current one (`None` when there is none) and
/// returns the next.
pub type Update = Box<dyn FnOnce(Option<Value>) -> anyhow::Result<Value> + Send>;

/// A change to a stream's checkpoint, applied in the same transaction as a page.
pub enum CheckpointWrite {
    /// Leave the checkpoint as it is.
    None,
    /// Replace the whole document.
    Replace { stream: &'static str, value: Value },
    /// Change the document under a row lock.
    Update {
        stream: &'static str,
        update: Update,
    },
}

impl std::fmt::Debug for CheckpointWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckpointWrite::None => f.write_str("None"),
            CheckpointWrite::Replace { stream, .. } => write!(f, "Replace({stream})"),
            CheckpointWrite::Update { stream, .. } => write!(f, "Update({stream})"),
        }
    }
}

const UPSERT: &str = r#"
INSERT INTO jira.sync_state (site, stream, checkpoint, updated_at) VALUES ($1, $2, $3, now())
ON CONFLICT (site, stream) DO UPDATE SET checkpoint = excluded.checkpoint, updated_at = now()
"#;

/// Makes sure the row exists, so that the lock below has something to lock even for the first
/// page (two first pages at once then take turns instead of both inserting). The placeholder
/// is replaced before this transaction commits.
const ENSURE: &str = r#"
INSERT INTO jira.sync_state (site, stream, checkpoint) VALUES ($1, $2, 'null'::jsonb)
ON CONFLICT (site, stream) DO NOTHING
"#;

const LOCK: &str =
    "SELECT checkpoint FROM jira.sync_state WHERE site = $1 AND stream = $2 FOR UPDATE";

pub(crate) async fn apply(
    conn: &mut PgConnection,
    site: &str,
    write: CheckpointWrite,
) -> anyhow::Result<()> {
    let (stream, value) = match write {
        CheckpointWrite::None => return Ok(()),
        CheckpointWrite::Replace { stream, value } => (stream, value),
        CheckpointWrite::Update { stream, update } => {
            sqlx::query(ENSURE)
                .bind(site)
                .bind(stream)
                .execute(&mut *conn)
                .await?;
            let (current,): (Value,) = sqlx::query_as(LOCK)
                .bind(site)
                .bind(stream)
                .fetch_one(&mut *conn)
                .await?;
            (stream, update(Some(current).filter(|v| !v.is_null()))?)
        }
    };
    sqlx::query(UPSERT)
        .bind(site)
        .bind(stream)
        .bind(value)
        .execute(conn)
        .await?;
    Ok(())
}

impl Store {
    /// The stream's checkpoint document, if it has one.
    pub async fn load_checkpoint(&self, site: &str, stream: &str) -> anyhow::Result<Option<Value>> {
        self.bounded(async {
            let row: Option<(Value,)> = sqlx::query_as(
                "SELECT checkpoint FROM jira.sync_state WHERE site = $1 AND stream = $2",
            )
            .bind(site)
            .bind(stream)
            .fetch_optional(self.pool())
            .await?;
            Ok(row.map(|(v,)| v).filter(|v| !v.is_null()))
        })
        .await
    }

    /// Writes a checkpoint on its own (for streams whose page writes carry none).
    pub async fn save_checkpoint(&self, site: &str, write: CheckpointWrite) -> anyhow::Result<()> {
        self.bounded(async {
            let mut tx = self.begin_write().await?;
            apply(&mut tx, site, write).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }
}
