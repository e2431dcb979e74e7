//! The private REST API (JVB's port 8080), and the client side used by the `healthcheck` and
//! `graceful-shutdown` subcommands ([`client`]).
//!
//! | path | method | response |
//! |---|---|---|
//! | `/about/health` | GET | 200, empty body, `application/json` when healthy; 200 with a text message when degraded (e.g. XMPP down: not a liveness failure); 500 (failed) / 503 (unavailable) with a text message naming the component |
//! | `/about/version` | GET | `{"name","version","os"}` |
//! | `/metrics` | GET | Prometheus text 0.0.4, `jitsi_jvb_*` |
//! | `/colibri/stats` | GET | flat JSON with JVB's key names (unless `rest.colibri_stats = false`: 404) |
//! | `/colibri/drain` | GET | `{"drain":bool}` |
//! | `/colibri/drain/enable`, `/colibri/drain/disable` | POST | 200 `{"drain":bool}` |
//! | `/colibri/shutdown` | POST `{"graceful-shutdown": bool}` | 200 with the resulting state; 403 unless `rest.shutdown`; 400 on bad JSON |
//!
//! Unknown paths are 404, wrong methods 405 (with `Allow`). `graceful-shutdown` may also be the
//! string `"true"`/`"false"` (JVB's own `graceful_shutdown.sh` sends a string, Jackson accepts it).
//! `false` means "skip the graceful phase": straight to SHUTTING_DOWN, then exit after the
//! shutting-down delay, as JVB does.

pub mod client;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use service::{VersionInfo, common_routes, not_found, text_response};

use crate::health::{Health, HealthRegistry};
use crate::lifecycle::LifecycleHandle;
use crate::stats::{BridgeMetrics, StatsHandle};

/// The name `/about/version` reports.
pub const SERVICE_NAME: &str = "jitsi-rs-bridge";

/// Everything the handlers need.
#[derive(Clone)]
pub struct ApiState {
    pub lifecycle: LifecycleHandle,
    pub stats: StatsHandle,
    pub health: Arc<HealthRegistry>,
    /// Serve `/colibri/stats`.
    pub colibri_stats: bool,
    /// Accept `POST /colibri/shutdown`.
    pub shutdown_api: bool,
}

/// Builds the router.
pub fn router(state: ApiState, metrics: Arc<BridgeMetrics>) -> Router {
    let stats = state.stats.clone();
    let render = Arc::new(move || {
        metrics.observe(&stats.current());
        metrics.render()
    });
    let version = VersionInfo::new(SERVICE_NAME, env!("CARGO_PKG_VERSION"));
    Router::new()
        .route("/about/health", get(health))
        .route("/colibri/stats", get(colibri_stats))
        .route("/colibri/drain", get(drain_get))
        .route("/colibri/drain/enable", post(drain_enable))
        .route("/colibri/drain/disable", post(drain_disable))
        .route("/colibri/shutdown", post(shutdown))
        .with_state(state)
        .merge(common_routes(version, render))
        .fallback(not_found)
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

async fn health(State(state): State<ApiState>) -> Response {
    match state.health.check() {
        Health::Healthy => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")]).into_response()
        }
        Health::Degraded(msg) => text_response(StatusCode::OK, format!("degraded: {msg}")),
        Health::Unavailable(msg) => text_response(StatusCode::SERVICE_UNAVAILABLE, msg),
        Health::Failed(msg) => text_response(StatusCode::INTERNAL_SERVER_ERROR, msg),
    }
}

async fn colibri_stats(State(state): State<ApiState>) -> Response {
    if !state.colibri_stats {
        return text_response(
            StatusCode::NOT_FOUND,
            "/colibri/stats is disabled (COLIBRI_REST_ENABLED=false / rest.colibri_stats)",
        );
    }
    json_response(StatusCode::OK, state.stats.current().to_json())
}

async fn drain_get(State(state): State<ApiState>) -> Response {
    json_response(
        StatusCode::OK,
        json!({ "drain": state.lifecycle.status().drain }),
    )
}

async fn drain_enable(State(state): State<ApiState>) -> Response {
    let s = state.lifecycle.set_drain(true).await;
    json_response(StatusCode::OK, json!({ "drain": s.drain }))
}

async fn drain_disable(State(state): State<ApiState>) -> Response {
    let s = state.lifecycle.set_drain(false).await;
    json_response(StatusCode::OK, json!({ "drain": s.drain }))
}

/// Parses the shutdown body: `{"graceful-shutdown": true|false|"true"|"false"}`.
pub fn parse_shutdown_body(body: &[u8]) -> Result<bool, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    let field = v
        .get("graceful-shutdown")
        .ok_or("missing required field \"graceful-shutdown\"")?;
    match field {
        serde_json::Value::Bool(b) => Ok(*b),
        serde_json::Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        serde_json::Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(format!(
            "\"graceful-shutdown\" must be true or false, got {other}"
        )),
    }
}

async fn shutdown(State(state): State<ApiState>, body: Bytes) -> Response {
    if !state.shutdown_api {
        return text_response(
            StatusCode::FORBIDDEN,
            "the shutdown API is disabled: set SHUTDOWN_REST_ENABLED=true (rest.shutdown, --shutdown-api)",
        );
    }
    let graceful = match parse_shutdown_body(&body) {
        Ok(g) => g,
        Err(msg) => return text_response(StatusCode::BAD_REQUEST, msg),
    };
    tracing::info!(graceful, "shutdown requested over REST");
    let s = state.lifecycle.request_shutdown(graceful).await;
    json_response(
        StatusCode::OK,
        json!({
            "graceful_shutdown": s.graceful_shutdown,
            "shutting_down": s.shutting_down,
            "state": s.state,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_bodies() {
        assert_eq!(
            parse_shutdown_body(br#"{"graceful-shutdown": true}"#),
            Ok(true)
        );
        assert_eq!(
            parse_shutdown_body(br#"{"graceful-shutdown": false}"#),
            Ok(false)
        );
        assert_eq!(
            parse_shutdown_body(br#"{ "graceful-shutdown": "true" }"#),
            Ok(true)
        );
        assert!(
            parse_shutdown_body(b"")
                .unwrap_err()
                .contains("invalid JSON")
        );
        assert!(
            parse_shutdown_body(b"{")
                .unwrap_err()
                .contains("invalid JSON")
        );
        assert!(parse_shutdown_body(b"{}").unwrap_err().contains("missing"));
        assert!(
            parse_shutdown_body(br#"{"graceful-shutdown": 1}"#)
                .unwrap_err()
                .contains("must be true or false")
        );
    }
}
