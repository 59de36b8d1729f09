//! Merged writes for a whole shard (SRS's `mw_latency`): a stream's batch is written to all its
//! players, each with one non-blocking vectored `sendmsg` (or a splice), when the batch is due
//! (see [`FlushSchedule`]). There is no timer or task wake-up per player, and a stream's players
//! are woken in one burst. A socket that cannot take everything hands the rest to its
//! connection's writer task, which waits for room.

use super::schedule::FlushSchedule;
use crate::server::key::StreamKey;
use crate::server::notify::LocalNotify;
use bytes::Bytes;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// A connection with media of its own queued (a player catching up, a private encoding): the
/// flusher writes it in its pass over connections.
pub trait Pass {
    /// Write what is queued without blocking; `batch` is scratch space.
    fn pass(&self, batch: &mut Vec<Bytes>);
}

/// The shard's flusher: its schedule, the connections listed for the next pass, and the task
/// that writes them.
pub struct Flusher {
    schedule: RefCell<FlushSchedule>,
    dirty: RefCell<Vec<Rc<dyn Pass>>>,
    /// Something was listed while nothing was: the task picks a new wake-up time.
    wake: LocalNotify,
}

impl Flusher {
    /// A flusher with a merged-write window of `window`.
    pub fn new(window: Duration) -> Rc<Flusher> {
        Rc::new(Flusher {
            schedule: RefCell::new(FlushSchedule::new(window)),
            dirty: RefCell::new(Vec::new()),
            wake: LocalNotify::default(),
        })
    }

    /// A stream's batch got its first message: written so that it is out one window from now.
    pub fn stream_batch_started(&self, key: StreamKey) {
        if self
            .schedule
            .borrow_mut()
            .stream_started(key, Instant::now())
        {
            self.wake.notify();
        }
    }

    /// List a connection for the next pass (the caller lists each connection once per pass).
    pub fn list_conn(&self, conn: Rc<dyn Pass>) {
        self.dirty.borrow_mut().push(conn);
        if self.schedule.borrow_mut().conn_listed(Instant::now()) {
            self.wake.notify();
        }
    }

    /// Runs for the life of the shard; `write_streams` writes the shared batches of the
    /// streams given (players that cannot take them queue them, for the pass over connections
    /// that follows at once).
    pub async fn run(self: Rc<Self>, mut write_streams: impl FnMut(&[StreamKey])) {
        let mut list: Vec<Rc<dyn Pass>> = Vec::new();
        let mut batch: Vec<Bytes> = Vec::new();
        let mut keys: Vec<StreamKey> = Vec::new();
        loop {
            let next = self.schedule.borrow().next_due();
            match next {
                None => self.wake.wait().await,
                Some(t) => {
                    let now = Instant::now();
                    if t > now {
                        futures_lite::future::or(glommio::timer::sleep(t - now), self.wake.wait())
                            .await;
                    }
                }
            }
            let now = Instant::now();
            let conns_due = self.schedule.borrow_mut().take_due(now, &mut keys);
            let wrote_streams = !keys.is_empty();
            if wrote_streams {
                write_streams(&keys);
                keys.clear();
            }
            if conns_due {
                std::mem::swap(&mut *self.dirty.borrow_mut(), &mut list);
                for w in list.drain(..) {
                    w.pass(&mut batch);
                }
            }
            if wrote_streams {
                self.schedule.borrow_mut().pass_took(now.elapsed());
            }
        }
    }
}
