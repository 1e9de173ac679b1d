//! The control API under `/__sim/`: ground truth, request counts, mutations, organization
//! events, faults, admin.
//!
//! It needs no credentials, is never faulted and is not logged, so tests and the demo can
//! steer the simulator without disturbing what the client under test observes.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::json;

use super::Shared;
use super::faults::{FaultPlan, FaultState, endpoint};

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/__sim/truth", get(truth))
        .route("/__sim/requests", get(requests))
        .route("/__sim/issues", post(create_issue))
        .route("/__sim/issues/{id}", put(update_issue).delete(delete_issue))
        .route("/__sim/issues/{id}/move", post(move_issue))
        .route("/__sim/users", post(add_user))
        .route("/__sim/audit", post(add_audit))
        .route("/__sim/org-events", post(add_org_events))
        .route("/__sim/faults", put(set_faults))
        .route("/__sim/admin", put(set_admin))
}

fn failed(error: anyhow::Error) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": format!("{error:#}") })),
    )
        .into_response()
}

async fn truth(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.truth()).into_response()
}

async fn requests(State(shared): State<Arc<Shared>>) -> Response {
    let log = shared.log();
    let mut endpoints: BTreeMap<String, u64> = BTreeMap::new();
    for entry in log.iter() {
        *endpoints
            .entry(endpoint(&entry.method, &entry.path))
            .or_default() += 1;
    }
    Json(json!({ "total": log.len(), "endpoints": endpoints })).into_response()
}

#[derive(Deserialize)]
struct CreateBody {
    project_key: String,
}

async fn create_issue(State(shared): State<Arc<Shared>>, Json(body): Json<CreateBody>) -> Response {
    match shared
        .site_mut()
        .create_issue(&body.project_key, shared.now_ms(), shared.lag_ms())
    {
        Ok(issue) => (StatusCode::CREATED, Json(issue)).into_response(),
        Err(e) => failed(e),
    }
}

async fn update_issue(State(shared): State<Arc<Shared>>, Path(id): Path<i64>) -> Response {
    match shared
        .site_mut()
        .update_issue(id, shared.now_ms(), shared.lag_ms())
    {
        Ok(issue) => Json(issue).into_response(),
        Err(e) => failed(e),
    }
}

async fn delete_issue(State(shared): State<Arc<Shared>>, Path(id): Path<i64>) -> Response {
    match shared
        .site_mut()
        .delete_issue(id, shared.now_ms(), shared.lag_ms())
    {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => failed(e),
    }
}

#[derive(Deserialize)]
struct MoveBody {
    to_project_key: String,
}

async fn move_issue(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<i64>,
    Json(body): Json<MoveBody>,
) -> Response {
    match shared
        .site_mut()
        .move_issue(id, &body.to_project_key, shared.now_ms(), shared.lag_ms())
    {
        Ok(issue) => Json(issue).into_response(),
        Err(e) => failed(e),
    }
}

async fn add_user(State(shared): State<Arc<Shared>>) -> Response {
    let account_id = shared.site_mut().add_user();
    (
        StatusCode::CREATED,
        Json(json!({ "accountId": account_id })),
    )
        .into_response()
}

async fn add_audit(State(shared): State<Arc<Shared>>) -> Response {
    let now = shared.now_ms();
    let id = shared.site_mut().add_audit_record(now);
    (StatusCode::CREATED, Json(json!({ "id": id }))).into_response()
}

#[derive(Deserialize)]
struct OrgEventsBody {
    #[serde(default = "one")]
    count: usize,
}

fn one() -> usize {
    1
}

/// Appends `count` organization events (default one), processed now, in order.
async fn add_org_events(
    State(shared): State<Arc<Shared>>,
    body: Option<Json<OrgEventsBody>>,
) -> Response {
    let count = body.map_or(1, |Json(b)| b.count).min(10_000);
    let ids: Vec<String> = (0..count)
        .map(|_| super::admin::append_event(&shared))
        .collect();
    (StatusCode::CREATED, Json(json!({ "ids": ids }))).into_response()
}

async fn set_faults(State(shared): State<Arc<Shared>>, Json(plan): Json<FaultPlan>) -> Response {
    *shared.faults() = FaultState::new(plan);
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct AdminBody {
    admin: bool,
}

async fn set_admin(State(shared): State<Arc<Shared>>, Json(body): Json<AdminBody>) -> Response {
    shared
        .admin
        .store(body.admin, std::sync::atomic::Ordering::Relaxed);
    StatusCode::NO_CONTENT.into_response()
}
