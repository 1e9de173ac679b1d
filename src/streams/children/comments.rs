//! Comments (`jira.comments`). Issue pages embed the first comments with the total
//! (`fields.comment`); an issue whose embedded list is whole is written and diffed from its
//! page, one whose list Jira truncated is read after the scans from
//! `GET /rest/api/3/issue/{id}/comment`. Jira has no feed of changed or deleted comments, but
//! adding, editing or deleting one moves the issue's `updated`: the issue is read again, and a
//! comment its whole list no longer holds is marked deleted.

use super::{
    ChildRun, IssueChild, StreamContext, adf, catch_up_per_issue, embedded, issue_version,
    mark_embedded, raw_text, read_into, read_list,
};
use crate::jira::Flavor;
use crate::store::children::ChildTable;
use crate::store::table::{Kind, Owner, RawJson, Table, col};
use crate::store::{Batch, Cell, PageWrite, Row};
use crate::streams::RunCounters;
use crate::streams::parse::{ParseError, Record};
use chrono::{DateTime, Utc};
use serde_json::Value;

pub static TABLE: Table = Table {
    name: "jira.comments",
    owner: Owner::Site,
    key: &["id"],
    columns: &[
        col("id", Kind::Int8),
        col("issue_id", Kind::Int8),
        col("author_account_id", Kind::Text),
        col("update_author_account_id", Kind::Text),
        col("created", Kind::Timestamptz),
        col("updated", Kind::Timestamptz),
        col("body_text", Kind::Text),
        col("body", Kind::Jsonb),
        col("visibility", Kind::Jsonb),
        col("jsd_public", Kind::Bool),
        col("raw", Kind::Jsonb),
    ],
    version: Some("updated"),
    soft_delete: true,
};

static CHILD: ChildTable = ChildTable {
    table: &TABLE,
    issue_columns: &["issue_id"],
};

const NAME: &str = "comments";
/// Comments a page of the comment endpoint holds at most.
const PAGE_SIZE: usize = 100;

/// A row of `jira.comments`.
#[derive(Debug, Clone, PartialEq)]
pub struct CommentRow {
    pub id: i64,
    pub issue_id: i64,
    pub author_account_id: Option<String>,
    pub update_author_account_id: Option<String>,
    pub created: Option<DateTime<Utc>>,
    pub updated: Option<DateTime<Utc>>,
    pub body_text: Option<String>,
    pub body: Option<Value>,
    pub visibility: Option<Value>,
    pub jsd_public: Option<bool>,
    /// The record, written back as text: a decoded copy would take several times the room.
    pub raw: RawJson,
}

impl Row for CommentRow {
    fn table() -> &'static Table {
        &TABLE
    }

    fn into_cells(self) -> Vec<Cell> {
        vec![
            self.id.into(),
            self.issue_id.into(),
            self.author_account_id.into(),
            self.update_author_account_id.into(),
            self.created.into(),
            self.updated.into(),
            self.body_text.into(),
            self.body.into(),
            self.visibility.into(),
            self.jsd_public.into(),
            Cell::RawJson(self.raw),
        ]
    }
}

/// Reads one comment of issue `issue_id`.
pub fn parse_comment(value: &Value, issue_id: i64) -> Result<CommentRow, ParseError> {
    let r = Record::new("comment", value, &["id"]);
    let body = r.opt_json("body");
    Ok(CommentRow {
        id: r.req_id("id")?,
        issue_id,
        author_account_id: r.opt_user_id("author")?,
        update_author_account_id: r.opt_user_id("updateAuthor")?,
        created: r.opt_ts("created")?,
        updated: r.opt_ts("updated")?,
        body_text: body.as_ref().map(adf::to_text),
        body,
        visibility: r.opt_json("visibility"),
        jsd_public: r.opt_bool("jsdPublic")?,
        raw: raw_text(value),
    })
}

/// The comments child.
pub struct Comments;

#[async_trait::async_trait]
impl IssueChild for Comments {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [ChildTable] {
        std::slice::from_ref(&CHILD)
    }

    fn embedded_in(&self) -> &'static [&'static str] {
        &["comment"]
    }

    fn unavailable(&self, flavor: Flavor) -> Option<&'static str> {
        (flavor == Flavor::DataCenter).then_some("not read from Data Center sites yet")
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
            let Some((comments, whole)) = embedded(issue, "comment", "comments") else {
                continue;
            };
            let (ids, all_read) = read_into(NAME, comments, &mut batch, page, |comment| {
                parse_comment(comment, version.0)
            });
            mark_embedded(page, &CHILD, NAME, version, ids, whole && all_read);
        }
        page.batches.push(batch);
        Ok(())
    }

    async fn catch_up(&self, ctx: &StreamContext, run: &ChildRun<'_>) -> anyhow::Result<()> {
        let counters = run.run.counters;
        let order = [("orderBy", "created".to_owned())];
        catch_up_per_issue(
            ctx,
            run,
            &CHILD,
            NAME,
            |id| {
                let path = format!("/rest/api/3/issue/{id}/comment");
                let order = &order;
                async move { read_list(ctx, counters, &path, "comments", PAGE_SIZE, order).await }
            },
            |issue_id, list, batch, page| {
                read_into(NAME, list, batch, page, |c| parse_comment(c, issue_id))
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_comment_keeps_its_adf_body_and_its_text() {
        let value = json!({
            "self": "https://x.atlassian.net/rest/api/3/issue/10007/comment/10042",
            "id": "10042",
            "author": {"accountId": "5b10ac8d82e05b22cc7d4ef5"},
            "updateAuthor": {"accountId": "5b10ac8d82e05b22cc7d4ef6"},
            "body": {"type": "doc", "version": 1, "content": [
                {"type": "paragraph", "content": [{"type": "text", "text": "Looks good"}]}]},
            "created": "2025-03-04T10:15:27.120+0100",
            "updated": "2025-03-04T11:15:27.120+0100",
            "jsdPublic": true,
            "visibility": {"type": "role", "value": "Developers"}
        });
        let row = parse_comment(&value, 10007).expect("reads");
        assert_eq!(row.id, 10042);
        assert_eq!(row.body_text.as_deref(), Some("Looks good"));
        assert_eq!(
            row.update_author_account_id.as_deref(),
            Some("5b10ac8d82e05b22cc7d4ef6")
        );
        assert_eq!(
            row.visibility,
            Some(json!({"type": "role", "value": "Developers"}))
        );
    }
}
