//! Values derived from an issue's seed at render time: texts, labels, dates and custom fields.
//!
//! Each field draws from its own stream (seed, revision, field id), so a value does not depend
//! on which other fields were requested, and an update (a new revision) changes the texts.

use serde_json::{Value, json};

use super::catalog::{COMPONENTS, DAY_MS, LABELS, OBJECTS, QUALIFIERS, VERBS};
use super::data::{Dice, Issue, mix64};
use super::render::Ctx;
use super::site::Site;

/// The per-field stream of an issue's current revision.
pub(crate) fn dice(issue: &Issue, field: &str) -> Dice {
    let salt = field.bytes().fold(0xCBF2_9CE4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
    });
    Dice::new(mix64(issue.seed ^ (u64::from(issue.revision) << 40) ^ salt))
}

pub(crate) fn summary(issue: &Issue) -> String {
    let mut d = dice(issue, "summary");
    let (verb, object, qualifier) = (d.pick(&VERBS), d.pick(&OBJECTS), d.pick(&QUALIFIERS));
    if qualifier.is_empty() {
        format!("{verb} {object}")
    } else {
        format!("{verb} {object} {qualifier}")
    }
}

fn sentence(d: &mut Dice) -> String {
    format!(
        "{} the {} {}.",
        d.pick(&VERBS),
        d.pick(&OBJECTS),
        d.pick(&QUALIFIERS)
    )
}

/// An Atlassian Document Format document of `paragraphs` paragraphs of a few sentences each,
/// some with a strong mark, as long descriptions on real sites are.
fn long_adf(d: &mut Dice, paragraphs: usize) -> Value {
    let content: Vec<Value> = (0..paragraphs)
        .map(|_| {
            let mut runs = Vec::new();
            for _ in 0..d.below(3) + 2 {
                let text = format!("{} ", sentence(d));
                if d.chance(0.15) {
                    runs.push(json!({"type": "text", "text": text, "marks": [{"type": "strong"}]}));
                } else {
                    runs.push(json!({"type": "text", "text": text}));
                }
            }
            json!({"type": "paragraph", "content": runs})
        })
        .collect();
    json!({"type": "doc", "version": 1, "content": content})
}

/// A heavy site's value of one of its extra custom fields ([`super::fields::heavy_kind`]).
fn heavy_value(ctx: &Ctx, issue: &Issue, d: &mut Dice, kind: &str) -> Value {
    let users = ctx.site.users.len().max(1);
    maybe(d, 0.1, |d| match kind {
        "textfield" => json!(format!("REF-{:05}-{}", d.below(100_000), d.pick(&OBJECTS))),
        "textarea" => {
            let paragraphs = d.below(4) + 3;
            long_adf(d, paragraphs)
        }
        "float" => json!(d.below(1_000_000) as f64 / 8.0),
        "datetime" => json!(ctx.timestamp(issue.created_ms + d.below(1_000_000_000) as i64)),
        "userpicker" => ctx.user_details(d.below(users) as u32),
        "url" => json!(format!(
            "https://docs.example.com/{}/{}",
            issue.id,
            d.below(1000)
        )),
        "labels" => json!(
            (0..d.below(4) + 1)
                .map(|_| d.pick(&LABELS))
                .collect::<Vec<_>>()
        ),
        "datepicker" => json!(ctx.date(issue.created_ms + d.below(120) as i64 * DAY_MS)),
        "multiuserpicker" => json!(
            (0..d.below(3) + 1)
                .map(|_| ctx.user_details(d.below(users) as u32))
                .collect::<Vec<_>>()
        ),
        _ => Value::Null,
    })
}

/// An Atlassian Document Format document of one or two paragraphs, sometimes with a list.
fn adf(d: &mut Dice) -> Value {
    let mut content =
        vec![json!({"type": "paragraph", "content": [{"type": "text", "text": sentence(d)}]})];
    if d.chance(0.4) {
        let items: Vec<Value> = (0..d.below(3) + 1)
            .map(|_| json!({"type": "listItem", "content": [{"type": "paragraph", "content": [{"type": "text", "text": sentence(d)}]}]}))
            .collect();
        content.push(json!({"type": "bulletList", "content": items}));
    }
    json!({"type": "doc", "version": 1, "content": content})
}

/// The options of the select field Severity (`customfield_10015`): (id, value).
pub(crate) const SEVERITY: [(i64, &str); 3] =
    [(10_200, "Critical"), (10_201, "Major"), (10_202, "Minor")];
/// The options of the multi-select field Platforms (`customfield_10016`).
pub(crate) const PLATFORMS: [(i64, &str); 4] = [
    (10_210, "iOS"),
    (10_211, "Android"),
    (10_212, "Web"),
    (10_213, "Desktop"),
];
/// The cascading field Region (`customfield_10017`): (parent id, parent, child id, child).
pub(crate) const REGIONS: [(i64, &str, i64, &str); 4] = [
    (10_220, "EMEA", 10_223, "Germany"),
    (10_220, "EMEA", 10_224, "France"),
    (10_221, "Americas", 10_225, "Brazil"),
    (10_222, "APAC", 10_226, "日本"),
];
/// The cascading field's parent options.
pub(crate) const REGION_PARENTS: [(i64, &str); 3] =
    [(10_220, "EMEA"), (10_221, "Americas"), (10_222, "APAC")];

fn option(ctx: &Ctx, id: i64, value: &str) -> Value {
    json!({"self": format!("{}/rest/api/3/customFieldOption/{id}", ctx.base), "value": value, "id": id.to_string()})
}

/// A field value that is null with probability `p_null`, otherwise `make`'s result.
fn maybe(d: &mut Dice, p_null: f64, make: impl FnOnce(&mut Dice) -> Value) -> Value {
    if d.chance(p_null) {
        Value::Null
    } else {
        make(d)
    }
}

/// Values of the fields not rendered by `Ctx::field` itself: description, labels, due date and
/// the custom fields.
pub(crate) fn value(ctx: &Ctx, issue: &Issue, id: &str) -> Value {
    let mut d = dice(issue, id);
    let users = ctx.site.users.len().max(1);
    match id {
        // A heavy site's descriptions run to pages, as long specifications do.
        "description" if ctx.site.heavy => maybe(&mut d, 0.05, |d| {
            let paragraphs = d.below(12) + 12;
            long_adf(d, paragraphs)
        }),
        "description" => maybe(&mut d, 0.2, adf),
        "labels" => json!(labels(issue)),
        "duedate" => maybe(&mut d, 0.6, |d| {
            json!(ctx.date(issue.created_ms + (d.below(90) as i64 + 1) * DAY_MS))
        }),
        "customfield_10010" => maybe(&mut d, 0.3, |d| json!(format!("TEAM-{:03}", d.below(40)))),
        "customfield_10011" => maybe(&mut d, 0.5, adf),
        "customfield_10012" => maybe(&mut d, 0.4, |d| json!(d.below(100_000) as f64 / 4.0)),
        "customfield_10013" => maybe(&mut d, 0.5, |d| {
            json!(ctx.date(issue.created_ms + d.below(30) as i64 * DAY_MS))
        }),
        "customfield_10014" => maybe(&mut d, 0.6, |d| {
            json!(ctx.timestamp(issue.created_ms + d.below(1_000_000_000) as i64))
        }),
        "customfield_10015" => maybe(&mut d, 0.3, |d| {
            let (oid, name) = d.pick(&SEVERITY);
            option(ctx, oid, name)
        }),
        "customfield_10016" => maybe(&mut d, 0.4, |d| {
            let all = PLATFORMS;
            let start = d.below(all.len());
            let count = d.below(all.len() - start) + 1;
            json!(
                all[start..start + count]
                    .iter()
                    .map(|(i, v)| option(ctx, *i, v))
                    .collect::<Vec<_>>()
            )
        }),
        "customfield_10017" => maybe(&mut d, 0.5, |d| {
            let (pid, parent, cid, child) = d.pick(&REGIONS);
            let mut value = option(ctx, pid, parent);
            value["child"] = option(ctx, cid, child);
            value
        }),
        "customfield_10018" => maybe(&mut d, 0.5, |d| ctx.user_details(d.below(users) as u32)),
        "customfield_10019" => maybe(&mut d, 0.6, |d| {
            json!(
                (0..d.below(3) + 1)
                    .map(|_| ctx.user_details(d.below(users) as u32))
                    .collect::<Vec<_>>()
            )
        }),
        "customfield_10020" => sprints(ctx, issue),
        "customfield_10021" => maybe(&mut d, 0.6, |d| json!([d.pick(&LABELS), "imported"])),
        "customfield_10022" => maybe(&mut d, 0.7, |d| {
            json!(format!("https://runbooks.example.com/{}", d.below(500)))
        }),
        "customfield_10023" => maybe(&mut d, 0.5, |d| {
            json!(d.pick(&[1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 0.5]))
        }),
        _ if ctx.site.heavy => match super::fields::heavy_kind(id) {
            Some(kind) => heavy_value(ctx, issue, &mut d, kind),
            None => Value::Null,
        },
        _ => Value::Null,
    }
}

/// The issue's labels, sorted, each once.
pub(crate) fn labels(issue: &Issue) -> Vec<&'static str> {
    let mut d = dice(issue, "labels");
    let mut labels: Vec<&str> = (0..d.below(4)).map(|_| d.pick(&LABELS)).collect();
    labels.sort_unstable();
    labels.dedup();
    labels
}

/// A sprint an issue is in: its id, name, board and start (epoch ms).
pub(crate) struct SprintRef {
    pub id: i64,
    pub name: String,
    pub board: i64,
    pub start_ms: i64,
}

/// The sprints of the issue's Sprint field. Sprints exist on software projects only; an issue
/// may have been carried over several.
pub(crate) fn sprint_refs(site: &Site, issue: &Issue) -> Vec<SprintRef> {
    let mut d = dice(issue, "customfield_10020");
    let project = &site.projects[issue.project];
    if project.type_key != "software" || d.chance(0.4) {
        return Vec::new();
    }
    let board = 1 + issue.project as i64;
    // Sprints are two-week slots on the calendar, numbered from the epoch.
    let first = issue.created_ms / (14 * DAY_MS);
    (0..d.below(2) + 1)
        .map(|n| {
            let number = first + n as i64;
            SprintRef {
                id: board * 100_000 + number % 100_000,
                name: format!("{} Sprint {number}", project.key),
                board,
                start_ms: number * 14 * DAY_MS,
            }
        })
        .collect()
}

fn sprints(ctx: &Ctx, issue: &Issue) -> Value {
    let refs = sprint_refs(ctx.site, issue);
    if refs.is_empty() {
        return Value::Null;
    }
    let values: Vec<Value> = refs
        .into_iter()
        .map(|s| {
            // Issues are created before the site's clock: their sprints are over (the Agile
            // API's sprints of a board agree).
            let end = s.start_ms + 14 * DAY_MS;
            json!({
                "id": s.id, "name": s.name, "state": "closed", "boardId": s.board, "goal": "",
                "startDate": ctx.timestamp(s.start_ms), "endDate": ctx.timestamp(end),
                "completeDate": ctx.timestamp(end),
            })
        })
        .collect();
    json!(values)
}

/// The issue's components: (id, name).
pub(crate) fn components(issue: &Issue) -> Vec<(i64, &'static str)> {
    let mut dice = dice(issue, "components");
    let project = issue.project as i64;
    let count = dice.below(3);
    (0..count)
        .map(|j| {
            let slot = (project as usize + j) % COMPONENTS.len();
            (10_000 + project * 10 + j as i64, COMPONENTS[slot])
        })
        .collect()
}

/// The issue's fix version, if any: (id, its number j: the name is `{j + 1}.0`).
pub(crate) fn fix_version(issue: &Issue) -> Option<(i64, i64)> {
    let mut dice = dice(issue, "fixVersions");
    if !dice.chance(0.5) {
        return None;
    }
    let j = dice.below(4) as i64;
    Some((10_100 + issue.project as i64 * 10 + j, j))
}
