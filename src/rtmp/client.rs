//! The client side of an RTMP connection as a state machine (publisher or player), for forward
//! peers, the load generator and in-memory tests. Same shape as the server session: bytes in,
//! bytes and events out, no I/O and no clock.

use super::amf0::{Amf0Value, DecodeLimits};
use super::chunk::{ChunkDecoder, ChunkError, ChunkWriter, DecoderLimits, HeaderState, RawMessage};
use super::handshake::{ClientHandshake, HandshakeError};
use super::message::{self, csid, type_id, Command, Message, MessageError, UserControl};
use crate::media::{Frame, FrameKind};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use thiserror::Error;

/// Why a client session ended; the connection should then be closed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The handshake failed.
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// The chunk stream was malformed or broke a limit.
    #[error("chunk stream: {0}")]
    Chunk(#[from] ChunkError),
    /// A message did not decode.
    #[error("{0}")]
    Message(#[from] MessageError),
    /// The server answered with an `_error` or an error-level `onStatus`.
    #[error("server refused `{command}`: {code} {description}")]
    Refused {
        /// What was refused: `transaction <id>` for an `_error`, else `publish` or `play`.
        command: String,
        /// The status `code` (e.g. `NetStream.Publish.BadName`).
        code: String,
        /// The status `description`.
        description: String,
    },
    /// The server answered with an RTMP 302: connect to `redirect` instead. The session is over
    /// (the server closes it); the caller decides whether to follow.
    #[error("server redirected to {}", .0.target(""))]
    Redirected(Redirect),
}

/// An RTMP 302 redirect, as SRS sends it: a `NetConnection.Connect.Rejected` error status whose
/// info object holds `ex: {code: 302, redirect: <tcUrl>, redirect2: <full URL>}`. Older SRS 3
/// alphas sent only `redirect`, holding the full URL; players that predate `redirect2` append
/// their stream name to `redirect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// `ex.redirect`, or `redirect2` without its last path segment when only that was sent.
    pub tc_url: String,
    /// `ex.redirect2`: the full URL, stream included.
    pub url: Option<String>,
}

impl Redirect {
    /// Read a redirect from an error status's info object: level `error`, an `ex` object whose
    /// `code` is 302 (or absent: SRS's own edge does not check it), and a non-empty `redirect2`
    /// or `redirect` string. `None` for any other status.
    pub fn from_info(info: &Amf0Value) -> Option<Redirect> {
        if info.get("level").and_then(|v| v.as_str()) != Some("error") {
            return None;
        }
        let ex = info.get("ex")?;
        if !matches!(ex, Amf0Value::Object(_) | Amf0Value::EcmaArray(_)) {
            return None;
        }
        if let Some(code) = ex.get("code") {
            let is_302 = code.as_f64() == Some(302.0) || code.as_str() == Some("302");
            if !is_302 {
                return None;
            }
        }
        let text = |k: &str| {
            ex.get(k)
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        match (text("redirect"), text("redirect2")) {
            (Some(tc_url), url) => Some(Redirect { tc_url, url }),
            (None, Some(url)) => {
                let tc_url = url
                    .split_once('?')
                    .map_or(url.as_str(), |(u, _)| u)
                    .rsplit_once('/')
                    .map_or(url.as_str(), |(dir, _)| dir)
                    .to_string();
                Some(Redirect {
                    tc_url,
                    url: Some(url),
                })
            }
            (None, None) => None,
        }
    }

    /// The URL to connect to next for `stream` (name and query, as published or played):
    /// `redirect2` when sent, else `redirect` + "/" + `stream`.
    pub fn target(&self, stream: &str) -> String {
        match &self.url {
            Some(u) => u.clone(),
            None if stream.is_empty() => self.tc_url.clone(),
            None => format!("{}/{stream}", self.tc_url.trim_end_matches('/')),
        }
    }
}

/// What a client session does once connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientRole {
    /// Publish a stream (`releaseStream`, `FCPublish`, `createStream`, `publish`).
    Publish,
    /// Play a stream (`createStream`, `play`, Set Buffer Length).
    Play,
}

/// Settings of a [`ClientSession`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Application name sent in `connect`.
    pub app: String,
    /// `tcUrl` sent in `connect`.
    pub tc_url: String,
    /// Stream name as sent in publish/play, query included.
    pub stream: String,
    /// Publish or play.
    pub role: ClientRole,
    /// Chunk size this client announces and sends with (publishers).
    pub chunk_size: u32,
    /// Send a digest (Flash Player 9+) C1 instead of a plain handshake.
    pub digest_handshake: bool,
    /// Buffer length announced to the server (players), in ms.
    pub buffer_ms: u32,
}

impl ClientConfig {
    /// Builds a config from `rtmp://host[:port]/app[/...]/stream`: the last path segment is the
    /// stream, everything before it the app.
    pub fn from_url(url: &str, role: ClientRole) -> Option<ClientConfig> {
        let rest = url.strip_prefix("rtmp://")?;
        let (hostport, path) = rest.split_once('/')?;
        let (app, stream) = path.rsplit_once('/')?;
        if hostport.is_empty() || app.is_empty() || stream.is_empty() {
            return None;
        }
        Some(ClientConfig {
            app: app.to_string(),
            tc_url: format!("rtmp://{hostport}/{app}"),
            stream: stream.to_string(),
            role,
            chunk_size: 4096,
            digest_handshake: false,
            buffer_ms: 1000,
        })
    }
}

/// What the application learns from a client session.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// `connect` succeeded (`_result`).
    Connected,
    /// Publish approved: media may be sent.
    PublishStarted,
    /// Play approved: media will follow.
    PlayStarted,
    /// Any onStatus the server sent (including the ones above).
    Status {
        /// Status `code` (e.g. `NetStream.Play.Start`).
        code: String,
        /// Status `level` (`status`, `warning` or `error`).
        level: String,
    },
    /// Media for a player; `metadata` marks onMetaData.
    Media {
        /// The media, timestamped.
        frame: Frame,
        /// The frame is `onMetaData`.
        metadata: bool,
    },
    /// User Control Stream EOF: the server's stream ended.
    StreamEof,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Handshake,
    Connecting,
    CreatingStream,
    Starting,
    Active,
}

const TXN_CONNECT: f64 = 1.0;
const TXN_CREATE_STREAM: f64 = 4.0;

/// The client side of one RTMP connection (publisher or player), without I/O.
pub struct ClientSession {
    cfg: ClientConfig,
    hs: ClientHandshake,
    step: Step,
    decoder: ChunkDecoder,
    writer: ChunkWriter,
    out: BytesMut,
    events: VecDeque<ClientEvent>,
    stream_id: u32,
    bytes_received: u64,
    last_ack_sent: u64,
    ack_window: u32,
    amf_limits: DecodeLimits,
}

impl ClientSession {
    /// A session with C0+C1 already queued to send; `seed` fills the handshake's random bytes,
    /// `epoch_ms` is C1's time field.
    pub fn new(cfg: ClientConfig, seed: u64, epoch_ms: u32) -> Self {
        let mut hs = ClientHandshake::new(seed, epoch_ms, cfg.digest_handshake);
        let mut out = BytesMut::with_capacity(4096);
        out.extend_from_slice(&hs.start());
        let limits = DecoderLimits {
            max_message_len: 64 * 1024 * 1024,
            ..DecoderLimits::default()
        };
        ClientSession {
            cfg,
            hs,
            step: Step::Handshake,
            decoder: ChunkDecoder::new(limits),
            writer: ChunkWriter::new(),
            out,
            events: VecDeque::new(),
            stream_id: 0,
            bytes_received: 0,
            last_ack_sent: 0,
            ack_window: 0,
            amf_limits: DecodeLimits::default(),
        }
    }

    /// `publish`/`play` has been approved.
    pub fn is_active(&self) -> bool {
        self.step == Step::Active
    }

    /// The message stream id from `createStream` (0 before it).
    pub fn stream_id(&self) -> u32 {
        self.stream_id
    }

    /// The next event for the application, in order.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Bytes to send, if any, in order.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.out.is_empty() {
            None
        } else {
            Some(self.out.split().freeze())
        }
    }

    /// Feed received bytes; an error ends the session (a redirect arrives as
    /// [`ClientError::Redirected`]).
    pub fn handle_input(&mut self, mut data: &[u8]) -> Result<(), ClientError> {
        self.bytes_received += data.len() as u64;
        if self.step == Step::Handshake {
            let p = self.hs.feed(data)?;
            self.out.extend_from_slice(&p.reply);
            if !p.done {
                return Ok(());
            }
            data = &data[p.consumed..];
            self.step = Step::Connecting;
            self.send_connect();
        }
        self.decoder.push(data);
        while let Some(raw) = self.decoder.next_message()? {
            let timestamp = raw.timestamp;
            let msg = message::decode_owned(raw, &self.amf_limits)?;
            self.handle_message(timestamp, msg)?;
        }
        self.maybe_ack();
        Ok(())
    }

    /// Where a relay may take the origin's chunk stream over (to splice it): the origin's
    /// chunk size and each chunk stream's last header, once the session is active and its
    /// decoder is between messages with nothing buffered.
    pub fn handover(&self) -> Option<(u32, Vec<(u32, HeaderState)>)> {
        (self.step == Step::Active && self.decoder.is_idle())
            .then(|| (self.decoder.chunk_size(), self.decoder.header_states()))
    }

    /// The chunk size this session writes at.
    pub fn out_chunk_size(&self) -> u32 {
        self.writer.chunk_size()
    }

    /// Announce `size` to the peer (a Set Chunk Size through this session's own writer, so
    /// its header compression stays right) and write everything after it at that size: a
    /// relay forwards another sender's chunks, cut at `size`.
    pub fn set_out_chunk_size(&mut self, size: u32) {
        self.writer.write(
            &mut self.out,
            csid::CONTROL,
            0,
            type_id::SET_CHUNK_SIZE,
            0,
            &size.to_be_bytes(),
        );
        self.writer.set_chunk_size(size);
    }

    /// A relay wrote another sender's message on chunk stream `csid`: this session's next
    /// message there starts with a full (fmt 0) header.
    pub fn forget_chunk_stream(&mut self, csid: u32) {
        self.writer.forget(csid);
    }

    /// After a hand-over: `n` bytes were received (acknowledged as usual).
    pub fn count_received(&mut self, n: usize) {
        self.bytes_received += n as u64;
        self.maybe_ack();
    }

    /// After a hand-over: one whole message the relay did not forward (statuses, pings,
    /// window sizes...), handled as if it had been read here.
    pub fn handle_raw(&mut self, raw: &RawMessage) -> Result<(), ClientError> {
        let msg = message::decode(raw, &self.amf_limits)?;
        self.handle_message(raw.timestamp, msg)
    }

    fn maybe_ack(&mut self) {
        let w = self.ack_window as u64;
        if w > 0 && self.bytes_received - self.last_ack_sent >= w {
            self.last_ack_sent = self.bytes_received;
            let seq = (self.bytes_received as u32).to_be_bytes();
            self.writer.write(
                &mut self.out,
                csid::CONTROL,
                0,
                type_id::ACKNOWLEDGEMENT,
                0,
                &seq,
            );
        }
    }

    fn command(&mut self, stream_id: u32, name: &str, txn: f64, args: Vec<Amf0Value>) {
        self.command_obj(stream_id, name, txn, Amf0Value::Null, args);
    }

    fn command_obj(
        &mut self,
        stream_id: u32,
        name: &str,
        txn: f64,
        obj: Amf0Value,
        args: Vec<Amf0Value>,
    ) {
        let mut vals = vec![Amf0Value::string(name), Amf0Value::Number(txn), obj];
        vals.extend(args);
        let p = super::amf0::encode_all(&vals);
        let cs = if stream_id == 0 {
            csid::COMMAND
        } else {
            csid::STREAM
        };
        self.writer
            .write(&mut self.out, cs, 0, type_id::COMMAND_AMF0, stream_id, &p);
    }

    fn send_connect(&mut self) {
        if self.cfg.role == ClientRole::Publish && self.cfg.chunk_size != 128 {
            let size = self.cfg.chunk_size.to_be_bytes();
            self.writer.write(
                &mut self.out,
                csid::CONTROL,
                0,
                type_id::SET_CHUNK_SIZE,
                0,
                &size,
            );
            self.writer.set_chunk_size(self.cfg.chunk_size);
        }
        let obj = Amf0Value::object([
            ("app", Amf0Value::string(self.cfg.app.clone())),
            ("type", Amf0Value::string("nonprivate")),
            (
                "flashVer",
                Amf0Value::string("FMLE/3.0 (compatible; shardcast)"),
            ),
            ("tcUrl", Amf0Value::string(self.cfg.tc_url.clone())),
            ("fpad", Amf0Value::Boolean(false)),
            ("capabilities", Amf0Value::Number(15.0)),
            ("audioCodecs", Amf0Value::Number(4071.0)),
            ("videoCodecs", Amf0Value::Number(252.0)),
            ("videoFunction", Amf0Value::Number(1.0)),
            ("objectEncoding", Amf0Value::Number(0.0)),
        ]);
        self.command_obj(0, "connect", TXN_CONNECT, obj, vec![]);
    }

    fn handle_message(&mut self, ts: u32, msg: Message) -> Result<(), ClientError> {
        match msg {
            Message::WindowAckSize(w) => self.ack_window = w,
            Message::UserControl(UserControl::PingRequest(t)) => {
                let mut p = vec![0, 7];
                p.extend_from_slice(&t.to_be_bytes());
                self.writer.write(
                    &mut self.out,
                    csid::CONTROL,
                    0,
                    type_id::USER_CONTROL,
                    0,
                    &p,
                );
            }
            Message::UserControl(UserControl::StreamEof(_)) => {
                self.events.push_back(ClientEvent::StreamEof)
            }
            Message::Audio(p) => self.events.push_back(ClientEvent::Media {
                frame: Frame::audio(ts, p),
                metadata: false,
            }),
            Message::Video(p) => self.events.push_back(ClientEvent::Media {
                frame: Frame::video(ts, p),
                metadata: false,
            }),
            Message::Data { values, amf0 } => {
                let metadata = values.first().and_then(|v| v.as_str()) == Some("onMetaData");
                if metadata || self.step == Step::Active {
                    self.events.push_back(ClientEvent::Media {
                        frame: Frame::data(ts, amf0),
                        metadata,
                    });
                }
            }
            Message::Command(cmd) => self.handle_command(cmd)?,
            _ => {}
        }
        Ok(())
    }

    fn handle_command(&mut self, cmd: Command) -> Result<(), ClientError> {
        let info = |c: &Command| {
            let o = c.args.first();
            let s = |k: &str| {
                o.and_then(|o| o.get(k))
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string()
            };
            (s("level"), s("code"), s("description"))
        };
        match cmd.name.as_str() {
            "_result" if cmd.transaction_id == TXN_CONNECT && self.step == Step::Connecting => {
                self.events.push_back(ClientEvent::Connected);
                self.step = Step::CreatingStream;
                let name = Amf0Value::string(self.cfg.stream.clone());
                if self.cfg.role == ClientRole::Publish {
                    self.command(0, "releaseStream", 2.0, vec![name.clone()]);
                    self.command(0, "FCPublish", 3.0, vec![name]);
                }
                self.command(0, "createStream", TXN_CREATE_STREAM, vec![]);
            }
            "_result"
                if cmd.transaction_id == TXN_CREATE_STREAM && self.step == Step::CreatingStream =>
            {
                self.stream_id = cmd.args.first().and_then(|v| v.as_f64()).unwrap_or(1.0) as u32;
                self.step = Step::Starting;
                let sid = self.stream_id;
                let name = Amf0Value::string(self.cfg.stream.clone());
                match self.cfg.role {
                    ClientRole::Publish => {
                        self.command(sid, "publish", 5.0, vec![name, Amf0Value::string("live")])
                    }
                    ClientRole::Play => {
                        self.command(sid, "play", 5.0, vec![name, Amf0Value::Number(-1000.0)]);
                        let mut p = vec![0, 3];
                        p.extend_from_slice(&sid.to_be_bytes());
                        p.extend_from_slice(&self.cfg.buffer_ms.to_be_bytes());
                        self.writer.write(
                            &mut self.out,
                            csid::CONTROL,
                            0,
                            type_id::USER_CONTROL,
                            0,
                            &p,
                        );
                    }
                }
            }
            "_error" => {
                if let Some(r) = self.redirect_in(&cmd) {
                    return Err(ClientError::Redirected(r));
                }
                let (_, code, description) = info(&cmd);
                return Err(ClientError::Refused {
                    command: format!("transaction {}", cmd.transaction_id),
                    code,
                    description,
                });
            }
            "onStatus" => {
                let (level, code, description) = info(&cmd);
                self.events.push_back(ClientEvent::Status {
                    code: code.clone(),
                    level: level.clone(),
                });
                if let Some(r) = self.redirect_in(&cmd) {
                    return Err(ClientError::Redirected(r));
                }
                if level == "error" {
                    return Err(ClientError::Refused {
                        command: format!("{:?}", self.cfg.role).to_lowercase(),
                        code,
                        description,
                    });
                }
                match code.as_str() {
                    "NetStream.Publish.Start" if self.step == Step::Starting => {
                        self.step = Step::Active;
                        self.events.push_back(ClientEvent::PublishStarted);
                    }
                    "NetStream.Play.Start" if self.step == Step::Starting => {
                        self.step = Step::Active;
                        self.events.push_back(ClientEvent::PlayStarted);
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A 302 in an error answer. SRS waits up to 3 s for the client to acknowledge a redirect
    /// with any call before it closes, so we answer as Flash players do, with
    /// `Redirected(0, null, <tcUrl>)`; the caller then closes without that wait.
    fn redirect_in(&mut self, cmd: &Command) -> Option<Redirect> {
        let r = Redirect::from_info(cmd.args.first()?)?;
        let ack = Amf0Value::string(r.tc_url.clone());
        self.command(0, "Redirected", 0.0, vec![ack]);
        Some(r)
    }

    /// Send one media frame (publishers, once `PublishStarted`). Data frames go out as
    /// `@setDataFrame` when `metadata` is set, as servers expect from encoders.
    pub fn send_frame(&mut self, frame: &Frame, metadata: bool) {
        let sid = self.stream_id;
        let (cs, t) = match frame.kind {
            FrameKind::Audio => (csid::AUDIO, type_id::AUDIO),
            FrameKind::Video => (csid::VIDEO, type_id::VIDEO),
            FrameKind::Data => (csid::STREAM, type_id::DATA_AMF0),
        };
        if metadata && frame.kind == FrameKind::Data {
            let mut p = Vec::with_capacity(frame.payload.len() + 16);
            super::amf0::encode(&Amf0Value::string("@setDataFrame"), &mut p);
            p.extend_from_slice(&frame.payload);
            self.writer
                .write(&mut self.out, cs, frame.timestamp, t, sid, &p);
        } else {
            self.writer
                .write(&mut self.out, cs, frame.timestamp, t, sid, &frame.payload);
        }
    }

    /// FCUnpublish + deleteStream, as encoders do when they stop.
    pub fn unpublish(&mut self) {
        let name = Amf0Value::string(self.cfg.stream.clone());
        self.command(0, "FCUnpublish", 6.0, vec![name]);
        let sid = Amf0Value::Number(self.stream_id as f64);
        self.command(0, "deleteStream", 7.0, vec![sid]);
        self.step = Step::CreatingStream;
    }

    /// Send an arbitrary command (tests use it to poke the server).
    pub fn send_command(&mut self, stream_id: u32, name: &str, txn: f64, args: Vec<Amf0Value>) {
        self.command(stream_id, name, txn, args);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::message::MessageWriter;
    use crate::rtmp::session::{ServerSession, SessionConfig, SessionEvent};

    /// Runs handshake and connect against a server session, then hands the client `answer`
    /// (built at RTMP's initial chunk size) instead of the server's own reply.
    fn answer_connect_with(answer: Command) -> Result<(), ClientError> {
        let cfg = ClientConfig::from_url("rtmp://127.0.0.1/live/cam", ClientRole::Publish).unwrap();
        let mut c = ClientSession::new(cfg, 3, 0);
        let mut s = ServerSession::new(SessionConfig::default(), 5, 0);
        for _ in 0..10 {
            while let Some(b) = c.poll_transmit() {
                s.handle_input(&b).unwrap();
            }
            if std::iter::from_fn(|| s.poll_event())
                .any(|e| matches!(e, SessionEvent::ConnectRequested { .. }))
            {
                let mut out = BytesMut::new();
                MessageWriter::new(128).command(&mut out, 0, &answer);
                return c.handle_input(&out);
            }
            while let Some(b) = s.poll_transmit() {
                c.handle_input(&b).unwrap();
            }
        }
        panic!("no connect")
    }

    fn error_info(ex: Option<Amf0Value>) -> Command {
        let mut info = vec![
            ("level", Amf0Value::string("error")),
            ("code", Amf0Value::string("NetConnection.Connect.Rejected")),
            ("description", Amf0Value::string("RTMP 302 Redirect")),
        ];
        info.extend(ex.map(|ex| ("ex", ex)));
        Command {
            name: "_error".into(),
            transaction_id: TXN_CONNECT,
            object: Amf0Value::Null,
            args: vec![Amf0Value::object(info)],
        }
    }

    #[test]
    fn error_reply_with_302_is_a_redirect() {
        let ex = Amf0Value::object([
            ("code", Amf0Value::Number(302.0)),
            (
                "redirect2",
                Amf0Value::string("rtmp://10.0.0.3:1936/live/cam?k=v"),
            ),
        ]);
        match answer_connect_with(error_info(Some(ex))) {
            Err(ClientError::Redirected(r)) => {
                assert_eq!(r.tc_url, "rtmp://10.0.0.3:1936/live");
                assert_eq!(r.target("cam"), "rtmp://10.0.0.3:1936/live/cam?k=v");
                assert!(ClientError::Redirected(r.clone())
                    .to_string()
                    .contains("10.0.0.3:1936"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn plain_rejection_stays_refused() {
        match answer_connect_with(error_info(None)) {
            Err(ClientError::Refused { code, .. }) => {
                assert_eq!(code, "NetConnection.Connect.Rejected")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn redirect_without_redirect2_appends_the_stream() {
        let r = Redirect {
            tc_url: "rtmp://o:1935/live/".into(),
            url: None,
        };
        assert_eq!(r.target("cam?t=1"), "rtmp://o:1935/live/cam?t=1");
        assert_eq!(r.target(""), "rtmp://o:1935/live/");
    }
}
