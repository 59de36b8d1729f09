//! Forward peers: an outbound RTMP publish of a local stream to another server (master ->
//! slave). A peer lives on one shard and takes the stream like a player there, so the publish
//! crosses to its shard once. A destination that is down or drops is retried with exponential
//! backoff; it never delays the publisher, the players or the other destinations.

use super::key::StreamKey;
use super::shard::Shard;
use super::stream::{PlayerKind, PlayerRef};
use super::writer::{close_and_wait, run_writer, ConnWriter, LocalNotify};
use crate::config::ForwardTarget;
use crate::rtmp::client::{ClientConfig, ClientEvent, ClientRole, ClientSession};
use futures_lite::AsyncReadExt;
use glommio::net::TcpStream;
use log::{info, warn};
use std::cell::{Cell, RefCell};
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardState {
    Connecting,
    Publishing,
    Backoff,
    Stopped,
}

impl ForwardState {
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardState::Connecting => "connecting",
            ForwardState::Publishing => "publishing",
            ForwardState::Backoff => "backoff",
            ForwardState::Stopped => "stopped",
        }
    }
}

#[derive(Debug, Error)]
enum ForwardError {
    #[error("connect failed: {0}")]
    Connect(String),
    #[error("no NetStream.Publish.Start within {0:?}")]
    StartTimeout(Duration),
    #[error("{0}")]
    Protocol(#[from] crate::rtmp::client::ClientError),
    #[error("destination closed the connection")]
    Closed,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// One destination of one stream, as the shard holding it sees it (for logs and stats).
pub struct ForwardHandle {
    pub key: StreamKey,
    pub target: ForwardTarget,
    pub state: Cell<ForwardState>,
    pub reconnects: Cell<u64>,
    pub bytes_out: Cell<u64>,
    pub last_error: RefCell<String>,
    stopped: Cell<bool>,
    stop: LocalNotify,
}

impl ForwardHandle {
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
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff {
            next: initial,
            initial,
            max,
            rng: seed | 1,
        }
    }

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

/// Keep publishing `key` to `target` until stopped.
pub async fn run(shard: Rc<Shard>, h: Rc<ForwardHandle>) {
    let f = &shard.cfg().forward;
    let seed = shard.new_id() ^ super::time_seed();
    let mut backoff = Backoff::new(
        Duration::from_millis(f.backoff_initial_ms),
        Duration::from_millis(f.backoff_max_ms),
        seed,
    );
    while !h.stopped.get() {
        h.state.set(ForwardState::Connecting);
        let started = Instant::now();
        let result = publish_once(&shard, &h).await;
        if h.stopped.get() {
            break;
        }
        let cause = match result {
            Ok(()) => "destination closed the connection".to_string(),
            Err(e) => e.to_string(),
        };
        // A session that published for a while starts the backoff over.
        if started.elapsed() > Duration::from_secs(10) {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        h.state.set(ForwardState::Backoff);
        h.reconnects.set(h.reconnects.get() + 1);
        *h.last_error.borrow_mut() = cause.clone();
        warn!(
            "shard={} forward stream={} dest={} failed: {cause}; retry in {} ms",
            shard.id,
            h.key,
            h.target.display,
            delay.as_millis()
        );
        futures_lite::future::or(glommio::timer::sleep(delay), h.stop.wait()).await;
    }
    h.state.set(ForwardState::Stopped);
    info!(
        "shard={} forward stream={} dest={} stopped",
        shard.id, h.key, h.target.display
    );
}

enum Wake {
    Read(std::io::Result<usize>),
    Stop,
}

/// One connection: connect, publish, then stream until the destination drops or we stop.
async fn publish_once(shard: &Rc<Shard>, h: &Rc<ForwardHandle>) -> Result<(), ForwardError> {
    let f = &shard.cfg().forward;
    let connect_timeout = Duration::from_millis(f.connect_timeout_ms);
    let mut stream = TcpStream::connect_timeout(h.target.addr, connect_timeout)
        .await
        .map_err(|e| ForwardError::Connect(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let wfd = unsafe { libc::dup(stream.as_raw_fd()) };
    if wfd < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    // SAFETY: wfd is a fresh descriptor we own.
    let wstream = unsafe { TcpStream::from_raw_fd(wfd) };
    let writer = ConnWriter::new(
        f.queue_ms,
        shard.cfg().stall_timeout(),
        shard.flusher.clone(),
        None, // forward bytes are the destination's figures, not the shard's client totals
    );
    let writer_task = glommio::spawn_local(run_writer(writer.clone(), wstream));

    let (tc_url, app) = h.target.tc_url(h.key.app());
    let cfg = ClientConfig {
        app,
        tc_url,
        stream: h.key.stream_name().to_string(),
        role: ClientRole::Publish,
        chunk_size: shard.cfg().rtmp.chunk_size,
        digest_handshake: false,
        buffer_ms: 0,
    };
    let mut client = ClientSession::new(cfg, shard.new_id(), 0);
    let peer_id = shard.new_id();
    let mut buf = vec![0u8; 4096];
    let mut published = false;
    let deadline = Instant::now() + connect_timeout;

    let result = loop {
        while let Some(b) = client.poll_transmit() {
            writer.send_control(b);
        }
        if !published {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Err(ForwardError::StartTimeout(connect_timeout));
            }
            let _ = stream.set_read_timeout(Some(left));
        } else {
            let _ = stream.set_read_timeout(None);
        }
        let wake =
            futures_lite::future::or(async { Wake::Read(stream.read(&mut buf).await) }, async {
                h.stop.wait().await;
                Wake::Stop
            })
            .await;
        let n = match wake {
            Wake::Stop => {
                if published {
                    client.unpublish();
                    while let Some(b) = client.poll_transmit() {
                        writer.send_control(b);
                    }
                }
                break Ok(());
            }
            Wake::Read(Ok(0)) => break Err(ForwardError::Closed),
            Wake::Read(Ok(n)) => n,
            Wake::Read(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                break Err(ForwardError::StartTimeout(connect_timeout))
            }
            Wake::Read(Err(e)) => break Err(e.into()),
        };
        if let Err(e) = client.handle_input(&buf[..n]) {
            break Err(e.into());
        }
        while let Some(ev) = client.poll_event() {
            if ev == ClientEvent::PublishStarted && !published {
                published = true;
                h.state.set(ForwardState::Publishing);
                info!(
                    "shard={} forward stream={} dest={} publishing",
                    shard.id, h.key, h.target.display
                );
                // From here on the peer takes the stream like a player: headers, GOP, live.
                shard.add_player(
                    &h.key,
                    PlayerRef::new(
                        peer_id,
                        client.stream_id(),
                        writer.clone(),
                        PlayerKind::Forward,
                    ),
                );
            }
        }
        if writer.failed() {
            break Err(ForwardError::Closed);
        }
    };
    if published {
        shard.remove_player(&h.key, peer_id, client.stream_id());
    }
    close_and_wait(&writer, writer_task).await;
    h.bytes_out.set(h.bytes_out.get() + writer.bytes_out());
    result
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
