//! Origin heartbeats to the proxy tier, SRS `POST /api/v1/srs/register` compatible: SRS origins
//! (with `heartbeat.ports on`) and shardcast origins announce themselves with the same body, so
//! one proxy fleet fronts either.
//!
//! Wire facts: SRS `trunk/src/app/srs_app_heartbeat.cpp` `do_heartbeat` sends `device_id`, `ip`,
//! `server`, `service`, `pid` (all JSON strings, `pid` too), optional `summaries`, and listen
//! endpoint arrays `rtmp`, `http`, `api`, `srt`, `rtsp`, `rtc` whose entries are the listen
//! directives as configured (`"1935"`, `"0.0.0.0:1935"`) or, for RTC, `"udp://..."` /
//! `"tcp://..."`. The SRS proxy (`proxy/api.go`) requires non-empty `ip`, `server`, `service`,
//! `pid` and a non-empty `rtmp` array, ignores unknown fields, keys the origin as
//! `{server}-{service}-{pid}` (`proxy/srs.go` `SRSServer.ID`), dials the heartbeat's `ip` with
//! the endpoint's port, and answers `{"code":0,"pid":"<proxy pid>"}`. Its endpoint parser
//! (`ParseListenEndpoint`) takes `port`, `proto://host:port`, `proto://port` and
//! `proto:ip:port`. We also take `host:port` and `[v6]:port`, and we write `tcp://host:port`,
//! which both parsers read.
//!
//! Load (`streams`, `players`, `egress_mbps`, `cpu`) is shardcast's addition for placement;
//! SRS does not send it and the SRS proxy ignores it.
//!
//! Errors answer 4xx with `{"code":<non-zero>,"error":"..."}` (the SRS proxy answers 500 with
//! plain text; a typed JSON body tells a sender what to fix).

use super::url::{host_port, is_wildcard, parse_port, split_host_port, UrlError};
use serde_json::{json, Map, Value};
use thiserror::Error;

/// Path of the register API.
pub const REGISTER_PATH: &str = "/api/v1/srs/register";

/// Largest body accepted. SRS's body with `summaries` is about 2 KiB; 64 KiB leaves room for
/// long endpoint lists without letting a sender make us buffer much.
pub const MAX_BODY: usize = 64 * 1024;

/// One listen endpoint, resolved to an address a peer can dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `tcp`, `udp`, ... when written; `None` for `"1935"` and `"host:port"`.
    pub scheme: Option<String>,
    /// Host to dial: the endpoint's own unless it is missing or a wildcard, then the
    /// heartbeat's `ip`.
    pub host: String,
    /// Port to dial.
    pub port: u16,
}

impl Endpoint {
    /// Read one endpoint entry; `ip` stands in for a missing or wildcard host.
    pub fn parse(s: &str, ip: &str) -> Result<Endpoint, UrlError> {
        let s = s.trim();
        let (scheme, rest) = match s.split_once("://") {
            Some((scheme, rest)) => (Some(scheme), rest),
            None => match legacy(s) {
                Some((scheme, rest)) => (Some(scheme), rest),
                None => (None, s),
            },
        };
        let (host, port) = if !rest.contains(':') {
            ("", parse_port(rest)?)
        } else if let Some(p) = rest.strip_prefix(':') {
            ("", parse_port(p)?)
        } else {
            match split_host_port(rest)? {
                (h, Some(p)) => (h, p),
                (_, None) => return Err(UrlError::BadPort(rest.to_string())),
            }
        };
        let host = if is_wildcard(host) { ip } else { host };
        if host.is_empty() {
            return Err(UrlError::NoHost);
        }
        Ok(Endpoint {
            scheme: scheme.map(str::to_string),
            host: host.to_string(),
            port,
        })
    }

    /// `host:port` to dial.
    pub fn host_port(&self) -> String {
        host_port(&self.host, self.port)
    }

    /// `scheme://host:port`, `tcp` when no scheme was given: the form both SRS's proxy and ours
    /// read.
    pub fn to_wire(&self) -> String {
        format!(
            "{}://{}",
            self.scheme.as_deref().unwrap_or("tcp"),
            self.host_port()
        )
    }
}

/// SRS proxy's legacy `proto:ip:port` (exactly three parts, a letters-only protocol).
fn legacy(s: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = s.split_once(':')?;
    let is_legacy = !scheme.is_empty()
        && scheme.bytes().all(|b| b.is_ascii_alphabetic())
        && rest.matches(':').count() == 1;
    is_legacy.then_some((scheme, rest))
}

/// Load figures a shardcast origin reports, for least-loaded placement.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Load {
    /// Streams published on the origin.
    pub streams: u64,
    /// Players (and edges) pulling from it.
    pub players: u64,
    /// Outgoing media, Mbit/s.
    pub egress_mbps: f64,
    /// CPU busy, percent of the whole machine (0-100).
    pub cpu: f64,
}

/// A parsed heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    /// Operator-set label; may be empty.
    pub device_id: String,
    /// Address peers reach the origin by.
    pub ip: String,
    /// Stable server id (survives restarts).
    pub server: String,
    /// Changes on every restart.
    pub service: String,
    /// Process id of the origin (a string, as SRS sends it).
    pub pid: String,
    /// RTMP endpoints; never empty.
    pub rtmp: Vec<Endpoint>,
    /// HTTP server endpoints (HTTP-FLV and the like).
    pub http: Vec<Endpoint>,
    /// HTTP API endpoints.
    pub api: Vec<Endpoint>,
    /// SRT endpoints.
    pub srt: Vec<Endpoint>,
    /// WebRTC endpoints.
    pub rtc: Vec<Endpoint>,
    /// `None` from senders that report no load (SRS).
    pub load: Option<Load>,
}

impl Heartbeat {
    /// The origin's id in the registry: `{server}-{service}-{pid}`, as the SRS proxy keys it,
    /// so a restarted origin (new service id and pid) is a new origin.
    pub fn id(&self) -> String {
        format!("{}-{}-{}", self.server, self.service, self.pid)
    }

    /// The RTMP endpoint to send publishers and players to.
    pub fn rtmp_endpoint(&self) -> &Endpoint {
        &self.rtmp[0]
    }

    /// The body a shardcast origin sends: SRS's shape, endpoints as `scheme://host:port`, and
    /// the load fields when known.
    pub fn to_json(&self) -> Value {
        let eps = |v: &[Endpoint]| Value::from(v.iter().map(Endpoint::to_wire).collect::<Vec<_>>());
        let mut o = Map::new();
        o.insert("device_id".into(), self.device_id.clone().into());
        o.insert("ip".into(), self.ip.clone().into());
        o.insert("server".into(), self.server.clone().into());
        o.insert("service".into(), self.service.clone().into());
        o.insert("pid".into(), self.pid.clone().into());
        o.insert("rtmp".into(), eps(&self.rtmp));
        for (k, v) in [
            ("http", &self.http),
            ("api", &self.api),
            ("srt", &self.srt),
            ("rtc", &self.rtc),
        ] {
            if !v.is_empty() {
                o.insert(k.into(), eps(v));
            }
        }
        if let Some(l) = &self.load {
            o.insert("streams".into(), l.streams.into());
            o.insert("players".into(), l.players.into());
            o.insert("egress_mbps".into(), l.egress_mbps.into());
            o.insert("cpu".into(), l.cpu.into());
        }
        Value::Object(o)
    }
}

/// Why a heartbeat was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RegisterError {
    /// The body is over [`MAX_BODY`].
    #[error("body of {len} bytes is over the {max}-byte limit")]
    TooLarge {
        /// Body length, in bytes.
        len: usize,
        /// The limit, in bytes.
        max: usize,
    },
    /// The body does not parse as JSON.
    #[error("body is not JSON: {0}")]
    NotJson(String),
    /// The JSON is not an object.
    #[error("body is not a JSON object")]
    NotObject,
    /// A required field is absent or null.
    #[error("`{0}` is missing")]
    Missing(&'static str),
    /// A required field is an empty string (or `rtmp` an empty array).
    #[error("`{0}` is empty")]
    Empty(&'static str),
    /// A field has the wrong JSON type.
    #[error("`{field}` is not {expected}")]
    WrongType {
        /// Field name.
        field: &'static str,
        /// What it should be.
        expected: &'static str,
    },
    /// An endpoint entry does not parse.
    #[error("`{field}` entry `{value}`: {source}")]
    BadEndpoint {
        /// Field name (`rtmp`, `http`, ...).
        field: &'static str,
        /// The entry as sent.
        value: String,
        /// Why it does not parse.
        source: UrlError,
    },
}

impl RegisterError {
    /// HTTP status to answer with.
    pub fn http_status(&self) -> u16 {
        match self {
            RegisterError::TooLarge { .. } => 413,
            _ => 400,
        }
    }

    /// The `code` in the error body: the HTTP status (non-zero, and what an operator greps).
    pub fn code(&self) -> u16 {
        self.http_status()
    }

    /// `{"code":<non-zero>,"error":"..."}`.
    pub fn to_json(&self) -> Value {
        json!({"code": self.code(), "error": self.to_string()})
    }
}

/// The answer to a good heartbeat: `{"code":0,"pid":"<the proxy's pid>"}`.
pub fn register_ok(proxy_pid: u32) -> Value {
    json!({"code": 0, "pid": proxy_pid.to_string()})
}

/// Read a heartbeat body (refuse it past [`MAX_BODY`] before reading it all, if the length is
/// known up front; this checks again).
pub fn parse_heartbeat(body: &[u8]) -> Result<Heartbeat, RegisterError> {
    if body.len() > MAX_BODY {
        return Err(RegisterError::TooLarge {
            len: body.len(),
            max: MAX_BODY,
        });
    }
    let v: Value =
        serde_json::from_slice(body).map_err(|e| RegisterError::NotJson(e.to_string()))?;
    let o = v.as_object().ok_or(RegisterError::NotObject)?;

    let ip = required_str(o, "ip")?;
    let server = required_str(o, "server")?;
    let service = required_str(o, "service")?;
    let pid = match o.get("pid") {
        // SRS sends a string; a number is what other senders write, and means the same.
        Some(Value::Number(n)) if n.is_u64() => n.to_string(),
        _ => required_str(o, "pid")?,
    };
    let device_id = optional_str(o, "device_id")?;
    let rtmp = endpoints(o, "rtmp", &ip)?;
    if rtmp.is_empty() {
        return Err(if o.get("rtmp").is_none_or(Value::is_null) {
            RegisterError::Missing("rtmp")
        } else {
            RegisterError::Empty("rtmp")
        });
    }
    let load_keys = ["streams", "players", "egress_mbps", "cpu"];
    let load = if load_keys
        .iter()
        .any(|k| o.get(*k).is_some_and(|v| !v.is_null()))
    {
        Some(Load {
            streams: count(o, "streams")?,
            players: count(o, "players")?,
            egress_mbps: amount(o, "egress_mbps")?,
            cpu: amount(o, "cpu")?,
        })
    } else {
        None
    };
    Ok(Heartbeat {
        device_id,
        http: endpoints(o, "http", &ip)?,
        api: endpoints(o, "api", &ip)?,
        srt: endpoints(o, "srt", &ip)?,
        rtc: endpoints(o, "rtc", &ip)?,
        ip,
        server,
        service,
        pid,
        rtmp,
        load,
    })
}

type Obj = Map<String, Value>;

fn required_str(o: &Obj, field: &'static str) -> Result<String, RegisterError> {
    match o.get(field) {
        None | Some(Value::Null) => Err(RegisterError::Missing(field)),
        Some(Value::String(s)) if s.is_empty() => Err(RegisterError::Empty(field)),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(RegisterError::WrongType {
            field,
            expected: "a string",
        }),
    }
}

fn optional_str(o: &Obj, field: &'static str) -> Result<String, RegisterError> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(RegisterError::WrongType {
            field,
            expected: "a string",
        }),
    }
}

fn endpoints(o: &Obj, field: &'static str, ip: &str) -> Result<Vec<Endpoint>, RegisterError> {
    let list = match o.get(field) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(RegisterError::WrongType {
                field,
                expected: "an array of strings",
            })
        }
    };
    list.iter()
        .map(|v| {
            let s = v.as_str().ok_or(RegisterError::WrongType {
                field,
                expected: "an array of strings",
            })?;
            Endpoint::parse(s, ip).map_err(|source| RegisterError::BadEndpoint {
                field,
                value: s.to_string(),
                source,
            })
        })
        .collect()
}

fn count(o: &Obj, field: &'static str) -> Result<u64, RegisterError> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v.as_u64().ok_or(RegisterError::WrongType {
            field,
            expected: "a non-negative integer",
        }),
    }
}

fn amount(o: &Obj, field: &'static str) -> Result<f64, RegisterError> {
    match o.get(field) {
        None | Some(Value::Null) => Ok(0.0),
        Some(v) => {
            v.as_f64()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or(RegisterError::WrongType {
                    field,
                    expected: "a non-negative number",
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What SRS 6 sends with `heartbeat.ports on` (values from a default config).
    const SRS_BODY: &str = r#"{"device_id":"","ip":"10.0.0.5","server":"vid-srv1",
        "service":"svc9","pid":"4242","summaries":{"ok":true},
        "rtmp":["1935"],"http":["8080"],"api":["1985"],"srt":["10080"],
        "rtsp":["554"],"rtc":["udp://8000","tcp://8000"]}"#;

    #[test]
    fn srs_heartbeat_parses() {
        let hb = parse_heartbeat(SRS_BODY.as_bytes()).unwrap();
        assert_eq!(hb.id(), "vid-srv1-svc9-4242");
        assert_eq!(hb.rtmp_endpoint().host_port(), "10.0.0.5:1935");
        assert_eq!(hb.http[0].port, 8080);
        assert_eq!(hb.api[0].host_port(), "10.0.0.5:1985");
        assert_eq!(hb.srt[0].port, 10080);
        assert_eq!(hb.rtc.len(), 2);
        assert_eq!(hb.rtc[0].scheme.as_deref(), Some("udp"));
        assert_eq!(hb.rtc[1].to_wire(), "tcp://10.0.0.5:8000");
        assert_eq!(hb.load, None);
        assert_eq!(hb.device_id, "");
    }

    #[test]
    fn endpoint_forms() {
        let p = |s: &str| Endpoint::parse(s, "10.0.0.5").map(|e| (e.scheme, e.host, e.port));
        assert_eq!(p("1935"), Ok((None, "10.0.0.5".into(), 1935)));
        assert_eq!(p("0.0.0.0:1935"), Ok((None, "10.0.0.5".into(), 1935)));
        assert_eq!(p("[::]:1935"), Ok((None, "10.0.0.5".into(), 1935)));
        assert_eq!(p("10.1.1.1:1936"), Ok((None, "10.1.1.1".into(), 1936)));
        assert_eq!(p("[fd00::1]:1936"), Ok((None, "fd00::1".into(), 1936)));
        assert_eq!(
            p("tcp://10.1.1.1:1937"),
            Ok((Some("tcp".into()), "10.1.1.1".into(), 1937))
        );
        assert_eq!(
            p("tcp://:1937"),
            Ok((Some("tcp".into()), "10.0.0.5".into(), 1937))
        );
        assert_eq!(
            p("tcp://1937"),
            Ok((Some("tcp".into()), "10.0.0.5".into(), 1937))
        );
        assert_eq!(
            p("tcp://0.0.0.0:1937"),
            Ok((Some("tcp".into()), "10.0.0.5".into(), 1937))
        );
        assert_eq!(
            p("udp:10.1.1.1:8000"),
            Ok((Some("udp".into()), "10.1.1.1".into(), 8000))
        );
        assert!(p("tcp://").is_err());
        assert!(p("x").is_err());
        assert!(p("0").is_err());
        assert!(p("65536").is_err());
        assert!(p("h:").is_err());
        assert!(p("[::1]").is_err(), "a host without a port");
        // A wildcard host with no heartbeat ip to stand in: nothing to dial.
        assert_eq!(Endpoint::parse("1935", ""), Err(UrlError::NoHost));
    }

    #[test]
    fn required_fields_as_srs_proxy() {
        let base: Value = serde_json::from_str(SRS_BODY).unwrap();
        for field in ["ip", "server", "service", "pid", "rtmp"] {
            let mut v = base.clone();
            v.as_object_mut().unwrap().remove(field);
            assert_eq!(
                parse_heartbeat(v.to_string().as_bytes()),
                Err(RegisterError::Missing(field)),
                "{field}"
            );
            let mut v = base.clone();
            v[field] = if field == "rtmp" {
                json!([])
            } else {
                json!("")
            };
            assert_eq!(
                parse_heartbeat(v.to_string().as_bytes()),
                Err(RegisterError::Empty(field)),
                "{field}"
            );
        }
        // Optional ones may go.
        let mut v = base.clone();
        for f in ["device_id", "http", "api", "srt", "rtc", "summaries"] {
            v.as_object_mut().unwrap().remove(f);
        }
        assert!(parse_heartbeat(v.to_string().as_bytes()).is_ok());
    }

    #[test]
    fn wrong_types_and_garbage() {
        let with = |k: &str, val: Value| {
            let mut v: Value = serde_json::from_str(SRS_BODY).unwrap();
            v[k] = val;
            parse_heartbeat(v.to_string().as_bytes())
        };
        assert!(matches!(
            with("ip", json!(1)),
            Err(RegisterError::WrongType { field: "ip", .. })
        ));
        assert!(matches!(
            with("rtmp", json!("1935")),
            Err(RegisterError::WrongType { field: "rtmp", .. })
        ));
        assert!(matches!(
            with("http", json!([8080])),
            Err(RegisterError::WrongType { field: "http", .. })
        ));
        assert!(matches!(
            with("rtmp", json!(["nope"])),
            Err(RegisterError::BadEndpoint { field: "rtmp", .. })
        ));
        assert!(matches!(
            with("pid", json!(-3)),
            Err(RegisterError::WrongType { field: "pid", .. })
        ));
        assert_eq!(with("pid", json!(77)).unwrap().pid, "77");
        assert!(matches!(
            with("device_id", json!(false)),
            Err(RegisterError::WrongType {
                field: "device_id",
                ..
            })
        ));
        assert!(matches!(
            with("players", json!(-1)),
            Err(RegisterError::WrongType {
                field: "players",
                ..
            })
        ));
        assert!(matches!(
            with("cpu", json!("50")),
            Err(RegisterError::WrongType { field: "cpu", .. })
        ));
        assert!(matches!(
            parse_heartbeat(b"{"),
            Err(RegisterError::NotJson(_))
        ));
        assert!(matches!(
            parse_heartbeat(b""),
            Err(RegisterError::NotJson(_))
        ));
        assert_eq!(parse_heartbeat(b"[]"), Err(RegisterError::NotObject));
        let big = vec![b' '; MAX_BODY + 1];
        let e = parse_heartbeat(&big).unwrap_err();
        assert_eq!(
            e,
            RegisterError::TooLarge {
                len: MAX_BODY + 1,
                max: MAX_BODY
            }
        );
        assert_eq!(e.http_status(), 413);
    }

    #[test]
    fn error_body_shape() {
        let e = RegisterError::Missing("ip");
        assert_eq!(e.http_status(), 400);
        let v = e.to_json();
        assert_eq!(v["code"], 400);
        assert_eq!(v["error"], "`ip` is missing");
        assert_eq!(register_ok(31337), json!({"code": 0, "pid": "31337"}));
    }

    #[test]
    fn load_fields() {
        let mut v: Value = serde_json::from_str(SRS_BODY).unwrap();
        v["players"] = json!(120);
        v["egress_mbps"] = json!(350.5);
        let hb = parse_heartbeat(v.to_string().as_bytes()).unwrap();
        assert_eq!(
            hb.load,
            Some(Load {
                streams: 0,
                players: 120,
                egress_mbps: 350.5,
                cpu: 0.0
            })
        );
    }

    #[test]
    fn built_heartbeat_round_trips() {
        let hb = Heartbeat {
            device_id: "rack1".into(),
            ip: "10.0.0.9".into(),
            server: "sc-1".into(),
            service: "boot7".into(),
            pid: "99".into(),
            rtmp: vec![Endpoint::parse("tcp://0.0.0.0:1935", "10.0.0.9").unwrap()],
            http: vec![],
            api: vec![Endpoint::parse("tcp://1985", "10.0.0.9").unwrap()],
            srt: vec![],
            rtc: vec![],
            load: Some(Load {
                streams: 3,
                players: 40,
                egress_mbps: 80.0,
                cpu: 12.5,
            }),
        };
        let v = hb.to_json();
        assert_eq!(v["rtmp"], json!(["tcp://10.0.0.9:1935"]));
        assert_eq!(v["pid"], "99", "pid goes out as a string, as SRS sends it");
        assert!(v.get("http").is_none());
        assert_eq!(v["players"], 40);
        assert_eq!(parse_heartbeat(v.to_string().as_bytes()).unwrap(), hb);
        // Scheme-less endpoints go out as tcp://.
        let bare = Endpoint::parse("1935", "10.0.0.9").unwrap();
        assert_eq!(bare.to_wire(), "tcp://10.0.0.9:1935");
    }
}
