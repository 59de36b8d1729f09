//! The store round trips ([`Command`]), each with its exact Redis argv, and their replies.

use super::*;

/// One store round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Record an origin's heartbeat.
    PutOrigin {
        /// Origin id.
        id: String,
        /// The record as JSON.
        record: String,
        /// Record TTL, in ms.
        ttl_ms: u64,
        /// Heartbeat time (ZSET score), epoch ms.
        now_ms: u64,
    },
    /// Origins with a heartbeat at or after `since_ms`, oldest first.
    LiveOrigins {
        /// Epoch ms.
        since_ms: u64,
    },
    /// Records of these origins (None where expired).
    GetOrigins {
        /// Origin ids.
        ids: Vec<String>,
    },
    /// Last heartbeat of one origin.
    OriginSeen {
        /// Origin id.
        id: String,
    },
    /// Forget origins whose last heartbeat is before `before_ms`.
    PruneOrigins {
        /// Epoch ms.
        before_ms: u64,
    },
    /// Claim `key` unless claimed; answer the current value when it is.
    ClaimUrl {
        /// Stream key (`vhost/app/stream`).
        key: String,
        /// Our encoded [`Mapping`].
        value: String,
        /// Claim TTL, in ms.
        ttl_ms: u64,
    },
    /// The claim on `key`.
    GetUrl {
        /// Stream key (`vhost/app/stream`).
        key: String,
    },
    /// Extend the claim if it still holds `value`.
    RefreshUrl {
        /// Stream key (`vhost/app/stream`).
        key: String,
        /// Our encoded [`Mapping`].
        value: String,
        /// New TTL, in ms.
        ttl_ms: u64,
    },
    /// Swap the claim's value if it still holds `expected`.
    ReplaceUrl {
        /// Stream key (`vhost/app/stream`).
        key: String,
        /// The encoded [`Mapping`] the claim must still hold.
        expected: String,
        /// The encoded [`Mapping`] to put in its place.
        value: String,
        /// Claim TTL, in ms.
        ttl_ms: u64,
    },
    /// Delete the claim if it still holds `value`.
    ReleaseUrl {
        /// Stream key (`vhost/app/stream`).
        key: String,
        /// Our encoded [`Mapping`].
        value: String,
    },
    /// One page of claimed stream keys (`SCAN`), for listing.
    ScanUrls {
        /// `0` to start; the previous page's cursor after.
        cursor: u64,
    },
    /// The claims on these streams (None where gone).
    GetUrls {
        /// Stream keys (`vhost/app/stream`).
        keys: Vec<String>,
    },
}

/// How a command is sent to Redis: its calls, and whether they form one MULTI/EXEC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisPlan {
    /// Send the calls as one `MULTI` ... `EXEC`.
    pub transaction: bool,
    /// Each call's argv.
    pub calls: Vec<Vec<String>>,
}

impl Command {
    /// The exact Redis argv for this command (see the module doc for the replies).
    pub fn redis_plan(&self) -> RedisPlan {
        let one = |args: Vec<String>| RedisPlan {
            transaction: false,
            calls: vec![args],
        };
        let s = |x: &str| x.to_string();
        let url = |k: &str| format!("{URL_KEY_PREFIX}{k}");
        match self {
            Command::PutOrigin {
                id,
                record,
                ttl_ms,
                now_ms,
            } => RedisPlan {
                transaction: true,
                calls: vec![
                    vec![
                        s("SET"),
                        format!("{ORIGIN_KEY_PREFIX}{id}"),
                        record.clone(),
                        s("PX"),
                        ttl_ms.to_string(),
                    ],
                    vec![
                        s("ZADD"),
                        s(ORIGINS_ZSET),
                        s("GT"),
                        now_ms.to_string(),
                        id.clone(),
                    ],
                ],
            },
            Command::LiveOrigins { since_ms } => one(vec![
                s("ZRANGEBYSCORE"),
                s(ORIGINS_ZSET),
                since_ms.to_string(),
                s("+inf"),
                s("WITHSCORES"),
            ]),
            Command::GetOrigins { ids } => one(std::iter::once(s("MGET"))
                .chain(ids.iter().map(|id| format!("{ORIGIN_KEY_PREFIX}{id}")))
                .collect()),
            Command::OriginSeen { id } => one(vec![s("ZSCORE"), s(ORIGINS_ZSET), id.clone()]),
            Command::PruneOrigins { before_ms } => one(vec![
                s("ZREMRANGEBYSCORE"),
                s(ORIGINS_ZSET),
                s("-inf"),
                format!("({before_ms}"),
            ]),
            Command::ClaimUrl { key, value, ttl_ms } => one(vec![
                s("SET"),
                url(key),
                value.clone(),
                s("NX"),
                s("PX"),
                ttl_ms.to_string(),
                s("GET"),
            ]),
            Command::GetUrl { key } => one(vec![s("GET"), url(key)]),
            Command::RefreshUrl { key, value, ttl_ms } => one(vec![
                s("EVAL"),
                s(LUA_REFRESH),
                s("1"),
                url(key),
                value.clone(),
                ttl_ms.to_string(),
            ]),
            Command::ReplaceUrl {
                key,
                expected,
                value,
                ttl_ms,
            } => one(vec![
                s("EVAL"),
                s(LUA_REPLACE),
                s("1"),
                url(key),
                expected.clone(),
                value.clone(),
                ttl_ms.to_string(),
            ]),
            Command::ReleaseUrl { key, value } => one(vec![
                s("EVAL"),
                s(LUA_RELEASE),
                s("1"),
                url(key),
                value.clone(),
            ]),
            Command::ScanUrls { cursor } => one(vec![
                s("SCAN"),
                cursor.to_string(),
                s("MATCH"),
                format!("{URL_KEY_PREFIX}*"),
                s("COUNT"),
                s("500"),
            ]),
            Command::GetUrls { keys } => one(std::iter::once(s("MGET"))
                .chain(keys.iter().map(|k| url(k)))
                .collect()),
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            Command::PutOrigin { .. } => "PutOrigin",
            Command::LiveOrigins { .. } => "LiveOrigins",
            Command::GetOrigins { .. } => "GetOrigins",
            Command::OriginSeen { .. } => "OriginSeen",
            Command::PruneOrigins { .. } => "PruneOrigins",
            Command::ClaimUrl { .. } => "ClaimUrl",
            Command::GetUrl { .. } => "GetUrl",
            Command::RefreshUrl { .. } => "RefreshUrl",
            Command::ReplaceUrl { .. } => "ReplaceUrl",
            Command::ReleaseUrl { .. } => "ReleaseUrl",
            Command::ScanUrls { .. } => "ScanUrls",
            Command::GetUrls { .. } => "GetUrls",
        }
    }
}

/// A store's answer to a [`Command`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Done (`OK`, or `EXEC`'s array).
    Ok,
    /// One string, or nil.
    Value(Option<String>),
    /// `MGET`'s strings, nil where absent.
    Values(Vec<Option<String>>),
    /// (member, score) pairs, ascending by score.
    Scored(Vec<(String, u64)>),
    /// A member's score, or nil.
    Score(Option<u64>),
    /// An integer reply.
    Count(u64),
    /// A `SCAN` page: the next cursor (0: done) and stream keys (prefix removed).
    Page {
        /// Next cursor; 0 when the scan is complete.
        cursor: u64,
        /// Stream keys on this page.
        keys: Vec<String>,
    },
}
