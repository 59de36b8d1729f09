//! Bad peers of a cluster, table-driven, with real shardcast processes and fakes started here
//! on loopback: a coworker that answers garbage, holds the request, or answers too late; an
//! origin that accepts TCP and sends garbage or nothing; two origins that redirect to each
//! other. Each costs only the player (and upstream) concerned a clear error within its timeout,
//! while a player of another stream on the same server keeps receiving video.

mod common;

use common::*;
use std::any::Any;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const LIFE: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(15);
/// `start_timeout_ms` of every server under test: a player's bound.
const START_MS: u64 = 2000;
/// `connect_timeout_ms` (origin connect until Play.Start) and `coworker_timeout_ms`.
const CONNECT_MS: u64 = 1500;
const COWORKER_MS: u64 = 500;

/// The `[cluster]` timing lines every server here shares.
fn timing() -> String {
    format!(
        "start_timeout_ms = {START_MS}\nconnect_timeout_ms = {CONNECT_MS}\ncoworker_timeout_ms = {COWORKER_MS}\nbackoff_initial_ms = 200\nbackoff_max_ms = 500\n"
    )
}

/// What a fake origin does with a connection.
#[derive(Clone, Copy)]
enum FakeOrigin {
    /// Sends bytes that start like an RTMP handshake (version 3) and go on as noise.
    Garbage,
    /// Accepts and never sends a byte.
    Silent,
}

/// A TCP listener standing in for an origin; stops (and drops its connections) when dropped.
struct FakeTcp {
    port: u16,
    _worker: Worker,
}

fn fake_origin(mode: FakeOrigin) -> FakeTcp {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake origin");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let worker = Worker::spawn(move |stop| {
        let until = Instant::now() + Duration::from_secs(120);
        while !stop.load(Ordering::Relaxed) && Instant::now() < until {
            match listener.accept() {
                Ok((sock, _)) => {
                    let stop = stop.clone();
                    thread::spawn(move || serve_fake(sock, mode, &stop));
                }
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    FakeTcp {
        port,
        _worker: worker,
    }
}

fn serve_fake(mut sock: TcpStream, mode: FakeOrigin, stop: &AtomicBool) {
    let _ = sock.set_nonblocking(false);
    let _ = sock.set_read_timeout(Some(Duration::from_millis(50)));
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    };
    let mut first = true;
    let mut sink = [0u8; 4096];
    let until = Instant::now() + Duration::from_secs(60);
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        if let FakeOrigin::Garbage = mode {
            let mut b = noise(1537);
            if first {
                b[0] = 3;
                first = false;
            }
            if sock.write_all(&b).is_err() {
                return;
            }
        }
        match sock.read(&mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return,
        }
    }
}

/// A fake coworker API: `/api/v1/clusters` answered by `reply`.
fn fake_coworker(reply: HookReply) -> HookServer {
    HookServer::start(move |_, _| reply.clone())
}

/// One bad situation: the server players use, where the watched stream is published, what
/// else must stay up, the stream that cannot be had and the log line that says why.
struct Bed {
    server: Server,
    publish_port: u16,
    keep: Vec<Box<dyn Any>>,
    lost: &'static str,
    /// Parts of the log line (on `server`) that names the failure.
    log: Vec<String>,
    /// The line must come within this of the lost player's start.
    log_within: Duration,
}

struct Case {
    name: &'static str,
    build: fn() -> Bed,
}

fn key(name: &str) -> String {
    Server::key(name)
}

/// An origin whose only coworker is `fake`.
fn origin_with_coworker(fake: HookServer, says: &str) -> Bed {
    let server = Server::start_with(ServerOpts {
        http: true,
        extra: format!(
            "[cluster]\ncoworkers = [\"127.0.0.1:{}\"]\n{}",
            fake.port,
            timing()
        ),
        ..ServerOpts::default()
    });
    Bed {
        publish_port: server.port,
        log: vec![
            format!("coworker 127.0.0.1:{} stream={}", fake.port, key("ghost")),
            says.to_string(),
        ],
        server,
        keep: vec![Box::new(fake)],
        lost: "ghost",
        log_within: Duration::from_millis(COWORKER_MS + 1500),
    }
}

/// An edge whose origins are `fake` first, then a real origin (where the watched stream is).
fn edge_with_fake_origin(mode: FakeOrigin, says: &str, within: Duration) -> Bed {
    let fake = fake_origin(mode);
    let origin = Server::start();
    let server = Server::start_with(ServerOpts {
        http: true,
        extra: format!(
            "[cluster]\nmode = \"edge\"\norigins = [\"127.0.0.1:{}\", \"127.0.0.1:{}\"]\n{}",
            fake.port,
            origin.port,
            timing()
        ),
        ..ServerOpts::default()
    });
    Bed {
        publish_port: origin.port,
        log: vec![
            format!(
                "upstream stream={} origin=127.0.0.1:{} failed:",
                key("ghost"),
                fake.port
            ),
            says.to_string(),
        ],
        server,
        keep: vec![Box::new(fake), Box::new(origin)],
        lost: "ghost",
        log_within: within,
    }
}

/// Two origins that redirect plays of `loop` to each other (each one's coworker says the
/// other has it), and an edge of the first.
fn redirect_loop() -> Bed {
    let [px, hx, py, hy] = free_ports();
    let says_at = |port: u16| {
        move |path: &str, _: &serde_json::Value| {
            let origin = if path.contains("stream=loop") {
                serde_json::json!({"ip": "127.0.0.1", "port": port, "vhost": VHOST})
            } else {
                serde_json::Value::Null
            };
            HookReply::Ok(serde_json::json!({"code": 0, "data": {"origin": origin}}).to_string())
        }
    };
    let (fx, fy) = (
        HookServer::start(says_at(py)),
        HookServer::start(says_at(px)),
    );
    let redirecting = |ports: (u16, u16), coworker: u16| {
        Server::start_with(ServerOpts {
            http: true,
            ports: Some(ports),
            extra: format!(
                "[cluster]\ncoworkers = [\"127.0.0.1:{coworker}\"]\non_remote = \"redirect\"\n{}",
                timing()
            ),
            ..ServerOpts::default()
        })
    };
    let x = redirecting((px, hx), fx.port);
    let y = redirecting((py, hy), fy.port);
    let server = Server::start_with(ServerOpts {
        http: true,
        extra: format!(
            "[cluster]\nmode = \"edge\"\norigins = [\"127.0.0.1:{px}\"]\n{}",
            timing()
        ),
        ..ServerOpts::default()
    });
    Bed {
        publish_port: x.port,
        log: vec![
            format!(
                "upstream stream={} origin=127.0.0.1:{px} failed:",
                key("loop")
            ),
            "redirect loop".into(),
        ],
        server,
        keep: vec![Box::new(x), Box::new(y), Box::new(fx), Box::new(fy)],
        lost: "loop",
        log_within: Duration::from_millis(START_MS),
    }
}

const CASES: &[Case] = &[
    Case {
        name: "coworker answers garbage",
        build: || {
            let fake = fake_coworker(HookReply::Ok("}{ not json".into()));
            origin_with_coworker(fake, "answered garbage")
        },
    },
    Case {
        name: "coworker holds the request",
        build: || origin_with_coworker(fake_coworker(HookReply::Hold), "no answer within 500 ms"),
    },
    Case {
        name: "coworker answers too late",
        build: || {
            let late = serde_json::json!({"code": 0, "data": {"origin": null}}).to_string();
            let fake = fake_coworker(HookReply::Delay(Duration::from_secs(3), late));
            origin_with_coworker(fake, "no answer within 500 ms")
        },
    },
    Case {
        name: "origin sends garbage",
        // A protocol error: well before the connect timeout.
        build: || edge_with_fake_origin(FakeOrigin::Garbage, "", Duration::from_millis(1000)),
    },
    Case {
        name: "origin sends nothing",
        build: || {
            edge_with_fake_origin(
                FakeOrigin::Silent,
                "no NetStream.Play.Start within 1.5s",
                Duration::from_millis(CONNECT_MS + 1500),
            )
        },
    },
    Case {
        name: "origins redirect to each other",
        build: redirect_loop,
    },
];

#[test]
fn bad_cluster_peers_cost_only_the_player_concerned_a_timely_error() {
    let _g = serial();
    for case in CASES {
        let bed = (case.build)();
        let name = case.name;
        let _publisher = SynthPublisher::start(bed.publish_port, "busy", 1500, 25, 25, LIFE);
        let watcher = LibPlayer::start(bed.server.port, "busy", LIFE);
        assert!(
            watcher.wait_video_above(10, WAIT),
            "{name}: the watched stream plays ({} frames)",
            watcher.video_frames()
        );
        let before = watcher.video_frames();
        let t0 = Instant::now();
        let lost = LibPlayer::start(bed.server.port, bed.lost, LIFE);
        // The failure is named in the log, in time (before the player's own timeout).
        let parts: Vec<&str> = bed.log.iter().map(String::as_str).collect();
        let line = bed.server.expect_log(&parts, WAIT);
        let logged = t0.elapsed();
        assert!(
            logged < bed.log_within + Duration::from_millis(500),
            "{name}: `{line}` after {logged:?}"
        );
        assert!(
            wait_until(WAIT, || lost.ended().is_some()),
            "{name}: the player of {} was closed",
            bed.lost
        );
        let took = t0.elapsed();
        assert!(
            lost.has_seen(|s| match s {
                Seen::Status(c) => c == "NetStream.Play.StreamNotFound",
                Seen::Ended(why) => why.contains("NetStream.Play.StreamNotFound"),
                _ => false,
            }),
            "{name}: {:?}",
            lost.seen()
        );
        let bound = Duration::from_millis(START_MS + 2500);
        assert!(
            took >= Duration::from_millis(START_MS - 200) && took < bound,
            "{name}: closed after {took:?} (start_timeout_ms = {START_MS})"
        );
        // Meanwhile the other stream kept up (25 fps: at least half of it) and goes on.
        let during = watcher.video_frames() - before;
        let want = (took.as_secs_f64() * 25.0 / 2.0) as u64;
        assert!(
            during >= want,
            "{name}: the watcher got {during} frames in {took:?}"
        );
        let n = watcher.video_frames();
        assert!(
            watcher.wait_video_above(n + 10, WAIT),
            "{name}: the watched stream kept playing"
        );
        assert!(watcher.ended().is_none(), "{name}: {:?}", watcher.ended());
        eprintln!("{name}: player closed after {took:?}; {line}");
        drop(bed.keep);
    }
}
