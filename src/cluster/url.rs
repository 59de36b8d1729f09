//! RTMP URLs and HTTP query strings, split without I/O: no name resolution here, because every
//! cluster piece that reads a URL (redirects, forward backends, coworker answers) runs inside a
//! shard's event loop and must not block on DNS. The caller resolves `host` when it connects.

use std::fmt;
use thiserror::Error;

/// Port an `rtmp://` URL means when it names none.
pub const DEFAULT_RTMP_PORT: u16 = 1935;

/// Why a string is not a usable `rtmp://host[:port]/app/stream` URL.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UrlError {
    /// The scheme is not `rtmp://`.
    #[error("not an rtmp:// URL")]
    NotRtmp,
    /// The host is empty, or an IPv6 host lacks its closing bracket.
    #[error("no host")]
    NoHost,
    /// The port is not a number in 1..=65535.
    #[error("bad port `{0}`")]
    BadPort(String),
    /// The app is empty.
    #[error("no app")]
    NoApp,
    /// There is no stream segment, or it is empty.
    #[error("no stream name")]
    NoStream,
}

/// `rtmp://host[:port]/app[/more]/stream[?query]`. The last path segment is the stream, the rest
/// the app (apps may hold '/'). A query written after the app (`app?vhost=v/stream`, the tcUrl
/// style) is moved behind the stream, so `query` is the one place parameters live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpUrl {
    /// Without IPv6 brackets.
    pub host: String,
    /// Port; 1935 when the URL names none.
    pub port: u16,
    /// App: every path segment but the last (may hold '/').
    pub app: String,
    /// Stream name: the last path segment.
    pub stream: String,
    /// Without the leading '?'; empty when none.
    pub query: String,
}

impl RtmpUrl {
    /// Split a full URL (stream required).
    pub fn parse(url: &str) -> Result<RtmpUrl, UrlError> {
        let (host, port, path) = split_authority(url)?;
        let (path, query) = match path.split_once('?') {
            // `app?vhost=v/stream`: the query sits inside the path.
            Some((app, rest)) if rest.contains('/') => {
                let (q, stream) = rest.rsplit_once('/').unwrap_or((rest, ""));
                let (stream, q2) = stream.split_once('?').unwrap_or((stream, ""));
                let query = [q, q2]
                    .iter()
                    .filter(|s| !s.is_empty())
                    .copied()
                    .collect::<Vec<_>>()
                    .join("&");
                return finish(host, port, app, stream, query);
            }
            Some((p, q)) => (p, q.to_string()),
            None => (path, String::new()),
        };
        let (app, stream) = path.rsplit_once('/').ok_or(UrlError::NoStream)?;
        finish(host, port, app, stream, query)
    }

    /// `rtmp://host:port/app`: what a client sends as tcUrl to reach this URL.
    pub fn tc_url(&self) -> String {
        format!("rtmp://{}/{}", self.host_port(), self.app)
    }

    /// `host:port`, IPv6 hosts in brackets.
    pub fn host_port(&self) -> String {
        host_port(&self.host, self.port)
    }

    /// The stream name with its query, as sent in publish/play.
    pub fn stream_with_query(&self) -> String {
        if self.query.is_empty() {
            self.stream.clone()
        } else {
            format!("{}?{}", self.stream, self.query)
        }
    }

    /// What identifies the resource, for loop detection: host (lowercased), port, app and
    /// stream; the query is left out (tokens in it may change from hop to hop).
    pub fn identity(&self) -> String {
        format!(
            "{}/{}/{}",
            host_port(&self.host.to_ascii_lowercase(), self.port),
            self.app,
            self.stream
        )
    }
}

impl fmt::Display for RtmpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tc_url(), self.stream_with_query())
    }
}

fn finish(
    host: &str,
    port: u16,
    app: &str,
    stream: &str,
    query: String,
) -> Result<RtmpUrl, UrlError> {
    let app = app.trim_matches('/');
    if app.is_empty() {
        return Err(UrlError::NoApp);
    }
    if stream.is_empty() {
        return Err(UrlError::NoStream);
    }
    Ok(RtmpUrl {
        host: host.to_string(),
        port,
        app: app.to_string(),
        stream: stream.to_string(),
        query,
    })
}

/// `rtmp://authority/rest` → (host, port, rest).
fn split_authority(url: &str) -> Result<(&str, u16, &str), UrlError> {
    let rest = url
        .strip_prefix("rtmp://")
        .or_else(|| {
            url.get(..7)
                .filter(|p| p.eq_ignore_ascii_case("rtmp://"))
                .map(|_| &url[7..])
        })
        .ok_or(UrlError::NotRtmp)?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = split_host_port(authority)?;
    let port = port.unwrap_or(DEFAULT_RTMP_PORT);
    Ok((host, port, path))
}

/// `host[:port]` or `[v6][:port]` → (host without brackets, port). An empty host is an error.
pub fn split_host_port(s: &str) -> Result<(&str, Option<u16>), UrlError> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or(UrlError::NoHost)?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(UrlError::BadPort(after.to_string())),
        };
        (h, port)
    } else {
        match s.rsplit_once(':') {
            // A bare IPv6 address has several colons and no port.
            Some((h, _)) if h.contains(':') => (s, None),
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err(UrlError::NoHost);
    }
    let port = match port {
        Some(p) => Some(parse_port(p)?),
        None => None,
    };
    Ok((host, port))
}

/// A TCP/UDP port: 1..=65535.
pub fn parse_port(p: &str) -> Result<u16, UrlError> {
    match p.parse::<u16>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(UrlError::BadPort(p.to_string())),
    }
}

/// `host:port`, with brackets around an IPv6 host.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Hosts that mean "every interface" when listened on: useless to a remote peer as an address.
pub fn is_wildcard(host: &str) -> bool {
    host.is_empty() || host == "0.0.0.0" || host == "::" || host == "[::]"
}

/// Hosts only this machine can reach.
pub fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// The decoded value of `key` in an `a=b&c=d` query (`%XX` and `+` decoded), first match.
pub fn query_get(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (percent_decode(k) == key).then(|| percent_decode(v))
    })
}

/// Appends `key=value` to a query, percent-encoding both.
pub fn query_push(query: &mut String, key: &str, value: &str) {
    if !query.is_empty() {
        query.push('&');
    }
    percent_encode_into(key, query);
    query.push('=');
    percent_encode_into(value, query);
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
fn percent_encode_into(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// `%XX` and `+` decoded; malformed escapes are kept as written, invalid UTF-8 replaced.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_url() {
        let u = RtmpUrl::parse("rtmp://10.0.0.2:19350/live/cam1?token=x").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.app.as_str(), u.stream.as_str()),
            ("10.0.0.2", 19350, "live", "cam1")
        );
        assert_eq!(u.query, "token=x");
        assert_eq!(u.tc_url(), "rtmp://10.0.0.2:19350/live");
        assert_eq!(u.to_string(), "rtmp://10.0.0.2:19350/live/cam1?token=x");
    }

    #[test]
    fn default_port_nested_app_and_ipv6() {
        let u = RtmpUrl::parse("rtmp://host/a/b/s").unwrap();
        assert_eq!(
            (u.port, u.app.as_str(), u.stream.as_str()),
            (1935, "a/b", "s")
        );
        let u = RtmpUrl::parse("rtmp://[::1]:1936/live/s").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 1936));
        assert_eq!(u.host_port(), "[::1]:1936");
        assert_eq!(u.to_string(), "rtmp://[::1]:1936/live/s");
    }

    #[test]
    fn query_in_tc_url_moves_behind_stream() {
        let u = RtmpUrl::parse("rtmp://h:1935/live?vhost=v.example/cam?t=1").unwrap();
        assert_eq!((u.app.as_str(), u.stream.as_str()), ("live", "cam"));
        assert_eq!(u.query, "vhost=v.example&t=1");
    }

    #[test]
    fn errors() {
        assert_eq!(RtmpUrl::parse("http://h/a/s"), Err(UrlError::NotRtmp));
        assert_eq!(RtmpUrl::parse("rtmp:///a/s"), Err(UrlError::NoHost));
        assert_eq!(
            RtmpUrl::parse("rtmp://h:0/a/s"),
            Err(UrlError::BadPort("0".into()))
        );
        assert_eq!(
            RtmpUrl::parse("rtmp://h:70000/a/s"),
            Err(UrlError::BadPort("70000".into()))
        );
        assert_eq!(RtmpUrl::parse("rtmp://h/app"), Err(UrlError::NoStream));
        assert_eq!(RtmpUrl::parse("rtmp://h//s"), Err(UrlError::NoApp));
        assert_eq!(RtmpUrl::parse("rtmp://h/a/"), Err(UrlError::NoStream));
        assert_eq!(RtmpUrl::parse("rtmp://h"), Err(UrlError::NoStream));
    }

    #[test]
    fn identity_ignores_query_and_host_case() {
        let a = RtmpUrl::parse("rtmp://HOST:1935/live/s?t=1").unwrap();
        let b = RtmpUrl::parse("rtmp://host/live/s?t=2").unwrap();
        assert_eq!(a.identity(), b.identity());
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port("a:1"), Ok(("a", Some(1))));
        assert_eq!(split_host_port("a"), Ok(("a", None)));
        assert_eq!(split_host_port("[::]:5"), Ok(("::", Some(5))));
        assert_eq!(split_host_port("::1"), Ok(("::1", None)));
        assert_eq!(split_host_port(":5"), Err(UrlError::NoHost));
        assert!(split_host_port("[::1]x").is_err());
    }

    #[test]
    fn wildcard_and_loopback() {
        assert!(is_wildcard("0.0.0.0") && is_wildcard("::") && is_wildcard(""));
        assert!(!is_wildcard("10.0.0.1"));
        assert!(is_loopback("127.0.0.1") && is_loopback("127.3.2.1") && is_loopback("::1"));
        assert!(is_loopback("localhost") && is_loopback("[::1]"));
        assert!(!is_loopback("10.0.0.1") && !is_loopback("example.com"));
    }

    #[test]
    fn query_round_trip() {
        let mut q = String::new();
        query_push(&mut q, "stream", "a b/c?d&e=f");
        query_push(&mut q, "app", "live");
        assert_eq!(q, "stream=a%20b%2Fc%3Fd%26e%3Df&app=live");
        assert_eq!(query_get(&q, "stream").as_deref(), Some("a b/c?d&e=f"));
        assert_eq!(query_get(&q, "app").as_deref(), Some("live"));
        assert_eq!(query_get(&q, "nope"), None);
        assert_eq!(query_get("a=1+2&b", "a").as_deref(), Some("1 2"));
        assert_eq!(query_get("a=1+2&b", "b").as_deref(), Some(""));
        assert_eq!(query_get("a=%zz%4", "a").as_deref(), Some("%zz%4"));
    }
}
