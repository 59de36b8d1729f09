//! Access control and HTTP callbacks: `[security]` (allow/deny rules, publish secret) and
//! `[hooks]` (SRS-style on_connect / on_publish / on_unpublish / on_play / on_stop).

use crate::policy::rules::Rules;
use serde::Deserialize;

/// `[security]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// nginx-rtmp style rules, first match decides: "allow publish 127.0.0.1",
    /// "deny publish all", "deny play 10.0.0.0/8".
    pub rules: Vec<String>,
    /// When set, a publisher must give `?secret=VALUE` (or `?token=VALUE`) on its stream name or
    /// app. `[[vhost]]` and `[[vhost.app]]` may set their own.
    pub publish_secret: String,
    /// The parsed rules (filled when the config is loaded).
    #[serde(skip)]
    pub parsed: Rules,
}

/// `[hooks]`: each list holds http:// URLs that get a POST with a JSON body; a non-200 status,
/// a body other than `0` / `{"code":0}`, or no answer within `timeout_ms` refuses (for
/// on_connect, on_publish and on_play; on_unpublish and on_stop are notices).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HooksConfig {
    /// URLs called before a client's `connect` is accepted; refusal rejects it.
    pub on_connect: Vec<String>,
    /// URLs called before a publish is accepted; refusal rejects it.
    pub on_publish: Vec<String>,
    /// URLs notified when a publish ends.
    pub on_unpublish: Vec<String>,
    /// URLs called before a play is accepted; refusal rejects it.
    pub on_play: Vec<String>,
    /// URLs notified when a play ends.
    pub on_stop: Vec<String>,
    /// How long a hook may take to answer, in milliseconds, before the client is refused.
    pub timeout_ms: u64,
}

impl Default for HooksConfig {
    fn default() -> Self {
        HooksConfig {
            on_connect: Vec::new(),
            on_publish: Vec::new(),
            on_unpublish: Vec::new(),
            on_play: Vec::new(),
            on_stop: Vec::new(),
            timeout_ms: 3000,
        }
    }
}

impl HooksConfig {
    /// Every (key, url) pair, for validation.
    pub fn all(&self) -> impl Iterator<Item = (&'static str, &String)> {
        [
            ("hooks.on_connect", &self.on_connect),
            ("hooks.on_publish", &self.on_publish),
            ("hooks.on_unpublish", &self.on_unpublish),
            ("hooks.on_play", &self.on_play),
            ("hooks.on_stop", &self.on_stop),
        ]
        .into_iter()
        .flat_map(|(k, v)| v.iter().map(move |u| (k, u)))
    }
}
