//! Wire types: mirror Jira's JSON, accept unknown fields, default what may be missing.
//!
//! Only `streams/` turns these into row types. Ids arrive as strings in some endpoints and as
//! numbers in others, so every id goes through [`FlexId`].

use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// One record of a page as Jira sent it (its JSON text), read into a row one at a time, so a
/// record that cannot be read is set aside alone rather than failing its page.
pub type RawRecord = Box<RawValue>;

/// An id that Jira sends as a JSON string in one endpoint and as a number in another.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum FlexId {
    Number(i64),
    Text(String),
}

impl FlexId {
    /// The numeric value, if the id is numeric (all Jira entity ids except account ids are).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            FlexId::Number(n) => Some(*n),
            FlexId::Text(s) => s.trim().parse().ok(),
        }
    }
}

/// `GET /rest/api/3/myself`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "MyselfWire")]
pub struct Myself {
    /// The id users are stored under: the account id, or on Data Center (which has none) the
    /// user `key`.
    pub account_id: String,
    pub account_type: Option<String>,
    pub display_name: Option<String>,
    pub email_address: Option<String>,
    /// IANA zone; JQL date literals are read in this zone.
    pub time_zone: Option<String>,
    pub locale: Option<String>,
    pub active: Option<bool>,
}

/// `/myself` as sent: Cloud names the user by `accountId`, Data Center by `key`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MyselfWire {
    #[serde(default)]
    account_id: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    account_type: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    email_address: Option<String>,
    #[serde(default)]
    time_zone: Option<String>,
    #[serde(default)]
    locale: Option<String>,
    #[serde(default)]
    active: Option<bool>,
}

impl TryFrom<MyselfWire> for Myself {
    type Error = &'static str;

    fn try_from(wire: MyselfWire) -> Result<Myself, &'static str> {
        let account_id = wire
            .account_id
            .or(wire.key)
            .filter(|id| !id.is_empty())
            .ok_or("the profile names no user: it has neither accountId nor key")?;
        Ok(Myself {
            account_id,
            account_type: wire.account_type,
            display_name: wire.display_name,
            email_address: wire.email_address,
            time_zone: wire.time_zone,
            locale: wire.locale,
            active: wire.active,
        })
    }
}

/// `GET /rest/api/3/serverInfo`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerInfo {
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub deployment_type: Option<String>,
    /// Jira's `+0000`-style timestamp; parse with [`crate::jira::time::parse_jira_timestamp`].
    #[serde(default)]
    pub server_time: Option<String>,
    #[serde(default)]
    pub server_time_zone: Option<String>,
    #[serde(default)]
    pub server_title: Option<String>,
}

/// `GET /rest/api/3/mypermissions?permissions=...`.
#[derive(Debug, Clone, Deserialize)]
pub struct MyPermissions {
    #[serde(default)]
    pub permissions: BTreeMap<String, UserPermission>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserPermission {
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub have_permission: bool,
}

impl MyPermissions {
    /// Whether the caller holds `key` (in any project, for project permissions).
    pub fn has(&self, key: &str) -> bool {
        self.permissions.get(key).is_some_and(|p| p.have_permission)
    }
}

/// A page of `GET /rest/api/3/project/search` (a PageBean).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectPage {
    #[serde(default)]
    pub values: Vec<RawRecord>,
    #[serde(default)]
    pub is_last: Option<bool>,
    #[serde(default)]
    pub total: Option<i64>,
}

/// A page of `GET`/`POST /rest/api/3/search/jql`: no total, a cursor instead of offsets.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchPage {
    #[serde(default)]
    pub issues: Vec<RawRecord>,
    #[serde(default)]
    pub next_page_token: Option<String>,
    #[serde(default)]
    pub is_last: Option<bool>,
}

/// A page of Data Center's `/rest/api/2/search`: offsets and an exact total.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LegacySearchPage {
    /// The page size the server applied (it caps `maxResults`).
    #[serde(default)]
    pub max_results: Option<usize>,
    #[serde(default)]
    pub total: Option<usize>,
    #[serde(default)]
    pub issues: Vec<RawRecord>,
}

/// `POST /rest/api/3/issue/bulkfetch`. `issues` is required: an answer without it confirms
/// nothing (an issue missing from it is taken for deleted).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkFetchResult {
    pub issues: Vec<RawRecord>,
    #[serde(default)]
    pub issue_errors: Vec<serde_json::Value>,
}

/// `POST /rest/api/3/search/approximate-count`.
#[derive(Debug, Clone, Deserialize)]
pub struct ApproximateCount {
    pub count: i64,
}

/// A page of `GET /rest/api/3/auditing/record`. `total` counts the whole log, not the window,
/// so it is never used to stop paging.
#[derive(Debug, Clone, Deserialize)]
pub struct AuditPage {
    #[serde(default)]
    pub records: Vec<RawRecord>,
    #[serde(default)]
    pub offset: Option<i64>,
    #[serde(default)]
    pub limit: Option<i64>,
    #[serde(default)]
    pub total: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::Myself;

    fn myself(json: &str) -> Myself {
        serde_json::from_str(json).expect("a profile")
    }

    #[test]
    fn the_users_id_is_the_account_id_or_on_data_center_the_key() {
        assert_eq!(myself(r#"{"accountId":"5b10"}"#).account_id, "5b10");
        let dc = myself(r#"{"key":"JIRAUSER10100","name":"ann"}"#);
        assert_eq!(dc.account_id, "JIRAUSER10100");
        // A profile with both reads, and the account id wins.
        assert_eq!(
            myself(r#"{"accountId":"5b10","key":"k"}"#).account_id,
            "5b10"
        );
        // One with neither is no profile.
        let err = serde_json::from_str::<Myself>(r#"{"displayName":"x"}"#).expect_err("no id");
        assert!(
            err.to_string().contains("neither accountId nor key"),
            "{err}"
        );
    }
}
