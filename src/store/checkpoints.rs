//! Checkpoints: one versioned JSON document per site and stream in `jira.sync_state`.
//!
//! A checkpoint is only ever written inside the transaction that writes the page it covers, so
//! it can never run ahead of the data. Streams that work on several partitions at once (issues:
//! one cursor per project) update their own path inside the document with `jsonb_set`, which
//! locks the row and so never loses a concurrent update.

use super::Store;
use serde_json::Value;
use sqlx::PgConnection;

/// A change to a stream's checkpoint, applied in the same transaction as a page.
#[derive(Debug, Clone)]
pub enum CheckpointWrite {
    /// Leave the checkpoint as it is.
    None,
    /// Replace the whole document.
    Replace { stream: &'static str, value: Value },
    /// Set one path inside the document (creating it from `base` when there is none yet).
    SetPath {
        stream: &'static str,
        base: Value,
        path: Vec<String>,
        value: Value,
    },
}

const UPSERT_WHOLE: &str = r#"
INSERT INTO jira.sync_state (site, stream, checkpoint, updated_at) VALUES ($1, $2, $3, now())
ON CONFLICT (site, stream) DO UPDATE SET checkpoint = excluded.checkpoint, updated_at = now()
"#;

const ENSURE: &str = r#"
INSERT INTO jira.sync_state (site, stream, checkpoint) VALUES ($1, $2, $3)
ON CONFLICT (site, stream) DO NOTHING
"#;

const SET_PATH: &str = r#"
UPDATE jira.sync_state SET checkpoint = jsonb_set(checkpoint, $3::text[], $4, true), updated_at = now()
WHERE site = $1 AND stream = $2
"#;

pub(crate) async fn apply(
    conn: &mut PgConnection,
    site: &str,
    write: &CheckpointWrite,
) -> sqlx::Result<()> {
    match write {
        CheckpointWrite::None => {}
        CheckpointWrite::Replace { stream, value } => {
            sqlx::query(UPSERT_WHOLE)
                .bind(site)
                .bind(*stream)
                .bind(value)
                .execute(conn)
                .await?;
        }
        CheckpointWrite::SetPath {
            stream,
            base,
            path,
            value,
        } => {
            sqlx::query(ENSURE)
                .bind(site)
                .bind(*stream)
                .bind(base)
                .execute(&mut *conn)
                .await?;
            sqlx::query(SET_PATH)
                .bind(site)
                .bind(*stream)
                .bind(path)
                .bind(value)
                .execute(conn)
                .await?;
        }
    }
    Ok(())
}

impl Store {
    /// The stream's checkpoint document, if it has one.
    pub async fn load_checkpoint(&self, site: &str, stream: &str) -> anyhow::Result<Option<Value>> {
        let row: Option<(Value,)> = sqlx::query_as(
            "SELECT checkpoint FROM jira.sync_state WHERE site = $1 AND stream = $2",
        )
        .bind(site)
        .bind(stream)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(v,)| v))
    }

    /// Writes a checkpoint on its own (for streams whose page writes carry none).
    pub async fn save_checkpoint(&self, site: &str, write: &CheckpointWrite) -> anyhow::Result<()> {
        let mut tx = self.begin().await?;
        apply(&mut tx, site, write).await?;
        tx.commit().await?;
        Ok(())
    }
}
