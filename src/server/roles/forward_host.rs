//! The forward peers a shard runs (placed here by the streams' owners).

use super::Effect;
use crate::config::ForwardTarget;
use crate::server::forward_peer::ForwardHandle;
use crate::server::key::StreamKey;
use std::collections::HashMap;
use std::rc::Rc;

/// Forward peers running on this shard, by (stream, destination index).
#[derive(Default)]
pub struct ForwardHost {
    peers: HashMap<(StreamKey, usize), Rc<ForwardHandle>>,
}

impl ForwardHost {
    /// Start peer `index` of `key` (replacing a stale one); the run loop spawns its task.
    pub fn start(
        &mut self,
        key: StreamKey,
        index: usize,
        targets: Vec<ForwardTarget>,
        query: String,
    ) -> Effect {
        let h = ForwardHandle::new(key.clone(), targets, query);
        if let Some(old) = self.peers.insert((key, index), h.clone()) {
            old.stop();
        }
        Effect::SpawnForward(h)
    }

    /// Stop peer `index` of `key`.
    pub fn stop(&mut self, key: StreamKey, index: usize) {
        if let Some(h) = self.peers.remove(&(key, index)) {
            h.stop();
        }
    }

    /// The peers, for the stats.
    pub fn peers(&self) -> impl Iterator<Item = &Rc<ForwardHandle>> {
        self.peers.values()
    }
}
