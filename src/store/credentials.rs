//! `jira_secrets.credentials`: the cached cloudId and the current OAuth refresh token of a site.
//!
//! The refresh token is read under a row lock ([`RefreshLock`]) and replaced in the same
//! transaction, so two processes refreshing at once (the daemon and a `check`) take turns and
//! the second sees the token the first stored instead of spending a rotated one.

use super::Store;
use sqlx::{Postgres, Transaction};

/// A refresh token as stored: the text and whether it is encrypted.
#[derive(Clone)]
pub struct StoredToken {
    pub text: String,
    pub encrypted: bool,
}

/// The site's credentials row, locked until [`RefreshLock::save`] or drop (rollback).
pub struct RefreshLock {
    tx: Transaction<'static, Postgres>,
    site: String,
    /// The token stored when the lock was taken.
    pub current: Option<StoredToken>,
}

impl RefreshLock {
    /// Stores the token that replaces the current one and releases the lock.
    pub async fn save(mut self, token: &StoredToken) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO jira_secrets.credentials (site, refresh_token, refresh_token_encrypted, refreshed_at) \
             VALUES ($1, $2, $3, now()) ON CONFLICT (site) DO UPDATE SET \
             refresh_token = excluded.refresh_token, \
             refresh_token_encrypted = excluded.refresh_token_encrypted, \
             refreshed_at = now(), updated_at = now()",
        )
        .bind(&self.site)
        .bind(&token.text)
        .bind(token.encrypted)
        .execute(&mut *self.tx)
        .await?;
        self.tx.commit().await?;
        Ok(())
    }
}

impl Store {
    /// The cached cloudId of `site`, if one was stored.
    pub async fn cloud_id(&self, site: &str) -> anyhow::Result<Option<String>> {
        let row: Option<(Option<String>,)> =
            sqlx::query_as("SELECT cloud_id FROM jira_secrets.credentials WHERE site = $1")
                .bind(site)
                .fetch_optional(self.pool())
                .await?;
        Ok(row.and_then(|(c,)| c))
    }

    pub async fn save_cloud_id(&self, site: &str, cloud_id: &str) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO jira_secrets.credentials (site, cloud_id) VALUES ($1, $2) \
             ON CONFLICT (site) DO UPDATE SET cloud_id = excluded.cloud_id, updated_at = now()",
        )
        .bind(site)
        .bind(cloud_id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Locks the site's credentials row (creating it if needed) and reads the refresh token.
    pub async fn lock_refresh_token(&self, site: &str) -> anyhow::Result<RefreshLock> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "INSERT INTO jira_secrets.credentials (site) VALUES ($1) ON CONFLICT DO NOTHING",
        )
        .bind(site)
        .execute(&mut *tx)
        .await?;
        let row: (Option<String>, bool) = sqlx::query_as(
            "SELECT refresh_token, refresh_token_encrypted FROM jira_secrets.credentials \
             WHERE site = $1 FOR UPDATE",
        )
        .bind(site)
        .fetch_one(&mut *tx)
        .await?;
        let current = row.0.map(|text| StoredToken {
            text,
            encrypted: row.1,
        });
        Ok(RefreshLock {
            tx,
            site: site.to_owned(),
            current,
        })
    }
}
