//! Connecting to a site: the client of the configured auth mode, with the store keeping its
//! credentials ([`CredentialStore`] for [`Store`]: the HTTP layer knows no database, the store
//! knows no HTTP, and this is where the two meet).

use crate::jira::auth::{self, CredentialStore, RefreshTokenLock, StoredToken};
use crate::jira::{JiraClient, JiraError};
use crate::settings::{AuthMode, Settings};
use crate::store::Store;
use crate::store::credentials::{RefreshLock, StoredToken as StoredRow};
use std::sync::Arc;

#[async_trait::async_trait]
impl CredentialStore for Store {
    async fn cloud_id(&self, site: &str) -> anyhow::Result<Option<String>> {
        Store::cloud_id(self, site).await
    }

    async fn save_cloud_id(&self, site: &str, cloud_id: &str) -> anyhow::Result<()> {
        Store::save_cloud_id(self, site, cloud_id).await
    }

    async fn lock_refresh_token(&self, site: &str) -> anyhow::Result<Box<dyn RefreshTokenLock>> {
        let lock = Store::lock_refresh_token(self, site).await?;
        let current = lock.current.clone().map(|row| StoredToken {
            text: row.text,
            encrypted: row.encrypted,
        });
        Ok(Box::new(LockedToken { lock, current }))
    }
}

/// The credentials row, locked, as the HTTP layer sees it.
struct LockedToken {
    lock: RefreshLock,
    current: Option<StoredToken>,
}

#[async_trait::async_trait]
impl RefreshTokenLock for LockedToken {
    fn current(&self) -> Option<&StoredToken> {
        self.current.as_ref()
    }

    async fn save(self: Box<Self>, token: &StoredToken) -> anyhow::Result<()> {
        let row = StoredRow {
            text: token.text.clone(),
            encrypted: token.encrypted,
        };
        self.lock.save(&row).await
    }
}

/// The database a mode needs for its credentials: `oauth` requires one (the refresh token
/// lives there) and migrates it, since `run` checks the connection before it migrates;
/// `scoped` uses one, when configured, to cache the cloudId; the others need none.
pub async fn credential_store(settings: &Settings) -> Result<Option<Store>, JiraError> {
    let setup = |detail: String| JiraError::Setup { detail };
    match settings.jira.auth {
        AuthMode::Basic | AuthMode::Bearer => Ok(None),
        AuthMode::Scoped => match &settings.database.url {
            Some(_) => Ok(Store::open_with(&settings.database, 2).await.ok()),
            None => Ok(None),
        },
        AuthMode::Oauth => {
            settings.database.require_url().map_err(|e| {
                setup(format!(
                    "{e} (auth = \"oauth\" keeps the rotating refresh token in the database)"
                ))
            })?;
            let store = Store::open_with(&settings.database, 2)
                .await
                .map_err(|e| setup(format!("{e:#}")))?;
            store.migrate().await.map_err(|e| setup(format!("{e:#}")))?;
            Ok(Some(store))
        }
    }
}

/// The client of the configured mode, its credentials kept in `store` where the mode keeps
/// them ([`auth::connect`]).
pub async fn client(settings: &Settings, store: Option<&Store>) -> Result<JiraClient, JiraError> {
    let store = store.map(|s| Arc::new(s.clone()) as Arc<dyn CredentialStore>);
    auth::connect(&settings.jira, &settings.rate_limit, store).await
}

/// The client for commands that need no database of their own (`check`): the credential
/// store is opened only where the mode needs one.
pub async fn client_for_check(settings: &Settings) -> Result<JiraClient, JiraError> {
    let store = credential_store(settings).await?;
    client(settings, store.as_ref()).await
}
