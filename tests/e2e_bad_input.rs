//! Hostile and broken clients: each bad input comes on its own connection while a real ffmpeg
//! publishes and a library player watches. For every case the server must do what the protocol
//! says: log an `error:` line naming the cause and close that connection, or (where the input is
//! legal, merely odd) carry on and keep answering; either way it keeps serving the watching
//! player, and its memory stays bounded.

mod common;

use bytes::BytesMut;
use common::*;
use shardcast::rtmp::amf0::{encode_all, Amf0Value};
use shardcast::rtmp::chunk::encode_message;
use shardcast::rtmp::handshake::ClientHandshake;
use shardcast::rtmp::message::type_id;
use std::io::Read;
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

const MAX_MESSAGE: u32 = 1024 * 1024;
const MAX_CHUNK_STREAMS: u32 = 16;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the server must do with one bad client.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Close the connection with an `error:` line containing this text.
    Closed(&'static str),
    /// Carry on: no `error:` line and the connection stays open. The case itself checks that
    /// the server still answers on it.
    Open,
    /// The client leaves by itself: the server logs the close (not as an error) and moves on.
    PeerGone,
}

/// One bad client: does its thing on `conn`; `Err` when the client side failed.
struct Case {
    name: &'static str,
    expect: Expect,
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

/// Handshaken connections announce a chunk size (protocol control, chunk stream 2).
fn set_chunk_size(c: &mut RawConn, size: u32) {
    c.send(2, 0, type_id::SET_CHUNK_SIZE, 0, &size.to_be_bytes());
}

fn chunk_size_zero(c: &mut RawConn) -> Result<(), String> {
    c.handshake()?;
    set_chunk_size(c, 0);
    Ok(())
}

fn chunk_size_huge(c: &mut RawConn) -> Result<(), String> {
    c.handshake()?;
    set_chunk_size(c, 0x7FFF_FFFF);
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

// ---------------------------------------------------------------------------------------------
// Handshake

fn read_exact(c: &mut RawConn, n: usize) -> Result<Vec<u8>, String> {
    c.sock
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut v = vec![0u8; n];
    c.sock
        .read_exact(&mut v)
        .map_err(|e| format!("read {n} bytes: {e}"))?;
    Ok(v)
}

/// 1 + 2 * 1536: S0, S1 and S2.
const S0S1S2: usize = 1 + 2 * 1536;

fn c0_then_close(c: &mut RawConn) -> Result<(), String> {
    c.write(&[3]).map_err(|e| e.to_string())?;
    thread::sleep(Duration::from_millis(50));
    c.sock.shutdown(Shutdown::Both).map_err(|e| e.to_string())
}

fn c0c1_then_close(c: &mut RawConn) -> Result<(), String> {
    let c0c1 = ClientHandshake::new(11, 0, false).start();
    c.write(&c0c1).map_err(|e| e.to_string())?;
    read_exact(c, S0S1S2)?;
    c.sock.shutdown(Shutdown::Both).map_err(|e| e.to_string())
}

fn short_c2_then_garbage(c: &mut RawConn) -> Result<(), String> {
    let c0c1 = ClientHandshake::new(12, 0, false).start();
    c.write(&c0c1).map_err(|e| e.to_string())?;
    read_exact(c, S0S1S2)?;
    // A 1000-byte "C2", then garbage: the server takes 1536 bytes as C2 whatever they are, so
    // the garbage's tail (0xC5: a fmt-3 chunk on chunk stream 5, never opened) is chunk data.
    let mut bytes = vec![0u8; 1000];
    bytes.extend_from_slice(&[0xC5; 1000]);
    c.write(&bytes).map_err(|e| e.to_string())
}

fn digest_c1_with_junk_digest(c: &mut RawConn) -> Result<(), String> {
    // A C1 that claims the digest scheme (non-zero version) but whose digest is noise.
    let mut c0c1 = vec![3u8];
    c0c1.extend_from_slice(&1234u32.to_be_bytes());
    c0c1.extend_from_slice(&[0x80, 0x00, 0x07, 0x02]);
    let mut x: u32 = 0x1234_5678;
    for _ in 0..1528 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        c0c1.push(x as u8);
    }
    c.write(&c0c1).map_err(|e| e.to_string())?;
    let s = read_exact(c, S0S1S2)?;
    let (s1, s2) = (&s[1..1537], &s[1537..]);
    if s[0] != 3 || s1[4..8] != [0; 4] || s2 != &c0c1[1..] {
        return Err("no plain fallback: S1 has a version or S2 is not C1's echo".into());
    }
    c.write(s1).map_err(|e| e.to_string())?;
    c.rtmp_connect()
}

// ---------------------------------------------------------------------------------------------
// Chunk headers

/// After the handshake, raw chunk bytes as given.
fn raw_chunks(c: &mut RawConn, bytes: &[u8]) -> Result<(), String> {
    c.handshake()?;
    c.write(bytes).map_err(|e| e.to_string())
}

fn fmt1_on_fresh_csid(c: &mut RawConn) -> Result<(), String> {
    // fmt 1, csid 9: delta 0, length 4, type 5 (Window Ack Size), then the payload.
    raw_chunks(c, &[0x49, 0, 0, 0, 0, 0, 4, 5, 0, 0x26, 0x25, 0xA0])
}

fn fmt2_on_fresh_csid(c: &mut RawConn) -> Result<(), String> {
    raw_chunks(c, &[0x8A, 0, 0, 0, 0, 0x26, 0x25, 0xA0])
}

fn fmt3_on_fresh_csid(c: &mut RawConn) -> Result<(), String> {
    raw_chunks(c, &[0xCB, 0, 0x26, 0x25, 0xA0])
}

/// `connect` as a payload; `pad` bytes of filler in an extra property make it span chunks.
fn connect_payload(pad: usize) -> Vec<u8> {
    let obj = Amf0Value::object([
        ("app", Amf0Value::string("live")),
        ("tcUrl", Amf0Value::string("rtmp://127.0.0.1/live")),
        ("e2ePadding", Amf0Value::string("p".repeat(pad))),
    ]);
    encode_all(&[Amf0Value::string("connect"), Amf0Value::Number(1.0), obj])
}

fn wait_result(c: &mut RawConn, txn: f64) -> Result<(), String> {
    c.wait_command(Duration::from_secs(5), |m| {
        m.name == "_result" && m.transaction_id == txn
    })
    .map(|_| ())
}

/// A command that must be answered with `_error` (unknown name): the server still listens.
fn still_answers(c: &mut RawConn, txn: f64) -> Result<(), String> {
    c.command(0, "e2eAreYouThere", txn, vec![Amf0Value::Null]);
    c.wait_command(Duration::from_secs(5), |m| {
        m.name == "_error" && m.transaction_id == txn
    })
    .map(|_| ())
}

/// connect on chunk stream `connect_csid` (600 bytes of padding make fmt-3 continuation
/// chunks with the same header form), then createStream on `create_csid`; both answered.
fn connect_and_create_on(
    c: &mut RawConn,
    connect_csid: u32,
    create_csid: u32,
) -> Result<(), String> {
    c.handshake()?;
    c.send(
        connect_csid,
        0,
        type_id::COMMAND_AMF0,
        0,
        &connect_payload(600),
    );
    wait_result(c, 1.0)?;
    let create = encode_all(&[
        Amf0Value::string("createStream"),
        Amf0Value::Number(2.0),
        Amf0Value::Null,
    ]);
    c.send(create_csid, 0, type_id::COMMAND_AMF0, 0, &create);
    wait_result(c, 2.0)
}

/// csid 64 and 319 are the ends of the 2-byte form.
fn two_byte_csids(c: &mut RawConn) -> Result<(), String> {
    connect_and_create_on(c, 64, 319)
}

fn three_byte_csids(c: &mut RawConn) -> Result<(), String> {
    connect_and_create_on(c, 65_599, 320)
}

fn extended_timestamp_max(c: &mut RawConn) -> Result<(), String> {
    c.handshake()?;
    // Timestamp 0xFFFFFFFF: the 3-byte field says "extended", every chunk carries 4 more bytes.
    c.send(
        3,
        0xFFFF_FFFF,
        type_id::COMMAND_AMF0,
        0,
        &connect_payload(400),
    );
    wait_result(c, 1.0)?;
    c.send(
        2,
        0xFFFF_FFFF,
        type_id::WINDOW_ACK_SIZE,
        0,
        &2_500_000u32.to_be_bytes(),
    );
    still_answers(c, 3.0)
}

fn zero_length_acknowledgement(c: &mut RawConn) -> Result<(), String> {
    c.handshake()?;
    c.send(2, 0, type_id::ACKNOWLEDGEMENT, 0, &[]);
    Ok(())
}

fn zero_length_unknown_type(c: &mut RawConn) -> Result<(), String> {
    c.handshake()?;
    c.send(3, 0, 0x42, 0, &[]);
    c.rtmp_connect()
}

fn abort_unknown_csid(c: &mut RawConn) -> Result<(), String> {
    c.handshake()?;
    c.send(2, 0, type_id::ABORT, 0, &4242u32.to_be_bytes());
    c.rtmp_connect()
}

fn abort_one_byte(c: &mut RawConn) -> Result<(), String> {
    c.handshake()?;
    c.send(2, 0, type_id::ABORT, 0, &[7]);
    Ok(())
}

fn chunk_size_top_bit_only(c: &mut RawConn) -> Result<(), String> {
    c.handshake()?;
    set_chunk_size(c, 0x8000_0000);
    Ok(())
}

fn chunk_size_top_bit_ignored(c: &mut RawConn) -> Result<(), String> {
    c.handshake()?;
    // The reserved top bit is ignored: this sets 4096.
    set_chunk_size(c, 0x8000_1000);
    c.chunk_size = 4096;
    c.send(3, 0, type_id::COMMAND_AMF0, 0, &connect_payload(6000));
    wait_result(c, 1.0)
}

fn five_thousand_chunk_streams(c: &mut RawConn) -> Result<(), String> {
    c.handshake()?;
    let mut out = BytesMut::new();
    for csid in 320..5_320 {
        encode_message(
            &mut out,
            128,
            csid,
            0,
            type_id::WINDOW_ACK_SIZE,
            0,
            &2_500_000u32.to_be_bytes(),
        );
    }
    // The server hangs up part-way: a failed write is expected.
    let _ = c.write(&out);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// AMF

fn command_bytes(c: &mut RawConn, payload: &[u8]) -> Result<(), String> {
    c.handshake()?;
    c.send(3, 0, type_id::COMMAND_AMF0, 0, payload);
    Ok(())
}

fn connect_prefix() -> Vec<u8> {
    encode_all(&[Amf0Value::string("connect"), Amf0Value::Number(1.0)])
}

fn ecma_array_bomb(c: &mut RawConn) -> Result<(), String> {
    let mut p = connect_prefix();
    for _ in 0..10_000 {
        p.extend_from_slice(&[0x08, 0, 0, 0, 1, 0x00, 0x01, b'a']); // ECMA array {"a": <next>
    }
    p.push(0x05);
    command_bytes(c, &p)
}

fn strict_array_bomb(c: &mut RawConn) -> Result<(), String> {
    let mut p = connect_prefix();
    for _ in 0..10_000 {
        p.extend_from_slice(&[0x0A, 0, 0, 0, 1]); // strict array of one: [<next>]
    }
    p.push(0x05);
    command_bytes(c, &p)
}

fn strict_array_count_max(c: &mut RawConn) -> Result<(), String> {
    let mut p = connect_prefix();
    p.extend_from_slice(&[0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x05]);
    command_bytes(c, &p)
}

fn object_with_100k_keys(c: &mut RawConn) -> Result<(), String> {
    let mut p = connect_prefix();
    p.push(0x03);
    for i in 0..100_000u32 {
        let k = format!("k{i}");
        p.extend_from_slice(&(k.len() as u16).to_be_bytes());
        p.extend_from_slice(k.as_bytes());
        p.push(0x05);
    }
    p.extend_from_slice(&[0, 0, 0x09]);
    assert!(p.len() < MAX_MESSAGE as usize, "{} bytes", p.len());
    c.handshake()?;
    // Bigger chunks, fewer headers.
    set_chunk_size(c, 65_536);
    c.chunk_size = 65_536;
    c.send(3, 0, type_id::COMMAND_AMF0, 0, &p);
    Ok(())
}

fn command_without_name(c: &mut RawConn) -> Result<(), String> {
    command_bytes(c, &encode_all(&[Amf0Value::Number(1.0), Amf0Value::Null]))
}

// ---------------------------------------------------------------------------------------------
// Commands

fn connected(c: &mut RawConn) -> Result<(), String> {
    c.handshake()?;
    c.rtmp_connect()
}

fn connect_twice(c: &mut RawConn) -> Result<(), String> {
    connected(c)?;
    let obj = Amf0Value::object([
        ("app", Amf0Value::string("live")),
        ("tcUrl", Amf0Value::string("rtmp://127.0.0.1/live")),
    ]);
    // One NetConnection per TCP connection: a second connect is a wrong-state command and
    // closes the connection (as nginx-rtmp does).
    c.command(0, "connect", 5.0, vec![obj]);
    Ok(())
}

fn create_stream_20_times(c: &mut RawConn) -> Result<(), String> {
    connected(c)?;
    for i in 0..20 {
        c.command(
            0,
            "createStream",
            10.0 + f64::from(i),
            vec![Amf0Value::Null],
        );
    }
    Ok(())
}

fn publish_empty_name(c: &mut RawConn) -> Result<(), String> {
    connected(c)?;
    let sid = c.create_stream()?;
    c.command(
        sid,
        "publish",
        0.0,
        vec![
            Amf0Value::Null,
            Amf0Value::string(""),
            Amf0Value::string("live"),
        ],
    );
    Ok(())
}

fn play_on_stream_7(c: &mut RawConn) -> Result<(), String> {
    connected(c)?;
    c.command(
        7,
        "play",
        0.0,
        vec![Amf0Value::Null, Amf0Value::string("watched")],
    );
    Ok(())
}

fn delete_unknown_stream(c: &mut RawConn) -> Result<(), String> {
    connected(c)?;
    c.command(
        0,
        "deleteStream",
        0.0,
        vec![Amf0Value::Null, Amf0Value::Number(42.0)],
    );
    still_answers(c, 8.0)
}

fn unknown_command(c: &mut RawConn) -> Result<(), String> {
    connected(c)?;
    c.command(0, "e2eFrobnicate", 9.0, vec![Amf0Value::Null]);
    let e = c.wait_command(Duration::from_secs(5), |m| {
        m.name == "_error" && m.transaction_id == 9.0
    })?;
    let code = e
        .args
        .first()
        .and_then(|o| o.get("code"))
        .and_then(|v| v.as_str())
        .unwrap_or("");
    if code != "NetConnection.Call.Failed" {
        return Err(format!("_error with code {code:?}"));
    }
    still_answers(c, 10.0)
}

fn media_before_publish(c: &mut RawConn) -> Result<(), String> {
    connected(c)?;
    let sid = c.create_stream()?;
    c.send(4, 0, type_id::AUDIO, sid, &[0xAF, 0x01, 0x21, 0x10, 0x04]);
    c.send(6, 0, type_id::VIDEO, sid, &synth::avc_frame(true, 1));
    // Dropped, not fatal: the publish that follows works.
    let name = format!("early-media-{}", c.port);
    c.command(
        sid,
        "publish",
        3.0,
        vec![
            Amf0Value::Null,
            Amf0Value::string(&name),
            Amf0Value::string("live"),
        ],
    );
    c.wait_command(Duration::from_secs(5), |m| {
        m.name == "onStatus"
            && m.args
                .first()
                .and_then(|o| o.get("code"))
                .and_then(|v| v.as_str())
                == Some("NetStream.Publish.Start")
    })
    .map(|_| ())
}

fn user_control_one_byte(c: &mut RawConn) -> Result<(), String> {
    c.handshake()?;
    c.send(2, 0, type_id::USER_CONTROL, 0, &[0x00]);
    Ok(())
}

fn set_peer_bandwidth_two_bytes(c: &mut RawConn) -> Result<(), String> {
    c.handshake()?;
    c.send(2, 0, type_id::SET_PEER_BANDWIDTH, 0, &[0x00, 0x26]);
    Ok(())
}

const CASES: &[Case] = &[
    Case {
        name: "HTTP request instead of a handshake",
        expect: Expect::Closed("unsupported RTMP handshake version 71"),
        run: http_request,
    },
    Case {
        name: "handshake stalls after 100 bytes",
        expect: Expect::Closed("handshake timed out"),
        run: stalled_handshake,
    },
    Case {
        name: "C0 version 6 (RTMPE)",
        expect: Expect::Closed("unsupported RTMP handshake version 6"),
        run: rtmpe_version,
    },
    Case {
        name: "Set Chunk Size 0",
        expect: Expect::Closed("chunk size to 0"),
        run: chunk_size_zero,
    },
    Case {
        name: "Set Chunk Size 2^31-1",
        expect: Expect::Closed("chunk size to 2147483647, above the limit"),
        run: chunk_size_huge,
    },
    Case {
        name: "message longer than max_message_size",
        expect: Expect::Closed("message of 2097152 bytes exceeds the limit of 1048576"),
        run: message_too_long,
    },
    Case {
        name: "more chunk streams than max_chunk_streams",
        expect: Expect::Closed("more than 16 chunk streams"),
        run: too_many_chunk_streams,
    },
    Case {
        name: "truncated AMF string in a command",
        expect: Expect::Closed("malformed AMF"),
        run: truncated_amf_string,
    },
    Case {
        name: "10,000 nested AMF objects",
        expect: Expect::Closed("nested deeper than"),
        run: deep_amf,
    },
    Case {
        name: "play before connect",
        expect: Expect::Closed("`play` before connect"),
        run: play_before_connect,
    },
    Case {
        name: "publish twice on one stream id",
        expect: Expect::Closed("`publish` on stream 1 which is publishing"),
        run: publish_twice,
    },
    Case {
        name: "audio on a stream id never created",
        expect: Expect::Closed("media on stream id 5 that was never created"),
        run: media_on_unknown_stream,
    },
    // Handshake.
    Case {
        name: "C0 only, then close",
        expect: Expect::PeerGone,
        run: c0_then_close,
    },
    Case {
        name: "C0C1, read S0S1S2, close before C2",
        expect: Expect::PeerGone,
        run: c0c1_then_close,
    },
    Case {
        name: "C2 of 1000 bytes followed by garbage",
        expect: Expect::Closed("chunk with fmt 3 on chunk stream 5, which has no previous header"),
        run: short_c2_then_garbage,
    },
    Case {
        name: "digest-looking C1 with a junk digest (plain fallback)",
        expect: Expect::Open,
        run: digest_c1_with_junk_digest,
    },
    // Chunk headers.
    Case {
        name: "fmt 1 on a chunk stream never seen",
        expect: Expect::Closed("chunk with fmt 1 on chunk stream 9, which has no previous header"),
        run: fmt1_on_fresh_csid,
    },
    Case {
        name: "fmt 2 on a chunk stream never seen",
        expect: Expect::Closed("chunk with fmt 2 on chunk stream 10, which has no previous"),
        run: fmt2_on_fresh_csid,
    },
    Case {
        name: "fmt 3 on a chunk stream never seen",
        expect: Expect::Closed("chunk with fmt 3 on chunk stream 11, which has no previous"),
        run: fmt3_on_fresh_csid,
    },
    Case {
        name: "2-byte basic headers (csid 64 and 319) with continuations",
        expect: Expect::Open,
        run: two_byte_csids,
    },
    Case {
        name: "3-byte basic headers (csid 65599 and 320)",
        expect: Expect::Open,
        run: three_byte_csids,
    },
    Case {
        name: "extended timestamp 0xFFFFFFFF",
        expect: Expect::Open,
        run: extended_timestamp_max,
    },
    Case {
        name: "Acknowledgement with message length 0",
        expect: Expect::Closed("message type 3 too short: 0 bytes"),
        run: zero_length_acknowledgement,
    },
    Case {
        name: "message length 0 of an unknown type",
        expect: Expect::Open,
        run: zero_length_unknown_type,
    },
    Case {
        name: "Abort of a chunk stream that does not exist",
        expect: Expect::Open,
        run: abort_unknown_csid,
    },
    Case {
        name: "Abort with a 1-byte payload",
        expect: Expect::Closed("protocol control message type 2 has 1 payload bytes, needs 4"),
        run: abort_one_byte,
    },
    Case {
        name: "Set Chunk Size 2^31 (only the reserved bit)",
        expect: Expect::Closed("peer set the chunk size to 0"),
        run: chunk_size_top_bit_only,
    },
    Case {
        name: "Set Chunk Size 2^31 + 4096 (reserved bit ignored)",
        expect: Expect::Open,
        run: chunk_size_top_bit_ignored,
    },
    Case {
        name: "5,000 chunk stream ids",
        expect: Expect::Closed("peer opened more than 16 chunk streams"),
        run: five_thousand_chunk_streams,
    },
    // AMF.
    Case {
        name: "10,000 nested ECMA arrays",
        expect: Expect::Closed("nested deeper than 32"),
        run: ecma_array_bomb,
    },
    Case {
        name: "10,000 nested strict arrays",
        expect: Expect::Closed("nested deeper than 32"),
        run: strict_array_bomb,
    },
    Case {
        name: "strict array with count 2^32-1",
        expect: Expect::Closed("AMF0 input ended in the middle of a value"),
        run: strict_array_count_max,
    },
    Case {
        name: "object with 100,000 keys",
        expect: Expect::Closed("holds more than 65536 values"),
        run: object_with_100k_keys,
    },
    Case {
        name: "command with no name",
        expect: Expect::Closed("command message without a name"),
        run: command_without_name,
    },
    // Commands.
    Case {
        name: "connect twice",
        expect: Expect::Closed("`connect` on stream 0 which is connected"),
        run: connect_twice,
    },
    Case {
        name: "createStream 20 times",
        expect: Expect::Closed("more than 16 streams on one connection"),
        run: create_stream_20_times,
    },
    Case {
        name: "publish with an empty name",
        expect: Expect::Closed("`publish` without a stream name"),
        run: publish_empty_name,
    },
    Case {
        name: "play on stream id 7, never created",
        expect: Expect::Closed("command on stream id 7 that was never created"),
        run: play_on_stream_7,
    },
    Case {
        name: "deleteStream of an unknown id",
        expect: Expect::Open,
        run: delete_unknown_stream,
    },
    Case {
        name: "unknown command",
        expect: Expect::Open,
        run: unknown_command,
    },
    Case {
        name: "media on a created stream before publish",
        expect: Expect::Open,
        run: media_before_publish,
    },
    Case {
        name: "User Control with 1 byte",
        expect: Expect::Closed("message type 4 too short: 1 bytes"),
        run: user_control_one_byte,
    },
    Case {
        name: "Set Peer Bandwidth with 2 bytes",
        expect: Expect::Closed("message type 6 too short: 2 bytes"),
        run: set_peer_bandwidth_two_bytes,
    },
];

/// The watching player is still fed: 5 more video frames within 5 s.
fn watcher_fed(watcher: &LibPlayer) -> Result<(), String> {
    let before = watcher.video_frames();
    if watcher.wait_video_above(before + 5, Duration::from_secs(5)) {
        Ok(())
    } else {
        Err(format!(
            "watching player stalled at {} video frames ({:?})",
            watcher.video_frames(),
            watcher.ended()
        ))
    }
}

/// Runs one case; `Err` describes everything that went wrong.
fn check_case(server: &Server, watcher: &LibPlayer, case: &Case) -> Result<(), String> {
    // Only lines logged from here on, and the peer's whole port: an earlier case's connection
    // may have had the same ephemeral port (a flake: its lines were taken for this case's).
    let mark = server.log_mark();
    let mut c = RawConn::open(server.port);
    let peer = format!("{} ", c.peer());
    let error_prefix = format!("{peer}error: ");
    let line = |timeout: Duration, parts: &[&str]| {
        server.wait_for_line_since(mark, timeout, |l| parts.iter().all(|p| l.contains(p)))
    };
    let started = Instant::now();
    (case.run)(&mut c).map_err(|e| format!("client side failed: {e}"))?;
    let mut problems = Vec::new();

    match case.expect {
        Expect::Closed(cause) => {
            // (b) the server hangs up.
            match c.wait_closed(Duration::from_secs(6)) {
                Ok(_) => {
                    let after = started.elapsed();
                    if cause == "handshake timed out" && after < HANDSHAKE_TIMEOUT * 3 / 4 {
                        problems.push(format!(
                            "closed after {after:?}, before the handshake timeout"
                        ));
                    }
                }
                Err(e) => problems.push(format!("connection not closed: {e}")),
            }
            // (a) an error line for this very connection, naming the cause.
            let error_line = line(Duration::from_secs(3), &[&error_prefix]);
            match error_line {
                Some(l) if l.contains(cause) => {}
                Some(l) => problems.push(format!("error line does not name `{cause}`: {l}")),
                None => problems.push(format!("no `{peer}error:` line")),
            }
            if line(Duration::from_secs(3), &[&peer, "close reason=\"error: "]).is_none() {
                problems.push(format!("no close line with an error reason for {peer}"));
            }
        }
        Expect::Open => {
            // The case already saw the server answer after the odd input; it must not hang up
            // now either, nor log an error for it.
            if let Ok(after) = c.wait_closed(Duration::from_millis(300)) {
                problems.push(format!("closed {after:?} after the input"));
            }
            if let Some(l) = line(Duration::from_millis(100), &[&error_prefix]) {
                problems.push(format!("error line for a legal input: {l}"));
            }
            let _ = c.sock.shutdown(Shutdown::Both);
            if line(
                Duration::from_secs(3),
                &[&peer, "close reason=\"closed by peer\""],
            )
            .is_none()
            {
                problems.push(format!("no `closed by peer` line for {peer} after it left"));
            }
        }
        Expect::PeerGone => {
            match line(Duration::from_secs(3), &[&peer, "close reason="]) {
                Some(l) if l.contains("by peer") && l.contains("role=none") => {}
                Some(l) => problems.push(format!("unexpected close line: {l}")),
                None => problems.push(format!("no close line for {peer}")),
            }
            if let Some(l) = line(Duration::from_millis(100), &[&error_prefix]) {
                problems.push(format!("error line for a client that just left: {l}"));
            }
        }
    }

    // (c) the watching player is still fed.
    if let Err(e) = watcher_fed(watcher) {
        problems.push(e);
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
    assert!(CASES.len() >= 30, "{} cases", CASES.len());
    let server = Server::start_with(ServerOpts {
        shards: 2,
        server: "handshake_timeout_secs = 2\n".into(),
        rtmp: format!(
            "max_message_size = {MAX_MESSAGE}\nmax_chunk_streams = {MAX_CHUNK_STREAMS}\n"
        ),
        ..ServerOpts::default()
    });
    let mut publisher = publish(&server, "watched");
    let watcher = LibPlayer::start(server.port, "watched", Duration::from_secs(240));
    assert!(
        watcher.wait_video_above(10, Duration::from_secs(10)),
        "watching player gets no media: {:?}",
        watcher.seen()
    );
    let rss_start = rss_kib(server.pid()).unwrap_or(0);

    let mut failures = Vec::new();
    for case in CASES {
        if let Err(e) = check_case(&server, &watcher, case) {
            failures.push(format!("{}: {e}", case.name));
        }
    }
    let rss_end = rss_kib(server.pid()).unwrap_or(0);
    eprintln!(
        "{} bad-input cases; server RSS {} KiB at the start, {} KiB after all of them",
        CASES.len(),
        rss_start,
        rss_end
    );
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
    assert!(
        rss_end > 0 && rss_end < 200 * 1024,
        "server RSS after the bad inputs: {rss_end} KiB"
    );
}

/// Connect, createStream and publish `name` on a raw connection; returns the stream id.
fn raw_publisher(server: &Server, name: &str) -> Result<(RawConn, u32), String> {
    let mut c = RawConn::open(server.port);
    c.handshake()?;
    c.rtmp_connect()?;
    let sid = c.create_stream()?;
    c.command(
        sid,
        "publish",
        3.0,
        vec![
            Amf0Value::Null,
            Amf0Value::string(name),
            Amf0Value::string("live"),
        ],
    );
    c.wait_command(Duration::from_secs(5), |m| {
        m.name == "onStatus"
            && m.args
                .first()
                .and_then(|o| o.get("code"))
                .and_then(|v| v.as_str())
                == Some("NetStream.Publish.Start")
    })?;
    Ok((c, sid))
}

#[test]
fn publisher_vanishing_mid_message_ends_its_stream_cleanly() {
    let _g = serial();
    let server = Server::start();
    let player = LibPlayer::start(server.port, "vanish", Duration::from_secs(60));
    assert!(
        wait_until(Duration::from_secs(10), || player
            .has_seen(|s| *s == Seen::PlayStarted)),
        "player not started: {:?}",
        player.seen()
    );

    let (mut c, sid) = raw_publisher(&server, "vanish").expect("raw publisher");
    let peer = c.peer();
    c.send(6, 0, type_id::VIDEO, sid, &synth::avc_sequence_header());
    for i in 0..5u8 {
        c.send(
            6,
            40 * u32::from(i),
            type_id::VIDEO,
            sid,
            &synth::avc_frame(i == 0, i),
        );
    }
    assert!(
        player.wait_video_above(2, Duration::from_secs(5)),
        "player got no media from the raw publisher: {:?}",
        player.seen()
    );

    // Half of a 400 KB video message, then gone.
    let mut big = vec![0x27, 0x01, 0, 0, 0];
    big.resize(400_000, 0x5A);
    let mut out = BytesMut::new();
    encode_message(&mut out, 128, 6, 240, type_id::VIDEO, sid, &big);
    c.write(&out[..out.len() / 2])
        .expect("write half a message");
    thread::sleep(Duration::from_millis(100));
    c.sock.shutdown(Shutdown::Both).expect("shutdown");
    drop(c);

    let close = server.expect_log(&[&peer, " close reason="], Duration::from_secs(5));
    assert!(
        close.contains("by peer") && close.contains("role=publish"),
        "publisher close: {close}"
    );
    let notified = wait_until(Duration::from_secs(5), || {
        player.has_seen(|s| *s == Seen::Status("NetStream.Play.UnpublishNotify".into()))
    });
    assert!(notified, "no UnpublishNotify: {:?}", player.seen());
    assert!(
        player.ended().is_none(),
        "player dropped: {:?}",
        player.ended()
    );

    // The stream is free again: a new publisher takes it and the waiting player gets media.
    let frames = player.video_frames();
    let (mut c2, sid2) = raw_publisher(&server, "vanish").expect("republish after the vanish");
    c2.send(6, 0, type_id::VIDEO, sid2, &synth::avc_sequence_header());
    for i in 0..5u8 {
        c2.send(
            6,
            40 * u32::from(i),
            type_id::VIDEO,
            sid2,
            &synth::avc_frame(i == 0, i),
        );
    }
    assert!(
        player.wait_video_above(frames + 2, Duration::from_secs(5)),
        "no media after the republish: {:?}",
        player.seen()
    );
}

#[test]
fn two_thousand_idle_connections_are_bounded_and_timed_out() {
    const IDLE: usize = 2_000;
    let _g = serial();
    let limit = raise_nofile_soft(IDLE as u64 + 1_000);
    assert!(limit > IDLE as u64 + 200, "open-files limit {limit}");
    let mut server = Server::start(); // handshake_timeout_secs = 2
    let _publisher = publish(&server, "watched");
    let watcher = LibPlayer::start(server.port, "watched", Duration::from_secs(60));
    assert!(
        watcher.wait_video_above(10, Duration::from_secs(10)),
        "watching player gets no media: {:?}",
        watcher.seen()
    );
    let rss_before = rss_kib(server.pid()).expect("server RSS");

    let opened_at = Instant::now();
    let mut socks: Vec<TcpStream> = (0..IDLE)
        .map(|i| {
            TcpStream::connect(("127.0.0.1", server.port))
                .unwrap_or_else(|e| panic!("idle connection {i}: {e}"))
        })
        .collect();
    let open_took = opened_at.elapsed();
    let mut rss_peak = rss_kib(server.pid()).unwrap_or(0);
    let frames_before = watcher.video_frames();

    // Every one is dropped at the handshake timeout, not before.
    let deadline = opened_at + Duration::from_secs(12);
    let mut closed = 0usize;
    let mut first_close = None;
    let mut buf = [0u8; 64];
    for s in &mut socks {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let _ = s.set_read_timeout(Some(left));
        match s.read(&mut buf) {
            Ok(0) => closed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
            _ => {}
        }
        first_close.get_or_insert_with(|| opened_at.elapsed());
        rss_peak = rss_peak.max(rss_kib(server.pid()).unwrap_or(0));
    }
    let all_closed_after = opened_at.elapsed();
    socks.clear();
    let timed_out = server.count_lines(|l| {
        l.contains(" error: handshake timed out") && !l.contains(" close reason=")
    });
    let rss_after = rss_kib(server.pid()).unwrap_or(0);
    eprintln!(
        "{IDLE} idle connections opened in {open_took:?}; first closed after {first_close:?}, \
         {closed} closed after {all_closed_after:?}; {timed_out} timeout lines; server RSS \
         {rss_before} KiB before, peak {rss_peak} KiB, {rss_after} KiB after"
    );
    assert_eq!(closed, IDLE, "idle connections the server closed");
    assert!(
        first_close.is_some_and(|t| t >= HANDSHAKE_TIMEOUT * 3 / 4),
        "closed before the handshake timeout: {first_close:?}"
    );
    assert!(
        timed_out >= IDLE,
        "{timed_out} `handshake timed out` lines for {IDLE} idle connections"
    );
    assert!(
        rss_peak.saturating_sub(rss_before) < 64 * 1024,
        "server RSS grew from {rss_before} KiB to {rss_peak} KiB with {IDLE} idle connections"
    );
    // The watcher went on the whole time (25 fps: ~50 frames in 2 s; ask for a third).
    let during = watcher.video_frames() - frames_before;
    assert!(
        during as f64 >= all_closed_after.as_secs_f64() * 25.0 / 3.0,
        "watcher got {during} frames in {all_closed_after:?} of idle connections"
    );
    if let Err(e) = watcher_fed(&watcher) {
        panic!("after the idle connections: {e}");
    }
    assert!(server.is_running(), "server died");
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
    let mut held = handshaken_conns(server.port, 3);

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
