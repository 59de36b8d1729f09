//! Figures for the HTTP API and metrics. Each shard keeps its own counters in plain cells on
//! its own thread; its ticker copies them into the shard's slot on this shared board a few times
//! a second. Readers (the HTTP handlers on any shard) sum the slots. The only lock is on the
//! board slot, taken by the ticker and by readers, never by the media path.

use super::key::StreamKey;
use super::kinds::{ClientKind, ForwardState, UpstreamKind, UpstreamState};
use crate::media::{audio_codec_name, avc_dimensions, parse_audio_tag, parse_video_tag};
use crate::media::{video_codec_name, Frame};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A stream's video, from its sequence header.
#[derive(Debug, Clone, Serialize)]
pub struct VideoInfo {
    /// Codec name (SRS's).
    pub codec: &'static str,
    /// Width in pixels (0 when unknown).
    pub width: u32,
    /// Height in pixels (0 when unknown).
    pub height: u32,
}

/// A stream's audio, from its sequence header.
#[derive(Debug, Clone, Serialize)]
pub struct AudioInfo {
    /// Codec name (SRS's).
    pub codec: &'static str,
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Channels.
    pub channels: u8,
}

/// One stream as one shard sees it.
#[derive(Debug, Clone)]
pub struct StreamStat {
    /// The stream.
    pub key: StreamKey,
    /// A source is feeding it.
    pub live: bool,
    /// Client id of the publisher when it is on this shard.
    pub publisher: Option<u64>,
    /// Players on this shard.
    pub players: usize,
    /// Frames received from the source.
    pub frames_in: u64,
    /// Payload bytes received from the source.
    pub bytes_in: u64,
    /// Frames in this shard's GOP cache of it.
    pub gop_frames: usize,
    /// Payload bytes in that GOP cache (what an idle stream's memory is mostly made of).
    pub gop_bytes: usize,
    /// Video codec and size, once known.
    pub video: Option<VideoInfo>,
    /// Audio codec, once known.
    pub audio: Option<AudioInfo>,
    /// When the current publish started here (unix ms).
    pub live_since_ms: u64,
    /// What feeds it, when the feed is on this shard.
    pub source: Option<StreamSource>,
}

/// What feeds a stream: a client publishing here, or an upstream pulling it from elsewhere
/// (whose publish id is not a client's, so the API must not call it one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamSource {
    /// A client's publish.
    Publisher {
        /// The client's id.
        client: u64,
    },
    /// An upstream (edge or relay).
    Pulled {
        /// Edge or relay.
        kind: UpstreamKind,
        /// The origin (or coworker) it pulls from now, `host:port`.
        from: String,
    },
}

/// One upstream (a stream pulled from an origin or a coworker) on its owner shard.
#[derive(Debug, Clone)]
pub struct UpstreamStat {
    /// The stream pulled.
    pub key: StreamKey,
    /// The shard it runs on.
    pub shard: usize,
    /// Edge or relay.
    pub kind: UpstreamKind,
    /// Where it is in its life.
    pub state: UpstreamState,
    /// The origin (or coworker) it pulls from now.
    pub origin: String,
    /// The id its local publish is held under.
    pub source: u64,
    /// Connections that reached `Play.Start`.
    pub connects: u64,
    /// Moves to another origin after one failed.
    pub failovers: u64,
    /// RTMP 302 redirects followed.
    pub redirects: u64,
    /// Bytes read from origins.
    pub bytes_in: u64,
}

/// One client connection.
#[derive(Debug, Clone)]
pub struct ClientStat {
    /// Client id (names its shard).
    pub id: u64,
    /// The shard it is on.
    pub shard: usize,
    /// Its address.
    pub peer: Arc<str>,
    /// What the client does.
    pub kind: ClientKind,
    /// The stream it publishes or plays.
    pub stream: Option<StreamKey>,
    /// tcUrl (secrets redacted) or HTTP path.
    pub tc_url: Arc<str>,
    /// Bytes read from it.
    pub bytes_in: u64,
    /// Bytes written to it.
    pub bytes_out: u64,
    /// Receive rate, kbit/s, smoothed over about 4 s.
    pub kbps_in: u64,
    /// Send rate, kbit/s, smoothed over about 4 s.
    pub kbps_out: u64,
    /// How long it has been connected.
    pub alive_ms: u64,
    /// Frames its queue dropped.
    pub dropped_frames: u64,
    /// A proxy's player relay: how its media crosses.
    pub relay: Option<super::kinds::PathStats>,
}

/// One forward peer.
#[derive(Debug, Clone)]
pub struct ForwardStat {
    /// The stream forwarded.
    pub key: StreamKey,
    /// The shard the peer runs on.
    pub shard: usize,
    /// The destination as configured.
    pub dest: String,
    /// Where the peer is in its life.
    pub state: ForwardState,
    /// Reconnects so far.
    pub reconnects: u64,
    /// Bytes sent to the destination.
    pub bytes_out: u64,
    /// Why the last attempt failed (empty if none did).
    pub last_error: String,
}

/// Everything one shard reports.
#[derive(Debug, Clone, Default)]
pub struct ShardSnapshot {
    /// The shard.
    pub shard: usize,
    /// Client connections open on it.
    pub connections: usize,
    /// Totals including connections already closed.
    pub bytes_in: u64,
    /// Bytes written, including closed connections.
    pub bytes_out: u64,
    /// Frames dropped by slow players.
    pub dropped_frames: u64,
    /// Merged writes sent by splice.
    pub spliced_writes: u64,
    /// Media messages dropped between shards (a shard was behind).
    pub mesh_media_dropped: u64,
    /// Streams held on the shard.
    pub streams: Vec<StreamStat>,
    /// Its clients (refreshed once a second).
    pub clients: Vec<ClientStat>,
    /// Its forward peers.
    pub forwards: Vec<ForwardStat>,
    /// Its upstreams (pulled streams it owns).
    pub upstreams: Vec<UpstreamStat>,
    /// Its thread's CPU use over the last second, 0.0 to 1.0.
    pub cpu: f64,
}

/// Publishers and players over all shards (what a drain waits for).
pub fn media_sessions(snaps: &[ShardSnapshot]) -> usize {
    snaps
        .iter()
        .flat_map(|s| &s.streams)
        .map(|s| s.players + usize::from(s.publisher.is_some()))
        .sum()
}

/// The shared board: one slot per shard.
pub struct Board {
    slots: Vec<Mutex<ShardSnapshot>>,
    /// When the server started (uptime).
    pub started: Instant,
}

impl Board {
    /// An empty board for `shards` shards.
    pub fn new(shards: usize) -> Board {
        Board {
            slots: (0..shards)
                .map(|_| Mutex::new(ShardSnapshot::default()))
                .collect(),
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
}

/// Codec and size from a video sequence header.
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
    fn a_partial_publish_keeps_the_client_list() {
        let b = Board::new(2);
        let snap = |clients: usize| ShardSnapshot {
            shard: 1,
            clients: (0..clients)
                .map(|i| ClientStat {
                    id: i as u64,
                    shard: 1,
                    peer: "p".into(),
                    kind: ClientKind::Idle,
                    stream: None,
                    tc_url: "".into(),
                    bytes_in: 0,
                    bytes_out: 0,
                    kbps_in: 0,
                    kbps_out: 0,
                    alive_ms: 0,
                    dropped_frames: 0,
                    relay: None,
                })
                .collect(),
            ..Default::default()
        };
        b.publish(snap(3), true);
        b.publish(snap(0), false);
        assert_eq!(b.read()[1].clients.len(), 3);
        assert!(b.read()[0].clients.is_empty());
    }
}
