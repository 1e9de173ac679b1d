//! OAuth 2.0 (3LO) tokens: the access token in memory, the rotating refresh token in the
//! database (encrypted when `jira.token_encryption_key` is set).
//!
//! Refreshes are single-flight twice over: within the process a mutex lets one task refresh
//! while the others wait for its result, and across processes the credentials row stays
//! locked from reading the refresh token to storing its successor. The successor is committed
//! before the access token that came with it is handed out, so a crash can never leave the
//! database holding a token the token endpoint has already retired.

use super::{CONSENT_AGAIN, CredentialStore, StoredToken, plain_http, sensitive};
use crate::jira::JiraError;
use crate::settings::JiraSettings;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

/// Refresh this long before the access token expires, at most.
const REFRESH_AHEAD: Duration = Duration::from_secs(60);

/// What the token endpoint answers to a successful grant.
#[derive(Deserialize)]
pub struct Grant {
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

struct Access {
    header: HeaderValue,
    /// When to refresh: a little before the token expires.
    renew_at: Instant,
}

/// Hands out access tokens, refreshing them from the stored refresh token.
pub struct TokenManager {
    app: App,
    store: Arc<dyn CredentialStore>,
    site: String,
    /// Used only while the database holds no refresh token yet.
    seed: Option<SecretString>,
    cipher: Option<[u8; 32]>,
    access: Mutex<Option<Access>>,
    /// A rotated refresh token the database does not hold yet (its commit failed).
    pending: Mutex<Option<SecretString>>,
}

/// The OAuth app: its credentials and the token endpoint.
pub struct App {
    pub token_url: Url,
    pub client_id: String,
    pub client_secret: SecretString,
}

impl App {
    pub fn from_settings(jira: &JiraSettings) -> Result<App, JiraError> {
        let oauth = &jira.oauth;
        let client_secret = oauth
            .client_secret
            .clone()
            .ok_or_else(|| JiraError::Setup {
                detail: "jira.client_secret is not set".to_owned(),
            })?;
        Ok(App {
            token_url: oauth.token_url.clone(),
            client_id: oauth.client_id.clone(),
            client_secret,
        })
    }

    /// Exchanges an authorization code (from `jira-sync auth login`) for tokens.
    pub async fn exchange_code(&self, code: &str, redirect_uri: &str) -> Result<Grant, JiraError> {
        self.grant(json!({
            "grant_type": "authorization_code",
            "client_id": self.client_id,
            "client_secret": self.client_secret.expose_secret(),
            "code": code,
            "redirect_uri": redirect_uri,
        }))
        .await
    }

    async fn refresh(&self, refresh_token: &SecretString) -> Result<Grant, JiraError> {
        self.grant(json!({
            "grant_type": "refresh_token",
            "client_id": self.client_id,
            "client_secret": self.client_secret.expose_secret(),
            "refresh_token": refresh_token.expose_secret(),
        }))
        .await
    }

    async fn grant(&self, body: serde_json::Value) -> Result<Grant, JiraError> {
        let endpoint = format!("POST {}", self.token_url.path());
        let response = plain_http()?
            .post(self.token_url.clone())
            .json(&body)
            .send()
            .await
            .map_err(|e| JiraError::Connect {
                host: self.token_url.host_str().unwrap_or_default().to_owned(),
                detail: format!("the OAuth token endpoint: {e}"),
            })?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap_or_default();
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes).map_err(|e| JiraError::Decode {
                endpoint,
                detail: e.to_string(),
            });
        }
        let error: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let code = error.get("error").and_then(|v| v.as_str()).unwrap_or("");
        Err(match (status, code) {
            (_, "invalid_grant") => JiraError::Auth {
                detail: CONSENT_AGAIN.to_owned(),
            },
            (_, "invalid_client" | "unauthorized_client") | (401, _) => JiraError::Auth {
                detail: format!(
                    "the OAuth token endpoint refused the app ({status} {code}): check \
                     jira.client_id and jira.client_secret"
                ),
            },
            (500.., _) => JiraError::Server {
                endpoint,
                status,
                retry_after: None,
            },
            _ => JiraError::Status {
                endpoint,
                status,
                message: format!("the OAuth token endpoint refused the request ({code})"),
            },
        })
    }
}

impl TokenManager {
    pub fn new(
        jira: &JiraSettings,
        store: Arc<dyn CredentialStore>,
    ) -> Result<TokenManager, JiraError> {
        let oauth = &jira.oauth;
        Ok(TokenManager {
            app: App::from_settings(jira)?,
            store,
            site: jira.site(),
            seed: oauth.refresh_token.clone(),
            cipher: oauth.cipher_key(),
            access: Mutex::new(None),
            pending: Mutex::new(None),
        })
    }

    /// `Bearer <access token>`, refreshed first when it is missing or about to expire.
    pub async fn header(&self) -> Result<HeaderValue, JiraError> {
        // Held across the refresh: the tasks that wait get the token this one fetched.
        let mut access = self.access.lock().await;
        if let Some(current) = access.as_ref()
            && Instant::now() < current.renew_at
        {
            return Ok(current.header.clone());
        }
        let fresh = self.refresh().await?;
        let header = fresh.header.clone();
        *access = Some(fresh);
        Ok(header)
    }

    /// Drops the access token if it is still `sent` (one a 401 refused); true when the next
    /// request will get a fresh one.
    pub async fn forget(&self, sent: &HeaderValue) -> bool {
        let mut access = self.access.lock().await;
        if access.as_ref().is_some_and(|a| a.header == *sent) {
            *access = None;
        }
        true
    }

    /// One refresh: lock the stored token, spend it, store its successor, then hand out the
    /// access token.
    ///
    /// Should storing the successor fail (the database went away between the lock and the
    /// commit), the token endpoint has already retired the old one: the successor is kept in
    /// memory, used for the next refresh and stored with it, so the process is not stranded
    /// with a spent token in the database.
    async fn refresh(&self) -> Result<Access, JiraError> {
        let db = |e: anyhow::Error| JiraError::Setup {
            detail: format!("the OAuth refresh token cannot be read or stored: {e:#}"),
        };
        let pending = self.pending.lock().await.clone();
        let lock = match self.store.lock_refresh_token(&self.site).await {
            Ok(lock) => Some(lock),
            Err(err) if pending.is_some() => {
                tracing::warn!(
                    error = %format!("{err:#}"),
                    "cannot lock the stored OAuth refresh token; refreshing with the rotated one \
                     held in memory"
                );
                None
            }
            Err(err) => return Err(db(err)),
        };
        // The newest token known: one not stored yet wins over the database's.
        let current = match (pending, lock.as_ref().and_then(|l| l.current())) {
            (Some(pending), _) => pending,
            (None, Some(stored)) => self.open(stored)?,
            (None, None) => self.seed.clone().ok_or_else(|| JiraError::Auth {
                detail: "no OAuth refresh token yet: run `jira-sync auth login` (or set \
                         jira.refresh_token once)"
                    .to_owned(),
            })?,
        };
        tracing::debug!("refreshing the OAuth access token");
        let grant = self.app.refresh(&current).await?;
        // Without rotation the same refresh token stays valid; store it either way.
        let next = grant.refresh_token.clone().unwrap_or(current);
        *self.pending.lock().await = Some(next.clone());
        let stored = match lock {
            Some(lock) => lock.save(&self.seal(&next)?).await,
            None => Err(anyhow::anyhow!("the credentials row could not be locked")),
        };
        match stored {
            Ok(()) => *self.pending.lock().await = None,
            Err(err) => tracing::error!(
                error = %format!("{err:#}"),
                "the rotated OAuth refresh token could not be stored in the database; it is \
                 kept in memory and stored with the next refresh (should this process stop \
                 first, `jira-sync auth login` may be needed once the old token's 10-minute \
                 leeway has passed)"
            ),
        }
        let ttl = Duration::from_secs(grant.expires_in.unwrap_or(3600));
        let ahead = REFRESH_AHEAD.min(ttl / 5);
        let header = sensitive(
            &format!("Bearer {}", grant.access_token.expose_secret()),
            "the OAuth access token",
        )?;
        tracing::debug!(
            expires_in_secs = ttl.as_secs(),
            "OAuth access token refreshed; the rotated refresh token is stored"
        );
        Ok(Access {
            header,
            renew_at: Instant::now() + ttl - ahead,
        })
    }

    /// The stored text of `token`: encrypted with the configured key, if any.
    pub fn seal(&self, token: &SecretString) -> Result<StoredToken, JiraError> {
        seal(self.cipher.as_ref(), &self.site, token)
    }

    fn open(&self, stored: &StoredToken) -> Result<SecretString, JiraError> {
        open(self.cipher.as_ref(), &self.site, stored)
    }
}

/// Encrypts `token` when a key is given: XChaCha20-Poly1305 with a random nonce, the site as
/// associated data (a row copied to another site does not decrypt); base64 of nonce and
/// ciphertext.
pub fn seal(
    key: Option<&[u8; 32]>,
    site: &str,
    token: &SecretString,
) -> Result<StoredToken, JiraError> {
    let Some(key) = key else {
        return Ok(StoredToken {
            text: token.expose_secret().to_owned(),
            encrypted: false,
        });
    };
    let cipher = XChaCha20Poly1305::new(key.into());
    let nonce_bytes: [u8; 24] = rand::random();
    let nonce = XNonce::from(nonce_bytes);
    let payload = Payload {
        msg: token.expose_secret().as_bytes(),
        aad: site.as_bytes(),
    };
    let sealed = cipher
        .encrypt(&nonce, payload)
        .map_err(|_| JiraError::Setup {
            detail: "cannot encrypt the OAuth refresh token".to_owned(),
        })?;
    let mut bytes = nonce_bytes.to_vec();
    bytes.extend(sealed);
    Ok(StoredToken {
        text: base64::engine::general_purpose::STANDARD.encode(bytes),
        encrypted: true,
    })
}

/// The plain refresh token of a stored one.
pub fn open(
    key: Option<&[u8; 32]>,
    site: &str,
    stored: &StoredToken,
) -> Result<SecretString, JiraError> {
    if !stored.encrypted {
        return Ok(SecretString::from(stored.text.clone()));
    }
    let fail = |why: &str| JiraError::Auth {
        detail: format!(
            "the stored OAuth refresh token is encrypted and {why}: set the \
             jira.token_encryption_key it was stored with, or run `jira-sync auth login` again"
        ),
    };
    let key = key.ok_or_else(|| fail("jira.token_encryption_key is not set"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&stored.text)
        .map_err(|_| fail("cannot be decoded"))?;
    if bytes.len() < 24 {
        return Err(fail("is too short"));
    }
    let (nonce, sealed) = bytes.split_at(24);
    let nonce: [u8; 24] = nonce.try_into().map_err(|_| fail("is too short"))?;
    let cipher = XChaCha20Poly1305::new(key.into());
    let payload = Payload {
        msg: sealed,
        aad: site.as_bytes(),
    };
    let plain = cipher
        .decrypt(&XNonce::from(nonce), payload)
        .map_err(|_| fail("does not decrypt with the configured key"))?;
    String::from_utf8(plain)
        .map(SecretString::from)
        .map_err(|_| fail("is not text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_tokens_hide_the_text_and_open_only_with_the_key_and_site() {
        let key = [7u8; 32];
        let token = SecretString::from("refresh-abc-123".to_owned());
        let sealed = seal(Some(&key), "site.example", &token).expect("seal");
        assert!(sealed.encrypted && !sealed.text.contains("refresh-abc"));
        let opened = open(Some(&key), "site.example", &sealed).expect("open");
        assert_eq!(opened.expose_secret(), "refresh-abc-123");
        assert!(open(Some(&[8u8; 32]), "site.example", &sealed).is_err());
        assert!(open(Some(&key), "other.example", &sealed).is_err());
        assert!(open(None, "site.example", &sealed).is_err());
        let plain = seal(None, "site.example", &token).expect("plain");
        assert!(!plain.encrypted && plain.text == "refresh-abc-123");
    }
}
