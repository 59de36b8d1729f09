//! `shardcast-bench lb-report`: folds the per-run JSON summaries of scripts/lb-bench.sh (one
//! per balancing mode and player count, each with per-node figures from `--node-api`) into one
//! results file, a table (kept-up overall and per node, how the players split, the agent
//! weights) with the highest player count each mode held, and an SVG plot.

use crate::args::LbReportArgs;
use crate::compare::{legend, nice_ceiling, panel, CompareError};
use serde::Serialize;
use serde_json::Value;
use std::fmt::Write as _;

/// One node's part of one run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LbNode {
    pub api: String,
    pub players: u64,
    pub kept_up_fraction: Option<f64>,
    pub players_mbit_s: f64,
    pub egress_mbit_s: Option<f64>,
    pub weight_end: Option<u64>,
    /// Lowest agent weight seen on the run's periodic reads (`--node-every`).
    pub weight_min: Option<u64>,
}

/// The figures of one run that the report uses.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LbPoint {
    /// The balancing mode (the run's label).
    pub mode: String,
    pub players: u64,
    pub kept_up_fraction: f64,
    pub throughput_mbit_s: f64,
    pub nodes: Vec<LbNode>,
    /// Players found on no node's client list.
    pub unmatched: u64,
    pub errors: u64,
    pub disconnects: u64,
    /// Server-side CPU (every --server-pid) per second of window: cores busy.
    pub server_cores: Option<f64>,
    pub generator_utilisation: Option<f64>,
    /// Busy cores of the machine that were neither the server nor the generator (another
    /// build or load on the machine, the run's separate publishers).
    pub other_cores: Option<f64>,
}

impl LbPoint {
    pub fn from_summary(v: &Value) -> Result<LbPoint, String> {
        let f = |p: &str| v.pointer(p).and_then(Value::as_f64);
        let players = v
            .pointer("/players/total")
            .and_then(Value::as_u64)
            .ok_or("no players.total")?;
        let list = v
            .pointer("/nodes/nodes")
            .and_then(Value::as_array)
            .ok_or("no per-node figures (run without --node-api?)")?;
        let ticks = v
            .pointer("/nodes/ticks")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let nodes = list
            .iter()
            .enumerate()
            .map(|(i, n)| LbNode {
                api: n["api"].as_str().unwrap_or_default().to_string(),
                players: n["players"].as_u64().unwrap_or(0),
                kept_up_fraction: n["kept_up_fraction"].as_f64(),
                players_mbit_s: n["players_mbit_s"].as_f64().unwrap_or(0.0),
                egress_mbit_s: n["egress_mbit_s"].as_f64(),
                weight_end: n["weight_end"].as_u64(),
                weight_min: ticks
                    .iter()
                    .filter_map(|t| t.pointer(&format!("/nodes/{i}/weight"))?.as_u64())
                    .chain(n["weight_end"].as_u64())
                    .min(),
            })
            .collect();
        let window = f("/players/window_s").filter(|w| *w > 0.0);
        Ok(LbPoint {
            mode: v["label"].as_str().unwrap_or("unlabelled").to_string(),
            players,
            kept_up_fraction: f("/players/kept_up_fraction").ok_or("no kept_up_fraction")?,
            throughput_mbit_s: f("/players/throughput_mbit_s").unwrap_or(0.0),
            nodes,
            unmatched: v
                .pointer("/nodes/unmatched")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            errors: f("/players/errors").unwrap_or(0.0) as u64,
            disconnects: f("/players/disconnects").unwrap_or(0.0) as u64,
            server_cores: f("/server/cpu_s").zip(window).map(|(c, w)| c / w),
            generator_utilisation: f("/generator/utilisation"),
            other_cores: f("/host/other_cores"),
        })
    }

    /// Share of the matched players that landed on node `i`.
    pub fn share(&self, i: usize) -> Option<f64> {
        let total: u64 = self.nodes.iter().map(|n| n.players).sum();
        let n = self.nodes.get(i)?;
        (total > 0).then(|| n.players as f64 / total as f64)
    }
}

/// How far one mode got: the highest player count up to which every step kept up, and the
/// first that did not.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Held {
    pub mode: String,
    /// Every step up to this many players had at least the threshold keep up.
    pub held_up_to: Option<u64>,
    /// The first step below the threshold.
    pub first_failure: Option<u64>,
}

/// Per mode (in first-seen order), from the points sorted by players.
pub fn held(points: &[LbPoint], threshold: f64) -> Vec<Held> {
    modes(points)
        .into_iter()
        .map(|mode| {
            let mut steps: Vec<&LbPoint> = points.iter().filter(|p| p.mode == mode).collect();
            steps.sort_by_key(|p| p.players);
            let first_failure = steps
                .iter()
                .find(|p| p.kept_up_fraction < threshold)
                .map(|p| p.players);
            let held_up_to = steps
                .iter()
                .take_while(|p| p.kept_up_fraction >= threshold)
                .last()
                .map(|p| p.players);
            Held {
                mode,
                held_up_to,
                first_failure,
            }
        })
        .collect()
}

fn modes(points: &[LbPoint]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in points {
        if !out.contains(&p.mode) {
            out.push(p.mode.clone());
        }
    }
    out
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{:.1}%", x * 100.0))
}

fn o<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |x| x.to_string())
}

/// The table: one row per run, each node's players (share), kept-up, Mbit/s and weight.
pub fn table(points: &[LbPoint], held: &[Held], threshold: f64) -> String {
    let mut t = String::new();
    let nodes = points.iter().map(|p| p.nodes.len()).max().unwrap_or(0);
    let _ = write!(t, "{:>7}  {:<10} {:>8}", "players", "mode", "kept up");
    for i in 0..nodes {
        let _ = write!(
            t,
            " | {:>16} {:>7} {:>6} {:>7}",
            format!("node-{} players", i + 1),
            "kept up",
            "Mbit/s",
            "weight"
        );
    }
    let _ = writeln!(t, " | {:>6} {:>6} {:>6}", "server", "gen", "other");
    for p in points {
        let _ = write!(
            t,
            "{:>7}  {:<10} {:>8}",
            p.players,
            p.mode,
            pct(Some(p.kept_up_fraction))
        );
        for i in 0..nodes {
            match p.nodes.get(i) {
                Some(n) => {
                    let _ = write!(
                        t,
                        " | {:>16} {:>7} {:>6.0} {:>7}",
                        format!("{} ({:.0}%)", n.players, p.share(i).unwrap_or(0.0) * 100.0),
                        pct(n.kept_up_fraction),
                        n.egress_mbit_s.unwrap_or(n.players_mbit_s),
                        match (n.weight_min, n.weight_end) {
                            (Some(a), Some(b)) if a < b => format!("{a}..{b}"),
                            (_, b) => o(b),
                        }
                    );
                }
                None => {
                    let _ = write!(t, " | {:>16} {:>7} {:>6} {:>7}", "-", "-", "-", "-");
                }
            }
        }
        let cores = |v: Option<f64>| v.map_or("-".into(), |c| format!("{:.0}%", c * 100.0));
        let _ = writeln!(
            t,
            " | {:>6} {:>6} {:>6}",
            cores(p.server_cores),
            cores(p.generator_utilisation),
            cores(p.other_cores),
        );
    }
    let _ = writeln!(
        t,
        "\n(node Mbit/s: the node's own byte counter over the window; weight: the agent's, \
         lowest..at the end (HAProxy applies it only in agent mode); server: CPU of the nodes and \
         HAProxy, gen: the load generator's own, other: the rest of the machine, each in % of \
         one core over the window)"
    );
    let _ = writeln!(
        t,
        "every player kept up (>= {:.0}% of them) up to:",
        threshold * 100.0
    );
    for h in held {
        let _ = writeln!(
            t,
            "  {:<10} {} players{}",
            h.mode,
            o(h.held_up_to),
            h.first_failure
                .map(|f| format!(" (first step below: {f})"))
                .unwrap_or_else(|| " (no step below)".into())
        );
    }
    t
}

/// Two panels: the fraction of players kept up, and the share of players on the last node (the
/// costlier one), each against players, one line per mode.
pub fn svg(points: &[LbPoint]) -> String {
    let labels = modes(points);
    let mut ns: Vec<u64> = points.iter().map(|p| p.players).collect();
    ns.sort_unstable();
    ns.dedup();
    let last = points
        .iter()
        .map(|p| p.nodes.len())
        .max()
        .unwrap_or(1)
        .max(1)
        - 1;
    let find = |mode: &str, n: u64| points.iter().find(|p| p.mode == mode && p.players == n);
    let height = 300.0 + 20.0 * labels.len() as f64 + 10.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="860" height="{height:.0}" viewBox="0 0 860 {height:.0}" font-family="sans-serif">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    panel(
        &mut s,
        0.0,
        "fraction of players kept up",
        &labels,
        &ns,
        1.0,
        &|m, n| find(m, n).map(|p| p.kept_up_fraction),
    );
    let share_max = nice_ceiling(
        points
            .iter()
            .filter_map(|p| p.share(last))
            .fold(0.5, f64::max),
    )
    .min(1.0);
    panel(
        &mut s,
        430.0,
        &format!("share of players on node-{}", last + 1),
        &labels,
        &ns,
        share_max,
        &|m, n| find(m, n).and_then(|p| p.share(last)),
    );
    legend(&mut s, &labels, 305.0);
    s.push_str("</svg>\n");
    s
}

pub fn run(args: &LbReportArgs) -> Result<String, CompareError> {
    let mut points = Vec::new();
    let mut runs = Vec::new();
    for path in &args.runs {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CompareError::Read {
            path: p.clone(),
            source,
        })?;
        let v: Value = serde_json::from_str(&text).map_err(|e| CompareError::Parse {
            path: p.clone(),
            reason: e.to_string(),
        })?;
        points.push(
            LbPoint::from_summary(&v).map_err(|reason| CompareError::Parse {
                path: p.clone(),
                reason,
            })?,
        );
        runs.push(v);
    }
    // Modes in the order first given, players ascending within each step.
    let order = modes(&points);
    let rank = |m: &str| order.iter().position(|x| x == m).unwrap_or(usize::MAX);
    points.sort_by(|a, b| {
        a.players
            .cmp(&b.players)
            .then(rank(&a.mode).cmp(&rank(&b.mode)))
    });
    let held = held(&points, args.threshold);
    let doc = serde_json::json!({
        "generated_unix": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        "setup": args.setup,
        "kept_up_threshold": args.threshold,
        "held": held,
        "points": points,
        "runs": runs,
    });
    let write = |path: &std::path::Path, body: &str| {
        std::fs::write(path, body).map_err(|source| CompareError::Write {
            path: path.display().to_string(),
            source,
        })
    };
    write(
        &args.out,
        &(serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"),
    )?;
    if let Some(svg_path) = &args.svg {
        write(svg_path, &svg(&points))?;
    }
    Ok(table(&points, &held, args.threshold))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(players: u64, kept: f64, weight: u64) -> LbNode {
        LbNode {
            api: "http://n".into(),
            players,
            kept_up_fraction: Some(kept),
            players_mbit_s: players as f64,
            egress_mbit_s: Some(players as f64 * 2.0),
            weight_end: Some(weight),
            weight_min: Some(weight),
        }
    }

    fn point(mode: &str, n: u64, kept: f64, on2: u64) -> LbPoint {
        LbPoint {
            mode: mode.into(),
            players: n,
            kept_up_fraction: kept,
            throughput_mbit_s: 1.0,
            nodes: vec![node(n - on2, 1.0, 90), node(on2, kept, 40)],
            unmatched: 0,
            errors: 0,
            disconnects: 0,
            server_cores: Some(0.5),
            generator_utilisation: Some(0.4),
            other_cores: Some(0.1),
        }
    }

    #[test]
    fn reads_a_summary_with_nodes() {
        let v = json!({
            "label": "agent",
            "players": {"total": 300, "kept_up_fraction": 0.99, "throughput_mbit_s": 900.0,
                        "errors": 0, "disconnects": 2, "window_s": 10.0},
            "server": {"cpu_s": 5.0},
            "generator": {"utilisation": 0.3},
            "host": {"busy_cores": 1.5, "cores": 2.0, "other_cores": 0.25},
            "nodes": {"matched": 298, "unmatched": 2, "nodes": [
                {"api": "http://127.0.0.1:1", "players": 200, "kept_up_fraction": 1.0,
                 "players_mbit_s": 400.0, "egress_mbit_s": 410.0, "weight_end": 60},
                {"api": "http://127.0.0.1:2", "players": 98, "kept_up_fraction": 0.97,
                 "players_mbit_s": 800.0, "egress_mbit_s": null, "weight_end": 20}],
                "ticks": [{"at_s": 2.0, "nodes": [{"weight": 100}, {"weight": 100}]},
                          {"at_s": 4.0, "nodes": [{"weight": 70}, {"weight": 12}]}]}
        });
        let p = LbPoint::from_summary(&v).unwrap();
        assert_eq!((p.mode.as_str(), p.players, p.unmatched), ("agent", 300, 2));
        assert_eq!(p.server_cores, Some(0.5));
        assert_eq!(p.other_cores, Some(0.25));
        assert_eq!(p.nodes[0].weight_min, Some(60));
        assert_eq!(p.nodes[1].weight_min, Some(12));
        assert_eq!(p.nodes[1].egress_mbit_s, None);
        assert!((p.share(0).unwrap() - 200.0 / 298.0).abs() < 1e-9);
        assert_eq!(p.share(2), None);
        let bare = json!({"label": "x", "players": {"total": 1, "kept_up_fraction": 1.0}});
        assert!(LbPoint::from_summary(&bare).is_err(), "no per-node figures");
    }

    #[test]
    fn where_each_mode_stopped_keeping_up() {
        let pts = vec![
            point("leastconn", 300, 1.0, 150),
            point("agent", 300, 1.0, 100),
            point("leastconn", 500, 0.995, 250),
            point("agent", 500, 1.0, 150),
            point("leastconn", 700, 0.6, 350),
            point("agent", 700, 0.999, 200),
            point("leastconn", 900, 0.995, 450), // noise: a later step passing does not count
            point("agent", 900, 0.7, 300),
        ];
        let h = held(&pts, 0.99);
        assert_eq!(
            h,
            vec![
                Held {
                    mode: "leastconn".into(),
                    held_up_to: Some(500),
                    first_failure: Some(700)
                },
                Held {
                    mode: "agent".into(),
                    held_up_to: Some(700),
                    first_failure: Some(900)
                },
            ]
        );
        let none = held(&[point("agent", 300, 0.5, 100)], 0.99);
        assert_eq!(none[0].held_up_to, None);
        assert_eq!(none[0].first_failure, Some(300));
        let t = table(&pts, &h, 0.99);
        assert!(t.contains("node-2 players"));
        assert!(t.contains("350 (50%)"), "{t}");
        assert!(
            t.contains("leastconn  500 players (first step below: 700)"),
            "{t}"
        );
        let s = svg(&pts);
        assert_eq!(s.matches("<polyline").count(), 4);
        assert!(s.contains("share of players on node-2"));
    }
}
