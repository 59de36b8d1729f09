//! A forward peer as the shard sees it: its destination, state and figures, and the stop
//! signal its task waits on. The task itself (connect, publish, stream) is in `forward`.

use super::key::StreamKey;
use super::kinds::ForwardState;
use super::notify::LocalNotify;
use crate::config::ForwardTarget;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

/// One destination of one stream, as the shard holding it sees it (for logs and stats).
pub struct ForwardHandle {
    /// The stream forwarded.
    pub key: StreamKey,
    /// Where to.
    pub target: ForwardTarget,
    /// Where the peer is in its life.
    pub state: Cell<ForwardState>,
    /// Reconnects so far.
    pub reconnects: Cell<u64>,
    /// Bytes sent, over all its connections.
    pub bytes_out: Cell<u64>,
    /// Why the last attempt failed.
    pub last_error: RefCell<String>,
    pub(super) stopped: Cell<bool>,
    pub(super) stop: LocalNotify,
}

impl ForwardHandle {
    /// A peer that has not connected yet.
    pub fn new(key: StreamKey, target: ForwardTarget) -> Rc<ForwardHandle> {
        Rc::new(ForwardHandle {
            key,
            target,
            state: Cell::new(ForwardState::Connecting),
            reconnects: Cell::new(0),
            bytes_out: Cell::new(0),
            last_error: RefCell::new(String::new()),
            stopped: Cell::new(false),
            stop: LocalNotify::default(),
        })
    }

    /// The publish ended: unpublish at the destination and stop retrying.
    pub fn stop(&self) {
        self.stopped.set(true);
        self.stop.notify();
    }
}

/// Retry delays: `initial` doubling to `max`, each with up to 25% jitter.
pub struct Backoff {
    next: Duration,
    initial: Duration,
    max: Duration,
    rng: u64,
}

impl Backoff {
    /// Delays from `initial` doubling to `max`; `seed` drives the jitter.
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff {
            next: initial,
            initial,
            max,
            rng: seed | 1,
        }
    }

    /// Start over at the initial delay (after a session that lasted).
    pub fn reset(&mut self) {
        self.next = self.initial;
    }

    /// The delay to wait now; the one after is doubled.
    pub fn next_delay(&mut self) -> Duration {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let base = self.next;
        let jitter = base.mul_f64((self.rng % 1000) as f64 / 4000.0);
        self.next = (self.next * 2).min(self.max);
        (base + jitter).min(self.max + self.max / 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30), 42);
        let d: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        let bounds = [1u64, 2, 4, 8, 16, 30, 30, 30];
        for (got, base) in d.iter().zip(bounds) {
            let base = Duration::from_secs(base);
            assert!(
                *got >= base && *got <= base + base / 4,
                "{got:?} vs {base:?}"
            );
        }
        b.reset();
        assert!(b.next_delay() < Duration::from_millis(1250));
    }
}
