//! One shard: its roles' state, its connections and its config, and the dispatch of messages
//! from other shards to the role that handles them. Single-threaded: plain `RefCell`s, no
//! locks. A borrow is never held across an await.

use super::batch_iov::BatchIov;
use super::conns::Conns;
use super::counters::IoTotals;
use super::global::Global;
use super::ids::{ConnId, IdGen, ShardId};
use super::key::StreamKey;
use super::links::Links;
use super::mesh::{ClaimRefused, ControlMsg, Outbox, ShardMsg};
use super::notify::LocalNotify;
use super::roles::forward_host::ForwardHost;
use super::roles::owner::Owner;
use super::roles::source::{ClaimRequest, SourceRole};
use super::roles::{sink, source, Effect, StreamTable};
use super::splice::SpliceFanout;
use super::stream::{PlayerRef, StreamLimits};
use super::writer::{ConnWriter, Flusher};
use crate::config::Config;
use crate::lb::control::{DropCandidate, DropRequest};
use crate::media::Frame;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

/// Everything one shard holds.
pub struct Shard {
    /// Ties to the other shards.
    pub links: Links,
    /// The config in force; replaced whole on reload.
    cfg: RefCell<Arc<Config>>,
    /// The owner role's directory.
    pub owner: RefCell<Owner>,
    source: RefCell<SourceRole>,
    /// The streams held here (as source, as sink, or both).
    pub streams: RefCell<StreamTable>,
    /// Forward peers running here.
    pub forwards: RefCell<ForwardHost>,
    /// The connections on this shard.
    pub conns: Conns,
    /// Merged writes' zero-copy fan-out, RTMP and HTTP-FLV (made at the first merged write).
    splice: RefCell<Option<[SpliceFanout; 2]>>,
    splice_failed: Cell<bool>,
    /// Bytes and dropped frames of every connection, open and closed.
    pub totals: Rc<IoTotals>,
    limits: StreamLimits,
    stopping: Cell<bool>,
    /// Recent answers of coworkers (which origin publishes a stream).
    pub coworker_cache: RefCell<crate::cluster::coworkers::CoworkerCache>,
    /// Woken once when shutdown starts (the accept loops wait on it).
    stop_notify: [LocalNotify; 4],
}

impl Shard {
    /// A shard `id` of `shards`.
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
        // Positive coworker answers live `coworker_cache_ms`, negative ones a quarter of that
        // (a stream that starts must be found soon).
        let ttl = std::time::Duration::from_millis(cfg.cluster.coworker_cache_ms);
        let coworker_cache = crate::cluster::coworkers::CoworkerCache::new(ttl, ttl / 4, 4096);
        Rc::new(Shard {
            links: Links {
                id,
                shards,
                outboxes: (0..shards).map(|_| Outbox::new(cap)).collect(),
                flusher,
                ids: IdGen::new(id),
                global,
            },
            cfg: RefCell::new(cfg),
            owner: RefCell::default(),
            source: RefCell::default(),
            streams: RefCell::default(),
            forwards: RefCell::default(),
            conns: Conns::default(),
            splice: RefCell::new(None),
            splice_failed: Cell::new(false),
            totals: Rc::new(IoTotals::default()),
            limits,
            stopping: Cell::new(false),
            coworker_cache: RefCell::new(coworker_cache),
            stop_notify: Default::default(),
        })
    }

    /// This shard's index.
    pub fn id(&self) -> ShardId {
        self.links.id
    }

    /// Process-wide figures.
    pub fn global(&self) -> &Arc<Global> {
        &self.links.global
    }

    /// The config in force (a cheap shared handle; hold it for the length of one decision).
    pub fn cfg(&self) -> Arc<Config> {
        self.cfg.borrow().clone()
    }

    /// How long a publisher's socket fills between merged reads (`rtmp.mr_latency_ms`; zero:
    /// merged reads are off).
    pub fn merged_read_period(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.cfg.borrow().rtmp.mr_latency_ms)
    }

    /// An id unique over all shards, for a new connection.
    pub fn new_conn_id(&self) -> ConnId {
        self.links.ids.next()
    }

    /// An id unique over all shards (seeds, publish ids).
    pub fn new_id(&self) -> u64 {
        self.links.new_id()
    }

    /// The shard whose directory holds `key`.
    pub fn owner_of(&self, key: &StreamKey) -> ShardId {
        self.links.owner_of(key)
    }

    /// Queue a message that must arrive at shard `to`.
    pub fn send(&self, to: ShardId, msg: ShardMsg) {
        self.links.send(to, msg);
    }

    /// The outbox to `shard`.
    pub fn outbox(&self, shard: ShardId) -> Rc<Outbox> {
        self.links.outboxes[shard].clone()
    }

    /// The merged-write flusher, when writes are merged.
    pub fn flusher(&self) -> Option<Rc<Flusher>> {
        self.links.flusher.clone()
    }

    /// Shutdown has started: stop accepting, end connections.
    pub fn is_stopping(&self) -> bool {
        self.stopping.get()
    }

    /// Resolves once shutdown has started (`which` names one of three waiters: RTMP, HTTP,
    /// agent).
    pub async fn stopped(&self, which: usize) {
        while !self.stopping.get() {
            self.stop_notify[which].wait().await;
        }
    }

    /// A writer for a new connection (merged writes when the shard has a flusher).
    pub fn new_writer(&self) -> Rc<ConnWriter> {
        let cfg = self.cfg();
        ConnWriter::new(
            cfg.rtmp.player_queue_ms,
            cfg.stall_timeout(),
            self.flusher(),
            Some(self.totals.clone()),
        )
    }

    /// A proxy relay leg's writer: written as soon as the shard is idle, never held for the
    /// merged-write window. What the origin batched arrives batched anyway; holding it again on
    /// each leg added the window twice (proxy-bench at 100 ms windows: +238-246 ms p99 over
    /// playing from the origin, HAProxy +52-97 ms).
    pub fn new_relay_writer(&self, totals: bool) -> Rc<ConnWriter> {
        let cfg = self.cfg();
        ConnWriter::new(
            cfg.rtmp.player_queue_ms,
            cfg.stall_timeout(),
            None,
            totals.then(|| self.totals.clone()),
        )
    }

    /// A message from another shard (or from this one, through its own outbox), handed to the
    /// role it is for. Work that needs the whole shard comes back as an effect.
    pub fn handle_msg(&self, msg: ShardMsg) -> Option<Effect> {
        match msg {
            ShardMsg::Owner(m) => {
                let cfg = self.cfg();
                return self.owner.borrow_mut().handle(&self.links, &cfg, m);
            }
            ShardMsg::Source(m) => {
                let mut streams = self.streams.borrow_mut();
                self.source
                    .borrow_mut()
                    .handle(&self.links, &mut streams, &self.limits, m);
            }
            ShardMsg::Sink(m) => {
                let mut streams = self.streams.borrow_mut();
                let mut forwards = self.forwards.borrow_mut();
                return sink::handle(&self.links, &mut streams, &mut forwards, m);
            }
            ShardMsg::Control(m) => self.control(m),
        }
        None
    }

    /// Kicks, reloads, drops and shutdown.
    pub fn control(&self, msg: ControlMsg) {
        match msg {
            ControlMsg::Drop { req, tally } => tally.answer(self.drop_matching(&req)),
            ControlMsg::Kick(id) => {
                if !self.conns.kick(id) {
                    log::debug!("shard={} kick: no client {id} here", self.id());
                }
            }
            ControlMsg::Reload { cfg, generation } => {
                *self.cfg.borrow_mut() = cfg;
                log::info!(
                    "shard={} config reloaded (generation {generation})",
                    self.id()
                );
            }
            ControlMsg::Shutdown => {
                self.global().lb.set_stopping();
                if !self.stopping.replace(true) {
                    for n in &self.stop_notify {
                        n.notify();
                    }
                }
            }
        }
    }

    /// Close the publishers and players here that `req` matches; returns how many.
    pub fn drop_matching(&self, req: &DropRequest) -> usize {
        let mut hit = Vec::new();
        self.conns.for_each(|id, e| {
            let kind = e.kind.get();
            if !(kind.is_publisher() || kind.is_player()) {
                return;
            }
            let stream = e.stream.borrow();
            let Some(key) = stream.as_ref() else { return };
            let c = DropCandidate {
                app: key.app(),
                name: key.stream_name(),
                is_publisher: kind.is_publisher(),
                client_id: id.get(),
                peer_ip: e.peer.ip(),
            };
            if req.matches(&c) {
                hit.push(id);
            }
        });
        for id in &hit {
            self.conns.kick(*id);
        }
        if !hit.is_empty() {
            log::info!("shard={} control drop: {} sessions", self.id(), hit.len());
        }
        hit.len()
    }

    /// Ask the owner for the right to publish `key` (`pulled`: for an upstream). Returns the
    /// publish id when granted.
    pub async fn claim_publish(
        &self,
        key: &StreamKey,
        conn_id: ConnId,
        pulled: bool,
        query: &str,
    ) -> Result<u64, ClaimRefused> {
        let max = self.cfg().server.max_streams;
        let req = ClaimRequest {
            conn_id,
            pulled,
            query,
        };
        let claim = {
            let streams = self.streams.borrow();
            self.source
                .borrow_mut()
                .claim(&self.links, &streams, key, req, max)?
        };
        match claim.answer.recv().await {
            Some(Ok(())) => Ok(claim.publish_id),
            Some(Err(why)) => Err(why),
            None => Err(ClaimRefused::AlreadyPublished),
        }
    }

    /// One frame from a local publisher.
    pub fn publish_frame(&self, key: &StreamKey, publish_id: u64, frame: Frame, metadata: bool) {
        self.publish_frames(key, publish_id, std::iter::once((frame, metadata)));
    }

    /// Frames from a local publisher, in order (one read's worth: one table lookup).
    pub fn publish_frames(
        &self,
        key: &StreamKey,
        publish_id: u64,
        frames: impl Iterator<Item = (Frame, bool)>,
    ) {
        let mut streams = self.streams.borrow_mut();
        let chunk = self.limits.chunk_size;
        source::publish_frames(&self.links, &mut streams, chunk, key, publish_id, frames);
    }

    /// The local publisher stopped (or its connection closed).
    pub fn unpublish(&self, key: &StreamKey, publish_id: u64) {
        source::unpublish(&self.links, &mut self.streams.borrow_mut(), key, publish_id);
    }

    /// Add a player of `key` on this shard.
    /// `query` is the player's stream query (used if the stream is pulled from an origin).
    pub fn add_player(&self, key: &StreamKey, player: PlayerRef, query: &str) {
        let mut streams = self.streams.borrow_mut();
        sink::add_player(&self.links, &mut streams, &self.limits, key, player, query);
    }

    /// Remove a player of `key` from this shard.
    pub fn remove_player(&self, key: &StreamKey, conn_id: ConnId, stream_id: u32) {
        let mut streams = self.streams.borrow_mut();
        sink::remove_player(&self.links, &mut streams, key, conn_id, stream_id);
    }

    /// Does a source feed `key` on this shard now?
    pub fn stream_live(&self, key: &StreamKey) -> bool {
        self.streams.borrow().get(key).is_some_and(|s| s.is_live())
    }

    /// Which shard publishes `key` as this shard's directory knows it, if it owns `key`.
    pub fn registry_publisher(&self, key: &StreamKey) -> Option<ShardId> {
        self.owner.borrow().publisher(key)
    }

    /// Streams held on this shard: (key, live, players, frames in).
    pub fn stream_summaries(&self) -> Vec<(StreamKey, bool, usize, u64)> {
        self.streams
            .borrow()
            .values()
            .map(|s| (s.key.clone(), s.is_live(), s.players.len(), s.frames_in))
            .collect()
    }

    /// The merged write of these streams' batches (called by the flusher when they are due).
    pub fn write_stream_batches(&self, keys: &[StreamKey]) {
        let (mut iov_rtmp, mut iov_flv) = (BatchIov::default(), BatchIov::default());
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
                        self.id()
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
}
