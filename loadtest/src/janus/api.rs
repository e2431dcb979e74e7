//! Janus's HTTP API (`janus/transports/janus_http.c` upstream; the protocol is described in its
//! `docs/rest.md`): create a session, attach a plugin handle, send plugin messages (with a JSEP
//! offer or answer), and long-poll the session for asynchronous events. Requests are plain
//! HTTP/1.1 with `Connection: close` on loopback (`service::http_request` on a blocking thread).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

/// How long one request may take (a long poll waits up to 30 s server-side).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const POLL_TIMEOUT: Duration = Duration::from_secs(40);

/// A failed request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("HTTP: {0}")]
    Http(String),
    #[error("Janus error {code}: {reason}")]
    Janus { code: i64, reason: String },
    #[error("unexpected answer from Janus: {0}")]
    Unexpected(String),
}

async fn request(
    method: &'static str,
    url: String,
    body: Option<Value>,
    timeout: Duration,
) -> Result<Value, ApiError> {
    let res = tokio::task::spawn_blocking(move || {
        let bytes = body.map(|b| b.to_string().into_bytes());
        let body = bytes.as_deref().map(|b| ("application/json", b));
        service::http_request(method, &url, body, timeout)
    })
    .await
    .map_err(|e| ApiError::Http(e.to_string()))?
    .map_err(|e| ApiError::Http(e.to_string()))?;
    if res.status != 200 {
        return Err(ApiError::Http(format!("status {}", res.status)));
    }
    let v: Value =
        serde_json::from_str(&res.text()).map_err(|e| ApiError::Unexpected(e.to_string()))?;
    if v["janus"] == "error" {
        return Err(ApiError::Janus {
            code: v["error"]["code"].as_i64().unwrap_or(0),
            reason: v["error"]["reason"].as_str().unwrap_or("").to_owned(),
        });
    }
    Ok(v)
}

/// The host of Janus's API URL (`http://10.213.0.2:8088/janus` → 10.213.0.2): Janus is configured
/// to offer ICE candidates on the same address only (`janus::server`).
pub fn host_ip(url: &str) -> anyhow::Result<std::net::IpAddr> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', ':']).next().unwrap_or("");
    host.parse()
        .map_err(|_| anyhow::anyhow!("Janus URL {url:?}: the host is not an IP address"))
}

/// A Janus session (`POST /janus` → `{"janus":"success","data":{"id":…}}`).
#[derive(Debug, Clone)]
pub struct Session {
    url: String,
    pub id: u64,
    next_transaction: Arc<AtomicU64>,
}

/// A plugin's answer to a message: `success` with plugin data (synchronous requests) or `ack`
/// (asynchronous: the result arrives as an event with the same transaction).
#[derive(Debug, Clone)]
pub struct Reply {
    pub transaction: String,
    /// `plugindata.data` of a synchronous answer.
    pub data: Option<Value>,
}

/// An asynchronous event from the long poll.
#[derive(Debug, Clone)]
pub struct JanusEvent {
    /// `event`, `webrtcup`, `media`, `hangup`, `slowlink`, `detached`, `keepalive`, …
    pub kind: String,
    /// The handle it concerns.
    pub sender: Option<u64>,
    pub transaction: Option<String>,
    /// `plugindata.data`.
    pub data: Value,
    pub jsep: Option<Value>,
    pub raw: Value,
}

impl Session {
    /// Creates a session on the Janus at `url` (`http://127.0.0.1:<port>/janus`).
    pub async fn create(url: &str) -> Result<Session, ApiError> {
        let v = request(
            "POST",
            url.to_owned(),
            Some(json!({"janus": "create", "transaction": "create"})),
            REQUEST_TIMEOUT,
        )
        .await?;
        let id = v["data"]["id"]
            .as_u64()
            .ok_or_else(|| ApiError::Unexpected(v.to_string()))?;
        Ok(Session {
            url: url.to_owned(),
            id,
            next_transaction: Arc::new(AtomicU64::new(1)),
        })
    }

    fn transaction(&self) -> String {
        format!("t{}", self.next_transaction.fetch_add(1, Ordering::Relaxed))
    }

    /// Attaches `plugin` (e.g. `janus.plugin.videoroom`) and returns the handle id.
    pub async fn attach(&self, plugin: &str) -> Result<u64, ApiError> {
        let v = request(
            "POST",
            format!("{}/{}", self.url, self.id),
            Some(json!({"janus": "attach", "plugin": plugin, "transaction": self.transaction()})),
            REQUEST_TIMEOUT,
        )
        .await?;
        v["data"]["id"]
            .as_u64()
            .ok_or_else(|| ApiError::Unexpected(v.to_string()))
    }

    /// Sends a plugin message (with an optional JSEP) on `handle`. A plugin-level error in a
    /// synchronous answer (`error_code`) is an error.
    pub async fn message(
        &self,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> Result<Reply, ApiError> {
        let transaction = self.transaction();
        let mut msg = json!({"janus": "message", "transaction": transaction, "body": body});
        if let Some(j) = jsep {
            msg["jsep"] = j;
        }
        let v = request(
            "POST",
            format!("{}/{}/{}", self.url, self.id, handle),
            Some(msg),
            REQUEST_TIMEOUT,
        )
        .await?;
        let data = v["plugindata"]["data"].clone();
        if let Some(code) = data["error_code"].as_i64() {
            return Err(ApiError::Janus {
                code,
                reason: data["error"].as_str().unwrap_or("").to_owned(),
            });
        }
        Ok(Reply {
            transaction,
            data: (!data.is_null()).then_some(data),
        })
    }

    /// Waits for up to `maxev` events (Janus answers after 30 s with a keepalive if none).
    pub async fn poll(&self, maxev: u32) -> Result<Vec<JanusEvent>, ApiError> {
        let v = request(
            "GET",
            format!("{}/{}?maxev={maxev}", self.url, self.id),
            None,
            POLL_TIMEOUT,
        )
        .await?;
        let list = match v {
            Value::Array(a) => a,
            one => vec![one],
        };
        Ok(list
            .into_iter()
            .map(|e| JanusEvent {
                kind: e["janus"].as_str().unwrap_or("").to_owned(),
                sender: e["sender"].as_u64(),
                transaction: e["transaction"].as_str().map(str::to_owned),
                data: e["plugindata"]["data"].clone(),
                jsep: e.get("jsep").cloned(),
                raw: e,
            })
            .collect())
    }

    /// Keeps the session alive (any request does; this one carries nothing else).
    pub async fn keepalive(&self) -> Result<(), ApiError> {
        request(
            "POST",
            format!("{}/{}", self.url, self.id),
            Some(json!({"janus": "keepalive", "transaction": self.transaction()})),
            REQUEST_TIMEOUT,
        )
        .await
        .map(|_| ())
    }

    /// Detaches `handle` (Janus hangs up its PeerConnection).
    pub async fn detach(&self, handle: u64) -> Result<(), ApiError> {
        request(
            "POST",
            format!("{}/{}/{}", self.url, self.id, handle),
            Some(json!({"janus": "detach", "transaction": self.transaction()})),
            REQUEST_TIMEOUT,
        )
        .await
        .map(|_| ())
    }

    /// Destroys the session and every handle in it.
    pub async fn destroy(&self) -> Result<(), ApiError> {
        request(
            "POST",
            format!("{}/{}", self.url, self.id),
            Some(json!({"janus": "destroy", "transaction": self.transaction()})),
            REQUEST_TIMEOUT,
        )
        .await
        .map(|_| ())
    }
}

/// Creates a VideoRoom room `room` for `publishers` publishers (VP8 + Opus, transport-wide CC
/// and audio levels on, no bitrate cap, no periodic keyframe requests) through a session of its
/// own, which it destroys.
pub async fn create_room(url: &str, room: u64, publishers: usize) -> Result<(), ApiError> {
    let s = Session::create(url).await?;
    let h = s.attach("janus.plugin.videoroom").await?;
    let r = s
        .message(
            h,
            json!({
                "request": "create",
                "room": room,
                "description": format!("loadtest {room}"),
                "publishers": publishers.max(1),
                "bitrate": 0,
                "fir_freq": 0,
                "audiocodec": "opus",
                "videocodec": "vp8",
                "audiolevel_ext": true,
                "videoorient_ext": false,
                "playoutdelay_ext": false,
                "transport_wide_cc_ext": true,
                "notify_joining": false,
            }),
            None,
        )
        .await;
    let _ = s.destroy().await;
    r.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_host_is_the_ice_address() {
        let ip = |u: &str| host_ip(u).ok().map(|a| a.to_string());
        assert_eq!(
            ip("http://127.0.0.1:8088/janus").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            ip("http://10.213.0.2:1/janus").as_deref(),
            Some("10.213.0.2")
        );
        assert_eq!(ip("http://localhost:8088/janus"), None);
    }
}
