//! `shardcast-bench compare`: folds the per-run JSON summaries of scripts/bench-compare.sh into
//! one results file, a table with each server's ratio to the baseline (nginx-rtmp) per player
//! count, and an SVG plot of CPU s/GB and kept-up fraction against players.
//!
//! Runs are keyed by (publishers, players): fan-out runs (1 publisher x N players), many-streams
//! runs (M publishers x 2 players each) and ingest-only runs (M publishers, no players, from
//! `shardcast-bench publish`). Ingest runs get their own table (server CPU share of a core and
//! RSS) and, in the SVG, a third panel (CPU share against publishers).

use crate::args::CompareArgs;
use serde::Serialize;
use serde_json::Value;
use std::fmt::Write as _;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CompareError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a run summary: {reason}")]
    Parse { path: String, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// The figures of one run that the comparison uses.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunPoint {
    pub label: String,
    /// Publisher connections (= streams) of the run.
    pub publishers: u64,
    pub players: u64,
    /// Server CPU seconds per second of window (1.0 = one core busy).
    pub server_cpu_share: Option<f64>,
    /// Server RSS at the window's end, in MiB.
    pub rss_mib: Option<f64>,
    pub cpu_s_per_gb: Option<f64>,
    pub kept_up_fraction: f64,
    pub rss_per_player_kib: Option<f64>,
    pub join_p50_ms: Option<f64>,
    pub join_p99_ms: Option<f64>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub throughput_mbit_s: f64,
    pub errors: u64,
    pub disconnects: u64,
    /// Load generator CPU use over the window (1.0 = saturated: figures may be generator-bound).
    pub generator_utilisation: Option<f64>,
    /// Which repetition of this server at this load (0 = first): with `--repeat`, round k of
    /// every server ran back to back, so ratios pair runs of the same round.
    pub round: u32,
}

impl RunPoint {
    pub fn from_summary(v: &Value) -> Result<RunPoint, String> {
        let f = |path: &[&str]| -> Option<f64> {
            let mut cur = v;
            for k in path {
                cur = cur.get(k)?;
            }
            cur.as_f64()
        };
        let players = v
            .pointer("/players/total")
            .and_then(Value::as_u64)
            .ok_or("no players.total")?;
        Ok(RunPoint {
            label: v
                .get("label")
                .and_then(Value::as_str)
                .unwrap_or("unlabelled")
                .to_string(),
            publishers: v
                .pointer("/publishers/total")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            players,
            server_cpu_share: f(&["server", "cpu_s"])
                .zip(f(&["players", "window_s"]))
                .filter(|(_, w)| *w > 0.0)
                .map(|(c, w)| c / w),
            rss_mib: f(&["server", "window_end", "rss_kib"]).map(|k| k / 1024.0),
            cpu_s_per_gb: f(&["server", "cpu_s_per_gb"]),
            kept_up_fraction: f(&["players", "kept_up_fraction"]).ok_or("no kept_up_fraction")?,
            rss_per_player_kib: f(&["server", "rss_per_player_kib"]),
            join_p50_ms: f(&["players", "join_ms", "p50"]),
            join_p99_ms: f(&["players", "join_ms", "p99"]),
            latency_p50_ms: f(&["latency", "p50_ms"]),
            latency_p99_ms: f(&["latency", "p99_ms"]),
            throughput_mbit_s: f(&["players", "throughput_mbit_s"]).unwrap_or(0.0),
            errors: f(&["players", "errors"]).unwrap_or(0.0) as u64,
            disconnects: f(&["players", "disconnects"]).unwrap_or(0.0) as u64,
            generator_utilisation: f(&["generator", "utilisation"]),
            round: 0,
        })
    }

    /// Same server, same load (rounds of one measurement).
    fn same_series(&self, other: &RunPoint) -> bool {
        self.label == other.label
            && self.publishers == other.publishers
            && self.players == other.players
    }
}

/// Number each point's round: its place among the points of its series, in input order.
pub fn number_rounds(points: &mut [RunPoint]) {
    for i in 0..points.len() {
        let earlier = points[..i]
            .iter()
            .filter(|q| q.same_series(&points[i]))
            .count();
        points[i].round = earlier as u32;
    }
}

/// Median and range of a figure over the rounds of one series.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Spread {
    pub n: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// None without values. The median of an even count is the mean of the middle two.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            n,
            median,
            min: v[0],
            max: v[n - 1],
        })
    }

    /// "0.103" alone, or "0.103 (0.096-0.117, 5 runs)", `unit` after each figure's end.
    fn show(self, d: usize, unit: &str) -> String {
        if self.n == 1 {
            format!("{:.d$}{unit}", self.median)
        } else {
            format!(
                "{:.d$}{unit} ({:.d$}-{:.d$}{unit}, {} runs)",
                self.median, self.min, self.max, self.n
            )
        }
    }
}

/// One series' rounds folded into one point: the plotted figures are the medians over rounds.
pub fn medians(points: &[RunPoint]) -> Vec<RunPoint> {
    let mut out: Vec<RunPoint> = Vec::new();
    for p in points {
        if out.iter().any(|q| q.same_series(p)) {
            continue;
        }
        let rounds: Vec<&RunPoint> = points.iter().filter(|q| q.same_series(p)).collect();
        let med = |f: fn(&RunPoint) -> Option<f64>| {
            Spread::of(rounds.iter().filter_map(|q| f(q))).map(|s| s.median)
        };
        let mut m = p.clone();
        m.server_cpu_share = med(|q| q.server_cpu_share);
        m.rss_mib = med(|q| q.rss_mib);
        m.cpu_s_per_gb = med(|q| q.cpu_s_per_gb);
        m.kept_up_fraction = med(|q| Some(q.kept_up_fraction)).unwrap_or(p.kept_up_fraction);
        m.generator_utilisation = med(|q| q.generator_utilisation);
        out.push(m);
    }
    out
}

/// A label's figure divided by the baseline's at the same player count.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Ratio {
    pub publishers: u64,
    pub players: u64,
    pub label: String,
    /// The round both runs belong to.
    pub round: u32,
    pub cpu_s_per_gb: Option<f64>,
    pub kept_up_fraction: Option<f64>,
    pub rss_per_player: Option<f64>,
    pub server_cpu_share: Option<f64>,
    pub rss: Option<f64>,
}

impl RunPoint {
    /// An ingest-only run: publishers, no players.
    pub fn is_ingest(&self) -> bool {
        self.players == 0
    }
}

fn div(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

pub fn ratios(points: &[RunPoint], baseline: &str) -> Vec<Ratio> {
    let mut out = Vec::new();
    for base in points.iter().filter(|p| p.label == baseline) {
        for p in points.iter().filter(|p| {
            p.players == base.players
                && p.publishers == base.publishers
                && p.round == base.round
                && p.label != baseline
        }) {
            out.push(Ratio {
                publishers: p.publishers,
                players: p.players,
                label: p.label.clone(),
                round: p.round,
                cpu_s_per_gb: div(p.cpu_s_per_gb, base.cpu_s_per_gb),
                kept_up_fraction: div(Some(p.kept_up_fraction), Some(base.kept_up_fraction)),
                rss_per_player: div(p.rss_per_player_kib, base.rss_per_player_kib),
                server_cpu_share: div(p.server_cpu_share, base.server_cpu_share),
                rss: div(p.rss_mib, base.rss_mib),
            });
        }
    }
    out
}

/// A series' ratios to the baseline over its rounds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RatioSpread {
    pub publishers: u64,
    pub players: u64,
    pub label: String,
    pub server_cpu_share: Option<Spread>,
    pub cpu_s_per_gb: Option<Spread>,
    pub rss: Option<Spread>,
}

impl Ratio {
    /// Same server, same load (one series' rounds).
    fn same_series(&self, other: &Ratio) -> bool {
        self.label == other.label
            && self.publishers == other.publishers
            && self.players == other.players
    }
}

/// Each series' per-round ratios folded into median and range.
pub fn ratio_spreads(ratios: &[Ratio]) -> Vec<RatioSpread> {
    let mut out: Vec<RatioSpread> = Vec::new();
    for (i, r) in ratios.iter().enumerate() {
        if ratios[..i].iter().any(|q| q.same_series(r)) {
            continue;
        }
        let rounds = ratios.iter().filter(|q| q.same_series(r));
        out.push(RatioSpread {
            publishers: r.publishers,
            players: r.players,
            label: r.label.clone(),
            server_cpu_share: Spread::of(rounds.clone().filter_map(|q| q.server_cpu_share)),
            cpu_s_per_gb: Spread::of(rounds.clone().filter_map(|q| q.cpu_s_per_gb)),
            rss: Spread::of(rounds.filter_map(|q| q.rss)),
        });
    }
    out
}

/// A label with its round when it is not the first.
fn with_round(label: &str, round: u32) -> String {
    if round == 0 {
        label.to_string()
    } else {
        format!("{label} #{}", round + 1)
    }
}

fn o(v: Option<f64>, d: usize) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{x:.d$}"))
}

pub fn table(points: &[RunPoint], ratios: &[Ratio], baseline: &str) -> String {
    let mut t = String::new();
    let players: Vec<&RunPoint> = points.iter().filter(|p| !p.is_ingest()).collect();
    let ingest: Vec<&RunPoint> = points.iter().filter(|p| p.is_ingest()).collect();
    if !players.is_empty() {
        let _ = writeln!(
            t,
            "{:>5} {:>6}  {:<36} {:>9} {:>8} {:>10} {:>8} {:>15} {:>17} {:>9} {:>8}",
            "M",
            "N",
            "server",
            "CPU s/GB",
            "kept-up",
            "RSS/pl KiB",
            "RSS MiB",
            "join p50/p99",
            "latency p50/p99",
            "Mbit/s",
            "gen"
        );
    }
    for p in &players {
        let _ = writeln!(
            t,
            "{:>5} {:>6}  {:<36} {:>9} {:>7.1}% {:>10} {:>8} {:>15} {:>17} {:>9.1} {:>7}%",
            p.publishers,
            p.players,
            with_round(&p.label, p.round),
            o(p.cpu_s_per_gb, 2),
            p.kept_up_fraction * 100.0,
            o(p.rss_per_player_kib, 1),
            o(p.rss_mib, 1),
            format!("{}/{}", o(p.join_p50_ms, 0), o(p.join_p99_ms, 0)),
            format!("{}/{}", o(p.latency_p50_ms, 1), o(p.latency_p99_ms, 1)),
            p.throughput_mbit_s,
            o(p.generator_utilisation.map(|u| u * 100.0), 0),
        );
    }
    let (ingest_ratios, player_ratios): (Vec<&Ratio>, Vec<&Ratio>) =
        ratios.iter().partition(|r| r.players == 0);
    if !player_ratios.is_empty() {
        let _ = writeln!(t, "\nratio to {baseline} (lower CPU and RSS are better):");
        let _ = writeln!(
            t,
            "{:>5} {:>6}  {:<36} {:>9} {:>8} {:>10}",
            "M", "N", "server", "CPU s/GB", "kept-up", "RSS/pl"
        );
        for r in &player_ratios {
            let _ = writeln!(
                t,
                "{:>5} {:>6}  {:<36} {:>8}x {:>7}x {:>9}x",
                r.publishers,
                r.players,
                with_round(&r.label, r.round),
                o(r.cpu_s_per_gb, 2),
                o(r.kept_up_fraction, 2),
                o(r.rss_per_player, 2)
            );
        }
        let player_ratios: Vec<Ratio> = player_ratios.into_iter().cloned().collect();
        let repeated: Vec<RatioSpread> = ratio_spreads(&player_ratios)
            .into_iter()
            .filter(|r| r.cpu_s_per_gb.is_some_and(|c| c.n > 1))
            .collect();
        if !repeated.is_empty() {
            let _ = writeln!(t, "\nCPU s/GB ratio over rounds, median (range):");
            for r in repeated {
                let _ = writeln!(
                    t,
                    "{:>5} {:>6}  {:<36} {}",
                    r.publishers,
                    r.players,
                    r.label,
                    r.cpu_s_per_gb
                        .map_or_else(|| "-".into(), |c| c.show(2, "x")),
                );
            }
        }
    }
    if !ingest.is_empty() {
        if !t.is_empty() {
            t.push('\n');
        }
        let _ = writeln!(
            t,
            "ingest only (M publishers, no players; median over rounds):"
        );
        let _ = writeln!(
            t,
            "{:>5}  {:<36} {:>30} {:>8} {:>8} {:>8}",
            "M", "server", "CPU share", "RSS MiB", "errors", "gen"
        );
        let ingest: Vec<RunPoint> = ingest.into_iter().cloned().collect();
        for p in medians(&ingest) {
            let rounds = ingest.iter().filter(|q| q.same_series(&p));
            let cpu = Spread::of(rounds.clone().filter_map(|q| q.server_cpu_share));
            let _ = writeln!(
                t,
                "{:>5}  {:<36} {:>30} {:>8} {:>8} {:>7}%",
                p.publishers,
                p.label,
                cpu.map_or_else(|| "-".into(), |c| c.show(3, "")),
                o(p.rss_mib, 1),
                rounds.map(|q| q.errors).sum::<u64>(),
                o(p.generator_utilisation.map(|u| u * 100.0), 0),
            );
        }
    }
    if !ingest_ratios.is_empty() {
        let _ = writeln!(
            t,
            "\ningest ratio to {baseline} (lower is better; rounds paired, median (range)):"
        );
        let _ = writeln!(
            t,
            "{:>5}  {:<36} {:>30} {:>8}",
            "M", "server", "CPU share", "RSS"
        );
        let ingest_ratios: Vec<Ratio> = ingest_ratios.into_iter().cloned().collect();
        for r in ratio_spreads(&ingest_ratios) {
            let _ = writeln!(
                t,
                "{:>5}  {:<36} {:>30} {:>7}x",
                r.publishers,
                r.label,
                r.server_cpu_share
                    .map_or_else(|| "-".into(), |c| c.show(2, "x")),
                o(r.rss.map(|s| s.median), 2),
            );
        }
    }
    t
}

const COLORS: [&str; 6] = [
    "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];
/// Dash patterns per series, so lines lying on top of each other stay distinguishable.
const DASHES: [&str; 4] = ["none", "8,4", "3,3", "10,3,2,3"];

/// Tick text with as many decimals as the tick step needs.
fn axis_label(v: f64, y_max: f64) -> String {
    let step = y_max / 4.0;
    let decimals = if step >= 1.0 && (step - step.round()).abs() < 1e-9 {
        0
    } else if step >= 0.1 {
        2
    } else {
        3
    };
    format!("{v:.decimals$}")
}

/// Rounds up to 1, 2 or 5 times a power of ten, for axis limits.
pub(crate) fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|&c| c >= v * 0.9999)
        .unwrap_or(10.0 * p)
}

pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One panel: `value(label, players)` of every label against players (`None`: no point).
pub(crate) fn panel(
    svg: &mut String,
    x0: f64,
    title: &str,
    labels: &[String],
    ns: &[u64],
    y_max: f64,
    value: &dyn Fn(&str, u64) -> Option<f64>,
) {
    panel_x(svg, x0, title, "players", labels, ns, y_max, value);
}

/// [`panel`] with another x-axis title.
#[allow(clippy::too_many_arguments)]
pub(crate) fn panel_x(
    svg: &mut String,
    x0: f64,
    title: &str,
    x_title: &str,
    labels: &[String],
    ns: &[u64],
    y_max: f64,
    value: &dyn Fn(&str, u64) -> Option<f64>,
) {
    let (w, h, top, left, bottom) = (420.0, 300.0, 40.0, 60.0, 50.0);
    let pw = w - left - 20.0;
    let ph = h - top - bottom;
    let ox = x0 + left;
    let oy = top + ph;
    let xs = |i: usize| {
        if ns.len() <= 1 {
            ox + pw / 2.0
        } else {
            ox + pw * i as f64 / (ns.len() - 1) as f64
        }
    };
    let ys = |v: f64| oy - ph * (v / y_max).clamp(0.0, 1.05);
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="22" font-size="14" text-anchor="middle" font-weight="bold">{}</text>"#,
        ox + pw / 2.0,
        esc(title)
    );
    let _ = writeln!(
        svg,
        r##"<path d="M{ox:.1},{top:.1} V{oy:.1} H{:.1}" fill="none" stroke="#333"/>"##,
        ox + pw
    );
    for k in 0..=4 {
        let v = y_max * k as f64 / 4.0;
        let y = ys(v);
        let _ = writeln!(
            svg,
            r##"<line x1="{ox:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            ox + pw,
            ox - 6.0,
            y + 4.0,
            axis_label(v, y_max)
        );
    }
    for (i, n) in ns.iter().enumerate() {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{n}</text>"#,
            xs(i),
            oy + 16.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"#,
        ox + pw / 2.0,
        oy + 34.0,
        esc(x_title)
    );
    for (li, label) in labels.iter().enumerate() {
        let color = COLORS[li % COLORS.len()];
        let dash = DASHES[li % DASHES.len()];
        let pts: Vec<(f64, f64)> = ns
            .iter()
            .enumerate()
            .filter_map(|(i, n)| value(label, *n).map(|v| (xs(i), ys(v))))
            .collect();
        if pts.len() > 1 {
            let d: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let _ = writeln!(
                svg,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/>"#,
                d.join(" ")
            );
        }
        for (x, y) in pts {
            let _ = writeln!(
                svg,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{color}"/>"#
            );
        }
    }
}

/// Series name of a run in the plot: many-streams runs (several publishers with players) are
/// kept apart from fan-out runs of the same server.
fn series(p: &RunPoint) -> String {
    if p.publishers > 1 && !p.is_ingest() {
        format!("{} [many-streams]", p.label)
    } else if p.is_ingest() {
        format!("{} [ingest]", p.label)
    } else {
        p.label.clone()
    }
}

/// The plot: CPU seconds per GB and kept-up fraction, each against players; with ingest-only
/// runs, a third panel of the server's CPU share of a core against publishers.
pub fn svg(points: &[RunPoint]) -> String {
    let mut labels: Vec<String> = Vec::new();
    let mut ingest_labels: Vec<String> = Vec::new();
    for p in points {
        let l = series(p);
        let list = if p.is_ingest() {
            &mut ingest_labels
        } else {
            &mut labels
        };
        if !list.contains(&l) {
            list.push(l);
        }
    }
    let with_players: Vec<&RunPoint> = points.iter().filter(|p| !p.is_ingest()).collect();
    let ingest: Vec<&RunPoint> = points.iter().filter(|p| p.is_ingest()).collect();
    let mut ns: Vec<u64> = with_players.iter().map(|p| p.players).collect();
    ns.sort_unstable();
    ns.dedup();
    let mut ms: Vec<u64> = ingest.iter().map(|p| p.publishers).collect();
    ms.sort_unstable();
    ms.dedup();
    let all_labels: Vec<String> = labels.iter().chain(ingest_labels.iter()).cloned().collect();
    let legend_h = 20.0 * all_labels.len() as f64 + 10.0;
    let height = 300.0 + legend_h;
    // The ingest panel follows the two player panels, or stands alone at the left.
    let ingest_x = if with_players.is_empty() { 0.0 } else { 860.0 };
    let width = if ingest.is_empty() {
        860.0
    } else {
        ingest_x + 430.0
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let cpu_max = nice_ceiling(
        with_players
            .iter()
            .filter_map(|p| p.cpu_s_per_gb)
            .fold(0.0, f64::max),
    );
    let find = |label: &str, n: u64| {
        with_players
            .iter()
            .find(|p| series(p) == label && p.players == n)
    };
    // Series colours follow the legend order: fan-out and many-streams series first.
    let ingest_colours: Vec<String> = all_labels
        .iter()
        .map(|l| {
            if ingest_labels.contains(l) {
                l.clone()
            } else {
                String::new()
            }
        })
        .collect();
    let player_colours: Vec<String> = all_labels
        .iter()
        .map(|l| {
            if labels.contains(l) {
                l.clone()
            } else {
                String::new()
            }
        })
        .collect();
    if !with_players.is_empty() {
        panel(
            &mut s,
            0.0,
            "server CPU seconds per GB delivered",
            &player_colours,
            &ns,
            cpu_max,
            &|l, n| find(l, n).and_then(|p| p.cpu_s_per_gb),
        );
        panel(
            &mut s,
            430.0,
            "fraction of players kept up",
            &player_colours,
            &ns,
            1.0,
            &|l, n| find(l, n).map(|p| p.kept_up_fraction),
        );
    }
    if !ingest.is_empty() {
        let share_max = nice_ceiling(
            ingest
                .iter()
                .filter_map(|p| p.server_cpu_share)
                .fold(0.0, f64::max),
        );
        panel_x(
            &mut s,
            ingest_x,
            "ingest only: server CPU share of a core",
            "publishers",
            &ingest_colours,
            &ms,
            share_max,
            &|l, m| {
                ingest
                    .iter()
                    .find(|p| series(p) == l && p.publishers == m)
                    .and_then(|p| p.server_cpu_share)
            },
        );
    }
    legend(&mut s, &all_labels, 305.0);
    s.push_str("</svg>\n");
    s
}

/// One line of the legend per label, from `y0` down, in the panels' colours and dashes.
pub(crate) fn legend(svg: &mut String, labels: &[String], y0: f64) {
    for (li, label) in labels.iter().enumerate() {
        let y = y0 + 20.0 * li as f64;
        let color = COLORS[li % COLORS.len()];
        let dash = DASHES[li % DASHES.len()];
        let _ = writeln!(
            svg,
            r#"<line x1="56" y1="{y:.1}" x2="86" y2="{y:.1}" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/><text x="94" y="{y:.1}" font-size="12" dominant-baseline="middle">{}</text>"#,
            esc(label)
        );
    }
}

pub fn run(args: &CompareArgs) -> Result<String, CompareError> {
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
            RunPoint::from_summary(&v).map_err(|reason| CompareError::Parse {
                path: p.clone(),
                reason,
            })?,
        );
        runs.push(v);
    }
    number_rounds(&mut points);
    points.sort_by(|a, b| {
        (a.publishers, a.players, &a.label, a.round).cmp(&(
            b.publishers,
            b.players,
            &b.label,
            b.round,
        ))
    });
    let ratios = ratios(&points, &args.baseline);
    let ratio_spreads = ratio_spreads(&ratios);
    let doc = serde_json::json!({
        "generated_unix": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        "baseline": args.baseline,
        "points": points,
        "ratios": ratios,
        "ratio_spreads": ratio_spreads,
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
        write(svg_path, &svg(&medians(&points)))?;
    }
    Ok(table(&points, &ratios, &args.baseline))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(label: &str, n: u64, cpu: f64, kept: f64) -> RunPoint {
        RunPoint {
            label: label.into(),
            publishers: 1,
            players: n,
            server_cpu_share: Some(0.5),
            rss_mib: Some(20.0),
            cpu_s_per_gb: Some(cpu),
            kept_up_fraction: kept,
            rss_per_player_kib: Some(100.0),
            join_p50_ms: Some(10.0),
            join_p99_ms: Some(20.0),
            latency_p50_ms: None,
            latency_p99_ms: None,
            throughput_mbit_s: 1.0,
            errors: 0,
            disconnects: 0,
            generator_utilisation: Some(0.5),
            round: 0,
        }
    }

    fn ingest(label: &str, m: u64, cpu: f64) -> RunPoint {
        let mut p = point(label, 0, 0.0, 0.0);
        p.publishers = m;
        p.server_cpu_share = Some(cpu);
        p.cpu_s_per_gb = None;
        p
    }

    #[test]
    fn rounds_pair_runs_and_fold_into_median_and_range() {
        // Input order is run order: round k of every server ran back to back.
        let mut pts = vec![
            ingest("nginx-rtmp", 1000, 0.25),
            ingest("shardcast", 1000, 0.10),
            ingest("shardcast-mr0", 1000, 0.9),
            ingest("nginx-rtmp", 1000, 0.20),
            ingest("shardcast", 1000, 0.11),
            ingest("nginx-rtmp", 1000, 0.30),
            ingest("shardcast", 1000, 0.12),
        ];
        number_rounds(&mut pts);
        let rounds: Vec<u32> = pts.iter().map(|p| p.round).collect();
        assert_eq!(rounds, [0, 0, 0, 1, 1, 2, 2]);
        let r = ratios(&pts, "nginx-rtmp");
        // Each shardcast run against the nginx run of its own round, not every pair (3 + 1).
        assert_eq!(r.len(), 4);
        let sc: Vec<f64> = r
            .iter()
            .filter(|x| x.label == "shardcast")
            .map(|x| x.server_cpu_share.unwrap())
            .collect();
        assert_eq!(sc.len(), 3);
        assert!((sc[0] - 0.4).abs() < 1e-9 && (sc[1] - 0.55).abs() < 1e-9);
        assert!((sc[2] - 0.4).abs() < 1e-9);
        let spreads = ratio_spreads(&r);
        let s = spreads.iter().find(|s| s.label == "shardcast").unwrap();
        let cpu = s.server_cpu_share.unwrap();
        assert_eq!(cpu.n, 3);
        assert!((cpu.median - 0.4).abs() < 1e-9 && (cpu.max - 0.55).abs() < 1e-9);
        let m = medians(&pts);
        assert_eq!(m.len(), 3, "one point per series");
        let nginx = m.iter().find(|p| p.label == "nginx-rtmp").unwrap();
        assert_eq!(nginx.server_cpu_share, Some(0.25));
        let t = table(&pts, &r, "nginx-rtmp");
        assert!(t.contains("0.250 (0.200-0.300, 3 runs)"), "{t}");
        assert!(t.contains("0.40x (0.40-0.55x, 3 runs)"), "{t}");
        assert!(t.contains(" 3.60x"), "a single round shows alone: {t}");
        assert!(!t.contains("over rounds, median"), "no player series: {t}");
        // Player series: each round's ratio, then the median over rounds.
        let mut fan = vec![
            point("nginx-rtmp", 400, 5.0, 1.0),
            point("shardcast", 400, 1.5, 1.0),
            point("nginx-rtmp", 400, 6.0, 1.0),
            point("shardcast", 400, 1.8, 1.0),
        ];
        number_rounds(&mut fan);
        let r = ratios(&fan, "nginx-rtmp");
        let t = table(&fan, &r, "nginx-rtmp");
        assert!(t.contains("shardcast #2"), "{t}");
        assert!(t.contains("0.30x (0.30-0.30x, 2 runs)"), "{t}");
    }

    #[test]
    fn spread_of_even_and_odd_counts() {
        assert_eq!(Spread::of([]), None);
        let s = Spread::of([3.0, 1.0, f64::NAN, 2.0]).unwrap();
        assert_eq!((s.n, s.median, s.min, s.max), (3, 2.0, 1.0, 3.0));
        assert_eq!(Spread::of([1.0, 4.0]).unwrap().median, 2.5);
    }

    #[test]
    fn reads_a_summary() {
        let v = serde_json::json!({
            "label": "nginx-rtmp",
            "players": {"total": 250, "kept_up_fraction": 0.98, "throughput_mbit_s": 250.0,
                        "join_ms": {"p50": 12.0, "p99": 40.0}, "errors": 0, "disconnects": 1},
            "latency": {"p50_ms": 3.5, "p99_ms": 9.0},
            "server": {"cpu_s_per_gb": 1.25, "rss_per_player_kib": 64.0}
        });
        let p = RunPoint::from_summary(&v).unwrap();
        assert_eq!(p.players, 250);
        assert_eq!(p.cpu_s_per_gb, Some(1.25));
        assert_eq!(p.latency_p99_ms, Some(9.0));
        assert_eq!(p.disconnects, 1);
        assert!(RunPoint::from_summary(&serde_json::json!({})).is_err());
    }

    #[test]
    fn ratios_per_player_count() {
        let pts = vec![
            point("nginx-rtmp", 250, 2.0, 1.0),
            point("shardcast", 250, 1.0, 1.0),
            point("nginx-rtmp", 500, 4.0, 0.5),
            point("shardcast", 500, 1.0, 1.0),
        ];
        let r = ratios(&pts, "nginx-rtmp");
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].cpu_s_per_gb, Some(0.5));
        assert_eq!(r[1].cpu_s_per_gb, Some(0.25));
        assert_eq!(r[1].kept_up_fraction, Some(2.0));
        let t = table(&pts, &r, "nginx-rtmp");
        assert!(t.contains("ratio to nginx-rtmp"));
        assert!(t.contains("0.25x"));
    }

    #[test]
    fn svg_has_a_line_per_label() {
        let pts = vec![
            point("nginx-rtmp", 250, 2.0, 1.0),
            point("nginx-rtmp", 500, 4.0, 0.5),
            point("shard<cast>", 250, 1.0, 1.0),
            point("shard<cast>", 500, 1.0, 1.0),
        ];
        let s = svg(&pts);
        assert!(s.starts_with("<svg"));
        assert_eq!(s.matches("<polyline").count(), 4);
        assert!(s.contains("shard&lt;cast&gt;"));
        assert!(s.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn ingest_runs_get_their_own_table_and_panel() {
        let v = serde_json::json!({
            "label": "nginx-rtmp",
            "players": {"total": 0, "kept_up_fraction": 0.0, "window_s": 10.0},
            "publishers": {"total": 200},
            "server": {"cpu_s": 0.6, "window_end": {"rss_kib": 20480, "cpu_s": 1.0, "processes": 2}}
        });
        let base = RunPoint::from_summary(&v).unwrap();
        assert!(base.is_ingest());
        assert_eq!(base.publishers, 200);
        assert!((base.server_cpu_share.unwrap() - 0.06).abs() < 1e-9);
        assert_eq!(base.rss_mib, Some(20.0));
        let mut sc = base.clone();
        sc.label = "shardcast".into();
        sc.server_cpu_share = Some(0.03);
        let mut many = point("nginx-rtmp", 400, 2.0, 1.0);
        many.publishers = 200;
        let pts = vec![point("nginx-rtmp", 400, 1.0, 1.0), many, base, sc];
        let r = ratios(&pts, "nginx-rtmp");
        // Only the ingest pair matches: the fan-out and many-streams nginx runs differ in M.
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].server_cpu_share, Some(0.5));
        let t = table(&pts, &r, "nginx-rtmp");
        assert!(t.contains("ingest only"));
        assert!(t.contains("0.50x"));
        let s = svg(&pts);
        assert!(s.contains(r#"width="1290""#), "three panels");
        let alone = svg(&pts[2..]);
        assert!(
            alone.contains(r#"width="430""#),
            "ingest only: one panel, at the left"
        );
        assert!(s.contains("ingest only: server CPU share"));
        assert!(s.contains("nginx-rtmp [many-streams]"));
        assert!(s.contains("shardcast [ingest]"));
    }

    #[test]
    fn nice_axis_limits() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(10.0), 10.0);
        assert_eq!(nice_ceiling(0.031), 0.05);
        assert_eq!(nice_ceiling(150.0), 200.0);
        assert_eq!(axis_label(2.5, 10.0), "2.50");
        assert_eq!(axis_label(50.0, 200.0), "50");
        assert_eq!(axis_label(0.25, 1.0), "0.25");
    }
}
