//! The rules a loaded configuration must satisfy; each failure names the key and the fix.

use super::{AuthMode, ConfigError, Settings};
use secrecy::ExposeSecret;
use url::Url;

/// Parses `jira.base_url`, normalising a trailing slash and rejecting path, query and fragment.
pub(super) fn parse_base_url(text: &str) -> Result<Url, ConfigError> {
    if text.trim().is_empty() {
        return Err(ConfigError::invalid(
            "jira.base_url",
            "is not set: set it to your site, e.g. https://acme.atlassian.net",
        ));
    }
    parse_root_url("jira.base_url", "https://acme.atlassian.net", text)
}

/// Parses `jira.admin_base_url` by the same rules as `jira.base_url`.
pub(super) fn parse_admin_base_url(text: &str) -> Result<Url, ConfigError> {
    if text.trim().is_empty() {
        return Err(ConfigError::invalid(
            "jira.admin_base_url",
            "is empty: remove it to use https://api.atlassian.com",
        ));
    }
    parse_root_url("jira.admin_base_url", "https://api.atlassian.com", text)
}

/// Parses `jira.gateway_base_url` by the same rules as `jira.base_url`.
pub(super) fn parse_root_url_key(key: &str, text: &str) -> Result<Url, ConfigError> {
    if text.trim().is_empty() {
        return Err(ConfigError::invalid(
            key,
            "is empty: remove it to use https://api.atlassian.com",
        ));
    }
    parse_root_url(key, "https://api.atlassian.com", text)
}

/// An OAuth endpoint (`jira.token_url`, `jira.authorize_url`): https (or http on a loopback
/// host), a path allowed, no credentials, query or fragment.
pub(super) fn parse_endpoint_url(key: &str, text: &str) -> Result<Url, ConfigError> {
    let example = "https://auth.atlassian.com/oauth/token";
    let url = Url::parse(text.trim()).map_err(|e| {
        ConfigError::invalid(key, format!("is not a URL ({e}): write it like {example}"))
    })?;
    let host = url.host_str().unwrap_or_default();
    if host.is_empty() || !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::invalid(
            key,
            format!("needs a host and no credentials: write it like {example}"),
        ));
    }
    if url.scheme() != "https" && !(url.scheme() == "http" && is_loopback(host)) {
        return Err(ConfigError::invalid(
            key,
            "must use https:// (plain http is allowed only for 127.0.0.1, localhost and [::1])",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::invalid(
            key,
            "must not have a query or fragment",
        ));
    }
    Ok(url)
}

/// A scheme, host and optional port, nothing else; `example` shows the expected form.
fn parse_root_url(key: &str, example: &str, text: &str) -> Result<Url, ConfigError> {
    let text = text.trim();
    let url = Url::parse(text).map_err(|e| {
        ConfigError::invalid(key, format!("is not a URL ({e}): write it like {example}"))
    })?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(ConfigError::invalid(key, "must start with https://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::invalid(
            key,
            format!("has no host: write it like {example}"),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::invalid(
            key,
            "must not contain credentials: put them in jira.email and jira.api_token (or jira.org_api_key)",
        ));
    }
    if url.path() != "/" && !url.path().is_empty() {
        return Err(ConfigError::invalid(
            key,
            format!("must not have a path: use the root, e.g. {example}"),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::invalid(
            key,
            "must not have a query or fragment: remove everything after the host",
        ));
    }
    Ok(url)
}

impl Settings {
    /// Checks every rule that does not need IO; [`Settings::load`] calls it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_jira()?;
        if let Some(url) = &self.database.url {
            // The parse error never quotes the input, so the password cannot leak through it.
            Url::parse(url.expose_secret()).map_err(|e| {
                ConfigError::invalid(
                    "database.url",
                    format!(
                        "is not a URL ({e}): write it like postgres://user:password@host:5432/db"
                    ),
                )
            })?;
        }
        let db = &self.database;
        in_range(
            "database.max_connections",
            u64::from(db.max_connections),
            1,
            100,
        )?;
        in_range(
            "database.connect_timeout_secs",
            db.connect_timeout_secs,
            1,
            300,
        )?;
        in_range(
            "database.statement_timeout_secs",
            db.statement_timeout_secs,
            1,
            3600,
        )?;
        const SSL_MODES: [&str; 6] = [
            "disable",
            "allow",
            "prefer",
            "require",
            "verify-ca",
            "verify-full",
        ];
        if !db.sslmode.is_empty() && !SSL_MODES.contains(&db.sslmode.as_str()) {
            return Err(ConfigError::invalid(
                "database.sslmode",
                format!(
                    "is {:?}: use one of {} (or leave it empty for the URL's)",
                    db.sslmode,
                    SSL_MODES.join(", ")
                ),
            ));
        }
        if let Some(cert) = &db.ssl_root_cert
            && !cert.is_file()
        {
            return Err(ConfigError::invalid(
                "database.ssl_root_cert",
                format!(
                    "({}) is not a readable file: give the CA certificate's PEM file",
                    cert.display()
                ),
            ));
        }
        self.validate_sync()?;
        self.validate_rate_limit()?;
        if self.log.level.trim().is_empty() {
            return Err(ConfigError::invalid(
                "log.level",
                "is empty: use e.g. \"info\" or \"jira_sync=debug,info\"",
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level).map_err(|e| {
            ConfigError::invalid(
                "log.level",
                format!(
                    "is not a valid filter ({e}): use e.g. \"info\" or \"jira_sync=debug,info\""
                ),
            )
        })?;
        in_range(
            "log.progress_interval_secs",
            self.log.progress_interval_secs,
            1,
            3600,
        )?;
        self.server.validate()?;
        Ok(())
    }

    fn validate_jira(&self) -> Result<(), ConfigError> {
        let jira = &self.jira;
        if matches!(jira.auth, AuthMode::Basic | AuthMode::Scoped) && jira.email.is_empty() {
            return Err(ConfigError::invalid(
                "jira.email",
                "is not set: set it to the Atlassian account (or service account) that owns the API token (or set jira.auth = \"bearer\" for a personal access token)",
            ));
        }
        if jira.auth != AuthMode::Oauth && jira.token().is_none() {
            return Err(ConfigError::invalid(
                "jira.api_token",
                "is not set: set jira.api_token, JIRA_SYNC__JIRA__API_TOKEN or jira.api_token_file",
            ));
        }
        self.validate_auth()?;
        let host = jira.base_url.host_str().unwrap_or_default();
        if jira.base_url.scheme() != "https" && !is_loopback(host) {
            return Err(ConfigError::invalid(
                "jira.base_url",
                format!(
                    "uses http:// for {host}: use https:// (plain http is allowed only for 127.0.0.1, localhost and [::1])"
                ),
            ));
        }
        if let Some(domain) = &jira.domain
            && !domain.eq_ignore_ascii_case(host)
        {
            return Err(ConfigError::invalid(
                "jira.domain",
                format!(
                    "({domain}) does not match the host of jira.base_url ({host}): make them the same site, or remove jira.domain"
                ),
            ));
        }
        if let Some(org_id) = &jira.org_id
            && !is_org_id(org_id)
        {
            return Err(ConfigError::invalid(
                "jira.org_id",
                "is malformed: copy the id from admin.atlassian.com/o/<org_id> (five dash-separated groups, 8-4-4-4-12 letters and digits), or remove it",
            ));
        }
        self.validate_org()
    }

    /// The keys of the gateway modes (`scoped`, `oauth`).
    fn validate_auth(&self) -> Result<(), ConfigError> {
        let jira = &self.jira;
        let host = jira.gateway_base_url.host_str().unwrap_or_default();
        if jira.gateway_base_url.scheme() != "https" && !is_loopback(host) {
            return Err(ConfigError::invalid(
                "jira.gateway_base_url",
                format!(
                    "uses http:// for {host}: use https:// (plain http is allowed only for 127.0.0.1, localhost and [::1])"
                ),
            ));
        }
        if let Some(cloud_id) = &jira.cloud_id
            && !is_org_id(cloud_id)
        {
            return Err(ConfigError::invalid(
                "jira.cloud_id",
                "is malformed: copy the cloudId from https://<site>.atlassian.net/_edge/tenant_info (a UUID), or remove it to have it looked up",
            ));
        }
        if jira.oauth.token_encryption_key.is_some() && jira.oauth.cipher_key().is_none() {
            return Err(ConfigError::invalid(
                "jira.token_encryption_key",
                "must be 32 random bytes in base64: create one with `openssl rand -base64 32`",
            ));
        }
        if jira.auth != AuthMode::Oauth {
            return Ok(());
        }
        if jira.oauth.client_id.is_empty() {
            return Err(ConfigError::invalid(
                "jira.client_id",
                "is not set but jira.auth = \"oauth\": copy the Client ID of your OAuth 2.0 (3LO) app from developer.atlassian.com → Developer console → your app → Settings",
            ));
        }
        if jira.oauth.client_secret.is_none() {
            return Err(ConfigError::invalid(
                "jira.client_secret",
                "is not set but jira.auth = \"oauth\": set jira.client_secret or jira.client_secret_file (the app's Secret, next to its Client ID)",
            ));
        }
        if jira.oauth.token_encryption_key.is_none() && !jira.oauth.store_token_unencrypted {
            return Err(ConfigError::invalid(
                "jira.token_encryption_key",
                "is not set but jira.auth = \"oauth\": the rotating refresh token is stored in the database encrypted; create a key with `openssl rand -base64 32`, keep it outside the database and set it (jira.token_encryption_key_file, or JIRA_SYNC__JIRA__TOKEN_ENCRYPTION_KEY), or set jira.store_token_unencrypted = true to store the token in plain text",
            ));
        }
        Ok(())
    }

    /// The Admin API settings of the organization audit stream.
    fn validate_org(&self) -> Result<(), ConfigError> {
        let jira = &self.jira;
        let host = jira.admin_base_url.host_str().unwrap_or_default();
        if jira.admin_base_url.scheme() != "https" && !is_loopback(host) {
            return Err(ConfigError::invalid(
                "jira.admin_base_url",
                format!(
                    "uses http:// for {host}: use https:// (plain http is allowed only for 127.0.0.1, localhost and [::1])"
                ),
            ));
        }
        if jira.org_api_key.is_some() && jira.org_id.is_none() {
            return Err(ConfigError::invalid(
                "jira.org_id",
                "is not set but jira.org_api_key is: set the organization id (admin.atlassian.com/o/<org_id>), or remove the key",
            ));
        }
        Ok(())
    }

    fn validate_sync(&self) -> Result<(), ConfigError> {
        let sync = &self.sync;
        for (key, list) in [
            ("sync.include_projects", &sync.include_projects),
            ("sync.exclude_projects", &sync.exclude_projects),
        ] {
            if let Some(bad) = list.iter().find(|k| !is_project_key(k)) {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "holds {bad:?}, which is not a project key: use keys like ABC or ABC_2"
                    ),
                ));
            }
        }
        if let Some(both) = sync
            .include_projects
            .iter()
            .find(|k| sync.exclude_projects.contains(k))
        {
            return Err(ConfigError::invalid(
                "sync.exclude_projects",
                format!("and sync.include_projects both name {both}: remove it from one of them"),
            ));
        }
        const MONTH: u64 = 30 * 24 * 3600;
        in_range(
            "sync.issues_interval_secs",
            sync.issues_interval_secs,
            1,
            MONTH,
        )?;
        in_range(
            "sync.audit_interval_secs",
            sync.audit_interval_secs,
            1,
            MONTH,
        )?;
        in_range(
            "sync.users_interval_secs",
            sync.users_interval_secs,
            1,
            MONTH,
        )?;
        in_range(
            "sync.projects_interval_secs",
            sync.projects_interval_secs,
            1,
            MONTH,
        )?;
        in_range(
            "sync.census_interval_secs",
            sync.census_interval_secs,
            60,
            MONTH,
        )?;
        in_range(
            "sync.audit_lookback_days",
            u64::from(sync.audit_lookback_days),
            1,
            36_500,
        )?;
        in_range(
            "sync.issue_overlap_secs",
            sync.issue_overlap_secs,
            0,
            86_400,
        )?;
        in_range("sync.audit_lag_secs", sync.audit_lag_secs, 0, 3600)?;
        let share = sync.census_max_delete_share;
        if !(share.is_finite() && share > 0.0 && share <= 1.0) {
            return Err(ConfigError::invalid(
                "sync.census_max_delete_share",
                format!("is {share}: it must be more than 0 and at most 1 (0.5 = half a project)"),
            ));
        }
        in_range(
            "sync.census_max_deletes",
            sync.census_max_deletes,
            1,
            u64::MAX,
        )?;
        in_range(
            "sync.shutdown_timeout_secs",
            sync.shutdown_timeout_secs,
            1,
            600,
        )?;
        in_range(
            "sync.org_events_interval_secs",
            sync.org_events_interval_secs,
            1,
            MONTH,
        )?;
        Ok(())
    }

    fn validate_rate_limit(&self) -> Result<(), ConfigError> {
        let rl = &self.rate_limit;
        let rps = rl.requests_per_second;
        if !(rps.is_finite() && rps > 0.0 && rps <= 1000.0) {
            return Err(ConfigError::invalid(
                "rate_limit.requests_per_second",
                format!("is {rps}: it must be more than 0 and at most 1000"),
            ));
        }
        in_range("rate_limit.burst", u64::from(rl.burst), 1, 1000)?;
        in_range("rate_limit.max_in_flight", rl.max_in_flight as u64, 1, 64)?;
        in_range("rate_limit.max_retries", u64::from(rl.max_retries), 0, 20)?;
        in_range("rate_limit.backoff_base_ms", rl.backoff_base_ms, 1, 600_000)?;
        in_range(
            "rate_limit.backoff_max_ms",
            rl.backoff_max_ms,
            rl.backoff_base_ms,
            3_600_000,
        )?;
        in_range(
            "rate_limit.request_timeout_secs",
            rl.request_timeout_secs,
            1,
            3600,
        )?;
        in_range(
            "rate_limit.connect_timeout_secs",
            rl.connect_timeout_secs,
            1,
            600,
        )?;
        in_range(
            "rate_limit.max_retry_after_secs",
            rl.max_retry_after_secs,
            0,
            86_400,
        )?;
        for (key, share, min) in [
            ("rate_limit.adaptive_min_share", rl.adaptive_min_share, 0.01),
            (
                "rate_limit.low_remaining_share",
                rl.low_remaining_share,
                0.0,
            ),
        ] {
            if !(share.is_finite() && (min..=1.0).contains(&share)) {
                return Err(ConfigError::invalid(
                    key,
                    format!("is {share}: it must be between {min} and 1"),
                ));
            }
        }
        in_range(
            "rate_limit.adaptive_recovery_secs",
            rl.adaptive_recovery_secs,
            1,
            3600,
        )?;
        let admin_rps = rl.admin_requests_per_second;
        if !(admin_rps.is_finite() && admin_rps > 0.0 && admin_rps <= 1000.0) {
            return Err(ConfigError::invalid(
                "rate_limit.admin_requests_per_second",
                format!("is {admin_rps}: it must be more than 0 and at most 1000"),
            ));
        }
        in_range("rate_limit.admin_burst", u64::from(rl.admin_burst), 1, 1000)?;
        in_range("rate_limit.max_response_mb", rl.max_response_mb, 1, 4096)?;
        Ok(())
    }
}

fn in_range(key: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::invalid(
            key,
            format!("is {value}: it must be between {min} and {max}"),
        ));
    }
    Ok(())
}

/// The hosts plain http is allowed for: the simulator and tests run there.
fn is_loopback(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1")
}

/// Atlassian organization ids are UUID-shaped (8-4-4-4-12). Some are not strictly hexadecimal,
/// so any ASCII letter or digit is accepted in each group; what this catches is a pasted URL,
/// a truncated id or stray characters.
fn is_org_id(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    let lengths = [8, 4, 4, 4, 12];
    groups.len() == lengths.len()
        && groups
            .iter()
            .zip(lengths)
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Jira project keys: an upper-case letter, then upper-case letters, digits or underscores.
fn is_project_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_uppercase())
        && bytes.all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && key.len() <= 255
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_keep_only_scheme_host_and_port() {
        assert!(parse_base_url("https://acme.atlassian.net/").is_ok());
        assert!(parse_base_url(" https://acme.atlassian.net ").is_ok());
        assert!(parse_base_url("https://acme.atlassian.net/wiki").is_err());
        assert!(parse_base_url("https://acme.atlassian.net#x").is_err());
        assert!(parse_base_url("https://me:pw@acme.atlassian.net").is_err());
        assert!(parse_base_url("ftp://acme.atlassian.net").is_err());
        assert!(parse_base_url("").is_err());
    }

    #[test]
    fn org_ids_are_five_groups_of_letters_and_digits() {
        assert!(is_org_id("9a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d"));
        assert!(is_org_id("J9a1b2c3-4e5f-6a7b-8c9d-0e1f2a3b4c5d"));
        assert!(!is_org_id("9a1b2c3d-4e5f-6a7b-8c9d"));
        assert!(!is_org_id("9a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d-"));
        assert!(!is_org_id("9a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5 "));
    }

    #[test]
    fn project_keys_are_upper_case_letters_digits_and_underscores() {
        assert!(is_project_key("ABC"));
        assert!(is_project_key("AB_2"));
        assert!(!is_project_key("2AB"));
        assert!(!is_project_key("AB-1"));
        assert!(!is_project_key(""));
    }
}
