//! HTTP-FLV players: `GET /{app}/{stream}.flv` streams an FLV file (header, onMetaData,
//! sequence headers, GOP cache, then live tags) over chunked transfer. The player joins the
//! stream like an RTMP player (same cross-shard fan-out, same slow-player policy); each tag is
//! encoded once per packet and shared.

use super::request::{chunked_head, response, Request};
use crate::media::flv::file_header;
use crate::policy::{self, ClientInfo};
use crate::rtmp::session::query_param;
use crate::server::conn::ClientConn;
use crate::server::conns::Slot;
use crate::server::ids::ConnId;
use crate::server::key::StreamKey;
use crate::server::key::DEFAULT_VHOST;
use crate::server::kinds::{ClientKind, CloseReason};
use crate::server::shard::Shard;
use crate::server::stream::{PlayerKind, PlayerRef};
use bytes::Bytes;
use futures_lite::AsyncReadExt;
use glommio::net::TcpStream;
use log::{info, warn};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// `/live/sub/s.flv?vhost=v` → `v/live/sub/s`; None when there is no app part.
pub fn stream_key(req: &Request) -> Option<StreamKey> {
    let path = req.path.strip_suffix(".flv")?.trim_start_matches('/');
    let (app, name) = path.rsplit_once('/')?;
    if app.is_empty() || name.is_empty() {
        return None;
    }
    let vhost = query_param(&req.query, "vhost").unwrap_or(DEFAULT_VHOST);
    Some(StreamKey::new(vhost, app, name))
}

/// The response head and the FLV file header, as the first bytes of the body.
fn response_start() -> Bytes {
    let mut v = chunked_head(200, "video/x-flv").into_bytes();
    let h = file_header(true, true);
    v.extend_from_slice(format!("{:x}\r\n", h.len()).as_bytes());
    v.extend_from_slice(&h);
    v.extend_from_slice(b"\r\n");
    Bytes::from(v)
}

/// Serve one HTTP-FLV player until it leaves or the publish ends.
pub async fn serve(
    shard: &Rc<Shard>,
    mut stream: TcpStream,
    id: ConnId,
    peer: SocketAddr,
    slot: Slot,
    req: &Request,
) {
    use futures_lite::AsyncWriteExt;
    let Some(key) = stream_key(req) else {
        let _ = stream
            .write_all(&response(404, "text/plain", b"no such stream", false))
            .await;
        return;
    };
    let cfg = shard.cfg();
    let info = ClientInfo {
        id: id.get(),
        ip: peer.ip(),
        vhost: key.vhost(),
        app: key.app(),
        tc_url: &req.path,
    };
    if let Err(cause) = policy::check_play(
        &cfg,
        &shard.global().calls,
        &info,
        key.stream_name(),
        &req.query,
    )
    .await
    {
        warn!(
            "shard={} client={id} peer={peer} error: play-flv of {key} refused: {cause}",
            shard.id()
        );
        let _ = stream
            .write_all(&response(403, "text/plain", cause.client.as_bytes(), false))
            .await;
        return;
    }
    let writer = shard.new_writer();
    // A stream pulled from elsewhere (edge, relaying origin) answers 404 when it brings no
    // media within the cluster's start timeout.
    let cluster = cfg.cluster_for(key.vhost());
    let wait = if cluster.pulls() {
        cluster.start_timeout()
    } else {
        Duration::from_secs(cfg.http.flv_wait_timeout_secs)
    };
    if !wait.is_zero() {
        writer.hold();
    }
    let Some(mut client) = ClientConn::open(shard.clone(), &stream, id, peer, slot, writer.clone())
    else {
        return;
    };
    client.set_kind(ClientKind::FlvPlay, Some(key.clone()));
    // The path only: the query may hold a token.
    client.set_tc_url(req.path.as_str().into());
    if wait.is_zero() {
        writer.send_control(response_start());
    }
    shard.add_player(
        &key,
        PlayerRef::new(id, 1, writer.clone(), PlayerKind::HttpFlv),
        &req.query,
    );
    info!(
        "shard={} client={id} peer={peer} play-flv stream={key} owner={}",
        shard.id(),
        shard.owner_of(&key)
    );
    let mut found = true;
    if !wait.is_zero() {
        // Answer 404 unless media shows up in time.
        let deadline = Instant::now() + wait;
        while writer.queued_bytes() == 0 && Instant::now() < deadline {
            glommio::timer::sleep(Duration::from_millis(50)).await;
        }
        found = writer.queued_bytes() > 0;
        if found {
            writer.release_with(response_start());
        } else {
            shard.remove_player(&key, id, 1);
            warn!(
                "shard={} client={id} peer={peer} play-flv stream={key}: not published within {}, 404",
                shard.id(),
                if wait.subsec_millis() == 0 {
                    format!("{} s", wait.as_secs())
                } else {
                    format!("{} ms", wait.as_millis())
                }
            );
            writer.finish(Bytes::from(response(
                404,
                "text/plain",
                b"stream not published",
                false,
            )));
        }
    }
    // Wait for the player to go away (or the response to end with the publish).
    let mut buf = [0u8; 512];
    let mut bytes_in = 0u64;
    let reason = loop {
        match stream.read(&mut buf).await {
            Ok(0) => break client.eof_reason(),
            Ok(n) => {
                bytes_in += n as u64;
                client.add_bytes_in(n as u64);
            }
            Err(e) => break CloseReason::Read(e),
        }
    };
    if found {
        shard.remove_player(&key, id, 1);
    }
    client.close(reason, bytes_in).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str, query: &str) -> Request {
        Request {
            method: "GET".into(),
            path: path.into(),
            query: query.into(),
            keep_alive: false,
            content_length: None,
            chunked: false,
        }
    }

    #[test]
    fn keys_from_paths() {
        let k = stream_key(&req("/live/s.flv", "")).unwrap();
        assert_eq!(k.as_str(), "__defaultVhost__/live/s");
        let k = stream_key(&req("/a/b/c.flv", "vhost=v")).unwrap();
        assert_eq!((k.vhost(), k.app(), k.stream_name()), ("v", "a/b", "c"));
        assert!(stream_key(&req("/s.flv", "")).is_none());
    }

    #[test]
    fn body_starts_with_flv_header_chunk() {
        let b = response_start();
        let s = String::from_utf8_lossy(&b);
        assert!(s.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(s.contains("Transfer-Encoding: chunked\r\n"));
        assert!(b.ends_with(b"d\r\nFLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00\r\n"));
    }
}
