//! Clients built on the crate's sans-I/O RTMP session over a blocking std `TcpStream`: the bare
//! client, a recording player and a paced publisher of synthetic media, each of the last two on
//! its own thread.

use super::{wait_until, Worker};
use shardcast::media::{Frame, FrameKind};
use shardcast::rtmp::client::{ClientConfig, ClientEvent, ClientRole, ClientSession};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A client of the crate's sans-I/O session on a blocking socket.
pub struct LibClient {
    pub sock: TcpStream,
    pub session: ClientSession,
    buf: Vec<u8>,
}

impl LibClient {
    pub fn connect(port: u16, name: &str, role: ClientRole) -> io::Result<LibClient> {
        LibClient::connect_with_prefix(port, name, role, &[])
    }

    /// Connect and send `prefix` (a PROXY protocol header) before the RTMP handshake.
    pub fn connect_with_prefix(
        port: u16,
        name: &str,
        role: ClientRole,
        prefix: &[u8],
    ) -> io::Result<LibClient> {
        LibClient::connect_full(port, name, role, prefix, 4096)
    }

    /// Connect, sending (a publisher) at `chunk_size`.
    pub fn connect_full(
        port: u16,
        name: &str,
        role: ClientRole,
        prefix: &[u8],
        chunk_size: u32,
    ) -> io::Result<LibClient> {
        let url = format!("rtmp://127.0.0.1:{port}/live/{name}");
        let mut cfg = ClientConfig::from_url(&url, role).expect("valid url");
        cfg.chunk_size = chunk_size;
        let mut sock = TcpStream::connect(("127.0.0.1", port))?;
        sock.set_nodelay(true)?;
        sock.write_all(prefix)?;
        let seed = u64::from(sock.local_addr()?.port()) ^ 0x5eed_5eed;
        let mut c = LibClient {
            sock,
            session: ClientSession::new(cfg, seed, 0),
            buf: vec![0; 64 * 1024],
        };
        c.flush()?;
        Ok(c)
    }

    pub fn local_port(&self) -> u16 {
        self.sock.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        while let Some(b) = self.session.poll_transmit() {
            self.sock.write_all(&b)?;
        }
        Ok(())
    }

    /// Send what is queued, wait up to `wait` for bytes, feed them, and return the events.
    /// `Err` when the connection ended or the session failed.
    pub fn pump(&mut self, wait: Duration) -> Result<Vec<ClientEvent>, String> {
        self.flush().map_err(|e| format!("write: {e}"))?;
        self.sock
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .map_err(|e| e.to_string())?;
        let n = match self.sock.read(&mut self.buf) {
            Ok(0) => return Err("closed by server".into()),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                0
            }
            Err(e) => return Err(format!("read: {e}")),
        };
        if n > 0 {
            let data = self.buf[..n].to_vec();
            self.session
                .handle_input(&data)
                .map_err(|e| format!("session: {e}"))?;
        }
        let mut events = Vec::new();
        while let Some(ev) = self.session.poll_event() {
            events.push(ev);
        }
        self.flush().map_err(|e| format!("write: {e}"))?;
        Ok(events)
    }

    /// Pump until an event `want` accepts arrives; returns every event seen up to it.
    pub fn pump_until(
        &mut self,
        timeout: Duration,
        want: impl Fn(&ClientEvent) -> bool,
    ) -> Result<Vec<ClientEvent>, String> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            for ev in self.pump(Duration::from_millis(50))? {
                let done = want(&ev);
                seen.push(ev);
                if done {
                    return Ok(seen);
                }
            }
        }
        Err(format!("timed out after {timeout:?}; events: {seen:?}"))
    }

    pub fn send_frame(&mut self, frame: &Frame) -> io::Result<()> {
        self.session.send_frame(frame, false);
        self.flush()
    }
}

/// What a library player saw, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Connected,
    PlayStarted,
    Status(String),
    Media {
        kind: FrameKind,
        ts: u32,
        keyframe: bool,
        sequence_header: bool,
        metadata: bool,
    },
    Eof,
    /// The connection ended (why).
    Ended(String),
}

#[derive(Debug, Default)]
pub struct PlayerState {
    pub seen: Vec<Seen>,
    pub local_port: u16,
}

/// A library player on its own thread, recording everything it receives. Stops when dropped,
/// at its lifetime limit, or when the connection ends.
pub struct LibPlayer {
    pub name: String,
    pub video: Arc<AtomicU64>,
    pub audio: Arc<AtomicU64>,
    state: Arc<Mutex<PlayerState>>,
    worker: Worker,
}

impl LibPlayer {
    /// Start playing `live/NAME`; gives up by itself after `lifetime`.
    pub fn start(port: u16, name: &str, lifetime: Duration) -> LibPlayer {
        LibPlayer::start_with_prefix(port, name, lifetime, Vec::new())
    }

    /// Like `start`, sending `prefix` (a PROXY protocol header) before the handshake.
    pub fn start_with_prefix(
        port: u16,
        name: &str,
        lifetime: Duration,
        prefix: Vec<u8>,
    ) -> LibPlayer {
        let video = Arc::new(AtomicU64::new(0));
        let audio = Arc::new(AtomicU64::new(0));
        let state = Arc::new(Mutex::new(PlayerState::default()));
        let (v, a, st) = (video.clone(), audio.clone(), state.clone());
        let stream = name.to_string();
        let worker = Worker::spawn(move |s| {
            let record = |x: Seen| st.lock().unwrap_or_else(|e| e.into_inner()).seen.push(x);
            let mut c =
                match LibClient::connect_with_prefix(port, &stream, ClientRole::Play, &prefix) {
                    Ok(c) => c,
                    Err(e) => return record(Seen::Ended(format!("connect: {e}"))),
                };
            st.lock().unwrap_or_else(|e| e.into_inner()).local_port = c.local_port();
            let deadline = Instant::now() + lifetime;
            while !s.load(Ordering::Relaxed) {
                if Instant::now() >= deadline {
                    return record(Seen::Ended("lifetime over".into()));
                }
                let events = match c.pump(Duration::from_millis(50)) {
                    Ok(evs) => evs,
                    Err(e) => return record(Seen::Ended(e)),
                };
                for ev in events {
                    let x = match ev {
                        ClientEvent::Connected => Seen::Connected,
                        ClientEvent::PlayStarted => Seen::PlayStarted,
                        ClientEvent::PublishStarted => continue,
                        ClientEvent::Status { code, .. } => Seen::Status(code),
                        ClientEvent::StreamEof => Seen::Eof,
                        ClientEvent::Media { frame, metadata } => {
                            match frame.kind {
                                FrameKind::Video => v.fetch_add(1, Ordering::Relaxed),
                                FrameKind::Audio => a.fetch_add(1, Ordering::Relaxed),
                                FrameKind::Data => 0,
                            };
                            Seen::Media {
                                kind: frame.kind,
                                ts: frame.timestamp,
                                keyframe: frame.keyframe,
                                sequence_header: frame.sequence_header,
                                metadata,
                            }
                        }
                    };
                    record(x);
                }
            }
            let _ = c.sock.shutdown(Shutdown::Both);
            record(Seen::Ended("stopped".into()));
        });
        LibPlayer {
            name: name.to_string(),
            video,
            audio,
            state,
            worker,
        }
    }

    pub fn video_frames(&self) -> u64 {
        self.video.load(Ordering::Relaxed)
    }

    pub fn audio_frames(&self) -> u64 {
        self.audio.load(Ordering::Relaxed)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .seen
            .clone()
    }

    pub fn local_port(&self) -> u16 {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .local_port
    }

    pub fn has_seen(&self, pred: impl Fn(&Seen) -> bool) -> bool {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .seen
            .iter()
            .any(pred)
    }

    /// Why the player thread ended, if it has.
    pub fn ended(&self) -> Option<String> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .seen
            .iter()
            .find_map(|s| match s {
                Seen::Ended(why) => Some(why.clone()),
                _ => None,
            })
    }

    /// Wait until the video frame count exceeds `count`.
    pub fn wait_video_above(&self, count: u64, timeout: Duration) -> bool {
        wait_until(timeout, || self.video_frames() > count)
    }

    pub fn stop(&mut self) {
        self.worker.stop();
    }
}

/// Synthetic FLV tag bodies for library publishers: AVC and AAC shaped enough for the server's
/// codec sniffing (sequence headers, key and inter frames).
pub mod synth {
    use bytes::Bytes;

    pub fn avc_sequence_header() -> Bytes {
        Bytes::from_static(&[
            0x17, 0x00, 0, 0, 0, // key frame, AVC, sequence header, cts 0
            0x01, 0x42, 0xC0, 0x1E, 0xFF, 0xE1, 0x00, 0x04, 0x67, 0x42, 0xC0, 0x1E, 0x01, 0x00,
            0x04, 0x68, 0xCE, 0x3C, 0x80,
        ])
    }

    /// A key (IDR) or inter NALU frame carrying `n` as a marker byte.
    pub fn avc_frame(key: bool, n: u8) -> Bytes {
        let (b0, nal) = if key { (0x17, 0x65) } else { (0x27, 0x41) };
        Bytes::from(vec![b0, 0x01, 0, 0, 0, 0, 0, 0, 3, nal, 0x9A, n])
    }

    pub fn aac_sequence_header() -> Bytes {
        Bytes::from_static(&[0xAF, 0x00, 0x12, 0x10])
    }

    pub fn aac_frame(n: u8) -> Bytes {
        Bytes::from(vec![0xAF, 0x01, 0x21, 0x10, n, 0x00])
    }
}

/// A library publisher of synthetic H.264-shaped video (and AAC-shaped audio) on its own thread,
/// paced in real time: `fps` video frames a second of `frame_bytes` each, a keyframe every
/// `gop` frames. Stops when dropped, at its lifetime, or when the connection ends.
pub struct SynthPublisher {
    /// Video frames sent so far.
    pub sent: Arc<AtomicU64>,
    result: Arc<Mutex<Option<String>>>,
    worker: Worker,
}

impl SynthPublisher {
    pub fn start(
        port: u16,
        name: &str,
        frame_bytes: usize,
        fps: u32,
        gop: u32,
        lifetime: Duration,
    ) -> SynthPublisher {
        SynthPublisher::start_at_chunk_size(port, name, frame_bytes, fps, gop, lifetime, 4096)
    }

    /// The same, sending at `chunk_size` (128: the protocol's default, no Set Chunk Size).
    pub fn start_at_chunk_size(
        port: u16,
        name: &str,
        frame_bytes: usize,
        fps: u32,
        gop: u32,
        lifetime: Duration,
        chunk_size: u32,
    ) -> SynthPublisher {
        let sent = Arc::new(AtomicU64::new(0));
        let result = Arc::new(Mutex::new(None));
        let (sn, res) = (sent.clone(), result.clone());
        let name = name.to_string();
        let worker = Worker::spawn(move |st| {
            let why = synth_publish(
                port,
                &name,
                frame_bytes,
                fps.max(1),
                gop.max(1),
                lifetime,
                chunk_size,
                &st,
                &sn,
            );
            *res.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
        });
        SynthPublisher {
            sent,
            result,
            worker,
        }
    }

    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Why the publisher ended, if it has.
    pub fn ended(&self) -> Option<String> {
        self.result
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn stop(&mut self) {
        self.worker.stop();
    }
}

#[allow(clippy::too_many_arguments)]
fn synth_publish(
    port: u16,
    name: &str,
    frame_bytes: usize,
    fps: u32,
    gop: u32,
    lifetime: Duration,
    chunk_size: u32,
    stop: &AtomicBool,
    sent: &AtomicU64,
) -> String {
    let mut c = match LibClient::connect_full(port, name, ClientRole::Publish, &[], chunk_size) {
        Ok(c) => c,
        Err(e) => return format!("connect: {e}"),
    };
    if let Err(e) = c.pump_until(Duration::from_secs(10), |e| {
        *e == ClientEvent::PublishStarted
    }) {
        return format!("publish not started: {e}");
    }
    let headers = [
        Frame::video(0, synth::avc_sequence_header()),
        Frame::audio(0, synth::aac_sequence_header()),
    ];
    for f in &headers {
        if let Err(e) = c.send_frame(f) {
            return format!("write: {e}");
        }
    }
    let started = Instant::now();
    let deadline = started + lifetime;
    let frame_ms = 1000 / fps;
    let mut n: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= deadline {
            return "lifetime over".into();
        }
        let ts = n * frame_ms;
        let key = n.is_multiple_of(gop);
        let mut payload = Vec::with_capacity(frame_bytes.max(16));
        payload.extend_from_slice(&[if key { 0x17 } else { 0x27 }, 0x01, 0, 0, 0]);
        let nal_len = frame_bytes.saturating_sub(9).max(3);
        payload.extend_from_slice(&(nal_len as u32).to_be_bytes());
        payload.push(if key { 0x65 } else { 0x41 });
        payload.extend((1..nal_len).map(|i| (i as u8).wrapping_mul(7) ^ n as u8));
        let video = Frame::video(ts, bytes::Bytes::from(payload));
        let audio = Frame::audio(ts, synth::aac_frame(n as u8));
        for f in [&video, &audio] {
            if let Err(e) = c.send_frame(f) {
                return format!("write: {e}");
            }
        }
        sent.fetch_add(1, Ordering::Relaxed);
        n += 1;
        // Real-time pacing; the pump also answers the server (acks, pings).
        let due = started + Duration::from_millis(u64::from(n * frame_ms));
        loop {
            let now = Instant::now();
            if now >= due {
                break;
            }
            if let Err(e) = c.pump((due - now).min(Duration::from_millis(20))) {
                return e;
            }
        }
    }
    let _ = c.sock.shutdown(Shutdown::Both);
    "stopped".into()
}
