//! What a stream's GOP cache holds per frame: the bare frame while nobody plays the stream, the
//! shared packet once someone does.

use super::packet::Packet;
use crate::media::{Frame, MediaUnit};

/// One GOP cache entry.
///
/// Most of an origin's streams are ingest only. For those a frame stays itself, 40 bytes in the
/// cache's ring and no allocation of its own, where a packet is an 80-byte allocation plus an
/// 8-byte slot (~135 frames per 2 s GOP of H.264 + AAC). The first player (or subscribing shard)
/// turns the entries into packets, which later players share like live media.
#[derive(Clone, Debug)]
pub enum GopEntry {
    /// A frame no player has been given yet.
    Frame(Frame),
    /// The frame as a shared packet.
    Packet(Packet),
}

impl MediaUnit for GopEntry {
    fn frame(&self) -> &Frame {
        match self {
            GopEntry::Frame(f) => f,
            GopEntry::Packet(p) => &p.frame,
        }
    }
}

impl GopEntry {
    /// The shared packet (chunks of `chunk_size` when encoded), made now for a bare frame.
    pub fn packet(&mut self, chunk_size: u32) -> &Packet {
        if let GopEntry::Frame(f) = self {
            *self = GopEntry::Packet(Packet::new(f.clone(), false, chunk_size));
        }
        match self {
            GopEntry::Packet(p) => p,
            GopEntry::Frame(_) => unreachable!("made a packet just above"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn a_frame_entry_is_no_larger_than_the_frame() {
        assert_eq!(
            std::mem::size_of::<GopEntry>(),
            std::mem::size_of::<Frame>()
        );
    }

    #[test]
    fn a_frame_becomes_a_packet_once_and_keeps_its_bytes() {
        let payload = Bytes::from_static(&[0x27, 1, 0, 0, 0, 9, 9]);
        let mut e = GopEntry::Frame(Frame::video(40, payload.clone()));
        let first = e.packet(4096).clone();
        assert!(matches!(e, GopEntry::Packet(_)));
        assert_eq!(first.frame.payload, payload);
        assert_eq!(first.frame.timestamp, 40);
        assert!(!first.metadata);
        let again = e.packet(4096).clone();
        assert!(first.ptr_eq(&again), "later players share the packet");
        assert_eq!(e.frame().payload, payload);
    }
}
