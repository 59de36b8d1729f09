//! A forward peer as the shard sees it: its destination, state and figures, and the stop
//! signal its task waits on. The task itself (connect, publish, stream) is in `forward`.

use super::key::StreamKey;
use super::kinds::ForwardState;
use super::notify::LocalNotify;
use crate::config::ForwardTarget;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// One destination of one stream, as the shard holding it sees it (for logs and stats).
pub struct ForwardHandle {
    /// The stream forwarded.
    pub key: StreamKey,
    /// Where to: one destination, or an edge's origins (tried in turn, the last good one kept).
    pub targets: Vec<ForwardTarget>,
    /// Index of the target in use.
    pub current: Cell<usize>,
    /// Query published with (an edge's push carries its publisher's tokens).
    pub query: String,
    /// Where the peer is in its life.
    pub state: Cell<ForwardState>,
    /// Reconnects so far.
    pub reconnects: Cell<u64>,
    /// Bytes sent, over all its connections.
    pub bytes_out: Cell<u64>,
    /// Why the last attempt failed.
    pub last_error: RefCell<String>,
    pub(super) stopped: Cell<bool>,
    pub(super) stop: LocalNotify,
}

impl ForwardHandle {
    /// A peer that has not connected yet.
    pub fn new(key: StreamKey, targets: Vec<ForwardTarget>, query: String) -> Rc<ForwardHandle> {
        assert!(!targets.is_empty(), "a forward peer needs a destination");
        Rc::new(ForwardHandle {
            key,
            targets,
            current: Cell::new(0),
            query,
            state: Cell::new(ForwardState::Connecting),
            reconnects: Cell::new(0),
            bytes_out: Cell::new(0),
            last_error: RefCell::new(String::new()),
            stopped: Cell::new(false),
            stop: LocalNotify::default(),
        })
    }

    /// The destination in use.
    pub fn target(&self) -> &ForwardTarget {
        &self.targets[self.current.get() % self.targets.len()]
    }

    /// Move on to the next destination (failover); true when that starts a new round.
    pub fn next_target(&self) -> bool {
        let next = (self.current.get() + 1) % self.targets.len();
        self.current.set(next);
        next == 0
    }

    /// The publish ended: unpublish at the destination and stop retrying.
    pub fn stop(&self) {
        self.stopped.set(true);
        self.stop.notify();
    }
}
