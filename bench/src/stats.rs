//! The arithmetic of a run, kept pure so it is unit-tested: a log-linear latency histogram that
//! threads merge at the end, exact percentiles for small sample sets (join times), frame-rate
//! estimation from timestamp steps, and the kept-up rule.

use serde::Serialize;

/// Share of real time a player must receive to count as keeping up (media time and frames).
pub const KEEP_UP_FRACTION: f64 = 0.97;

/// Sub-bucket bits: each power of two is split in 64, so a bucket is within ~1.6% of its values.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Values below this are stored exactly, one bucket each.
const LINEAR: u64 = SUB * 2;
/// Largest exponent kept; larger values are clamped into the last bucket (~1.4e14).
const MAX_EXP: u32 = 47;
const BUCKETS: usize = LINEAR as usize + (MAX_EXP - SUB_BITS) as usize * SUB as usize;

/// Log-linear histogram of non-negative integers (microseconds here). Fixed size, so recording
/// is an index and an increment, and merging threads' histograms is an element-wise sum.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    max: u64,
    min: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            max: 0,
            min: u64::MAX,
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("total", &self.total)
            .field("min", &self.min())
            .field("max", &self.max())
            .finish()
    }
}

fn bucket_of(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let exp = (63 - v.leading_zeros()).min(MAX_EXP);
    let v = v.min((1u64 << (MAX_EXP + 1)) - 1);
    let sub = (v >> (exp - SUB_BITS)) & (SUB - 1);
    LINEAR as usize + (exp - SUB_BITS - 1) as usize * SUB as usize + sub as usize
}

/// The middle of a bucket's value range (its single value below `LINEAR`).
fn bucket_value(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let exp = (i - LINEAR) / SUB + u64::from(SUB_BITS) + 1;
    let sub = (i - LINEAR) % SUB;
    let width = 1u64 << (exp - u64::from(SUB_BITS));
    ((SUB + sub) * width) + width / 2
}

impl Histogram {
    pub fn record(&mut self, v: u64) {
        self.counts[bucket_of(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
        self.min = self.min.min(v);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
        self.min = self.min.min(other.min);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> Option<u64> {
        (self.total > 0).then_some(self.max)
    }

    pub fn min(&self) -> Option<u64> {
        (self.total > 0).then_some(self.min)
    }

    /// Nearest-rank percentile (`p` in 0..=100), clamped to the exact min and max.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = nearest_rank(self.total as usize, p) as u64;
        // The extremes are known exactly; only the inside goes through buckets.
        if rank == 1 {
            return Some(self.min);
        }
        if rank == self.total {
            return Some(self.max);
        }
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(bucket_value(i).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }
}

/// 1-based nearest rank of percentile `p` among `n` samples.
fn nearest_rank(n: usize, p: f64) -> usize {
    ((p.clamp(0.0, 100.0) / 100.0 * n as f64).ceil() as usize).clamp(1, n)
}

/// Nearest-rank percentile of an ascending slice.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    Some(sorted[nearest_rank(sorted.len(), p) - 1])
}

/// p50/p95/p99/max of a latency histogram, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LatencySummary {
    pub samples: u64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub min_ms: Option<f64>,
}

impl LatencySummary {
    /// From a histogram of microseconds.
    pub fn from_us(h: &Histogram) -> Self {
        let ms = |v: Option<u64>| v.map(|us| us as f64 / 1000.0);
        LatencySummary {
            samples: h.count(),
            p50_ms: ms(h.percentile(50.0)),
            p95_ms: ms(h.percentile(95.0)),
            p99_ms: ms(h.percentile(99.0)),
            max_ms: ms(h.max()),
            min_ms: ms(h.min()),
        }
    }
}

/// Counts of video timestamp steps (1..=255 ms) so a player can tell the stream's frame rate
/// from its own timestamps, even when it is missing frames (dropped runs do not move a median).
#[derive(Clone, Debug)]
pub struct StepCounts {
    counts: Box<[u32; 256]>,
}

impl Default for StepCounts {
    fn default() -> Self {
        StepCounts {
            counts: Box::new([0; 256]),
        }
    }
}

impl StepCounts {
    pub fn record(&mut self, step_ms: u32) {
        if let Some(c) = self.counts.get_mut(step_ms as usize) {
            if step_ms > 0 {
                *c = c.saturating_add(1);
            }
        }
    }

    /// Frames per second from the median step, once at least 5 steps were seen.
    pub fn fps(&self) -> Option<f64> {
        let n: u64 = self.counts.iter().map(|&c| u64::from(c)).sum();
        if n < 5 {
            return None;
        }
        let half = n.div_ceil(2);
        let mut seen = 0;
        for (step, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= half {
                return Some(1000.0 / step as f64);
            }
        }
        None
    }
}

/// What a player saw over its measurement window, edge to edge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowSample {
    /// Wall time between the two edges, in ms.
    pub wall_ms: f64,
    /// Media timestamp advance between the edges, in ms.
    pub media_ms: f64,
    /// Video frames received between the edges.
    pub video_frames: u64,
}

/// The kept-up rule: media time advanced by at least 97% of the wall time, and (for streams with
/// video, when the frame rate is known) at least 97% of wall time x frame rate frames arrived,
/// give or take `slack_ms` of media (a server's batching: its merged read and write windows
/// make what a player has at any instant swing by up to their sum).
pub fn kept_up(s: &WindowSample, fps: Option<f64>, slack_ms: f64) -> bool {
    if s.wall_ms <= 0.0 {
        return false;
    }
    let media_ok = s.media_ms + slack_ms >= KEEP_UP_FRACTION * s.wall_ms;
    let frames_ok = match fps {
        Some(f) if f > 0.0 => {
            (s.video_frames as f64 + slack_ms / 1000.0 * f)
                >= KEEP_UP_FRACTION * s.wall_ms / 1000.0 * f
        }
        _ => true,
    };
    media_ok && frames_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_monotonic_and_tight() {
        let mut prev = 0;
        for v in (0..200_000u64).chain([1 << 30, 1 << 40, u64::MAX / 2]) {
            let b = bucket_of(v);
            assert!(b >= prev, "bucket order at {v}");
            prev = b;
            assert!(b < BUCKETS);
            let mid = bucket_value(b);
            if v < 1u64 << MAX_EXP {
                let err = (mid as f64 - v as f64).abs() / (v.max(1) as f64);
                assert!(err <= 1.0 / SUB as f64, "value {v} bucket mid {mid}");
            }
        }
    }

    #[test]
    fn histogram_percentiles() {
        let mut h = Histogram::default();
        assert_eq!(h.percentile(50.0), None);
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let p50 = h.percentile(50.0).unwrap() as f64;
        assert!((p50 - 500_000.0).abs() / 500_000.0 < 0.02, "{p50}");
        let p99 = h.percentile(99.0).unwrap() as f64;
        assert!((p99 - 990_000.0).abs() / 990_000.0 < 0.02, "{p99}");
        assert_eq!(h.percentile(100.0), Some(1_000_000));
        assert_eq!(h.percentile(0.0), Some(1000));
        assert_eq!(h.max(), Some(1_000_000));

        let mut other = Histogram::default();
        other.record(5);
        h.merge(&other);
        assert_eq!(h.count(), 1001);
        assert_eq!(h.min(), Some(5));
        assert_eq!(h.percentile(0.0), Some(5));
    }

    #[test]
    fn exact_percentiles() {
        assert_eq!(percentile(&[], 50.0), None);
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
    }

    #[test]
    fn latency_summary_in_ms() {
        let mut h = Histogram::default();
        for us in [1000, 2000, 3000, 4000] {
            h.record(us);
        }
        let s = LatencySummary::from_us(&h);
        assert_eq!(s.samples, 4);
        assert_eq!(s.max_ms, Some(4.0));
        assert_eq!(s.min_ms, Some(1.0));
        assert!(s.p50_ms.unwrap() >= 1.9 && s.p50_ms.unwrap() <= 2.1);
    }

    #[test]
    fn fps_from_steps() {
        let mut s = StepCounts::default();
        assert_eq!(s.fps(), None);
        for _ in 0..20 {
            s.record(40);
        }
        // A few long gaps (dropped runs) and noise do not move the median.
        for step in [400, 80, 0, 1000] {
            s.record(step);
        }
        assert_eq!(s.fps(), Some(25.0));
        let mut ntsc = StepCounts::default();
        for i in 0..30 {
            ntsc.record(if i % 3 == 0 { 34 } else { 33 });
        }
        assert!((ntsc.fps().unwrap() - 30.3).abs() < 0.1);
    }

    #[test]
    fn batching_slack() {
        // 700 ms behind at the end of a 10 s window: a 350 + 350 ms batch, or falling behind.
        let batch = WindowSample {
            wall_ms: 10_000.0,
            media_ms: 9_300.0,
            video_frames: 233,
        };
        assert!(!kept_up(&batch, Some(25.0), 0.0));
        assert!(kept_up(&batch, Some(25.0), 700.0));
        let slow = WindowSample {
            wall_ms: 10_000.0,
            media_ms: 8_800.0,
            video_frames: 220,
        };
        assert!(
            !kept_up(&slow, Some(25.0), 700.0),
            "12% behind is more than a batch"
        );
    }

    #[test]
    fn kept_up_rule() {
        let ok = WindowSample {
            wall_ms: 10_000.0,
            media_ms: 9_800.0,
            video_frames: 245,
        };
        assert!(kept_up(&ok, Some(25.0), 0.0));
        assert!(kept_up(&ok, None, 0.0));
        // Media time fell behind by more than 3%.
        let slow = WindowSample {
            media_ms: 9_600.0,
            ..ok
        };
        assert!(!kept_up(&slow, Some(25.0), 0.0));
        // Timestamps advanced but frames were dropped (skip to keyframe).
        let dropped = WindowSample {
            video_frames: 200,
            ..ok
        };
        assert!(!kept_up(&dropped, Some(25.0), 0.0));
        assert!(kept_up(&dropped, None, 0.0));
        // Boundary: exactly 97%.
        let edge = WindowSample {
            wall_ms: 1000.0,
            media_ms: 970.0,
            video_frames: 97,
        };
        assert!(kept_up(&edge, Some(100.0), 0.0));
        let empty = WindowSample {
            wall_ms: 0.0,
            media_ms: 0.0,
            video_frames: 0,
        };
        assert!(!kept_up(&empty, None, 0.0));
    }
}
