//! A merged-read publisher between reads (`rtmp.mr_latency_ms`): its session waits on the
//! shard's read tick, which reads the socket into the scratch buffer, feeds the session and
//! hands its media to the stream itself. The connection's task sleeps until something other
//! than media needs it: a command, an error, end of stream, a quiet socket, shutdown.
//!
//! Why not wake each publisher's task on the tick: with 200 publishers at the defaults (one
//! shard, `perf`) waking, polling and re-registering every task each tick was ~8% of the
//! shard's CPU. Fed here, alternated 20 s runs: 0.0250-0.0265 of a core against 0.0265-0.0280.

use super::conn::InCounter;
use super::key::StreamKey;
use super::merged_read::{self, Scratch, TickFeed};
use super::shard::Shard;
use super::writer::ConnWriter;
use crate::rtmp::session::{ServerSession, SessionError, SessionEvent};
use smallvec::SmallVec;
use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::os::unix::io::RawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// A connection's publishes (one, nearly always: kept inline, no allocation to visit per read).
pub type Routes = SmallVec<[Route; 1]>;

/// Where a parked publisher's media goes: its publishes by message stream id.
#[derive(Clone)]
pub struct Route {
    /// The RTMP message stream the publish runs on.
    pub stream_id: u32,
    /// The stream it feeds.
    pub key: StreamKey,
    /// Its publish (a stale one is ignored by the stream).
    pub publish_id: u64,
}

/// Full scratch reads one publisher gets per tick: 4 MiB, 220 Mbit/s at 150 ms ticks.
const MAX_FULL_READS: usize = 64;

/// Why the connection's task was woken.
#[derive(Debug)]
pub enum Woken {
    /// The session has something for the task (an event other than media, a decided request
    /// to resume), or feeding it ended with this error after the events queued before it; or
    /// the task must look at the shard (shutdown, merged reads switched off).
    Fed(Result<(), SessionError>),
    /// Nothing was queued on the tick: wait for the socket the ordinary way.
    Quiet,
    /// The peer closed its side (or a failed write shut the socket down).
    Eof,
    /// The read failed.
    Failed(io::Error),
}

/// What one parked publisher holds while its task sleeps.
pub struct Parked {
    fd: RawFd,
    shard: Rc<Shard>,
    writer: Rc<ConnWriter>,
    counter: InCounter,
    routes: Routes,
    state: RefCell<State>,
}

struct State {
    /// The connection's session, handed back on wake-up.
    session: Option<ServerSession>,
    /// Bytes read while parked.
    bytes_in: u64,
    woken: Option<Woken>,
    waker: Option<Waker>,
    /// The task stopped waiting (dropped): the socket may be closed and its number reused, so
    /// it must not be read again.
    gone: bool,
}

impl Parked {
    /// Park `session` of the publisher on `fd` until the read tick has something for its task.
    pub fn new(
        fd: RawFd,
        shard: Rc<Shard>,
        writer: Rc<ConnWriter>,
        counter: InCounter,
        routes: Routes,
        session: ServerSession,
    ) -> Rc<Parked> {
        Rc::new(Parked {
            fd,
            shard,
            writer,
            counter,
            routes,
            state: RefCell::new(State {
                session: Some(session),
                bytes_in: 0,
                woken: None,
                waker: None,
                gone: false,
            }),
        })
    }

    /// Run on the shard's read ticks of `period` until the task is woken; resolves to why,
    /// with the session and the bytes read meanwhile.
    pub async fn wait(self: Rc<Self>, period: Duration) -> (Woken, ServerSession, u64) {
        merged_read::feed_on_tick(self.clone(), period);
        let woken = WaitWoken { parked: &self }.await;
        let mut st = self.state.borrow_mut();
        let session = st
            .session
            .take()
            .expect("a parked session is handed back once");
        (woken, session, st.bytes_in)
    }

    /// One tick: read what is queued and feed it; `Some(woken)` ends the parking.
    fn tick(&self, st: &mut State) -> Option<Woken> {
        // (A failed write shuts the socket down: the read below sees it.)
        if self.shard.is_stopping() {
            return Some(Woken::Fed(Ok(())));
        }
        let Some(session) = st.session.as_mut() else {
            return Some(Woken::Fed(Ok(())));
        };
        for _ in 0..MAX_FULL_READS {
            let got = merged_read::recv_scratch(self.fd, |b| {
                self.counter.add(b.len() as u64);
                session.handle_input(b)
            });
            let (n, result) = match got {
                Ok(Scratch::Took(n, result)) => (n, result),
                Ok(Scratch::Empty) => return Some(Woken::Quiet),
                Ok(Scratch::Eof) => return Some(Woken::Eof),
                Err(e) => return Some(Woken::Failed(e)),
            };
            st.bytes_in += n as u64;
            self.flush(session);
            // Media, one run of a publish's messages at a time: one stream lookup per run.
            while let Some(&SessionEvent::Media { stream_id, .. }) = session.peek_event() {
                let run = std::iter::from_fn(|| match session.peek_event() {
                    Some(SessionEvent::Media { stream_id: s, .. }) if *s == stream_id => {
                        match session.poll_event() {
                            Some(SessionEvent::Media {
                                frame, metadata, ..
                            }) => Some((frame, metadata)),
                            _ => None,
                        }
                    }
                    _ => None,
                });
                match self.routes.iter().find(|r| r.stream_id == stream_id) {
                    Some(r) => self.shard.publish_frames(&r.key, r.publish_id, run),
                    // Not (or no longer) publishing there: dropped, as the task would.
                    None => run.for_each(drop),
                }
            }
            if result.is_err() || session.peek_event().is_some() || session.resumable() {
                return Some(Woken::Fed(result));
            }
            // A full read: more is queued, read on at once.
            if n < merged_read::SCRATCH_LEN {
                return None;
            }
        }
        // The rest waits for the next tick (the publishers after this one must get theirs).
        None
    }

    fn flush(&self, session: &mut ServerSession) {
        while let Some(b) = session.poll_transmit() {
            self.writer.send_control(b);
        }
    }
}

impl TickFeed for Parked {
    fn on_tick(&self) -> Option<Duration> {
        let mut st = self.state.borrow_mut();
        if st.gone || st.woken.is_some() {
            return None;
        }
        let period = self.shard.merged_read_period();
        let woken = match self.tick(&mut st) {
            // Merged reads switched off or retimed by a reload: the task parks anew.
            None if period.is_zero() => Woken::Fed(Ok(())),
            None => return Some(period),
            Some(w) => w,
        };
        st.woken = Some(woken);
        if let Some(w) = st.waker.take() {
            w.wake();
        }
        None
    }
}

/// The task's side of the parking: ready once the tick woke it.
struct WaitWoken<'a> {
    parked: &'a Parked,
}

impl Future for WaitWoken<'_> {
    type Output = Woken;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Woken> {
        let mut st = self.parked.state.borrow_mut();
        match st.woken.take() {
            Some(w) => Poll::Ready(w),
            None => {
                st.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for WaitWoken<'_> {
    fn drop(&mut self) {
        // Ready or not, the tick has nothing more to do for this parking.
        self.parked.state.borrow_mut().gone = true;
    }
}
