//! Behind a load balancer, with the real binary: bad and untrusted PROXY headers (each closes
//! only its connection, with one log line), quiet health checks, SIGTERM's drain, and a real
//! Debian HAProxy (started by the test from a generated haproxy.cfg on free ports) in front of
//! two nodes: players land on both, the nodes see the client's address rather than the
//! balancer's, a loaded node reports a lower weight, and a drained node keeps its players while
//! new ones go to the other.

mod common;

use common::*;
use shardcast::lb::proxy_protocol::{encode_v2, encode_v2_local};
use socket2::{Domain, Socket, Type};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const LIFE: Duration = Duration::from_secs(90);
const WAIT: Duration = Duration::from_secs(10);
/// The address HAProxy (and the tests acting as it) connects from.
const BALANCER: &str = "127.0.0.3";

/// A connection to `port` from `source` (any 127/8 address works on loopback).
fn connect_from(source: &str, port: u16) -> TcpStream {
    let sk = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let src: SocketAddr = format!("{source}:0").parse().unwrap();
    sk.bind(&src.into()).expect("bind source");
    let dst: SocketAddr = ([127, 0, 0, 1], port).into();
    sk.connect(&dst.into()).expect("connect");
    let s: TcpStream = sk.into();
    s.set_nodelay(true).unwrap();
    s
}

/// Read until the server closes; `Err` if it is still open after `timeout`.
fn wait_closed(s: &mut TcpStream, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("still open".into());
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Ok(()), // reset: closed too
        }
    }
}

fn node_opts(extra_server: &str, extra: &str) -> ServerOpts {
    ServerOpts {
        server: format!(
            "handshake_timeout_secs = 2\nproxy_protocol = \"optional\"\n{extra_server}"
        ),
        http: true,
        http_extra: "proxy_protocol = \"optional\"\n".into(),
        extra: format!("[lb]\ntrusted_proxies = [\"{BALANCER}/32\"]\n{extra}"),
        ..ServerOpts::default()
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// One bad (or merely odd) start of a connection from `source`.
struct Case {
    name: &'static str,
    source: &'static str,
    /// Text of the one `refused:` line, or `None` when nothing alarming may be logged.
    log: Option<&'static str>,
    run: fn(&mut TcpStream),
}

fn v2_with(mutate: fn(&mut Vec<u8>)) -> Vec<u8> {
    let mut h = encode_v2(addr("192.0.2.1:1000"), addr("127.0.0.1:1935"));
    mutate(&mut h);
    h
}

fn send(s: &mut TcpStream, b: &[u8]) {
    let _ = s.write_all(b);
}

#[test]
fn bad_and_untrusted_proxy_headers_close_only_their_connection() {
    let _g = serial();
    let server = Server::start_with(node_opts("", ""));
    let _pubr = SynthPublisher::start(server.port, "bad", 2000, 25, 25, LIFE);
    let watcher = LibPlayer::start(server.port, "bad", LIFE);
    assert!(
        watcher.wait_video_above(5, WAIT),
        "the watching player plays"
    );
    let cases = [
        Case {
            name: "a valid header from an untrusted peer",
            source: "127.0.0.1",
            log: Some("PROXY header from a peer that is not a trusted proxy"),
            run: |s| send(s, &encode_v2(addr("192.0.2.1:1"), addr("127.0.0.1:1"))),
        },
        Case {
            name: "v1 over 107 bytes without CRLF",
            source: BALANCER,
            log: Some("no CRLF within 107 bytes"),
            run: |s| send(s, format!("PROXY TCP4 {}", "1".repeat(120)).as_bytes()),
        },
        Case {
            name: "v1 ending in a bare LF",
            source: BALANCER,
            log: Some("lone CR or LF"),
            run: |s| send(s, b"PROXY TCP4 192.0.2.1 127.0.0.1 1000 1935\n"),
        },
        Case {
            name: "v2 with a wrong signature",
            source: BALANCER,
            log: Some("signature is wrong"),
            run: |s| send(s, &v2_with(|h| h[10] = b'X')),
        },
        Case {
            name: "v2 with a length shorter than its addresses",
            source: BALANCER,
            log: Some("address bytes"),
            run: |s| send(s, &v2_with(|h| h[15] = 4)),
        },
        Case {
            name: "v2 with an undefined family",
            source: BALANCER,
            log: Some("family/protocol byte"),
            run: |s| send(s, &v2_with(|h| h[13] = 0x51)),
        },
        Case {
            name: "v2 truncated",
            source: BALANCER,
            log: Some("truncated"),
            run: |s| {
                send(s, &v2_with(|_| ())[..20]);
                let _ = s.shutdown(Shutdown::Write);
            },
        },
        Case {
            name: "v1 trickled past the handshake timeout",
            source: BALANCER,
            log: Some("no complete PROXY header within 2 s"),
            run: |s| {
                for b in b"PROXY TCP4 192.0.2.1 127.0.0.1 1000 1935" {
                    if s.write_all(&[*b]).is_err() {
                        return;
                    }
                    thread::sleep(Duration::from_millis(100));
                }
            },
        },
        Case {
            name: "a LOCAL health check",
            source: BALANCER,
            log: None,
            run: |s| {
                send(s, &encode_v2_local());
                let _ = s.shutdown(Shutdown::Write);
            },
        },
        Case {
            name: "a connect-and-close health check",
            source: BALANCER,
            log: None,
            run: |s| {
                let _ = s.shutdown(Shutdown::Write);
            },
        },
    ];
    for case in &cases {
        // Only this case's lines: an earlier case's connection may have had the same port.
        let mark = server.log_mark();
        let mut s = connect_from(case.source, server.port);
        let port = s.local_addr().unwrap().port();
        (case.run)(&mut s);
        wait_closed(&mut s, Duration::from_secs(6))
            .unwrap_or_else(|e| panic!("{}: the server must close it: {e}", case.name));
        let mine = format!("peer={}:{port} ", case.source);
        let lines = || -> Vec<String> {
            server
                .log_lines_since(mark)
                .into_iter()
                .filter(|l| l.contains(&mine))
                .collect()
        };
        match case.log {
            Some(text) => {
                assert!(
                    wait_until(WAIT, || !lines().is_empty()),
                    "{}: a log line for {mine}",
                    case.name
                );
                let l = lines();
                assert_eq!(l.len(), 1, "{}: one line: {l:?}", case.name);
                assert!(
                    l[0].contains("refused:") && l[0].contains(text),
                    "{}: the line says why ({text}): {}",
                    case.name,
                    l[0]
                );
            }
            None => {
                thread::sleep(Duration::from_millis(200));
                let l = lines();
                assert!(
                    l.iter()
                        .all(|l| !l.contains("WARN") && !l.contains("ERROR")),
                    "{}: nothing alarming: {l:?}",
                    case.name
                );
            }
        }
        let before = watcher.video_frames();
        assert!(
            watcher.wait_video_above(before + 3, WAIT),
            "{}: the watching player keeps playing",
            case.name
        );
    }
    assert!(watcher.ended().is_none());
}

#[test]
fn sigterm_with_a_grace_period_drains_then_stops() {
    let _g = serial();
    let agent = free_port();
    let mut server = Server::start_with(node_opts(
        "shutdown_grace_secs = 60\n",
        &format!("agent_listen = \"127.0.0.1:{agent}\"\n"),
    ));
    let http = server.http_port.unwrap();
    let agent_line = || {
        let mut s = TcpStream::connect(("127.0.0.1", agent)).expect("agent");
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut line = String::new();
        s.read_to_string(&mut line).expect("agent line");
        line
    };
    assert!(wait_until(WAIT, || http_get(http, "/healthz").status == 200));
    assert!(agent_line().ends_with("% ready\n"));
    let mut pubr = SynthPublisher::start(server.port, "term", 2000, 25, 25, LIFE);
    let mut p = LibPlayer::start(server.port, "term", LIFE);
    assert!(p.wait_video_above(5, WAIT));

    server.signal(libc::SIGTERM);
    assert!(
        wait_until(WAIT, || agent_line() == "drain\n"),
        "agent: drain"
    );
    assert_eq!(http_get(http, "/healthz").status, 503);
    let before = p.video_frames();
    assert!(
        p.wait_video_above(before + 25, WAIT),
        "the player keeps playing"
    );
    let mut late = LibPlayer::start(server.port, "term", LIFE);
    assert!(
        late.wait_video_above(3, WAIT),
        "new connections are still accepted"
    );
    assert!(server.is_running());

    // The last clients leave: the server stops long before the grace period ends.
    p.stop();
    late.stop();
    pubr.stop();
    let t = Instant::now();
    let status = server.wait_exit(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| s.success()),
        "clean exit: {status:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(15));
    server.expect_log(&["drain: no publishers or players left"], WAIT);
}

// ------------------------------------------------------------------------------------------
// With a real HAProxy in front.

const HAPROXY_TEMPLATE: &str = "global
    stats socket {dir}/haproxy.sock mode 600 level admin
defaults
    mode tcp
    timeout connect 2s
    timeout client 120s
    timeout server 120s
frontend rtmp
    bind 127.0.0.1:{front}
    default_backend nodes
backend nodes
    balance {balance}
    source {balancer}
    server node-1 127.0.0.1:{rtmp1} weight 100 check inter 1s send-proxy-v2 {agent1}
    server node-2 127.0.0.1:{rtmp2} weight 100 check inter 1s send-proxy-v2 {agent2}
";

struct Haproxy {
    proc: Proc,
    dir: TempDir,
    front: u16,
}

impl Haproxy {
    fn start(nodes: [(u16, Option<u16>); 2]) -> Haproxy {
        let dir = TempDir::new("haproxy");
        let front = free_port();
        let agent = |a: Option<u16>| {
            a.map(|p| format!("agent-check agent-port {p} agent-inter 500ms"))
                .unwrap_or_default()
        };
        let cfg = HAPROXY_TEMPLATE
            .replace("{dir}", &dir.path().display().to_string())
            .replace("{front}", &front.to_string())
            .replace("{balance}", "leastconn")
            .replace("{balancer}", BALANCER)
            .replace("{rtmp1}", &nodes[0].0.to_string())
            .replace("{rtmp2}", &nodes[1].0.to_string())
            .replace("{agent1}", &agent(nodes[0].1))
            .replace("{agent2}", &agent(nodes[1].1));
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, cfg).unwrap();
        let log = std::fs::File::create(dir.join("haproxy.log")).unwrap();
        let bin = if std::path::Path::new("/usr/sbin/haproxy").exists() {
            "/usr/sbin/haproxy"
        } else {
            "haproxy"
        };
        let proc = Proc::spawn(
            "haproxy",
            Command::new(bin)
                .arg("-db")
                .arg("-f")
                .arg(&path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log),
        );
        let h = Haproxy { proc, dir, front };
        assert!(
            wait_until(WAIT, || TcpStream::connect(("127.0.0.1", front)).is_ok()),
            "haproxy listens: {}",
            std::fs::read_to_string(h.dir.join("haproxy.log")).unwrap_or_default()
        );
        h
    }

    fn command(&self, cmd: &str) -> String {
        let mut s = UnixStream::connect(self.dir.join("haproxy.sock")).expect("stats socket");
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(format!("{cmd}\n").as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    /// `show stat` field `field` of server `name` in the backend.
    fn stat(&self, name: &str, field: &str) -> String {
        let out = self.command("show stat");
        let mut lines = out.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let col = header.iter().position(|h| *h == field).expect("stat field");
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|f| f.first() == Some(&"nodes") && f.get(1) == Some(&name))
            .and_then(|f| f.get(col).map(|v| v.to_string()))
            .unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        self.proc.kill();
        if thread::panicking() {
            let log = std::fs::read_to_string(self.dir.join("haproxy.log")).unwrap_or_default();
            eprintln!("--- haproxy log ---\n{}", tail(&log, 30));
        }
    }
}

/// RTMP players on a node, from its API.
fn players_on(http: u16) -> usize {
    let (_, v) = api_call(http, "GET", "/api/v1/clients");
    v["clients"]
        .as_array()
        .map(|a| a.iter().filter(|c| c["type"] == "rtmp-play").count())
        .unwrap_or(0)
}

#[test]
fn players_through_haproxy_land_on_both_nodes_as_themselves_and_drain_moves_them() {
    let _g = serial();
    let [a1, a2] = free_ports();
    // Rules against the balancer's address must not touch clients behind it.
    let rules = "[security]\nrules = [\"deny play 127.0.0.3\"]\n";
    let cap = "max_connections = 40\n";
    let n1 = Server::start_with(node_opts(
        cap,
        &format!("agent_listen = \"127.0.0.1:{a1}\"\n{rules}"),
    ));
    let n2 = Server::start_with(node_opts(
        cap,
        &format!("agent_listen = \"127.0.0.1:{a2}\"\n{rules}"),
    ));
    let (h1, h2) = (n1.http_port.unwrap(), n2.http_port.unwrap());
    let hap = Haproxy::start([(n1.port, Some(a1)), (n2.port, Some(a2))]);
    let _p1 = SynthPublisher::start(n1.port, "cam", 2000, 25, 25, LIFE);
    let _p2 = SynthPublisher::start(n2.port, "cam", 2000, 25, 25, LIFE);
    assert!(
        wait_until(WAIT, || hap.stat("node-1", "status") == "UP"
            && hap.stat("node-2", "status") == "UP"),
        "both nodes UP: {}",
        hap.command("show stat")
    );

    // Players through the balancer land on both nodes and play.
    let mut players: Vec<LibPlayer> = (0..6)
        .map(|_| {
            let p = LibPlayer::start(hap.front, "cam", LIFE);
            assert!(
                p.wait_video_above(3, WAIT),
                "a player through haproxy plays"
            );
            p
        })
        .collect();
    assert!(
        wait_until(WAIT, || players_on(h1) >= 2 && players_on(h2) >= 2),
        "both nodes have players: {} and {}",
        players_on(h1),
        players_on(h2)
    );
    // The nodes see the client (127.0.0.1), never the balancer (127.0.0.3).
    for n in [&n1, &n2] {
        let plays: Vec<String> = n
            .log_lines()
            .into_iter()
            .filter(|l| l.contains(" play stream="))
            .collect();
        assert!(!plays.is_empty());
        assert!(
            plays.iter().all(|l| l.contains("peer=127.0.0.1:")),
            "play lines name the client: {plays:?}"
        );
        assert!(
            n.log_lines().iter().all(|l| !l.contains("peer=127.0.0.3:")
                || !(l.contains("play") || l.contains("connect"))),
            "no client is logged as the balancer"
        );
        assert_eq!(n.count_lines(|l| l.contains("refused")), 0);
    }

    // More load on node-1 (players straight to it): its agent weight falls below node-2's.
    let direct: Vec<LibPlayer> = (0..16)
        .map(|_| LibPlayer::start(n1.port, "cam", LIFE))
        .collect();
    for p in &direct {
        assert!(p.wait_video_above(1, WAIT));
    }
    assert!(
        wait_until(Duration::from_secs(25), || {
            let (w1, w2) = (hap.stat("node-1", "weight"), hap.stat("node-2", "weight"));
            matches!((w1.parse::<u32>(), w2.parse::<u32>()), (Ok(a), Ok(b)) if a + 20 <= b)
        }),
        "haproxy shows node-1 lighter: {} vs {}",
        hap.stat("node-1", "weight"),
        hap.stat("node-2", "weight")
    );
    drop(direct);

    // Drain node-1: haproxy marks it DRAIN, new players go to node-2, node-1's keep playing.
    let (status, _) = api_call(h1, "POST", "/api/v1/lb/drain");
    assert_eq!(status, 200);
    assert!(
        wait_until(WAIT, || hap.stat("node-1", "status").starts_with("DRAIN")),
        "haproxy sees the drain: {}",
        hap.stat("node-1", "status")
    );
    assert!(wait_until(WAIT, || players_on(h1) <= 6));
    let on1 = players_on(h1);
    let on2 = players_on(h2);
    for _ in 0..4 {
        let p = LibPlayer::start(hap.front, "cam", LIFE);
        assert!(
            p.wait_video_above(3, WAIT),
            "a new player plays during the drain"
        );
        players.push(p);
    }
    assert!(
        wait_until(WAIT, || players_on(h2) >= on2 + 4),
        "new players went to node-2 ({} -> {})",
        on2,
        players_on(h2)
    );
    // No more than before: the direct players' connections may still be closing when `on1` is
    // taken (seen: 5 then 3), so the count can fall but must not rise.
    let now1 = players_on(h1);
    assert!(
        now1 <= on1,
        "none went to the drained node ({on1} -> {now1})"
    );
    for p in &players {
        let before = p.video_frames();
        assert!(
            p.wait_video_above(before + 5, WAIT),
            "every player keeps playing"
        );
    }
}

#[test]
fn the_shipped_haproxy_setup_is_valid_and_consistent() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/haproxy");
    let cfg = std::fs::read_to_string(dir.join("haproxy.cfg")).unwrap();
    let master = shardcast::config::Config::load(&dir.join("master.toml")).expect("master.toml");
    assert_eq!(master.server.listen, "127.0.0.1:19360");
    for n in [1, 2] {
        let node = shardcast::config::Config::load(&dir.join(format!("node-{n}.toml")))
            .unwrap_or_else(|e| panic!("node-{n}.toml: {e}"));
        let rtmp = format!("127.0.0.1:1936{n}");
        assert_eq!(node.server.listen, rtmp);
        assert_eq!(node.http.listen, format!("127.0.0.1:1986{n}"));
        assert!(node.lb.trusted.contains(BALANCER.parse().unwrap()));
        let line = cfg
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("server node-{n} ")))
            .expect("server line");
        let agent = node.lb.agent_listen.rsplit(':').next().unwrap();
        for part in [
            rtmp.as_str(),
            "weight 100",
            "send-proxy-v2",
            &format!("agent-port {agent}"),
        ] {
            assert!(
                line.contains(part),
                "node-{n}'s server line has {part}: {line}"
            );
        }
        assert!(
            master.forward.destinations.contains(&rtmp),
            "the master forwards to node-{n}"
        );
    }
    assert!(cfg.contains("source 127.0.0.3") && cfg.contains("balance leastconn"));
    // HAProxy itself accepts it (the stats socket folder need not exist for a check).
    let out = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(dir.join("haproxy.cfg"))
        .output()
        .expect("run haproxy -c");
    assert!(
        out.status.success(),
        "haproxy -c: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
