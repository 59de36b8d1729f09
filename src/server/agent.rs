//! The HAProxy agent-check responder and the load sampler behind it, run on shard 0.
//!
//! The sampler reads the board once a second (connections, egress from the shards' byte
//! totals, the busiest shard's CPU) into a [`LoadSample`] and keeps the smoothed weight on
//! [`LbState`](super::lb_state::LbState); each agent connection just gets the current line, so
//! a check never waits on a shard and checks from several balancers see the same weight.

use super::shard::Shard;
use crate::lb::agent::{AdminState, AgentReply, LoadSample, WeightSmoother};
use futures_lite::AsyncWriteExt;
use glommio::net::TcpListener;
use log::{debug, warn};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How often the load is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Longest an agent connection may take to accept its line.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Egress over all shards from their byte totals between two samples.
struct EgressMeter {
    last: Option<(Instant, u64)>,
}

impl EgressMeter {
    fn mbps(&mut self, now: Instant, bytes_out: u64) -> f64 {
        let rate = match self.last {
            Some((then, was)) => {
                let secs = now.saturating_duration_since(then).as_secs_f64();
                if secs > 0.0 {
                    bytes_out.saturating_sub(was) as f64 * 8.0 / 1e6 / secs
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        self.last = Some((now, bytes_out));
        rate
    }
}

/// The node's load now, from the board and the config.
fn sample(shard: &Shard, egress: &mut EgressMeter, now: Instant) -> LoadSample {
    let cfg = shard.cfg();
    let global = shard.global();
    let snaps = global.board.read();
    let bytes_out = snaps.iter().map(|s| s.bytes_out).sum();
    LoadSample {
        connections: global.connections.load(Ordering::Relaxed) as u64,
        max_connections: cfg.server.max_connections as u64,
        egress_mbps: egress.mbps(now, bytes_out),
        max_egress_mbps: cfg.lb.max_egress_mbps,
        busiest_shard_cpu: snaps.iter().map(|s| s.cpu).fold(0.0, f64::max),
    }
}

/// Sample the load until shutdown, keeping the smoothed weight on the shared state.
pub async fn run_sampler(shard: Rc<Shard>) {
    let mut smoother = WeightSmoother::default();
    let mut egress = EgressMeter { last: None };
    while !shard.is_stopping() {
        let now = Instant::now();
        let load = sample(&shard, &mut egress, now);
        let w = smoother.update(now, &load);
        shard.global().lb.set_weight(w);
        debug!(
            "agent load={:.2} (conns {}/{}, egress {:.1}/{} Mbit/s, busiest cpu {:.2}) weight={w}%",
            load.load(),
            load.connections,
            load.max_connections,
            load.egress_mbps,
            load.max_egress_mbps,
            load.busiest_shard_cpu
        );
        glommio::timer::sleep(SAMPLE_EVERY).await;
    }
}

/// The line an agent check gets now.
pub fn reply(shard: &Shard) -> AgentReply {
    let lb = &shard.global().lb;
    let admin = match (lb.admin(), shard.is_stopping()) {
        (_, true) => AdminState::Drain,
        (a, false) => a,
    };
    let r = AgentReply::new(admin, lb.weight());
    match shard.cfg().lb.agent_maxconn {
        0 => r,
        n => r.with_maxconn(n),
    }
}

/// Answer agent checks until shutdown: one line per connection, then close.
pub async fn serve(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            shard.stopped(2).await;
            None
        })
        .await;
        let mut stream = match accepted {
            None => return,
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                warn!("agent accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let line = reply(&shard).line();
        glommio::spawn_local(async move {
            let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
            if let Err(e) = stream.write_all(line.as_bytes()).await {
                debug!("agent check: write failed: {e}");
            }
            let _ = stream.close().await;
        })
        .detach();
    }
}
