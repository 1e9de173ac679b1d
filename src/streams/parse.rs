//! Careful reading of Jira records: every value is checked for its type, and a record that
//! cannot be read fails with a message naming the record and the field, never silently dropped.
//!
//! Missing and `null` both read as "absent" (privacy hides emails, priorities may be unset);
//! a value of the wrong type is an error. Ids may be strings or numbers; timestamps may be
//! `+0000`, `+10:00`, `Z` or epoch milliseconds.

use crate::jira::model::{FlexId, RawRecord};
use crate::jira::time::{parse_jira_date, parse_jira_timestamp_value};
use crate::store::SetAside;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// The deepest nesting of arrays and objects a record may have. Jira's own documents (rich
/// text, custom fields) stay far below it; a deeper record is set aside unread rather than
/// risking the stack of the parser or PostgreSQL's.
pub const MAX_DEPTH: usize = 1000;

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

    pub fn wrong(&self, field: &str, expected: &str, got: &Value) -> ParseError {
        self.error(
            field,
            format!(
                "should be {expected} but is {}",
                excerpt(&got.to_string(), 80)
            ),
        )
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

/// At most `max_chars` characters of `text` (never cut inside one), with `…` when cut.
pub fn excerpt(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// Records read from a page: the rows, and the records set aside.
#[derive(Debug)]
pub struct Read<R> {
    pub rows: Vec<R>,
    pub set_aside: Vec<SetAside>,
}

/// Reads every record of a page with `parse`. A record that cannot be read (nested too deep,
/// a field of the wrong type) is set aside for `stream` with its text and the reason, and the
/// others are read on: one bad record never stops a page.
pub fn read_records<R>(
    stream: &'static str,
    entity: &str,
    records: Vec<RawRecord>,
    mut parse: impl FnMut(Value) -> Result<R, ParseError>,
) -> Read<R> {
    let mut read = Read {
        rows: Vec::with_capacity(records.len()),
        set_aside: Vec::new(),
    };
    for raw in records {
        let result = value_of(&raw).and_then(|value| parse(value).map_err(|e| e.to_string()));
        match result {
            Ok(row) => read.rows.push(row),
            Err(error) => read
                .set_aside
                .push(aside_logged(stream, entity, &raw, error)),
        }
    }
    read
}

/// [`read_records`] for big records of which a few fields are read (a full issue is tens of
/// kilobytes, most of it fields nothing here reads): each record is decoded into a value that
/// holds only its `top` keys and, of its `fields` object, only the `fields` keys, skipping the
/// rest unparsed, and is kept as the text received, for storage as it came. Returns each row
/// with that partial value and the record.
pub fn read_heads<R>(
    stream: &'static str,
    entity: &str,
    records: Vec<RawRecord>,
    top: &[&str],
    fields: &[&str],
    mut parse: impl FnMut(&Value) -> Result<R, ParseError>,
) -> Read<(R, Value, RawRecord)> {
    let mut read = Read {
        rows: Vec::with_capacity(records.len()),
        set_aside: Vec::new(),
    };
    for raw in records {
        let result = head_of(&raw, top, fields).and_then(|head| {
            parse(&head)
                .map(|row| (row, head))
                .map_err(|e| e.to_string())
        });
        match result {
            Ok((row, head)) => read.rows.push((row, head, raw)),
            Err(error) => read
                .set_aside
                .push(aside_logged(stream, entity, &raw, error)),
        }
    }
    read
}

/// The record `raw` decoded with only its `top` keys and the `fields` keys of its `fields`
/// object ([`read_heads`]), or why it cannot be read. The whole text is checked as
/// [`value_of`] checks it: a record too deep or not JSON is refused whole.
pub fn head_of(raw: &RawValue, top: &[&str], fields: &[&str]) -> Result<Value, String> {
    let keep = Keep {
        keys: top,
        nested: Some(("fields", fields)),
    };
    read_bounded(raw, |de| {
        let head = serde::de::DeserializeSeed::deserialize(keep, &mut *de)?;
        de.end().map(|()| head)
    })
}

/// Reads `raw` with `read`, or says why it cannot: a record deeper than [`MAX_DEPTH`] is
/// refused unread; within it, the parser's own limit (128) need not hold.
fn read_bounded(
    raw: &RawValue,
    read: impl FnOnce(
        &mut serde_json::Deserializer<serde_json::de::StrRead<'_>>,
    ) -> serde_json::Result<Value>,
) -> Result<Value, String> {
    let text = raw.get();
    let depth = crate::jira::json::depth(text.as_bytes());
    if depth > MAX_DEPTH {
        return Err(format!(
            "it nests {depth} levels deep; jira-sync reads records up to {MAX_DEPTH}"
        ));
    }
    let mut de = serde_json::Deserializer::from_str(text);
    de.disable_recursion_limit();
    read(&mut de).map_err(|e| format!("it is not JSON that can be read: {e}"))
}

/// Decodes an object keeping `keys` (and `nested`'s key, itself filtered to its keys).
#[derive(Clone, Copy)]
struct Keep<'a> {
    keys: &'a [&'a str],
    nested: Option<(&'a str, &'a [&'a str])>,
}

impl<'de> serde::de::DeserializeSeed<'de> for Keep<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Keep<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match self.nested {
                Some((name, keys)) if name == key => {
                    let inner = Keep { keys, nested: None };
                    out.insert(key, map.next_value_seed(inner)?);
                }
                _ if self.keys.contains(&key.as_str()) => {
                    out.insert(key, map.next_value::<Value>()?);
                }
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// The record `raw` as a JSON value, or why it cannot be read.
pub fn value_of(raw: &RawValue) -> Result<Value, String> {
    read_bounded(raw, |de| Value::deserialize(de))
}

/// [`set_aside`], and a warning in the log naming the record and why.
fn aside_logged(stream: &'static str, entity: &str, raw: &RawValue, error: String) -> SetAside {
    let aside = set_aside(stream, raw, error);
    tracing::warn!(
        stream,
        record = %aside.record_id,
        key = aside.record_key.as_deref().unwrap_or(""),
        error = %aside.error,
        "a {entity} cannot be read; it is set aside in jira.quarantine and retried on later runs"
    );
    aside
}

/// `raw` filed for quarantine under its id (a digest of its text when it has none).
pub fn set_aside(stream: &'static str, raw: &RawValue, error: String) -> SetAside {
    let (record_id, record_key) = identify(raw);
    SetAside {
        stream,
        record_id,
        record_key,
        error,
        raw_text: raw.get().to_owned(),
    }
}

/// The id and key of a record, read without reading the rest of it (any depth): `accountId`,
/// else `id`, else the Data Center user `key`, else a digest of the text.
pub fn identify(raw: &RawValue) -> (String, Option<String>) {
    #[derive(Deserialize)]
    struct Ids {
        #[serde(default)]
        id: Option<FlexId>,
        #[serde(default)]
        key: Option<Value>,
        #[serde(default, rename = "accountId")]
        account_id: Option<String>,
    }
    let ids: Option<Ids> = serde_json::from_str(raw.get()).ok();
    let key = ids
        .as_ref()
        .and_then(|i| i.key.as_ref())
        .and_then(Value::as_str)
        .map(str::to_owned);
    let id = ids.as_ref().and_then(|i| {
        i.account_id.clone().or_else(|| {
            i.id.as_ref().map(|id| match id {
                FlexId::Number(n) => n.to_string(),
                FlexId::Text(t) => t.clone(),
            })
        })
    });
    let id = id
        .or_else(|| key.clone())
        .unwrap_or_else(|| format!("digest:{:016x}", fnv64(raw.get().as_bytes())));
    (id, key)
}

/// FNV-1a, 64 bits: a stable digest of a record without an id.
fn fnv64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
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

    fn raw(text: &str) -> RawRecord {
        RawValue::from_string(text.to_owned()).expect("JSON")
    }

    #[test]
    fn a_head_keeps_the_asked_keys_and_fields_and_nothing_else() {
        let text = r#"{"id":"7","key":"OPS-7","self":"x","expand":"a",
            "fields":{"summary":"s","updated":"2026-01-01T00:00:00.000+0000",
                      "description":{"type":"doc","content":[[[[1]]]]},"customfield_1":[1,2]},
            "changelog":{"histories":[]}}"#;
        let head = head_of(&raw(text), &["id", "key"], &["summary", "updated"]).expect("reads");
        assert_eq!(
            head,
            json!({"id": "7", "key": "OPS-7",
                   "fields": {"summary": "s", "updated": "2026-01-01T00:00:00.000+0000"}})
        );
        // `fields: null` reads as null; a record that is not an object, or not JSON, does not
        // read at all.
        let null = head_of(&raw(r#"{"id":"1","fields":null}"#), &["id"], &["x"]).expect("reads");
        assert_eq!(null, json!({"id": "1", "fields": null}));
        assert!(head_of(&raw("[1,2]"), &["id"], &[]).is_err());
    }

    #[test]
    fn a_head_of_a_record_too_deep_is_refused_like_the_whole_record() {
        let deep = format!(
            r#"{{"id":"1","fields":{{"custom":{}1{}}}}}"#,
            "[".repeat(MAX_DEPTH + 5),
            "]".repeat(MAX_DEPTH + 5)
        );
        let error = head_of(&raw(&deep), &["id"], &["summary"]).expect_err("too deep");
        assert!(error.contains("levels deep"), "{error}");
        // Deeper than serde_json's own limit (128) yet within ours: skipped without failing.
        let nested = format!(
            r#"{{"id":"1","fields":{{"custom":{}1{}}}}}"#,
            "[".repeat(300),
            "]".repeat(300)
        );
        assert_eq!(
            head_of(&raw(&nested), &["id"], &["summary"]).expect("reads"),
            json!({"id": "1", "fields": {}})
        );
    }

    #[test]
    fn excerpts_never_cut_inside_a_character() {
        let text = "é".repeat(100);
        let cut = excerpt(&text, 80);
        assert_eq!(cut.chars().count(), 81);
        assert!(cut.ends_with('…'));
        assert_eq!(excerpt("short", 80), "short");
        let r = Record::new("issue", &Value::Null, &[]);
        let long = Value::String("日本語".repeat(60));
        assert!(r.wrong("f", "a number", &long).to_string().contains('…'));
    }

    #[test]
    fn a_record_that_cannot_be_read_is_set_aside_and_the_others_are_read() {
        let deep = format!(
            r#"{{"id":"3","key":"X-3","f":{}{}}}"#,
            "[".repeat(2000),
            "]".repeat(2000)
        );
        let records = vec![
            raw(r#"{"id":"1","n":1}"#),
            raw(r#"{"id":"2","key":"X-2","n":"one"}"#),
            raw(&deep),
            raw(r#"{"accountId":"5b10","n":[4]}"#),
            raw(r#"{"n":"five"}"#),
            raw(&format!(
                r#"{{"id":"6","n":6,"a":{}{}}}"#,
                "[".repeat(150),
                "]".repeat(150)
            )),
        ];
        let read = read_records("things", "thing", records, |v| {
            Record::new("thing", &v, &["id"]).req_id("n")
        });
        assert_eq!(read.rows, vec![1, 6]);
        let ids: Vec<&str> = read
            .set_aside
            .iter()
            .map(|s| s.record_id.as_str())
            .collect();
        assert_eq!(ids[..3], ["2", "3", "5b10"]);
        assert!(ids[3].starts_with("digest:"), "{ids:?}");
        assert_eq!(read.set_aside[0].record_key.as_deref(), Some("X-2"));
        assert!(
            read.set_aside[1].error.contains("2001 levels"),
            "{}",
            read.set_aside[1].error
        );
        assert!(read.set_aside[2].error.contains("should be a numeric id"));
        assert_eq!(
            read.set_aside[0].raw_text,
            r#"{"id":"2","key":"X-2","n":"one"}"#
        );
    }

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
