//! The thread's player pump: once a player plays (RTMP: the session handed the chunk stream
//! over; HTTP-FLV: the response head is in), its socket joins the thread's one epoll set and
//! one task reads every ready player, once per [`SEND_TICK`](crate::runner::SEND_TICK) (the
//! grid the publishers send on).
//!
//! Per player and read this costs one `recv` and nothing else. Each player waiting on its own
//! io_uring poll instead costs a poll request, a completion that interrupts the thread (an IPI
//! while it runs) and a task wake-up per read, which made the generator, not the server, the
//! bottleneck once servers send every message on its own (nginx-rtmp). A player's receive
//! instant is now the moment its read is done within the tick, at most one tick after the
//! bytes arrived; everything counted per message (frames, bytes, timestamps, latency samples)
//! is unchanged. The epoll set is level-triggered and polled without waiting (timeout 0), so
//! nothing interrupts the thread when bytes arrive; a tick that finds every event slot full
//! goes round again at once.

use crate::conn::Conn;
use crate::httpflv::{BodyDecoder, FlvParser};
use crate::latency::LatencyProbe;
use crate::player::{absorb_http, scan, Outcome, PlayError, PlayerMeter};
use crate::rtmpscan::ChunkScanner;
use crate::runner::{Role, ThreadCtx};
use shardcast::rtmp::client::ClientSession;
use std::cell::RefCell;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::Instant;

/// Ready players taken per `epoll_wait`.
const EVENTS: usize = 512;

/// What a pumped connection speaks, with its parser state.
pub enum Wire {
    /// RTMP after the hand-over: the session answers control messages, the scanner reads.
    Rtmp {
        /// The client session (acks, pings, statuses).
        session: Box<ClientSession>,
        /// The chunk stream reader.
        scanner: ChunkScanner,
    },
    /// HTTP-FLV after the response head.
    HttpFlv {
        /// The body framing.
        body: BodyDecoder,
        /// The FLV tag parser.
        flv: FlvParser,
    },
}

/// One playing connection in the pump.
pub struct Pumped {
    /// The socket (kept registered for the end-of-run cut).
    pub conn: Conn,
    /// Protocol state.
    pub wire: Wire,
    /// What the player measures.
    pub meter: Rc<RefCell<PlayerMeter>>,
    /// Its latency lookups.
    pub probe: LatencyProbe,
    /// Bytes the session queued that the socket did not take yet (acks, pongs).
    out: Vec<u8>,
}

impl Pumped {
    /// A playing connection for the pump.
    pub fn new(
        conn: Conn,
        wire: Wire,
        meter: Rc<RefCell<PlayerMeter>>,
        probe: LatencyProbe,
    ) -> Self {
        Pumped {
            conn,
            wire,
            meter,
            probe,
            out: Vec::new(),
        }
    }

    fn fd(&self) -> RawFd {
        self.conn.stream.as_raw_fd()
    }

    /// Sends what is queued, without waiting; the rest stays queued.
    fn send_out(&mut self) -> Result<(), PlayError> {
        while !self.out.is_empty() {
            // SAFETY: a plain non-blocking send of an owned buffer on an open descriptor.
            let n = unsafe {
                libc::send(
                    self.fd(),
                    self.out.as_ptr().cast(),
                    self.out.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::WouldBlock {
                    return Ok(());
                }
                return Err(PlayError::Failed(format!("write: {e}")));
            }
            self.out.drain(..n as usize);
        }
        Ok(())
    }

    /// One read of whatever is there, handled as the player task handles a read. `Ok` while
    /// the connection goes on.
    fn pump(&mut self, ctx: &ThreadCtx) -> Result<(), PlayError> {
        self.send_out()?;
        let mut buf = ctx.read_buf.borrow_mut();
        // SAFETY: a plain non-blocking recv into the thread's buffer.
        let n = unsafe {
            libc::recv(
                self.fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Ok(()),
                std::io::ErrorKind::ConnectionReset => Err(PlayError::Closed),
                _ => Err(PlayError::Failed(format!("read: {e}"))),
            };
        }
        if n == 0 {
            if let Wire::HttpFlv { .. } = self.wire {
                // The body ended before the run did.
                self.meter.borrow_mut().stream_eof();
            }
            return Err(PlayError::Closed);
        }
        let n = n as usize;
        let data = &buf[..n];
        let now = Instant::now();
        let window = ctx.window();
        let mut m = self.meter.borrow_mut();
        match &mut self.wire {
            Wire::Rtmp { session, scanner } => {
                scan(
                    ctx,
                    scanner,
                    session,
                    &mut m,
                    &mut self.probe,
                    now,
                    data,
                    window,
                )?;
                while let Some(b) = session.poll_transmit() {
                    self.out.extend_from_slice(&b);
                }
            }
            Wire::HttpFlv { body, flv } => {
                let ended = absorb_http(ctx, body, flv, &mut m, &mut self.probe, now, data)
                    .map_err(|e| PlayError::Failed(format!("http-flv: {e}")))?;
                m.after_read(now, n, window);
                if ended {
                    m.stream_eof();
                    return Err(PlayError::Closed);
                }
            }
        }
        drop(m);
        drop(buf);
        self.send_out()
    }
}

/// The pump's epoll set and its connections (slots indexed by the epoll token).
pub struct Pump {
    epfd: OwnedFd,
    slots: RefCell<Vec<Option<Pumped>>>,
    free: RefCell<Vec<usize>>,
}

impl Pump {
    /// An empty pump.
    pub fn new() -> std::io::Result<Pump> {
        // SAFETY: epoll_create1 returns a new descriptor or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Pump {
            // SAFETY: the descriptor was just created and is owned by nobody else.
            epfd: unsafe { OwnedFd::from_raw_fd(fd) },
            slots: RefCell::new(Vec::new()),
            free: RefCell::new(Vec::new()),
        })
    }

    /// Hands a playing connection to the pump (on failure it is closed).
    pub fn add(&self, p: Pumped) -> std::io::Result<()> {
        let mut slots = self.slots.borrow_mut();
        let slot = self.free.borrow_mut().pop().unwrap_or_else(|| {
            slots.push(None);
            slots.len() - 1
        });
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32 | libc::EPOLLRDHUP as u32,
            u64: slot as u64,
        };
        // SAFETY: registers an open descriptor with our epoll set.
        let r =
            unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, p.fd(), &mut ev) };
        if r < 0 {
            self.free.borrow_mut().push(slot);
            return Err(std::io::Error::last_os_error());
        }
        slots[slot] = Some(p);
        Ok(())
    }

    /// Takes slot `slot` out and finishes its meter with `outcome`.
    fn remove(&self, slot: usize, outcome: Outcome) {
        let Some(p) = self.slots.borrow_mut()[slot].take() else {
            return;
        };
        // SAFETY: deregisters a descriptor that is still open (closed when `p` drops).
        unsafe {
            libc::epoll_ctl(
                self.epfd.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                p.fd(),
                std::ptr::null_mut(),
            );
        }
        self.free.borrow_mut().push(slot);
        p.meter.borrow_mut().finish(outcome);
    }

    /// Every connection ends with the run.
    fn finish_all(&self) {
        let n = self.slots.borrow().len();
        for slot in 0..n {
            self.remove(slot, Outcome::Ok);
        }
    }

    /// One pass over the ready connections; true when the event slots were all used (more
    /// may be ready).
    fn pass(&self, ctx: &ThreadCtx, events: &mut [libc::epoll_event]) -> bool {
        // SAFETY: `events` is a valid buffer of that many entries; timeout 0 never blocks.
        let n = unsafe {
            libc::epoll_wait(
                self.epfd.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                0,
            )
        };
        if n <= 0 {
            return false;
        }
        for ev in &events[..n as usize] {
            let slot = ev.u64 as usize;
            let result = match self.slots.borrow_mut().get_mut(slot) {
                Some(Some(p)) => p.pump(ctx),
                _ => continue,
            };
            if let Err(e) = result {
                self.remove(slot, e.outcome(ctx.stopping(Role::Player)));
            }
        }
        n as usize == events.len()
    }
}

/// The pump task of a thread: a pass per tick until the players stop.
pub async fn run(ctx: Rc<ThreadCtx>) {
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
    loop {
        if ctx.stopping(Role::Player) {
            ctx.pump.finish_all();
            return;
        }
        if ctx.pump.pass(&ctx, &mut events) {
            futures_lite::future::yield_now().await;
            continue;
        }
        let now = Instant::now();
        glommio::timer::sleep(ctx.on_tick(now).saturating_duration_since(now)).await;
    }
}
