//! `jira-sync auth login`: OAuth 2.0 (3LO) consent from a terminal. Prints the authorize URL
//! (read scopes plus `offline_access`), waits for the browser's redirect on a loopback port,
//! exchanges the code, and stores the refresh token (encrypted when a key is configured) and
//! the site's cloudId in the database.

use crate::engine::connect::credential_store;
use crate::jira::JiraError;
use crate::jira::auth::{self, CredentialStore, oauth::App};
use crate::settings::{AuthMode, ConfigError, Settings};
use anyhow::Context;
use clap::{Args, Subcommand};
use std::process::ExitCode;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The scopes a read-only sync needs; `offline_access` yields the refresh token.
pub const SCOPES: &str = "read:jira-work read:jira-user manage:jira-configuration offline_access";

/// Arguments of `jira-sync auth`.
#[derive(Debug, Args)]
pub struct AuthArgs {
    #[command(subcommand)]
    pub command: AuthCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Grants jira-sync access through the OAuth app (jira.auth = "oauth") and stores the
    /// refresh token in the database.
    Login(LoginArgs),
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The loopback port of the redirect: the app's callback URL must be
    /// http://127.0.0.1:PORT/callback (0 picks a free port, for tests).
    #[arg(long, default_value_t = 8976)]
    pub port: u16,
    /// How long to wait for the browser, in seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
}

pub async fn command(settings: &Settings, args: &AuthArgs) -> anyhow::Result<ExitCode> {
    let AuthCommand::Login(login) = &args.command;
    if settings.jira.auth != AuthMode::Oauth {
        return Err(ConfigError::Invalid {
            key: "jira.auth".to_owned(),
            message: format!(
                "is \"{}\": `auth login` is for jira.auth = \"oauth\"",
                settings.jira.auth.name()
            ),
        }
        .into());
    }
    let app = App::from_settings(&settings.jira)?;
    let store = credential_store(settings)
        .await?
        .context("auth = \"oauth\" needs database.url")?;
    let listener = TcpListener::bind(("127.0.0.1", login.port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", login.port))?;
    let port = listener.local_addr()?.port();
    let redirect = format!("http://127.0.0.1:{port}/callback");
    let state = format!("{:032x}", rand::random::<u128>());
    let mut url = settings.jira.oauth.authorize_url.clone();
    url.query_pairs_mut()
        .append_pair("audience", "api.atlassian.com")
        .append_pair("client_id", &app.client_id)
        .append_pair("scope", SCOPES)
        .append_pair("redirect_uri", &redirect)
        .append_pair("state", &state)
        .append_pair("response_type", "code")
        .append_pair("prompt", "consent");
    println!("Open this address in a browser and grant access:\n{url}");
    let wait = Duration::from_secs(login.timeout_secs);
    let code = tokio::time::timeout(wait, callback(&listener, &state))
        .await
        .map_err(|_| anyhow::anyhow!("no redirect arrived within {}s", login.timeout_secs))??;
    let grant = app.exchange_code(&code, &redirect).await?;
    let refresh = grant.refresh_token.clone().ok_or_else(|| JiraError::Auth {
        detail: "the token endpoint returned no refresh token: the app needs the \
                 offline_access scope"
            .to_owned(),
    })?;
    let key = settings.jira.oauth.cipher_key();
    let site = settings.site();
    let sealed = auth::oauth::seal(key.as_ref(), &site, &refresh)?;
    let lock = CredentialStore::lock_refresh_token(&store, &site).await?;
    lock.save(&sealed).await?;
    let header = auth::sensitive(
        &format!(
            "Bearer {}",
            secrecy::ExposeSecret::expose_secret(&grant.access_token)
        ),
        "the access token",
    )?;
    let cloud_id = match &settings.jira.cloud_id {
        Some(id) => id.clone(),
        None => auth::accessible_cloud_id(&settings.jira, header).await?,
    };
    store.save_cloud_id(&site, &cloud_id).await?;
    println!(
        "Signed in: the refresh token is stored in the database for {site} (cloudId {cloud_id})."
    );
    Ok(ExitCode::SUCCESS)
}

/// Answers loopback requests until the one to `/callback` with our `state`; returns its code.
async fn callback(listener: &TcpListener, state: &str) -> anyhow::Result<String> {
    loop {
        let (mut socket, _) = listener.accept().await?;
        let mut buffer = vec![0u8; 8192];
        let mut read = 0;
        while read < buffer.len() {
            let n = socket.read(&mut buffer[read..]).await?;
            read += n;
            if n == 0 || buffer[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        let head = String::from_utf8_lossy(&buffer[..read]).into_owned();
        let target = head.split_whitespace().nth(1).unwrap_or_default();
        let Ok(url) = url::Url::parse(&format!("http://127.0.0.1{target}")) else {
            continue;
        };
        let param = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let answer = |text: &str| {
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            )
        };
        if url.path() != "/callback" {
            let _ = socket
                .write_all(answer("jira-sync is waiting for the OAuth redirect").as_bytes())
                .await;
            continue;
        }
        if let Some(error) = param("error") {
            let _ = socket
                .write_all(answer("Access was not granted.").as_bytes())
                .await;
            anyhow::bail!("the authorization was refused ({error})");
        }
        if param("state").as_deref() != Some(state) {
            let _ = socket
                .write_all(answer("Unexpected state; ignored.").as_bytes())
                .await;
            continue;
        }
        let Some(code) = param("code") else {
            continue;
        };
        let _ = socket
            .write_all(answer("jira-sync is signed in. You can close this tab.").as_bytes())
            .await;
        return Ok(code);
    }
}
