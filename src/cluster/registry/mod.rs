//! The proxy tier's shared state: which origins are alive (and how loaded), and which origin
//! each stream lives on. Several proxies share it, so it lives in Redis; here it is plain data
//! and logic, with an in-memory store that behaves exactly like the Redis one will.
//!
//! # Model
//! - Origins heartbeat every `interval`; one is dead once `now - last > 3 * interval`.
//! - A publish is placed on the least-loaded live origin ([`Registry::place_publish`]), then the
//!   stream is *claimed* for it with SET-NX semantics ([`Registry::claim`]): of two proxies
//!   racing for one stream exactly one wins, the other learns the winner's origin. A claim has
//!   a TTL its holder (the proxy carrying the publisher) refreshes; it expires when that proxy
//!   dies, and a claim on a dead origin may be taken over at once.
//! - A play goes to the stream's origin if it is alive ([`Registry::lookup_play`]); a dead
//!   origin's streams answer `OriginDead` at once instead of waiting for their claims to expire.
//!
//! # Time
//! Every call takes `now_ms`, wall-clock milliseconds since the UNIX epoch: proxies on different
//! machines compare each other's heartbeat times, which `Instant` cannot express. Claim TTLs
//! are counted by Redis on its own clock; clocks are assumed NTP-close (skew well under the
//! heartbeat interval).
//!
//! # Keys (SRS proxy names where they fit, `proxy/srs.go`)
//! - `srs-proxy-server:{id}`: the origin's record (JSON [`OriginRecord`]), TTL
//!   [`Timing::record_ttl_ms`]. SRS keeps the same key with its own JSON.
//! - `srs-proxy-url:{vhost/app/stream}`: the claim (JSON [`Mapping`]: origin id and holder
//!   proxy). SRS stores the server key there without a TTL and never takes it over; ours
//!   expires and fails over.
//! - `shardcast-proxy-origins`: sorted set, member origin id, score its last heartbeat (ms).
//!   SRS keeps a JSON array under `srs-proxy-all-servers` and rewrites it on every heartbeat,
//!   which races between proxies; a ZSET is updated atomically and answers "alive since t" in
//!   one range query.
//!
//! # Redis commands, one round trip per [`Command`]
//! | command | Redis | reply |
//! |---|---|---|
//! | `PutOrigin` | `MULTI`, `SET srs-proxy-server:{id} {json} PX {ttl}`, `ZADD shardcast-proxy-origins GT {now} {id}`, `EXEC` | `Ok` |
//! | `LiveOrigins` | `ZRANGEBYSCORE shardcast-proxy-origins {since} +inf WITHSCORES` | `Scored` |
//! | `GetOrigins` | `MGET srs-proxy-server:{id}...` | `Values` |
//! | `OriginSeen` | `ZSCORE shardcast-proxy-origins {id}` | `Score` |
//! | `PruneOrigins` | `ZREMRANGEBYSCORE shardcast-proxy-origins -inf ({before}` | `Count` |
//! | `ClaimUrl` | `SET srs-proxy-url:{key} {value} NX PX {ttl} GET` (Redis 7.0+) | `Value`: nil = claimed, else the holder's value |
//! | `GetUrl` | `GET srs-proxy-url:{key}` | `Value` |
//! | `RefreshUrl` | `EVAL` [`LUA_REFRESH`] `1 srs-proxy-url:{key} {value} {ttl}` | `Count` 1/0 |
//! | `ReplaceUrl` | `EVAL` [`LUA_REPLACE`] `1 srs-proxy-url:{key} {expected} {value} {ttl}` | `Count` 1/0 |
//! | `ReleaseUrl` | `EVAL` [`LUA_RELEASE`] `1 srs-proxy-url:{key} {value}` | `Count` 1/0 |
//! | `ScanUrls` | `SCAN {cursor} MATCH srs-proxy-url:* COUNT 500` | `Page` |
//! | `GetUrls` | `MGET srs-proxy-url:{key}...` | `Values` |
//!
//! Refresh, replace and release must only touch a claim that is still ours (it may have expired
//! and been won by another proxy); GET-then-compare-then-PEXPIRE from the client would race, so
//! the compare runs inside Redis as a three-line Lua script. `ZADD ... GT` keeps a late,
//! out-of-order heartbeat from moving an origin's time backwards. Scores are epoch ms, exact in
//! Redis's doubles. [`Command::redis_plan`] gives each command's argv.
//!
//! # Sync store, async Redis
//! The logic is written as sans-I/O [`Operation`]s: each says which [`Command`] to send next
//! and reads its [`Reply`]. [`MemoryStore`] answers synchronously and [`run`] drives an
//! operation against it; the Redis store will drive the same operations with an async loop:
//!
//! ```text
//! let mut reply = None;
//! loop {
//!     match op.step(reply.take()) {
//!         Step::Send(cmd) => reply = Some(redis.execute(&cmd).await?),
//!         Step::Done(out) => break out,
//!     }
//! }
//! ```
//!
//! so both stores run the very same decisions and differ only in how a command is carried out.

use super::register::{Heartbeat, Load};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use thiserror::Error;

/// Prefix of an origin's record key.
pub const ORIGIN_KEY_PREFIX: &str = "srs-proxy-server:";
/// Prefix of a stream's claim key.
pub const URL_KEY_PREFIX: &str = "srs-proxy-url:";
/// The sorted set of origins by last heartbeat.
pub const ORIGINS_ZSET: &str = "shardcast-proxy-origins";

/// Extend a claim's TTL if it still holds our value. `KEYS[1]` claim, `ARGV[1]` value,
/// `ARGV[2]` ms.
pub const LUA_REFRESH: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
/// Swap a claim's value if it still holds `expected`. `KEYS[1]` claim, `ARGV[1]` expected,
/// `ARGV[2]` new value, `ARGV[3]` ms.
pub const LUA_REPLACE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 else return 0 end";
/// Delete a claim if it still holds our value. `KEYS[1]` claim, `ARGV[1]` value.
pub const LUA_RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('DEL', KEYS[1]) else return 0 end";

/// Claim attempts before giving up when the claim keeps changing under us.
pub(crate) const MAX_ROUNDS: u32 = 3;

/// Heartbeat timing shared by every proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How often origins heartbeat, ms.
    pub heartbeat_interval_ms: u64,
}

impl Timing {
    /// An origin is dead after this long without a heartbeat: three missed.
    pub fn dead_after_ms(&self) -> u64 {
        3 * self.heartbeat_interval_ms
    }

    /// Was a heartbeat at `last_ms` recent enough at `now_ms`?
    pub fn alive(&self, last_ms: u64, now_ms: u64) -> bool {
        now_ms.saturating_sub(last_ms) <= self.dead_after_ms()
    }

    /// TTL of an origin's record: longer than liveness, so a live origin always has one.
    pub fn record_ttl_ms(&self) -> u64 {
        2 * self.dead_after_ms()
    }

    /// Dead origins stay listed this long (answering `OriginDead`), then are pruned.
    pub fn prune_after_ms(&self) -> u64 {
        10 * self.dead_after_ms()
    }
}

/// What the registry keeps about an origin (the JSON in `srs-proxy-server:{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OriginRecord {
    /// Registry id: `{server}-{service}-{pid}` from the heartbeat.
    pub id: String,
    /// Address peers reach the origin by (the heartbeat's `ip`).
    pub ip: String,
    /// `host:port` of its RTMP listener.
    pub rtmp: String,
    /// `host:port` of its HTTP server (the heartbeat's first `http[]` entry): where HTTP-FLV
    /// is served, on SRS (`http_server`) and shardcast origins alike.
    #[serde(default)]
    pub http: Option<String>,
    /// `host:port` of its HTTP API (the first `api[]` entry), if it announced one.
    #[serde(default)]
    pub api: Option<String>,
    /// Load figures; `None` from origins that report none (SRS).
    #[serde(default)]
    pub load: Option<Load>,
}

impl OriginRecord {
    /// The record for a heartbeat.
    pub fn from_heartbeat(hb: &Heartbeat) -> OriginRecord {
        OriginRecord {
            id: hb.id(),
            ip: hb.ip.clone(),
            rtmp: hb.rtmp_endpoint().host_port(),
            http: hb.http.first().map(|e| e.host_port()),
            api: hb.api.first().map(|e| e.host_port()),
            load: hb.load,
        }
    }
}

/// A live origin as placement and routing see it.
#[derive(Debug, Clone, PartialEq)]
pub struct OriginInfo {
    /// The origin's stored record.
    pub record: OriginRecord,
    /// Its last heartbeat, epoch ms.
    pub last_seen_ms: u64,
}

/// A claim's value: the stream's origin and the proxy that holds the claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    /// Origin id (as in `srs-proxy-server:{id}`).
    pub origin: String,
    /// Id of the proxy that holds the claim and refreshes it.
    pub holder: String,
}

impl Mapping {
    /// The stored form. Deterministic (field order fixed), since the Lua scripts compare it
    /// byte for byte.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    fn decode(key: &str, s: &str) -> Result<Mapping, StoreError> {
        serde_json::from_str(s).map_err(|e| StoreError::Corrupt {
            key: key.to_string(),
            reason: e.to_string(),
        })
    }
}

/// Where a play goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// The stream's origin, alive.
    pub origin: OriginInfo,
    /// The proxy holding the stream's claim.
    pub holder: String,
}

mod command;
mod front;
mod local;
mod memory;
mod ops;

pub use command::*;
pub use front::*;
pub use local::*;
pub use memory::*;
pub use ops::*;

/// The store failed or answered nonsense.
#[derive(Debug, Error)]
pub enum StoreError {
    /// A reply of the wrong kind for the command.
    #[error("unexpected reply to {command}: {reply:?}")]
    UnexpectedReply {
        /// The command's name.
        command: &'static str,
        /// What came back.
        reply: Reply,
    },
    /// A stored value that does not parse.
    #[error("corrupt value at `{key}`: {reason}")]
    Corrupt {
        /// The key it is stored at.
        key: String,
        /// The parse error.
        reason: String,
    },
    /// The store itself failed (connection, protocol).
    #[error("store: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Why a registry request did not get what it asked for.
#[derive(Debug, Error)]
pub enum RegistryError {
    /// No origin is alive to place a publish on.
    #[error("no live origin")]
    NoOrigin,
    /// No claim for the stream: nobody publishes it.
    #[error("stream not mapped to any origin")]
    NotFound,
    /// The stream's claim names an origin that stopped heartbeating.
    #[error("stream's origin `{origin}` is dead")]
    OriginDead {
        /// Origin id.
        origin: String,
    },
    /// Another claim with a live origin holds the stream.
    #[error("stream already mapped to origin `{origin}` by proxy `{holder}`")]
    AlreadyMapped {
        /// The holder's origin id.
        origin: String,
        /// The proxy holding the claim.
        holder: String,
    },
    /// Our claim expired or was taken over.
    #[error("claim is not held by us (expired or taken over)")]
    NotHeld,
    /// The claim kept changing under us; gave up after a few rounds.
    #[error("claim kept changing; gave up after {MAX_ROUNDS} rounds")]
    Contended,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A store that carries out [`Command`]s synchronously.
pub trait RegistryStore {
    /// Carry out `cmd`; `now_ms` is the store's clock (Redis has its own and ignores it).
    fn execute(&mut self, cmd: &Command, now_ms: u64) -> Result<Reply, StoreError>;
}

/// What an operation wants next.
#[derive(Debug)]
pub enum Step<T> {
    /// Carry out this command and call `step` again with its reply.
    Send(Command),
    /// Finished.
    Done(Result<T, RegistryError>),
}

/// A registry request as a sans-I/O state machine over store round trips.
pub trait Operation {
    /// What a successful operation yields.
    type Output;
    /// First call with `None`, then with the reply to the command last sent.
    fn step(&mut self, reply: Option<Reply>) -> Step<Self::Output>;
}

/// Drive `op` to completion against a synchronous store.
pub fn run<O: Operation, S: RegistryStore>(
    mut op: O,
    store: &mut S,
    now_ms: u64,
) -> Result<O::Output, RegistryError> {
    let mut reply = None;
    loop {
        match op.step(reply.take()) {
            Step::Send(cmd) => reply = Some(store.execute(&cmd, now_ms)?),
            Step::Done(out) => return out,
        }
    }
}

pub(crate) fn unexpected<T>(command: &'static str, reply: Option<Reply>) -> Step<T> {
    Step::Done(Err(StoreError::UnexpectedReply {
        command,
        reply: reply.unwrap_or(Reply::Ok),
    }
    .into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::register::Endpoint;

    const IV: u64 = 5_000;
    const TTL: u64 = 15_000;
    const T0: u64 = 1_700_000_000_000;
    const KEY: &str = "__defaultVhost__/live/cam1";

    fn timing() -> Timing {
        Timing {
            heartbeat_interval_ms: IV,
        }
    }

    fn hb(name: &str, port: u16, load: Option<Load>) -> Heartbeat {
        Heartbeat {
            device_id: String::new(),
            ip: "10.0.0.1".into(),
            server: name.into(),
            service: "s".into(),
            pid: "1".into(),
            rtmp: vec![Endpoint::parse(&port.to_string(), "10.0.0.1").unwrap()],
            http: vec![],
            api: vec![],
            srt: vec![],
            rtc: vec![],
            load,
        }
    }

    fn load(players: u64) -> Option<Load> {
        Some(Load {
            players,
            ..Load::default()
        })
    }

    fn registry() -> Registry<MemoryStore> {
        Registry::new(MemoryStore::new(), timing())
    }

    #[test]
    fn liveness_is_three_missed_heartbeats() {
        let t = timing();
        assert!(t.alive(T0, T0 + 3 * IV));
        assert!(!t.alive(T0, T0 + 3 * IV + 1));
        assert!(t.alive(T0 + 10, T0), "a clock slightly behind is not death");
        let mut r = registry();
        r.heartbeat(&hb("a", 1935, None), T0).unwrap();
        assert_eq!(r.live_origins(T0 + 3 * IV).unwrap().len(), 1);
        assert_eq!(r.live_origins(T0 + 3 * IV + 1).unwrap().len(), 0);
        // A record outlives liveness, so a live origin is always described.
        assert!(t.record_ttl_ms() > t.dead_after_ms());
    }

    #[test]
    fn placement_picks_least_loaded_live_origin() {
        let mut r = registry();
        assert!(matches!(
            r.place_publish(KEY, T0),
            Err(RegistryError::NoOrigin)
        ));
        r.heartbeat(&hb("busy", 1935, load(500)), T0).unwrap();
        r.heartbeat(&hb("idle", 1936, load(3)), T0).unwrap();
        r.heartbeat(&hb("dead", 1937, load(0)), T0 - 4 * IV)
            .unwrap();
        let o = r.place_publish(KEY, T0).unwrap();
        assert_eq!(o.record.id, "idle-s-1");
        assert_eq!(o.record.rtmp, "10.0.0.1:1936");
        assert_eq!(o.last_seen_ms, T0);
        // The idle one dies: the busy one is all that is left.
        assert_eq!(
            r.place_publish(KEY, T0 + 3 * IV + 1)
                .unwrap_err()
                .to_string(),
            "no live origin"
        );
        r.heartbeat(&hb("busy", 1935, load(500)), T0 + 3 * IV)
            .unwrap();
        assert_eq!(
            r.place_publish(KEY, T0 + 3 * IV + 1).unwrap().record.id,
            "busy-s-1"
        );
    }

    #[test]
    fn equal_load_spreads_streams() {
        let mut r = registry();
        for i in 0..4 {
            r.heartbeat(&hb(&format!("o{i}"), 1935 + i, None), T0)
                .unwrap();
        }
        let mut used = std::collections::HashSet::new();
        for s in 0..64 {
            let o = r.place_publish(&format!("v/live/s{s}"), T0).unwrap();
            used.insert(o.record.id);
        }
        assert_eq!(used.len(), 4, "rendezvous ties spread over every origin");
        // And the choice is stable for one key.
        let a = r.place_publish(KEY, T0).unwrap();
        assert_eq!(r.place_publish(KEY, T0).unwrap(), a);
    }

    #[test]
    fn cpu_steps_then_egress() {
        let mk = |id: &str, cpu: f64, egress: f64| OriginInfo {
            record: OriginRecord {
                id: id.into(),
                ip: String::new(),
                rtmp: String::new(),
                http: None,
                api: None,
                load: Some(Load {
                    cpu,
                    egress_mbps: egress,
                    ..Load::default()
                }),
            },
            last_seen_ms: T0,
        };
        // 10% and 12% are one step: egress decides.
        let live = [mk("a", 10.0, 900.0), mk("b", 12.0, 100.0)];
        assert_eq!(choose(KEY, &live).unwrap().record.id, "b");
        // 10% and 40% are not.
        let live = [mk("a", 10.0, 900.0), mk("b", 40.0, 100.0)];
        assert_eq!(choose(KEY, &live).unwrap().record.id, "a");
        assert!(choose(KEY, &[]).is_none());
    }

    #[test]
    fn two_proxies_racing_one_wins() {
        let mut r = registry();
        r.heartbeat(&hb("a", 1935, None), T0).unwrap();
        r.heartbeat(&hb("b", 1936, None), T0).unwrap();
        r.claim(KEY, "a-s-1", "proxy-1", T0, TTL).unwrap();
        match r.claim(KEY, "b-s-1", "proxy-2", T0, TTL) {
            Err(RegistryError::AlreadyMapped { origin, holder }) => {
                assert_eq!((origin.as_str(), holder.as_str()), ("a-s-1", "proxy-1"));
            }
            other => panic!("{other:?}"),
        }
        // The winner claiming again is fine (and renews).
        r.claim(KEY, "a-s-1", "proxy-1", T0 + 1000, TTL).unwrap();
        let route = r.lookup_play(KEY, T0 + 1000).unwrap();
        assert_eq!(route.origin.record.id, "a-s-1");
        assert_eq!(route.holder, "proxy-1");
    }

    #[test]
    fn claim_race_interleaved_step_by_step() {
        // Both proxies read "free" before either writes: SET NX decides, not the read.
        let mut store = MemoryStore::new();
        let t = timing();
        store
            .execute(&heartbeat_command(&hb("a", 1935, None), &t, T0), T0)
            .unwrap();
        let mut p1 = ClaimOp::new(KEY, "a-s-1", "proxy-1", TTL, &t, T0);
        let mut p2 = ClaimOp::new(KEY, "a-s-1", "proxy-2", TTL, &t, T0);
        let (Step::Send(c1), Step::Send(c2)) = (p1.step(None), p2.step(None)) else {
            panic!()
        };
        let r1 = store.execute(&c1, T0).unwrap();
        let r2 = store.execute(&c2, T0).unwrap();
        assert!(matches!(p1.step(Some(r1)), Step::Done(Ok(()))));
        // p2 sees the holder, checks its origin (alive) and gives up.
        let Step::Send(c) = p2.step(Some(r2)) else {
            panic!()
        };
        assert_eq!(c, Command::OriginSeen { id: "a-s-1".into() });
        let r = store.execute(&c, T0).unwrap();
        assert!(matches!(
            p2.step(Some(r)),
            Step::Done(Err(RegistryError::AlreadyMapped { .. }))
        ));
    }

    #[test]
    fn claim_expires_after_ttl_and_refresh_extends() {
        let mut r = registry();
        r.heartbeat(&hb("a", 1935, None), T0).unwrap();
        r.claim(KEY, "a-s-1", "p1", T0, TTL).unwrap();
        // Refreshed before expiry: alive past the first TTL.
        r.refresh(KEY, "a-s-1", "p1", T0 + TTL - 1, TTL).unwrap();
        r.heartbeat(&hb("a", 1935, None), T0 + TTL).unwrap();
        assert!(r.lookup_play(KEY, T0 + TTL + 1).is_ok());
        // Not refreshed: gone at the TTL.
        let end = T0 + 2 * TTL - 1;
        r.heartbeat(&hb("a", 1935, None), end).unwrap();
        assert!(matches!(
            r.lookup_play(KEY, end + 1),
            Err(RegistryError::NotFound)
        ));
        // Refreshing an expired claim fails: we must claim again.
        assert!(matches!(
            r.refresh(KEY, "a-s-1", "p1", end + 1, TTL),
            Err(RegistryError::NotHeld)
        ));
        // A different proxy's refresh never extends our claim.
        r.claim(KEY, "a-s-1", "p1", end + 1, TTL).unwrap();
        assert!(matches!(
            r.refresh(KEY, "a-s-1", "p2", end + 2, TTL),
            Err(RegistryError::NotHeld)
        ));
        // Once expired, another proxy wins it.
        r.heartbeat(&hb("a", 1935, None), end + 1 + TTL).unwrap();
        r.claim(KEY, "a-s-1", "p2", end + 1 + TTL, TTL).unwrap();
        assert_eq!(r.lookup_play(KEY, end + 1 + TTL).unwrap().holder, "p2");
    }

    #[test]
    fn release_only_our_own_claim() {
        let mut r = registry();
        r.heartbeat(&hb("a", 1935, None), T0).unwrap();
        r.claim(KEY, "a-s-1", "p1", T0, TTL).unwrap();
        assert!(!r.release(KEY, "a-s-1", "p2", T0).unwrap());
        assert!(r.lookup_play(KEY, T0).is_ok());
        assert!(r.release(KEY, "a-s-1", "p1", T0).unwrap());
        assert!(matches!(
            r.lookup_play(KEY, T0),
            Err(RegistryError::NotFound)
        ));
        assert!(!r.release(KEY, "a-s-1", "p1", T0).unwrap());
    }

    #[test]
    fn dead_origin_gives_origin_dead_at_once_and_can_be_taken_over() {
        let mut r = registry();
        r.heartbeat(&hb("a", 1935, None), T0).unwrap();
        r.heartbeat(&hb("b", 1936, None), T0).unwrap();
        r.claim(KEY, "a-s-1", "p1", T0, 10 * TTL).unwrap();
        // b keeps heartbeating, a stops.
        let later = T0 + 3 * IV + 1;
        r.heartbeat(&hb("b", 1936, None), later).unwrap();
        match r.lookup_play(KEY, later) {
            Err(RegistryError::OriginDead { origin }) => assert_eq!(origin, "a-s-1"),
            other => panic!("{other:?}"),
        }
        // Placement skips the dead origin...
        assert_eq!(r.place_publish(KEY, later).unwrap().record.id, "b-s-1");
        // ...and the claim, still unexpired, is taken over for the live one.
        r.claim(KEY, "b-s-1", "p2", later, TTL).unwrap();
        let route = r.lookup_play(KEY, later).unwrap();
        assert_eq!(
            (route.origin.record.id.as_str(), route.holder.as_str()),
            ("b-s-1", "p2")
        );
        // The old holder's refresh now fails: it lost the claim.
        assert!(matches!(
            r.refresh(KEY, "a-s-1", "p1", later, TTL),
            Err(RegistryError::NotHeld)
        ));
    }

    #[test]
    fn pruned_origin_is_dead_too() {
        let mut r = registry();
        r.heartbeat(&hb("a", 1935, None), T0).unwrap();
        r.claim(KEY, "a-s-1", "p1", T0, u64::MAX / 4).unwrap();
        let much_later = T0 + timing().prune_after_ms() + 1;
        assert_eq!(r.prune(much_later).unwrap(), 1);
        assert_eq!(r.prune(much_later).unwrap(), 0);
        assert!(matches!(
            r.lookup_play(KEY, much_later),
            Err(RegistryError::OriginDead { .. })
        ));
    }

    #[test]
    fn late_heartbeat_does_not_move_time_back() {
        let mut r = registry();
        r.heartbeat(&hb("a", 1935, None), T0 + IV).unwrap();
        r.heartbeat(&hb("a", 1935, None), T0).unwrap();
        assert_eq!(r.live_origins(T0 + IV).unwrap()[0].last_seen_ms, T0 + IV);
    }

    #[test]
    fn corrupt_values_are_typed_errors_or_replaced() {
        let mut store = MemoryStore::new();
        store.set(format!("{URL_KEY_PREFIX}{KEY}"), "garbage".into(), TTL, T0);
        let mut r = Registry::new(store, timing());
        assert!(matches!(
            r.lookup_play(KEY, T0),
            Err(RegistryError::Store(StoreError::Corrupt { .. }))
        ));
        // A claim replaces what nobody can read.
        r.heartbeat(&hb("a", 1935, None), T0).unwrap();
        r.claim(KEY, "a-s-1", "p1", T0, TTL).unwrap();
        assert_eq!(r.lookup_play(KEY, T0).unwrap().holder, "p1");
    }

    #[test]
    fn unexpected_replies_are_typed_errors() {
        let mut op = LookupOp::new(KEY, &timing(), T0);
        assert!(matches!(op.step(None), Step::Send(Command::GetUrl { .. })));
        assert!(matches!(
            op.step(Some(Reply::Count(3))),
            Step::Done(Err(RegistryError::Store(StoreError::UnexpectedReply {
                command: "GetUrl",
                ..
            })))
        ));
        let mut op = CountOp::prune(&timing(), T0);
        op.step(None);
        assert!(matches!(
            op.step(Some(Reply::Ok)),
            Step::Done(Err(RegistryError::Store(StoreError::UnexpectedReply {
                command: "PruneOrigins",
                ..
            })))
        ));
    }

    /// A store whose claim changes under every takeover: the claim gives up, bounded.
    struct Flapping(MemoryStore);

    impl RegistryStore for Flapping {
        fn execute(&mut self, cmd: &Command, now_ms: u64) -> Result<Reply, StoreError> {
            if let Command::ReplaceUrl { .. } = cmd {
                return Ok(Reply::Count(0));
            }
            self.0.execute(cmd, now_ms)
        }
    }

    #[test]
    fn contended_claim_is_bounded() {
        let mut store = Flapping(MemoryStore::new());
        let dead = Mapping {
            origin: "gone".into(),
            holder: "p0".into(),
        };
        store
            .0
            .set(format!("{URL_KEY_PREFIX}{KEY}"), dead.encode(), TTL, T0);
        let op = ClaimOp::new(KEY, "a-s-1", "p1", TTL, &timing(), T0);
        assert_eq!(op.mapping().holder, "p1");
        assert!(matches!(
            run(op, &mut store, T0),
            Err(RegistryError::Contended)
        ));
    }

    #[test]
    fn redis_plans_are_exact() {
        let argv = |c: Command| c.redis_plan();
        let p = argv(Command::ClaimUrl {
            key: KEY.into(),
            value: "v".into(),
            ttl_ms: 15000,
        });
        assert!(!p.transaction);
        assert_eq!(
            p.calls,
            vec![vec![
                "SET",
                "srs-proxy-url:__defaultVhost__/live/cam1",
                "v",
                "NX",
                "PX",
                "15000",
                "GET"
            ]]
        );
        let p = argv(Command::PutOrigin {
            id: "o".into(),
            record: "{}".into(),
            ttl_ms: 30000,
            now_ms: 7,
        });
        assert!(p.transaction);
        assert_eq!(
            p.calls,
            vec![
                vec!["SET", "srs-proxy-server:o", "{}", "PX", "30000"],
                vec!["ZADD", "shardcast-proxy-origins", "GT", "7", "o"]
            ]
        );
        assert_eq!(
            argv(Command::LiveOrigins { since_ms: 9 }).calls[0],
            vec![
                "ZRANGEBYSCORE",
                "shardcast-proxy-origins",
                "9",
                "+inf",
                "WITHSCORES"
            ]
        );
        assert_eq!(
            argv(Command::PruneOrigins { before_ms: 9 }).calls[0],
            vec!["ZREMRANGEBYSCORE", "shardcast-proxy-origins", "-inf", "(9"]
        );
        assert_eq!(
            argv(Command::GetOrigins {
                ids: vec!["a".into(), "b".into()]
            })
            .calls[0],
            vec!["MGET", "srs-proxy-server:a", "srs-proxy-server:b"]
        );
        let p = argv(Command::ReplaceUrl {
            key: "k".into(),
            expected: "old".into(),
            value: "new".into(),
            ttl_ms: 5,
        });
        assert_eq!(p.calls[0][0], "EVAL");
        assert_eq!(p.calls[0][1], LUA_REPLACE);
        assert_eq!(
            &p.calls[0][2..],
            ["1", "srs-proxy-url:k", "old", "new", "5"]
        );
        assert_eq!(
            &argv(Command::RefreshUrl {
                key: "k".into(),
                value: "v".into(),
                ttl_ms: 5
            })
            .calls[0][2..],
            ["1", "srs-proxy-url:k", "v", "5"]
        );
        assert_eq!(
            &argv(Command::ReleaseUrl {
                key: "k".into(),
                value: "v".into()
            })
            .calls[0][2..],
            ["1", "srs-proxy-url:k", "v"]
        );
        assert_eq!(
            argv(Command::OriginSeen { id: "o".into() }).calls[0],
            vec!["ZSCORE", "shardcast-proxy-origins", "o"]
        );
        assert_eq!(
            argv(Command::GetUrl { key: "k".into() }).calls[0],
            vec!["GET", "srs-proxy-url:k"]
        );
    }

    #[test]
    fn record_keeps_the_first_http_endpoint_for_http_flv() {
        // SRS 6 with `heartbeat.ports on`: bare ports, dialled at the heartbeat's ip.
        let srs = crate::cluster::register::parse_heartbeat(
            br#"{"ip":"10.0.0.5","server":"srs1","service":"v","pid":"7","rtmp":["1935"],
                "http":["8080","0.0.0.0:8081"],"api":["1985"]}"#,
        )
        .unwrap();
        let r = OriginRecord::from_heartbeat(&srs);
        assert_eq!(r.http.as_deref(), Some("10.0.0.5:8080"));
        assert_eq!(r.api.as_deref(), Some("10.0.0.5:1985"));
        // Stored and read back as JSON (Redis or memory) with the field.
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#""http":"10.0.0.5:8080""#), "{json}");
        assert_eq!(serde_json::from_str::<OriginRecord>(&json).unwrap(), r);
        // A record stored before the field existed reads as "no HTTP server".
        let old = r#"{"id":"a","ip":"i","rtmp":"i:1","api":"i:2","load":null}"#;
        assert_eq!(
            serde_json::from_str::<OriginRecord>(old).unwrap().http,
            None
        );
        // No http[]: none, even with an api[] (SRS's API port serves no FLV).
        let mut h = hb("a", 1935, None);
        h.api = vec![Endpoint::parse("1985", "10.0.0.1").unwrap()];
        assert_eq!(OriginRecord::from_heartbeat(&h).http, None);
        // And the registry hands it to placement and plays.
        let mut reg = registry();
        reg.heartbeat(&srs, T0).unwrap();
        let placed = reg.place_publish(KEY, T0).unwrap();
        assert_eq!(placed.record.http.as_deref(), Some("10.0.0.5:8080"));
    }

    #[test]
    fn records_expire_in_memory_as_in_redis() {
        let mut r = registry();
        r.heartbeat(&hb("a", 1935, None), T0).unwrap();
        let ttl = timing().record_ttl_ms();
        assert_eq!(
            r.store().live_keys(T0 + ttl - 1),
            vec!["srs-proxy-server:a-s-1"]
        );
        assert!(r.store().live_keys(T0 + ttl).is_empty());
        let m = Mapping {
            origin: "o".into(),
            holder: "h".into(),
        };
        assert_eq!(m.encode(), r#"{"origin":"o","holder":"h"}"#);
    }
}
