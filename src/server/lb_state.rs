//! The node's standing with a load balancer, shared by every shard and the signal thread: the
//! admin state the operator set (ready, drain), the agent's current weight, and whether every
//! shard is up yet. Read by the agent-check responder and `/healthz`.

use crate::lb::agent::{AdminState, MAX_WEIGHT};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

/// What `/healthz` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Every shard is up and the node takes new work: 200.
    Serving,
    /// Not every shard is up yet: 503.
    Starting,
    /// Draining (API or SIGTERM grace) or stopping: 503.
    Draining,
}

impl Health {
    /// The HTTP status for `option httpchk`.
    pub fn status(self) -> u16 {
        match self {
            Health::Serving => 200,
            Health::Starting | Health::Draining => 503,
        }
    }

    /// The word in the body.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Serving => "serving",
            Health::Starting => "starting",
            Health::Draining => "draining",
        }
    }
}

/// Atomics, so the signal thread and any shard read and set them without a message.
pub struct LbState {
    admin: AtomicU8,
    weight: AtomicU8,
    ready_shards: AtomicUsize,
    shards: usize,
    stopping: AtomicBool,
}

impl LbState {
    /// A node of `shards` shards, ready, at full weight, none of them up yet.
    pub fn new(shards: usize) -> LbState {
        LbState {
            admin: AtomicU8::new(encode(AdminState::Ready)),
            weight: AtomicU8::new(MAX_WEIGHT),
            ready_shards: AtomicUsize::new(0),
            shards,
            stopping: AtomicBool::new(false),
        }
    }

    /// The admin state the operator set.
    pub fn admin(&self) -> AdminState {
        match self.admin.load(Ordering::Relaxed) {
            1 => AdminState::Drain,
            2 => AdminState::Maint,
            _ => AdminState::Ready,
        }
    }

    /// Set the admin state (drain from the API or SIGTERM, ready to undo).
    pub fn set_admin(&self, state: AdminState) {
        self.admin.store(encode(state), Ordering::Relaxed);
    }

    /// The agent's smoothed weight, percent.
    pub fn weight(&self) -> u8 {
        self.weight.load(Ordering::Relaxed)
    }

    /// Store a new weight (the load sampler).
    pub fn set_weight(&self, w: u8) {
        self.weight.store(w, Ordering::Relaxed);
    }

    /// A shard's listeners are up.
    pub fn shard_ready(&self) {
        self.ready_shards.fetch_add(1, Ordering::Relaxed);
    }

    /// Shutdown has started.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// What `/healthz` answers.
    pub fn health(&self) -> Health {
        if self.stopping.load(Ordering::Relaxed) || self.admin() != AdminState::Ready {
            Health::Draining
        } else if self.ready_shards.load(Ordering::Relaxed) < self.shards {
            Health::Starting
        } else {
            Health::Serving
        }
    }
}

fn encode(state: AdminState) -> u8 {
    match state {
        AdminState::Ready => 0,
        AdminState::Drain => 1,
        AdminState::Maint => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_follows_start_drain_and_stop() {
        let s = LbState::new(2);
        assert_eq!(s.health(), Health::Starting);
        s.shard_ready();
        s.shard_ready();
        assert_eq!(s.health().status(), 200);
        s.set_admin(AdminState::Drain);
        assert_eq!(
            (s.health(), s.admin()),
            (Health::Draining, AdminState::Drain)
        );
        s.set_admin(AdminState::Ready);
        assert_eq!(s.health(), Health::Serving);
        s.set_stopping();
        assert_eq!(s.health().status(), 503);
    }
}
