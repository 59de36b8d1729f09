//! HAProxy `agent-check` replies: the node tells the balancer how much new work it wants.
//!
//! HAProxy connects to the agent port every `agent-inter` (2 s by default), reads one line and
//! applies it. The line is made of words separated by spaces, tabs or commas and ends at the
//! first CR or LF; a line without one is ignored as incomplete, so the reply always ends in `\n`.
//! The words used here (HAProxy configuration manual, `agent-check`; parser
//! `tcpcheck_agent_expect_reply` in `src/tcpcheck.c`):
//!
//! - `75%`: the weight as a percentage of the server line's configured `weight`. Configure
//!   `weight 100` (or more): with a small configured weight, 1% rounds down to 0, which HAProxy
//!   treats as DRAIN.
//! - `ready` / `drain` / `maint`: the administrative state. HAProxy keeps a DRAIN or MAINT set by
//!   the agent until the agent itself says `ready`, so every normal reply carries `ready`. Agent
//!   checks keep running in MAINT (only health checks pause), which is what lets `ready` come.
//! - `maxconn:N`: the server's maxconn on that balancer (each balancer and backend counts it
//!   separately; 0 means unlimited to HAProxy).
//!
//! The load is the worst of connections, egress and the busiest shard's CPU, because a
//! thread-per-core server is full when its busiest core is, whatever the average says.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use thiserror::Error;

/// Lowest weight reported while serving. Never 0: HAProxy shows a 0% server as DRAIN, and
/// draining is the operator's decision ([`AdminState::Drain`]), not the load's.
pub const MIN_WEIGHT: u8 = 1;

/// Weight of an idle node.
pub const MAX_WEIGHT: u8 = 100;

/// What the node measured, read by the caller from its counters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadSample {
    /// Open client connections (publishers, players, HTTP-FLV).
    pub connections: u64,
    /// Connection capacity (`server.max_connections`); 0 means no limit (not counted).
    pub max_connections: u64,
    /// Outgoing media rate, Mbit/s.
    pub egress_mbps: f64,
    /// Outgoing capacity, Mbit/s; 0 means no limit (not counted).
    pub max_egress_mbps: f64,
    /// CPU use of the busiest shard, 0.0 (idle) to 1.0 (saturated); above 1.0 counts as 1.0.
    pub busiest_shard_cpu: f64,
}

impl LoadSample {
    /// The load, 0.0 to 1.0: the largest of the three ratios. Ratios that are not numbers (a
    /// broken reading) count as 0 rather than draining the node.
    pub fn load(&self) -> f64 {
        let ratio = |used: f64, cap: f64| if cap > 0.0 { used / cap } else { 0.0 };
        let conns = ratio(self.connections as f64, self.max_connections as f64);
        let egress = ratio(self.egress_mbps, self.max_egress_mbps);
        [conns, egress, self.busiest_shard_cpu]
            .into_iter()
            .map(|r| if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) })
            .fold(0.0, f64::max)
    }
}

/// The weight curve: linear in the headroom, `100 × (1 − load)`, floored at [`MIN_WEIGHT`].
///
/// HAProxy sends new connections in proportion to weight, so a linear curve sends them in
/// proportion to free capacity: two nodes at 20% and 60% load get 80:40, and the fleet fills
/// evenly. At full load the floor keeps a trickle (1%) rather than a hard stop, so a node that
/// frees up is noticed by its next sample and not by an operator.
pub fn weight_for_load(load: f64) -> f64 {
    let load = if load.is_nan() {
        0.0
    } else {
        load.clamp(0.0, 1.0)
    };
    (f64::from(MAX_WEIGHT) * (1.0 - load)).max(f64::from(MIN_WEIGHT))
}

/// Smooths the weight so the balancer sees a trend, not every blip.
///
/// An EWMA over the curve's output with caller-passed time: each sample moves the smoothed
/// value by `1 − e^(−Δt/τ)` of the way to the new target. τ is shorter when the weight falls
/// than when it rises: shedding load quickly protects the node, taking it back slowly keeps a
/// freshly idle node from pulling in every client at once.
///
/// The reported integer changes only when the smoothed value is at least `deadband` points from
/// it, so a load wobbling around one level does not flip the weight between two values on each
/// check; the price is that the reported value settles within the deadband of the smoothed one
/// rather than exactly on it. Reaching [`MAX_WEIGHT`] or [`MIN_WEIGHT`] is always reported, so an
/// idle node shows 100% rather than stalling a point or two below. Under noisy load the faster
/// fall leans the smoothed value a little below the mean, erring on the side of shedding.
#[derive(Debug, Clone)]
pub struct WeightSmoother {
    rise: Duration,
    fall: Duration,
    deadband: f64,
    last: Option<(Instant, f64)>,
    reported: Option<u8>,
}

impl Default for WeightSmoother {
    fn default() -> WeightSmoother {
        WeightSmoother::new(
            WeightSmoother::DEFAULT_RISE,
            WeightSmoother::DEFAULT_FALL,
            WeightSmoother::DEFAULT_DEADBAND,
        )
    }
}

impl WeightSmoother {
    /// τ while the weight rises: five default `agent-inter` periods.
    pub const DEFAULT_RISE: Duration = Duration::from_secs(10);
    /// τ while the weight falls.
    pub const DEFAULT_FALL: Duration = Duration::from_secs(3);
    /// Points the smoothed weight must move before the reported one follows.
    pub const DEFAULT_DEADBAND: u8 = 2;

    /// A smoother with the given time constants (zero: follow the target at once) and deadband.
    pub fn new(rise: Duration, fall: Duration, deadband: u8) -> WeightSmoother {
        WeightSmoother {
            rise,
            fall,
            deadband: f64::from(deadband),
            last: None,
            reported: None,
        }
    }

    /// Take a sample measured at `now` and return the weight to report.
    pub fn update(&mut self, now: Instant, sample: &LoadSample) -> u8 {
        self.update_load(now, sample.load())
    }

    /// [`update`](Self::update) with the load already computed (0.0 to 1.0).
    pub fn update_load(&mut self, now: Instant, load: f64) -> u8 {
        let target = weight_for_load(load);
        let smoothed = match self.last {
            None => target,
            Some((at, prev)) => {
                let tau = if target < prev { self.fall } else { self.rise };
                let dt = now.saturating_duration_since(at);
                let alpha = if tau.is_zero() {
                    1.0
                } else {
                    1.0 - (-dt.as_secs_f64() / tau.as_secs_f64()).exp()
                };
                prev + alpha * (target - prev)
            }
        };
        // Time only moves forward: a sample stamped before the last one does not rewind it.
        let at = match self.last {
            Some((at, _)) if at > now => at,
            _ => now,
        };
        self.last = Some((at, smoothed));
        let rounded = smoothed
            .round()
            .clamp(f64::from(MIN_WEIGHT), f64::from(MAX_WEIGHT)) as u8;
        let report = match self.reported {
            None => rounded,
            Some(prev) if rounded == MAX_WEIGHT || rounded == MIN_WEIGHT => {
                if (smoothed - f64::from(prev)).abs() >= 0.5 {
                    rounded
                } else {
                    prev
                }
            }
            Some(prev) if (smoothed - f64::from(prev)).abs() >= self.deadband => rounded,
            Some(prev) => prev,
        };
        self.reported = Some(report);
        report
    }

    /// The last reported weight, if any sample was taken.
    pub fn weight(&self) -> Option<u8> {
        self.reported
    }

    /// The smoothed, unrounded weight, if any sample was taken.
    pub fn smoothed(&self) -> Option<f64> {
        self.last.map(|(_, w)| w)
    }
}

/// The node's administrative state as the operator set it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AdminState {
    /// Serving: report the load-based weight.
    #[default]
    Ready,
    /// Finishing what it has: no new connections except persistent ones, existing ones stay.
    Drain,
    /// Out of the farm: no new connections at all.
    Maint,
}

/// An admin state name that is none of `ready`, `drain`, `maint`.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("admin state {0:?} is not ready, drain or maint")]
pub struct AdminStateError(pub String);

impl AdminState {
    /// The agent word for this state.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Ready => "ready",
            AdminState::Drain => "drain",
            AdminState::Maint => "maint",
        }
    }
}

impl FromStr for AdminState {
    type Err = AdminStateError;

    /// The agent words, case-insensitive as HAProxy reads them.
    fn from_str(text: &str) -> Result<AdminState, AdminStateError> {
        [AdminState::Ready, AdminState::Drain, AdminState::Maint]
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| AdminStateError(text.to_owned()))
    }
}

/// One agent-check answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentReply {
    /// The administrative state.
    pub admin: AdminState,
    /// The weight in percent, sent only when [`AdminState::Ready`].
    pub weight: u8,
    /// A maxconn for this balancer, sent only when ready.
    pub maxconn: Option<u32>,
}

impl AgentReply {
    /// A reply without maxconn.
    pub fn new(admin: AdminState, weight: u8) -> AgentReply {
        AgentReply {
            admin,
            weight,
            maxconn: None,
        }
    }

    /// The same reply announcing `maxconn` too.
    pub fn with_maxconn(self, maxconn: u32) -> AgentReply {
        AgentReply {
            maxconn: Some(maxconn),
            ..self
        }
    }

    /// The bytes to write before closing: `75% ready\n`, `75% ready maxconn:300\n`, `drain\n` or
    /// `maint\n`. While draining or in maintenance the weight is left alone, so the next `ready`
    /// reply restores it along with the state.
    pub fn line(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for AgentReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.admin {
            AdminState::Ready => {
                write!(f, "{}% ready", self.weight)?;
                if let Some(n) = self.maxconn {
                    write!(f, " maxconn:{n}")?;
                }
                writeln!(f)
            }
            other => writeln!(f, "{}", other.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(conns: u64, max: u64, egress: f64, max_egress: f64, cpu: f64) -> LoadSample {
        LoadSample {
            connections: conns,
            max_connections: max,
            egress_mbps: egress,
            max_egress_mbps: max_egress,
            busiest_shard_cpu: cpu,
        }
    }

    #[test]
    fn load_is_the_worst_ratio() {
        let cases = [
            (sample(0, 1000, 0.0, 1000.0, 0.0), 0.0),
            (sample(500, 1000, 100.0, 1000.0, 0.2), 0.5),
            (sample(100, 1000, 800.0, 1000.0, 0.2), 0.8),
            (sample(100, 1000, 100.0, 1000.0, 0.9), 0.9),
            (sample(1000, 1000, 0.0, 0.0, 0.0), 1.0),
            // Over capacity or over 100% CPU counts as full.
            (sample(5000, 1000, 0.0, 0.0, 0.0), 1.0),
            (sample(0, 0, 0.0, 0.0, 1.7), 1.0),
            // No limit configured: that ratio does not count.
            (sample(1_000_000, 0, 5000.0, 0.0, 0.3), 0.3),
            // Broken readings count as idle, not as full.
            (sample(0, 0, f64::NAN, 100.0, f64::NAN), 0.0),
            (sample(0, 0, -5.0, 100.0, -0.1), 0.0),
        ];
        for (s, want) in cases {
            assert!((s.load() - want).abs() < 1e-9, "{s:?}: {}", s.load());
        }
    }

    #[test]
    fn weight_curve() {
        let cases = [
            (0.0, 100.0),
            (0.1, 90.0),
            (0.25, 75.0),
            (0.5, 50.0),
            (0.9, 10.0),
            (0.99, 1.0),
            (0.995, 1.0),
            (1.0, 1.0),
            (3.0, 1.0),
            (-1.0, 100.0),
            (f64::NAN, 100.0),
        ];
        for (load, want) in cases {
            let w = weight_for_load(load);
            assert!((w - want).abs() < 1e-9, "load {load}: {w}");
        }
    }

    #[test]
    fn first_sample_is_reported_as_is() {
        let t0 = Instant::now();
        let mut s = WeightSmoother::default();
        assert_eq!(s.weight(), None);
        assert_eq!(s.update(t0, &sample(250, 1000, 0.0, 0.0, 0.0)), 75);
        assert_eq!(s.weight(), Some(75));
    }

    #[test]
    fn smoothing_converges_and_falls_faster_than_it_rises() {
        let t0 = Instant::now();
        let step = Duration::from_secs(2);
        let mut s = WeightSmoother::default();
        s.update_load(t0, 0.0);
        // Load jumps to 80%: target 20.
        let mut falls = Vec::new();
        for i in 1..=15 {
            falls.push(s.update_load(t0 + step * i, 0.8));
        }
        assert!(falls.windows(2).all(|w| w[1] <= w[0]), "{falls:?}");
        assert!(falls[0] < 100 && falls[0] > 20, "{falls:?}");
        // The smoothed value converges; the reported one settles within the deadband of it.
        assert!((s.smoothed().unwrap() - 20.0).abs() < 0.01);
        assert!(falls.last().unwrap().abs_diff(20) < 2, "{falls:?}");
        // τ = 3 s: after 6 s (two checks) most of the way down.
        assert!(falls[2] < 40, "{falls:?}");
        // Load drops back to 0: it comes back, but more slowly.
        let base = t0 + step * 15;
        let mut rises = Vec::new();
        for i in 1..=40 {
            rises.push(s.update_load(base + step * i, 0.0));
        }
        assert!(rises.windows(2).all(|w| w[1] >= w[0]), "{rises:?}");
        assert!(rises[2] < 60, "rises too fast: {rises:?}");
        assert_eq!(*rises.last().unwrap(), 100, "{rises:?}");
    }

    #[test]
    fn no_flapping_when_load_wobbles() {
        let t0 = Instant::now();
        let mut s = WeightSmoother::default();
        s.update_load(t0, 0.5);
        // ±1.5 points around 50%, every check: without hysteresis this rounds to 48..52.
        let mut seen = Vec::new();
        for i in 1..=100u32 {
            let load = if i % 2 == 0 { 0.515 } else { 0.485 };
            seen.push(s.update_load(t0 + Duration::from_secs(2 * u64::from(i)), load));
        }
        seen.dedup();
        assert_eq!(seen, vec![50]);
    }

    #[test]
    fn deadband_sizes() {
        // Without a deadband, a value sitting on a rounding edge flips every check.
        let t0 = Instant::now();
        let zero = Duration::ZERO;
        let mut flappy = WeightSmoother::new(zero, zero, 0);
        let mut steady = WeightSmoother::new(zero, zero, 2);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for i in 0..10u32 {
            let load = if i % 2 == 0 { 0.494 } else { 0.506 };
            let now = t0 + Duration::from_secs(u64::from(i));
            a.push(flappy.update_load(now, load));
            b.push(steady.update_load(now, load));
        }
        a.dedup();
        b.dedup();
        assert_eq!(a.len(), 10, "{a:?}");
        assert_eq!(b.len(), 1, "{b:?}");
        // A real move still gets through the deadband.
        assert_eq!(steady.update_load(t0 + Duration::from_secs(20), 0.7), 30);
    }

    #[test]
    fn ends_are_always_reached() {
        let t0 = Instant::now();
        let mut s = WeightSmoother::new(Duration::from_secs(10), Duration::from_secs(3), 5);
        s.update_load(t0, 0.05); // 95
        let mut last = 0;
        for i in 1..=60u64 {
            last = s.update_load(t0 + Duration::from_secs(2 * i), 0.0);
        }
        assert_eq!(last, MAX_WEIGHT);
        for i in 61..=120u64 {
            last = s.update_load(t0 + Duration::from_secs(2 * i), 1.0);
        }
        assert_eq!(last, MIN_WEIGHT);
    }

    #[test]
    fn time_that_does_not_advance_changes_nothing() {
        let t0 = Instant::now() + Duration::from_secs(100);
        let mut s = WeightSmoother::default();
        s.update_load(t0, 0.0);
        assert_eq!(s.update_load(t0, 1.0), 100);
        // An earlier timestamp neither moves the value nor rewinds the clock.
        assert_eq!(s.update_load(t0 - Duration::from_secs(50), 1.0), 100);
        assert!(s.update_load(t0 + Duration::from_secs(3), 1.0) < 50);
    }

    #[test]
    fn reply_lines() {
        let cases = [
            (AgentReply::new(AdminState::Ready, 75), "75% ready\n"),
            (AgentReply::new(AdminState::Ready, 100), "100% ready\n"),
            (AgentReply::new(AdminState::Ready, 1), "1% ready\n"),
            (
                AgentReply::new(AdminState::Ready, 42).with_maxconn(300),
                "42% ready maxconn:300\n",
            ),
            (AgentReply::new(AdminState::Drain, 42), "drain\n"),
            (
                AgentReply::new(AdminState::Drain, 42).with_maxconn(300),
                "drain\n",
            ),
            (AgentReply::new(AdminState::Maint, 42), "maint\n"),
        ];
        for (reply, want) in cases {
            assert_eq!(reply.line(), want);
        }
    }

    /// What HAProxy takes from a line, per its documented grammar: words split on spaces, tabs
    /// and commas up to the first CR/LF, the last word of each kind winning; no CR/LF, nothing.
    fn haproxy_reads(line: &str) -> Option<(Option<u32>, Option<String>, Option<u32>)> {
        let end = line.find(['\r', '\n'])?;
        let (mut weight, mut admin, mut maxconn) = (None, None, None);
        for word in line[..end]
            .split([' ', '\t', ','])
            .filter(|w| !w.is_empty())
        {
            let lower = word.to_ascii_lowercase();
            if ["ready", "drain", "maint"].contains(&lower.as_str()) {
                admin = Some(lower);
            } else if ["up", "down", "stopped", "fail"].contains(&lower.as_str()) {
                // Operational state: never sent by us.
            } else if let Some(n) = lower.strip_prefix("maxconn:") {
                maxconn = n.parse().ok();
            } else if word.starts_with(|c: char| c.is_ascii_digit()) && word.contains('%') {
                weight = word.trim_end_matches('%').parse().ok();
            } else {
                panic!("HAProxy would report {word:?} as an error");
            }
        }
        Some((weight, admin, maxconn))
    }

    #[test]
    fn replies_parse_as_haproxy_reads_them() {
        let reply = AgentReply::new(AdminState::Ready, 64).with_maxconn(30);
        assert_eq!(
            haproxy_reads(&reply.line()),
            Some((Some(64), Some("ready".into()), Some(30)))
        );
        for admin in [AdminState::Drain, AdminState::Maint] {
            assert_eq!(
                haproxy_reads(&AgentReply::new(admin, 64).line()),
                Some((None, Some(admin.as_str().into()), None))
            );
        }
        // The regression-test line from HAProxy's own suite reads the same way here.
        assert_eq!(
            haproxy_reads("75%,maxconn:30,maint,down\n"),
            Some((Some(75), Some("maint".into()), Some(30)))
        );
        // Without the line end HAProxy ignores the reply ("incomplete line").
        assert_eq!(haproxy_reads("75% ready"), None);
    }

    #[test]
    fn admin_state_words() {
        for (text, want) in [
            ("ready", AdminState::Ready),
            ("DRAIN", AdminState::Drain),
            ("Maint", AdminState::Maint),
        ] {
            assert_eq!(text.parse(), Ok(want));
        }
        assert_eq!(
            "up".parse::<AdminState>(),
            Err(AdminStateError("up".into()))
        );
        assert_eq!(AdminState::default(), AdminState::Ready);
    }

    #[test]
    fn end_to_end_from_samples() {
        let t0 = Instant::now();
        let mut s = WeightSmoother::default();
        let busy = sample(300, 1000, 400.0, 1000.0, 0.6);
        let w = s.update(t0, &busy);
        assert_eq!(w, 40);
        let line = AgentReply::new(AdminState::Ready, w)
            .with_maxconn(700)
            .line();
        assert_eq!(line, "40% ready maxconn:700\n");
    }
}
