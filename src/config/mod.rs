//! Configuration: TOML on disk (or the embedded default) into typed structs, then `validate()`.
//!
//! Every key has a default so an empty file is a valid config; unknown keys are errors so a typo
//! never silently falls back to a default.

pub mod cluster;
pub mod forward;
pub mod lb;
pub mod proxy;
pub mod security;

use crate::lb::trust::ProxyMode;
pub use cluster::{ClusterConfig, ClusterMode, OnRemote};
pub use forward::{ForwardRule, ForwardTarget, GlobalForward};
pub use lb::LbConfig;
pub use proxy::{ProxyConfig, RegisterConfig, RegistryKind};
pub use security::{HooksConfig, SecurityConfig};
use serde::Deserialize;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use thiserror::Error;

/// The config shardcast runs with when started without `-c`.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../conf/shardcast.toml");

/// Why a config could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// Path of the file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML did not parse, or a key has the wrong type or is unknown.
    #[error("config {origin}: {message}")]
    Parse {
        /// The file path, or "embedded default".
        origin: String,
        /// What is wrong, with the key path and the line when known.
        message: String,
    },
    /// A value is out of range or otherwise unusable.
    #[error("config key `{key}`: {reason}")]
    Invalid {
        /// The offending key, e.g. `rtmp.chunk_size`.
        key: &'static str,
        /// Why it was rejected.
        reason: String,
    },
}

/// The whole configuration file; every section is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[server]`: listen address, shards and connection limits.
    pub server: ServerConfig,
    /// `[rtmp]`: chunking, limits, write batching, player queues and the GOP cache.
    pub rtmp: RtmpConfig,
    /// `[forward]`: the global forward rule and forward retry settings.
    pub forward: GlobalForward,
    /// `[cluster]`: origin or edge, origins, coworkers.
    pub cluster: ClusterConfig,
    /// `[http]`: the HTTP API, metrics, HTTP-FLV and console.
    pub http: HttpConfig,
    /// `[security]`: allow/deny rules and the publish secret.
    pub security: SecurityConfig,
    /// `[hooks]`: HTTP callbacks on connect, publish, play and their ends.
    pub hooks: HooksConfig,
    /// Behind a load balancer: trusted proxies, the agent-check port.
    pub lb: LbConfig,
    /// `[proxy]`: the system API, the registry and timeouts of a proxy node.
    pub proxy: ProxyConfig,
    /// Named vhosts with their own settings; a client's tcUrl host selects one by name.
    pub vhost: Vec<VhostConfig>,
}

/// `[http]`: the API, metrics, HTTP-FLV and the console, served by every shard on one port.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Serve HTTP at all; off when a config file leaves `[http]` out (the embedded default turns it
    /// on).
    pub enabled: bool,
    /// HTTP listen address (`host:port`), bound by every shard like the RTMP one.
    pub listen: String,
    /// Seconds an HTTP-FLV request for a stream nobody publishes waits before a 404;
    /// 0 waits for as long as the client does (like an RTMP player).
    pub flv_wait_timeout_secs: u64,
    /// Seconds a client has to send its request headers.
    pub header_timeout_secs: u64,
    /// Largest request head accepted (431 past it).
    pub max_header_bytes: usize,
    /// Folder served under /static/ (the console's player library lives there).
    pub static_dir: String,
    /// PROXY protocol on the HTTP port (from `lb.trusted_proxies` only).
    pub proxy_protocol: ProxyMode,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: false,
            listen: "0.0.0.0:8080".into(),
            flv_wait_timeout_secs: 0,
            header_timeout_secs: 10,
            max_header_bytes: 8192,
            static_dir: "www".into(),
            proxy_protocol: ProxyMode::Off,
        }
    }
}

/// `[[vhost]]`: settings for one virtual host.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VhostConfig {
    /// Vhost name, selected by `?vhost=name` or by the host a client connects to.
    pub name: String,
    /// Forward rule for this vhost's streams; overrides `[forward]`.
    pub forward: Option<ForwardRule>,
    /// Replaces the global `[cluster]` for this vhost.
    pub cluster: Option<ClusterConfig>,
    /// Overrides `security.publish_secret` for this vhost.
    pub publish_secret: Option<String>,
    /// `[[vhost.app]]`: per-app settings within this vhost.
    pub app: Vec<AppConfig>,
}

/// `[[vhost.app]]`: settings for one app within a vhost.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppConfig {
    /// App name.
    pub name: String,
    /// Forward rule for this app's streams; overrides the vhost's and the global one.
    pub forward: Option<ForwardRule>,
    /// Overrides the vhost's and the global publish secret for this app.
    pub publish_secret: Option<String>,
}

/// `[server]`: listening, sharding and connection limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// RTMP listen address; every shard binds it with SO_REUSEPORT.
    pub listen: String,
    /// Number of shards (executors, one per core); absent means one per online core.
    pub shards: Option<usize>,
    /// Connections accepted over all shards before new ones are refused.
    pub max_connections: usize,
    /// Seconds a client may take to finish the handshake.
    pub handshake_timeout_secs: u64,
    /// Seconds a publisher may stay silent before it is dropped.
    pub publish_idle_timeout_secs: u64,
    /// Capacity of each cross-shard channel, in messages.
    pub mesh_channel_capacity: usize,
    /// Open connections one shard takes before refusing (0: no limit of its own).
    pub max_connections_per_shard: usize,
    /// Open connections one client address may hold (0: no limit).
    pub max_connections_per_ip: usize,
    /// Streams published at once, over all shards (0: no limit).
    pub max_streams: usize,
    /// PROXY protocol on the RTMP port (from `lb.trusted_proxies` only).
    pub proxy_protocol: ProxyMode,
    /// Seconds SIGTERM drains (agent `drain`, `/healthz` 503, clients keep streaming) before
    /// the shutdown; 0 stops at once.
    pub shutdown_grace_secs: u64,
}

/// `[rtmp]`: RTMP protocol limits, write batching, player queues and the GOP cache.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtmpConfig {
    /// Chunk size sent to players (Set Chunk Size); larger means fewer headers.
    pub chunk_size: u32,
    /// Largest chunk size a client may announce.
    pub max_incoming_chunk_size: u32,
    /// Largest message a client may send, in bytes.
    pub max_message_size: u32,
    /// Distinct chunk stream ids one connection may use.
    pub max_chunk_streams: usize,
    /// Merged-write window in milliseconds (SRS `mw_latency`): a stream's media is written to its
    /// players once the oldest of it has waited this long, so larger windows mean fewer syscalls
    /// and more latency. 0 writes as soon as the shard is idle.
    pub mw_latency_ms: u64,
    /// Merged reads for publishers (SRS `mr`): a shard reads all its publishers together on a
    /// tick of this many milliseconds, so one read takes several messages and one wake-up
    /// serves every publisher (adds up to this much latency). 0 reads each message at once.
    pub mr_latency_ms: u64,
    /// Merged writes of at least this many bytes reach players through a pipe (tee + splice:
    /// the kernel copies the batch once, not once per player); 0 turns this off.
    pub splice_min_bytes: usize,
    /// Media duration a player's queue may hold before it skips ahead to the next keyframe.
    pub player_queue_ms: u32,
    /// Seconds a player (or forward destination) may take no data before it is disconnected.
    pub player_stall_timeout_secs: u64,
    /// Keep the last GOP so new players start on a keyframe at once.
    pub gop_cache: bool,
    /// Most frames one GOP cache holds.
    pub gop_cache_max_frames: usize,
    /// Most bytes one GOP cache holds.
    pub gop_cache_max_bytes: usize,
    /// Window Acknowledgement Size announced to clients.
    pub window_ack_size: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "0.0.0.0:1935".into(),
            shards: None,
            max_connections: 100_000,
            handshake_timeout_secs: 10,
            publish_idle_timeout_secs: 30,
            mesh_channel_capacity: 4096,
            max_connections_per_shard: 0,
            max_connections_per_ip: 0,
            max_streams: 0,
            proxy_protocol: ProxyMode::Off,
            shutdown_grace_secs: 0,
        }
    }
}

/// Shipped merged-write window (ms). 100 ms: with 200 publishers x 2 players (0.5 Mbit/s, one
/// core) CPU per GB was 0.20x nginx-rtmp's, and with one stream x 1000 players 0.20x; 0 gives
/// the lowest latency at several times the CPU (README, "Latency and the defaults").
pub const DEFAULT_MW_MS: u64 = 100;

/// Shipped merged-read window (ms). 150 ms: 200 publishers (0.5 Mbit/s, one core) cost
/// 0.0195-0.021 of a core against 0.0265 at 100 ms (alternated 20 s runs), ~0.4x nginx-rtmp's
/// 0.050-0.078 where 100 ms was 0.49-0.52x of its lower figures; with the write window the
/// defaults add at most 250 ms.
pub const DEFAULT_MR_MS: u64 = 150;

impl Default for RtmpConfig {
    fn default() -> Self {
        RtmpConfig {
            chunk_size: 4096,
            max_incoming_chunk_size: 16 * 1024 * 1024 - 1,
            max_message_size: 8 * 1024 * 1024,
            max_chunk_streams: 64,
            mw_latency_ms: DEFAULT_MW_MS,
            mr_latency_ms: DEFAULT_MR_MS,
            splice_min_bytes: 16 * 1024,
            player_queue_ms: 5000,
            player_stall_timeout_secs: 30,
            gop_cache: true,
            gop_cache_max_frames: 2048,
            gop_cache_max_bytes: 32 * 1024 * 1024,
            window_ack_size: 2_500_000,
        }
    }
}

impl Config {
    /// Parse TOML text; `origin` names it in errors (a path or "embedded default").
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        let mut cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let at = span_hint(text, inner.span());
            // Unknown keys already name themselves; others get the key path in front.
            let message =
                if path.is_empty() || path == "." || inner.message().contains("unknown field") {
                    format!("{}{at}", inner.message())
                } else {
                    format!("key `{path}`: {}{at}", inner.message())
                };
            ConfigError::Parse {
                origin: origin.to_string(),
                message,
            }
        })?;
        cfg.security.parsed =
            crate::policy::rules::Rules::parse(&cfg.security.rules).map_err(|reason| {
                ConfigError::Invalid {
                    key: "security.rules",
                    reason,
                }
            })?;
        cfg.lb.trusted =
            crate::lb::trust::TrustedProxies::parse(&cfg.lb.trusted_proxies).map_err(|e| {
                ConfigError::Invalid {
                    key: "lb.trusted_proxies",
                    reason: e.to_string(),
                }
            })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Read, parse and validate the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// The embedded default config ([`EMBEDDED_DEFAULT`]), parsed and validated.
    pub fn embedded() -> Result<Config, ConfigError> {
        Self::from_toml(EMBEDDED_DEFAULT, "embedded default")
    }

    /// Check value ranges, addresses, hook URLs and forward destinations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.to_string(),
            })
        };
        if self.server.shards == Some(0) {
            return invalid(
                "server.shards",
                "must be at least 1 (omit it for one per core)",
            );
        }
        if self.server.shards.is_some_and(|n| n > 1024) {
            return invalid("server.shards", "must be at most 1024");
        }
        if self.server.max_connections == 0 {
            return invalid("server.max_connections", "must be at least 1");
        }
        if self.server.handshake_timeout_secs == 0 {
            return invalid("server.handshake_timeout_secs", "must be at least 1");
        }
        if self.server.mesh_channel_capacity < 16 {
            return invalid("server.mesh_channel_capacity", "must be at least 16");
        }
        if !(128..=65536).contains(&self.rtmp.chunk_size) {
            return invalid("rtmp.chunk_size", "must be between 128 and 65536");
        }
        if !(128..=0x7FFF_FFFF).contains(&self.rtmp.max_incoming_chunk_size) {
            return invalid(
                "rtmp.max_incoming_chunk_size",
                "must be between 128 and 2147483647",
            );
        }
        if self.rtmp.max_message_size < 4096 {
            return invalid("rtmp.max_message_size", "must be at least 4096");
        }
        if !(8..=65599).contains(&self.rtmp.max_chunk_streams) {
            return invalid("rtmp.max_chunk_streams", "must be between 8 and 65599");
        }
        if self.rtmp.mr_latency_ms > 2000 {
            return invalid("rtmp.mr_latency_ms", "must be at most 2000");
        }
        if self.rtmp.mw_latency_ms > 5000 {
            return invalid("rtmp.mw_latency_ms", "must be at most 5000");
        }
        if self.rtmp.player_stall_timeout_secs == 0 {
            return invalid("rtmp.player_stall_timeout_secs", "must be at least 1");
        }
        if self.rtmp.player_queue_ms < 100 {
            return invalid("rtmp.player_queue_ms", "must be at least 100");
        }
        if self.rtmp.window_ack_size < 4096 {
            return invalid("rtmp.window_ack_size", "must be at least 4096");
        }
        if self.http.enabled {
            let h = self.http_addr()?;
            // Port 0 (any free port, as the in-process tests use) picks two different ports.
            if h == self.listen_addr()? && h.port() != 0 {
                return invalid("http.listen", "must differ from server.listen");
            }
        }
        if !(1024..=1 << 20).contains(&self.http.max_header_bytes) {
            return invalid("http.max_header_bytes", "must be between 1024 and 1048576");
        }
        if self.http.header_timeout_secs == 0 {
            return invalid("http.header_timeout_secs", "must be at least 1");
        }
        for (key, url) in self.hooks.all() {
            crate::policy::hooks::HookUrl::parse(url)
                .map_err(|reason| ConfigError::Invalid { key, reason })?;
        }
        self.validate_lb()?;
        self.validate_proxy()?;
        if self.hooks.timeout_ms == 0 {
            return invalid("hooks.timeout_ms", "must be at least 1");
        }
        let clusters = std::iter::once(&self.cluster)
            .chain(self.vhost.iter().filter_map(|v| v.cluster.as_ref()));
        for c in clusters {
            c.validate()
                .map_err(|(key, reason)| ConfigError::Invalid { key, reason })?;
        }
        self.validate_forward()
    }

    /// The publish secret for `vhost/app`, if one is set (app, then vhost, then global).
    pub fn publish_secret(&self, vhost: &str, app: &str) -> Option<&str> {
        let v = self.vhost.iter().find(|v| v.name == vhost);
        let from_app = v.and_then(|v| {
            v.app
                .iter()
                .find(|a| a.name == app)?
                .publish_secret
                .as_deref()
        });
        let s = from_app
            .or_else(|| v.and_then(|v| v.publish_secret.as_deref()))
            .unwrap_or(&self.security.publish_secret);
        (!s.is_empty()).then_some(s)
    }

    /// `rtmp.player_stall_timeout_secs` as a `Duration`.
    pub fn stall_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.rtmp.player_stall_timeout_secs)
    }

    /// The resolved HTTP listen address.
    pub fn http_addr(&self) -> Result<SocketAddr, ConfigError> {
        let bad = |reason: String| ConfigError::Invalid {
            key: "http.listen",
            reason,
        };
        self.http
            .listen
            .to_socket_addrs()
            .map_err(|e| {
                bad(format!(
                    "`{}` is not a host:port address ({e})",
                    self.http.listen
                ))
            })?
            .next()
            .ok_or_else(|| bad(format!("`{}` resolves to no address", self.http.listen)))
    }

    fn validate_forward(&self) -> Result<(), ConfigError> {
        let f = &self.forward;
        if f.backoff_initial_ms == 0 || f.backoff_max_ms < f.backoff_initial_ms {
            return Err(ConfigError::Invalid {
                key: "forward.backoff_max_ms",
                reason: "backoff_initial_ms must be at least 1 and at most backoff_max_ms".into(),
            });
        }
        if f.queue_ms < 100 {
            return Err(ConfigError::Invalid {
                key: "forward.queue_ms",
                reason: "must be at least 100".into(),
            });
        }
        if !f.backend.is_empty() {
            crate::control_plane::http::check_url(&f.backend).map_err(|e| {
                ConfigError::Invalid {
                    key: "forward.backend",
                    reason: e.to_string(),
                }
            })?;
        }
        if f.backend_timeout_ms == 0 {
            return Err(ConfigError::Invalid {
                key: "forward.backend_timeout_ms",
                reason: "must be at least 1".into(),
            });
        }
        let listen = self.listen_addr()?;
        let rules = std::iter::once(("forward.destinations", &f.destinations)).chain(
            self.vhost.iter().flat_map(|v| {
                let vr = v
                    .forward
                    .iter()
                    .map(|r| ("vhost.forward.destinations", &r.destinations));
                let ar = v.app.iter().flat_map(|a| {
                    a.forward
                        .iter()
                        .map(|r| ("vhost.app.forward.destinations", &r.destinations))
                });
                vr.chain(ar)
            }),
        );
        for (key, dests) in rules {
            for d in dests {
                let t = ForwardTarget::parse(d)
                    .map_err(|reason| ConfigError::Invalid { key, reason })?;
                if t.is_self(listen) {
                    return Err(ConfigError::Invalid {
                        key,
                        reason: format!("`{d}` is this server's own listen address"),
                    });
                }
            }
        }
        for v in &self.vhost {
            if v.name.is_empty() {
                return Err(ConfigError::Invalid {
                    key: "vhost.name",
                    reason: "every [[vhost]] needs a name".into(),
                });
            }
            if v.app.iter().any(|a| a.name.is_empty()) {
                return Err(ConfigError::Invalid {
                    key: "vhost.app.name",
                    reason: format!("every app of vhost `{}` needs a name", v.name),
                });
            }
        }
        Ok(())
    }

    /// Is `name` a configured vhost (so a tcUrl host may select it)?
    pub fn knows_vhost(&self, name: &str) -> bool {
        self.vhost.iter().any(|v| v.name == name)
    }

    /// The cluster settings for `vhost` (its own `[vhost.cluster]`, else the global one).
    pub fn cluster_for(&self, vhost: &str) -> &ClusterConfig {
        self.vhost
            .iter()
            .find(|v| v.name == vhost)
            .and_then(|v| v.cluster.as_ref())
            .unwrap_or(&self.cluster)
    }

    /// Where streams of `vhost/app` are forwarded: the most specific rule wins (app, then
    /// vhost, then global).
    pub fn forward_targets(&self, vhost: &str, app: &str) -> Vec<ForwardTarget> {
        let v = self.vhost.iter().find(|v| v.name == vhost);
        let app_rule = v.and_then(|v| v.app.iter().find(|a| a.name == app)?.forward.as_ref());
        let (enabled, dests) = match app_rule.or_else(|| v.and_then(|v| v.forward.as_ref())) {
            Some(r) => (r.enabled, &r.destinations),
            None => (self.forward.enabled, &self.forward.destinations),
        };
        if !enabled {
            return Vec::new();
        }
        // Validated at load, so parsing succeeds; a destination that stopped resolving is skipped.
        dests
            .iter()
            .filter_map(|d| ForwardTarget::parse(d).ok())
            .collect()
    }

    /// The resolved RTMP listen address.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        let bad = |reason: String| ConfigError::Invalid {
            key: "server.listen",
            reason,
        };
        let mut addrs = self.server.listen.to_socket_addrs().map_err(|e| {
            bad(format!(
                "`{}` is not a host:port address ({e})",
                self.server.listen
            ))
        })?;
        addrs
            .next()
            .ok_or_else(|| bad(format!("`{}` resolves to no address", self.server.listen)))
    }

    /// Shard count, with an absent key resolved to the number of online cores.
    pub fn shard_count(&self) -> usize {
        self.server.shards.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }
}

/// " (line N)" for a parse error with a known position.
fn span_hint(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(r) => {
            let line = text[..r.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::embedded().unwrap();
        assert_eq!(c.listen_addr().unwrap().port(), 1935);
        assert_eq!(c.rtmp.chunk_size, 4096);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::from_toml("[server]\nlisten_port = 5\n", "t").unwrap_err();
        let s = e.to_string();
        assert!(s.contains("listen_port"), "{s}");
        assert!(s.contains("line 2"), "{s}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = Config::from_toml("[server]\nmax_connections = \"many\"\n", "t").unwrap_err();
        let s = e.to_string();
        assert!(s.contains("server.max_connections"), "{s}");
        assert!(s.contains("line 2"), "{s}");
    }

    #[test]
    fn bad_address_is_named() {
        let e = Config::from_toml("[server]\nlisten = \"nope\"\n", "t").unwrap_err();
        assert!(e.to_string().contains("server.listen"), "{e}");
    }

    #[test]
    fn zero_chunk_size_rejected() {
        let e = Config::from_toml("[rtmp]\nchunk_size = 0\n", "t").unwrap_err();
        assert!(e.to_string().contains("rtmp.chunk_size"), "{e}");
    }

    #[test]
    fn forward_rules_most_specific_wins() {
        let c = Config::from_toml(
            r#"
[server]
listen = "127.0.0.1:1935"
[forward]
enabled = true
destinations = ["127.0.0.1:2001"]
[[vhost]]
name = "v"
[vhost.forward]
destinations = ["127.0.0.1:2002"]
[[vhost.app]]
name = "quiet"
[vhost.app.forward]
enabled = false
"#,
            "t",
        )
        .unwrap();
        let port = |v: &str, a: &str| -> Vec<u16> {
            c.forward_targets(v, a)
                .iter()
                .map(|t| t.addr.port())
                .collect()
        };
        assert_eq!(port("__defaultVhost__", "live"), vec![2001]);
        assert_eq!(port("v", "live"), vec![2002]);
        assert_eq!(port("v", "quiet"), Vec::<u16>::new());
        assert!(c.knows_vhost("v"));
    }

    #[test]
    fn forward_to_self_is_an_error() {
        let e = Config::from_toml(
            "[server]\nlisten = \"0.0.0.0:1935\"\n[forward]\nenabled = true\ndestinations = [\"127.0.0.1:1935\"]\n",
            "t",
        )
        .unwrap_err();
        assert!(e.to_string().contains("own listen address"), "{e}");
    }

    #[test]
    fn security_rules_and_secrets() {
        let c = Config::from_toml(
            r#"
[security]
rules = ["allow publish 127.0.0.1", "deny publish all"]
publish_secret = "g"
[[vhost]]
name = "v"
[[vhost.app]]
name = "open"
publish_secret = ""
[[vhost.app]]
name = "own"
publish_secret = "a"
"#,
            "t",
        )
        .unwrap();
        assert_eq!(c.publish_secret("__defaultVhost__", "live"), Some("g"));
        assert_eq!(c.publish_secret("v", "own"), Some("a"));
        assert_eq!(c.publish_secret("v", "open"), None);
        let ip = "10.0.0.1".parse().unwrap();
        assert!(c
            .security
            .parsed
            .check(crate::policy::rules::Action::Publish, ip)
            .is_err());
        let e = Config::from_toml("[security]\nrules = [\"permit all\"]\n", "t").unwrap_err();
        assert!(e.to_string().contains("security.rules"), "{e}");
        let e = Config::from_toml("[hooks]\non_publish = [\"ftp://x\"]\n", "t").unwrap_err();
        assert!(e.to_string().contains("hooks.on_publish"), "{e}");
    }

    #[test]
    fn zero_shards_rejected() {
        let e = Config::from_toml("[server]\nshards = 0\n", "t").unwrap_err();
        assert!(e.to_string().contains("server.shards"), "{e}");
    }

    #[test]
    fn explicit_shards_win() {
        let c = Config::from_toml("[server]\nshards = 3\n", "t").unwrap();
        assert_eq!(c.shard_count(), 3);
        let c = Config::from_toml("", "t").unwrap();
        assert!(c.shard_count() >= 1);
    }
}
