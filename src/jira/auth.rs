//! Credentials for every `jira.auth` mode, and the address requests go to.
//!
//! `basic` and `bearer` send a fixed header to the site. `scoped` sends the same Basic header to
//! the API gateway, `{gateway_base_url}/ex/jira/{cloudId}`, because scoped tokens are refused by
//! the site's own address. `oauth` sends a short-lived access token to the gateway; the
//! [`oauth::TokenManager`] refreshes it single-flight and stores the rotated refresh token in
//! the database before the new access token is used. The cloudId is configured, cached in the
//! database, or looked up once (`/_edge/tenant_info` for `scoped`, accessible-resources for
//! `oauth`).

pub mod oauth;

use crate::jira::model::ServerInfo;
use crate::jira::{Flavor, JiraClient, JiraError};
use crate::settings::{AuthMode, JiraSettings, RateLimitSettings};
use base64::Engine;
use reqwest::header::HeaderValue;
use secrecy::ExposeSecret;
use serde::Deserialize;
use std::sync::Arc;
use url::Url;

pub use oauth::TokenManager;

/// A refresh token as kept between runs: the text, and whether it is encrypted.
#[derive(Clone)]
pub struct StoredToken {
    pub text: String,
    pub encrypted: bool,
}

/// Where a site's credentials live between runs and processes: the cached cloudId and the
/// current OAuth refresh token. The HTTP layer knows no database; jira-sync's store implements
/// this (`crate::engine::connect`).
#[async_trait::async_trait]
pub trait CredentialStore: Send + Sync {
    /// The cached cloudId of `site`, if one was stored.
    async fn cloud_id(&self, site: &str) -> anyhow::Result<Option<String>>;
    async fn save_cloud_id(&self, site: &str, cloud_id: &str) -> anyhow::Result<()>;
    /// Locks the site's refresh token until the lock is saved or dropped, so that two
    /// processes refreshing at once take turns and the second sees the token the first stored.
    async fn lock_refresh_token(&self, site: &str) -> anyhow::Result<Box<dyn RefreshTokenLock>>;
}

/// A locked refresh token ([`CredentialStore::lock_refresh_token`]).
#[async_trait::async_trait]
pub trait RefreshTokenLock: Send {
    /// The token stored when the lock was taken.
    fn current(&self) -> Option<&StoredToken>;
    /// Stores the token that replaces the current one and releases the lock.
    async fn save(self: Box<Self>, token: &StoredToken) -> anyhow::Result<()>;
}

/// The message of every refresh the token endpoint refuses as `invalid_grant`.
pub const CONSENT_AGAIN: &str = "the OAuth refresh token was refused (invalid_grant: revoked, \
     expired after 90 days unused, or already rotated): consent again with `jira-sync auth login`";

/// Where a request's Authorization header comes from.
#[derive(Clone)]
pub struct Credentials(Kind);

#[derive(Clone)]
enum Kind {
    Fixed(HeaderValue),
    OAuth(Arc<TokenManager>),
}

impl Credentials {
    /// The fixed header of `basic`, `scoped` (Basic `email:token`) and `bearer`.
    pub fn fixed(jira: &JiraSettings) -> Result<Credentials, JiraError> {
        let setup = |detail: &str| JiraError::Setup {
            detail: detail.to_owned(),
        };
        let token = jira
            .token()
            .ok_or_else(|| setup("jira.api_token is not set"))?;
        let text = match jira.auth {
            AuthMode::Basic | AuthMode::Scoped => {
                let pair = format!("{}:{}", jira.email, token.expose_secret());
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )
            }
            AuthMode::Bearer => format!("Bearer {}", token.expose_secret()),
            AuthMode::Oauth => return Err(setup("auth = \"oauth\" has no fixed credentials")),
        };
        Ok(Credentials(Kind::Fixed(sensitive(
            &text,
            "jira.api_token",
        )?)))
    }

    /// OAuth access tokens from `manager`.
    pub fn oauth(manager: Arc<TokenManager>) -> Credentials {
        Credentials(Kind::OAuth(manager))
    }

    /// The Authorization header for the next request (an OAuth refresh when one is due).
    pub async fn header(&self) -> Result<HeaderValue, JiraError> {
        match &self.0 {
            Kind::Fixed(value) => Ok(value.clone()),
            Kind::OAuth(manager) => manager.header().await,
        }
    }

    /// Jira refused `sent` with a 401: whether a fresh access token may work (OAuth only;
    /// the next [`Credentials::header`] then refreshes).
    pub async fn rejected(&self, sent: &HeaderValue) -> bool {
        match &self.0 {
            Kind::Fixed(_) => false,
            Kind::OAuth(manager) => manager.forget(sent).await,
        }
    }
}

/// A header value marked sensitive, so no debug output of a request shows it.
pub(crate) fn sensitive(text: &str, key: &str) -> Result<HeaderValue, JiraError> {
    // The error of `from_str` never quotes the value, so the secret cannot leak through it.
    let mut value = HeaderValue::from_str(text).map_err(|_| JiraError::Setup {
        detail: format!("{key} contains characters not allowed in a header"),
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// Asks `/rest/api/2/serverInfo` (open on Cloud and Data Center alike) what the site is:
/// Data Center and Server sites are spoken to through `/rest/api/2` and their own endpoints.
pub async fn detect_flavor(client: &JiraClient) -> Result<Flavor, JiraError> {
    let info: ServerInfo = client.get("/rest/api/2/serverInfo", &[]).await?;
    let kind = info.deployment_type.unwrap_or_default();
    let dc = kind.eq_ignore_ascii_case("server") || kind.eq_ignore_ascii_case("datacenter");
    tracing::debug!(deployment_type = %kind, data_center = dc, "deployment detected");
    Ok(if dc {
        Flavor::DataCenter
    } else {
        Flavor::Cloud
    })
}

/// The client for the configured mode: the site for `basic` and `bearer` (whose site may be
/// Data Center: the [`Flavor`] is detected here, once), the gateway with the site's cloudId
/// for `scoped` and `oauth`. `store` keeps the cloudId (optional) and the OAuth refresh token
/// (required for `oauth`).
pub async fn connect(
    jira: &JiraSettings,
    limits: &RateLimitSettings,
    store: Option<Arc<dyn CredentialStore>>,
) -> Result<JiraClient, JiraError> {
    match jira.auth {
        AuthMode::Basic => JiraClient::new(jira, limits),
        AuthMode::Bearer => {
            let client = JiraClient::new(jira, limits)?;
            let flavor = detect_flavor(&client).await?;
            Ok(client.with_flavor(flavor))
        }
        AuthMode::Scoped => {
            let cloud_id = scoped_cloud_id(jira, store.as_deref()).await?;
            let root = gateway_root(&jira.gateway_base_url, &cloud_id)?;
            JiraClient::with_credentials(jira, limits, Credentials::fixed(jira)?, root)
        }
        AuthMode::Oauth => {
            let store = store.ok_or_else(|| JiraError::Setup {
                detail: "auth = \"oauth\" needs database.url (the rotating refresh token is \
                         kept in the database)"
                    .to_owned(),
            })?;
            let manager = Arc::new(TokenManager::new(jira, store.clone())?);
            let cloud_id = oauth_cloud_id(jira, store.as_ref(), &manager).await?;
            let root = gateway_root(&jira.gateway_base_url, &cloud_id)?;
            JiraClient::with_credentials(jira, limits, Credentials::oauth(manager), root)
        }
    }
}

/// With `basic`, a 401 from the site may mean the token is scoped: tries the gateway form once
/// (one request, no retry) and, if it works there, says to switch to `scoped`. Otherwise, or
/// for other modes, returns `err` unchanged.
pub async fn explain_401(
    jira: &JiraSettings,
    limits: &RateLimitSettings,
    err: JiraError,
) -> JiraError {
    if jira.auth != AuthMode::Basic {
        return err;
    }
    let cloud_id = match &jira.cloud_id {
        Some(id) => id.clone(),
        None => match tenant_cloud_id(&jira.base_url).await {
            Ok(id) => id,
            Err(_) => return err,
        },
    };
    let limits = RateLimitSettings {
        max_retries: 0,
        ..limits.clone()
    };
    let scoped = JiraSettings {
        auth: AuthMode::Scoped,
        ..jira.clone()
    };
    let Ok(root) = gateway_root(&jira.gateway_base_url, &cloud_id) else {
        return err;
    };
    let Ok(client) = Credentials::fixed(&scoped)
        .and_then(|auth| JiraClient::with_credentials(&scoped, &limits, auth, root))
    else {
        return err;
    };
    match client
        .get::<serde_json::Value>("/rest/api/3/myself", &[])
        .await
    {
        Ok(_) => JiraError::Auth {
            detail: format!(
                "the API token was refused by {} but works through the API gateway: it is a \
                 scoped token (or a service account's); set jira.auth = \"scoped\"",
                jira.host()
            ),
        },
        Err(_) => err,
    }
}

/// `{gateway}/ex/jira/{cloudId}`: the gateway's address of one site.
pub fn gateway_root(gateway: &Url, cloud_id: &str) -> Result<Url, JiraError> {
    let text = format!(
        "{}/ex/jira/{cloud_id}",
        gateway.as_str().trim_end_matches('/')
    );
    Url::parse(&text).map_err(|e| JiraError::Setup {
        detail: format!("cannot build the gateway address: {e}"),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TenantInfo {
    cloud_id: String,
}

/// `scoped`: `jira.cloud_id`, else the cached one, else `{base_url}/_edge/tenant_info`.
async fn scoped_cloud_id(
    jira: &JiraSettings,
    store: Option<&dyn CredentialStore>,
) -> Result<String, JiraError> {
    if let Some(id) = &jira.cloud_id {
        return Ok(id.clone());
    }
    let site = jira.site();
    if let Some(store) = store
        && let Ok(Some(id)) = store.cloud_id(&site).await
    {
        return Ok(id);
    }
    let id = tenant_cloud_id(&jira.base_url).await?;
    if let Some(store) = store
        && let Err(e) = store.save_cloud_id(&site, &id).await
    {
        tracing::warn!("cannot cache the cloudId in the database: {e:#}");
    }
    Ok(id)
}

/// Asks the site for its cloudId; the endpoint needs no credentials.
pub async fn tenant_cloud_id(base_url: &Url) -> Result<String, JiraError> {
    let url = format!(
        "{}/_edge/tenant_info",
        base_url.as_str().trim_end_matches('/')
    );
    let fail = |detail: String| JiraError::NotJira {
        base_url: base_url.as_str().trim_end_matches('/').to_owned(),
        detail: format!("{detail}; or set jira.cloud_id"),
    };
    let response = plain_http()?
        .get(&url)
        .send()
        .await
        .map_err(|e| fail(format!("GET /_edge/tenant_info failed: {e}")))?;
    if !response.status().is_success() {
        return Err(fail(format!(
            "GET /_edge/tenant_info answered {}",
            response.status().as_u16()
        )));
    }
    let info: TenantInfo = response
        .json()
        .await
        .map_err(|e| fail(format!("GET /_edge/tenant_info gave no cloudId: {e}")))?;
    Ok(info.cloud_id.to_lowercase())
}

/// `oauth`: `jira.cloud_id`, else the cached one, else the accessible resource whose URL is
/// `jira.base_url`.
async fn oauth_cloud_id(
    jira: &JiraSettings,
    store: &dyn CredentialStore,
    manager: &TokenManager,
) -> Result<String, JiraError> {
    if let Some(id) = &jira.cloud_id {
        return Ok(id.clone());
    }
    let site = jira.site();
    let db = |e: anyhow::Error| JiraError::Setup {
        detail: format!("{e:#}"),
    };
    if let Some(id) = store.cloud_id(&site).await.map_err(db)? {
        return Ok(id);
    }
    let header = manager.header().await?;
    let id = accessible_cloud_id(jira, header).await?;
    store.save_cloud_id(&site, &id).await.map_err(db)?;
    Ok(id)
}

#[derive(Deserialize)]
struct Resource {
    id: String,
    url: String,
}

/// The cloudId of the accessible resource (site) whose URL is `jira.base_url`.
pub async fn accessible_cloud_id(
    jira: &JiraSettings,
    header: HeaderValue,
) -> Result<String, JiraError> {
    let gateway = jira.gateway_base_url.as_str().trim_end_matches('/');
    let endpoint = "GET /oauth/token/accessible-resources".to_owned();
    let response = plain_http()?
        .get(format!("{gateway}/oauth/token/accessible-resources"))
        .header(reqwest::header::AUTHORIZATION, header)
        .send()
        .await
        .map_err(|e| JiraError::Connect {
            host: gateway.to_owned(),
            detail: e.to_string(),
        })?;
    if !response.status().is_success() {
        return Err(JiraError::Auth {
            detail: format!(
                "{endpoint} answered {}: the access token does not reach any site",
                response.status().as_u16()
            ),
        });
    }
    let sites: Vec<Resource> = response.json().await.map_err(|e| JiraError::Decode {
        endpoint: endpoint.clone(),
        detail: e.to_string(),
    })?;
    let want = jira.base_url.as_str().trim_end_matches('/');
    sites
        .iter()
        .find(|s| s.url.trim_end_matches('/').eq_ignore_ascii_case(want))
        .map(|s| s.id.to_lowercase())
        .ok_or_else(|| JiraError::Auth {
            detail: format!(
                "the OAuth app was not granted access to {want} (it may use {}): consent again \
                 with `jira-sync auth login` choosing that site, or fix jira.base_url",
                sites
                    .iter()
                    .map(|s| s.url.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
}

/// A client for the few requests made outside [`JiraClient`] (cloudId look-ups, tokens).
pub(crate) fn plain_http() -> Result<reqwest::Client, JiraError> {
    reqwest::Client::builder()
        .user_agent(concat!("jira-sync/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| JiraError::Setup {
            detail: format!("{e}: the system may lack CA certificates"),
        })
}
