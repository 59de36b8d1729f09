//! Regressions for crashes found while building the fuzz targets in `fuzz/` (see
//! `scripts/fuzz.sh`). Each test feeds the exact bytes through the same public API the fuzz
//! target (and `server::conn`) uses.
//!
//! Lossy UTF-8 expansion (found while writing the `session` target; its inputs are capped at
//! 16 KiB, so the fuzzer itself cannot reach it): AMF0 strings are decoded with
//! `String::from_utf8_lossy`, which turns every invalid byte into U+FFFD (3 bytes). A 5.6 MB long
//! string (marker 0x0C) of 0xFF bytes fits in one 8 MiB message (the default
//! `rtmp.max_message_size`) but becomes a 16.8 MB `String`. Anything that echoed such a string
//! back in one RTMP message (the `_error` answer to an unknown command, `NetStream.Play.Start`'s
//! description, a re-encoded `@setDataFrame`) exceeded the 0xFFFFFF message length and
//! `encode_message` panicked ("RTMP message of 16800106 bytes exceeds 16777215"), taking the
//! shard's thread down. Each test below panicked that way before the fix.

use bytes::BytesMut;
use shardcast::rtmp::amf0::{encode_all, Amf0Value};
use shardcast::rtmp::chunk::{encode_message, ChunkDecoder, DecoderLimits, MAX_MESSAGE_LEN};
use shardcast::rtmp::handshake::HANDSHAKE_SIZE;
use shardcast::rtmp::session::{ServerSession, SessionConfig, SessionEvent};

/// Chunk size the test client announces, so the big messages need few chunks.
const CHUNK: u32 = 65_536;
/// 0xFF bytes in the long string: 3 * N > 0xFFFFFF, N + a few bytes < 8 MiB.
const N: usize = 5_600_000;

/// AMF0 long string (0x0C) of N invalid UTF-8 bytes.
fn invalid_long_string() -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + N);
    v.push(0x0C);
    v.extend_from_slice(&(N as u32).to_be_bytes());
    v.resize(5 + N, 0xFF);
    v
}

fn command(name: &str, txn: f64, obj: Amf0Value, args: Vec<Amf0Value>) -> Vec<u8> {
    let mut values = vec![Amf0Value::string(name), Amf0Value::Number(txn), obj];
    values.extend(args);
    encode_all(&values)
}

/// A plain handshake, Set Chunk Size and connect.
fn connect_bytes() -> Vec<u8> {
    let mut out = vec![3u8];
    out.extend(std::iter::repeat_n(0u8, 8));
    out.extend((8..HANDSHAKE_SIZE).map(|i| i as u8));
    out.extend(std::iter::repeat_n(7u8, HANDSHAKE_SIZE));
    let mut chunks = BytesMut::new();
    encode_message(&mut chunks, 128, 2, 0, 1, 0, &CHUNK.to_be_bytes());
    let obj = Amf0Value::object([
        ("app", Amf0Value::string("live")),
        ("tcUrl", Amf0Value::string("rtmp://127.0.0.1/live")),
    ]);
    encode_message(
        &mut chunks,
        CHUNK,
        3,
        0,
        20,
        0,
        &command("connect", 1.0, obj, vec![]),
    );
    out.extend_from_slice(&chunks);
    out
}

fn message(type_id: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    let csid = if stream_id == 0 { 3 } else { 5 };
    encode_message(&mut out, CHUNK, csid, 0, type_id, stream_id, payload);
    out.to_vec()
}

/// Drives the session like `server::conn` and the `session` fuzz target: accepts every request
/// (play with the requested name), resumes, and collects events. Panics propagate.
fn feed(s: &mut ServerSession, input: &[u8], events: &mut Vec<SessionEvent>) -> bool {
    let mut input = input;
    loop {
        let result = s.handle_input(input);
        input = &[];
        while let Some(ev) = s.poll_event() {
            match &ev {
                SessionEvent::ConnectRequested { .. } => s.accept_connect(),
                SessionEvent::PublishRequested { stream_id, .. } => s.accept_publish(*stream_id),
                SessionEvent::PlayRequested {
                    stream_id,
                    name,
                    reset,
                    ..
                } => s.accept_play(*stream_id, *reset, name),
                _ => {}
            }
            events.push(ev);
        }
        if result.is_err() {
            return false;
        }
        if !s.resumable() {
            return true;
        }
    }
}

/// Everything the server sent after the handshake must decode as a chunk stream.
fn check_output(s: &mut ServerSession) {
    let mut out = Vec::new();
    while let Some(b) = s.poll_transmit() {
        out.extend_from_slice(&b);
    }
    let mut dec = ChunkDecoder::new(DecoderLimits {
        max_message_len: MAX_MESSAGE_LEN,
        ..DecoderLimits::default()
    });
    dec.push(&out[1 + 2 * HANDSHAKE_SIZE..]);
    while dec.next_message().expect("server output decodes").is_some() {}
}

fn connected() -> (ServerSession, Vec<SessionEvent>) {
    let mut s = ServerSession::new(SessionConfig::default(), 1, 0);
    let mut events = Vec::new();
    assert!(feed(&mut s, &connect_bytes(), &mut events));
    assert!(matches!(
        events.last(),
        Some(SessionEvent::ConnectRequested { .. })
    ));
    (s, events)
}

fn create_stream(s: &mut ServerSession, events: &mut Vec<SessionEvent>) {
    let create = command("createStream", 2.0, Amf0Value::Null, vec![]);
    assert!(feed(s, &message(20, 0, &create), events));
}

/// session target: unknown command named by an invalid-UTF-8 long string; the `_error` reply
/// ("unknown command <name>") is over 16 MiB.
#[test]
fn unknown_command_with_invalid_utf8_long_name() {
    let (mut s, mut events) = connected();
    let mut payload = invalid_long_string();
    payload.extend(encode_all(&[Amf0Value::Number(5.0), Amf0Value::Null]));
    feed(&mut s, &message(20, 0, &payload), &mut events);
    check_output(&mut s);
}

/// session target: `play` of an invalid-UTF-8 long name, accepted with that name as
/// `server::conn` does; the `NetStream.Play.Start` description is over 16 MiB.
#[test]
fn play_with_invalid_utf8_long_name() {
    let (mut s, mut events) = connected();
    create_stream(&mut s, &mut events);
    let mut payload = encode_all(&[
        Amf0Value::string("play"),
        Amf0Value::Number(3.0),
        Amf0Value::Null,
    ]);
    payload.extend(invalid_long_string());
    feed(&mut s, &message(20, 1, &payload), &mut events);
    assert!(events
        .iter()
        .any(|e| matches!(e, SessionEvent::PlayRequested { .. })));
    check_output(&mut s);
}

/// session target: `@setDataFrame` metadata is re-encoded from the lossy values, so the Media
/// frame handed to the application is over 16 MiB and cannot be sent to any player
/// (`server::packet::encode_frame` panics).
#[test]
fn set_data_frame_with_invalid_utf8_long_string() {
    let (mut s, mut events) = connected();
    create_stream(&mut s, &mut events);
    let publish = command(
        "publish",
        3.0,
        Amf0Value::Null,
        vec![Amf0Value::string("s"), Amf0Value::string("live")],
    );
    assert!(feed(&mut s, &message(20, 1, &publish), &mut events));
    let mut data = encode_all(&[
        Amf0Value::string("@setDataFrame"),
        Amf0Value::string("onMetaData"),
    ]);
    data.extend(invalid_long_string());
    feed(&mut s, &message(18, 1, &data), &mut events);
    let frames: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Media { frame, .. } => Some(frame),
            _ => None,
        })
        .collect();
    assert!(
        !frames.is_empty(),
        "the metadata frame was not handed to the application: nothing to encode"
    );
    for frame in frames {
        // What the stream fan-out does for every player...
        let bytes = shardcast::server::packet::encode_frame(frame, 4096, 1);
        assert!(!bytes.is_empty());
        // ...and a player gets the frame back from it (after the server's Set Chunk Size).
        let mut dec = ChunkDecoder::new(DecoderLimits {
            max_message_len: MAX_MESSAGE_LEN,
            ..DecoderLimits::default()
        });
        let mut set_chunk_size = BytesMut::new();
        encode_message(&mut set_chunk_size, 128, 2, 0, 1, 0, &4096u32.to_be_bytes());
        dec.push(&set_chunk_size);
        dec.push(&bytes);
        let first = dec.next_message().expect("Set Chunk Size decodes");
        assert_eq!(first.map(|m| m.type_id), Some(1));
        let m = dec
            .next_message()
            .expect("the encoded frame decodes")
            .expect("a whole message");
        assert_eq!(
            (m.type_id, m.timestamp, m.stream_id),
            (frame.rtmp_type_id(), frame.timestamp, 1)
        );
        assert!(m.payload == frame.payload, "the payload came back changed");
    }
    check_output(&mut s);
}
