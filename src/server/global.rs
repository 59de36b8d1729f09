//! State every shard can see, never touched on the media path: the stats board and the
//! counters that admission and stream limits need over the whole process.

use super::board::Board;
use super::key::StreamKey;
use super::lb_state::LbState;
use crate::control_plane::Calls;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;

/// Process-wide figures shared by the shards (atomics, and one lock taken on connect and close).
pub struct Global {
    /// Open client connections over all shards.
    pub connections: AtomicUsize,
    /// The stats board the HTTP handlers read.
    pub board: Board,
    /// Open connections per client address (touched on connect and close only).
    pub per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Streams being published, over all shards.
    pub live_streams: AtomicUsize,
    /// Outbound HTTP calls (hooks, coworkers, backends), on the control thread.
    pub calls: Calls,
    /// Drain state, agent weight and start-up, for the balancer.
    pub lb: LbState,
    /// Streams published in this process (changed on publish start and end only), for the
    /// clusters API and redirect decisions.
    published: Mutex<HashSet<StreamKey>>,
}

impl Global {
    /// Figures for a server of `shards` shards.
    pub fn new(shards: usize, calls: Calls) -> Global {
        Global {
            connections: AtomicUsize::new(0),
            board: Board::new(shards),
            per_ip: Mutex::new(HashMap::new()),
            live_streams: AtomicUsize::new(0),
            calls,
            lb: LbState::new(shards),
            published: Mutex::default(),
        }
    }

    /// A publish of `key` started (`true`) or ended (`false`).
    pub fn set_published(&self, key: &StreamKey, live: bool) {
        let mut p = self.published.lock().unwrap_or_else(|e| e.into_inner());
        if live {
            p.insert(key.clone());
        } else {
            p.remove(key);
        }
    }

    /// Is `key` published in this process?
    pub fn is_published(&self, key: &StreamKey) -> bool {
        self.published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key)
    }
}
