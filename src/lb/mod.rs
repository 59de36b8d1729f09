//! Behind a load balancer (issue #12), without I/O: plain functions and types that the server
//! feeds bytes, samples and request targets, and that return values. Nothing here touches a
//! socket or the clock; the caller passes time in.
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
#![warn(missing_docs)]

pub mod agent;
pub mod control;
pub mod proxy_protocol;
pub mod stat_xml;
pub mod trust;
