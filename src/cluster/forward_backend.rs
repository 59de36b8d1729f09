//! Dynamic forward destinations, SRS `forward.backend` compatible: when a stream is published,
//! an HTTP backend is asked where to forward it, and answers with a list of RTMP URLs.
//!
//! Wire facts (SRS `trunk/src/app/srs_app_http_hooks.cpp` `on_forward_backend` and `do_post`):
//! the request is a POST with `{"action":"on_forward","server_id","client_id","ip","vhost",
//! "app","tcUrl","stream","param"}` (all strings); the answer must be HTTP 200/201 with
//! `{"code":0,"data":{"urls":[...]}}`, `code` an integer. Empty URL strings are skipped; an
//! empty list means "forward nowhere". SRS fails the publish when the answer is unusable; the
//! caller decides that, with a typed error to log.

use super::url::{RtmpUrl, UrlError};
use serde_json::{json, Value};
use thiserror::Error;

/// `action` of the request.
pub const ACTION: &str = "on_forward";

/// Largest answer read (a list of URLs; anything bigger is not an answer).
pub const MAX_ANSWER: usize = 64 * 1024;

/// The publish being asked about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardRequest {
    /// This server's stable id.
    pub server_id: String,
    /// The publishing connection's id.
    pub client_id: String,
    /// The publisher's address.
    pub ip: String,
    /// Vhost of the publish.
    pub vhost: String,
    /// App of the publish.
    pub app: String,
    /// `tcUrl` of the publisher's `connect`.
    pub tc_url: String,
    /// Stream name, without the query.
    pub stream: String,
    /// The publish query, with its leading '?' as SRS keeps it (`?token=x`), or empty.
    pub param: String,
}

impl ForwardRequest {
    /// The request body.
    pub fn to_json(&self) -> Value {
        json!({
            "action": ACTION,
            "server_id": self.server_id,
            "client_id": self.client_id,
            "ip": self.ip,
            "vhost": self.vhost,
            "app": self.app,
            "tcUrl": self.tc_url,
            "stream": self.stream,
            "param": self.param,
        })
    }
}

/// One destination the backend chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardUrl {
    /// As the backend wrote it (for logs).
    pub raw: String,
    /// Where to publish.
    pub target: RtmpUrl,
}

/// Why a backend's answer is unusable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BackendError {
    /// The answer is over [`MAX_ANSWER`].
    #[error("answer of {len} bytes is over the {max}-byte limit")]
    TooLarge {
        /// Answer length, in bytes.
        len: usize,
        /// The limit, in bytes.
        max: usize,
    },
    /// The answer does not parse as JSON.
    #[error("answer is not JSON: {0}")]
    NotJson(String),
    /// The JSON is not an object.
    #[error("answer is not a JSON object")]
    NotObject,
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
    /// `code` is not 0.
    #[error("answer has code {0}")]
    Code(i64),
    /// A URL in `data.urls` does not parse.
    #[error("url {index} `{url}`: {source}")]
    BadUrl {
        /// Its position in the list.
        index: usize,
        /// The URL as sent.
        url: String,
        /// Why it does not parse.
        source: UrlError,
    },
}

impl From<super::srs_json::EnvelopeError> for BackendError {
    fn from(e: super::srs_json::EnvelopeError) -> Self {
        use super::srs_json::EnvelopeError as E;
        match e {
            E::NotJson(m) => BackendError::NotJson(m),
            E::NotObject => BackendError::NotObject,
            E::Missing(f) => BackendError::Missing(f),
            E::WrongType(field, expected) => BackendError::WrongType { field, expected },
            E::Code(c) => BackendError::Code(c),
        }
    }
}

/// Read the backend's answer into the destinations to forward to (possibly none).
pub fn parse_answer(body: &[u8]) -> Result<Vec<ForwardUrl>, BackendError> {
    if body.len() > MAX_ANSWER {
        return Err(BackendError::TooLarge {
            len: body.len(),
            max: MAX_ANSWER,
        });
    }
    let data = super::srs_json::data_object(body)?;
    let urls = data.get("urls").ok_or(BackendError::Missing("urls"))?;
    let urls = urls.as_array().ok_or(BackendError::WrongType {
        field: "urls",
        expected: "an array",
    })?;
    let mut out = Vec::with_capacity(urls.len());
    for (index, u) in urls.iter().enumerate() {
        let s = u.as_str().ok_or(BackendError::WrongType {
            field: "urls",
            expected: "an array of strings",
        })?;
        if s.is_empty() {
            continue;
        }
        let target = RtmpUrl::parse(s).map_err(|source| BackendError::BadUrl {
            index,
            url: s.to_string(),
            source,
        })?;
        out.push(ForwardUrl {
            raw: s.to_string(),
            target,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_has_srs_fields() {
        let r = ForwardRequest {
            server_id: "vid-1".into(),
            client_id: "c7".into(),
            ip: "192.168.1.9".into(),
            vhost: "__defaultVhost__".into(),
            app: "live".into(),
            tc_url: "rtmp://127.0.0.1:1935/live".into(),
            stream: "cam".into(),
            param: "?token=x".into(),
        };
        let v = r.to_json();
        assert_eq!(
            v,
            json!({"action":"on_forward","server_id":"vid-1","client_id":"c7",
                   "ip":"192.168.1.9","vhost":"__defaultVhost__","app":"live",
                   "tcUrl":"rtmp://127.0.0.1:1935/live","stream":"cam","param":"?token=x"})
        );
        assert_eq!(v.as_object().unwrap().len(), 9);
    }

    #[test]
    fn answer_with_urls() {
        let body = br#"{"code":0,"data":{"urls":[
            "rtmp://127.0.0.1:19350/test/teststream?auth_token=123",
            "",
            "rtmp://backup.example/live/cam"]}}"#;
        let urls = parse_answer(body).unwrap();
        assert_eq!(urls.len(), 2, "empty strings are skipped");
        assert_eq!(urls[0].target.host_port(), "127.0.0.1:19350");
        assert_eq!(urls[0].target.app, "test");
        assert_eq!(
            urls[0].target.stream_with_query(),
            "teststream?auth_token=123"
        );
        assert_eq!(urls[1].target.port, 1935);
        assert_eq!(urls[1].raw, "rtmp://backup.example/live/cam");
        assert_eq!(
            parse_answer(br#"{"code":0,"data":{"urls":[]}}"#),
            Ok(vec![])
        );
    }

    #[test]
    fn garbage_is_typed() {
        let p = |s: &str| parse_answer(s.as_bytes());
        assert!(matches!(p("0"), Err(BackendError::NotObject)));
        assert!(matches!(p("nope"), Err(BackendError::NotJson(_))));
        assert_eq!(p(r#"{"data":{}}"#), Err(BackendError::Missing("code")));
        assert!(matches!(
            p(r#"{"code":"0"}"#),
            Err(BackendError::WrongType { field: "code", .. })
        ));
        assert_eq!(
            p(r#"{"code":403,"data":{"urls":[]}}"#),
            Err(BackendError::Code(403))
        );
        assert_eq!(p(r#"{"code":0}"#), Err(BackendError::Missing("data")));
        assert!(matches!(
            p(r#"{"code":0,"data":[]}"#),
            Err(BackendError::WrongType { field: "data", .. })
        ));
        assert_eq!(
            p(r#"{"code":0,"data":{}}"#),
            Err(BackendError::Missing("urls"))
        );
        assert!(matches!(
            p(r#"{"code":0,"data":{"urls":"rtmp://h/a/s"}}"#),
            Err(BackendError::WrongType { field: "urls", .. })
        ));
        assert!(matches!(
            p(r#"{"code":0,"data":{"urls":[1]}}"#),
            Err(BackendError::WrongType { field: "urls", .. })
        ));
        assert_eq!(
            p(r#"{"code":0,"data":{"urls":["rtmp://h/a/s","http://h/a/s"]}}"#),
            Err(BackendError::BadUrl {
                index: 1,
                url: "http://h/a/s".into(),
                source: UrlError::NotRtmp
            })
        );
        assert!(matches!(
            p(r#"{"code":0,"data":{"urls":["rtmp://h:99999/a/s"]}}"#),
            Err(BackendError::BadUrl {
                source: UrlError::BadPort(_),
                ..
            })
        ));
        assert!(matches!(
            p(r#"{"code":0,"data":{"urls":["rtmp://h/onlyapp"]}}"#),
            Err(BackendError::BadUrl {
                source: UrlError::NoStream,
                ..
            })
        ));
        let big = vec![b' '; MAX_ANSWER + 1];
        assert!(matches!(
            parse_answer(&big),
            Err(BackendError::TooLarge { .. })
        ));
    }
}
