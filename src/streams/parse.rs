//! Careful reading of Jira records: every value is checked for its type, and a record that
//! cannot be read fails with a message naming the record and the field, never silently dropped.
//!
//! Missing and `null` both read as "absent" (privacy hides emails, priorities may be unset);
//! a value of the wrong type is an error. Ids may be strings or numbers; timestamps may be
//! `+0000`, `+10:00`, `Z` or epoch milliseconds.

use crate::jira::time::{parse_jira_date, parse_jira_timestamp_value};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

/// A record that could not be read.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot read {entity} {record}: field `{field}` {detail}; nothing of this page was written \
     (the sync stops rather than skip data): report this record's JSON as a bug"
)]
pub struct ParseError {
    pub entity: &'static str,
    pub record: String,
    pub field: String,
    pub detail: String,
}

/// One API record being read.
pub struct Record<'a> {
    entity: &'static str,
    label: String,
    value: &'a Value,
}

impl<'a> Record<'a> {
    /// `label_paths` name the fields that identify the record in messages (e.g. `key`, `id`).
    pub fn new(entity: &'static str, value: &'a Value, label_paths: &[&str]) -> Record<'a> {
        let label = label_paths
            .iter()
            .filter_map(|p| lookup(value, p).map(|v| (*p, v)))
            .map(|(p, v)| match v {
                Value::String(s) => format!("{p}={s}"),
                other => format!("{p}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" ");
        let label = if label.is_empty() {
            "(without id)".to_string()
        } else {
            label
        };
        Record {
            entity,
            label,
            value,
        }
    }

    pub fn raw(&self) -> &'a Value {
        self.value
    }

    fn error(&self, field: &str, detail: impl Into<String>) -> ParseError {
        ParseError {
            entity: self.entity,
            record: self.label.clone(),
            field: field.to_string(),
            detail: detail.into(),
        }
    }

    fn wrong(&self, field: &str, expected: &str, got: &Value) -> ParseError {
        let mut shown = got.to_string();
        if shown.len() > 80 {
            shown.truncate(80);
            shown.push('…');
        }
        self.error(field, format!("should be {expected} but is {shown}"))
    }

    /// The value at a dotted path, `None` when missing or null.
    pub fn get(&self, path: &str) -> Option<&'a Value> {
        lookup(self.value, path)
    }

    pub fn opt_str(&self, path: &str) -> Result<Option<String>, ParseError> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(self.wrong(path, "a string", other)),
        }
    }

    pub fn req_str(&self, path: &str) -> Result<String, ParseError> {
        self.opt_str(path)?
            .ok_or_else(|| self.error(path, "is missing"))
    }

    pub fn opt_id(&self, path: &str) -> Result<Option<i64>, ParseError> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.wrong(path, "an integer id", &Value::Number(n.clone()))),
            Some(Value::String(s)) => s
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| self.wrong(path, "a numeric id", &Value::String(s.clone()))),
            Some(other) => Err(self.wrong(path, "a numeric id", other)),
        }
    }

    pub fn req_id(&self, path: &str) -> Result<i64, ParseError> {
        self.opt_id(path)?
            .ok_or_else(|| self.error(path, "is missing"))
    }

    pub fn opt_bool(&self, path: &str) -> Result<Option<bool>, ParseError> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s == "true" || s == "false" => Ok(Some(s == "true")),
            Some(other) => Err(self.wrong(path, "true or false", other)),
        }
    }

    pub fn opt_ts(&self, path: &str) -> Result<Option<DateTime<Utc>>, ParseError> {
        match self.get(path) {
            None => Ok(None),
            Some(v) => parse_jira_timestamp_value(v)
                .map(Some)
                .ok_or_else(|| self.wrong(path, "a Jira timestamp", v)),
        }
    }

    pub fn req_ts(&self, path: &str) -> Result<DateTime<Utc>, ParseError> {
        self.opt_ts(path)?
            .ok_or_else(|| self.error(path, "is missing"))
    }

    pub fn opt_date(&self, path: &str) -> Result<Option<NaiveDate>, ParseError> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::String(s)) => parse_jira_date(s)
                .map(Some)
                .ok_or_else(|| self.wrong(path, "a date (yyyy-MM-dd)", &Value::String(s.clone()))),
            Some(other) => Err(self.wrong(path, "a date (yyyy-MM-dd)", other)),
        }
    }

    /// A JSON array of strings (labels); absent reads as empty.
    pub fn str_array(&self, path: &str) -> Result<Value, ParseError> {
        match self.get(path) {
            None => Ok(Value::Array(Vec::new())),
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
                Ok(Value::Array(items.clone()))
            }
            Some(other) => Err(self.wrong(path, "an array of strings", other)),
        }
    }

    /// The id of the user object at `path` (an assignee, a reporter): its `accountId` on Cloud;
    /// on Data Center, which has no account ids, its `key` (what `jira.users.account_id`
    /// holds for Data Center users). Absent when the user is missing or null; an object with
    /// neither id, or an id of the wrong type, is an error naming the field.
    pub fn opt_user_id(&self, path: &str) -> Result<Option<String>, ParseError> {
        let Some(user) = self.get(path) else {
            return Ok(None);
        };
        if !user.is_object() {
            return Err(self.wrong(path, "a user object", user));
        }
        let account_id = format!("{path}.accountId");
        if let Some(id) = self.opt_str(&account_id)? {
            return Ok(Some(id));
        }
        let key = format!("{path}.key");
        match self.opt_str(&key)? {
            Some(key) if !key.is_empty() => Ok(Some(key)),
            _ => Err(self.error(&account_id, "is missing and so is the Data Center `key`")),
        }
    }

    /// Any JSON value kept as is (objects and arrays stored as jsonb).
    pub fn opt_json(&self, path: &str) -> Option<Value> {
        self.get(path).cloned()
    }
}

fn lookup<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    let mut current = value;
    for part in path.split('.') {
        current = current.get(part)?;
    }
    (!current.is_null()).then_some(current)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_arrive_as_strings_or_numbers() {
        let v = json!({"id": "10002", "n": 7, "bad": "ten"});
        let r = Record::new("issue", &v, &["id"]);
        assert_eq!(r.req_id("id").ok(), Some(10002));
        assert_eq!(r.req_id("n").ok(), Some(7));
        let err = r.req_id("bad").expect_err("not numeric");
        assert_eq!(err.field, "bad");
        assert_eq!(err.record, "id=10002");
    }

    #[test]
    fn null_and_missing_are_absent_but_a_wrong_type_is_an_error() {
        let v = json!({"key": "OPS-1", "fields": {"priority": null, "updated": "soon"}});
        let r = Record::new("issue", &v, &["key"]);
        assert_eq!(r.opt_str("fields.priority.name").ok(), Some(None));
        assert_eq!(r.opt_str("fields.assignee.accountId").ok(), Some(None));
        let err = r.req_ts("fields.updated").expect_err("not a timestamp");
        assert!(err.to_string().contains("OPS-1"));
        assert!(err.to_string().contains("fields.updated"));
    }

    #[test]
    fn a_user_is_its_account_id_else_its_data_center_key() {
        let v = json!({"key": "OPS-1", "fields": {
            "cloud": {"accountId": "5b10ac8d82e05b22cc7d4ef5", "displayName": "Mia"},
            "dc": {"key": "JIRAUSER10100", "name": "fred", "displayName": "Fred"},
            "both": {"accountId": "712020:abc", "key": ""},
            "none": null,
        }});
        let r = Record::new("issue", &v, &["key"]);
        let id = |path: &str| r.opt_user_id(path).expect("reads");
        assert_eq!(
            id("fields.cloud").as_deref(),
            Some("5b10ac8d82e05b22cc7d4ef5")
        );
        assert_eq!(id("fields.dc").as_deref(), Some("JIRAUSER10100"));
        assert_eq!(id("fields.both").as_deref(), Some("712020:abc"));
        assert_eq!(id("fields.none"), None);
        assert_eq!(id("fields.missing"), None);
    }

    #[test]
    fn a_user_without_any_id_or_with_a_bad_one_names_the_record_and_field() {
        let v = json!({"key": "OPS-2", "fields": {
            "anonymous": {"name": "fred", "displayName": "Fred"},
            "empty_key": {"key": ""},
            "numeric_key": {"key": {"id": 7}},
            "text": "fred",
        }});
        let r = Record::new("issue", &v, &["key"]);
        for (path, field) in [
            ("fields.anonymous", "fields.anonymous.accountId"),
            ("fields.empty_key", "fields.empty_key.accountId"),
            ("fields.numeric_key", "fields.numeric_key.key"),
            ("fields.text", "fields.text"),
        ] {
            let err = r.opt_user_id(path).expect_err(path);
            assert_eq!(err.field, field);
            assert_eq!(err.record, "key=OPS-2");
        }
    }
}
