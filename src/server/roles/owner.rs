//! The owner role: the directory entries of the streams whose key hashes to this shard. It
//! grants publishes (one publisher per stream), introduces subscribers to the publisher's
//! shard, and places the stream's forward peers.

use super::Effect;
use crate::cluster::linger::Event;
use crate::config::{Config, ForwardTarget, OnRemote};
use crate::server::ids::ShardId;
use crate::server::key::StreamKey;
use crate::server::links::Links;
use crate::server::mesh::{ClaimRefused, OwnerMsg, ShardMsg, SinkMsg, SourceMsg};
use crate::server::registry::Registry;
use crate::server::upstream_peer::{UpstreamHandle, UpstreamKind};
use std::collections::HashMap;
use std::rc::Rc;

/// The owner's state.
#[derive(Default)]
pub struct Owner {
    registry: Registry,
    /// Where each published stream's forward peers run: (shard, destination index).
    forward_placement: HashMap<StreamKey, Vec<(ShardId, usize)>>,
    /// Streams pulled from elsewhere (edge or relay), one upstream each for the process.
    upstreams: HashMap<StreamKey, Rc<UpstreamHandle>>,
}

impl Owner {
    /// Which shard publishes `key`, if this shard owns it and it is published.
    pub fn publisher(&self, key: &StreamKey) -> Option<ShardId> {
        self.registry.publisher(key)
    }

    /// The upstreams this shard runs, for the stats.
    pub fn upstreams(&self) -> impl Iterator<Item = &Rc<UpstreamHandle>> {
        self.upstreams.values()
    }

    /// An upstream's task ended (no players, nothing running): forget it.
    pub fn upstream_done(&mut self, h: &Rc<UpstreamHandle>) {
        if self.upstreams.get(&h.key).is_some_and(|u| Rc::ptr_eq(u, h)) {
            self.upstreams.remove(&h.key);
        }
    }

    /// Does a play of `key` here pull it from elsewhere when nobody publishes it here?
    fn pull_kind(cfg: &Config, key: &StreamKey) -> Option<UpstreamKind> {
        let c = cfg.cluster_for(key.vhost());
        if c.is_edge() {
            Some(UpstreamKind::Edge)
        } else if c.has_coworkers() && c.on_remote == OnRemote::Relay {
            Some(UpstreamKind::Relay)
        } else {
            None
        }
    }

    /// Handle one directory message; starting an upstream comes back as an effect.
    pub fn handle(&mut self, links: &Links, cfg: &Config, msg: OwnerMsg) -> Option<Effect> {
        match msg {
            OwnerMsg::Subscribe {
                key,
                shard,
                epoch,
                query,
            } => {
                let before = self.registry.subscribers(&key);
                let publisher = self.registry.subscribe(&key, shard, epoch);
                let joined = self.registry.subscribers(&key) > before;
                let mut effect = None;
                let pulled = self.upstreams.get(&key).cloned();
                if let Some(h) = pulled {
                    if joined {
                        h.push(Event::PlayerJoined);
                    }
                } else if let Some(kind) =
                    Self::pull_kind(cfg, &key).filter(|_| publisher.is_none())
                {
                    let h = UpstreamHandle::new(key.clone(), kind, links.ids.next(), query);
                    self.upstreams.insert(key.clone(), h.clone());
                    h.push(Event::PlayerJoined);
                    effect = Some(Effect::SpawnUpstream(h));
                }
                if let Some(p) = publisher.filter(|&p| p != shard) {
                    let m = SourceMsg::AddSubscriber { key, shard, epoch };
                    links.send(p, ShardMsg::Source(m));
                }
                return effect;
            }
            OwnerMsg::Unsubscribe { key, shard } => {
                let before = self.registry.subscribers(&key);
                let publisher = self.registry.unsubscribe(&key, shard);
                if self.registry.subscribers(&key) < before {
                    if let Some(h) = self.upstreams.get(&key) {
                        h.push(Event::PlayerLeft);
                    }
                }
                if let Some(p) = publisher.filter(|&p| p != shard) {
                    let m = SourceMsg::RemoveSubscriber { key, shard };
                    links.send(p, ShardMsg::Source(m));
                }
            }
            OwnerMsg::ClaimPublish {
                key,
                shard,
                claim_id,
                publish_id,
                pulled,
                query,
            } => {
                let result = self
                    .registry
                    .claim(&key, shard, publish_id)
                    .map_err(|_| ClaimRefused::AlreadyPublished);
                if result.is_ok() && !pulled {
                    self.start_forwards(links, cfg, &key, &query);
                }
                let m = SourceMsg::ClaimReply { claim_id, result };
                links.send(shard, ShardMsg::Source(m));
            }
            OwnerMsg::Release { key, publish_id } => {
                if self.registry.release(&key, publish_id) {
                    self.stop_forwards(links, &key);
                }
            }
            OwnerMsg::AddForwards {
                key,
                publish_id,
                targets,
            } => {
                // The backend may answer after the publisher left: nothing to forward then.
                if self.registry.is_current(&key, publish_id) {
                    let peers = targets.into_iter().map(|t| (t, String::new())).collect();
                    self.place_forwards(links, &key, peers);
                } else {
                    log::info!(
                        "shard={} forward backend answer for stream={key} came after its publish ended",
                        links.id
                    );
                }
            }
        }
        None
    }

    /// A publish was granted: place one forward peer per destination, spread over the shards.
    fn start_forwards(&mut self, links: &Links, cfg: &Config, key: &StreamKey, query: &str) {
        let mut peers: Vec<(Vec<_>, String)> = cfg
            .forward_targets(key.vhost(), key.app())
            .into_iter()
            .map(|t| (vec![t], String::new()))
            .collect();
        let cluster = cfg.cluster_for(key.vhost());
        if cluster.is_edge() {
            // A publish on an edge is pushed to its origins, failing over between them, with
            // the publisher's query (an origin checks the stream's token where its secret is).
            peers.push((cluster.origin_targets(), query.to_string()));
        }
        self.place_forwards(links, key, peers);
    }

    /// Place one forward peer per entry of `peers`, spread over the shards after the owner,
    /// numbered after the stream's peers so far (so `stop_forwards` stops them all).
    fn place_forwards(
        &mut self,
        links: &Links,
        key: &StreamKey,
        mut peers: Vec<(Vec<ForwardTarget>, String)>,
    ) {
        peers.retain(|(p, _)| !p.is_empty());
        if peers.is_empty() {
            return;
        }
        let base = links.owner_of(key);
        let placed = self.forward_placement.entry(key.clone()).or_default();
        let first = placed.iter().map(|&(_, i)| i + 1).max().unwrap_or(0);
        for (index, (targets, query)) in (first..).zip(peers) {
            let shard = (base + 1 + index) % links.shards;
            placed.push((shard, index));
            let m = SinkMsg::ForwardStart {
                key: key.clone(),
                index,
                targets,
                query,
            };
            links.send(shard, ShardMsg::Sink(m));
        }
    }

    fn stop_forwards(&mut self, links: &Links, key: &StreamKey) {
        let placed = self.forward_placement.remove(key);
        for (shard, index) in placed.unwrap_or_default() {
            let m = SinkMsg::ForwardStop {
                key: key.clone(),
                index,
            };
            links.send(shard, ShardMsg::Sink(m));
        }
    }
}
