//! A media frame together with its wire forms, encoded once and shared by every player on
//! every shard: RTMP chunks always, the HTTP-FLV form on first use.

use crate::media::{flv, Frame, FrameKind, MediaUnit};
use crate::rtmp::chunk::{MessageHeads, MAX_MESSAGE_LEN};
use crate::rtmp::message::{csid, MessageWriter};
use bytes::{Bytes, BytesMut};
use once_cell::race::OnceBox;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

/// The message stream id the shared wire bytes are encoded for: the id `createStream` hands to
/// the first stream of a connection, which is what players use. Others get a private encoding.
pub const SHARED_STREAM_ID: u32 = 1;

/// Cheap to clone (one reference count) and to send to another shard.
#[derive(Clone, Debug)]
pub struct Packet(Arc<PacketInner>);

/// What a [`Packet`] shares.
#[derive(Debug)]
pub struct PacketInner {
    /// The frame as received.
    pub frame: Frame,
    /// True for `onMetaData`.
    pub metadata: bool,
    /// Chunk size of the shared RTMP form.
    chunk_size: u32,
    /// The wire forms, boxed apart and made by the first player that needs one: a packet
    /// nobody plays never encodes. Inline, the two `OnceLock<Bytes>` made a packet 144 bytes
    /// (a 160-byte allocation); boxed in a `OnceLock` 80 (96); in a `OnceBox` (one pointer;
    /// racing first uses each box one, one box wins) 72 (80). A 2 s GOP of H.264 + AAC holds
    /// ~135 frames; a stream nobody plays keeps them without packets (`gop_entry`).
    forms: OnceBox<Forms>,
}

/// The encoded forms of a [`Packet`], each made on first use.
#[derive(Debug, Default)]
struct Forms {
    /// RTMP chunks of this message (type-0 header, message stream `SHARED_STREAM_ID`).
    wire: OnceLock<Bytes>,
    /// The FLV tag in one HTTP chunk.
    http_flv: OnceLock<Bytes>,
}

impl Deref for Packet {
    type Target = PacketInner;
    fn deref(&self) -> &PacketInner {
        &self.0
    }
}

impl MediaUnit for Packet {
    fn frame(&self) -> &Frame {
        &self.0.frame
    }
}

impl Packet {
    /// Encode `frame` once, in chunks of `chunk_size`.
    ///
    /// Metadata and sequence headers get a payload of their own: they are kept for the whole
    /// publish, and as a slice of the receive buffer they arrived in they kept all of it (often
    /// the first read after `publish`, with the first keyframe): 23 KiB per publisher with the
    /// GOP cache off (heaptrack peak, 200 publishers at 100 ms merged reads).
    pub fn new(mut frame: Frame, metadata: bool, chunk_size: u32) -> Packet {
        if metadata || frame.sequence_header {
            frame.payload = Bytes::copy_from_slice(&frame.payload);
        }
        Packet(Arc::new(PacketInner {
            frame,
            metadata,
            chunk_size,
            forms: OnceBox::new(),
        }))
    }

    /// Headers of the shared RTMP form: with the payload in pieces of
    /// [`chunk_size`](Self::chunk_size) between them, the bytes of [`wire`](Self::wire).
    /// None for a payload RTMP cannot carry (longer than 24 bits), which is never sent.
    pub fn wire_heads(&self) -> Option<MessageHeads> {
        let f = &self.frame;
        (f.payload.len() <= MAX_MESSAGE_LEN as usize).then(|| {
            MessageHeads::new(
                frame_csid(f),
                f.timestamp,
                f.rtmp_type_id(),
                SHARED_STREAM_ID,
                f.payload.len(),
            )
        })
    }

    /// Chunk size of the shared RTMP form.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// The same packet (not just equal frames).
    #[cfg(test)]
    pub fn ptr_eq(&self, other: &Packet) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    fn forms(&self) -> &Forms {
        self.forms.get_or_init(Box::default)
    }

    /// The shared RTMP chunks (message stream `SHARED_STREAM_ID`), made on first use.
    pub fn wire(&self) -> &Bytes {
        self.forms()
            .wire
            .get_or_init(|| encode_frame(&self.frame, self.chunk_size, SHARED_STREAM_ID))
    }

    /// The wire bytes for a player on message stream `stream_id`.
    pub fn wire_for(&self, stream_id: u32, chunk_size: u32) -> Bytes {
        if stream_id == SHARED_STREAM_ID && chunk_size == self.chunk_size {
            self.wire().clone()
        } else {
            encode_frame(&self.frame, chunk_size, stream_id)
        }
    }

    /// The FLV tag wrapped as one HTTP/1.1 chunk (`size CRLF tag CRLF`).
    pub fn http_flv_chunk(&self) -> Bytes {
        self.http_flv_bytes().clone()
    }

    /// The same, borrowed (made on first use, then shared).
    pub fn http_flv_bytes(&self) -> &Bytes {
        self.forms().http_flv.get_or_init(|| {
            let len = flv::tag_len(self.frame.payload.len().min(0xFF_FFFF));
            let mut out = BytesMut::with_capacity(len + 12);
            out.extend_from_slice(format!("{len:x}\r\n").as_bytes());
            flv::tag(&mut out, &self.frame);
            out.extend_from_slice(b"\r\n");
            out.freeze()
        })
    }
}

/// The chunk stream a frame is sent on.
fn frame_csid(frame: &Frame) -> u32 {
    match frame.kind {
        FrameKind::Audio => csid::AUDIO,
        FrameKind::Video => csid::VIDEO,
        FrameKind::Data => csid::MEDIA_DATA,
    }
}

/// RTMP chunks of `frame` on message stream `stream_id` (a private encoding).
pub fn encode_frame(frame: &Frame, chunk_size: u32, stream_id: u32) -> Bytes {
    let mut out = BytesMut::new();
    MessageWriter::new(chunk_size).raw(
        &mut out,
        frame_csid(frame),
        frame.timestamp,
        frame.rtmp_type_id(),
        stream_id,
        &frame.payload,
    );
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_do_not_keep_their_receive_buffer() {
        let mut buf = vec![0u8; 8192];
        buf[..4].copy_from_slice(&[0xAF, 0, 0x12, 0x10]); // AAC sequence header
        buf[40..42].copy_from_slice(&[0xAF, 1]); // AAC raw
        let read = Bytes::from(buf);
        let header = Packet::new(Frame::audio(0, read.slice(0..4)), false, 4096);
        let meta = Packet::new(Frame::data(0, read.slice(4..40)), true, 4096);
        let media = Packet::new(Frame::audio(0, read.slice(40..60)), false, 4096);
        let inside = |b: &Bytes| read.as_ptr_range().contains(&b.as_ptr());
        assert!(header.frame.sequence_header);
        assert!(!inside(&header.frame.payload) && !inside(&meta.frame.payload));
        assert!(
            inside(&media.frame.payload),
            "media stays a slice (no copy per frame)"
        );
        assert_eq!(&header.frame.payload[..], &read[0..4]);
        assert_eq!(&meta.frame.payload[..], &read[4..40]);
    }

    #[test]
    fn forms_are_made_once_and_shared() {
        let p = Packet::new(
            Frame::audio(5, Bytes::from_static(&[0xAF, 1, 2])),
            false,
            4096,
        );
        assert!(
            p.forms.get().is_none(),
            "nothing made before a player needs it"
        );
        let a = p.http_flv_chunk();
        let b = p.clone().http_flv_chunk();
        assert_eq!(a.as_ptr(), b.as_ptr());
        assert!(a.starts_with(b"12\r\n"));
        assert!(a.ends_with(b"\r\n"));
        assert_eq!(a.len(), 4 + 18 + 2);
        assert!(
            p.forms().wire.get().is_none(),
            "not encoded before a player needs it"
        );
        assert_eq!(p.wire_for(1, 4096).as_ptr(), p.wire().as_ptr());
        assert_ne!(p.wire_for(2, 4096).as_ptr(), p.wire().as_ptr());
        assert_eq!(p.wire(), &encode_frame(&p.frame, 4096, 1));
    }

    #[test]
    fn a_packet_nobody_played_is_small() {
        // What a GOP cache holds per frame of a stream without players, besides the payload.
        assert!(
            std::mem::size_of::<PacketInner>() <= 56,
            "{} bytes",
            std::mem::size_of::<PacketInner>()
        );
    }
}
