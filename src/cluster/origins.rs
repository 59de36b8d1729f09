//! Which origin an edge pulls a stream from: sticky to the last one that worked (its GOP cache
//! and our player's timestamps stay continuous), failing over to the next at once, and only
//! after every origin failed in a row waiting a bounded, jittered backoff before the next round
//! (a dead origin tier must not be hammered by every edge at once).
//!
//! SRS's edge walks its `origin` list round-robin on every reconnect (`SrsLbRoundRobin`) with a
//! fixed 3 s pause; stickiness and the per-round backoff are ours.

use super::backoff::Backoff;
use std::time::{Duration, Instant};
use thiserror::Error;

/// A picker needs something to pick from.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OriginsError {
    /// The origin list is empty.
    #[error("no origins configured")]
    Empty,
}

/// What to do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick<'a> {
    /// Connect to this origin now.
    Connect(&'a str),
    /// Every origin failed this round; try again at this time.
    WaitUntil(Instant),
}

/// Failover and stickiness over an edge's origin list. The caller reports each attempt's
/// outcome and passes the time in.
pub struct OriginPicker {
    origins: Vec<String>,
    /// The origin to try next (after a success: the one that worked).
    current: usize,
    /// Failures in a row since the last success or the last backoff.
    failed_in_round: usize,
    /// Set after a full round failed: nothing is tried before this.
    retry_at: Option<Instant>,
    backoff: Backoff,
}

impl std::fmt::Debug for OriginPicker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginPicker")
            .field("origins", &self.origins)
            .field("current", &self.current)
            .field("failed_in_round", &self.failed_in_round)
            .field("retry_at", &self.retry_at)
            .finish_non_exhaustive()
    }
}

impl OriginPicker {
    /// Origins in preference order; the first round starts at the first. Backoff between
    /// rounds: `initial` doubling to `max`, each with up to 25% jitter (the forward peers'
    /// schedule); `seed` varies the jitter between edges.
    pub fn new(
        origins: Vec<String>,
        initial: Duration,
        max: Duration,
        seed: u64,
    ) -> Result<OriginPicker, OriginsError> {
        if origins.is_empty() {
            return Err(OriginsError::Empty);
        }
        Ok(OriginPicker {
            origins,
            current: 0,
            failed_in_round: 0,
            retry_at: None,
            backoff: Backoff::new(initial, max, seed),
        })
    }

    /// The origin to use at `now`, or when to ask again.
    pub fn next(&mut self, now: Instant) -> Pick<'_> {
        match self.retry_at {
            Some(t) if now < t => Pick::WaitUntil(t),
            _ => {
                self.retry_at = None;
                Pick::Connect(&self.origins[self.current])
            }
        }
    }

    /// The origin `next` would give (ignoring any wait).
    pub fn current(&self) -> &str {
        &self.origins[self.current]
    }

    /// The current origin works (the upstream is playing): stay on it, and start the backoff
    /// over.
    pub fn succeeded(&mut self) {
        self.failed_in_round = 0;
        self.retry_at = None;
        self.backoff.reset();
    }

    /// The current origin failed at `now`: move to the next; when that completes a round of
    /// failures, wait a backoff delay before trying again (from the origin the round began at,
    /// the last one that worked).
    pub fn failed(&mut self, now: Instant) {
        self.current = (self.current + 1) % self.origins.len();
        self.failed_in_round += 1;
        if self.failed_in_round >= self.origins.len() {
            self.failed_in_round = 0;
            self.retry_at = Some(now + self.backoff.next_delay());
        }
    }

    /// A full round failed and we are waiting.
    pub fn backing_off(&self, now: Instant) -> bool {
        self.retry_at.is_some_and(|t| now < t)
    }

    /// All origins, in order.
    pub fn origins(&self) -> &[String] {
        &self.origins
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picker(n: usize) -> OriginPicker {
        let origins = (0..n).map(|i| format!("o{i}:1935")).collect();
        OriginPicker::new(origins, Duration::from_secs(1), Duration::from_secs(8), 42).unwrap()
    }

    fn connect(p: &mut OriginPicker, now: Instant) -> String {
        match p.next(now) {
            Pick::Connect(o) => o.to_string(),
            w => panic!("{w:?}"),
        }
    }

    #[test]
    fn empty_list_is_an_error() {
        assert_eq!(
            OriginPicker::new(vec![], Duration::ZERO, Duration::ZERO, 1).unwrap_err(),
            OriginsError::Empty
        );
    }

    #[test]
    fn sticks_to_the_one_that_worked() {
        let t = Instant::now();
        let mut p = picker(3);
        assert_eq!(connect(&mut p, t), "o0:1935");
        p.failed(t);
        assert_eq!(connect(&mut p, t), "o1:1935", "next one at once");
        p.succeeded();
        // Reconnects (say the stream restarted) stay on o1.
        assert_eq!(connect(&mut p, t), "o1:1935");
        assert_eq!(connect(&mut p, t), "o1:1935");
        // o1 drops: o2, then o0, then a full round is done and we wait.
        p.failed(t);
        assert_eq!(connect(&mut p, t), "o2:1935");
        p.failed(t);
        assert_eq!(connect(&mut p, t), "o0:1935");
        p.failed(t);
        assert!(p.backing_off(t));
        assert_eq!(
            p.current(),
            "o1:1935",
            "the next round starts at the last good one"
        );
    }

    #[test]
    fn backoff_between_rounds_grows_and_is_bounded() {
        let mut now = Instant::now();
        let mut p = picker(2);
        let mut waits = Vec::new();
        for _ in 0..6 {
            // A whole round fails.
            connect(&mut p, now);
            p.failed(now);
            connect(&mut p, now);
            p.failed(now);
            let Pick::WaitUntil(until) = p.next(now) else {
                panic!("should wait")
            };
            waits.push(until - now);
            // Still waiting just before; free to go at the time.
            assert!(matches!(
                p.next(until - Duration::from_millis(1)),
                Pick::WaitUntil(_)
            ));
            now = until;
        }
        for (w, base) in waits.iter().zip([1u64, 2, 4, 8, 8, 8]) {
            let base = Duration::from_secs(base);
            assert!(*w >= base && *w <= base + base / 4, "{w:?} vs {base:?}");
        }
        // A success starts over at the initial delay.
        connect(&mut p, now);
        p.succeeded();
        p.failed(now);
        connect(&mut p, now);
        p.failed(now);
        let Pick::WaitUntil(until) = p.next(now) else {
            panic!()
        };
        assert!(until - now < Duration::from_millis(1250));
    }

    #[test]
    fn single_origin_backs_off_after_each_failure() {
        let t = Instant::now();
        let mut p = picker(1);
        connect(&mut p, t);
        p.failed(t);
        assert!(matches!(p.next(t), Pick::WaitUntil(_)));
        assert_eq!(p.current(), "o0:1935");
        assert_eq!(p.origins().len(), 1);
    }
}
