//! Retry delays for anything that reconnects (forward peers, edge upstreams, origin
//! failover): exponential with bounded jitter, so many peers that failed together do not
//! retry together.

use std::time::Duration;

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
