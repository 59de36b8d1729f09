//! Merged reads for publishers (`rtmp.mr_latency_ms`, SRS's `mr`): a publisher's socket is read
//! on a shard-wide tick, all publishers of the shard in the same wake-up, with a plain
//! non-blocking `recv` that takes everything queued. The tick runs each waiting publisher's
//! [`TickFeed`] itself (`parked_publisher`): no task is woken for media.
//!
//! Why not a sleep per connection and the runtime's read: measured with 200 publishers of
//! 0.5 Mbit/s on one shard (`strace -c`, 10 s), per-connection 350 ms sleeps still cost 7,600
//! `io_uring_enter` a second for 570 reads: the timers fire at 570 different instants, and each
//! runtime read leaves a readiness poll armed that completes (and wakes the sleeping shard) on
//! the next message, so the shard woke about once per message anyway. Reading on a common tick
//! without arming a poll turns that into one wake-up per tick for the whole shard.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::os::unix::io::RawFd;
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What one direct read got.
#[derive(Debug, PartialEq, Eq)]
pub enum Got {
    /// This many bytes.
    Bytes(usize),
    /// The peer closed its side.
    Eof,
    /// Nothing queued: wait for readiness the ordinary way.
    Empty,
}

/// Read what is queued on `fd` without blocking (one `recv(MSG_DONTWAIT)`).
pub fn recv_now(fd: RawFd, buf: &mut [u8]) -> io::Result<Got> {
    loop {
        // SAFETY: `buf` is valid for `buf.len()` bytes of writes; `fd` is an open socket owned
        // by the caller's connection for the duration of the call.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n > 0 {
            return Ok(Got::Bytes(n as usize));
        }
        if n == 0 {
            return Ok(if buf.is_empty() { Got::Empty } else { Got::Eof });
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(Got::Empty),
            _ => return Err(e),
        }
    }
}

/// Size of a shard's scratch buffer for merged reads: one read takes up to this much (a
/// publisher with more queued is read again at once).
pub const SCRATCH_LEN: usize = 64 * 1024;

/// What a read into the scratch buffer got.
#[derive(Debug, PartialEq, Eq)]
pub enum Scratch<R> {
    /// This many bytes, and what the caller's `take` made of them.
    Took(usize, R),
    /// The peer closed its side.
    Eof,
    /// Nothing queued.
    Empty,
}

thread_local! {
    /// One per shard thread: merged reads hand the bytes on before the next read, so
    /// publishers need no 16-64 KiB read buffer each (measured: 200 publishers, RSS per
    /// publisher without GOP cache 128 KiB with a 64 KiB buffer each, 89 KiB with 16 KiB).
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH_LEN]);
}

/// Read what is queued on `fd` into this thread's scratch buffer and hand it to `take`, which
/// must not keep it (it is the next connection's buffer after this returns).
pub fn recv_scratch<R>(fd: RawFd, take: impl FnOnce(&[u8]) -> R) -> io::Result<Scratch<R>> {
    SCRATCH.with(|cell| {
        let mut buf = cell.borrow_mut();
        Ok(match recv_now(fd, &mut buf)? {
            Got::Bytes(n) => Scratch::Took(n, take(&buf[..n])),
            Got::Eof => Scratch::Eof,
            Got::Empty => Scratch::Empty,
        })
    })
}

/// The process-wide origin of the read ticks (so every shard's grid is the same).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The next read tick strictly after `now` on a grid of `period` counted from `origin`.
pub fn next_tick(origin: Instant, now: Instant, period: Duration) -> Instant {
    if period.is_zero() || now < origin {
        return now.max(origin);
    }
    let p = period.as_nanos();
    let since = now.duration_since(origin).as_nanos();
    let ticks = since / p + 1;
    // A u64 of nanoseconds lasts 584 years; saturate rather than wrap past that.
    origin + Duration::from_nanos(u64::try_from(ticks * p).unwrap_or(u64::MAX))
}

/// What the shard's read tick runs itself instead of waking a task (a parked publisher).
pub trait TickFeed {
    /// Called on the tick it waited for. `Some(period)`: run again on the next tick of
    /// `period`; `None`: done (it woke its task, or its task is gone).
    fn on_tick(&self) -> Option<Duration>;
}

thread_local! {
    /// This shard's pending read ticks: the feeds waiting for each, run together by one
    /// timer. Why not a timer per publisher: 1000 publishers at 100 ms spent 6.3% of the
    /// shard's CPU registering, firing and removing 10,000 runtime timers a second (perf).
    static TICKS: RefCell<BTreeMap<Instant, Vec<Rc<dyn TickFeed>>>> = const { RefCell::new(BTreeMap::new()) };
}

/// Run `feed` on the shard's next read tick of `period` (and on later ones while it asks).
pub fn feed_on_tick(feed: Rc<dyn TickFeed>, period: Duration) {
    add_to_tick(next_feed_tick(Instant::now(), period), feed);
}

/// A feed's next tick: never `now` itself (a zero period would run it in a loop).
fn next_feed_tick(now: Instant, period: Duration) -> Instant {
    next_tick(epoch(), now, period.max(MIN_FEED_PERIOD))
}

/// The shortest period a feed is run at.
const MIN_FEED_PERIOD: Duration = Duration::from_millis(1);

/// Put `feed` on the board for `due`, starting the tick's timer if it is the first.
fn add_to_tick(due: Instant, feed: Rc<dyn TickFeed>) {
    let first = TICKS.with(|t| {
        let mut ticks = t.borrow_mut();
        let feeds = ticks.entry(due).or_default();
        feeds.push(feed);
        feeds.len() == 1
    });
    if first {
        // Not while the board is borrowed: the runtime may start the new task at once.
        glommio::spawn_local(fire_tick(due)).detach();
    }
}

/// The one timer of a tick: runs every feed waiting for it and puts those that ask for it on
/// their next tick.
async fn fire_tick(due: Instant) {
    glommio::timer::sleep(due.saturating_duration_since(Instant::now())).await;
    let feeds = TICKS
        .with(|t| t.borrow_mut().remove(&due))
        .unwrap_or_default();
    let again: Vec<_> = feeds
        .into_iter()
        .filter_map(|f| f.on_tick().map(|period| (period, f)))
        .collect();
    let now = Instant::now();
    for (period, f) in again {
        add_to_tick(next_feed_tick(now, period), f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_fall_on_a_common_grid() {
        let o = Instant::now();
        let p = Duration::from_millis(100);
        // Connections reading at different moments wake at the same instant.
        for at in [0, 1, 37, 99] {
            assert_eq!(
                next_tick(o, o + Duration::from_millis(at), p),
                o + Duration::from_millis(100),
                "{at}"
            );
        }
        // Exactly on a tick: the next one, never now (a read always waits).
        assert_eq!(next_tick(o, o + p, p), o + p * 2);
        assert_eq!(next_tick(o, o + Duration::from_millis(250), p), o + p * 3);
    }

    #[test]
    fn degenerate_periods_and_times() {
        let o = Instant::now();
        assert_eq!(
            next_tick(o, o + Duration::from_millis(5), Duration::ZERO),
            o + Duration::from_millis(5)
        );
        // Before the origin (cannot happen with a lazily set epoch, but must not panic).
        let earlier = o.checked_sub(Duration::from_millis(5)).unwrap_or(o);
        assert_eq!(next_tick(o, earlier, Duration::from_millis(10)), o);
    }

    /// A feed that asks for `left` more runs, every `period`, noting when it ran.
    struct Counting {
        period: Duration,
        left: std::cell::Cell<u32>,
        at: RefCell<Vec<Instant>>,
    }

    impl Counting {
        fn new(runs: u32, period: Duration) -> Rc<Counting> {
            Rc::new(Counting {
                period,
                left: std::cell::Cell::new(runs),
                at: RefCell::default(),
            })
        }

        fn runs(&self) -> usize {
            self.at.borrow().len()
        }
    }

    impl TickFeed for Counting {
        fn on_tick(&self) -> Option<Duration> {
            self.at.borrow_mut().push(Instant::now());
            let left = self.left.get() - 1;
            self.left.set(left);
            (left > 0).then_some(self.period)
        }
    }

    /// Run the executor until `done` or 5 s (then fail).
    async fn until(done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(Instant::now() < deadline, "timed out");
            glommio::timer::sleep(Duration::from_millis(2)).await;
        }
    }

    fn board() -> (usize, usize) {
        TICKS.with(|t| {
            let t = t.borrow();
            (t.len(), t.values().map(Vec::len).sum::<usize>())
        })
    }

    #[test]
    fn feeds_waiting_for_one_tick_share_its_timer_and_all_run() {
        glommio::LocalExecutor::default().run(async {
            let period = Duration::from_millis(20);
            let feeds: Vec<_> = (0..50).map(|_| Counting::new(1, period)).collect();
            for f in &feeds {
                feed_on_tick(f.clone(), period);
            }
            // One or two ticks (the grid may turn while they register), holding all 50.
            let (ticks, waiting) = board();
            assert!((1..=2).contains(&ticks), "{ticks} ticks");
            assert_eq!(waiting, 50);
            until(|| feeds.iter().all(|f| f.runs() == 1)).await;
            assert_eq!(board(), (0, 0));
        });
    }

    #[test]
    fn feeds_run_on_their_ticks_until_they_are_done() {
        glommio::LocalExecutor::default().run(async {
            let period = Duration::from_millis(10);
            let feeds: Vec<_> = (0..20).map(|i| Counting::new(i % 4 + 1, period)).collect();
            for f in &feeds {
                feed_on_tick(f.clone(), period);
            }
            until(|| feeds.iter().all(|f| f.left.get() == 0)).await;
            for (i, f) in feeds.iter().enumerate() {
                assert_eq!(f.runs(), i % 4 + 1, "feed {i}");
                let at = f.at.borrow();
                for w in at.windows(2) {
                    assert!(w[1] > w[0], "feed {i} ran twice on one tick");
                }
            }
            assert_eq!(board(), (0, 0), "nothing left on the board");
        });
    }

    #[test]
    fn a_zero_period_still_waits_for_a_tick() {
        // A feed asking for a zero period (merged reads switched off mid-run) is run on a 1 ms
        // grid, never in a loop inside its own tick.
        glommio::LocalExecutor::default().run(async {
            let f = Counting::new(200, Duration::ZERO);
            feed_on_tick(f.clone(), Duration::ZERO);
            until(|| f.left.get() == 0).await;
            let at = f.at.borrow();
            let spread = at[at.len() - 1].duration_since(at[0]);
            assert!(spread >= Duration::from_millis(150), "{spread:?}");
            assert_eq!(board(), (0, 0));
        });
    }

    #[test]
    fn recv_now_reads_queued_bytes_then_reports_empty_and_eof() {
        use std::io::Write;
        use std::os::unix::io::AsRawFd;
        use std::os::unix::net::UnixStream;
        let (mut a, b) = UnixStream::pair().unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(recv_now(b.as_raw_fd(), &mut buf).unwrap(), Got::Empty);
        a.write_all(b"hello").unwrap();
        assert_eq!(recv_now(b.as_raw_fd(), &mut buf).unwrap(), Got::Bytes(5));
        assert_eq!(&buf[..5], b"hello");
        drop(a);
        assert_eq!(recv_now(b.as_raw_fd(), &mut buf).unwrap(), Got::Eof);
    }

    #[test]
    fn recv_scratch_hands_the_bytes_to_the_taker() {
        use std::io::Write;
        use std::os::unix::io::AsRawFd;
        use std::os::unix::net::UnixStream;
        let (mut a, b) = UnixStream::pair().unwrap();
        let fd = b.as_raw_fd();
        assert_eq!(recv_scratch(fd, |x| x.len()).unwrap(), Scratch::Empty);
        a.write_all(b"abc").unwrap();
        assert_eq!(
            recv_scratch(fd, |x| x.to_vec()).unwrap(),
            Scratch::Took(3, b"abc".to_vec())
        );
        drop(a);
        assert_eq!(recv_scratch(fd, |x| x.len()).unwrap(), Scratch::Eof);
    }
}
