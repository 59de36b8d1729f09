//! `[lb]`: running behind a load balancer. Which balancers may send PROXY headers, the HAProxy
//! agent-check port, and the capacity figures the agent's weight is computed against. The
//! listeners' own `proxy_protocol` modes live on `[server]` and `[http]`.

use crate::lb::trust::TrustedProxies;
use serde::Deserialize;

/// `[lb]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LbConfig {
    /// Balancers (CIDRs or addresses) allowed to send a PROXY header; a header from anyone else
    /// closes the connection.
    pub trusted_proxies: Vec<String>,
    /// `host:port` of the HAProxy agent-check responder; empty turns it off.
    pub agent_listen: String,
    /// Outgoing capacity in Mbit/s the agent's weight counts egress against (0: not counted).
    pub max_egress_mbps: f64,
    /// `maxconn:N` announced in every ready agent reply (0: not announced).
    pub agent_maxconn: u32,
    /// The parsed `trusted_proxies` (filled when the config is loaded).
    #[serde(skip)]
    pub trusted: TrustedProxies,
}
