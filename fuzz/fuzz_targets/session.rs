//! The server session state machine driven like `server::conn` drives it.
//!
//! Input: see `fuzz_util::Framed`.
//! - flags bit 3 clear: (a) the body is the raw connection from byte 0 (handshake included);
//!   set: (b) a valid plain handshake (C0, C1 with a zero version, C2) is fed first and the body
//!   is the chunk stream after it.
//! - aux: decision bits, used in turn for each request: 0 accepts, 1 rejects.
//!
//! After every `handle_input` the events and output are drained; connect/publish/play requests
//! are accepted or rejected, and a stalled session is resumed with `handle_input(&[])`. The
//! first error ends the run (the server closes the connection then), as does a rejected
//! connect. Checks beyond "no panic": everything the server sends is a well-formed chunk stream
//! of decodable messages, and every media frame can be forwarded to players (at most
//! 0xFFFFFF bytes, the RTMP message length limit).
#![no_main]

use fuzz_util::{plain_client_handshake, Framed, OutputChecker};
use libfuzzer_sys::fuzz_target;
use shardcast::rtmp::chunk::MAX_MESSAGE_LEN;
use shardcast::rtmp::session::{ServerSession, SessionConfig, SessionEvent};

fuzz_target!(|data: &[u8]| {
    let Some(input) = Framed::parse(data) else {
        return;
    };
    let mut h = Harness {
        session: ServerSession::new(SessionConfig::default(), u64::from(input.aux), 0),
        output: OutputChecker::new(),
        decisions: input.aux,
        decided: 0,
    };
    if input.flag(3) {
        assert!(h.feed(&plain_client_handshake()), "valid handshake refused");
        assert!(h.session.handshake_done());
    }
    for piece in input.pieces() {
        if !h.feed(piece) {
            break;
        }
    }
    h.finish();
});

struct Harness {
    session: ServerSession,
    output: OutputChecker,
    decisions: u8,
    decided: u32,
}

impl Harness {
    fn accept(&mut self) -> bool {
        let bit = (self.decisions >> (self.decided % 8)) & 1;
        self.decided += 1;
        bit == 0
    }

    /// One read from the socket; false when the connection would be closed.
    fn feed(&mut self, mut input: &[u8]) -> bool {
        loop {
            let result = self.session.handle_input(input);
            input = &[];
            // Replies and events queued before an error are still delivered.
            self.drain_output();
            while let Some(ev) = self.session.poll_event() {
                if !self.event(ev) {
                    self.drain_output();
                    return false;
                }
                self.drain_output();
            }
            if result.is_err() {
                return false;
            }
            if !self.session.resumable() {
                return true;
            }
        }
    }

    fn event(&mut self, ev: SessionEvent) -> bool {
        match ev {
            SessionEvent::ConnectRequested { .. } => {
                if self.accept() {
                    self.session.accept_connect();
                } else {
                    self.session.reject_connect("refused by the fuzzer");
                    return false;
                }
            }
            SessionEvent::PublishRequested {
                stream_id, name, ..
            } => {
                if self.accept() {
                    self.session.accept_publish(stream_id);
                } else {
                    let why = format!("{name}: already publishing");
                    self.session
                        .reject_publish(stream_id, "NetStream.Publish.BadName", &why);
                }
            }
            SessionEvent::PlayRequested {
                stream_id,
                name,
                reset,
                ..
            } => {
                if self.accept() {
                    self.session.accept_play(stream_id, reset, &name);
                } else {
                    self.session
                        .reject_play(stream_id, "NetStream.Play.Failed", "refused");
                }
            }
            SessionEvent::Media { frame, .. } => {
                assert!(
                    frame.payload.len() <= MAX_MESSAGE_LEN as usize,
                    "media frame of {} bytes cannot be sent to players",
                    frame.payload.len()
                );
            }
            SessionEvent::HandshakeDone { .. }
            | SessionEvent::PublishStopped { .. }
            | SessionEvent::PlayStopped { .. } => {}
        }
        true
    }

    fn drain_output(&mut self) {
        while let Some(b) = self.session.poll_transmit() {
            assert!(!b.is_empty());
            self.output.push(&b);
        }
    }

    /// What the server does around a close: players learn their publisher left.
    fn finish(&mut self) {
        let playing: Vec<u32> = self.session.playing_streams().collect();
        for id in playing {
            self.session.unpublish_notify(id, "gone");
        }
        let _ = self.session.publishing_streams().count();
        self.drain_output();
    }
}
