//! `[lb]`: running behind a load balancer. Which balancers may send PROXY headers, the HAProxy
//! agent-check port, and the capacity figures the agent's weight is computed against. The
//! listeners' own `proxy_protocol` modes live on `[server]` and `[http]`.

use super::{Config, ConfigError};
use crate::lb::trust::{ProxyMode, TrustedProxies};
use serde::Deserialize;
use std::net::{SocketAddr, ToSocketAddrs};

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

impl Config {
    /// The `[lb]` keys and the listeners' PROXY modes.
    pub(super) fn validate_lb(&self) -> Result<(), ConfigError> {
        let bad = |key, reason: String| Err(ConfigError::Invalid { key, reason });
        let modes = [
            ("server.proxy_protocol", self.server.proxy_protocol),
            ("http.proxy_protocol", self.http.proxy_protocol),
        ];
        for (key, mode) in modes {
            if mode != ProxyMode::Off && self.lb.trusted.is_empty() {
                return bad(
                    key,
                    "is on but lb.trusted_proxies is empty: no balancer may send a header".into(),
                );
            }
        }
        if !(self.lb.max_egress_mbps >= 0.0 && self.lb.max_egress_mbps.is_finite()) {
            return bad(
                "lb.max_egress_mbps",
                "must be 0 or a positive number".into(),
            );
        }
        if self.server.shutdown_grace_secs > 86_400 {
            return bad("server.shutdown_grace_secs", "must be at most 86400".into());
        }
        if let Some(Err(reason)) = self.agent_addr() {
            return bad("lb.agent_listen", reason);
        }
        Ok(())
    }

    /// The agent-check address, when `lb.agent_listen` is set.
    pub fn agent_addr(&self) -> Option<Result<SocketAddr, String>> {
        let text = self.lb.agent_listen.trim();
        if text.is_empty() {
            return None;
        }
        Some(match text.to_socket_addrs() {
            Ok(mut a) => a
                .next()
                .ok_or_else(|| format!("`{text}` resolves to no address")),
            Err(e) => Err(format!("`{text}` is not a host:port address ({e})")),
        })
    }
}
