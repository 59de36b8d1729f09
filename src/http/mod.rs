//! HTTP on every shard, like RTMP: the SRS-shaped API (`/api/v1/...`), Prometheus `/metrics`,
//! HTTP-FLV players (`/{app}/{stream}.flv`), the web console (`/`), and for balancers and
//! nginx-rtmp's tools `/healthz`, `/api/v1/lb/drain`, `/stat` and `/control/drop/...`.

pub mod api;
pub mod console;
pub mod flv;
pub mod lb;
pub mod metrics;
pub mod proxy_flv;
pub mod request;
pub mod sysapi;

use crate::server::conns::Slot;
use crate::server::ids::ConnId;
use crate::server::mesh::{ControlMsg, ShardMsg};
use crate::server::shard::Shard;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use log::{debug, warn};
use request::{parse_head, response, Request};
use serde_json::Value;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// What a route answers: status, content type, body.
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type` of the body.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    fn json(status: u16, v: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: serde_json::to_vec(v).unwrap_or_default(),
        }
    }

    fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.as_bytes().to_vec(),
        }
    }
}

/// Serve one HTTP connection (keep-alive requests in turn, or one HTTP-FLV stream). `peer` is
/// the client (a PROXY header's source behind a balancer); `initial` are bytes already read.
pub async fn serve(
    shard: Rc<Shard>,
    mut stream: TcpStream,
    id: ConnId,
    peer: SocketAddr,
    slot: Slot,
    initial: Vec<u8>,
) {
    let cfg = shard.cfg();
    let max = cfg.http.max_header_bytes;
    let mut buf: Vec<u8> = initial;
    buf.reserve(2048);
    let mut chunk = vec![0u8; 4096];
    'requests: loop {
        let deadline = Instant::now() + Duration::from_secs(cfg.http.header_timeout_secs);
        let (req, head_len) = loop {
            match parse_head(&buf, max) {
                Ok(Some(r)) => break r,
                Ok(None) => {}
                Err(e) => {
                    warn!("shard={} http peer={peer} error: {e}", shard.id());
                    let r = Reply::text(e.status(), &e.to_string());
                    let _ = write_reply(&mut stream, &r, false).await;
                    break 'requests;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break 'requests;
            }
            let _ = stream.set_read_timeout(Some(left));
            match stream.read(&mut chunk).await {
                Ok(0) => break 'requests,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    if !buf.is_empty() {
                        warn!(
                            "shard={} http peer={peer} error: request head not complete within {} s",
                            shard.id(), cfg.http.header_timeout_secs
                        );
                        let r = Reply::text(408, "request head timed out");
                        let _ = write_reply(&mut stream, &r, false).await;
                    }
                    break 'requests;
                }
                Err(_) => break 'requests,
            }
        };
        buf.drain(..head_len);
        debug!(
            "shard={} http peer={peer} {} {}",
            shard.id(),
            req.method,
            req.path
        );
        if req.method == "GET" && req.path.ends_with(".flv") {
            let _ = stream.set_read_timeout(None);
            // The request buffers are done with; an HTTP-FLV player holds its connection
            // for hours, so do not keep them that long.
            drop(std::mem::take(&mut buf));
            drop(std::mem::take(&mut chunk));
            if shard.cfg().is_proxy() {
                Box::pin(proxy_flv::serve(&shard, stream, id, peer, slot, &req)).await;
            } else {
                Box::pin(flv::serve(&shard, stream, id, peer, slot, &req)).await;
            }
            return;
        }
        // HEAD is answered like GET, without the body.
        let head_only = req.method == "HEAD";
        let reply = if req.path.starts_with("/api/v1/proxy/") {
            match Box::pin(sysapi::introspect(&shard, &req)).await {
                Some(r) => r,
                None => Reply::json(404, &api::error(404, "not found")),
            }
        } else if req.path.starts_with("/control/") {
            let target = format!("{}?{}", req.path, req.query);
            lb::control_drop(&shard, &target).await
        } else if head_only {
            let get = Request {
                method: "GET".into(),
                ..req.clone()
            };
            route(&shard, &get)
        } else {
            route(&shard, &req)
        };
        let keep_alive = req.keep_alive;
        let mut bytes = response(reply.status, reply.content_type, &reply.body, keep_alive);
        if head_only {
            bytes.truncate(bytes.len() - reply.body.len());
        }
        if stream.write_all(&bytes).await.is_err() || !keep_alive {
            break;
        }
    }
    drop(slot);
}

async fn write_reply(stream: &mut TcpStream, r: &Reply, keep_alive: bool) -> std::io::Result<()> {
    stream
        .write_all(&response(r.status, r.content_type, &r.body, keep_alive))
        .await
}

fn route(shard: &Shard, req: &Request) -> Reply {
    let board = &shard.global().board;
    let uptime = board.started.elapsed().as_secs();
    let parts: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    match (req.method.as_str(), parts.as_slice()) {
        ("OPTIONS", _) => Reply::text(204, ""),
        ("GET", ["healthz"]) => lb::healthz(shard),
        ("GET", ["stat"]) => lb::stat(shard),
        ("GET", ["api", "v1", "lb"]) => lb::status(shard),
        ("POST", ["api", "v1", "lb", "drain"]) => lb::set_drain(shard, true),
        ("DELETE", ["api", "v1", "lb", "drain"]) => lb::set_drain(shard, false),
        ("POST", ["api", "v1", "lb", "maint"]) => lb::set_maint(shard, true),
        ("DELETE", ["api", "v1", "lb", "maint"]) => lb::set_maint(shard, false),
        ("GET", [""]) | ("GET", ["console"]) => console::page(),
        ("GET", ["static", name]) => console::static_file(&shard.cfg().http.static_dir, name),
        ("GET", ["metrics"]) => {
            let mut text = metrics::render(&board.read(), uptime);
            if let Some(r) = shard.global().calls.registry_stats() {
                text.push_str(&r.render());
            }
            Reply {
                status: 200,
                content_type: "text/plain; version=0.0.4",
                body: text.into_bytes(),
            }
        }
        ("GET", ["api", "v1", "versions"]) => Reply::json(200, &api::versions()),
        ("GET" | "POST", ["api", "v1", "clusters"]) => {
            Reply::json(200, &api::clusters(shard, &req.query))
        }
        ("GET", ["api", "v1", "summaries"]) => {
            Reply::json(200, &api::summaries(&board.read(), uptime))
        }
        ("GET", ["api", "v1", "streams"]) => Reply::json(200, &api::streams(&board.read())),
        ("GET", ["api", "v1", "streams", id]) => match api::stream(&board.read(), id) {
            Some(v) => Reply::json(200, &v),
            None => Reply::json(
                404,
                &api::error(api::CODE_STREAM_NOT_FOUND, "no such stream"),
            ),
        },
        ("GET", ["api", "v1", "clients"]) => Reply::json(200, &api::clients(&board.read())),
        ("GET", ["api", "v1", "clients", id]) => {
            match id
                .parse()
                .ok()
                .and_then(|id| api::client(&board.read(), id))
            {
                Some(v) => Reply::json(200, &v),
                None => Reply::json(
                    404,
                    &api::error(api::CODE_CLIENT_NOT_FOUND, "no such client"),
                ),
            }
        }
        ("DELETE", ["api", "v1", "clients", id]) => {
            let known = id
                .parse::<u64>()
                .ok()
                .filter(|id| api::client(&board.read(), *id).is_some());
            match known {
                Some(id) => {
                    let id = ConnId::from_raw(id);
                    shard.send(id.shard(), ShardMsg::Control(ControlMsg::Kick(id)));
                    Reply::json(200, &serde_json::json!({ "code": 0 }))
                }
                None => Reply::json(
                    404,
                    &api::error(api::CODE_CLIENT_NOT_FOUND, "no such client"),
                ),
            }
        }
        ("GET", _) => Reply::json(404, &api::error(404, "not found")),
        _ => Reply::json(405, &api::error(405, "method not allowed")),
    }
}
