//! Settings: layered TOML files and environment, validated at start-up, secrets kept redacted.
//!
//! Layering, later wins: the defaults built into the binary (`config/default.toml`, embedded) →
//! `./config/default.toml` if present → the `--config` file → `JIRA_SYNC__SECTION__KEY`
//! environment variables → `DATABASE_URL`. Every section rejects unknown keys, so a typo fails
//! with the key's name instead of being silently ignored.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use url::Url;

mod validate;

/// The documented defaults, compiled in so the binary works from any directory.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// Environment variables that hold comma-separated lists, and the keys they set.
const LIST_ENV_KEYS: [(&str, &str); 2] = [
    ("JIRA_SYNC__SYNC__INCLUDE_PROJECTS", "sync.include_projects"),
    ("JIRA_SYNC__SYNC__EXCLUDE_PROJECTS", "sync.exclude_projects"),
];

/// A configuration that cannot be used; the binary exits with code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be parsed, a key is unknown or a value has the wrong type.
    #[error("invalid configuration: {0}")]
    Load(String),
    /// A value parsed but is not acceptable; `key` is the dotted key to fix.
    #[error("invalid configuration: {key} {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    /// An unacceptable value of `key`; `message` says what is wrong and how to fix it.
    pub fn invalid(key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

/// Everything the daemon is configured with. Built by [`Settings::load`]; valid once loaded.
#[derive(Debug, Clone)]
pub struct Settings {
    pub jira: JiraSettings,
    pub database: DatabaseSettings,
    pub sync: SyncSettings,
    pub rate_limit: RateLimitSettings,
    pub log: LogSettings,
    pub server: ServerSettings,
    /// `[streams.<name>]`: the settings of streams that have a section of their own, each read
    /// and checked by its stream ([`StreamSections::parse`]).
    pub streams: StreamSections,
    /// What works but deserves the operator's attention (a secret file others may read),
    /// logged once logging is up.
    pub warnings: Vec<String>,
}

/// How requests authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// `email:api_token` as HTTP Basic auth (Jira Cloud).
    Basic,
    /// `email:scoped_token` as HTTP Basic auth through the API gateway
    /// (`{gateway_base_url}/ex/jira/{cloudId}`): scoped tokens and service accounts.
    Scoped,
    /// OAuth 2.0 (3LO) access tokens through the API gateway, refreshed with a rotating
    /// refresh token kept in the database.
    Oauth,
    /// The token as a Bearer token (a Data Center personal access token; no email).
    Bearer,
}

impl AuthMode {
    /// The value as written in `jira.auth`.
    pub fn name(self) -> &'static str {
        match self {
            AuthMode::Basic => "basic",
            AuthMode::Scoped => "scoped",
            AuthMode::Oauth => "oauth",
            AuthMode::Bearer => "bearer",
        }
    }

    /// Whether requests go through the API gateway rather than the site's own address.
    pub fn via_gateway(self) -> bool {
        matches!(self, AuthMode::Scoped | AuthMode::Oauth)
    }
}

/// The OAuth 2.0 (3LO) app's settings, used when `jira.auth = "oauth"`.
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    /// A refresh token to start from; the rotating one then lives in the database.
    pub refresh_token: Option<SecretString>,
    pub token_url: Url,
    pub authorize_url: Url,
    /// 32 bytes, base64: encrypts the refresh token stored in the database.
    pub token_encryption_key: Option<SecretString>,
    /// Store the refresh token in plain text when no key is set (the operator's explicit
    /// choice); otherwise `oauth` without a key is refused at load.
    pub store_token_unencrypted: bool,
}

impl OAuthSettings {
    /// The 32-byte key `jira.token_encryption_key` holds in base64, if it is set and does.
    pub fn cipher_key(&self) -> Option<[u8; 32]> {
        use base64::Engine;
        let key = self.token_encryption_key.as_ref()?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key.expose_secret().trim())
            .ok()?;
        bytes.try_into().ok()
    }
}

/// `[jira]`: which site, and as whom.
#[derive(Debug, Clone)]
pub struct JiraSettings {
    pub email: String,
    /// The token, from `api_token` or read from `api_token_file` at load.
    pub api_token: Option<SecretString>,
    pub api_token_file: Option<PathBuf>,
    /// Normalised: no trailing slash, no path, no query.
    pub base_url: Url,
    pub domain: Option<String>,
    pub org_id: Option<String>,
    pub auth: AuthMode,
    /// The organization API key (Admin API, Bearer), from `org_api_key` or `org_api_key_file`.
    pub org_api_key: Option<SecretString>,
    pub org_api_key_file: Option<PathBuf>,
    /// The Admin API's base URL; normalised like `base_url`.
    pub admin_base_url: Url,
    /// The site's cloudId, when given; else resolved once and cached in the database.
    pub cloud_id: Option<String>,
    /// The API gateway (`scoped` and `oauth`); normalised like `base_url`.
    pub gateway_base_url: Url,
    pub oauth: OAuthSettings,
}

impl JiraSettings {
    /// The API token; `None` only for settings that were built by hand and never validated.
    pub fn token(&self) -> Option<&SecretString> {
        self.api_token.as_ref()
    }

    /// Whether the organization audit stream can run: an org id and an org API key are set.
    pub fn org_events_configured(&self) -> bool {
        self.org_id.is_some() && self.org_api_key.is_some()
    }

    /// The site id stored as the first key column of every table: `jira.domain` if set, else
    /// the base URL's `host[:port]`.
    pub fn site(&self) -> String {
        match &self.domain {
            Some(domain) => domain.clone(),
            None => self.host(),
        }
    }

    /// `host[:port]` of the base URL, as people and error messages name the site.
    pub fn host(&self) -> String {
        let host = self.base_url.host_str().unwrap_or_default();
        match self.base_url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        }
    }
}

/// `[database]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// May hold a password, hence secret. Empty in a file means unset.
    pub url: Option<SecretString>,
    pub max_connections: u32,
    pub connect_timeout_secs: u64,
    /// `disable`, `allow`, `prefer`, `require`, `verify-ca` or `verify-full`; empty: the URL's
    /// `sslmode`, else `prefer`.
    pub sslmode: String,
    /// A CA certificate (PEM) to verify the server with (`verify-ca`, `verify-full`).
    pub ssl_root_cert: Option<PathBuf>,
    /// The longest a statement may run before PostgreSQL cancels it; also the longest jira-sync
    /// waits for any answer of the database.
    pub statement_timeout_secs: u64,
    /// The schema of the Fivetran-compatible views (for Fivetran's `dbt_jira` package);
    /// empty: none.
    pub fivetran_schema: String,
}

impl DatabaseSettings {
    /// The database URL, or an error telling how to set it, for the commands that need one.
    pub fn require_url(&self) -> Result<&SecretString, ConfigError> {
        self.url.as_ref().ok_or_else(|| {
            ConfigError::invalid(
                "database.url",
                "is not set: set it in the config file, JIRA_SYNC__DATABASE__URL or DATABASE_URL",
            )
        })
    }
}

/// `[sync]`: what to sync and how often.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSettings {
    pub projects: bool,
    pub issues: bool,
    pub users: bool,
    pub audit_records: bool,
    /// The records of issues read with the issues stream: change histories, comments,
    /// worklogs, links.
    pub changelogs: bool,
    pub comments: bool,
    pub worklogs: bool,
    pub issue_links: bool,
    /// Project keys, upper-cased at load; empty means all visible projects.
    pub include_projects: Vec<String>,
    pub exclude_projects: Vec<String>,
    pub issues_interval_secs: u64,
    pub audit_interval_secs: u64,
    pub users_interval_secs: u64,
    pub projects_interval_secs: u64,
    pub census_interval_secs: u64,
    pub audit_lookback_days: u32,
    pub issue_overlap_secs: u64,
    /// Audit windows end this long before the scan starts, so no record can still arrive in a
    /// window already read.
    pub audit_lag_secs: u64,
    /// Share of a project's issues that may vanish in one census before it is treated as lost
    /// permission (nothing marked deleted).
    pub census_max_delete_share: f64,
    /// Issues one census may mark deleted on the whole site; past it, nothing more is marked.
    pub census_max_deletes: u64,
    /// How long `run` waits for in-flight work after SIGTERM/SIGINT before exiting.
    pub shutdown_timeout_secs: u64,
    /// Organization audit events: as configured, and resolved to `false` at load when
    /// `jira.org_id` or an org API key is missing ("sync when configured").
    pub org_events: bool,
    pub org_events_interval_secs: u64,
}

/// `[rate_limit]`: pacing and retries of requests to Jira.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    pub requests_per_second: f64,
    pub burst: u32,
    pub max_in_flight: usize,
    pub max_retries: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub request_timeout_secs: u64,
    pub connect_timeout_secs: u64,
    pub max_retry_after_secs: u64,
    /// Adaptive pacing: the lowest share of `requests_per_second` that pressure reports from
    /// Jira slow the pace to, and how long the pace takes to climb back to full after a second
    /// of clean answers.
    pub adaptive_min_share: f64,
    pub adaptive_recovery_secs: u64,
    /// The share of the site's bucket (`X-RateLimit-Limit`) requests leave unspent, by what
    /// `X-RateLimit-Remaining` says is left.
    pub low_remaining_share: f64,
    /// Pacing of the Admin API (organization events), which has limits of its own, far
    /// lower than a site's.
    pub admin_requests_per_second: f64,
    pub admin_burst: u32,
    /// The largest response body read, in MiB once decompressed.
    pub max_response_mb: u64,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A `tracing_subscriber::EnvFilter` directive.
    pub level: String,
    /// Without a terminal, a progress line is logged at most this often.
    pub progress_interval_secs: u64,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Pretty,
            level: "info".to_owned(),
            progress_interval_secs: 10,
        }
    }
}

/// `[server]`: the daemon's HTTP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// `ip:port` to listen on; port 0 picks a free port.
    pub listen: String,
    /// A stream with no successful run for this many intervals is stalled.
    pub stall_intervals: u32,
}

impl ServerSettings {
    /// The parsed `listen` address.
    pub fn addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.trim().parse().map_err(|_| {
            ConfigError::invalid(
                "server.listen",
                format!(
                    "({:?}) is not an address and port: write it like 127.0.0.1:9464, or \
                     0.0.0.0:9464 to accept connections from other hosts",
                    self.listen
                ),
            )
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.addr()?;
        if !(1..=1000).contains(&self.stall_intervals) {
            return Err(ConfigError::invalid(
                "server.stall_intervals",
                format!("is {}: it must be between 1 and 1000", self.stall_intervals),
            ));
        }
        Ok(())
    }
}

/// The `[streams.<name>]` sections as written. A stream with settings of its own reads its
/// section into a typed struct ([`StreamSections::parse`]); the defaults are those of the
/// embedded `config/default.toml`, like every other key's.
#[derive(Debug, Clone, Default)]
pub struct StreamSections(BTreeMap<String, config::Value>);

impl StreamSections {
    /// The names of the sections present.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Reads `[streams.<name>]` into `T`; an unknown key or a value of the wrong type is an
    /// error naming `streams.<name>.<key>`. A missing section reads as an empty one.
    pub fn parse<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, ConfigError> {
        let value = self.0.get(name).cloned().unwrap_or_else(|| {
            config::Value::new(None, config::ValueKind::Table(config::Map::new()))
        });
        value.try_deserialize().map_err(|err| {
            let text = hide_quoted(&err.to_string());
            match between(&text, "unknown field `", "`") {
                Some(field) => ConfigError::Load(format!(
                    "unknown key streams.{name}.{field} ({text}): fix or remove it"
                )),
                None => ConfigError::Load(format!("[streams.{name}]: {text}")),
            }
        })
    }
}

/// `[jira]` as written, before the base URL is parsed and the token file is read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJira {
    email: String,
    api_token: Option<SecretString>,
    api_token_file: Option<PathBuf>,
    base_url: String,
    domain: Option<String>,
    org_id: Option<String>,
    auth: AuthMode,
    org_api_key: Option<SecretString>,
    org_api_key_file: Option<PathBuf>,
    admin_base_url: String,
    cloud_id: Option<String>,
    gateway_base_url: String,
    client_id: String,
    client_secret: Option<SecretString>,
    client_secret_file: Option<PathBuf>,
    refresh_token: Option<SecretString>,
    refresh_token_file: Option<PathBuf>,
    token_url: String,
    authorize_url: String,
    token_encryption_key: Option<SecretString>,
    token_encryption_key_file: Option<PathBuf>,
    store_token_unencrypted: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    jira: RawJira,
    database: DatabaseSettings,
    sync: SyncSettings,
    rate_limit: RateLimitSettings,
    log: LogSettings,
    server: ServerSettings,
    #[serde(default)]
    streams: BTreeMap<String, config::Value>,
}

impl Settings {
    /// Loads and validates the settings from files and the process environment.
    pub fn load(config_path: Option<&Path>) -> Result<Settings, ConfigError> {
        Settings::load_from(config_path, std::env::vars().collect())
    }

    /// Like [`Settings::load`], with `env` standing in for the process environment.
    pub fn load_from(
        config_path: Option<&Path>,
        env: HashMap<String, String>,
    ) -> Result<Settings, ConfigError> {
        use config::{File, FileFormat};
        let mut builder = config::Config::builder()
            .add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml))
            .add_source(File::new("config/default.toml", FileFormat::Toml).required(false));
        if let Some(path) = config_path {
            if !path.is_file() {
                return Err(ConfigError::Load(format!(
                    "config file {} does not exist or is not a file: check --config / JIRA_SYNC_CONFIG",
                    path.display()
                )));
            }
            builder = builder.add_source(File::new(&path.to_string_lossy(), FileFormat::Toml));
        }
        // Values stay strings (no `try_parsing`) so a token that happens to look like a number
        // or a boolean is kept verbatim; the deserializer converts strings for numeric keys.
        // Lists are split here because `config` would otherwise split every value.
        let mut plain = HashMap::new();
        for (name, value) in env {
            if let Some((_, key)) = LIST_ENV_KEYS.iter().find(|(var, _)| *var == name) {
                let items: Vec<String> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                builder = builder.set_override(*key, items).map_err(load_error)?;
            } else if name == "DATABASE_URL" {
                if !value.is_empty() {
                    builder = builder
                        .set_override("database.url", value)
                        .map_err(load_error)?;
                }
            } else if name.starts_with("JIRA_SYNC__") {
                plain.insert(name, value);
            }
        }
        builder = builder.add_source(env_source(plain));
        finish(builder.build().map_err(load_error)?)
    }

    /// Settings for `base_url` with everything else at the built-in defaults, for commands and
    /// tests that start their own Jira (the simulator) and need no config file.
    pub fn for_site(
        base_url: &Url,
        email: &str,
        api_token: SecretString,
    ) -> Result<Settings, ConfigError> {
        let env = HashMap::from([
            ("JIRA_SYNC__JIRA__BASE_URL".to_owned(), base_url.to_string()),
            ("JIRA_SYNC__JIRA__EMAIL".to_owned(), email.to_owned()),
            (
                "JIRA_SYNC__JIRA__API_TOKEN".to_owned(),
                api_token.expose_secret().to_owned(),
            ),
        ]);
        let built = config::Config::builder()
            .add_source(config::File::from_str(
                DEFAULT_TOML,
                config::FileFormat::Toml,
            ))
            .add_source(env_source(env))
            .build()
            .map_err(load_error)?;
        finish(built)
    }

    /// The site id stored as the first key column of every table ([`JiraSettings::site`]).
    pub fn site(&self) -> String {
        self.jira.site()
    }

    /// Parses what `RawSettings` left as text: the base URL, the token file, empty strings.
    fn from_raw(raw: RawSettings) -> Result<Settings, ConfigError> {
        let RawSettings {
            jira,
            mut database,
            mut sync,
            rate_limit,
            log,
            server,
            streams,
        } = raw;
        let mut warnings = Vec::new();
        let (api_token, api_token_file) = read_secret(
            "jira.api_token",
            jira.api_token,
            jira.api_token_file,
            &mut warnings,
        )?;
        let base_url = validate::parse_base_url(&jira.base_url)?;
        let admin_base_url = validate::parse_admin_base_url(&jira.admin_base_url)?;
        let (org_api_key, org_api_key_file) = read_secret(
            "jira.org_api_key",
            jira.org_api_key,
            jira.org_api_key_file,
            &mut warnings,
        )?;
        let oauth = OAuthSettings {
            client_id: jira.client_id.trim().to_owned(),
            client_secret: read_secret(
                "jira.client_secret",
                jira.client_secret,
                jira.client_secret_file,
                &mut warnings,
            )?
            .0,
            refresh_token: read_secret(
                "jira.refresh_token",
                jira.refresh_token,
                jira.refresh_token_file,
                &mut warnings,
            )?
            .0,
            token_url: validate::parse_endpoint_url("jira.token_url", &jira.token_url)?,
            authorize_url: validate::parse_endpoint_url("jira.authorize_url", &jira.authorize_url)?,
            token_encryption_key: read_secret(
                "jira.token_encryption_key",
                jira.token_encryption_key,
                jira.token_encryption_key_file,
                &mut warnings,
            )?
            .0,
            store_token_unencrypted: jira.store_token_unencrypted,
        };
        let gateway_base_url =
            validate::parse_root_url_key("jira.gateway_base_url", &jira.gateway_base_url)?;
        database.url = database
            .url
            .filter(|u| !u.expose_secret().trim().is_empty());
        database.sslmode = database.sslmode.trim().to_lowercase();
        database.ssl_root_cert = database.ssl_root_cert.filter(|p| !p.as_os_str().is_empty());
        for list in [&mut sync.include_projects, &mut sync.exclude_projects] {
            for key in list.iter_mut() {
                *key = key.trim().to_uppercase();
            }
        }
        let jira = JiraSettings {
            email: jira.email.trim().to_owned(),
            api_token,
            api_token_file,
            base_url,
            domain: non_empty(jira.domain).map(|d| d.to_lowercase()),
            org_id: non_empty(jira.org_id),
            auth: jira.auth,
            org_api_key,
            org_api_key_file,
            admin_base_url,
            cloud_id: non_empty(jira.cloud_id).map(|c| c.to_lowercase()),
            gateway_base_url,
            oauth,
        };
        sync.org_events &= jira.org_events_configured();
        Ok(Settings {
            jira,
            database,
            sync,
            rate_limit,
            log,
            server,
            streams: StreamSections(streams),
            warnings,
        })
    }
}

/// `JIRA_SYNC__SECTION__KEY` variables as a layer. The prefix needs its own separator, or
/// `config` would expect `JIRA_SYNC____` after it.
fn env_source(vars: HashMap<String, String>) -> config::Environment {
    config::Environment::with_prefix("JIRA_SYNC")
        .prefix_separator("__")
        .separator("__")
        .source(Some(vars))
}

/// Deserializes the layered values and validates them.
fn finish(built: config::Config) -> Result<Settings, ConfigError> {
    // Secrets that reached the layered values are scrubbed from any error text below, in case
    // a type error quotes one (for example a token pasted into a numeric key).
    let secrets: Vec<String> = [
        "jira.api_token",
        "jira.org_api_key",
        "jira.client_secret",
        "jira.refresh_token",
        "jira.token_encryption_key",
        "database.url",
    ]
    .iter()
    .filter_map(|key| built.get_string(key).ok())
    .filter(|s| s.len() >= 4)
    .collect();
    let raw: RawSettings = built
        .try_deserialize()
        .map_err(|e| ConfigError::Load(scrub(&describe(&e), &secrets)))?;
    let settings = Settings::from_raw(raw)?;
    settings.validate()?;
    Ok(settings)
}

/// A secret given inline (`key`) or in a file (`key_file`), never both; blank means unset.
/// A file holding a secret that others may read earns a warning.
fn read_secret(
    key: &str,
    inline: Option<SecretString>,
    file: Option<PathBuf>,
    warnings: &mut Vec<String>,
) -> Result<(Option<SecretString>, Option<PathBuf>), ConfigError> {
    let file = file.filter(|p| !p.as_os_str().is_empty());
    let inline = inline.filter(|t| !t.expose_secret().trim().is_empty());
    let Some(path) = &file else {
        return Ok((inline, None));
    };
    let file_key = format!("{key}_file");
    if inline.is_some() {
        return Err(ConfigError::invalid(
            &file_key,
            format!("and {key} are both set: keep only one"),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::invalid(
            &file_key,
            format!(
                "cannot be read ({}): {e}; check the path and permissions",
                path.display()
            ),
        )
    })?;
    if let Some(warning) = exposed(&file_key, path) {
        warnings.push(warning);
    }
    Ok((Some(SecretString::from(text.trim().to_owned())), file))
}

/// A warning when `path` (a secret) may be read by its group or by others.
fn exposed(key: &str, path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "{key} ({}) may be read by its group or by others (mode {:o}): make it readable by \
             its owner only (chmod 600)",
            path.display(),
            mode & 0o777
        )
    })
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn load_error(err: config::ConfigError) -> ConfigError {
    ConfigError::Load(describe(&err))
}

/// Renders a `config` error without the source excerpt that TOML parse errors carry: that
/// excerpt is the offending line of the file, which may be the line holding a secret.
fn describe(err: &config::ConfigError) -> String {
    let text = err.to_string();
    let kept: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !is_excerpt_line(line))
        .collect();
    let text = hide_quoted(&kept.join("; "));
    // `deny_unknown_fields` reports "unknown field `x`, expected one of ... for key `section`";
    // name the full key so the user can find the typo.
    if let (Some(field), Some(section)) = (
        between(&text, "unknown field `", "`"),
        between(&text, "for key `", "`"),
    ) {
        return format!("unknown key {section}.{field} ({text}): fix or remove it");
    }
    text
}

/// Replaces every double-quoted value in an error message: type errors quote the value they
/// rejected, and that value may be a secret typed into the wrong key. Key names, which are
/// what the user needs, are quoted with backticks and stay.
fn hide_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            out.push(c);
            continue;
        }
        out.push_str("\"…\"");
        while let Some(inner) = chars.next() {
            match inner {
                '\\' => {
                    chars.next();
                }
                '"' => break,
                _ => {}
            }
        }
    }
    out
}

fn is_excerpt_line(line: &str) -> bool {
    let rest = line
        .trim_start_matches(|c: char| c.is_ascii_digit())
        .trim_start();
    rest.starts_with('|')
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

fn scrub(text: &str, secrets: &[String]) -> String {
    secrets.iter().fold(text.to_owned(), |acc, s| {
        acc.replace(s.as_str(), "[REDACTED]")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_defaults_are_a_complete_valid_configuration_once_a_site_is_given() {
        let url = Url::parse("http://127.0.0.1:8080").expect("url");
        let s =
            Settings::for_site(&url, "demo@example.com", SecretString::from("t")).expect("valid");
        assert_eq!(s.site(), "127.0.0.1:8080");
        assert_eq!(s.rate_limit.backoff_max_ms, 30_000);
        assert_eq!(s.sync.census_interval_secs, 86_400);
    }

    /// Settings for a site, with `vars` as further environment.
    fn with_env(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let mut env: HashMap<String, String> = [
            ("JIRA_SYNC__JIRA__BASE_URL", "http://127.0.0.1:8080"),
            ("JIRA_SYNC__JIRA__EMAIL", "demo@example.com"),
            ("JIRA_SYNC__JIRA__API_TOKEN", "t"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        env.extend(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        Settings::load_from(None, env)
    }

    #[test]
    fn a_stream_section_reads_into_the_streams_type_and_names_unknown_keys() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Demo {
            interval_secs: u64,
            #[serde(default)]
            enabled: Option<bool>,
        }
        let settings = with_env(&[
            ("JIRA_SYNC__STREAMS__DEMO__INTERVAL_SECS", "600"),
            ("JIRA_SYNC__STREAMS__DEMO__ENABLED", "false"),
        ])
        .expect("valid");
        // The defaults name the streams of reference data; the environment adds demo.
        assert!(settings.streams.names().any(|n| n == "demo"));
        assert!(settings.streams.names().any(|n| n == "statuses"));
        let demo: Demo = settings.streams.parse("demo").expect("a demo section");
        assert_eq!((demo.interval_secs, demo.enabled), (600, Some(false)));
        let missing = settings
            .streams
            .parse::<Demo>("other")
            .expect_err("no interval");
        assert!(missing.to_string().contains("[streams.other]"), "{missing}");
        let typo = with_env(&[("JIRA_SYNC__STREAMS__DEMO__INTERVAL_SEC", "600")]).expect("valid");
        let err = typo.streams.parse::<Demo>("demo").expect_err("unknown key");
        assert!(
            err.to_string()
                .contains("unknown key streams.demo.interval_sec"),
            "{err}"
        );
    }

    #[test]
    fn quoted_values_are_hidden_from_error_text_but_key_names_stay() {
        let text = r#"invalid type: string "tok-\"x\"-secret", expected an integer for key `rate_limit.burst`"#;
        assert_eq!(
            hide_quoted(text),
            "invalid type: string \"…\", expected an integer for key `rate_limit.burst`"
        );
    }
}
