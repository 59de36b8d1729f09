//! Figures for the HTTP API and metrics. Each shard keeps its own counters in plain cells on
//! its own thread; a ticker copies them into the shard's slot on the shared board a few times a
//! second. Readers (the HTTP handlers on any shard) sum the slots. The only lock is on the board
//! slot, taken by the ticker and by readers, never by the media path.

use super::forward::ForwardState;
use super::key::StreamKey;
use super::shard::Shard;
use super::stream::Source;
use crate::media::{audio_codec_name, avc_dimensions, parse_audio_tag, parse_video_tag};
use crate::media::{video_codec_name, Frame};
use serde::Serialize;
use std::cell::Cell;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often each shard publishes its snapshot.
pub const TICK: Duration = Duration::from_millis(250);

/// The client list (a visit to every connection) is refreshed every this many ticks: at
/// thousands of players it is the costly part of a snapshot.
pub const CLIENT_TICKS: u32 = 4;

/// Shard-wide running totals, counted where bytes move, so a tick need not visit every
/// connection to report them.
#[derive(Debug, Default)]
pub struct IoTotals {
    pub bytes_in: Cell<u64>,
    pub bytes_out: Cell<u64>,
    pub dropped_frames: Cell<u64>,
    /// Merged writes that went out by splice (no per-player copy).
    pub spliced_writes: Cell<u64>,
}

impl IoTotals {
    pub fn add(cell: &Cell<u64>, n: u64) {
        cell.set(cell.get() + n);
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct VideoInfo {
    pub codec: &'static str,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct AudioInfo {
    pub codec: &'static str,
    pub sample_rate: u32,
    pub channels: u8,
}

/// One stream as one shard sees it.
#[derive(Debug, Clone)]
pub struct StreamStat {
    pub key: StreamKey,
    pub live: bool,
    /// Client id of the publisher when it is on this shard.
    pub publisher: Option<u64>,
    pub players: usize,
    pub frames_in: u64,
    pub bytes_in: u64,
    pub video: Option<VideoInfo>,
    pub audio: Option<AudioInfo>,
    pub live_since_ms: u64,
}

/// One client connection.
#[derive(Debug, Clone)]
pub struct ClientStat {
    pub id: u64,
    pub shard: usize,
    pub peer: Arc<str>,
    /// "fmle-publish", "rtmp-play", "flv-play", or "idle".
    pub kind: &'static str,
    pub stream: Option<StreamKey>,
    pub tc_url: Arc<str>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub kbps_in: u64,
    pub kbps_out: u64,
    pub alive_ms: u64,
    pub dropped_frames: u64,
}

#[derive(Debug, Clone)]
pub struct ForwardStat {
    pub key: StreamKey,
    pub shard: usize,
    pub dest: String,
    pub state: ForwardState,
    pub reconnects: u64,
    pub bytes_out: u64,
    pub last_error: String,
}

/// Everything one shard reports.
#[derive(Debug, Clone, Default)]
pub struct ShardSnapshot {
    pub shard: usize,
    pub connections: usize,
    /// Totals including connections already closed.
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub dropped_frames: u64,
    pub spliced_writes: u64,
    pub mesh_media_dropped: u64,
    pub streams: Vec<StreamStat>,
    pub clients: Vec<ClientStat>,
    pub forwards: Vec<ForwardStat>,
}

/// The shared board: one slot per shard, and client ids to disconnect.
pub struct Board {
    slots: Vec<Mutex<ShardSnapshot>>,
    kicks: Mutex<Vec<u64>>,
    pub started: Instant,
}

impl Board {
    pub fn new(shards: usize) -> Board {
        Board {
            slots: (0..shards)
                .map(|_| Mutex::new(ShardSnapshot::default()))
                .collect(),
            kicks: Mutex::new(Vec::new()),
            started: Instant::now(),
        }
    }

    /// Replace this shard's slot; `snap.clients` only when `with_clients` (otherwise the
    /// slot keeps the list from the last refresh).
    pub fn publish(&self, mut snap: ShardSnapshot, with_clients: bool) {
        if let Some(slot) = self.slots.get(snap.shard) {
            let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
            if !with_clients {
                snap.clients = std::mem::take(&mut slot.clients);
            }
            *slot = snap;
        }
    }

    /// Copies of every shard's latest snapshot.
    pub fn read(&self) -> Vec<ShardSnapshot> {
        self.slots
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .collect()
    }

    /// Ask whichever shard holds client `id` to disconnect it (at its next tick).
    pub fn kick(&self, id: u64) {
        self.kicks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(id);
    }

    /// Take the kicks meant for clients of this shard (ids are `n * shards + shard`).
    pub fn take_kicks(&self, shard: usize, shards: usize) -> Vec<u64> {
        let mut k = self.kicks.lock().unwrap_or_else(|e| e.into_inner());
        let (mine, rest): (Vec<u64>, Vec<u64>) = k
            .drain(..)
            .partition(|id| (*id % shards as u64) as usize == shard);
        *k = rest;
        mine
    }
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn video_info(seq: &Frame) -> Option<VideoInfo> {
    let info = parse_video_tag(&seq.payload)?;
    let (width, height) = avc_dimensions(&seq.payload).unwrap_or((0, 0));
    Some(VideoInfo {
        codec: video_codec_name(info.codec),
        width,
        height,
    })
}

/// Codec, sample rate and channels; for AAC from the AudioSpecificConfig.
pub fn audio_info(seq: &Frame) -> Option<AudioInfo> {
    let p = &seq.payload[..];
    let info = parse_audio_tag(p)?;
    const RATES: [u32; 13] = [
        96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
    ];
    let (sample_rate, channels) = if p.len() >= 4 && p[0] >> 4 == 10 {
        let idx = (((p[2] & 0x07) << 1) | (p[3] >> 7)) as usize;
        (RATES.get(idx).copied().unwrap_or(0), (p[3] >> 3) & 0x0F)
    } else {
        let rate = [5512, 11025, 22050, 44100][((p[0] >> 2) & 3) as usize];
        (rate, if p[0] & 1 == 1 { 2 } else { 1 })
    };
    Some(AudioInfo {
        codec: audio_codec_name(info.codec),
        sample_rate,
        channels,
    })
}

impl Shard {
    /// This shard's clients; `elapsed` since the last time they were listed, for rates.
    pub fn client_stats(&self, elapsed: Duration) -> Vec<ClientStat> {
        let secs = elapsed.as_secs_f64().max(0.001);
        self.conns
            .borrow()
            .iter()
            .map(|(&id, c)| {
                let (i, o) = (c.bytes_in.get(), c.writer.bytes_out());
                let (li, lo, ki, ko) = c.rate.get();
                // Smoothed over about 4 s (4 refreshes), like SRS's short-term kbps.
                let inst_in = ((i - li) as f64 * 8.0 / 1000.0 / secs) as u64;
                let inst_out = ((o - lo) as f64 * 8.0 / 1000.0 / secs) as u64;
                let ki = (ki * 3 + inst_in) / 4;
                let ko = (ko * 3 + inst_out) / 4;
                c.rate.set((i, o, ki, ko));
                ClientStat {
                    id,
                    shard: self.id,
                    peer: c.peer_text.clone(),
                    kind: c.kind.get(),
                    stream: c.stream.borrow().clone(),
                    tc_url: c.tc_url.borrow().clone(),
                    bytes_in: i,
                    bytes_out: o,
                    kbps_in: ki,
                    kbps_out: ko,
                    alive_ms: c.started.elapsed().as_millis() as u64,
                    dropped_frames: c.writer.dropped_frames(),
                }
            })
            .collect()
    }

    /// This shard's figures; the client list only when `clients` is given.
    pub fn snapshot(&self, clients: Vec<ClientStat>) -> ShardSnapshot {
        let streams = self
            .streams
            .borrow()
            .values()
            .map(|s| {
                let h = s.headers();
                StreamStat {
                    key: s.key.clone(),
                    live: s.is_live(),
                    publisher: match s.source {
                        Source::Local { conn_id, .. } => Some(conn_id),
                        _ => None,
                    },
                    players: s.players.len(),
                    frames_in: s.frames_in,
                    bytes_in: s.bytes_in,
                    video: h.video_seq.as_ref().and_then(|p| video_info(&p.frame)),
                    audio: h.audio_seq.as_ref().and_then(|p| audio_info(&p.frame)),
                    live_since_ms: s.live_since_ms,
                }
            })
            .collect();
        let forwards = self
            .forward_peers
            .borrow()
            .values()
            .map(|h| ForwardStat {
                key: h.key.clone(),
                shard: self.id,
                dest: h.target.display.clone(),
                state: h.state.get(),
                reconnects: h.reconnects.get(),
                bytes_out: h.bytes_out.get(),
                last_error: h.last_error.borrow().clone(),
            })
            .collect();
        ShardSnapshot {
            shard: self.id,
            connections: self.conns.borrow().len(),
            bytes_in: self.totals.bytes_in.get(),
            bytes_out: self.totals.bytes_out.get(),
            dropped_frames: self.totals.dropped_frames.get(),
            spliced_writes: self.totals.spliced_writes.get(),
            mesh_media_dropped: self.outboxes.iter().map(|o| o.media_dropped.get()).sum(),
            streams,
            clients,
            forwards,
        }
    }
}

/// Runs on every shard: takes a reloaded config, carries out kicks and publishes its snapshot,
/// every `TICK`.
pub async fn run_ticker(shard: std::rc::Rc<Shard>) {
    let mut last_clients = Instant::now();
    let mut tick = 0u32;
    loop {
        glommio::timer::sleep(TICK).await;
        shard.maybe_reload();
        for id in shard.global.board.take_kicks(shard.id, shard.shards) {
            shard.kick(id);
        }
        // The first tick lists clients too, so a new server answers at once.
        let with_clients = tick.is_multiple_of(CLIENT_TICKS);
        tick = tick.wrapping_add(1);
        let clients = if with_clients {
            let now = Instant::now();
            let list = shard.client_stats(now.duration_since(last_clients));
            last_clients = now;
            list
        } else {
            Vec::new()
        };
        let snap = shard.snapshot(clients);
        shard.global.board.publish(snap, with_clients);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn aac_config_is_read() {
        // AAC LC, 44100 Hz (index 4), stereo: 0x12 0x10.
        let f = Frame::audio(0, Bytes::from_static(&[0xAF, 0x00, 0x12, 0x10]));
        let a = audio_info(&f).unwrap();
        assert_eq!((a.codec, a.sample_rate, a.channels), ("AAC", 44100, 2));
    }

    #[test]
    fn kicks_go_to_the_right_shard() {
        let b = Board::new(2);
        b.kick(4);
        b.kick(7);
        assert_eq!(b.take_kicks(1, 2), vec![7]);
        assert_eq!(b.take_kicks(0, 2), vec![4]);
        assert!(b.take_kicks(0, 2).is_empty());
    }
}
