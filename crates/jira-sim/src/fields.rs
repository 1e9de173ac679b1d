//! Issue fields: the catalog behind `/field`, `names` and `schema`, and `fields=` selection.

use serde_json::{Value, json};

/// One field of the catalog: id, display name, schema type, items type, custom type.
pub(crate) struct FieldDef {
    pub id: &'static str,
    pub name: &'static str,
    pub kind: &'static str,
    pub items: Option<&'static str>,
    pub custom: Option<&'static str>,
}

const fn system(
    id: &'static str,
    name: &'static str,
    kind: &'static str,
    items: Option<&'static str>,
) -> FieldDef {
    FieldDef {
        id,
        name,
        kind,
        items,
        custom: None,
    }
}

const fn custom(
    id: &'static str,
    name: &'static str,
    kind: &'static str,
    items: Option<&'static str>,
    custom: &'static str,
) -> FieldDef {
    FieldDef {
        id,
        name,
        kind,
        items,
        custom: Some(custom),
    }
}

const CF: &str = "com.atlassian.jira.plugin.system.customfieldtypes:";

/// Every field an issue renders, in the order they are emitted.
pub(crate) const FIELDS: [FieldDef; 36] = [
    system("summary", "Summary", "string", None),
    system("issuetype", "Issue Type", "issuetype", None),
    system("project", "Project", "project", None),
    system("status", "Status", "status", None),
    system("priority", "Priority", "priority", None),
    system("resolution", "Resolution", "resolution", None),
    system("resolutiondate", "Resolved", "datetime", None),
    system("assignee", "Assignee", "user", None),
    system("reporter", "Reporter", "user", None),
    system("creator", "Creator", "user", None),
    system("created", "Created", "datetime", None),
    system("updated", "Updated", "datetime", None),
    system("duedate", "Due date", "date", None),
    system("labels", "Labels", "array", Some("string")),
    system("components", "Components", "array", Some("component")),
    system("fixVersions", "Fix versions", "array", Some("version")),
    system("parent", "Parent", "issuelink", None),
    system("issuelinks", "Linked Issues", "array", Some("issuelinks")),
    system("comment", "Comment", "comments-page", None),
    system("worklog", "Log Work", "array", Some("worklog")),
    system("description", "Description", "string", None),
    system("environment", "Environment", "string", None),
    custom(
        "customfield_10010",
        "Team code",
        "string",
        None,
        "textfield",
    ),
    custom(
        "customfield_10011",
        "Acceptance criteria",
        "string",
        None,
        "textarea",
    ),
    custom(
        "customfield_10012",
        "Cost estimate",
        "number",
        None,
        "float",
    ),
    custom(
        "customfield_10013",
        "Target start",
        "date",
        None,
        "datepicker",
    ),
    custom(
        "customfield_10014",
        "Deployed at",
        "datetime",
        None,
        "datetime",
    ),
    custom("customfield_10015", "Severity", "option", None, "select"),
    custom(
        "customfield_10016",
        "Platforms",
        "array",
        Some("option"),
        "multiselect",
    ),
    custom(
        "customfield_10017",
        "Region",
        "option-with-child",
        None,
        "cascadingselect",
    ),
    custom("customfield_10018", "Reviewer", "user", None, "userpicker"),
    custom(
        "customfield_10019",
        "Stakeholders",
        "array",
        Some("user"),
        "multiuserpicker",
    ),
    custom(
        "customfield_10020",
        "Sprint",
        "array",
        Some("json"),
        "com.pyxis.greenhopper.jira:gh-sprint",
    ),
    custom(
        "customfield_10021",
        "Tags",
        "array",
        Some("string"),
        "labels",
    ),
    custom("customfield_10022", "Runbook", "string", None, "url"),
    custom(
        "customfield_10023",
        "Story point estimate",
        "number",
        None,
        "com.pyxis.greenhopper.jira:jsw-story-points",
    ),
];

impl FieldDef {
    fn custom_type(&self) -> Option<String> {
        self.custom.map(|c| {
            if c.contains(':') {
                c.to_owned()
            } else {
                format!("{CF}{c}")
            }
        })
    }

    fn custom_id(&self) -> Option<i64> {
        self.id
            .strip_prefix("customfield_")
            .and_then(|n| n.parse().ok())
    }

    pub fn schema(&self) -> Value {
        let mut schema = json!({ "type": self.kind });
        if let Some(items) = self.items {
            schema["items"] = json!(items);
        }
        match (self.custom_type(), self.custom_id()) {
            (Some(custom), Some(id)) => {
                schema["custom"] = json!(custom);
                schema["customId"] = json!(id);
            }
            _ => schema["system"] = json!(self.id),
        }
        schema
    }

    /// The `/rest/api/3/field` entry.
    pub fn details(&self) -> Value {
        let clause = match self.custom_id() {
            Some(id) => vec![format!("cf[{id}]"), self.name.to_owned()],
            None => vec![self.id.to_owned()],
        };
        json!({
            "id": self.id,
            "key": self.id,
            "name": self.name,
            "custom": self.custom.is_some(),
            "orderable": true,
            "navigable": true,
            "searchable": true,
            "clauseNames": clause,
            "schema": self.schema(),
        })
    }
}

/// Which fields a request asked for: a base (none, or all) plus explicit inclusions and `-x`
/// exclusions, as Jira's `fields` parameter works.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldSel {
    all: bool,
    include: Vec<String>,
    exclude: Vec<String>,
}

impl FieldSel {
    /// Parses `fields` values (each may be a comma list). `default` applies when none is given.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>, default: &str) -> FieldSel {
        let mut items: Vec<String> = values
            .into_iter()
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect();
        if items.is_empty() {
            items.push(default.to_owned());
        }
        let mut sel = FieldSel {
            all: false,
            include: Vec::new(),
            exclude: Vec::new(),
        };
        for item in items {
            if item == "*all" || item == "*navigable" {
                sel.all = true;
            } else if let Some(excluded) = item.strip_prefix('-') {
                sel.exclude.push(excluded.to_owned());
            } else {
                sel.include.push(item);
            }
        }
        // Exclusions alone mean "everything but these".
        if sel.include.is_empty() && !sel.exclude.is_empty() {
            sel.all = true;
        }
        sel
    }

    pub fn wants(&self, field: &str) -> bool {
        (self.all || self.include.iter().any(|f| f == field))
            && !self.exclude.iter().any(|f| f == field)
    }

    /// True when nothing beyond `id` and `key` is requested: only then may search pages grow
    /// to 5000 issues. Atlassian documents the 5000 for those alone; with any other field the
    /// cap is undocumented and commonly 100, and the simulator takes that cautious reading.
    pub fn is_narrow(&self) -> bool {
        !self.all
            && self
                .include
                .iter()
                .all(|f| matches!(f.as_str(), "id" | "key"))
    }

    /// True when nothing beyond `id`, `key` and `updated` is requested: a listing rather than
    /// a read of issues (Data Center serves such pages up to 1000).
    pub fn is_listing(&self) -> bool {
        !self.all
            && self
                .include
                .iter()
                .all(|f| matches!(f.as_str(), "id" | "key" | "updated"))
    }

    /// True when the issue should render as a bare `{"id": ...}`.
    pub fn id_only(&self) -> bool {
        !self.all && self.include.iter().all(|f| f == "id")
    }
}

/// The kinds of the heavy profile's extra custom fields, in turn: (schema type, items, custom
/// type, display name). None takes options, so no field context or option listing grows.
const HEAVY_KINDS: [(&str, Option<&str>, &str, &str); 10] = [
    ("string", None, "textfield", "Reference"),
    ("string", None, "textarea", "Notes"),
    ("number", None, "float", "Measure"),
    ("datetime", None, "datetime", "Checkpoint"),
    ("user", None, "userpicker", "Contact"),
    ("string", None, "url", "Link"),
    ("array", Some("string"), "labels", "Keywords"),
    ("date", None, "datepicker", "Milestone"),
    ("array", Some("user"), "multiuserpicker", "Watchers group"),
    ("string", None, "textarea", "Analysis"),
];

/// Extra custom fields of the heavy profile: `customfield_10100` onwards.
pub(crate) const HEAVY_FIELD_COUNT: usize = 30;

/// The heavy profile's extra custom fields ([`HEAVY_KINDS`] in turn, numbered by round).
static HEAVY_FIELDS: std::sync::LazyLock<Vec<FieldDef>> = std::sync::LazyLock::new(|| {
    (0..HEAVY_FIELD_COUNT)
        .map(|i| {
            let (kind, items, custom, name) = HEAVY_KINDS[i % HEAVY_KINDS.len()];
            let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
            FieldDef {
                id: leak(format!("customfield_{}", 10_100 + i)),
                name: leak(format!("{name} {}", i / HEAVY_KINDS.len() + 1)),
                kind,
                items,
                custom: Some(custom),
            }
        })
        .collect()
});

/// Every field of a site: [`FIELDS`], and on a heavy site its extra custom fields.
pub(crate) fn all_fields(heavy: bool) -> impl Iterator<Item = &'static FieldDef> {
    let extra: &'static [FieldDef] = if heavy { &HEAVY_FIELDS } else { &[] };
    FIELDS.iter().chain(extra.iter())
}

/// The custom type (without the plugin prefix) of a heavy field, if `id` is one.
pub(crate) fn heavy_kind(id: &str) -> Option<&'static str> {
    let n: usize = id.strip_prefix("customfield_")?.parse().ok()?;
    let i = n.checked_sub(10_100).filter(|i| *i < HEAVY_FIELD_COUNT)?;
    Some(HEAVY_KINDS[i % HEAVY_KINDS.len()].2)
}

/// The `names` and `schema` maps of an expanded search page.
pub(crate) fn names_and_schema(heavy: bool) -> (Value, Value) {
    let mut names = serde_json::Map::new();
    let mut schema = serde_json::Map::new();
    for field in all_fields(heavy) {
        names.insert(field.id.to_owned(), json!(field.name));
        schema.insert(field.id.to_owned(), field.schema());
    }
    (Value::Object(names), Value::Object(schema))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_selection_follows_jira_rules() {
        let default = FieldSel::parse([], "id");
        assert!(default.id_only() && default.is_narrow());
        let narrow = FieldSel::parse(["key", "id"], "id");
        assert!(
            narrow.is_narrow()
                && !narrow.id_only()
                && narrow.wants("key")
                && !narrow.wants("summary")
        );
        // Any field beyond id and key caps the page at 100, `updated` included.
        let dated = FieldSel::parse(["key,updated"], "id");
        assert!(!dated.is_narrow() && dated.wants("updated"));
        let all = FieldSel::parse(["*all,-description"], "id");
        assert!(!all.is_narrow() && all.wants("summary") && !all.wants("description"));
        let excluded = FieldSel::parse(["-labels"], "id");
        assert!(excluded.wants("status") && !excluded.wants("labels"));
        let wide = FieldSel::parse(["key", "status"], "id");
        assert!(!wide.is_narrow());
    }

    #[test]
    fn custom_fields_carry_their_custom_type_in_the_schema() {
        let sprint = FIELDS
            .iter()
            .find(|f| f.name == "Sprint")
            .expect("sprint field");
        assert_eq!(
            sprint.schema()["custom"],
            "com.pyxis.greenhopper.jira:gh-sprint"
        );
        assert_eq!(sprint.schema()["customId"], 10020);
        assert_eq!(FIELDS[0].schema()["system"], "summary");
    }
}
