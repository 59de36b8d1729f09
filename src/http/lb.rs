//! The balancer-facing routes: `/healthz` for `option httpchk`, the drain switch
//! (`/api/v1/lb/drain`), nginx-rtmp's `/stat` XML and `/control/drop/...`.

use super::api::{clients_of, stream_views};
use super::Reply;
use crate::lb::agent::AdminState;
use crate::lb::control::{drop_reply, DropRequest};
use crate::lb::stat_xml::{self, AppStat, AudioMetaXml, ClientXml, MetaXml, StatInput};
use crate::lb::stat_xml::{StreamStatXml, VideoMetaXml};
use crate::server::board::ShardSnapshot;
use crate::server::mesh::{ControlMsg, DropTally, ShardMsg};
use crate::server::shard::Shard;
use crate::server::time::unix_ms;
use serde_json::json;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest `/control/drop` waits for every shard's count.
const DROP_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /healthz`: 200 when serving, 503 while starting, draining or stopping.
pub fn healthz(shard: &Shard) -> Reply {
    let h = shard.global().lb.health();
    Reply::text(h.status(), h.as_str())
}

/// `GET /api/v1/lb`: the admin state and the agent's weight.
pub fn status(shard: &Shard) -> Reply {
    let lb = &shard.global().lb;
    Reply::json(
        200,
        &json!({
            "code": 0,
            "admin": lb.admin().as_str(),
            "health": lb.health().as_str(),
            "weight": lb.weight(),
            "agent": crate::server::agent::reply(shard).line().trim_end(),
        }),
    )
}

/// `POST` (drain) or `DELETE` (back to ready) `/api/v1/lb/drain`.
pub fn set_drain(shard: &Shard, drain: bool) -> Reply {
    set_admin(
        shard,
        if drain {
            AdminState::Drain
        } else {
            AdminState::Ready
        },
    )
}

/// `POST` (maintenance: HAProxy takes the node out, no new traffic at all) or `DELETE` (back
/// to ready) `/api/v1/lb/maint`.
pub fn set_maint(shard: &Shard, maint: bool) -> Reply {
    set_admin(
        shard,
        if maint {
            AdminState::Maint
        } else {
            AdminState::Ready
        },
    )
}

fn set_admin(shard: &Shard, state: AdminState) -> Reply {
    let lb = &shard.global().lb;
    if lb.admin() != state {
        log::info!("lb: admin state {} (API)", state.as_str());
    }
    lb.set_admin(state);
    Reply::json(200, &json!({ "code": 0, "admin": state.as_str() }))
}

/// `GET /stat`: nginx-rtmp's `rtmp_stat` document.
pub fn stat(shard: &Shard) -> Reply {
    let board = &shard.global().board;
    let snaps = board.read();
    let input = stat_input(&snaps, board.started.elapsed().as_secs());
    Reply {
        status: 200,
        content_type: "text/xml",
        body: stat_xml::render(&input).into_bytes(),
    }
}

/// The board in `/stat`'s terms: applications, their streams, each stream's clients.
pub fn stat_input(snaps: &[ShardSnapshot], uptime_secs: u64) -> StatInput {
    let now = unix_ms();
    let clients = clients_of(snaps);
    let mut apps: BTreeMap<String, AppStat> = BTreeMap::new();
    let (mut bw_in, mut bw_out) = (0, 0);
    for v in stream_views(snaps) {
        let mine: Vec<ClientXml> = clients
            .iter()
            .filter(|c| c.stream.as_ref() == Some(&v.key))
            .filter(|c| c.kind.is_publisher() || c.kind.is_player())
            .map(|c| ClientXml {
                id: c.id,
                address: c
                    .peer
                    .parse::<SocketAddr>()
                    .map(|a| a.ip().to_string())
                    .unwrap_or_else(|_| c.peer.to_string()),
                time_ms: c.alive_ms,
                dropped: c.dropped_frames,
                publishing: c.kind.is_publisher(),
                active: true,
                ..ClientXml::default()
            })
            .collect();
        bw_in += v.kbps_recv * 1000;
        bw_out += v.kbps_send * 1000;
        let meta = (v.video.is_some() || v.audio.is_some()).then(|| MetaXml {
            video: v
                .video
                .as_ref()
                .map(|i| VideoMetaXml {
                    width: i.width,
                    height: i.height,
                    codec: Some(i.codec.to_string()),
                    ..VideoMetaXml::default()
                })
                .unwrap_or_default(),
            audio: v
                .audio
                .as_ref()
                .map(|a| AudioMetaXml {
                    codec: Some(a.codec.to_string()),
                    channels: Some(u32::from(a.channels)),
                    sample_rate: Some(a.sample_rate),
                    ..AudioMetaXml::default()
                })
                .unwrap_or_default(),
        });
        let stream = StreamStatXml {
            name: v.key.stream_name().to_string(),
            time_ms: if v.live_since_ms > 0 {
                now.saturating_sub(v.live_since_ms)
            } else {
                0
            },
            bw_in: v.kbps_recv * 1000,
            bytes_in: v.recv_bytes,
            bw_out: v.kbps_send * 1000,
            bytes_out: v.send_bytes,
            nclients: (v.players + usize::from(v.publisher.is_some())) as u64,
            publishing: v.publisher.is_some(),
            active: v.live,
            clients: mine,
            meta,
            ..StreamStatXml::default()
        };
        apps.entry(v.key.app().to_string())
            .or_insert_with(|| AppStat {
                name: v.key.app().to_string(),
                streams: Vec::new(),
            })
            .streams
            .push(stream);
    }
    StatInput {
        nginx_version: env!("CARGO_PKG_VERSION").into(),
        nginx_rtmp_version: format!("shardcast {}", env!("CARGO_PKG_VERSION")),
        compiler: "rustc".into(),
        built: String::new(),
        pid: std::process::id(),
        uptime_secs,
        naccepted: snaps.iter().map(|s| s.connections as u64).sum(),
        bw_in,
        bytes_in: snaps.iter().map(|s| s.bytes_in).sum(),
        bw_out,
        bytes_out: snaps.iter().map(|s| s.bytes_out).sum(),
        applications: apps.into_values().collect(),
        ..StatInput::default()
    }
}

/// `/control/drop/{publisher|subscriber|client}?...`: every shard closes its matching
/// sessions and answers how many; the reply is the sum (nginx-rtmp's bare decimal).
pub async fn control_drop(shard: &Shard, target: &str) -> Reply {
    let req = match DropRequest::parse(target) {
        Ok(r) => Arc::new(r),
        Err(e) => return Reply::text(e.status(), &e.to_string()),
    };
    let shards = shard.links.shards;
    let tally = Arc::new(DropTally::default());
    for to in 0..shards {
        shard.send(
            to,
            ShardMsg::Control(ControlMsg::Drop {
                req: req.clone(),
                tally: tally.clone(),
            }),
        );
    }
    let deadline = Instant::now() + DROP_TIMEOUT;
    while tally.answered() < shards && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    if tally.answered() < shards {
        log::warn!(
            "control drop: {} of {shards} shards answered in time",
            tally.answered()
        );
    }
    Reply::text(200, &drop_reply(tally.dropped()))
}
