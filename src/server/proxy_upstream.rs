//! A proxy's upstream leg: connect to the origin the registry named, replay the client's
//! connect and publish/play (tcUrl and stream query included, so the origin's tokens and rules
//! see them), and hand back the origin's answer. Once it accepted, a reader task owns the
//! origin's input: a player's media goes to the client, acks and statuses are answered, and
//! the end of the origin's side is reported so the client task can close.
//!
//! A player's relay splices when the legs allow it: once the origin said Play.Start, and the
//! origin's message stream id is the client's, the proxy announces the origin's chunk size to
//! the client (a Set Chunk Size in line with the media) and from the next message boundary the
//! origin's bytes go to the client as they came ([`ChunkSplicer`]): each media message is one
//! slice of the receive buffer, not decoded into a payload and not re-chunked; messages that
//! are not context-free (compressed fmt 1/2/3 starts, interleaved chunks) are rewritten once.
//! Everything else the origin sends (statuses, pings, window sizes, acks) is cut out and handled
//! by the proxy's own session. Otherwise (different stream ids, `[proxy] relay_splice = false`)
//! the relay re-chunks: each message's payload is a `Bytes` from the decoder, written once into
//! the client's chunk form. Either way a player leg goes through the same bounded,
//! drop-to-keyframe queue: every forwarded message starts with a fmt-0 header, so dropping
//! whole messages is safe.

use super::conn::ConnIo;
use super::kinds::{PathStats, RelayPath};
use super::packet::encode_frame;
use super::shard::Shard;
use super::writer::ConnWriter;
use crate::cluster::registry::OriginRecord;
use crate::cluster::url::split_host_port;
use crate::media::{Frame, FrameKind};
use crate::rtmp::chunk::splice::{ChunkSplicer, Spliced};
use crate::rtmp::chunk::DecoderLimits;
use crate::rtmp::client::{ClientConfig, ClientError, ClientEvent, ClientRole, ClientSession};
use crate::rtmp::message::MessageWriter;
use futures_lite::AsyncReadExt;
use glommio::net::TcpStream;
use std::cell::{Cell, RefCell};
use std::os::unix::io::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Why the origin did not take the client.
#[derive(Debug, Error)]
pub enum UpstreamError {
    /// The origin's record has no usable address.
    #[error("bad origin address `{0}`")]
    BadAddress(String),
    /// Name lookup or connect failed.
    #[error("cannot reach {0}: {1}")]
    Unreachable(String, String),
    /// No answer to connect + publish/play in time.
    #[error("{0} did not answer within {1:?}")]
    Timeout(String, Duration),
    /// The origin refused: its status code and description go to the client.
    #[error("{origin} refused: {code} {description}")]
    Refused {
        /// The origin.
        origin: String,
        /// Its status code.
        code: String,
        /// Its description.
        description: String,
    },
    /// The origin broke the protocol or closed.
    #[error("{0}: {1}")]
    Protocol(String, String),
}

/// The origin's side of one relayed session.
pub struct Upstream {
    /// The origin (`host:port`).
    pub origin: String,
    /// The client session towards the origin (the client task sends a publisher's media).
    pub session: RefCell<ClientSession>,
    /// The origin socket's writing half.
    pub writer: Rc<ConnWriter>,
    io: RefCell<Option<ConnIo>>,
    /// Why the origin's side ended, once it did.
    pub ended: RefCell<Option<String>>,
    /// The origin's stream ended (a player gets UnpublishNotify).
    pub stream_eof: Cell<bool>,
    /// Bytes read from the origin.
    pub bytes_in: Cell<u64>,
    /// How a player's media crossed: the path and its message counts (shared with the
    /// client's entry in the connection table, for the API).
    pub path: Rc<Cell<PathStats>>,
    /// The origin socket's descriptor (kept open by the reader task, which hands the socket
    /// back when it ends, so this never names another connection's descriptor).
    fd: RawFd,
}

impl Upstream {
    /// Queue what the session has to send.
    pub fn flush(&self) {
        while let Some(b) = self.session.borrow_mut().poll_transmit() {
            self.writer.send_control(b);
        }
    }

    /// Close the origin connection (flushing what is queued) and wake its reader. Call before
    /// the reader task's socket is dropped.
    pub async fn close(&self) {
        let io = self.io.borrow_mut().take();
        if let Some(io) = io {
            io.close().await;
        }
        // SAFETY: shutdown(2) on the origin socket, still owned (see `fd`).
        unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
    }
}

/// Connect to `origin` and replay as `cfg` asks; events after the start (a player's first
/// media) are returned to be relayed first. With `client`, the connection starts with a PROXY
/// protocol v2 header naming it.
pub async fn open(
    shard: &Shard,
    origin: &OriginRecord,
    cfg: ClientConfig,
    timeout: Duration,
    client: Option<std::net::SocketAddr>,
) -> Result<(Rc<Upstream>, TcpStream, Vec<ClientEvent>), UpstreamError> {
    let name = origin.rtmp.clone();
    let deadline = Instant::now() + timeout;
    let (host, port) = match split_host_port(&name) {
        Ok((h, Some(p))) if !h.is_empty() => (h.to_string(), p),
        _ => return Err(UpstreamError::BadAddress(name)),
    };
    let addrs = shard
        .global()
        .calls
        .resolve(&host, port, timeout)
        .await
        .map_err(|e| UpstreamError::Unreachable(name.clone(), e.to_string()))?;
    let addr = *addrs
        .first()
        .ok_or_else(|| UpstreamError::Unreachable(name.clone(), "no address".into()))?;
    let left = deadline.saturating_duration_since(Instant::now());
    let mut stream = TcpStream::connect_timeout(addr, left.max(Duration::from_millis(1)))
        .await
        .map_err(|e| UpstreamError::Unreachable(name.clone(), e.to_string()))?;
    let _ = stream.set_nodelay(true);
    if let Some(client) = client {
        use futures_lite::AsyncWriteExt;
        let header = crate::lb::proxy_protocol::encode_v2(client, addr);
        stream
            .write_all(&header)
            .await
            .map_err(|e| UpstreamError::Unreachable(name.clone(), e.to_string()))?;
    }
    let role = cfg.role;
    let mut session = ClientSession::new(cfg, shard.new_id(), 0);
    let mut buf = vec![0u8; 16 * 1024];
    let mut bytes_in = 0u64;
    let mut after = Vec::new();
    let timed_out = || UpstreamError::Timeout(name.clone(), timeout);
    let protocol = |e: String| UpstreamError::Protocol(name.clone(), e);
    'handshake: loop {
        while let Some(b) = session.poll_transmit() {
            use futures_lite::AsyncWriteExt;
            stream
                .write_all(&b)
                .await
                .map_err(|e| protocol(e.to_string()))?;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out());
        }
        let _ = stream.set_read_timeout(Some(left));
        let n = match stream.read(&mut buf).await {
            Ok(0) => return Err(protocol("closed the connection".into())),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return Err(timed_out()),
            Err(e) => return Err(protocol(e.to_string())),
        };
        bytes_in += n as u64;
        match session.handle_input(&buf[..n]) {
            Ok(()) => {}
            Err(ClientError::Refused {
                code, description, ..
            }) => {
                return Err(UpstreamError::Refused {
                    origin: name,
                    code,
                    description,
                })
            }
            Err(e) => return Err(protocol(e.to_string())),
        }
        let mut started = false;
        while let Some(ev) = session.poll_event() {
            if started {
                after.push(ev);
                continue;
            }
            started = matches!(
                (&ev, role),
                (ClientEvent::PublishStarted, ClientRole::Publish)
                    | (ClientEvent::PlayStarted, ClientRole::Play)
            );
            if let ClientEvent::Status { code, level } = &ev {
                if level == "error" {
                    return Err(UpstreamError::Refused {
                        origin: name,
                        code: code.clone(),
                        description: String::new(),
                    });
                }
            }
        }
        if started {
            break 'handshake;
        }
    }
    let _ = stream.set_read_timeout(None);
    let writer = shard.new_relay_writer(false);
    let io = ConnIo::open(&stream, writer.clone()).map_err(|e| protocol(e.to_string()))?;
    let fd = {
        use std::os::unix::io::AsRawFd;
        stream.as_raw_fd()
    };
    let up = Rc::new(Upstream {
        origin: name,
        session: RefCell::new(session),
        writer,
        io: RefCell::new(Some(io)),
        ended: RefCell::new(None),
        stream_eof: Cell::new(false),
        bytes_in: Cell::new(bytes_in),
        path: Rc::new(Cell::new(PathStats::default())),
        fd,
    });
    up.flush();
    Ok((up, stream, after))
}

/// Where a player's media goes: the client's writer, on its message stream.
pub struct PlayerSink {
    /// The client connection's writer.
    pub writer: Rc<ConnWriter>,
    /// The client's message stream id.
    pub stream_id: u32,
    /// The client's chunk size now: the proxy session's until a splice announces the origin's
    /// (the client task's session adopts it before it writes again).
    pub chunk_size: Rc<Cell<u32>>,
    /// A video frame went by (the queue's drop policy waits for keyframes then).
    pub has_video: Cell<bool>,
    /// Splice when the legs allow (`[proxy] relay_splice`).
    pub splice: bool,
    /// `shard=.. client=.. stream=..`, for the path's log line.
    pub label: String,
}

impl PlayerSink {
    /// Relay one origin event to the player (the re-chunking path).
    pub fn relay(&self, ev: ClientEvent, up: &Upstream) {
        match ev {
            ClientEvent::Media { frame, .. } => {
                if frame.kind == FrameKind::Video {
                    self.has_video.set(true);
                }
                let wire = encode_frame(&frame, self.chunk_size.get(), self.stream_id);
                self.writer.send_media(&frame, wire, self.has_video.get());
                let mut p = up.path.get();
                p.rechunked += 1;
                up.path.set(p);
            }
            ev => self.status(ev, up),
        }
    }

    /// The origin's stream ended (a player gets UnpublishNotify).
    fn status(&self, ev: ClientEvent, up: &Upstream) {
        match ev {
            ClientEvent::StreamEof => up.stream_eof.set(true),
            ClientEvent::Status { code, .. } if code == "NetStream.Play.UnpublishNotify" => {
                up.stream_eof.set(true)
            }
            _ => {}
        }
    }

    /// Tell the client the chunk size the forwarded bytes are cut at, in line with the media
    /// queued before them.
    fn announce(&self, size: u32) {
        let mut out = bytes::BytesMut::new();
        MessageWriter::new(self.chunk_size.get()).set_chunk_size(&mut out, size);
        self.writer.send_control(out.freeze());
        self.chunk_size.set(size);
    }

    /// Start splicing if the legs allow it and the origin's session is at a message boundary;
    /// `Err(why)` when they never will (the relay re-chunks for good).
    fn try_splice(&self, up: &Upstream) -> Result<Option<ChunkSplicer>, String> {
        if !self.splice {
            return Err("relay_splice = false".into());
        }
        let session = up.session.borrow();
        let origin_sid = session.stream_id();
        if origin_sid != self.stream_id {
            return Err(format!(
                "origin message stream {origin_sid}, client's {}",
                self.stream_id
            ));
        }
        let Some((chunk_size, headers)) = session.handover() else {
            return Ok(None); // mid-message: try at the next read
        };
        drop(session);
        if chunk_size != self.chunk_size.get() {
            self.announce(chunk_size);
        }
        let limits = DecoderLimits {
            max_message_len: 64 * 1024 * 1024,
            ..DecoderLimits::default()
        };
        let mut sp = ChunkSplicer::new(chunk_size, origin_sid, limits);
        for (csid, h) in headers {
            sp.seed(csid, h);
        }
        let mut p = up.path.get();
        p.path = RelayPath::Splice;
        up.path.set(p);
        log::info!(
            "{} proxy relay path=splice chunk_size={chunk_size} (after {} re-chunked messages)",
            self.label,
            p.rechunked
        );
        Ok(Some(sp))
    }

    /// Splice `data` from the origin to the client.
    fn splice(&self, sp: &mut ChunkSplicer, data: &[u8], up: &Upstream) -> Result<(), String> {
        sp.push(data);
        up.session.borrow_mut().count_received(data.len());
        let mut p = up.path.get();
        let r = loop {
            match sp.next_spliced() {
                Ok(None) => break Ok(()),
                Err(e) => break Err(e.to_string()),
                Ok(Some(Spliced::Media(m))) => {
                    if m.chunk_size != self.chunk_size.get() {
                        // The origin changed its chunk size: follow it.
                        self.announce(m.chunk_size);
                    }
                    let frame = match m.type_id {
                        8 => Frame::audio(m.timestamp, m.head),
                        9 => Frame::video(m.timestamp, m.head),
                        _ => Frame::data(m.timestamp, m.head),
                    };
                    if frame.kind == FrameKind::Video {
                        self.has_video.set(true);
                    }
                    if m.copied {
                        p.rewritten += 1;
                    } else {
                        p.as_is += 1;
                    }
                    self.writer.send_media(&frame, m.wire, self.has_video.get());
                }
                Ok(Some(Spliced::Local(raw))) => {
                    if let Err(e) = up.session.borrow_mut().handle_raw(&raw) {
                        break Err(e.to_string());
                    }
                    loop {
                        let ev = up.session.borrow_mut().poll_event();
                        match ev {
                            None => break,
                            // Media of another message stream: not this player's.
                            Some(ClientEvent::Media { .. }) => {}
                            Some(ev) => self.status(ev, up),
                        }
                    }
                }
            }
        };
        up.path.set(p);
        r
    }
}

/// Read the origin until it closes (or the stream ends for a player); then wake the client
/// task by shutting down its socket's reading side. Gives the socket back, for the client
/// task to drop after [`Upstream::close`].
pub async fn read_origin(
    up: Rc<Upstream>,
    mut stream: TcpStream,
    sink: Option<PlayerSink>,
    client_fd: RawFd,
) -> TcpStream {
    let mut buf = vec![0u8; 64 * 1024];
    let mut splicer: Option<ChunkSplicer> = None;
    let mut rechunk_for_good = sink.is_none();
    let why = loop {
        // At Play.Start and after each read, until the splice starts or cannot.
        if let (None, Some(s), false) = (&splicer, &sink, rechunk_for_good) {
            match s.try_splice(&up) {
                Ok(sp) => splicer = sp,
                Err(why) => {
                    log::info!("{} proxy relay path=rechunk ({why})", s.label);
                    rechunk_for_good = true;
                }
            }
        }
        let n = match stream.read(&mut buf).await {
            Ok(0) => break "origin closed the connection".to_string(),
            Ok(n) => n,
            Err(e) => break format!("origin read: {e}"),
        };
        up.bytes_in.set(up.bytes_in.get() + n as u64);
        let r = match (&mut splicer, &sink) {
            (Some(sp), Some(s)) => s.splice(sp, &buf[..n], &up),
            _ => {
                let r = up.session.borrow_mut().handle_input(&buf[..n]);
                loop {
                    let ev = up.session.borrow_mut().poll_event();
                    let Some(ev) = ev else { break };
                    if let Some(s) = &sink {
                        s.relay(ev, &up);
                    }
                }
                r.map_err(|e| e.to_string())
            }
        };
        up.flush();
        if let Err(e) = r {
            break format!("origin: {e}");
        }

        if up.stream_eof.get() {
            break "the origin's stream ended".to_string();
        }
        if up.writer.failed() {
            break "origin write failed".to_string();
        }
    };
    if up.ended.borrow().is_none() {
        *up.ended.borrow_mut() = Some(why);
    }
    // SAFETY: shutdown(2) on the client's descriptor, owned by the live client task (which
    // awaits this task before closing it): its read sees end of stream.
    unsafe { libc::shutdown(client_fd, libc::SHUT_RD) };
    stream
}
