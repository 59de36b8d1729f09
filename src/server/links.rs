//! What a shard's roles need of the shard they run on: who it is, its outboxes to every shard,
//! its flusher and its id source. Plain references, so the roles need not know `Shard`.

use super::global::Global;
use super::ids::{IdGen, ShardId};
use super::key::StreamKey;
use super::mesh::{Outbox, ShardMsg};
use super::writer::Flusher;
use std::rc::Rc;
use std::sync::Arc;

/// One shard's ties to the others.
pub struct Links {
    /// This shard.
    pub id: ShardId,
    /// How many shards there are.
    pub shards: usize,
    /// One outbox per destination shard (this one's included: it loops back).
    pub outboxes: Vec<Rc<Outbox>>,
    /// Merged writes for the shard's players (when `rtmp.mw_latency_ms` > 0).
    pub flusher: Option<Rc<Flusher>>,
    /// Ids unique over all shards.
    pub ids: IdGen,
    /// Process-wide figures.
    pub global: Arc<Global>,
}

impl Links {
    /// Queue a message that must arrive at shard `to`.
    pub fn send(&self, to: ShardId, msg: ShardMsg) {
        self.outboxes[to].push_control(msg);
    }

    /// The shard whose directory holds `key`.
    pub fn owner_of(&self, key: &StreamKey) -> ShardId {
        key.owner_shard(self.shards)
    }

    /// A stream's first packet since the last merged write: due one window from now.
    pub fn batch_started(&self, key: &StreamKey) {
        if let Some(f) = &self.flusher {
            f.stream_batch_started(key.clone());
        }
    }

    /// A fresh id (publish ids, epochs, claim ids).
    pub fn new_id(&self) -> u64 {
        self.ids.next().get()
    }
}
