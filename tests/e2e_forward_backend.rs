//! Dynamic forward destinations (SRS `forward.backend`) with real processes: a backend's URLs
//! make the stream reach another server under the URL's name; a backend that is down, slow,
//! or answers garbage or a refusal leaves the publish untouched and says why in the log.

mod common;

use common::*;
use std::time::{Duration, Instant};

const LIFE: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(15);
/// The backend timeout the servers here use.
const BACKEND_MS: u64 = 800;

/// An origin that asks `backend` on each publish.
fn origin_with_backend(backend: &str) -> Server {
    Server::start_with(ServerOpts {
        extra: format!(
            "[forward]\nbackend = \"{backend}\"\nbackend_timeout_ms = {BACKEND_MS}\nbackoff_initial_ms = 200\nbackoff_max_ms = 1000\n"
        ),
        ..ServerOpts::default()
    })
}

fn synth(server: &Server, name: &str) -> SynthPublisher {
    let p = SynthPublisher::start(server.port, name, 1500, 25, 25, LIFE);
    assert!(wait_until(WAIT, || p.sent() > 3), "publisher runs");
    p
}

#[test]
fn a_backend_answer_forwards_the_stream_under_the_urls_name_until_unpublish() {
    let _g = serial();
    let dest = Server::start();
    let url = format!("rtmp://127.0.0.1:{}/live/renamed?k=v", dest.port);
    let answer = format!(r#"{{"code":0,"data":{{"urls":["{url}",""]}}}}"#);
    let backend = HookServer::start(move |_, _| HookReply::Ok(answer.clone()));
    let o = origin_with_backend(&backend.url("forward"));
    let mut publisher = synth(&o, "dyn");
    let req = backend
        .wait_for(WAIT, |r| r.field("action") == "on_forward")
        .expect("the backend was asked");
    assert_eq!(req.path, "forward");
    assert_eq!(req.field("stream"), "dyn");
    assert_eq!(req.field("app"), "live");
    assert_eq!(req.field("vhost"), VHOST);
    assert_eq!(req.field("ip"), "127.0.0.1");
    assert_eq!(req.field("param"), "");
    assert!(req.field("server_id").starts_with("shardcast-"), "{req:?}");
    assert!(!req.field("client_id").is_empty(), "{req:?}");
    assert!(req.field("tcUrl").ends_with("/live"), "{req:?}");

    let at_dest = LibPlayer::start(dest.port, "renamed", LIFE);
    assert!(
        at_dest.wait_video_above(10, WAIT),
        "the destination got the stream ({} frames)",
        at_dest.video_frames()
    );
    o.expect_log(&["forward backend stream=", "forwarding to", &url], WAIT);
    // The publish ends: the dynamic peer stops with it.
    publisher.stop();
    o.expect_log(&["forward stream=", &format!("dest={url} stopped")], WAIT);
}

/// What a broken backend does, and a piece of the log line that must say so.
struct Broken {
    name: &'static str,
    reply: Option<HookReply>,
    says: &'static str,
}

#[test]
fn a_broken_backend_leaves_the_publish_untouched_and_says_why() {
    let _g = serial();
    let cases = [
        Broken {
            name: "down",
            reply: None,
            says: "error sending request",
        },
        Broken {
            name: "slow",
            reply: Some(HookReply::Delay(
                Duration::from_millis(BACKEND_MS * 3),
                r#"{"code":0,"data":{"urls":[]}}"#.into(),
            )),
            says: "no answer within 800 ms",
        },
        Broken {
            name: "silent",
            reply: Some(HookReply::Hold),
            says: "no answer within 800 ms",
        },
        Broken {
            name: "garbage",
            reply: Some(HookReply::Ok("<html>nope".into())),
            says: "answer is not JSON",
        },
        Broken {
            name: "refusing",
            reply: Some(HookReply::Ok(r#"{"code":403,"data":{"urls":[]}}"#.into())),
            says: "answer has code 403",
        },
        Broken {
            name: "failing",
            reply: Some(HookReply::Status(500)),
            says: "answered HTTP 500",
        },
        Broken {
            name: "badurl",
            reply: Some(HookReply::Ok(
                r#"{"code":0,"data":{"urls":["http://x/live/s"]}}"#.into(),
            )),
            says: "not an rtmp:// URL",
        },
    ];
    for case in cases {
        let (backend, url) = match case.reply.clone() {
            Some(r) => {
                let b = HookServer::start(move |_, _| r.clone());
                let url = b.url("forward");
                (Some(b), url)
            }
            // Nothing listens there: the connect is refused.
            None => (None, format!("http://127.0.0.1:{}/forward", free_port())),
        };
        let o = origin_with_backend(&url);
        let t0 = Instant::now();
        let publisher = synth(&o, case.name);
        let player = LibPlayer::start(o.port, case.name, LIFE);
        assert!(
            player.wait_video_above(10, WAIT),
            "{}: a player on the origin plays ({} frames)",
            case.name,
            player.video_frames()
        );
        let line = o.expect_log(&["forward backend", "no dynamic destinations"], WAIT);
        let took = t0.elapsed();
        assert!(
            line.to_lowercase().contains(&case.says.to_lowercase()),
            "{}: the log says why: {line}",
            case.name
        );
        assert!(
            took < Duration::from_millis(BACKEND_MS) + Duration::from_secs(4),
            "{}: gave up after {took:?}",
            case.name
        );
        // The publish goes on as if no backend were set.
        let (sent, seen) = (publisher.sent(), player.video_frames());
        assert!(
            wait_until(WAIT, || publisher.sent() > sent + 25
                && player.video_frames() > seen + 25),
            "{}: the publisher keeps sending and the player keeps playing",
            case.name
        );
        assert!(
            publisher.ended().is_none(),
            "{}: {:?}",
            case.name,
            publisher.ended()
        );
        assert_eq!(
            o.count_lines(|l| l.contains(" dest=")),
            0,
            "{}: no forward peer",
            case.name
        );
        if let Some(b) = &backend {
            assert!(b
                .wait_for(WAIT, |r| r.field("action") == "on_forward")
                .is_some());
        }
        eprintln!("{}: publish untouched; {line}", case.name);
    }
}
