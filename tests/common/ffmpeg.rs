//! ffmpeg and ffprobe: the test media, ffmpeg publishers (that must or may be accepted),
//! ffprobe's view of a stream, and decoding a stream to nowhere.

use super::{free_port, run, tail, wait_until, Output, Proc, Server};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A 10 s FLV (h264 320x240 25 fps, GOP 50, AAC 44.1 kHz) made once and kept in cargo's
/// per-target temp dir.
pub fn test_media() -> PathBuf {
    static MEDIA: OnceLock<PathBuf> = OnceLock::new();
    MEDIA
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-media");
            fs::create_dir_all(&dir).expect("media dir");
            let path = dir.join("testsrc2-320x240-25fps-g50-aac.flv");
            if fs::metadata(&path).is_ok_and(|m| m.len() > 100_000) {
                return path;
            }
            let tmp = dir.join(format!("partial-{}.flv", std::process::id()));
            let out = run(
                Command::new("ffmpeg")
                    .args([
                        "-nostdin",
                        "-v",
                        "error",
                        "-y",
                        "-f",
                        "lavfi",
                        "-i",
                        "testsrc2=size=320x240:rate=25",
                        "-f",
                        "lavfi",
                        "-i",
                        "sine=frequency=440:sample_rate=44100",
                        "-t",
                        "10",
                        "-c:v",
                        "libx264",
                        "-preset",
                        "veryfast",
                        "-g",
                        "50",
                        "-pix_fmt",
                        "yuv420p",
                        "-c:a",
                        "aac",
                        "-b:a",
                        "64k",
                    ])
                    .arg(&tmp),
                Duration::from_secs(120),
            );
            assert!(
                out.success(),
                "making test media failed: {}",
                out.describe()
            );
            fs::rename(&tmp, &path).expect("rename media");
            path
        })
        .clone()
}

/// `ffmpeg -re -stream_loop -1 -i MEDIA -c copy -f flv URL`, stderr into `log`.
pub fn spawn_ffmpeg_publisher(url: &str, log: &Path) -> Proc {
    let media = test_media();
    let err = fs::File::create(log).expect("publisher log");
    Proc::spawn(
        "ffmpeg publisher",
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-re", "-stream_loop", "-1", "-i"])
            .arg(&media)
            .args(["-c", "copy", "-f", "flv", url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err),
    )
}

/// Start an ffmpeg publisher of `live/NAME` and wait for the server to log its publish.
pub fn publish(server: &Server, name: &str) -> Proc {
    let log = server
        .dir
        .join(&format!("publisher-{name}-{}.log", free_port()));
    let mut p = spawn_ffmpeg_publisher(&server.url(name), &log);
    let key = Server::key(name);
    let want = format!("publish stream={key} ");
    let started = wait_until(Duration::from_secs(15), || {
        server.count_lines(|l| l.contains(&want)) > 0 || p.try_status().is_some()
    });
    assert!(
        started && p.try_status().is_none(),
        "publisher of {name} did not start (status {:?}); its stderr:\n{}",
        p.try_status(),
        fs::read_to_string(&log).unwrap_or_default()
    );
    p
}

/// One line of `ffprobe -show_streams`: codec type, codec name, width, height.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbedStream {
    pub codec_type: String,
    pub codec_name: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// The streams ffprobe sees in `input` (a URL or a file).
pub fn ffprobe_streams(input: &str, timeout: Duration) -> Result<Vec<ProbedStream>, String> {
    let out = run(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,codec_name,width,height",
            "-of",
            "compact=nokey=0",
            input,
        ]),
        timeout,
    );
    if !out.success() {
        return Err(out.describe());
    }
    let streams = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("stream|"))
        .map(|l| {
            let get = |k: &str| {
                l.split('|')
                    .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
                    .map(str::to_string)
            };
            ProbedStream {
                codec_type: get("codec_type").unwrap_or_default(),
                codec_name: get("codec_name").unwrap_or_default(),
                width: get("width").and_then(|v| v.parse().ok()),
                height: get("height").and_then(|v| v.parse().ok()),
            }
        })
        .collect();
    Ok(streams)
}

/// Asserts the streams are exactly h264 320x240 and aac, in any order.
pub fn assert_test_streams(streams: &[ProbedStream], context: &str) {
    let video: Vec<_> = streams.iter().filter(|s| s.codec_type == "video").collect();
    let audio: Vec<_> = streams.iter().filter(|s| s.codec_type == "audio").collect();
    assert_eq!(
        streams.len(),
        2,
        "{context}: want 2 streams, got {streams:?}"
    );
    assert_eq!(
        video.len(),
        1,
        "{context}: want one video stream: {streams:?}"
    );
    assert_eq!(
        audio.len(),
        1,
        "{context}: want one audio stream: {streams:?}"
    );
    assert_eq!(video[0].codec_name, "h264", "{context}: {streams:?}");
    assert_eq!(
        (video[0].width, video[0].height),
        (Some(320), Some(240)),
        "{context}: {streams:?}"
    );
    assert_eq!(audio[0].codec_name, "aac", "{context}: {streams:?}");
}

/// `ffmpeg -v error -i URL -t SECS -f null -`, killed after `SECS + 25` s.
pub fn ffmpeg_decode(url: &str, secs: u32) -> Output {
    run(
        Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-i", url, "-t"])
            .arg(secs.to_string())
            .args(["-f", "null", "-"]),
        Duration::from_secs(u64::from(secs) + 25),
    )
}

/// How an ffmpeg publish attempt ended.
pub enum PublishAttempt {
    /// The server logged `publish stream=KEY`; the publisher is still running.
    Accepted(Proc),
    /// ffmpeg gave up (or never got its publish accepted within the deadline).
    Refused {
        stderr: String,
        status: Option<ExitStatus>,
        elapsed: Duration,
    },
}

impl PublishAttempt {
    pub fn is_accepted(&self) -> bool {
        matches!(self, PublishAttempt::Accepted(_))
    }

    pub fn describe(&self) -> String {
        match self {
            PublishAttempt::Accepted(p) => format!("accepted (ffmpeg pid {})", p.pid()),
            PublishAttempt::Refused {
                stderr,
                status,
                elapsed,
            } => format!(
                "refused: ffmpeg status {status:?} after {elapsed:?}; stderr:\n{}",
                tail(stderr, 20)
            ),
        }
    }

    /// The running publisher; panics (with `context`) when the publish was refused.
    pub fn expect_accepted(self, context: &str) -> Proc {
        match self {
            PublishAttempt::Accepted(p) => p,
            other => panic!("{context}: publish {}", other.describe()),
        }
    }

    /// ffmpeg's stderr; panics (with `context`) when the publish was accepted.
    pub fn expect_refused(self, context: &str) -> String {
        match self {
            PublishAttempt::Refused { stderr, .. } => stderr,
            other => panic!(
                "{context}: publish should be refused, but was {}",
                other.describe()
            ),
        }
    }
}

/// Publish the test media to `url` with ffmpeg; `key` is the stream key the server logs
/// (`vhost/app/stream`). Accepted once the server logs one more `publish stream=KEY` line than
/// before; refused when ffmpeg exits first (or nothing happens within `timeout`).
pub fn try_ffmpeg_publish(
    server: &Server,
    url: &str,
    key: &str,
    timeout: Duration,
) -> PublishAttempt {
    let want = format!("publish stream={key} ");
    let before = server.count_lines(|l| l.contains(&want));
    let log = server.dir.join(&format!("try-publish-{}.log", free_port()));
    let started = Instant::now();
    let mut p = spawn_ffmpeg_publisher(url, &log);
    let mut accepted = false;
    wait_until(timeout, || {
        accepted = server.count_lines(|l| l.contains(&want)) > before;
        accepted || p.try_status().is_some()
    });
    if accepted && p.try_status().is_none() {
        return PublishAttempt::Accepted(p);
    }
    let elapsed = started.elapsed();
    p.kill();
    PublishAttempt::Refused {
        stderr: fs::read_to_string(&log).unwrap_or_default(),
        status: p.try_status(),
        elapsed,
    }
}
