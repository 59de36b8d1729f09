//! Shard behaviour on the in-process server (`shardcast::server::start`): two shards in this
//! test process, driven by the library's RTMP client, checked through the stats board and the
//! controller instead of a log. No ffmpeg, no child process, no sleeps used as synchronisation.

mod common;

use common::*;
use shardcast::config::Config;
use shardcast::rtmp::client::ClientRole;
use shardcast::server::board::ShardSnapshot;
use shardcast::server::ids::ConnId;
use shardcast::server::kinds::{ClientKind, ForwardState};
use shardcast::server::{self, Handle};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

const LIFE: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(10);

/// A two-shard server on free loopback ports, with `extra` TOML appended to the config.
fn start_server(extra: &str) -> Handle {
    let cfg = config(extra);
    server::start(cfg).expect("server starts")
}

fn config(extra: &str) -> Config {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nshards = 2\n[http]\nenabled = true\nlisten = \"127.0.0.1:0\"\n{extra}"
    );
    Config::from_toml(&text, "harness test").expect("valid test config")
}

fn port(h: &Handle) -> u16 {
    h.rtmp_addr.port()
}

fn board(h: &Handle) -> Vec<ShardSnapshot> {
    h.global().board.read()
}

/// The shard and client id of the client whose peer port is `local_port`, once the board
/// lists it.
fn find_client(h: &Handle, local_port: u16) -> Option<(usize, u64)> {
    let suffix = format!(":{local_port}");
    board(h)
        .iter()
        .flat_map(|s| s.clients.iter())
        .find(|c| c.peer.ends_with(&suffix))
        .map(|c| (c.shard, c.id))
}

fn publisher(h: &Handle, name: &str) -> SynthPublisher {
    SynthPublisher::start(port(h), name, 2000, 25, 25, LIFE)
}

#[test]
fn one_publish_reaches_players_on_both_shards_once_per_shard() {
    let _g = serial();
    let h = start_server("");
    let _pubr = publisher(&h, "fan");
    let mut players = Vec::new();
    let mut shards = BTreeSet::new();
    // SO_REUSEPORT spreads connections by hash: add players until both shards have some.
    for _ in 0..40 {
        let p = LibPlayer::start(port(&h), "fan", LIFE);
        assert!(wait_until(WAIT, || p.local_port() != 0), "player connected");
        assert!(
            wait_until(WAIT, || find_client(&h, p.local_port()).is_some()),
            "the board lists the player"
        );
        shards.insert(find_client(&h, p.local_port()).unwrap().0);
        players.push(p);
        if shards.len() == 2 && players.len() >= 6 {
            break;
        }
    }
    assert_eq!(shards.len(), 2, "players landed on both shards");
    for p in &players {
        assert!(
            p.wait_video_above(20, WAIT),
            "a player got {} video frames",
            p.video_frames()
        );
    }
    // Each shard holds the stream once, live, with exactly its own players on it.
    let ok = wait_until(WAIT, || {
        let snaps = board(&h);
        snaps.iter().all(|s| {
            let players_here = s
                .clients
                .iter()
                .filter(|c| c.kind == ClientKind::RtmpPlay)
                .count();
            let streams: Vec<_> = s
                .streams
                .iter()
                .filter(|st| st.key.stream_name() == "fan")
                .collect();
            streams.len() == 1 && streams[0].live && streams[0].players == players_here
        })
    });
    assert!(
        ok,
        "per-shard streams match their players: {:#?}",
        board(&h)
    );
    let publishers: usize = board(&h)
        .iter()
        .flat_map(|s| s.streams.iter())
        .filter(|s| s.publisher.is_some())
        .count();
    assert_eq!(publishers, 1, "one shard holds the source");
    assert_eq!(
        board(&h).iter().map(|s| s.mesh_media_dropped).sum::<u64>(),
        0,
        "no media dropped between shards"
    );
    h.shutdown().expect("clean shutdown");
}

#[test]
fn a_second_publisher_of_a_stream_is_refused_whichever_shard_it_lands_on() {
    let _g = serial();
    let h = start_server("");
    let first = publisher(&h, "dup");
    assert!(
        wait_until(WAIT, || first.sent() > 5),
        "first publisher runs"
    );
    for _ in 0..4 {
        let mut c = LibClient::connect(port(&h), "dup", ClientRole::Publish).unwrap();
        let r = c.pump_until(WAIT, |e| {
            matches!(e, shardcast::rtmp::client::ClientEvent::PublishStarted)
        });
        let err = r.expect_err("a second publish is refused");
        assert!(err.contains("NetStream.Publish.BadName"), "{err}");
    }
    assert!(first.ended().is_none(), "the first publisher is untouched");
    h.shutdown().expect("clean shutdown");
}

#[test]
fn kicks_through_the_controller_reach_the_clients_shard_and_end_only_that_client() {
    let _g = serial();
    let h = start_server("");
    let _pubr = publisher(&h, "kick");
    let other = LibPlayer::start(port(&h), "kick", LIFE);
    assert!(other.wait_video_above(5, WAIT));
    // Victims until both shards hold one (where a connection lands is up to the kernel).
    let mut victims = Vec::new();
    let mut shards = BTreeSet::new();
    for _ in 0..20 {
        let v = LibPlayer::start(port(&h), "kick", LIFE);
        assert!(v.wait_video_above(2, WAIT), "victim plays");
        let found = wait_until(WAIT, || find_client(&h, v.local_port()).is_some());
        assert!(found, "the victim is on the board");
        shards.insert(find_client(&h, v.local_port()).unwrap().0);
        victims.push(v);
        if shards.len() == 2 {
            break;
        }
    }
    assert_eq!(shards.len(), 2, "victims on both shards");
    for v in &victims {
        let (shard, id) = find_client(&h, v.local_port()).unwrap();
        assert_eq!(ConnId::from_raw(id).shard(), shard, "ids name their shard");
        h.controller().kick(ConnId::from_raw(id));
        assert!(
            wait_until(WAIT, || v.ended().is_some()),
            "the kicked player on shard {shard} was disconnected"
        );
        assert!(
            wait_until(WAIT, || find_client(&h, v.local_port()).is_none()),
            "the board drops the kicked client"
        );
    }
    let before = other.video_frames();
    assert!(
        other.wait_video_above(before + 10, WAIT),
        "the other player keeps playing"
    );
    assert!(other.ended().is_none());
    h.shutdown().expect("clean shutdown");
}

#[test]
fn a_reload_applies_to_new_requests_and_keeps_running_players() {
    let _g = serial();
    let h = start_server("");
    let _pubr = publisher(&h, "rl");
    let running = LibPlayer::start(port(&h), "rl", LIFE);
    assert!(running.wait_video_above(5, WAIT));
    let denied = config("[security]\nrules = [\"deny play all\"]\n");
    let generation = h.controller().reload(Arc::new(denied));
    assert_eq!(generation, 1);
    // The reload is a message to each shard; a new player on either shard is refused.
    let mut refused = 0;
    for _ in 0..6 {
        let p = LibPlayer::start(port(&h), "rl", LIFE);
        let ended = wait_until(WAIT, || p.ended().is_some() || p.video_frames() > 0);
        assert!(ended, "the new player either plays or is refused");
        let failed = |s: &Seen| match s {
            Seen::Status(c) => c == "NetStream.Play.Failed",
            Seen::Ended(why) => why.contains("NetStream.Play.Failed"),
            _ => false,
        };
        if p.has_seen(failed) {
            refused += 1;
        } else {
            eprintln!(
                "not refused: {:?}",
                p.seen().iter().take(4).collect::<Vec<_>>()
            );
        }
    }
    assert!(
        refused >= 5,
        "new players refused after the reload: {refused} of 6"
    );
    let before = running.video_frames();
    assert!(
        running.wait_video_above(before + 10, WAIT),
        "a player from before the reload keeps playing"
    );
    h.shutdown().expect("clean shutdown");
}

#[test]
fn forward_publishes_to_another_server_and_stops_with_the_publish() {
    let _g = serial();
    let slave = start_server("");
    let dest = slave.rtmp_addr;
    let master = start_server(&format!(
        "[forward]\nenabled = true\ndestinations = [\"{dest}\"]\nbackoff_initial_ms = 200\n"
    ));
    let mut pubr = publisher(&master, "fw");
    let on_slave = LibPlayer::start(port(&slave), "fw", LIFE);
    assert!(
        on_slave.wait_video_above(20, WAIT),
        "a player on the slave got {} video frames",
        on_slave.video_frames()
    );
    let publishing = wait_until(WAIT, || {
        board(&master)
            .iter()
            .flat_map(|s| s.forwards.iter())
            .any(|f| f.state == ForwardState::Publishing && f.dest.contains(&dest.to_string()))
    });
    assert!(publishing, "the master shows the forward publishing");
    pubr.stop();
    assert!(
        wait_until(WAIT, || on_slave.has_seen(
            |s| matches!(s, Seen::Status(c) if c == "NetStream.Play.UnpublishNotify")
        )),
        "the slave's player hears of the unpublish: {:?}",
        on_slave.seen().last()
    );
    assert!(
        wait_until(WAIT, || board(&master)
            .iter()
            .all(|s| s.forwards.is_empty())),
        "the forward peer is gone with the publish"
    );
    master.shutdown().expect("master stops");
    slave.shutdown().expect("slave stops");
}

#[test]
fn shutdown_ends_every_connection_and_returns() {
    let _g = serial();
    let h = start_server("");
    let _pubr = publisher(&h, "bye");
    let p = LibPlayer::start(port(&h), "bye", LIFE);
    assert!(p.wait_video_above(5, WAIT));
    h.shutdown().expect("clean shutdown");
    assert!(
        wait_until(WAIT, || p.ended().is_some()),
        "the player's connection ended"
    );
}

#[test]
fn merged_reads_still_deliver_every_frame_in_order() {
    let _g = serial();
    let h = start_server("[rtmp]\nmr_latency_ms = 100\n");
    let pubr = publisher(&h, "mr");
    let p = LibPlayer::start(port(&h), "mr", LIFE);
    assert!(p.wait_video_above(50, WAIT), "{} frames", p.video_frames());
    // No frame lost between the publisher and the player: the counts keep pace (the player
    // joined on the cached GOP, so it may have seen a few more than were sent since).
    let sent = pubr.sent();
    assert!(
        wait_until(WAIT, || p.video_frames() + 30 >= sent),
        "player {} vs sent {sent}",
        p.video_frames()
    );
    let mut last = 0;
    for s in p.seen() {
        if let Seen::Media {
            kind: shardcast::media::FrameKind::Video,
            ts,
            sequence_header: false,
            ..
        } = s
        {
            assert!(ts >= last, "timestamps went back: {last} -> {ts}");
            last = ts;
        }
    }
    h.shutdown().expect("clean shutdown");
}

/// Whether the board shows `name` live.
fn live(h: &Handle, name: &str) -> bool {
    board(h)
        .iter()
        .flat_map(|s| s.streams.iter())
        .any(|s| s.key.stream_name() == name && s.live)
}

/// Send `count` synthetic video + audio frames at 25 fps from `c`, answering the server.
fn send_frames(c: &mut LibClient, from: u32, count: u32) -> Result<(), String> {
    use shardcast::media::Frame;
    for n in from..from + count {
        let ts = n * 40;
        let key = n.is_multiple_of(25);
        for f in [
            Frame::video(ts, synth::avc_frame(key, n as u8)),
            Frame::audio(ts, synth::aac_frame(n as u8)),
        ] {
            c.send_frame(&f).map_err(|e| format!("write: {e}"))?;
        }
        c.pump(Duration::from_millis(40))?;
    }
    Ok(())
}

/// A merged-read publisher's session is fed by the shard's read tick while its task sleeps
/// (`parked_publisher`): its commands, a kick and reloads of the read period must still reach
/// the task, and its media the players.
#[test]
fn a_parked_publisher_still_hears_commands_kicks_and_reloads() {
    use shardcast::media::Frame;
    use shardcast::rtmp::client::ClientEvent;
    let _g = serial();
    let h = start_server("[rtmp]\nmr_latency_ms = 50\n");
    let mut c = LibClient::connect(port(&h), "parked", ClientRole::Publish).expect("connects");
    c.pump_until(WAIT, |e| *e == ClientEvent::PublishStarted)
        .expect("publish starts");
    for f in [
        Frame::video(0, synth::avc_sequence_header()),
        Frame::audio(0, synth::aac_sequence_header()),
    ] {
        c.send_frame(&f).expect("headers sent");
    }
    let p = LibPlayer::start(port(&h), "parked", LIFE);
    send_frames(&mut c, 0, 25).expect("frames sent");
    assert!(p.wait_video_above(10, WAIT), "{} frames", p.video_frames());

    // A command right behind media (so it arrives while the publisher is parked): the tick
    // hands the session back to the task, which ends the publish; the connection stays.
    c.send_frame(&Frame::video(1000, synth::avc_frame(false, 0)))
        .expect("frame sent");
    c.session.unpublish();
    c.flush().expect("unpublish sent");
    assert!(
        wait_until(WAIT, || !live(&h, "parked")),
        "the unpublish was handled"
    );
    let me = c.local_port();
    let listed = wait_until(WAIT, || find_client(&h, me).is_some());
    assert!(listed, "the board lists the publisher");
    let open = c.pump(Duration::from_millis(200));
    assert!(open.is_ok(), "the connection stays open: {open:?}");

    // The read period changed by reloads while a publisher is parked: media keeps flowing.
    let pubr = publisher(&h, "retimed");
    let q = LibPlayer::start(port(&h), "retimed", LIFE);
    assert!(q.wait_video_above(10, WAIT), "{} frames", q.video_frames());
    for mr in [0, 30, 100] {
        h.controller()
            .reload(Arc::new(config(&format!("[rtmp]\nmr_latency_ms = {mr}\n"))));
        let before = q.video_frames();
        assert!(
            q.wait_video_above(before + 15, WAIT),
            "media after the reload to mr {mr}: {} frames",
            q.video_frames()
        );
    }
    assert!(pubr.ended().is_none(), "{:?}", pubr.ended());

    // Bad input from a parked publisher: its connection ends, the other streams go on.
    let mut g = LibClient::connect(port(&h), "garbled", ClientRole::Publish).expect("connects");
    g.pump_until(WAIT, |e| *e == ClientEvent::PublishStarted)
        .expect("publish starts");
    send_frames(&mut g, 0, 5).expect("frames sent");
    assert!(
        wait_until(WAIT, || live(&h, "garbled")),
        "the stream is live"
    );
    // Set Chunk Size 0 (a protocol error) right behind a frame, so it arrives while parked.
    g.send_frame(&Frame::video(300, synth::avc_frame(false, 1)))
        .expect("frame sent");
    let bad = [0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 0];
    std::io::Write::write_all(&mut g.sock, &bad).expect("written");
    let ended = wait_until(WAIT, || g.pump(Duration::from_millis(20)).is_err());
    assert!(ended, "the server closed the garbled publisher");
    assert!(
        wait_until(WAIT, || !live(&h, "garbled")),
        "its stream ended"
    );
    let before = q.video_frames();
    assert!(
        q.wait_video_above(before + 10, WAIT),
        "the other stream's player goes on"
    );

    // A kick of a publisher that keeps sending (parked on every tick): its connection ends,
    // the board drops it.
    let mut k = LibClient::connect(port(&h), "kicked", ClientRole::Publish).expect("connects");
    k.pump_until(WAIT, |e| *e == ClientEvent::PublishStarted)
        .expect("publish starts");
    send_frames(&mut k, 0, 5).expect("frames sent");
    let kp = k.local_port();
    assert!(
        wait_until(WAIT, || live(&h, "kicked")),
        "the stream is live"
    );
    // (The board lists clients once a second.)
    let listed = wait_until(WAIT, || find_client(&h, kp).is_some());
    assert!(listed, "the board lists the publisher");
    let (_, id) = find_client(&h, kp).expect("listed");
    h.controller().kick(ConnId::from_raw(id));
    let mut n = 5;
    let ended = wait_until(WAIT, || {
        n += 1;
        send_frames(&mut k, n, 1).is_err()
    });
    assert!(ended, "the kicked publisher's connection ended");
    assert!(
        wait_until(WAIT, || find_client(&h, kp).is_none()),
        "the board drops the kicked publisher"
    );
    assert!(find_client(&h, me).is_some(), "only the kicked one went");
    h.shutdown().expect("clean shutdown");
}
