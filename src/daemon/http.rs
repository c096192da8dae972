//! The HTTP admin API (axum): health, readiness, metrics, status, numbers, flush, actualize.
//! Errors are JSON `{"error": "..."}` with a status code that says what to do: 400 fix the
//! request, 401 authenticate, 404 no such thing, 503 retry (with `Retry-After`).

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use super::command::MAX_COUNT;
use super::partition::{Reply, Req};
use super::{Shared, constant_time_eq};
use crate::error::{BusyReason, Error};

/// The admin router over `shared`.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/status", get(status))
        .route("/v1/sequences/{ws}/{seq}", get(peek))
        .route("/v1/sequences/{ws}/{seq}/next", post(next))
        .route("/v1/flush", post(flush))
        .route("/v1/partitions/{p}/actualize", post(actualize))
        .route("/v1/cluster", get(cluster))
        .merge(super::versions::http::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(Arc::clone(&shared), guard))
        .with_state(shared)
}

pub(crate) fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut resp = (status, Json(json!({ "error": msg.into() }))).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

/// Counts requests and checks the bearer token (all but `/healthz` and `/readyz`).
async fn guard(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    shared.metrics.http_requests.inc();
    let open = matches!(req.uri().path(), "/healthz" | "/readyz");
    if let (Some(token), false) = (shared.config.auth_token.as_deref(), open) {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let ok = presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes()));
        if !ok {
            let mut resp = error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong token: send 'Authorization: Bearer <token>'",
            );
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return resp;
        }
    }
    next.run(req).await
}

/// One request: answered here, or (cluster mode) by its partition's owner.
async fn one(shared: &Shared, req: Req) -> Reply {
    #[cfg(feature = "cluster")]
    if let Some(node) = &shared.cluster {
        if let Some(refusal) = node.client_refusal() {
            return Reply::Busy(refusal);
        }
        let p = shared.partitions.of(req.ws());
        if !shared.partitions.serving(p) {
            let mut replies = node.forward(shared, p, &[req]).await;
            return replies
                .pop()
                .unwrap_or_else(|| Reply::Busy("TRYAGAIN no reply from the owner".into()));
        }
    }
    shared.partitions.one(req).await
}

/// `GET /v1/cluster`: the cluster as this node sees it (404 on a single node).
async fn cluster(State(shared): State<Arc<Shared>>) -> Response {
    #[cfg(feature = "cluster")]
    if let Some(node) = &shared.cluster {
        let mut body = serde_json::to_value(node.view.snapshot()).unwrap_or_default();
        if let Some(map) = body.as_object_mut() {
            map.insert("this_node".into(), node.this_node());
        }
        return Json(body).into_response();
    }
    let _ = &shared;
    error(
        StatusCode::NOT_FOUND,
        "not in cluster mode: start seqd serve with --etcd to join a cluster",
    )
}

async fn healthz() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let partitions = shared.partitions.len();
    let mut why = shared.partitions.not_ready();
    let unready = why.len();
    if let Some(w) = shared.versions.not_ready() {
        why.push(w);
    }
    #[cfg(feature = "cluster")]
    if let Some(node) = &shared.cluster
        && node.lease_state() != crate::cluster::LeaseState::Valid
    {
        why.push("the node's etcd lease is not confirmed (etcd unreachable?)".into());
    }
    if why.is_empty() {
        Json(json!({ "ready": true, "partitions": partitions })).into_response()
    } else {
        let what = if unready > 0 {
            format!("{unready} of {partitions} partitions not ready")
        } else {
            "not ready".to_owned()
        };
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{what}: {}", why.join("; ")),
        )
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let statuses = shared.partitions.statuses().await;
    let mut node = super::metrics::NodeSeries::default();
    #[cfg(feature = "cluster")]
    if let Some(n) = &shared.cluster {
        node = n.series(&shared.partitions);
    }
    shared.versions.series(&mut node);
    let body = shared.metrics.render(statuses, node);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn status(State(shared): State<Arc<Shared>>) -> Response {
    let partitions = shared.partitions.statuses().await;
    let ready = partitions.iter().all(|p| p.ready);
    Json(json!({
        "role": "standalone",
        "version": env!("CARGO_PKG_VERSION"),
        "durability": format!("{:?}", shared.config.durability).to_lowercase(),
        "ready": ready,
        "connections": shared.metrics.connections.get(),
        "partitions": partitions,
    }))
    .into_response()
}

/// A path parameter axum could not extract (e.g. an invalid percent-escape such as `%ff`):
/// 400 with the JSON error body, like every other error.
pub(crate) fn bad_path(e: PathRejection) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        format!("bad path: {}", e.body_text()),
    )
}

/// The ids of `/v1/sequences/{ws}/{seq}`, or the error response.
fn ids(path: Result<Path<(String, String)>, PathRejection>) -> Result<(u64, u16), Box<Response>> {
    let Path((ws, seq)) = path.map_err(|e| Box::new(bad_path(e)))?;
    parse_ids(&ws, &seq)
}

fn parse_ids(ws: &str, seq: &str) -> Result<(u64, u16), Box<Response>> {
    let ws = ws.parse::<u64>().map_err(|_| {
        bad(format!(
            "workspace must be an integer in 0..={}, got '{}'",
            u64::MAX,
            clip(ws)
        ))
    })?;
    let seq = seq.parse::<u16>().map_err(|_| {
        bad(format!(
            "sequence must be an integer in 0..=65535, got '{}'",
            clip(seq)
        ))
    })?;
    Ok((ws, seq))
}

fn bad(msg: String) -> Box<Response> {
    Box::new(error(StatusCode::BAD_REQUEST, msg))
}

/// The one query parameter `name` a request may carry, an integer in `range`: `Ok(None)`
/// when absent; a 400 for another parameter or a value out of range.
pub(crate) fn int_param(
    query: Option<&str>,
    name: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<u64>, Box<Response>> {
    let mut value = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k != name {
            return Err(bad(format!(
                "unknown query parameter '{}'; only '{name}'",
                clip(k)
            )));
        }
        match v.parse::<u64>() {
            Ok(n) if range.contains(&n) => value = Some(n),
            _ => {
                return Err(bad(format!(
                    "{name} must be an integer in {}..={}, got '{}'",
                    range.start(),
                    range.end(),
                    clip(v)
                )));
            }
        }
    }
    Ok(value)
}

pub(crate) fn clip(s: &str) -> String {
    s.chars().take(32).collect()
}

/// 503 with `Retry-After`: busy, retry. Counted with the protocol's `-BUSY` replies.
pub(crate) fn unavailable(shared: &Shared, msg: impl Into<String>) -> Response {
    shared.metrics.add_http_busy();
    error(StatusCode::SERVICE_UNAVAILABLE, msg)
}

fn reply_response(
    shared: &Shared,
    reply: Reply,
    ok: impl FnOnce(u64) -> serde_json::Value,
) -> Response {
    match reply {
        Reply::Number(n) => Json(ok(n)).into_response(),
        Reply::Busy(msg) => unavailable(shared, msg),
        Reply::Error(msg) => error(StatusCode::UNPROCESSABLE_ENTITY, msg),
    }
}

async fn peek(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let (ws, seq) = match ids(path) {
        Ok(ids) => ids,
        Err(resp) => return *resp,
    };
    let reply = one(&shared, Req::Peek { ws, seq }).await;
    reply_response(
        &shared,
        reply,
        |n| json!({ "ws": ws, "seq": seq, "next": n }),
    )
}

async fn next(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Response {
    let (ws, seq) = match ids(path) {
        Ok(ids) => ids,
        Err(resp) => return *resp,
    };
    let count = match int_param(query.as_deref(), "count", 1..=MAX_COUNT) {
        Ok(n) => n.unwrap_or(1),
        Err(resp) => return *resp,
    };
    let reply = one(&shared, Req::Next { ws, seq, count }).await;
    reply_response(
        &shared,
        reply,
        |first| json!({ "ws": ws, "seq": seq, "first": first, "last": first.saturating_add(count - 1), "count": count }),
    )
}

async fn flush(State(shared): State<Arc<Shared>>) -> Response {
    match shared.partitions.flush().await {
        Ok(offsets) => {
            Json(json!({ "flushed": true, "checkpoint_offsets": offsets })).into_response()
        }
        Err(Error::Partition { source, .. })
            if matches!(
                *source,
                Error::Busy {
                    reason: BusyReason::Closing
                }
            ) =>
        {
            unavailable(&shared, "the server is shutting down")
        }
        Err(e) => unavailable(&shared, e.to_string()),
    }
}

async fn actualize(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let p = match path {
        Ok(Path(p)) => p,
        Err(e) => return bad_path(e),
    };
    let n = shared.partitions.len();
    let p = match p.parse::<usize>() {
        Ok(p) if p < n => p,
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no partition '{}': partitions are 0..{n}", clip(&p)),
            );
        }
    };
    if shared.partitions.actualize(p).await {
        (
            StatusCode::ACCEPTED,
            Json(json!({ "partition": p, "actualizing": true })),
        )
            .into_response()
    } else {
        unavailable(&shared, "the server is shutting down")
    }
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such endpoint; see /v1/status, /v1/sequences/{ws}/{seq}, /v1/versions/{domain}, /metrics",
    )
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint",
    )
}
