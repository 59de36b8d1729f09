//! `[proxy]` (a node with `[cluster] mode = "proxy"`: the stateless front door of a proxy
//! cluster) and `[cluster.register]` (an origin heartbeating to such proxies).

use super::{Config, ConfigError};
use serde::Deserialize;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Where the proxy tier keeps which origins live and which stream is on which origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistryKind {
    /// In this process: enough for a single proxy.
    #[default]
    Memory,
    /// In Redis (`redis_url`), shared by every proxy.
    Redis,
}

/// `[proxy]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// `host:port` of the system API origins register on (SRS's default port is 12025).
    pub api_listen: String,
    /// `memory` (one proxy) or `redis` (several proxies sharing it).
    pub registry: RegistryKind,
    /// `redis://host:port/db` when `registry = "redis"`.
    pub redis_url: String,
    /// This proxy's id as a claim holder; empty: `{hostname}-{pid}`.
    pub id: String,
    /// How often origins heartbeat; one is dead after three intervals without one.
    pub heartbeat_interval_ms: u64,
    /// Lifetime of a stream's mapping; the proxy holding the publish refreshes it every third.
    pub claim_ttl_ms: u64,
    /// One registry request (all its Redis round trips) must finish within this.
    pub registry_timeout_ms: u64,
    /// Connecting to an origin and getting its answer to connect + publish/play.
    pub connect_timeout_ms: u64,
    /// Start each origin connection with a PROXY protocol v2 header naming the client, so the
    /// origin's rules, hooks, limits and stats see the real client (the origin must trust this
    /// proxy: `[lb] trusted_proxies` and `[server] proxy_protocol`).
    pub send_proxy_protocol: bool,
    /// Forward media as received (spliced, not re-chunked) when the legs allow it, a player's
    /// from the origin and a publisher's to it; `false` re-chunks every message of both legs.
    pub relay_splice: bool,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            api_listen: "0.0.0.0:12025".into(),
            registry: RegistryKind::Memory,
            redis_url: "redis://127.0.0.1:6379/0".into(),
            id: String::new(),
            heartbeat_interval_ms: 9_000,
            claim_ttl_ms: 30_000,
            registry_timeout_ms: 500,
            connect_timeout_ms: 3_000,
            send_proxy_protocol: false,
            relay_splice: true,
        }
    }
}

impl ProxyConfig {
    /// `registry_timeout_ms` as a duration.
    pub fn registry_timeout(&self) -> Duration {
        Duration::from_millis(self.registry_timeout_ms)
    }

    /// `connect_timeout_ms` as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// The holder id: `id`, else `{hostname}-{pid}`.
    pub fn holder_id(&self) -> String {
        if !self.id.is_empty() {
            return self.id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "proxy".into());
        format!("{host}-{}", std::process::id())
    }
}

/// `[cluster.register]`: an origin's heartbeat to the proxy tier (SRS `heartbeat` compatible).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegisterConfig {
    /// Register URLs of the proxies, e.g. `http://proxy:12025/api/v1/srs/register`; empty
    /// turns heartbeats off.
    pub urls: Vec<String>,
    /// How often to heartbeat.
    pub interval_ms: u64,
    /// The address proxies reach this origin by; empty: the RTMP listen host (127.0.0.1 when
    /// it is a wildcard).
    pub ip: String,
    /// A stable server id (survives restarts); empty: `shardcast-{rtmp port}`.
    pub server_id: String,
    /// Operator label (SRS `device_id`).
    pub device_id: String,
    /// Each heartbeat POST must finish within this.
    pub timeout_ms: u64,
}

impl Default for RegisterConfig {
    fn default() -> Self {
        RegisterConfig {
            urls: Vec::new(),
            interval_ms: 9_000,
            ip: String::new(),
            server_id: String::new(),
            device_id: String::new(),
            timeout_ms: 2_000,
        }
    }
}

impl RegisterConfig {
    /// Heartbeats are sent.
    pub fn enabled(&self) -> bool {
        !self.urls.is_empty()
    }
}

impl Config {
    /// This node is a proxy (`[cluster] mode = "proxy"`).
    pub fn is_proxy(&self) -> bool {
        self.cluster.mode == super::ClusterMode::Proxy
    }

    /// The system API address of a proxy.
    pub fn proxy_api_addr(&self) -> Result<SocketAddr, ConfigError> {
        let text = self.proxy.api_listen.trim();
        let bad = |reason: String| ConfigError::Invalid {
            key: "proxy.api_listen",
            reason,
        };
        text.to_socket_addrs()
            .map_err(|e| bad(format!("`{text}` is not a host:port address ({e})")))?
            .next()
            .ok_or_else(|| bad(format!("`{text}` resolves to no address")))
    }

    /// The `[proxy]` and `[cluster.register]` keys.
    pub(super) fn validate_proxy(&self) -> Result<(), ConfigError> {
        let bad = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.to_string(),
            })
        };
        if self
            .vhost
            .iter()
            .filter_map(|v| v.cluster.as_ref())
            .any(|c| c.mode == super::ClusterMode::Proxy)
        {
            return bad(
                "vhost.cluster.mode",
                "`proxy` is a whole-node role: set it in [cluster]",
            );
        }
        let p = &self.proxy;
        if self.is_proxy() {
            self.proxy_api_addr()?;
            if p.registry == RegistryKind::Redis {
                let ok = url::Url::parse(&p.redis_url)
                    .is_ok_and(|u| u.scheme() == "redis" && u.host_str().is_some());
                if !ok {
                    return bad("proxy.redis_url", "must be redis://host[:port][/db]");
                }
            }
        }
        if p.heartbeat_interval_ms < 100 {
            return bad("proxy.heartbeat_interval_ms", "must be at least 100");
        }
        if p.claim_ttl_ms < 300 {
            return bad("proxy.claim_ttl_ms", "must be at least 300");
        }
        if p.registry_timeout_ms == 0 || p.connect_timeout_ms == 0 {
            return bad("proxy.registry_timeout_ms", "timeouts must be above 0");
        }
        let r = &self.cluster.register;
        for u in &r.urls {
            crate::control_plane::http::check_url(u).map_err(|e| ConfigError::Invalid {
                key: "cluster.register.urls",
                reason: e.to_string(),
            })?;
        }
        if r.enabled() && r.interval_ms < 100 {
            return bad("cluster.register.interval_ms", "must be at least 100");
        }
        if r.enabled() && r.timeout_ms == 0 {
            return bad("cluster.register.timeout_ms", "must be above 0");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};

    #[test]
    fn a_proxy_with_redis_parses() {
        let c = Config::from_toml(
            "[cluster]\nmode = \"proxy\"\n[proxy]\napi_listen = \"127.0.0.1:12025\"\nregistry = \"redis\"\nredis_url = \"redis://127.0.0.1:6379/0\"\n",
            "t",
        )
        .unwrap();
        assert!(c.is_proxy());
        assert_eq!(c.proxy.registry, super::RegistryKind::Redis);
    }

    #[test]
    fn bad_proxy_keys_are_named() {
        let e = Config::from_toml(
            "[cluster]\nmode = \"proxy\"\n[proxy]\nregistry = \"redis\"\nredis_url = \"http://x\"\n",
            "t",
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::Invalid {
                    key: "proxy.redis_url",
                    ..
                }
            ),
            "{e}"
        );
        let e = Config::from_toml(
            "[cluster.register]\nurls = [\"https://p:12025/api/v1/srs/register\"]\n",
            "t",
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                ConfigError::Invalid {
                    key: "cluster.register.urls",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn an_origin_registers() {
        let c = Config::from_toml(
            "[cluster.register]\nurls = [\"http://127.0.0.1:12025/api/v1/srs/register\"]\ninterval_ms = 1000\n",
            "t",
        )
        .unwrap();
        assert!(c.cluster.register.enabled());
        assert!(!c.is_proxy());
    }
}
