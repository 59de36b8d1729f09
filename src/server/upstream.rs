//! An upstream's task, on the stream's owner shard: one pull of the stream from an origin (an
//! edge) or from the coworker that publishes it (a relaying origin), shared through the usual
//! fan-out by every player on every shard. `cluster::linger::EdgeUpstream` decides when to
//! connect, linger and stop; this task carries that out and turns the origin's media into a
//! local publish, so the GOP cache, HTTP-FLV and the slow-player policy work as for any source.
//!
//! The local publish outlives a dropped origin link: while the next origin is tried, players
//! stay attached and see one stream whose timestamps stay monotonic (the stream's smoother).
//! Only the origin's own "unpublished" (or a wait past `start_timeout_ms`) is passed on.

use super::discovery::discover;
use super::ids::ConnId;
use super::key::{StreamKey, DEFAULT_VHOST};
use super::notify::LocalNotify;
use super::shard::Shard;
use super::upstream_peer::{UpstreamHandle, UpstreamKind};
use crate::cluster::linger::{EdgeUpstream, Effect, Event, State, UpstreamConfig};
use crate::cluster::origins::OriginPicker;
use crate::cluster::redirect::{RedirectError, RedirectFollower};
use crate::cluster::url::RtmpUrl;
use crate::config::ClusterConfig;
use crate::control_plane::CallError;
use crate::media::FrameKind;
use crate::rtmp::client::{ClientConfig, ClientError, ClientEvent, ClientRole, ClientSession};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use log::{info, warn};
use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// The picker's one "origin" for a relay: the coworkers are asked afresh on each attempt.
const COWORKERS: &str = "coworkers";

/// Why one pull ended.
#[derive(Debug, Error)]
enum PullError {
    #[error("no coworker publishes the stream")]
    NotAtCoworkers,
    #[error("origin {0} is not configured any more")]
    UnknownOrigin(String),
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, CallError),
    #[error("connect to {0} failed: {1}")]
    Connect(String, std::io::Error),
    #[error("no NetStream.Play.Start within {0:?}")]
    StartTimeout(Duration),
    #[error("{0}")]
    Protocol(ClientError),
    #[error("redirect: {0}")]
    Redirect(#[from] RedirectError),
    #[error("origin said NetStream.Play.StreamNotFound")]
    NotFound,
    #[error("a local publisher holds the stream")]
    Claimed,
    #[error("origin closed the connection")]
    Closed,
    #[error("origin sent nothing for {0:?}")]
    Silent(Duration),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Stop signal for one pull.
#[derive(Default)]
struct PullStop {
    stopped: Cell<bool>,
    notify: LocalNotify,
}

impl PullStop {
    fn stop(&self) {
        self.stopped.set(true);
        self.notify.notify();
    }
}

/// What every pull of one upstream shares: the publish it feeds (kept across pulls).
struct Feed {
    key: StreamKey,
    /// The upstream's id as a source (API, logs).
    conn_id: ConnId,
    publish: Cell<Option<u64>>,
}

impl Feed {
    /// End the local publish, if one is held: players are told and keep waiting.
    fn release(&self, shard: &Shard) {
        if let Some(pid) = self.publish.take() {
            shard.unpublish(&self.key, pid);
        }
    }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// Run one upstream until it has no players and nothing running.
pub async fn run(shard: Rc<Shard>, h: Rc<UpstreamHandle>) {
    let cfg = shard.cfg();
    let cl = cfg.cluster_for(h.key.vhost()).clone();
    let origins = match h.kind {
        UpstreamKind::Edge => cl.origins.clone(),
        UpstreamKind::Relay => vec![COWORKERS.to_string()],
    };
    let seed = shard.new_id() ^ super::time::time_seed();
    let picker = match OriginPicker::new(
        origins,
        ms(cl.backoff_initial_ms),
        ms(cl.backoff_max_ms),
        seed,
    ) {
        Ok(p) => p,
        Err(e) => {
            warn!("shard={} upstream stream={}: {e}", shard.id(), h.key);
            shard.owner.borrow_mut().upstream_done(&h);
            return;
        }
    };
    let linger = UpstreamConfig {
        linger: ms(cl.idle_linger_ms),
        max_wait: cl.start_timeout(),
    };
    let mut machine = EdgeUpstream::new(linger, picker);
    let feed = Rc::new(Feed {
        key: h.key.clone(),
        conn_id: h.source,
        publish: Cell::new(None),
    });
    let mut pulls: HashMap<u64, Rc<PullStop>> = HashMap::new();
    let mut last_origin: Option<String> = None;
    info!(
        "shard={} upstream stream={} kind={} started",
        shard.id(),
        h.key,
        h.kind.as_str()
    );
    loop {
        let now = Instant::now();
        let mut events = h.drain();
        if machine.deadline().is_some_and(|d| d <= now) {
            events.push(Event::Tick);
        }
        if events.is_empty() {
            match machine.deadline() {
                Some(d) => {
                    futures_lite::future::or(h.woken(), glommio::timer::sleep(d - now)).await;
                }
                None => h.woken().await,
            }
            continue;
        }
        for ev in events {
            if let Event::UpstreamDown { attempt } = ev {
                pulls.remove(&attempt);
            }
            for fx in machine.handle(now, ev) {
                match fx {
                    Effect::StartUpstream { origin, attempt } => {
                        if let Some(from) = last_origin.as_ref().filter(|o| **o != origin) {
                            h.failovers.set(h.failovers.get() + 1);
                            info!(
                                "shard={} upstream stream={} failover from {from} to {origin}",
                                shard.id(),
                                h.key
                            );
                        }
                        last_origin = Some(origin.clone());
                        *h.origin.borrow_mut() = origin.clone();
                        let stop = Rc::new(PullStop::default());
                        pulls.insert(attempt, stop.clone());
                        let pull = pull(
                            shard.clone(),
                            h.clone(),
                            cl.clone(),
                            origin,
                            attempt,
                            stop,
                            feed.clone(),
                        );
                        glommio::spawn_local(pull).detach();
                    }
                    Effect::StopUpstream { attempt } => {
                        if let Some(s) = pulls.get(&attempt) {
                            s.stop();
                        }
                    }
                    // A dropped link keeps the local publish: players wait for the next origin.
                    Effect::NotifyPlayersUnpublished => {}
                    // Nothing for a whole start timeout: tell the players it stopped.
                    Effect::FailWaitingPlayers => feed.release(&shard),
                }
            }
        }
        h.state.set(machine.state());
        let idle = machine.state() == State::Idle && machine.players() == 0;
        if idle && pulls.is_empty() {
            break;
        }
    }
    feed.release(&shard);
    shard.owner.borrow_mut().upstream_done(&h);
    info!(
        "shard={} upstream stream={} stopped (connects={} failovers={} redirects={})",
        shard.id(),
        h.key,
        h.connects.get(),
        h.failovers.get(),
        h.redirects.get()
    );
}

/// One pull; reports `UpstreamDown` when it ends, however it ends.
async fn pull(
    shard: Rc<Shard>,
    h: Rc<UpstreamHandle>,
    cl: ClusterConfig,
    origin: String,
    attempt: u64,
    stop: Rc<PullStop>,
    feed: Rc<Feed>,
) {
    let result = pull_from(&shard, &h, &cl, &origin, attempt, &stop, &feed).await;
    match result {
        Err(PullError::NotFound) => feed.release(&shard),
        Err(e) if !stop.stopped.get() => warn!(
            "shard={} upstream stream={} origin={origin} failed: {e}",
            shard.id(),
            h.key
        ),
        _ => {}
    }
    h.push(Event::UpstreamDown { attempt });
}

/// Where the first connection of a pull goes.
async fn start_url(
    shard: &Shard,
    h: &UpstreamHandle,
    cl: &ClusterConfig,
    origin: &str,
) -> Result<RtmpUrl, PullError> {
    let key = &h.key;
    let mut query = h.query.clone();
    if key.vhost() != DEFAULT_VHOST && crate::cluster::url::query_get(&query, "vhost").is_none() {
        crate::cluster::url::query_push(&mut query, "vhost", key.vhost());
    }
    let (host, port) = match h.kind {
        UpstreamKind::Edge => {
            let t = cl
                .origin_targets()
                .into_iter()
                .find(|t| t.display == origin)
                .ok_or_else(|| PullError::UnknownOrigin(origin.to_string()))?;
            (t.host.trim_matches(['[', ']']).to_string(), t.addr.port())
        }
        UpstreamKind::Relay => {
            let at = discover(shard, cl, key)
                .await
                .ok_or(PullError::NotAtCoworkers)?;
            *h.origin.borrow_mut() = at.host_port();
            (at.host, at.port)
        }
    };
    Ok(RtmpUrl {
        host,
        port,
        app: key.app().to_string(),
        stream: key.stream_name().to_string(),
        query,
    })
}

/// Connect (following redirects), play, and feed the local publish until the link ends.
async fn pull_from(
    shard: &Rc<Shard>,
    h: &UpstreamHandle,
    cl: &ClusterConfig,
    origin: &str,
    attempt: u64,
    stop: &PullStop,
    feed: &Feed,
) -> Result<(), PullError> {
    let mut url = start_url(shard, h, cl, origin).await?;
    let mut follower = RedirectFollower::new(&url, RedirectFollower::DEFAULT_MAX_HOPS);
    loop {
        match play(shard, h, cl, &url, attempt, stop, feed).await {
            Err(PullError::Protocol(ClientError::Redirected(r))) => {
                url = follower.follow(&r)?;
                h.redirects.set(h.redirects.get() + 1);
                *h.origin.borrow_mut() = url.host_port();
                info!(
                    "shard={} upstream stream={} redirected to {url}",
                    shard.id(),
                    h.key
                );
            }
            other => return other,
        }
    }
}

enum Wake {
    Read(std::io::Result<usize>),
    Stop,
}

/// One connection to `url`.
async fn play(
    shard: &Rc<Shard>,
    h: &UpstreamHandle,
    cl: &ClusterConfig,
    url: &RtmpUrl,
    attempt: u64,
    stop: &PullStop,
    feed: &Feed,
) -> Result<(), PullError> {
    let connect_timeout = ms(cl.connect_timeout_ms);
    let addrs = shard
        .global()
        .calls
        .resolve(&url.host, url.port, connect_timeout)
        .await
        .map_err(|e| PullError::Resolve(url.host.clone(), e))?;
    let addr = *addrs.first().ok_or_else(|| {
        PullError::Resolve(url.host.clone(), CallError::Connect("no address".into()))
    })?;
    let mut stream = TcpStream::connect_timeout(addr, connect_timeout)
        .await
        .map_err(|e| PullError::Connect(url.host_port(), e.into()))?;
    let _ = stream.set_nodelay(true);
    let cfg = ClientConfig {
        app: url.app.clone(),
        tc_url: url.tc_url(),
        stream: url.stream_with_query(),
        role: ClientRole::Play,
        chunk_size: shard.cfg().rtmp.chunk_size,
        digest_handshake: false,
        buffer_ms: 1000,
    };
    let mut client = ClientSession::new(cfg, shard.new_id(), 0);
    let mut buf = vec![0u8; 64 * 1024];
    let mut started = false;
    let deadline = Instant::now() + connect_timeout;
    loop {
        while let Some(b) = client.poll_transmit() {
            stream.write_all(&b).await?;
        }
        if started {
            // An origin that goes quiet (its publisher gone without a word, or a half-dead
            // link) costs the players at most one start timeout before the next origin is tried.
            let _ = stream.set_read_timeout(Some(cl.start_timeout()));
        } else {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(if started {
                    PullError::Silent(cl.start_timeout())
                } else {
                    PullError::StartTimeout(connect_timeout)
                });
            }
            let _ = stream.set_read_timeout(Some(left));
        }
        let wake =
            futures_lite::future::or(async { Wake::Read(stream.read(&mut buf).await) }, async {
                while !stop.stopped.get() {
                    stop.notify.wait().await;
                }
                Wake::Stop
            })
            .await;
        let n = match wake {
            Wake::Stop => return Ok(()),
            Wake::Read(Ok(0)) => return Err(PullError::Closed),
            Wake::Read(Ok(n)) => n,
            Wake::Read(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(if started {
                    PullError::Silent(cl.start_timeout())
                } else {
                    PullError::StartTimeout(connect_timeout)
                })
            }
            Wake::Read(Err(e)) => return Err(e.into()),
        };
        h.bytes_in.set(h.bytes_in.get() + n as u64);
        let input = client.handle_input(&buf[..n]);
        // Replies (the redirect's acknowledgement among them) go out before anything else.
        while let Some(b) = client.poll_transmit() {
            let _ = stream.write_all(&b).await;
        }
        input.map_err(PullError::Protocol)?;
        while let Some(ev) = client.poll_event() {
            match ev {
                ClientEvent::PlayStarted if !started => {
                    started = true;
                    h.connects.set(h.connects.get() + 1);
                    h.push(Event::UpstreamUp { attempt });
                    info!(
                        "shard={} upstream stream={} playing from {}",
                        shard.id(),
                        h.key,
                        url.host_port()
                    );
                }
                // The origin's own notes to players (|RtmpSampleAccess) are not the stream's.
                ClientEvent::Media { frame, metadata }
                    if frame.kind == FrameKind::Data && !metadata && is_sample_access(&frame) => {}
                ClientEvent::Media { frame, metadata } => {
                    let pid = match feed.publish.get() {
                        Some(pid) => pid,
                        None => {
                            let pid = shard
                                .claim_publish(&feed.key, feed.conn_id, true, "")
                                .await
                                .map_err(|_| PullError::Claimed)?;
                            feed.publish.set(Some(pid));
                            pid
                        }
                    };
                    shard.publish_frame(&feed.key, pid, frame, metadata);
                }
                ClientEvent::Status { code, .. } => match code.as_str() {
                    "NetStream.Play.UnpublishNotify" => {
                        feed.release(shard);
                        h.push(Event::StreamGone { attempt });
                    }
                    "NetStream.Play.StreamNotFound" => return Err(PullError::NotFound),
                    _ => {}
                },
                _ => {}
            }
        }
    }
}

/// Is this data message the server's `|RtmpSampleAccess` note (sent to every player on play)?
fn is_sample_access(frame: &crate::media::Frame) -> bool {
    // AMF0 string marker, 16-bit length, then the name.
    frame.payload.get(3..20) == Some(&b"|RtmpSampleAccess"[..])
}
