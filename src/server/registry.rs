//! The owner shard's book of streams it owns: who publishes each one (at most one publisher)
//! and which shards have players waiting for it. Plain data, no I/O: the shard turns the
//! answers into cross-shard messages.

use super::key::StreamKey;

use super::ids::{FastMap, ShardId};

#[derive(Debug, Default)]
struct Entry {
    /// (shard the publisher is on, publish id)
    publisher: Option<(ShardId, u64)>,
    /// Shards with players, and the epoch of their subscription.
    subscribers: Vec<(ShardId, u64)>,
}

/// The directory of the streams one shard owns.
#[derive(Debug, Default)]
pub struct Registry {
    entries: FastMap<StreamKey, Entry>,
}

/// A claim refused because the stream already has a publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlreadyPublished;

/// A subscription the publisher's shard must serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscriber {
    /// The shard with players.
    pub shard: ShardId,
    /// Its subscription's epoch.
    pub epoch: u64,
}

impl Registry {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// Streams listed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No stream listed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A shard has players for `key`. Returns the publisher's shard, which must start sending
    /// to the subscriber, if the stream is being published.
    pub fn subscribe(&mut self, key: &StreamKey, shard: ShardId, epoch: u64) -> Option<ShardId> {
        let e = self.entries.entry(key.clone()).or_default();
        e.subscribers.retain(|(s, _)| *s != shard);
        e.subscribers.push((shard, epoch));
        e.publisher.map(|(s, _)| s)
    }

    /// A shard has no more players for `key`. Returns the publisher's shard to tell.
    pub fn unsubscribe(&mut self, key: &StreamKey, shard: ShardId) -> Option<ShardId> {
        let e = self.entries.get_mut(key)?;
        e.subscribers.retain(|(s, _)| *s != shard);
        let publisher = e.publisher.map(|(s, _)| s);
        self.gc(key);
        publisher
    }

    /// Claim the right to publish. Granted: the subscribers to send to. Refused: the stream
    /// already has a publisher.
    pub fn claim(
        &mut self,
        key: &StreamKey,
        shard: ShardId,
        publish_id: u64,
    ) -> Result<Vec<Subscriber>, AlreadyPublished> {
        let e = self.entries.entry(key.clone()).or_default();
        if e.publisher.is_some() {
            return Err(AlreadyPublished);
        }
        e.publisher = Some((shard, publish_id));
        Ok(e.subscribers
            .iter()
            .map(|&(shard, epoch)| Subscriber { shard, epoch })
            .collect())
    }

    /// The publisher left. Only the current publish id releases (a stale release is ignored).
    pub fn release(&mut self, key: &StreamKey, publish_id: u64) -> bool {
        let Some(e) = self.entries.get_mut(key) else {
            return false;
        };
        if e.publisher.map(|(_, id)| id) != Some(publish_id) {
            return false;
        }
        e.publisher = None;
        self.gc(key);
        true
    }

    /// How many shards have players for `key`.
    pub fn subscribers(&self, key: &StreamKey) -> usize {
        self.entries.get(key).map_or(0, |e| e.subscribers.len())
    }

    /// The shard that publishes `key`, if any.
    pub fn publisher(&self, key: &StreamKey) -> Option<ShardId> {
        self.entries.get(key)?.publisher.map(|(s, _)| s)
    }

    /// Is `publish_id` the stream's publish now (not ended, not replaced)?
    pub fn is_current(&self, key: &StreamKey, publish_id: u64) -> bool {
        self.entries
            .get(key)
            .and_then(|e| e.publisher)
            .is_some_and(|(_, id)| id == publish_id)
    }

    fn gc(&mut self, key: &StreamKey) {
        if let Some(e) = self.entries.get(key) {
            if e.publisher.is_none() && e.subscribers.is_empty() {
                self.entries.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k() -> StreamKey {
        StreamKey::new("v", "live", "s")
    }

    #[test]
    fn only_the_current_publish_is_current() {
        let mut r = Registry::new();
        assert!(!r.is_current(&k(), 7));
        r.claim(&k(), 0, 7).unwrap();
        assert!(r.is_current(&k(), 7));
        assert!(!r.is_current(&k(), 8));
        assert!(r.release(&k(), 7));
        assert!(!r.is_current(&k(), 7));
    }

    #[test]
    fn one_publisher_at_a_time() {
        let mut r = Registry::new();
        assert_eq!(r.claim(&k(), 0, 1), Ok(vec![]));
        assert_eq!(r.claim(&k(), 1, 2), Err(AlreadyPublished));
        assert!(!r.release(&k(), 2), "a stale id does not release");
        assert!(r.release(&k(), 1));
        assert!(r.claim(&k(), 1, 3).is_ok());
    }

    #[test]
    fn subscribers_are_handed_to_the_publisher() {
        let mut r = Registry::new();
        assert_eq!(r.subscribe(&k(), 1, 7), None);
        assert_eq!(
            r.claim(&k(), 0, 1),
            Ok(vec![Subscriber { shard: 1, epoch: 7 }])
        );
        assert_eq!(r.subscribe(&k(), 2, 9), Some(0));
        assert_eq!(r.unsubscribe(&k(), 1), Some(0));
        assert!(r.release(&k(), 1));
        assert_eq!(r.len(), 1, "shard 2 still waits");
        assert_eq!(r.unsubscribe(&k(), 2), None);
        assert!(r.is_empty());
    }

    #[test]
    fn resubscribe_replaces_epoch() {
        let mut r = Registry::new();
        r.subscribe(&k(), 1, 1);
        r.subscribe(&k(), 1, 2);
        assert_eq!(
            r.claim(&k(), 0, 5),
            Ok(vec![Subscriber { shard: 1, epoch: 2 }])
        );
    }
}
