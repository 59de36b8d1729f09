//! Each shard's stats ticker: copies the shard's figures onto the shared board a few times a
//! second (the client list once a second: at thousands of players it is the costly part).

use super::board::{ClientStat, ForwardStat, ShardSnapshot};
use super::board::{StreamSource, StreamStat, UpstreamStat};
use super::cpu::ThreadCpu;
use super::shard::Shard;
use super::stream::Source;
use super::upstream_peer::public_state;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How often each shard publishes its snapshot.
pub const TICK: Duration = Duration::from_millis(250);

/// The client list (a visit to every connection) is refreshed every this many ticks.
pub const CLIENT_TICKS: u32 = 4;

/// This shard's clients; `elapsed` since the last time they were listed, for rates.
pub fn client_stats(shard: &Shard, elapsed: Duration) -> Vec<ClientStat> {
    let secs = elapsed.as_secs_f64().max(0.001);
    let mut out = Vec::with_capacity(shard.conns.len());
    shard.conns.for_each(|id, c| {
        let (i, o) = (c.bytes_in.get(), c.writer.bytes_out());
        let (li, lo, ki, ko) = c.rate.get();
        // Smoothed over about 4 s (4 refreshes), like SRS's short-term kbps.
        let inst_in = ((i - li) as f64 * 8.0 / 1000.0 / secs) as u64;
        let inst_out = ((o - lo) as f64 * 8.0 / 1000.0 / secs) as u64;
        let ki = (ki * 3 + inst_in) / 4;
        let ko = (ko * 3 + inst_out) / 4;
        c.rate.set((i, o, ki, ko));
        out.push(ClientStat {
            id: id.get(),
            shard: shard.id(),
            peer: c.peer_text.clone(),
            kind: c.kind.get(),
            stream: c.stream.borrow().clone(),
            tc_url: c.tc_url.borrow().clone(),
            bytes_in: i,
            bytes_out: o,
            kbps_in: ki,
            kbps_out: ko,
            alive_ms: c.started.elapsed().as_millis() as u64,
            dropped_frames: c.writer.dropped_frames(),
            relay: c.relay.borrow().as_ref().map(|p| p.get()),
        });
    });
    out
}

/// This shard's figures, with the client list given and its CPU use.
pub fn snapshot(shard: &Shard, clients: Vec<ClientStat>, cpu: f64) -> ShardSnapshot {
    let upstreams: Vec<UpstreamStat> = shard
        .owner
        .borrow()
        .upstreams()
        .map(|h| UpstreamStat {
            key: h.key.clone(),
            shard: shard.id(),
            kind: h.kind,
            state: public_state(h.state.get()),
            origin: h.origin.borrow().clone(),
            source: h.source.get(),
            connects: h.connects.get(),
            failovers: h.failovers.get(),
            redirects: h.redirects.get(),
            bytes_in: h.bytes_in.get(),
        })
        .collect();
    // An upstream feeds its stream on this (its owner) shard under its own id.
    let source_of = |id: u64| match upstreams.iter().find(|u| u.source == id) {
        Some(u) => StreamSource::Pulled {
            kind: u.kind,
            from: u.origin.clone(),
        },
        None => StreamSource::Publisher { client: id },
    };
    let streams = shard
        .streams
        .borrow()
        .values()
        .map(|s| {
            let c = s.codecs();
            let publisher = match s.source {
                Source::Local { conn_id, .. } => Some(conn_id.get()),
                _ => None,
            };
            StreamStat {
                key: s.key.clone(),
                live: s.is_live(),
                publisher,
                source: publisher.map(source_of),
                players: s.players.len(),
                frames_in: s.frames_in,
                bytes_in: s.bytes_in,
                gop_frames: s.gop_len(),
                gop_bytes: s.gop_bytes(),
                video: c.video.clone(),
                audio: c.audio.clone(),
                live_since_ms: s.live_since_ms,
            }
        })
        .collect();
    let forwards = shard
        .forwards
        .borrow()
        .peers()
        .map(|h| ForwardStat {
            key: h.key.clone(),
            shard: shard.id(),
            dest: h.target().display.clone(),
            state: h.state.get(),
            reconnects: h.reconnects.get(),
            bytes_out: h.bytes_out.get(),
            last_error: h.last_error.borrow().clone(),
        })
        .collect();
    ShardSnapshot {
        shard: shard.id(),
        connections: shard.conns.len(),
        bytes_in: shard.totals.bytes_in.get(),
        bytes_out: shard.totals.bytes_out.get(),
        dropped_frames: shard.totals.dropped_frames.get(),
        spliced_writes: shard.totals.spliced_writes.get(),
        mesh_media_dropped: shard
            .links
            .outboxes
            .iter()
            .map(|o| o.media_dropped.get())
            .sum(),
        streams,
        clients,
        forwards,
        upstreams,
        cpu,
    }
}

/// Runs on every shard until shutdown: publishes its snapshot every `TICK`.
pub async fn run(shard: Rc<Shard>) {
    let mut last_clients = Instant::now();
    let mut tick = 0u32;
    let mut meter = ThreadCpu::default();
    let mut cpu = 0.0;
    while !shard.is_stopping() {
        // The first tick lists clients too, so a new server answers at once.
        let with_clients = tick.is_multiple_of(CLIENT_TICKS);
        tick = tick.wrapping_add(1);
        let clients = if with_clients {
            let now = Instant::now();
            let list = client_stats(&shard, now.duration_since(last_clients));
            last_clients = now;
            cpu = meter.sample(now);
            list
        } else {
            Vec::new()
        };
        let snap = snapshot(&shard, clients, cpu);
        shard.global().board.publish(snap, with_clients);
        glommio::timer::sleep(TICK).await;
    }
}
