//! A parsed query compiled against the site: names resolved, dates turned into instants,
//! then matched against issues and used to sort them.

use std::cmp::Ordering;

use chrono::{LocalResult, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;

use super::parse::{Expr, Field, JqlError, Op, SortField, err};
use crate::data::Issue;
use crate::site::Site;

/// Reads a date literal as Jira does: epoch milliseconds for a bare integer, a relative offset
/// such as `-15m`, or a wall-clock date or date-time in the user's zone.
pub(crate) fn date_literal(text: &str, zone: Tz, now_ms: i64) -> Option<i64> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    if let Some(offset) = relative_ms(text) {
        return Some(now_ms + offset);
    }
    let naive = ["%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .or_else(|| {
            ["%Y/%m/%d", "%Y-%m-%d"]
                .iter()
                .find_map(|f| NaiveDate::parse_from_str(text, f).ok())
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })?;
    Some(local_to_ms(naive, zone))
}

/// Wall-clock time in `zone` to an instant. An ambiguous time (DST fall-back) takes the earlier
/// instant; a time inside a DST gap is shifted forward by the gap, using the offset in force
/// before it, as Java's `ZonedDateTime` does.
fn local_to_ms(naive: NaiveDateTime, zone: Tz) -> i64 {
    match zone.from_local_datetime(&naive) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.timestamp_millis(),
        LocalResult::None => {
            let before = zone
                .from_local_datetime(&(naive - chrono::Duration::days(1)))
                .earliest();
            let offset_secs = before.map_or(0, |t| {
                use chrono::Offset;
                i64::from(t.offset().fix().local_minus_utc())
            });
            (naive.and_utc().timestamp() - offset_secs) * 1000
        }
    }
}

fn relative_ms(text: &str) -> Option<i64> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'-' => (-1, &text[1..]),
        b'+' => (1, &text[1..]),
        _ => (1, text),
    };
    let unit = rest.chars().last()?;
    let amount: i64 = rest[..rest.len() - unit.len_utf8()].parse().ok()?;
    let unit_ms = match unit {
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        'w' => 7 * 86_400_000,
        _ => return None,
    };
    Some(sign * amount * unit_ms)
}

/// A query compiled against the site: project names resolved, dates turned into instants.
pub(crate) enum Pred {
    All(Vec<Pred>),
    Any(Vec<Pred>),
    Not(Box<Pred>),
    Const(bool),
    Projects { negate: bool, projects: Vec<usize> },
    Ids { negate: bool, ids: Vec<i64> },
    IdCmp { op: Op, id: i64 },
    KeyCmp { op: Op, project: usize, num: u32 },
    Time { created: bool, op: Op, ms: i64 },
}

pub(crate) fn compile(expr: &Expr, site: &Site, zone: Tz, now_ms: i64) -> Result<Pred, JqlError> {
    match expr {
        Expr::And(parts) => Ok(Pred::All(
            parts
                .iter()
                .map(|p| compile(p, site, zone, now_ms))
                .collect::<Result<_, _>>()?,
        )),
        Expr::Or(parts) => Ok(Pred::Any(
            parts
                .iter()
                .map(|p| compile(p, site, zone, now_ms))
                .collect::<Result<_, _>>()?,
        )),
        Expr::Not(inner) => Ok(Pred::Not(Box::new(compile(inner, site, zone, now_ms)?))),
        Expr::Clause { field, op, values } => clause(*field, *op, values, site, zone, now_ms),
    }
}

fn clause(
    field: Field,
    op: Op,
    values: &[String],
    site: &Site,
    zone: Tz,
    now_ms: i64,
) -> Result<Pred, JqlError> {
    // Every field here always has a value, so emptiness checks are constants.
    match op {
        Op::IsEmpty => return Ok(Pred::Const(false)),
        Op::IsNotEmpty => return Ok(Pred::Const(true)),
        _ => {}
    }
    let negate = matches!(op, Op::Ne | Op::NotIn);
    match field {
        Field::Project => project_clause(op, values, site, negate),
        Field::Issue => issue_clause(op, values, site, negate),
        Field::Updated => date_clause(false, op, values, zone, now_ms),
        Field::Created => date_clause(true, op, values, zone, now_ms),
    }
}

fn project_clause(op: Op, values: &[String], site: &Site, negate: bool) -> Result<Pred, JqlError> {
    if !matches!(op, Op::Eq | Op::Ne | Op::In | Op::NotIn) {
        return err(format!(
            "The operator '{}' is not supported by the 'project' field.",
            op_text(op)
        ));
    }
    let projects = values
        .iter()
        .map(|v| {
            site.project_index(v).ok_or_else(|| {
                JqlError(format!(
                    "The value '{v}' does not exist for the field 'project'."
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Pred::Projects { negate, projects })
}

/// `in` and `not in` on a date compare each value for equality.
fn date_clause(
    created: bool,
    op: Op,
    values: &[String],
    zone: Tz,
    now_ms: i64,
) -> Result<Pred, JqlError> {
    let name = if created { "created" } else { "updated" };
    let per_value = match op {
        Op::In | Op::NotIn => Op::Eq,
        other => other,
    };
    let mut preds = Vec::with_capacity(values.len());
    for value in values {
        let Some(ms) = date_literal(value, zone, now_ms) else {
            return err(format!(
                "Date value '{value}' for field '{name}' is invalid. Valid formats include: \
                 'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period \
                 format e.g. '-5d', '4w 2d'."
            ));
        };
        preds.push(Pred::Time {
            created,
            op: per_value,
            ms,
        });
    }
    let any = Pred::Any(preds);
    Ok(if op == Op::NotIn {
        Pred::Not(Box::new(any))
    } else {
        any
    })
}

fn issue_clause(op: Op, values: &[String], site: &Site, negate: bool) -> Result<Pred, JqlError> {
    let numeric = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
    if matches!(op, Op::Eq | Op::Ne | Op::In | Op::NotIn) {
        let mut ids = Vec::new();
        for value in values {
            if !numeric(value) && !value.contains('-') {
                return err(format!(
                    "The issue key '{value}' for field 'key' is invalid."
                ));
            }
            // Unknown or deleted issues simply match nothing.
            ids.extend(site.resolve(value));
        }
        return Ok(Pred::Ids { negate, ids });
    }
    let value = values.first().map(String::as_str).unwrap_or_default();
    if numeric(value) {
        let id = value
            .parse()
            .map_err(|_| JqlError(format!("The issue id '{value}' is invalid.")))?;
        return Ok(Pred::IdCmp { op, id });
    }
    let parsed = value
        .rsplit_once('-')
        .and_then(|(project, num)| Some((site.project_index(project)?, num.parse::<u32>().ok()?)));
    match parsed {
        Some((project, num)) => Ok(Pred::KeyCmp { op, project, num }),
        None => err(format!(
            "The issue key '{value}' for field 'key' is invalid."
        )),
    }
}

/// The first issue id or key an issue clause names that does not exist, if any: Data Center
/// validates a query against the site and refuses it (400) for such a reference.
pub(crate) fn missing_issue(expr: &Expr, site: &Site) -> Option<String> {
    match expr {
        Expr::And(items) | Expr::Or(items) => items.iter().find_map(|e| missing_issue(e, site)),
        Expr::Not(inner) => missing_issue(inner, site),
        Expr::Clause {
            field: Field::Issue,
            op: Op::Eq | Op::Ne | Op::In | Op::NotIn,
            values,
        } => values.iter().find(|v| site.resolve(v).is_none()).cloned(),
        Expr::Clause { .. } => None,
    }
}

fn op_text(op: Op) -> &'static str {
    match op {
        Op::Eq => "=",
        Op::Ne => "!=",
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::Lt => "<",
        Op::Le => "<=",
        Op::In => "in",
        Op::NotIn => "not in",
        Op::IsEmpty => "is empty",
        Op::IsNotEmpty => "is not empty",
    }
}

fn compare(op: Op, ordering: Ordering) -> bool {
    match op {
        Op::Eq | Op::In => ordering == Ordering::Equal,
        Op::Ne | Op::NotIn => ordering != Ordering::Equal,
        Op::Gt => ordering == Ordering::Greater,
        Op::Ge => ordering != Ordering::Less,
        Op::Lt => ordering == Ordering::Less,
        Op::Le => ordering != Ordering::Greater,
        Op::IsEmpty => false,
        Op::IsNotEmpty => true,
    }
}

impl Pred {
    pub fn matches(&self, issue: &Issue) -> bool {
        match self {
            Pred::All(parts) => parts.iter().all(|p| p.matches(issue)),
            Pred::Any(parts) => parts.iter().any(|p| p.matches(issue)),
            Pred::Not(inner) => !inner.matches(issue),
            Pred::Const(value) => *value,
            Pred::Projects { negate, projects } => projects.contains(&issue.project) != *negate,
            Pred::Ids { negate, ids } => ids.contains(&issue.id) != *negate,
            Pred::IdCmp { op, id } => compare(*op, issue.id.cmp(id)),
            Pred::KeyCmp { op, project, num } => {
                issue.project == *project && compare(*op, issue.num.cmp(num))
            }
            Pred::Time { created, op, ms } => {
                let value = if *created {
                    issue.created_ms
                } else {
                    issue.updated_ms
                };
                compare(*op, value.cmp(ms))
            }
        }
    }
}

/// Orders issues by the query's `ORDER BY` (default `key ASC`), then by id, so that every
/// ordering is total and offset paging is well defined.
pub(crate) fn sort(issues: &mut [&Issue], order: &[(SortField, bool)], site: &Site) {
    let default = [(SortField::Key, true)];
    let order = if order.is_empty() {
        &default[..]
    } else {
        order
    };
    issues.sort_by(|a, b| {
        for (field, ascending) in order {
            let ordering = match field {
                SortField::Key => site.projects[a.project]
                    .key
                    .cmp(&site.projects[b.project].key)
                    .then(a.num.cmp(&b.num)),
                SortField::Id => a.id.cmp(&b.id),
                SortField::Updated => a.updated_ms.cmp(&b.updated_ms),
                SortField::Created => a.created_ms.cmp(&b.created_ms),
                SortField::Project => site.projects[a.project]
                    .key
                    .cmp(&site.projects[b.project].key),
            };
            let ordering = if *ascending {
                ordering
            } else {
                ordering.reverse()
            };
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        a.id.cmp(&b.id)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_literals_are_read_in_the_users_zone() {
        let la: Tz = "America/Los_Angeles".parse().expect("zone");
        let kiritimati: Tz = "Pacific/Kiritimati".parse().expect("zone");
        // 2025-03-04 09:15 UTC.
        let want = 1_741_079_700_000;
        assert_eq!(date_literal("2025/03/04 01:15", la, 0), Some(want));
        assert_eq!(date_literal("2025-03-04 23:15", kiritimati, 0), Some(want));
        assert_eq!(
            date_literal("2025/03/04", chrono_tz::UTC, 0),
            Some(want - 9 * 3_600_000 - 15 * 60_000)
        );
        assert_eq!(date_literal("1741079700000", la, 0), Some(want));
        assert_eq!(date_literal("-15m", la, want), Some(want - 15 * 60_000));
        assert_eq!(date_literal("2w", la, 0), Some(14 * 86_400_000));
        assert_eq!(date_literal("yesterday", la, 0), None);
    }

    #[test]
    fn dst_ambiguity_takes_the_earlier_instant_and_gaps_shift_forward() {
        let la: Tz = "America/Los_Angeles".parse().expect("zone");
        // 2024-11-03 01:30 happens twice in Los Angeles; the first is 08:30 UTC (PDT).
        assert_eq!(
            date_literal("2024/11/03 01:30", la, 0),
            Some(1_730_622_600_000)
        );
        // 2024-03-10 02:30 does not exist; it becomes 03:30 PDT, which is 10:30 UTC.
        assert_eq!(
            date_literal("2024/03/10 02:30", la, 0),
            Some(1_710_066_600_000)
        );
    }
}
