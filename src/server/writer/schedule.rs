//! When merged writes are due, as plain data with the time passed in (the flusher task sleeps
//! on what this says). A stream's batch is due when its first message has waited one window,
//! less the measured pass time: with a fixed shard-wide cadence instead, a tick that falls just
//! after a write finds one small message, and writes per second go up by about a fifth.

use crate::server::key::StreamKey;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The merged-write schedule of one shard.
#[derive(Debug)]
pub struct FlushSchedule {
    window: Duration,
    /// Streams with a batch waiting, in the order the batches started (so by due time).
    streams: VecDeque<(Instant, StreamKey)>,
    /// When the connections with media of their own must be written.
    conns_due: Option<Instant>,
    /// How long a pass over the players takes (smoothed): batches are due that much before the
    /// window ends, so the last player of a pass still has its media within the window.
    pass_time: Duration,
}

impl FlushSchedule {
    /// A schedule for a merged-write window of `window`.
    pub fn new(window: Duration) -> FlushSchedule {
        FlushSchedule {
            window,
            streams: VecDeque::new(),
            conns_due: None,
            pass_time: Duration::ZERO,
        }
    }

    /// A stream's batch got its first message at `now`. True when the wake-up time may have
    /// moved earlier (the flusher must look again).
    pub fn stream_started(&mut self, key: StreamKey, now: Instant) -> bool {
        let lead = self.pass_time.min(self.window / 2);
        self.streams.push_back((now + self.window - lead, key));
        self.streams.len() == 1
    }

    /// A connection queued media of its own at `now`. True when it is the first since the
    /// last pass (the flusher must look again).
    pub fn conn_listed(&mut self, now: Instant) -> bool {
        if self.conns_due.is_some() {
            return false;
        }
        self.conns_due = Some(now + self.window);
        true
    }

    /// The earliest time anything is due.
    pub fn next_due(&self) -> Option<Instant> {
        let first = self.streams.front().map(|(t, _)| *t);
        match (first, self.conns_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Move the streams due at `now` into `keys`. True when the pass over connections is due
    /// too (always after a stream write: players that could not take a batch queued it).
    pub fn take_due(&mut self, now: Instant, keys: &mut Vec<StreamKey>) -> bool {
        while self.streams.front().is_some_and(|(t, _)| *t <= now) {
            keys.extend(self.streams.pop_front().map(|(_, k)| k));
        }
        let conns = !keys.is_empty() || self.conns_due.is_some_and(|t| t <= now);
        if conns {
            self.conns_due = None;
        }
        conns
    }

    /// A pass that wrote stream batches took `took`.
    pub fn pass_took(&mut self, took: Duration) {
        self.pass_time = (self.pass_time * 3 + took) / 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> StreamKey {
        StreamKey::new("v", "live", s)
    }

    #[test]
    fn each_stream_is_due_one_window_after_its_batch_started() {
        let w = Duration::from_millis(60);
        let t0 = Instant::now();
        let mut s = FlushSchedule::new(w);
        assert!(s.stream_started(key("a"), t0));
        assert!(!s.stream_started(key("b"), t0 + Duration::from_millis(25)));
        assert_eq!(s.next_due(), Some(t0 + w));
        let mut keys = Vec::new();
        assert!(!s.take_due(t0 + w - Duration::from_millis(1), &mut keys));
        assert!(keys.is_empty(), "nothing before its window");
        assert!(s.take_due(t0 + w, &mut keys));
        assert_eq!(keys, [key("a")]);
        keys.clear();
        assert_eq!(s.next_due(), Some(t0 + Duration::from_millis(85)));
        assert!(s.take_due(t0 + Duration::from_millis(85), &mut keys));
        assert_eq!(keys, [key("b")], "b had its own pass");
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn the_pass_time_is_taken_off_the_window_up_to_half() {
        let w = Duration::from_millis(100);
        let t0 = Instant::now();
        let mut s = FlushSchedule::new(w);
        for _ in 0..20 {
            s.pass_took(Duration::from_millis(8));
        }
        s.stream_started(key("a"), t0);
        let due = s.next_due().unwrap() - t0;
        assert!(due < w && due >= w - Duration::from_millis(8), "{due:?}");
        for _ in 0..40 {
            s.pass_took(Duration::from_millis(500));
        }
        s.stream_started(key("b"), t0);
        let mut keys = Vec::new();
        s.take_due(t0 + w, &mut keys);
        assert_eq!(s.next_due(), None);
        let mut s2 = FlushSchedule::new(w);
        for _ in 0..40 {
            s2.pass_took(Duration::from_millis(500));
        }
        s2.stream_started(key("c"), t0);
        assert_eq!(
            s2.next_due(),
            Some(t0 + w / 2),
            "never less than half a window"
        );
    }

    #[test]
    fn connections_are_written_once_per_window() {
        let w = Duration::from_millis(30);
        let t0 = Instant::now();
        let mut s = FlushSchedule::new(w);
        assert!(s.conn_listed(t0));
        assert!(!s.conn_listed(t0 + Duration::from_millis(10)));
        let mut keys = Vec::new();
        assert!(!s.take_due(t0 + Duration::from_millis(29), &mut keys));
        assert!(s.take_due(t0 + w, &mut keys));
        assert!(keys.is_empty());
        assert_eq!(s.next_due(), None);
        assert!(s.conn_listed(t0 + w), "listed again after the pass");
    }
}
