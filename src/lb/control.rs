//! nginx-rtmp's `/control/drop/{publisher|subscriber|client}`: parse the request into a filter
//! and match it against plain data about each live session, so scripts written for nginx-rtmp
//! (kick a publisher, clear a stream's players) work unchanged.
//!
//! Semantics from `ngx_rtmp_control_module.c` (`ngx_rtmp_control_handler`, `_drop`, `_walk*`):
//!
//! - The last two path segments are the section and the filter; only `drop` is handled here
//!   (nginx-rtmp declines other sections, which is a 404).
//! - `publisher` drops publishing sessions, `subscriber` playing ones, `client` both.
//! - Every parameter is optional. `app` missing or empty: every application. `name` missing:
//!   every stream. `addr`: only clients from that address. `clientid`: only that connection
//!   number (the `<id>` in `/stat`). `srv`: the server block index, 0 by default; shardcast has
//!   one, so anything else is "Server index out of range".
//! - Only sessions attached to a live stream are walked: a connection that has not yet
//!   published or played is never dropped.
//! - The reply is `200` with the number of dropped sessions as a bare decimal, no newline.
//!
//! As in nginx, parameter names match case-insensitively, the first occurrence wins, `&`
//! separates, and a name without `=` is not a parameter. Two deliberate differences: values
//! are percent-decoded (nginx compares the raw text, so an encoded stream name never matched
//! there; `+` stays a plus, since nginx never turned it into a space either), and a malformed
//! `addr`/`clientid`/encoding is an error instead of silently dropping nobody.

use std::net::IpAddr;

use thiserror::Error;

/// Which sessions of the matching streams to drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropWhat {
    /// Publishing sessions only.
    Publisher,
    /// Playing sessions only.
    Subscriber,
    /// Both.
    Client,
}

/// A parsed drop request: the filter every candidate session is matched against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropRequest {
    /// Publishers, subscribers or both.
    pub what: DropWhat,
    /// Application name; `None` matches every application.
    pub app: Option<String>,
    /// Stream name; `None` matches every stream.
    pub name: Option<String>,
    /// Client address; `None` matches any.
    pub addr: Option<IpAddr>,
    /// Connection number; `None` matches any.
    pub clientid: Option<u64>,
}

/// One live session, as the server describes it for matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DropCandidate<'a> {
    /// Its application.
    pub app: &'a str,
    /// Its stream name.
    pub name: &'a str,
    /// Publishing (true) or playing (false).
    pub is_publisher: bool,
    /// Its connection number (`<id>` in `/stat`).
    pub client_id: u64,
    /// The client's address (after any PROXY header).
    pub peer_ip: IpAddr,
}

/// Why a control request was refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ControlError {
    /// A section other than `drop` (nginx-rtmp's `record` and `redirect` are not offered).
    #[error("control section {0:?} is not supported")]
    UnknownSection(String),
    /// The filter is none of `publisher`, `subscriber`, `client`.
    #[error("Undefined filter {0:?}")]
    UnknownFilter(String),
    /// `srv` other than 0.
    #[error("Server index out of range: {0:?}")]
    ServerOutOfRange(String),
    /// `addr` is not an IP address.
    #[error("addr {0:?} is not an IP address")]
    BadAddr(String),
    /// `clientid` is not a decimal number.
    #[error("clientid {0:?} is not a number")]
    BadClientId(String),
    /// A parameter's percent-encoding is broken or does not decode to UTF-8.
    #[error("parameter {0} has bad percent-encoding")]
    BadEncoding(&'static str),
}

impl ControlError {
    /// The status to answer with: what nginx-rtmp answers where it has an answer (404 for a
    /// section it declines, 500 for its own errors), 400 for the checks it does not make.
    pub fn status(&self) -> u16 {
        match self {
            ControlError::UnknownSection(_) => 404,
            ControlError::UnknownFilter(_) | ControlError::ServerOutOfRange(_) => 500,
            ControlError::BadAddr(_)
            | ControlError::BadClientId(_)
            | ControlError::BadEncoding(_) => 400,
        }
    }
}

impl DropRequest {
    /// Parse a request target such as `/control/drop/publisher?app=live&name=cam1`. Whatever
    /// comes before the last two path segments (the `location`) is not looked at.
    pub fn parse(target: &str) -> Result<DropRequest, ControlError> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut segments = path.rsplit('/');
        let filter = segments.next().unwrap_or_default();
        let section = segments.next();
        if section != Some("drop") {
            return Err(ControlError::UnknownSection(
                section.unwrap_or_default().to_owned(),
            ));
        }
        let what = match filter {
            "publisher" => DropWhat::Publisher,
            "subscriber" => DropWhat::Subscriber,
            "client" => DropWhat::Client,
            other => return Err(ControlError::UnknownFilter(other.to_owned())),
        };
        if let Some(srv) = arg(query, "srv")? {
            // Index 0 in any spelling nginx's atoi accepts ("0", "00"); anything else is out.
            if srv.is_empty() || !srv.bytes().all(|b| b == b'0') {
                return Err(ControlError::ServerOutOfRange(srv));
            }
        }
        let app = arg(query, "app")?.filter(|a| !a.is_empty());
        let name = arg(query, "name")?;
        let addr = arg(query, "addr")?
            .map(|a| a.parse().map_err(|_| ControlError::BadAddr(a)))
            .transpose()?;
        let clientid = arg(query, "clientid")?
            .map(|id| {
                let digits = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit());
                match id.parse() {
                    Ok(n) if digits => Ok(n),
                    _ => Err(ControlError::BadClientId(id)),
                }
            })
            .transpose()?;
        Ok(DropRequest {
            what,
            app,
            name,
            addr,
            clientid,
        })
    }

    /// Should this session be dropped?
    pub fn matches(&self, c: &DropCandidate<'_>) -> bool {
        let role = match self.what {
            DropWhat::Publisher => c.is_publisher,
            DropWhat::Subscriber => !c.is_publisher,
            DropWhat::Client => true,
        };
        role && self.app.as_deref().is_none_or(|a| a == c.app)
            && self.name.as_deref().is_none_or(|n| n == c.name)
            && self
                .addr
                .is_none_or(|ip| ip.to_canonical() == c.peer_ip.to_canonical())
            && self.clientid.is_none_or(|id| id == c.client_id)
    }
}

/// The response body for a drop that closed `dropped` sessions: the bare decimal count.
pub fn drop_reply(dropped: usize) -> String {
    dropped.to_string()
}

/// The first `name=value` in `query` (name case-insensitive), value percent-decoded.
fn arg(query: &str, name: &'static str) -> Result<Option<String>, ControlError> {
    let Some(raw) = query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.eq_ignore_ascii_case(name).then_some(v)
    }) else {
        return Ok(None);
    };
    percent_decode(raw)
        .map(Some)
        .ok_or(ControlError::BadEncoding(name))
}

fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(what: DropWhat) -> DropRequest {
        DropRequest {
            what,
            app: None,
            name: None,
            addr: None,
            clientid: None,
        }
    }

    #[test]
    fn parse_valid_requests() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let cases: Vec<(&str, DropRequest)> = vec![
            ("/control/drop/publisher", req(DropWhat::Publisher)),
            ("/control/drop/subscriber?", req(DropWhat::Subscriber)),
            ("/drop/client", req(DropWhat::Client)),
            (
                "/control/drop/publisher?app=live&name=cam1",
                DropRequest {
                    app: Some("live".into()),
                    name: Some("cam1".into()),
                    ..req(DropWhat::Publisher)
                },
            ),
            (
                "/control/drop/client?app=live&name=cam1&addr=192.168.0.1",
                DropRequest {
                    app: Some("live".into()),
                    name: Some("cam1".into()),
                    addr: Some(ip("192.168.0.1")),
                    ..req(DropWhat::Client)
                },
            ),
            (
                "/control/drop/client?app=live&name=cam1&clientid=1",
                DropRequest {
                    app: Some("live".into()),
                    name: Some("cam1".into()),
                    clientid: Some(1),
                    ..req(DropWhat::Client)
                },
            ),
            (
                "/control/drop/subscriber?srv=0&addr=2001:db8::9&clientid=0042",
                DropRequest {
                    addr: Some(ip("2001:db8::9")),
                    clientid: Some(42),
                    ..req(DropWhat::Subscriber)
                },
            ),
            // Empty app means every application; empty name is a (nameless) stream.
            (
                "/control/drop/client?app=&name=",
                DropRequest {
                    name: Some(String::new()),
                    ..req(DropWhat::Client)
                },
            ),
            // Names are case-insensitive, the first occurrence wins, bare words are ignored.
            (
                "/control/drop/client?APP=first&app=second&name&Name=n",
                DropRequest {
                    app: Some("first".into()),
                    name: Some("n".into()),
                    ..req(DropWhat::Client)
                },
            ),
            // Only whole names: "xapp" is not "app".
            ("/control/drop/client?xapp=nope", req(DropWhat::Client)),
            // Percent-decoding, with + kept.
            (
                "/control/drop/publisher?name=my%20cam%2F1+hd&app=l%C3%AFve",
                DropRequest {
                    app: Some("lïve".into()),
                    name: Some("my cam/1+hd".into()),
                    ..req(DropWhat::Publisher)
                },
            ),
            ("/control/drop/client?srv=00", req(DropWhat::Client)),
        ];
        for (target, want) in cases {
            assert_eq!(DropRequest::parse(target), Ok(want), "{target}");
        }
    }

    #[test]
    fn parse_errors() {
        let cases: &[(&str, ControlError, u16)] = &[
            (
                "/control/record/start?app=live",
                ControlError::UnknownSection("record".into()),
                404,
            ),
            (
                "/control/redirect/client?newname=x",
                ControlError::UnknownSection("redirect".into()),
                404,
            ),
            ("client", ControlError::UnknownSection("".into()), 404),
            (
                "/control/drop",
                ControlError::UnknownSection("control".into()),
                404,
            ),
            (
                "/control/drop/",
                ControlError::UnknownFilter("".into()),
                500,
            ),
            (
                "/control/drop/publishers",
                ControlError::UnknownFilter("publishers".into()),
                500,
            ),
            (
                "/control/drop/Publisher",
                ControlError::UnknownFilter("Publisher".into()),
                500,
            ),
            (
                "/control/drop/client?srv=1",
                ControlError::ServerOutOfRange("1".into()),
                500,
            ),
            (
                "/control/drop/client?srv=x",
                ControlError::ServerOutOfRange("x".into()),
                500,
            ),
            (
                "/control/drop/client?srv=",
                ControlError::ServerOutOfRange("".into()),
                500,
            ),
            (
                "/control/drop/client?addr=not-an-ip",
                ControlError::BadAddr("not-an-ip".into()),
                400,
            ),
            (
                "/control/drop/client?addr=192.168.0.1:1935",
                ControlError::BadAddr("192.168.0.1:1935".into()),
                400,
            ),
            (
                "/control/drop/client?addr=",
                ControlError::BadAddr("".into()),
                400,
            ),
            (
                "/control/drop/client?clientid=abc",
                ControlError::BadClientId("abc".into()),
                400,
            ),
            (
                "/control/drop/client?clientid=-1",
                ControlError::BadClientId("-1".into()),
                400,
            ),
            (
                "/control/drop/client?clientid=+1",
                ControlError::BadClientId("+1".into()),
                400,
            ),
            (
                "/control/drop/client?clientid=99999999999999999999999",
                ControlError::BadClientId("99999999999999999999999".into()),
                400,
            ),
            (
                "/control/drop/client?name=%zz",
                ControlError::BadEncoding("name"),
                400,
            ),
            (
                "/control/drop/client?name=%4",
                ControlError::BadEncoding("name"),
                400,
            ),
            (
                "/control/drop/client?app=%ff",
                ControlError::BadEncoding("app"),
                400,
            ),
        ];
        for (target, want, status) in cases {
            let got = DropRequest::parse(target);
            assert_eq!(got.as_ref(), Err(want), "{target}");
            assert_eq!(want.status(), *status, "{target}");
        }
    }

    #[test]
    fn matching() {
        let v4 = "192.168.0.1".parse::<IpAddr>().unwrap();
        let mapped = "::ffff:192.168.0.1".parse::<IpAddr>().unwrap();
        let other = "192.168.0.2".parse::<IpAddr>().unwrap();
        let publisher = DropCandidate {
            app: "live",
            name: "cam1",
            is_publisher: true,
            client_id: 1,
            peer_ip: v4,
        };
        let player = DropCandidate {
            app: "live",
            name: "cam1",
            is_publisher: false,
            client_id: 2,
            peer_ip: mapped,
        };
        let elsewhere = DropCandidate {
            app: "other",
            name: "cam1",
            is_publisher: false,
            client_id: 3,
            peer_ip: other,
        };
        let cases: &[(&str, [bool; 3])] = &[
            ("/control/drop/publisher", [true, false, false]),
            ("/control/drop/subscriber", [false, true, true]),
            ("/control/drop/client", [true, true, true]),
            ("/control/drop/client?app=live", [true, true, false]),
            ("/control/drop/client?app=LIVE", [false, false, false]),
            ("/control/drop/client?name=cam1", [true, true, true]),
            ("/control/drop/client?name=cam2", [false, false, false]),
            ("/control/drop/client?name=", [false, false, false]),
            (
                "/control/drop/publisher?app=live&name=cam1",
                [true, false, false],
            ),
            // The same client whether its socket reported IPv4 or IPv4-mapped IPv6.
            ("/control/drop/client?addr=192.168.0.1", [true, true, false]),
            (
                "/control/drop/client?addr=::ffff:192.168.0.1",
                [true, true, false],
            ),
            (
                "/control/drop/subscriber?addr=192.168.0.1",
                [false, true, false],
            ),
            ("/control/drop/client?clientid=2", [false, true, false]),
            (
                "/control/drop/client?clientid=2&addr=192.168.0.2",
                [false, false, false],
            ),
            (
                "/control/drop/client?clientid=3&addr=192.168.0.2",
                [false, false, true],
            ),
        ];
        for (target, want) in cases {
            let r = DropRequest::parse(target).unwrap();
            let got = [&publisher, &player, &elsewhere].map(|c| r.matches(c));
            assert_eq!(&got, want, "{target}");
        }
    }

    #[test]
    fn reply_is_the_bare_count() {
        assert_eq!(drop_reply(0), "0");
        assert_eq!(drop_reply(17), "17");
    }
}
