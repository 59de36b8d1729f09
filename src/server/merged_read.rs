//! Merged reads for publishers (`rtmp.mr_latency_ms`, SRS's `mr`): a publisher's socket is read
//! on a shard-wide tick, all publishers of the shard in the same wake-up, with a plain
//! non-blocking `recv` that takes everything queued.
//!
//! Why not a sleep per connection and the runtime's read: measured with 200 publishers of
//! 0.5 Mbit/s on one shard (`strace -c`, 10 s), per-connection 350 ms sleeps still cost 7,600
//! `io_uring_enter` a second for 570 reads: the timers fire at 570 different instants, and each
//! runtime read leaves a readiness poll armed that completes (and wakes the sleeping shard) on
//! the next message, so the shard woke about once per message anyway. Reading on a common tick
//! without arming a poll turns that into one wake-up per tick for the whole shard.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::os::unix::io::RawFd;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};
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

thread_local! {
    /// This shard's pending read ticks: the tasks waiting for each, woken together by one
    /// timer. Why not a timer per publisher: 1000 publishers at 100 ms spent 6.3% of the
    /// shard's CPU registering, firing and removing 10,000 runtime timers a second (perf).
    static TICKS: RefCell<BTreeMap<Instant, Vec<Waker>>> = const { RefCell::new(BTreeMap::new()) };
}

/// Sleep until the shard's next read tick of `period`: every task waiting for the same tick
/// is woken by one timer.
pub async fn sleep_to_tick(period: Duration) {
    let due = next_tick(epoch(), Instant::now(), period);
    TickWait {
        due,
        registered: false,
    }
    .await
}

/// Waits for `due` on the shard's tick board.
struct TickWait {
    due: Instant,
    registered: bool,
}

impl Future for TickWait {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let due = self.due;
        if self.registered {
            // The tick's timer takes its entry out when it fires.
            let pending = TICKS.with(|t| t.borrow().contains_key(&due));
            return if pending {
                Poll::Pending
            } else {
                Poll::Ready(())
            };
        }
        if due <= Instant::now() {
            return Poll::Ready(());
        }
        let first = TICKS.with(|t| {
            let mut ticks = t.borrow_mut();
            let waiters = ticks.entry(due).or_default();
            waiters.push(cx.waker().clone());
            waiters.len() == 1
        });
        self.registered = true;
        if first {
            // Not while the board is borrowed: the runtime may start the new task at once.
            glommio::spawn_local(fire_tick(due)).detach();
        }
        Poll::Pending
    }
}

/// The one timer of a tick: wakes every task waiting for it.
async fn fire_tick(due: Instant) {
    glommio::timer::sleep(due.saturating_duration_since(Instant::now())).await;
    let waiters = TICKS
        .with(|t| t.borrow_mut().remove(&due))
        .unwrap_or_default();
    for w in waiters {
        w.wake();
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

    #[test]
    fn tasks_waiting_for_one_tick_share_its_timer_and_all_wake() {
        glommio::LocalExecutor::default().run(async {
            let period = Duration::from_millis(20);
            let woke = std::rc::Rc::new(std::cell::Cell::new(0));
            let mut tasks = Vec::new();
            for _ in 0..50 {
                let woke = woke.clone();
                tasks.push(glommio::spawn_local(async move {
                    sleep_to_tick(period).await;
                    woke.set(woke.get() + 1);
                }));
            }
            // Let every task register, then look at the board: one or two ticks (the grid may
            // turn while they start), each with one timer, holding all 50.
            let board = || {
                TICKS.with(|t| {
                    let t = t.borrow();
                    (t.len(), t.values().map(Vec::len).sum::<usize>())
                })
            };
            for _ in 0..1000 {
                if board().1 == 50 {
                    break;
                }
                futures_lite::future::yield_now().await;
            }
            let (ticks, waiting) = board();
            assert!((1..=2).contains(&ticks), "{ticks} ticks");
            assert_eq!(waiting, 50);
            for t in tasks {
                t.await;
            }
            assert_eq!(woke.get(), 50);
            assert_eq!(board(), (0, 0));
        });
    }

    #[test]
    fn a_tick_due_at_once_is_fired_by_its_timer_task_without_a_borrow_clash() {
        // The runtime runs a spawned task right away; with a tick due within microseconds its
        // timer fires inside the registering poll (this panicked with "already borrowed").
        glommio::LocalExecutor::default().run(async {
            for _ in 0..2000 {
                sleep_to_tick(Duration::from_micros(3)).await;
            }
            assert!(TICKS.with(|t| t.borrow().is_empty()));
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
