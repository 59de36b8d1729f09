//! End to end: the real shardcast server, a small ffmpeg-made FLV, and the bench binary in
//! fanout mode (1 publisher x 10 players, RTMP or HTTP-FLV), checked through its JSON summary.

use serde_json::Value;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills and reaps the child when the test ends, however it ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for a child with a bound; kills it and fails the test on overrun.
fn wait_bounded(mut g: Guard, limit: Duration, what: &str) -> std::process::ExitStatus {
    let end = Instant::now() + limit;
    loop {
        if let Some(st) = g.0.try_wait().expect("try_wait") {
            return st;
        }
        assert!(
            Instant::now() < end,
            "{what} did not finish within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn scratch_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shardcast-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// The server binary of the root package (not visible to this package's CARGO_BIN_EXE_*).
fn server_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("debug/shardcast");
    if !bin.exists() {
        let child = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "-p", "shardcast", "--bin", "shardcast"])
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
            .spawn()
            .expect("spawn cargo build");
        let st = wait_bounded(
            Guard(child),
            Duration::from_secs(600),
            "cargo build -p shardcast",
        );
        assert!(st.success(), "cargo build -p shardcast failed");
    }
    assert!(bin.exists(), "no server binary at {}", bin.display());
    bin
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Starts a 2-shard server; with `http_port`, HTTP (and HTTP-FLV) is served there too.
fn start_server(dir: &Path, http_port: Option<u16>) -> (Guard, u16) {
    let port = free_port();
    let conf = dir.join("shardcast.toml");
    // Reads and writes at once (not the shipped 100 ms windows): these tests check the
    // generator's figures against exact expectations (97% kept-up over a 3 s window), and
    // media arriving in 100-200 ms batches moves a window's edges by up to 8 frames.
    let mut text = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nshards = 2\n\n[rtmp]\nmr_latency_ms = 0\nmw_latency_ms = 0\n"
    );
    if let Some(h) = http_port {
        text.push_str(&format!(
            "\n[http]\nenabled = true\nlisten = \"127.0.0.1:{h}\"\n"
        ));
    }
    std::fs::write(&conf, text).expect("write config");
    let log = std::fs::File::create(dir.join("server.log")).expect("log file");
    let child = Command::new(server_binary())
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn shardcast");
    let mut g = Guard(child);
    let end = Instant::now() + Duration::from_secs(10);
    let ready = || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
            && http_port.is_none_or(|h| TcpStream::connect(("127.0.0.1", h)).is_ok())
    };
    while !ready() {
        if let Some(st) = g.0.try_wait().expect("try_wait") {
            let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
            panic!("shardcast exited early ({st}):\n{log}");
        }
        assert!(Instant::now() < end, "shardcast did not listen within 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    (g, port)
}

fn make_flv(dir: &Path) -> PathBuf {
    let out = dir.join("x.flv");
    let child = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args([
            "-t", "6", "-c:v", "libx264", "-preset", "veryfast", "-g", "50",
        ])
        .args(["-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k"])
        .arg(&out)
        .stdin(Stdio::null())
        .spawn()
        .expect("ffmpeg is needed (scripts/test.sh installs it)");
    let st = wait_bounded(Guard(child), Duration::from_secs(60), "ffmpeg");
    assert!(st.success(), "ffmpeg failed");
    out
}

/// Runs the bench in fanout mode and returns its JSON summary.
fn fanout(dir: &Path, port: u16, flv: &Path, stream: &str, extra: &[&str]) -> Value {
    let json = dir.join(format!("summary-{stream}.json"));
    let child = Command::new(env!("CARGO_BIN_EXE_shardcast-bench"))
        .arg("fanout")
        .args([
            "--url",
            &format!("rtmp://127.0.0.1:{port}/live/{stream}{{i}}"),
        ])
        .arg("--file")
        .arg(flv)
        .args(["-m", "1", "-n", "10", "--ramp", "0", "--warmup", "1.5"])
        .args([
            "--window",
            "3",
            "--duration",
            "20",
            "--threads",
            "2",
            "--per-player",
            "-q",
        ])
        .args(extra)
        .arg("--json")
        .arg(&json)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn shardcast-bench");
    let st = wait_bounded(Guard(child), Duration::from_secs(30), "shardcast-bench");
    assert!(st.success(), "shardcast-bench failed: {st}");
    let text = std::fs::read_to_string(&json).expect("summary written");
    serde_json::from_str(&text).expect("summary is JSON")
}

fn f(v: &Value, ptr: &str) -> f64 {
    v.pointer(ptr)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{ptr} missing in {v:#}"))
}

fn check(summary: &Value) {
    let players = summary["per_player"].as_array().expect("per_player");
    assert_eq!(players.len(), 10);
    assert_eq!(f(summary, "/publishers/published"), 1.0, "{summary:#}");
    assert_eq!(f(summary, "/players/errors"), 0.0, "{summary:#}");
    assert_eq!(f(summary, "/players/disconnects"), 0.0, "{summary:#}");
    for p in players {
        assert_eq!(p["outcome"], "ok", "{p:#}");
        let frames = f(p, "/video_frames");
        assert!(frames > 0.0, "player got no video: {p:#}");
        assert_eq!(
            p["first_video_keyframe"], true,
            "first frame not a keyframe: {p:#}"
        );
        // Joined (connect to first keyframe) within the run: after some time on the wire,
        // before the players' stop, and counted in the summary's join figures.
        let join = f(p, "/join_ms");
        let run_ms = f(summary, "/schedule/stop_players") * 1000.0;
        assert!(
            join > 0.0 && join < run_ms && join <= f(summary, "/players/join_ms/max"),
            "join {join} ms in a run whose players stop at {run_ms} ms: {p:#}"
        );
        // Frames received match the frame rate over the media time received (25 fps).
        let fps = f(p, "/fps");
        assert!((fps - 25.0).abs() < 0.5, "fps {fps}");
        let expected = f(p, "/video_span_ms") / 1000.0 * fps + 1.0;
        assert!(
            (frames - expected).abs() <= expected * 0.05 + 2.0,
            "{frames} frames, expected ~{expected}: {p:#}"
        );
    }
    assert_eq!(f(summary, "/players/join_ms/count"), 10.0);
    assert!(f(summary, "/players/join_ms/p99") >= f(summary, "/players/join_ms/p50"));
    assert!(
        f(summary, "/players/kept_up_fraction") >= 0.9,
        "{summary:#}"
    );
    let lat = &summary["latency"];
    assert!(f(lat, "/samples") > 100.0, "{lat:#}");
    let (p50, p95, p99, max) = (
        f(lat, "/p50_ms"),
        f(lat, "/p95_ms"),
        f(lat, "/p99_ms"),
        f(lat, "/max_ms"),
    );
    assert!(
        p50 >= 0.0 && p50 <= p95 && p95 <= p99 && p99 <= max,
        "{lat:#}"
    );
    assert!(p50 < 1000.0, "median latency {p50} ms on loopback");
}

#[test]
fn fanout_against_the_real_server() {
    let dir = scratch_dir("fanout");
    let (_server, port) = start_server(&dir, None);
    let flv = make_flv(&dir);
    check(&fanout(&dir, port, &flv, "s", &[]));
    // Publisher timestamps that cross 0xFFFFFF a second in: extended timestamps both ways.
    let ext = fanout(&dir, port, &flv, "ext", &["--start-ts", "16776215"]);
    check(&ext);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn http_flv_fanout_against_the_real_server() {
    let dir = scratch_dir("httpflv");
    let http = free_port();
    let (_server, port) = start_server(&dir, Some(http));
    let flv = make_flv(&dir);
    let url = format!("http://127.0.0.1:{http}/live/h{{i}}.flv");
    let summary = fanout(&dir, port, &flv, "h", &["--http-url", &url]);
    check(&summary);
    assert_eq!(summary["params"]["http_url"], url.as_str());
    let _ = std::fs::remove_dir_all(&dir);
}
