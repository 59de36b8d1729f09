//! Behind a load balancer, on the in-process server: PROXY headers naming the client for the
//! board, rules, `/stat` and `/control/drop`; the agent-check line, its weight under load, and
//! draining from the API. No HAProxy here (see `e2e_lb.rs`): the tests write the headers.

mod common;

use common::*;
use shardcast::config::Config;
use shardcast::lb::proxy_protocol::{encode_v1, encode_v2};
use shardcast::server::{self, Handle};
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const LIFE: Duration = Duration::from_secs(40);
const WAIT: Duration = Duration::from_secs(10);

fn start_server(extra: &str) -> Handle {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nshards = 2\nproxy_protocol = \"optional\"\n{extra}\n[http]\nenabled = true\nlisten = \"127.0.0.1:0\"\nproxy_protocol = \"optional\"\n[lb]\ntrusted_proxies = [\"127.0.0.1\"]\nagent_listen = \"127.0.0.1:0\"\n"
    );
    let cfg = Config::from_toml(&text, "lb harness").expect("valid test config");
    server::start(cfg).expect("server starts")
}

fn http_port(h: &Handle) -> u16 {
    h.http_addr.expect("http on").port()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A header from the balancer saying the client is `client`.
fn v2_from(client: &str) -> Vec<u8> {
    encode_v2(addr(client), addr("127.0.0.1:1935"))
}

fn agent_line(h: &Handle) -> String {
    let mut s = TcpStream::connect(h.agent_addr.expect("agent on")).expect("agent connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut line = String::new();
    s.read_to_string(&mut line).expect("agent line");
    line
}

fn board_peers(h: &Handle) -> Vec<String> {
    h.global()
        .board
        .read()
        .iter()
        .flat_map(|s| s.clients.iter().map(|c| c.peer.to_string()))
        .collect()
}

#[test]
fn the_header_names_the_client_for_the_board_rules_stat_and_drop() {
    let _g = serial();
    let h = start_server("[security]\nrules = [\"deny play 192.0.2.66\"]");
    let _pubr = SynthPublisher::start(h.rtmp_addr.port(), "lb", 2000, 25, 25, LIFE);
    let p =
        LibPlayer::start_with_prefix(h.rtmp_addr.port(), "lb", LIFE, v2_from("192.0.2.10:4000"));
    assert!(
        p.wait_video_above(5, WAIT),
        "the player behind the header plays"
    );
    assert!(
        wait_until(WAIT, || board_peers(&h)
            .iter()
            .any(|p| p == "192.0.2.10:4000")),
        "the board lists the header's client, not the socket peer: {:?}",
        board_peers(&h)
    );
    // A v1 header naming a denied address: the rule applies to it, not to 127.0.0.1.
    let v1 = encode_v1(addr("192.0.2.66:5000"), addr("127.0.0.1:1935"));
    let denied = LibPlayer::start_with_prefix(h.rtmp_addr.port(), "lb", LIFE, v1);
    assert!(
        wait_until(WAIT, || denied.ended().is_some()),
        "the denied client is refused"
    );
    assert_eq!(denied.video_frames(), 0);

    // HTTP behind the balancer too: the API answers after a header.
    let mut raw = v2_from("192.0.2.11:4001");
    raw.extend_from_slice(b"GET /stat HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let stat = http_send(http_port(&h), &raw, WAIT).expect("/stat behind a header");
    assert_eq!(stat.status, 200);
    let xml = stat.text();
    for part in [
        "<rtmp>",
        "<application>",
        "<name>live</name>",
        "<name>lb</name>",
        "<address>192.0.2.10</address>",
        "<publishing/>",
        "<nclients>",
    ] {
        assert!(xml.contains(part), "/stat has {part}: {xml}");
    }

    // nginx-rtmp's drop, by address: only that player goes.
    let r = http_get(
        http_port(&h),
        "/control/drop/subscriber?app=live&name=lb&addr=192.0.2.10",
    );
    assert_eq!((r.status, r.text().as_str()), (200, "1"));
    assert!(
        wait_until(WAIT, || p.ended().is_some()),
        "the dropped player is gone"
    );
    let r = http_get(
        http_port(&h),
        "/control/drop/publisher?app=live&name=nothing",
    );
    assert_eq!((r.status, r.text().as_str()), (200, "0"));
    // nginx-rtmp's own answer for an unknown filter; a bad address is a client error.
    let r = http_get(http_port(&h), "/control/drop/everyone?app=live");
    assert_eq!(r.status, 500, "{}", r.text());
    let r = http_get(http_port(&h), "/control/drop/client?addr=nope");
    assert_eq!(r.status, 400, "{}", r.text());
    h.shutdown().expect("clean stop");
}

#[test]
fn drain_from_the_api_keeps_players_and_tells_the_balancer() {
    let _g = serial();
    let h = start_server("");
    let port = http_port(&h);
    assert!(
        wait_until(WAIT, || http_get(port, "/healthz").status == 200),
        "healthz 200 once every shard is up"
    );
    assert_eq!(agent_line(&h), "100% ready\n");
    let _pubr = SynthPublisher::start(h.rtmp_addr.port(), "dr", 2000, 25, 25, LIFE);
    let p = LibPlayer::start(h.rtmp_addr.port(), "dr", LIFE);
    assert!(p.wait_video_above(5, WAIT));

    let (status, v) = api_call(port, "POST", "/api/v1/lb/drain");
    assert_eq!((status, v["admin"].as_str()), (200, Some("drain")));
    assert_eq!(agent_line(&h), "drain\n");
    let r = http_get(port, "/healthz");
    assert_eq!((r.status, r.text().as_str()), (503, "draining"));
    // Existing players keep playing, and a new one is still accepted.
    let before = p.video_frames();
    assert!(
        p.wait_video_above(before + 10, WAIT),
        "the player keeps playing"
    );
    let late = LibPlayer::start(h.rtmp_addr.port(), "dr", LIFE);
    assert!(
        late.wait_video_above(3, WAIT),
        "a late player is still served"
    );

    let (status, v) = api_call(port, "DELETE", "/api/v1/lb/drain");
    assert_eq!((status, v["admin"].as_str()), (200, Some("ready")));
    assert!(agent_line(&h).ends_with("% ready\n"));
    assert_eq!(http_get(port, "/healthz").status, 200);

    // Maintenance: the agent says `maint` (HAProxy takes the node out), health says 503.
    let (status, v) = api_call(port, "POST", "/api/v1/lb/maint");
    assert_eq!((status, v["admin"].as_str()), (200, Some("maint")));
    assert_eq!(agent_line(&h), "maint\n");
    assert_eq!(http_get(port, "/healthz").status, 503);
    let (status, v) = api_call(port, "DELETE", "/api/v1/lb/maint");
    assert_eq!((status, v["admin"].as_str()), (200, Some("ready")));
    assert!(agent_line(&h).ends_with("% ready\n"));
    h.shutdown().expect("clean stop");
}

#[test]
fn the_agent_weight_falls_with_load_and_holds_steady() {
    let _g = serial();
    // 10 connections of capacity: 6 open is 60% load, a weight near 40%.
    let h = start_server("max_connections = 10");
    let weight = |h: &Handle| -> u8 {
        let line = agent_line(h);
        line.split('%')
            .next()
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("weight in {line:?}"))
    };
    assert_eq!(weight(&h), 100);
    let _pubr = SynthPublisher::start(h.rtmp_addr.port(), "w", 2000, 25, 25, LIFE);
    let players: Vec<_> = (0..5)
        .map(|_| LibPlayer::start(h.rtmp_addr.port(), "w", LIFE))
        .collect();
    for p in &players {
        assert!(p.wait_video_above(1, WAIT));
    }
    assert!(
        wait_until(Duration::from_secs(20), || weight(&h) <= 45),
        "the weight falls toward 40% under 60% load: {}",
        agent_line(&h)
    );
    // Smoothed: under steady load the weight stays within a few points, check after check.
    let seen: Vec<u8> = (0..4)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(600));
            weight(&h)
        })
        .collect();
    let (lo, hi) = (seen.iter().min().unwrap(), seen.iter().max().unwrap());
    assert!(hi - lo <= 3, "steady load, steady weight: {seen:?}");
    assert!(*hi >= 30, "not below the load's share: {seen:?}");
    h.shutdown().expect("clean stop");
}
