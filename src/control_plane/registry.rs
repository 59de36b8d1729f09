//! The proxy tier's registry on the control thread: the sans-I/O operations of
//! [`crate::cluster::registry`] driven against a [`MemoryStore`] (one proxy) or Redis (many),
//! so no Redis round trip ever runs on a shard. A shard asks with [`super::Calls::registry`]
//! and awaits the answer with a timeout.
//!
//! What the control thread also keeps (the sans-I/O [`OriginView`] and [`HeldClaims`]):
//! - the claims this proxy holds (one per published stream, counted), refreshed every third of
//!   their TTL and claimed again after Redis comes back, so a live stream's mapping never
//!   expires and a dead one's does;
//! - its own view of the origins (heartbeats it received, origin lists it read), so a new
//!   publish while Redis is down is still placed on the least-loaded live origin; its claim is
//!   pending and written (SET NX + TTL) as soon as Redis is back. If another proxy claimed the
//!   stream meanwhile the conflict is logged and counted, and the running publish is kept;
//! - the last route seen for each stream, so plays of known streams still find their origin
//!   while Redis is down (logged once, counted in `/metrics`).

use crate::cluster::register::Heartbeat;
use crate::cluster::registry::{
    choose, heartbeat_command, Attempt, ClaimOp, Command, CountOp, Due, HeldClaims, LiveOp,
    LookupOp, Mapping, MemoryStore, Operation, OriginInfo, OriginRecord, OriginView, RegistryError,
    RegistryStore, Reply, Route, Settled, Step, StoreError, Timing,
};
use crate::config::{ProxyConfig, RegistryKind};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;

/// How the registry is set up (from `[proxy]`).
#[derive(Debug, Clone)]
pub struct RegistrySetup {
    /// Memory or Redis.
    pub kind: RegistryKind,
    /// `redis://...` for Redis.
    pub redis_url: String,
    /// Heartbeat timing of the origins.
    pub timing: Timing,
    /// Mapping TTL, ms.
    pub claim_ttl_ms: u64,
    /// This proxy's holder id.
    pub holder: String,
    /// Bound on one request's store round trips.
    pub timeout: Duration,
}

impl RegistrySetup {
    /// The setup `[proxy]` describes.
    pub fn from_config(p: &ProxyConfig) -> RegistrySetup {
        RegistrySetup {
            kind: p.registry,
            redis_url: p.redis_url.clone(),
            timing: Timing {
                heartbeat_interval_ms: p.heartbeat_interval_ms,
            },
            claim_ttl_ms: p.claim_ttl_ms,
            holder: p.holder_id(),
            timeout: p.registry_timeout(),
        }
    }
}

/// A request to the registry.
#[derive(Debug, Clone)]
pub enum RegistryRequest {
    /// An origin's heartbeat.
    Heartbeat(Box<Heartbeat>),
    /// Place a new publish of `key` and claim the stream for this proxy.
    Publish {
        /// `vhost/app/stream`.
        key: String,
    },
    /// Where a player of `key` goes.
    Play {
        /// `vhost/app/stream`.
        key: String,
    },
    /// A publish placed by `Publish` ended.
    Release {
        /// `vhost/app/stream`.
        key: String,
    },
    /// Every known origin, alive or not (the introspection API).
    Origins,
    /// Every mapped stream (the introspection API).
    Streams,
}

/// The registry's answer.
#[derive(Debug, Clone)]
pub enum RegistryAnswer {
    /// Done (heartbeat, release).
    Done,
    /// The stream's origin (publish placed and claimed, or a play's route).
    Origin(OriginRecord),
    /// JSON for the introspection API.
    Json(Value),
}

/// Why a registry request failed.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum RegistryFailure {
    /// This node has no registry (not a proxy).
    #[error("no registry on this node")]
    Disabled,
    /// No origin is alive.
    #[error("no live origin")]
    NoOrigin,
    /// Nobody publishes the stream.
    #[error("stream not mapped to any origin")]
    NotFound,
    /// The stream's origin stopped heartbeating.
    #[error("stream's origin `{0}` is dead")]
    OriginDead(String),
    /// Another proxy's publish holds the stream.
    #[error("stream already published on origin `{origin}` through proxy `{holder}`")]
    AlreadyMapped {
        /// The stream's origin.
        origin: String,
        /// The proxy holding it.
        holder: String,
    },
    /// The store failed or did not answer in time (Redis down).
    #[error("registry unavailable: {0}")]
    Unavailable(String),
}

impl From<RegistryError> for RegistryFailure {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::NoOrigin => RegistryFailure::NoOrigin,
            RegistryError::NotFound => RegistryFailure::NotFound,
            RegistryError::OriginDead { origin } => RegistryFailure::OriginDead(origin),
            RegistryError::AlreadyMapped { origin, holder } => {
                RegistryFailure::AlreadyMapped { origin, holder }
            }
            other => RegistryFailure::Unavailable(other.to_string()),
        }
    }
}

/// Registry figures for `/metrics` (shared with the shards).
#[derive(Debug, Default)]
pub struct RegistryStats {
    /// The store answered the last request (Redis up).
    pub store_up: AtomicBool,
    /// Store failures (errors and timeouts).
    pub store_errors: AtomicU64,
    /// Heartbeats recorded.
    pub heartbeats: AtomicU64,
    /// Publishes placed and claimed.
    pub claims: AtomicU64,
    /// Publishes refused because another proxy holds the stream.
    pub claim_conflicts: AtomicU64,
    /// Plays routed.
    pub lookups: AtomicU64,
    /// Plays routed from the local cache while the store was down.
    pub cache_routes: AtomicU64,
    /// Claims held by this proxy now.
    pub held: AtomicU64,
    /// Publishes placed from this proxy's own view of the origins while the store was down.
    pub offline_publishes: AtomicU64,
    /// Held claims not written to the store yet (placed while it was down, or in conflict).
    pub pending: AtomicU64,
    /// Claims placed while the store was down and written once it was back.
    pub caught_up: AtomicU64,
    /// Catch-ups that found another proxy's claim on the stream (the publish kept running).
    pub catchup_conflicts: AtomicU64,
}

impl RegistryStats {
    /// Prometheus lines.
    pub fn render(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "# TYPE shardcast_registry_up gauge\nshardcast_registry_up {}\n\
             # TYPE shardcast_registry_errors_total counter\nshardcast_registry_errors_total {}\n\
             # TYPE shardcast_registry_heartbeats_total counter\nshardcast_registry_heartbeats_total {}\n\
             # TYPE shardcast_registry_claims_total counter\nshardcast_registry_claims_total {}\n\
             # TYPE shardcast_registry_claim_conflicts_total counter\nshardcast_registry_claim_conflicts_total {}\n\
             # TYPE shardcast_registry_lookups_total counter\nshardcast_registry_lookups_total {}\n\
             # TYPE shardcast_registry_cache_routes_total counter\nshardcast_registry_cache_routes_total {}\n\
             # TYPE shardcast_registry_held_claims gauge\nshardcast_registry_held_claims {}\n\
             # TYPE shardcast_registry_offline_publishes_total counter\nshardcast_registry_offline_publishes_total {}\n\
             # TYPE shardcast_registry_pending_claims gauge\nshardcast_registry_pending_claims {}\n\
             # TYPE shardcast_registry_caught_up_total counter\nshardcast_registry_caught_up_total {}\n\
             # TYPE shardcast_registry_catchup_conflicts_total counter\nshardcast_registry_catchup_conflicts_total {}\n",
            u8::from(self.store_up.load(Ordering::Relaxed)),
            g(&self.store_errors),
            g(&self.heartbeats),
            g(&self.claims),
            g(&self.claim_conflicts),
            g(&self.lookups),
            g(&self.cache_routes),
            g(&self.held),
            g(&self.offline_publishes),
            g(&self.pending),
            g(&self.caught_up),
            g(&self.catchup_conflicts),
        )
    }
}

enum Store {
    Memory(Mutex<MemoryStore>),
    Redis(redis::aio::ConnectionManager),
}

/// What this proxy knows by itself.
#[derive(Default)]
struct Local {
    /// Claims held, written or pending.
    held: HeldClaims,
    /// Last route per stream.
    routes: HashMap<String, OriginRecord>,
    /// The origins as this proxy last saw them.
    view: OriginView,
}

/// The registry service (one per process, on the control thread).
pub struct Service {
    store: Store,
    setup: RegistrySetup,
    local: Mutex<Local>,
    /// Woken when the store comes back, so held claims catch up at once.
    back: tokio::sync::Notify,
    /// Figures for `/metrics`.
    pub stats: Arc<RegistryStats>,
    /// Tests: the store fails every command, as Redis does when it is down.
    #[cfg(test)]
    down: AtomicBool,
}

/// Wall-clock ms since the epoch (proxies compare heartbeat times across machines).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Service {
    /// Set up the store (Redis connects lazily, so a Redis that is down at start-up is only a
    /// failing store until it comes up).
    pub fn new(setup: RegistrySetup) -> Result<Service, String> {
        let store = match setup.kind {
            RegistryKind::Memory => Store::Memory(Mutex::new(MemoryStore::new())),
            RegistryKind::Redis => {
                let client = redis::Client::open(setup.redis_url.as_str())
                    .map_err(|e| format!("redis_url {}: {e}", setup.redis_url))?;
                let cfg = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(setup.timeout))
                    .set_response_timeout(Some(setup.timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                let cm = redis::aio::ConnectionManager::new_lazy_with_config(client, cfg)
                    .map_err(|e| format!("redis: {e}"))?;
                Store::Redis(cm)
            }
        };
        Ok(Service {
            store,
            setup,
            local: Mutex::default(),
            back: tokio::sync::Notify::new(),
            stats: Arc::new(RegistryStats::default()),
            #[cfg(test)]
            down: AtomicBool::new(false),
        })
    }

    fn local(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn exec(&self, cmd: &Command, now: u64) -> Result<Reply, StoreError> {
        #[cfg(test)]
        if self.down.load(Ordering::Relaxed) {
            let r = Err(StoreError::Backend("test: store down".into()));
            self.note_store(&r);
            return r;
        }
        let r = match &self.store {
            Store::Memory(m) => m
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .execute(cmd, now),
            Store::Redis(cm) => {
                match tokio::time::timeout(
                    self.setup.timeout,
                    super::redis_store::exec(cm.clone(), cmd),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => Err(StoreError::Backend(
                        format!("no answer within {:?}", self.setup.timeout).into(),
                    )),
                }
            }
        };
        self.note_store(&r);
        r
    }

    /// Count a store answer; log (and wake the catch-up) when the store goes down or back.
    fn note_store(&self, r: &Result<Reply, StoreError>) {
        let up = r.is_ok() || matches!(r, Err(StoreError::UnexpectedReply { .. }));
        let was = self.stats.store_up.swap(up, Ordering::Relaxed);
        if !up {
            self.stats.store_errors.fetch_add(1, Ordering::Relaxed);
        }
        if was != up {
            if up {
                log::info!("registry: store is back");
                self.back.notify_one();
            } else if let Err(e) = r {
                log::warn!("registry: store unavailable ({e}); serving known streams only");
            }
        }
    }

    async fn drive<O: Operation>(&self, mut op: O, now: u64) -> Result<O::Output, RegistryError> {
        let mut reply = None;
        loop {
            match op.step(reply.take()) {
                Step::Send(cmd) => reply = Some(self.exec(&cmd, now).await?),
                Step::Done(out) => return out,
            }
        }
    }

    /// Carry out one request.
    pub async fn handle(&self, req: RegistryRequest) -> Result<RegistryAnswer, RegistryFailure> {
        let now = now_ms();
        let timing = self.setup.timing;
        match req {
            RegistryRequest::Heartbeat(hb) => {
                // This proxy saw the origin alive, whether or not the store takes the record.
                self.local().view.note(OriginInfo {
                    record: OriginRecord::from_heartbeat(&hb),
                    last_seen_ms: now,
                });
                let cmd = heartbeat_command(&hb, &timing, now);
                self.exec(&cmd, now)
                    .await
                    .map_err(|e| RegistryFailure::Unavailable(e.to_string()))?;
                self.stats.heartbeats.fetch_add(1, Ordering::Relaxed);
                Ok(RegistryAnswer::Done)
            }
            RegistryRequest::Publish { key } => {
                let budget = self.store_budget();
                let (origin, mapping, written) =
                    match tokio::time::timeout(budget, self.place_and_claim(&key, now)).await {
                        Ok(Ok((origin, mapping))) => (origin, mapping, true),
                        Ok(Err(RegistryError::Store(e @ StoreError::Backend(_)))) => {
                            self.place_offline(&key, now, &e.to_string())?
                        }
                        Err(_) => {
                            self.place_offline(&key, now, &format!("no answer within {budget:?}"))?
                        }
                        Ok(Err(e @ RegistryError::AlreadyMapped { .. })) => {
                            self.stats.claim_conflicts.fetch_add(1, Ordering::Relaxed);
                            return Err(e.into());
                        }
                        Ok(Err(e)) => return Err(e.into()),
                    };
                if written {
                    self.stats.claims.fetch_add(1, Ordering::Relaxed);
                }
                let mut l = self.local();
                l.held.hold(&key, mapping, written, now);
                l.routes.insert(key, origin.record.clone());
                self.gauges(&l);
                Ok(RegistryAnswer::Origin(origin.record))
            }
            RegistryRequest::Play { key } => {
                self.stats.lookups.fetch_add(1, Ordering::Relaxed);
                match self.drive(LookupOp::new(&key, &timing, now), now).await {
                    Ok(Route { origin, .. }) => {
                        self.local().routes.insert(key, origin.record.clone());
                        Ok(RegistryAnswer::Origin(origin.record))
                    }
                    Err(RegistryError::Store(e)) => {
                        let cached = self.local().routes.get(&key).cloned();
                        match cached {
                            Some(r) => {
                                self.stats.cache_routes.fetch_add(1, Ordering::Relaxed);
                                Ok(RegistryAnswer::Origin(r))
                            }
                            None => Err(RegistryFailure::Unavailable(e.to_string())),
                        }
                    }
                    Err(e) => {
                        self.local().routes.remove(&key);
                        Err(e.into())
                    }
                }
            }
            RegistryRequest::Release { key } => {
                let mapping = {
                    let mut l = self.local();
                    let last = l.held.release(&key);
                    if last.is_some() {
                        l.routes.remove(&key);
                    }
                    self.gauges(&l);
                    last
                };
                // Compare-and-delete: harmless for a claim never written or taken by another.
                if let Some(m) = mapping {
                    let _ = self.drive(CountOp::release(&key, &m), now).await;
                }
                Ok(RegistryAnswer::Done)
            }
            RegistryRequest::Origins => self.origins_json(now).await,
            RegistryRequest::Streams => self.streams_json(now).await,
        }
    }

    async fn all_origins(&self, now: u64) -> Result<Vec<OriginInfo>, RegistryFailure> {
        let unavailable = |e: StoreError| RegistryFailure::Unavailable(e.to_string());
        let scored = match self
            .exec(&Command::LiveOrigins { since_ms: 0 }, now)
            .await
            .map_err(unavailable)?
        {
            Reply::Scored(s) => s,
            r => return Err(RegistryFailure::Unavailable(format!("{r:?}"))),
        };
        if scored.is_empty() {
            return Ok(Vec::new());
        }
        let ids = scored.iter().map(|(id, _)| id.clone()).collect();
        let values = match self
            .exec(&Command::GetOrigins { ids }, now)
            .await
            .map_err(unavailable)?
        {
            Reply::Values(v) => v,
            r => return Err(RegistryFailure::Unavailable(format!("{r:?}"))),
        };
        Ok(scored
            .into_iter()
            .zip(values)
            .filter_map(|((_, last), v)| {
                Some(OriginInfo {
                    record: serde_json::from_str(v.as_deref()?).ok()?,
                    last_seen_ms: last,
                })
            })
            .collect())
    }

    async fn origins_json(&self, now: u64) -> Result<RegistryAnswer, RegistryFailure> {
        let timing = self.setup.timing;
        let list: Vec<Value> = self
            .all_origins(now)
            .await?
            .into_iter()
            .map(|o| {
                json!({
                    "id": o.record.id,
                    "ip": o.record.ip,
                    "rtmp": o.record.rtmp,
                    "http": o.record.http,
                    "api": o.record.api,
                    "last_heartbeat_ms": o.last_seen_ms,
                    "age_ms": now.saturating_sub(o.last_seen_ms),
                    "alive": timing.alive(o.last_seen_ms, now),
                    "load": o.record.load,
                })
            })
            .collect();
        Ok(RegistryAnswer::Json(json!({"code": 0, "origins": list})))
    }

    async fn streams_json(&self, now: u64) -> Result<RegistryAnswer, RegistryFailure> {
        let mut keys = Vec::new();
        let mut cursor = 0;
        for _ in 0..1000 {
            match self
                .exec(&Command::ScanUrls { cursor }, now)
                .await
                .map_err(|e| RegistryFailure::Unavailable(e.to_string()))?
            {
                Reply::Page {
                    cursor: next,
                    keys: page,
                } => {
                    keys.extend(page);
                    cursor = next;
                }
                r => return Err(RegistryFailure::Unavailable(format!("{r:?}"))),
            }
            if cursor == 0 || keys.len() > 100_000 {
                break;
            }
        }
        keys.sort();
        keys.dedup();
        let values = if keys.is_empty() {
            Vec::new()
        } else {
            match self
                .exec(&Command::GetUrls { keys: keys.clone() }, now)
                .await
                .map_err(|e| RegistryFailure::Unavailable(e.to_string()))?
            {
                Reply::Values(v) => v,
                r => return Err(RegistryFailure::Unavailable(format!("{r:?}"))),
            }
        };
        let list: Vec<Value> = keys
            .iter()
            .zip(values)
            .filter_map(|(k, v)| {
                let m: Mapping = serde_json::from_str(v.as_deref()?).ok()?;
                Some(json!({"stream": k, "origin": m.origin, "proxy": m.holder}))
            })
            .collect();
        Ok(RegistryAnswer::Json(
            json!({"code": 0, "proxy": self.setup.holder, "streams": list}),
        ))
    }

    /// Place a new publish with the store: the live origins (noted in this proxy's view),
    /// the least loaded of them, and its claim (SET NX + TTL).
    async fn place_and_claim(
        &self,
        key: &str,
        now: u64,
    ) -> Result<(OriginInfo, Mapping), RegistryError> {
        let timing = self.setup.timing;
        let live = self.drive(LiveOp::new(&timing, now), now).await?;
        self.local().view.note_all(&live);
        let origin = choose(key, &live).cloned().ok_or(RegistryError::NoOrigin)?;
        let op = ClaimOp::new(
            key,
            &origin.record.id,
            &self.setup.holder,
            self.setup.claim_ttl_ms,
            &timing,
            now,
        );
        let mapping = op.mapping().clone();
        self.drive(op, now).await?;
        Ok((origin, mapping))
    }

    /// The store is down: place the publish on the least-loaded origin this proxy's own view
    /// holds alive; its claim is written when the store is back.
    fn place_offline(
        &self,
        key: &str,
        now: u64,
        why: &str,
    ) -> Result<(OriginInfo, Mapping, bool), RegistryFailure> {
        let mut l = self.local();
        let known = l.view.len();
        let Some(origin) = l.view.place(key, &self.setup.timing, now) else {
            log::warn!(
                "registry: store unavailable ({why}); publish of {key} refused: none of the {known} origins this proxy knows is alive"
            );
            return Err(RegistryFailure::Unavailable(format!(
                "{why}; no live origin known to this proxy"
            )));
        };
        log::warn!(
            "registry: store unavailable ({why}); publish of {key} placed on origin {} ({}) from this proxy's view of {known} origins; claim pending until the store is back",
            origin.record.id,
            origin.record.rtmp
        );
        self.stats.offline_publishes.fetch_add(1, Ordering::Relaxed);
        let mapping = Mapping {
            origin: origin.record.id.clone(),
            holder: self.setup.holder.clone(),
        };
        Ok((origin, mapping, false))
    }

    /// Publish the held and pending claim counts.
    fn gauges(&self, l: &Local) {
        self.stats
            .held
            .store(l.held.len() as u64, Ordering::Relaxed);
        self.stats
            .pending
            .store(l.held.unwritten() as u64, Ordering::Relaxed);
    }

    /// Claim `key` for `m` (SET NX + TTL, or taking over a dead origin's claim); `None` when
    /// the store is down.
    async fn try_claim(&self, key: &str, m: &Mapping, now: u64) -> Option<Attempt> {
        let ttl = self.setup.claim_ttl_ms;
        let op = ClaimOp::new(key, &m.origin, &m.holder, ttl, &self.setup.timing, now);
        match self.drive(op, now).await {
            Ok(()) => Some(Attempt::Held),
            Err(RegistryError::AlreadyMapped { origin, holder }) => {
                Some(Attempt::Taken { origin, holder })
            }
            Err(RegistryError::Store(StoreError::Backend(_))) => None,
            Err(e) => Some(Attempt::Failed(e.to_string())),
        }
    }

    /// Refresh every written claim this proxy holds (one lost while the store was down is
    /// claimed again) and write the pending ones (placed while it was down). Then forget
    /// long-dead origins.
    pub async fn maintain(&self) {
        let now = now_ms();
        let due = self.local().held.due();
        let ttl = self.setup.claim_ttl_ms;
        for (key, m, due) in due {
            let attempt = match due {
                Due::Refresh => match self.drive(CountOp::refresh(&key, &m, ttl), now).await {
                    Ok(1) => Some(Attempt::Held),
                    Ok(_) => {
                        let a = self.try_claim(&key, &m, now).await;
                        if a == Some(Attempt::Held)
                            && self.local().held.restored(&key, &m) == Settled::Restored
                        {
                            log::info!("registry: claim on {key} restored");
                        }
                        a
                    }
                    Err(_) => None,
                },
                Due::Claim => self.try_claim(&key, &m, now).await,
            };
            let Some(attempt) = attempt else {
                break; // store down: try again next round
            };
            let settled = self.local().held.settle(&key, &m, attempt, now);
            self.report(&key, &m, settled);
        }
        {
            let l = self.local();
            self.gauges(&l);
        }
        let _ = self
            .drive(CountOp::prune(&self.setup.timing, now), now)
            .await;
    }

    /// Log (and count) what a catch-up round changed for one claim.
    fn report(&self, key: &str, m: &Mapping, settled: Settled) {
        match settled {
            Settled::Same | Settled::Restored => {}
            Settled::CaughtUp { waited_ms } => {
                self.stats.caught_up.fetch_add(1, Ordering::Relaxed);
                self.stats.claims.fetch_add(1, Ordering::Relaxed);
                log::info!(
                    "registry: claim on {key} (origin {}) written on catch-up, {waited_ms} ms after its publish was placed with the store down",
                    m.origin
                );
            }
            Settled::Conflict {
                origin,
                holder,
                ours,
            } => {
                self.stats.catchup_conflicts.fetch_add(1, Ordering::Relaxed);
                log::warn!(
                    "registry: conflict on catch-up: {key} is claimed by proxy {holder} for origin {origin}; this proxy's publish on origin {ours} keeps running, its claim is retried every round"
                );
            }
            Settled::ConflictResolved => {
                log::info!(
                    "registry: conflict on {key} resolved: claim written for origin {}",
                    m.origin
                );
            }
            Settled::Failed(why) => log::warn!("registry: claim on {key}: {why}"),
        }
    }

    /// Resolves when the store comes back after being down.
    pub async fn store_back(&self) {
        self.back.notified().await
    }

    /// How long a publish waits on the store before it is placed from this proxy's own view:
    /// three quarters of the request's bound, leaving the rest for the answer.
    fn store_budget(&self) -> Duration {
        self.setup.timeout * 3 / 4
    }

    /// The bound on one request.
    pub fn timeout(&self) -> Duration {
        self.setup.timeout
    }

    /// How often [`Service::maintain`] runs.
    pub fn maintain_every(&self) -> Duration {
        Duration::from_millis((self.setup.claim_ttl_ms / 3).max(100))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(server: &str, port: u16) -> Box<Heartbeat> {
        let body = format!(
            r#"{{"ip":"127.0.0.1","server":"{server}","service":"s","pid":"1","rtmp":["{port}"]}}"#
        );
        Box::new(crate::cluster::register::parse_heartbeat(body.as_bytes()).unwrap())
    }

    fn service() -> Service {
        Service::new(RegistrySetup {
            kind: RegistryKind::Memory,
            redis_url: String::new(),
            timing: Timing {
                heartbeat_interval_ms: 1000,
            },
            claim_ttl_ms: 3000,
            holder: "p1".into(),
            timeout: Duration::from_millis(200),
        })
        .unwrap()
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn publish(s: &Service, key: &str) -> Result<RegistryAnswer, RegistryFailure> {
        block_on(s.handle(RegistryRequest::Publish { key: key.into() }))
    }

    fn claim_of(s: &Service, key: &str) -> Option<Mapping> {
        let Store::Memory(m) = &s.store else { panic!() };
        let r = m
            .lock()
            .unwrap()
            .execute(&Command::GetUrl { key: key.into() }, now_ms())
            .unwrap();
        match r {
            Reply::Value(v) => v.map(|v| serde_json::from_str(&v).unwrap()),
            _ => panic!(),
        }
    }

    fn g(a: &AtomicU64) -> u64 {
        a.load(Ordering::Relaxed)
    }

    #[test]
    fn publish_with_the_store_down_is_placed_from_the_view_and_caught_up() {
        let s = service();
        block_on(async {
            s.handle(RegistryRequest::Heartbeat(hb("o1", 1935)))
                .await
                .unwrap();
        });
        s.down.store(true, Ordering::Relaxed);
        // A heartbeat the store cannot take still tells this proxy the origin lives.
        let r = block_on(s.handle(RegistryRequest::Heartbeat(hb("o2", 1936))));
        assert!(matches!(r, Err(RegistryFailure::Unavailable(_))));
        let Ok(RegistryAnswer::Origin(placed)) = publish(&s, "v/a/k1") else {
            panic!("placed from the view")
        };
        assert!(placed.rtmp.ends_with(":1935") || placed.rtmp.ends_with(":1936"));
        assert_eq!(g(&s.stats.offline_publishes), 1);
        assert_eq!(g(&s.stats.pending), 1);
        assert_eq!(g(&s.stats.claims), 0);
        assert!(!s.stats.store_up.load(Ordering::Relaxed));
        // Plays through this proxy find it while the store is down.
        let r = block_on(s.handle(RegistryRequest::Play {
            key: "v/a/k1".into(),
        }));
        assert!(matches!(r, Ok(RegistryAnswer::Origin(ref o)) if *o == placed));
        // A round while still down changes nothing.
        block_on(s.maintain());
        assert_eq!(g(&s.stats.pending), 1);
        // Back: the pending claim is written, with our mapping.
        s.down.store(false, Ordering::Relaxed);
        block_on(s.maintain());
        let m = claim_of(&s, "v/a/k1").expect("claim written on catch-up");
        assert_eq!(
            (m.holder.as_str(), placed.id.as_str()),
            ("p1", m.origin.as_str())
        );
        assert_eq!(g(&s.stats.caught_up), 1);
        assert_eq!(g(&s.stats.pending), 0);
        assert_eq!(g(&s.stats.claims), 1);
        // The next rounds refresh it; the release deletes it.
        block_on(s.maintain());
        assert_eq!(g(&s.stats.caught_up), 1);
        block_on(s.handle(RegistryRequest::Release {
            key: "v/a/k1".into(),
        }))
        .unwrap();
        assert_eq!(claim_of(&s, "v/a/k1"), None);
    }

    #[test]
    fn catch_up_conflict_is_counted_and_the_publish_kept() {
        let s = service();
        block_on(async {
            s.handle(RegistryRequest::Heartbeat(hb("o1", 1935)))
                .await
                .unwrap();
        });
        s.down.store(true, Ordering::Relaxed);
        assert!(publish(&s, "v/a/k2").is_ok());
        // Meanwhile another proxy, reaching the store, claimed the stream for another
        // (live) origin.
        s.down.store(false, Ordering::Relaxed);
        {
            let Store::Memory(m) = &s.store else { panic!() };
            let mut m = m.lock().unwrap();
            let t = s.setup.timing;
            m.execute(&heartbeat_command(&hb("o9", 1999), &t, now_ms()), now_ms())
                .unwrap();
            let theirs = Mapping {
                origin: "o9-s-1".into(),
                holder: "p2".into(),
            };
            let op = ClaimOp::new("v/a/k2", &theirs.origin, "p2", 3000, &t, now_ms());
            crate::cluster::registry::run(op, &mut *m, now_ms()).unwrap();
        }
        block_on(s.maintain());
        assert_eq!(g(&s.stats.catchup_conflicts), 1);
        assert_eq!(g(&s.stats.pending), 1, "still unwritten");
        assert_eq!(g(&s.stats.held), 1, "the publish is kept");
        assert_eq!(
            claim_of(&s, "v/a/k2").unwrap().holder,
            "p2",
            "theirs untouched"
        );
        // Reported once, retried every round.
        block_on(s.maintain());
        assert_eq!(g(&s.stats.catchup_conflicts), 1);
        // Our release does not delete their claim.
        block_on(s.handle(RegistryRequest::Release {
            key: "v/a/k2".into(),
        }))
        .unwrap();
        assert_eq!(claim_of(&s, "v/a/k2").unwrap().holder, "p2");
        assert_eq!(g(&s.stats.held), 0);
        // With nothing alive in the view, a publish while down is refused.
        let s = service();
        s.down.store(true, Ordering::Relaxed);
        assert!(matches!(
            publish(&s, "v/a/k3"),
            Err(RegistryFailure::Unavailable(_))
        ));
        assert_eq!(g(&s.stats.offline_publishes), 0);
    }

    #[test]
    fn publish_play_release_in_memory() {
        let s = service();
        block_on(async {
            let r = s
                .handle(RegistryRequest::Publish {
                    key: "v/a/s".into(),
                })
                .await;
            assert_eq!(r.unwrap_err(), RegistryFailure::NoOrigin);
            s.handle(RegistryRequest::Heartbeat(hb("o1", 1935)))
                .await
                .unwrap();
            let r = s
                .handle(RegistryRequest::Publish {
                    key: "v/a/s".into(),
                })
                .await;
            assert!(matches!(r, Ok(RegistryAnswer::Origin(ref o)) if o.rtmp == "127.0.0.1:1935"));
            let r = s
                .handle(RegistryRequest::Play {
                    key: "v/a/s".into(),
                })
                .await;
            assert!(matches!(r, Ok(RegistryAnswer::Origin(_))));
            let Ok(RegistryAnswer::Json(j)) = s.handle(RegistryRequest::Streams).await else {
                panic!()
            };
            assert_eq!(j["streams"][0]["stream"], "v/a/s");
            assert_eq!(j["streams"][0]["proxy"], "p1");
            s.handle(RegistryRequest::Release {
                key: "v/a/s".into(),
            })
            .await
            .unwrap();
            let r = s
                .handle(RegistryRequest::Play {
                    key: "v/a/s".into(),
                })
                .await;
            assert_eq!(r.unwrap_err(), RegistryFailure::NotFound);
            let Ok(RegistryAnswer::Json(j)) = s.handle(RegistryRequest::Origins).await else {
                panic!()
            };
            assert_eq!(j["origins"][0]["alive"], true);
        });
    }
}
