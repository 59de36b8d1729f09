//! The owner role: the directory entries of the streams whose key hashes to this shard. It
//! grants publishes (one publisher per stream), introduces subscribers to the publisher's
//! shard, and places the stream's forward peers.

use crate::config::Config;
use crate::server::ids::ShardId;
use crate::server::key::StreamKey;
use crate::server::links::Links;
use crate::server::mesh::{ClaimRefused, OwnerMsg, ShardMsg, SinkMsg, SourceMsg};
use crate::server::registry::Registry;
use std::collections::HashMap;

/// The owner's state.
#[derive(Default)]
pub struct Owner {
    registry: Registry,
    /// Where each published stream's forward peers run: (shard, destination index).
    forward_placement: HashMap<StreamKey, Vec<(ShardId, usize)>>,
}

impl Owner {
    /// Which shard publishes `key`, if this shard owns it and it is published.
    pub fn publisher(&self, key: &StreamKey) -> Option<ShardId> {
        self.registry.publisher(key)
    }

    /// Handle one directory message.
    pub fn handle(&mut self, links: &Links, cfg: &Config, msg: OwnerMsg) {
        match msg {
            OwnerMsg::Subscribe { key, shard, epoch } => {
                let publisher = self.registry.subscribe(&key, shard, epoch);
                if let Some(p) = publisher.filter(|&p| p != shard) {
                    let m = SourceMsg::AddSubscriber { key, shard, epoch };
                    links.send(p, ShardMsg::Source(m));
                }
            }
            OwnerMsg::Unsubscribe { key, shard } => {
                let publisher = self.registry.unsubscribe(&key, shard);
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
            } => {
                let result = self
                    .registry
                    .claim(&key, shard, publish_id)
                    .map_err(|_| ClaimRefused::AlreadyPublished);
                if result.is_ok() {
                    self.start_forwards(links, cfg, &key);
                }
                let m = SourceMsg::ClaimReply { claim_id, result };
                links.send(shard, ShardMsg::Source(m));
            }
            OwnerMsg::Release { key, publish_id } => {
                if self.registry.release(&key, publish_id) {
                    self.stop_forwards(links, &key);
                }
            }
        }
    }

    /// A publish was granted: place one forward peer per destination, spread over the shards.
    fn start_forwards(&mut self, links: &Links, cfg: &Config, key: &StreamKey) {
        let targets = cfg.forward_targets(key.vhost(), key.app());
        if targets.is_empty() {
            return;
        }
        let base = links.owner_of(key);
        let mut placed = Vec::new();
        for (index, target) in targets.into_iter().enumerate() {
            let shard = (base + 1 + index) % links.shards;
            placed.push((shard, index));
            let m = SinkMsg::ForwardStart {
                key: key.clone(),
                index,
                target,
            };
            links.send(shard, ShardMsg::Sink(m));
        }
        self.forward_placement.insert(key.clone(), placed);
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
