//! One player's outgoing queue, bounded by media duration. When a player falls behind by more
//! than the bound, its queued media is dropped and it skips ahead to the next keyframe, so a slow
//! player costs memory only up to its bound and never slows the publisher or other players.

use crate::media::{Frame, FrameKind};
use bytes::Bytes;
use std::collections::VecDeque;

/// Room kept in an emptied queue; bursts beyond it are given back.
const KEEP_ITEMS: usize = 16;

#[derive(Debug)]
struct Item {
    bytes: Bytes,
    /// Media that may be dropped (not control, not sequence headers or metadata).
    droppable: bool,
}

/// One player's bounded queue of bytes to write.
#[derive(Debug)]
pub struct PlayerQueue {
    items: VecDeque<Item>,
    queued_bytes: usize,
    max_span_ms: u32,
    /// Timestamp of the oldest droppable media still queued.
    oldest_ts: Option<u32>,
    /// Dropping until the next keyframe (also at start, so the first frame is a keyframe).
    skipping: bool,
    /// Frames dropped so far.
    pub dropped_frames: u64,
    /// Times the queue skipped to a keyframe.
    pub skips: u64,
}

impl PlayerQueue {
    /// A queue holding at most `max_span_ms` of media.
    pub fn new(max_span_ms: u32) -> Self {
        PlayerQueue {
            items: VecDeque::new(),
            queued_bytes: 0,
            max_span_ms,
            oldest_ts: None,
            skipping: true,
            dropped_frames: 0,
            skips: 0,
        }
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Nothing queued and not waiting for a keyframe: shared media may go straight out.
    pub fn is_caught_up(&self) -> bool {
        self.items.is_empty() && !self.skipping
    }

    /// Bytes queued.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    fn push(&mut self, bytes: Bytes, droppable: bool) {
        self.queued_bytes += bytes.len();
        self.items.push_back(Item { bytes, droppable });
    }

    /// Protocol replies and status messages: always sent.
    pub fn push_control(&mut self, bytes: Bytes) {
        self.push(bytes, false);
    }

    /// Put control bytes before everything queued (a response head written late).
    pub fn push_front_control(&mut self, bytes: Bytes) {
        self.queued_bytes += bytes.len();
        self.items.push_front(Item {
            bytes,
            droppable: false,
        });
    }

    /// Queue a media frame unless the player is skipping to a keyframe. `has_video` tells
    /// whether the stream carries video (audio-only streams have no keyframes to wait for).
    /// Returns whether the frame was queued.
    pub fn push_media(&mut self, frame: &Frame, wire: Bytes, has_video: bool) -> bool {
        if frame.kind == FrameKind::Data || frame.sequence_header {
            self.push(wire, false);
            return true;
        }
        if self.skipping {
            let restart = if has_video {
                frame.kind == FrameKind::Video && frame.keyframe
            } else {
                frame.kind == FrameKind::Audio
            };
            if !restart {
                self.dropped_frames += 1;
                return false;
            }
            self.skipping = false;
        }
        let oldest = *self.oldest_ts.get_or_insert(frame.timestamp);
        let span = frame.timestamp.wrapping_sub(oldest);
        if (span as i32) > self.max_span_ms as i32 {
            self.drop_media();
            let restart = !has_video || (frame.kind == FrameKind::Video && frame.keyframe);
            if !restart {
                self.dropped_frames += 1;
                return false;
            }
            self.skipping = false;
            self.oldest_ts = Some(frame.timestamp);
        }
        self.push(wire, true);
        true
    }

    /// Drop all queued media (keeping control) and skip to the next keyframe.
    fn drop_media(&mut self) {
        let before = self.items.len();
        self.items.retain(|i| !i.droppable);
        self.dropped_frames += (before - self.items.len()) as u64;
        self.queued_bytes = self.items.iter().map(|i| i.bytes.len()).sum();
        self.oldest_ts = None;
        self.skipping = true;
        self.skips += 1;
    }

    /// Move everything queued into `out` for one batched write.
    pub fn take_all(&mut self, out: &mut Vec<Bytes>) {
        out.extend(self.items.drain(..).map(|i| i.bytes));
        self.queued_bytes = 0;
        self.oldest_ts = None;
        // A join's burst (a whole GOP) would otherwise keep its room in every player.
        if self.items.capacity() > KEEP_ITEMS {
            self.items = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(ts: u32, key: bool) -> Frame {
        let b = if key { 0x17 } else { 0x27 };
        Frame::video(ts, Bytes::from(vec![b, 1, 0, 0, 0, 9]))
    }

    fn audio(ts: u32) -> Frame {
        Frame::audio(ts, Bytes::from_static(&[0xAF, 1, 5]))
    }

    fn push(q: &mut PlayerQueue, f: &Frame) -> bool {
        q.push_media(f, f.payload.clone(), true)
    }

    fn drained(q: &mut PlayerQueue) -> Vec<Bytes> {
        let mut v = Vec::new();
        q.take_all(&mut v);
        v
    }

    #[test]
    fn a_drained_burst_gives_its_room_back() {
        let mut q = PlayerQueue::new(60_000);
        assert!(push(&mut q, &video(0, true)));
        for i in 1..200 {
            push(&mut q, &audio(i));
        }
        assert_eq!(drained(&mut q).len(), 200);
        assert!(
            q.items.capacity() <= KEEP_ITEMS,
            "an emptied queue keeps room for {} items",
            q.items.capacity()
        );
    }

    #[test]
    fn starts_on_a_keyframe() {
        let mut q = PlayerQueue::new(1000);
        assert!(!push(&mut q, &audio(0)));
        assert!(!push(&mut q, &video(0, false)));
        assert!(push(&mut q, &video(40, true)));
        assert!(push(&mut q, &audio(50)));
        assert_eq!(drained(&mut q).len(), 2);
        assert_eq!(q.dropped_frames, 2);
    }

    #[test]
    fn sequence_headers_and_control_always_pass() {
        let mut q = PlayerQueue::new(1000);
        let seq = Frame::video(0, Bytes::from_static(&[0x17, 0, 0, 0, 0, 1]));
        assert!(seq.sequence_header);
        assert!(push(&mut q, &seq));
        q.push_control(Bytes::from_static(b"ctl"));
        assert_eq!(drained(&mut q).len(), 2);
    }

    #[test]
    fn overflow_drops_queued_media_and_skips_to_keyframe() {
        let mut q = PlayerQueue::new(1000);
        assert!(push(&mut q, &video(0, true)));
        q.push_control(Bytes::from_static(b"ctl"));
        for t in 1..=10 {
            assert!(push(&mut q, &video(t * 100, false)));
        }
        // 1100 ms span: over the bound, not a keyframe → everything media dropped.
        assert!(!push(&mut q, &video(1100, false)));
        assert_eq!(q.skips, 1);
        assert!(!push(&mut q, &audio(1110)));
        assert!(push(&mut q, &video(1200, true)));
        let out = drained(&mut q);
        assert_eq!(out.len(), 2, "control kept, then the keyframe");
        assert_eq!(&out[0][..], b"ctl");
        assert_eq!(q.dropped_frames, 11 + 1 + 1);
    }

    #[test]
    fn bounded_memory_for_a_player_that_never_drains() {
        let mut q = PlayerQueue::new(2000);
        let mut max = 0;
        for i in 0..10_000u32 {
            let f = video(i * 40, i % 50 == 0);
            push(&mut q, &f);
            max = max.max(q.queued_bytes());
        }
        // 2 s of 40 ms frames of 6 bytes at most, plus one GOP of slack.
        assert!(max <= 6 * (2000 / 40 + 2), "{max}");
    }

    #[test]
    fn audio_only_streams_start_on_audio() {
        let mut q = PlayerQueue::new(1000);
        assert!(q.push_media(&audio(0), Bytes::from_static(b"a"), false));
    }

    #[test]
    fn draining_resets_the_span() {
        let mut q = PlayerQueue::new(1000);
        push(&mut q, &video(0, true));
        push(&mut q, &video(900, false));
        drained(&mut q);
        assert!(push(&mut q, &video(1800, false)));
        assert_eq!(q.skips, 0);
    }
}
