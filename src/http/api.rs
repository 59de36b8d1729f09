//! The HTTP API in SRS's shape (`/api/v1/...`, `{"code":0,...}`), built from the shards'
//! snapshots. Streams and clients are summed over all shards here, on the reader's side.

use crate::server::board::{AudioInfo, ClientStat, ShardSnapshot, StreamSource, VideoInfo};
use crate::server::key::StreamKey;
use crate::server::time::unix_ms;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// SRS error codes the API answers with.
pub const CODE_STREAM_NOT_FOUND: u32 = 2048;
/// SRS error code for a client id that is not connected.
pub const CODE_CLIENT_NOT_FOUND: u32 = 2049;

/// One stream summed over every shard.
#[derive(Debug, Clone)]
pub struct StreamView {
    /// The stream's vhost/app/name key.
    pub key: StreamKey,
    /// A source is feeding it on some shard.
    pub live: bool,
    /// Client id of the publisher, if any.
    pub publisher: Option<u64>,
    /// Players over all shards.
    pub players: usize,
    /// Frames received from the publisher.
    pub frames: u64,
    /// Bytes received from the publisher.
    pub recv_bytes: u64,
    /// Bytes sent to the players.
    pub send_bytes: u64,
    /// Receive rate, kbit/s (the publisher's).
    pub kbps_recv: u64,
    /// Send rate, kbit/s (summed over the players).
    pub kbps_send: u64,
    /// Video codec and size, once known.
    pub video: Option<VideoInfo>,
    /// Audio codec, rate and channels, once known.
    pub audio: Option<AudioInfo>,
    /// When the current publish started (unix ms).
    pub live_since_ms: u64,
    /// What feeds it (a client, an edge or relay upstream), if anything does.
    pub source: Option<StreamSource>,
    /// GOP cache frames (on the publisher's shard; each shard with players keeps its own).
    pub gop_frames: usize,
    /// GOP cache payload bytes, summed over shards.
    pub gop_bytes: usize,
}

/// Streams over all shards, sorted by key.
pub fn stream_views(snaps: &[ShardSnapshot]) -> Vec<StreamView> {
    let mut by_key: BTreeMap<String, StreamView> = BTreeMap::new();
    for snap in snaps {
        for s in &snap.streams {
            let v = by_key
                .entry(s.key.as_str().to_string())
                .or_insert_with(|| StreamView {
                    key: s.key.clone(),
                    live: false,
                    publisher: None,
                    players: 0,
                    frames: 0,
                    recv_bytes: 0,
                    send_bytes: 0,
                    kbps_recv: 0,
                    kbps_send: 0,
                    video: None,
                    audio: None,
                    live_since_ms: 0,
                    source: None,
                    gop_frames: 0,
                    gop_bytes: 0,
                });
            v.gop_frames = v.gop_frames.max(s.gop_frames);
            v.gop_bytes += s.gop_bytes;
            v.live |= s.live;
            v.players += s.players;
            if s.publisher.is_some() {
                v.publisher = s.publisher;
                v.source = s.source.clone();
                v.frames = s.frames_in;
                v.live_since_ms = s.live_since_ms;
            }
            if v.video.is_none() {
                v.video = s.video.clone();
            }
            if v.audio.is_none() {
                v.audio = s.audio.clone();
            }
        }
    }
    for c in snaps.iter().flat_map(|s| &s.clients) {
        let Some(v) = c.stream.as_ref().and_then(|k| by_key.get_mut(k.as_str())) else {
            continue;
        };
        if c.kind.is_publisher() {
            v.recv_bytes += c.bytes_in;
            v.kbps_recv += c.kbps_in;
        } else {
            v.send_bytes += c.bytes_out;
            v.kbps_send += c.kbps_out;
        }
    }
    by_key.into_values().collect()
}

/// Every client on every shard, sorted by id.
pub fn clients_of(snaps: &[ShardSnapshot]) -> Vec<&ClientStat> {
    let mut v: Vec<&ClientStat> = snaps.iter().flat_map(|s| &s.clients).collect();
    v.sort_by_key(|c| c.id);
    v
}

fn server_id() -> String {
    format!("shardcast-{}", std::process::id())
}

/// `GET /api/v1/versions`: the shardcast version, split SRS-style.
pub fn versions() -> Value {
    let mut parts = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    json!({
        "code": 0,
        "server": server_id(),
        "data": {
            "major": parts.next().unwrap_or(0),
            "minor": parts.next().unwrap_or(0),
            "revision": parts.next().unwrap_or(0),
            "version": env!("CARGO_PKG_VERSION"),
        }
    })
}

/// `{"type":"publisher","client":"id"}`, `{"type":"edge"|"relay","from":"host:port"}` or null.
fn source_json(s: Option<&StreamSource>) -> Value {
    match s {
        Some(StreamSource::Publisher { client }) => {
            json!({ "type": "publisher", "client": client.to_string() })
        }
        Some(StreamSource::Pulled { kind, from }) => json!({ "type": kind.as_str(), "from": from }),
        None => Value::Null,
    }
}

fn stream_json(v: &StreamView) -> Value {
    let now = unix_ms();
    // An upstream's publish is not a client's: no client id to look up under /clients.
    let cid = match &v.source {
        Some(StreamSource::Pulled { .. }) => None,
        _ => v.publisher.map(|p| p.to_string()),
    };
    json!({
        "id": v.key.api_id(),
        "name": v.key.stream_name(),
        "vhost": v.key.vhost(),
        "app": v.key.app(),
        "url": format!("/{}/{}", v.key.app(), v.key.stream_name()),
        "live_ms": if v.live { now.saturating_sub(v.live_since_ms) } else { 0 },
        // Players of the stream over all shards (the publisher is under "publish").
        "clients": v.players,
        "frames": v.frames,
        "send_bytes": v.send_bytes,
        "recv_bytes": v.recv_bytes,
        "kbps": { "recv_30s": v.kbps_recv, "send_30s": v.kbps_send },
        // Not in SRS's answer: the memory a stream holds for late joiners.
        "gop": { "frames": v.gop_frames, "bytes": v.gop_bytes },
        "publish": {
            "active": v.live,
            "cid": cid,
        },
        "source": source_json(v.source.as_ref()),
        "video": v.video.as_ref().map(|x| json!({
            "codec": x.codec, "width": x.width, "height": x.height,
        })),
        "audio": v.audio.as_ref().map(|a| json!({
            "codec": a.codec, "sample_rate": a.sample_rate, "channel": a.channels,
        })),
    })
}

/// `GET /api/v1/streams`: every stream.
pub fn streams(snaps: &[ShardSnapshot]) -> Value {
    let list: Vec<Value> = stream_views(snaps).iter().map(stream_json).collect();
    json!({ "code": 0, "server": server_id(), "streams": list })
}

/// `GET /api/v1/streams/{id}`: one stream by API id; `None` when unknown.
pub fn stream(snaps: &[ShardSnapshot], id: &str) -> Option<Value> {
    let views = stream_views(snaps);
    let v = views.iter().find(|v| v.key.api_id() == id)?;
    Some(json!({ "code": 0, "server": server_id(), "stream": stream_json(v) }))
}

fn client_json(c: &ClientStat) -> Value {
    let (vhost, app, name) = match &c.stream {
        Some(k) => (k.vhost(), k.app(), k.stream_name()),
        None => ("", "", ""),
    };
    let ip = c
        .peer
        .rsplit_once(':')
        .map(|(ip, _)| ip.trim_matches(['[', ']']))
        .unwrap_or(&c.peer);
    let (peer, tc_url): (&str, &str) = (&c.peer, &c.tc_url);
    json!({
        "id": c.id.to_string(),
        "vhost": vhost,
        "stream": c.stream.as_ref().map(|k| k.api_id()),
        "ip": ip,
        "peer": peer,
        "pageUrl": "",
        "swfUrl": "",
        "tcUrl": tc_url,
        "url": if name.is_empty() { String::new() } else { format!("/{app}/{name}") },
        "type": c.kind.as_str(),
        "publish": c.kind.is_publisher(),
        "alive": c.alive_ms as f64 / 1000.0,
        "send_bytes": c.bytes_out,
        "recv_bytes": c.bytes_in,
        "kbps": { "recv_30s": c.kbps_in, "send_30s": c.kbps_out },
        "dropped_frames": c.dropped_frames,
        "shard": c.shard,
        // Proxies: how a player's media crosses (splice or re-chunk) and the message counts.
        "relay": c.relay.map(|p| json!({
            "path": p.path.name(),
            "rechunked": p.rechunked,
            "as_is": p.as_is,
            "rewritten": p.rewritten,
        })),
    })
}

/// `GET /api/v1/clients`: every client.
pub fn clients(snaps: &[ShardSnapshot]) -> Value {
    let list: Vec<Value> = clients_of(snaps).into_iter().map(client_json).collect();
    json!({ "code": 0, "server": server_id(), "clients": list })
}

/// `GET /api/v1/clients/{id}`: one client by id; `None` when unknown.
pub fn client(snaps: &[ShardSnapshot], id: u64) -> Option<Value> {
    let c = clients_of(snaps).into_iter().find(|c| c.id == id)?;
    Some(json!({ "code": 0, "server": server_id(), "client": client_json(c) }))
}

/// Resident memory of this process in KiB (from /proc).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * 4)
        .unwrap_or(0)
}

fn load_avg() -> [f64; 3] {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = s
        .split_whitespace()
        .map(|x| x.parse::<f64>().unwrap_or(0.0));
    [
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
    ]
}

/// `GET /api/v1/summaries`: process, load and traffic totals; `uptime_secs` since start.
pub fn summaries(snaps: &[ShardSnapshot], uptime_secs: u64) -> Value {
    let views = stream_views(snaps);
    let clients = clients_of(snaps);
    let kbps_in: u64 = clients.iter().map(|c| c.kbps_in).sum();
    let kbps_out: u64 = clients.iter().map(|c| c.kbps_out).sum();
    let [l1, l5, l15] = load_avg();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    json!({
        "code": 0,
        "server": server_id(),
        "data": {
            "ok": true,
            "now_ms": unix_ms(),
            "self": {
                "version": env!("CARGO_PKG_VERSION"),
                "pid": std::process::id(),
                "mem_kbyte": rss_kib(),
                "srs_uptime": uptime_secs,
                "shards": snaps.len(),
            },
            "system": {
                "cpus": cpus,
                "cpus_online": cpus,
                "load_1m": l1, "load_5m": l5, "load_15m": l15,
                "conn_srs": snaps.iter().map(|s| s.connections).sum::<usize>(),
                "streams": views.len(),
                "streams_live": views.iter().filter(|v| v.live).count(),
                "publishers": clients.iter().filter(|c| c.kind.is_publisher()).count(),
                "players": clients.iter().filter(|c| c.kind.is_player()).count(),
                "bytes_in": snaps.iter().map(|s| s.bytes_in).sum::<u64>(),
                "bytes_out": snaps.iter().map(|s| s.bytes_out).sum::<u64>(),
                "kbps_in": kbps_in,
                "kbps_out": kbps_out,
                "dropped_frames": snaps.iter().map(|s| s.dropped_frames).sum::<u64>(),
            }
        }
    })
}

/// An error answer: an SRS error `code` and a message.
pub fn error(code: u32, message: &str) -> Value {
    json!({ "code": code, "server": server_id(), "message": message })
}

/// SRS's `/api/v1/clusters`: does this node publish the stream? (coworker discovery)
pub fn clusters(shard: &crate::server::shard::Shard, query: &str) -> Value {
    use crate::cluster::coworkers::{clusters_answer, ClusterQuery, SelfNode};
    let q = ClusterQuery::from_query(query);
    let cfg = shard.cfg();
    let vhost = if q.vhost.is_empty() {
        crate::server::key::DEFAULT_VHOST
    } else {
        q.vhost.as_str()
    };
    let key = StreamKey::new(vhost, &q.app, &q.stream);
    let published = shard.global().is_published(&key).then_some(vhost);
    let listen = cfg.listen_addr().ok();
    let node = SelfNode {
        listen_host: listen.map(|a| a.ip().to_string()).unwrap_or_default(),
        listen_port: listen.map(|a| a.port()).unwrap_or(1935),
        api_listen: cfg.http.listen.clone(),
        public_ip: None,
    };
    clusters_answer(&q, &node, published)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::board::StreamStat;

    fn snap(shard: usize, players: usize, publisher: Option<u64>) -> ShardSnapshot {
        let key = StreamKey::new("__defaultVhost__", "live", "s");
        let mut s = ShardSnapshot {
            shard,
            ..Default::default()
        };
        s.streams.push(StreamStat {
            key: key.clone(),
            live: true,
            publisher,
            players,
            frames_in: 10,
            gop_frames: 3,
            gop_bytes: 1000,
            bytes_in: 1000,
            video: None,
            audio: None,
            live_since_ms: 1,
            source: publisher.map(|client| StreamSource::Publisher { client }),
        });
        for i in 0..players {
            s.clients.push(ClientStat {
                id: (i * 2 + shard) as u64 + 10,
                shard,
                peer: "127.0.0.1:5000".into(),
                kind: crate::server::kinds::ClientKind::RtmpPlay,
                stream: Some(key.clone()),
                tc_url: "".into(),
                bytes_in: 0,
                bytes_out: 100,
                kbps_in: 0,
                kbps_out: 8,
                alive_ms: 1500,
                dropped_frames: 0,
                relay: None,
            });
        }
        s
    }

    #[test]
    fn streams_sum_over_shards() {
        let snaps = vec![snap(0, 2, Some(4)), snap(1, 1, None)];
        let v = streams(&snaps);
        let s = &v["streams"][0];
        assert_eq!(s["clients"], 3, "players over both shards");
        assert_eq!(s["send_bytes"], 300);
        assert_eq!(s["publish"]["cid"], "4");
        assert_eq!(s["source"], json!({"type": "publisher", "client": "4"}));
        assert_eq!(s["name"], "s");
        // Each shard's GOP cache counts: bytes add up, frames are one cache's.
        assert_eq!(s["gop"], json!({"frames": 3, "bytes": 2000}));
        let id = s["id"].as_str().unwrap();
        assert!(stream(&snaps, id).is_some());
        assert!(stream(&snaps, "nope").is_none());
    }

    #[test]
    fn a_pulled_stream_names_its_origin_not_a_client() {
        let mut snaps = vec![snap(0, 1, Some(9)), snap(1, 0, None)];
        snaps[0].streams[0].source = Some(StreamSource::Pulled {
            kind: crate::server::kinds::UpstreamKind::Edge,
            from: "10.0.0.1:1935".into(),
        });
        let s = &streams(&snaps)["streams"][0];
        assert_eq!(
            s["source"],
            json!({"type": "edge", "from": "10.0.0.1:1935"})
        );
        assert!(s["publish"]["cid"].is_null(), "{s}");
        assert_eq!(s["publish"]["active"], true);
        let idle = vec![snap(0, 1, None)];
        assert!(streams(&idle)["streams"][0]["source"].is_null());
    }

    #[test]
    fn clients_list_and_lookup() {
        let snaps = vec![snap(0, 2, Some(4)), snap(1, 1, None)];
        let v = clients(&snaps);
        assert_eq!(v["clients"].as_array().unwrap().len(), 3);
        assert_eq!(v["clients"][0]["ip"], "127.0.0.1");
        assert_eq!(v["clients"][0]["url"], "/live/s");
        assert!(client(&snaps, 10).is_some());
        assert!(client(&snaps, 999).is_none());
        assert_eq!(versions()["code"], 0);
        assert_eq!(summaries(&snaps, 5)["data"]["system"]["players"], 3);
    }
}
