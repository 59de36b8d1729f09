//! Clustering without I/O: the protocol pieces an edge, an origin and a proxy need to work
//! together, as plain functions and state machines. The caller owns sockets, timers and HTTP,
//! and passes the time in.
//!
//! # Roles
//! - **Origin**: takes publishes. In an origin cluster it answers its coworkers' "who has this
//!   stream?" ([`coworkers`]), sends a player whose stream is published elsewhere there with an
//!   RTMP 302 ([`redirect`]), asks an HTTP backend where to forward a new publish
//!   ([`forward_backend`]), and heartbeats to the proxy tier with its load ([`register`]).
//! - **Edge**: serves players and pulls each stream once from an origin. [`origins`] picks the
//!   origin (sticky, failover, backoff), [`linger`] runs the pull's lifecycle (start with the
//!   first player, keep it a while after the last, never refuse a player during teardown), and
//!   the RTMP client reports an origin's 302 (`rtmp::client::ClientError::Redirected`), which
//!   [`redirect::RedirectFollower`] follows a bounded number of hops without loops.
//! - **Proxy**: a stateless front door. It reads origins' heartbeats ([`register`]), keeps the
//!   origin list and the stream-to-origin map in a store shared by all proxies ([`registry`]:
//!   Redis in production, [`registry::MemoryStore`] in tests), places each publish on the
//!   least-loaded live origin and sends each play where its stream is.
//!
//! Wire formats follow SRS (4-6 origin cluster, `forward.backend`, the `srs-proxy` heartbeat),
//! so SRS nodes and shardcast nodes can be mixed; each module names the SRS source it matches.
//! [`url`] splits RTMP URLs and HTTP queries for all of them, without name resolution.

pub mod backoff;
pub mod coworkers;
pub mod forward_backend;
pub mod linger;
pub mod origins;
pub mod redirect;
pub mod register;
pub mod registry;
pub mod srs_json;
pub mod url;
