//! Dynamic forward destinations (SRS `forward.backend`): after a publish is granted, a task on
//! the publisher's shard asks the backend over the control plane where else to send the stream,
//! looks the named hosts up there too (a name lookup never blocks a shard), and hands the owner
//! the destinations to place like static ones. The publisher never waits for any of it: an
//! error, a timeout or a refusal only means no dynamic destinations, and a log line says why.

use super::key::StreamKey;
use super::mesh::{OwnerMsg, ShardMsg};
use super::shard::Shard;
use crate::cluster::forward_backend::{parse_answer, BackendError, ForwardRequest};
use crate::config::ForwardTarget;
use crate::control_plane::{CallError, HttpCall};
use crate::policy::ClientInfo;
use log::{info, warn};
use std::rc::Rc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Why a backend gave no destinations.
#[derive(Debug, Error)]
enum AskError {
    #[error("{0}")]
    Call(#[from] CallError),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("{0}")]
    Answer(#[from] BackendError),
}

/// Ask `forward.backend` (when set) about `client`'s publish `publish_id` of `key` (`query`:
/// the stream name's query), in a task of its own.
pub fn spawn(
    shard: &Rc<Shard>,
    key: &StreamKey,
    publish_id: u64,
    client: &ClientInfo<'_>,
    query: &str,
) {
    let f = &shard.cfg().forward;
    if f.backend.is_empty() {
        return;
    }
    let req = ForwardRequest {
        server_id: format!("shardcast-{}", std::process::id()),
        client_id: client.id.to_string(),
        ip: client.ip.to_string(),
        vhost: key.vhost().to_string(),
        app: key.app().to_string(),
        tc_url: client.tc_url.to_string(),
        stream: key.stream_name().to_string(),
        param: if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        },
    };
    let key = key.clone();
    let url = f.backend.clone();
    let timeout = Duration::from_millis(f.backend_timeout_ms);
    glommio::spawn_local(run(shard.clone(), url, timeout, key, publish_id, req)).detach();
}

async fn run(
    shard: Rc<Shard>,
    url: String,
    timeout: Duration,
    key: StreamKey,
    publish_id: u64,
    req: ForwardRequest,
) {
    let targets = match ask(&shard, &url, timeout, &key, &req).await {
        Ok(t) => t,
        Err(e) => {
            warn!(
                "shard={} forward backend {url} stream={key}: {e}; no dynamic destinations (the publish goes on)",
                shard.id()
            );
            return;
        }
    };
    if targets.is_empty() {
        info!(
            "shard={} forward backend {url} stream={key}: no destinations",
            shard.id()
        );
        return;
    }
    let names: Vec<&str> = targets.iter().map(|t| t.display.as_str()).collect();
    info!(
        "shard={} forward backend stream={key}: forwarding to {}",
        shard.id(),
        names.join(", ")
    );
    let m = OwnerMsg::AddForwards {
        targets: targets.into_iter().map(|t| vec![t]).collect(),
        key: key.clone(),
        publish_id,
    };
    shard.send(shard.owner_of(&key), ShardMsg::Owner(m));
}

/// The backend's destinations, each looked up within what is left of `timeout` (one that
/// does not resolve is left out with a log line; the others still count).
async fn ask(
    shard: &Shard,
    url: &str,
    timeout: Duration,
    key: &StreamKey,
    req: &ForwardRequest,
) -> Result<Vec<ForwardTarget>, AskError> {
    let deadline = Instant::now() + timeout;
    let calls = &shard.global().calls;
    let answer = calls
        .http(HttpCall::post_json(url, &req.to_json(), timeout))
        .await?;
    // SRS takes 200 and 201 only.
    if !matches!(answer.status, 200 | 201) {
        return Err(AskError::Status(answer.status));
    }
    let mut out = Vec::new();
    for u in parse_answer(&answer.body)? {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        let t = &u.target;
        match calls.resolve(&t.host, t.port, left).await {
            Ok(addrs) if !addrs.is_empty() => {
                out.push(ForwardTarget::from_url(t, addrs[0], &u.raw));
            }
            Ok(_) => warn!(
                "shard={} forward backend stream={key}: {} resolves to no address; skipped",
                shard.id(),
                u.raw
            ),
            Err(e) => warn!(
                "shard={} forward backend stream={key}: {}: {e}; skipped",
                shard.id(),
                u.raw
            ),
        }
    }
    Ok(out)
}
