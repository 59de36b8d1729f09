//! Stream identity and which shard owns it.

use std::fmt;
use std::sync::Arc;

/// `vhost/app/stream`: the name a stream is registered under. Cheap to clone and to send to
/// another shard (one shared allocation).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct StreamKey(Arc<str>);

impl StreamKey {
    pub fn new(vhost: &str, app: &str, stream: &str) -> StreamKey {
        StreamKey(Arc::from(format!("{vhost}/{app}/{stream}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The stream name (last path part).
    pub fn stream_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or("")
    }

    /// The shard that owns this stream's registry entry: a stable FNV-1a hash of the key, so
    /// the same key maps to the same shard in every run.
    pub fn owner_shard(&self, shards: usize) -> usize {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.0.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        (h % shards.max(1) as u64) as usize
    }
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamKey({})", self.0)
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
        // Different names spread over shards.
        let owners: std::collections::HashSet<usize> = (0..32)
            .map(|i| StreamKey::new("v", "live", &format!("s{i}")).owner_shard(4))
            .collect();
        assert_eq!(owners.len(), 4);
    }
}
