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
//! - [`lb`]: behind a load balancer, without I/O: the PROXY protocol, trusted proxies, the
//!   HAProxy agent-check weight, nginx-rtmp-compatible `/stat` XML and `/control/drop`.

pub mod config;
pub mod http;
pub mod lb;
pub mod media;
pub mod policy;
pub mod rtmp;
pub mod runtime;
pub mod server;
