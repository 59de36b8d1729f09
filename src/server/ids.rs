//! Identifiers that cross shards. A [`ConnId`] carries the shard that made it, so whoever holds
//! one (an API call on another shard, a kick) knows where to send a message about it without
//! knowing how many shards there are.

use std::cell::Cell;
use std::fmt;

/// Hash maps looked up per message (streams by key, connections by id): foldhash, seeded per
/// process, instead of SipHash, which showed at ~3% of an ingest profile.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Index of a shard (executor) in `0..shards`.
pub type ShardId = usize;

/// Bits of an id that name the shard: `server.shards` is validated to be at most 1024.
const SHARD_BITS: u32 = 10;

/// An id unique over all shards of one process: a connection, a publish, a subscription epoch.
/// Never 0 (0 means "none" where an id is optional).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

impl ConnId {
    /// The id made by `shard` as its `seq`-th (seq starts at 1).
    pub fn new(shard: ShardId, seq: u64) -> ConnId {
        ConnId((seq << SHARD_BITS) | shard as u64)
    }

    /// The shard that made this id (and, for a connection, holds it).
    pub fn shard(self) -> ShardId {
        (self.0 & ((1 << SHARD_BITS) - 1)) as ShardId
    }

    /// The number as the API and logs show it.
    pub fn get(self) -> u64 {
        self.0
    }

    /// An id as the API gave it out (any u64; a foreign one simply matches nothing).
    pub fn from_raw(raw: u64) -> ConnId {
        ConnId(raw)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One shard's id source (single-threaded: a plain cell).
#[derive(Debug)]
pub struct IdGen {
    shard: ShardId,
    seq: Cell<u64>,
}

impl IdGen {
    /// Ids for `shard`.
    pub fn new(shard: ShardId) -> IdGen {
        IdGen {
            shard,
            seq: Cell::new(0),
        }
    }

    /// The next id: unique over all shards, never 0.
    pub fn next(&self) -> ConnId {
        let n = self.seq.get() + 1;
        self.seq.set(n);
        ConnId::new(self.shard, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_know_their_shard_and_never_collide() {
        let a = IdGen::new(0);
        let b = IdGen::new(1023);
        let ids: Vec<ConnId> = (0..5).flat_map(|_| [a.next(), b.next()]).collect();
        let set: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(set.len(), ids.len());
        assert!(ids.iter().all(|i| i.get() != 0));
        assert_eq!(a.next().shard(), 0);
        assert_eq!(b.next().shard(), 1023);
        assert_eq!(ConnId::from_raw(ConnId::new(7, 3).get()).shard(), 7);
    }
}
