//! Writes the seed corpus to `fuzz/seeds/<target>/`, built with the library itself: the client
//! session talks to the server session in memory and the bytes each side sends are kept.
//!
//! Run: `cargo run --manifest-path fuzz/Cargo.toml --example gen_seeds` (plain stable build, no
//! sanitizers needed). Output is deterministic.

use bytes::{Bytes, BytesMut};
use fuzz_util::{plain_client_handshake, Framed};
use shardcast::media::Frame;
use shardcast::rtmp::amf0::{encode_all, Amf0Value};
use shardcast::rtmp::chunk::{encode_message, ChunkWriter};
use shardcast::rtmp::client::{ClientConfig, ClientRole, ClientSession};
use shardcast::rtmp::handshake::{ClientHandshake, ServerHandshake, HANDSHAKE_SIZE};
use shardcast::rtmp::session::{ServerSession, SessionConfig, SessionEvent};
use std::path::{Path, PathBuf};

const HS_LEN: usize = 1 + 2 * HANDSHAKE_SIZE;

/// Split-size bytes: all at once; byte by byte then bigger; medium pieces.
const WHOLE: &[u8] = &[0xFF];
const MIXED: &[u8] = &[0x00, 0x07, 0x45, 0x81, 0xFF];
const MEDIUM: &[u8] = &[0x4F, 0x3F];

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let mut w = Writer { root, total: 0 };
    handshake(&mut w);
    let flows = [
        flow(ClientRole::Publish, false),
        flow(ClientRole::Play, true),
    ];
    chunk_decoder(&mut w, &flows);
    amf0(&mut w);
    session(&mut w, &flows);
    http_head(&mut w);
    println!("wrote {} bytes of seeds under fuzz/seeds", w.total);
}

struct Writer {
    root: PathBuf,
    total: usize,
}

impl Writer {
    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).expect("create seed dir");
        std::fs::write(dir.join(name), bytes).expect("write seed");
        self.total += bytes.len();
    }
}

fn handshake(w: &mut Writer) {
    for digest in [false, true] {
        let tag = if digest { "digest" } else { "plain" };
        // Client bytes (C0 C1 C2) as the server sees them, and the server's answer.
        let mut client = ClientHandshake::new(1, 0, digest);
        let mut server = ServerHandshake::new(2, 0);
        let mut c2s = client.start();
        let answer = server.feed(&c2s).expect("server takes C0C1").reply;
        let c2 = client.feed(&answer).expect("client takes S0S1S2").reply;
        c2s.extend_from_slice(&c2);
        assert_eq!(c2s.len(), HS_LEN);
        let flag = if digest { 0x08 } else { 0 };
        w.put(
            "handshake",
            &format!("c2s-{tag}-whole"),
            &Framed::encode(flag, 1, WHOLE, &c2s),
        );
        w.put(
            "handshake",
            &format!("c2s-{tag}-mixed"),
            &Framed::encode(flag, 2, MIXED, &c2s),
        );
        w.put(
            "handshake",
            &format!("s2c-{tag}-whole"),
            &Framed::encode(flag, 3, WHOLE, &answer),
        );
        w.put(
            "handshake",
            &format!("s2c-{tag}-medium"),
            &Framed::encode(flag, 4, MEDIUM, &answer),
        );
    }
    w.put(
        "handshake",
        "rtmpe-version",
        &Framed::encode(0, 0, WHOLE, &[6, 0, 0, 0]),
    );
}

/// Bytes that crossed one in-memory client/server conversation.
struct Flow {
    role: ClientRole,
    /// Everything the client sent, handshake included.
    c2s: Vec<u8>,
    /// Everything the server sent, handshake included.
    s2c: Vec<u8>,
}

fn flow(role: ClientRole, digest: bool) -> Flow {
    let mut cfg = ClientConfig::from_url("rtmp://127.0.0.1/live/s?k=v", role).expect("url");
    cfg.digest_handshake = digest;
    let chunk_size = if role == ClientRole::Publish {
        cfg.chunk_size
    } else {
        128
    };
    let mut c = ClientSession::new(cfg, 7, 0);
    let mut s = ServerSession::new(SessionConfig::default(), 11, 0);
    let mut f = Flow {
        role,
        c2s: Vec::new(),
        s2c: Vec::new(),
    };
    pump(&mut c, &mut s, &mut f);
    assert!(c.is_active(), "{role:?} flow did not start");
    let sid = c.stream_id();
    if role == ClientRole::Publish {
        let avc_header = Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1F, 0xFF, 0xE1, 0]);
        let meta = encode_all(&[
            Amf0Value::string("onMetaData"),
            Amf0Value::EcmaArray(vec![
                ("width".into(), Amf0Value::Number(320.0)),
                ("height".into(), Amf0Value::Number(240.0)),
                ("encoder".into(), Amf0Value::string("fuzz")),
            ]),
        ]);
        c.send_frame(&Frame::data(0, Bytes::from(meta)), true);
        c.send_frame(&Frame::video(0, avc_header), false);
        c.send_frame(
            &Frame::audio(0, Bytes::from_static(&[0xAF, 0, 0x12, 0x10])),
            false,
        );
        c.send_frame(
            &Frame::video(40, Bytes::from(vec![0x17, 1, 0, 0, 0, 0, 0, 0, 5, 0x65])),
            false,
        );
        c.send_frame(
            &Frame::audio(0x0100_0000, Bytes::from_static(&[0xAF, 1, 0x21])),
            false,
        );
    }
    // Control and odd messages on a chunk stream the client does not use.
    let mut extra = BytesMut::new();
    let mut put = |type_id: u8, stream_id: u32, payload: &[u8]| {
        encode_message(&mut extra, chunk_size, 10, 0, type_id, stream_id, payload);
    };
    put(4, 0, &[0, 6, 0, 0, 0, 42]); // ping request
    put(4, 0, &[0, 3, 0, 0, 0, 1, 0, 0, 3, 0xE8]); // set buffer length
    put(5, 0, &2_500_000u32.to_be_bytes()); // window ack size
    put(3, 0, &1000u32.to_be_bytes()); // acknowledgement
    put(6, 0, &[0, 0, 0x10, 0, 2]); // set peer bandwidth
    let mut agg = Vec::new();
    for (t, ts, body) in [
        (9u8, 100u32, &[0x27u8, 1, 0, 0, 0][..]),
        (8, 120, &[0xAF, 1, 7][..]),
    ] {
        agg.push(t);
        agg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        agg.extend_from_slice(&ts.to_be_bytes()[1..]);
        agg.push((ts >> 24) as u8);
        agg.extend_from_slice(&[0, 0, 0]);
        agg.extend_from_slice(body);
        agg.extend_from_slice(&(11 + body.len() as u32).to_be_bytes());
    }
    put(22, sid, &agg);
    let mut amf3_cmd = vec![0u8];
    amf3_cmd.extend(encode_all(&[
        Amf0Value::string("getStreamLength"),
        Amf0Value::Number(9.0),
        Amf0Value::Null,
    ]));
    put(17, 0, &amf3_cmd);
    let mut amf3_data = vec![0u8];
    amf3_data.extend(encode_all(&[
        Amf0Value::string("onTextData"),
        Amf0Value::Null,
    ]));
    put(15, sid, &amf3_data);
    f.c2s.extend_from_slice(&extra);
    s.handle_input(&extra).expect("server takes extras");
    c.send_command(0, "_checkbw", 10.0, vec![]);
    c.send_command(
        sid,
        "pause",
        11.0,
        vec![Amf0Value::Boolean(true), Amf0Value::Number(0.0)],
    );
    c.send_command(0, "noSuchCommand", 12.0, vec![]);
    if role == ClientRole::Publish {
        c.unpublish();
    } else {
        c.send_command(sid, "closeStream", 13.0, vec![]);
    }
    pump(&mut c, &mut s, &mut f);
    f
}

/// Moves bytes both ways until both sides are quiet, accepting every request.
fn pump(c: &mut ClientSession, s: &mut ServerSession, f: &mut Flow) {
    for _ in 0..64 {
        let mut moved = false;
        while let Some(b) = c.poll_transmit() {
            moved = true;
            f.c2s.extend_from_slice(&b);
            s.handle_input(&b).expect("server accepts client bytes");
        }
        while let Some(ev) = s.poll_event() {
            moved = true;
            match ev {
                SessionEvent::ConnectRequested { .. } => s.accept_connect(),
                SessionEvent::PublishRequested { stream_id, .. } => s.accept_publish(stream_id),
                SessionEvent::PlayRequested {
                    stream_id, name, ..
                } => s.accept_play(stream_id, true, &name),
                _ => {}
            }
        }
        if s.resumable() {
            s.handle_input(&[]).expect("server resumes");
            moved = true;
        }
        while let Some(b) = s.poll_transmit() {
            moved = true;
            f.s2c.extend_from_slice(&b);
            // The client refuses the `_error` answer to the unknown command; only the bytes
            // matter here.
            let _ = c.handle_input(&b);
        }
        if !moved {
            return;
        }
    }
    panic!("conversation did not settle");
}

fn role_tag(role: ClientRole) -> &'static str {
    match role {
        ClientRole::Publish => "publish",
        ClientRole::Play => "play",
    }
}

fn chunk_decoder(w: &mut Writer, flows: &[Flow]) {
    for f in flows {
        let tag = role_tag(f.role);
        let c2s = &f.c2s[HS_LEN..];
        let s2c = &f.s2c[HS_LEN..];
        w.put(
            "chunk_decoder",
            &format!("c2s-{tag}-whole"),
            &Framed::encode(0, 0, WHOLE, c2s),
        );
        w.put(
            "chunk_decoder",
            &format!("c2s-{tag}-mixed"),
            &Framed::encode(0x08, 0, MIXED, c2s),
        );
        w.put(
            "chunk_decoder",
            &format!("s2c-{tag}-medium"),
            &Framed::encode(0, 0, MEDIUM, s2c),
        );
    }
    // Header compression (fmt 1/2/3), extended timestamps, 2- and 3-byte chunk stream ids,
    // a chunk size change and an abort, from the stateful writer.
    let mut out = BytesMut::new();
    let mut cw = ChunkWriter::new();
    let body = vec![0x5Au8; 300];
    for (i, ts) in [0u32, 40, 80, 120, 0x00FF_FFFF, 0x0100_0027, 0x0100_004E]
        .iter()
        .enumerate()
    {
        cw.write(&mut out, 6, *ts, 8, 1, &body[..100 + (i % 2) * 50]);
    }
    cw.write(&mut out, 70, 5, 9, 1, &body);
    cw.write(&mut out, 400, 7, 9, 1, &body[..10]);
    cw.write(&mut out, 2, 0, 1, 0, &64u32.to_be_bytes());
    cw.set_chunk_size(64);
    cw.write(&mut out, 6, 0x0100_0075, 8, 1, &body);
    cw.write(&mut out, 2, 0, 2, 0, &6u32.to_be_bytes());
    cw.write(&mut out, 7, 0x0100_0000, 9, 1, &body[..200]);
    w.put(
        "chunk_decoder",
        "writer-mixed",
        &Framed::encode(0, 0, MIXED, &out),
    );
    w.put(
        "chunk_decoder",
        "writer-whole",
        &Framed::encode(0x08, 0, WHOLE, &out),
    );
}

fn amf0(w: &mut Writer) {
    let connect = encode_all(&[
        Amf0Value::string("connect"),
        Amf0Value::Number(1.0),
        Amf0Value::object([
            ("app", Amf0Value::string("live")),
            ("tcUrl", Amf0Value::string("rtmp://127.0.0.1/live?vhost=v")),
            ("fpad", Amf0Value::Boolean(false)),
            ("objectEncoding", Amf0Value::Number(0.0)),
        ]),
    ]);
    w.put("amf0", "connect", &connect);
    let all_kinds = encode_all(&[
        Amf0Value::Number(f64::NAN),
        Amf0Value::Null,
        Amf0Value::Undefined,
        Amf0Value::EcmaArray(vec![
            ("duration".into(), Amf0Value::Number(0.0)),
            ("stereo".into(), Amf0Value::Boolean(true)),
        ]),
        Amf0Value::StrictArray(vec![Amf0Value::Number(1.0), Amf0Value::string("x")]),
        Amf0Value::Date {
            millis: 1.7e12,
            timezone: -60,
        },
        Amf0Value::String("é".repeat(40)),
    ]);
    w.put("amf0", "all-kinds", &all_kinds);
    // Hand-written markers the encoder never produces: long string, XML, typed object,
    // unsupported, AMF3 switch (integer, double, string, true), ECMA array without terminator.
    let mut raw = Vec::new();
    raw.extend_from_slice(&[0x0C, 0, 0, 0, 3, b'a', b'b', b'c']);
    raw.extend_from_slice(&[0x0F, 0, 0, 0, 2, b'<', b'>']);
    raw.extend_from_slice(&[0x10, 0, 1, b'T', 0, 1, b'k', 0x05, 0, 0, 0x09]);
    raw.push(0x0D);
    raw.extend_from_slice(&[0x11, 0x04, 0xFF, 0xFF, 0xFF, 0xFF]);
    raw.extend_from_slice(&[0x11, 0x05, 0x40, 0x09, 0x21, 0xFB, 0x54, 0x44, 0x2D, 0x18]);
    raw.extend_from_slice(&[0x11, 0x06, 0x07, b'a', b'b', b'c']);
    raw.extend_from_slice(&[0x11, 0x03]);
    raw.extend_from_slice(&[0x08, 0, 0, 0, 1, 0, 1, b'n', 0x01, 1]);
    w.put("amf0", "odd-markers", &raw);
    w.put("amf0", "latin1-string", &[0x02, 0, 3, b'c', 0xE9, b'a']);
}

fn session(w: &mut Writer, flows: &[Flow]) {
    for f in flows {
        let tag = role_tag(f.role);
        // (a) the raw connection from byte 0.
        w.put(
            "session",
            &format!("raw-{tag}-whole"),
            &Framed::encode(0, 0, WHOLE, &f.c2s),
        );
        w.put(
            "session",
            &format!("raw-{tag}-mixed"),
            &Framed::encode(0, 0, MIXED, &f.c2s),
        );
        // (b) after the harness's own plain handshake; aux 0xAA rejects every other request.
        let chunks = &f.c2s[HS_LEN..];
        w.put(
            "session",
            &format!("prefixed-{tag}-whole"),
            &Framed::encode(0x08, 0, WHOLE, chunks),
        );
        w.put(
            "session",
            &format!("prefixed-{tag}-reject"),
            &Framed::encode(0x08, 0xAA, MEDIUM, chunks),
        );
    }
    // The harness prefix is what it is; a seed that starts with exactly it exercises mode (a) on
    // the same bytes.
    let mut hs = plain_client_handshake();
    hs.extend_from_slice(&flows[0].c2s[HS_LEN..]);
    w.put(
        "session",
        "raw-own-handshake",
        &Framed::encode(0, 0, MEDIUM, &hs),
    );
}

fn http_head(w: &mut Writer) {
    let seeds: [(&str, &[u8]); 9] = [
        ("get-flv", b"GET /live/s.flv?token=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: keep-alive\r\nUser-Agent: ffplay\r\n\r\n"),
        ("api-close", b"GET /api/v1/streams/ HTTP/1.0\r\nConnection: close\r\n\r\n"),
        ("post-partial", b"POST /api/v1/clients/12 HTTP/1.1\r\nContent-Length: 0\r\n"),
        ("bare-lf", b"DELETE /x HTTP/1.1\nHost: a\n\n"),
        ("rule-allow", b"allow publish 127.0.0.1"),
        ("rule-deny-cidr", b"deny play 10.0.0.0/8\nallow play ::ffff:192.168.0.0/112\ndeny publish all"),
        ("rule-v6", b"allow play ::1/128"),
        ("hook-port-path", b"http://127.0.0.1:8085/api/v1/streams"),
        ("hook-v6", b"http://[::1]:80"),
    ];
    for (name, bytes) in seeds {
        w.put("http_head", name, bytes);
    }
}
