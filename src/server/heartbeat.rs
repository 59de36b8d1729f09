//! An origin's heartbeat to the proxy tier (`[cluster.register]`), run on shard 0: every
//! interval, SRS's register body with this node's endpoints and its load (streams, players,
//! egress, busiest shard's CPU) is POSTed to every proxy through the control plane, so a slow
//! or dead proxy costs only its own call.

use super::shard::Shard;
use crate::cluster::register::{Endpoint, Heartbeat, Load};
use crate::control_plane::HttpCall;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The address proxies dial for `listen`: `ip` when set, else the listen host (127.0.0.1 for a
/// wildcard).
fn endpoint(ip: &str, listen: SocketAddr) -> Endpoint {
    Endpoint {
        scheme: Some("tcp".into()),
        host: ip.to_string(),
        port: listen.port(),
    }
}

fn reach_ip(cfg_ip: &str, listen: SocketAddr) -> String {
    if !cfg_ip.is_empty() {
        cfg_ip.to_string()
    } else if listen.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        listen.ip().to_string()
    }
}

/// Egress from byte totals between two heartbeats.
struct Egress {
    last: Option<(Instant, u64)>,
}

impl Egress {
    fn mbps(&mut self, now: Instant, bytes: u64) -> f64 {
        let r = match self.last {
            Some((t, b)) => {
                let secs = now.saturating_duration_since(t).as_secs_f64();
                if secs > 0.0 {
                    bytes.saturating_sub(b) as f64 * 8.0 / 1e6 / secs
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        self.last = Some((now, bytes));
        r
    }
}

/// This node's heartbeat now.
fn build(shard: &Shard, service: &str, egress: &mut Egress) -> Option<Heartbeat> {
    let cfg = shard.cfg();
    let r = &cfg.cluster.register;
    let rtmp = cfg.listen_addr().ok()?;
    let ip = reach_ip(&r.ip, rtmp);
    let http = if cfg.http.enabled {
        cfg.http_addr().ok()
    } else {
        None
    };
    let snaps = shard.global().board.read();
    let streams = snaps
        .iter()
        .flat_map(|s| &s.streams)
        .filter(|s| s.publisher.is_some())
        .count() as u64;
    let players = snaps
        .iter()
        .flat_map(|s| &s.streams)
        .map(|s| s.players as u64)
        .sum();
    let bytes_out = snaps.iter().map(|s| s.bytes_out).sum();
    let cpu = snaps.iter().map(|s| s.cpu).fold(0.0, f64::max) * 100.0;
    Some(Heartbeat {
        device_id: r.device_id.clone(),
        ip: ip.clone(),
        server: if r.server_id.is_empty() {
            format!("shardcast-{}", rtmp.port())
        } else {
            r.server_id.clone()
        },
        service: service.to_string(),
        pid: std::process::id().to_string(),
        rtmp: vec![endpoint(&ip, rtmp)],
        http: http.iter().map(|h| endpoint(&ip, *h)).collect(),
        api: http.iter().map(|h| endpoint(&ip, *h)).collect(),
        srt: Vec::new(),
        rtc: Vec::new(),
        load: Some(Load {
            streams,
            players,
            egress_mbps: egress.mbps(Instant::now(), bytes_out),
            cpu,
        }),
    })
}

/// Heartbeat until shutdown.
pub async fn run(shard: Rc<Shard>) {
    // Changes on every start, as SRS's service id does: a restarted origin is a new origin.
    let service = format!("{:08x}", super::time::time_seed() as u32);
    let mut egress = Egress { last: None };
    log::info!(
        "shard={} heartbeats to {:?} every {} ms",
        shard.id(),
        shard.cfg().cluster.register.urls,
        shard.cfg().cluster.register.interval_ms
    );
    while !shard.is_stopping() {
        let cfg = shard.cfg();
        let r = &cfg.cluster.register;
        if let Some(hb) = build(&shard, &service, &mut egress) {
            let body = hb.to_json();
            for url in &r.urls {
                let call = HttpCall::post_json(url, &body, Duration::from_millis(r.timeout_ms));
                if let Err(e) = shard
                    .global()
                    .calls
                    .notify(call, "register heartbeat".into())
                {
                    log::warn!("register heartbeat to {url} not sent: {e}");
                }
            }
        }
        let wait = Duration::from_millis(r.interval_ms);
        glommio::timer::sleep(wait).await;
    }
}
