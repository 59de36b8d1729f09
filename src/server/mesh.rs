//! What crosses between shards, grouped by the role that handles it, and the per-destination
//! outbox in front of each channel.
//!
//! Only registry traffic (claims, subscriptions), a publish going out to shards with players,
//! forward placement and control cross. Each media message crosses to each subscribed shard
//! once, as a shared `Packet`, however many players wait there.

use super::ids::{ConnId, ShardId};
use super::key::StreamKey;
use super::notify::LocalNotify;
use super::packet::Packet;
use super::registry::Subscriber;
use crate::config::{Config, ForwardTarget};
use crate::lb::control::DropRequest;
use glommio::channels::channel_mesh::Senders;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A message to a shard.
#[derive(Debug)]
pub enum ShardMsg {
    /// To the stream's owner (its directory entry).
    Owner(OwnerMsg),
    /// To the shard that holds (or claims) a stream's source.
    Source(SourceMsg),
    /// To a shard with players (or a forward peer) of a stream.
    Sink(SinkMsg),
    /// To any shard: kicks, reloads, shutdown.
    Control(ControlMsg),
}

/// Handled by the owner of a stream key.
#[derive(Debug)]
pub enum OwnerMsg {
    /// `shard` has players for `key`.
    Subscribe {
        /// The stream.
        key: StreamKey,
        /// The shard with players.
        shard: ShardId,
        /// Its subscription's epoch (stale snapshots are told apart by it).
        epoch: u64,
        /// The first player's stream query (tokens), for a pull from an origin.
        query: String,
    },
    /// `shard` has no more players for `key`.
    Unsubscribe {
        /// The stream.
        key: StreamKey,
        /// The shard.
        shard: ShardId,
    },
    /// A connection on `shard` wants to publish `key`.
    ClaimPublish {
        /// The stream.
        key: StreamKey,
        /// The claiming shard.
        shard: ShardId,
        /// The claim, to match the reply.
        claim_id: u64,
        /// The publish, if granted.
        publish_id: u64,
        /// Fed by an upstream (pulled from an origin or coworker): never forwarded or pushed
        /// back.
        pulled: bool,
        /// The publisher's stream query (tokens), passed on when an edge pushes to an origin.
        query: String,
    },
    /// The publish ended.
    Release {
        /// The stream.
        key: StreamKey,
        /// The publish that ended (a stale one is ignored).
        publish_id: u64,
    },
    /// A forward backend named more destinations for this publish (placed like static ones,
    /// and only while `publish_id` is still the stream's publish).
    AddForwards {
        /// The stream.
        key: StreamKey,
        /// The publish asked about.
        publish_id: u64,
        /// One forward peer per entry (each entry: the destinations it fails over between).
        targets: Vec<Vec<ForwardTarget>>,
    },
}

/// Why the owner refused a publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClaimRefused {
    /// Someone publishes the stream already.
    #[error("already being published")]
    AlreadyPublished,
    /// `server.max_streams` streams are live.
    #[error("max_streams ({0}) reached")]
    MaxStreams(usize),
}

/// Handled by the shard of a stream's source.
#[derive(Debug)]
pub enum SourceMsg {
    /// The owner's answer to a claim: the shards that already wait, or why not.
    ClaimReply {
        /// The claim.
        claim_id: u64,
        /// Granted (with the waiting shards) or refused (with the reason).
        result: Result<Vec<Subscriber>, ClaimRefused>,
    },
    /// Start sending the stream to `shard`.
    AddSubscriber {
        /// The stream.
        key: StreamKey,
        /// The shard with players.
        shard: ShardId,
        /// Its subscription's epoch.
        epoch: u64,
    },
    /// Stop sending the stream to `shard`.
    RemoveSubscriber {
        /// The stream.
        key: StreamKey,
        /// The shard.
        shard: ShardId,
    },
}

/// Handled by a shard with players (or forward peers) of a stream.
#[derive(Debug)]
pub enum SinkMsg {
    /// The publish is live; here is what new players need.
    Snapshot {
        /// The stream.
        key: StreamKey,
        /// The publish.
        publish_id: u64,
        /// The subscription this answers.
        epoch: u64,
        /// Metadata, sequence headers and the GOP.
        packets: Vec<Packet>,
    },
    /// One media message.
    Media {
        /// The stream.
        key: StreamKey,
        /// The publish it belongs to.
        publish_id: u64,
        /// The message, encoded once.
        packet: Packet,
    },
    /// The publish ended.
    Unpublished {
        /// The stream.
        key: StreamKey,
        /// The publish that ended.
        publish_id: u64,
    },
    /// Run forward peer `index` of `key` on this shard.
    ForwardStart {
        /// The stream.
        key: StreamKey,
        /// Which destination of the stream.
        index: usize,
        /// Where to: one destination, or an edge's origins to fail over between.
        targets: Vec<ForwardTarget>,
        /// Query to publish with (an edge's push carries its publisher's tokens).
        query: String,
    },
    /// The publish ended: stop forward peer `index` of `key`.
    ForwardStop {
        /// The stream.
        key: StreamKey,
        /// Which destination.
        index: usize,
    },
}

/// Handled by every shard: things an operator asks for.
#[derive(Debug, Clone)]
pub enum ControlMsg {
    /// Disconnect this client (it lives on the shard its id names).
    Kick(ConnId),
    /// Take this config for new requests.
    Reload {
        /// The new config.
        cfg: Arc<Config>,
        /// Its generation, for the log.
        generation: u64,
    },
    /// Stop accepting, close every connection, end the shard.
    Shutdown,
    /// nginx-rtmp's `/control/drop`: close this shard's sessions that match, add the count.
    Drop {
        /// The filter.
        req: Arc<DropRequest>,
        /// Where every shard adds its count.
        tally: Arc<DropTally>,
    },
}

/// The shards' answers to one [`ControlMsg::Drop`], summed as they come.
#[derive(Debug, Default)]
pub struct DropTally {
    answered: AtomicUsize,
    dropped: AtomicUsize,
}

impl DropTally {
    /// One shard closed `n` sessions.
    pub fn answer(&self, n: usize) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
        self.answered.fetch_add(1, Ordering::Release);
    }

    /// Shards that answered so far.
    pub fn answered(&self) -> usize {
        self.answered.load(Ordering::Acquire)
    }

    /// Sessions closed so far.
    pub fn dropped(&self) -> usize {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Messages waiting for one destination shard. Control messages are never dropped; media is
/// dropped past `media_cap` so a slow shard never makes the publisher wait.
pub struct Outbox {
    queue: RefCell<VecDeque<ShardMsg>>,
    notify: LocalNotify,
    media_queued: Cell<usize>,
    media_cap: usize,
    /// Media messages dropped because the destination was behind.
    pub media_dropped: Cell<u64>,
}

impl Outbox {
    /// An outbox that holds at most `media_cap` media messages.
    pub fn new(media_cap: usize) -> Rc<Outbox> {
        Rc::new(Outbox {
            queue: RefCell::new(VecDeque::new()),
            notify: LocalNotify::default(),
            media_queued: Cell::new(0),
            media_cap,
            media_dropped: Cell::new(0),
        })
    }

    /// Queue a message that must arrive.
    pub fn push_control(&self, msg: ShardMsg) {
        self.queue.borrow_mut().push_back(msg);
        self.notify.notify();
    }

    /// Queue media unless the destination is `media_cap` messages behind.
    pub fn try_push_media(&self, msg: ShardMsg) -> bool {
        if self.media_queued.get() >= self.media_cap {
            self.media_dropped.set(self.media_dropped.get() + 1);
            return false;
        }
        self.media_queued.set(self.media_queued.get() + 1);
        self.queue.borrow_mut().push_back(msg);
        self.notify.notify();
        true
    }

    fn pop(&self) -> Option<ShardMsg> {
        let m = self.queue.borrow_mut().pop_front()?;
        if matches!(m, ShardMsg::Sink(SinkMsg::Media { .. })) {
            self.media_queued.set(self.media_queued.get() - 1);
        }
        Some(m)
    }

    /// Drain into the channel to `dest`, waiting on the channel (never on the publisher).
    pub async fn run_remote(self: Rc<Self>, senders: Rc<Senders<ShardMsg>>, dest: ShardId) {
        loop {
            self.notify.wait().await;
            while let Some(m) = self.pop() {
                if senders.send_to(dest, m).await.is_err() {
                    return;
                }
            }
        }
    }

    /// Drain messages addressed to this shard itself (the mesh has no channel to self).
    pub async fn run_local(self: Rc<Self>, mut handle: impl FnMut(ShardMsg)) {
        loop {
            self.notify.wait().await;
            while let Some(m) = self.pop() {
                handle(m);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_is_dropped_past_the_cap_and_control_never() {
        let o = Outbox::new(2);
        let key = StreamKey::new("v", "live", "s");
        let media = || {
            ShardMsg::Sink(SinkMsg::Unpublished {
                key: key.clone(),
                publish_id: 1,
            })
        };
        // Unpublished is control: never dropped.
        for _ in 0..5 {
            o.push_control(media());
        }
        assert_eq!(o.media_dropped.get(), 0);
        let pkt = Packet::new(
            crate::media::Frame::audio(0, bytes::Bytes::from_static(&[0xAF, 1, 0])),
            false,
            128,
        );
        let m = || {
            ShardMsg::Sink(SinkMsg::Media {
                key: key.clone(),
                publish_id: 1,
                packet: pkt.clone(),
            })
        };
        assert!(o.try_push_media(m()));
        assert!(o.try_push_media(m()));
        assert!(!o.try_push_media(m()));
        assert_eq!(o.media_dropped.get(), 1);
        for _ in 0..6 {
            o.pop();
        }
        assert!(o.try_push_media(m()), "room again once the queue drained");
    }
}
