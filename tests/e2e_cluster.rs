//! Edges and origin clusters with real shardcast processes on loopback: an edge pulls a stream
//! once for all its players and lingers, fails over between origins, pushes publishes to an
//! origin; origins find each other's streams (relay, RTMP 302) through SRS's clusters API.

mod common;

use common::*;
use shardcast::rtmp::client::{ClientError, ClientEvent, ClientRole, ClientSession};
use std::time::{Duration, Instant};

const LIFE: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(15);

/// An origin with HTTP (its API tells who plays from it).
fn origin(extra: &str) -> Server {
    Server::start_with(ServerOpts {
        http: true,
        extra: extra.into(),
        ..ServerOpts::default()
    })
}

/// An edge of `origins` (RTMP ports), with `cluster` lines added to its `[cluster]`.
fn edge(origins: &[u16], cluster: &str) -> Server {
    let list: Vec<String> = origins
        .iter()
        .map(|p| format!("\"127.0.0.1:{p}\""))
        .collect();
    Server::start_with(ServerOpts {
        http: true,
        extra: format!(
            "[cluster]\nmode = \"edge\"\norigins = [{}]\nbackoff_initial_ms = 200\nbackoff_max_ms = 1000\n{cluster}\n",
            list.join(", ")
        ),
        ..ServerOpts::default()
    })
}

/// Clients of `server` of API type `kind` (e.g. "rtmp-play").
fn clients_of(server: &Server, kind: &str) -> Vec<serde_json::Value> {
    clients_of_type(server.http_port.unwrap(), kind)
}

/// The `source` object `/api/v1/streams` gives for `live/NAME` (null when not listed).
fn stream_source(server: &Server, name: &str) -> serde_json::Value {
    let (status, v) = api_call(server.http_port.unwrap(), "GET", "/api/v1/streams");
    assert_eq!(status, 200, "{v}");
    v["streams"]
        .as_array()
        .and_then(|l| l.iter().find(|s| s["name"] == name && s["app"] == "live"))
        .map(|s| s["source"].clone())
        .unwrap_or(serde_json::Value::Null)
}

fn synth(server: &Server, name: &str) -> SynthPublisher {
    let p = SynthPublisher::start(server.port, name, 1500, 25, 25, LIFE);
    assert!(
        wait_until(WAIT, || p.sent() > 3),
        "publisher on {} runs",
        server.port
    );
    p
}

#[test]
fn an_edge_pulls_once_for_all_its_players_and_lingers() {
    let _g = serial();
    let a = origin("");
    let _enc = publish(&a, "e1");
    let e = edge(&[a.port], "idle_linger_ms = 3000\n");
    // Real clients on the edge see the origin's codecs.
    let streams = ffprobe_streams(&e.url("e1"), Duration::from_secs(20))
        .unwrap_or_else(|err| panic!("ffprobe on the edge: {err}"));
    assert_test_streams(&streams, "ffprobe on the edge");
    let mut players: Vec<LibPlayer> = (0..20)
        .map(|_| LibPlayer::start(e.port, "e1", LIFE))
        .collect();
    for p in &players {
        assert!(
            p.wait_video_above(10, WAIT),
            "edge player got {} frames",
            p.video_frames()
        );
    }
    // Players on both of the edge's shards...
    let shards: std::collections::BTreeSet<usize> = players
        .iter()
        .filter_map(|p| shard_of_peer(&e, p.local_port(), Duration::from_secs(5)))
        .collect();
    assert_eq!(shards.len(), 2, "edge players on both shards");
    // ...and exactly one upstream player at the origin.
    let ups = clients_of(&a, "rtmp-play");
    assert_eq!(ups.len(), 1, "one upstream at the origin: {ups:#?}");
    let upstream_id = ups[0]["id"].clone();

    // The last player leaves; one comes back within the linger: the same upstream serves it.
    for p in &mut players {
        p.stop();
    }
    let back = LibPlayer::start(e.port, "e1", LIFE);
    assert!(
        back.wait_video_above(5, WAIT),
        "a player within the linger plays"
    );
    let ups = clients_of(&a, "rtmp-play");
    assert_eq!(ups.len(), 1, "{ups:#?}");
    assert_eq!(
        ups[0]["id"], upstream_id,
        "no new upstream within the linger"
    );
    drop(back);
    // After the linger the upstream is gone.
    let gone = wait_until(WAIT, || clients_of(&a, "rtmp-play").is_empty());
    assert!(gone, "the upstream closed after the linger");
    e.expect_log(&["upstream stream=", "stopped"], WAIT);
}

#[test]
fn edge_players_survive_an_origin_dying_while_the_encoder_moves_on() {
    let _g = serial();
    let mut a = origin("");
    let b = origin("");
    let e = edge(&[a.port, b.port], "");
    let mut pub_a = synth(&a, "fo");
    let players: Vec<LibPlayer> = (0..4)
        .map(|_| LibPlayer::start(e.port, "fo", LIFE))
        .collect();
    for p in &players {
        assert!(p.wait_video_above(10, WAIT));
    }
    // The edge's API names where the stream comes from; origin A's names its publisher.
    let from_a = format!("127.0.0.1:{}", a.port);
    assert!(
        wait_until(WAIT, || stream_source(&e, "fo")
            == serde_json::json!({"type": "edge", "from": from_a})),
        "edge source: {}",
        stream_source(&e, "fo")
    );
    let at_a = stream_source(&a, "fo");
    assert_eq!(at_a["type"], "publisher", "{at_a}");
    assert!(at_a["client"].is_string(), "{at_a}");
    // Origin A dies; the encoder re-publishes to origin B.
    pub_a.stop();
    a.crash();
    let _pub_b = synth(&b, "fo");
    let before: Vec<u64> = players.iter().map(|p| p.video_frames()).collect();
    let t0 = Instant::now();
    for (p, n) in players.iter().zip(&before) {
        assert!(
            p.wait_video_above(n + 25, WAIT),
            "an edge player kept playing after the failover ({} frames)",
            p.video_frames()
        );
        assert!(p.ended().is_none(), "no disconnect: {:?}", p.ended());
    }
    eprintln!(
        "edge players resumed {:?} after the origin died",
        t0.elapsed()
    );
    e.expect_log(
        &["upstream stream=", "playing from", &format!(":{}", b.port)],
        WAIT,
    );
    let from_b = format!("127.0.0.1:{}", b.port);
    e.expect_log(
        &[
            "upstream stream=",
            &format!("failover from {from_a} to {from_b}"),
        ],
        WAIT,
    );
    assert_eq!(
        stream_source(&e, "fo"),
        serde_json::json!({"type": "edge", "from": from_b})
    );
    // /metrics (parsed strictly) counts the failover and the two connects.
    let m = get_metrics(e.http_port.unwrap());
    let stream = Server::key("fo");
    let of = |name: &str| -> f64 {
        m.iter()
            .filter(|s| s.name == name && s.labels.get("stream") == Some(&stream))
            .map(|s| s.value)
            .sum()
    };
    assert!(of("shardcast_upstream_failovers_total") >= 1.0, "{m:#?}");
    assert!(of("shardcast_upstream_connects_total") >= 2.0, "{m:#?}");
    assert!(of("shardcast_upstream_bytes_in_total") > 0.0, "{m:#?}");
    let playing = m.iter().find(|s| {
        s.name == "shardcast_upstream_state"
            && s.labels.get("stream") == Some(&stream)
            && s.labels.get("state").map(String::as_str) == Some("playing")
    });
    assert_eq!(playing.map(|s| s.value), Some(1.0), "{m:#?}");
    assert_eq!(
        m.iter()
            .find(|s| s.name == "shardcast_upstream_failovers_total")
            .and_then(|s| s.labels.get("kind"))
            .map(String::as_str),
        Some("edge")
    );
    // Timestamps stayed monotonic for each player.
    for p in &players {
        let mut last = 0u32;
        for s in p.seen() {
            if let Seen::Media {
                kind: shardcast::media::FrameKind::Video,
                ts,
                sequence_header: false,
                ..
            } = s
            {
                assert!(ts >= last, "video timestamps went back: {last} -> {ts}");
                last = ts;
            }
        }
    }
}

#[test]
fn a_publish_on_an_edge_reaches_an_origin_and_fails_over_without_dropping_the_encoder() {
    let _g = serial();
    let mut a = origin("");
    let b = origin("");
    let e = edge(&[a.port, b.port], "");
    let publisher = synth(&e, "push");
    let at_a = LibPlayer::start(a.port, "push", LIFE);
    assert!(
        at_a.wait_video_above(10, WAIT),
        "origin A got the edge's publish"
    );
    a.crash();
    let at_b = LibPlayer::start(b.port, "push", LIFE);
    assert!(
        at_b.wait_video_above(10, WAIT),
        "origin B got the stream after A died ({} frames)",
        at_b.video_frames()
    );
    let sent = publisher.sent();
    assert!(
        wait_until(WAIT, || publisher.sent() > sent + 25),
        "the encoder keeps sending"
    );
    assert!(publisher.ended().is_none(), "the encoder stayed connected");
}

/// Two origins that know each other (fixed ports, so each can name the other's API).
fn coworkers(b_extra: &str) -> (Server, Server) {
    let [pa, ha, pb, hb] = free_ports();
    let a = Server::start_with(ServerOpts {
        http: true,
        ports: Some((pa, ha)),
        extra: format!("[cluster]\ncoworkers = [\"127.0.0.1:{hb}\"]\nstart_timeout_ms = 4000\n"),
        ..ServerOpts::default()
    });
    let b = Server::start_with(ServerOpts {
        http: true,
        ports: Some((pb, hb)),
        extra: format!(
            "[cluster]\ncoworkers = [\"127.0.0.1:{ha}\"]\nstart_timeout_ms = 4000\n{b_extra}"
        ),
        ..ServerOpts::default()
    });
    (a, b)
}

#[test]
fn the_clusters_api_answers_in_srs_shape() {
    let _g = serial();
    let (a, _b) = coworkers("");
    let _p = synth(&a, "here");
    let ha = a.http_port.unwrap();
    let q = |stream: &str| {
        format!(
            "/api/v1/clusters?vhost=__defaultVhost__&ip=127.0.0.1&app=live&stream={stream}&coworker=127.0.0.1:{ha}"
        )
    };
    let (status, v) = api_call(ha, "GET", &q("here"));
    assert_eq!(status, 200);
    assert_eq!(v["code"], 0, "{v}");
    assert_eq!(v["data"]["query"]["stream"], "here", "{v}");
    assert_eq!(v["data"]["query"]["app"], "live", "{v}");
    let o = &v["data"]["origin"];
    assert_eq!(o["ip"], "127.0.0.1", "{v}");
    assert_eq!(o["port"], a.port, "{v}");
    assert_eq!(o["vhost"], "__defaultVhost__", "{v}");
    assert!(
        o["api"]
            .as_str()
            .is_some_and(|s| s.ends_with(&format!(":{ha}"))),
        "{v}"
    );
    assert!(o["routers"].is_array(), "{v}");
    let (status, v) = api_call(ha, "POST", &q("absent"));
    assert_eq!(status, 200);
    assert_eq!(v["code"], 0, "{v}");
    assert!(v["data"]["origin"].is_null(), "{v}");
}

#[test]
fn an_origin_relays_a_stream_its_coworker_has_and_refuses_a_second_source() {
    let _g = serial();
    let (a, b) = coworkers("");
    let _p = synth(&a, "rel");
    let on_b = LibPlayer::start(b.port, "rel", LIFE);
    assert!(
        on_b.wait_video_above(10, WAIT),
        "a player on B got A's stream ({} frames)",
        on_b.video_frames()
    );
    assert!(
        wait_until(WAIT, || clients_of(&a, "rtmp-play").len() == 1),
        "B pulls once from A: {:#?}",
        clients_of(&a, "rtmp-play")
    );
    let from_a = format!("127.0.0.1:{}", a.port);
    assert_eq!(
        stream_source(&b, "rel"),
        serde_json::json!({"type": "relay", "from": from_a})
    );
    // A second publisher of the same stream at B is refused: the cluster keeps one source.
    let mut c = LibClient::connect(b.port, "rel", ClientRole::Publish).unwrap();
    let r = c.pump_until(WAIT, |e| matches!(e, ClientEvent::PublishStarted));
    let err = r.expect_err("publish refused");
    assert!(err.contains("NetStream.Publish.BadName"), "{err}");
}

/// Connect and play `name` at `port` with the library client; the error it ends with.
fn play_error(port: u16, name: &str) -> ClientError {
    use std::io::{Read, Write};
    let url = format!("rtmp://127.0.0.1:{port}/live/{name}");
    let cfg = shardcast::rtmp::client::ClientConfig::from_url(&url, ClientRole::Play).unwrap();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut c = ClientSession::new(cfg, 7, 0);
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        while let Some(b) = c.poll_transmit() {
            s.write_all(&b).unwrap();
        }
        let n = s.read(&mut buf).unwrap_or(0);
        assert!(n > 0, "connection closed without an error status");
        if let Err(e) = c.handle_input(&buf[..n]) {
            return e;
        }
        while c.poll_event().is_some() {}
    }
    panic!("no error within {WAIT:?}");
}

#[test]
fn a_redirecting_origin_sends_the_302_and_an_edge_follows_it() {
    let _g = serial();
    let (a, b) = coworkers("on_remote = \"redirect\"\n");
    let _p = synth(&a, "r302");
    match play_error(b.port, "r302") {
        ClientError::Redirected(r) => {
            assert_eq!(r.tc_url, format!("rtmp://127.0.0.1:{}/live", a.port));
            assert_eq!(
                r.url.as_deref(),
                Some(format!("rtmp://127.0.0.1:{}/live/r302", a.port).as_str())
            );
        }
        other => panic!("expected a redirect, got {other}"),
    }
    // An edge that asks B first follows the redirect to A.
    let e = edge(&[b.port, a.port], "");
    let p = LibPlayer::start(e.port, "r302", LIFE);
    assert!(
        p.wait_video_above(10, WAIT),
        "the edge followed the redirect"
    );
    e.expect_log(&["upstream stream=", "redirected to"], WAIT);
}

#[test]
fn an_edge_player_of_a_stream_nobody_has_gets_stream_not_found_in_time() {
    let _g = serial();
    let a = origin("");
    let e = edge(&[a.port], "start_timeout_ms = 1500\n");
    let _other = synth(&a, "busy");
    let watcher = LibPlayer::start(e.port, "busy", LIFE);
    assert!(watcher.wait_video_above(5, WAIT));
    let t0 = Instant::now();
    let lost = LibPlayer::start(e.port, "nobody", LIFE);
    assert!(
        wait_until(WAIT, || lost.ended().is_some()),
        "the player was closed"
    );
    let took = t0.elapsed();
    assert!(
        lost.has_seen(|s| match s {
            Seen::Status(c) => c == "NetStream.Play.StreamNotFound",
            Seen::Ended(why) => why.contains("NetStream.Play.StreamNotFound"),
            _ => false,
        }),
        "{:?}",
        lost.seen()
    );
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    let n = watcher.video_frames();
    assert!(
        watcher.wait_video_above(n + 10, WAIT),
        "the other stream kept playing"
    );
}

#[test]
fn token_traverse_checks_each_publish_at_the_origin_and_the_push_carries_the_token() {
    let _g = serial();
    let a = origin("[security]\npublish_secret = \"s3cret\"\n");
    let e = edge(&[a.port], "token_traverse = true\n");
    // The origin's secret: accepted at the edge, and the push to the origin carries it.
    let good = SynthPublisher::start(e.port, "tok?secret=s3cret", 1500, 25, 25, LIFE);
    assert!(
        wait_until(WAIT, || good.sent() > 3),
        "the edge accepted the publisher"
    );
    let at_a = LibPlayer::start(a.port, "tok", LIFE);
    assert!(
        at_a.wait_video_above(10, WAIT),
        "the edge's push reached the secret-protected origin"
    );
    // A wrong secret is refused at the edge with the origin's own answer.
    let mut c = LibClient::connect(e.port, "tok2?secret=wrong", ClientRole::Publish).unwrap();
    let err = c
        .pump_until(WAIT, |ev| matches!(ev, ClientEvent::PublishStarted))
        .expect_err("refused");
    assert!(err.contains("wrong publish secret"), "{err}");
    e.expect_log(&["token traverse: origin", "refused"], WAIT);
    assert!(good.ended().is_none(), "the good publisher is untouched");
}

#[test]
fn an_origin_that_goes_quiet_after_play_start_costs_one_start_timeout_then_fails_over() {
    use shardcast::media::Frame;
    let _g = serial();
    let a = origin("");
    let b = origin("");
    let e = edge(&[a.port, b.port], "start_timeout_ms = 1500\n");
    // At A: a publisher that sends a keyframe, then nothing, and stays connected.
    let mut quiet = LibClient::connect(a.port, "hush", ClientRole::Publish).unwrap();
    quiet
        .pump_until(WAIT, |ev| matches!(ev, ClientEvent::PublishStarted))
        .expect("publish at A");
    quiet
        .send_frame(&Frame::video(0, synth::avc_sequence_header()))
        .unwrap();
    quiet
        .send_frame(&Frame::video(0, synth::avc_frame(true, 1)))
        .unwrap();
    // At B: the same stream, live.
    let _live = synth(&b, "hush");
    let p = LibPlayer::start(e.port, "hush", LIFE);
    let t0 = Instant::now();
    assert!(
        p.wait_video_above(25, WAIT),
        "the edge player got B's stream after A went quiet ({} frames)",
        p.video_frames()
    );
    let took = t0.elapsed();
    e.expect_log(&["upstream stream=", "origin sent nothing for"], WAIT);
    assert!(took < Duration::from_secs(8), "failed over after {took:?}");
    assert!(p.ended().is_none(), "no disconnect: {:?}", p.ended());
    drop(quiet);
}
