//! Stream identity and which shard owns it.

use std::fmt;

/// The vhost used when a client names none (SRS's name for it).
pub const DEFAULT_VHOST: &str = "__defaultVhost__";
use std::sync::Arc;

/// `vhost/app/stream`: the name a stream is registered under. Cheap to clone and to send to
/// another shard (one shared allocation).
#[derive(Clone)]
pub struct StreamKey(Arc<KeyInner>);

struct KeyInner {
    full: String,
    /// Where the app and the stream name start in `full` (either may contain '/').
    app_at: usize,
    stream_at: usize,
    /// `full` hashed once with a per-process random seed: stream tables are looked up per
    /// media message, and hashing the name each time was 1% of a shard's ingest CPU (perf,
    /// 1000 publishers).
    hashed: u64,
}

/// The seed of [`KeyInner::hashed`], random per process so clients cannot aim names at one
/// hash bucket.
fn key_hasher() -> &'static foldhash::fast::RandomState {
    static SEED: std::sync::OnceLock<foldhash::fast::RandomState> = std::sync::OnceLock::new();
    SEED.get_or_init(Default::default)
}

impl PartialEq for StreamKey {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
            || (self.0.hashed == other.0.hashed && self.0.full == other.0.full)
    }
}

impl Eq for StreamKey {}

impl std::hash::Hash for StreamKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.hashed);
    }
}

impl StreamKey {
    /// The key of `vhost/app/stream`.
    pub fn new(vhost: &str, app: &str, stream: &str) -> StreamKey {
        let full = format!("{vhost}/{app}/{stream}");
        StreamKey(Arc::new(KeyInner {
            hashed: std::hash::BuildHasher::hash_one(key_hasher(), &full),
            full,
            app_at: vhost.len() + 1,
            stream_at: vhost.len() + app.len() + 2,
        }))
    }

    /// `vhost/app/stream`.
    pub fn as_str(&self) -> &str {
        &self.0.full
    }

    /// The vhost.
    pub fn vhost(&self) -> &str {
        &self.0.full[..self.0.app_at - 1]
    }

    /// The app (may contain '/').
    pub fn app(&self) -> &str {
        &self.0.full[self.0.app_at..self.0.stream_at - 1]
    }

    /// The stream name as the client gave it (without its query).
    pub fn stream_name(&self) -> &str {
        &self.0.full[self.0.stream_at..]
    }

    /// The shard that owns this stream's registry entry: a stable FNV-1a hash of the key, so
    /// the same key maps to the same shard in every run.
    pub fn owner_shard(&self, shards: usize) -> usize {
        (self.hash64() % shards.max(1) as u64) as usize
    }

    /// FNV-1a of the key: stable across runs and processes.
    pub fn hash64(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.0.full.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    }

    /// The id the HTTP API names this stream by.
    pub fn api_id(&self) -> String {
        format!("{:012x}", self.hash64() & 0xFFFF_FFFF_FFFF)
    }
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.full)
    }
}

impl fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamKey({})", self.0.full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_is_stable_and_in_range() {
        let k = StreamKey::new("__defaultVhost__", "live", "s");
        assert_eq!(k.owner_shard(2), k.owner_shard(2));
        assert!(k.owner_shard(3) < 3);
        assert_eq!(k.owner_shard(1), 0);
        assert_eq!(k.stream_name(), "s");
        let k = StreamKey::new("v", "live/sub", "a/b");
        assert_eq!(
            (k.vhost(), k.app(), k.stream_name()),
            ("v", "live/sub", "a/b")
        );
        // Different names spread over shards.
        let owners: std::collections::HashSet<usize> = (0..32)
            .map(|i| StreamKey::new("v", "live", &format!("s{i}")).owner_shard(4))
            .collect();
        assert_eq!(owners.len(), 4);
    }
}
