//! The HTTP side of the real server over 127.0.0.1: the SRS-shaped API, Prometheus metrics,
//! HTTP-FLV (checked with ffprobe, ffmpeg and a raw client that reads the FLV tags), bad
//! requests, and the web console driven by headless Chromium.

mod common;

use common::*;
use serde_json::Value;
use shardcast_bench::httpflv::FlvParser;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LIFE: Duration = Duration::from_secs(60);
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

fn http_opts(http_extra: &str) -> ServerOpts {
    ServerOpts {
        http: true,
        http_extra: http_extra.into(),
        ..Default::default()
    }
}

fn http_port(server: &Server) -> u16 {
    server.http_port.expect("server started with http")
}

/// Poll `GET path` (a JSON API) until `pred` holds; panics with the last answer otherwise.
fn wait_api(port: u16, path: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let ok = wait_until(timeout, || {
        let (status, v) = api_call(port, "GET", path);
        let done = status == 200 && pred(&v);
        last = v;
        done
    });
    assert!(
        ok,
        "GET {path}: condition not met within {timeout:?}; last answer:\n{last:#}"
    );
    last
}

/// The stream named `name` in a `/api/v1/streams` answer.
fn stream_named<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list["streams"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)
}

fn clients_of(list: &Value) -> Vec<Value> {
    list["clients"].as_array().cloned().unwrap_or_default()
}

/// Client types in a `/api/v1/clients` answer, sorted.
fn client_types(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = clients_of(list)
        .iter()
        .map(|c| c["type"].as_str().unwrap_or("?").to_string())
        .collect();
    v.sort();
    v
}

/// ffmpeg reading `live/NAME` over HTTP-FLV until killed.
fn spawn_flv_ffmpeg(server: &Server, name: &str) -> Proc {
    let url = format!("http://127.0.0.1:{}/live/{name}.flv", http_port(server));
    let err = fs::File::create(server.dir.join(&format!("flv-ffmpeg-{name}.log"))).unwrap();
    Proc::spawn(
        "ffmpeg HTTP-FLV player",
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-i", &url, "-f", "null", "-"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err),
    )
}

// ---------------------------------------------------------------------------------------------
// 1. The API

#[test]
fn api_lists_the_stream_its_clients_versions_and_summaries() {
    let _g = serial();
    let server = Server::start_with(http_opts(""));
    let http = http_port(&server);
    let _publisher = publish(&server, "s");
    let p1 = LibPlayer::start(server.port, "s", LIFE);
    let p2 = LibPlayer::start(server.port, "s", LIFE);
    let _flv = spawn_flv_ffmpeg(&server, "s");
    server.expect_log(
        &["play-flv stream=", &Server::key("s")],
        Duration::from_secs(10),
    );
    assert!(
        p1.wait_video_above(0, Duration::from_secs(10)),
        "player 1 got no video"
    );
    assert!(
        p2.wait_video_above(0, Duration::from_secs(10)),
        "player 2 got no video"
    );

    // Streams: snapshots are published four times a second, so poll until the figures
    // checked below have arrived.
    let list = wait_api(http, "/api/v1/streams", Duration::from_secs(10), |v| {
        stream_named(v, "s").is_some_and(|s| {
            s["clients"] == 3
                && s["video"].is_object()
                && s["recv_bytes"].as_u64().unwrap_or(0) > 10_000
        })
    });
    assert_eq!(list["code"], 0, "{list:#}");
    let streams = list["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1, "one stream is published: {list:#}");
    let s = &streams[0];
    assert_eq!(s["name"], "s", "{s:#}");
    assert_eq!(s["app"], "live", "{s:#}");
    assert_eq!(s["vhost"], VHOST, "{s:#}");
    assert_eq!(s["url"], "/live/s", "{s:#}");
    assert_eq!(s["clients"], 3, "{s:#}");
    assert_eq!(s["video"]["codec"], "H264", "{s:#}");
    assert_eq!(s["video"]["width"], 320, "{s:#}");
    assert_eq!(s["video"]["height"], 240, "{s:#}");
    assert_eq!(s["audio"]["codec"], "AAC", "{s:#}");
    assert_eq!(s["audio"]["sample_rate"], 44100, "{s:#}");
    assert_eq!(s["publish"]["active"], true, "{s:#}");
    assert!(s["frames"].as_u64().unwrap_or(0) > 0, "{s:#}");
    assert!(s["recv_bytes"].as_u64().unwrap_or(0) > 10_000, "{s:#}");
    // The GOP cache's figures: at least the keyframe the players started on.
    assert!(s["gop"]["frames"].as_u64().unwrap_or(0) >= 1, "{s:#}");
    assert!(s["gop"]["bytes"].as_u64().unwrap_or(0) > 100, "{s:#}");
    let id = s["id"].as_str().expect("stream id is a string").to_string();
    let publisher_cid = s["publish"]["cid"]
        .as_str()
        .expect("publish.cid while published")
        .to_string();

    let (status, one) = api_call(http, "GET", &format!("/api/v1/streams/{id}"));
    assert_eq!(status, 200, "{one:#}");
    assert_eq!(one["code"], 0, "{one:#}");
    assert_eq!(one["stream"]["id"], id.as_str(), "{one:#}");
    assert_eq!(one["stream"]["name"], "s", "{one:#}");
    assert_eq!(one["stream"]["publish"]["active"], true, "{one:#}");

    // Clients: the publisher, two RTMP players and the HTTP-FLV player.
    let list = wait_api(http, "/api/v1/clients", Duration::from_secs(5), |v| {
        client_types(v) == ["flv-play", "fmle-publish", "rtmp-play", "rtmp-play"]
    });
    assert_eq!(list["code"], 0, "{list:#}");
    let clients = clients_of(&list);
    for c in &clients {
        assert_eq!(c["url"], "/live/s", "{c:#}");
        assert_eq!(c["stream"], id.as_str(), "{c:#}");
        assert_eq!(c["ip"], "127.0.0.1", "{c:#}");
        assert_eq!(c["publish"], c["type"] == "fmle-publish", "{c:#}");
        assert!(c["shard"].as_u64().is_some_and(|s| s < 2), "{c:#}");
    }
    let publisher = clients
        .iter()
        .find(|c| c["type"] == "fmle-publish")
        .unwrap();
    assert_eq!(
        publisher["id"],
        publisher_cid.as_str(),
        "publish.cid names the publishing client: {list:#}"
    );
    for p in [&p1, &p2] {
        let peer = format!("127.0.0.1:{}", p.local_port());
        let c = clients
            .iter()
            .find(|c| c["peer"] == peer.as_str())
            .unwrap_or_else(|| panic!("no client with peer {peer}: {list:#}"));
        assert_eq!(c["type"], "rtmp-play", "{c:#}");
    }
    for c in &clients {
        let cid = c["id"].as_str().expect("client id is a string");
        let (status, one) = api_call(http, "GET", &format!("/api/v1/clients/{cid}"));
        assert_eq!(status, 200, "{one:#}");
        assert_eq!(one["code"], 0, "{one:#}");
        assert_eq!(one["client"]["id"], cid, "{one:#}");
        assert_eq!(one["client"]["type"], c["type"], "{one:#}");
    }

    // Unknown ids.
    for path in ["/api/v1/streams/nope", "/api/v1/streams/999999"] {
        let (status, v) = api_call(http, "GET", path);
        assert_eq!(
            (status, v["code"].as_u64()),
            (404, Some(2048)),
            "{path}: {v:#}"
        );
    }
    for path in ["/api/v1/clients/999999", "/api/v1/clients/nope"] {
        let (status, v) = api_call(http, "GET", path);
        assert_eq!(
            (status, v["code"].as_u64()),
            (404, Some(2049)),
            "{path}: {v:#}"
        );
    }

    // Versions.
    let (status, v) = api_call(http, "GET", "/api/v1/versions");
    assert_eq!(status, 200, "{v:#}");
    assert_eq!(v["code"], 0, "{v:#}");
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(v["data"]["version"], version, "{v:#}");
    let parts: Vec<u64> = version.split('.').map(|p| p.parse().unwrap()).collect();
    assert_eq!(v["data"]["major"], parts[0], "{v:#}");
    assert_eq!(v["data"]["minor"], parts[1], "{v:#}");
    assert_eq!(v["data"]["revision"], parts[2], "{v:#}");

    // Summaries.
    let v = wait_api(http, "/api/v1/summaries", Duration::from_secs(10), |v| {
        let sys = &v["data"]["system"];
        sys["players"] == 3
            && sys["bytes_in"].as_u64().is_some_and(|n| n > 10_000)
            && sys["bytes_out"].as_u64().is_some_and(|n| n > 10_000)
    });
    assert_eq!(v["code"], 0, "{v:#}");
    let (me, sys) = (&v["data"]["self"], &v["data"]["system"]);
    assert_eq!(v["data"]["ok"], true, "{v:#}");
    assert_eq!(me["pid"], server.pid(), "{v:#}");
    assert_eq!(me["shards"], 2, "{v:#}");
    assert_eq!(me["version"], version, "{v:#}");
    let mem = me["mem_kbyte"].as_u64().unwrap_or(0);
    assert!((1_000..4_000_000).contains(&mem), "memory {mem} KiB: {v:#}");
    assert!(me["srs_uptime"].as_u64().is_some_and(|u| u < 300), "{v:#}");
    assert_eq!(sys["publishers"], 1, "{v:#}");
    assert_eq!(sys["players"], 3, "{v:#}");
    assert_eq!(sys["streams"], 1, "{v:#}");
    assert_eq!(sys["streams_live"], 1, "{v:#}");
    assert!(sys["conn_srs"].as_u64().is_some_and(|n| n >= 4), "{v:#}");
    assert!(
        sys["bytes_in"].as_u64().is_some_and(|n| n > 10_000),
        "{v:#}"
    );
    assert!(
        sys["bytes_out"].as_u64().is_some_and(|n| n > 10_000),
        "{v:#}"
    );
    assert!(sys["cpus"].as_u64().is_some_and(|n| n >= 1), "{v:#}");
}

// ---------------------------------------------------------------------------------------------
// 2. Kicking a client

#[test]
fn delete_client_disconnects_that_player_only() {
    let _g = serial();
    let server = Server::start_with(http_opts(""));
    let http = http_port(&server);
    let _publisher = publish(&server, "s");
    let victim = LibPlayer::start(server.port, "s", LIFE);
    let other = LibPlayer::start(server.port, "s", LIFE);
    assert!(
        victim.wait_video_above(0, Duration::from_secs(10)),
        "victim got no video"
    );
    assert!(
        other.wait_video_above(0, Duration::from_secs(10)),
        "other got no video"
    );
    let victim_peer = format!("127.0.0.1:{}", victim.local_port());
    let list = wait_api(http, "/api/v1/clients", Duration::from_secs(5), |v| {
        clients_of(v)
            .iter()
            .any(|c| c["peer"] == victim_peer.as_str())
            && client_types(v) == ["fmle-publish", "rtmp-play", "rtmp-play"]
    });
    let victim_id = clients_of(&list)
        .iter()
        .find(|c| c["peer"] == victim_peer.as_str())
        .and_then(|c| c["id"].as_str().map(str::to_string))
        .unwrap();

    let (status, v) = api_call(http, "DELETE", &format!("/api/v1/clients/{victim_id}"));
    assert_eq!((status, v["code"].as_u64()), (200, Some(0)), "{v:#}");

    assert!(
        wait_until(Duration::from_secs(5), || victim.ended().is_some()),
        "the kicked player is still connected 5 s after the DELETE; it saw {} video frames",
        victim.video_frames()
    );
    let why = victim.ended().unwrap();
    assert!(
        why.contains("closed by server") || why.starts_with("read") || why.starts_with("write"),
        "the kicked player ended for another reason: {why}"
    );
    server.expect_log(
        &[
            &format!("peer={victim_peer} "),
            "close reason=\"kicked through the API\"",
        ],
        Duration::from_secs(5),
    );

    let list = wait_api(http, "/api/v1/clients", Duration::from_secs(5), |v| {
        !clients_of(v).iter().any(|c| c["id"] == victim_id.as_str())
    });
    assert_eq!(
        client_types(&list),
        ["fmle-publish", "rtmp-play"],
        "only the kicked player left: {list:#}"
    );
    let (status, v) = api_call(http, "GET", &format!("/api/v1/clients/{victim_id}"));
    assert_eq!((status, v["code"].as_u64()), (404, Some(2049)), "{v:#}");
    let (status, v) = api_call(http, "DELETE", &format!("/api/v1/clients/{victim_id}"));
    assert_eq!(
        (status, v["code"].as_u64()),
        (404, Some(2049)),
        "second DELETE: {v:#}"
    );

    // The other player goes on.
    let n = other.video_frames();
    assert!(
        other.wait_video_above(n + 10, Duration::from_secs(5)),
        "the other player stopped getting video after the kick (at {n} frames)"
    );
    assert_eq!(other.ended(), None, "the other player was disconnected too");

    // An HTTP-FLV player can be kicked too: its response ends.
    let mut flv = HttpStream::open(http, "/live/s.flv", Duration::from_secs(5)).expect("open");
    assert_eq!(flv.status, 200);
    flv.next_chunk(Duration::from_secs(5)).expect("FLV header");
    let list = wait_api(http, "/api/v1/clients", Duration::from_secs(5), |v| {
        client_types(v).contains(&"flv-play".to_string())
    });
    let flv_id = clients_of(&list)
        .iter()
        .find(|c| c["type"] == "flv-play")
        .and_then(|c| c["id"].as_str().map(str::to_string))
        .unwrap();
    let (status, v) = api_call(http, "DELETE", &format!("/api/v1/clients/{flv_id}"));
    assert_eq!((status, v["code"].as_u64()), (200, Some(0)), "{v:#}");
    let deadline = Instant::now() + Duration::from_secs(5);
    let ended = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break None;
        }
        match flv.next_chunk(left) {
            Ok(_) => {}
            Err(e) if e.starts_with("no chunk within") => break None,
            Err(e) => break Some(e),
        }
    };
    assert!(
        ended.is_some(),
        "the kicked HTTP-FLV player still gets data 5 s after the DELETE"
    );
    wait_api(http, "/api/v1/clients", Duration::from_secs(5), |v| {
        !clients_of(v).iter().any(|c| c["id"] == flv_id.as_str())
    });
    assert_eq!(
        other.ended(),
        None,
        "the other player was disconnected by the second kick"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Prometheus metrics

#[test]
fn metrics_are_prometheus_text_that_counts_players() {
    let _g = serial();
    let server = Server::start_with(http_opts(""));
    let http = http_port(&server);
    let _publisher = publish(&server, "s");
    let p1 = LibPlayer::start(server.port, "s", LIFE);
    let p2 = LibPlayer::start(server.port, "s", LIFE);
    let mut flv = HttpStream::open(http, "/live/s.flv", Duration::from_secs(5)).expect("HTTP-FLV");
    flv.next_chunk(Duration::from_secs(5)).expect("FLV header");
    assert!(
        p1.wait_video_above(0, Duration::from_secs(10)),
        "player 1 got no video"
    );
    assert!(
        p2.wait_video_above(0, Duration::from_secs(10)),
        "player 2 got no video"
    );

    let mut last = String::new();
    let mut samples = Vec::new();
    // Stats are snapshots (every 250 ms), so wait for both the player count and for the
    // publisher's stream counter to pass the figure checked below.
    let key = Server::key("s");
    let counted = wait_until(Duration::from_secs(10), || {
        let r = http_get(http, "/metrics");
        last = r.text();
        samples = parse_metrics(&last).unwrap_or_default();
        let stream_in: f64 = samples
            .iter()
            .filter(|s| {
                s.name == "shardcast_stream_bytes_received_total"
                    && s.labels.get("stream") == Some(&key)
            })
            .map(|s| s.value)
            .sum();
        r.status == 200 && sum_of(&samples, "shardcast_players") == 3.0 && stream_in > 10_000.0
    });
    assert!(
        counted,
        "shardcast_players never summed to 3 with over 10 kB published:\n{last}"
    );
    let r = http_get(http, "/metrics");
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "content type {:?}",
        r.header("content-type")
    );
    let text = r.text();
    let samples = parse_metrics(&text).unwrap_or_else(|e| panic!("{e}\nwhole text:\n{text}"));
    assert!(samples.len() >= 10, "too few samples:\n{text}");
    assert_eq!(sum_of(&samples, "shardcast_players"), 3.0, "{text}");
    assert_eq!(sum_of(&samples, "shardcast_publishers"), 1.0, "{text}");
    assert!(sum_of(&samples, "shardcast_connections") >= 4.0, "{text}");
    assert!(
        sum_of(&samples, "shardcast_bytes_received_total") > 10_000.0,
        "{text}"
    );
    assert!(
        sum_of(&samples, "shardcast_bytes_sent_total") > 10_000.0,
        "{text}"
    );
    let shards: Vec<&str> = samples
        .iter()
        .filter(|s| s.name == "shardcast_players")
        .filter_map(|s| s.labels.get("shard").map(String::as_str))
        .collect();
    assert_eq!(
        shards,
        ["0", "1"],
        "one shardcast_players sample per shard:\n{text}"
    );
    let per_stream = |name: &str| {
        samples
            .iter()
            .find(|s| s.name == name && s.labels.get("stream") == Some(&key))
            .unwrap_or_else(|| panic!("no {name}{{stream=\"{key}\"}} in:\n{text}"))
            .value
    };
    assert_eq!(per_stream("shardcast_stream_players"), 3.0, "{text}");
    assert_eq!(per_stream("shardcast_stream_live"), 1.0, "{text}");
    assert!(
        per_stream("shardcast_stream_bytes_received_total") > 10_000.0,
        "{text}"
    );
    assert!(
        samples.iter().any(|s| s.name == "shardcast_uptime_seconds"),
        "{text}"
    );

    // The parser itself rejects what it must.
    for bad in [
        "9name 1",
        "name{a=\"1\" 1",
        "name{a=1} 1",
        "name{a=\"1\"}1",
        "name x",
    ] {
        assert!(parse_sample(bad).is_err(), "accepted {bad:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// 4. HTTP-FLV

/// What the raw client keeps of an FLV tag: the bench crate's parser (the one its HTTP-FLV
/// players use) sees the header fields and the payload's first bytes.
#[derive(Debug)]
struct FlvTag {
    kind: u8,
    ts: u32,
    size: u32,
    /// The payload's first `min(size, 32)` bytes.
    head: Vec<u8>,
}

const FLV_HEADER: &[u8] = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00";

/// Read tags from an open HTTP-FLV response whose first chunk was `first` (the FLV header)
/// until `done` says so (bounded by `timeout`). Panics on broken FLV: a bad header, a
/// PreviousTagSize that does not match its tag, a tag that is not audio, video or script data.
fn read_flv_tags(
    flv: &mut HttpStream,
    first: &[u8],
    timeout: Duration,
    done: impl Fn(&[FlvTag]) -> bool,
) -> Vec<FlvTag> {
    let deadline = Instant::now() + timeout;
    let mut parser = FlvParser::default();
    let mut tags = Vec::new();
    let mut feed = |bytes: &[u8], tags: &mut Vec<FlvTag>| {
        parser
            .feed(bytes, |t| {
                assert!(
                    t.kind().is_some(),
                    "bad FLV: tag of type {} after {} tags: {t:?}",
                    t.tag_type,
                    tags.len()
                );
                tags.push(FlvTag {
                    kind: t.tag_type,
                    ts: t.timestamp,
                    size: t.size,
                    head: t.head.to_vec(),
                });
            })
            .unwrap_or_else(|e| panic!("bad FLV: {e}"));
    };
    feed(first, &mut tags);
    while !done(&tags) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "not enough FLV tags within {timeout:?}: {:?}",
            tags.iter()
                .map(|t| (t.kind, t.ts, t.size))
                .collect::<Vec<_>>()
        );
        let chunk = flv
            .next_chunk(left)
            .unwrap_or_else(|e| panic!("reading HTTP-FLV: {e}"));
        feed(&chunk, &mut tags);
    }
    tags
}

/// HTTP-FLV players under merged writes that all go out by tee + splice from the shard's
/// HTTP-FLV pipe: ffmpeg still decodes cleanly (chunk framing and tags intact).
#[test]
fn spliced_merged_writes_to_http_flv_players_decode_cleanly() {
    let _g = serial();
    let server = Server::start_with(ServerOpts {
        rtmp: "mw_latency_ms = 300\nsplice_min_bytes = 1\n".into(),
        ..http_opts("")
    });
    let http = http_port(&server);
    let _publisher = publish(&server, "s");
    let url = format!("http://127.0.0.1:{http}/live/s.flv");
    // Two at once, so a batch goes to more than one player from the same pipe.
    let other = {
        let url = url.clone();
        std::thread::spawn(move || ffmpeg_decode(&url, 3))
    };
    let out = ffmpeg_decode(&url, 3);
    for out in [out, other.join().unwrap()] {
        assert!(out.success(), "ffmpeg on HTTP-FLV: {}", out.describe());
        assert!(
            out.stderr.trim().is_empty(),
            "ffmpeg on spliced HTTP-FLV printed errors: {}",
            out.describe()
        );
    }
    let metrics = http_get(http, "/metrics").text();
    let samples = parse_metrics(&metrics).unwrap_or_else(|e| panic!("/metrics: {e}\n{metrics}"));
    let spliced = sum_of(&samples, "shardcast_spliced_writes_total");
    assert!(spliced > 0.0, "nothing went out by splice:\n{metrics}");
}

#[test]
fn http_flv_plays_in_ffprobe_ffmpeg_and_a_raw_client() {
    let _g = serial();
    let server = Server::start_with(http_opts(""));
    let http = http_port(&server);
    let _publisher = publish(&server, "s");
    let url = format!("http://127.0.0.1:{http}/live/s.flv");

    let streams = ffprobe_streams(&url, PROBE_TIMEOUT).expect("ffprobe of HTTP-FLV");
    assert_test_streams(&streams, "ffprobe of HTTP-FLV");

    let out = ffmpeg_decode(&url, 4);
    assert!(
        out.success(),
        "ffmpeg on HTTP-FLV failed: {}",
        out.describe()
    );
    assert!(
        out.stderr.trim().is_empty(),
        "ffmpeg on HTTP-FLV printed errors: {}",
        out.describe()
    );
    assert!(
        out.elapsed >= Duration::from_millis(2000),
        "4 s of live media decoded too fast: {}",
        out.describe()
    );

    let mut flv = HttpStream::open(http, "/live/s.flv", Duration::from_secs(5)).expect("open");
    assert_eq!(flv.status, 200, "{:?}", flv.headers);
    assert!(
        flv.header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked")),
        "not chunked: {:?}",
        flv.headers
    );
    assert_eq!(
        flv.header("content-type"),
        Some("video/x-flv"),
        "{:?}",
        flv.headers
    );
    assert!(flv.header("content-length").is_none(), "{:?}", flv.headers);
    let first = flv.next_chunk(Duration::from_secs(5)).expect("first chunk");
    assert_eq!(
        first, FLV_HEADER,
        "the first chunk is the 13-byte FLV header"
    );

    let video_count = |tags: &[FlvTag]| tags.iter().filter(|t| t.kind == 9).count();
    let tags = read_flv_tags(&mut flv, &first, Duration::from_secs(10), |t| {
        video_count(t) >= 5
    });
    assert_eq!(
        tags[0].kind, 18,
        "the first tag is script data (onMetaData)"
    );
    assert!(
        tags[0].head.windows(10).any(|w| w == b"onMetaData"),
        "the first tag is not onMetaData"
    );
    let video: Vec<&FlvTag> = tags.iter().filter(|t| t.kind == 9).collect();
    assert_eq!(
        (video[0].head[0], video[0].head[1]),
        (0x17, 0),
        "the first video tag is the AVC sequence header"
    );
    assert_eq!(
        (
            video[1].head[0] >> 4,
            video[1].head[0] & 0x0f,
            video[1].head[1]
        ),
        (1, 7, 1),
        "the video tag after the sequence header is an AVC keyframe"
    );
    assert!(
        video[2..]
            .iter()
            .all(|t| t.head[0] & 0x0f == 7 && t.head[1] == 1),
        "later video tags are AVC NALUs"
    );
    assert!(
        video[1..].windows(2).all(|w| w[0].ts <= w[1].ts),
        "video timestamps go back: {:?}",
        video.iter().map(|t| t.ts).collect::<Vec<_>>()
    );
    let audio: Vec<&FlvTag> = tags.iter().filter(|t| t.kind == 8).collect();
    assert!(!audio.is_empty(), "no audio tags");
    assert_eq!(
        (audio[0].head[0] >> 4, audio[0].head[1]),
        (10, 0),
        "the first audio tag is the AAC sequence header"
    );
    server.expect_log(
        &["play-flv stream=", &Server::key("s")],
        Duration::from_secs(2),
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Waiting for a stream

#[test]
fn flv_of_an_unpublished_stream_is_404_after_the_wait_timeout() {
    let _g = serial();
    let server = Server::start_with(http_opts("flv_wait_timeout_secs = 2"));
    let http = http_port(&server);
    let r = http_request(http, "GET", "/live/nope.flv", Duration::from_secs(10))
        .expect("an answer within 10 s");
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(
        r.elapsed >= Duration::from_millis(1700) && r.elapsed <= Duration::from_secs(5),
        "404 after {:?}, want about 2 s",
        r.elapsed
    );
    server.expect_log(
        &["play-flv stream=", "not published within 2 s"],
        Duration::from_secs(2),
    );

    // A published stream is answered at once under the same setting.
    let _publisher = publish(&server, "here");
    let started = Instant::now();
    let mut flv = HttpStream::open(http, "/live/here.flv", Duration::from_secs(5)).expect("open");
    assert_eq!(flv.status, 200, "{:?}", flv.headers);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "a published stream took {:?} to answer",
        started.elapsed()
    );
    let first = flv.next_chunk(Duration::from_secs(5)).expect("FLV header");
    assert_eq!(first, FLV_HEADER);
    let tags = read_flv_tags(&mut flv, &first, Duration::from_secs(5), |t| {
        t.iter().filter(|t| t.kind == 9).count() >= 2
    });
    assert!(tags
        .iter()
        .any(|t| t.kind == 9 && t.head[0] == 0x17 && t.head[1] == 1));
}

#[test]
fn flv_request_made_before_the_publish_gets_media_once_it_starts() {
    let _g = serial();
    let server = Server::start_with(http_opts(""));
    let http = http_port(&server);
    let mut flv = HttpStream::request(http, "/live/later.flv").expect("request");
    let key = Server::key("later");
    server.expect_log(&["play-flv stream=", &key], Duration::from_secs(5));
    // Nobody publishes yet: the request waits (no 404, no close).
    std::thread::sleep(Duration::from_millis(1500));
    let _publisher = publish(&server, "later");
    flv.read_head(Duration::from_secs(5))
        .expect("response head");
    assert_eq!(flv.status, 200, "{:?}", flv.headers);
    assert_eq!(flv.header("content-type"), Some("video/x-flv"));
    let first = flv.next_chunk(Duration::from_secs(5)).expect("FLV header");
    assert_eq!(first, FLV_HEADER);
    let tags = read_flv_tags(&mut flv, &first, Duration::from_secs(10), |t| {
        t.iter().filter(|t| t.kind == 9).count() >= 10
    });
    let video: Vec<&FlvTag> = tags.iter().filter(|t| t.kind == 9).collect();
    assert_eq!(
        (video[0].head[0], video[0].head[1]),
        (0x17, 0),
        "sequence header first"
    );
    assert_eq!(video[1].head[0] >> 4, 1, "then a keyframe");
    let lines = server.log_lines();
    let play_at = lines
        .iter()
        .position(|l| l.contains("play-flv stream=") && l.contains(&key));
    let publish_at = lines
        .iter()
        .position(|l| l.contains(&format!("publish stream={key} ")));
    assert!(
        play_at < publish_at,
        "the HTTP-FLV request was not made before the publish:\n{}",
        server.log_tail(20)
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Bad requests

#[test]
fn bad_requests_get_4xx_and_media_keeps_flowing() {
    let _g = serial();
    let server = Server::start_with(http_opts("header_timeout_secs = 1"));
    let http = http_port(&server);
    let mut publisher = publish(&server, "s");
    let player = LibPlayer::start(server.port, "s", LIFE);
    assert!(
        player.wait_video_above(0, Duration::from_secs(10)),
        "player got no video"
    );
    let before = player.video_frames();
    let t = Duration::from_secs(10);

    for path in ["/nope", "/api/v1/nothing", "/api/v2/streams", "/live"] {
        let r = http_request(http, "GET", path, t).unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(r.status, 404, "GET {path}: {}", r.text());
    }
    for (method, path) in [
        ("POST", "/api/v1/streams"),
        ("PUT", "/api/v1/clients"),
        ("POST", "/metrics"),
    ] {
        let r =
            http_request(http, method, path, t).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert_eq!(r.status, 405, "{method} {path}: {}", r.text());
    }

    let big = format!(
        "GET /api/v1/versions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let r = http_send(http, big.as_bytes(), t).expect("answer to a 20 KB head");
    assert_eq!(r.status, 431, "20 KB head: {}", r.text());

    let garbage: &[u8] = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\x8f\x00 garbage\r\n\r\n";
    let r = http_send(http, garbage, t).expect("answer to garbage");
    assert_eq!(r.status, 400, "garbage: {}", r.text());

    // Half a head, then nothing: answered 408 and closed after header_timeout_secs (1 s).
    let mut sock = TcpStream::connect(("127.0.0.1", http)).unwrap();
    sock.write_all(b"GET /api/v1/versions HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let started = Instant::now();
    sock.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match sock.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false, // timed out: still open
        }
    };
    let waited = started.elapsed();
    assert!(
        closed,
        "a stalled half head is still open after {waited:?}; got {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        waited >= Duration::from_millis(700) && waited <= Duration::from_secs(4),
        "stalled head closed after {waited:?}, want about 1 s"
    );
    assert!(
        got.starts_with(b"HTTP/1.1 408"),
        "stalled head answered {:?}",
        String::from_utf8_lossy(&got)
    );

    // An idle connection that sends nothing at all is closed too.
    let mut idle = RawConn::open(http);
    let waited = idle
        .wait_closed(Duration::from_secs(5))
        .expect("an idle HTTP connection is closed");
    assert!(
        waited <= Duration::from_secs(4),
        "idle closed after {waited:?}"
    );

    // Through all of it the publisher and the player kept going, and the API still answers.
    assert!(
        player.wait_video_above(before + 10, Duration::from_secs(5)),
        "the player stalled during the bad requests ({before} -> {} frames)",
        player.video_frames()
    );
    assert_eq!(player.ended(), None, "the player was disconnected");
    assert!(publisher.try_status().is_none(), "the publisher ended");
    let (status, v) = api_call(http, "GET", "/api/v1/versions");
    assert_eq!((status, v["code"].as_u64()), (200, Some(0)), "{v:#}");
    assert!(
        server.count_lines(|l| l.contains(" http ") && l.contains("error:")) >= 2,
        "bad requests are logged:\n{}",
        server.log_tail(20)
    );
}

// ---------------------------------------------------------------------------------------------
// 7. The web console in a real browser

fn chromium_path() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

#[test]
fn console_plays_the_stream_in_headless_chromium() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let browser_dir = root.join("tests/browser");
    let chromium = chromium_path();
    assert!(
        chromium.exists(),
        "{} is missing: `bash scripts/test.sh` installs Debian's chromium (or set CHROMIUM)",
        chromium.display()
    );
    let node = run(
        Command::new("node").arg("--version"),
        Duration::from_secs(10),
    );
    assert!(
        node.success(),
        "node is missing: `bash scripts/test.sh` installs it: {}",
        node.describe()
    );
    assert!(
        browser_dir
            .join("node_modules/playwright-core/package.json")
            .exists(),
        "playwright-core is missing: `bash scripts/test.sh` runs `npm ci` in tests/browser"
    );
    assert!(
        root.join("www/mpegts.js").exists(),
        "www/mpegts.js is missing: `bash scripts/console-deps.sh` installs it"
    );

    let _g = serial();
    let server = Server::start_with(http_opts(&format!(
        "static_dir = \"{}/www\"",
        env!("CARGO_MANIFEST_DIR")
    )));
    let http = http_port(&server);
    let _publisher = publish(&server, "s");
    let r = http_get(http, "/static/mpegts.js");
    assert_eq!(r.status, 200, "the console's player library is not served");

    let artifacts = root.join("target/test-artifacts");
    fs::create_dir_all(&artifacts).unwrap();
    let png = artifacts.join("console.png");
    let _ = fs::remove_file(&png);
    let out = run(
        Command::new("node")
            .arg(browser_dir.join("console.mjs"))
            .arg(format!("http://127.0.0.1:{http}/"))
            .arg(&png)
            .arg("live/s")
            .env("CHROMIUM", &chromium)
            .current_dir(&browser_dir),
        Duration::from_secs(90),
    );
    let report: Value = out
        .stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::Null);
    println!("browser report: {report}");
    assert!(out.success(), "the browser run failed: {}", out.describe());
    assert_eq!(report["ok"], true, "{report:#}");
    assert!(
        report["currentTime"].as_f64().is_some_and(|t| t > 1.5),
        "{report:#}"
    );
    assert_eq!(
        (
            report["videoWidth"].as_u64(),
            report["videoHeight"].as_u64()
        ),
        (Some(320), Some(240)),
        "{report:#}"
    );
    let shot = fs::read(&png).unwrap_or_default();
    assert!(
        shot.starts_with(b"\x89PNG\r\n\x1a\n") && shot.len() > 10_000,
        "no screenshot at {} ({} bytes)",
        png.display(),
        shot.len()
    );
    // The page really pulled HTTP-FLV from this server.
    server.expect_log(
        &["play-flv stream=", &Server::key("s")],
        Duration::from_secs(2),
    );
    // docs/console.png (the README's picture) is refreshed by hand from this artifact, so a
    // test run never changes a tracked file.
}
