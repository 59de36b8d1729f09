//! shardcast: a thread-per-core RTMP live media server on io_uring.
//!
//! # Layout, in data-flow order
//! - [`config`]: TOML into typed, validated settings.
//! - [`rtmp`]: the protocol without I/O: handshake, chunk codec, AMF0, messages, and the server
//!   and client session state machines.
//! - [`media`]: frames, codec sniffing, the GOP cache, timestamp smoothing.
//! - [`policy`]: who may connect, publish and play: allow/deny rules, secrets, HTTP hooks.
//! - [`server`]: one shard's work: accept -> conn (the socket loop) -> shard (owner registry,
//!   streams) -> stream fan-out to local players -> mesh (one message per subscribed shard) ->
//!   writer (bounded queue, batched vectored writes).
//! - [`http`]: the SRS-shaped API, Prometheus metrics, HTTP-FLV players and the console.
//! - [`runtime`]: glommio glue: one pinned executor per core, the mesh, limits and signals.
//! - [`cluster`]: edge/origin/proxy clustering without I/O: SRS-compatible stream discovery,
//!   heartbeats, RTMP 302, the proxy's stream registry, origin failover and the edge pull's
//!   lifecycle.

pub mod cluster;
pub mod config;
pub mod http;
pub mod media;
pub mod policy;
pub mod rtmp;
pub mod runtime;
pub mod server;
