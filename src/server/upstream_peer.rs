//! An upstream as the owner shard sees it: a stream pulled from an origin (edge) or from the
//! coworker that has it (relaying origin), its events in and its figures out. The decisions are
//! `cluster::linger::EdgeUpstream`'s; the task that carries them out is `upstream`.

use super::ids::ConnId;
use super::key::StreamKey;
use super::notify::LocalNotify;
use crate::cluster::linger::{Event, State};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

pub use super::kinds::{UpstreamKind, UpstreamState};

/// The state as the API and metrics name it.
pub fn public_state(s: State) -> UpstreamState {
    match s {
        State::Idle => UpstreamState::Idle,
        State::Connecting { .. } => UpstreamState::Connecting,
        State::Waiting { .. } => UpstreamState::Backoff,
        State::Playing { .. } => UpstreamState::Playing,
        State::Lingering { .. } => UpstreamState::Lingering,
        State::Closing { .. } => UpstreamState::Closing,
    }
}

/// One stream's upstream on its owner shard.
pub struct UpstreamHandle {
    /// The stream pulled.
    pub key: StreamKey,
    /// Edge or relay.
    pub kind: UpstreamKind,
    /// The id its local publish is held under (the stats tell it from a client publisher).
    pub source: ConnId,
    /// The first player's stream query (tokens), passed on to the origin.
    pub query: String,
    events: RefCell<VecDeque<Event>>,
    wake: LocalNotify,
    /// Where the upstream is (for stats).
    pub state: Cell<State>,
    /// The origin (or coworker) it pulls from now.
    pub origin: RefCell<String>,
    /// Connections that reached `Play.Start`.
    pub connects: Cell<u64>,
    /// Times it moved to another origin after one failed.
    pub failovers: Cell<u64>,
    /// RTMP 302 redirects followed.
    pub redirects: Cell<u64>,
    /// Bytes read from origins.
    pub bytes_in: Cell<u64>,
}

impl UpstreamHandle {
    /// A new, idle upstream.
    pub fn new(
        key: StreamKey,
        kind: UpstreamKind,
        source: ConnId,
        query: String,
    ) -> Rc<UpstreamHandle> {
        Rc::new(UpstreamHandle {
            key,
            kind,
            source,
            query,
            events: RefCell::default(),
            wake: LocalNotify::default(),
            state: Cell::new(State::Idle),
            origin: RefCell::default(),
            connects: Cell::new(0),
            failovers: Cell::new(0),
            redirects: Cell::new(0),
            bytes_in: Cell::new(0),
        })
    }

    /// Queue an event for the upstream's task.
    pub fn push(&self, ev: Event) {
        self.events.borrow_mut().push_back(ev);
        self.wake.notify();
    }

    /// Take the queued events.
    pub fn drain(&self) -> Vec<Event> {
        self.events.borrow_mut().drain(..).collect()
    }

    /// Resolves when an event was queued since the last wait.
    pub async fn woken(&self) {
        self.wake.wait().await
    }
}
