//! `/v1/versions/{domain}/...`: the version authority over HTTP (SPEC §6). Replies are JSON;
//! errors as everywhere in the admin API (400 fix the request, 422 refused, 503 retry).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::{VersionReply, VersionReq};
use crate::daemon::Shared;
use crate::daemon::http::{bad_path, clip, error, int_param, unavailable};

/// The version routes, merged into the admin router.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/versions/{domain}", get(status))
        .route("/v1/versions/{domain}/commit", post(commit))
        .route("/v1/versions/{domain}/read", get(read))
        .route("/v1/versions/{domain}/report", post(report))
}

type DomainPath = Result<Path<String>, PathRejection>;

async fn commit(State(shared): State<Arc<Shared>>, path: DomainPath) -> Response {
    one(&shared, path, VersionReq::Commit).await
}

async fn read(State(shared): State<Arc<Shared>>, path: DomainPath) -> Response {
    one(&shared, path, VersionReq::Read).await
}

async fn status(State(shared): State<Arc<Shared>>, path: DomainPath) -> Response {
    one(&shared, path, VersionReq::Status).await
}

async fn report(
    State(shared): State<Arc<Shared>>,
    path: DomainPath,
    RawQuery(query): RawQuery,
) -> Response {
    let version = match int_param(query.as_deref(), "version", 0..=u64::MAX) {
        Ok(v) => v,
        Err(resp) => return *resp,
    };
    let Some(version) = version else {
        return error(
            StatusCode::BAD_REQUEST,
            "missing ?version=V: the commit version that succeeded",
        );
    };
    one(&shared, path, |d| VersionReq::Report(d, version)).await
}

/// Parses the domain, answers the request, renders the reply.
async fn one(shared: &Shared, path: DomainPath, req: impl FnOnce(u64) -> VersionReq) -> Response {
    let domain = match path {
        Ok(Path(d)) => match d.parse::<u64>() {
            Ok(d) => d,
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "domain must be an integer in 0..={}, got '{}'",
                        u64::MAX,
                        clip(&d)
                    ),
                );
            }
        },
        Err(e) => return bad_path(e),
    };
    let req = req(domain);
    #[cfg(feature = "cluster")]
    if let Some(refusal) = shared.cluster.as_ref().and_then(|n| n.client_refusal()) {
        return unavailable(shared, refusal);
    }
    let mut replies = Vec::with_capacity(1);
    crate::daemon::versions::answer_anywhere(shared, &[req], &mut replies, false).await;
    let reply = replies
        .pop()
        .unwrap_or_else(|| VersionReply::Error("ERR internal: no reply".into()));
    match reply {
        VersionReply::Commit(c) => Json(json!({
            "domain": domain,
            "last_commit_version": c.last,
            "commit_version": c.version,
            "epoch": c.epoch,
        }))
        .into_response(),
        VersionReply::Read(v) => {
            Json(json!({ "domain": domain, "read_version": v })).into_response()
        }
        VersionReply::Ok => match req {
            VersionReq::Report(_, v) => {
                Json(json!({ "domain": domain, "reported": v })).into_response()
            }
            _ => Json(json!({ "domain": domain, "ok": true })).into_response(),
        },
        VersionReply::Status(s, clock) => Json(json!({
            "domain": s.domain,
            "epoch": s.epoch,
            "baseline": s.baseline,
            "last_commit": s.last_commit,
            "read_version": s.read_version,
            "durable_bound": s.durable_bound,
            "clock": clock,
        }))
        .into_response(),
        VersionReply::Error(msg) => {
            if msg.starts_with("BUSY") || msg.starts_with("TRYAGAIN") {
                unavailable(shared, msg)
            } else {
                error(StatusCode::UNPROCESSABLE_ENTITY, msg)
            }
        }
    }
}
