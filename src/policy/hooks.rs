//! HTTP callbacks in SRS's shape: POST a JSON body describing the event to each configured URL.
//! For on_connect, on_publish and on_play every URL must answer 200 with a body of `0` or
//! `{"code":0}` (an empty body also counts as yes); anything else, or no answer within the
//! timeout, refuses: the hooks fail closed. Calls go out on the control plane (its own thread:
//! name lookups and slow hooks never block a shard) and are awaited by the client's own task,
//! so a slow hook never holds up other connections.

use crate::control_plane::{CallError, Calls, HttpCall};
use serde_json::Value;
use std::time::Duration;
use thiserror::Error;

/// Why a hook call did not allow the client.
#[derive(Debug, Error)]
pub enum HookError {
    /// The URL is bad, or the call failed (lookup, connect, timeout, answer too large).
    #[error("hook {url}: {cause}")]
    Call {
        /// The hook URL.
        url: String,
        /// What went wrong.
        cause: CallError,
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

/// POST `body` to `url` through the control plane; Ok when the answer allows.
pub async fn call(
    calls: &Calls,
    url: &str,
    body: &Value,
    timeout: Duration,
) -> Result<(), HookError> {
    let answer = calls
        .http(HttpCall::post_json(url, body, timeout))
        .await
        .map_err(|cause| HookError::Call {
            url: url.to_string(),
            cause,
        })?;
    let text = String::from_utf8_lossy(&answer.body);
    check(url, answer.status, &text)
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
}
