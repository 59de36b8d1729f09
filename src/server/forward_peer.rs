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
    /// Where to.
    pub target: ForwardTarget,
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
    pub fn new(key: StreamKey, target: ForwardTarget) -> Rc<ForwardHandle> {
        Rc::new(ForwardHandle {
            key,
            target,
            state: Cell::new(ForwardState::Connecting),
            reconnects: Cell::new(0),
            bytes_out: Cell::new(0),
            last_error: RefCell::new(String::new()),
            stopped: Cell::new(false),
            stop: LocalNotify::default(),
        })
    }

    /// The publish ended: unpublish at the destination and stop retrying.
    pub fn stop(&self) {
        self.stopped.set(true);
        self.stop.notify();
    }
}
