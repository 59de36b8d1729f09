//! What a shard does for each kind of message, one file per role. Roles hold their own state
//! and reach other shards through [`Links`](super::links::Links); anything that needs the
//! whole shard (spawning a task) comes back as an [`Effect`] for the shard's run loop.
//!
//! - [`owner`]: the directory of the streams this shard owns (who publishes, who waits) and
//!   where their forward peers run.
//! - [`source`]: streams published on this shard: claims, fan-out to local players and to
//!   subscribed shards.
//! - [`sink`]: streams played on this shard: subscriptions, media from other shards.
//! - [`forward_host`]: the forward peers this shard runs.

pub mod forward_host;
pub mod owner;
pub mod sink;
pub mod source;

use super::forward_peer::ForwardHandle;
use super::ids::FastMap;
use super::key::StreamKey;
use super::stream::LocalStream;
use super::upstream_peer::UpstreamHandle;
use std::rc::Rc;

/// The streams a shard holds (as source, as sink, or both).
pub type StreamTable = FastMap<StreamKey, LocalStream>;

/// Work a role hands back to the shard's run loop.
pub enum Effect {
    /// Run this forward peer as a task on the shard.
    SpawnForward(Rc<ForwardHandle>),
    /// Run this upstream (a pulled stream) as a task on the shard.
    SpawnUpstream(Rc<UpstreamHandle>),
}
