//! Deterministic generation of the simulated site from a seed and a size.
//!
//! Records are stored as compact structs of indices and epoch milliseconds; the bulky parts of
//! an issue (summary, description, custom fields) are derived from its per-issue seed when a
//! response is rendered, so a 100 000-issue site stays small in memory.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::SimConfig;
use super::catalog::{
    ANCHOR_MS, APP_NAMES, ARCHIVED_PROJECT, AUDIT_KINDS, DAY_MS, FIRST_AUDIT_ID, FIRST_ISSUE_ID,
    FIRST_NAMES, FIRST_PROJECT_ID, ISSUE_TYPES, LAST_NAMES, LOCALES, PRIORITIES, PROJECTS,
    RESOLUTIONS, STATUSES, TIME_ZONES, TYPE_EPIC, TYPE_SUBTASK, TYPE_TASK,
};
use super::site::Site;

/// A project. `archived_ms` is set for the archived project only.
pub(crate) struct Project {
    pub id: i64,
    pub key: String,
    pub name: String,
    pub type_key: &'static str,
    pub simplified: bool,
    pub private: bool,
    pub lead: u32,
    pub category: Option<usize>,
    pub archived_ms: Option<i64>,
    pub next_num: u32,
    pub uuid: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum AccountKind {
    Atlassian,
    App(&'static str),
    Customer,
}

/// A user account. Missing `email` or `time_zone` means the profile hides them.
pub(crate) struct User {
    pub account_id: String,
    pub kind: AccountKind,
    pub active: bool,
    pub display_name: String,
    pub email: Option<String>,
    pub time_zone: Option<String>,
    pub locale: &'static str,
}

/// An issue as the site stores it. Indices point into the catalog and the site's vectors.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Issue {
    pub id: i64,
    pub project: usize,
    pub num: u32,
    pub kind: u8,
    pub status: u8,
    pub priority: Option<u8>,
    pub resolution: Option<u8>,
    pub assignee: Option<u32>,
    pub reporter: u32,
    pub creator: u32,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub resolved_ms: Option<i64>,
    pub parent: Option<i64>,
    pub seed: u64,
    pub revision: u32,
    pub deleted: bool,
    /// What makes this issue's JSON hard to store, when a test asked for it.
    pub poison: Option<super::Poison>,
}

/// An audit record; its texts are derived from `kind` and `seed` when rendered.
pub(crate) struct AuditRecord {
    pub id: i64,
    pub created_ms: i64,
    pub kind: usize,
    pub author: u32,
    pub subject: u32,
    pub seed: u64,
}

/// A small, fast, deterministic stream of numbers (SplitMix64) used while rendering, where
/// seeding a cryptographic generator for every field would be wasteful.
pub(crate) struct Dice(u64);

impl Dice {
    pub fn new(seed: u64) -> Self {
        Dice(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// A number in `0..n`; `n` must be positive.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// The SplitMix64 finaliser: a good bijective scrambler of 64-bit values.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Picks an index with probability proportional to `weights`.
fn weighted(rng: &mut ChaCha8Rng, weights: &[u32]) -> usize {
    let total: u32 = weights.iter().sum();
    let mut roll = rng.random_range(0..total.max(1));
    for (i, w) in weights.iter().enumerate() {
        if roll < *w {
            return i;
        }
        roll -= w;
    }
    0
}

pub(crate) fn uuid_like(value: u128) -> String {
    let hex = format!("{value:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Builds the whole site for `config`. The same config always yields the same site.
pub(crate) fn generate(config: &SimConfig) -> Site {
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut users = vec![api_user(&mut rng, config)];
    for i in 1..config.users.max(1) {
        users.push(new_user(&mut rng, i));
    }
    let humans: Vec<u32> = (0..users.len() as u32)
        .filter(|&i| users[i as usize].kind == AccountKind::Atlassian)
        .collect();
    let mut projects = gen_projects(&mut rng, config, &humans);
    let issues = gen_issues(&mut rng, config.issues, &mut projects, &humans);
    let audit = gen_audit(&mut rng, config.audit_records, users.len());
    let mutation_rng = ChaCha8Rng::seed_from_u64(mix64(config.seed ^ 0x5EED));
    let mut site = Site::new(projects, users, issues, audit, mutation_rng);
    site.heavy = config.heavy;
    // From a stream of its own, so the rest of the site is what it was before work existed.
    let mut work_rng = ChaCha8Rng::seed_from_u64(mix64(config.seed ^ 0x0057_0C4B));
    super::work::generate(&mut site, &mut work_rng, config.long_worklog_share);
    site
}

/// The account the simulator authenticates as: always an active, visible, human account.
fn api_user(rng: &mut ChaCha8Rng, config: &SimConfig) -> User {
    User {
        account_id: format!("712020:{}", uuid_like(rng.random())),
        kind: AccountKind::Atlassian,
        active: true,
        display_name: "Demo Admin".to_owned(),
        email: Some(config.email.clone()),
        time_zone: Some(config.user_time_zone.clone()),
        locale: "en_US",
    }
}

/// A random account: mostly humans, some apps and portal customers, some inactive, and many
/// with privacy settings that hide the e-mail address or time zone.
pub(crate) fn new_user(rng: &mut ChaCha8Rng, index: usize) -> User {
    let roll: f64 = rng.random();
    let kind = if roll < 0.8 {
        AccountKind::Atlassian
    } else if roll < 0.9 {
        AccountKind::App(if rng.random_bool(0.7) {
            "service"
        } else {
            "agent"
        })
    } else {
        AccountKind::Customer
    };
    let first = FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())];
    let last = LAST_NAMES[rng.random_range(0..LAST_NAMES.len())];
    let uuid = uuid_like(rng.random());
    let (account_id, display_name) = match kind {
        AccountKind::Atlassian if rng.random_bool(0.3) => (
            format!("{:024x}", rng.random::<u128>() >> 32),
            format!("{first} {last}"),
        ),
        AccountKind::Atlassian => (format!("712020:{uuid}"), format!("{first} {last}")),
        AccountKind::App(_) => (
            format!("557058:{uuid}"),
            APP_NAMES[rng.random_range(0..APP_NAMES.len())].to_owned(),
        ),
        AccountKind::Customer => (format!("qm:{uuid}"), format!("{first} {last} (customer)")),
    };
    // Apps never show an e-mail address; a quarter of the others hide theirs.
    let email_visible = !matches!(kind, AccountKind::App(_)) && rng.random_bool(0.75);
    let email = email_visible.then(|| {
        let local: String = format!("{first}.{last}{index}")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
            .collect();
        format!("{}@example.com", local.to_lowercase())
    });
    let time_zone = rng
        .random_bool(0.8)
        .then(|| TIME_ZONES[rng.random_range(0..TIME_ZONES.len())].to_owned());
    User {
        account_id,
        kind,
        active: rng.random_bool(0.9),
        display_name,
        email,
        time_zone,
        locale: LOCALES[rng.random_range(0..LOCALES.len())],
    }
}

fn gen_projects(rng: &mut ChaCha8Rng, config: &SimConfig, humans: &[u32]) -> Vec<Project> {
    let live = config.projects.max(1);
    let mut projects = Vec::with_capacity(live + 1);
    for i in 0..=live {
        let (key, name, type_key) = if i == live {
            ARCHIVED_PROJECT
        } else if let Some(template) = PROJECTS.get(i) {
            *template
        } else {
            ("", "", "software")
        };
        let (key, name) = if key.is_empty() {
            (format!("P{i}"), format!("Project {i}"))
        } else {
            (key.to_owned(), name.to_owned())
        };
        let simplified = rng.random_bool(0.3);
        projects.push(Project {
            id: FIRST_PROJECT_ID + i as i64,
            key,
            name,
            type_key,
            simplified,
            private: rng.random_bool(0.1),
            lead: pick_human(rng, humans),
            category: rng.random_bool(0.6).then(|| rng.random_range(0..3)),
            archived_ms: (i == live).then_some(ANCHOR_MS - 30 * DAY_MS),
            next_num: 1,
            uuid: uuid_like(rng.random()),
        });
    }
    projects
}

/// How many issues each project gets: ~3 % for the archived project (the last one), ~42 % for
/// the first project, and the rest spread with random weights over the other live projects.
fn project_counts(rng: &mut ChaCha8Rng, total: usize, projects: usize) -> Vec<usize> {
    let live = projects - 1;
    let archived = (total * 3 / 100).max(total.min(5));
    let big = (total - archived) * 42 / 100;
    let mut counts = vec![0; projects];
    counts[live] = archived;
    counts[0] = big;
    let rest = total - archived - big;
    if live == 1 {
        counts[0] += rest;
        return counts;
    }
    let weights: Vec<usize> = (1..live).map(|_| rng.random_range(1..=10)).collect();
    let weight_sum: usize = weights.iter().sum();
    let mut given = 0;
    for (i, w) in weights.iter().enumerate() {
        let share = rest * w / weight_sum;
        counts[i + 1] = share;
        given += share;
    }
    counts[1] += rest - given;
    counts
}

/// A random human account (the API user when there is no other).
fn pick_human(rng: &mut ChaCha8Rng, humans: &[u32]) -> u32 {
    humans
        .get(rng.random_range(0..humans.len().max(1)))
        .copied()
        .unwrap_or(0)
}

/// What generation remembers per project to link issues: the recent standard issues that can
/// parent sub-tasks, and the latest epic.
struct Lineage {
    recent: Vec<Vec<i64>>,
    epics: Vec<Option<i64>>,
}

impl Lineage {
    fn new(projects: usize) -> Lineage {
        Lineage {
            recent: vec![Vec::new(); projects],
            epics: vec![None; projects],
        }
    }

    /// The parent for a new issue of `kind`; a sub-task without a possible parent becomes a
    /// task. Returns the (possibly changed) kind and the parent.
    fn parent(&self, rng: &mut ChaCha8Rng, project: usize, kind: u8) -> (u8, Option<i64>) {
        if kind == TYPE_SUBTASK {
            let candidates = &self.recent[project];
            let parent = candidates
                .get(rng.random_range(0..candidates.len().max(1)))
                .copied();
            return (if parent.is_some() { kind } else { TYPE_TASK }, parent);
        }
        if kind != TYPE_EPIC && rng.random_bool(0.2) {
            return (kind, self.epics[project]);
        }
        (kind, None)
    }

    fn record(&mut self, project: usize, kind: u8, id: i64) {
        if kind == TYPE_EPIC {
            self.epics[project] = Some(id);
        } else if kind != TYPE_SUBTASK {
            let list = &mut self.recent[project];
            list.push(id);
            if list.len() > 50 {
                list.remove(0);
            }
        }
    }
}

fn gen_issues(
    rng: &mut ChaCha8Rng,
    total: usize,
    projects: &mut [Project],
    humans: &[u32],
) -> Vec<Issue> {
    let counts = project_counts(rng, total, projects.len());
    let mut owners: Vec<usize> = counts
        .iter()
        .enumerate()
        .flat_map(|(p, &n)| std::iter::repeat_n(p, n))
        .collect();
    owners.shuffle(rng);
    let start = ANCHOR_MS - 730 * DAY_MS;
    let mut created: Vec<i64> = (0..total)
        .map(|_| start + rng.random_range(0..730 * DAY_MS - 3_600_000))
        .collect();
    created.sort_unstable();
    let type_weights: Vec<u32> = ISSUE_TYPES.iter().map(|t| t.weight).collect();
    let status_weights: Vec<u32> = STATUSES.iter().map(|s| s.weight).collect();
    let mut lineage = Lineage::new(projects.len());
    let mut issues = Vec::with_capacity(total);
    let mut previous_updated = 0;
    for (i, (&project, &created_ms)) in owners.iter().zip(&created).enumerate() {
        let id = FIRST_ISSUE_ID + i as i64;
        let drawn = weighted(rng, &type_weights) as u8;
        let (kind, parent) = lineage.parent(rng, project, drawn);
        let updated_ms = pick_updated(rng, created_ms, previous_updated);
        previous_updated = updated_ms;
        let status = weighted(rng, &status_weights) as u8;
        let done = STATUSES[status as usize].category == 2;
        let reporter = pick_human(rng, humans);
        let num = projects[project].next_num;
        projects[project].next_num += 1;
        issues.push(Issue {
            id,
            project,
            num,
            kind,
            status,
            priority: rng
                .random_bool(0.9)
                .then(|| rng.random_range(0..PRIORITIES.len() as u8)),
            resolution: done.then(|| rng.random_range(0..RESOLUTIONS.len() as u8)),
            assignee: rng.random_bool(0.75).then(|| pick_human(rng, humans)),
            reporter,
            creator: if rng.random_bool(0.9) { reporter } else { 0 },
            created_ms,
            updated_ms,
            resolved_ms: done.then_some(updated_ms),
            parent,
            seed: rng.random(),
            revision: 0,
            deleted: false,
            poison: None,
        });
        lineage.record(project, kind, id);
    }
    issues
}

/// Chooses `updated` for an issue created at `created_ms`. Many issues share the previous
/// issue's exact instant or land on a whole second, so ties in `ORDER BY updated` are common
/// and clients must break them with the key.
fn pick_updated(rng: &mut ChaCha8Rng, created_ms: i64, previous_updated: i64) -> i64 {
    if rng.random_bool(0.2) && previous_updated >= created_ms {
        return previous_updated;
    }
    let span = ANCHOR_MS - created_ms;
    let roll: f64 = rng.random();
    let limit = if roll < 0.3 {
        span.min(3_600_000)
    } else if roll < 0.6 {
        span.min(30 * DAY_MS)
    } else {
        span
    };
    let mut updated = created_ms + rng.random_range(0..=limit.max(0));
    if rng.random_bool(0.3) {
        updated -= updated % 1000;
    }
    updated.max(created_ms)
}

fn gen_audit(rng: &mut ChaCha8Rng, count: usize, users: usize) -> Vec<AuditRecord> {
    let start = ANCHOR_MS - 730 * DAY_MS;
    let mut created: Vec<i64> = (0..count)
        .map(|_| start + rng.random_range(0..730 * DAY_MS))
        .collect();
    created.sort_unstable();
    created
        .into_iter()
        .enumerate()
        .map(|(i, created_ms)| AuditRecord {
            id: FIRST_AUDIT_ID + i as i64,
            created_ms,
            kind: rng.random_range(0..AUDIT_KINDS.len()),
            author: rng.random_range(0..users.max(1)) as u32,
            subject: rng.random_range(0..users.max(1)) as u32,
            seed: rng.random(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_and_one_project_dominates() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let counts = project_counts(&mut rng, 260, 4);
        assert_eq!(counts.iter().sum::<usize>(), 260);
        assert!(counts[0] > 100, "{counts:?}");
        assert!(counts[3] > 0, "{counts:?}");
    }

    #[test]
    fn updated_never_precedes_created_and_ties_occur() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut projects = gen_projects(&mut rng, &SimConfig::small(), &[0]);
        let issues = gen_issues(&mut rng, 500, &mut projects, &[0]);
        assert!(
            issues
                .iter()
                .all(|i| i.updated_ms >= i.created_ms && i.updated_ms <= ANCHOR_MS)
        );
        let mut stamps: Vec<i64> = issues.iter().map(|i| i.updated_ms).collect();
        stamps.sort_unstable();
        stamps.dedup();
        assert!(stamps.len() < issues.len() - 50, "expected many ties");
    }
}
