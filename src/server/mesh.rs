//! What crosses between shards, and the per-destination outbox in front of each channel.
//!
//! Only two things cross: registry traffic (claims, subscriptions) and a publish going out to
//! shards with players. Each media message crosses to each subscribed shard once, as a shared
//! `Packet`, however many players wait there.

use super::key::StreamKey;
use super::packet::Packet;
use super::registry::{ShardId, Subscriber};
use super::writer::LocalNotify;
use crate::config::ForwardTarget;
use glommio::channels::channel_mesh::Senders;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

#[derive(Debug)]
pub enum ShardMsg {
    /// To the owner: `shard` has players for `key`.
    Subscribe {
        key: StreamKey,
        shard: ShardId,
        epoch: u64,
    },
    /// To the owner: `shard` has no more players for `key`.
    Unsubscribe { key: StreamKey, shard: ShardId },
    /// To the owner: a connection on `shard` wants to publish `key`.
    ClaimPublish {
        key: StreamKey,
        shard: ShardId,
        claim_id: u64,
        publish_id: u64,
    },
    /// From the owner: the answer, with the shards that already wait for the stream.
    ClaimReply {
        claim_id: u64,
        granted: bool,
        subscribers: Vec<Subscriber>,
    },
    /// To the owner: the publish ended.
    Release { key: StreamKey, publish_id: u64 },
    /// From the owner to the publisher's shard: start sending to `shard`.
    AddSubscriber {
        key: StreamKey,
        shard: ShardId,
        epoch: u64,
    },
    /// From the owner to the publisher's shard: stop sending to `shard`.
    RemoveSubscriber { key: StreamKey, shard: ShardId },
    /// Publisher's shard to a subscriber: the publish is live; here is what new players need.
    Snapshot {
        key: StreamKey,
        publish_id: u64,
        epoch: u64,
        packets: Vec<Packet>,
    },
    /// Publisher's shard to a subscriber: one media message.
    Media {
        key: StreamKey,
        publish_id: u64,
        packet: Packet,
    },
    /// Publisher's shard to a subscriber: the publish ended.
    Unpublished { key: StreamKey, publish_id: u64 },
    /// From the owner: run forward peer `index` of `key` on this shard.
    ForwardStart {
        key: StreamKey,
        index: usize,
        target: ForwardTarget,
    },
    /// From the owner: the publish ended; stop forward peer `index` of `key`.
    ForwardStop { key: StreamKey, index: usize },
}

/// Messages waiting for one destination shard. Control messages are never dropped; media is
/// dropped past `media_cap` so a slow shard never makes the publisher wait.
pub struct Outbox {
    queue: RefCell<VecDeque<ShardMsg>>,
    notify: LocalNotify,
    media_queued: Cell<usize>,
    media_cap: usize,
    pub media_dropped: Cell<u64>,
}

impl Outbox {
    pub fn new(media_cap: usize) -> Rc<Outbox> {
        Rc::new(Outbox {
            queue: RefCell::new(VecDeque::new()),
            notify: LocalNotify::default(),
            media_queued: Cell::new(0),
            media_cap,
            media_dropped: Cell::new(0),
        })
    }

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
        if matches!(m, ShardMsg::Media { .. }) {
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
