//! A player that stops reading must not hold anybody up: with a publisher at a high bitrate, the
//! server drops the stalled player within bounded time (its queue is bounded by
//! `player_queue_ms`, its socket by `player_stall_timeout_secs`), the other players keep
//! receiving without a gap, and the server's memory stays bounded.

mod common;

use common::*;
use shardcast::media::FrameKind;
use shardcast::rtmp::client::{ClientEvent, ClientRole};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const STALL_TIMEOUT_SECS: u64 = 3;
/// 40 KB video frames at 25 fps: about 8 Mbit/s.
const FRAME_BYTES: usize = 40_000;
const FPS: u32 = 25;

/// A library player that records when each video frame arrives.
struct TimedPlayer {
    arrivals: Arc<Mutex<Vec<Instant>>>,
    ended: Arc<Mutex<Option<String>>>,
    _worker: Worker,
}

impl TimedPlayer {
    fn start(port: u16, name: &str, lifetime: Duration) -> TimedPlayer {
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let ended = Arc::new(Mutex::new(None));
        let (arr, end) = (arrivals.clone(), ended.clone());
        let name = name.to_string();
        let worker = Worker::spawn(move |st| {
            let why = (|| {
                let mut c = LibClient::connect(port, &name, ClientRole::Play)
                    .map_err(|e| format!("connect: {e}"))?;
                let deadline = Instant::now() + lifetime;
                while !st.load(Ordering::Relaxed) && Instant::now() < deadline {
                    for ev in c.pump(Duration::from_millis(20))? {
                        if let ClientEvent::Media { frame, .. } = ev {
                            if frame.kind == FrameKind::Video && !frame.sequence_header {
                                arr.lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .push(Instant::now());
                            }
                        }
                    }
                }
                Ok::<String, String>("stopped".into())
            })();
            *end.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.unwrap_or_else(|e| e));
        });
        TimedPlayer {
            arrivals,
            ended,
            _worker: worker,
        }
    }

    fn frames(&self) -> usize {
        self.arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    fn ended(&self) -> Option<String> {
        self.ended.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The longest time without a video frame between `from` and `to` (edges included).
    fn max_gap(&self, from: Instant, to: Instant) -> Duration {
        let arrivals = self.arrivals.lock().unwrap_or_else(|e| e.into_inner());
        let mut last = from;
        let mut gap = Duration::ZERO;
        for &t in arrivals.iter().filter(|&&t| t > from && t <= to) {
            gap = gap.max(t - last);
            last = t;
        }
        gap.max(to.saturating_duration_since(last))
    }
}

#[test]
fn a_player_that_stops_reading_is_dropped_and_holds_up_nobody() {
    let _g = serial();
    slow_player_case("");
}

/// The same with merged writes that go out by splice from a shared pipe: the stalled player's
/// socket fills in the middle of a spliced batch, and the rest must still be handed over and
/// bounded like any other write.
#[test]
fn a_stalled_player_under_spliced_merged_writes_is_dropped_and_holds_up_nobody() {
    let _g = serial();
    let server = slow_player_case("mw_latency_ms = 200\nsplice_min_bytes = 1\n");
    let http = server.http_port.expect("http");
    let metrics = http_get(http, "/metrics").text();
    let samples = parse_metrics(&metrics).unwrap_or_else(|e| panic!("/metrics: {e}\n{metrics}"));
    let spliced = sum_of(&samples, "shardcast_spliced_writes_total");
    assert!(
        spliced > 0.0,
        "no merged write went out by splice:\n{metrics}"
    );
}

/// One publisher at about 8 Mbit/s, two players that keep reading and one that stops: the
/// stopped one is dropped in bounded time, the others see no gap, memory stays bounded.
fn slow_player_case(rtmp: &str) -> Server {
    let server = Server::start_with(ServerOpts {
        rtmp: format!(
            "player_queue_ms = 1000\nplayer_stall_timeout_secs = {STALL_TIMEOUT_SECS}\n{rtmp}"
        ),
        http: true,
        ..ServerOpts::default()
    });
    let mut publisher = SynthPublisher::start(
        server.port,
        "fat",
        FRAME_BYTES,
        FPS,
        FPS,
        Duration::from_secs(90),
    );
    server.expect_log(
        &[&format!("publish stream={} ", Server::key("fat"))],
        Duration::from_secs(10),
    );
    let players: Vec<TimedPlayer> = (0..2)
        .map(|_| TimedPlayer::start(server.port, "fat", Duration::from_secs(90)))
        .collect();
    for (i, p) in players.iter().enumerate() {
        assert!(
            wait_until(Duration::from_secs(10), || p.frames() > 25),
            "player {i} gets no media: {:?}",
            p.ended()
        );
    }
    let rss_before = rss_kib(server.pid()).expect("server RSS");

    // The slow one plays, takes a few frames, then never reads again.
    let mut slow = LibClient::connect(server.port, "fat", ClientRole::Play).expect("connect");
    slow.pump_until(Duration::from_secs(5), |e| {
        matches!(e, ClientEvent::Media { .. })
    })
    .expect("slow player starts");
    let slow_peer = format!("peer=127.0.0.1:{} ", slow.local_port());
    let stopped_reading = Instant::now();

    let mut rss_peak = rss_before;
    let mut close_line = None;
    let limit = Duration::from_secs(25);
    while stopped_reading.elapsed() < limit {
        rss_peak = rss_peak.max(rss_kib(server.pid()).unwrap_or(0));
        close_line = server
            .log()
            .lines()
            .find(|l| l.contains(&slow_peer) && l.contains(" close reason="))
            .map(str::to_string);
        if close_line.is_some() {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let dropped_after = stopped_reading.elapsed();
    // Two more seconds of the others, after the drop.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        rss_peak = rss_peak.max(rss_kib(server.pid()).unwrap_or(0));
        thread::sleep(Duration::from_millis(100));
    }
    let window_end = Instant::now();
    let gaps: Vec<Duration> = players
        .iter()
        .map(|p| p.max_gap(stopped_reading, window_end))
        .collect();
    eprintln!(
        "slow player dropped after {dropped_after:?}: {close_line:?}; other players' longest \
         gaps {gaps:?}; server RSS {rss_before} KiB before, peak {rss_peak} KiB; publisher sent \
         {} frames",
        publisher.sent()
    );

    let close = close_line.unwrap_or_else(|| {
        panic!(
            "the player that stopped reading was not dropped within {limit:?}:\n{}",
            server.log_tail(20)
        )
    });
    assert!(
        close.contains("role=play"),
        "close line of the slow player: {close}"
    );
    assert!(
        dropped_after < Duration::from_secs(20),
        "dropped only after {dropped_after:?}"
    );
    // While its socket was full its queue was held to player_queue_ms by skipping frames.
    let dropped_frames: u64 = log_field(&close, "dropped_frames")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        dropped_frames > 0,
        "no frames skipped for the stalled player: {close}"
    );
    for (i, (p, gap)) in players.iter().zip(&gaps).enumerate() {
        assert!(p.ended().is_none(), "player {i} ended: {:?}", p.ended());
        assert!(
            *gap < Duration::from_secs(1),
            "player {i} went {gap:?} without video while the slow player was stalled"
        );
    }
    assert!(
        rss_peak.saturating_sub(rss_before) < 64 * 1024,
        "server RSS grew from {rss_before} KiB to {rss_peak} KiB with one stalled player"
    );
    assert!(
        publisher.ended().is_none(),
        "publisher: {:?}",
        publisher.ended()
    );
    publisher.stop();
    drop(slow);

    // Last, so that everything above is known to hold even while this fails: the log must say
    // why the server dropped the player.
    let reason = close
        .split("reason=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or("");
    assert!(
        ["write", "stall", "took no data"]
            .iter()
            .any(|w| reason.contains(w)),
        "the slow player's close reason does not say it stalled: `{reason}` in\n{close}"
    );
    server
}
