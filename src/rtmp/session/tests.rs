//! In-memory client/server pairs: the two state machines talk through byte buffers, no sockets.

use super::*;
use crate::media::FrameKind;
use crate::rtmp::client::{ClientConfig, ClientError, ClientEvent, ClientRole, ClientSession};
use crate::rtmp::message::MessageWriter;

fn client(role: ClientRole, digest: bool) -> ClientSession {
    let mut cfg = ClientConfig::from_url("rtmp://127.0.0.1:1935/live/cam1?token=x", role).unwrap();
    cfg.digest_handshake = digest;
    ClientSession::new(cfg, 7, 0)
}

fn server() -> ServerSession {
    ServerSession::new(SessionConfig::default(), 11, 0)
}

/// Moves bytes both ways until neither side has anything to send. Returns server events.
fn pump(c: &mut ClientSession, s: &mut ServerSession) -> Result<Vec<SessionEvent>, String> {
    let mut events = Vec::new();
    for _ in 0..50 {
        let mut moved = false;
        while let Some(b) = c.poll_transmit() {
            moved = true;
            s.handle_input(&b).map_err(|e| format!("server: {e}"))?;
        }
        while let Some(e) = s.poll_event() {
            // The application's default answer to connect.
            if matches!(e, SessionEvent::ConnectRequested { .. }) {
                s.accept_connect();
                moved = true;
            }
            events.push(e);
        }
        if s.resumable() {
            s.handle_input(&[]).map_err(|e| format!("server: {e}"))?;
            moved = true;
        }
        while let Some(b) = s.poll_transmit() {
            moved = true;
            c.handle_input(&b).map_err(|e| format!("client: {e}"))?;
        }
        if !moved {
            return Ok(events);
        }
    }
    Err("did not settle".into())
}

fn client_events(c: &mut ClientSession) -> Vec<ClientEvent> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

#[test]
fn publish_flow_plain_and_digest() {
    for digest in [false, true] {
        let mut c = client(ClientRole::Publish, digest);
        let mut s = server();
        let ev = pump(&mut c, &mut s).unwrap();
        let kind = match &ev[0] {
            SessionEvent::HandshakeDone { kind } => *kind,
            e => panic!("{e:?}"),
        };
        assert_eq!(matches!(kind, HandshakeKind::Digest { .. }), digest);
        assert!(ev.contains(&SessionEvent::ConnectRequested {
            app: "live".into(),
            tc_url: "rtmp://127.0.0.1:1935/live".into(),
            vhost: "127.0.0.1".into(),
            vhost_explicit: false,
        }));
        let req = ev.iter().find_map(|e| match e {
            SessionEvent::PublishRequested {
                stream_id,
                name,
                query,
                ..
            } => Some((*stream_id, name.clone(), query.clone())),
            _ => None,
        });
        let (sid, name, query) = req.expect("publish requested");
        assert_eq!((name.as_str(), query.as_str()), ("cam1", "token=x"));
        s.accept_publish(sid);
        pump(&mut c, &mut s).unwrap();
        assert!(client_events(&mut c).contains(&ClientEvent::PublishStarted));

        // Media crosses with payload, kind and timestamps intact, also past 2^24 ms.
        let frames = [
            Frame::video(0, Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 2, 3])),
            Frame::audio(20, Bytes::from_static(&[0xAF, 1, 9, 9])),
            Frame::video(0x0100_0000, Bytes::from(vec![0x27u8; 10_000])),
        ];
        for f in &frames {
            c.send_frame(f, false);
        }
        let ev = pump(&mut c, &mut s).unwrap();
        let got: Vec<&Frame> = ev
            .iter()
            .filter_map(|e| match e {
                SessionEvent::Media { frame, .. } => Some(frame),
                _ => None,
            })
            .collect();
        assert_eq!(got.len(), 3);
        for (a, b) in got.iter().zip(frames.iter()) {
            assert_eq!(a.kind, b.kind);
            assert_eq!(a.timestamp, b.timestamp);
            assert_eq!(a.payload, b.payload);
        }
        assert!(got[0].sequence_header && !got[0].keyframe);

        c.unpublish();
        let ev = pump(&mut c, &mut s).unwrap();
        assert!(ev.contains(&SessionEvent::PublishStopped { stream_id: sid }));
    }
}

#[test]
fn set_data_frame_becomes_on_metadata() {
    let mut c = client(ClientRole::Publish, false);
    let mut s = server();
    pump(&mut c, &mut s).unwrap();
    s.accept_publish(1);
    pump(&mut c, &mut s).unwrap();
    let meta = crate::rtmp::amf0::encode_all(&[
        Amf0Value::string("onMetaData"),
        Amf0Value::object([("width", Amf0Value::Number(320.0))]),
    ]);
    c.send_frame(&Frame::data(0, Bytes::from(meta.clone())), true);
    let ev = pump(&mut c, &mut s).unwrap();
    match &ev[..] {
        [SessionEvent::Media {
            frame, metadata, ..
        }] => {
            assert!(*metadata);
            assert_eq!(frame.kind, FrameKind::Data);
            assert_eq!(&frame.payload[..], &meta[..]);
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn play_flow_and_media_to_player() {
    let mut c = client(ClientRole::Play, false);
    let mut s = server();
    let ev = pump(&mut c, &mut s).unwrap();
    let sid = ev
        .iter()
        .find_map(|e| match e {
            SessionEvent::PlayRequested {
                stream_id, name, ..
            } if name == "cam1" => Some(*stream_id),
            _ => None,
        })
        .expect("play requested");
    s.accept_play(sid, true, "cam1");
    pump(&mut c, &mut s).unwrap();
    let ce = client_events(&mut c);
    assert!(ce.contains(&ClientEvent::PlayStarted), "{ce:?}");
    assert!(ce.contains(&ClientEvent::Status {
        code: "NetStream.Play.Reset".into(),
        level: "status".into()
    }));

    // The server side writes media with the shared writer at its own chunk size.
    let w = MessageWriter::new(s.out_chunk_size());
    let mut out = BytesMut::new();
    let mut big = vec![0x17u8; 9000];
    big[1] = 1; // AVC NALU
    let big = Bytes::from(big);
    w.raw(&mut out, 7, 0x0123_4567, type_id::VIDEO, sid, &big);
    c.handle_input(&out).unwrap();
    match &client_events(&mut c)[..] {
        [ClientEvent::Media { frame, .. }] => {
            assert_eq!(frame.timestamp, 0x0123_4567);
            assert_eq!(frame.payload, big);
            assert!(frame.keyframe);
        }
        e => panic!("{e:?}"),
    }
    s.unpublish_notify(sid, "cam1");
    pump(&mut c, &mut s).unwrap();
    let ce = client_events(&mut c);
    assert!(ce.contains(&ClientEvent::StreamEof));
    assert!(ce.contains(&ClientEvent::Status {
        code: "NetStream.Play.UnpublishNotify".into(),
        level: "status".into()
    }));
}

#[test]
fn rejected_publish_reaches_client_as_bad_name() {
    let mut c = client(ClientRole::Publish, false);
    let mut s = server();
    pump(&mut c, &mut s).unwrap();
    s.reject_publish(1, "NetStream.Publish.BadName", "already publishing");
    let err = pump(&mut c, &mut s).unwrap_err();
    assert!(err.contains("NetStream.Publish.BadName"), "{err}");
}

#[test]
fn play_before_connect_is_an_error() {
    let mut c = client(ClientRole::Play, false);
    let mut s = server();
    // Handshake only: take the client's C0C1, answer, feed C2, then send a bare play.
    let c0c1 = c.poll_transmit().unwrap();
    s.handle_input(&c0c1).unwrap();
    let s012 = s.poll_transmit().unwrap();
    c.handle_input(&s012).unwrap();
    let c2_and_connect = c.poll_transmit().unwrap();
    s.handle_input(&c2_and_connect[..1536]).unwrap();
    assert!(s.handshake_done());
    let mut out = BytesMut::new();
    let w = MessageWriter::new(128);
    w.command(&mut out, 0, &on_status("x", "y", "z"));
    let play = Command {
        name: "play".into(),
        transaction_id: 0.0,
        object: Amf0Value::Null,
        args: vec![Amf0Value::string("s")],
    };
    let mut out = BytesMut::new();
    w.command(&mut out, 1, &play);
    match s.handle_input(&out) {
        Err(SessionError::NotConnected { command }) => assert_eq!(command, "play"),
        r => panic!("{r:?}"),
    }
}

#[test]
fn publish_twice_is_wrong_state() {
    let mut c = client(ClientRole::Publish, false);
    let mut s = server();
    pump(&mut c, &mut s).unwrap();
    s.accept_publish(1);
    pump(&mut c, &mut s).unwrap();
    c.send_command(1, "publish", 0.0, vec![Amf0Value::string("again")]);
    let err = pump(&mut c, &mut s).unwrap_err();
    assert!(err.contains("publishing"), "{err}");
}

#[test]
fn media_on_uncreated_stream_is_an_error() {
    let mut c = client(ClientRole::Publish, false);
    let mut s = server();
    pump(&mut c, &mut s).unwrap();
    s.accept_publish(1);
    let mut out = BytesMut::new();
    MessageWriter::new(4096).raw(&mut out, 6, 0, type_id::AUDIO, 9, &[0xAF, 1]);
    match s.handle_input(&out) {
        Err(SessionError::UnknownStream { stream_id: 9, .. }) => {}
        r => panic!("{r:?}"),
    }
}

#[test]
fn unknown_command_gets_error_reply_not_a_close() {
    let mut c = client(ClientRole::Play, false);
    let mut s = server();
    pump(&mut c, &mut s).unwrap();
    s.accept_play(1, true, "cam1");
    c.send_command(0, "makeCoffee", 42.0, vec![]);
    // The client session turns `_error` into an error: that proves the reply came back.
    let err = pump(&mut c, &mut s).unwrap_err();
    assert!(err.contains("NetConnection.Call.Failed"), "{err}");
    // The server is still usable.
    c.send_command(0, "getStreamLength", 43.0, vec![Amf0Value::string("x")]);
    assert!(s.handle_input(&c.poll_transmit().unwrap()).is_ok());
}

#[test]
fn chunk_size_zero_is_an_error() {
    let mut c = client(ClientRole::Publish, false);
    let mut s = server();
    pump(&mut c, &mut s).unwrap();
    s.accept_publish(1);
    let mut out = BytesMut::new();
    MessageWriter::new(4096).set_chunk_size(&mut out, 0);
    assert!(matches!(
        s.handle_input(&out),
        Err(SessionError::Chunk(ChunkError::ChunkSizeZero))
    ));
}

#[test]
fn garbage_instead_of_handshake_is_an_error() {
    let mut s = server();
    assert!(matches!(
        s.handle_input(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        Err(SessionError::Handshake(_))
    ));
}

#[test]
fn server_acknowledges_per_window() {
    let mut c = client(ClientRole::Publish, false);
    let mut s = server();
    pump(&mut c, &mut s).unwrap();
    let mut out = BytesMut::new();
    MessageWriter::new(128).window_ack_size(&mut out, 5000);
    s.handle_input(&out).unwrap();
    s.poll_transmit();
    s.accept_publish(1);
    s.poll_transmit();
    let mut out = BytesMut::new();
    MessageWriter::new(4096).raw(&mut out, 6, 0, type_id::AUDIO, 1, &[0xAF; 6000]);
    s.handle_input(&out).unwrap();
    let sent = s.poll_transmit().expect("an acknowledgement");
    let mut d = ChunkDecoder::new(DecoderLimits::default());
    d.push(&sent);
    let m = d.next_message().unwrap().unwrap();
    assert_eq!(m.type_id, type_id::ACKNOWLEDGEMENT);
}

#[test]
fn vhost_from_query_wins() {
    let mut cfg = ClientConfig::from_url(
        "rtmp://10.0.0.1:1935/live?vhost=example.com/s",
        ClientRole::Play,
    )
    .unwrap();
    cfg.tc_url = "rtmp://10.0.0.1:1935/live?vhost=example.com".into();
    let mut c = ClientSession::new(cfg, 1, 0);
    let mut s = server();
    let ev = pump(&mut c, &mut s).unwrap();
    assert!(ev.iter().any(|e| matches!(e,
        SessionEvent::ConnectRequested { app, vhost, vhost_explicit: true, .. }
            if app == "live" && vhost == "example.com")));
}

#[test]
fn query_helpers() {
    assert_eq!(split_query("s?a=1"), ("s", "a=1"));
    assert_eq!(query_param("a=1&vhost=x", "vhost"), Some("x"));
    assert_eq!(query_param("vhost...y", "vhost"), Some("y"));
    assert_eq!(url_host("rtmp://[::1]:1935/live"), "::1");
    assert_eq!(url_host("rtmp://host/live"), "host");
}

#[test]
fn client_error_type_is_refused() {
    let e = ClientError::Refused {
        command: "publish".into(),
        code: "c".into(),
        description: "d".into(),
    };
    assert!(e.to_string().contains("publish"));
}

#[test]
fn rejected_connect_reaches_client() {
    let mut c = client(ClientRole::Play, false);
    let mut s = server();
    // Run the handshake and the connect by hand, then refuse it.
    let c0c1 = c.poll_transmit().unwrap();
    s.handle_input(&c0c1).unwrap();
    c.handle_input(&s.poll_transmit().unwrap()).unwrap();
    s.handle_input(&c.poll_transmit().unwrap()).unwrap();
    let ev: Vec<SessionEvent> = std::iter::from_fn(|| s.poll_event()).collect();
    assert!(ev
        .iter()
        .any(|e| matches!(e, SessionEvent::ConnectRequested { .. })));
    s.reject_connect("not on the list");
    let err = c.handle_input(&s.poll_transmit().unwrap()).unwrap_err();
    assert!(
        err.to_string().contains("NetConnection.Connect.Rejected"),
        "{err}"
    );
}

#[test]
fn input_waits_while_a_request_is_decided() {
    let mut c = client(ClientRole::Publish, false);
    let mut s = server();
    pump(&mut c, &mut s).unwrap();
    // publish is pending; the client pipelines a command behind it.
    c.send_command(0, "getStreamLength", 9.0, vec![Amf0Value::string("x")]);
    s.handle_input(&c.poll_transmit().unwrap()).unwrap();
    assert!(
        s.poll_transmit().is_none(),
        "nothing answered while deciding"
    );
    assert!(!s.resumable());
    s.accept_publish(1);
    assert!(s.resumable());
    s.handle_input(&[]).unwrap();
    let out = s.poll_transmit().unwrap();
    let mut d = ChunkDecoder::new(DecoderLimits::default());
    d.push(&out);
    let mut names = Vec::new();
    while let Some(m) = d.next_message().unwrap() {
        if let Ok(crate::rtmp::message::Message::Command(c)) =
            crate::rtmp::message::decode(&m, &DecodeLimits::default())
        {
            names.push(c.name);
        }
    }
    assert_eq!(
        names,
        vec!["onStatus", "_result"],
        "Publish.Start, then the pipelined answer"
    );
}

#[test]
fn flooding_while_waiting_is_bounded() {
    let mut c = client(ClientRole::Publish, false);
    let mut s = server();
    pump(&mut c, &mut s).unwrap();
    let junk = vec![0u8; MAX_BUFFERED_WHILE_WAITING + 10];
    assert!(matches!(
        s.handle_input(&junk),
        Err(SessionError::TooMuchWhileWaiting { .. })
    ));
}

#[test]
fn second_connect_is_wrong_state() {
    let mut c = client(ClientRole::Play, false);
    let mut s = server();
    pump(&mut c, &mut s).unwrap();
    s.accept_play(1, true, "cam1");
    let obj = Amf0Value::object([("app", Amf0Value::string("live"))]);
    let mut out = BytesMut::new();
    MessageWriter::new(128).command(
        &mut out,
        0,
        &Command {
            name: "connect".into(),
            transaction_id: 9.0,
            object: obj,
            args: vec![],
        },
    );
    assert!(matches!(
        s.handle_input(&out),
        Err(SessionError::WrongState { .. })
    ));
}

#[test]
fn sent_output_leaves_no_buffer_behind() {
    let mut c = client(ClientRole::Play, false);
    let mut s = server();
    pump(&mut c, &mut s).unwrap();
    // Everything was taken: the handshake-sized buffer went with the bytes.
    assert!(s.poll_transmit().is_none());
    assert_eq!(s.out.capacity(), 0, "an idle session keeps its send buffer");
}

#[test]
fn a_drained_event_queue_gives_back_what_a_burst_grew() {
    let mut s = server();
    for _ in 0..200 {
        s.events.push_back(SessionEvent::HandshakeDone {
            kind: HandshakeKind::Plain,
        });
    }
    let mut n = 0;
    while s.poll_event().is_some() {
        n += 1;
    }
    assert_eq!(n, 200);
    assert!(
        s.events.capacity() <= KEEP_EVENTS,
        "capacity {}",
        s.events.capacity()
    );
}
