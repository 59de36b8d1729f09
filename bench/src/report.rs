//! The end of a run: per-connection reports folded into one summary, printed as a table on
//! stdout and written as JSON (same figures plus the run's parameters) for scripts.

use crate::args::LoadArgs;
use crate::player::{Outcome, PlayerReport};
use crate::procstat::{HostSample, ProcSample};
use crate::runner::RunOutput;
use crate::schedule::Schedule;
use crate::stats::{percentile, LatencySummary};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// At most this many distinct error messages are kept in the summary.
const ERROR_SAMPLES: usize = 10;

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub label: Option<String>,
    pub unix_time: u64,
    pub params: LoadArgs,
    pub threads: usize,
    pub schedule: Schedule,
    pub media: Option<MediaInfo>,
    pub players: PlayersSummary,
    pub latency: Option<LatencySummary>,
    pub publishers: PublishersSummary,
    pub server: Option<ServerSummary>,
    pub generator: GeneratorSummary,
    /// The whole machine over the window.
    pub host: Option<HostSummary>,
    /// Distinct error messages and how often each happened.
    pub errors: BTreeMap<String, usize>,
    /// Per-node figures, with --node-api.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<crate::nodes::NodesSummary>,
    /// Per-player figures, with --per-player.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_player: Option<Vec<PlayerReport>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MediaInfo {
    pub loop_period_ms: u32,
    pub video_fps: Option<f64>,
    pub truncated: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl Percentiles {
    fn of(mut v: Vec<f64>) -> Self {
        v.sort_by(f64::total_cmp);
        Percentiles {
            count: v.len(),
            p50: percentile(&v, 50.0),
            p99: percentile(&v, 99.0),
            max: v.last().copied(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PlayersSummary {
    pub total: usize,
    /// Players whose play was approved and that received media.
    pub played: usize,
    pub with_video: usize,
    pub kept_up: usize,
    pub kept_up_fraction: f64,
    pub first_frame_keyframe: usize,
    pub first_frame_not_keyframe: usize,
    pub join_ms: Percentiles,
    /// Frame rate used by the kept-up rule (median over players).
    pub fps: Option<f64>,
    pub bytes: u64,
    pub messages: u64,
    pub video_frames: u64,
    pub window_bytes: u64,
    pub window_s: f64,
    pub throughput_mbit_s: f64,
    pub stalls: u64,
    pub players_stalled: usize,
    pub disconnects: usize,
    pub errors: usize,
    pub stream_eofs: u64,
    pub latency_misses: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PublishersSummary {
    pub total: usize,
    pub published: usize,
    pub frames_sent: u64,
    pub bytes_sent: u64,
    pub max_lateness_ms: f64,
    pub disconnects: usize,
    pub errors: usize,
}

/// The load generator's own cost over the window: near `threads` cores busy means the figures
/// may be limited by the generator, not the server.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GeneratorSummary {
    pub cpu_s: Option<f64>,
    /// CPU seconds per second of window divided by threads (1.0 = every thread saturated).
    pub utilisation: Option<f64>,
}

/// The machine's CPU over the window: how busy it was, and how much of that was neither the
/// server (`--server-pid`) nor this generator (another build or load on the machine, or other
/// processes of the run such as separate publishers).
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostSummary {
    /// Cores busy on average over the window (every CPU of the machine).
    pub busy_cores: f64,
    /// CPUs of the machine.
    pub cores: f64,
    /// Busy cores not accounted to the server or the generator.
    pub other_cores: f64,
}

/// The machine's busy cores over a window from its two samples, and how many of them were
/// neither the server's (`server_cpu_s`) nor this generator's (`own_cpu_s`) CPU seconds.
pub fn host_summary(
    start: Option<&HostSample>,
    end: Option<&HostSample>,
    server_cpu_s: Option<f64>,
    own_cpu_s: Option<f64>,
) -> Option<HostSummary> {
    let (a, b) = (start?, end?);
    let cpus = f64::from(b.cpus.max(1));
    // Wall time by the clock; without it, from /proc/stat's totals (every CPU's time went by
    // once), which overcount where idle time is charged twice.
    let wall = match (a.taken, b.taken) {
        (Some(t0), Some(t1)) => t1.saturating_duration_since(t0).as_secs_f64(),
        _ => (b.total_s - a.total_s) / cpus,
    };
    if wall <= 0.0 {
        return None;
    }
    // Every process's own CPU time where it was read; /proc/stat's tick samples otherwise.
    let busy_s = if b.processes.is_empty() {
        b.busy_s - a.busy_s
    } else {
        a.process_cpu_since(b)
    };
    let busy = busy_s.max(0.0) / wall;
    let ours = (server_cpu_s.unwrap_or(0.0) + own_cpu_s.unwrap_or(0.0)) / wall;
    Some(HostSummary {
        busy_cores: busy,
        cores: cpus,
        other_cores: (busy - ours).max(0.0),
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerSummary {
    pub pids: Vec<i32>,
    pub idle: Option<ProcSample>,
    pub window_start: Option<ProcSample>,
    pub window_end: Option<ProcSample>,
    /// Server CPU seconds over the window.
    pub cpu_s: Option<f64>,
    /// Server CPU seconds per GB (1e9 bytes) delivered to players over the window.
    pub cpu_s_per_gb: Option<f64>,
    /// (RSS at the window's end - idle RSS) / players, in KiB.
    pub rss_per_player_kib: Option<f64>,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    percentile(&v, 50.0)
}

pub fn summarize(args: &LoadArgs, out: &RunOutput, per_player: bool) -> Summary {
    let ps = &out.players;
    let window_s = out.schedule.window().as_secs_f64();
    let window_bytes: u64 = ps.iter().map(|p| p.window_bytes).sum();
    let kept_up = ps.iter().filter(|p| p.kept_up).count();
    let mut errors = BTreeMap::new();
    for p in ps {
        if let Outcome::Error(e) = &p.outcome {
            *errors.entry(e.clone()).or_insert(0) += 1;
        }
    }
    for p in &out.publishers {
        if let Some(e) = &p.error {
            *errors.entry(format!("publisher: {e}")).or_insert(0) += 1;
        }
    }
    while errors.len() > ERROR_SAMPLES {
        errors.pop_last();
    }
    let players = PlayersSummary {
        total: ps.len(),
        played: ps.iter().filter(|p| p.played).count(),
        with_video: ps.iter().filter(|p| p.video_frames > 0).count(),
        kept_up,
        kept_up_fraction: if ps.is_empty() {
            0.0
        } else {
            kept_up as f64 / ps.len() as f64
        },
        first_frame_keyframe: ps
            .iter()
            .filter(|p| p.first_video_keyframe == Some(true))
            .count(),
        first_frame_not_keyframe: ps
            .iter()
            .filter(|p| p.first_video_keyframe == Some(false))
            .count(),
        join_ms: Percentiles::of(ps.iter().filter_map(|p| p.join_ms).collect()),
        fps: out
            .fps
            .or_else(|| median(ps.iter().filter_map(|p| p.fps).collect())),
        bytes: ps.iter().map(|p| p.bytes).sum(),
        messages: ps.iter().map(|p| p.messages).sum(),
        video_frames: ps.iter().map(|p| p.video_frames).sum(),
        window_bytes,
        window_s,
        throughput_mbit_s: if window_s > 0.0 {
            window_bytes as f64 * 8.0 / window_s / 1e6
        } else {
            0.0
        },
        stalls: ps.iter().map(|p| u64::from(p.stalls)).sum(),
        players_stalled: ps.iter().filter(|p| p.stalls > 0).count(),
        disconnects: ps
            .iter()
            .filter(|p| p.outcome == Outcome::Disconnected)
            .count(),
        errors: ps
            .iter()
            .filter(|p| matches!(p.outcome, Outcome::Error(_)))
            .count(),
        stream_eofs: ps.iter().map(|p| u64::from(p.stream_eofs)).sum(),
        latency_misses: ps.iter().map(|p| p.latency_misses).sum(),
    };
    let pubs = &out.publishers;
    let publishers = PublishersSummary {
        total: pubs.len(),
        published: pubs.iter().filter(|p| p.published).count(),
        frames_sent: pubs.iter().map(|p| p.frames_sent).sum(),
        bytes_sent: pubs.iter().map(|p| p.bytes_sent).sum(),
        max_lateness_ms: pubs.iter().map(|p| p.max_lateness_ms).fold(0.0, f64::max),
        disconnects: pubs.iter().filter(|p| p.disconnected).count(),
        errors: pubs.iter().filter(|p| p.error.is_some()).count(),
    };
    let server = (!args.server_pids.is_empty()).then(|| {
        let srv = &out.server;
        // A sample that found no process means the server was gone: no figures from it.
        let alive = |p: Option<ProcSample>| p.filter(|p| p.processes > 0);
        let (idle, start, end) = (
            alive(srv.idle),
            alive(srv.window_start),
            alive(srv.window_end),
        );
        let cpu_s = start.zip(end).map(|(a, b)| (b.cpu_s - a.cpu_s).max(0.0));
        ServerSummary {
            pids: args.server_pids.clone(),
            idle: srv.idle,
            window_start: srv.window_start,
            window_end: srv.window_end,
            cpu_s,
            cpu_s_per_gb: cpu_s
                .filter(|_| window_bytes > 0)
                .map(|c| c / (window_bytes as f64 / 1e9)),
            rss_per_player_kib: idle
                .zip(end)
                .filter(|_| !ps.is_empty())
                .map(|(i, e)| (e.rss_kib as f64 - i.rss_kib as f64) / ps.len() as f64),
        }
    });
    Summary {
        label: args.label.clone(),
        unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        params: args.clone(),
        threads: out.threads,
        schedule: out.schedule.clone(),
        media: out
            .media
            .map(|(loop_period_ms, video_fps, truncated)| MediaInfo {
                loop_period_ms,
                video_fps,
                truncated,
            }),
        players,
        latency: out
            .latency_measured
            .then(|| LatencySummary::from_us(&out.latency_us)),
        publishers,
        server,
        generator: {
            let s = &out.server;
            let cpu_s = s
                .own_start
                .zip(s.own_end)
                .map(|(a, b)| (b.cpu_s - a.cpu_s).max(0.0));
            GeneratorSummary {
                cpu_s,
                utilisation: cpu_s
                    .filter(|_| window_s > 0.0)
                    .map(|c| c / window_s / out.threads.max(1) as f64),
            }
        },
        host: {
            let srv = &out.server;
            let delta = |a: Option<ProcSample>, b: Option<ProcSample>| {
                a.zip(b)
                    .filter(|(a, b)| a.processes > 0 && b.processes > 0)
                    .map(|(a, b)| (b.cpu_s - a.cpu_s).max(0.0))
            };
            host_summary(
                srv.host_start.as_ref(),
                srv.host_end.as_ref(),
                delta(srv.window_start, srv.window_end),
                delta(srv.own_start, srv.own_end),
            )
        },
        errors,
        nodes: out
            .nodes
            .as_ref()
            .map(|w| crate::nodes::summarize(w, ps, window_s)),
        per_player: per_player.then(|| ps.clone()),
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:.digits$}"))
}

/// The human-readable table.
pub fn table(s: &Summary) -> String {
    let mut t = String::new();
    let p = &s.players;
    let row = |t: &mut String, k: &str, v: String| {
        let _ = writeln!(t, "  {k:<28} {v}");
    };
    let _ = writeln!(
        t,
        "shardcast-bench {:?}{} - {} threads, window {:.1}s{}",
        s.params.mode,
        s.label
            .as_deref()
            .map(|l| format!(" [{l}]"))
            .unwrap_or_default(),
        s.threads,
        p.window_s,
        if s.schedule.clipped {
            " (clipped by --duration)"
        } else {
            ""
        }
    );
    if p.total > 0 {
        row(
            &mut t,
            "players",
            format!(
                "{} ({} played, {})",
                p.total,
                p.played,
                s.params.player_protocol()
            ),
        );
        row(
            &mut t,
            "kept up",
            format!("{} ({:.1}%)", p.kept_up, p.kept_up_fraction * 100.0),
        );
        row(
            &mut t,
            "aggregate throughput",
            format!("{:.1} Mbit/s", p.throughput_mbit_s),
        );
        row(
            &mut t,
            "join time p50 / p99",
            format!("{} / {} ms", opt(p.join_ms.p50, 0), opt(p.join_ms.p99, 0)),
        );
        row(
            &mut t,
            "first video frame keyframe",
            format!(
                "{} yes, {} no",
                p.first_frame_keyframe, p.first_frame_not_keyframe
            ),
        );
        row(&mut t, "frame rate (kept-up rule)", opt(p.fps, 2));
        if let Some(l) = &s.latency {
            row(
                &mut t,
                "latency p50/p95/p99/max",
                format!(
                    "{} / {} / {} / {} ms ({} samples, {} unmatched)",
                    opt(l.p50_ms, 1),
                    opt(l.p95_ms, 1),
                    opt(l.p99_ms, 1),
                    opt(l.max_ms, 1),
                    l.samples,
                    p.latency_misses
                ),
            );
        }
        row(
            &mut t,
            "stalls (>1 s without media)",
            format!("{} in {} players", p.stalls, p.players_stalled),
        );
        row(&mut t, "disconnects", p.disconnects.to_string());
        row(&mut t, "errors", p.errors.to_string());
    }
    let q = &s.publishers;
    if q.total > 0 {
        row(
            &mut t,
            "publishers",
            format!(
                "{} ({} published, {} frames, {:.1} MB, worst lateness {:.0} ms, {} disconnects, {} errors)",
                q.total,
                q.published,
                q.frames_sent,
                q.bytes_sent as f64 / 1e6,
                q.max_lateness_ms,
                q.disconnects,
                q.errors
            ),
        );
    }
    if let Some(srv) = &s.server {
        row(
            &mut t,
            "server CPU over window",
            format!("{} s", opt(srv.cpu_s, 2)),
        );
        row(
            &mut t,
            "server CPU per GB",
            format!("{} s/GB", opt(srv.cpu_s_per_gb, 2)),
        );
        row(
            &mut t,
            "server RSS per player",
            format!("{} KiB", opt(srv.rss_per_player_kib, 1)),
        );
    }
    if let Some(u) = s.generator.utilisation {
        row(
            &mut t,
            "generator CPU (own)",
            format!(
                "{:.2} s, {:.0}% of {} thread(s){}",
                s.generator.cpu_s.unwrap_or(0.0),
                u * 100.0,
                s.threads,
                if u > 0.85 { " - generator-bound?" } else { "" }
            ),
        );
    }
    if let Some(h) = &s.host {
        row(
            &mut t,
            "machine CPU over window",
            format!(
                "{:.2} of {:.0} cores busy, {:.2} outside the server{} and this generator",
                h.busy_cores,
                h.cores,
                h.other_cores,
                if s.server.is_some() {
                    ""
                } else {
                    " (none given)"
                }
            ),
        );
    }
    if let Some(n) = &s.nodes {
        node_table(&mut t, n);
    }
    for (e, n) in &s.errors {
        let _ = writeln!(t, "  error x{n}: {e}");
    }
    t
}

/// The per-node part of the table (`--node-api`).
fn node_table(t: &mut String, n: &crate::nodes::NodesSummary) {
    let _ = writeln!(
        t,
        "  per node (players found by their local ip:port): {} matched, {} on no node ({} of them kept up)",
        n.matched, n.unmatched, n.unmatched_kept_up
    );
    let _ = writeln!(
        t,
        "    {:<22} {:>7} {:>16} {:>13} {:>13} {:>9}",
        "node", "players", "kept up", "players Mb/s", "node Mbit/s", "weight"
    );
    for node in &n.nodes {
        let kept = match node.kept_up_fraction {
            Some(f) => format!("{} ({:.1}%)", node.kept_up, f * 100.0),
            None => "-".to_string(),
        };
        let weight = match (node.weight_start, node.weight_end) {
            (Some(a), Some(b)) => format!("{a}->{b}"),
            (None, Some(b)) => b.to_string(),
            _ => "-".to_string(),
        };
        let _ = writeln!(
            t,
            "    {:<22} {:>7} {:>16} {:>13.1} {:>13} {:>9}",
            crate::nodes::short(&node.api),
            node.players,
            kept,
            node.players_mbit_s,
            opt(node.egress_mbit_s, 1),
            weight
        );
        if let Some(e) = &node.error {
            let _ = writeln!(t, "      error: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_cpu_outside_the_run() {
        let at = |busy_s: f64, total_s: f64| HostSample {
            busy_s,
            total_s,
            cpus: 2,
            ..HostSample::default()
        };
        // 10 s of wall time on 2 CPUs: 14 CPU-seconds busy, 8 of them the server, 3 ours.
        let h = host_summary(
            Some(&at(100.0, 1000.0)),
            Some(&at(114.0, 1020.0)),
            Some(8.0),
            Some(3.0),
        )
        .unwrap();
        assert!((h.busy_cores - 1.4).abs() < 1e-9);
        assert_eq!(h.cores, 2.0);
        assert!((h.other_cores - 0.3).abs() < 1e-9);
        // Tick rounding never makes it negative.
        let h = host_summary(Some(&at(0.0, 0.0)), Some(&at(1.0, 20.0)), Some(2.0), None).unwrap();
        assert_eq!(h.other_cores, 0.0);
        assert!(host_summary(None, Some(&at(1.0, 2.0)), None, None).is_none());
        assert!(host_summary(Some(&at(1.0, 2.0)), Some(&at(1.0, 2.0)), None, None).is_none());
        // With the clock and every process's counters: 10 s of wall time although the totals
        // claim 27 CPU-seconds per CPU (idle charged twice), and the processes' 14 CPU-seconds
        // although /proc/stat's ticks caught 2: 1.4 busy cores, 0.3 of them outside the run.
        let t0 = std::time::Instant::now();
        let clocked = |busy_s, total_s, s, processes| HostSample {
            taken: Some(t0 + std::time::Duration::from_secs(s)),
            processes,
            ..at(busy_s, total_s)
        };
        let h = host_summary(
            Some(&clocked(100.0, 1000.0, 0, vec![(1, 50.0), (2, 10.0)])),
            Some(&clocked(102.0, 1054.0, 10, vec![(1, 61.0), (2, 13.0)])),
            Some(8.0),
            Some(3.0),
        )
        .unwrap();
        assert!((h.busy_cores - 1.4).abs() < 1e-9, "{h:?}");
        assert!((h.other_cores - 0.3).abs() < 1e-9);
    }
}
