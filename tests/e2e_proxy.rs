//! The proxy cluster with real processes on loopback: a real `redis-server`, two shardcast
//! proxies sharing it, and shardcast origins heartbeating to both (SRS's register API).
//! Publishes are placed and claimed in Redis (SET NX + TTL), plays go where their stream is,
//! dead origins get no new streams and their players are refused at once.

mod common;

use common::*;
use shardcast::rtmp::client::{ClientEvent, ClientRole};
use std::time::{Duration, Instant};

const LIFE: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(15);
/// Origins heartbeat this often in the tests (dead after three missed).
const BEAT_MS: u64 = 300;

/// A proxy on Redis `redis_url` with its system API on `api`.
fn proxy(api: u16, redis_url: &str, extra: &str) -> Server {
    Server::start_with(ServerOpts {
        http: true,
        extra: format!(
            "[cluster]\nmode = \"proxy\"\n[proxy]\napi_listen = \"127.0.0.1:{api}\"\nregistry = \"redis\"\nredis_url = \"{redis_url}\"\nheartbeat_interval_ms = {BEAT_MS}\nclaim_ttl_ms = 3000\nconnect_timeout_ms = 1500\n{extra}\n"
        ),
        ..ServerOpts::default()
    })
}

/// An origin registering with the proxies whose system APIs are `apis`.
fn origin(apis: &[u16]) -> Server {
    let urls: Vec<String> = apis
        .iter()
        .map(|p| format!("\"http://127.0.0.1:{p}/api/v1/srs/register\""))
        .collect();
    Server::start_with(ServerOpts {
        http: true,
        extra: format!(
            "[cluster.register]\nurls = [{}]\ninterval_ms = {BEAT_MS}\n",
            urls.join(", ")
        ),
        ..ServerOpts::default()
    })
}

/// `GET /api/v1/proxy/origins` on the proxy's system API: (rtmp address, alive) pairs.
fn origins_seen(api: u16) -> Vec<(String, bool)> {
    let (status, v) = api_call(api, "GET", "/api/v1/proxy/origins");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["code"], 0, "{v}");
    v["origins"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|o| {
            (
                o["rtmp"].as_str().unwrap_or_default().to_string(),
                o["alive"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

fn wait_alive(api: u16, n: usize) {
    assert!(
        wait_until(WAIT, || origins_seen(api).iter().filter(|o| o.1).count()
            == n),
        "proxy api {api} never saw {n} live origins: {:?}",
        origins_seen(api)
    );
}

/// The origin (`127.0.0.1:port`) a proxy logged for `verb` (publish/play) of `name`.
fn routed_to(p: &Server, verb: &str, name: &str) -> Option<String> {
    let key = Server::key(name);
    let line = p.wait_for_log(&[&format!("proxy {verb} stream={key} ")], WAIT)?;
    let open = line.rfind('(')?;
    Some(line[open + 1..].trim_end_matches(')').to_string())
}

/// POST `body` to `path` on `port`.
fn post(port: u16, path: &str, body: &[u8]) -> HttpResponse {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    http_send(port, &req, Duration::from_secs(10)).unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

/// Try a publish with the library client: `Ok` once publishing, `Err(why)` when refused.
fn try_publish(port: u16, name: &str) -> Result<LibClient, String> {
    let mut c = LibClient::connect(port, name, ClientRole::Publish).map_err(|e| e.to_string())?;
    c.pump_until(WAIT, |e| *e == ClientEvent::PublishStarted)?;
    Ok(c)
}

/// Try a play: how long the answer took and the refusal, if any.
fn try_play(port: u16, name: &str) -> (Duration, Result<(), String>) {
    let t0 = Instant::now();
    let r = LibClient::connect(port, name, ClientRole::Play)
        .map_err(|e| e.to_string())
        .and_then(|mut c| {
            c.pump_until(WAIT, |e| *e == ClientEvent::PlayStarted)
                .map(drop)
        });
    (t0.elapsed(), r)
}

#[test]
fn publish_through_one_proxy_and_play_through_the_other() {
    let _g = serial();
    let redis = RedisServer::start();
    let [api1, api2] = free_ports();
    let p1 = proxy(api1, &redis.url(), "");
    let p2 = proxy(api2, &redis.url(), "");
    let a = origin(&[api1, api2]);
    let b = origin(&[api1, api2]);
    wait_alive(api1, 2);
    wait_alive(api2, 2);
    // Redis keeps the origins in a sorted set by heartbeat and each record with a TTL.
    assert_eq!(redis.cli(&["ZCARD", "shardcast-proxy-origins"]), "2");

    let key = Server::key("px1");
    let _enc =
        try_ffmpeg_publish(&p1, &p1.url("px1"), &key, WAIT).expect_accepted("publish via p1");
    let placed = routed_to(&p1, "publish", "px1").expect("p1 logged the origin");
    let ports = [a.port, b.port];
    assert!(
        ports.iter().any(|p| placed.ends_with(&format!(":{p}"))),
        "placed on {placed}, origins {ports:?}"
    );
    let url_key = format!("srs-proxy-url:{key}");
    let pttl: i64 = redis.cli(&["PTTL", &url_key]).parse().unwrap_or(-3);
    assert!(pttl > 0, "the mapping has a TTL: {pttl}");

    let streams = ffprobe_streams(&p2.url("px1"), Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("ffprobe through p2: {e}"));
    assert_test_streams(&streams, "ffprobe through proxy 2");
    assert_eq!(
        routed_to(&p2, "play", "px1").as_deref(),
        Some(placed.as_str())
    );

    // Both proxies list the stream, with the proxy holding the publish.
    let (status, v) = api_call(api2, "GET", "/api/v1/proxy/streams");
    assert_eq!(status, 200, "{v}");
    let s = &v["streams"][0];
    assert_eq!(s["stream"], key.as_str(), "{v}");
    assert_ne!(s["proxy"], v["proxy"], "p1 holds it, not p2: {v}");
    // The registry figures are on /metrics.
    let m = http_get(p1.http_port.unwrap(), "/metrics").text();
    assert!(m.contains("shardcast_registry_up 1"), "{m}");
    assert!(m.contains("shardcast_registry_claims_total 1"), "{m}");
}

#[test]
fn two_publishers_of_a_new_stream_through_two_proxies_one_wins() {
    let _g = serial();
    let redis = RedisServer::start();
    let [api1, api2] = free_ports();
    let p1 = proxy(api1, &redis.url(), "");
    let p2 = proxy(api2, &redis.url(), "");
    let _a = origin(&[api1, api2]);
    let _b = origin(&[api1, api2]);
    wait_alive(api1, 2);
    for round in 0..3 {
        let name = format!("race{round}");
        let (port1, port2) = (p1.port, p2.port);
        let (n1, n2) = (name.clone(), name.clone());
        let t1 = std::thread::spawn(move || try_publish(port1, &n1));
        let t2 = std::thread::spawn(move || try_publish(port2, &n2));
        let (r1, r2) = (t1.join().unwrap(), t2.join().unwrap());
        let (won, lost) = match (&r1, &r2) {
            (Ok(_), Err(e)) | (Err(e), Ok(_)) => (true, e.clone()),
            _ => (
                false,
                format!("{:?} / {:?}", r1.as_ref().err(), r2.as_ref().err()),
            ),
        };
        assert!(won, "round {round}: exactly one publisher wins: {lost}");
        assert!(
            lost.contains("NetStream.Publish.BadName"),
            "round {round}: {lost}"
        );
        let keys = redis.cli(&["KEYS", &format!("srs-proxy-url:*{name}")]);
        assert_eq!(keys.lines().count(), 1, "one mapping: {keys}");
        let pttl: i64 = redis.cli(&["PTTL", keys.trim()]).parse().unwrap_or(-3);
        assert!(pttl > 0 && pttl <= 3000, "mapping TTL {pttl}");
        drop((r1, r2));
    }
}

#[test]
fn a_silent_origin_gets_no_new_streams_and_its_players_are_refused_at_once() {
    let _g = serial();
    let redis = RedisServer::start();
    let api = free_port();
    let p = proxy(api, &redis.url(), "");
    let a = origin(&[api]);
    let b = origin(&[api]);
    wait_alive(api, 2);
    let _pub = synth_through(&p, "dead1");
    let placed = routed_to(&p, "publish", "dead1").expect("placed");
    let (silent, live) = if placed.ends_with(&format!(":{}", a.port)) {
        (&a, &b)
    } else {
        (&b, &a)
    };
    let (took, r) = try_play(p.port, "dead1");
    assert!(
        r.is_ok(),
        "play before the origin stops: {r:?} after {took:?}"
    );
    // Freeze the origin: no heartbeats, its sockets stay open.
    silent.signal(libc::SIGSTOP);
    let _resume = Resume(silent.pid());
    wait_alive(api, 1);
    let (took, r) = try_play(p.port, "dead1");
    let why = r.expect_err("a player of a dead origin's stream is refused");
    assert!(why.contains("NetStream.Play.StreamNotFound"), "{why}");
    assert!(
        took < Duration::from_secs(2),
        "refused at once, took {took:?}"
    );
    // New publishes go to the live origin only, the dead one's stream included.
    for name in ["dead2", "dead3", "dead1"] {
        let c = try_publish(p.port, name);
        assert!(c.is_ok(), "publish {name}: {:?}", c.err());
        let to = routed_to_nth(&p, "publish", name);
        assert!(
            to.ends_with(&format!(":{}", live.port)),
            "{name} placed on {to}"
        );
    }
}

/// The last origin a proxy logged for `verb` of `name`.
fn routed_to_nth(p: &Server, verb: &str, name: &str) -> String {
    let want = format!("proxy {verb} stream={} ", Server::key(name));
    let mut last = None;
    wait_until(WAIT, || {
        last = p
            .log()
            .lines()
            .rev()
            .find(|l| l.contains(&want))
            .map(str::to_string);
        last.is_some()
    });
    let line = last.unwrap_or_else(|| panic!("no `{want}` line"));
    line[line.rfind('(').unwrap() + 1..]
        .trim_end_matches(')')
        .to_string()
}

/// SIGCONT on drop (a frozen origin must not outlive the test).
struct Resume(i32);

impl Drop for Resume {
    fn drop(&mut self) {
        // SAFETY: kill(2) on a child of this test.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

fn synth_through(p: &Server, name: &str) -> SynthPublisher {
    let s = SynthPublisher::start(p.port, name, 1500, 25, 25, LIFE);
    assert!(
        wait_until(WAIT, || s.sent() > 3),
        "publisher through the proxy runs"
    );
    s
}

#[test]
fn the_system_api_refuses_bad_input_and_a_mute_origin_fails_fast() {
    let _g = serial();
    let redis = RedisServer::start();
    let api = free_port();
    let p = proxy(api, &redis.url(), "");
    let path = "/api/v1/srs/register";
    let cases: [(&[u8], u16, &str); 5] = [
        (b"{not json", 400, "not JSON"),
        (b"[1,2]", 400, "not a JSON object"),
        (
            br#"{"ip":"127.0.0.1","server":"s","service":"v","pid":"1"}"#,
            400,
            "rtmp",
        ),
        (
            br#"{"ip":"127.0.0.1","server":"s","service":"v","pid":"1","rtmp":["x:y"]}"#,
            400,
            "rtmp",
        ),
        (
            br#"{"ip":"","server":"s","service":"v","pid":"1","rtmp":["1935"]}"#,
            400,
            "ip",
        ),
    ];
    for (body, status, word) in cases {
        let r = post(api, path, body);
        assert_eq!(r.status, status, "{}", r.text());
        let v = r.json().unwrap();
        assert_ne!(v["code"], 0, "{v}");
        assert!(v["error"].as_str().unwrap_or("").contains(word), "{v}");
    }
    // A huge body is refused from its Content-Length, before it is sent.
    let t0 = Instant::now();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{{",
        64 << 20
    );
    let r = http_send(api, head.as_bytes(), Duration::from_secs(5)).expect("answered");
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(t0.elapsed() < Duration::from_secs(2));
    // No length at all.
    let r = http_send(
        api,
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
            .as_bytes(),
        Duration::from_secs(5),
    )
    .expect("answered");
    assert_eq!(r.status, 411, "{}", r.text());
    assert_eq!(
        redis.cli(&["KEYS", "srs-proxy-server:*"]),
        "",
        "nothing stored"
    );
    assert_eq!(redis.cli(&["EXISTS", "shardcast-proxy-origins"]), "0");

    // A register flood from 4 threads while the API keeps answering others quickly.
    let flood: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..100 {
                    let body = format!(
                        r#"{{"ip":"127.0.0.1","server":"flood{t}","service":"s{i}","pid":"1","rtmp":["9"]}}"#
                    );
                    let _ = post(api, "/api/v1/srs/register", body.as_bytes());
                }
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let t0 = Instant::now();
        let (status, _) = api_call(api, "GET", "/api/v1/proxy/origins");
        assert_eq!(status, 200);
        slowest = slowest.max(t0.elapsed());
    }
    for f in flood {
        f.join().unwrap();
    }
    assert!(
        slowest < Duration::from_secs(1),
        "introspection took {slowest:?} under a flood"
    );
    // Registered origins expire from placement after three missed heartbeats.
    std::thread::sleep(Duration::from_millis(4 * BEAT_MS));

    // An origin that accepts TCP and never answers: the publisher is refused within the
    // connect timeout, and the proxy keeps serving others meanwhile.
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mute_port = mute.local_addr().unwrap().port();
    let beat = format!(
        r#"{{"ip":"127.0.0.1","server":"mute","service":"s","pid":"1","rtmp":["{mute_port}"]}}"#
    );
    let _beater = Worker::spawn(move |stop| {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = post(api, "/api/v1/srs/register", beat.as_bytes());
            std::thread::sleep(Duration::from_millis(BEAT_MS));
        }
    });
    assert!(wait_until(WAIT, || origins_seen(api)
        .iter()
        .any(|o| o.1 && o.0.ends_with(&format!(":{mute_port}")))));
    let t0 = Instant::now();
    let port = p.port;
    let stuck = std::thread::spawn(move || try_publish(port, "mute1").err());
    std::thread::sleep(Duration::from_millis(200));
    let (status, _) = api_call(p.http_port.unwrap(), "GET", "/api/v1/summaries");
    assert_eq!(
        status, 200,
        "the shard serves others while a client waits on a mute origin"
    );
    let why = stuck.join().unwrap().expect("refused");
    let took = t0.elapsed();
    assert!(
        took < Duration::from_millis(1500 + 1500),
        "refused in {took:?}: {why}"
    );
    assert!(why.contains("NetStream.Publish"), "{why}");
    drop(mute);
}

#[test]
fn with_send_proxy_protocol_the_origin_sees_the_real_client() {
    let _g = serial();
    let redis = RedisServer::start();
    let api = free_port();
    let p = proxy(api, &redis.url(), "send_proxy_protocol = true\n");
    // An origin that takes connections only with a PROXY header from the proxy's address.
    let o = Server::start_with(ServerOpts {
        http: true,
        server: "handshake_timeout_secs = 2\nproxy_protocol = \"required\"\n".into(),
        extra: format!(
            "[lb]\ntrusted_proxies = [\"127.0.0.1/32\"]\n[cluster.register]\nurls = [\"http://127.0.0.1:{api}/api/v1/srs/register\"]\ninterval_ms = {BEAT_MS}\n"
        ),
        ..ServerOpts::default()
    });
    wait_alive(api, 1);
    let _pubr = synth_through(&p, "real");
    let player = LibPlayer::start(p.port, "real", LIFE);
    assert!(
        player.wait_video_above(10, WAIT),
        "played through the proxy"
    );
    // The origin logs the player's own address and port, not the proxy's connection.
    let want = format!("peer=127.0.0.1:{} play stream=", player.local_port());
    let line = o.expect_log(&[&want], WAIT);
    assert!(line.contains("/live/real"), "{line}");
}

#[test]
fn with_redis_down_relays_go_on_known_streams_play_new_publishes_are_placed_and_all_catch_up() {
    let _g = serial();
    let mut redis = RedisServer::start();
    let api = free_port();
    let p = proxy(api, &redis.url(), "");
    let _a = origin(&[api]);
    wait_alive(api, 1);
    let key = Server::key("rd");
    let publisher = synth_through(&p, "rd");
    let before = LibPlayer::start(p.port, "rd", LIFE);
    assert!(before.wait_video_above(10, WAIT));
    let url_key = format!("srs-proxy-url:{key}");
    assert_eq!(
        redis.cli(&["EXISTS", &url_key]),
        "1",
        "mapped before the outage"
    );

    redis.kill();
    let metrics_say = |up: &str| {
        let want = format!("shardcast_registry_up {up}");
        wait_until(WAIT, || {
            http_get(p.http_port.unwrap(), "/metrics")
                .text()
                .contains(&want)
        })
    };
    // Running relays go on.
    let n = before.video_frames();
    assert!(
        before.wait_video_above(n + 25, WAIT),
        "the running relay kept going"
    );
    assert!(publisher.ended().is_none(), "the publisher stayed");
    // A new play of a stream the proxy knows still works.
    let during = LibPlayer::start(p.port, "rd", LIFE);
    assert!(
        during.wait_video_above(10, WAIT),
        "a play of a known stream with Redis down ({} frames)",
        during.video_frames()
    );
    assert!(metrics_say("0"), "/metrics says the registry is down");
    p.expect_log(
        &["registry: store unavailable", "serving known streams only"],
        WAIT,
    );
    // A NEW publish is placed on the origin this proxy knows from the heartbeats it got, and
    // plays through the proxy.
    let new_key = Server::key("rdnew");
    let _enc2 = try_ffmpeg_publish(&p, &p.url("rdnew"), &new_key, WAIT)
        .expect_accepted("a new publish with Redis down");
    p.expect_log(
        &[
            "registry: store unavailable",
            &format!("publish of {new_key} placed on origin"),
            "claim pending",
        ],
        WAIT,
    );
    let streams = ffprobe_streams(&p.url("rdnew"), Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("ffprobe of the new stream with Redis down: {e}"));
    assert_test_streams(&streams, "ffprobe through the proxy with Redis down");
    let m = http_get(p.http_port.unwrap(), "/metrics").text();
    assert!(
        m.contains("shardcast_registry_offline_publishes_total 1"),
        "{m}"
    );
    assert!(m.contains("shardcast_registry_pending_claims 1"), "{m}");

    // Redis back (empty): the origin's registration and the stream's mapping come back.
    redis.restart();
    assert!(
        wait_until(WAIT, || redis.cli(&["ZCARD", "shardcast-proxy-origins"])
            == "1"),
        "the origin registered again"
    );
    assert!(
        wait_until(WAIT, || redis.cli(&["EXISTS", &url_key]) == "1"),
        "the held claim was written again"
    );
    // The stream published while Redis was down gets its mapping, with a TTL, as any claim.
    let new_url_key = format!("srs-proxy-url:{new_key}");
    let mut pttl = -3i64;
    assert!(
        wait_until(WAIT, || {
            pttl = redis.cli(&["PTTL", &new_url_key]).parse().unwrap_or(-3);
            pttl > 0
        }),
        "the claim placed with Redis down was written on catch-up (PTTL {pttl})"
    );
    let mapping: serde_json::Value =
        serde_json::from_str(&redis.cli(&["GET", &new_url_key])).expect("mapping JSON");
    assert!(
        mapping["origin"].is_string() && mapping["holder"].is_string(),
        "{mapping}"
    );
    p.expect_log(
        &[&format!("claim on {new_key}"), "written on catch-up"],
        WAIT,
    );
    assert!(metrics_say("1"), "/metrics says the registry is back");
    p.expect_log(&["registry: store is back"], WAIT);
    assert!(
        wait_until(WAIT, || {
            let m = http_get(p.http_port.unwrap(), "/metrics").text();
            m.contains("shardcast_registry_caught_up_total 1")
                && m.contains("shardcast_registry_pending_claims 0")
        }),
        "/metrics counts the catch-up"
    );
    let n = during.video_frames();
    assert!(during.wait_video_above(n + 25, WAIT), "still playing");
}

#[test]
fn http_flv_through_the_proxy_comes_from_the_streams_origin() {
    let _g = serial();
    let redis = RedisServer::start();
    let api = free_port();
    let p = proxy(api, &redis.url(), "");
    let _a = origin(&[api]);
    wait_alive(api, 1);
    let key = Server::key("hf");
    let _enc = try_ffmpeg_publish(&p, &p.url("hf"), &key, WAIT).expect_accepted("publish via p");
    let url = format!("http://127.0.0.1:{}/live/hf.flv", p.http_port.unwrap());
    let streams = ffprobe_streams(&url, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("ffprobe of HTTP-FLV through the proxy: {e}"));
    assert_test_streams(&streams, "HTTP-FLV through the proxy");
    p.expect_log(&["proxy play-flv stream=", "origin="], WAIT);
    // The shardcast origin announced its HTTP-FLV listener in http[], and that is where the
    // proxy went.
    let http = origin_http(api, _a.port).expect("the origin announced http[]");
    assert_eq!(http, format!("127.0.0.1:{}", _a.http_port.unwrap()));
    p.expect_log(&[&format!("origin={http}")], WAIT);
    // A stream nobody holds: 404 at once.
    let r = http_get(p.http_port.unwrap(), "/live/nobody.flv");
    assert_eq!(r.status, 404, "{}", r.text());
}

/// `GET /api/v1/proxy/origins`: the `http` endpoint each origin announced, by rtmp address.
fn origin_http(api: u16, rtmp_port: u16) -> Option<String> {
    let (_, v) = api_call(api, "GET", "/api/v1/proxy/origins");
    v["origins"]
        .as_array()?
        .iter()
        .find(|o| {
            o["rtmp"]
                .as_str()
                .is_some_and(|r| r.ends_with(&format!(":{rtmp_port}")))
        })
        .and_then(|o| o["http"].as_str().map(str::to_string))
}

#[test]
fn http_flv_goes_to_the_http_endpoint_an_srs_style_origin_announced() {
    let _g = serial();
    let redis = RedisServer::start();
    let api = free_port();
    let p = proxy(api, &redis.url(), "");
    // An origin that does not heartbeat itself; the test heartbeats for it with SRS's body
    // (bare ports, `ports on`): `http` is its HTTP-FLV server, `api` a port nothing serves.
    let o = Server::start_with(ServerOpts {
        http: true,
        ..ServerOpts::default()
    });
    let dead_api = free_port();
    let beat = format!(
        r#"{{"device_id":"","ip":"127.0.0.1","server":"srs-like","service":"s1","pid":"42","rtmp":["{}"],"http":["{}"],"api":["{dead_api}"],"srt":["10080"]}}"#,
        o.port,
        o.http_port.unwrap()
    );
    let _beater = Worker::spawn(move |stop| {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let r = post(api, "/api/v1/srs/register", beat.as_bytes());
            assert_eq!(r.status, 200, "{}", r.text());
            std::thread::sleep(Duration::from_millis(BEAT_MS));
        }
    });
    wait_alive(api, 1);
    assert_eq!(
        origin_http(api, o.port),
        Some(format!("127.0.0.1:{}", o.http_port.unwrap())),
        "the origin's record keeps its http[] endpoint"
    );
    let _pubr = synth_through(&p, "srsflv");
    let mut s = HttpStream::open(p.http_port.unwrap(), "/live/srsflv.flv", WAIT)
        .unwrap_or_else(|e| panic!("HTTP-FLV through the proxy: {e}"));
    assert_eq!(s.status, 200);
    let mut body = Vec::new();
    while body.len() < 13 {
        body.extend(s.next_chunk(WAIT).expect("FLV bytes"));
    }
    // FLV signature, version 1, audio+video flags, 9-byte header, PreviousTagSize0 = 0.
    assert_eq!(&body[..4], b"FLV\x01", "{:?}", &body[..13]);
    assert_eq!(
        body[4] & 0x05,
        0x05,
        "audio and video flags: {:?}",
        &body[..13]
    );
    assert_eq!(&body[5..13], &[0, 0, 0, 9, 0, 0, 0, 0]);
    let line = p.expect_log(&["proxy play-flv stream=", "/live/srsflv origin="], WAIT);
    assert!(
        line.contains(&format!("origin=127.0.0.1:{} ", o.http_port.unwrap()))
            || line.ends_with(&format!("origin=127.0.0.1:{}", o.http_port.unwrap())),
        "{line}"
    );
}

/// The media a player saw: (kind, timestamp) of each audio/video frame, in order.
fn media_seen(p: &LibPlayer) -> Vec<(shardcast::media::FrameKind, u32)> {
    p.seen()
        .iter()
        .filter_map(|s| match s {
            Seen::Media {
                kind,
                ts,
                metadata: false,
                ..
            } if *kind != shardcast::media::FrameKind::Data => Some((*kind, *ts)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_players_relay_splices_the_origins_chunks_and_follows_its_chunk_size() {
    let _g = serial();
    let redis = RedisServer::start();
    let [api1, api2] = free_ports();
    // Proxy 1 splices (the default); proxy 2 re-chunks, for comparison.
    let p1 = proxy(api1, &redis.url(), "");
    let p2 = proxy(api2, &redis.url(), "relay_splice = false\n");
    // The origin writes at SRS's chunk size, not the proxies' (4096): the splice must announce
    // it to the client before the first forwarded byte.
    let urls = format!(
        "\"http://127.0.0.1:{api1}/api/v1/srs/register\", \"http://127.0.0.1:{api2}/api/v1/srs/register\""
    );
    let _o = Server::start_with(ServerOpts {
        http: true,
        rtmp: "chunk_size = 60000\n".into(),
        extra: format!("[cluster.register]\nurls = [{urls}]\ninterval_ms = {BEAT_MS}\n"),
        ..ServerOpts::default()
    });
    wait_alive(api1, 1);
    wait_alive(api2, 1);
    // Large frames: most video messages span several chunks at the client's old size.
    let publisher = SynthPublisher::start(p1.port, "spl", 9000, 25, 25, LIFE);
    assert!(wait_until(WAIT, || publisher.sent() > 3), "publishing");
    let spliced = LibPlayer::start(p1.port, "spl", LIFE);
    let rechunked = LibPlayer::start(p2.port, "spl", LIFE);
    assert!(
        spliced.wait_video_above(60, WAIT),
        "the spliced player plays ({} frames, ended {:?})",
        spliced.video_frames(),
        spliced.ended()
    );
    assert!(
        rechunked.wait_video_above(60, WAIT),
        "the re-chunked player plays"
    );
    let key = Server::key("spl");
    p1.expect_log(
        &[&format!(
            "stream={key} proxy relay path=splice chunk_size=60000"
        )],
        WAIT,
    );
    p2.expect_log(
        &[&format!(
            "stream={key} proxy relay path=rechunk (relay_splice = false)"
        )],
        WAIT,
    );
    // The clients API shows each player's relay path.
    let relays = |port: u16| -> Vec<String> {
        let (_, v) = api_call(port, "GET", "/api/v1/clients");
        v["clients"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|c| c["type"] == "rtmp-play")
            .map(|c| c["relay"]["path"].as_str().unwrap_or("none").to_string())
            .collect()
    };
    assert!(
        wait_until(WAIT, || relays(p1.http_port.unwrap()) == ["splice"]),
        "p1's player: {:?}",
        relays(p1.http_port.unwrap())
    );
    assert_eq!(relays(p2.http_port.unwrap()), ["rechunk"]);
    // Both saw the same media, timestamps monotonic, the first video frame a keyframe.
    let (a, b) = (media_seen(&spliced), media_seen(&rechunked));
    assert!(a.len() > 60 && b.len() > 60);
    for seen in [&a, &b] {
        let video: Vec<u32> = seen
            .iter()
            .filter(|m| m.0 == shardcast::media::FrameKind::Video)
            .map(|m| m.1)
            .collect();
        assert!(video.windows(2).all(|w| w[0] <= w[1]), "{video:?}");
    }
    let common = b.iter().filter(|m| a.contains(m)).count();
    assert!(common > 50, "the same frames through both paths: {common}");
    assert!(spliced.has_seen(|s| matches!(s, Seen::Media { keyframe: true, .. })));
    // ffprobe (libavformat's RTMP client) reads a spliced stream of real media (ffmpeg's
    // publish) too.
    let real = Server::key("splff");
    let _enc = try_ffmpeg_publish(&p1, &p1.url("splff"), &real, WAIT).expect_accepted("publish");
    let streams = ffprobe_streams(&p1.url("splff"), Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("ffprobe through the splicing proxy: {e}"));
    assert_test_streams(&streams, "ffprobe of a spliced relay");
    p1.expect_log(
        &[&format!(
            "stream={real} proxy relay path=splice chunk_size=60000"
        )],
        WAIT,
    );
    // The publisher stops: the spliced player gets the origin's end of stream.
    drop(publisher);
    assert!(
        wait_until(WAIT, || spliced.ended().is_some()
            || spliced.has_seen(
                |s| matches!(s, Seen::Status(c) if c.contains("UnpublishNotify"))
            )),
        "the end of the stream reached the spliced player"
    );
    let line = p1.expect_log(&["proxy relay ended", "path=splice"], WAIT);
    let as_is: u64 = log_field(&line, "as_is")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(as_is > 60, "media forwarded as received: {line}");
}

/// Video timestamps a player saw, in order.
fn video_ts(p: &LibPlayer) -> Vec<u32> {
    media_seen(p)
        .iter()
        .filter(|m| m.0 == shardcast::media::FrameKind::Video)
        .map(|m| m.1)
        .collect()
}

#[test]
fn a_publishers_relay_splices_its_chunks_to_the_origin() {
    let _g = serial();
    let redis = RedisServer::start();
    let [api1, api2] = free_ports();
    // Proxy 1 splices both legs (the default); proxy 2 re-chunks.
    let p1 = proxy(api1, &redis.url(), "");
    let p2 = proxy(api2, &redis.url(), "relay_splice = false\n");
    let o = origin(&[api1, api2]);
    wait_alive(api1, 1);
    wait_alive(api2, 1);
    // ffmpeg (fmt-1/2/3 compressed headers on its audio and video chunk streams) through
    // each proxy.
    let (sp, rc) = (Server::key("pubsp"), Server::key("pubrc"));
    let _e1 = try_ffmpeg_publish(&p1, &p1.url("pubsp"), &sp, WAIT).expect_accepted("publish 1");
    let _e2 = try_ffmpeg_publish(&p2, &p2.url("pubrc"), &rc, WAIT).expect_accepted("publish 2");
    let line = p1.expect_log(
        &[&format!(
            "stream={sp} proxy publish relay path=splice chunk_size="
        )],
        WAIT,
    );
    p2.expect_log(
        &[&format!(
            "stream={rc} proxy publish relay path=rechunk (relay_splice = false)"
        )],
        WAIT,
    );
    // Players at the origin and through the other proxy decode both.
    for name in ["pubsp", "pubrc"] {
        for url in [o.url(name), p2.url(name)] {
            let streams = ffprobe_streams(&url, Duration::from_secs(20))
                .unwrap_or_else(|e| panic!("ffprobe {url} ({line}): {e}"));
            assert_test_streams(&streams, &format!("ffprobe {url}"));
        }
    }
    let at_origin = LibPlayer::start(o.port, "pubsp", LIFE);
    let via_proxy = LibPlayer::start(p2.port, "pubsp", LIFE);
    for p in [&at_origin, &via_proxy] {
        assert!(p.wait_video_above(40, WAIT), "plays ({:?})", p.ended());
        let v = video_ts(p);
        assert!(v.windows(2).all(|w| w[0] <= w[1]), "{v:?}");
    }
    // The API shows the publisher's relay: spliced, nearly all as received.
    let publishers = clients_of_type(p1.http_port.unwrap(), "fmle-publish");
    assert_eq!(publishers.len(), 1, "{publishers:?}");
    let relay = &publishers[0]["relay"];
    assert_eq!(relay["path"], "splice", "{relay}");
    let (as_is, rewritten) = (
        relay["as_is"].as_u64().unwrap(),
        relay["rewritten"].as_u64().unwrap(),
    );
    assert!(as_is > 100 && rewritten < 10, "{relay}");
    let publishers = clients_of_type(p2.http_port.unwrap(), "fmle-publish");
    assert_eq!(publishers[0]["relay"]["path"], "rechunk", "{publishers:?}");
    assert!(publishers[0]["relay"]["rechunked"].as_u64().unwrap() > 100);

    // Library publishers (header-compressing on the proxy's own media chunk streams) at the
    // protocol's default chunk size (no Set Chunk Size) and at a large one.
    for (name, cs) in [("pub128", 128u32), ("pub60k", 60_000)] {
        let key = Server::key(name);
        let publisher = SynthPublisher::start_at_chunk_size(p1.port, name, 9000, 25, 25, LIFE, cs);
        p1.expect_log(
            &[&format!(
                "stream={key} proxy publish relay path=splice chunk_size={cs} "
            )],
            WAIT,
        );
        let at_origin = LibPlayer::start(o.port, name, LIFE);
        let via_proxy = LibPlayer::start(p1.port, name, LIFE);
        for p in [&at_origin, &via_proxy] {
            assert!(
                p.wait_video_above(40, WAIT),
                "{name}: plays ({:?}, publisher {:?})",
                p.ended(),
                publisher.ended()
            );
            let v = video_ts(p);
            assert!(v.windows(2).all(|w| w[0] <= w[1]), "{name}: {v:?}");
            assert!(
                p.has_seen(|s| matches!(s, Seen::Media { keyframe: true, .. })),
                "{name}"
            );
        }
        drop(publisher);
        let ended = p1.expect_log(
            &[
                "proxy publish relay ended",
                &format!("stream={key} "),
                "path=splice",
            ],
            WAIT,
        );
        let n = |f: &str| -> u64 {
            log_field(&ended, f)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        assert!(n("as_is") > 40 && n("rewritten") <= 4, "{ended}");
    }
}
