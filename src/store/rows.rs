//! Row types: what the store writes, one struct per table. Streams build them from Jira's JSON.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct ProjectRow {
    pub id: i64,
    pub key: String,
    pub name: String,
    pub project_type: Option<String>,
    pub style: Option<String>,
    pub simplified: Option<bool>,
    pub category_id: Option<i64>,
    pub category_name: Option<String>,
    pub lead_account_id: Option<String>,
    pub is_private: Option<bool>,
    pub archived: bool,
    pub archived_at: Option<DateTime<Utc>>,
    pub raw: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IssueRow {
    pub id: i64,
    pub key: String,
    pub project_id: i64,
    pub project_key: Option<String>,
    pub issue_type: Option<String>,
    pub issue_type_id: Option<String>,
    pub is_subtask: Option<bool>,
    pub status: Option<String>,
    pub status_id: Option<String>,
    pub status_category: Option<String>,
    pub priority: Option<String>,
    pub resolution: Option<String>,
    pub assignee_account_id: Option<String>,
    pub reporter_account_id: Option<String>,
    pub creator_account_id: Option<String>,
    pub parent_id: Option<i64>,
    pub parent_key: Option<String>,
    pub summary: Option<String>,
    /// A JSON array of strings (bound as jsonb and expanded to `text[]` in SQL, because
    /// PostgreSQL's UNNEST would flatten a two-dimensional array).
    pub labels: Value,
    pub created: Option<DateTime<Utc>>,
    pub updated: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub due_date: Option<NaiveDate>,
    pub raw: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserRow {
    pub account_id: String,
    pub account_type: Option<String>,
    pub app_type: Option<String>,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub active: Option<bool>,
    pub time_zone: Option<String>,
    pub locale: Option<String>,
    pub raw: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub id: i64,
    pub created: DateTime<Utc>,
    pub category: Option<String>,
    pub summary: Option<String>,
    pub description: Option<String>,
    pub event_source: Option<String>,
    pub author_account_id: Option<String>,
    pub remote_address: Option<String>,
    pub object_item: Option<Value>,
    pub changed_values: Option<Value>,
    pub associated_items: Option<Value>,
    pub raw: Value,
}

/// An organization audit event (Admin API); keyed by organization, not site.
#[derive(Debug, Clone, PartialEq)]
pub struct OrgEventRow {
    pub id: String,
    pub time: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
    pub action: Option<String>,
    pub actor_id: Option<String>,
    pub actor_name: Option<String>,
    pub actor_email: Option<String>,
    pub ip: Option<String>,
    pub product: Option<String>,
    pub message: Option<String>,
    pub context: Option<Value>,
    pub container: Option<Value>,
    pub raw: Value,
}
