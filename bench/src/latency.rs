//! End-to-end latency in fanout mode without locks: each publisher (the only writer of its
//! stream) stamps the send instant of every audio/video message into a per-stream ring of atomics
//! indexed by media timestamp; players on any thread look the stamp up by the timestamp they
//! receive. A slot is a tiny seqlock (key, instant, key again), so a torn read is discarded.
//!
//! Servers that rebase player timestamps (nginx-rtmp without `atc`) are handled by finding the
//! offset once per player: the key carries a payload fingerprint, and the first video frames are
//! searched for in the ring by fingerprint.

use shardcast::media::FrameKind;
use std::sync::atomic::{fence, AtomicU64, Ordering};

/// Slots per track and stream: one per millisecond of timestamp, ~8 s of history.
pub const SLOTS: usize = 8192;
/// Set in every written key, so an empty slot (0) never matches.
const VALID: u64 = 1 << 63;
/// Video frames a player searches the ring for before giving up on finding its offset.
const MAX_PROBES: u32 = 64;

#[derive(Default)]
struct Slot {
    key: AtomicU64,
    sent_ns: AtomicU64,
}

/// Send instants of every stream's recent audio and video messages.
pub struct LatencyBoard {
    slots: Box<[Slot]>,
    streams: usize,
}

/// The tracks that carry latency stamps.
fn track(kind: FrameKind) -> Option<usize> {
    match kind {
        FrameKind::Audio => Some(0),
        FrameKind::Video => Some(1),
        FrameKind::Data => None,
    }
}

/// A cheap 31-bit fingerprint of a payload: its length and up to 32 bytes from each end.
pub fn fingerprint(p: &[u8]) -> u32 {
    let head = &p[..p.len().min(32)];
    let tail = &p[p.len().saturating_sub(32)..];
    fingerprint_parts(p.len(), head, tail)
}

/// [`fingerprint`] from a payload's length and its first and last `min(len, 32)` bytes, for
/// players that never hold a whole payload (HTTP-FLV parses tags as they stream past).
pub fn fingerprint_parts(len: usize, head: &[u8], tail: &[u8]) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ len as u64;
    for &b in head.iter().chain(tail) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    ((h ^ (h >> 31)) as u32) & 0x7FFF_FFFF
}

fn key(ts: u32, fp: u32) -> u64 {
    VALID | (u64::from(fp) << 32) | u64::from(ts)
}

impl LatencyBoard {
    pub fn new(streams: usize) -> Self {
        let slots = (0..streams * 2 * SLOTS).map(|_| Slot::default()).collect();
        LatencyBoard { slots, streams }
    }

    fn ring(&self, stream: usize, t: usize) -> &[Slot] {
        let start = (stream * 2 + t) * SLOTS;
        &self.slots[start..start + SLOTS]
    }

    /// Publisher side: message `ts` with payload fingerprint `fp` left at `sent_ns`.
    /// Only the stream's own publisher may call this (one writer per ring).
    pub fn record(&self, stream: usize, kind: FrameKind, ts: u32, fp: u32, sent_ns: u64) {
        let Some(t) = track(kind) else { return };
        if stream >= self.streams {
            return;
        }
        let slot = &self.ring(stream, t)[ts as usize % SLOTS];
        slot.key.store(0, Ordering::Relaxed);
        fence(Ordering::Release);
        slot.sent_ns.store(sent_ns, Ordering::Relaxed);
        slot.key.store(key(ts, fp), Ordering::Release);
    }

    /// Player side: the send instant of message `ts` with fingerprint `fp`, if still in the ring.
    pub fn lookup(&self, stream: usize, kind: FrameKind, ts: u32, fp: u32) -> Option<u64> {
        let t = track(kind)?;
        if stream >= self.streams {
            return None;
        }
        let slot = &self.ring(stream, t)[ts as usize % SLOTS];
        read_slot(slot).and_then(|(k, ns)| (k == key(ts, fp)).then_some(ns))
    }

    /// The publisher timestamp of the most recently sent message with fingerprint `fp`.
    fn find_by_fingerprint(&self, stream: usize, kind: FrameKind, fp: u32) -> Option<u32> {
        let t = track(kind)?;
        if stream >= self.streams {
            return None;
        }
        let mut best: Option<(u64, u32)> = None;
        for slot in self.ring(stream, t) {
            if let Some((k, ns)) = read_slot(slot) {
                if (k >> 32) as u32 & 0x7FFF_FFFF == fp && best.is_none_or(|(b, _)| ns > b) {
                    best = Some((ns, k as u32));
                }
            }
        }
        best.map(|(_, ts)| ts)
    }
}

/// Seqlock read: key, value, key again; `None` for an empty or concurrently rewritten slot.
fn read_slot(slot: &Slot) -> Option<(u64, u64)> {
    let k1 = slot.key.load(Ordering::Acquire);
    if k1 == 0 {
        return None;
    }
    let ns = slot.sent_ns.load(Ordering::Relaxed);
    fence(Ordering::Acquire);
    let k2 = slot.key.load(Ordering::Relaxed);
    (k1 == k2).then_some((k1, ns))
}

/// One player's view of the board: which stream it plays and the timestamp offset between what
/// it receives and what its publisher sent (0 for servers that forward timestamps unchanged).
#[derive(Debug, Clone)]
pub struct LatencyProbe {
    stream: usize,
    /// Publisher timestamp minus received timestamp, once known.
    offset: Option<u32>,
    probes: u32,
}

/// Result of one lookup, so the caller can count misses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Sent at this instant (ns since the run's epoch).
    Sent(u64),
    /// Not found: the offset is not known yet, or the slot was overwritten.
    Miss,
    /// Not a latency-carrying message (data).
    Skip,
}

impl LatencyProbe {
    pub fn new(stream: usize) -> Self {
        LatencyProbe {
            stream,
            offset: None,
            probes: 0,
        }
    }

    #[cfg(test)]
    pub fn offset(&self) -> Option<u32> {
        self.offset
    }

    pub fn lookup(
        &mut self,
        board: &LatencyBoard,
        kind: FrameKind,
        ts: u32,
        payload: &[u8],
    ) -> Lookup {
        if track(kind).is_none() {
            return Lookup::Skip;
        }
        self.lookup_fp(board, kind, ts, fingerprint(payload))
    }

    /// [`LatencyProbe::lookup`] with the payload's fingerprint already computed.
    pub fn lookup_fp(&mut self, board: &LatencyBoard, kind: FrameKind, ts: u32, fp: u32) -> Lookup {
        if track(kind).is_none() {
            return Lookup::Skip;
        }
        if let Some(off) = self.offset {
            if let Some(ns) = board.lookup(self.stream, kind, ts.wrapping_add(off), fp) {
                return Lookup::Sent(ns);
            }
            // A video miss right after a search means the offset guess was wrong: search again.
            if kind == FrameKind::Video && off != 0 && self.probes < MAX_PROBES {
                self.offset = None;
            } else {
                return Lookup::Miss;
            }
        }
        if let Some(ns) = board.lookup(self.stream, kind, ts, fp) {
            self.offset = Some(0);
            return Lookup::Sent(ns);
        }
        // Audio frames of a steady tone repeat byte for byte, so only video is searched.
        if kind == FrameKind::Video && self.probes < MAX_PROBES {
            self.probes += 1;
            if let Some(pub_ts) = board.find_by_fingerprint(self.stream, kind, fp) {
                let off = pub_ts.wrapping_sub(ts);
                self.offset = Some(off);
                if let Some(ns) = board.lookup(self.stream, kind, ts.wrapping_add(off), fp) {
                    return Lookup::Sent(ns);
                }
            }
        }
        Lookup::Miss
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_and_lookup() {
        let b = LatencyBoard::new(2);
        b.record(1, FrameKind::Video, 40, 7, 1_000);
        b.record(1, FrameKind::Audio, 40, 9, 2_000);
        assert_eq!(b.lookup(1, FrameKind::Video, 40, 7), Some(1_000));
        assert_eq!(b.lookup(1, FrameKind::Audio, 40, 9), Some(2_000));
        // Wrong stream, fingerprint, or a later lap of the ring.
        assert_eq!(b.lookup(0, FrameKind::Video, 40, 7), None);
        assert_eq!(b.lookup(1, FrameKind::Video, 40, 8), None);
        assert_eq!(b.lookup(1, FrameKind::Video, 40 + SLOTS as u32, 7), None);
        b.record(1, FrameKind::Video, 40 + SLOTS as u32, 7, 3_000);
        assert_eq!(b.lookup(1, FrameKind::Video, 40, 7), None);
        assert_eq!(b.lookup(3, FrameKind::Video, 40, 7), None);
        assert_eq!(b.lookup(1, FrameKind::Data, 40, 7), None);
    }

    #[test]
    fn fingerprint_differs_by_content_and_length() {
        let a = fingerprint(&[0x17, 1, 0, 0, 0, 1, 2, 3]);
        assert_ne!(a, fingerprint(&[0x17, 1, 0, 0, 0, 1, 2, 4]));
        assert_ne!(a, fingerprint(&[0x17, 1, 0, 0, 0, 1, 2, 3, 0]));
        assert!(a < 1 << 31);
        assert_eq!(fingerprint(&[]), fingerprint(&[]));
    }

    #[test]
    fn probe_direct_timestamps() {
        let b = LatencyBoard::new(1);
        let frame = [0x17u8, 1, 0, 0, 0, 42];
        b.record(0, FrameKind::Video, 5000, fingerprint(&frame), 10);
        let mut p = LatencyProbe::new(0);
        assert_eq!(
            p.lookup(&b, FrameKind::Video, 5000, &frame),
            Lookup::Sent(10)
        );
        assert_eq!(p.offset(), Some(0));
        assert_eq!(p.lookup(&b, FrameKind::Data, 5000, &frame), Lookup::Skip);
    }

    #[test]
    fn probe_finds_rebased_timestamps() {
        let b = LatencyBoard::new(1);
        // The publisher is 12345 ms into its stream; the server rebases the player to 0.
        for i in 0..100u32 {
            let payload = [0x27u8, 1, 0, 0, 0, i as u8, (i >> 8) as u8];
            b.record(
                0,
                FrameKind::Video,
                12_345 + i * 40,
                fingerprint(&payload),
                u64::from(i),
            );
        }
        let mut p = LatencyProbe::new(0);
        let first = [0x27u8, 1, 0, 0, 0, 50, 0];
        assert_eq!(p.lookup(&b, FrameKind::Video, 0, &first), Lookup::Sent(50));
        assert_eq!(p.offset(), Some(12_345 + 50 * 40));
        let next = [0x27u8, 1, 0, 0, 0, 51, 0];
        assert_eq!(p.lookup(&b, FrameKind::Video, 40, &next), Lookup::Sent(51));
        // Audio follows the video offset when its own direct lookup cannot work.
        let unknown = [0xAFu8, 1, 9];
        assert_eq!(p.lookup(&b, FrameKind::Audio, 40, &unknown), Lookup::Miss);
    }

    #[test]
    fn concurrent_writer_never_yields_torn_reads() {
        let b = std::sync::Arc::new(LatencyBoard::new(1));
        let w = b.clone();
        let writer = std::thread::spawn(move || {
            for i in 0..200_000u64 {
                // The instant is a function of the timestamp, so a torn pair is detectable.
                let ts = (i % 64) as u32 + ((i / 64) % 4) as u32 * SLOTS as u32;
                w.record(0, FrameKind::Video, ts, 1, u64::from(ts) * 3);
            }
        });
        let check = |hits: &mut u32| {
            for s in 0..64u32 {
                for lap in 0..4u32 {
                    let ts = s + lap * SLOTS as u32;
                    if let Some(ns) = b.lookup(0, FrameKind::Video, ts, 1) {
                        assert_eq!(ns, u64::from(ts) * 3);
                        *hits += 1;
                    }
                }
            }
        };
        let mut hits = 0;
        while !writer.is_finished() {
            check(&mut hits);
        }
        writer.join().unwrap();
        check(&mut hits);
        assert!(hits > 0);
    }
}
