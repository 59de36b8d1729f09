//! [`MemoryStore`]: Redis's semantics for the commands, in memory (one proxy, and the tests).

use super::*;

/// Redis's semantics for the commands above, in memory: strings with millisecond expiry and one
/// sorted set. Expiry is lazy, judged against the `now_ms` each command brings.
#[derive(Debug, Default)]
pub struct MemoryStore {
    /// key -> (value, expires at ms).
    strings: HashMap<String, (String, Option<u64>)>,
    /// origin id -> last heartbeat ms.
    origins: HashMap<String, u64>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn get(&self, key: &str, now_ms: u64) -> Option<&String> {
        match self.strings.get(key) {
            Some((v, exp)) if exp.is_none_or(|e| now_ms < e) => Some(v),
            _ => None,
        }
    }

    pub(crate) fn set(&mut self, key: String, value: String, ttl_ms: u64, now_ms: u64) {
        self.strings
            .insert(key, (value, Some(now_ms.saturating_add(ttl_ms))));
    }

    /// Keys currently holding a value (for tests: what expired).
    pub fn live_keys(&self, now_ms: u64) -> Vec<String> {
        let mut v: Vec<String> = self
            .strings
            .keys()
            .filter(|k| self.get(k, now_ms).is_some())
            .cloned()
            .collect();
        v.sort();
        v
    }
}

impl RegistryStore for MemoryStore {
    fn execute(&mut self, cmd: &Command, now_ms: u64) -> Result<Reply, StoreError> {
        let url = |k: &str| format!("{URL_KEY_PREFIX}{k}");
        Ok(match cmd {
            Command::PutOrigin {
                id,
                record,
                ttl_ms,
                now_ms: at,
            } => {
                self.set(
                    format!("{ORIGIN_KEY_PREFIX}{id}"),
                    record.clone(),
                    *ttl_ms,
                    now_ms,
                );
                // ZADD GT: only ever forward.
                let score = self.origins.entry(id.clone()).or_insert(*at);
                *score = (*score).max(*at);
                Reply::Ok
            }
            Command::LiveOrigins { since_ms } => {
                let mut v: Vec<(String, u64)> = self
                    .origins
                    .iter()
                    .filter(|(_, s)| **s >= *since_ms)
                    .map(|(id, s)| (id.clone(), *s))
                    .collect();
                // Redis orders by score, then member.
                v.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
                Reply::Scored(v)
            }
            Command::GetOrigins { ids } => Reply::Values(
                ids.iter()
                    .map(|id| {
                        self.get(&format!("{ORIGIN_KEY_PREFIX}{id}"), now_ms)
                            .cloned()
                    })
                    .collect(),
            ),
            Command::OriginSeen { id } => Reply::Score(self.origins.get(id).copied()),
            Command::PruneOrigins { before_ms } => {
                let n = self.origins.len();
                self.origins.retain(|_, s| *s >= *before_ms);
                Reply::Count((n - self.origins.len()) as u64)
            }
            Command::ClaimUrl { key, value, ttl_ms } => {
                let k = url(key);
                match self.get(&k, now_ms) {
                    Some(held) => Reply::Value(Some(held.clone())),
                    None => {
                        self.set(k, value.clone(), *ttl_ms, now_ms);
                        Reply::Value(None)
                    }
                }
            }
            Command::GetUrl { key } => Reply::Value(self.get(&url(key), now_ms).cloned()),
            Command::RefreshUrl { key, value, ttl_ms } => {
                let k = url(key);
                if self.get(&k, now_ms) == Some(value) {
                    self.set(k, value.clone(), *ttl_ms, now_ms);
                    Reply::Count(1)
                } else {
                    Reply::Count(0)
                }
            }
            Command::ReplaceUrl {
                key,
                expected,
                value,
                ttl_ms,
            } => {
                let k = url(key);
                if self.get(&k, now_ms) == Some(expected) {
                    self.set(k, value.clone(), *ttl_ms, now_ms);
                    Reply::Count(1)
                } else {
                    Reply::Count(0)
                }
            }
            Command::ReleaseUrl { key, value } => {
                let k = url(key);
                if self.get(&k, now_ms) == Some(value) {
                    self.strings.remove(&k);
                    Reply::Count(1)
                } else {
                    Reply::Count(0)
                }
            }
            // One page holds everything.
            Command::ScanUrls { .. } => Reply::Page {
                cursor: 0,
                keys: self
                    .live_keys(now_ms)
                    .into_iter()
                    .filter_map(|k| k.strip_prefix(URL_KEY_PREFIX).map(str::to_string))
                    .collect(),
            },
            Command::GetUrls { keys } => Reply::Values(
                keys.iter()
                    .map(|k| self.get(&url(k), now_ms).cloned())
                    .collect(),
            ),
        })
    }
}
