//! Issue links (`jira.issue_links`), from every issue's `issuelinks` field, which Jira never
//! truncates. A link shows on both of its issues; its row names the issue whose view says the
//! link type's *outward* description of the other ("A blocks B": `issue_id` A,
//! `related_issue_id` B). A link an issue no longer lists was removed: marked deleted.

use super::{IssueChild, StreamContext, issue_version, mark_embedded, read_into};
use crate::jira::Flavor;
use crate::store::children::ChildTable;
use crate::store::table::{Kind, Owner, Table, col};
use crate::store::{Batch, Cell, PageWrite, Row};
use crate::streams::RunCounters;
use crate::streams::parse::{ParseError, Record};
use serde_json::{Value, json};

pub static TABLE: Table = Table {
    name: "jira.issue_links",
    owner: Owner::Site,
    key: &["id"],
    columns: &[
        col("id", Kind::Int8),
        col("issue_id", Kind::Int8),
        col("related_issue_id", Kind::Int8),
        col("link_type_id", Kind::Text),
        col("link_type_name", Kind::Text),
        col("outward", Kind::Text),
        col("inward", Kind::Text),
        col("raw", Kind::Jsonb),
    ],
    version: None,
    soft_delete: true,
};

static CHILD: ChildTable = ChildTable {
    table: &TABLE,
    issue_columns: &["issue_id", "related_issue_id"],
};

const NAME: &str = "issue_links";

/// A row of `jira.issue_links`.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkRow {
    pub id: i64,
    pub issue_id: i64,
    pub related_issue_id: i64,
    pub link_type_id: Option<String>,
    pub link_type_name: Option<String>,
    pub outward: Option<String>,
    pub inward: Option<String>,
    pub raw: Value,
}

impl Row for LinkRow {
    fn table() -> &'static Table {
        &TABLE
    }

    fn into_cells(self) -> Vec<Cell> {
        vec![
            self.id.into(),
            self.issue_id.into(),
            self.related_issue_id.into(),
            self.link_type_id.into(),
            self.link_type_name.into(),
            self.outward.into(),
            self.inward.into(),
            self.raw.into(),
        ]
    }
}

/// Reads one entry of issue `issue_id`'s `issuelinks`. The row is the same from either side:
/// `raw` keeps the link's id, its type and the two issues by id and key, not the other issue's
/// summary and status that the entry embeds (they change without the link changing).
pub fn parse_link(value: &Value, issue_id: i64) -> Result<LinkRow, ParseError> {
    let r = Record::new("issue link", value, &["id"]);
    let id = r.req_id("id")?;
    let (issue_id, related_issue_id) =
        match (r.opt_id("outwardIssue.id")?, r.opt_id("inwardIssue.id")?) {
            // This issue's view says "outward" of the other: this issue is the outward side.
            (Some(other), _) => (issue_id, other),
            (None, Some(other)) => (other, issue_id),
            (None, None) => return Err(r.wrong("outwardIssue", "an issue", value)),
        };
    let raw = json!({
        "id": id.to_string(),
        "type": value.get("type").cloned().unwrap_or(Value::Null),
        "issueId": issue_id.to_string(),
        "relatedIssueId": related_issue_id.to_string(),
    });
    Ok(LinkRow {
        id,
        issue_id,
        related_issue_id,
        link_type_id: r.opt_str("type.id")?,
        link_type_name: r.opt_str("type.name")?,
        outward: r.opt_str("type.outward")?,
        inward: r.opt_str("type.inward")?,
        raw,
    })
}

/// The issue links child.
pub struct IssueLinks;

#[async_trait::async_trait]
impl IssueChild for IssueLinks {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [ChildTable] {
        std::slice::from_ref(&CHILD)
    }

    fn embedded_in(&self) -> &'static [&'static str] {
        &["issuelinks"]
    }

    fn unavailable(&self, _flavor: Flavor) -> Option<&'static str> {
        None
    }

    async fn collect(
        &self,
        ctx: &StreamContext,
        _counters: &RunCounters,
        issues: &[Value],
        page: &mut PageWrite,
    ) -> anyhow::Result<()> {
        let mut batch = Batch::new(&TABLE, &ctx.site);
        for issue in issues {
            let Some(version) = issue_version(issue) else {
                continue;
            };
            let Some(links) = issue["fields"].get("issuelinks").and_then(Value::as_array) else {
                continue;
            };
            let (ids, all_read) = read_into(NAME, links, &mut batch, page, |link| {
                parse_link(link, version.0)
            });
            mark_embedded(page, &CHILD, NAME, version, ids, all_read);
        }
        page.batches.push(batch);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_is_the_same_row_from_either_of_its_issues() {
        let from_a = json!({"id": "10001", "type": {"id": "10000", "name": "Blocks",
            "inward": "is blocked by", "outward": "blocks"},
            "outwardIssue": {"id": "20", "key": "OPS-2", "fields": {"summary": "b"}}});
        let from_b = json!({"id": "10001", "type": {"id": "10000", "name": "Blocks",
            "inward": "is blocked by", "outward": "blocks"},
            "inwardIssue": {"id": "10", "key": "OPS-1", "fields": {"summary": "a"}}});
        let a = parse_link(&from_a, 10).expect("from A");
        let b = parse_link(&from_b, 20).expect("from B");
        assert_eq!(a, b);
        assert_eq!((a.issue_id, a.related_issue_id), (10, 20));
        assert_eq!(a.outward.as_deref(), Some("blocks"));
        let neither = json!({"id": "1", "type": {}});
        assert!(parse_link(&neither, 10).is_err());
    }
}
