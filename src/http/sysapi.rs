//! A proxy's system API (SRS proxy's port 12025): origins register with SRS's heartbeat
//! (`POST /api/v1/srs/register`), and `GET /api/v1/proxy/origins` and `/api/v1/proxy/streams`
//! show the shared registry. Served by every shard on its own port; each request's registry
//! work runs on the control thread.
//!
//! Bad input costs little: a body over [`MAX_BODY`] is refused from its `Content-Length` before
//! a byte of it is read, a body that does not come within the header timeout ends the
//! connection, and every refusal is a 4xx with `{"code":..,"error":".."}` and stores nothing.

use super::request::{parse_head, response, Request};
use super::Reply;
use crate::cluster::register::{parse_heartbeat, register_ok, MAX_BODY, REGISTER_PATH};
use crate::control_plane::registry::{RegistryAnswer, RegistryFailure, RegistryRequest};
use crate::server::conns::Slot;
use crate::server::ids::ConnId;
use crate::server::shard::Shard;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use log::{debug, warn};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

fn json_reply(status: u16, v: &Value) -> Reply {
    Reply {
        status,
        content_type: "application/json",
        body: serde_json::to_vec(v).unwrap_or_default(),
    }
}

fn error(status: u16, message: &str) -> Reply {
    json_reply(status, &json!({"code": status, "error": message}))
}

/// A registry failure as an HTTP answer.
fn failure(f: RegistryFailure) -> Reply {
    match f {
        RegistryFailure::Disabled => error(404, "not a proxy"),
        f => error(503, &f.to_string()),
    }
}

/// Serve one system API connection (keep-alive requests in turn).
pub async fn serve(
    shard: Rc<Shard>,
    mut stream: TcpStream,
    _id: ConnId,
    peer: SocketAddr,
    slot: Slot,
    initial: Vec<u8>,
) {
    let cfg = shard.cfg();
    let max = cfg.http.max_header_bytes;
    let limit = Duration::from_secs(cfg.http.header_timeout_secs);
    let mut buf = initial;
    let mut chunk = vec![0u8; 4096];
    'requests: loop {
        let deadline = Instant::now() + limit;
        let (req, head_len) = loop {
            match parse_head(&buf, max) {
                Ok(Some(r)) => break r,
                Ok(None) => {}
                Err(e) => {
                    let _ = write(&mut stream, &error(e.status(), &e.to_string()), false).await;
                    break 'requests;
                }
            }
            match read_some(&mut stream, &mut chunk, deadline).await {
                Some(n) => buf.extend_from_slice(&chunk[..n]),
                None => break 'requests,
            }
        };
        buf.drain(..head_len);
        debug!(
            "shard={} sysapi peer={peer} {} {}",
            shard.id(),
            req.method,
            req.path
        );
        let body = if req.method == "POST" {
            match read_body(&mut stream, &mut buf, &mut chunk, &req, deadline).await {
                Ok(b) => b,
                Err(r) => {
                    warn!(
                        "shard={} sysapi peer={peer} {} refused: {}",
                        shard.id(),
                        req.path,
                        String::from_utf8_lossy(&r.body)
                    );
                    let _ = write(&mut stream, &r, false).await;
                    break;
                }
            }
        } else {
            Vec::new()
        };
        let reply = route(&shard, &req, &body, peer).await;
        if write(&mut stream, &reply, req.keep_alive).await.is_err() || !req.keep_alive {
            break;
        }
    }
    drop(slot);
}

async fn read_some(stream: &mut TcpStream, chunk: &mut [u8], deadline: Instant) -> Option<usize> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return None;
    }
    let _ = stream.set_read_timeout(Some(left));
    match stream.read(chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}

/// The request's body: `Content-Length` bytes, at most [`MAX_BODY`], by `deadline`.
async fn read_body(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    chunk: &mut [u8],
    req: &Request,
    deadline: Instant,
) -> Result<Vec<u8>, Reply> {
    let len = match (req.content_length, req.chunked) {
        (Some(n), false) => n,
        _ => return Err(error(411, "a Content-Length is required")),
    };
    if len > MAX_BODY {
        return Err(error(
            413,
            &format!("body of {len} bytes is over the {MAX_BODY}-byte limit"),
        ));
    }
    while buf.len() < len {
        match read_some(stream, chunk, deadline).await {
            Some(n) => buf.extend_from_slice(&chunk[..n]),
            None => return Err(error(408, "body not complete in time")),
        }
    }
    let rest = buf.split_off(len);
    Ok(std::mem::replace(buf, rest))
}

async fn write(stream: &mut TcpStream, r: &Reply, keep_alive: bool) -> std::io::Result<()> {
    stream
        .write_all(&response(r.status, r.content_type, &r.body, keep_alive))
        .await
}

async fn route(shard: &Shard, req: &Request, body: &[u8], peer: SocketAddr) -> Reply {
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", REGISTER_PATH) => register(shard, body, peer).await,
        (_, REGISTER_PATH) => error(405, "POST a heartbeat"),
        _ => match introspect(shard, req).await {
            Some(r) => r,
            None => error(404, "not found"),
        },
    }
}

async fn register(shard: &Shard, body: &[u8], peer: SocketAddr) -> Reply {
    let hb = match parse_heartbeat(body) {
        Ok(hb) => hb,
        Err(e) => {
            warn!("shard={} register from {peer} refused: {e}", shard.id());
            return json_reply(e.http_status(), &e.to_json());
        }
    };
    let id = hb.id();
    match shard
        .global()
        .calls
        .registry(RegistryRequest::Heartbeat(Box::new(hb)))
        .await
    {
        Ok(_) => {
            debug!("shard={} origin {id} heartbeat from {peer}", shard.id());
            json_reply(200, &register_ok(std::process::id()))
        }
        Err(f) => failure(f),
    }
}

/// `GET /api/v1/proxy/origins` and `/api/v1/proxy/streams` (also on the main HTTP port);
/// `None` for other paths.
pub async fn introspect(shard: &Shard, req: &Request) -> Option<Reply> {
    let what = match (req.method.as_str(), req.path.trim_end_matches('/')) {
        ("GET", "/api/v1/proxy/origins") => RegistryRequest::Origins,
        ("GET", "/api/v1/proxy/streams") => RegistryRequest::Streams,
        _ => return None,
    };
    Some(match shard.global().calls.registry(what).await {
        Ok(RegistryAnswer::Json(v)) => json_reply(200, &v),
        Ok(_) => error(500, "unexpected registry answer"),
        Err(f) => failure(f),
    })
}
