//! A thread's CPU use, for the agent's "busiest shard" figure: each shard samples its own
//! thread's user+system time (getrusage `RUSAGE_THREAD`) against the wall clock.

use std::time::{Duration, Instant};

/// The calling thread's user+system CPU time so far.
pub fn thread_cpu_time() -> Duration {
    // SAFETY: getrusage fills a zeroed plain struct for the calling thread.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Busy fraction of one thread between samples. Sample it on the thread it measures.
#[derive(Debug, Default)]
pub struct ThreadCpu {
    last: Option<(Instant, Duration)>,
}

impl ThreadCpu {
    /// CPU time / wall time since the last call (0.0 at the first), 0.0 to about 1.0.
    pub fn sample(&mut self, now: Instant) -> f64 {
        let cpu = thread_cpu_time();
        let busy = match self.last {
            Some((then, was)) => {
                let wall = now.saturating_duration_since(then).as_secs_f64();
                if wall > 0.0 {
                    cpu.saturating_sub(was).as_secs_f64() / wall
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        self.last = Some((now, cpu));
        busy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spinning_thread_reads_busy_and_a_sleeping_one_idle() {
        let mut m = ThreadCpu::default();
        m.sample(Instant::now());
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(150) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let busy = m.sample(Instant::now());
        // Other processes may share the core: spinning is clearly busy, not necessarily 100%.
        assert!(busy > 0.1, "spinning read {busy}");
        std::thread::sleep(Duration::from_millis(150));
        let idle = m.sample(Instant::now());
        assert!(idle < 0.1, "sleeping read {idle}");
    }
}
