//! One shard: the streams it holds (as owner registry, as publisher's shard, as a shard with
//! players), and the handlers for messages from other shards. Single-threaded: plain `RefCell`s,
//! no locks. A borrow is never held across an await.

use super::forward::{self, ForwardHandle};
use super::key::StreamKey;
use super::mesh::{Outbox, ShardMsg};
use super::packet::Packet;
use super::registry::{Registry, ShardId, Subscriber};
use super::stream::{LocalStream, PlayerRef, RemoteSub, Source, StreamLimits};
use crate::config::Config;
use crate::media::Frame;
use glommio::channels::local_channel::{self, LocalSender};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::unix::io::RawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;

/// State every shard can see: only counters and flags, never on the media path.
#[derive(Default)]
pub struct Global {
    pub connections: AtomicUsize,
    pub shutdown: AtomicBool,
}

struct PendingClaim {
    key: StreamKey,
    conn_id: u64,
    publish_id: u64,
    reply: LocalSender<bool>,
}

/// A live connection, for shutdown and logs.
pub struct ConnEntry {
    pub fd: RawFd,
}

pub struct Shard {
    pub id: ShardId,
    pub shards: usize,
    pub cfg: Arc<Config>,
    pub global: Arc<Global>,
    streams: RefCell<HashMap<StreamKey, LocalStream>>,
    registry: RefCell<Registry>,
    outboxes: Vec<Rc<Outbox>>,
    claims: RefCell<HashMap<u64, PendingClaim>>,
    seq: Cell<u64>,
    pub conns: RefCell<HashMap<u64, ConnEntry>>,
    limits: StreamLimits,
    /// As owner: where each published stream's forward peers run.
    forward_placement: RefCell<HashMap<StreamKey, Vec<(ShardId, usize)>>>,
    /// Forward peers running on this shard.
    pub forward_peers: RefCell<HashMap<(StreamKey, usize), Rc<ForwardHandle>>>,
}

impl Shard {
    pub fn new(id: ShardId, shards: usize, cfg: Arc<Config>, global: Arc<Global>) -> Rc<Shard> {
        let cap = cfg.server.mesh_channel_capacity;
        let limits = StreamLimits {
            chunk_size: cfg.rtmp.chunk_size,
            gop_cache: cfg.rtmp.gop_cache,
            gop_max_frames: cfg.rtmp.gop_cache_max_frames,
            gop_max_bytes: cfg.rtmp.gop_cache_max_bytes,
        };
        Rc::new(Shard {
            id,
            shards,
            cfg,
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
        })
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
    pub async fn claim_publish(&self, key: &StreamKey, conn_id: u64) -> Option<u64> {
        if let Some(s) = self.streams.borrow().get(key) {
            if matches!(s.source, Source::Local { .. }) {
                return None; // fast refusal: published on this very shard
            }
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
            Some(true) => Some(publish_id),
            _ => None,
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
        s.ingest(&packet);
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
        let targets = self.cfg.forward_targets(key.vhost(), key.app());
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
                for p in &packets {
                    s.ingest(p);
                }
            }
            ShardMsg::Media {
                key,
                publish_id,
                packet,
            } => {
                if let Some(s) = self.streams.borrow_mut().get_mut(&key) {
                    if s.source == (Source::Remote { publish_id }) {
                        s.ingest(&packet);
                    }
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
