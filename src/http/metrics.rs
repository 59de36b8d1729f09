//! `GET /metrics` in the Prometheus text exposition format (version 0.0.4).

use super::api::stream_views;
use crate::server::board::ShardSnapshot;
use crate::server::kinds::{ForwardState, UpstreamState};
use std::fmt::Write;

/// Label values escaped as the format asks (backslash, quote, newline).
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let l: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", esc(v)))
            .collect();
        if l.is_empty() {
            let _ = writeln!(self.0, "{name} {value}");
        } else {
            let _ = writeln!(self.0, "{name}{{{}}} {value}", l.join(","));
        }
    }
}

/// Prometheus text exposition of every shard's snapshot.
pub fn render(snaps: &[ShardSnapshot], uptime_secs: u64) -> String {
    let mut o = Out(String::with_capacity(4096));
    o.family(
        "shardcast_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
    );
    o.sample("shardcast_uptime_seconds", &[], uptime_secs);

    type PerShard = fn(&ShardSnapshot) -> u64;
    let per_shard: [(&str, &str, &str, PerShard); 9] = [
        (
            "shardcast_connections",
            "gauge",
            "Open client connections.",
            |s| s.connections as u64,
        ),
        (
            "shardcast_publishers",
            "gauge",
            "Publishers connected.",
            |s| s.clients.iter().filter(|c| c.kind.is_publisher()).count() as u64,
        ),
        (
            "shardcast_players",
            "gauge",
            "Players (RTMP and HTTP-FLV) connected.",
            |s| s.clients.iter().filter(|c| c.kind.is_player()).count() as u64,
        ),
        (
            "shardcast_bytes_received_total",
            "counter",
            "Bytes received from clients.",
            |s| s.bytes_in,
        ),
        (
            "shardcast_bytes_sent_total",
            "counter",
            "Bytes sent to clients.",
            |s| s.bytes_out,
        ),
        (
            "shardcast_dropped_frames_total",
            "counter",
            "Frames slow players skipped (drop to the next keyframe).",
            |s| s.dropped_frames,
        ),
        (
            "shardcast_spliced_writes_total",
            "counter",
            "Merged writes sent by splice from a shared pipe (no per-player copy).",
            |s| s.spliced_writes,
        ),
        (
            "shardcast_gop_cache_bytes",
            "gauge",
            "Payload bytes held in GOP caches (what idle streams' memory is mostly made of).",
            |s| s.streams.iter().map(|st| st.gop_bytes as u64).sum(),
        ),
        (
            "shardcast_mesh_media_dropped_total",
            "counter",
            "Media messages not sent to another shard because its channel was full.",
            |s| s.mesh_media_dropped,
        ),
    ];
    for (name, kind, help, f) in per_shard {
        o.family(name, kind, help);
        for s in snaps {
            o.sample(name, &[("shard", &s.shard.to_string())], f(s));
        }
    }

    let views = stream_views(snaps);
    o.family(
        "shardcast_stream_players",
        "gauge",
        "Players of a stream, all shards.",
    );
    for v in &views {
        o.sample(
            "shardcast_stream_players",
            &[("stream", v.key.as_str())],
            v.players,
        );
    }
    o.family(
        "shardcast_stream_live",
        "gauge",
        "1 while the stream is published.",
    );
    for v in &views {
        o.sample(
            "shardcast_stream_live",
            &[("stream", v.key.as_str())],
            u8::from(v.live),
        );
    }
    o.family(
        "shardcast_stream_bytes_received_total",
        "counter",
        "Bytes received from the stream's publisher.",
    );
    for v in &views {
        let l = [("stream", v.key.as_str())];
        o.sample("shardcast_stream_bytes_received_total", &l, v.recv_bytes);
    }
    o.family(
        "shardcast_stream_bytes_sent_total",
        "counter",
        "Bytes sent to the stream's players.",
    );
    for v in &views {
        let l = [("stream", v.key.as_str())];
        o.sample("shardcast_stream_bytes_sent_total", &l, v.send_bytes);
    }

    let forwards: Vec<_> = snaps.iter().flat_map(|s| &s.forwards).collect();
    o.family(
        "shardcast_forward_state",
        "gauge",
        "Forward destination state (1 for the current state).",
    );
    for f in &forwards {
        for st in [
            ForwardState::Connecting,
            ForwardState::Publishing,
            ForwardState::Backoff,
            ForwardState::Stopped,
        ] {
            let labels = [
                ("stream", f.key.as_str()),
                ("dest", f.dest.as_str()),
                ("state", st.as_str()),
            ];
            o.sample("shardcast_forward_state", &labels, u8::from(f.state == st));
        }
    }
    o.family(
        "shardcast_forward_reconnects_total",
        "counter",
        "Times a forward destination was retried.",
    );
    for f in &forwards {
        let labels = [("stream", f.key.as_str()), ("dest", f.dest.as_str())];
        o.sample("shardcast_forward_reconnects_total", &labels, f.reconnects);
    }
    o.family(
        "shardcast_forward_bytes_sent_total",
        "counter",
        "Bytes sent to a forward destination (finished sessions).",
    );
    for f in &forwards {
        let labels = [("stream", f.key.as_str()), ("dest", f.dest.as_str())];
        o.sample("shardcast_forward_bytes_sent_total", &labels, f.bytes_out);
    }
    upstreams(&mut o, snaps);
    o.0
}

/// Pulled streams (edge and relay upstreams): state and counters, labelled by stream, kind
/// and (for counters) the origin pulled from now.
fn upstreams(o: &mut Out, snaps: &[ShardSnapshot]) {
    let ups: Vec<_> = snaps.iter().flat_map(|s| &s.upstreams).collect();
    o.family(
        "shardcast_upstream_state",
        "gauge",
        "Upstream (pulled stream) state (1 for the current state).",
    );
    for u in &ups {
        for st in UpstreamState::ALL {
            let labels = [
                ("stream", u.key.as_str()),
                ("kind", u.kind.as_str()),
                ("state", st.as_str()),
            ];
            o.sample("shardcast_upstream_state", &labels, u8::from(u.state == st));
        }
    }
    type Count = fn(&crate::server::board::UpstreamStat) -> u64;
    let counters: [(&str, &str, Count); 4] = [
        (
            "shardcast_upstream_connects_total",
            "Upstream connections that reached NetStream.Play.Start.",
            |u| u.connects,
        ),
        (
            "shardcast_upstream_failovers_total",
            "Times an upstream moved to another origin after one failed.",
            |u| u.failovers,
        ),
        (
            "shardcast_upstream_redirects_total",
            "RTMP 302 redirects an upstream followed.",
            |u| u.redirects,
        ),
        (
            "shardcast_upstream_bytes_in_total",
            "Bytes an upstream read from origins.",
            |u| u.bytes_in,
        ),
    ];
    for (name, help, f) in counters {
        o.family(name, "counter", help);
        for u in &ups {
            let labels = [
                ("stream", u.key.as_str()),
                ("kind", u.kind.as_str()),
                ("origin", u.origin.as_str()),
            ];
            o.sample(name, &labels, f(u));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_escaping() {
        let snaps = vec![ShardSnapshot {
            shard: 1,
            connections: 3,
            bytes_out: 42,
            ..Default::default()
        }];
        let t = render(&snaps, 7);
        assert!(t.contains("# TYPE shardcast_connections gauge\n"));
        assert!(t.contains("shardcast_connections{shard=\"1\"} 3\n"));
        assert!(t.contains("shardcast_bytes_sent_total{shard=\"1\"} 42\n"));
        assert!(t.contains("shardcast_uptime_seconds 7\n"));
        assert_eq!(esc("a\"b\\c"), "a\\\"b\\\\c");
    }

    #[test]
    fn upstream_families() {
        use crate::server::board::UpstreamStat;
        use crate::server::key::StreamKey;
        use crate::server::kinds::UpstreamKind;
        let snaps = vec![ShardSnapshot {
            shard: 0,
            upstreams: vec![UpstreamStat {
                key: StreamKey::new("__defaultVhost__", "live", "s"),
                shard: 0,
                kind: UpstreamKind::Edge,
                state: UpstreamState::Playing,
                origin: "127.0.0.1:1935".into(),
                source: 3,
                connects: 2,
                failovers: 1,
                redirects: 0,
                bytes_in: 99,
            }],
            ..Default::default()
        }];
        let t = render(&snaps, 1);
        let l = "stream=\"__defaultVhost__/live/s\",kind=\"edge\"";
        assert!(t.contains("# TYPE shardcast_upstream_state gauge\n"));
        assert!(t.contains(&format!(
            "shardcast_upstream_state{{{l},state=\"playing\"}} 1\n"
        )));
        assert!(t.contains(&format!(
            "shardcast_upstream_state{{{l},state=\"backoff\"}} 0\n"
        )));
        let o = format!("{l},origin=\"127.0.0.1:1935\"");
        assert!(
            t.contains(&format!("shardcast_upstream_failovers_total{{{o}}} 1\n")),
            "{t}"
        );
        assert!(t.contains(&format!("shardcast_upstream_connects_total{{{o}}} 2\n")));
        assert!(t.contains(&format!("shardcast_upstream_bytes_in_total{{{o}}} 99\n")));
        assert!(t.contains("# TYPE shardcast_upstream_redirects_total counter\n"));
    }
}
