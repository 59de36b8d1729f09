//! A player: connect, play, then read and count. RTMP players drive the client library until
//! the play has started and its chunk decoder is between messages; HTTP-FLV players send one
//! GET and read up to the end of the response head. From there the connection goes to the
//! thread's pump ([`crate::pump`]), which reads it in place once per tick: RTMP with a
//! [`ChunkScanner`] (media payloads are never gathered, only their first and last bytes are
//! kept; every other message still goes through the session: acks, pings, statuses), HTTP-FLV
//! with the de-chunker and FLV parser of [`crate::httpflv`]. Per message either path only looks
//! at the kind, the timestamp and the flags of the payload's first bytes; no AMF of media is
//! decoded. Every read of a thread lands in the thread's one buffer ([`ThreadCtx::read_buf`])
//! and is handled before the next await. What it measures lives in [`PlayerMeter`], which is
//! pure so the window and kept-up logic is tested without sockets, and is the same for both
//! protocols and every path.

use crate::conn::Conn;
use crate::httpflv::{parse_response_head, BodyDecoder, FlvParser, FlvTag, HttpFlvError};
use crate::latency::{LatencyBoard, LatencyProbe, Lookup};
use crate::pump::{Pumped, Wire};
use crate::rtmpscan::{ChunkScanner, MediaMessage, Scanned};
use crate::runner::{Proto, Role, ThreadCtx};
use crate::stats::{kept_up, StepCounts, WindowSample};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use serde::Serialize;
use shardcast::media::{Frame, FrameKind};
use shardcast::rtmp::chunk::{ChunkError, DecoderLimits};
use shardcast::rtmp::client::{ClientConfig, ClientEvent, ClientSession};
use std::cell::RefCell;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// A gap between media arrivals longer than this is a stall.
pub const STALL: Duration = Duration::from_secs(1);
/// Bytes an HTTP-FLV response head may take (gathered in a buffer of the player's own).
const HEAD_BUF: usize = 16 * 1024;
/// Longest message a player accepts, as the client session's own decoder.
const MAX_MESSAGE_LEN: u32 = 64 * 1024 * 1024;

/// One side of the measurement window as this player saw it: the first read at or after the
/// edge, with the media time reached and the frames counted by then.
#[derive(Debug, Clone, Copy)]
struct Edge {
    at: Instant,
    ts: u32,
    video_frames: u64,
}

/// How far into the window (and before its end) a player's edge may be taken.
const EDGE_SPAN: Duration = Duration::from_secs(1);

impl Edge {
    /// Media time moved further than wall time since `other` (less behind live).
    fn fresher_than(&self, other: &Edge) -> bool {
        let media = f64::from(self.ts.wrapping_sub(other.ts) as i32);
        let wall = if self.at >= other.at {
            self.at.duration_since(other.at).as_secs_f64() * 1000.0
        } else {
            -(other.at.duration_since(self.at).as_secs_f64() * 1000.0)
        };
        media > wall
    }
}

/// Live state of the connection, for the progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    #[default]
    Waiting,
    Connecting,
    Playing,
    Done,
}

/// How the connection ended.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Still running, or stopped by the end of the run.
    #[default]
    Ok,
    /// The server closed the connection before the end of the run.
    Disconnected,
    /// Connect, handshake or protocol failure, or a refusal.
    Error(String),
}

/// What the meter needs of one media message, from an RTMP frame or an FLV tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaMsg {
    pub kind: FrameKind,
    pub timestamp: u32,
    pub keyframe: bool,
    pub sequence_header: bool,
    pub end_of_sequence: bool,
}

impl MediaMsg {
    pub fn of_frame(frame: &Frame) -> Self {
        MediaMsg {
            kind: frame.kind,
            timestamp: frame.timestamp,
            keyframe: frame.keyframe,
            sequence_header: frame.sequence_header,
            end_of_sequence: frame.kind == FrameKind::Video
                && crate::flv::is_end_of_sequence(&frame.payload),
        }
    }

    /// A media message the chunk scanner saw pass, as an FLV tag of the same type (AMF3 data
    /// counts as data, as the client session counts it).
    pub fn scanned_tag<'a>(m: &MediaMessage<'a>) -> FlvTag<'a> {
        FlvTag {
            tag_type: if m.type_id == 15 { 18 } else { m.type_id },
            timestamp: m.timestamp,
            size: m.len,
            head: m.head,
            tail: m.tail,
        }
    }

    /// `None` for tag types that are not media (neither audio, video nor script data).
    pub fn of_tag(tag: &FlvTag<'_>) -> Option<Self> {
        let flags = tag.flags();
        Some(MediaMsg {
            kind: tag.kind()?,
            timestamp: tag.timestamp,
            keyframe: flags.keyframe,
            sequence_header: flags.sequence_header,
            end_of_sequence: flags.end_of_sequence,
        })
    }
}

/// Everything one player measures.
#[derive(Debug, Default)]
pub struct PlayerMeter {
    pub stream: usize,
    pub phase: Phase,
    pub outcome: Outcome,
    connect_at: Option<Instant>,
    join: Option<Duration>,
    first_video_keyframe: Option<bool>,
    bytes: u64,
    window_bytes: u64,
    messages: u64,
    video_frames: u64,
    audio_frames: u64,
    keyframes: u64,
    first_video_ts: Option<u32>,
    video_ts: Option<u32>,
    audio_ts: Option<u32>,
    steps: StepCounts,
    first_media: Option<(Instant, u32)>,
    last_media: Option<Instant>,
    stalls: u32,
    longest_gap: Duration,
    eofs: u32,
    edge_start: Option<Edge>,
    edge_end: Option<Edge>,
    latency_hits: u64,
    latency_misses: u64,
    local_addr: Option<SocketAddr>,
}

/// Final figures of one player, sent back from its thread.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PlayerReport {
    pub stream: usize,
    pub outcome: Outcome,
    pub played: bool,
    pub join_ms: Option<f64>,
    pub first_video_keyframe: Option<bool>,
    pub bytes: u64,
    pub window_bytes: u64,
    pub messages: u64,
    pub video_frames: u64,
    pub audio_frames: u64,
    pub keyframes: u64,
    /// Last minus first video timestamp received, in ms.
    pub video_span_ms: Option<u64>,
    pub fps: Option<f64>,
    pub window: Option<WindowStats>,
    pub kept_up: bool,
    pub stalls: u32,
    pub longest_gap_ms: f64,
    pub stream_eofs: u32,
    pub latency_hits: u64,
    pub latency_misses: u64,
    /// The connection's own address (what a node behind a balancer sees as the client's).
    pub local_addr: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct WindowStats {
    pub wall_ms: f64,
    pub media_ms: f64,
    pub video_frames: u64,
}

impl PlayerMeter {
    pub fn new(stream: usize) -> Self {
        PlayerMeter {
            stream,
            ..Default::default()
        }
    }

    pub fn connecting(&mut self, now: Instant) {
        self.phase = Phase::Connecting;
        self.connect_at = Some(now);
    }

    /// The connection is open, from `local`.
    pub fn connected(&mut self, local: Option<SocketAddr>) {
        self.local_addr = local;
    }

    pub fn playing(&mut self) {
        if self.phase == Phase::Connecting {
            self.phase = Phase::Playing;
        }
    }

    pub fn finish(&mut self, outcome: Outcome) {
        self.phase = Phase::Done;
        if self.outcome == Outcome::Ok {
            self.outcome = outcome;
        }
    }

    pub fn stream_eof(&mut self) {
        self.eofs += 1;
    }

    fn media_ts(&self) -> Option<u32> {
        self.video_ts.or(self.audio_ts)
    }

    /// One media message received in the read that completed at `now`.
    pub fn on_media(&mut self, now: Instant, frame: &Frame) {
        self.on_msg(now, MediaMsg::of_frame(frame));
    }

    /// [`PlayerMeter::on_media`] for a message of either protocol.
    pub fn on_msg(&mut self, now: Instant, frame: MediaMsg) {
        self.messages += 1;
        if frame.kind == FrameKind::Data {
            return;
        }
        if let Some(last) = self.last_media {
            let gap = now.saturating_duration_since(last);
            if gap > STALL {
                self.stalls += 1;
            }
            self.longest_gap = self.longest_gap.max(gap);
        }
        self.last_media = Some(now);
        if frame.sequence_header || frame.end_of_sequence {
            return;
        }
        let ts = frame.timestamp;
        match frame.kind {
            FrameKind::Video => {
                self.video_frames += 1;
                self.first_video_keyframe.get_or_insert(frame.keyframe);
                if frame.keyframe {
                    self.keyframes += 1;
                    if self.join.is_none() {
                        self.join = self.connect_at.map(|c| now.saturating_duration_since(c));
                    }
                }
                if let Some(prev) = self.video_ts {
                    let step = ts.wrapping_sub(prev);
                    if (step as i32) > 0 {
                        self.steps.record(step);
                    }
                }
                self.first_video_ts.get_or_insert(ts);
                self.video_ts = Some(ts);
            }
            FrameKind::Audio => {
                self.audio_frames += 1;
                self.audio_ts = Some(ts);
            }
            FrameKind::Data => {}
        }
        if self.first_media.is_none() {
            self.first_media = self.media_ts().map(|t| (now, t));
        }
    }

    /// Counts latency lookups made for this player.
    pub fn latency(&mut self, hit: bool) {
        if hit {
            self.latency_hits += 1;
        } else {
            self.latency_misses += 1;
        }
    }

    /// After each read of `n` bytes at `now`: byte counts and the window edges.
    pub fn after_read(&mut self, now: Instant, n: usize, window: (Instant, Instant)) {
        self.bytes += n as u64;
        if now >= window.0 && now < window.1 {
            self.window_bytes += n as u64;
        }
        let Some(ts) = self.media_ts() else { return };
        let edge = Edge {
            at: now,
            ts,
            video_frames: self.video_frames,
        };
        // Each edge is the freshest read within EDGE_SPAN after the window opens and before it
        // closes (the first read after either, when there is none). Merged reads and writes
        // deliver media in batches whose content varies by a read window: taken at the first
        // read, an edge could be a whole batch staler than the other, and with 350 + 350 ms
        // windows that alone was 3-7% of a 10 s window (players counted as behind that were
        // not). Staying behind still shows: the freshest read near the end lags more.
        let fresher = |old: &Option<Edge>| old.as_ref().is_none_or(|o| edge.fresher_than(o));
        if now >= window.0 && (self.edge_start.is_none() || now < window.0 + EDGE_SPAN) {
            if fresher(&self.edge_start) {
                self.edge_start = Some(edge);
            }
        } else if now < window.1 && now + EDGE_SPAN >= window.1 {
            if fresher(&self.edge_end) {
                self.edge_end = Some(edge);
            }
        } else if self.edge_end.is_none() && now >= window.1 {
            self.edge_end = Some(edge);
        }
    }

    /// True while media flows and the player is not falling behind real time (progress line).
    pub fn live_ok(&self, now: Instant) -> bool {
        let (Some((t0, ts0)), Some(last), Some(ts)) =
            (self.first_media, self.last_media, self.media_ts())
        else {
            return false;
        };
        let lag = now.saturating_duration_since(t0).as_secs_f64() * 1000.0
            - f64::from(ts.wrapping_sub(ts0) as i32);
        self.phase == Phase::Playing && now.saturating_duration_since(last) <= STALL && lag < 1500.0
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Final figures. `stop` is when the run stopped reading; a player with no data after the
    /// window closes gets its closing edge there, so silence at the end counts against it.
    pub fn report(
        &self,
        window: (Instant, Instant),
        stop: Instant,
        fps: Option<f64>,
        slack_ms: f64,
    ) -> PlayerReport {
        let fps = fps.or_else(|| self.steps.fps());
        let mut out_stalls = self.stalls;
        if let Some(last) = self.last_media {
            // Silence until the stop is a stall too, unless the player ended for another reason.
            if self.outcome == Outcome::Ok && stop.saturating_duration_since(last) > STALL {
                out_stalls += 1;
            }
        }
        let window_sample = self.edge_start.map(|a| {
            let b = self.edge_end.unwrap_or(Edge {
                at: stop.max(a.at),
                ts: self.media_ts().unwrap_or(a.ts),
                video_frames: self.video_frames,
            });
            // Data that only began well after the window opened means a stalled start.
            let late = a.at.saturating_duration_since(window.0);
            let wall_start = if late > STALL { window.0 } else { a.at };
            WindowSample {
                wall_ms: b.at.saturating_duration_since(wall_start).as_secs_f64() * 1000.0,
                media_ms: f64::from(b.ts.wrapping_sub(a.ts) as i32),
                video_frames: b.video_frames - a.video_frames,
            }
        });
        let has_video = self.video_frames > 0;
        let fps = if has_video { fps } else { None };
        let kept = window_sample.is_some_and(|s| kept_up(&s, fps, slack_ms));
        PlayerReport {
            stream: self.stream,
            outcome: self.outcome.clone(),
            played: self.phase == Phase::Playing
                || (self.phase == Phase::Done && self.first_media.is_some()),
            join_ms: self.join.map(|d| d.as_secs_f64() * 1000.0),
            first_video_keyframe: self.first_video_keyframe,
            bytes: self.bytes,
            window_bytes: self.window_bytes,
            messages: self.messages,
            video_frames: self.video_frames,
            audio_frames: self.audio_frames,
            keyframes: self.keyframes,
            video_span_ms: self
                .first_video_ts
                .zip(self.video_ts)
                .map(|(a, b)| u64::from(b.wrapping_sub(a))),
            fps,
            window: window_sample.map(|s| WindowStats {
                wall_ms: s.wall_ms,
                media_ms: s.media_ms,
                video_frames: s.video_frames,
            }),
            kept_up: kept,
            stalls: out_stalls,
            longest_gap_ms: self.longest_gap.as_secs_f64() * 1000.0,
            stream_eofs: self.eofs,
            latency_hits: self.latency_hits,
            latency_misses: self.latency_misses,
            local_addr: self.local_addr,
        }
    }
}

/// The player task: waits for its start time, plays until the run stops it.
pub async fn run(ctx: Rc<ThreadCtx>, index: usize, meter: Rc<RefCell<PlayerMeter>>) {
    let shared = ctx.shared.clone();
    let stream = meter.borrow().stream;
    let target = &shared.play_targets[stream];
    glommio::timer::sleep(ctx.until(shared.schedule.player_start(index))).await;
    if ctx.stopping(Role::Player) {
        meter.borrow_mut().finish(Outcome::Ok);
        return;
    }
    meter.borrow_mut().connecting(Instant::now());
    let result = match &target.proto {
        Proto::Rtmp(cfg) => play(&ctx, target.addr, cfg.clone(), index, &meter).await,
        Proto::HttpFlv { request } => play_http(&ctx, target.addr, request, &meter).await,
    };
    let outcome = match result {
        // The pump reads on and finishes the meter.
        Ok(Ended::Pumped) => return,
        Ok(Ended::Stopped) => Outcome::Ok,
        Err(e) => e.outcome(ctx.stopping(Role::Player)),
    };
    meter.borrow_mut().finish(outcome);
}

/// How a player task ended without an error.
enum Ended {
    /// The run stopped it.
    Stopped,
    /// Its connection went to the thread's pump ([`crate::pump`]).
    Pumped,
}

/// Why a player's connection ended before the run stopped it.
pub(crate) enum PlayError {
    /// The server closed (or reset) the connection.
    Closed,
    /// Anything else, worded for the report.
    Failed(String),
}

impl PlayError {
    /// What the report says of it; everything ends well once the run is stopping.
    pub(crate) fn outcome(self, stopping: bool) -> Outcome {
        match self {
            _ if stopping => Outcome::Ok,
            PlayError::Closed => Outcome::Disconnected,
            PlayError::Failed(e) => Outcome::Error(e),
        }
    }
}

impl From<ChunkError> for PlayError {
    fn from(e: ChunkError) -> Self {
        // Worded as the client session words it.
        PlayError::Failed(format!("rtmp: chunk stream: {e}"))
    }
}

async fn play(
    ctx: &Rc<ThreadCtx>,
    addr: std::net::SocketAddr,
    cfg: ClientConfig,
    index: usize,
    meter: &Rc<RefCell<PlayerMeter>>,
) -> Result<Ended, PlayError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| PlayError::Failed(format!("{what}: {e}"));
    let mut conn = Conn::open(ctx, addr, Role::Player)
        .await
        .map_err(|e| fail("connect", &e))?;
    meter.borrow_mut().connected(conn.local_addr());
    let mut session = ClientSession::new(cfg, 0x5eed ^ index as u64, ctx.epoch_ms());
    conn.flush(&mut session)
        .await
        .map_err(|e| fail("write", &e))?;
    let window = ctx.window();
    let mut probe = LatencyProbe::new(meter.borrow().stream);
    // Handshake, connect, play: the session decodes everything until it may hand over.
    loop {
        let n = read_shared(ctx, &mut conn).await?;
        if ctx.stopping(Role::Player) {
            return Ok(Ended::Stopped);
        }
        let now = Instant::now();
        session
            .handle_input(&ctx.read_buf.borrow()[..n])
            .map_err(|e| fail("rtmp", &e))?;
        absorb(
            ctx,
            &mut session,
            &mut meter.borrow_mut(),
            &mut probe,
            now,
            n,
            window,
        );
        conn.flush(&mut session)
            .await
            .map_err(|e| fail("write", &e))?;
        if let Some((chunk_size, headers)) = session.handover() {
            let limits = DecoderLimits {
                max_message_len: MAX_MESSAGE_LEN,
                ..DecoderLimits::default()
            };
            let scanner = ChunkScanner::new(chunk_size, &headers, limits);
            // Playing: the pump reads the chunk stream in place from here.
            let wire = Wire::Rtmp {
                session: Box::new(session),
                scanner,
            };
            return to_pump(ctx, Pumped::new(conn, wire, meter.clone(), probe));
        }
    }
}

/// Hands a playing connection to the thread's pump.
fn to_pump(ctx: &ThreadCtx, p: Pumped) -> Result<Ended, PlayError> {
    ctx.pump
        .add(p)
        .map(|()| Ended::Pumped)
        .map_err(|e| PlayError::Failed(format!("epoll: {e}")))
}

/// One read into the thread's shared buffer ([`ThreadCtx::read_buf`]), held only while the
/// read is polled; the caller handles the `n` bytes before its next await. The peer closing
/// (or resetting) the connection is [`PlayError::Closed`].
async fn read_shared(ctx: &ThreadCtx, conn: &mut Conn) -> Result<usize, PlayError> {
    let r = futures_lite::future::poll_fn(|cx| {
        let mut buf = ctx.read_buf.borrow_mut();
        Pin::new(&mut conn.stream).poll_read(cx, &mut buf[..])
    })
    .await;
    read_result(r)
}

/// One read into `buf` (see [`read_shared`]).
async fn read_some(conn: &mut Conn, buf: &mut [u8]) -> Result<usize, PlayError> {
    read_result(conn.stream.read(buf).await)
}

fn read_result(r: std::io::Result<usize>) -> Result<usize, PlayError> {
    match r {
        Ok(0) => Err(PlayError::Closed),
        Ok(n) => Ok(n),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Err(PlayError::Closed),
        Err(e) => Err(PlayError::Failed(format!("read: {e}"))),
    }
}

/// An HTTP-FLV player: one GET, a 200 head, then the (chunked) FLV body parsed in place from
/// the one read buffer. The body ending before the run stops is a disconnect.
async fn play_http(
    ctx: &Rc<ThreadCtx>,
    addr: std::net::SocketAddr,
    request: &str,
    meter: &Rc<RefCell<PlayerMeter>>,
) -> Result<Ended, PlayError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| PlayError::Failed(format!("{what}: {e}"));
    let mut conn = Conn::open(ctx, addr, Role::Player)
        .await
        .map_err(|e| fail("connect", &e))?;
    meter.borrow_mut().connected(conn.local_addr());
    conn.stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| fail("write", &e))?;
    let window = ctx.window();
    let mut probe = LatencyProbe::new(meter.borrow().stream);
    let mut buf = vec![0u8; HEAD_BUF];
    let mut flv = FlvParser::default();
    // The response head, gathered at the start of the buffer (it must fit in it).
    let mut filled = 0;
    let (body, first) = loop {
        let n = read_some(&mut conn, &mut buf[filled..]).await?;
        if ctx.stopping(Role::Player) {
            return Ok(Ended::Stopped);
        }
        let now = Instant::now();
        filled += n;
        match parse_response_head(&buf[..filled]).map_err(|e| fail("http", &e))? {
            Some(head) => {
                meter.borrow_mut().playing();
                let mut body = BodyDecoder::new(head.framing);
                let ended = absorb_http(
                    ctx,
                    &mut body,
                    &mut flv,
                    &mut meter.borrow_mut(),
                    &mut probe,
                    now,
                    &buf[head.len..filled],
                )
                .map_err(|e| fail("http-flv", &e))?;
                break (body, (now, n, ended));
            }
            None if filled == buf.len() => {
                return Err(fail("http", &HttpFlvError::HeadTooLarge(buf.len())))
            }
            None => meter.borrow_mut().after_read(now, n, window),
        }
    };
    let (now, n, ended) = first;
    meter.borrow_mut().after_read(now, n, window);
    if ended {
        meter.borrow_mut().stream_eof();
        return Err(PlayError::Closed);
    }
    // The body is parsed in place by the pump from here.
    let wire = Wire::HttpFlv { body, flv };
    to_pump(ctx, Pumped::new(conn, wire, meter.clone(), probe))
}

/// The latency board, while the window is open (fanout only).
fn open_board(ctx: &ThreadCtx, now: Instant, window: (Instant, Instant)) -> Option<&LatencyBoard> {
    ctx.shared
        .board
        .as_ref()
        .filter(|_| now >= window.0 && now < window.1)
}

/// Records one latency lookup's result.
fn note_latency(ctx: &ThreadCtx, m: &mut PlayerMeter, now: Instant, lookup: Lookup) {
    match lookup {
        Lookup::Sent(sent) => {
            ctx.record_latency_ns(ctx.since_epoch_ns(now).saturating_sub(sent));
            m.latency(true);
        }
        Lookup::Miss => m.latency(false),
        Lookup::Skip => {}
    }
}

/// The tags in one read's body bytes: counts and latency samples (no await inside). True once
/// the body has ended.
pub(crate) fn absorb_http(
    ctx: &ThreadCtx,
    body: &mut BodyDecoder,
    flv: &mut FlvParser,
    m: &mut PlayerMeter,
    probe: &mut LatencyProbe,
    now: Instant,
    data: &[u8],
) -> Result<bool, HttpFlvError> {
    let board = open_board(ctx, now, ctx.window());
    let mut on_tag = |tag: &FlvTag<'_>| count_tag(ctx, board, m, probe, now, tag);
    body.feed(data, |chunk| flv.feed(chunk, &mut on_tag))
}

/// Everything one read produced: counts, window edges and latency samples (no await inside).
fn absorb(
    ctx: &ThreadCtx,
    session: &mut ClientSession,
    m: &mut PlayerMeter,
    probe: &mut LatencyProbe,
    now: Instant,
    n: usize,
    window: (Instant, Instant),
) {
    let board = open_board(ctx, now, window);
    session_events(ctx, board, session, m, probe, now);
    m.after_read(now, n, window);
}

/// Counts one media message (from either RTMP path's parser) and takes its latency sample.
fn count_tag(
    ctx: &ThreadCtx,
    board: Option<&LatencyBoard>,
    m: &mut PlayerMeter,
    probe: &mut LatencyProbe,
    now: Instant,
    tag: &FlvTag<'_>,
) {
    let Some(msg) = MediaMsg::of_tag(tag) else {
        return;
    };
    m.on_msg(now, msg);
    if let Some(board) = board {
        if msg.kind != FrameKind::Data {
            let lookup = probe.lookup_fp(board, msg.kind, msg.timestamp, tag.fingerprint());
            note_latency(ctx, m, now, lookup);
        }
    }
}

/// The events of the session after it handled a message: what the meter needs of them.
fn session_events(
    ctx: &ThreadCtx,
    board: Option<&LatencyBoard>,
    session: &mut ClientSession,
    m: &mut PlayerMeter,
    probe: &mut LatencyProbe,
    now: Instant,
) {
    while let Some(ev) = session.poll_event() {
        match ev {
            ClientEvent::Media { frame, .. } => {
                m.on_media(now, &frame);
                if let Some(board) = board {
                    let lookup = probe.lookup(board, frame.kind, frame.timestamp, &frame.payload);
                    note_latency(ctx, m, now, lookup);
                }
            }
            ClientEvent::PlayStarted => m.playing(),
            ClientEvent::StreamEof => m.stream_eof(),
            _ => {}
        }
    }
}

/// One read's `data` on the scanner path: media counted from the chunk headers and payload
/// edges, every other message handled by the session (acks, pings, statuses, stream EOF), then
/// the byte counts and window edges. No await inside.
#[allow(clippy::too_many_arguments)]
pub(crate) fn scan(
    ctx: &ThreadCtx,
    scanner: &mut ChunkScanner,
    session: &mut ClientSession,
    m: &mut PlayerMeter,
    probe: &mut LatencyProbe,
    now: Instant,
    data: &[u8],
    window: (Instant, Instant),
) -> Result<(), PlayError> {
    let board = open_board(ctx, now, window);
    let n = data.len();
    scanner.feed(data, |msg| {
        match msg {
            Scanned::Media(media) => {
                count_tag(ctx, board, m, probe, now, &MediaMsg::scanned_tag(&media));
            }
            Scanned::Local(raw) => {
                session
                    .handle_raw(&raw)
                    .map_err(|e| PlayError::Failed(format!("rtmp: {e}")))?;
                session_events(ctx, board, session, m, probe, now);
            }
        }
        Ok::<(), PlayError>(())
    })?;
    session.count_received(n);
    m.after_read(now, n, window);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn video(ts: u32, key: bool) -> Frame {
        let b = if key { 0x17 } else { 0x27 };
        Frame::video(ts, Bytes::from(vec![b, 1, 0, 0, 0, 9]))
    }

    /// Feeds `secs` of a 25 fps stream delivered in bursts every `batch_ms`, starting at `t0`,
    /// at `speed` x real time. Returns the meter and the window used.
    fn feed(batch_ms: u64, speed: f64, secs: u64) -> (PlayerMeter, (Instant, Instant), Instant) {
        let t0 = Instant::now();
        let window = (
            t0 + Duration::from_secs(2),
            t0 + Duration::from_secs(secs - 2),
        );
        let mut m = PlayerMeter::new(0);
        m.connecting(t0);
        m.playing();
        let mut ts = 0u32;
        let mut sent = 0;
        let mut t = 0u64;
        while t < secs * 1000 {
            t += batch_ms;
            let now = t0 + Duration::from_millis(t);
            // Media produced up to wall time t, at `speed`.
            let upto = (t as f64 * speed) as u32;
            while ts + 40 <= upto {
                m.on_media(now, &video(ts, sent % 50 == 0));
                sent += 1;
                ts += 40;
            }
            m.after_read(now, 1000, window);
        }
        (m, window, t0 + Duration::from_secs(secs))
    }

    #[test]
    fn batched_delivery_keeps_up() {
        for batch in [10, 40, 350, 500] {
            let (m, w, stop) = feed(batch, 1.0, 14);
            let r = m.report(w, stop, None, 0.0);
            assert_eq!(r.fps, Some(25.0), "batch {batch}");
            assert!(r.kept_up, "batch {batch}: {:?}", r.window);
            assert_eq!(r.first_video_keyframe, Some(true));
            assert!(r.join_ms.unwrap() <= batch.max(40) as f64 + 1.0);
            assert_eq!(r.stalls, 0);
        }
    }

    /// Merged reads and writes: a batch every 350 ms whose media is 0, 350 or 700 ms old (a
    /// write that found no read batch, one, or two).
    fn feed_jittered(lags: &[u64], speed: f64) -> (PlayerMeter, (Instant, Instant), Instant) {
        let t0 = Instant::now();
        let window = (t0 + Duration::from_secs(2), t0 + Duration::from_secs(12));
        let mut m = PlayerMeter::new(0);
        m.connecting(t0);
        m.playing();
        let (mut ts, mut sent) = (0u32, 0);
        for (i, t) in (1..=40u64).map(|i| (i, i * 350)) {
            let now = t0 + Duration::from_millis(t);
            let lag = lags[i as usize % lags.len()];
            let upto = (t.saturating_sub(lag) as f64 * speed) as u32;
            while ts + 40 <= upto {
                m.on_media(now, &video(ts, sent % 50 == 0));
                sent += 1;
                ts += 40;
            }
            m.after_read(now, 1000, window);
        }
        (m, window, t0 + Duration::from_secs(14))
    }

    #[test]
    fn batches_of_varying_age_keep_up() {
        // The first read after the window opens carries fresh media, the first after it
        // closes 700 ms old media: edges taken there made this player 7% behind.
        let lags = [0, 0, 0, 0, 0, 0, 0, 0, 350, 700, 0, 700];
        let (m, w, stop) = feed_jittered(&lags, 1.0);
        let r = m.report(w, stop, Some(25.0), 0.0);
        assert!(r.kept_up, "{:?}", r.window);
        let (m, w, stop) = feed_jittered(&lags, 0.95);
        let r = m.report(w, stop, Some(25.0), 0.0);
        assert!(!r.kept_up, "5% slow: {:?}", r.window);
    }

    #[test]
    fn slow_player_does_not_keep_up() {
        let (m, w, stop) = feed(40, 0.95, 14);
        let r = m.report(w, stop, Some(25.0), 0.0);
        assert!(!r.kept_up, "{:?}", r.window);
    }

    #[test]
    fn silence_counts_as_stall_and_not_kept_up() {
        let (mut m, w, stop) = feed(40, 1.0, 14);
        // Nothing after the window: the closing edge is the stop instant.
        m.edge_end = None;
        let r = m.report(w, stop + Duration::from_secs(3), Some(25.0), 0.0);
        assert!(!r.kept_up);
        assert_eq!(r.stalls, 1);
    }

    #[test]
    fn gaps_are_stalls() {
        let t0 = Instant::now();
        let mut m = PlayerMeter::new(0);
        m.connecting(t0);
        m.on_media(t0, &video(0, false));
        m.on_media(t0 + Duration::from_millis(1500), &video(40, true));
        m.on_media(t0 + Duration::from_millis(1600), &video(80, false));
        let r = m.report((t0, t0), t0 + Duration::from_millis(1700), None, 0.0);
        assert_eq!(r.stalls, 1);
        assert_eq!(r.first_video_keyframe, Some(false));
        assert_eq!(r.join_ms, Some(1500.0));
        assert_eq!(r.video_span_ms, Some(80));
        assert_eq!(r.longest_gap_ms, 1500.0);
    }

    #[test]
    fn scanned_messages_count_as_frames_do() {
        // Every payload once through the client session's Frame, once through the scanner's
        // edges: same kind, flags and latency fingerprint.
        let mut payloads: Vec<(u8, Vec<u8>)> = vec![
            (9, vec![]),
            (9, vec![0x17, 0, 0, 0, 0, 1, 0x64]),
            (9, vec![0x17, 2, 0, 0, 0]),
            (9, vec![0x27, 1, 0, 0, 0, 9]),
            (8, vec![0xAF, 0, 0x12, 0x10]),
            (8, vec![0xAF, 1, 7]),
            (8, vec![]),
            (18, b"\x02\x00\x0aonMetaData".to_vec()),
            (15, b"\x00\x02\x00\x0aonMetaData".to_vec()),
        ];
        for len in [31, 32, 33, 63, 64, 65, 3000] {
            let key: Vec<u8> = [0x17u8, 1, 0, 0, 0]
                .into_iter()
                .chain((0..len).map(|i| (i * 7) as u8))
                .collect();
            payloads.push((9, key));
        }
        for (type_id, p) in payloads {
            let frame = match type_id {
                8 => Frame::audio(40, Bytes::from(p.clone())),
                9 => Frame::video(40, Bytes::from(p.clone())),
                _ => Frame::data(40, Bytes::from(p.clone())),
            };
            let head = &p[..p.len().min(32)];
            let tail = &p[p.len().saturating_sub(32)..];
            let scanned = MediaMessage {
                csid: 6,
                type_id,
                timestamp: 40,
                stream_id: 1,
                len: p.len() as u32,
                head,
                tail,
            };
            let tag = MediaMsg::scanned_tag(&scanned);
            assert_eq!(
                MediaMsg::of_tag(&tag),
                Some(MediaMsg::of_frame(&frame)),
                "type {type_id}, {p:?}"
            );
            assert_eq!(tag.fingerprint(), crate::latency::fingerprint(&p));
        }
    }

    #[test]
    fn sequence_headers_are_not_frames() {
        let t0 = Instant::now();
        let mut m = PlayerMeter::new(0);
        m.connecting(t0);
        m.on_media(
            t0,
            &Frame::video(0, Bytes::from_static(&[0x17, 0, 0, 0, 0, 1])),
        );
        m.on_media(
            t0,
            &Frame::data(0, Bytes::from_static(b"\x02\x00\x0aonMetaData")),
        );
        let r = m.report((t0, t0), t0, None, 0.0);
        assert_eq!(r.video_frames, 0);
        assert_eq!(r.messages, 2);
        assert_eq!(r.first_video_keyframe, None);
        assert!(!r.kept_up);
    }
}
