//! Jicofo's REST API on 8888.
//!
//! | path | response |
//! |---|---|
//! | `/about/health` | 200 `OK` with every configured XMPP connection online (client, component, service), the brewery joined and ≥ 1 operational bridge; 503 with the reason otherwise ([`crate::shell::Health::problem`]); not served (404) with `JICOFO_ENABLE_HEALTH_CHECKS=false` |
//! | `/about/version` | `{"name","version","os"}` |
//! | `/stats` | JSON: `conferences`, `participants`, `largest_conference`, `total_participants`, `total_conferences_created`, `conference_sizes`, `bridge_selector{bridge_count, operational_bridge_count, …}`, … |
//! | `/metrics` | Prometheus text, `jitsi_jicofo_*` |
//! | `/debug` | JSON: every conference with its room state, bridge, bridge session and participants |
//! | `POST /conference-request/v1` | the conference request as JSON, answered as Jicofo does ([`crate::conference_http`]) |

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use service::{VersionInfo, common_routes, not_found, text_response};
use signaling::focus_iq::ConferenceResponse;
use signaling::xml::XmlElement;

use crate::conference_http;
use crate::metrics::FocusMetrics;
use crate::shell::LoopHandle;

/// The name `/about/version` reports.
pub const SERVICE_NAME: &str = "jitsi-rs-focus";

#[derive(Clone)]
struct ApiState {
    focus: LoopHandle,
}

/// Builds the router; without `health`, `/about/health` is not served (Jicofo with health checks off).
pub fn router(focus: LoopHandle, metrics: Arc<FocusMetrics>, health: bool) -> Router {
    let version = VersionInfo::new(SERVICE_NAME, env!("CARGO_PKG_VERSION"));
    let for_metrics = focus.clone();
    // The renderer is synchronous; it asks the loop from a blocking context of the runtime.
    let render = Arc::new(move || {
        let focus = for_metrics.clone();
        let snapshot = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                let stats = focus.stats().await;
                let health = focus.health().await;
                (stats, health)
            })
        });
        if let (Some(stats), Some(health)) = snapshot {
            metrics.observe(&stats, health.problem().is_none());
        }
        metrics.render()
    });
    let router = Router::new();
    let router = if health {
        router.route("/about/health", get(health_check))
    } else {
        router
    };
    router
        .route("/stats", get(stats))
        .route("/debug", get(debug))
        .route(
            "/conference-request/v1",
            post(conference_request).options(|| async { StatusCode::OK }),
        )
        .with_state(ApiState { focus })
        .merge(common_routes(version, render))
        .fallback(not_found)
}

async fn health_check(State(s): State<ApiState>) -> Response {
    match s.focus.health().await.map(|h| h.problem()) {
        Some(None) => text_response(StatusCode::OK, "OK"),
        Some(Some(problem)) => text_response(StatusCode::SERVICE_UNAVAILABLE, problem),
        None => text_response(StatusCode::SERVICE_UNAVAILABLE, "focus is shutting down"),
    }
}

async fn stats(State(s): State<ApiState>) -> Response {
    match s.focus.stats().await {
        Some(stats) => (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_string(&stats).unwrap_or_else(|_| "{}".into()),
        )
            .into_response(),
        None => text_response(StatusCode::SERVICE_UNAVAILABLE, "focus is shutting down"),
    }
}

async fn debug(State(s): State<ApiState>) -> Response {
    match s.focus.debug().await {
        Some(conferences) => (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "conferences": conferences }).to_string(),
        )
            .into_response(),
        None => text_response(StatusCode::SERVICE_UNAVAILABLE, "focus is shutting down"),
    }
}

/// How long an HTTP conference request may wait for the room to be joined (the core answers within
/// its join timeout; this only guards against a loop that never answers).
const CONFERENCE_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

async fn conference_request(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let request = match conference_http::parse_request(&body, bearer) {
        Ok(r) => r,
        Err(e) => return conference_http::error_response(&e.0).into_response(),
    };
    let answer = tokio::time::timeout(
        CONFERENCE_REQUEST_TIMEOUT,
        s.focus.conference_request(request.to_element()),
    )
    .await;
    match answer {
        Ok(Some(Ok(Some(el)))) => match ConferenceResponse::from_element(&el) {
            Ok(r) => (
                [(header::CONTENT_TYPE, "application/json")],
                conference_http::response_json(&r).to_string(),
            )
                .into_response(),
            Err(e) => text_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("Internal error: {e}"),
            ),
        },
        Ok(Some(Ok(None))) => text_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal error: empty answer",
        ),
        Ok(Some(Err(e))) => conference_http::stanza_error_response(&e).into_response(),
        Ok(None) => text_response(StatusCode::SERVICE_UNAVAILABLE, "focus is shutting down"),
        Err(_) => text_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal error: no answer",
        ),
    }
}
