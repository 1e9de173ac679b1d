//! The SQL of the records that belong to issues (change histories, comments, worklogs, links):
//! which issues' records are complete (`jira.issue_child_sync`), which records an issue no
//! longer lists (marked deleted), and the records of deleted issues.
//!
//! An issue's records of one kind are *synced* at the issue's `updated` when the whole list was
//! read at that version; an issue whose `updated` moved past it is *behind*, and so is one whose
//! list was seen incomplete (an embedded list Jira truncated: `synced_updated` is null) or never
//! read at all (no row). The issue row and its marks commit in the same transaction, so a crash
//! leaves an issue behind, never wrongly complete.

use super::table::Table;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};

/// A table of records of issues, and its columns that name an issue (a link names two).
#[derive(Debug)]
pub struct ChildTable {
    pub table: &'static Table,
    pub issue_columns: &'static [&'static str],
}

/// The records of `table` of some issues that their complete lists no longer name: marked
/// deleted. Only where the issue row holds the very version the lists were read from, so a
/// page older than the stored issue never deletes a record added since.
#[derive(Debug)]
pub struct Prune {
    pub child: &'static ChildTable,
    /// The issues whose lists were read whole, with the `updated` they were read at.
    pub issues: Vec<(i64, DateTime<Utc>)>,
    /// Every record those lists name.
    pub keep: Vec<i64>,
}

/// An issue's records of `child` were read at `updated`: whole (`complete`), or only in part
/// (a truncated embedded list: the issue stays behind until its endpoint is read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Synced {
    pub child: &'static str,
    pub issue_id: i64,
    pub updated: DateTime<Utc>,
    pub complete: bool,
}

/// Marks the pruned records deleted; returns how many.
pub(super) async fn prune(
    conn: &mut sqlx::PgConnection,
    site: &str,
    prune: &Prune,
) -> sqlx::Result<u64> {
    if prune.issues.is_empty() {
        return Ok(0);
    }
    let table = prune.child.table;
    let names_issue = prune
        .child
        .issue_columns
        .iter()
        .map(|c| format!("t.{c} = v.issue_id"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let sql = format!(
        "UPDATE {} t SET deleted_at = now() \
         FROM UNNEST($2::int8[], $3::timestamptz[]) AS v(issue_id, updated) \
         JOIN jira.issues i ON i.site = $1 AND i.id = v.issue_id AND i.updated = v.updated \
         WHERE t.site = $1 AND ({names_issue}) AND t.deleted_at IS NULL \
         AND NOT (t.id = ANY($4::int8[]))",
        table.name
    );
    let (ids, updated): (Vec<i64>, Vec<DateTime<Utc>>) = prune.issues.iter().copied().unzip();
    let result = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(site)
        .bind(&ids)
        .bind(&updated)
        .bind(&prune.keep)
        .execute(&mut *conn)
        .await?;
    Ok(result.rows_affected())
}

/// Records which issues' lists were read, and at which version. A complete read never moves
/// an issue's mark back; an incomplete one leaves the mark it had (or none).
pub(super) async fn mark_synced(
    conn: &mut sqlx::PgConnection,
    site: &str,
    marks: &[Synced],
) -> sqlx::Result<()> {
    if marks.is_empty() {
        return Ok(());
    }
    // One row per (child, issue) and statement: the newest complete read wins. In key order,
    // as every batch is written: transactions wait for each other, never deadlock.
    let mut newest: BTreeMap<(&str, i64), Option<DateTime<Utc>>> = BTreeMap::new();
    for mark in marks {
        let at = mark.complete.then_some(mark.updated);
        let entry = newest.entry((mark.child, mark.issue_id)).or_insert(at);
        *entry = (*entry).max(at);
    }
    let mut children = Vec::with_capacity(newest.len());
    let mut issues = Vec::with_capacity(newest.len());
    let mut updated = Vec::with_capacity(newest.len());
    for ((child, issue), at) in newest {
        children.push(child.to_owned());
        issues.push(issue);
        updated.push(at);
    }
    sqlx::query(
        "INSERT INTO jira.issue_child_sync AS s (site, child, issue_id, synced_updated) \
         SELECT $1, u.child, u.issue_id, u.updated \
         FROM UNNEST($2::text[], $3::int8[], $4::timestamptz[]) AS u(child, issue_id, updated) \
         ON CONFLICT (site, child, issue_id) DO UPDATE \
         SET synced_updated = GREATEST(s.synced_updated, excluded.synced_updated)",
    )
    .bind(site)
    .bind(&children)
    .bind(&issues)
    .bind(&updated)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Which issues a page of catch-up work takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behind {
    /// Issues whose records of the child were never read (no mark at all).
    NeverRead,
    /// Issues whose records are not complete at their current `updated`, never read included.
    NotCurrent,
}

impl Behind {
    pub(super) fn condition(self) -> &'static str {
        match self {
            Behind::NeverRead => "s.issue_id IS NULL",
            Behind::NotCurrent => {
                "(s.issue_id IS NULL OR s.synced_updated IS NULL OR s.synced_updated < i.updated)"
            }
        }
    }

    /// Whether an issue at `updated` whose mark is `mark` (`None`: no mark; `Some(None)`: read,
    /// never whole) is behind.
    fn holds(self, updated: DateTime<Utc>, mark: Option<Option<DateTime<Utc>>>) -> bool {
        match (self, mark) {
            (_, None) => true,
            (Behind::NeverRead, Some(_)) => false,
            (Behind::NotCurrent, Some(at)) => at.is_none_or(|at| at < updated),
        }
    }
}

/// Issues read a chunk at a time by [`super::Store::issues_behind`].
const BEHIND_CHUNK: i64 = 5_000;

impl super::Store {
    /// Up to `limit` live issues of `site` with ids above `after` whose records of `child` are
    /// behind as `which` says, ascending by id, with their `updated`.
    ///
    /// Two range reads on primary keys a chunk of issues at a time, compared here, rather than
    /// one anti-join: right after a full sync has rewritten the marks, the planner's statistics
    /// still say the marks table is empty, and its nested-loop plan for the join took most of a
    /// minute on 20,000 issues.
    pub async fn issues_behind(
        &self,
        site: &str,
        child: &str,
        which: Behind,
        after: i64,
        limit: usize,
    ) -> anyhow::Result<Vec<(i64, DateTime<Utc>)>> {
        let mut behind = Vec::new();
        let mut after = after;
        while behind.len() < limit {
            let issues: Vec<(i64, DateTime<Utc>)> = self
                .bounded(async {
                    Ok(sqlx::query_as(
                        "SELECT id, updated FROM jira.issues \
                         WHERE site = $1 AND id > $2 AND deleted_at IS NULL \
                         ORDER BY id LIMIT $3",
                    )
                    .bind(site)
                    .bind(after)
                    .bind(BEHIND_CHUNK)
                    .fetch_all(self.pool())
                    .await?)
                })
                .await?;
            let (Some(&(first, _)), Some(&(last, _))) = (issues.first(), issues.last()) else {
                break;
            };
            let marks: HashMap<i64, Option<DateTime<Utc>>> = self
                .bounded(async {
                    let rows: Vec<(i64, Option<DateTime<Utc>>)> = sqlx::query_as(
                        "SELECT issue_id, synced_updated FROM jira.issue_child_sync \
                         WHERE site = $1 AND child = $2 AND issue_id BETWEEN $3 AND $4",
                    )
                    .bind(site)
                    .bind(child)
                    .bind(first)
                    .bind(last)
                    .fetch_all(self.pool())
                    .await?;
                    Ok(rows.into_iter().collect())
                })
                .await?;
            let full = issues.len() as i64 == BEHIND_CHUNK;
            behind.extend(
                issues
                    .into_iter()
                    .filter(|(id, updated)| which.holds(*updated, marks.get(id).copied()))
                    .take(limit - behind.len()),
            );
            if !full {
                break;
            }
            after = last;
        }
        Ok(behind)
    }

    /// Refreshes the planner's statistics of the marks (best effort: a role that does not own
    /// the table may not; the reads still work, only slower).
    pub async fn analyze_child_marks(&self) {
        let analyzed = self
            .bounded(async {
                sqlx::query("ANALYZE jira.issue_child_sync")
                    .execute(self.pool())
                    .await?;
                Ok(())
            })
            .await;
        if let Err(err) = analyzed {
            tracing::debug!(error = %err, "could not analyze jira.issue_child_sync");
        }
    }

    /// Forgets which issues' records were read, so that the next catch-up reads them all again
    /// (a full sync rebuilds them).
    pub async fn forget_child_marks(&self, site: &str) -> anyhow::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM jira.issue_child_sync WHERE site = $1")
            .bind(site)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Marks issues deleted (`table`: the issues table) together with their records in
    /// `children`, in one transaction, and forgets their marks (an issue that reappears has
    /// its records read anew). Returns how many issues were marked.
    pub async fn mark_issues_deleted(
        &self,
        table: &'static Table,
        site: &str,
        ids: &[i64],
        children: &[&'static ChildTable],
    ) -> anyhow::Result<u64> {
        let mut tx = self.begin_write().await?;
        let marked = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {} SET deleted_at = now() \
             WHERE site = $1 AND id = ANY($2::int8[]) AND deleted_at IS NULL",
            table.name
        )))
        .bind(site)
        .bind(ids)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        for child in children {
            let names_issue = child
                .issue_columns
                .iter()
                .map(|c| format!("{c} = ANY($2::int8[])"))
                .collect::<Vec<_>>()
                .join(" OR ");
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE {} SET deleted_at = now() \
                 WHERE site = $1 AND ({names_issue}) AND deleted_at IS NULL",
                child.table.name
            )))
            .bind(site)
            .bind(ids)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM jira.issue_child_sync WHERE site = $1 AND issue_id = ANY($2)")
            .bind(site)
            .bind(ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(marked)
    }

    /// The stored `updated` of the records of `table` among `ids` (records without one are
    /// left out).
    pub async fn child_versions(
        &self,
        table: &'static Table,
        site: &str,
        ids: &[i64],
    ) -> anyhow::Result<HashMap<i64, DateTime<Utc>>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!(
            "SELECT id, updated FROM {} WHERE site = $1 AND id = ANY($2::int8[]) \
             AND updated IS NOT NULL",
            table.name
        );
        let found: Vec<(i64, DateTime<Utc>)> = self
            .bounded(async {
                Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(site)
                    .bind(ids)
                    .fetch_all(self.pool())
                    .await?)
            })
            .await?;
        Ok(found.into_iter().collect())
    }

    /// Which of `ids` are live issues of `site`.
    pub async fn live_issue_ids(
        &self,
        site: &str,
        ids: &[i64],
    ) -> anyhow::Result<std::collections::HashSet<i64>> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let found: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM jira.issues WHERE site = $1 AND id = ANY($2::int8[]) \
             AND deleted_at IS NULL",
        )
        .bind(site)
        .bind(ids)
        .fetch_all(self.pool())
        .await?;
        Ok(found.into_iter().collect())
    }
}
