//! Origin-cluster stream discovery, SRS `/api/v1/clusters` compatible: an origin asked for a
//! stream it does not have asks its coworkers (the other origins' HTTP APIs) which of them
//! publishes it, then sends the player there (RTMP 302, see [`super::redirect`]).
//!
//! Server side: [`clusters_answer`] builds the JSON an SRS 4-6 origin returns. Client side:
//! [`parse_answer`] reads a coworker's answer, [`QueryPlan`] says whom to ask (never ourselves,
//! which would loop), and [`CoworkerCache`] keeps answers briefly so a burst of players for one
//! stream costs one round of questions.
//!
//! Wire facts (SRS `trunk/src/app/srs_app_http_api.cpp` `SrsGoApiClusters::serve_http`,
//! `srs_app_coworkers.cpp` `SrsCoWorkers::dumps`, `srs_app_http_hooks.cpp`
//! `discover_co_workers`): the asker POSTs an empty body to
//! `/api/v1/clusters?vhost=&ip=&app=&stream=&coworker=`; the answer is
//! `{"code":0,"data":{"query":{ip,vhost,app,stream},"origin":{ip,port,vhost,api,routers}}}` with
//! `port` a JSON integer, `api` the HTTP API `host:port`, `routers` `[api]`, and `"origin":null`
//! when the stream is not published there. The asker needs `code == 0` (an integer), a `data`
//! object, an `origin` object, `ip` a string and `port` an integer.

use super::url::{host_port, is_loopback, is_wildcard, query_get, query_push, split_host_port};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Path of the discovery API.
pub const CLUSTERS_PATH: &str = "/api/v1/clusters";

/// The question: which node publishes `vhost/app/stream`? `ip` is the host the player used (SRS
/// echoes it back only); `coworker` is the `host:port` the asker addressed, which tells the
/// answering node its own address as seen from outside.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterQuery {
    /// The host the player connected to (echoed back only).
    pub ip: String,
    /// Vhost of the stream.
    pub vhost: String,
    /// App of the stream.
    pub app: String,
    /// Stream name.
    pub stream: String,
    /// `host:port` of the API being asked.
    pub coworker: String,
}

impl ClusterQuery {
    /// Read the parameters from a request's query string (missing ones are empty, as SRS's
    /// `query_get` gives them).
    pub fn from_query(query: &str) -> ClusterQuery {
        let get = |k: &str| query_get(query, k).unwrap_or_default();
        ClusterQuery {
            ip: get("ip"),
            vhost: get("vhost"),
            app: get("app"),
            stream: get("stream"),
            coworker: get("coworker"),
        }
    }

    /// Path and query to ask coworker `target` (`host:port` of its API) with; `coworker` is set
    /// to `target`, as SRS 4+ does.
    pub fn request_path(&self, target: &str) -> String {
        let mut q = String::new();
        query_push(&mut q, "vhost", &self.vhost);
        query_push(&mut q, "ip", &self.ip);
        query_push(&mut q, "app", &self.app);
        query_push(&mut q, "stream", &self.stream);
        query_push(&mut q, "coworker", target);
        format!("{CLUSTERS_PATH}?{q}")
    }
}

/// How this node is reached, for its own answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfNode {
    /// The RTMP listen host as configured (`""`, `0.0.0.0`, `::`, loopback or a real address).
    pub listen_host: String,
    /// The RTMP listen port.
    pub listen_port: u16,
    /// The HTTP API listen as configured: `port` or `host:port`.
    pub api_listen: String,
    /// Address to announce when neither the listen host nor the asker tells one (SRS looks up a
    /// public interface address here; we take it from the caller, who may know better).
    pub public_ip: Option<String>,
}

/// The host other nodes should use for us. SRS's rule: the listen host, unless it means "any"
/// or "this machine only", then the host part of the `coworker` parameter (the address the
/// asker reached us by, right behind NAT or in a container), then a configured public address.
/// SRS only treats `127.0.0.1` as loopback; we treat every loopback name (`::1`, `localhost`,
/// 127/8) the same, since none of them is reachable from another machine either.
pub fn service_ip(node: &SelfNode, coworker: &str) -> String {
    if !is_wildcard(&node.listen_host) && !is_loopback(&node.listen_host) {
        return node.listen_host.clone();
    }
    let from_coworker = split_host_port(coworker)
        .map(|(h, _)| h.to_string())
        .unwrap_or_default();
    if !from_coworker.is_empty() {
        return from_coworker;
    }
    node.public_ip
        .clone()
        .unwrap_or_else(|| node.listen_host.clone())
}

/// The API endpoint to announce: the configured `host:port`, or `service_ip:port` when only a
/// port (or a wildcard host) is configured. SRS substitutes only for a bare port; a wildcard
/// host is as useless to the asker, so we substitute there too.
pub fn service_api(node: &SelfNode, service_ip: &str) -> String {
    let api = node.api_listen.trim();
    match split_host_port(api) {
        Ok((h, Some(port))) if !is_wildcard(h) => host_port(h, port),
        Ok((_, Some(port))) => host_port(service_ip, port),
        // A bare port parses as a host without a port.
        _ => match api.trim_start_matches(':').parse::<u16>() {
            Ok(port) => host_port(service_ip, port),
            Err(_) => api.to_string(),
        },
    }
}

/// The `origin` object for a stream this node publishes under `vhost`.
pub fn origin_value(node: &SelfNode, coworker: &str, vhost: &str) -> Value {
    let ip = service_ip(node, coworker);
    let api = service_api(node, &ip);
    json!({
        "ip": ip,
        "port": node.listen_port,
        "vhost": vhost,
        "api": api,
        "routers": [api],
    })
}

/// The whole answer to `q`. `published_vhost`: the vhost this node publishes the stream under
/// (the publish request's, which may differ from the asked one when the asked vhost falls back
/// to the default), or `None` when it does not publish it.
pub fn clusters_answer(q: &ClusterQuery, node: &SelfNode, published_vhost: Option<&str>) -> Value {
    let origin = match published_vhost {
        Some(vhost) => origin_value(node, &q.coworker, vhost),
        None => Value::Null,
    };
    json!({
        "code": 0,
        "data": {
            "query": {"ip": q.ip, "vhost": q.vhost, "app": q.app, "stream": q.stream},
            "origin": origin,
        }
    })
}

/// Where a coworker says the stream is published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginLocation {
    /// Host to connect to (the answer's `ip`).
    pub host: String,
    /// RTMP port.
    pub port: u16,
    /// The publish's vhost (SRS always sends it; its own asker ignores it).
    pub vhost: Option<String>,
}

impl OriginLocation {
    /// `host:port` to connect to.
    pub fn host_port(&self) -> String {
        host_port(&self.host, self.port)
    }
}

/// Why a coworker's answer is unusable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AnswerError {
    /// The body does not parse as JSON.
    #[error("answer is not JSON: {0}")]
    NotJson(String),
    /// The JSON is not an object.
    #[error("answer is not a JSON object")]
    NotObject,
    /// `code` is not 0.
    #[error("answer has code {0}")]
    Code(i64),
    /// A required field is absent.
    #[error("answer has no `{0}`")]
    Missing(&'static str),
    /// A field has the wrong JSON type.
    #[error("`{field}` in the answer is not {expected}")]
    WrongType {
        /// Field name.
        field: &'static str,
        /// What it should be.
        expected: &'static str,
    },
    /// `port` is not in 1..=65535.
    #[error("origin port {0} is out of range")]
    PortOutOfRange(i64),
    /// `ip` is an empty string.
    #[error("origin ip is empty")]
    EmptyHost,
}

impl From<super::srs_json::EnvelopeError> for AnswerError {
    fn from(e: super::srs_json::EnvelopeError) -> Self {
        use super::srs_json::EnvelopeError as E;
        match e {
            E::NotJson(m) => AnswerError::NotJson(m),
            E::NotObject => AnswerError::NotObject,
            E::Missing(f) => AnswerError::Missing(f),
            E::WrongType(field, expected) => AnswerError::WrongType { field, expected },
            E::Code(c) => AnswerError::Code(c),
        }
    }
}

/// Read a coworker's answer. `Ok(None)`: it does not publish the stream (`"origin":null`).
/// SRS's asker treats a null origin as an error and moves on to the next coworker; the meaning
/// is the same, we just keep "not here" apart from "broken".
pub fn parse_answer(body: &[u8]) -> Result<Option<OriginLocation>, AnswerError> {
    let data = super::srs_json::data_object(body)?;
    let origin = match data.get("origin") {
        None => return Err(AnswerError::Missing("origin")),
        Some(Value::Null) => return Ok(None),
        Some(o) => o.as_object().ok_or(AnswerError::WrongType {
            field: "origin",
            expected: "an object or null",
        })?,
    };
    let host = origin.get("ip").ok_or(AnswerError::Missing("ip"))?;
    let host = host.as_str().ok_or(AnswerError::WrongType {
        field: "ip",
        expected: "a string",
    })?;
    if host.is_empty() {
        return Err(AnswerError::EmptyHost);
    }
    let port = origin.get("port").ok_or(AnswerError::Missing("port"))?;
    let port = port.as_i64().ok_or(AnswerError::WrongType {
        field: "port",
        expected: "an integer",
    })?;
    let port = u16::try_from(port)
        .ok()
        .filter(|p| *p > 0)
        .ok_or(AnswerError::PortOutOfRange(port))?;
    let vhost = match origin.get("vhost") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(AnswerError::WrongType {
                field: "vhost",
                expected: "a string",
            })
        }
    };
    Ok(Some(OriginLocation {
        host: host.to_string(),
        port,
        vhost,
    }))
}

/// How this node is addressed, to keep it out of its own coworker list (SRS leaves this to the
/// operator, and an origin that asks itself finds nothing or redirects to itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfAddrs {
    /// Port of this node's HTTP API.
    pub api_port: u16,
    /// Hosts that name this node (its announced IP, host names). Loopback names always do.
    pub hosts: Vec<String>,
}

impl SelfAddrs {
    /// Is coworker `target` (`host:port`) this node?
    pub fn is_self(&self, target: &str) -> bool {
        let Ok((host, Some(port))) = split_host_port(target) else {
            return false;
        };
        port == self.api_port
            && (is_loopback(host) || self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)))
    }
}

/// Which coworkers to ask, in order: the configured list without this node and without
/// repeats. SRS asks them one by one and stops at the first that has the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryPlan {
    targets: Vec<String>,
}

impl QueryPlan {
    /// Plan for coworker `host:port` entries, skipping `me`.
    pub fn new<S: AsRef<str>>(coworkers: &[S], me: &SelfAddrs) -> QueryPlan {
        let mut targets: Vec<String> = Vec::with_capacity(coworkers.len());
        for c in coworkers {
            let c = c.as_ref().trim();
            if c.is_empty() || me.is_self(c) || targets.iter().any(|t| t == c) {
                continue;
            }
            targets.push(c.to_string());
        }
        QueryPlan { targets }
    }

    /// The coworkers to ask, in order.
    pub fn targets(&self) -> &[String] {
        &self.targets
    }

    /// Nobody to ask (a single origin, or only ourselves configured).
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// (target, request path) for each coworker to ask about `q`.
    pub fn requests<'a>(
        &'a self,
        q: &'a ClusterQuery,
    ) -> impl Iterator<Item = (&'a str, String)> + 'a {
        self.targets
            .iter()
            .map(move |t| (t.as_str(), q.request_path(t)))
    }
}

/// What the cache knows about a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cached<'a> {
    /// Nothing fresh: ask the coworkers.
    Miss,
    /// Recently published at this origin.
    At(&'a OriginLocation),
    /// Recently published nowhere (no coworker had it).
    Nowhere,
}

/// Recent discovery results per stream key (`vhost/app/stream`). Positive answers live for
/// `ttl`, negative ones for `negative_ttl` (short: a stream that starts must be found soon).
/// Bounded: past `max_entries`, expired entries go first, then the oldest.
#[derive(Debug)]
pub struct CoworkerCache {
    ttl: Duration,
    negative_ttl: Duration,
    max_entries: usize,
    entries: HashMap<String, (Instant, Option<OriginLocation>)>,
}

impl CoworkerCache {
    /// An empty cache.
    pub fn new(ttl: Duration, negative_ttl: Duration, max_entries: usize) -> CoworkerCache {
        CoworkerCache {
            ttl,
            negative_ttl,
            max_entries: max_entries.max(1),
            entries: HashMap::new(),
        }
    }

    /// The fresh answer for `key`, if any.
    pub fn get(&self, key: &str, now: Instant) -> Cached<'_> {
        match self.entries.get(key) {
            Some((at, found)) if now.saturating_duration_since(*at) < self.ttl_of(found) => {
                match found {
                    Some(o) => Cached::At(o),
                    None => Cached::Nowhere,
                }
            }
            _ => Cached::Miss,
        }
    }

    /// Remember the result of asking about `key` at `now` (`None`: nobody had it).
    pub fn put(&mut self, key: &str, found: Option<OriginLocation>, now: Instant) {
        if !self.entries.contains_key(key) && self.entries.len() >= self.max_entries {
            self.purge(now);
            if self.entries.len() >= self.max_entries {
                let oldest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    self.entries.remove(&k);
                }
            }
        }
        self.entries.insert(key.to_string(), (now, found));
    }

    /// Forget `key` (the origin we were sent to did not have the stream after all).
    pub fn invalidate(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Drop every expired entry.
    pub fn purge(&mut self, now: Instant) {
        let (ttl, neg) = (self.ttl, self.negative_ttl);
        self.entries.retain(|_, (at, found)| {
            let life = if found.is_some() { ttl } else { neg };
            now.saturating_duration_since(*at) < life
        });
    }

    /// Entries held (fresh or not).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No entries held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn ttl_of(&self, found: &Option<OriginLocation>) -> Duration {
        if found.is_some() {
            self.ttl
        } else {
            self.negative_ttl
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(listen_host: &str, api: &str) -> SelfNode {
        SelfNode {
            listen_host: listen_host.into(),
            listen_port: 19350,
            api_listen: api.into(),
            public_ip: None,
        }
    }

    fn query() -> ClusterQuery {
        ClusterQuery {
            ip: "192.168.1.5".into(),
            vhost: "__defaultVhost__".into(),
            app: "live".into(),
            stream: "cam1".into(),
            coworker: "10.0.0.7:9090".into(),
        }
    }

    #[test]
    fn answer_has_srs_shape_and_types() {
        let v = clusters_answer(&query(), &node("", "9090"), Some("__defaultVhost__"));
        let want = json!({
            "code": 0,
            "data": {
                "query": {"ip": "192.168.1.5", "vhost": "__defaultVhost__", "app": "live",
                          "stream": "cam1"},
                "origin": {"ip": "10.0.0.7", "port": 19350, "vhost": "__defaultVhost__",
                           "api": "10.0.0.7:9090", "routers": ["10.0.0.7:9090"]},
            }
        });
        assert_eq!(v, want);
        assert!(
            v["data"]["origin"]["port"].is_u64(),
            "port is a JSON integer"
        );
        // And it reads back.
        let loc = parse_answer(v.to_string().as_bytes()).unwrap().unwrap();
        assert_eq!(loc.host_port(), "10.0.0.7:19350");
        assert_eq!(loc.vhost.as_deref(), Some("__defaultVhost__"));
    }

    #[test]
    fn not_published_is_null_origin() {
        let v = clusters_answer(&query(), &node("", "9090"), None);
        assert_eq!(v["data"]["origin"], Value::Null);
        assert_eq!(v["data"]["query"]["stream"], "cam1");
        assert_eq!(parse_answer(v.to_string().as_bytes()), Ok(None));
    }

    #[test]
    fn ip_rule_follows_srs() {
        // A real listen host is announced as is.
        assert_eq!(
            service_ip(&node("10.1.1.1", "9090"), "10.0.0.7:9090"),
            "10.1.1.1"
        );
        // Wildcards and loopback give way to the address the asker used.
        for h in ["", "0.0.0.0", "::", "127.0.0.1", "::1", "localhost"] {
            assert_eq!(
                service_ip(&node(h, "9090"), "10.0.0.7:9090"),
                "10.0.0.7",
                "{h}"
            );
        }
        assert_eq!(service_ip(&node("::", "9090"), "[fd00::7]:9090"), "fd00::7");
        // A coworker without a port is a bare host.
        assert_eq!(
            service_ip(&node("", "9090"), "edge.example"),
            "edge.example"
        );
        // Nothing from the asker: the configured public address, else the listen host.
        let mut n = node("0.0.0.0", "9090");
        assert_eq!(service_ip(&n, ""), "0.0.0.0");
        n.public_ip = Some("203.0.113.9".into());
        assert_eq!(service_ip(&n, ""), "203.0.113.9");
    }

    #[test]
    fn api_endpoint() {
        let n = node("", "1985");
        assert_eq!(service_api(&n, "10.0.0.7"), "10.0.0.7:1985");
        assert_eq!(service_api(&node("", ":1985"), "10.0.0.7"), "10.0.0.7:1985");
        assert_eq!(
            service_api(&node("", "10.9.9.9:1985"), "x"),
            "10.9.9.9:1985"
        );
        assert_eq!(
            service_api(&node("", "0.0.0.0:1985"), "10.0.0.7"),
            "10.0.0.7:1985"
        );
        assert_eq!(service_api(&node("", "1985"), "fd00::1"), "[fd00::1]:1985");
    }

    #[test]
    fn query_round_trips_through_request_path() {
        let mut q = query();
        q.stream = "a b&c".into();
        let path = q.request_path("10.0.0.8:9090");
        let (p, qs) = path.split_once('?').unwrap();
        assert_eq!(p, "/api/v1/clusters");
        let back = ClusterQuery::from_query(qs);
        assert_eq!(back.stream, "a b&c");
        assert_eq!(back.coworker, "10.0.0.8:9090");
        assert_eq!(back.app, "live");
        assert_eq!(ClusterQuery::from_query(""), ClusterQuery::default());
    }

    #[test]
    fn garbage_answers_are_typed_errors() {
        let p = |s: &str| parse_answer(s.as_bytes());
        assert!(matches!(p("<html>"), Err(AnswerError::NotJson(_))));
        assert_eq!(p("[1]"), Err(AnswerError::NotObject));
        assert_eq!(p("0"), Err(AnswerError::NotObject));
        assert_eq!(p(r#"{"data":{}}"#), Err(AnswerError::Missing("code")));
        assert_eq!(
            p(r#"{"code":"0","data":{}}"#),
            Err(AnswerError::WrongType {
                field: "code",
                expected: "an integer"
            })
        );
        assert_eq!(p(r#"{"code":1000}"#), Err(AnswerError::Code(1000)));
        assert_eq!(p(r#"{"code":0}"#), Err(AnswerError::Missing("data")));
        assert!(matches!(
            p(r#"{"code":0,"data":"x"}"#),
            Err(AnswerError::WrongType { field: "data", .. })
        ));
        assert_eq!(
            p(r#"{"code":0,"data":{}}"#),
            Err(AnswerError::Missing("origin"))
        );
        assert!(matches!(
            p(r#"{"code":0,"data":{"origin":[]}}"#),
            Err(AnswerError::WrongType {
                field: "origin",
                ..
            })
        ));
        assert_eq!(
            p(r#"{"code":0,"data":{"origin":{"port":1935}}}"#),
            Err(AnswerError::Missing("ip"))
        );
        assert!(matches!(
            p(r#"{"code":0,"data":{"origin":{"ip":7,"port":1935}}}"#),
            Err(AnswerError::WrongType { field: "ip", .. })
        ));
        assert_eq!(
            p(r#"{"code":0,"data":{"origin":{"ip":"","port":1935}}}"#),
            Err(AnswerError::EmptyHost)
        );
        assert_eq!(
            p(r#"{"code":0,"data":{"origin":{"ip":"h"}}}"#),
            Err(AnswerError::Missing("port"))
        );
        assert!(matches!(
            p(r#"{"code":0,"data":{"origin":{"ip":"h","port":"1935"}}}"#),
            Err(AnswerError::WrongType { field: "port", .. })
        ));
        assert!(matches!(
            p(r#"{"code":0,"data":{"origin":{"ip":"h","port":1935.5}}}"#),
            Err(AnswerError::WrongType { field: "port", .. })
        ));
        for bad in [0i64, -1, 65536] {
            let s = format!(r#"{{"code":0,"data":{{"origin":{{"ip":"h","port":{bad}}}}}}}"#);
            assert_eq!(p(&s), Err(AnswerError::PortOutOfRange(bad)));
        }
        assert!(matches!(
            p(r#"{"code":0,"data":{"origin":{"ip":"h","port":1,"vhost":1}}}"#),
            Err(AnswerError::WrongType { field: "vhost", .. })
        ));
        // vhost is optional (SRS's own asker never reads it).
        assert_eq!(
            p(r#"{"code":0,"data":{"origin":{"ip":"h","port":1}}}"#),
            Ok(Some(OriginLocation {
                host: "h".into(),
                port: 1,
                vhost: None
            }))
        );
    }

    #[test]
    fn plan_skips_self_and_repeats() {
        let me = SelfAddrs {
            api_port: 9090,
            hosts: vec!["10.0.0.1".into(), "origin-a.example".into()],
        };
        let plan = QueryPlan::new(
            &[
                "127.0.0.1:9090",
                "10.0.0.2:9090",
                "10.0.0.1:9090",
                "ORIGIN-A.example:9090",
                "localhost:9090",
                "[::1]:9090",
                "10.0.0.2:9090",
                "127.0.0.1:9091",
                "",
            ],
            &me,
        );
        assert_eq!(plan.targets(), &["10.0.0.2:9090", "127.0.0.1:9091"]);
        let q = query();
        let reqs: Vec<_> = plan.requests(&q).collect();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[1].0, "127.0.0.1:9091");
        assert!(
            reqs[1].1.ends_with("coworker=127.0.0.1%3A9091"),
            "{}",
            reqs[1].1
        );
        assert!(QueryPlan::new(&["127.0.0.1:9090"], &me).is_empty());
        // A port-less entry cannot be us (our API has a port).
        assert!(!me.is_self("10.0.0.1"));
    }

    #[test]
    fn cache_ttl_negative_ttl_and_invalidate() {
        let t0 = Instant::now();
        let mut c = CoworkerCache::new(Duration::from_secs(5), Duration::from_secs(1), 10);
        let loc = OriginLocation {
            host: "10.0.0.2".into(),
            port: 1935,
            vhost: None,
        };
        assert_eq!(c.get("v/live/a", t0), Cached::Miss);
        c.put("v/live/a", Some(loc.clone()), t0);
        c.put("v/live/b", None, t0);
        assert_eq!(
            c.get("v/live/a", t0 + Duration::from_secs(4)),
            Cached::At(&loc)
        );
        assert_eq!(
            c.get("v/live/b", t0 + Duration::from_millis(900)),
            Cached::Nowhere
        );
        assert_eq!(c.get("v/live/b", t0 + Duration::from_secs(1)), Cached::Miss);
        assert_eq!(c.get("v/live/a", t0 + Duration::from_secs(5)), Cached::Miss);
        c.invalidate("v/live/a");
        assert_eq!(c.get("v/live/a", t0), Cached::Miss);
        c.purge(t0 + Duration::from_secs(2));
        assert!(c.is_empty());
    }

    #[test]
    fn cache_is_bounded() {
        let t0 = Instant::now();
        let mut c = CoworkerCache::new(Duration::from_secs(5), Duration::from_secs(5), 2);
        c.put("a", None, t0);
        c.put("b", None, t0 + Duration::from_millis(1));
        c.put("c", None, t0 + Duration::from_millis(2));
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("a", t0), Cached::Miss, "the oldest went");
        // Replacing an existing key evicts nothing.
        c.put("c", None, t0 + Duration::from_millis(3));
        assert_eq!(c.len(), 2);
        // Expired entries go before live ones.
        c.put(
            "d",
            None,
            t0 + Duration::from_secs(5) + Duration::from_millis(2),
        );
        assert_eq!(c.get("c", t0 + Duration::from_secs(5)), Cached::Nowhere);
    }
}
