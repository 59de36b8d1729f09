#![warn(missing_docs)]
//! shardcast: a thread-per-core RTMP live media server on io_uring.
//!
//! # Layout, in data-flow order
//! - [`config`]: TOML into typed, validated settings.
//! - [`rtmp`]: the protocol without I/O: handshake, chunk codec, AMF0, messages, and the server
//!   and client session state machines.
//! - [`media`]: frames, codec sniffing, the GOP cache, timestamp smoothing.
//! - [`policy`]: who may connect, publish and play: allow/deny rules, secrets, HTTP hooks.
//! - [`server`]: the shards: accept -> a connection task (RTMP, HTTP-FLV, forward peer) ->
//!   the shard's roles (owner directory, source, sink) -> a stream's fan-out to local players
//!   -> the mesh (one message per subscribed shard) -> writer (bounded queue, merged writes).
//!   [`server::start`] runs it all in this process and returns a handle.
//! - [`http`]: the SRS-shaped API, Prometheus metrics, HTTP-FLV players and the console.
//! - [`control_plane`]: outbound HTTP calls (hooks, coworkers, backends) on a thread of their
//!   own, awaited by the shards without blocking them.
//! - [`runtime`]: the process around `server::start`: limits, signals, reload.
//! - [`lb`]: behind a load balancer, without I/O: the PROXY protocol, trusted proxies, the
//!   HAProxy agent-check weight, nginx-rtmp-compatible `/stat` XML and `/control/drop`.
//! - [`cluster`]: edge/origin/proxy clustering without I/O: SRS-compatible stream discovery,
//!   heartbeats, RTMP 302, the proxy's stream registry, origin failover and the edge pull's
//!   lifecycle.

pub mod cluster;
pub mod config;
pub mod control_plane;
pub mod http;
pub mod lb;
pub mod media;
pub mod policy;
pub mod rtmp;
pub mod runtime;
pub mod server;
