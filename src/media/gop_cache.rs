//! State a late-joining player needs so it can start playing at once:
//! the current GOP and the stream headers that precede it.

use std::collections::VecDeque;

use super::frame::{FrameKind, MediaUnit};

/// Keeps the frames since the last video keyframe so a new player starts on a keyframe at once.
///
/// Units are cloned in, so with `Frame` (or a wrapper of `Bytes`) the cache
/// shares the publisher's buffers rather than copying them.
pub struct GopCache<T: MediaUnit> {
    units: VecDeque<T>,
    bytes: usize,
    max_frames: usize,
    max_bytes: usize,
    /// Any video seen since creation (or `reset`): ends audio-only mode for good,
    /// so a video stream never hands out a GOP that does not open on a keyframe.
    seen_video: bool,
    /// The cache currently holds a GOP that starts on a keyframe.
    in_gop: bool,
}

impl<T: MediaUnit> GopCache<T> {
    /// An empty cache holding at most `max_frames` frames and `max_bytes` bytes.
    pub fn new(max_frames: usize, max_bytes: usize) -> Self {
        GopCache {
            units: VecDeque::new(),
            bytes: 0,
            max_frames,
            max_bytes,
            seen_video: false,
            in_gop: false,
        }
    }

    /// Sequence headers and Data frames are NOT stored here (the caller keeps those apart). A video keyframe starts a new GOP (drops the old one).
    /// Audio/video before the first keyframe are not kept (for an audio-only stream — no video seen for the whole cache life — keep the last max_frames audio frames so audio-only players still start).
    /// Past max_frames or max_bytes, the cache is cleared and waits for the next keyframe.
    pub fn push(&mut self, unit: T) {
        let frame = unit.frame();
        if frame.sequence_header {
            return;
        }
        match frame.kind {
            FrameKind::Data => {}
            FrameKind::Video => {
                if !self.seen_video {
                    // Leaving audio-only mode: that audio does not lead into a keyframe.
                    self.seen_video = true;
                    self.drop_units();
                }
                if frame.keyframe {
                    self.drop_units();
                    self.in_gop = true;
                }
                if self.in_gop {
                    self.append(unit);
                    self.enforce_gop_limits();
                }
            }
            FrameKind::Audio => {
                if self.in_gop {
                    self.append(unit);
                    self.enforce_gop_limits();
                } else if !self.seen_video {
                    // Audio-only: a sliding window, any audio frame is a start point.
                    self.append(unit);
                    while self.units.len() > self.max_frames || self.bytes > self.max_bytes {
                        self.pop_front();
                    }
                }
            }
        }
    }

    /// The held units, oldest first: a keyframe then what followed (or recent audio for audio-only
    /// streams).
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.units.iter()
    }

    /// The held units, mutable (a caller may turn them into another form of the same frame).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.units.iter_mut()
    }

    /// Number of units held.
    pub fn len(&self) -> usize {
        self.units.len()
    }

    /// Nothing is held.
    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }

    /// Payload bytes held (as counted by [`MediaUnit::byte_len`]).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Drops the held frames; with video seen, storing resumes at the next keyframe.
    pub fn clear(&mut self) {
        self.drop_units();
        self.in_gop = false;
    }

    /// Forgets everything, including whether video was seen (e.g. a new publisher).
    pub fn reset(&mut self) {
        self.clear();
        self.seen_video = false;
    }

    /// Timestamp span (last - first, wrapping-safe) in ms, 0 if fewer than 2 frames.
    pub fn duration_ms(&self) -> u32 {
        match (self.units.front(), self.units.back()) {
            (Some(first), Some(last)) if self.units.len() >= 2 => {
                let span = last.frame().timestamp.wrapping_sub(first.frame().timestamp);
                // A "negative" span means out-of-order input, not a 49-day GOP.
                if (span as i32) < 0 {
                    0
                } else {
                    span
                }
            }
            _ => 0,
        }
    }

    fn append(&mut self, unit: T) {
        self.bytes += unit.byte_len();
        if self.units.len() == self.units.capacity() {
            // Grow by a quarter, not `VecDeque`'s doubling: a 2 s GOP of H.264 + AAC (~135
            // frames) took 256 slots.
            self.units.reserve_exact((self.units.len() / 4).max(16));
        }
        self.units.push_back(unit);
    }

    fn pop_front(&mut self) {
        if let Some(u) = self.units.pop_front() {
            self.bytes -= u.byte_len();
        }
    }

    fn drop_units(&mut self) {
        // The next GOP is likely as long as this one: keep room for it and a quarter more.
        let held = self.units.len();
        self.units.clear();
        self.units.shrink_to(held + held / 4);
        self.bytes = 0;
    }

    /// An overlong GOP is useless to joiners (they'd start far behind live),
    /// so drop it whole rather than trimming its keyframe off the front.
    fn enforce_gop_limits(&mut self) {
        if self.units.len() > self.max_frames || self.bytes > self.max_bytes {
            self.clear();
        }
    }
}

/// What a late joiner needs before the GOP: onMetaData and the codec sequence headers.
#[derive(Clone)]
pub struct StreamHeaders<T: MediaUnit> {
    /// The last `onMetaData`.
    pub metadata: Option<T>,
    /// The last video sequence header.
    pub video_seq: Option<T>,
    /// The last audio sequence header.
    pub audio_seq: Option<T>,
}

impl<T: MediaUnit> Default for StreamHeaders<T> {
    fn default() -> Self {
        StreamHeaders {
            metadata: None,
            video_seq: None,
            audio_seq: None,
        }
    }
}

impl<T: MediaUnit> StreamHeaders<T> {
    /// No headers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores the unit if it is a Data frame (metadata), an audio sequence header or a video sequence header; returns true if it was stored.
    ///
    /// Any Data frame replaces the metadata: the caller should only pass
    /// onMetaData here (not cue points or text data).
    pub fn update(&mut self, unit: &T) -> bool {
        let frame = unit.frame();
        let slot = match frame.kind {
            FrameKind::Data => &mut self.metadata,
            FrameKind::Video if frame.sequence_header => &mut self.video_seq,
            FrameKind::Audio if frame.sequence_header => &mut self.audio_seq,
            _ => return false,
        };
        *slot = Some(unit.clone());
        true
    }

    /// metadata, then video_seq, then audio_seq (the order players should get them).
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.metadata
            .iter()
            .chain(self.video_seq.iter())
            .chain(self.audio_seq.iter())
    }

    /// Forget all headers.
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::frame::Frame;
    use bytes::Bytes;

    fn key(ts: u32) -> Frame {
        Frame::video(
            ts,
            Bytes::from_static(&[0x17, 1, 0, 0, 0, 0xAA, 0xBB, 0xCC]),
        )
    }
    fn inter(ts: u32) -> Frame {
        Frame::video(ts, Bytes::from_static(&[0x27, 1, 0, 0, 0, 0xAA]))
    }
    fn audio(ts: u32) -> Frame {
        Frame::audio(ts, Bytes::from_static(&[0xAF, 1, 0x21, 0x22]))
    }
    fn vseq() -> Frame {
        Frame::video(0, Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x42]))
    }
    fn aseq() -> Frame {
        Frame::audio(0, Bytes::from_static(&[0xAF, 0, 0x12, 0x10]))
    }
    fn meta() -> Frame {
        Frame::data(0, Bytes::from_static(b"\x02\x00\x0aonMetaData"))
    }
    fn stamps(c: &GopCache<Frame>) -> Vec<u32> {
        c.iter().map(|f| f.timestamp).collect()
    }

    #[test]
    fn nothing_before_first_keyframe() {
        let mut c = GopCache::new(100, 1 << 20);
        c.push(audio(0)); // audio-only so far: kept
        assert_eq!(c.len(), 1);
        c.push(inter(10)); // video appears: audio-only mode ends
        c.push(audio(20));
        c.push(inter(30));
        assert!(c.is_empty());
        assert_eq!(c.bytes(), 0);
        c.push(key(40));
        c.push(audio(45));
        c.push(inter(80));
        assert_eq!(stamps(&c), vec![40, 45, 80]);
        assert!(c.iter().next().unwrap().keyframe);
        assert_eq!(c.bytes(), 8 + 4 + 6);
        assert_eq!(c.duration_ms(), 40);
    }

    #[test]
    fn keyframe_starts_new_gop() {
        let mut c = GopCache::new(100, 1 << 20);
        for f in [key(0), inter(40), audio(41), inter(80)] {
            c.push(f);
        }
        assert_eq!(c.len(), 4);
        c.push(key(120));
        c.push(audio(121));
        assert_eq!(stamps(&c), vec![120, 121]);
        assert_eq!(c.bytes(), 8 + 4);
    }

    #[test]
    fn headers_and_data_not_stored() {
        let mut c = GopCache::new(100, 1 << 20);
        c.push(vseq());
        c.push(aseq());
        c.push(meta());
        assert!(c.is_empty());
        c.push(key(0));
        c.push(vseq());
        c.push(aseq());
        c.push(meta());
        assert_eq!(c.len(), 1);
        // A video sequence header is not video "seen" and never starts a GOP.
        let mut c2: GopCache<Frame> = GopCache::new(100, 1 << 20);
        c2.push(vseq());
        c2.push(audio(0));
        assert_eq!(c2.len(), 1, "still audio-only mode");
    }

    #[test]
    fn audio_only_keeps_sliding_window() {
        let mut c = GopCache::new(3, 1 << 20);
        for ts in 0..10 {
            c.push(audio(ts * 23));
        }
        assert_eq!(stamps(&c), vec![7 * 23, 8 * 23, 9 * 23]);
        assert_eq!(c.bytes(), 12);
        assert_eq!(c.duration_ms(), 46);

        let mut c = GopCache::new(100, 10);
        for ts in 0..5 {
            c.push(audio(ts));
        }
        assert_eq!(stamps(&c), vec![3, 4], "bytes cap slides too");

        // Video arriving later switches to GOP mode: old audio goes.
        let mut c = GopCache::new(3, 1 << 20);
        c.push(audio(0));
        c.push(key(10));
        assert_eq!(stamps(&c), vec![10]);
    }

    #[test]
    fn max_frames_overflow_clears_until_keyframe() {
        let mut c = GopCache::new(4, 1 << 20);
        for f in [key(0), inter(40), inter(80), inter(120)] {
            c.push(f);
        }
        assert_eq!(c.len(), 4);
        c.push(inter(160));
        assert!(c.is_empty());
        assert_eq!(c.bytes(), 0);
        c.push(inter(200));
        c.push(audio(201));
        assert!(c.is_empty());
        c.push(key(240));
        assert_eq!(stamps(&c), vec![240]);
    }

    #[test]
    fn max_bytes_overflow_clears_until_keyframe() {
        let mut c = GopCache::new(100, 20);
        c.push(key(0)); // 8
        c.push(inter(40)); // 14
        c.push(inter(80)); // 20: at the cap is fine
        assert_eq!(c.bytes(), 20);
        c.push(audio(81)); // 24: over
        assert!(c.is_empty());
        assert_eq!(c.bytes(), 0);
        c.push(inter(120));
        assert!(c.is_empty());
        c.push(key(160));
        assert_eq!(c.len(), 1);
        // A single keyframe above the cap is not kept either.
        let mut small = GopCache::new(100, 4);
        small.push(key(0));
        assert!(small.is_empty());
    }

    #[test]
    fn clear_and_reset() {
        let mut c = GopCache::new(100, 1 << 20);
        c.push(key(0));
        c.push(inter(40));
        c.clear();
        assert!(c.is_empty());
        c.push(inter(80));
        c.push(audio(81));
        assert!(c.is_empty(), "waits for the next keyframe after clear");
        c.reset();
        c.push(audio(100));
        assert_eq!(c.len(), 1, "reset forgets video, audio-only again");
    }

    #[test]
    fn duration_is_wrapping_safe() {
        let mut c = GopCache::new(100, 1 << 20);
        assert_eq!(c.duration_ms(), 0);
        c.push(key(u32::MAX - 9));
        assert_eq!(c.duration_ms(), 0);
        c.push(inter(30));
        assert_eq!(c.duration_ms(), 40);
        c.push(key(1000));
        c.push(inter(900));
        assert_eq!(c.duration_ms(), 0, "backwards input is not a huge span");
    }

    #[test]
    fn room_follows_the_last_gop_not_the_doubling() {
        let mut c = GopCache::new(1000, 1 << 30);
        for round in 0..3 {
            c.push(key(round * 1000));
            for i in 1..135 {
                c.push(inter(round * 1000 + i));
            }
            assert_eq!(c.len(), 135);
            let room = c.units.capacity();
            assert!(
                (135..=180).contains(&room),
                "GOP {round}: 135 frames in {room} slots"
            );
        }
    }

    #[test]
    fn cached_units_share_payload() {
        let f = key(0);
        let mut c = GopCache::new(10, 1000);
        c.push(f.clone());
        assert_eq!(
            c.iter().next().unwrap().payload.as_ptr(),
            f.payload.as_ptr()
        );
    }

    /// A caller wrapper with pre-encoded wire bytes counted in the limits.
    #[derive(Clone)]
    struct Wired {
        frame: Frame,
        wire: Bytes,
    }
    impl MediaUnit for Wired {
        fn frame(&self) -> &Frame {
            &self.frame
        }
        fn byte_len(&self) -> usize {
            self.frame.payload.len() + self.wire.len()
        }
    }

    #[test]
    fn works_with_wrapper_units() {
        let w = |f: Frame| Wired {
            wire: Bytes::from(vec![0u8; 12]),
            frame: f,
        };
        let mut c = GopCache::new(10, 1000);
        c.push(w(key(0)));
        c.push(w(audio(1)));
        assert_eq!(c.bytes(), 8 + 12 + 4 + 12);
        let mut h = StreamHeaders::new();
        assert!(h.update(&w(aseq())));
        assert_eq!(h.iter().count(), 1);
    }

    #[test]
    fn stream_headers_order_and_update() {
        let mut h: StreamHeaders<Frame> = StreamHeaders::default();
        assert_eq!(h.iter().count(), 0);
        assert!(h.update(&aseq()));
        assert!(h.update(&vseq()));
        assert!(!h.update(&key(0)));
        assert!(!h.update(&inter(40)));
        assert!(!h.update(&audio(41)));
        assert!(h.update(&meta()));
        let kinds: Vec<FrameKind> = h.iter().map(|f| f.kind).collect();
        assert_eq!(
            kinds,
            vec![FrameKind::Data, FrameKind::Video, FrameKind::Audio]
        );

        // A newer header replaces the older one.
        let newer = Frame::video(500, Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64]));
        assert!(h.update(&newer));
        assert_eq!(h.video_seq.as_ref().unwrap().timestamp, 500);
        assert_eq!(h.iter().count(), 3);

        let copy = h.clone();
        h.clear();
        assert_eq!(h.iter().count(), 0);
        assert_eq!(copy.iter().count(), 3);
    }
}
