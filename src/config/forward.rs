//! Forward settings: where every published stream is sent on to (SRS "forward", nginx-rtmp
//! "push"), globally and per vhost/app.

use crate::cluster::url::{query_get, RtmpUrl};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// `[forward]`: the global rule plus the retry and queue settings every forward peer uses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GlobalForward {
    /// Forward every published stream to `destinations` (unless a vhost or app rule says
    /// otherwise).
    pub enabled: bool,
    /// `host:port` (same app and stream name) or `rtmp://host:port/app[?vhost=name]`.
    pub destinations: Vec<String>,
    /// First retry delay after a destination fails; doubles up to `backoff_max_ms`.
    pub backoff_initial_ms: u64,
    /// Longest retry delay, in milliseconds.
    pub backoff_max_ms: u64,
    /// Media a destination may be behind before it skips to the next keyframe.
    pub queue_ms: u32,
    /// Time allowed to connect and get `NetStream.Publish.Start`.
    pub connect_timeout_ms: u64,
    /// SRS `forward.backend`: an http:// URL asked (POST `on_forward`) on each publish for
    /// that stream's extra destinations; empty: none asked.
    pub backend: String,
    /// How long the backend (and the lookup of the hosts it names) may take; past it the
    /// publish has no dynamic destinations.
    pub backend_timeout_ms: u64,
}

impl Default for GlobalForward {
    fn default() -> Self {
        GlobalForward {
            enabled: false,
            destinations: Vec::new(),
            backoff_initial_ms: 1000,
            backoff_max_ms: 30_000,
            queue_ms: 5000,
            connect_timeout_ms: 5000,
            backend: String::new(),
            backend_timeout_ms: 2000,
        }
    }
}

/// `[vhost.forward]` / `[vhost.app.forward]`: overrides the wider rule for that vhost or app.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardRule {
    /// Forward this vhost's or app's streams; `false` turns forwarding off there.
    pub enabled: bool,
    /// Destinations, written as in [`GlobalForward::destinations`].
    pub destinations: Vec<String>,
}

impl Default for ForwardRule {
    fn default() -> Self {
        ForwardRule {
            enabled: true,
            destinations: Vec::new(),
        }
    }
}

/// One destination, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardTarget {
    /// The resolved address to connect to.
    pub addr: SocketAddr,
    /// Host as written, for the tcUrl.
    pub host: String,
    /// App to publish to; `None` keeps the source's app.
    pub app: Option<String>,
    /// Vhost to name with `?vhost=` in the tcUrl.
    pub vhost: Option<String>,
    /// The destination as configured, for logs and stats.
    pub display: String,
    /// Stream name (with its query) to publish as; `None` keeps the source's name. A forward
    /// backend's URL names one.
    pub stream: Option<String>,
}

impl ForwardTarget {
    /// Parse and resolve `host[:port]` (port 1935 by default) or
    /// `rtmp://host[:port]/app[?vhost=name]`.
    pub fn parse(s: &str) -> Result<ForwardTarget, String> {
        let (hostport, app, vhost) = match s.strip_prefix("rtmp://") {
            Some(rest) => {
                let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
                let (app, query) = path.split_once('?').unwrap_or((path, ""));
                let vhost = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("vhost="))
                    .map(str::to_string);
                let app = (!app.is_empty()).then(|| app.trim_end_matches('/').to_string());
                (hostport, app, vhost)
            }
            None if s.contains("://") => return Err(format!("`{s}`: only rtmp:// is supported")),
            None => (s, None, None),
        };
        let with_port = if hostport
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            hostport.to_string()
        } else {
            format!("{hostport}:1935")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("`{s}`: {e}"))?
            .next()
            .ok_or_else(|| format!("`{s}` resolves to no address"))?;
        let host = with_port
            .rsplit_once(':')
            .map(|(h, _)| h.to_string())
            .unwrap_or_default();
        Ok(ForwardTarget {
            addr,
            host,
            app,
            vhost,
            display: s.to_string(),
            stream: None,
        })
    }

    /// A destination a forward backend named, at an address looked up already.
    pub fn from_url(url: &RtmpUrl, addr: SocketAddr, display: &str) -> ForwardTarget {
        let host = if url.host.contains(':') {
            format!("[{}]", url.host)
        } else {
            url.host.clone()
        };
        ForwardTarget {
            addr: SocketAddr::new(addr.ip(), url.port),
            host,
            app: Some(url.app.clone()),
            vhost: query_get(&url.query, "vhost"),
            display: display.to_string(),
            stream: Some(url.stream_with_query()),
        }
    }

    /// The stream name to publish `source_stream` as at this destination.
    pub fn stream_name(&self, source_stream: &str) -> String {
        self.stream
            .clone()
            .unwrap_or_else(|| source_stream.to_string())
    }

    /// True when this destination is the server listening on `listen` itself.
    pub fn is_self(&self, listen: SocketAddr) -> bool {
        if self.addr.port() != listen.port() {
            return false;
        }
        let ip = self.addr.ip();
        ip == listen.ip() || (listen.ip().is_unspecified() && (ip.is_loopback() || is_local(ip)))
    }

    /// tcUrl and app to publish `app/stream` to this destination.
    pub fn tc_url(&self, source_app: &str) -> (String, String) {
        let app = self.app.clone().unwrap_or_else(|| source_app.to_string());
        let mut url = format!("rtmp://{}:{}/{app}", self.host, self.addr.port());
        if let Some(v) = &self.vhost {
            url.push_str("?vhost=");
            url.push_str(v);
        }
        (url, app)
    }
}

/// An address of one of this machine's interfaces (best effort: the unspecified address bound
/// by a UDP socket tells us the primary one).
fn is_local(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_keeps_app() {
        let t = ForwardTarget::parse("127.0.0.1:1936").unwrap();
        assert_eq!(t.addr.port(), 1936);
        assert_eq!(t.app, None);
        assert_eq!(t.tc_url("live").0, "rtmp://127.0.0.1:1936/live");
    }

    #[test]
    fn url_changes_app_and_vhost() {
        let t = ForwardTarget::parse("rtmp://127.0.0.1:1937/other?vhost=v.example").unwrap();
        assert_eq!(t.app.as_deref(), Some("other"));
        let (url, app) = t.tc_url("live");
        assert_eq!(app, "other");
        assert_eq!(url, "rtmp://127.0.0.1:1937/other?vhost=v.example");
    }

    #[test]
    fn a_backend_url_names_app_stream_and_vhost() {
        let u = RtmpUrl::parse("rtmp://127.0.0.1:1940/other/cam2?vhost=v.example&k=1").unwrap();
        let t = ForwardTarget::from_url(&u, "127.0.0.1:0".parse().unwrap(), "raw");
        assert_eq!(t.addr, "127.0.0.1:1940".parse().unwrap());
        assert_eq!(t.stream_name("cam"), "cam2?vhost=v.example&k=1");
        assert_eq!(
            t.tc_url("live"),
            (
                "rtmp://127.0.0.1:1940/other?vhost=v.example".into(),
                "other".into()
            )
        );
        let u = RtmpUrl::parse("rtmp://[::1]:1941/live/s").unwrap();
        let t = ForwardTarget::from_url(&u, "[::1]:0".parse().unwrap(), "raw");
        assert_eq!(t.tc_url("x").0, "rtmp://[::1]:1941/live");
        assert_eq!(
            ForwardTarget::parse("127.0.0.1:1")
                .unwrap()
                .stream_name("s"),
            "s"
        );
    }

    #[test]
    fn default_port_and_errors() {
        assert_eq!(ForwardTarget::parse("127.0.0.1").unwrap().addr.port(), 1935);
        assert!(ForwardTarget::parse("http://x/y").is_err());
        assert!(ForwardTarget::parse("nope:99999").is_err());
    }

    #[test]
    fn self_detection() {
        let listen: SocketAddr = "0.0.0.0:1935".parse().unwrap();
        assert!(ForwardTarget::parse("127.0.0.1:1935")
            .unwrap()
            .is_self(listen));
        assert!(!ForwardTarget::parse("127.0.0.1:1936")
            .unwrap()
            .is_self(listen));
        let listen: SocketAddr = "127.0.0.1:1935".parse().unwrap();
        assert!(ForwardTarget::parse("127.0.0.1:1935")
            .unwrap()
            .is_self(listen));
    }
}
