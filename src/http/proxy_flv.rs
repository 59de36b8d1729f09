//! HTTP-FLV through a proxy: `GET /{app}/{stream}.flv` is looked up in the registry like an
//! RTMP play, then the request is passed to the origin that holds the stream and its answer
//! (head and FLV body) is piped back until either side closes. A stream nobody holds answers
//! 404; an origin that cannot be reached in the connect timeout answers 502.

use super::flv::stream_key;
use super::request::{response, Request};
use crate::control_plane::registry::{RegistryAnswer, RegistryRequest};
use crate::server::conns::Slot;
use crate::server::ids::ConnId;
use crate::server::shard::Shard;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use log::{info, warn};
use std::net::SocketAddr;
use std::rc::Rc;

/// Relay one HTTP-FLV player to the stream's origin.
pub async fn serve(
    shard: &Rc<Shard>,
    mut client: TcpStream,
    id: ConnId,
    peer: SocketAddr,
    _slot: Slot,
    req: &Request,
) {
    let sid = shard.id();
    let answer = |status: u16, text: &str| response(status, "text/plain", text.as_bytes(), false);
    let Some(key) = stream_key(req) else {
        let _ = client.write_all(&answer(404, "no such stream")).await;
        return;
    };
    let origin = match shard
        .global()
        .calls
        .registry(RegistryRequest::Play {
            key: key.to_string(),
        })
        .await
    {
        Ok(RegistryAnswer::Origin(o)) => o,
        other => {
            warn!("shard={sid} client={id} peer={peer} proxy play-flv stream={key}: no origin ({other:?}), 404");
            let _ = client.write_all(&answer(404, "stream not found")).await;
            return;
        }
    };
    // HTTP-FLV is served by the origin's HTTP server: the first `http[]` entry of its
    // heartbeat (SRS's `http_server.listen`, shardcast's `[http] listen`), not its API port.
    let Some(http) = origin.http.clone() else {
        warn!("shard={sid} client={id} proxy play-flv stream={key}: origin {} announced no http[] endpoint, 502", origin.rtmp);
        let _ = client
            .write_all(&answer(502, "origin announced no HTTP server"))
            .await;
        return;
    };
    let timeout = shard.cfg().proxy.connect_timeout();
    let mut upstream = match connect(shard, &http, timeout).await {
        Ok(s) => s,
        Err(e) => {
            warn!("shard={sid} client={id} proxy play-flv stream={key}: origin {http}: {e}, 502");
            let _ = client.write_all(&answer(502, "origin unreachable")).await;
            return;
        }
    };
    let target = if req.query.is_empty() {
        req.path.clone()
    } else {
        format!("{}?{}", req.path, req.query)
    };
    let head = format!(
        "GET {target} HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\nX-Forwarded-For: {}\r\n\r\n",
        peer.ip()
    );
    if upstream.write_all(head.as_bytes()).await.is_err() {
        let _ = client.write_all(&answer(502, "origin closed")).await;
        return;
    }
    info!("shard={sid} client={id} peer={peer} proxy play-flv stream={key} origin={http}");
    let _ = upstream.set_read_timeout(Some(timeout));
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    let mut first = true;
    loop {
        let n = match upstream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if first {
            // The origin answered: from here on a live stream may pause for as long as it likes.
            let _ = upstream.set_read_timeout(None);
            first = false;
        }
        if client.write_all(&buf[..n]).await.is_err() {
            break;
        }
        bytes += n as u64;
    }
    if first {
        let _ = client.write_all(&answer(502, "origin sent nothing")).await;
    }
    info!(
        "shard={sid} client={id} peer={peer} proxy play-flv stream={key} closed bytes_out={bytes}"
    );
}

async fn connect(
    shard: &Shard,
    host_port: &str,
    timeout: std::time::Duration,
) -> Result<TcpStream, String> {
    let (host, port) = match crate::cluster::url::split_host_port(host_port) {
        Ok((h, Some(p))) if !h.is_empty() => (h.to_string(), p),
        _ => return Err(format!("bad address {host_port}")),
    };
    let addrs = shard
        .global()
        .calls
        .resolve(&host, port, timeout)
        .await
        .map_err(|e| e.to_string())?;
    let addr = *addrs.first().ok_or("no address")?;
    TcpStream::connect_timeout(addr, timeout)
        .await
        .map_err(|e| e.to_string())
}
