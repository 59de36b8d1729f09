//! Forward for a small cluster, with three real servers on 127.0.0.1: a master that forwards
//! every stream to two slaves and to a dead destination. ffmpeg publishes to the master;
//! ffprobe, ffmpeg and library players read from the slaves; a slave is SIGKILLed and
//! restarted; the publisher stops and comes back.

mod common;

use common::*;
use std::fs;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const LIFE: Duration = Duration::from_secs(90);
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);
const BACKOFF_MAX_MS: u64 = 4000;

/// A master forwarding to two slaves and to `dead`, a port nobody listens on.
struct Cluster {
    master: Server,
    slaves: [Server; 2],
    dead: u16,
}

impl Cluster {
    fn start() -> Cluster {
        let slaves = [Server::start(), Server::start()];
        let dead = free_port();
        let (s1, s2) = (slaves[0].port, slaves[1].port);
        let master = Server::start_with(ServerOpts {
            http: true,
            extra: format!(
                "[forward]\nenabled = true\ndestinations = [\"127.0.0.1:{s1}\", \"127.0.0.1:{s2}\", \"127.0.0.1:{dead}\"]\nbackoff_initial_ms = 500\nbackoff_max_ms = {BACKOFF_MAX_MS}\n"
            ),
            ..Default::default()
        });
        Cluster {
            master,
            slaves,
            dead,
        }
    }

    fn dest(&self, i: usize) -> String {
        format!("dest=127.0.0.1:{}", self.slaves[i].port)
    }

    fn dead_dest(&self) -> String {
        format!("dest=127.0.0.1:{}", self.dead)
    }

    /// How many `forward ... publishing` lines the master logged for slave `i` and `name`.
    fn forwards_publishing(&self, i: usize, name: &str) -> usize {
        let (key, dest) = (format!("stream={} ", Server::key(name)), self.dest(i));
        self.master.count_lines(|l| {
            l.contains(" forward ")
                && l.contains(&key)
                && l.contains(&format!("{dest} "))
                && l.ends_with(" publishing")
        })
    }

    /// Wait until the master forwards `name` to both slaves and each slave logs the publish.
    fn expect_forwarding(&self, name: &str, timeout: Duration) {
        let key = Server::key(name);
        for (i, slave) in self.slaves.iter().enumerate() {
            self.master.expect_log(
                &[
                    " forward ",
                    &format!("stream={key} "),
                    &format!("{} ", self.dest(i)),
                    "publishing",
                ],
                timeout,
            );
            slave.expect_log(&[&format!("publish stream={key} ")], timeout);
        }
    }
}

/// Count publish lines of `live/NAME` on `server`.
fn publishes(server: &Server, name: &str) -> usize {
    let want = format!("publish stream={} ", Server::key(name));
    server.count_lines(|l| l.contains(&want))
}

/// Start an ffmpeg publisher of `live/NAME` again (after an earlier one) and wait for the
/// server to log this new publish.
fn publish_again(server: &Server, name: &str) -> Proc {
    let before = publishes(server, name);
    let log = server.dir.join(&format!("publisher-{name}-again.log"));
    let mut p = spawn_ffmpeg_publisher(&server.url(name), &log);
    let ok = wait_until(Duration::from_secs(15), || {
        publishes(server, name) > before || p.try_status().is_some()
    });
    assert!(
        ok && p.try_status().is_none(),
        "the second publisher of {name} did not start; its stderr:\n{}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    p
}

/// Watches a player's video frame counter from another thread and records the longest time
/// it went without a new frame.
struct GapMonitor(Worker<(Duration, u64)>);

impl GapMonitor {
    fn start(counter: Arc<AtomicU64>) -> GapMonitor {
        GapMonitor(Worker::spawn(move |s| {
            let start_count = counter.load(Ordering::Relaxed);
            let mut last_count = start_count;
            let mut last_change = Instant::now();
            let mut max_gap = Duration::ZERO;
            // Bounded: at most two minutes of 10 ms samples.
            for _ in 0..12_000 {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                thread::sleep(Duration::from_millis(10));
                let n = counter.load(Ordering::Relaxed);
                if n != last_count {
                    max_gap = max_gap.max(last_change.elapsed());
                    last_change = Instant::now();
                    last_count = n;
                }
            }
            max_gap = max_gap.max(last_change.elapsed());
            (max_gap, last_count - start_count)
        }))
    }

    /// The longest gap between frames, and how many frames came, while it watched.
    fn finish(mut self) -> (Duration, u64) {
        self.0.stop().unwrap_or((Duration::MAX, 0))
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Forwarding to two slaves past a dead destination

#[test]
fn master_forwards_to_both_slaves_and_the_dead_destination_slows_nothing() {
    let _g = serial();
    let c = Cluster::start();
    let _publisher = publish(&c.master, "fwd");
    c.expect_forwarding("fwd", Duration::from_secs(10));
    let key = Server::key("fwd");
    let failed = c.master.expect_log(
        &[
            " forward ",
            &format!("stream={key} "),
            &format!("{} ", c.dead_dest()),
            "failed:",
        ],
        Duration::from_secs(10),
    );
    assert!(failed.contains("retry in "), "{failed}");

    for (i, slave) in c.slaves.iter().enumerate() {
        let streams = ffprobe_streams(&slave.url("fwd"), PROBE_TIMEOUT)
            .unwrap_or_else(|e| panic!("ffprobe on slave {i}: {e}"));
        assert_test_streams(&streams, &format!("ffprobe on slave {i}"));
    }

    // Decode 3 s from each slave and from the master itself, all at once.
    let urls = [
        c.slaves[0].url("fwd"),
        c.slaves[1].url("fwd"),
        c.master.url("fwd"),
    ];
    let decoders: Vec<_> = urls
        .iter()
        .cloned()
        .map(|u| thread::spawn(move || (u.clone(), ffmpeg_decode(&u, 3))))
        .collect();
    for d in decoders {
        let (url, out) = d.join().unwrap();
        assert!(out.success(), "ffmpeg on {url} failed: {}", out.describe());
        assert!(
            out.stderr.trim().is_empty(),
            "ffmpeg on {url} printed errors: {}",
            out.describe()
        );
        // Live, not a dump: the join burst is at most one GOP (2 s in the test media), so 3 s
        // of media take at least about 1 s to arrive (1.3 s was seen when joining late in a GOP).
        assert!(
            out.elapsed >= Duration::from_millis(900) && out.elapsed < Duration::from_secs(15),
            "3 s of live media from {url} took {:?}",
            out.elapsed
        );
    }

    // A player on the master starts at once although one destination keeps failing.
    let started = Instant::now();
    let player = LibPlayer::start(c.master.port, "fwd", LIFE);
    assert!(
        player.wait_video_above(25, Duration::from_secs(5)),
        "a player on the master got {} video frames in 5 s",
        player.video_frames()
    );
    println!(
        "master player: 25 video frames after {:?}",
        started.elapsed()
    );
    assert!(
        c.master
            .count_lines(|l| l.contains(&c.dead_dest()) && l.contains("failed:"))
            >= 2,
        "the dead destination is retried:\n{}",
        c.master.log_tail(20)
    );

    // The master's metrics show the state of every destination.
    let http = c.master.http_port.unwrap();
    let metrics = http_get(http, "/metrics").text();
    let state_of = |dest: &str, state: &str| {
        metrics.lines().any(|l| {
            l.starts_with("shardcast_forward_state{")
                && l.contains(&format!("dest=\"{dest}\""))
                && l.contains(&format!("state=\"{state}\""))
                && l.ends_with("} 1")
        })
    };
    for s in &c.slaves {
        let dest = format!("127.0.0.1:{}", s.port);
        assert!(
            state_of(&dest, "publishing"),
            "{dest} not publishing:\n{metrics}"
        );
    }
    let dead = format!("127.0.0.1:{}", c.dead);
    assert!(
        state_of(&dead, "backoff") || state_of(&dead, "connecting"),
        "{dead} neither in backoff nor connecting:\n{metrics}"
    );
}

// ---------------------------------------------------------------------------------------------
// 9. A slave crashes and comes back

#[test]
fn restarted_slave_gets_the_stream_back_within_the_backoff_bound() {
    let _g = serial();
    let mut c = Cluster::start();
    let _publisher = publish(&c.master, "restart");
    c.expect_forwarding("restart", Duration::from_secs(10));
    let other = LibPlayer::start(c.slaves[1].port, "restart", LIFE);
    assert!(
        other.wait_video_above(10, Duration::from_secs(10)),
        "player on slave 1 got no video"
    );
    let monitor = GapMonitor::start(other.video.clone());

    let failures_before = c
        .master
        .count_lines(|l| l.contains(&format!("{} ", c.dest(0))) && l.contains("failed:"));
    let publishes_before = publishes(&c.slaves[0], "restart");
    c.slaves[0].crash();
    let failed = wait_until(Duration::from_secs(5), || {
        c.master
            .count_lines(|l| l.contains(&format!("{} ", c.dest(0))) && l.contains("failed:"))
            > failures_before
    });
    assert!(
        failed,
        "the master did not notice slave 0 die:\n{}",
        c.master.log_tail(20)
    );
    // Stay down long enough for the retries to back off a few steps (0.5, 1, 2 s ...).
    thread::sleep(Duration::from_millis(2500));

    let restarted = Instant::now();
    c.slaves[0].restart();
    let player = LibPlayer::start(c.slaves[0].port, "restart", LIFE);
    let bound = Duration::from_millis(BACKOFF_MAX_MS * 5 / 4 + 1500);
    let back = wait_until(bound + Duration::from_secs(5), || {
        publishes(&c.slaves[0], "restart") > publishes_before
    });
    let waited = restarted.elapsed();
    println!("slave restart -> forwarded publish again: {waited:?} (bound {bound:?})");
    assert!(
        back,
        "slave 0 never got the stream back; master log:\n{}",
        c.master.log_tail(20)
    );
    assert!(
        waited < bound,
        "the stream came back {waited:?} after the restart, past backoff_max + jitter + margin ({bound:?})"
    );
    assert!(
        player.wait_video_above(10, Duration::from_secs(5)),
        "a player on the restarted slave got {} video frames",
        player.video_frames()
    );

    thread::sleep(Duration::from_millis(500));
    let (max_gap, frames) = monitor.finish();
    println!("player on the other slave: {frames} frames, longest gap {max_gap:?}");
    assert_eq!(
        other.ended(),
        None,
        "the other slave's player was disconnected"
    );
    assert!(
        frames >= 50,
        "the other slave's player got only {frames} frames"
    );
    assert!(
        max_gap < Duration::from_secs(1),
        "the other slave's player went {max_gap:?} without a video frame"
    );
}

// ---------------------------------------------------------------------------------------------
// 10. Unpublish and publish again

#[test]
fn unpublish_reaches_the_slaves_and_a_new_publish_resumes_forwarding() {
    let _g = serial();
    let c = Cluster::start();
    let mut publisher = publish(&c.master, "cycle");
    c.expect_forwarding("cycle", Duration::from_secs(10));
    let key = Server::key("cycle");
    let players: Vec<LibPlayer> = c
        .slaves
        .iter()
        .map(|s| LibPlayer::start(s.port, "cycle", LIFE))
        .collect();
    for (i, p) in players.iter().enumerate() {
        assert!(
            p.wait_video_above(10, Duration::from_secs(10)),
            "player on slave {i} got no video"
        );
    }

    // The publisher stops (SIGINT, as a person stopping ffmpeg would).
    publisher.signal(libc::SIGINT);
    if publisher.wait_timeout(Duration::from_secs(5)).is_none() {
        publisher.kill();
    }
    for (i, slave) in c.slaves.iter().enumerate() {
        let line = slave.wait_for_line(Duration::from_secs(10), |l| {
            l.contains(&format!("unpublish stream={key}"))
                || (l.contains("close reason=") && l.contains("role=publish"))
        });
        assert!(
            line.is_some(),
            "slave {i} logged no unpublish:\n{}",
            slave.log_tail(20)
        );
        c.master.expect_log(
            &[
                " forward ",
                &format!("stream={key} "),
                &format!("{} ", c.dest(i)),
                "stopped",
            ],
            Duration::from_secs(5),
        );
    }
    for (i, p) in players.iter().enumerate() {
        let notified = wait_until(Duration::from_secs(10), || {
            p.has_seen(|s| *s == Seen::Status("NetStream.Play.UnpublishNotify".into()))
        });
        assert!(
            notified,
            "player on slave {i} saw no UnpublishNotify: {:?}",
            tail_of(&p.seen())
        );
        assert_eq!(p.ended(), None, "player on slave {i} was disconnected");
    }

    // Publish again: forwarding resumes and the waiting players get media again.
    let counts: Vec<u64> = players.iter().map(|p| p.video_frames()).collect();
    let forwarded: Vec<usize> = (0..2).map(|i| c.forwards_publishing(i, "cycle")).collect();
    let _publisher = publish_again(&c.master, "cycle");
    for (i, before) in forwarded.iter().enumerate() {
        let again = wait_until(Duration::from_secs(10), || {
            c.forwards_publishing(i, "cycle") > *before
        });
        assert!(
            again,
            "the master did not forward to slave {i} again:\n{}",
            c.master.log_tail(20)
        );
    }
    for (i, p) in players.iter().enumerate() {
        assert!(
            p.wait_video_above(counts[i] + 25, Duration::from_secs(10)),
            "player on slave {i} got no media after the new publish ({} -> {})",
            counts[i],
            p.video_frames()
        );
    }
}

/// The last few things a player saw, for messages.
fn tail_of(seen: &[Seen]) -> Vec<&Seen> {
    seen.iter()
        .filter(|s| !matches!(s, Seen::Media { .. }))
        .rev()
        .take(10)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 11. Config

#[test]
fn forwarding_to_its_own_listen_address_is_a_config_error() {
    let port = free_port();
    for (listen, dest) in [
        (format!("127.0.0.1:{port}"), format!("127.0.0.1:{port}")),
        (format!("0.0.0.0:{port}"), format!("127.0.0.1:{port}")),
        (
            format!("127.0.0.1:{port}"),
            format!("rtmp://127.0.0.1:{port}/other"),
        ),
    ] {
        let text = format!(
            "[server]\nlisten = \"{listen}\"\n[forward]\nenabled = true\ndestinations = [\"127.0.0.1:{}\", \"{dest}\"]\n",
            free_port()
        );
        let out = check_config(&text);
        let what = format!("config {text:?}: {}", out.describe());
        assert_eq!(out.status.and_then(|s| s.code()), Some(1), "{what}");
        assert!(out.stderr.contains("forward.destinations"), "{what}");
        assert!(!out.stderr.contains("panicked"), "{what}");
    }
    // The same destinations with another listen port are fine.
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:{}\"\n[forward]\nenabled = true\ndestinations = [\"127.0.0.1:{port}\"]\n",
        free_port()
    );
    let out = check_config(&text);
    assert!(out.success(), "config {text:?}: {}", out.describe());
}
