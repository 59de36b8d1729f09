//! Hostile and broken clients: each bad input comes on its own connection while a real ffmpeg
//! publishes and a library player watches. For every case the server must log an `error:` line
//! naming the cause for that connection, close it, and keep serving the watching player.

mod common;

use common::*;
use shardcast::rtmp::amf0::Amf0Value;
use shardcast::rtmp::handshake::ClientHandshake;
use shardcast::rtmp::message::type_id;
use std::thread;
use std::time::{Duration, Instant};

const MAX_MESSAGE: u32 = 1024 * 1024;
const MAX_CHUNK_STREAMS: u32 = 16;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// One bad client: does its thing on `conn`, returns the text its `error:` line must contain.
struct Case {
    name: &'static str,
    cause: &'static str,
    run: fn(&mut RawConn) -> Result<(), String>,
}

fn http_request(c: &mut RawConn) -> Result<(), String> {
    c.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: e2e\r\n\r\n")
        .map_err(|e| e.to_string())
}

fn stalled_handshake(c: &mut RawConn) -> Result<(), String> {
    let mut hs = ClientHandshake::new(7, 0, false);
    let c0c1 = hs.start();
    c.write(&c0c1[..100]).map_err(|e| e.to_string())
}

fn rtmpe_version(c: &mut RawConn) -> Result<(), String> {
    let mut hs = ClientHandshake::new(7, 0, false);
    let mut c0c1 = hs.start();
    c0c1[0] = 6;
    c.write(&c0c1).map_err(|e| e.to_string())
}

fn chunk_size_zero(c: &mut RawConn) -> Result<(), String> {
    c.handshake()?;
    c.send(2, 0, type_id::SET_CHUNK_SIZE, 0, &0u32.to_be_bytes());
    Ok(())
}

fn chunk_size_huge(c: &mut RawConn) -> Result<(), String> {
    c.handshake()?;
    c.send(
        2,
        0,
        type_id::SET_CHUNK_SIZE,
        0,
        &0x7FFF_FFFFu32.to_be_bytes(),
    );
    Ok(())
}

fn message_too_long(c: &mut RawConn) -> Result<(), String> {
    c.handshake()?;
    c.rtmp_connect()?;
    // A type-0 header announcing a 2 MiB video message; the header alone must be refused.
    let len = 2 * MAX_MESSAGE;
    let mut h = vec![0x06]; // fmt 0, csid 6
    h.extend_from_slice(&[0, 0, 0]);
    h.extend_from_slice(&len.to_be_bytes()[1..]);
    h.push(type_id::VIDEO);
    h.extend_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(&[0x17; 64]);
    c.write(&h).map_err(|e| e.to_string())
}

fn too_many_chunk_streams(c: &mut RawConn) -> Result<(), String> {
    c.handshake()?;
    // Harmless Window Acknowledgement Size messages, each on a chunk stream of its own.
    for csid in 3..3 + MAX_CHUNK_STREAMS + 8 {
        c.send(
            csid,
            0,
            type_id::WINDOW_ACK_SIZE,
            0,
            &2_500_000u32.to_be_bytes(),
        );
    }
    Ok(())
}

fn truncated_amf_string(c: &mut RawConn) -> Result<(), String> {
    c.handshake()?;
    // String marker, length 16, only 4 bytes of it.
    c.send(
        3,
        0,
        type_id::COMMAND_AMF0,
        0,
        &[0x02, 0x00, 0x10, b'c', b'o', b'n', b'n'],
    );
    Ok(())
}

fn deep_amf(c: &mut RawConn) -> Result<(), String> {
    c.handshake()?;
    let mut p =
        shardcast::rtmp::amf0::encode_all(&[Amf0Value::string("connect"), Amf0Value::Number(1.0)]);
    for _ in 0..10_000 {
        p.extend_from_slice(&[0x03, 0x00, 0x01, b'a']); // object { "a": <next> ...
    }
    p.push(0x05); // null at the bottom; the object ends never come
    c.send(3, 0, type_id::COMMAND_AMF0, 0, &p);
    Ok(())
}

fn play_before_connect(c: &mut RawConn) -> Result<(), String> {
    c.handshake()?;
    c.command(
        1,
        "play",
        0.0,
        vec![Amf0Value::Null, Amf0Value::string("watched")],
    );
    Ok(())
}

fn publish_twice(c: &mut RawConn) -> Result<(), String> {
    c.handshake()?;
    c.rtmp_connect()?;
    let sid = c.create_stream()?;
    let publish = |c: &mut RawConn| {
        c.command(
            sid,
            "publish",
            0.0,
            vec![
                Amf0Value::Null,
                Amf0Value::string("twice"),
                Amf0Value::string("live"),
            ],
        )
    };
    publish(c);
    c.wait_command(Duration::from_secs(5), |cmd| {
        cmd.name == "onStatus"
            && cmd
                .args
                .first()
                .and_then(|o| o.get("code"))
                .and_then(|v| v.as_str())
                == Some("NetStream.Publish.Start")
    })?;
    publish(c);
    Ok(())
}

fn media_on_unknown_stream(c: &mut RawConn) -> Result<(), String> {
    c.handshake()?;
    c.rtmp_connect()?;
    c.send(4, 0, type_id::AUDIO, 5, &[0xAF, 0x01, 0x21, 0x10, 0x04]);
    Ok(())
}

const CASES: &[Case] = &[
    Case {
        name: "HTTP request instead of a handshake",
        cause: "unsupported RTMP handshake version 71",
        run: http_request,
    },
    Case {
        name: "handshake stalls after 100 bytes",
        cause: "handshake timed out",
        run: stalled_handshake,
    },
    Case {
        name: "C0 version 6 (RTMPE)",
        cause: "unsupported RTMP handshake version 6",
        run: rtmpe_version,
    },
    Case {
        name: "Set Chunk Size 0",
        cause: "chunk size to 0",
        run: chunk_size_zero,
    },
    Case {
        name: "Set Chunk Size 2^31-1",
        cause: "chunk size to 2147483647, above the limit",
        run: chunk_size_huge,
    },
    Case {
        name: "message longer than max_message_size",
        cause: "message of 2097152 bytes exceeds the limit of 1048576",
        run: message_too_long,
    },
    Case {
        name: "more chunk streams than max_chunk_streams",
        cause: "more than 16 chunk streams",
        run: too_many_chunk_streams,
    },
    Case {
        name: "truncated AMF string in a command",
        cause: "malformed AMF",
        run: truncated_amf_string,
    },
    Case {
        name: "10,000 nested AMF objects",
        cause: "nested deeper than",
        run: deep_amf,
    },
    Case {
        name: "play before connect",
        cause: "`play` before connect",
        run: play_before_connect,
    },
    Case {
        name: "publish twice on one stream id",
        cause: "`publish` on stream 1 which is publishing",
        run: publish_twice,
    },
    Case {
        name: "audio on a stream id never created",
        cause: "media on stream id 5 that was never created",
        run: media_on_unknown_stream,
    },
];

/// Runs one case; `Err` describes everything that went wrong.
fn check_case(server: &Server, watcher: &LibPlayer, case: &Case) -> Result<(), String> {
    let mut c = RawConn::open(server.port);
    let peer = c.peer();
    let started = Instant::now();
    (case.run)(&mut c).map_err(|e| format!("client side failed before the bad input: {e}"))?;
    let mut problems = Vec::new();

    // (b) the server hangs up.
    match c.wait_closed(Duration::from_secs(6)) {
        Ok(_) => {
            let after = started.elapsed();
            if case.cause == "handshake timed out" && after < HANDSHAKE_TIMEOUT * 3 / 4 {
                problems.push(format!(
                    "closed after {after:?}, before the handshake timeout"
                ));
            }
        }
        Err(e) => problems.push(format!("connection not closed: {e}")),
    }

    // (a) an error line for this very connection, naming the cause.
    let error_line = server.wait_for_line(Duration::from_secs(3), |l| {
        l.contains(&format!("{peer} error: "))
    });
    match error_line {
        Some(l) if l.contains(case.cause) => {}
        Some(l) => problems.push(format!("error line does not name `{}`: {l}", case.cause)),
        None => problems.push(format!("no `{peer} error:` line")),
    }
    if server
        .wait_for_log(&[&peer, " close reason=\"error: "], Duration::from_secs(3))
        .is_none()
    {
        problems.push(format!("no close line with an error reason for {peer}"));
    }

    // (c) the watching player is still fed.
    let before = watcher.video_frames();
    if !watcher.wait_video_above(before + 5, Duration::from_secs(5)) {
        problems.push(format!(
            "watching player stalled at {} video frames ({:?})",
            watcher.video_frames(),
            watcher.ended()
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[test]
fn bad_inputs_close_only_their_own_connection() {
    let _g = serial();
    let server = Server::start_with(ServerOpts {
        shards: 2,
        server: "handshake_timeout_secs = 2\n".into(),
        rtmp: format!(
            "max_message_size = {MAX_MESSAGE}\nmax_chunk_streams = {MAX_CHUNK_STREAMS}\n"
        ),
        ..ServerOpts::default()
    });
    let mut publisher = publish(&server, "watched");
    let watcher = LibPlayer::start(server.port, "watched", Duration::from_secs(120));
    assert!(
        watcher.wait_video_above(10, Duration::from_secs(10)),
        "watching player gets no media: {:?}",
        watcher.seen()
    );

    let mut failures = Vec::new();
    for case in CASES {
        if let Err(e) = check_case(&server, &watcher, case) {
            failures.push(format!("{}: {e}", case.name));
        }
    }
    assert!(
        publisher.try_status().is_none(),
        "the publisher died during the bad inputs"
    );
    assert!(
        watcher.ended().is_none(),
        "watcher ended: {:?}",
        watcher.ended()
    );
    assert!(
        failures.is_empty(),
        "{} of {} bad-input cases failed:\n  {}",
        failures.len(),
        CASES.len(),
        failures.join("\n  ")
    );
}

#[test]
fn connections_past_max_connections_are_refused() {
    let _g = serial();
    let server = Server::start_with(ServerOpts {
        shards: 2,
        server: "max_connections = 3\nhandshake_timeout_secs = 30\n".into(),
        rtmp: String::new(),
        ..ServerOpts::default()
    });
    // Three connections that finished the handshake are certainly counted.
    let mut held: Vec<RawConn> = (0..3)
        .map(|i| {
            let mut c = RawConn::open(server.port);
            c.handshake()
                .unwrap_or_else(|e| panic!("connection {i} within the limit: {e}"));
            c
        })
        .collect();

    let mut fourth = RawConn::open(server.port);
    let closed = fourth.wait_closed(Duration::from_secs(3));
    assert!(closed.is_ok(), "4th connection: {closed:?}");
    let line = server.expect_log(
        &[&fourth.peer(), " refused: max_connections (3) reached"],
        Duration::from_secs(2),
    );
    assert!(line.contains("refused: max_connections"), "{line}");
    for c in &held {
        assert!(
            server.count_lines(|l| l.contains(&c.peer()) && l.contains("refused")) == 0,
            "a connection within the limit was refused"
        );
    }

    // Closing one frees a slot (the count drops once the server notices the close).
    held.pop();
    let mut admitted = false;
    for _ in 0..20 {
        let mut c = RawConn::open(server.port);
        if c.handshake().is_ok() {
            admitted = true;
            held.push(c);
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    assert!(admitted, "no connection admitted after one of three closed");
}
