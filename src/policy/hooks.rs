//! HTTP callbacks in SRS's shape: POST a JSON body describing the event to each configured URL.
//! For on_connect, on_publish and on_play every URL must answer 200 with a body of `0` or
//! `{"code":0}` (an empty body also counts as yes); anything else, or no answer within the
//! timeout, refuses: the hooks fail closed. Calls run in the client's own task, so a slow hook
//! never holds up other connections on the shard.

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use serde_json::Value;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;
use thiserror::Error;

/// Most bytes of a hook's answer that are read.
const MAX_ANSWER: usize = 64 * 1024;

/// Why a hook call did not allow the client.
#[derive(Debug, Error)]
pub enum HookError {
    /// The URL is bad, or connecting, sending or reading failed.
    #[error("hook {url}: cannot connect: {cause}")]
    Connect {
        /// The hook URL.
        url: String,
        /// What went wrong.
        cause: String,
    },
    /// No complete answer within the timeout.
    #[error("hook {url}: no answer within {ms} ms")]
    Timeout {
        /// The hook URL.
        url: String,
        /// The timeout, in milliseconds.
        ms: u64,
    },
    /// The answer's HTTP status was not 200.
    #[error("hook {url}: answered HTTP {status}")]
    Status {
        /// The hook URL.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// Status 200, but the body was not `0`, `{"code":0}` or empty.
    #[error("hook {url}: refused (body `{body}`)")]
    Refused {
        /// The hook URL.
        url: String,
        /// The body's first 80 characters.
        body: String,
    },
    /// The answer was not an HTTP response.
    #[error("hook {url}: unreadable answer")]
    BadAnswer {
        /// The hook URL.
        url: String,
    },
}

/// A parsed `http://host[:port]/path` callback address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookUrl {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port; 80 when not given.
    pub port: u16,
    /// Request path; `/` when not given.
    pub path: String,
}

impl HookUrl {
    /// Parse an `http://host[:port][/path]` URL; other schemes are refused.
    pub fn parse(url: &str) -> Result<HookUrl, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("`{url}`: only http:// callbacks are supported"))?;
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (
                h.trim_matches(['[', ']']),
                p.parse::<u16>()
                    .map_err(|_| format!("`{url}`: bad port `{p}`"))?,
            ),
            _ => (hostport, 80),
        };
        if host.is_empty() {
            return Err(format!("`{url}`: no host"));
        }
        Ok(HookUrl {
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }

    fn addr(&self) -> Option<SocketAddr> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .ok()?
            .next()
    }
}

/// Does this answer say yes? 200 and a body of `0`, `{"code":0}` or nothing.
pub fn answer_allows(status: u16, body: &str) -> bool {
    if status != 200 {
        return false;
    }
    let b = body.trim();
    if b.is_empty() || b == "0" {
        return true;
    }
    serde_json::from_str::<Value>(b)
        .ok()
        .and_then(|v| v.get("code")?.as_i64())
        == Some(0)
}

/// POST `body` to `url`; Ok when the answer allows.
pub async fn call(url: &str, body: &Value, timeout: Duration) -> Result<(), HookError> {
    let u = HookUrl::parse(url).map_err(|cause| HookError::Connect {
        url: url.to_string(),
        cause,
    })?;
    let ms = timeout.as_millis() as u64;
    let timed_out = || HookError::Timeout {
        url: url.to_string(),
        ms,
    };
    let addr = u.addr().ok_or_else(|| HookError::Connect {
        url: url.to_string(),
        cause: format!("cannot resolve {}", u.host),
    })?;
    let fut = async {
        let mut s = TcpStream::connect_timeout(addr, timeout)
            .await
            .map_err(|e| HookError::Connect {
                url: url.to_string(),
                cause: e.to_string(),
            })?;
        let json = serde_json::to_vec(body).unwrap_or_default();
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nUser-Agent: shardcast/{}\r\n\r\n",
            u.path,
            u.host,
            u.port,
            json.len(),
            env!("CARGO_PKG_VERSION")
        );
        let mut req = head.into_bytes();
        req.extend_from_slice(&json);
        let io = |e: std::io::Error| HookError::Connect {
            url: url.to_string(),
            cause: e.to_string(),
        };
        s.write_all(&req).await.map_err(io)?;
        let mut answer = Vec::new();
        let mut buf = vec![0u8; 4096];
        loop {
            let n = s.read(&mut buf).await.map_err(io)?;
            if n == 0 || answer.len() > MAX_ANSWER {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            if let Some((status, body)) = parse_answer(&answer) {
                if body_complete(&answer, body) {
                    return check(url, status, body);
                }
            }
        }
        match parse_answer(&answer) {
            Some((status, body)) => check(url, status, body),
            None => Err(HookError::BadAnswer {
                url: url.to_string(),
            }),
        }
    };
    glommio::timer::timeout(timeout, async { Ok(fut.await) })
        .await
        .map_err(|_| timed_out())?
}

fn check(url: &str, status: u16, body: &str) -> Result<(), HookError> {
    if status != 200 {
        return Err(HookError::Status {
            url: url.to_string(),
            status,
        });
    }
    if answer_allows(status, body) {
        Ok(())
    } else {
        Err(HookError::Refused {
            url: url.to_string(),
            body: body.chars().take(80).collect(),
        })
    }
}

/// (status, body so far) once the head is complete.
fn parse_answer(buf: &[u8]) -> Option<(u16, &str)> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut headers);
    match r.parse(buf) {
        Ok(httparse::Status::Complete(n)) => {
            Some((r.code?, std::str::from_utf8(&buf[n..]).unwrap_or("")))
        }
        _ => None,
    }
}

/// With a Content-Length, is all of the body in? (Without one, read to the end.)
fn body_complete(buf: &[u8], body: &str) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut r = httparse::Response::new(&mut headers);
    if r.parse(buf).is_err() {
        return false;
    }
    r.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        })
        .is_some_and(|len| body.len() >= len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = HookUrl::parse("http://127.0.0.1:8085/api/v1/streams").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8085, "/api/v1/streams")
        );
        let u = HookUrl::parse("http://hooks.local").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/"));
        assert!(HookUrl::parse("https://x/").is_err());
        assert!(HookUrl::parse("http://x:99999/").is_err());
    }

    #[test]
    fn answers() {
        assert!(answer_allows(200, "0"));
        assert!(answer_allows(200, " {\"code\": 0} "));
        assert!(answer_allows(200, ""));
        assert!(!answer_allows(200, "{\"code\": 403}"));
        assert!(!answer_allows(200, "no"));
        assert!(!answer_allows(403, "0"));
        assert!(!answer_allows(500, ""));
    }

    #[test]
    fn answer_parsing() {
        let a = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n0";
        let (status, body) = parse_answer(a).unwrap();
        assert_eq!((status, body), (200, "0"));
        assert!(body_complete(a, body));
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\n").is_none());
    }
}
