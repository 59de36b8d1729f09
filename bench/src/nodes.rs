//! Per-node figures behind a balancer (`--node-api`). The players connect to the balancer; each
//! node's `/api/v1/clients` lists its clients by their real address (the PROXY header's), so a
//! bench player is found on the node whose client list holds its own local `ip:port`. Per node
//! this gives the players that landed there, how many of them kept up, the egress (the node's
//! byte counter over the window, and the matched players' received bytes) and the agent weight.
//!
//! The fetching is a small blocking HTTP client on its own thread ([`watch`]), so a slow or
//! dead node never holds up the load; matching and aggregation are pure and unit-tested.

use crate::httpflv::{parse_head, BodyDecoder};
use crate::player::PlayerReport;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Bound on one API request (connect, send, read the whole answer).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest API answer read (a client list of ~100k clients).
const MAX_ANSWER: usize = 64 << 20;

/// `http://host[:port][/]` to `host:port` (port 80 by default); `None` when it is not one.
pub fn api_hostport(url: &str) -> Option<String> {
    let rest = url.strip_prefix("http://")?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '@', '?', '#']) {
        return None;
    }
    let has_port = match rest.rfind(']') {
        Some(close) => rest[close..].contains(':'),
        None => rest.contains(':'),
    };
    Some(if has_port {
        rest.to_string()
    } else {
        format!("{rest}:80")
    })
}

/// One blocking `GET` of `path` on `hostport`, its JSON body. Any status but 200 is an error.
pub fn get_json(hostport: &str, path: &str) -> Result<Value, String> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let addr = hostport
        .to_socket_addrs()
        .map_err(|e| format!("{hostport}: {e}"))?
        .next()
        .ok_or_else(|| format!("{hostport}: no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT)
        .map_err(|e| format!("{hostport}: connect: {e}"))?;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    s.set_write_timeout(Some(left()))
        .map_err(|e| e.to_string())?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nUser-Agent: shardcast-bench\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("{hostport}{path}: write: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        s.set_read_timeout(Some(left()))
            .map_err(|e| e.to_string())?;
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("{hostport}{path}: read: {e}")),
        }
        if raw.len() > MAX_ANSWER {
            return Err(format!("{hostport}{path}: answer over {MAX_ANSWER} bytes"));
        }
        if Instant::now() >= deadline {
            return Err(format!("{hostport}{path}: no complete answer in time"));
        }
    }
    decode_answer(&raw).map_err(|e| format!("{hostport}{path}: {e}"))
}

/// A whole HTTP answer (head and body, read until the close) to its JSON body.
pub fn decode_answer(raw: &[u8]) -> Result<Value, String> {
    let head = parse_head(raw)
        .map_err(|e| e.to_string())?
        .ok_or("incomplete response head")?;
    if head.status != 200 {
        return Err(format!("HTTP status {}", head.status));
    }
    let framing = head.framing().map_err(|e| e.to_string())?;
    let mut body = Vec::new();
    BodyDecoder::new(framing)
        .feed(&raw[head.len..], |d| {
            body.extend_from_slice(d);
            Ok(())
        })
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&body).map_err(|e| format!("bad JSON: {e}"))
}

/// A client as a node's `/api/v1/clients` lists it (only what the matching needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeClient {
    /// The client's own address (the PROXY header's when it came through the balancer).
    pub peer: SocketAddr,
    pub publish: bool,
    pub send_bytes: u64,
}

/// An address in the form both sides compare: IPv4-mapped IPv6 as plain IPv4.
pub fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// The `clients` of a `/api/v1/clients` answer. Clients without a parsable `peer` are skipped.
pub fn parse_clients(v: &Value) -> Result<Vec<NodeClient>, String> {
    let list = v["clients"]
        .as_array()
        .ok_or("no `clients` array in the answer")?;
    Ok(list
        .iter()
        .filter_map(|c| {
            let peer: SocketAddr = c["peer"].as_str()?.parse().ok()?;
            Some(NodeClient {
                peer: canonical(peer),
                publish: c["publish"].as_bool().unwrap_or(false)
                    || c["type"].as_str().is_some_and(|t| t.contains("publish")),
                send_bytes: c["send_bytes"].as_u64().unwrap_or(0),
            })
        })
        .collect())
}

/// What one node said at one instant.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeFetch {
    /// Seconds since the run's epoch when the answers came.
    pub at_s: f64,
    /// Total bytes the node sent (`/api/v1/summaries` `bytes_out`).
    pub bytes_out: Option<u64>,
    /// Players and publishers the node counts (every client, the bench's or not).
    pub node_players: Option<u64>,
    pub node_publishers: Option<u64>,
    /// The agent's weight, 1..100 (`/api/v1/lb`), when the node has the route.
    pub weight: Option<u64>,
    /// The client list (only fetched at the window's end).
    #[serde(skip)]
    pub clients: Option<Vec<NodeClient>>,
    pub error: Option<String>,
}

impl NodeFetch {
    /// Fills the figures of a `/api/v1/summaries` answer.
    pub fn absorb_summaries(&mut self, v: &Value) {
        let sys = &v["data"]["system"];
        self.bytes_out = sys["bytes_out"].as_u64();
        self.node_players = sys["players"].as_u64();
        self.node_publishers = sys["publishers"].as_u64();
    }

    /// Fills the weight of a `/api/v1/lb` answer.
    pub fn absorb_lb(&mut self, v: &Value) {
        self.weight = v["weight"].as_u64();
    }

    fn note(&mut self, e: String) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }
}

/// Egress in Mbit/s between two fetches of one node, from its byte counter.
pub fn egress_mbit_s(a: &NodeFetch, b: &NodeFetch) -> Option<f64> {
    let secs = b.at_s - a.at_s;
    match (a.bytes_out, b.bytes_out) {
        (Some(x), Some(y)) if secs > 0.0 => Some(y.saturating_sub(x) as f64 * 8.0 / secs / 1e6),
        _ => None,
    }
}

/// Fetches one node's summaries and agent weight, and with `clients` its client list.
pub fn fetch(api: &str, clients: bool, epoch: Instant) -> NodeFetch {
    let mut f = NodeFetch::default();
    let Some(hp) = api_hostport(api) else {
        f.error = Some(format!("`{api}` is not an http://host:port URL"));
        return f;
    };
    if clients {
        match get_json(&hp, "/api/v1/clients").and_then(|v| parse_clients(&v)) {
            Ok(c) => f.clients = Some(c),
            Err(e) => f.note(e),
        }
    }
    match get_json(&hp, "/api/v1/summaries") {
        Ok(v) => f.absorb_summaries(&v),
        Err(e) => f.note(e),
    }
    f.at_s = epoch.elapsed().as_secs_f64();
    // The weight is optional (nodes without `[lb]` may lack the route): no error for it.
    if let Ok(v) = get_json(&hp, "/api/v1/lb") {
        f.absorb_lb(&v);
    }
    f
}

/// Every fetch of a run: one per node at the window's start and end, and the periodic ones.
#[derive(Debug, Clone, Default)]
pub struct NodeWatch {
    pub apis: Vec<String>,
    pub start: Vec<NodeFetch>,
    pub end: Vec<NodeFetch>,
    /// `--node-every`: each node's fetch at each tick, in time order.
    pub ticks: Vec<Vec<NodeFetch>>,
}

/// The node watcher's plan, offsets from the run's epoch.
#[derive(Debug, Clone)]
pub struct WatchPlan {
    pub apis: Vec<String>,
    pub window_start: Duration,
    pub window_end: Duration,
    /// Periodic fetches from the start until the window's end; `None`: window edges only.
    pub every: Option<Duration>,
    pub quiet: bool,
}

/// Runs the plan on the calling thread (the runner gives it its own): sleeps to each instant,
/// fetches every node. Ends right after the window's end.
pub fn watch(plan: &WatchPlan, epoch: Instant) -> NodeWatch {
    let mut out = NodeWatch {
        apis: plan.apis.clone(),
        ..Default::default()
    };
    let sleep_until = |at: Duration| {
        let t = epoch + at;
        let now = Instant::now();
        if t > now {
            std::thread::sleep(t - now);
        }
    };
    let mut next_tick = plan.every;
    let mut last: Option<Vec<NodeFetch>> = None;
    loop {
        // The next instant: a tick, the window's start, or its end.
        let mut at = plan.window_end;
        if out.start.is_empty() {
            at = at.min(plan.window_start);
        }
        if let Some(t) = next_tick.filter(|t| *t < plan.window_end) {
            at = at.min(t);
        }
        sleep_until(at);
        let is_end = at >= plan.window_end;
        let is_start = out.start.is_empty() && at >= plan.window_start;
        let fetches: Vec<NodeFetch> = plan.apis.iter().map(|a| fetch(a, is_end, epoch)).collect();
        if next_tick.is_some_and(|t| t <= at) {
            if !plan.quiet {
                eprintln!("{}", tick_line(&plan.apis, last.as_deref(), &fetches));
            }
            last = Some(fetches.clone());
            out.ticks.push(fetches.clone());
            let every = plan.every.unwrap_or(Duration::MAX);
            next_tick = next_tick.map(|t| t.saturating_add(every));
        }
        if is_start {
            out.start = fetches.clone();
        }
        if is_end {
            out.end = fetches;
            return out;
        }
    }
}

/// The progress line of one tick: players, egress since the last tick and weight per node.
fn tick_line(apis: &[String], last: Option<&[NodeFetch]>, now: &[NodeFetch]) -> String {
    let parts: Vec<String> = apis
        .iter()
        .zip(now)
        .enumerate()
        .map(|(i, (api, f))| {
            let egress = last
                .and_then(|l| l.get(i))
                .and_then(|l| egress_mbit_s(l, f));
            match &f.error {
                Some(e) => format!("{}: {e}", short(api)),
                None => format!(
                    "{}: {} players, {} Mbit/s, weight {}",
                    short(api),
                    f.node_players.map_or("-".into(), |p| p.to_string()),
                    egress.map_or("-".into(), |e| format!("{e:.0}")),
                    f.weight.map_or("-".into(), |w| w.to_string()),
                ),
            }
        })
        .collect();
    let at = now.first().map_or(0.0, |f| f.at_s);
    format!("[{at:6.1}s nodes   ] {}", parts.join(" | "))
}

/// A node's name in tables: the API URL without its scheme.
pub fn short(api: &str) -> &str {
    let s = api.strip_prefix("http://").unwrap_or(api);
    s.strip_suffix('/').unwrap_or(s)
}

/// For each player's local address, the index of the node listing it as a (non-publishing)
/// client. A player on no list (it ended before the fetch, or its node did not answer) gets
/// `None`; an address two nodes list goes to the first.
pub fn assign(
    locals: &[Option<SocketAddr>],
    nodes: &[Option<&[NodeClient]>],
) -> Vec<Option<usize>> {
    let mut by_peer: HashMap<SocketAddr, usize> = HashMap::new();
    for (i, clients) in nodes.iter().enumerate() {
        for c in clients.iter().flat_map(|c| c.iter()).filter(|c| !c.publish) {
            by_peer.entry(c.peer).or_insert(i);
        }
    }
    locals
        .iter()
        .map(|l| l.and_then(|a| by_peer.get(&canonical(a)).copied()))
        .collect()
}

/// One node's share of the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeSummary {
    pub api: String,
    /// Bench players found on this node's client list at the window's end.
    pub players: usize,
    pub kept_up: usize,
    pub kept_up_fraction: Option<f64>,
    /// The matched players' received bytes over the window, Mbit/s.
    pub players_mbit_s: f64,
    /// The node's own byte counter over the window (every client it sends to), Mbit/s.
    pub egress_mbit_s: Option<f64>,
    /// Players and publishers the node counted at the window's end (the bench's or not).
    pub node_players: Option<u64>,
    pub node_publishers: Option<u64>,
    /// Agent weight at the window's start and end.
    pub weight_start: Option<u64>,
    pub weight_end: Option<u64>,
    pub error: Option<String>,
}

/// One periodic fetch of every node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeTick {
    pub at_s: f64,
    /// Per node, in `--node-api` order.
    pub nodes: Vec<NodePoint>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodePoint {
    pub players: Option<u64>,
    /// Since the previous tick.
    pub egress_mbit_s: Option<f64>,
    pub weight: Option<u64>,
}

/// Per-node figures of a run with `--node-api`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodesSummary {
    /// Players found on some node, and not found on any.
    pub matched: usize,
    pub unmatched: usize,
    /// Unmatched players that kept up all the same (their node's list missed them).
    pub unmatched_kept_up: usize,
    pub nodes: Vec<NodeSummary>,
    pub ticks: Vec<NodeTick>,
}

/// Folds the fetches and the players' reports into per-node figures. `window_s` is the
/// measurement window the players' bytes were counted over.
pub fn summarize(w: &NodeWatch, players: &[PlayerReport], window_s: f64) -> NodesSummary {
    let lists: Vec<Option<&[NodeClient]>> = (0..w.apis.len())
        .map(|i| w.end.get(i).and_then(|f| f.clients.as_deref()))
        .collect();
    let locals: Vec<Option<SocketAddr>> = players.iter().map(|p| p.local_addr).collect();
    let node_of = assign(&locals, &lists);
    let mut nodes: Vec<NodeSummary> = w
        .apis
        .iter()
        .enumerate()
        .map(|(i, api)| {
            let (start, end) = (w.start.get(i), w.end.get(i));
            NodeSummary {
                api: api.clone(),
                egress_mbit_s: start.zip(end).and_then(|(a, b)| egress_mbit_s(a, b)),
                node_players: end.and_then(|f| f.node_players),
                node_publishers: end.and_then(|f| f.node_publishers),
                weight_start: start.and_then(|f| f.weight),
                weight_end: end.and_then(|f| f.weight),
                error: end
                    .and_then(|f| f.error.clone())
                    .or_else(|| start.and_then(|f| f.error.clone())),
                ..Default::default()
            }
        })
        .collect();
    let mut out = NodesSummary::default();
    let mut window_bytes = vec![0u64; nodes.len()];
    for (p, n) in players.iter().zip(&node_of) {
        match n {
            Some(i) => {
                out.matched += 1;
                nodes[*i].players += 1;
                nodes[*i].kept_up += usize::from(p.kept_up);
                window_bytes[*i] += p.window_bytes;
            }
            None => {
                out.unmatched += 1;
                out.unmatched_kept_up += usize::from(p.kept_up);
            }
        }
    }
    for (n, b) in nodes.iter_mut().zip(window_bytes) {
        n.kept_up_fraction = (n.players > 0).then(|| n.kept_up as f64 / n.players as f64);
        n.players_mbit_s = if window_s > 0.0 {
            b as f64 * 8.0 / window_s / 1e6
        } else {
            0.0
        };
    }
    out.nodes = nodes;
    let mut prev: Option<&Vec<NodeFetch>> = None;
    for t in &w.ticks {
        out.ticks.push(NodeTick {
            at_s: t.first().map_or(0.0, |f| f.at_s),
            nodes: t
                .iter()
                .enumerate()
                .map(|(i, f)| NodePoint {
                    players: f.node_players,
                    egress_mbit_s: prev
                        .and_then(|p| p.get(i))
                        .and_then(|p| egress_mbit_s(p, f)),
                    weight: f.weight,
                })
                .collect(),
        });
        prev = Some(t);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn client(peer: &str, publish: bool) -> NodeClient {
        NodeClient {
            peer: canonical(addr(peer)),
            publish,
            send_bytes: 0,
        }
    }

    fn player(local: Option<&str>, kept_up: bool, window_bytes: u64) -> PlayerReport {
        PlayerReport {
            local_addr: local.map(addr),
            kept_up,
            window_bytes,
            played: true,
            ..Default::default()
        }
    }

    #[test]
    fn api_urls() {
        assert_eq!(
            api_hostport("http://127.0.0.1:19861").as_deref(),
            Some("127.0.0.1:19861")
        );
        assert_eq!(
            api_hostport("http://127.0.0.1:19861/").as_deref(),
            Some("127.0.0.1:19861")
        );
        assert_eq!(api_hostport("http://node").as_deref(), Some("node:80"));
        assert_eq!(api_hostport("http://[::1]:8").as_deref(), Some("[::1]:8"));
        assert_eq!(api_hostport("http://[::1]").as_deref(), Some("[::1]:80"));
        assert_eq!(api_hostport("http://h:1/api"), None);
        assert_eq!(api_hostport("rtmp://h:1"), None);
        assert_eq!(api_hostport("http://"), None);
        assert_eq!(short("http://127.0.0.1:19861/"), "127.0.0.1:19861");
    }

    #[test]
    fn answers_decode_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{\"a\":1}\r\n";
        assert_eq!(decode_answer(plain).unwrap(), json!({"a": 1}));
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:2}\r\n0\r\n\r\n";
        assert_eq!(decode_answer(chunked).unwrap(), json!({"a": 2}));
        let closed = b"HTTP/1.0 200 OK\r\n\r\n[1]";
        assert_eq!(decode_answer(closed).unwrap(), json!([1]));
        assert!(
            decode_answer(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .unwrap_err()
                .contains("404")
        );
        assert!(decode_answer(b"HTTP/1.1 200 OK\r\nContent-Len").is_err());
        assert!(decode_answer(b"HTTP/1.1 200 OK\r\n\r\nnot json").is_err());
    }

    #[test]
    fn client_lists_parse() {
        let v = json!({"code": 0, "clients": [
            {"peer": "127.0.0.1:40001", "type": "rtmp-play", "publish": false, "send_bytes": 10},
            {"peer": "[::ffff:127.0.0.1]:40002", "type": "flv-play", "publish": false},
            {"peer": "127.0.0.1:40003", "type": "fmle-publish", "publish": true},
            {"peer": "[::1]:40004", "type": "idle"},
            {"peer": "garbage", "type": "rtmp-play"},
            {"type": "rtmp-play"},
        ]});
        let c = parse_clients(&v).unwrap();
        assert_eq!(c.len(), 4);
        assert_eq!(
            c[0],
            NodeClient {
                peer: addr("127.0.0.1:40001"),
                publish: false,
                send_bytes: 10
            }
        );
        // IPv4-mapped IPv6 compares as IPv4.
        assert_eq!(c[1].peer, addr("127.0.0.1:40002"));
        assert!(c[2].publish);
        assert_eq!(c[3].peer, addr("[::1]:40004"));
        assert!(!c[3].publish);
        assert!(parse_clients(&json!({"code": 0})).is_err());
    }

    #[test]
    fn summaries_and_weight() {
        let mut f = NodeFetch::default();
        f.absorb_summaries(&json!({"code": 0, "data": {"system": {
            "bytes_out": 1_000_000u64, "players": 7, "publishers": 2}}}));
        f.absorb_lb(&json!({"code": 0, "weight": 63, "admin": "ready"}));
        assert_eq!(
            (f.bytes_out, f.node_players, f.node_publishers, f.weight),
            (Some(1_000_000), Some(7), Some(2), Some(63))
        );
        let g = NodeFetch {
            at_s: f.at_s + 2.0,
            bytes_out: Some(3_500_000),
            ..Default::default()
        };
        assert_eq!(egress_mbit_s(&f, &g), Some(10.0));
        assert_eq!(egress_mbit_s(&g, &f), None, "time must move forward");
        assert_eq!(
            egress_mbit_s(
                &f,
                &NodeFetch {
                    at_s: 9.0,
                    ..Default::default()
                }
            ),
            None
        );
    }

    #[test]
    fn players_are_matched_by_their_local_address() {
        let n1 = vec![
            client("127.0.0.1:40001", false),
            client("127.0.0.1:40002", false),
            // A direct publisher that happens to have a player's local port (different
            // destination, so the kernel may reuse it): never a match.
            client("127.0.0.1:40003", true),
        ];
        let n2 = vec![
            client("127.0.0.1:40003", false),
            client("[::ffff:127.0.0.1]:40004", false),
            // Someone else's player: listed, matches no bench player.
            client("127.0.0.9:40001", false),
        ];
        let locals = [
            Some(addr("127.0.0.1:40001")),
            Some(addr("127.0.0.1:40003")),
            Some(addr("[::ffff:127.0.0.1]:40002")),
            Some(addr("127.0.0.1:40004")),
            Some(addr("127.0.0.1:40005")), // ended before the fetch
            None,                          // never connected
        ];
        assert_eq!(
            assign(&locals, &[Some(&n1), Some(&n2)]),
            vec![Some(0), Some(1), Some(0), Some(1), None, None]
        );
        // A node that did not answer: its players are unmatched, the other's still match.
        assert_eq!(
            assign(&locals, &[None, Some(&n2)]),
            vec![None, Some(1), None, Some(1), None, None]
        );
        // Listed twice (a stale snapshot): the first node keeps it.
        let both = [client("127.0.0.1:40001", false)];
        assert_eq!(
            assign(&locals[..1], &[Some(&both), Some(&both)]),
            vec![Some(0)]
        );
    }

    #[test]
    fn per_node_figures() {
        let at = |s: f64, bytes: u64, w: u64| NodeFetch {
            at_s: s,
            bytes_out: Some(bytes),
            weight: Some(w),
            ..Default::default()
        };
        let mut end1 = at(20.0, 26_000_000, 80);
        end1.clients = Some(vec![
            client("127.0.0.1:1001", false),
            client("127.0.0.1:1002", false),
            client("127.0.0.1:1003", false),
        ]);
        end1.node_players = Some(3);
        let mut end2 = at(20.0, 60_000_000, 40);
        end2.clients = Some(vec![client("127.0.0.1:2001", false)]);
        let w = NodeWatch {
            apis: vec!["http://n1:1".into(), "http://n2:2".into()],
            start: vec![at(10.0, 1_000_000, 100), at(10.0, 10_000_000, 90)],
            end: vec![end1, end2],
            ticks: vec![
                vec![at(5.0, 0, 100), at(5.0, 0, 100)],
                vec![at(10.0, 1_000_000, 100), at(10.0, 10_000_000, 90)],
            ],
        };
        let players = [
            player(Some("127.0.0.1:1001"), true, 1_250_000),
            player(Some("127.0.0.1:1002"), true, 1_250_000),
            player(Some("127.0.0.1:1003"), false, 500_000),
            player(Some("127.0.0.1:2001"), false, 100_000),
            player(Some("127.0.0.1:3001"), true, 1_000_000),
            player(None, false, 0),
        ];
        let s = summarize(&w, &players, 10.0);
        assert_eq!((s.matched, s.unmatched, s.unmatched_kept_up), (4, 2, 1));
        let (a, b) = (&s.nodes[0], &s.nodes[1]);
        assert_eq!((a.players, a.kept_up), (3, 2));
        assert!((a.kept_up_fraction.unwrap() - 2.0 / 3.0).abs() < 1e-9);
        // 3 MB over 10 s = 2.4 Mbit/s from the players; the node sent 25 MB in 10 s = 20.
        assert!((a.players_mbit_s - 2.4).abs() < 1e-9);
        assert_eq!(a.egress_mbit_s, Some(20.0));
        assert_eq!((a.weight_start, a.weight_end), (Some(100), Some(80)));
        assert_eq!(a.node_players, Some(3));
        assert_eq!(
            (b.players, b.kept_up, b.kept_up_fraction),
            (1, 0, Some(0.0))
        );
        assert_eq!(b.egress_mbit_s, Some(40.0));
        assert_eq!(s.ticks.len(), 2);
        assert_eq!(s.ticks[0].nodes[0].egress_mbit_s, None);
        assert_eq!(s.ticks[1].nodes[1].egress_mbit_s, Some(16.0));
        assert_eq!(s.ticks[1].nodes[1].weight, Some(90));

        // No node answered at the end: nobody matches, the error is reported.
        let mut dead = w.clone();
        for f in &mut dead.end {
            f.clients = None;
            f.error = Some("connect: refused".into());
        }
        let s = summarize(&dead, &players, 10.0);
        assert_eq!((s.matched, s.unmatched), (0, 6));
        assert_eq!(s.nodes[0].kept_up_fraction, None);
        assert_eq!(s.nodes[1].error.as_deref(), Some("connect: refused"));
    }
}
