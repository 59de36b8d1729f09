//! One shard: the streams it holds (as owner registry, as publisher's shard, as a shard with
//! players), and the handlers for messages from other shards. Single-threaded: plain `RefCell`s,
//! no locks. A borrow is never held across an await.

use super::forward::{self, ForwardHandle};
use super::key::StreamKey;
use super::mesh::{Outbox, ShardMsg};
use super::packet::Packet;
use super::registry::{Registry, ShardId, Subscriber};
use super::splice::SpliceFanout;
use super::stats::{Board, IoTotals};
use super::stream::{LocalStream, PlayerRef, RemoteSub, Source, StreamLimits};
use super::writer::{ConnWriter, Flusher};
use crate::config::Config;
use crate::media::Frame;
use glommio::channels::local_channel::{self, LocalSender};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::IpAddr;
use std::net::SocketAddr;
use std::os::unix::io::RawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;

/// State every shard can see: counters, flags and the stats board, never on the media path.
pub struct Global {
    pub connections: AtomicUsize,
    pub shutdown: AtomicBool,
    pub board: Board,
    /// Open connections per client address (touched on connect and close only).
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Streams being published, over all shards.
    pub live_streams: AtomicUsize,
    /// The latest reloaded config and its generation (read by each shard's ticker).
    reload: Mutex<Option<(u64, Arc<Config>)>>,
}

impl Global {
    pub fn new(shards: usize) -> Global {
        Global {
            connections: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            board: Board::new(shards),
            per_ip: Mutex::new(HashMap::new()),
            live_streams: AtomicUsize::new(0),
            reload: Mutex::new(None),
        }
    }

    /// Publish a new config for every shard to take at its next tick.
    pub fn publish_config(&self, cfg: Arc<Config>) -> u64 {
        let mut slot = self.reload.lock().unwrap_or_else(|e| e.into_inner());
        let generation = slot.as_ref().map(|(g, _)| g + 1).unwrap_or(1);
        *slot = Some((generation, cfg));
        generation
    }

    /// The latest reloaded config, if any.
    pub fn reloaded(&self) -> Option<(u64, Arc<Config>)> {
        self.reload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Why a publish was not granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClaimRefused {
    #[error("already being published")]
    AlreadyPublished,
    #[error("max_streams ({0}) reached")]
    MaxStreams(usize),
}

struct PendingClaim {
    key: StreamKey,
    conn_id: u64,
    publish_id: u64,
    reply: LocalSender<bool>,
}

/// A live connection, for shutdown, kicks and stats. The connection task updates the cells.
pub struct ConnEntry {
    pub fd: RawFd,
    pub peer: SocketAddr,
    /// `peer` as text, made once for the stats.
    pub peer_text: Arc<str>,
    pub started: Instant,
    /// "fmle-publish", "rtmp-play", "flv-play" or "idle".
    pub kind: Cell<&'static str>,
    pub stream: RefCell<Option<StreamKey>>,
    pub tc_url: RefCell<Arc<str>>,
    pub bytes_in: Cell<u64>,
    pub writer: Rc<ConnWriter>,
    /// Disconnected through the API (the close line says so).
    pub kicked: Cell<bool>,
    /// (bytes in, bytes out) at the last tick, and the rates then (kbit/s).
    pub(super) rate: Cell<(u64, u64, u64, u64)>,
}

impl ConnEntry {
    pub fn new(fd: RawFd, peer: SocketAddr, writer: Rc<ConnWriter>) -> ConnEntry {
        ConnEntry {
            fd,
            peer,
            peer_text: peer.to_string().into(),
            started: Instant::now(),
            kind: Cell::new("idle"),
            stream: RefCell::new(None),
            tc_url: RefCell::new("".into()),
            bytes_in: Cell::new(0),
            writer,
            kicked: Cell::new(false),
            rate: Cell::new((0, 0, 0, 0)),
        }
    }
}

pub struct Shard {
    pub id: ShardId,
    pub shards: usize,
    /// The config in force; replaced whole on reload (SIGHUP).
    cfg: RefCell<Arc<Config>>,
    /// Generation of the config in force.
    cfg_generation: Cell<u64>,
    pub global: Arc<Global>,
    pub(super) streams: RefCell<HashMap<StreamKey, LocalStream>>,
    registry: RefCell<Registry>,
    pub(super) outboxes: Vec<Rc<Outbox>>,
    claims: RefCell<HashMap<u64, PendingClaim>>,
    seq: Cell<u64>,
    pub conns: RefCell<HashMap<u64, ConnEntry>>,
    limits: StreamLimits,
    /// As owner: where each published stream's forward peers run.
    forward_placement: RefCell<HashMap<StreamKey, Vec<(ShardId, usize)>>>,
    /// Forward peers running on this shard.
    pub forward_peers: RefCell<HashMap<(StreamKey, usize), Rc<ForwardHandle>>>,
    /// Merged writes' zero-copy fan-out, RTMP and HTTP-FLV (made at the first merged write).
    splice: RefCell<Option<[SpliceFanout; 2]>>,
    splice_failed: Cell<bool>,
    /// Bytes and dropped frames of every connection, open and closed.
    pub totals: Rc<IoTotals>,
    /// Connections open on this shard.
    open: Cell<usize>,
    /// Merged writes for the shard's players (when `rtmp.mw_latency_ms` > 0).
    pub flusher: Option<Rc<Flusher>>,
}

impl Shard {
    pub fn new(id: ShardId, shards: usize, cfg: Arc<Config>, global: Arc<Global>) -> Rc<Shard> {
        let cap = cfg.server.mesh_channel_capacity;
        let window = std::time::Duration::from_millis(cfg.rtmp.mw_latency_ms);
        let flusher = (!window.is_zero()).then(|| Flusher::new(window));
        let limits = StreamLimits {
            chunk_size: cfg.rtmp.chunk_size,
            merged: flusher.is_some(),
            gop_cache: cfg.rtmp.gop_cache,
            gop_max_frames: cfg.rtmp.gop_cache_max_frames,
            gop_max_bytes: cfg.rtmp.gop_cache_max_bytes,
        };
        Rc::new(Shard {
            id,
            shards,
            cfg: RefCell::new(cfg),
            cfg_generation: Cell::new(0),
            global,
            streams: RefCell::new(HashMap::new()),
            registry: RefCell::new(Registry::new()),
            outboxes: (0..shards).map(|_| Outbox::new(cap)).collect(),
            claims: RefCell::new(HashMap::new()),
            seq: Cell::new(0),
            conns: RefCell::new(HashMap::new()),
            limits,
            forward_placement: RefCell::new(HashMap::new()),
            forward_peers: RefCell::new(HashMap::new()),
            totals: Rc::new(IoTotals::default()),
            splice: RefCell::new(None),
            splice_failed: Cell::new(false),
            open: Cell::new(0),
            flusher,
        })
    }

    /// The config in force (a cheap shared handle; hold it for the length of one decision).
    pub fn cfg(&self) -> Arc<Config> {
        self.cfg.borrow().clone()
    }

    /// Take a reloaded config if one was published since the last look.
    pub fn maybe_reload(&self) {
        let (generation, cfg) = match self.global.reloaded() {
            Some(r) if r.0 != self.cfg_generation.get() => r,
            _ => return,
        };
        *self.cfg.borrow_mut() = cfg;
        self.cfg_generation.set(generation);
        log::info!(
            "shard={} config reloaded (generation {generation})",
            self.id
        );
    }

    /// A stream's first packet since the last merged write: due one window from now.
    fn batch_started(&self, key: &StreamKey) {
        if let Some(f) = &self.flusher {
            f.stream_batch_started(key.clone());
        }
    }

    /// The merged write of these streams' batches (called by the flusher when they are due).
    pub fn write_stream_batches(&self, keys: &[StreamKey]) {
        let (mut iov_rtmp, mut iov_flv) = (Vec::new(), Vec::new());
        let mut streams = self.streams.borrow_mut();
        let mut fanout = self.splice.borrow_mut();
        let min = self.cfg().rtmp.splice_min_bytes;
        if fanout.is_none() && !self.splice_failed.get() && min > 0 {
            match SpliceFanout::new().and_then(|r| Ok([r, SpliceFanout::new()?])) {
                Ok(f) => *fanout = Some(f),
                Err(e) => {
                    self.splice_failed.set(true);
                    log::warn!(
                        "shard={} no pipes for zero-copy merged writes ({e}): copying instead",
                        self.id
                    );
                }
            }
        }
        for key in keys {
            if let Some(s) = streams.get_mut(key) {
                s.flush_batch(&mut iov_rtmp, &mut iov_flv, fanout.as_mut(), min);
            }
        }
    }

    /// A writer for a new connection (merged writes when the shard has a flusher).
    pub fn new_writer(&self) -> Rc<ConnWriter> {
        let cfg = self.cfg();
        ConnWriter::new(
            cfg.rtmp.player_queue_ms,
            cfg.stall_timeout(),
            self.flusher.clone(),
            Some(self.totals.clone()),
        )
    }

    pub fn outbox(&self, shard: ShardId) -> Rc<Outbox> {
        self.outboxes[shard].clone()
    }

    /// An id unique over all shards (connection ids, publish ids, epochs): never 0.
    pub fn new_id(&self) -> u64 {
        let n = self.seq.get() + 1;
        self.seq.set(n);
        n * self.shards as u64 + self.id as u64
    }

    fn send(&self, to: ShardId, msg: ShardMsg) {
        self.outboxes[to].push_control(msg);
    }

    pub fn owner_of(&self, key: &StreamKey) -> ShardId {
        key.owner_shard(self.shards)
    }

    /// Ask the owner for the right to publish `key`. Returns the publish id when granted.
    pub async fn claim_publish(&self, key: &StreamKey, conn_id: u64) -> Result<u64, ClaimRefused> {
        if let Some(s) = self.streams.borrow().get(key) {
            if matches!(s.source, Source::Local { .. }) {
                return Err(ClaimRefused::AlreadyPublished); // published on this very shard
            }
        }
        let max = self.cfg().server.max_streams;
        if max > 0 && self.global.live_streams.load(Ordering::Relaxed) >= max {
            return Err(ClaimRefused::MaxStreams(max));
        }
        let claim_id = self.new_id();
        let publish_id = self.new_id();
        let (tx, rx) = local_channel::new_bounded(1);
        self.claims.borrow_mut().insert(
            claim_id,
            PendingClaim {
                key: key.clone(),
                conn_id,
                publish_id,
                reply: tx,
            },
        );
        self.send(
            self.owner_of(key),
            ShardMsg::ClaimPublish {
                key: key.clone(),
                shard: self.id,
                claim_id,
                publish_id,
            },
        );
        match rx.recv().await {
            Some(true) => Ok(publish_id),
            _ => Err(ClaimRefused::AlreadyPublished),
        }
    }

    /// The owner granted a claim: the stream goes live here before anything else is handled,
    /// so subscriptions that follow the grant find it.
    fn grant(&self, claim: PendingClaim, subscribers: Vec<Subscriber>) {
        let PendingClaim {
            key,
            conn_id,
            publish_id,
            reply,
        } = claim;
        if reply.try_send(true).is_err() {
            // The connection went away while waiting: give the stream back at once.
            self.send(self.owner_of(&key), ShardMsg::Release { key, publish_id });
            return;
        }
        self.global.live_streams.fetch_add(1, Ordering::Relaxed);
        let mut streams = self.streams.borrow_mut();
        let s = streams
            .entry(key.clone())
            .or_insert_with(|| LocalStream::new(key.clone(), &self.limits));
        s.start_source(Source::Local {
            conn_id,
            publish_id,
        });
        s.remote_subs.clear();
        for sub in subscribers.into_iter().filter(|s| s.shard != self.id) {
            s.remote_subs.push(RemoteSub {
                shard: sub.shard,
                lagging: false,
            });
            self.send(
                sub.shard,
                ShardMsg::Snapshot {
                    key: key.clone(),
                    publish_id,
                    epoch: sub.epoch,
                    packets: Vec::new(),
                },
            );
        }
    }

    /// One frame from a local publisher: smooth its timestamp, encode it once, fan it out to
    /// this shard's players and to every subscribed shard.
    pub fn publish_frame(
        &self,
        key: &StreamKey,
        publish_id: u64,
        mut frame: Frame,
        metadata: bool,
    ) {
        let mut streams = self.streams.borrow_mut();
        let Some(s) = streams.get_mut(key) else {
            return;
        };
        if !matches!(s.source, Source::Local { publish_id: p, .. } if p == publish_id) {
            return;
        }
        frame.timestamp = s.smoother.smooth(frame.kind, frame.timestamp);
        let packet = Packet::new(frame, metadata, self.limits.chunk_size);
        if s.ingest(&packet) {
            self.batch_started(key);
        }
        let restart = packet.frame.keyframe || packet.frame.sequence_header || packet.metadata;
        for sub in &mut s.remote_subs {
            if sub.lagging && !restart {
                continue;
            }
            let msg = ShardMsg::Media {
                key: key.clone(),
                publish_id,
                packet: packet.clone(),
            };
            sub.lagging = !self.outboxes[sub.shard].try_push_media(msg);
        }
    }

    /// The local publisher stopped (or its connection closed).
    pub fn unpublish(&self, key: &StreamKey, publish_id: u64) {
        let mut streams = self.streams.borrow_mut();
        let Some(s) = streams.get_mut(key) else {
            return;
        };
        if !matches!(s.source, Source::Local { publish_id: p, .. } if p == publish_id) {
            return;
        }
        for sub in &s.remote_subs {
            self.send(
                sub.shard,
                ShardMsg::Unpublished {
                    key: key.clone(),
                    publish_id,
                },
            );
        }
        s.end_source();
        self.global.live_streams.fetch_sub(1, Ordering::Relaxed);
        if s.is_idle() {
            streams.remove(key);
        }
        self.send(
            self.owner_of(key),
            ShardMsg::Release {
                key: key.clone(),
                publish_id,
            },
        );
    }

    /// Add a player; the first player of a stream on this shard subscribes at the owner.
    pub fn add_player(&self, key: &StreamKey, player: PlayerRef) {
        let mut streams = self.streams.borrow_mut();
        let s = streams
            .entry(key.clone())
            .or_insert_with(|| LocalStream::new(key.clone(), &self.limits));
        if !s.subscribed() {
            s.epoch = self.new_id();
            self.send(
                self.owner_of(key),
                ShardMsg::Subscribe {
                    key: key.clone(),
                    shard: self.id,
                    epoch: s.epoch,
                },
            );
        }
        s.add_player(player);
    }

    pub fn remove_player(&self, key: &StreamKey, conn_id: u64, stream_id: u32) {
        let mut streams = self.streams.borrow_mut();
        let Some(s) = streams.get_mut(key) else {
            return;
        };
        s.remove_player(conn_id, stream_id);
        if !s.players.is_empty() {
            return;
        }
        if s.subscribed() {
            s.epoch = 0;
            self.send(
                self.owner_of(key),
                ShardMsg::Unsubscribe {
                    key: key.clone(),
                    shard: self.id,
                },
            );
        }
        if s.is_idle() {
            streams.remove(key);
        }
    }

    /// Take a connection slot for `peer`, or say which limit refuses it.
    pub fn admit(&self, peer: SocketAddr) -> Result<(), String> {
        let cfg_now = self.cfg();
        let cfg = &cfg_now.server;
        let total = self.global.connections.fetch_add(1, Ordering::Relaxed) + 1;
        let shard_open = self.open.get() + 1;
        let refuse = if total > cfg.max_connections {
            Some(format!("max_connections ({}) reached", cfg.max_connections))
        } else if cfg.max_connections_per_shard > 0 && shard_open > cfg.max_connections_per_shard {
            Some(format!(
                "max_connections_per_shard ({}) reached",
                cfg.max_connections_per_shard
            ))
        } else {
            let mut per_ip = self.global.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            let n = per_ip.entry(peer.ip()).or_insert(0);
            if cfg.max_connections_per_ip > 0 && *n >= cfg.max_connections_per_ip {
                Some(format!(
                    "max_connections_per_ip ({}) reached for {}",
                    cfg.max_connections_per_ip,
                    peer.ip()
                ))
            } else {
                *n += 1;
                None
            }
        };
        match refuse {
            Some(why) => {
                self.global.connections.fetch_sub(1, Ordering::Relaxed);
                Err(why)
            }
            None => {
                self.open.set(shard_open);
                Ok(())
            }
        }
    }

    /// Give back the slot `admit` took.
    pub fn release_slot(&self, peer: SocketAddr) {
        self.global.connections.fetch_sub(1, Ordering::Relaxed);
        self.open.set(self.open.get().saturating_sub(1));
        let mut per_ip = self.global.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per_ip.get_mut(&peer.ip()) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&peer.ip());
            }
        }
    }

    pub fn add_conn(&self, id: u64, entry: ConnEntry) {
        self.conns.borrow_mut().insert(id, entry);
    }

    /// A connection ended (its bytes are already in the shard totals).
    pub fn remove_conn(&self, id: u64) {
        self.conns.borrow_mut().remove(&id);
    }

    /// Disconnect client `id` if it is on this shard (its read sees end of stream).
    pub fn kick(&self, id: u64) -> bool {
        match self.conns.borrow().get(&id) {
            Some(c) => {
                c.kicked.set(true);
                // SAFETY: shutdown(2) on a descriptor owned by a live connection task.
                unsafe { libc::shutdown(c.fd, libc::SHUT_RDWR) };
                true
            }
            None => false,
        }
    }

    /// Which shard publishes `key` as this shard's owner registry knows it, if it owns `key`.
    pub fn registry_publisher(&self, key: &StreamKey) -> Option<ShardId> {
        self.registry.borrow().publisher(key)
    }

    /// Streams held on this shard: (key, live, players, frames in).
    pub fn stream_summaries(&self) -> Vec<(StreamKey, bool, usize, u64)> {
        self.streams
            .borrow()
            .values()
            .map(|s| (s.key.clone(), s.is_live(), s.players.len(), s.frames_in))
            .collect()
    }

    /// As owner, when a publish is granted: place one forward peer per destination, spread
    /// over the shards.
    fn start_forwards(&self, key: &StreamKey) {
        let targets = self.cfg().forward_targets(key.vhost(), key.app());
        if targets.is_empty() {
            return;
        }
        let base = self.owner_of(key);
        let mut placed = Vec::new();
        for (index, target) in targets.into_iter().enumerate() {
            let shard = (base + 1 + index) % self.shards;
            placed.push((shard, index));
            self.send(
                shard,
                ShardMsg::ForwardStart {
                    key: key.clone(),
                    index,
                    target,
                },
            );
        }
        self.forward_placement
            .borrow_mut()
            .insert(key.clone(), placed);
    }

    fn stop_forwards(&self, key: &StreamKey) {
        let placed = self.forward_placement.borrow_mut().remove(key);
        for (shard, index) in placed.unwrap_or_default() {
            self.send(
                shard,
                ShardMsg::ForwardStop {
                    key: key.clone(),
                    index,
                },
            );
        }
    }

    /// A message from another shard (or from this one, through its own outbox).
    pub fn handle_msg(self: &Rc<Self>, msg: ShardMsg) {
        match msg {
            ShardMsg::Subscribe { key, shard, epoch } => {
                let publisher = self.registry.borrow_mut().subscribe(&key, shard, epoch);
                if let Some(p) = publisher.filter(|&p| p != shard) {
                    self.send(p, ShardMsg::AddSubscriber { key, shard, epoch });
                }
            }
            ShardMsg::Unsubscribe { key, shard } => {
                let publisher = self.registry.borrow_mut().unsubscribe(&key, shard);
                if let Some(p) = publisher.filter(|&p| p != shard) {
                    self.send(p, ShardMsg::RemoveSubscriber { key, shard });
                }
            }
            ShardMsg::ClaimPublish {
                key,
                shard,
                claim_id,
                publish_id,
            } => {
                let r = self.registry.borrow_mut().claim(&key, shard, publish_id);
                let (granted, subscribers) = match r {
                    Ok(subs) => (true, subs),
                    Err(_) => (false, Vec::new()),
                };
                if granted {
                    self.start_forwards(&key);
                }
                self.send(
                    shard,
                    ShardMsg::ClaimReply {
                        claim_id,
                        granted,
                        subscribers,
                    },
                );
            }
            ShardMsg::ClaimReply {
                claim_id,
                granted,
                subscribers,
            } => {
                let claim = self.claims.borrow_mut().remove(&claim_id);
                if let Some(claim) = claim {
                    if granted {
                        self.grant(claim, subscribers);
                    } else {
                        let _ = claim.reply.try_send(false);
                    }
                }
            }
            ShardMsg::Release { key, publish_id } => {
                if self.registry.borrow_mut().release(&key, publish_id) {
                    self.stop_forwards(&key);
                }
            }
            ShardMsg::ForwardStart { key, index, target } => {
                let h = ForwardHandle::new(key.clone(), target);
                let old = self
                    .forward_peers
                    .borrow_mut()
                    .insert((key, index), h.clone());
                if let Some(old) = old {
                    old.stop();
                }
                glommio::spawn_local(forward::run(self.clone(), h)).detach();
            }
            ShardMsg::ForwardStop { key, index } => {
                let h = self.forward_peers.borrow_mut().remove(&(key, index));
                if let Some(h) = h {
                    h.stop();
                }
            }
            ShardMsg::AddSubscriber { key, shard, epoch } => {
                let mut streams = self.streams.borrow_mut();
                let Some(s) = streams.get_mut(&key) else {
                    return;
                };
                let Source::Local { publish_id, .. } = s.source else {
                    return; // not published here (any more); the next claim lists the shard
                };
                s.remote_subs.retain(|r| r.shard != shard);
                s.remote_subs.push(RemoteSub {
                    shard,
                    lagging: false,
                });
                let packets = s.snapshot();
                self.send(
                    shard,
                    ShardMsg::Snapshot {
                        key,
                        publish_id,
                        epoch,
                        packets,
                    },
                );
            }
            ShardMsg::RemoveSubscriber { key, shard } => {
                if let Some(s) = self.streams.borrow_mut().get_mut(&key) {
                    s.remote_subs.retain(|r| r.shard != shard);
                }
            }
            ShardMsg::Snapshot {
                key,
                publish_id,
                epoch,
                packets,
            } => {
                let mut streams = self.streams.borrow_mut();
                let Some(s) = streams.get_mut(&key) else {
                    return;
                };
                if s.epoch != epoch || matches!(s.source, Source::Local { .. }) {
                    return; // a stale subscription
                }
                s.start_source(Source::Remote { publish_id });
                let mut started = false;
                for p in &packets {
                    started |= s.ingest(p);
                }
                if started {
                    self.batch_started(&key);
                }
            }
            ShardMsg::Media {
                key,
                publish_id,
                packet,
            } => {
                let started = match self.streams.borrow_mut().get_mut(&key) {
                    Some(s) if s.source == (Source::Remote { publish_id }) => s.ingest(&packet),
                    _ => false,
                };
                if started {
                    self.batch_started(&key);
                }
            }
            ShardMsg::Unpublished { key, publish_id } => {
                if let Some(s) = self.streams.borrow_mut().get_mut(&key) {
                    if s.source == (Source::Remote { publish_id }) {
                        s.end_source();
                    }
                }
            }
        }
    }
}
