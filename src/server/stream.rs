//! A live stream as one shard sees it: its source (a publisher on this shard, or a publish that
//! arrives from another shard), the headers and GOP a new player starts with, and the players on
//! this shard. Media is fanned out here to local players; the shard sends it on to other shards.

use super::batch_iov::BatchIov;
use super::board::{audio_info, video_info, AudioInfo, VideoInfo};
use super::gop_entry::GopEntry;
use super::ids::{ConnId, ShardId};
use super::key::StreamKey;
use super::kinds::WireForm;
use super::packet::{Packet, SHARED_STREAM_ID};
use super::splice::SpliceFanout;
use super::writer::ConnWriter;
use crate::media::{Frame, FrameKind, GopCache, StreamHeaders, TimestampSmoother};
use crate::rtmp::message::play_notify;
use bytes::Bytes;
use std::cell::Cell;
use std::rc::Rc;

/// How a player takes the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayerKind {
    /// An RTMP player: shared chunks, play notices on unpublish / republish.
    Rtmp,
    /// A forward peer (an outbound publish): media only, no play notices.
    Forward,
    /// An HTTP-FLV player: FLV tags in HTTP chunks; its response ends with the publish.
    HttpFlv,
}

/// A player on this shard.
pub struct PlayerRef {
    /// The player's connection.
    pub conn_id: ConnId,
    /// The message stream id the player plays on.
    pub stream_id: u32,
    /// Its sending half.
    pub writer: Rc<ConnWriter>,
    /// Told that the publisher left; gets Stream Begin when a new one starts.
    pub unpublished: Cell<bool>,
    /// How it takes the stream.
    pub kind: PlayerKind,
    /// Sequence number of the first stream packet this player has not been given.
    pub next_seq: Cell<u64>,
}

impl PlayerRef {
    /// A player of message stream `stream_id` on connection `conn_id`.
    pub fn new(conn_id: ConnId, stream_id: u32, writer: Rc<ConnWriter>, kind: PlayerKind) -> Self {
        PlayerRef {
            conn_id,
            stream_id,
            writer,
            unpublished: Cell::new(false),
            kind,
            next_seq: Cell::new(0),
        }
    }

    /// The shared wire bytes this player takes on the batch path, if any (an RTMP player on
    /// another message stream id gets a private encoding).
    fn shared_form(&self) -> Option<WireForm> {
        match self.kind {
            PlayerKind::HttpFlv => Some(WireForm::Flv),
            _ if self.stream_id == SHARED_STREAM_ID => Some(WireForm::Rtmp),
            _ => None,
        }
    }

    fn send(&self, p: &Packet, chunk_size: u32, has_video: bool) {
        let bytes = match self.kind {
            PlayerKind::Rtmp | PlayerKind::Forward => p.wire_for(self.stream_id, chunk_size),
            PlayerKind::HttpFlv => p.http_flv_chunk(),
        };
        self.writer.send_media(&p.frame, bytes, has_video);
    }
}

/// What feeds a stream on this shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Nothing (players wait).
    None,
    /// A publisher connection on this shard.
    Local {
        /// The publisher's connection.
        conn_id: ConnId,
        /// Its publish.
        publish_id: u64,
    },
    /// A publish on another shard that sends its media here.
    Remote {
        /// The publish on the other shard.
        publish_id: u64,
    },
}

/// Another shard that wants this stream's media (only while the source is local).
#[derive(Debug)]
pub struct RemoteSub {
    /// The shard.
    pub shard: ShardId,
    /// A message to it was dropped (full channel): send again from the next keyframe.
    pub lagging: bool,
}

/// Where [`LocalStream`] keeps a frame from its source.
enum Keep {
    /// Metadata and sequence headers: for every new player.
    Headers,
    /// Audio and video in the GOP cache.
    Gop,
    /// Not kept (other data, or the GOP cache is off).
    Nowhere,
}

/// Per-stream settings from the config.
pub struct StreamLimits {
    /// Outgoing RTMP chunk size.
    pub chunk_size: u32,
    /// Merged writes: media waits in the stream's batch for the shard's flusher.
    pub merged: bool,
    /// Keep the last GOP for new players.
    pub gop_cache: bool,
    /// Most frames in the GOP cache.
    pub gop_max_frames: usize,
    /// Most bytes in the GOP cache.
    pub gop_max_bytes: usize,
}

/// A stream's codecs, from its sequence headers.
#[derive(Debug, Clone, Default)]
pub struct Codecs {
    /// From the video sequence header.
    pub video: Option<VideoInfo>,
    /// From the audio sequence header.
    pub audio: Option<AudioInfo>,
}

/// A stream as one shard holds it.
pub struct LocalStream {
    /// The stream.
    pub key: StreamKey,
    /// What feeds it here.
    pub source: Source,
    headers: StreamHeaders<Packet>,
    /// What the sequence headers say.
    codecs: Codecs,
    gop: GopCache<GopEntry>,
    gop_enabled: bool,
    chunk_size: u32,
    has_video: bool,
    /// Players on this shard.
    pub players: Vec<PlayerRef>,
    /// Shards this (local) source sends to.
    pub remote_subs: Vec<RemoteSub>,
    /// Makes the local publisher's timestamps monotonic.
    pub smoother: TimestampSmoother,
    /// Epoch of this shard's subscription at the owner (0 when not subscribed).
    pub epoch: u64,
    /// Frames received.
    pub frames_in: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Wall clock (unix ms) when the current publish started here.
    pub live_since_ms: u64,
    merged: bool,
    /// Packets since the last merged write; `batch[i]` has sequence number `batch_base + i`.
    batch: Vec<Packet>,
    batch_base: u64,
    /// Sequence number the next packet gets.
    next_seq: u64,
}

impl LocalStream {
    /// An idle stream entry.
    pub fn new(key: StreamKey, limits: &StreamLimits) -> Self {
        LocalStream {
            key,
            source: Source::None,
            headers: StreamHeaders::new(),
            codecs: Codecs::default(),
            gop: GopCache::new(limits.gop_max_frames, limits.gop_max_bytes),
            gop_enabled: limits.gop_cache,
            chunk_size: limits.chunk_size,
            has_video: false,
            players: Vec::new(),
            remote_subs: Vec::new(),
            smoother: TimestampSmoother::new(),
            epoch: 0,
            frames_in: 0,
            bytes_in: 0,
            live_since_ms: 0,
            merged: limits.merged,
            batch: Vec::new(),
            batch_base: 0,
            next_seq: 0,
        }
    }

    /// This shard has a live subscription at the owner.
    pub fn subscribed(&self) -> bool {
        self.epoch != 0
    }

    /// A source feeds it.
    pub fn is_live(&self) -> bool {
        self.source != Source::None
    }

    /// No players and no local publisher: nothing keeps this entry alive.
    pub fn is_idle(&self) -> bool {
        self.players.is_empty() && !matches!(self.source, Source::Local { .. })
    }

    /// Someone takes the media as it comes: players here or other shards. Without them a
    /// local publisher's frames need no packet ([`LocalStream::ingest_unplayed`]).
    pub fn has_audience(&self) -> bool {
        !self.players.is_empty() || !self.remote_subs.is_empty()
    }

    /// Counts a frame from the source and says where it is kept.
    fn count(&mut self, frame: &Frame, metadata: bool) -> Keep {
        self.frames_in += 1;
        self.bytes_in += frame.payload.len() as u64;
        self.next_seq += 1;
        if frame.kind == FrameKind::Video && !frame.sequence_header {
            self.has_video = true;
        }
        if metadata || (frame.sequence_header && frame.kind != FrameKind::Data) {
            Keep::Headers
        } else if self.gop_enabled && frame.kind != FrameKind::Data {
            Keep::Gop
        } else {
            Keep::Nowhere
        }
    }

    /// A media message from the source: remember it for late joiners and queue it for every
    /// player on this shard (shared bytes; a private encoding only for odd stream ids).
    /// Returns true when the packet starts a new merged-write batch (the caller lists the
    /// stream with the flusher).
    pub fn ingest(&mut self, p: &Packet) -> bool {
        match self.count(&p.frame, p.metadata) {
            Keep::Headers => self.keep_header(p),
            Keep::Gop => self.gop.push(GopEntry::Packet(p.clone())),
            Keep::Nowhere => {}
        }
        if self.players.is_empty() {
            // Nobody to write to (an origin's ingest): no batch, no merged write scheduled; a
            // player joining later starts from the GOP cache.
            self.skip_batch();
            return false;
        }
        if self.merged {
            // Written to every player at the next merged write, from one shared batch.
            self.batch.push(p.clone());
            return self.batch.len() == 1;
        }
        for pl in &self.players {
            pl.send(p, self.chunk_size, self.has_video);
        }
        self.batch_base = self.next_seq;
        false
    }

    /// A frame from the local publisher while nobody takes the media
    /// ([`LocalStream::has_audience`] is false): kept for late joiners as a bare frame.
    pub fn ingest_unplayed(&mut self, frame: Frame, metadata: bool) {
        match self.count(&frame, metadata) {
            Keep::Headers => self.keep_header(&Packet::new(frame, metadata, self.chunk_size)),
            Keep::Gop => self.gop.push(GopEntry::Frame(frame)),
            Keep::Nowhere => {}
        }
        self.skip_batch();
    }

    /// Metadata or a sequence header, kept for new players; a sequence header's codec is read
    /// once here (the stats read it four times a second: parsing it each time was 1.4% of a
    /// shard's CPU with 200 publishers, perf).
    fn keep_header(&mut self, p: &Packet) {
        self.headers.update(p);
        let f = &p.frame;
        match f.kind {
            FrameKind::Video if f.sequence_header => self.codecs.video = video_info(f),
            FrameKind::Audio if f.sequence_header => self.codecs.audio = audio_info(f),
            _ => {}
        }
    }

    /// A publish began or ended: its headers go.
    fn forget_headers(&mut self) {
        self.headers.clear();
        self.codecs = Codecs::default();
    }

    /// No batch while no player is here.
    fn skip_batch(&mut self) {
        self.batch.clear();
        self.batch_base = self.next_seq;
    }

    /// Move the batched packets into each player's own queue, so what follows (a notice to the
    /// players) comes after them.
    fn materialize(&mut self) {
        for pl in &self.players {
            let from = pl.next_seq.get().saturating_sub(self.batch_base) as usize;
            for p in self.batch.iter().skip(from) {
                pl.send(p, self.chunk_size, self.has_video);
            }
            pl.next_seq.set(self.next_seq);
        }
        self.batch.clear();
        self.batch_base = self.next_seq;
    }

    /// The merged write: one iovec array per wire form, reused for every player that is caught
    /// up; the others take the batch into their own queues (drop policy, private encodings).
    ///
    /// With `fanouts` (one per wire form: RTMP, HTTP-FLV), a large batch is loaded once into
    /// its form's pipe and spliced to each player that takes all of it (no per-player copy in
    /// the kernel).
    pub fn flush_batch(
        &mut self,
        iov_rtmp: &mut BatchIov,
        iov_flv: &mut BatchIov,
        mut fanouts: Option<&mut [SpliceFanout; 2]>,
        splice_min: usize,
    ) {
        if self.batch.is_empty() {
            return;
        }
        iov_rtmp.clear();
        iov_flv.clear();
        // Per wire form, decided at the first player that could use it: None = not tried yet.
        let mut spliced: [Option<bool>; 2] = [None, None];
        for pl in &self.players {
            let from = pl.next_seq.get().saturating_sub(self.batch_base) as usize;
            pl.next_seq.set(self.next_seq);
            if from >= self.batch.len() {
                continue;
            }
            let form = pl.shared_form().filter(|_| pl.writer.can_write_shared());
            let Some(form) = form else {
                for p in &self.batch[from..] {
                    pl.send(p, self.chunk_size, self.has_video);
                }
                continue;
            };
            let flv = form == WireForm::Flv;
            let iov = if flv { &mut *iov_flv } else { &mut *iov_rtmp };
            // The batch keeps every packet (and so what the iovecs point at) alive through the
            // writes.
            if iov.is_empty() {
                if flv {
                    iov.build_whole(&self.batch, Packet::http_flv_bytes);
                } else {
                    iov.build_rtmp(&self.batch);
                }
            }
            let form = form.index();
            if from == 0 && spliced[form].is_none() {
                let total: usize = iov.all().iter().map(|v| v.iov_len).sum();
                spliced[form] = Some(match fanouts.as_deref_mut() {
                    Some(f) if f[form].fits(total, splice_min) => f[form].load(iov.all()),
                    _ => false,
                });
            }
            let stopped = match fanouts.as_deref() {
                Some(f) if from == 0 && spliced[form] == Some(true) => {
                    pl.writer.write_spliced(&f[form], iov.all())
                }
                _ => pl.writer.write_shared(iov.from(from)),
            };
            if let Some(at) = stopped {
                let (at_packet, off) = iov.locate(from, at);
                // The socket is full: the writer task finishes from where it stopped.
                let wire = |p: &Packet| {
                    if flv {
                        p.http_flv_chunk()
                    } else {
                        p.wire().clone()
                    }
                };
                let mut rest = vec![wire(&self.batch[at_packet]).slice(off..)];
                rest.extend(self.batch[at_packet + 1..].iter().map(wire));
                pl.writer.hand_off(rest);
            }
        }
        iov_rtmp.clear();
        iov_flv.clear();
        if let Some(f) = fanouts {
            for (fan, used) in f.iter_mut().zip(spliced) {
                if used == Some(true) {
                    fan.unload();
                }
            }
        }
        self.batch.clear();
        self.batch_base = self.next_seq;
    }

    /// What a new subscriber needs first: metadata, sequence headers, then the GOP.
    pub fn snapshot(&mut self) -> Vec<Packet> {
        let mut out: Vec<Packet> = self.headers.iter().cloned().collect();
        let chunk_size = self.chunk_size;
        out.extend(self.gop.iter_mut().map(|e| e.packet(chunk_size).clone()));
        out
    }

    /// Add a player and give it the start burst if the stream is live.
    pub fn add_player(&mut self, pl: PlayerRef) {
        // The burst (headers + GOP) already holds everything batched so far.
        pl.next_seq.set(self.next_seq);
        if self.is_live() {
            let has_video = self.has_video || self.headers.video_seq.is_some();
            for p in self.headers.iter() {
                pl.send(p, self.chunk_size, has_video);
            }
            for e in self.gop.iter_mut() {
                pl.send(e.packet(self.chunk_size), self.chunk_size, has_video);
            }
        }
        self.players.push(pl);
    }

    /// Remove one player; true if it was there.
    pub fn remove_player(&mut self, conn_id: ConnId, stream_id: u32) -> bool {
        let before = self.players.len();
        self.players
            .retain(|p| !(p.conn_id == conn_id && p.stream_id == stream_id));
        self.players.len() != before
    }

    /// A new publish begins: forget the old one's state; players told of an unpublish get
    /// Stream Begin again.
    pub fn start_source(&mut self, source: Source) {
        self.materialize();
        self.source = source;
        self.live_since_ms = super::time::unix_ms();
        self.forget_headers();
        self.gop.reset();
        self.has_video = false;
        let name = self.key.stream_name().to_string();
        for pl in self.players.iter().filter(|p| p.kind == PlayerKind::Rtmp) {
            if pl.unpublished.replace(false) {
                pl.writer
                    .send_control(play_notify(self.chunk_size, pl.stream_id, true, &name));
            }
        }
    }

    /// The publish ended: players are told and keep waiting for the next one.
    pub fn end_source(&mut self) {
        self.materialize();
        self.source = Source::None;
        self.forget_headers();
        self.gop.reset();
        self.remote_subs.clear();
        let name = self.key.stream_name().to_string();
        for pl in &self.players {
            match pl.kind {
                PlayerKind::Rtmp => {
                    pl.unpublished.set(true);
                    pl.writer.send_control(play_notify(
                        self.chunk_size,
                        pl.stream_id,
                        false,
                        &name,
                    ));
                }
                // The HTTP response ends with the publish: last chunk, then close.
                PlayerKind::HttpFlv => pl.writer.finish(Bytes::from_static(b"0\r\n\r\n")),
                PlayerKind::Forward => {}
            }
        }
    }

    /// Metadata and sequence headers.
    pub fn headers(&self) -> &StreamHeaders<Packet> {
        &self.headers
    }

    /// The codecs named by the sequence headers.
    pub fn codecs(&self) -> &Codecs {
        &self.codecs
    }

    /// Frames in the GOP cache.
    pub fn gop_len(&self) -> usize {
        self.gop.len()
    }

    /// Payload bytes in the GOP cache.
    pub fn gop_bytes(&self) -> usize {
        self.gop.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AVC_SEQ: &[u8] = &[
        0x17, 0x00, 0, 0, 0, 0x01, 0x42, 0xC0, 0x1E, 0xFF, 0xE1, 0x00, 0x04, 0x67, 0x42, 0xC0,
        0x1E, 0x01, 0x00, 0x04, 0x68, 0xCE, 0x3C, 0x80,
    ];
    /// AAC LC, 44.1 kHz, stereo.
    const AAC_SEQ: &[u8] = &[0xAF, 0x00, 0x12, 0x10];

    fn stream() -> LocalStream {
        let limits = StreamLimits {
            chunk_size: 4096,
            merged: false,
            gop_cache: true,
            gop_max_frames: 1000,
            gop_max_bytes: 1 << 20,
        };
        LocalStream::new(StreamKey::new("v", "live", "s"), &limits)
    }

    #[test]
    fn codecs_are_read_from_the_sequence_headers_of_the_current_publish() {
        for played in [false, true] {
            let mut s = stream();
            let local = Source::Local {
                conn_id: ConnId::from_raw(1),
                publish_id: 7,
            };
            s.start_source(local);
            assert!(s.codecs().video.is_none() && s.codecs().audio.is_none());
            for f in [
                Frame::video(0, Bytes::from_static(AVC_SEQ)),
                Frame::audio(0, Bytes::from_static(AAC_SEQ)),
            ] {
                if played {
                    s.ingest(&Packet::new(f, false, 4096));
                } else {
                    s.ingest_unplayed(f, false);
                }
            }
            let v = s.codecs().video.clone().expect("video codec");
            assert_eq!(v.codec, "H264", "played {played}");
            let a = s.codecs().audio.clone().expect("audio codec");
            assert_eq!((a.codec, a.sample_rate, a.channels), ("AAC", 44100, 2));
            // A media frame changes nothing; the end of the publish forgets them.
            s.ingest_unplayed(
                Frame::audio(20, Bytes::from_static(&[0xAF, 0x01, 1])),
                false,
            );
            assert!(s.codecs().audio.is_some());
            s.end_source();
            assert!(s.codecs().video.is_none() && s.codecs().audio.is_none());
        }
    }
}
