//! Access control against the real binary: allow/deny rules, the publish secret (with a per-app
//! override), HTTP hooks that allow, refuse, fail or never answer, a SIGHUP reload that changes
//! the rules without dropping anyone, and the connection and stream limits. Real ffmpeg /
//! ffprobe and library clients, all on 127.0.0.1.

mod common;

use common::*;
use shardcast::rtmp::amf0::Amf0Value;
use shardcast::rtmp::client::{ClientEvent, ClientRole};
use std::fs;
use std::thread;
use std::time::{Duration, Instant};

const PUBLISH_WAIT: Duration = Duration::from_secs(15);

fn key(app: &str, name: &str) -> String {
    format!("{VHOST}/{app}/{name}")
}

fn url(server: &Server, app: &str, name: &str) -> String {
    format!("rtmp://127.0.0.1:{}/{app}/{name}", server.port)
}

fn security(rules: &[&str]) -> String {
    let list: Vec<String> = rules.iter().map(|r| format!("\"{r}\"")).collect();
    format!("[security]\nrules = [{}]\n", list.join(", "))
}

fn start_with_rules(rules: &[&str]) -> Server {
    Server::start_with(ServerOpts {
        extra: security(rules),
        ..ServerOpts::default()
    })
}

/// A library player of `live/NAME` that must get `NetStream.Play.Start`.
fn player_started(server: &Server, name: &str) -> LibPlayer {
    let p = LibPlayer::start(server.port, name, Duration::from_secs(60));
    assert!(
        wait_until(Duration::from_secs(10), || p
            .has_seen(|s| *s == Seen::PlayStarted)),
        "player of {name} not started: {:?}",
        p.seen()
    );
    p
}

/// The player keeps getting video: `n` more frames within `within`.
fn assert_flowing(p: &LibPlayer, n: u64, within: Duration, context: &str) {
    let before = p.video_frames();
    assert!(
        p.wait_video_above(before + n, within),
        "{context}: player stalled at {} video frames ({:?})",
        p.video_frames(),
        p.ended()
    );
}

// ---------------------------------------------------------------------------------------------
// 1. Rules

#[test]
fn deny_publish_by_address_refuses_ffmpeg_but_play_is_still_allowed() {
    let _g = serial();
    let server = start_with_rules(&["deny publish 127.0.0.1"]);
    let stderr = try_ffmpeg_publish(&server, &server.url("r"), &Server::key("r"), PUBLISH_WAIT)
        .expect_refused("deny publish 127.0.0.1");
    let line = server.expect_log(
        &[
            &format!("publish of {} refused: ", Server::key("r")),
            "refused: denied by rule `deny publish 127.0.0.1`",
        ],
        Duration::from_secs(3),
    );
    assert!(line.contains(" error: "), "{line}");
    assert!(
        stderr.to_lowercase().contains("denied") || stderr.contains("error"),
        "ffmpeg says nothing about the refusal:\n{stderr}"
    );
    // Play is another action: no rule matches it, so it is allowed (the player waits).
    let _player = player_started(&server, "r");
    server.expect_log(
        &[&format!("play stream={} ", Server::key("r"))],
        Duration::from_secs(3),
    );
}

#[test]
fn deny_play_by_address_refuses_ffprobe_but_publish_works() {
    let _g = serial();
    let server = start_with_rules(&["deny play 127.0.0.1"]);
    let mut publisher =
        try_ffmpeg_publish(&server, &server.url("p"), &Server::key("p"), PUBLISH_WAIT)
            .expect_accepted("deny play must not stop publishing");
    let started = Instant::now();
    let probe = ffprobe_streams(&server.url("p"), Duration::from_secs(15));
    assert!(probe.is_err(), "ffprobe played a denied stream: {probe:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "ffprobe took {:?} to give up",
        started.elapsed()
    );
    server.expect_log(
        &[
            &format!("play of {} refused: ", Server::key("p")),
            "refused: denied by rule `deny play 127.0.0.1`",
        ],
        Duration::from_secs(3),
    );
    assert!(
        publisher.try_status().is_none(),
        "the publisher died when a player was refused"
    );
}

#[test]
fn cidr_rules_and_first_match_ordering() {
    let _g = serial();
    // A CIDR covering loopback.
    {
        let server = start_with_rules(&["deny publish 127.0.0.0/8"]);
        try_ffmpeg_publish(&server, &server.url("c"), &Server::key("c"), PUBLISH_WAIT)
            .expect_refused("deny publish 127.0.0.0/8");
        server.expect_log(
            &["refused: denied by rule `deny publish 127.0.0.0/8`"],
            Duration::from_secs(3),
        );
    }
    // A CIDR that does not cover loopback: no match, allowed.
    {
        let server = start_with_rules(&["deny publish 10.0.0.0/8", "deny play 192.168.0.0/16"]);
        let _p = try_ffmpeg_publish(&server, &server.url("c"), &Server::key("c"), PUBLISH_WAIT)
            .expect_accepted("deny publish 10.0.0.0/8 must not match 127.0.0.1");
        let streams = ffprobe_streams(&server.url("c"), Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("play under a non-matching deny: {e}"));
        assert_test_streams(&streams, "non-matching CIDR");
    }
    // allow before deny: the first match (allow) decides.
    {
        let server = start_with_rules(&["allow publish 127.0.0.1", "deny publish all"]);
        let _p = try_ffmpeg_publish(&server, &server.url("o"), &Server::key("o"), PUBLISH_WAIT)
            .expect_accepted("allow publish 127.0.0.1 before deny publish all");
        assert_eq!(
            server.count_lines(|l| l.contains("denied by rule")),
            0,
            "a rule refused something: {}",
            server.log_tail(20)
        );
    }
    // deny before allow: the deny matches first.
    {
        let server = start_with_rules(&["deny publish all", "allow publish 127.0.0.1"]);
        try_ffmpeg_publish(&server, &server.url("o"), &Server::key("o"), PUBLISH_WAIT)
            .expect_refused("deny publish all before allow publish 127.0.0.1");
        server.expect_log(
            &["refused: denied by rule `deny publish all`"],
            Duration::from_secs(3),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Publish secret

/// Connect with `app` and `tcUrl` as given, createStream, publish `name`; the onStatus code.
fn raw_publish(port: u16, app: &str, tc_url: &str, name: &str) -> Result<String, String> {
    let mut c = RawConn::open(port);
    c.handshake()?;
    let obj = Amf0Value::object([
        ("app", Amf0Value::string(app)),
        ("tcUrl", Amf0Value::string(tc_url)),
    ]);
    c.command(0, "connect", 1.0, vec![obj]);
    c.wait_command(Duration::from_secs(5), |m| {
        m.name == "_result" && m.transaction_id == 1.0
    })?;
    let sid = c.create_stream()?;
    c.command(
        sid,
        "publish",
        3.0,
        vec![
            Amf0Value::Null,
            Amf0Value::string(name),
            Amf0Value::string("live"),
        ],
    );
    let status = c.wait_command(Duration::from_secs(5), |m| m.name == "onStatus")?;
    Ok(status
        .args
        .first()
        .and_then(|o| o.get("code"))
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string())
}

#[test]
fn publish_secret_is_required_per_app() {
    let _g = serial();
    let server = Server::start_with(ServerOpts {
        extra: "[security]\npublish_secret = \"k\"\n\n\
                [[vhost]]\nname = \"__defaultVhost__\"\n\
                [[vhost.app]]\nname = \"open\"\npublish_secret = \"\"\n"
            .into(),
        ..ServerOpts::default()
    });
    let ks = Server::key("s");

    try_ffmpeg_publish(&server, &server.url("s"), &ks, PUBLISH_WAIT).expect_refused("no secret");
    server.expect_log(
        &[&format!("publish of {ks} refused: publish secret missing")],
        Duration::from_secs(3),
    );

    let stderr = try_ffmpeg_publish(&server, &server.url("s?secret=bad"), &ks, PUBLISH_WAIT)
        .expect_refused("wrong secret");
    server.expect_log(
        &[&format!("publish of {ks} refused: wrong publish secret")],
        Duration::from_secs(3),
    );
    assert!(
        !stderr.contains("secret=k"),
        "the right secret leaked to the client:\n{stderr}"
    );

    let mut with_secret = try_ffmpeg_publish(&server, &server.url("s?secret=k"), &ks, PUBLISH_WAIT)
        .expect_accepted("?secret=k");
    // Players need no secret.
    let player = player_started(&server, "s");
    assert_flowing(
        &player,
        10,
        Duration::from_secs(10),
        "player without a secret",
    );

    let _token = try_ffmpeg_publish(
        &server,
        &server.url("t?token=k"),
        &Server::key("t"),
        PUBLISH_WAIT,
    )
    .expect_accepted("?token=k");

    // The secret on the app (and so on the tcUrl) counts too.
    let port = server.port;
    let code = raw_publish(
        port,
        "live?secret=k",
        &format!("rtmp://127.0.0.1:{port}/live?secret=k"),
        "u",
    )
    .expect("publish with the secret on the app");
    assert_eq!(code, "NetStream.Publish.Start", "secret on the app");
    let code = raw_publish(
        port,
        "live?secret=nope",
        &format!("rtmp://127.0.0.1:{port}/live?secret=nope"),
        "u2",
    )
    .unwrap_or_else(|e| e);
    assert!(
        code.contains("Publish.Denied") || code.contains("closed"),
        "wrong secret on the app: {code}"
    );

    // [[vhost.app]] "open" turns the secret off there.
    let _open = try_ffmpeg_publish(
        &server,
        &url(&server, "open", "s"),
        &key("open", "s"),
        PUBLISH_WAIT,
    )
    .expect_accepted("app `open` has publish_secret = \"\"");

    assert!(
        with_secret.try_status().is_none(),
        "the publisher with the secret died"
    );
    assert_flowing(&player, 10, Duration::from_secs(10), "player at the end");
}

// ---------------------------------------------------------------------------------------------
// 3. Hooks

#[test]
fn hooks_allow_refuse_fail_closed_and_hold_up_only_their_client() {
    let _g = serial();
    let hooks = HookServer::start(|path, body| {
        let stream = body.get("stream").and_then(|v| v.as_str()).unwrap_or("");
        match (path, stream) {
            ("on_publish" | "on_play", "bad") => HookReply::Ok("{\"code\":1}".into()),
            ("on_publish" | "on_play", "boom") => HookReply::Status(500),
            ("on_publish" | "on_play", "slow") => HookReply::Hold,
            _ => HookReply::Ok("{\"code\":0}".into()),
        }
    });
    let hook_addr = format!("127.0.0.1:{}", hooks.port);
    let server = Server::start_with(ServerOpts {
        extra: format!(
            "[hooks]\non_connect = [\"{}\"]\non_publish = [\"{}\"]\non_unpublish = [\"{}\"]\n\
             on_play = [\"{}\"]\non_stop = [\"{}\"]\ntimeout_ms = 1000\n",
            hooks.url("on_connect"),
            hooks.url("on_publish"),
            hooks.url("on_unpublish"),
            hooks.url("on_play"),
            hooks.url("on_stop"),
        ),
        ..ServerOpts::default()
    });

    // --- allowed: on_connect then on_publish, with every field.
    let mut good = try_ffmpeg_publish(
        &server,
        &server.url("good?tag=1"),
        &Server::key("good"),
        PUBLISH_WAIT,
    )
    .expect_accepted("hooks answer {\"code\":0} for `good`");
    let reqs = hooks.requests();
    let pub_idx = reqs
        .iter()
        .position(|r| r.path == "on_publish" && r.field("stream") == "good")
        .unwrap_or_else(|| panic!("no on_publish for good: {reqs:?}"));
    let on_publish = &reqs[pub_idx];
    let client_id = on_publish.field("client_id").to_string();
    assert!(!client_id.is_empty(), "{:?}", on_publish.body);
    for (k, v) in [
        ("action", "on_publish"),
        ("ip", "127.0.0.1"),
        ("vhost", VHOST),
        ("app", "live"),
        ("stream", "good"),
        ("param", "?tag=1"),
    ] {
        assert_eq!(
            on_publish.field(k),
            v,
            "on_publish `{k}`: {:?}",
            on_publish.body
        );
    }
    assert!(
        on_publish.field("tcUrl").ends_with("/live"),
        "tcUrl: {:?}",
        on_publish.body
    );
    let conn_idx = reqs
        .iter()
        .position(|r| r.path == "on_connect" && r.field("client_id") == client_id)
        .unwrap_or_else(|| panic!("no on_connect for client {client_id}: {reqs:?}"));
    assert!(conn_idx < pub_idx, "on_connect came after on_publish");
    let on_connect = &reqs[conn_idx];
    for (k, v) in [
        ("action", "on_connect"),
        ("ip", "127.0.0.1"),
        ("vhost", VHOST),
        ("app", "live"),
    ] {
        assert_eq!(
            on_connect.field(k),
            v,
            "on_connect `{k}`: {:?}",
            on_connect.body
        );
    }
    let player = player_started(&server, "good");
    assert_flowing(&player, 10, Duration::from_secs(10), "player of good");
    let on_play = hooks
        .wait_for(Duration::from_secs(3), |r| {
            r.path == "on_play" && r.field("stream") == "good"
        })
        .expect("on_play for good");
    assert_eq!(on_play.field("action"), "on_play");

    // --- refused by the answer's code, and by a 500.
    for (name, why) in [
        ("bad", "refused (body `{\"code\":1}`)"),
        ("boom", "answered HTTP 500"),
    ] {
        let stderr =
            try_ffmpeg_publish(&server, &server.url(name), &Server::key(name), PUBLISH_WAIT)
                .expect_refused(name);
        let line = server.expect_log(
            &[
                &format!("publish of {} refused: hook ", Server::key(name)),
                why,
            ],
            Duration::from_secs(3),
        );
        assert!(line.contains(&hook_addr), "log names the hook: {line}");
        assert!(
            !stderr.contains(&hook_addr),
            "the hook address reached the client ({name}):\n{stderr}"
        );
    }
    // What a client is told, word for word: no address, no answer body.
    let mut c = LibClient::connect(server.port, "bad", ClientRole::Publish).expect("connect");
    let told = c
        .pump_until(Duration::from_secs(5), |e| {
            *e == ClientEvent::PublishStarted
        })
        .expect_err("publish of bad must be refused");
    assert!(told.contains("on_publish hook"), "client told: {told}");
    assert!(
        !told.contains(&hook_addr) && !told.contains("code"),
        "client told too much: {told}"
    );
    drop(c);

    // --- a hook that never answers: refused after timeout_ms, and nobody else waits.
    let slow_log = server.dir.join("slow-publisher.log");
    let mut slow = spawn_ffmpeg_publisher(&server.url("slow"), &slow_log);
    let held = hooks
        .wait_for(Duration::from_secs(10), |r| {
            r.path == "on_publish" && r.field("stream") == "slow"
        })
        .expect("on_publish for slow reaches the hook");
    let slow_shard = server
        .wait_for_log(
            &[
                &format!(" client={} ", held.field("client_id")),
                "connect app=",
            ],
            Duration::from_secs(2),
        )
        .and_then(|l| log_field(&l, "shard").and_then(|s| s.parse::<usize>().ok()));
    let slow_refused = format!("publish of {} refused: ", Server::key("slow"));
    let slow_pending = || server.count_lines(|l| l.contains(&slow_refused)) == 0;
    // A publisher and players of other streams are served at once meanwhile, before the slow
    // publish is decided, including one on the slow client's own shard.
    let t = Instant::now();
    let mut fast =
        SynthPublisher::start(server.port, "fast", 2000, 25, 25, Duration::from_secs(30));
    server.expect_log(
        &[&format!("publish stream={} ", Server::key("fast"))],
        Duration::from_secs(2),
    );
    let fast_took = t.elapsed();
    assert!(
        slow_pending(),
        "the slow publish was decided within {:?}, before the quick publisher was checked",
        held.at.elapsed()
    );
    assert!(
        fast_took < Duration::from_millis(700),
        "a publisher waited {fast_took:?} while another client's hook was slow"
    );
    let mut quick = Vec::new();
    let mut same_shard_served = false;
    let tries = 10;
    for _ in 0..tries {
        let t = Instant::now();
        let mut c = LibClient::connect(server.port, "good", ClientRole::Play).expect("connect");
        let evs = c.pump_until(Duration::from_secs(3), |e| {
            matches!(e, ClientEvent::Media { .. })
        });
        let took = t.elapsed();
        assert!(evs.is_ok(), "player during the slow hook: {evs:?}");
        assert!(
            slow_pending(),
            "the slow publish was decided within {:?}, before quick player {} was served",
            held.at.elapsed(),
            quick.len()
        );
        assert!(
            took < Duration::from_millis(700),
            "a player waited {took:?} while another client's hook was slow"
        );
        let shard = shard_of_peer(&server, c.local_port(), Duration::from_secs(1));
        same_shard_served |= shard.is_some() && shard == slow_shard;
        quick.push(c);
        if same_shard_served {
            break;
        }
    }
    assert!(
        slow_shard.is_none() || same_shard_served,
        "no quick player landed on the slow client's shard {slow_shard:?} ({tries} tries)"
    );
    let refused = server
        .wait_for_line(Duration::from_secs(5), |l| l.contains(&slow_refused))
        .expect("slow publish never refused");
    let decided_after = held.at.elapsed();
    eprintln!(
        "slow hook: shard {slow_shard:?}; {} quick players (same shard served: \
         {same_shard_served}), quick publisher in {fast_took:?}; refused after {decided_after:?}",
        quick.len()
    );
    assert!(
        refused.contains("no answer within 1000 ms") && refused.contains(&hook_addr),
        "{refused}"
    );
    assert!(
        decided_after >= Duration::from_millis(900) && decided_after < Duration::from_secs(4),
        "the slow hook was given up after about {decided_after:?}, want about 1 s"
    );
    let status = slow.wait_timeout(Duration::from_secs(10));
    let slow_stderr = fs::read_to_string(&slow_log).unwrap_or_default();
    assert!(
        status.is_some_and(|s| !s.success()),
        "ffmpeg publishing `slow` did not fail: {status:?}\n{slow_stderr}"
    );
    assert!(
        !slow_stderr.contains(&hook_addr),
        "hook address reached the client:\n{slow_stderr}"
    );
    assert!(fast.ended().is_none(), "fast publisher: {:?}", fast.ended());
    fast.stop();

    // --- notices: on_stop when players leave, on_unpublish when the publisher does.
    let player_ports: Vec<u16> = quick.iter().map(|c| c.local_port()).collect();
    drop(quick);
    let stops = wait_until(Duration::from_secs(5), || {
        hooks
            .requests()
            .iter()
            .filter(|r| r.path == "on_stop" && r.field("stream") == "good")
            .count()
            >= player_ports.len()
    });
    assert!(
        stops,
        "want {} on_stop notices for good: {:?}",
        player_ports.len(),
        hooks.requests()
    );
    good.kill();
    let unpub = hooks
        .wait_for(Duration::from_secs(5), |r| {
            r.path == "on_unpublish" && r.field("stream") == "good"
        })
        .unwrap_or_else(|| panic!("no on_unpublish for good: {:?}", hooks.requests()));
    assert_eq!(unpub.field("action"), "on_unpublish");
    assert_eq!(unpub.field("client_id"), client_id);
    assert_eq!(unpub.field("param"), "?tag=1");
    assert_eq!(unpub.field("app"), "live");
}

// ---------------------------------------------------------------------------------------------
// 4. Reload

#[test]
fn sighup_reload_applies_rules_to_new_requests_only_and_refuses_a_bad_file() {
    let _g = serial();
    let mut server = Server::start();
    let mut publisher = publish(&server, "a");
    let player = player_started(&server, "a");
    assert_flowing(&player, 10, Duration::from_secs(10), "before reload");
    let publisher_peer = server
        .wait_for_log(
            &[&format!("publish stream={} ", Server::key("a"))],
            Duration::from_secs(1),
        )
        .and_then(|l| log_field(&l, "peer").map(str::to_string))
        .expect("publisher's peer");

    let original = fs::read_to_string(&server.config_path).expect("read config");
    let denying = format!("{original}\n{}", security(&["deny publish all"]));
    fs::write(&server.config_path, &denying).expect("write config");
    server.signal(libc::SIGHUP);
    server.expect_log(&["config reload accepted"], Duration::from_secs(5));
    let all_shards = wait_until(Duration::from_secs(5), || {
        server.count_lines(|l| l.contains("config reloaded")) >= server.shards
    });
    assert!(
        all_shards,
        "not every shard took the new config:\n{}",
        server.log_tail(20)
    );

    try_ffmpeg_publish(&server, &server.url("b"), &Server::key("b"), PUBLISH_WAIT)
        .expect_refused("deny publish all after reload");
    server.expect_log(
        &[
            &format!("publish of {} refused: ", Server::key("b")),
            "denied by rule `deny publish all`",
        ],
        Duration::from_secs(3),
    );
    // The running publish and play were not touched.
    assert!(publisher.try_status().is_none(), "the publisher died");
    assert_flowing(&player, 10, Duration::from_secs(10), "after reload");
    assert!(
        player.ended().is_none(),
        "player dropped: {:?}",
        player.ended()
    );
    assert_eq!(
        server.count_lines(|l| l.contains(&publisher_peer) && l.contains(" close reason=")),
        0,
        "the publisher's connection was closed by the reload"
    );
    // Play is still allowed for newcomers.
    let late = player_started(&server, "a");
    assert_flowing(&late, 5, Duration::from_secs(10), "new player after reload");

    // A bad file is refused and the running config stays.
    fs::write(
        &server.config_path,
        format!("{denying}\n[bogus]\nkey = 1\n"),
    )
    .expect("write");
    let reloaded_before = server.count_lines(|l| l.contains("config reloaded"));
    server.signal(libc::SIGHUP);
    let line = server.expect_log(&["reload refused"], Duration::from_secs(5));
    assert!(
        line.contains("bogus"),
        "refusal does not name the key: {line}"
    );
    thread::sleep(Duration::from_millis(600)); // two ticker rounds
    assert_eq!(
        server.count_lines(|l| l.contains("config reloaded")),
        reloaded_before,
        "a shard took the refused config"
    );
    assert!(server.is_running(), "the server died on a bad reload");
    try_ffmpeg_publish(&server, &server.url("c"), &Server::key("c"), PUBLISH_WAIT)
        .expect_refused("the rules of the running config stay after a refused reload");
    server.expect_log(
        &[&format!(
            "publish of {} refused: denied by rule",
            Server::key("c")
        )],
        Duration::from_secs(3),
    );
    assert!(publisher.try_status().is_none(), "the publisher died");
    assert_flowing(
        &player,
        5,
        Duration::from_secs(10),
        "after the refused reload",
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Limits

#[test]
fn max_connections_per_ip_refuses_the_third() {
    let _g = serial();
    let server = Server::start_with(ServerOpts {
        server: "handshake_timeout_secs = 30\nmax_connections_per_ip = 2\n".into(),
        ..ServerOpts::default()
    });
    let mut held = handshaken_conns(server.port, 2);
    let mut third = RawConn::open(server.port);
    let closed = third.wait_closed(Duration::from_secs(3));
    assert!(
        closed.is_ok(),
        "third connection from 127.0.0.1: {closed:?}"
    );
    server.expect_log(
        &[
            &third.peer(),
            " refused: max_connections_per_ip (2) reached for 127.0.0.1",
        ],
        Duration::from_secs(2),
    );
    // The two inside the limit still work.
    for c in &mut held {
        c.rtmp_connect().expect("held connection still serves");
    }
    // Closing one frees a slot.
    held.pop();
    let mut admitted = false;
    for _ in 0..25 {
        let mut c = RawConn::open(server.port);
        if c.handshake().is_ok() {
            admitted = true;
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    assert!(admitted, "no connection admitted after one of two closed");
}

#[test]
fn max_streams_refuses_a_second_stream_while_the_first_flows() {
    let _g = serial();
    let server = Server::start_with(ServerOpts {
        server: "handshake_timeout_secs = 2\nmax_streams = 1\n".into(),
        ..ServerOpts::default()
    });
    let mut one = publish(&server, "one");
    let player = player_started(&server, "one");
    assert_flowing(&player, 10, Duration::from_secs(10), "first stream");

    try_ffmpeg_publish(
        &server,
        &server.url("two"),
        &Server::key("two"),
        PUBLISH_WAIT,
    )
    .expect_refused("second stream under max_streams = 1");
    server.expect_log(
        &[
            &format!("publish refused stream={}: ", Server::key("two")),
            "max_streams (1) reached",
        ],
        Duration::from_secs(3),
    );
    assert!(one.try_status().is_none(), "the first publisher died");
    assert_flowing(
        &player,
        10,
        Duration::from_secs(10),
        "first stream after the refusal",
    );

    // When the first stream ends its slot is free again.
    one.kill();
    server.expect_log(&[" close reason=", "role=publish"], Duration::from_secs(5));
    let mut second = None;
    for _ in 0..5 {
        match try_ffmpeg_publish(
            &server,
            &server.url("two"),
            &Server::key("two"),
            PUBLISH_WAIT,
        ) {
            PublishAttempt::Accepted(p) => {
                second = Some(p);
                break;
            }
            refused => {
                eprintln!("retrying: {}", refused.describe());
                thread::sleep(Duration::from_millis(300));
            }
        }
    }
    assert!(
        second.is_some(),
        "the stream slot was not given back:\n{}",
        server.log_tail(20)
    );
}
