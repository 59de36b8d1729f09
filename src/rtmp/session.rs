//! The server side of one RTMP connection as a state machine: bytes in (`handle_input`), bytes
//! out (`poll_transmit`) and events out (`poll_event`). Publish and play requests are raised as
//! events for the caller to accept or reject, so policy (registry, access control) stays outside.

use super::amf0::{truncate_utf8 as clip, Amf0Value, DecodeLimits};
use super::chunk::{ChunkDecoder, ChunkError, DecoderLimits};
use super::handshake::{HandshakeError, HandshakeKind, ServerHandshake};
use super::message::{
    self, on_status, split_aggregate, type_id, Command, Message, MessageError, MessageWriter,
    UserControl,
};
use crate::media::Frame;
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use thiserror::Error;

/// Most message streams (createStream) one connection may hold open.
pub const MAX_STREAMS_PER_CONNECTION: usize = 16;

/// Why a session failed; the connection should then be closed.
#[derive(Debug, Error)]
pub enum SessionError {
    /// The handshake failed.
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// The chunk stream was malformed or broke a limit.
    #[error("chunk stream: {0}")]
    Chunk(#[from] ChunkError),
    /// A message did not decode.
    #[error("{0}")]
    Message(#[from] MessageError),
    /// A command other than `connect` came before `connect`.
    #[error("`{command}` before connect")]
    NotConnected {
        /// Command name.
        command: String,
    },
    /// A command the stream's state does not allow (a second `connect`, `publish`/`play` on a busy
    /// stream).
    #[error("`{command}` on stream {stream_id} which is {state}")]
    WrongState {
        /// Command name.
        command: String,
        /// Message stream id.
        stream_id: u32,
        /// The stream's state, described.
        state: &'static str,
    },
    /// A command or media named a message stream id that `createStream` never returned.
    #[error("{what} on stream id {stream_id} that was never created")]
    UnknownStream {
        /// Message stream id.
        stream_id: u32,
        /// What arrived on it (`"command"`, `"media"`).
        what: &'static str,
    },
    /// `createStream` beyond [`MAX_STREAMS_PER_CONNECTION`].
    #[error("more than {limit} streams on one connection")]
    TooManyStreams {
        /// The limit.
        limit: usize,
    },
    /// `publish` or `play` without a stream name.
    #[error("`{command}` without a stream name")]
    MissingStreamName {
        /// Command name.
        command: String,
    },
    /// More than [`MAX_BUFFERED_WHILE_WAITING`] bytes arrived while a request awaited a decision.
    #[error("more than {limit} bytes sent while a request was being decided")]
    TooMuchWhileWaiting {
        /// The limit, in bytes.
        limit: usize,
    },
}

/// Input a client may send while its connect/publish/play is being decided.
pub const MAX_BUFFERED_WHILE_WAITING: usize = 1 << 20;

/// Room an empty event queue keeps: a 100 ms merged read of a 0.5-1 Mbit/s stream brings
/// about ten messages.
const KEEP_EVENTS: usize = 16;

/// Settings of a [`ServerSession`].
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Chunk size this session sends with (announced after `connect` is accepted), in bytes.
    pub out_chunk_size: u32,
    /// Window Acknowledgement Size and Set Peer Bandwidth sent on `connect`, in bytes.
    pub window_ack_size: u32,
    /// Limits on the incoming chunk stream.
    pub decoder_limits: DecoderLimits,
    /// Limits on decoding incoming AMF0.
    pub amf_limits: DecodeLimits,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            out_chunk_size: 4096,
            window_ack_size: 2_500_000,
            decoder_limits: DecoderLimits::default(),
            amf_limits: DecodeLimits::default(),
        }
    }
}

/// What the application learns from a connection.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// The handshake completed; the chunk stream begins.
    HandshakeDone {
        /// Which handshake the client used.
        kind: HandshakeKind,
    },
    /// `connect` arrived: answer with `accept_connect` or `reject_connect`. Until then no
    /// further input is processed (it is buffered, up to a bound).
    ConnectRequested {
        /// The application name from `connect` (its `?query` removed).
        app: String,
        /// `tcUrl` from the `connect` command object.
        tc_url: String,
        /// `?vhost=` from the app or tcUrl, else the tcUrl host.
        vhost: String,
        /// True when the vhost came from an explicit `?vhost=`.
        vhost_explicit: bool,
    },
    /// Answer with `accept_publish` or `reject_publish`.
    PublishRequested {
        /// Message stream id the `publish` came on.
        stream_id: u32,
        /// Stream name, without its `?query`.
        name: String,
        /// The query after `?` in the stream name (`""` if none).
        query: String,
        /// Publishing type argument: `live`, `record` or `append` (`live` when missing).
        publish_type: String,
    },
    /// Answer with `accept_play` or `reject_play`.
    PlayRequested {
        /// Message stream id the `play` came on.
        stream_id: u32,
        /// Stream name, without its `?query`.
        name: String,
        /// The query after `?` in the stream name (`""` if none).
        query: String,
        /// `play` start argument in seconds: -2 (default) live or recorded, -1 live only, >= 0
        /// recorded from there.
        start: f64,
        /// `play` duration argument in seconds; -1 (default) plays to the end.
        duration: f64,
        /// `play` reset argument: flush previous playlists (true when missing).
        reset: bool,
    },
    /// Audio, video or data from an accepted publisher; `metadata` marks `onMetaData` (already
    /// rewritten from `@setDataFrame`).
    Media {
        /// Message stream id.
        stream_id: u32,
        /// The media, timestamped.
        frame: Frame,
        /// The frame is `onMetaData`.
        metadata: bool,
    },
    /// A publish ended (`FCUnpublish`, `closeStream` or `deleteStream`).
    PublishStopped {
        /// Message stream id.
        stream_id: u32,
    },
    /// A play ended (`closeStream` or `deleteStream`).
    PlayStopped {
        /// Message stream id.
        stream_id: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamState {
    Idle,
    PublishPending,
    Publishing,
    PlayPending,
    Playing,
}

impl StreamState {
    fn describe(self) -> &'static str {
        match self {
            StreamState::Idle => "idle",
            StreamState::PublishPending => "waiting for publish approval",
            StreamState::Publishing => "publishing",
            StreamState::PlayPending => "waiting for play approval",
            StreamState::Playing => "playing",
        }
    }
}

enum Phase {
    Handshake(ServerHandshake),
    Chunks,
}

/// The server side of one RTMP connection: handshake, chunk stream and command handling, without
/// I/O.
pub struct ServerSession {
    cfg: SessionConfig,
    phase: Phase,
    decoder: ChunkDecoder,
    writer: MessageWriter,
    out: BytesMut,
    events: VecDeque<SessionEvent>,
    connected: bool,
    /// A request was raised and the caller has not decided yet: input waits in the decoder.
    awaiting: bool,
    /// Input processing stopped at a request with messages possibly still buffered.
    stalled: bool,
    /// (transaction id, objectEncoding) of the connect being decided.
    pending_connect: Option<(f64, f64)>,
    app: String,
    streams: Vec<(u32, StreamState)>,
    next_stream_id: u32,
    bytes_received: u64,
    last_ack_sent: u64,
    /// How often the peer wants acknowledgements (its Window Acknowledgement Size).
    peer_ack_window: u32,
    /// Media dropped because it arrived before its publish was approved.
    pub early_media_dropped: u64,
}

impl ServerSession {
    /// A session in the handshake phase; `seed` fills the handshake's random bytes, `epoch_ms` is
    /// S1's time field.
    pub fn new(cfg: SessionConfig, seed: u64, epoch_ms: u32) -> Self {
        let writer = MessageWriter::new(cfg.out_chunk_size);
        ServerSession {
            decoder: ChunkDecoder::new(cfg.decoder_limits),
            phase: Phase::Handshake(ServerHandshake::new(seed, epoch_ms)),
            writer,
            cfg,
            out: BytesMut::new(),
            events: VecDeque::new(),
            connected: false,
            awaiting: false,
            stalled: false,
            pending_connect: None,
            app: String::new(),
            streams: Vec::new(),
            next_stream_id: 1,
            bytes_received: 0,
            last_ack_sent: 0,
            peer_ack_window: 0,
            early_media_dropped: 0,
        }
    }

    /// The handshake has completed.
    pub fn handshake_done(&self) -> bool {
        matches!(self.phase, Phase::Chunks)
    }

    /// Application name from `connect` (`""` before it).
    pub fn app(&self) -> &str {
        &self.app
    }

    /// The chunk size used for everything this session sends after `connect`.
    pub fn out_chunk_size(&self) -> u32 {
        self.cfg.out_chunk_size
    }

    /// Chunk what follows at `size`: a relay announced it to the peer itself (a Set Chunk Size
    /// it wrote in line with the media it forwards), so this sends nothing.
    pub fn adopt_out_chunk_size(&mut self, size: u32) {
        self.cfg.out_chunk_size = size;
        self.writer.chunk_size = size;
    }

    /// Feed received bytes. On error the connection should be closed; what was queued before
    /// the error (events, replies) is still valid.
    pub fn handle_input(&mut self, mut data: &[u8]) -> Result<(), SessionError> {
        self.bytes_received += data.len() as u64;
        if let Phase::Handshake(hs) = &mut self.phase {
            let p = hs.feed(data)?;
            self.out.extend_from_slice(&p.reply);
            if !p.done {
                return Ok(());
            }
            let kind = hs.kind().unwrap_or(HandshakeKind::Plain);
            self.events.push_back(SessionEvent::HandshakeDone { kind });
            self.phase = Phase::Chunks;
            data = &data[p.consumed..];
        }
        self.decoder.push(data);
        self.stalled = false;
        while !self.awaiting {
            let Some(raw) = self.decoder.next_message()? else {
                break;
            };
            let (stream_id, timestamp) = (raw.stream_id, raw.timestamp);
            let msg = message::decode_owned(raw, &self.cfg.amf_limits)?;
            self.handle_message(stream_id, timestamp, msg)?;
        }
        self.decoder.shrink();
        if self.awaiting {
            self.stalled = true;
            if self.decoder.buffered() > MAX_BUFFERED_WHILE_WAITING {
                return Err(SessionError::TooMuchWhileWaiting {
                    limit: MAX_BUFFERED_WHILE_WAITING,
                });
            }
        }
        self.maybe_ack();
        Ok(())
    }

    /// Where a relay may take the client's chunk stream over (to splice it): the client's chunk
    /// size and each chunk stream's last header, once the handshake is done, no request waits
    /// and the decoder is between messages with nothing buffered.
    pub fn handover(&self) -> Option<(u32, Vec<(u32, super::chunk::HeaderState)>)> {
        (self.handshake_done() && !self.awaiting && !self.stalled && self.decoder.is_idle())
            .then(|| (self.decoder.chunk_size(), self.decoder.header_states()))
    }

    /// After a hand-over: `n` bytes were received (acknowledged as usual).
    pub fn count_received(&mut self, n: usize) {
        self.bytes_received += n as u64;
        self.maybe_ack();
    }

    /// After a hand-over: one whole message the relay did not forward (commands, acks, user
    /// control...), handled as if it had been read here. Chunk-layer control (Set Chunk Size,
    /// Abort) is the relay's to apply.
    pub fn handle_raw(&mut self, raw: &super::chunk::RawMessage) -> Result<(), SessionError> {
        let msg = message::decode(raw, &self.cfg.amf_limits)?;
        self.handle_message(raw.stream_id, raw.timestamp, msg)
    }

    /// After a decision: input stopped at the request may hold more messages; call
    /// `handle_input(&[])` to go on.
    pub fn resumable(&self) -> bool {
        self.stalled && !self.awaiting
    }

    /// The next event for the application, in order. Once drained, a queue that a burst grew
    /// gives its room back (heaptrack, 200 publishers on a slowed server: 5 KB per session).
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        let ev = self.events.pop_front();
        if ev.is_none() && self.events.capacity() > KEEP_EVENTS {
            self.events.shrink_to(KEEP_EVENTS);
        }
        ev
    }

    /// The next event, left queued (a caller that handles only some kinds looks first).
    pub fn peek_event(&self) -> Option<&SessionEvent> {
        self.events.front()
    }

    /// Bytes to send, if any, in order. The whole buffer goes with them: a split would keep
    /// the handshake-sized allocation alive for the life of every connection.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.out.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.out).freeze())
        }
    }

    fn maybe_ack(&mut self) {
        let w = self.peer_ack_window as u64;
        if w > 0 && self.bytes_received - self.last_ack_sent >= w {
            self.last_ack_sent = self.bytes_received;
            self.writer
                .acknowledgement(&mut self.out, self.bytes_received as u32);
        }
    }

    fn state_of(&self, stream_id: u32) -> Option<StreamState> {
        self.streams
            .iter()
            .find(|(id, _)| *id == stream_id)
            .map(|(_, s)| *s)
    }

    fn set_state(&mut self, stream_id: u32, state: StreamState) {
        if let Some(e) = self.streams.iter_mut().find(|(id, _)| *id == stream_id) {
            e.1 = state;
        }
    }

    fn handle_message(
        &mut self,
        stream_id: u32,
        ts: u32,
        msg: Message,
    ) -> Result<(), SessionError> {
        match msg {
            Message::WindowAckSize(size) => self.peer_ack_window = size,
            Message::UserControl(UserControl::PingRequest(t)) => {
                self.writer
                    .user_control(&mut self.out, &UserControl::PingResponse(t));
            }
            Message::Audio(p) => self.media(stream_id, Frame::audio(ts, p), false)?,
            Message::Video(p) => self.media(stream_id, Frame::video(ts, p), false)?,
            Message::Aggregate(p) => {
                for (t, sub_ts, payload) in split_aggregate(&p, ts) {
                    let frame = match t {
                        type_id::AUDIO => Frame::audio(sub_ts, payload),
                        type_id::VIDEO => Frame::video(sub_ts, payload),
                        _ => continue,
                    };
                    self.media(stream_id, frame, false)?;
                }
            }
            Message::Data { values, amf0 } => self.data(stream_id, ts, values, amf0)?,
            Message::Command(cmd) => self.command(stream_id, cmd)?,
            // Chunk-layer control is applied by the decoder; acks, bandwidth and the other user
            // control events need no answer from a server.
            _ => {}
        }
        Ok(())
    }

    fn media(&mut self, stream_id: u32, frame: Frame, metadata: bool) -> Result<(), SessionError> {
        match self.state_of(stream_id) {
            Some(StreamState::Publishing) => {
                self.events.push_back(SessionEvent::Media {
                    stream_id,
                    frame,
                    metadata,
                });
                Ok(())
            }
            Some(_) => {
                self.early_media_dropped += 1;
                Ok(())
            }
            None => Err(SessionError::UnknownStream {
                stream_id,
                what: "media",
            }),
        }
    }

    fn data(
        &mut self,
        stream_id: u32,
        ts: u32,
        values: Vec<Amf0Value>,
        amf0: Bytes,
    ) -> Result<(), SessionError> {
        let first = values.first().and_then(|v| v.as_str());
        let (payload, metadata) =
            match first {
                Some("@setDataFrame") => {
                    // Players get the same bytes minus the leading "@setDataFrame" string: a
                    // zero-copy slice, never a re-encoding (which could also grow lossy strings).
                    let is_meta = values.get(1).and_then(|v| v.as_str()) == Some("onMetaData");
                    let (_, first_len) = super::amf0::decode_one(&amf0, &self.cfg.amf_limits)
                        .map_err(|source| MessageError::Amf {
                            type_id: type_id::DATA_AMF0,
                            source,
                        })?;
                    (amf0.slice(first_len..), is_meta)
                }
                Some("onMetaData") => (amf0, true),
                Some("@clearDataFrame") => return Ok(()),
                _ => (amf0, false),
            };
        if stream_id == 0 {
            // Data on the connection stream (e.g. from some encoders before publish) is ignored.
            return Ok(());
        }
        self.media(stream_id, Frame::data(ts, payload), metadata)
    }

    fn reply(&mut self, stream_id: u32, cmd: Command) {
        self.writer.command(&mut self.out, stream_id, &cmd);
    }

    fn result(&mut self, txn: f64, object: Amf0Value, args: Vec<Amf0Value>) {
        self.reply(
            0,
            Command {
                name: "_result".into(),
                transaction_id: txn,
                object,
                args,
            },
        );
    }

    fn error_reply(&mut self, txn: f64, code: &str, description: &str) {
        self.reply(
            0,
            Command {
                name: "_error".into(),
                transaction_id: txn,
                object: Amf0Value::Null,
                args: vec![Amf0Value::object([
                    ("level", Amf0Value::string("error")),
                    ("code", Amf0Value::string(code)),
                    ("description", Amf0Value::string(description)),
                ])],
            },
        );
    }

    fn command(&mut self, msg_stream_id: u32, cmd: Command) -> Result<(), SessionError> {
        let name = cmd.name.as_str();
        if name == "connect" {
            if self.connected || self.pending_connect.is_some() {
                // One NetConnection per TCP connection (nginx-rtmp closes here too).
                return Err(SessionError::WrongState {
                    command: cmd.name.clone(),
                    stream_id: 0,
                    state: "connected",
                });
            }
            return self.connect(cmd);
        }
        if !self.connected {
            return Err(SessionError::NotConnected {
                command: cmd.name.clone(),
            });
        }
        let txn = cmd.transaction_id;
        match name {
            "releaseStream" | "FCPublish" | "FCSubscribe" | "_checkbw" => {
                self.result(txn, Amf0Value::Null, vec![Amf0Value::Undefined])
            }
            "createStream" => {
                if self.streams.len() >= MAX_STREAMS_PER_CONNECTION {
                    return Err(SessionError::TooManyStreams {
                        limit: MAX_STREAMS_PER_CONNECTION,
                    });
                }
                let id = self.next_stream_id;
                self.next_stream_id += 1;
                self.streams.push((id, StreamState::Idle));
                self.result(txn, Amf0Value::Null, vec![Amf0Value::Number(id as f64)]);
            }
            "publish" => self.publish(msg_stream_id, &cmd)?,
            "play" => self.play(msg_stream_id, &cmd)?,
            "FCUnpublish" => {
                self.result(txn, Amf0Value::Null, vec![Amf0Value::Undefined]);
                // FCUnpublish arrives on stream 0; it names the stream, so stop every publish.
                let publishing: Vec<u32> = self
                    .streams
                    .iter()
                    .filter(|(_, s)| *s == StreamState::Publishing)
                    .map(|(id, _)| *id)
                    .collect();
                for id in publishing {
                    self.stop_stream(id);
                }
            }
            "deleteStream" | "closeStream" => {
                let id = if name == "deleteStream" {
                    cmd.args
                        .first()
                        .and_then(|v| v.as_f64())
                        .map(|v| v as u32)
                        .unwrap_or(msg_stream_id)
                } else {
                    msg_stream_id
                };
                self.stop_stream(id);
                if name == "deleteStream" {
                    self.streams.retain(|(sid, _)| *sid != id);
                }
            }
            "getStreamLength" => self.result(txn, Amf0Value::Null, vec![Amf0Value::Number(0.0)]),
            "receiveAudio" | "receiveVideo" => {}
            "pause" => {
                let pause = cmd.args.first().and_then(|v| v.as_bool()).unwrap_or(true);
                let code = if pause {
                    "NetStream.Pause.Notify"
                } else {
                    "NetStream.Unpause.Notify"
                };
                self.reply(
                    msg_stream_id,
                    on_status("status", code, "live streams keep flowing"),
                );
            }
            _ => self.error_reply(
                txn,
                "NetConnection.Call.Failed",
                &format!("unknown command {}", clip(&cmd.name, 256)),
            ),
        }
        Ok(())
    }
}

/// "name?query" → ("name", "query").
pub fn split_query(s: &str) -> (&str, &str) {
    s.split_once('?').unwrap_or((s, ""))
}

/// The value of `key` in an `a=b&c=d` query (also accepts `...vhost...value` as some encoders
/// write `?vhost...foo` where `=` is not allowed).
pub fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').or_else(|| kv.split_once("..."))?;
        (k == key).then_some(v)
    })
}

/// Host part of `rtmp://host:port/app` (IPv6 brackets removed).
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let hostport = rest.split(['/', '?']).next().unwrap_or("");
    if let Some(v6) = hostport.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    hostport.split(':').next().unwrap_or("")
}

mod requests;

#[cfg(test)]
mod tests;
