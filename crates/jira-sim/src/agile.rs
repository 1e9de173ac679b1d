//! The Agile API: a board per project (scrum for software projects, kanban for the others) and
//! each scrum board's sprints, two-week slots on the calendar (the same ids issues carry in their
//! Sprint field): closed once over, active while the site's clock is in them, and the next one
//! future. Pages of 50 at most, `isLast` and no `total` for sprints, as Jira answers.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use serde_json::{Value, json};

use super::Shared;
use super::catalog::DAY_MS;
use super::render::Ctx;
use super::routes::{ApiError, Params, Reply};
use super::site::Site;

const SLOT_MS: i64 = 14 * DAY_MS;
const PAGE: i64 = 50;

/// A board: (id, name, scrum, project index).
pub(crate) fn boards(site: &Site) -> Vec<(i64, String, bool, usize)> {
    site.projects
        .iter()
        .enumerate()
        .filter(|(_, p)| p.archived_ms.is_none())
        .map(|(index, p)| {
            let scrum = p.type_key == "software";
            (1 + index as i64, format!("{} board", p.key), scrum, index)
        })
        .collect()
}

/// A sprint: (id, name, state, start ms, end ms).
pub(crate) struct Sprint {
    pub id: i64,
    pub name: String,
    pub state: &'static str,
    pub start: i64,
    pub end: i64,
}

/// The sprints of the scrum board of the project at `index`, oldest first: every slot from
/// its first issue's to the current one, and the next.
pub(crate) fn sprints(site: &Site, index: usize, now: i64) -> Vec<Sprint> {
    let project = &site.projects[index];
    let Some(first) = site
        .issues
        .iter()
        .filter(|i| i.project == index)
        .map(|i| i.created_ms)
        .min()
    else {
        return Vec::new();
    };
    let board = 1 + index as i64;
    let current = now.div_euclid(SLOT_MS);
    (first.div_euclid(SLOT_MS)..=current + 1)
        .map(|number| {
            let (start, end) = (number * SLOT_MS, (number + 1) * SLOT_MS);
            let state = if end <= now {
                "closed"
            } else if start <= now {
                "active"
            } else {
                "future"
            };
            Sprint {
                id: board * 100_000 + number % 100_000,
                name: format!("{} Sprint {number}", project.key),
                state,
                start,
                end,
            }
        })
        .collect()
}

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/rest/agile/1.0/board", get(board_list))
        .route("/rest/agile/1.0/board/{id}/sprint", get(sprint_list))
}

fn paging(raw: Option<String>) -> Result<(usize, usize), ApiError> {
    let params = Params::parse(raw);
    let start = params.int("startAt", 0)?.max(0) as usize;
    let max = match params.int("maxResults", PAGE)? {
        m if m <= 0 => PAGE,
        m => m.min(PAGE),
    } as usize;
    Ok((start, max))
}

async fn board_list(State(shared): State<Arc<Shared>>, RawQuery(raw): RawQuery) -> Reply {
    let (start, max) = paging(raw)?;
    let site = shared.site();
    let base = &shared.base_url;
    let all = boards(&site);
    let total = all.len();
    let values: Vec<Value> = all
        .into_iter()
        .skip(start)
        .take(max)
        .map(|(id, name, scrum, index)| {
            let p = &site.projects[index];
            json!({"id": id, "self": format!("{base}/rest/agile/1.0/board/{id}"), "name": name,
                   "type": if scrum { "scrum" } else { "kanban" },
                   "location": {"projectId": p.id, "projectKey": p.key, "projectName": p.name,
                                "projectTypeKey": p.type_key}})
        })
        .collect();
    let is_last = start + values.len() >= total;
    Ok(Json(
        json!({"maxResults": max, "startAt": start, "total": total, "isLast": is_last,
                   "values": values}),
    )
    .into_response())
}

async fn sprint_list(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Reply {
    let (start, max) = paging(raw)?;
    let site = shared.site();
    let board = id.parse::<i64>().ok();
    let Some((_, _, scrum, index)) = boards(&site).into_iter().find(|b| Some(b.0) == board) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "Board does not exist or you do not have permission to see it.",
        ));
    };
    if !scrum {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "The board does not support sprints",
        ));
    }
    let ctx = Ctx::new(&shared, &site);
    let base = &shared.base_url;
    let all = sprints(&site, index, shared.now_ms());
    let values: Vec<Value> = all
        .iter()
        .skip(start)
        .take(max)
        .map(|s| {
            let mut v = json!({"id": s.id, "self": format!("{base}/rest/agile/1.0/sprint/{}", s.id),
                "state": s.state, "name": s.name, "originBoardId": 1 + index as i64, "goal": "",
                "createdDate": ctx.timestamp(s.start - DAY_MS)});
            if s.state != "future" {
                v["startDate"] = json!(ctx.timestamp(s.start));
                v["endDate"] = json!(ctx.timestamp(s.end));
            }
            if s.state == "closed" {
                v["completeDate"] = json!(ctx.timestamp(s.end));
            }
            v
        })
        .collect();
    let is_last = start + values.len() >= all.len();
    Ok(
        Json(json!({"maxResults": max, "startAt": start, "isLast": is_last, "values": values}))
            .into_response(),
    )
}
