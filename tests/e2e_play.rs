//! Publish with a real ffmpeg (or the crate's client library) and play with real ffprobe,
//! ffmpeg, rtmpdump and library players against the real server binary over 127.0.0.1.

mod common;

use common::*;
use shardcast::media::{Frame, FrameKind};
use shardcast::rtmp::client::{ClientEvent, ClientRole};
use std::fs;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// `ffmpeg -v error -i URL -t SECS -f null -`.
fn ffmpeg_play_cmd(url: &str, secs: u32) -> Command {
    let mut c = Command::new("ffmpeg");
    c.args(["-nostdin", "-v", "error", "-i", url, "-t"])
        .arg(secs.to_string())
        .args(["-f", "null", "-"]);
    c
}

/// Video packets of `input` as (dts_time, pts_time, flags), at most `max`.
fn video_packets(input: &str, max: usize) -> Result<Vec<(f64, f64, String)>, String> {
    let out = run(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_entries",
            "packet=dts_time,pts_time,flags",
            "-read_intervals",
            &format!("%+#{max}"),
            "-of",
            "compact=nokey=0",
            input,
        ]),
        PROBE_TIMEOUT,
    );
    if !out.success() {
        return Err(out.describe());
    }
    Ok(out
        .stdout
        .lines()
        .filter(|l| l.starts_with("packet|"))
        .map(|l| {
            let get = |k: &str| {
                l.split('|')
                    .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
                    .unwrap_or("")
                    .to_string()
            };
            let num = |k: &str| get(k).parse::<f64>().unwrap_or(f64::NAN);
            (num("dts_time"), num("pts_time"), get("flags"))
        })
        .collect())
}

#[test]
fn ffprobe_reports_h264_320x240_and_aac() {
    let _g = serial();
    let server = Server::start();
    let _publisher = publish(&server, "probe");
    let streams = ffprobe_streams(&server.url("probe"), PROBE_TIMEOUT).expect("ffprobe");
    assert_test_streams(&streams, "ffprobe of live/probe");
    server.expect_log(
        &["play stream=", &Server::key("probe")],
        Duration::from_secs(2),
    );
}

/// `ffmpeg -i URL -t SECS -f null -` must exit 0 and print no error.
fn decode_cleanly(url: &str, secs: u32) -> Output {
    let out = run(&mut ffmpeg_play_cmd(url, secs), Duration::from_secs(30));
    assert!(out.success(), "ffmpeg player failed: {}", out.describe());
    assert!(
        out.stderr.trim().is_empty(),
        "ffmpeg player printed errors: {}",
        out.describe()
    );
    out
}

#[test]
fn ffmpeg_decodes_five_seconds_without_errors() {
    let _g = serial();
    let server = Server::start();
    let _publisher = publish(&server, "decode");
    let out = decode_cleanly(&server.url("decode"), 5);
    // -t 5 on a live source at real time cannot end much before 5 s of wall time.
    assert!(
        out.elapsed >= Duration::from_millis(2500),
        "ffmpeg ended too early for 5 s of media: {}",
        out.describe()
    );
}

#[test]
fn rtmpdump_records_a_playable_flv() {
    let _g = serial();
    let server = Server::start();
    let _publisher = publish(&server, "dump");
    let file = server.dir.join("dump.flv");
    let errlog = fs::File::create(server.dir.join("rtmpdump.log")).unwrap();
    let mut dump = Proc::spawn(
        "rtmpdump",
        Command::new("rtmpdump")
            .args(["-v", "-r", &server.url("dump"), "-B", "4", "-o"])
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(errlog),
    );
    // rtmpdump does not stop on its own on a live stream (the server ignores the play
    // duration): give it ~6 s, then SIGINT, which makes it close the file cleanly.
    if dump.wait_timeout(Duration::from_secs(6)).is_none() {
        dump.signal(libc::SIGINT);
        dump.wait_timeout(Duration::from_secs(3));
    }
    dump.kill();
    let size = fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 20_000,
        "rtmpdump wrote {size} bytes; its log:\n{}",
        fs::read_to_string(server.dir.join("rtmpdump.log")).unwrap_or_default()
    );
    let path = file.to_str().unwrap();
    let streams = ffprobe_streams(path, PROBE_TIMEOUT).expect("ffprobe of the dump");
    assert_test_streams(&streams, "rtmpdump recording");
    let out = run(
        Command::new("ffprobe").args([
            "-v",
            "error",
            "-count_packets",
            "-select_streams",
            "v",
            "-show_entries",
            "stream=nb_read_packets",
            "-of",
            "csv=p=0",
            path,
        ]),
        PROBE_TIMEOUT,
    );
    assert!(out.success(), "{}", out.describe());
    let packets: u64 = out.stdout.trim().parse().expect("packet count");
    // ~6 s at 25 fps plus up to one cached GOP (2 s): anything from 3 s to 15 s of video.
    assert!(
        (75..=375).contains(&packets),
        "{packets} video packets in a ~6 s recording"
    );
}

#[test]
fn late_joiner_starts_on_a_keyframe_mid_gop() {
    let _g = serial();
    let server = Server::start();
    let _publisher = publish(&server, "late");
    let published = Instant::now();
    // GOPs are 2 s (-g 50 at 25 fps): join 3 s in, halfway through the second GOP.
    thread::sleep(Duration::from_millis(3000));
    let joined = published.elapsed().as_secs_f64();
    let packets = video_packets(&server.url("late"), 8).expect("ffprobe packets");
    assert!(packets.len() >= 5, "too few video packets: {packets:?}");
    let (first_dts, _, first_flags) = &packets[0];
    assert!(
        first_flags.contains('K'),
        "first video packet of a late joiner is not a keyframe: {packets:?}"
    );
    assert!(
        packets[1..].iter().any(|(_, _, f)| !f.contains('K')),
        "every packet is flagged key, the flags mean nothing: {packets:?}"
    );
    // The keyframe came from the cached GOP (stream time ~2 s), not the next one (~4 s): the
    // player joined mid-GOP and was not made to wait for a keyframe.
    assert!(
        *first_dts <= joined - 0.5,
        "first keyframe at {first_dts} s but the player joined at {joined:.2} s: {packets:?}"
    );
}

#[test]
fn players_on_owner_and_non_owner_shards_get_the_stream() {
    let _g = serial();
    let server = Server::start();
    let _publisher = publish(&server, "shards");
    let key = Server::key("shards");
    let owner = server
        .owner_of("shards")
        .expect("owner in the publish line");
    let mut served_owner = false;
    let mut served_other = false;
    let is_play = |l: &str| l.contains(&format!("play stream={key} "));
    for attempt in 0..20 {
        let before = server.count_lines(is_play);
        let streams = ffprobe_streams(&server.url("shards"), PROBE_TIMEOUT)
            .unwrap_or_else(|e| panic!("ffprobe attempt {attempt}: {e}"));
        wait_until(Duration::from_secs(2), || {
            server.count_lines(is_play) > before
        });
        let line = server
            .log_lines()
            .into_iter()
            .filter(|l| is_play(l))
            .nth(before)
            .expect("a play line for this ffprobe");
        let shard: usize = log_field(&line, "shard")
            .and_then(|v| v.parse().ok())
            .expect("shard= in play line");
        let logged_owner: usize = log_field(&line, "owner")
            .and_then(|v| v.parse().ok())
            .expect("owner= in play line");
        assert_eq!(logged_owner, owner, "owner changed: {line}");
        let what = if shard == owner {
            "owner shard"
        } else {
            "non-owner shard"
        };
        assert_test_streams(&streams, &format!("player on the {what} ({line})"));
        served_owner |= shard == owner;
        served_other |= shard != owner;
        if served_owner && served_other {
            return;
        }
    }
    panic!(
        "20 players did not land on both shards (owner seen: {served_owner}, non-owner seen: \
         {served_other})"
    );
}

#[test]
fn second_publisher_is_refused_and_the_first_keeps_going() {
    let _g = serial();
    let server = Server::start();
    let mut first = publish(&server, "dup");
    let log = server.dir.join("second-publisher.log");
    let mut second = spawn_ffmpeg_publisher(&server.url("dup"), &log);
    let status = second.wait_timeout(Duration::from_secs(15));
    assert!(
        status.is_some_and(|s| !s.success()),
        "second publisher should fail, status {status:?}; stderr:\n{}",
        fs::read_to_string(&log).unwrap_or_default()
    );
    server.expect_log(
        &[
            &format!("publish refused stream={}: ", Server::key("dup")),
            "already", // "already publishing" / "already being published"
        ],
        Duration::from_secs(2),
    );
    assert_eq!(
        server.count_lines(|l| l.contains(&format!("publish stream={} ", Server::key("dup")))),
        1,
        "exactly one accepted publish"
    );
    assert!(first.try_status().is_none(), "the first publisher died");
    let out = run(
        &mut ffmpeg_play_cmd(&server.url("dup"), 3),
        Duration::from_secs(25),
    );
    assert!(
        out.success() && out.stderr.trim().is_empty(),
        "player after the refusal: {}",
        out.describe()
    );
    assert!(first.try_status().is_none(), "the first publisher died");
}

#[test]
fn player_that_arrives_before_the_publisher_waits_and_decodes() {
    let _g = serial();
    let server = Server::start();
    let errlog = server.dir.join("early-player.log");
    let mut player = Proc::spawn(
        "ffmpeg player",
        ffmpeg_play_cmd(&server.url("early"), 3)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&errlog).unwrap()),
    );
    let started = Instant::now();
    server.expect_log(
        &[&format!("play stream={} ", Server::key("early"))],
        Duration::from_secs(10),
    );
    thread::sleep(Duration::from_secs(2).saturating_sub(started.elapsed()));
    assert!(
        player.try_status().is_none(),
        "player gave up before the publisher came: {}",
        fs::read_to_string(&errlog).unwrap_or_default()
    );
    let _publisher = publish(&server, "early");
    let status = player.wait_timeout(Duration::from_secs(30));
    let stderr = fs::read_to_string(&errlog).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "waiting player: status {status:?}, stderr:\n{stderr}"
    );
    assert!(stderr.trim().is_empty(), "waiting player errors:\n{stderr}");
    // It played: the log has it as a player that received media.
    let close = server
        .wait_for_log(&["role=play"], Duration::from_secs(5))
        .expect("player close line");
    let bytes_out: u64 = log_field(&close, "bytes_out")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(bytes_out > 50_000, "player got {bytes_out} bytes: {close}");
}

#[test]
fn library_player_sees_unpublish_then_media_again_after_republish() {
    let _g = serial();
    let server = Server::start();
    let mut publisher = publish(&server, "re");
    let player = LibPlayer::start(server.port, "re", Duration::from_secs(60));
    assert!(
        player.wait_video_above(10, Duration::from_secs(10)),
        "no media before unpublish: {:?}",
        player.seen()
    );
    assert!(player.has_seen(|s| *s == Seen::PlayStarted));

    publisher.kill();
    let unpublished = wait_until(Duration::from_secs(10), || {
        player.has_seen(|s| *s == Seen::Status("NetStream.Play.UnpublishNotify".into()))
            && player.has_seen(|s| *s == Seen::Eof)
    });
    assert!(
        unpublished,
        "no UnpublishNotify + StreamEof after the publisher died: {:?}",
        player.seen()
    );
    assert!(
        player.ended().is_none(),
        "player dropped: {:?}",
        player.ended()
    );
    let mark = player.seen().len();
    let frames_at_unpublish = player.video_frames();

    let _republisher = publish(&server, "re");
    assert!(
        player.wait_video_above(frames_at_unpublish + 10, Duration::from_secs(15)),
        "no media after republish: {:?}",
        &player.seen()[mark.saturating_sub(3)..]
    );
    let seen = player.seen();
    let first_video = seen[mark..]
        .iter()
        .find(|s| {
            matches!(
                s,
                Seen::Media {
                    kind: FrameKind::Video,
                    ..
                }
            )
        })
        .cloned();
    match first_video {
        Some(Seen::Media {
            keyframe,
            sequence_header,
            ..
        }) => assert!(
            keyframe || sequence_header,
            "first video after republish is neither a sequence header nor a keyframe: {:?}",
            &seen[mark..(mark + 10).min(seen.len())]
        ),
        other => panic!("no video after republish: {other:?}"),
    }
    assert!(
        seen[mark..].iter().any(|s| matches!(
            s,
            Seen::Media {
                kind: FrameKind::Video,
                keyframe: true,
                ..
            }
        )),
        "no keyframe after republish"
    );
}

#[test]
fn timestamps_past_2_pow_24_ms_pass_through() {
    let _g = serial();
    let server = Server::start();
    let player = LibPlayer::start(server.port, "ts", Duration::from_secs(60));
    assert!(
        wait_until(Duration::from_secs(10), || player
            .has_seen(|s| *s == Seen::PlayStarted)),
        "player not started: {:?}",
        player.seen()
    );

    let mut publisher =
        LibClient::connect(server.port, "ts", ClientRole::Publish).expect("publisher connects");
    publisher
        .pump_until(Duration::from_secs(10), |e| {
            *e == ClientEvent::PublishStarted
        })
        .expect("publish accepted");

    const BASE: u32 = 0x00FF_FF00; // 256 ms before 2^24, just below the extended marker
    let mut frames: Vec<Frame> = vec![
        Frame::video(BASE, synth::avc_sequence_header()),
        Frame::audio(BASE, synth::aac_sequence_header()),
    ];
    let mut media: Vec<Frame> = (0..50u32)
        .map(|i| Frame::video(BASE + 40 * i, synth::avc_frame(i % 25 == 0, i as u8)))
        .chain((0..87u32).map(|j| Frame::audio(BASE + 23 * j, synth::aac_frame(j as u8))))
        .collect();
    media.sort_by_key(|f| f.timestamp);
    frames.extend(media);
    let sent = |kind: FrameKind| -> Vec<u32> {
        frames
            .iter()
            .filter(|f| f.kind == kind && !f.sequence_header)
            .map(|f| f.timestamp)
            .collect()
    };
    let (sent_video, sent_audio) = (sent(FrameKind::Video), sent(FrameKind::Audio));
    assert!(sent_video.iter().any(|&t| t < 1 << 24) && sent_video.iter().any(|&t| t > 1 << 24));

    for f in &frames {
        publisher.send_frame(f).expect("send frame");
        publisher
            .pump(Duration::from_millis(8))
            .expect("publisher pump");
    }
    // Media frames only (the frame counters include sequence headers): with merged reads and
    // writes the last frames arrive up to a window later than the counts say.
    let received = |seen: &[Seen], kind: FrameKind| -> Vec<u32> {
        seen.iter()
            .filter_map(|s| match s {
                Seen::Media {
                    kind: k,
                    ts,
                    sequence_header: false,
                    ..
                } if *k == kind => Some(*ts),
                _ => None,
            })
            .collect()
    };
    let all = wait_until(Duration::from_secs(10), || {
        let seen = player.seen();
        received(&seen, FrameKind::Video).len() >= sent_video.len()
            && received(&seen, FrameKind::Audio).len() >= sent_audio.len()
    });
    let seen = player.seen();
    let (got_video, got_audio) = (
        received(&seen, FrameKind::Video),
        received(&seen, FrameKind::Audio),
    );
    assert!(
        all,
        "player got {} of {} video and {} of {} audio frames",
        got_video.len(),
        sent_video.len(),
        got_audio.len(),
        sent_audio.len()
    );
    assert_eq!(got_video, sent_video, "video timestamps changed on the way");
    assert_eq!(got_audio, sent_audio, "audio timestamps changed on the way");
    assert!(
        seen.iter().any(|s| matches!(
            s,
            Seen::Media {
                kind: FrameKind::Video,
                sequence_header: true,
                ..
            }
        )),
        "no video sequence header reached the player"
    );
    for w in got_video.windows(2) {
        assert!(w[0] < w[1], "video timestamps not monotonic: {got_video:?}");
    }
}

#[test]
fn sigterm_stops_the_server_with_clients_connected() {
    let _g = serial();
    let mut server = Server::start();
    let mut publisher = publish(&server, "term");
    let errlog = server.dir.join("player.log");
    let mut player = Proc::spawn(
        "ffmpeg player",
        ffmpeg_play_cmd(&server.url("term"), 120)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&errlog).unwrap()),
    );
    server.expect_log(
        &[&format!("play stream={} ", Server::key("term"))],
        Duration::from_secs(10),
    );
    thread::sleep(Duration::from_millis(500));
    assert!(server.is_running());

    let signalled = Instant::now();
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(5));
    assert!(
        status.is_some(),
        "server still running 5 s after SIGTERM; log:\n{}",
        server.log_tail(30)
    );
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit status after SIGTERM ({:?} after the signal)",
        signalled.elapsed()
    );
    // Both clients lost their connection, so both end by themselves.
    assert!(
        publisher.wait_timeout(Duration::from_secs(10)).is_some(),
        "publisher still running after the server exited"
    );
    assert!(
        player.wait_timeout(Duration::from_secs(10)).is_some(),
        "player still running after the server exited"
    );
}

#[test]
fn twenty_library_players_all_receive_media() {
    let _g = serial();
    let server = Server::start();
    let _publisher = publish(&server, "many");
    let players: Vec<LibPlayer> = (0..20)
        .map(|_| LibPlayer::start(server.port, "many", Duration::from_secs(60)))
        .collect();
    let all = wait_until(Duration::from_secs(20), || {
        players.iter().all(|p| p.video_frames() > 50)
    });
    let counts: Vec<(u64, u64)> = players
        .iter()
        .map(|p| (p.video_frames(), p.audio_frames()))
        .collect();
    assert!(all, "not every player got 50 video frames: {counts:?}");
    assert!(
        counts.iter().all(|&(_, a)| a > 50),
        "audio missing: {counts:?}"
    );
    for p in &players {
        assert!(p.ended().is_none(), "a player ended: {:?}", p.ended());
        let first_video = p.seen().into_iter().find_map(|s| match s {
            Seen::Media {
                kind: FrameKind::Video,
                keyframe,
                sequence_header,
                ..
            } => Some(keyframe || sequence_header),
            _ => None,
        });
        assert_eq!(first_video, Some(true), "a player started mid-GOP");
    }
    let plays =
        server.count_lines(|l| l.contains(&format!("play stream={} ", Server::key("many"))));
    assert_eq!(plays, 20, "play lines in the log");
}

/// With merged writes (`mw_latency_ms`), the shard's flusher writes every player once per
/// window: media must still decode cleanly, a late joiner must still start on a keyframe, and
/// players on both shards must get it. With `splice_min_bytes = 0` nothing goes out by splice.
#[test]
fn merged_writes_deliver_decodable_media_to_every_shard() {
    let _g = serial();
    merged_writes_case("mw_latency_ms = 100\nsplice_min_bytes = 0\n", false);
}

/// The same when every merged write goes out by tee + splice from the shard's shared pipe
/// (and the server counts spliced writes).
#[test]
fn spliced_merged_writes_deliver_decodable_media_to_every_shard() {
    let _g = serial();
    merged_writes_case("mw_latency_ms = 300\nsplice_min_bytes = 1\n", true);
}

fn merged_writes_case(rtmp: &str, spliced: bool) {
    let server = Server::start_with(ServerOpts {
        rtmp: rtmp.into(),
        // For /metrics.
        http: true,
        ..ServerOpts::default()
    });
    let _publisher = publish(&server, "merged");
    thread::sleep(Duration::from_millis(2500));
    decode_cleanly(&server.url("merged"), 3);
    let packets = video_packets(&server.url("merged"), 8).expect("ffprobe packets");
    assert!(packets.len() >= 5, "too few video packets: {packets:?}");
    assert!(
        packets[0].2.contains('K'),
        "first video packet with merged writes is not a keyframe: {packets:?}"
    );
    // Library players land on both shards (at least six, more until both serve some: where a
    // connection lands is the kernel's choice); each must receive video.
    let key = Server::key("merged");
    let mut players: Vec<(usize, LibPlayer)> = Vec::new();
    let mut served = std::collections::BTreeSet::new();
    while (players.len() < 6 || served.len() < server.shards) && players.len() < 24 {
        let p = LibPlayer::start(server.port, "merged", Duration::from_secs(30));
        let shard = shard_of_player(&server, &key, &p);
        served.insert(shard);
        players.push((shard, p));
    }
    assert_eq!(
        served.len(),
        server.shards,
        "{} players were served by shards {served:?} only, of {}",
        players.len(),
        server.shards
    );
    for (shard, p) in &players {
        assert!(
            p.wait_video_above(20, Duration::from_secs(10)),
            "a player on shard {shard} got {} video frames with merged writes",
            p.video_frames()
        );
    }
    let shards: std::collections::HashSet<String> = server
        .log_lines()
        .iter()
        .filter(|l| l.contains(" play stream=") && l.contains("/merged "))
        .filter_map(|l| log_field(l, "shard").map(str::to_string))
        .collect();
    assert!(!shards.is_empty(), "no play lines logged");
    assert_eq!(
        shards.len(),
        server.shards,
        "play lines of only shards {shards:?}"
    );
    assert_eq!(
        server.count_lines(|l| l.contains("copying instead")),
        0,
        "the shard could not make its splice pipes:\n{}",
        server.log_tail(20)
    );
    // Whether the merged writes went out by splice (the figure is a snapshot, every 250 ms).
    let http = server.http_port.expect("http port");
    let spliced_writes = || sum_of(&get_metrics(http), "shardcast_spliced_writes_total");
    if spliced {
        assert!(
            wait_until(Duration::from_secs(5), || spliced_writes() > 0.0),
            "players got media but nothing went out by splice: {} spliced writes",
            spliced_writes()
        );
    } else {
        assert_eq!(
            spliced_writes(),
            0.0,
            "writes went out by splice with splice_min_bytes = 0"
        );
    }
}

/// The shard whose play line names `player` (by its local port), waiting up to 5 s for it.
fn shard_of_player(server: &Server, key: &str, player: &LibPlayer) -> usize {
    assert!(
        wait_until(Duration::from_secs(5), || player.local_port() != 0),
        "player did not connect: {:?}",
        player.seen()
    );
    let peer = format!(" peer=127.0.0.1:{} ", player.local_port());
    let play = format!(" play stream={key} ");
    let line = server
        .wait_for_line(Duration::from_secs(5), |l| {
            l.contains(&peer) && l.contains(&play)
        })
        .unwrap_or_else(|| panic!("no play line for the player at{peer}: {:?}", player.seen()));
    log_field(&line, "shard")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no shard= in {line}"))
}
