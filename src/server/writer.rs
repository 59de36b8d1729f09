//! The sending half of a connection: a bounded queue that anyone on the shard may push to, and a
//! task that writes everything due in one vectored `sendmsg` per batch (per merged-write window),
//! not one syscall or one wake-up per message.

use super::key::StreamKey;
use super::player_queue::PlayerQueue;
use super::splice::{self, Sent, SpliceFanout};
use super::stats::IoTotals;
use crate::media::Frame;
use bytes::Bytes;
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::os::unix::io::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// A single-threaded "something changed" flag with one waiting task.
#[derive(Default)]
pub struct LocalNotify {
    set: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl LocalNotify {
    pub fn notify(&self) {
        self.set.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Resolves once `notify` has been called since the last wait.
    pub fn wait(&self) -> NotifyWait<'_> {
        NotifyWait(self)
    }
}

pub struct NotifyWait<'a>(&'a LocalNotify);

impl Future for NotifyWait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.set.replace(false) {
            Poll::Ready(())
        } else {
            *self.0.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

/// Merged writes for a whole shard (SRS's `mw_latency`): a stream's batch is written to all its
/// players, each with one non-blocking vectored `sendmsg` (or a splice), when the batch's first
/// message has waited one `window`. No message waits longer than the window, and each write
/// carries as much as the window allows: with a fixed cadence instead, a tick that falls just
/// after a write finds one small message, and the writes per second go up by about a fifth.
/// There is no timer or task wake-up per player, and a stream's players are woken in one
/// burst. A socket that cannot take everything hands the rest to its connection's writer task,
/// which waits for room.
pub struct Flusher {
    window: Duration,
    /// Connections with media of their own queued (players catching up, private encodings).
    dirty: RefCell<Vec<Rc<ConnWriter>>>,
    /// When the first of `dirty` must be written.
    dirty_due: Cell<Option<Instant>>,
    /// Streams with a batch of shared media waiting, in the order the batches started (and
    /// so by when they are due).
    due_streams: RefCell<VecDeque<(Instant, StreamKey)>>,
    /// Something was listed while nothing was: the flusher picks a new wake-up time.
    wake: LocalNotify,
    /// How long a pass over the players takes (smoothed): batches are due that much before
    /// the window ends, so the last player of a pass still has its media within the window.
    pass_time: Cell<Duration>,
}

impl Flusher {
    pub fn new(window: Duration) -> Rc<Flusher> {
        Rc::new(Flusher {
            window,
            dirty: RefCell::new(Vec::new()),
            dirty_due: Cell::new(None),
            due_streams: RefCell::new(VecDeque::new()),
            wake: LocalNotify::default(),
            pass_time: Cell::new(Duration::ZERO),
        })
    }

    /// A stream's batch got its first message: written so that it is out one window from now.
    pub fn stream_batch_started(&self, key: StreamKey) {
        let lead = self.pass_time.get().min(self.window / 2);
        let mut q = self.due_streams.borrow_mut();
        q.push_back((Instant::now() + self.window - lead, key));
        if q.len() == 1 {
            self.wake.notify();
        }
    }

    fn list_conn(&self, w: Rc<ConnWriter>) {
        self.dirty.borrow_mut().push(w);
        if self.dirty_due.get().is_none() {
            self.dirty_due.set(Some(Instant::now() + self.window));
            self.wake.notify();
        }
    }

    /// Runs for the life of the shard; `write_streams` writes the shared batches of the
    /// streams given (players that cannot take them queue them, for the pass over connections
    /// that follows at once).
    pub async fn run(self: Rc<Self>, mut write_streams: impl FnMut(&[StreamKey])) {
        let mut list: Vec<Rc<ConnWriter>> = Vec::new();
        let mut batch: Vec<Bytes> = Vec::new();
        let mut keys: Vec<StreamKey> = Vec::new();
        loop {
            let first_stream = self.due_streams.borrow().front().map(|(t, _)| *t);
            let next = match (first_stream, self.dirty_due.get()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
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
            {
                let mut q = self.due_streams.borrow_mut();
                while q.front().is_some_and(|(t, _)| *t <= now) {
                    keys.extend(q.pop_front().map(|(_, k)| k));
                }
            }
            let wrote_streams = !keys.is_empty();
            if wrote_streams {
                write_streams(&keys);
                keys.clear();
            }
            if wrote_streams || self.dirty_due.get().is_some_and(|t| t <= now) {
                self.dirty_due.set(None);
                std::mem::swap(&mut *self.dirty.borrow_mut(), &mut list);
                for w in list.drain(..) {
                    w.dirty.set(false);
                    w.flush_now(&mut batch);
                }
            }
            if wrote_streams {
                let took = now.elapsed();
                self.pass_time.set((self.pass_time.get() * 3 + took) / 4);
            }
        }
    }
}

/// Shared by a connection's reader task, the streams it plays, the shard's flusher and its
/// writer task.
pub struct ConnWriter {
    queue: RefCell<PlayerQueue>,
    /// Wakes the writer task (control bytes, a handed-off remainder, close).
    notify: LocalNotify,
    closing: Cell<bool>,
    bytes_out: Cell<u64>,
    writes: Cell<u64>,
    failed: Cell<bool>,
    shutdown_after: Cell<bool>,
    /// Why writing failed, for the close line.
    error: RefCell<Option<String>>,
    /// While held, nothing is written (media waits, bounded by the queue's own policy).
    held: Cell<bool>,
    /// A peer that takes no bytes for this long is disconnected.
    stall_timeout: Duration,
    /// The socket, while the writer task owns it (-1 before and after).
    fd: Cell<RawFd>,
    /// The writer task has (or is about to take) bytes to write: the flusher leaves this
    /// connection alone so nothing is written out of order.
    busy: Cell<bool>,
    /// What a non-blocking flush could not write, for the writer task to finish first.
    pending: RefCell<Vec<Bytes>>,
    /// The shard's flusher when writes are merged; `None` writes as soon as the shard is idle.
    flusher: Option<Rc<Flusher>>,
    /// Listed with the flusher for its next pass.
    dirty: Cell<bool>,
    /// The shard's client totals (none for forward peers).
    totals: Option<Rc<IoTotals>>,
}

impl ConnWriter {
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

    /// One non-blocking vectored write of shared bytes. `Some((index, offset))` when the socket
    /// filled up: the caller hands the rest over with `hand_off`.
    pub fn write_shared(&self, iovs: &[libc::iovec]) -> Option<(usize, usize)> {
        let fd = self.fd.get();
        let (mut idx, mut off, mut written) = (0usize, 0usize, 0usize);
        let result = loop {
            if idx >= iovs.len() {
                break None;
            }
            match sendmsg_iov(fd, &iovs[idx..], off) {
                Ok(0) => break Some((idx, off)),
                Ok(n) => {
                    written += n;
                    let mut n = n;
                    while idx < iovs.len() {
                        let left = iovs[idx].iov_len - off;
                        if n < left {
                            off += n;
                            break;
                        }
                        n -= left;
                        idx += 1;
                        off = 0;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break Some((idx, off)),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(e.to_string());
                    break None;
                }
            }
        };
        self.count_write(written);
        result
    }

    /// Writing failed: remember why (for the close line) and wake the writer task to end.
    fn fail(&self, why: String) {
        *self.error.borrow_mut() = Some(why);
        self.failed.set(true);
        self.notify.notify();
    }

    /// One write of `n` bytes, in this connection's and the shard's figures.
    fn count_write(&self, n: usize) {
        self.bytes_out.set(self.bytes_out.get() + n as u64);
        self.writes.set(self.writes.get() + 1);
        if let Some(t) = &self.totals {
            IoTotals::add(&t.bytes_out, n as u64);
        }
    }

    /// The loaded batch of `fan` (whose buffers `iovs` describes) spliced to this socket.
    /// `Some((index, offset))` when the socket filled up, as for `write_shared`.
    pub fn write_spliced(
        &self,
        fan: &SpliceFanout,
        iovs: &[libc::iovec],
    ) -> Option<(usize, usize)> {
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
                let (mut idx, mut n) = (0, n);
                while idx < iovs.len() && n >= iovs[idx].iov_len {
                    n -= iovs[idx].iov_len;
                    idx += 1;
                }
                Some((idx, n))
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

    /// The flusher's pass: one non-blocking vectored write of everything queued.
    fn flush_now(&self, batch: &mut Vec<Bytes>) {
        let fd = self.fd.get();
        if fd < 0 || self.busy.get() || self.held.get() || self.failed.get() || self.closing.get() {
            return; // the writer task takes the queue when it is done (or it is gone)
        }
        self.queue.borrow_mut().take_all(batch);
        if batch.is_empty() {
            return;
        }
        match write_nonblocking(fd, batch) {
            Ok((written, None)) => self.count_write(written),
            Ok((written, Some((idx, off)))) => {
                self.count_write(written);
                let mut pending = self.pending.borrow_mut();
                pending.push(batch[idx].slice(off..));
                pending.extend(batch.drain(..).skip(idx + 1));
                self.busy.set(true);
                self.notify.notify();
            }
            Err(e) => self.fail(e.to_string()),
        }
        batch.clear();
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

    pub fn bytes_out(&self) -> u64 {
        self.bytes_out.get()
    }

    pub fn writes(&self) -> u64 {
        self.writes.get()
    }

    pub fn dropped_frames(&self) -> u64 {
        self.queue.borrow().dropped_frames
    }

    pub fn failed(&self) -> bool {
        self.failed.get()
    }

    /// The write error that ended this connection, if one did.
    pub fn error(&self) -> Option<String> {
        self.error.borrow().clone()
    }
}

/// Flush what is queued and wait (briefly) for the writer task to end.
pub async fn close_and_wait(w: &ConnWriter, task: glommio::Task<()>) {
    w.close();
    let _ = glommio::timer::timeout(Duration::from_secs(2), async {
        task.await;
        Ok(())
    })
    .await;
}

/// Owns the socket's writing half until the connection closes: writes control bytes at once,
/// finishes what a merged write could not, and (without a flusher) writes media as it comes.
pub async fn run_writer(w: Rc<ConnWriter>, mut stream: TcpStream) {
    // Merged writes may splice into the socket, which must then never block the shard.
    // (glommio sends and receives with MSG_DONTWAIT and io_uring, which this does not change.)
    if let Err(e) = splice::set_nonblocking(stream.as_raw_fd()) {
        w.fail(format!("cannot make the socket non-blocking: {e}"));
    }
    w.fd.set(stream.as_raw_fd());
    let mut batch: Vec<Bytes> = Vec::new();
    loop {
        w.notify.wait().await;
        if w.failed.get() {
            break;
        }
        if w.held.get() && !w.closing.get() {
            continue;
        }
        w.busy.set(true);
        {
            let mut pending = w.pending.borrow_mut();
            batch.append(&mut pending);
            shrink_if_large(&mut pending);
        }
        w.queue.borrow_mut().take_all(&mut batch);
        if !batch.is_empty() {
            match write_batch(&mut stream, &batch, w.stall_timeout).await {
                Ok(n) => w.count_write(n),
                Err(e) => {
                    w.fail(e.to_string());
                    break;
                }
            }
            batch.clear();
            shrink_if_large(&mut batch);
        }
        w.busy.set(false);
        if w.closing.get() {
            w.fd.set(-1);
            if w.shutdown_after.get() {
                let _ = stream.shutdown(std::net::Shutdown::Both).await;
            }
            return;
        }
    }
    // A failed write: unblock the reader so the connection is cleaned up.
    w.fd.set(-1);
    let _ = stream.shutdown(std::net::Shutdown::Both).await;
}

/// Give back the room a burst (a join's GOP) took, so idle connections stay small.
fn shrink_if_large(v: &mut Vec<Bytes>) {
    if v.capacity() > 16 && v.is_empty() {
        *v = Vec::new();
    }
}

/// One non-blocking vectored write of `bufs` (up to IOV_MAX buffers per call, repeated while
/// the socket takes everything). Returns the bytes written and, when the socket filled up, where
/// the unwritten rest starts (buffer index, offset in it).
fn write_nonblocking(
    fd: RawFd,
    bufs: &[Bytes],
) -> std::io::Result<(usize, Option<(usize, usize)>)> {
    let (mut idx, mut off, mut written) = (0usize, 0usize, 0usize);
    while idx < bufs.len() {
        match sendmsg_nonblocking(fd, &bufs[idx..], off) {
            Ok(n) => {
                written += n;
                let (i, o) = advance(bufs, idx, off, n);
                idx = i;
                off = o;
                if idx < bufs.len() && n == 0 {
                    return Ok((written, Some((idx, off))));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Ok((written, Some((idx, off))))
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((written, None))
}

/// Position after writing `n` more bytes from (`idx`, `off`), skipping empty buffers.
fn advance(bufs: &[Bytes], mut idx: usize, mut off: usize, mut n: usize) -> (usize, usize) {
    while idx < bufs.len() {
        let left = bufs[idx].len() - off;
        if n < left {
            return (idx, off + n);
        }
        n -= left;
        idx += 1;
        off = 0;
    }
    (idx, off)
}

/// Most iovecs per sendmsg (Linux IOV_MAX).
const MAX_IOV: usize = 1024;

/// Write all of `bufs`: vectored non-blocking sendmsg while the socket takes it, and the
/// io_uring send (which waits for room) for the rest of a buffer when it does not.
async fn write_batch(
    stream: &mut TcpStream,
    bufs: &[Bytes],
    stall_timeout: Duration,
) -> std::io::Result<usize> {
    let fd = stream.as_raw_fd();
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    let mut idx = 0; // first buffer not fully written
    let mut off = 0; // bytes of bufs[idx] already written
    while idx < bufs.len() {
        match sendmsg_nonblocking(fd, &bufs[idx..], off) {
            Ok(n) => {
                let (i, o) = advance(bufs, idx, off, n);
                idx = i;
                off = o;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // Socket full: let io_uring wait for room for the rest of this buffer, but not
                // forever: a peer that stopped reading is dropped.
                let rest = &bufs[idx][off..];
                glommio::timer::timeout(stall_timeout, async {
                    stream.write_all(rest).await.map_err(Into::into)
                })
                .await
                .map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("peer took no data for {} s", stall_timeout.as_secs()),
                    )
                })?;
                idx += 1;
                off = 0;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

/// sendmsg(MSG_DONTWAIT) of ready-made iovecs, the first one starting `first_off` bytes in.
fn sendmsg_iov(fd: RawFd, iovs: &[libc::iovec], first_off: usize) -> std::io::Result<usize> {
    let n = iovs.len().min(MAX_IOV);
    let mut local: Vec<libc::iovec>;
    let slots: &[libc::iovec] = if first_off == 0 {
        &iovs[..n]
    } else {
        local = iovs[..n].to_vec();
        local[0].iov_base = (local[0].iov_base as usize + first_off) as *mut libc::c_void;
        local[0].iov_len -= first_off;
        &local
    };
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = slots.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = slots.len() as _;
    // SAFETY: the iovecs point into buffers the caller keeps alive for this call.
    let r = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

fn sendmsg_nonblocking(fd: RawFd, bufs: &[Bytes], first_off: usize) -> std::io::Result<usize> {
    let mut iov: [libc::iovec; 64] = unsafe { std::mem::zeroed() };
    let mut heap: Vec<libc::iovec> = Vec::new();
    let n = bufs.len().min(MAX_IOV);
    let slots: &mut [libc::iovec] = if n <= iov.len() {
        &mut iov[..n]
    } else {
        heap.resize(
            n,
            libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            },
        );
        &mut heap[..]
    };
    for (i, (slot, b)) in slots.iter_mut().zip(bufs).enumerate() {
        let s = if i == 0 { &b[first_off..] } else { &b[..] };
        slot.iov_base = s.as_ptr() as *mut libc::c_void;
        slot.iov_len = s.len();
    }
    sendmsg_iov(fd, slots, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::LocalExecutorBuilder;

    /// Each stream is written when its own batch has waited the window (not on a shared
    /// cadence), in the order the batches started, and never before.
    #[test]
    fn streams_are_written_when_their_own_batch_is_due() {
        LocalExecutorBuilder::default()
            .spawn(|| async {
                let window = Duration::from_millis(60);
                let f = Flusher::new(window);
                let log: Rc<RefCell<Vec<(String, Instant)>>> = Rc::default();
                let l = log.clone();
                let runner = glommio::spawn_local(f.clone().run(move |keys: &[StreamKey]| {
                    for k in keys {
                        l.borrow_mut()
                            .push((k.as_str().to_string(), Instant::now()));
                    }
                }));
                let a = StreamKey::new("v", "live", "a");
                let b = StreamKey::new("v", "live", "b");
                let t0 = Instant::now();
                f.stream_batch_started(a);
                glommio::timer::sleep(Duration::from_millis(25)).await;
                let t1 = Instant::now();
                f.stream_batch_started(b);
                glommio::timer::sleep(Duration::from_millis(150)).await;
                drop(runner);
                let log = log.borrow();
                let names: Vec<&str> = log.iter().map(|(n, _)| n.as_str()).collect();
                assert_eq!(names, ["v/live/a", "v/live/b"], "one write each, in order");
                // Nothing was sent before its window (no pass has been timed yet: no lead).
                assert!(
                    log[0].1 - t0 >= window,
                    "a written after {:?}",
                    log[0].1 - t0
                );
                assert!(
                    log[1].1 - t1 >= window,
                    "b written after {:?}",
                    log[1].1 - t1
                );
                assert!(log[1].1 > log[0].1, "b had its own pass");
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
