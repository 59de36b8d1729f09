//! RTMP 302: an origin that does not have a stream sends the client to the one that does, and
//! an edge follows such redirects a bounded number of times.
//!
//! Wire facts (SRS `trunk/src/protocol/srs_protocol_rtmp_stack.cpp` `SrsRtmpServer::redirect`):
//! the server sends `onStatus` (transaction 0, null command object) on message stream 0 with
//! `{level: "error", code: "NetConnection.Connect.Rejected", description: "RTMP 302 Redirect",
//! ex: {code: 302, redirect: <tcUrl>, redirect2: <full rtmp URL>}}`, where `redirect` is
//! `redirect2` without its last path segment. It then waits up to 3 s for any call from the
//! client (Flash answers `Redirected`) before closing. SRS 4+ origins send it when a player's
//! `play` finds no stream and a coworker has it (`srs_app_rtmp_conn.cpp`), so it can arrive
//! after `connect` succeeded; the client side (`ClientError::Redirected`) accepts it there too.
//! SRS's edge (`srs_app_edge.cpp`) reads `ex.redirect2`, falling back to `ex.redirect`.

use super::url::{RtmpUrl, UrlError};
use crate::rtmp::amf0::Amf0Value;
use crate::rtmp::client::Redirect;
use crate::rtmp::message::{Command, MessageWriter};
use bytes::{Bytes, BytesMut};
use thiserror::Error;

/// `code` of the redirect status.
pub const CONNECT_REJECTED: &str = "NetConnection.Connect.Rejected";
/// `description` of the redirect status.
pub const REDIRECT_DESCRIPTION: &str = "RTMP 302 Redirect";

/// The redirect status command for `target`: `redirect` its tcUrl, `redirect2` the URL itself.
pub fn redirect_status(target: &RtmpUrl) -> Command {
    let ex = Amf0Value::object([
        ("code", Amf0Value::Number(302.0)),
        ("redirect", Amf0Value::string(target.tc_url())),
        ("redirect2", Amf0Value::string(target.to_string())),
    ]);
    Command {
        name: "onStatus".into(),
        transaction_id: 0.0,
        object: Amf0Value::Null,
        args: vec![Amf0Value::object([
            ("level", Amf0Value::string("error")),
            ("code", Amf0Value::string(CONNECT_REJECTED)),
            ("description", Amf0Value::string(REDIRECT_DESCRIPTION)),
            ("ex", ex),
        ])],
    }
}

/// The redirect status as chunked bytes on message stream 0 (as SRS sends it), ready to
/// append to the connection's output. `chunk_size`: the size the server currently sends with.
pub fn redirect_bytes(chunk_size: u32, target: &RtmpUrl) -> Bytes {
    let mut out = BytesMut::new();
    MessageWriter::new(chunk_size).command(&mut out, 0, &redirect_status(target));
    out.freeze()
}

/// Where a redirect chain went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RedirectError {
    /// More redirects than the follower allows.
    #[error("more than {max} redirects")]
    TooManyHops {
        /// The hop limit.
        max: usize,
    },
    /// A redirect back to a URL already visited.
    #[error("redirect loop: {url} seen twice")]
    Loop {
        /// The URL seen twice.
        url: String,
    },
    /// A redirect target that is not a usable RTMP URL.
    #[error("redirect to `{url}`: {source}")]
    BadUrl {
        /// The target as built from the redirect.
        url: String,
        /// Why it does not parse.
        source: UrlError,
    },
}

/// Follows a chain of redirects for one stream: at most `max_hops` of them, never to a URL
/// already visited (origins that disagree about who has a stream would bounce us forever).
#[derive(Debug, Clone)]
pub struct RedirectFollower {
    max_hops: usize,
    stream: String,
    /// Identities (host:port/app/stream) of the start URL and every hop taken.
    visited: Vec<String>,
}

impl RedirectFollower {
    /// Hops allowed by default: an origin cluster needs one; three leaves room for an edge
    /// tier in between.
    pub const DEFAULT_MAX_HOPS: usize = 3;

    /// Start at `start`, the URL first connected to.
    pub fn new(start: &RtmpUrl, max_hops: usize) -> RedirectFollower {
        RedirectFollower {
            max_hops,
            stream: start.stream_with_query(),
            visited: vec![start.identity()],
        }
    }

    /// Redirects followed so far.
    pub fn hops(&self) -> usize {
        self.visited.len() - 1
    }

    /// Take redirect `r`: the URL to connect to next, or why not to.
    pub fn follow(&mut self, r: &Redirect) -> Result<RtmpUrl, RedirectError> {
        let url = r.target(&self.stream);
        let next = RtmpUrl::parse(&url).map_err(|source| RedirectError::BadUrl {
            url: url.clone(),
            source,
        })?;
        let id = next.identity();
        if self.visited.contains(&id) {
            return Err(RedirectError::Loop { url });
        }
        if self.hops() >= self.max_hops {
            return Err(RedirectError::TooManyHops { max: self.max_hops });
        }
        self.visited.push(id);
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::amf0::DecodeLimits;
    use crate::rtmp::chunk::{ChunkDecoder, DecoderLimits};
    use crate::rtmp::client::{ClientConfig, ClientError, ClientRole, ClientSession};
    use crate::rtmp::handshake::HANDSHAKE_SIZE;
    use crate::rtmp::message::{self, Message};
    use crate::rtmp::session::{ServerSession, SessionConfig, SessionEvent};

    fn url(s: &str) -> RtmpUrl {
        RtmpUrl::parse(s).unwrap()
    }

    fn decode(bytes: &[u8]) -> Vec<Message> {
        let mut d = ChunkDecoder::new(DecoderLimits::default());
        d.push(bytes);
        let mut v = Vec::new();
        while let Some(m) = d.next_message().unwrap() {
            assert_eq!(m.stream_id, 0, "sent on message stream 0, as SRS does");
            v.push(message::decode(&m, &DecodeLimits::default()).unwrap());
        }
        v
    }

    #[test]
    fn status_has_srs_shape() {
        let b = redirect_bytes(128, &url("rtmp://10.0.0.2:19351/live/cam1?token=x"));
        let msgs = decode(&b);
        let [Message::Command(c)] = &msgs[..] else {
            panic!("{msgs:?}")
        };
        assert_eq!((c.name.as_str(), c.transaction_id), ("onStatus", 0.0));
        assert_eq!(c.object, Amf0Value::Null);
        let info = &c.args[0];
        let s = |v: &Amf0Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        assert_eq!(s(info, "level").as_deref(), Some("error"));
        assert_eq!(s(info, "code").as_deref(), Some(CONNECT_REJECTED));
        assert_eq!(s(info, "description").as_deref(), Some("RTMP 302 Redirect"));
        let ex = info.get("ex").unwrap();
        assert_eq!(ex.get("code").and_then(|v| v.as_f64()), Some(302.0));
        assert_eq!(
            s(ex, "redirect").as_deref(),
            Some("rtmp://10.0.0.2:19351/live")
        );
        assert_eq!(
            s(ex, "redirect2").as_deref(),
            Some("rtmp://10.0.0.2:19351/live/cam1?token=x")
        );
        // Long messages are chunked at the size given.
        let long = url(&format!("rtmp://h/live/{}", "s".repeat(300)));
        assert_eq!(decode(&redirect_bytes(128, &long)).len(), 1);
    }

    #[test]
    fn our_status_reads_back_as_a_redirect() {
        let cmd = redirect_status(&url("rtmp://h:1936/app/s"));
        let r = Redirect::from_info(&cmd.args[0]).unwrap();
        assert_eq!(r.tc_url, "rtmp://h:1936/app");
        assert_eq!(r.url.as_deref(), Some("rtmp://h:1936/app/s"));
        assert_eq!(r.target("ignored"), "rtmp://h:1936/app/s");
    }

    /// Client and server in memory: handshake, connect, then the server redirects instead of
    /// accepting (connect time), or accepts and redirects the play (SRS 4+ origin clusters).
    /// Returns the client's error and the commands it sent after the redirect (a mirror
    /// decoder follows everything the client sends, since its writer compresses headers).
    fn client_meets_redirect(at_play: bool) -> (ClientError, Vec<String>) {
        let cfg =
            ClientConfig::from_url("rtmp://127.0.0.1:1935/live/cam1", ClientRole::Play).unwrap();
        let mut c = ClientSession::new(cfg, 7, 0);
        let mut s = ServerSession::new(SessionConfig::default(), 11, 0);
        let mut mirror = Mirror {
            decoder: ChunkDecoder::new(DecoderLimits::default()),
            skip: 1 + 2 * HANDSHAKE_SIZE,
        };
        let target = url("rtmp://10.0.0.2:19351/live/cam1");
        for _ in 0..20 {
            while let Some(b) = c.poll_transmit() {
                s.handle_input(&b).unwrap();
                mirror.push(&b);
            }
            while let Some(e) = s.poll_event() {
                match e {
                    SessionEvent::ConnectRequested { .. } if at_play => s.accept_connect(),
                    SessionEvent::ConnectRequested { .. } | SessionEvent::PlayRequested { .. } => {
                        // Raw bytes behind whatever the session queued, at the size the server
                        // sends with (RTMP's 128 until it accepted connect and announced its own).
                        let size = if at_play { s.out_chunk_size() } else { 128 };
                        let mut out = BytesMut::new();
                        while let Some(b) = s.poll_transmit() {
                            out.extend_from_slice(&b);
                        }
                        out.extend_from_slice(&redirect_bytes(size, &target));
                        mirror.commands();
                        let err = c.handle_input(&out).unwrap_err();
                        while let Some(b) = c.poll_transmit() {
                            mirror.push(&b);
                        }
                        return (err, mirror.commands());
                    }
                    _ => {}
                }
            }
            while let Some(b) = s.poll_transmit() {
                c.handle_input(&b).unwrap();
            }
        }
        panic!("no connect or play request seen")
    }

    /// Reads what the client sends, past the handshake (C0, C1, C2).
    struct Mirror {
        decoder: ChunkDecoder,
        skip: usize,
    }

    impl Mirror {
        fn push(&mut self, b: &[u8]) {
            let n = self.skip.min(b.len());
            self.skip -= n;
            self.decoder.push(&b[n..]);
        }

        /// Names of the commands decoded since the last call.
        fn commands(&mut self) -> Vec<String> {
            std::iter::from_fn(|| self.decoder.next_message().unwrap())
                .filter_map(|m| match message::decode(&m, &DecodeLimits::default()) {
                    Ok(Message::Command(c)) => Some(c.name),
                    _ => None,
                })
                .collect()
        }
    }

    #[test]
    fn client_reports_redirect_at_connect_and_at_play() {
        for at_play in [false, true] {
            let (err, acks) = client_meets_redirect(at_play);
            let ClientError::Redirected(r) = err else {
                panic!("{err}")
            };
            assert_eq!(r.tc_url, "rtmp://10.0.0.2:19351/live");
            assert_eq!(r.url.as_deref(), Some("rtmp://10.0.0.2:19351/live/cam1"));
            assert_eq!(acks, vec!["Redirected"], "at_play={at_play}");
        }
    }

    #[test]
    fn follower_counts_hops_and_detects_loops() {
        let start = url("rtmp://edge:1935/live/s?t=1");
        let mut f = RedirectFollower::new(&start, RedirectFollower::DEFAULT_MAX_HOPS);
        let hop = |tc: &str, full: Option<&str>| Redirect {
            tc_url: tc.into(),
            url: full.map(str::to_string),
        };
        // redirect only (old SRS): the stream, query included, goes behind the tcUrl.
        let next = f.follow(&hop("rtmp://o1:1935/live", None)).unwrap();
        assert_eq!(next.to_string(), "rtmp://o1:1935/live/s?t=1");
        f.follow(&hop("", Some("rtmp://o2/live/s"))).unwrap();
        assert_eq!(f.hops(), 2);
        // Back to o1 (default port written out or not, query different): a loop.
        assert_eq!(
            f.follow(&hop("", Some("rtmp://O1/live/s?t=9"))),
            Err(RedirectError::Loop {
                url: "rtmp://O1/live/s?t=9".into()
            })
        );
        // And to where we started.
        assert!(matches!(
            f.follow(&hop("", Some("rtmp://edge/live/s"))),
            Err(RedirectError::Loop { .. })
        ));
        f.follow(&hop("", Some("rtmp://o3/live/s"))).unwrap();
        assert_eq!(
            f.follow(&hop("", Some("rtmp://o4/live/s"))),
            Err(RedirectError::TooManyHops { max: 3 })
        );
        assert!(matches!(
            RedirectFollower::new(&start, 3).follow(&hop("", Some("http://x/y/z"))),
            Err(RedirectError::BadUrl {
                source: UrlError::NotRtmp,
                ..
            })
        ));
    }

    #[test]
    fn other_error_statuses_are_not_redirects() {
        let info = |level: &str, ex: Option<Amf0Value>| {
            let mut pairs = vec![
                ("level", Amf0Value::string(level)),
                ("code", Amf0Value::string(CONNECT_REJECTED)),
            ];
            if let Some(ex) = ex {
                pairs.push(("ex", ex));
            }
            Amf0Value::object(pairs)
        };
        let ex = |code: Amf0Value, key: &str| {
            Amf0Value::object([("code", code), (key, Amf0Value::string("rtmp://h/a/s"))])
        };
        assert!(Redirect::from_info(&info("error", None)).is_none());
        assert!(Redirect::from_info(&info(
            "status",
            Some(ex(Amf0Value::Number(302.0), "redirect"))
        ))
        .is_none());
        assert!(Redirect::from_info(&info(
            "error",
            Some(ex(Amf0Value::Number(301.0), "redirect"))
        ))
        .is_none());
        assert!(
            Redirect::from_info(&info("error", Some(ex(Amf0Value::Number(302.0), "other"))))
                .is_none()
        );
        assert!(Redirect::from_info(&info("error", Some(Amf0Value::string("x")))).is_none());
        // redirect2 alone: the tcUrl is derived from it.
        let r = Redirect::from_info(&info(
            "error",
            Some(ex(Amf0Value::Number(302.0), "redirect2")),
        ))
        .unwrap();
        assert_eq!(r.tc_url, "rtmp://h/a");
        // No code at all still counts (SRS's edge does not read it).
        let no_code = Amf0Value::object([("redirect", Amf0Value::string("rtmp://h/a"))]);
        assert!(Redirect::from_info(&info("error", Some(no_code))).is_some());
    }
}
