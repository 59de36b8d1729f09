//! Behind a load balancer (issue #12), without I/O: plain functions and types that the server
//! feeds bytes, samples and request targets, and that return values. Nothing here touches a
//! socket or the clock; the caller passes time in, so all of it is tested in memory.
//!
//! - [`proxy_protocol`]: the PROXY protocol v1/v2 decoder run on the first bytes of a connection
//!   (so the client's address survives a TCP-mode balancer), and the encoders for upstream
//!   connections.
//! - [`trust`]: which peers may send a header (CIDR list), and the accept/use-peer/reject
//!   decision from the listener's mode, the peer's trust and what the decoder saw.
//! - [`agent`]: the HAProxy agent-check reply: a weight from the node's load (connections,
//!   egress, busiest shard's CPU), smoothed so it does not flap, and the drain/maint states.
//! - [`stat_xml`]: nginx-rtmp's `/stat` XML from plain input structs, for the dashboards and
//!   scrapers built for it.
//! - [`control`]: nginx-rtmp's `/control/drop/{publisher|subscriber|client}` parsed into a
//!   filter matched against plain session data, and its reply body.
//!
//! # How the server uses them
//!
//! **Accept.** For a listener whose mode is not `off`, the connection loop asks
//! [`trust::should_read_header`] with `TrustedProxies::contains(peer)`. If so it reads into its
//! usual buffer and calls [`proxy_protocol::parse`] until it answers (at most
//! [`proxy_protocol::V2_MAX_LEN`] bytes, under a short timeout of its own), drops `consumed`
//! bytes, and hands the rest to the RTMP handshake or the HTTP parser as if they were the first
//! bytes. [`trust::decide`] then says which address the connection is from: the one every
//! later check (allow/deny rules, hooks, logs, `/stat`, `/control/drop?addr=`) uses. A health
//! check from the balancer (`LOCAL`) is closed quietly; a reject is logged once and closed.
//!
//! **Agent port.** Every shard reports its counters; one task samples them every check
//! interval into an [`agent::LoadSample`], runs [`agent::WeightSmoother::update`] with the
//! current time, and on each agent connection writes [`agent::AgentReply::line`] for the admin
//! state the operator set (ready, drain on SIGTERM or an API call, maint) and closes.
//!
//! **HTTP.** `/stat` gathers streams and sessions from the shards into a
//! [`stat_xml::StatInput`] and serves [`stat_xml::render`] as `text/xml`. `/control/drop/…`
//! parses with [`control::DropRequest::parse`], asks every shard to close the sessions that
//! [`control::DropRequest::matches`], sums the counts and answers [`control::drop_reply`].
#![warn(missing_docs)]

pub mod agent;
pub mod control;
pub mod proxy_protocol;
pub mod stat_xml;
pub mod trust;
