//! Forward peers: an outbound RTMP publish of a local stream to another server (master ->
//! slave). A peer lives on one shard and takes the stream like a player there, so the publish
//! crosses to its shard once. A destination that is down or drops is retried with exponential
//! backoff; it never delays the publisher, the players or the other destinations.

use super::conn::ConnIo;
use super::forward_peer::ForwardHandle;
use super::kinds::ForwardState;
use super::shard::Shard;
use super::stream::{PlayerKind, PlayerRef};
use super::writer::ConnWriter;
use crate::cluster::backoff::Backoff;
use crate::rtmp::client::{ClientConfig, ClientEvent, ClientRole, ClientSession};
use futures_lite::AsyncReadExt;
use glommio::net::TcpStream;
use log::{info, warn};
use std::rc::Rc;
use std::time::{Duration, Instant};
use thiserror::Error;

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

/// Keep publishing `key` to `target` until stopped.
pub async fn run(shard: Rc<Shard>, h: Rc<ForwardHandle>) {
    let f = &shard.cfg().forward;
    let seed = shard.new_id() ^ super::time::time_seed();
    let mut backoff = Backoff::new(
        Duration::from_millis(f.backoff_initial_ms),
        Duration::from_millis(f.backoff_max_ms),
        seed,
    );
    // Destinations that failed in a row this round (an edge fails over between its origins).
    let mut tried = 0;
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
            tried = 0;
        }
        h.reconnects.set(h.reconnects.get() + 1);
        *h.last_error.borrow_mut() = cause.clone();
        if h.targets.len() > 1 {
            // An edge's origins: try the next one at once, back off after a whole round.
            let failed = h.target().display.clone();
            h.next_target();
            tried += 1;
            if tried < h.targets.len() {
                warn!(
                    "shard={} forward stream={} dest={failed} failed: {cause}; failing over to {}",
                    shard.id(),
                    h.key,
                    h.target().display
                );
                continue;
            }
            tried = 0;
        }
        let delay = backoff.next_delay();
        h.state.set(ForwardState::Backoff);
        warn!(
            "shard={} forward stream={} dest={} failed: {cause}; retry in {} ms",
            shard.id(),
            h.key,
            h.target().display,
            delay.as_millis()
        );
        futures_lite::future::or(glommio::timer::sleep(delay), h.stop.wait()).await;
    }
    h.state.set(ForwardState::Stopped);
    info!(
        "shard={} forward stream={} dest={} stopped",
        shard.id(),
        h.key,
        h.target().display
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
    let mut stream = TcpStream::connect_timeout(h.target().addr, connect_timeout)
        .await
        .map_err(|e| ForwardError::Connect(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let writer = ConnWriter::new(
        f.queue_ms,
        shard.cfg().stall_timeout(),
        shard.flusher(),
        None, // forward bytes are the destination's figures, not the shard's client totals
    );
    let io = ConnIo::open(&stream, writer.clone())?;

    let (tc_url, app) = h.target().tc_url(h.key.app());
    let cfg = ClientConfig {
        app,
        tc_url,
        stream: {
            let name = h.target().stream_name(h.key.stream_name());
            if h.query.is_empty() {
                name
            } else {
                format!("{name}?{}", h.query)
            }
        },
        role: ClientRole::Publish,
        chunk_size: shard.cfg().rtmp.chunk_size,
        digest_handshake: false,
        buffer_ms: 0,
    };
    let mut client = ClientSession::new(cfg, shard.new_id(), 0);
    let peer_id = shard.new_conn_id();
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
                    shard.id(),
                    h.key,
                    h.target().display
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
                    "",
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
    io.close().await;
    h.bytes_out.set(h.bytes_out.get() + writer.bytes_out());
    result
}
