//! The sending half of a connection: a bounded queue that anyone on the shard may push to (the
//! reader task's replies, the streams it plays, the flusher), written by the connection's writer
//! task or straight to the socket by a merged write.

use super::flusher::{Flusher, Pass};
use super::sys::{send_nonblocking, Cursor, Progress};
use crate::media::Frame;
use crate::server::counters::IoTotals;
use crate::server::notify::LocalNotify;
use crate::server::player_queue::PlayerQueue;
use crate::server::splice::{Sent, SpliceFanout};
use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::os::unix::io::RawFd;
use std::rc::Rc;
use std::time::Duration;

/// Shared by a connection's reader task, the streams it plays, the shard's flusher and its
/// writer task.
pub struct ConnWriter {
    pub(super) queue: RefCell<PlayerQueue>,
    /// Wakes the writer task (control bytes, a handed-off remainder, close).
    pub(super) notify: LocalNotify,
    pub(super) closing: Cell<bool>,
    bytes_out: Cell<u64>,
    writes: Cell<u64>,
    pub(super) failed: Cell<bool>,
    pub(super) shutdown_after: Cell<bool>,
    /// Why writing failed, for the close line.
    error: RefCell<Option<String>>,
    /// While held, nothing is written (media waits, bounded by the queue's own policy).
    pub(super) held: Cell<bool>,
    /// A peer that takes no bytes for this long is disconnected.
    pub(super) stall_timeout: Duration,
    /// The socket, while the writer task owns it (-1 before and after).
    pub(super) fd: Cell<RawFd>,
    /// The writer task has (or is about to take) bytes to write: the flusher leaves this
    /// connection alone so nothing is written out of order.
    pub(super) busy: Cell<bool>,
    /// What a non-blocking flush could not write, for the writer task to finish first.
    pub(super) pending: RefCell<Vec<Bytes>>,
    /// The shard's flusher when writes are merged; `None` writes as soon as the shard is idle.
    flusher: Option<Rc<Flusher>>,
    /// Listed with the flusher for its next pass.
    dirty: Cell<bool>,
    /// The shard's client totals (none for forward peers).
    totals: Option<Rc<IoTotals>>,
}

impl ConnWriter {
    /// A writer whose media queue holds at most `max_queue_ms` of media.
    pub fn new(
        max_queue_ms: u32,
        stall_timeout: Duration,
        flusher: Option<Rc<Flusher>>,
        totals: Option<Rc<IoTotals>>,
    ) -> Rc<ConnWriter> {
        Rc::new(ConnWriter {
            queue: RefCell::new(PlayerQueue::new(max_queue_ms)),
            notify: LocalNotify::default(),
            closing: Cell::new(false),
            bytes_out: Cell::new(0),
            writes: Cell::new(0),
            failed: Cell::new(false),
            shutdown_after: Cell::new(false),
            error: RefCell::new(None),
            held: Cell::new(false),
            stall_timeout,
            fd: Cell::new(-1),
            busy: Cell::new(false),
            pending: RefCell::new(Vec::new()),
            flusher,
            dirty: Cell::new(false),
            totals,
        })
    }

    /// Protocol replies (handshake, connect, play start): written at once, not a window later.
    pub fn send_control(&self, bytes: Bytes) {
        if self.failed.get() {
            return;
        }
        self.queue.borrow_mut().push_control(bytes);
        self.notify.notify();
    }

    /// Queue media under the drop-to-keyframe policy; written at the next merged write.
    pub fn send_media(self: &Rc<Self>, frame: &Frame, wire: Bytes, has_video: bool) {
        if self.failed.get() {
            return;
        }
        let accepted = {
            let mut q = self.queue.borrow_mut();
            let before = q.dropped_frames;
            let accepted = q.push_media(frame, wire, has_video);
            if let Some(t) = self.totals.as_ref().filter(|_| q.dropped_frames != before) {
                IoTotals::add(&t.dropped_frames, q.dropped_frames - before);
            }
            accepted
        };
        if !accepted {
            return;
        }
        match &self.flusher {
            Some(f) if !self.dirty.replace(true) => f.list_conn(self.clone()),
            Some(_) => {}
            None => self.notify.notify(),
        }
    }

    /// Can the shard write shared media straight to this socket? Only when nothing of the
    /// connection's own is queued or in flight (order) and it is not skipping to a keyframe.
    pub fn can_write_shared(&self) -> bool {
        self.fd.get() >= 0
            && !self.busy.get()
            && !self.held.get()
            && !self.failed.get()
            && !self.closing.get()
            && self.queue.borrow().is_caught_up()
    }

    /// One non-blocking vectored write of shared bytes. `Some(cursor)` when the socket filled
    /// up: the caller hands the rest over with `hand_off`.
    pub fn write_shared(&self, iovs: &[libc::iovec]) -> Option<Cursor> {
        let (written, result) = send_nonblocking(self.fd.get(), iovs, Cursor::default());
        self.count_write(written);
        match result {
            Ok(Progress::All) => None,
            Ok(Progress::Full(at)) => Some(at),
            Err(e) => {
                self.fail(e.to_string());
                None
            }
        }
    }

    /// Writing failed: remember why (for the close line) and wake the writer task to end.
    pub(super) fn fail(&self, why: String) {
        *self.error.borrow_mut() = Some(why);
        self.failed.set(true);
        self.notify.notify();
    }

    /// One write of `n` bytes, in this connection's and the shard's figures.
    pub(super) fn count_write(&self, n: usize) {
        self.bytes_out.set(self.bytes_out.get() + n as u64);
        self.writes.set(self.writes.get() + 1);
        if let Some(t) = &self.totals {
            IoTotals::add(&t.bytes_out, n as u64);
        }
    }

    /// The loaded batch of `fan` (whose buffers `iovs` describes) spliced to this socket.
    /// `Some(cursor)` when the socket filled up, as for `write_shared`.
    pub fn write_spliced(&self, fan: &SpliceFanout, iovs: &[libc::iovec]) -> Option<Cursor> {
        if let Some(t) = &self.totals {
            IoTotals::add(&t.spliced_writes, 1);
        }
        match fan.send_to(self.fd.get()) {
            Ok(Sent::All) => {
                self.count_write(fan.loaded());
                None
            }
            Ok(Sent::Part(n)) => {
                self.count_write(n);
                let mut at = Cursor::default();
                at.advance(iovs, n);
                Some(at)
            }
            Err(e) => {
                self.fail(e.to_string());
                None
            }
        }
    }

    /// What a shared write could not send: the writer task sends it first, waiting for room.
    pub fn hand_off(&self, rest: Vec<Bytes>) {
        self.pending.borrow_mut().extend(rest);
        self.busy.set(true);
        self.notify.notify();
    }

    /// Stop writing until `release` (to decide on a response head after media shows up).
    pub fn hold(&self) {
        self.held.set(true);
    }

    /// Write `head` before everything queued, and start writing.
    pub fn release_with(&self, head: Bytes) {
        self.queue.borrow_mut().push_front_control(head);
        self.held.set(false);
        self.notify.notify();
    }

    /// Bytes waiting in the queue.
    pub fn queued_bytes(&self) -> usize {
        self.queue.borrow().queued_bytes()
    }

    /// Send `last`, flush, then shut the socket down (the peer sees the end of the response).
    pub fn finish(&self, last: Bytes) {
        self.send_control(last);
        self.shutdown_after.set(true);
        self.close();
    }

    /// Ask the writer task to flush what is queued and stop.
    pub fn close(&self) {
        self.closing.set(true);
        self.notify.notify();
    }

    /// Bytes written so far.
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out.get()
    }

    /// Write calls so far.
    pub fn writes(&self) -> u64 {
        self.writes.get()
    }

    /// Frames the queue dropped (slow peer).
    pub fn dropped_frames(&self) -> u64 {
        self.queue.borrow().dropped_frames
    }

    /// Writing failed; the connection is ending.
    pub fn failed(&self) -> bool {
        self.failed.get()
    }

    /// The write error that ended this connection, if one did.
    pub fn error(&self) -> Option<String> {
        self.error.borrow().clone()
    }
}

impl Pass for ConnWriter {
    /// The flusher's pass: one non-blocking vectored write of everything queued.
    fn pass(&self, batch: &mut Vec<Bytes>) {
        self.dirty.set(false);
        let fd = self.fd.get();
        if fd < 0 || self.busy.get() || self.held.get() || self.failed.get() || self.closing.get() {
            return; // the writer task takes the queue when it is done (or it is gone)
        }
        self.queue.borrow_mut().take_all(batch);
        if batch.is_empty() {
            return;
        }
        let (written, result) = send_nonblocking(fd, &batch[..], Cursor::default());
        self.count_write(written);
        match result {
            Ok(Progress::All) => {}
            Ok(Progress::Full(at)) => {
                let mut pending = self.pending.borrow_mut();
                pending.push(batch[at.idx].slice(at.off..));
                pending.extend(batch.drain(..).skip(at.idx + 1));
                self.busy.set(true);
                self.notify.notify();
            }
            Err(e) => self.fail(e.to_string()),
        }
        batch.clear();
    }
}
