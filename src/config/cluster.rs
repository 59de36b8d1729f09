//! `[cluster]` (globally, and `[vhost.cluster]` per vhost): what this node is in a cluster. An
//! origin serves what is published to it and may find streams at its coworkers; an edge pulls
//! each played stream from an origin on demand and pushes publishes to one.

use super::forward::ForwardTarget;
use super::proxy::RegisterConfig;
use serde::Deserialize;
use std::time::Duration;

/// The node's role for a vhost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterMode {
    /// Streams are published here (and may be found at coworkers).
    #[default]
    Origin,
    /// Streams come from `origins`, pulled when played; publishes are pushed to them.
    Edge,
    /// A stateless front door: each publish and play is relayed to the origin the shared
    /// registry names (`[proxy]`).
    Proxy,
}

/// What an origin does for a play of a stream a coworker has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnRemote {
    /// Pull it from the coworker and serve it here (players need not follow redirects:
    /// ffmpeg, OBS/librtmp and GStreamer do not).
    #[default]
    Relay,
    /// Answer with an RTMP 302 to the coworker (FMS/SRS style).
    Redirect,
}

/// `[cluster]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `origin` (default), `edge` or `proxy` (global `[cluster]` only).
    pub mode: ClusterMode,
    /// Edge: the origins' RTMP addresses (`host:port`), tried in order; the last one that
    /// worked is kept.
    pub origins: Vec<String>,
    /// Edge (and relaying origins): how long a player waits for media before it gets
    /// `NetStream.Play.StreamNotFound` (HTTP-FLV: 404).
    pub start_timeout_ms: u64,
    /// Edge: how long an upstream is kept after its last player left.
    pub idle_linger_ms: u64,
    /// Edge: connect to the origin within this.
    pub connect_timeout_ms: u64,
    /// Edge: after every origin failed, wait this long before the next round (doubling).
    pub backoff_initial_ms: u64,
    /// Edge: the longest wait between rounds.
    pub backoff_max_ms: u64,
    /// Edge: replay each client's connect and publish/play (with its query) to an origin and
    /// serve the client only if the origin accepts.
    pub token_traverse: bool,
    /// Origin: the HTTP API addresses (`host:port`) of the other origins.
    pub coworkers: Vec<String>,
    /// Origin: relay (default) or redirect plays of streams a coworker has.
    pub on_remote: OnRemote,
    /// Origin: how long a coworker may take to answer.
    pub coworker_timeout_ms: u64,
    /// Origin: how long a coworker's answer is reused.
    pub coworker_cache_ms: u64,
    /// Origin: heartbeats to the proxy tier (`[cluster.register]`).
    pub register: RegisterConfig,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            mode: ClusterMode::Origin,
            origins: Vec::new(),
            start_timeout_ms: 10_000,
            idle_linger_ms: 10_000,
            connect_timeout_ms: 3_000,
            backoff_initial_ms: 500,
            backoff_max_ms: 5_000,
            token_traverse: false,
            coworkers: Vec::new(),
            on_remote: OnRemote::Relay,
            coworker_timeout_ms: 1_000,
            coworker_cache_ms: 1_000,
            register: RegisterConfig::default(),
        }
    }
}

impl ClusterConfig {
    /// An edge for this vhost.
    pub fn is_edge(&self) -> bool {
        self.mode == ClusterMode::Edge
    }

    /// An origin that asks coworkers for streams it lacks.
    pub fn has_coworkers(&self) -> bool {
        self.mode == ClusterMode::Origin && !self.coworkers.is_empty()
    }

    /// Plays of streams not published here come from elsewhere (an edge's origins or a
    /// coworker), so players wait at most `start_timeout`.
    pub fn pulls(&self) -> bool {
        self.is_edge() || self.has_coworkers()
    }

    /// `start_timeout_ms` as a duration.
    pub fn start_timeout(&self) -> Duration {
        Duration::from_millis(self.start_timeout_ms)
    }

    /// The origins, resolved (validated at load; one that stopped resolving is skipped).
    pub fn origin_targets(&self) -> Vec<ForwardTarget> {
        self.origins
            .iter()
            .filter_map(|o| ForwardTarget::parse(o).ok())
            .collect()
    }

    /// Check the section; `key` names it in errors (`cluster` or `vhost.cluster`).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.is_edge() && self.origins.is_empty() {
            return Err((
                "cluster.origins",
                "an edge needs at least one origin".into(),
            ));
        }
        for o in &self.origins {
            ForwardTarget::parse(o).map_err(|e| ("cluster.origins", e))?;
        }
        for c in &self.coworkers {
            let ok = c
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !ok {
                return Err(("cluster.coworkers", format!("`{c}` is not host:port")));
            }
        }
        if self.start_timeout_ms == 0 || self.connect_timeout_ms == 0 {
            return Err((
                "cluster.start_timeout_ms",
                "timeouts must be above 0".into(),
            ));
        }
        if self.backoff_initial_ms == 0 || self.backoff_max_ms < self.backoff_initial_ms {
            return Err((
                "cluster.backoff_max_ms",
                "backoff_initial_ms must be above 0 and at most backoff_max_ms".into(),
            ));
        }
        Ok(())
    }
}
