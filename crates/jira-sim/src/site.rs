//! The simulated site's state: lookups, mutations, the lagging search view and ground truth.

use std::collections::HashMap;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::catalog::{AUDIT_KINDS, FIRST_AUDIT_ID, FIRST_ISSUE_ID, RESOLUTIONS, STATUSES};
use super::data::{AuditRecord, Issue, Project, User, new_user};
use super::work::Change;
use super::{Truth, TruthIssue, TruthProject};

/// What the search index still shows for an issue until `until_ms`: the version before the
/// latest mutations, or nothing for an issue created within the lag.
struct Shadow {
    until_ms: i64,
    prev: Option<Issue>,
}

pub(crate) struct Site {
    pub projects: Vec<Project>,
    pub users: Vec<User>,
    /// Every issue ever created, indexed by `id - FIRST_ISSUE_ID`; deleted ones stay as
    /// tombstones so that ids are never reused.
    pub issues: Vec<Issue>,
    /// Ascending by creation time and id.
    pub audit: Vec<AuditRecord>,
    /// Current and former keys (upper case) to issue ids, so moved issues resolve by old key.
    keys: HashMap<String, i64>,
    shadows: HashMap<i64, Shadow>,
    /// Drives mutations, so the same sequence of mutations produces the same data.
    rng: ChaCha8Rng,
    /// Change histories, comments, worklogs and links ([`super::work`]).
    pub work: super::work::Work,
    /// Reference data changed at run time ([`super::reference`]).
    pub reference: super::reference::Reference,
    /// The heavy profile ([`crate::SimConfig::heavy`]): 30 more custom fields, long texts.
    pub heavy: bool,
}

pub(crate) fn to_utc(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

impl Site {
    pub fn new(
        projects: Vec<Project>,
        users: Vec<User>,
        issues: Vec<Issue>,
        audit: Vec<AuditRecord>,
        rng: ChaCha8Rng,
    ) -> Site {
        let mut site = Site {
            projects,
            users,
            issues,
            audit,
            keys: HashMap::new(),
            shadows: HashMap::new(),
            rng,
            work: super::work::Work::default(),
            reference: Default::default(),
            heavy: false,
        };
        let keys: Vec<(String, i64)> = site.issues.iter().map(|i| (site.key_of(i), i.id)).collect();
        site.keys.extend(keys);
        site
    }

    /// A number from the mutation stream.
    pub(crate) fn rng_u64(&mut self) -> u64 {
        self.rng.random()
    }

    /// A live (not deleted) issue by id.
    pub fn issue(&self, id: i64) -> Option<&Issue> {
        let index = usize::try_from(id - FIRST_ISSUE_ID).ok()?;
        self.issues.get(index).filter(|i| !i.deleted)
    }

    pub(crate) fn issue_mut(&mut self, id: i64) -> anyhow::Result<&mut Issue> {
        let index = usize::try_from(id - FIRST_ISSUE_ID).ok();
        index
            .and_then(|i| self.issues.get_mut(i))
            .filter(|i| !i.deleted)
            .with_context(|| format!("issue {id} does not exist"))
    }

    pub fn key_of(&self, issue: &Issue) -> String {
        format!("{}-{}", self.projects[issue.project].key, issue.num)
    }

    /// Resolves an id or a key (current or former, any case) to a live issue id.
    pub fn resolve(&self, id_or_key: &str) -> Option<i64> {
        let text = id_or_key.trim();
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return text.parse().ok().filter(|&id| self.issue(id).is_some());
        }
        let id = *self.keys.get(&text.to_uppercase())?;
        self.issue(id).map(|i| i.id)
    }

    /// A project by key (any case), numeric id or exact name.
    pub fn project_index(&self, text: &str) -> Option<usize> {
        let text = text.trim();
        self.projects.iter().position(|p| {
            p.key.eq_ignore_ascii_case(text) || p.id.to_string() == text || p.name == text
        })
    }

    /// The version of `issue` that search sees at `now_ms`: an older version (or none) while a
    /// recent mutation is still inside the search lag, unless the caller asked to reconcile it.
    pub fn search_view<'a>(
        &'a self,
        issue: &'a Issue,
        now_ms: i64,
        reconcile: &[i64],
    ) -> Option<&'a Issue> {
        if let Some(shadow) = self.shadows.get(&issue.id)
            && shadow.until_ms > now_ms
            && !reconcile.contains(&issue.id)
        {
            return shadow.prev.as_ref();
        }
        (!issue.deleted).then_some(issue)
    }

    /// Records that search keeps showing `prev` for `lag_ms`. An older shadow that is still
    /// active wins, because the index has not caught up with any of the newer versions yet.
    pub(crate) fn remember(&mut self, id: i64, prev: Option<Issue>, now_ms: i64, lag_ms: i64) {
        if lag_ms <= 0 {
            return;
        }
        self.shadows.retain(|_, s| s.until_ms > now_ms);
        let shadow = self
            .shadows
            .entry(id)
            .or_insert(Shadow { until_ms: 0, prev });
        shadow.until_ms = now_ms + lag_ms;
    }

    pub fn truth_issue(&self, issue: &Issue) -> TruthIssue {
        TruthIssue {
            id: issue.id,
            key: self.key_of(issue),
            project_id: self.projects[issue.project].id,
            updated: to_utc(issue.updated_ms),
        }
    }

    pub fn truth(&self) -> Truth {
        Truth {
            projects: self
                .projects
                .iter()
                .map(|p| TruthProject {
                    id: p.id,
                    key: p.key.clone(),
                    archived: p.archived_ms.is_some(),
                })
                .collect(),
            issues: self
                .issues
                .iter()
                .filter(|i| !i.deleted)
                .map(|i| self.truth_issue(i))
                .collect(),
            users: self.users.iter().map(|u| u.account_id.clone()).collect(),
            audit_ids: self.audit.iter().map(|a| a.id).collect(),
            org_event_ids: Vec::new(),
        }
    }

    /// Creates a task in a live project, reported by the API user.
    pub fn create_issue(
        &mut self,
        project_key: &str,
        now_ms: i64,
        lag_ms: i64,
    ) -> anyhow::Result<TruthIssue> {
        let project = self.live_project(project_key)?;
        let id = FIRST_ISSUE_ID + self.issues.len() as i64;
        let num = self.projects[project].next_num;
        self.projects[project].next_num += 1;
        let issue = Issue {
            id,
            project,
            num,
            kind: 0,
            status: 0,
            priority: Some(2),
            resolution: None,
            assignee: None,
            reporter: 0,
            creator: 0,
            created_ms: now_ms,
            updated_ms: now_ms,
            resolved_ms: None,
            parent: None,
            seed: self.rng.random(),
            revision: 0,
            deleted: false,
            poison: None,
        };
        let key = self.key_of(&issue);
        self.keys.insert(key, id);
        self.issues.push(issue);
        self.remember(id, None, now_ms, lag_ms);
        self.issue(id)
            .map(|i| self.truth_issue(i))
            .context("issue vanished after creation")
    }

    /// Edits an issue: a new revision of its texts, the next workflow status, `updated` = now.
    pub fn update_issue(
        &mut self,
        id: i64,
        now_ms: i64,
        lag_ms: i64,
    ) -> anyhow::Result<TruthIssue> {
        let prev = self.issue_mut(id)?.clone();
        let people = self.edit_people_and_priority(id);
        let issue = self.issue_mut(id)?;
        issue.revision += 1;
        issue.status = (issue.status + 1) % STATUSES.len() as u8;
        let done = STATUSES[issue.status as usize].category == 2;
        issue.resolution = done.then_some((issue.revision as usize % RESOLUTIONS.len()) as u8);
        issue.resolved_ms = done.then_some(now_ms);
        issue.updated_ms = now_ms.max(issue.updated_ms);
        let issue = issue.clone();
        // One history of every field the edit changed.
        let mut items = vec![Change::Status {
            from: prev.status,
            to: issue.status,
        }];
        if prev.resolution != issue.resolution {
            items.push(Change::Resolution {
                from: prev.resolution,
                to: issue.resolution,
            });
        }
        items.extend(people);
        items.push(Change::Summary {
            from: super::custom::summary(&prev),
            to: super::custom::summary(&issue),
        });
        items.extend(super::work::multi_changes(self, &prev, &issue));
        self.add_history(id, issue.updated_ms, items);
        let truth = self.truth_issue(&self.issues[(id - FIRST_ISSUE_ID) as usize]);
        self.remember(id, Some(prev), now_ms, lag_ms);
        Ok(truth)
    }

    /// Edits an issue so that its JSON carries `poison` (or, with `None`, no longer does):
    /// a new revision, `updated` = now.
    pub fn poison_issue(
        &mut self,
        id: i64,
        poison: Option<super::Poison>,
        now_ms: i64,
        lag_ms: i64,
    ) -> anyhow::Result<TruthIssue> {
        let issue = self.issue_mut(id)?;
        let prev = issue.clone();
        issue.revision += 1;
        issue.poison = poison;
        issue.updated_ms = now_ms.max(issue.updated_ms);
        let (updated_ms, now) = (issue.updated_ms, issue.clone());
        let items = super::work::multi_changes(self, &prev, &now);
        if !items.is_empty() {
            self.add_history(id, updated_ms, items);
        }
        let truth = self.truth_issue(&self.issues[(id - FIRST_ISSUE_ID) as usize]);
        self.remember(id, Some(prev), now_ms, lag_ms);
        Ok(truth)
    }

    pub fn delete_issue(&mut self, id: i64, now_ms: i64, lag_ms: i64) -> anyhow::Result<()> {
        let issue = self.issue_mut(id)?;
        let prev = issue.clone();
        issue.deleted = true;
        self.remember(id, Some(prev), now_ms, lag_ms);
        Ok(())
    }

    /// Moves an issue to another live project: same id, the target's next key. The old key
    /// keeps resolving to the issue, as it does on Jira Cloud.
    pub fn move_issue(
        &mut self,
        id: i64,
        to_project_key: &str,
        now_ms: i64,
        lag_ms: i64,
    ) -> anyhow::Result<TruthIssue> {
        let project = self.live_project(to_project_key)?;
        let num = self.projects[project].next_num;
        let issue = self.issue_mut(id)?;
        if issue.project == project {
            bail!("issue {id} is already in project {to_project_key}");
        }
        let prev = issue.clone();
        issue.project = project;
        issue.num = num;
        issue.revision += 1;
        issue.updated_ms = now_ms.max(issue.updated_ms);
        let updated_ms = issue.updated_ms;
        self.projects[project].next_num += 1;
        let truth = self.truth_issue(&self.issues[(id - FIRST_ISSUE_ID) as usize]);
        let change = Change::Project {
            from: self.projects[prev.project].id,
            to: truth.project_id,
            from_key: self.key_of(&prev),
            to_key: truth.key.clone(),
        };
        let mut items = vec![change];
        let moved = self.issues[(id - FIRST_ISSUE_ID) as usize].clone();
        items.extend(super::work::multi_changes(self, &prev, &moved));
        self.add_history(id, updated_ms, items);
        self.keys.insert(truth.key.clone(), id);
        self.remember(id, Some(prev), now_ms, lag_ms);
        Ok(truth)
    }

    fn live_project(&self, key: &str) -> anyhow::Result<usize> {
        let index = self
            .projects
            .iter()
            .position(|p| p.key.eq_ignore_ascii_case(key))
            .with_context(|| format!("project {key} does not exist"))?;
        if self.projects[index].archived_ms.is_some() {
            bail!("project {key} is archived");
        }
        Ok(index)
    }

    pub fn add_user(&mut self) -> String {
        let index = self.users.len();
        let user = new_user(&mut self.rng, index);
        let id = user.account_id.clone();
        self.users.push(user);
        id
    }

    pub fn add_audit_record(&mut self, now_ms: i64) -> i64 {
        let id = self.audit.last().map_or(FIRST_AUDIT_ID, |a| a.id + 1);
        let users = self.users.len().max(1);
        let record = AuditRecord {
            id,
            created_ms: now_ms.max(self.audit.last().map_or(0, |a| a.created_ms)),
            kind: self.rng.random_range(0..AUDIT_KINDS.len()),
            author: 0,
            subject: self.rng.random_range(0..users) as u32,
            seed: self.rng.random(),
        };
        self.audit.push(record);
        id
    }
}
