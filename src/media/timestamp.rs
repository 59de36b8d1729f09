//! Output timestamp repair. Players (Flash heritage, hls muxers, ffmpeg)
//! misbehave when a track's timestamps go backwards, which happens when a
//! publisher reconnects or an encoder restarts its clock.

use super::frame::FrameKind;

/// Keeps each track's output timestamps monotonic across publisher resets and backward jumps, passing forward values through unchanged.
///
/// One offset is shared by all tracks so a reset keeps audio and video
/// aligned: the first track to go backwards re-anchors, and the others then
/// land on the same new timeline without needing their own re-anchor.
#[derive(Debug, Clone, Default)]
pub struct TimestampSmoother {
    offset: u32,
    /// Last output per track, indexed by [`track_index`].
    last_out: [Option<u32>; 3],
    /// Furthest output on any track (wrapping order).
    max_out: Option<u32>,
    resets: u64,
}

fn track_index(kind: FrameKind) -> usize {
    match kind {
        FrameKind::Audio => 0,
        FrameKind::Video => 1,
        FrameKind::Data => 2,
    }
}

/// `a` is before `b` in 32-bit wrapping (RFC 1982 style) order.
fn is_before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

impl TimestampSmoother {
    /// A smoother with no offset and no frames seen.
    pub fn new() -> Self {
        Self::default()
    }

    /// out = in + offset (wrapping). If out would go backwards on this track (compare by wrapping signed difference, i.e. `(out - last_out[track]) as i32 < 0`),
    /// re-anchor: offset = max_out_all_tracks + 1 - in, out = max_out_all_tracks + 1. Return out.
    /// A track's first frame is never "backwards". Values above 2^24 and wraps past 2^32 pass through unchanged when moving forward.
    pub fn smooth(&mut self, kind: FrameKind, timestamp: u32) -> u32 {
        let track = track_index(kind);
        let mut out = timestamp.wrapping_add(self.offset);
        if let Some(last) = self.last_out[track] {
            if is_before(out, last) {
                // `last` is an output, so `max_out` is always set here.
                let anchor = self.max_out.unwrap_or(last).wrapping_add(1);
                self.offset = anchor.wrapping_sub(timestamp);
                out = anchor;
                self.resets += 1;
            }
        }
        self.last_out[track] = Some(out);
        match self.max_out {
            Some(m) if !is_before(m, out) => {}
            _ => self.max_out = Some(out),
        }
        out
    }

    /// How many re-anchors happened.
    pub fn resets(&self) -> u64 {
        self.resets
    }

    /// Forgets all history (offset included), e.g. for a brand-new stream.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FrameKind::{Audio, Data, Video};

    #[test]
    fn forward_values_pass_through() {
        let mut s = TimestampSmoother::new();
        for ts in [0u32, 0, 23, 40, 46, 80, 1000, 50_000] {
            assert_eq!(s.smooth(Video, ts), ts);
            assert_eq!(s.smooth(Audio, ts), ts);
        }
        // Equal timestamps are not backwards.
        assert_eq!(s.smooth(Video, 50_000), 50_000);
        assert_eq!(s.resets(), 0);
    }

    #[test]
    fn interleave_jitter_is_not_a_reset() {
        let mut s = TimestampSmoother::new();
        // Each track is monotonic; across tracks they go back and forth.
        let seq = [
            (Video, 1000),
            (Audio, 990),
            (Audio, 1013),
            (Video, 1033),
            (Audio, 1036),
            (Audio, 1059),
            (Video, 1066),
            (Audio, 1082),
            (Video, 1100),
            (Audio, 1105),
        ];
        for (k, ts) in seq {
            assert_eq!(s.smooth(k, ts), ts);
        }
        assert_eq!(s.resets(), 0);
    }

    #[test]
    fn publisher_reset_stays_monotonic_on_both_tracks() {
        let mut s = TimestampSmoother::new();
        let mut last = [0u32; 2];
        let mut push = |s: &mut TimestampSmoother, k: FrameKind, ts: u32| {
            let out = s.smooth(k, ts);
            let i = (k == Video) as usize;
            assert!(out >= last[i], "{k:?} went back: {} -> {out}", last[i]);
            last[i] = out;
            out
        };
        for i in 0..100u32 {
            push(&mut s, Video, 5000 + i * 40);
            push(&mut s, Audio, 4990 + i * 23);
        }
        let max_before = 5000 + 99 * 40;
        // Publisher reconnects with a fresh clock; audio and video jitter a bit.
        let v0 = push(&mut s, Video, 0);
        assert_eq!(v0, max_before + 1);
        let a0 = push(&mut s, Audio, 3);
        assert_eq!(a0, max_before + 4, "audio follows the shared offset");
        assert_eq!(push(&mut s, Audio, 26), max_before + 27);
        assert_eq!(push(&mut s, Video, 20), max_before + 21);
        for i in 1..100u32 {
            push(&mut s, Video, 20 + i * 40);
            push(&mut s, Audio, 26 + i * 23);
        }
        assert_eq!(s.resets(), 1);
        // A/V spacing is preserved after the reset.
        assert_eq!(push(&mut s, Video, 10_000) - push(&mut s, Audio, 9_990), 10);
        assert_eq!(s.resets(), 1);
    }

    #[test]
    fn backward_jump_reanchors_past_max_of_all_tracks() {
        let mut s = TimestampSmoother::new();
        assert_eq!(s.smooth(Video, 100), 100);
        assert_eq!(s.smooth(Audio, 150), 150);
        assert_eq!(s.smooth(Video, 50), 151);
        assert_eq!(s.resets(), 1);
        assert_eq!(s.smooth(Video, 90), 191);
    }

    #[test]
    fn first_frame_of_a_track_is_never_backwards() {
        let mut s = TimestampSmoother::new();
        assert_eq!(s.smooth(Video, 10_000), 10_000);
        assert_eq!(s.smooth(Audio, 9_000), 9_000);
        assert_eq!(s.smooth(Data, 0), 0);
        assert_eq!(s.smooth(Data, 0), 0);
        assert_eq!(s.resets(), 0);
    }

    #[test]
    fn extended_timestamps_pass_through() {
        let mut s = TimestampSmoother::new();
        let base = (1u32 << 24) - 40;
        for i in 0..10 {
            assert_eq!(s.smooth(Video, base + i * 40), base + i * 40);
            assert_eq!(s.smooth(Audio, base + i * 23), base + i * 23);
        }
        // Any forward step under 2^31 ms is forward, however large.
        assert_eq!(s.smooth(Video, 2_000_000_000), 2_000_000_000);
        assert_eq!(s.smooth(Audio, 2_000_000_010), 2_000_000_010);
        assert_eq!(s.resets(), 0);
    }

    #[test]
    fn wrap_past_u32_max_passes_through() {
        let mut s = TimestampSmoother::new();
        let mut ts = u32::MAX - 100;
        for _ in 0..10 {
            assert_eq!(s.smooth(Video, ts), ts);
            assert_eq!(s.smooth(Audio, ts.wrapping_sub(5)), ts.wrapping_sub(5));
            ts = ts.wrapping_add(40);
        }
        assert!(ts < 1000, "wrapped");
        assert_eq!(s.resets(), 0);
        // Then a real reset after the wrap still re-anchors after the max.
        let max = ts.wrapping_sub(40);
        assert_eq!(s.smooth(Video, 5), max.wrapping_add(1));
        assert_eq!(s.resets(), 1);
    }

    #[test]
    fn reanchor_output_can_wrap() {
        let mut s = TimestampSmoother::new();
        assert_eq!(s.smooth(Video, u32::MAX), u32::MAX);
        assert_eq!(s.smooth(Video, 7), 7, "forward across the wrap");
        assert_eq!(s.smooth(Video, 3), 8, "backwards re-anchors");
        s.reset();
        assert_eq!(s.smooth(Video, 3), 3);
        assert_eq!(s.resets(), 0);
    }
}
