//! The work on issues: change histories (changelogs), comments, worklogs and issue links, as the
//! site stores them, how they are generated and changed, and the endpoints that serve them.
//!
//! Jira's rules that a client must meet are kept: an issue embeds at most
//! [`EMBEDDED_COMMENTS`] comments and [`EMBEDDED_WORKLOGS`] worklogs with the `total` (the rest
//! only through the per-issue endpoints); `POST /changelog/bulkfetch` takes at most 1,000 issues
//! and pages by histories (one issue's histories may span pages), with `created` as epoch
//! milliseconds; the worklog feeds (`/worklog/updated`, `/worklog/deleted`) page by 1,000 and
//! leave out the last minute; adding, editing or deleting a comment or a worklog, and adding or
//! removing a link, bumps the issue's `updated` (both issues' for a link), as Jira does.
//!
//! Every history is consistent with the issue: its status changes walk from the first status
//! to the current one, the last one at `updated`, so the time an issue spent in each status
//! can be computed from the histories and compared with [`Site::time_in_status`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Shared;
use super::catalog::{PRIORITIES, RESOLUTIONS, STATUSES};
use super::data::{AccountKind, Dice, Issue, mix64};
use super::render::Ctx;
use super::routes::{ApiError, Params, Reply, bad_request};
use super::site::Site;

/// The most comments an issue embeds (`fields.comment`); the rest only through its endpoint.
pub const EMBEDDED_COMMENTS: usize = 20;
/// The most worklogs an issue embeds (`fields.worklog`).
pub const EMBEDDED_WORKLOGS: usize = 20;
/// The most issues one `POST /changelog/bulkfetch` takes.
pub const BULK_CHANGELOG_ISSUES: usize = 1000;
/// Worklog feeds and `worklog/list`: items per page, ids per request.
pub const WORKLOG_PAGE: usize = 1000;

const FIRST_HISTORY_ID: i64 = 100_000;
const FIRST_COMMENT_ID: i64 = 10_000;
const FIRST_WORKLOG_ID: i64 = 10_000;
const FIRST_LINK_ID: i64 = 10_000;

/// Link types: (id, name, outward, inward).
pub(crate) const LINK_TYPES: [(&str, &str, &str, &str); 4] = [
    ("10000", "Blocks", "blocks", "is blocked by"),
    ("10001", "Cloners", "clones", "is cloned by"),
    ("10002", "Duplicate", "duplicates", "is duplicated by"),
    ("10003", "Relates", "relates to", "relates to"),
];

/// One change of one field in a history.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Change {
    Status {
        from: u8,
        to: u8,
    },
    Resolution {
        from: Option<u8>,
        to: Option<u8>,
    },
    Assignee {
        from: Option<u32>,
        to: Option<u32>,
    },
    Priority {
        from: Option<u8>,
        to: Option<u8>,
    },
    Summary {
        from: String,
        to: String,
    },
    Project {
        from: i64,
        to: i64,
        from_key: String,
        to_key: String,
    },
    TimeSpent {
        from: i64,
        to: i64,
        worklog: i64,
        added: bool,
    },
    Link {
        other_key: String,
        description: String,
        added: bool,
    },
    /// The whole label set before and after (Jira writes them space-separated).
    Labels {
        from: Vec<&'static str>,
        to: Vec<&'static str>,
    },
    /// The whole Sprint field before and after: (id, name).
    Sprint {
        from: Vec<(i64, String)>,
        to: Vec<(i64, String)>,
    },
    /// One component added (`to`) or removed (`from`): (id, name).
    Component {
        from: Option<(i64, &'static str)>,
        to: Option<(i64, &'static str)>,
    },
    /// One fix version added or removed: (id, name).
    FixVersion {
        from: Option<(i64, String)>,
        to: Option<(i64, String)>,
    },
}

/// The values issue `id`'s multi-valued fields took: per (field id, epoch ms), the whole set
/// from then on: at its creation (non-empty sets only), then after each change (empty sets
/// too). Fields: `labels`, `components`, `fixVersions` (ids) and the Sprint field
/// `customfield_10020` (sprint ids).
pub(crate) fn multi_history(
    site: &Site,
    id: i64,
) -> BTreeMap<(&'static str, i64), std::collections::BTreeSet<String>> {
    use std::collections::BTreeSet;
    let mut out = BTreeMap::new();
    let Some(issue) = site.issue(id) else {
        return out;
    };
    let histories = site.work.histories.get(&id).map_or(&[][..], Vec::as_slice);
    // As created: revision 0 in the project it was created in.
    let mut created = issue.clone();
    created.revision = 0;
    let first_move = histories
        .iter()
        .flat_map(|h| &h.items)
        .find_map(|c| match c {
            Change::Project { from, .. } => Some(*from),
            _ => None,
        });
    if let Some(index) = first_move.and_then(|from| site.projects.iter().position(|p| p.id == from))
    {
        created.project = index;
    }
    let ids = |list: Vec<i64>| -> BTreeSet<String> { list.iter().map(i64::to_string).collect() };
    let mut sets: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    sets.insert(
        "labels",
        super::custom::labels(&created)
            .into_iter()
            .map(str::to_owned)
            .collect(),
    );
    sets.insert(
        "customfield_10020",
        ids(super::custom::sprint_refs(site, &created)
            .iter()
            .map(|s| s.id)
            .collect()),
    );
    sets.insert(
        "components",
        ids(super::custom::components(&created)
            .iter()
            .map(|c| c.0)
            .collect()),
    );
    sets.insert(
        "fixVersions",
        ids(super::custom::fix_version(&created)
            .map(|v| v.0)
            .into_iter()
            .collect()),
    );
    for (field, set) in &sets {
        if !set.is_empty() {
            out.insert((*field, issue.created_ms), set.clone());
        }
    }
    for history in histories {
        let mut touched = BTreeSet::new();
        for change in &history.items {
            let (field, removed, added): (&'static str, Vec<String>, Vec<String>) = match change {
                Change::Labels { from, to } => (
                    "labels",
                    from.iter().map(|l| (*l).to_owned()).collect(),
                    to.iter().map(|l| (*l).to_owned()).collect(),
                ),
                Change::Sprint { from, to } => (
                    "customfield_10020",
                    from.iter().map(|s| s.0.to_string()).collect(),
                    to.iter().map(|s| s.0.to_string()).collect(),
                ),
                Change::Component { from, to } => (
                    "components",
                    from.iter().map(|c| c.0.to_string()).collect(),
                    to.iter().map(|c| c.0.to_string()).collect(),
                ),
                Change::FixVersion { from, to } => (
                    "fixVersions",
                    from.iter().map(|v| v.0.to_string()).collect(),
                    to.iter().map(|v| v.0.to_string()).collect(),
                ),
                _ => continue,
            };
            let set = sets.entry(field).or_default();
            for value in removed {
                set.remove(&value);
            }
            set.extend(added);
            touched.insert(field);
        }
        for field in touched {
            out.insert((field, history.created_ms), sets[field].clone());
        }
    }
    out
}

/// The changes of the multi-valued fields (labels, sprints, components, fix versions) between
/// two revisions of an issue, as Jira records them.
pub(crate) fn multi_changes(site: &Site, before: &Issue, after: &Issue) -> Vec<Change> {
    let mut changes = Vec::new();
    let (from, to) = (super::custom::labels(before), super::custom::labels(after));
    if from != to {
        changes.push(Change::Labels { from, to });
    }
    let sprints = |issue: &Issue| -> Vec<(i64, String)> {
        super::custom::sprint_refs(site, issue)
            .into_iter()
            .map(|s| (s.id, s.name))
            .collect()
    };
    let (from, to) = (sprints(before), sprints(after));
    if from != to {
        changes.push(Change::Sprint { from, to });
    }
    let (from, to) = (
        super::custom::components(before),
        super::custom::components(after),
    );
    for c in from.iter().filter(|c| !to.contains(c)) {
        changes.push(Change::Component {
            from: Some(*c),
            to: None,
        });
    }
    for c in to.iter().filter(|c| !from.contains(c)) {
        changes.push(Change::Component {
            from: None,
            to: Some(*c),
        });
    }
    let version = |issue: &Issue| {
        super::custom::fix_version(issue).map(|(id, j)| (id, format!("{}.0", j + 1)))
    };
    let (from, to) = (version(before), version(after));
    if from != to {
        if let Some(v) = from {
            changes.push(Change::FixVersion {
                from: Some(v),
                to: None,
            });
        }
        if let Some(v) = to {
            changes.push(Change::FixVersion {
                from: None,
                to: Some(v),
            });
        }
    }
    changes
}

/// A change history: who changed what, when.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct History {
    pub id: i64,
    pub author: u32,
    pub created_ms: i64,
    pub items: Vec<Change>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Comment {
    pub id: i64,
    pub author: u32,
    pub update_author: u32,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// Changes with every edit: the body is derived from it.
    pub seed: u64,
    /// Visible to the role Developers only.
    pub restricted: bool,
    pub jsd_public: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Worklog {
    pub id: i64,
    pub issue: i64,
    pub author: u32,
    pub update_author: u32,
    pub started_ms: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub seconds: i64,
    pub seed: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Link {
    pub id: i64,
    pub kind: u8,
    /// The issue whose view says `outward` of the other ("A blocks B": A).
    pub outward: i64,
    /// The other one ("B is blocked by A": B).
    pub inward: i64,
}

/// The work on a site's issues.
#[derive(Default)]
pub(crate) struct Work {
    /// Per issue, oldest first.
    pub histories: HashMap<i64, Vec<History>>,
    /// Per issue, by creation. Deleted comments are removed.
    pub comments: HashMap<i64, Vec<Comment>>,
    pub deleted_comments: Vec<i64>,
    /// Per issue, by creation. Deleted worklogs are removed.
    pub worklogs: HashMap<i64, Vec<Worklog>>,
    /// Worklog id → issue id, live ones.
    worklog_issue: HashMap<i64, i64>,
    /// Deleted worklogs: (id, when), in order of deletion.
    pub deleted_worklogs: Vec<(i64, i64)>,
    /// Every link, by id; removed ones are gone.
    pub links: BTreeMap<i64, Link>,
    next_history: i64,
    next_comment: i64,
    next_worklog: i64,
    next_link: i64,
}

impl Work {
    fn history_id(&mut self) -> i64 {
        self.next_history = self.next_history.max(FIRST_HISTORY_ID);
        self.next_history += 1;
        self.next_history - 1
    }

    fn comment_id(&mut self) -> i64 {
        self.next_comment = self.next_comment.max(FIRST_COMMENT_ID);
        self.next_comment += 1;
        self.next_comment - 1
    }

    fn worklog_id(&mut self) -> i64 {
        self.next_worklog = self.next_worklog.max(FIRST_WORKLOG_ID);
        self.next_worklog += 1;
        self.next_worklog - 1
    }

    fn link_id(&mut self) -> i64 {
        self.next_link = self.next_link.max(FIRST_LINK_ID);
        self.next_link += 1;
        self.next_link - 1
    }

    fn add_worklog(&mut self, worklog: Worklog) {
        self.worklog_issue.insert(worklog.id, worklog.issue);
        self.worklogs
            .entry(worklog.issue)
            .or_default()
            .push(worklog);
    }

    /// The links that show on `issue`'s view.
    pub fn links_of(&self, issue: i64) -> impl Iterator<Item = &Link> {
        self.links
            .values()
            .filter(move |l| l.outward == issue || l.inward == issue)
    }

    pub fn worklog(&self, id: i64) -> Option<&Worklog> {
        let issue = self.worklog_issue.get(&id)?;
        self.worklogs.get(issue)?.iter().find(|w| w.id == id)
    }
}

/// A number of children: none for most issues, a few for many, more than an issue embeds for
/// some.
fn how_many(rng: &mut ChaCha8Rng, few: f64, some: f64, many: f64, embedded: usize) -> usize {
    let roll: f64 = rng.random();
    if roll < many {
        rng.random_range(embedded + 1..=embedded * 2 + 5)
    } else if roll < many + some {
        rng.random_range(5..=15)
    } else if roll < many + some + few {
        rng.random_range(1..=4)
    } else {
        0
    }
}

/// `n` instants from `from` to `to`, ascending; the last is `to` when `end_at_to`.
fn instants(rng: &mut ChaCha8Rng, n: usize, from: i64, to: i64, end_at_to: bool) -> Vec<i64> {
    let span = (to - from).max(0);
    let mut times: Vec<i64> = (0..n).map(|_| from + rng.random_range(0..=span)).collect();
    times.sort_unstable();
    if end_at_to && let Some(last) = times.last_mut() {
        *last = to;
    }
    times
}

/// Generates the work on `site`'s issues, deterministically from `rng`.
pub(crate) fn generate(site: &mut Site, rng: &mut ChaCha8Rng, long_worklog_share: f64) {
    let humans: Vec<u32> = (0..site.users.len() as u32)
        .filter(|&i| site.users[i as usize].kind == AccountKind::Atlassian)
        .collect();
    let human = |rng: &mut ChaCha8Rng| {
        humans
            .get(rng.random_range(0..humans.len().max(1)))
            .copied()
            .unwrap_or(0)
    };
    let mut work = Work::default();
    let issues: Vec<Issue> = site.issues.clone();
    let statuses = STATUSES.len();
    for issue in &issues {
        // Status changes: from the first status to the current one, whole rounds more for
        // some issues; a few issues have more histories than any embedded list holds.
        let rounds = match rng.random::<f64>() {
            r if r < 0.015 => rng.random_range(25..=40),
            r if r < 0.15 => 1,
            _ => 0,
        };
        let steps = usize::from(issue.status) + rounds * statuses;
        let mut changes: Vec<Vec<Change>> = Vec::new();
        let mut status = 0u8;
        for step in 0..steps {
            let to = ((usize::from(status) + 1) % statuses) as u8;
            let mut items = vec![Change::Status { from: status, to }];
            if step + 1 == steps && issue.resolution.is_some() {
                items.push(Change::Resolution {
                    from: None,
                    to: issue.resolution,
                });
            }
            changes.push(items);
            status = to;
        }
        if issue.assignee.is_some() {
            let at = rng.random_range(0..=changes.len());
            changes.insert(
                at,
                vec![Change::Assignee {
                    from: None,
                    to: issue.assignee,
                }],
            );
        }
        if issue.priority != Some(2) {
            let at = rng.random_range(0..=changes.len());
            changes.insert(
                at,
                vec![Change::Priority {
                    from: Some(2),
                    to: issue.priority,
                }],
            );
        }
        // The current status and assignee are the last ones set: keep their changes last.
        changes.sort_by_key(|items| matches!(items[0], Change::Status { .. }));
        let times = instants(rng, changes.len(), issue.created_ms, issue.updated_ms, true);
        let histories: Vec<History> = changes
            .into_iter()
            .zip(times)
            .map(|(items, created_ms)| History {
                id: work.history_id(),
                author: human(rng),
                created_ms,
                items,
            })
            .collect();
        if !histories.is_empty() {
            work.histories.insert(issue.id, histories);
        }

        let comments = how_many(rng, 0.30, 0.12, 0.01, EMBEDDED_COMMENTS);
        for created_ms in instants(rng, comments, issue.created_ms, issue.updated_ms, false) {
            let author = human(rng);
            let edited = rng.random_bool(0.1);
            let comment = Comment {
                id: work.comment_id(),
                author,
                update_author: if edited { human(rng) } else { author },
                created_ms,
                updated_ms: if edited {
                    rng.random_range(created_ms..=issue.updated_ms.max(created_ms))
                } else {
                    created_ms
                },
                seed: rng.random(),
                restricted: rng.random_bool(0.05),
                jsd_public: rng.random_bool(0.9),
            };
            work.comments.entry(issue.id).or_default().push(comment);
        }

        let worklogs = how_many(rng, 0.22, 0.05, long_worklog_share, EMBEDDED_WORKLOGS);
        for started_ms in instants(rng, worklogs, issue.created_ms, issue.updated_ms, false) {
            let author = human(rng);
            let created_ms = rng.random_range(started_ms..=issue.updated_ms.max(started_ms));
            let worklog = Worklog {
                id: work.worklog_id(),
                issue: issue.id,
                author,
                update_author: author,
                started_ms,
                created_ms,
                updated_ms: created_ms,
                seconds: rng.random_range(1..=32) * 900,
                seed: rng.random(),
            };
            work.add_worklog(worklog);
        }

        // A link to an earlier issue for some.
        if issue.id > issues[0].id && rng.random_bool(0.12) {
            let other = issues[rng.random_range(0..(issue.id - issues[0].id) as usize)].id;
            let kind = rng.random_range(0..LINK_TYPES.len()) as u8;
            let (outward, inward) = if rng.random_bool(0.5) {
                (issue.id, other)
            } else {
                (other, issue.id)
            };
            let id = work.link_id();
            work.links.insert(
                id,
                Link {
                    id,
                    kind,
                    outward,
                    inward,
                },
            );
        }
    }
    site.work = work;
}

impl Site {
    fn human_after(&self, index: Option<u32>) -> Option<u32> {
        let users = self.users.len() as u32;
        let start = index.map_or(0, |i| i + 1);
        (0..users)
            .map(|k| (start + k) % users.max(1))
            .find(|&i| self.users[i as usize].kind == AccountKind::Atlassian)
    }

    /// Records a history of `items` on `issue` at `now_ms` by the API user.
    pub(crate) fn add_history(&mut self, issue: i64, now_ms: i64, items: Vec<Change>) {
        let id = self.work.history_id();
        self.work.histories.entry(issue).or_default().push(History {
            id,
            author: 0,
            created_ms: now_ms,
            items,
        });
    }

    /// What an edit of an issue changes besides its status and texts: the next assignee and
    /// the next priority. Returns the changes.
    pub(crate) fn edit_people_and_priority(&mut self, id: i64) -> Vec<Change> {
        let Some(issue) = self.issue(id).cloned() else {
            return Vec::new();
        };
        let assignee = self.human_after(issue.assignee);
        let priority = Some(
            issue
                .priority
                .map_or(0, |p| (p + 1) % PRIORITIES.len() as u8),
        );
        if let Ok(issue) = self.issue_mut(id) {
            issue.assignee = assignee;
            issue.priority = priority;
        }
        vec![
            Change::Assignee {
                from: issue.assignee,
                to: assignee,
            },
            Change::Priority {
                from: issue.priority,
                to: priority,
            },
        ]
    }

    /// Bumps an issue's `updated` to `now_ms` (a comment, worklog or link changed).
    fn touch(&mut self, id: i64, now_ms: i64, lag_ms: i64) -> anyhow::Result<()> {
        let issue = self.issue_mut(id)?;
        let prev = issue.clone();
        issue.updated_ms = now_ms.max(issue.updated_ms);
        self.remember(id, Some(prev), now_ms, lag_ms);
        Ok(())
    }

    pub fn add_comment(&mut self, issue: i64, now_ms: i64, lag_ms: i64) -> anyhow::Result<i64> {
        self.touch(issue, now_ms, lag_ms)?;
        let id = self.work.comment_id();
        let seed = self.rng_u64();
        self.work.comments.entry(issue).or_default().push(Comment {
            id,
            author: 0,
            update_author: 0,
            created_ms: now_ms,
            updated_ms: now_ms,
            seed,
            restricted: false,
            jsd_public: true,
        });
        Ok(id)
    }

    fn comment_issue(&self, id: i64) -> anyhow::Result<i64> {
        self.work
            .comments
            .iter()
            .find(|(_, list)| list.iter().any(|c| c.id == id))
            .map(|(issue, _)| *issue)
            .ok_or_else(|| anyhow::anyhow!("comment {id} does not exist"))
    }

    pub fn edit_comment(&mut self, id: i64, now_ms: i64, lag_ms: i64) -> anyhow::Result<()> {
        let issue = self.comment_issue(id)?;
        self.touch(issue, now_ms, lag_ms)?;
        let seed = self.rng_u64();
        if let Some(comment) = self
            .work
            .comments
            .get_mut(&issue)
            .and_then(|list| list.iter_mut().find(|c| c.id == id))
        {
            comment.seed = seed;
            comment.updated_ms = now_ms.max(comment.updated_ms);
            comment.update_author = 0;
        }
        Ok(())
    }

    pub fn delete_comment(&mut self, id: i64, now_ms: i64, lag_ms: i64) -> anyhow::Result<()> {
        let issue = self.comment_issue(id)?;
        self.touch(issue, now_ms, lag_ms)?;
        if let Some(list) = self.work.comments.get_mut(&issue) {
            list.retain(|c| c.id != id);
        }
        self.work.deleted_comments.push(id);
        Ok(())
    }

    fn time_spent(&self, issue: i64) -> i64 {
        self.work
            .worklogs
            .get(&issue)
            .map_or(0, |list| list.iter().map(|w| w.seconds).sum())
    }

    pub fn add_worklog(&mut self, issue: i64, now_ms: i64, lag_ms: i64) -> anyhow::Result<i64> {
        self.touch(issue, now_ms, lag_ms)?;
        let id = self.work.worklog_id();
        let seconds = 900 * (1 + (self.rng_u64() % 16) as i64);
        let seed = self.rng_u64();
        let before = self.time_spent(issue);
        self.work.add_worklog(Worklog {
            id,
            issue,
            author: 0,
            update_author: 0,
            started_ms: now_ms - 3_600_000,
            created_ms: now_ms,
            updated_ms: now_ms,
            seconds,
            seed,
        });
        let change = Change::TimeSpent {
            from: before,
            to: before + seconds,
            worklog: id,
            added: true,
        };
        self.add_history(issue, now_ms, vec![change]);
        Ok(id)
    }

    pub fn edit_worklog(&mut self, id: i64, now_ms: i64) -> anyhow::Result<()> {
        let issue = *self
            .work
            .worklog_issue
            .get(&id)
            .ok_or_else(|| anyhow::anyhow!("worklog {id} does not exist"))?;
        let seed = self.rng_u64();
        let worklog = self
            .work
            .worklogs
            .get_mut(&issue)
            .and_then(|list| list.iter_mut().find(|w| w.id == id))
            .ok_or_else(|| anyhow::anyhow!("worklog {id} does not exist"))?;
        worklog.seed = seed;
        worklog.seconds += 900;
        worklog.updated_ms = now_ms.max(worklog.updated_ms);
        worklog.update_author = 0;
        Ok(())
    }

    pub fn delete_worklog(&mut self, id: i64, now_ms: i64, lag_ms: i64) -> anyhow::Result<()> {
        let issue = *self
            .work
            .worklog_issue
            .get(&id)
            .ok_or_else(|| anyhow::anyhow!("worklog {id} does not exist"))?;
        self.touch(issue, now_ms, lag_ms)?;
        let before = self.time_spent(issue);
        let seconds = self.work.worklog(id).map_or(0, |w| w.seconds);
        if let Some(list) = self.work.worklogs.get_mut(&issue) {
            list.retain(|w| w.id != id);
        }
        self.work.worklog_issue.remove(&id);
        self.work.deleted_worklogs.push((id, now_ms));
        let change = Change::TimeSpent {
            from: before,
            to: before - seconds,
            worklog: id,
            added: false,
        };
        self.add_history(issue, now_ms, vec![change]);
        Ok(())
    }

    /// Links `outward` to `inward` ("outward blocks inward"); both issues change.
    pub fn add_link(
        &mut self,
        outward: i64,
        inward: i64,
        now_ms: i64,
        lag_ms: i64,
    ) -> anyhow::Result<i64> {
        self.touch(outward, now_ms, lag_ms)?;
        self.touch(inward, now_ms, lag_ms)?;
        let id = self.work.link_id();
        self.work.links.insert(
            id,
            Link {
                id,
                kind: 0,
                outward,
                inward,
            },
        );
        self.link_histories(id, true, now_ms);
        Ok(id)
    }

    pub fn delete_link(&mut self, id: i64, now_ms: i64, lag_ms: i64) -> anyhow::Result<()> {
        let link = self
            .work
            .links
            .get(&id)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("link {id} does not exist"))?;
        self.touch(link.outward, now_ms, lag_ms)?;
        self.touch(link.inward, now_ms, lag_ms)?;
        self.link_histories(id, false, now_ms);
        self.work.links.remove(&id);
        Ok(())
    }

    fn link_histories(&mut self, id: i64, added: bool, now_ms: i64) {
        let Some(link) = self.work.links.get(&id).cloned() else {
            return;
        };
        let (_, _, outward, inward) = LINK_TYPES[link.kind as usize];
        let key = |site: &Site, issue: i64| site.issue(issue).map(|i| site.key_of(i));
        let (Some(out_key), Some(in_key)) = (key(self, link.outward), key(self, link.inward))
        else {
            return;
        };
        let sides = [
            (
                link.outward,
                in_key.clone(),
                format!("This issue {outward} {in_key}"),
            ),
            (
                link.inward,
                out_key.clone(),
                format!("This issue {inward} {out_key}"),
            ),
        ];
        for (issue, other_key, description) in sides {
            self.add_history(
                issue,
                now_ms,
                vec![Change::Link {
                    other_key,
                    description,
                    added,
                }],
            );
        }
    }

    /// Per status id, how long the issue spent in it between its creation and its last status
    /// change (the current status, still open, is left out), from its histories.
    pub fn time_in_status(&self, id: i64) -> BTreeMap<String, i64> {
        let mut spent = BTreeMap::new();
        let Some(issue) = self.issue(id) else {
            return spent;
        };
        let mut since = issue.created_ms;
        for history in self.work.histories.get(&id).into_iter().flatten() {
            for item in &history.items {
                if let Change::Status { from, .. } = item {
                    *spent
                        .entry(STATUSES[*from as usize].id.to_owned())
                        .or_insert(0) += history.created_ms - since;
                    since = history.created_ms;
                }
            }
        }
        spent
    }
}

/// How Jira writes a duration: `1h 30m`.
fn duration_text(seconds: i64) -> String {
    let (hours, minutes) = (seconds / 3600, seconds % 3600 / 60);
    match (hours, minutes) {
        (0, m) => format!("{m}m"),
        (h, 0) => format!("{h}h"),
        (h, m) => format!("{h}h {m}m"),
    }
}

/// A short ADF document from a seed.
fn adf(seed: u64, what: &str) -> Value {
    let mut dice = Dice::new(mix64(seed));
    const WORDS: [&str; 12] = [
        "checked", "the", "deploy", "logs", "again", "and", "the", "fix", "holds", "on", "staging",
        "now",
    ];
    let words: Vec<&str> = (0..dice.below(14) + 4).map(|_| dice.pick(&WORDS)).collect();
    let mut content =
        vec![json!({"type": "text", "text": format!("{what}: {}.", words.join(" "))})];
    if dice.chance(0.3) {
        content.push(json!({"type": "hardBreak"}));
        content.push(json!({"type": "text", "text": "See ", }));
        content.push(json!({"type": "text", "text": "the runbook", "marks": [{"type": "strong"}]}));
    }
    json!({"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": content}]})
}

impl Ctx<'_> {
    pub fn comment(&self, issue: i64, comment: &Comment) -> Value {
        let mut value = json!({
            "self": format!("{}/rest/api/3/issue/{issue}/comment/{}", self.base, comment.id),
            "id": comment.id.to_string(),
            "author": self.user_details(comment.author),
            "body": adf(comment.seed, "Comment"),
            "updateAuthor": self.user_details(comment.update_author),
            "created": self.timestamp(comment.created_ms),
            "updated": self.timestamp(comment.updated_ms),
            "jsdPublic": comment.jsd_public,
        });
        if comment.restricted {
            value["visibility"] =
                json!({"type": "role", "value": "Developers", "identifier": "Developers"});
        }
        value
    }

    pub fn worklog(&self, worklog: &Worklog) -> Value {
        json!({
            "self": format!("{}/rest/api/3/issue/{}/worklog/{}", self.base, worklog.issue, worklog.id),
            "author": self.user_details(worklog.author),
            "updateAuthor": self.user_details(worklog.update_author),
            "comment": adf(worklog.seed, "Worked on it"),
            "created": self.timestamp(worklog.created_ms),
            "updated": self.timestamp(worklog.updated_ms),
            "started": self.timestamp(worklog.started_ms),
            "timeSpent": duration_text(worklog.seconds),
            "timeSpentSeconds": worklog.seconds,
            "id": worklog.id.to_string(),
            "issueId": worklog.issue.to_string(),
        })
    }

    /// `fields.comment`: the first comments and the total.
    pub fn comment_field(&self, issue: &Issue) -> Value {
        let list = self.site.work.comments.get(&issue.id);
        let all = list.map_or(&[][..], Vec::as_slice);
        let comments: Vec<Value> = all
            .iter()
            .take(EMBEDDED_COMMENTS)
            .map(|c| self.comment(issue.id, c))
            .collect();
        json!({
            "comments": comments,
            "self": format!("{}/rest/api/3/issue/{}/comment", self.base, issue.id),
            "maxResults": EMBEDDED_COMMENTS, "total": all.len(), "startAt": 0,
        })
    }

    /// `fields.worklog`: the first worklogs and the total.
    pub fn worklog_field(&self, issue: &Issue) -> Value {
        let list = self.site.work.worklogs.get(&issue.id);
        let all = list.map_or(&[][..], Vec::as_slice);
        let worklogs: Vec<Value> = all
            .iter()
            .take(EMBEDDED_WORKLOGS)
            .map(|w| self.worklog(w))
            .collect();
        json!({"startAt": 0, "maxResults": EMBEDDED_WORKLOGS, "total": all.len(), "worklogs": worklogs})
    }

    /// `fields.issuelinks`: every link of the issue, seen from it.
    pub fn issue_links(&self, issue: &Issue) -> Value {
        let links: Vec<Value> = self
            .site
            .work
            .links_of(issue.id)
            .filter_map(|link| {
                let (type_id, name, outward, inward) = LINK_TYPES[link.kind as usize];
                let (side, other) = if link.outward == issue.id {
                    ("outwardIssue", link.inward)
                } else {
                    ("inwardIssue", link.outward)
                };
                let other = self.site.issue(other)?;
                let mut value = json!({
                    "id": link.id.to_string(),
                    "self": format!("{}/rest/api/3/issueLink/{}", self.base, link.id),
                    "type": {"id": type_id, "name": name, "inward": inward, "outward": outward,
                             "self": format!("{}/rest/api/3/issueLinkType/{type_id}", self.base)},
                });
                value[side] = self.issue_ref(other);
                Some(value)
            })
            .collect();
        json!(links)
    }

    /// One change history; `created` as epoch milliseconds (`changelog/bulkfetch`) or text.
    pub fn history(&self, history: &History, created_as_number: bool) -> Value {
        let user = |index: Option<u32>| -> (Value, Value) {
            match index.and_then(|i| self.site.users.get(i as usize)) {
                Some(user) if !self.data_center => {
                    (json!(user.account_id), json!(user.display_name))
                }
                _ => (Value::Null, Value::Null),
            }
        };
        let status = |i: u8| (STATUSES[i as usize].id, STATUSES[i as usize].name);
        let resolution = |r: Option<u8>| -> (Value, Value) {
            r.and_then(|r| RESOLUTIONS.get(r as usize))
                .map_or((Value::Null, Value::Null), |(id, name)| {
                    (json!(id), json!(name))
                })
        };
        let priority = |p: Option<u8>| -> (Value, Value) {
            p.and_then(|p| PRIORITIES.get(p as usize))
                .map_or((Value::Null, Value::Null), |(id, name)| {
                    (json!(id), json!(name))
                })
        };
        let item = |field: &str, field_id: &str, from: (Value, Value), to: (Value, Value)| {
            json!({"field": field, "fieldtype": "jira", "fieldId": field_id,
                   "from": from.0, "fromString": from.1, "to": to.0, "toString": to.1})
        };
        let items: Vec<Value> = history
            .items
            .iter()
            .flat_map(|change| match change {
                Change::Status { from, to } => {
                    let (f, t) = (status(*from), status(*to));
                    vec![item(
                        "status",
                        "status",
                        (json!(f.0), json!(f.1)),
                        (json!(t.0), json!(t.1)),
                    )]
                }
                Change::Resolution { from, to } => vec![item(
                    "resolution",
                    "resolution",
                    resolution(*from),
                    resolution(*to),
                )],
                Change::Assignee { from, to } => {
                    let mut value = item("assignee", "assignee", user(*from), user(*to));
                    value["tmpFromAccountId"] = value["from"].clone();
                    value["tmpToAccountId"] = value["to"].clone();
                    vec![value]
                }
                Change::Priority { from, to } => {
                    vec![item("priority", "priority", priority(*from), priority(*to))]
                }
                Change::Summary { from, to } => vec![item(
                    "summary",
                    "summary",
                    (Value::Null, json!(from)),
                    (Value::Null, json!(to)),
                )],
                Change::Project {
                    from,
                    to,
                    from_key,
                    to_key,
                } => {
                    let name = |id: i64| {
                        self.site
                            .projects
                            .iter()
                            .find(|p| p.id == id)
                            .map_or(Value::Null, |p| json!(p.name))
                    };
                    vec![
                        item(
                            "project",
                            "project",
                            (json!(from.to_string()), name(*from)),
                            (json!(to.to_string()), name(*to)),
                        ),
                        item(
                            "Key",
                            "issuekey",
                            (Value::Null, json!(from_key)),
                            (Value::Null, json!(to_key)),
                        ),
                    ]
                }
                Change::TimeSpent {
                    from,
                    to,
                    worklog,
                    added,
                } => {
                    let (id_from, id_to) = if *added {
                        (
                            (Value::Null, Value::Null),
                            (json!(worklog.to_string()), json!(worklog.to_string())),
                        )
                    } else {
                        (
                            (json!(worklog.to_string()), json!(worklog.to_string())),
                            (Value::Null, Value::Null),
                        )
                    };
                    let spent = |s: i64| (json!(s.to_string()), json!(s.to_string()));
                    vec![
                        item("timespent", "timespent", spent(*from), spent(*to)),
                        item("WorklogId", "WorklogId", id_from, id_to),
                    ]
                }
                Change::Link {
                    other_key,
                    description,
                    added,
                } => {
                    let (from, to) = if *added {
                        (
                            (Value::Null, Value::Null),
                            (json!(other_key), json!(description)),
                        )
                    } else {
                        (
                            (json!(other_key), json!(description)),
                            (Value::Null, Value::Null),
                        )
                    };
                    vec![item("Link", "issuelinks", from, to)]
                }
                Change::Labels { from, to } => vec![item(
                    "labels",
                    "labels",
                    (Value::Null, json!(from.join(" "))),
                    (Value::Null, json!(to.join(" "))),
                )],
                Change::Sprint { from, to } => {
                    let side = |list: &[(i64, String)]| -> (Value, Value) {
                        if list.is_empty() {
                            return (Value::Null, Value::Null);
                        }
                        let ids: Vec<String> = list.iter().map(|(id, _)| id.to_string()).collect();
                        let names: Vec<&str> = list.iter().map(|(_, n)| n.as_str()).collect();
                        (json!(ids.join(", ")), json!(names.join(", ")))
                    };
                    let mut value = item("Sprint", "customfield_10020", side(from), side(to));
                    value["fieldtype"] = json!("custom");
                    vec![value]
                }
                Change::Component { from, to } => {
                    let side = |c: &Option<(i64, &str)>| {
                        c.map_or((Value::Null, Value::Null), |(id, name)| {
                            (json!(id.to_string()), json!(name))
                        })
                    };
                    vec![item("Component", "components", side(from), side(to))]
                }
                Change::FixVersion { from, to } => {
                    let side = |v: &Option<(i64, String)>| {
                        v.as_ref().map_or((Value::Null, Value::Null), |(id, name)| {
                            (json!(id.to_string()), json!(name))
                        })
                    };
                    vec![item("Fix Version", "fixVersions", side(from), side(to))]
                }
            })
            .collect();
        let created = if created_as_number {
            json!(history.created_ms)
        } else {
            json!(self.timestamp(history.created_ms))
        };
        json!({
            "id": history.id.to_string(),
            "author": self.user_details(history.author),
            "created": created,
            "items": items,
        })
    }
}

pub(crate) fn not_found(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("{what} does not exist or you do not have permission to see it."),
    )
}

fn paging(params: &Params, default_max: i64, cap: i64) -> Result<(usize, usize), ApiError> {
    let start = params.int("startAt", 0)?.max(0) as usize;
    let max = params.int("maxResults", default_max)?.clamp(1, cap) as usize;
    Ok((start, max))
}

/// `GET /rest/api/3/issue/{id}/comment`: `startAt` paging, oldest first (or `-created`).
pub(crate) async fn issue_comments(
    State(shared): State<Arc<Shared>>,
    Path(id_or_key): Path<String>,
    RawQuery(raw): RawQuery,
) -> Reply {
    let params = Params::parse(raw);
    let site = shared.site();
    let id = site.resolve(&id_or_key).ok_or_else(|| not_found("Issue"))?;
    let (start, max) = paging(&params, 100, 100)?;
    let ctx = Ctx::new(&shared, &site);
    let mut all: Vec<&Comment> = site.work.comments.get(&id).into_iter().flatten().collect();
    match params.get("orderBy") {
        None | Some("created" | "+created") => {}
        Some("-created") => all.reverse(),
        Some(other) => return Err(bad_request(format!("Invalid orderBy value: {other}"))),
    }
    let page: Vec<Value> = all
        .iter()
        .skip(start)
        .take(max)
        .map(|c| ctx.comment(id, c))
        .collect();
    Ok(
        Json(json!({"startAt": start, "maxResults": max, "total": all.len(), "comments": page}))
            .into_response(),
    )
}

/// `GET /rest/api/3/issue/{id}/worklog`: `startAt` paging by creation.
pub(crate) async fn issue_worklogs(
    State(shared): State<Arc<Shared>>,
    Path(id_or_key): Path<String>,
    RawQuery(raw): RawQuery,
) -> Reply {
    let params = Params::parse(raw);
    let site = shared.site();
    let id = site.resolve(&id_or_key).ok_or_else(|| not_found("Issue"))?;
    // Documented default 5000; the simulator grants 1,000 at most.
    let (start, max) = paging(&params, 5000, 1000)?;
    let ctx = Ctx::new(&shared, &site);
    let all: Vec<&Worklog> = site.work.worklogs.get(&id).into_iter().flatten().collect();
    let page: Vec<Value> = all
        .iter()
        .skip(start)
        .take(max)
        .map(|w| ctx.worklog(w))
        .collect();
    Ok(
        Json(json!({"startAt": start, "maxResults": max, "total": all.len(), "worklogs": page}))
            .into_response(),
    )
}

/// `GET /rest/api/3/issue/{id}/changelog`: `startAt` paging, oldest first.
pub(crate) async fn issue_changelog(
    State(shared): State<Arc<Shared>>,
    Path(id_or_key): Path<String>,
    RawQuery(raw): RawQuery,
) -> Reply {
    let params = Params::parse(raw);
    let site = shared.site();
    let id = site.resolve(&id_or_key).ok_or_else(|| not_found("Issue"))?;
    let (start, max) = paging(&params, 100, 100)?;
    let ctx = Ctx::new(&shared, &site);
    let all: Vec<&History> = site.work.histories.get(&id).into_iter().flatten().collect();
    let values: Vec<Value> = all
        .iter()
        .skip(start)
        .take(max)
        .map(|h| ctx.history(h, false))
        .collect();
    let is_last = start + values.len() >= all.len();
    Ok(Json(json!({
        "self": format!("{}/rest/api/3/issue/{id}/changelog?startAt={start}&maxResults={max}", ctx.base),
        "startAt": start, "maxResults": max, "total": all.len(), "isLast": is_last, "values": values,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BulkChangelogBody {
    issue_ids_or_keys: Vec<Value>,
    #[serde(default)]
    field_ids: Vec<String>,
    #[serde(default)]
    max_results: Option<i64>,
    #[serde(default)]
    next_page_token: Option<String>,
}

/// `POST /rest/api/3/changelog/bulkfetch`: the histories of up to 1,000 issues, sorted by
/// creation then issue id, `maxResults` histories a page, merged by the client by issue.
pub(crate) async fn bulk_changelog(
    State(shared): State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> Reply {
    let body: BulkChangelogBody = serde_json::from_slice(&body)
        .map_err(|e| bad_request(format!("Invalid request payload: {e}")))?;
    if body.issue_ids_or_keys.is_empty() || body.issue_ids_or_keys.len() > BULK_CHANGELOG_ISSUES {
        return Err(bad_request(format!(
            "issueIdsOrKeys must hold between 1 and {BULK_CHANGELOG_ISSUES} items."
        )));
    }
    if body.field_ids.len() > 10 {
        return Err(bad_request("fieldIds must hold at most 10 items."));
    }
    let max = body.max_results.unwrap_or(1000);
    if !(1..=10_000).contains(&max) {
        return Err(bad_request("maxResults must be between 1 and 10000."));
    }
    let offset = match &body.next_page_token {
        Some(token) => token
            .strip_prefix("cl:")
            .and_then(|t| t.parse::<usize>().ok())
            .ok_or_else(|| bad_request("The nextPageToken is invalid."))?,
        None => 0,
    };
    let site = shared.site();
    let mut ids: Vec<i64> = body
        .issue_ids_or_keys
        .iter()
        .filter_map(|v| match v {
            Value::String(s) => site.resolve(s),
            Value::Number(n) => site.resolve(&n.to_string()),
            _ => None,
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut all: Vec<(i64, &History)> = ids
        .iter()
        .flat_map(|&id| {
            site.work
                .histories
                .get(&id)
                .into_iter()
                .flatten()
                .map(move |h| (id, h))
        })
        .collect();
    all.sort_by_key(|(issue, h)| (h.created_ms, *issue, h.id));
    let ctx = Ctx::new(&shared, &site);
    let page = all.iter().skip(offset).take(max as usize);
    let mut by_issue: Vec<(i64, Vec<Value>)> = Vec::new();
    for (issue, history) in page {
        let value = ctx.history(history, true);
        match by_issue.iter_mut().find(|(id, _)| id == issue) {
            Some((_, list)) => list.push(value),
            None => by_issue.push((*issue, vec![value])),
        }
    }
    let next = offset + max as usize;
    let logs: Vec<Value> = by_issue
        .into_iter()
        .map(|(issue, histories)| json!({"issueId": issue.to_string(), "changeHistories": histories}))
        .collect();
    let mut answer = json!({"issueChangeLogs": logs});
    if next < all.len() {
        answer["nextPageToken"] = json!(format!("cl:{next}"));
    }
    Ok(Json(answer).into_response())
}

/// What the worklog feeds list: (worklog id, time) ascending, and whether the item is a
/// deletion.
fn feed(site: &Site, deleted: bool) -> Vec<(i64, i64)> {
    let mut items: Vec<(i64, i64)> = if deleted {
        site.work.deleted_worklogs.clone()
    } else {
        site.work
            .worklogs
            .values()
            .flatten()
            .map(|w| (w.id, w.updated_ms))
            .collect()
    };
    items.sort_by_key(|(id, at)| (*at, *id));
    items
}

async fn worklog_feed(shared: &Shared, raw: Option<String>, deleted: bool) -> Reply {
    let params = Params::parse(raw);
    let since = params.int("since", 0)?;
    let now = shared.now_ms();
    let site = shared.site();
    let items: Vec<(i64, i64)> = feed(&site, deleted)
        .into_iter()
        .filter(|(_, at)| *at >= since && *at < now - shared.config.worklog_feed_quiet_ms)
        .collect();
    let page: Vec<&(i64, i64)> = items.iter().take(WORKLOG_PAGE).collect();
    let last_page = items.len() <= WORKLOG_PAGE;
    let until = page.last().map_or(since, |(_, at)| *at);
    let path = if deleted { "deleted" } else { "updated" };
    let values: Vec<Value> = page
        .iter()
        .map(|(id, at)| json!({"worklogId": id, "updatedTime": at, "properties": []}))
        .collect();
    let mut answer = json!({
        "values": values, "since": since, "until": until, "lastPage": last_page,
        "self": format!("{}/rest/api/3/worklog/{path}?since={since}", shared.base_url),
    });
    if !last_page {
        answer["nextPage"] = json!(format!(
            "{}/rest/api/3/worklog/{path}?since={until}",
            shared.base_url
        ));
    }
    Ok(Json(answer).into_response())
}

/// `GET /rest/api/3/worklog/updated?since=<ms>`.
pub(crate) async fn worklogs_updated(
    State(shared): State<Arc<Shared>>,
    RawQuery(raw): RawQuery,
) -> Reply {
    worklog_feed(&shared, raw, false).await
}

/// `GET /rest/api/3/worklog/deleted?since=<ms>`.
pub(crate) async fn worklogs_deleted(
    State(shared): State<Arc<Shared>>,
    RawQuery(raw): RawQuery,
) -> Reply {
    worklog_feed(&shared, raw, true).await
}

#[derive(Deserialize)]
struct WorklogListBody {
    ids: Vec<i64>,
}

/// `POST /rest/api/3/worklog/list`: up to 1,000 worklogs by id; unknown ids are left out.
pub(crate) async fn worklog_list(
    State(shared): State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> Reply {
    let body: WorklogListBody = serde_json::from_slice(&body)
        .map_err(|e| bad_request(format!("Invalid request payload: {e}")))?;
    if body.ids.is_empty() || body.ids.len() > WORKLOG_PAGE {
        return Err(bad_request(format!(
            "ids must hold between 1 and {WORKLOG_PAGE} items."
        )));
    }
    let site = shared.site();
    let ctx = Ctx::new(&shared, &site);
    let worklogs: Vec<Value> = body
        .ids
        .iter()
        .filter_map(|id| site.work.worklog(*id))
        .filter(|w| site.issue(w.issue).is_some())
        .map(|w| ctx.worklog(w))
        .collect();
    Ok(Json(json!(worklogs)).into_response())
}

/// Ground truth of the work on live issues.
pub(crate) fn truth(site: &Site) -> super::TruthWork {
    let live = |issue: &i64| site.issue(*issue).is_some();
    let mut truth = super::TruthWork::default();
    for (issue, histories) in &site.work.histories {
        if live(issue) {
            truth.changelog_ids.extend(histories.iter().map(|h| h.id));
        }
    }
    for (issue, comments) in &site.work.comments {
        if live(issue) {
            truth.comment_ids.extend(comments.iter().map(|c| c.id));
        }
    }
    for (issue, worklogs) in &site.work.worklogs {
        if live(issue) {
            truth.worklog_ids.extend(worklogs.iter().map(|w| w.id));
        }
    }
    truth.deleted_comment_ids = site.work.deleted_comments.clone();
    truth.deleted_worklog_ids = site
        .work
        .deleted_worklogs
        .iter()
        .map(|(id, _)| *id)
        .collect();
    truth.link_ids = site
        .work
        .links
        .values()
        .filter(|l| live(&l.outward) && live(&l.inward))
        .map(|l| l.id)
        .collect();
    for list in [
        &mut truth.changelog_ids,
        &mut truth.comment_ids,
        &mut truth.worklog_ids,
        &mut truth.deleted_comment_ids,
        &mut truth.deleted_worklog_ids,
        &mut truth.link_ids,
    ] {
        list.sort_unstable();
    }
    truth
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_jira_writes_them() {
        assert_eq!(duration_text(900), "15m");
        assert_eq!(duration_text(7200), "2h");
        assert_eq!(duration_text(5400), "1h 30m");
    }
}
