//! A media frame together with its chunked wire form, encoded once and shared by every player.

use crate::media::{Frame, FrameKind, MediaUnit};
use crate::rtmp::message::{csid, MessageWriter};
use bytes::{Bytes, BytesMut};

/// The message stream id the shared wire bytes are encoded for: the id `createStream` hands to
/// the first stream of a connection, which is what players use. Others get a private encoding.
pub const SHARED_STREAM_ID: u32 = 1;

#[derive(Clone, Debug)]
pub struct Packet {
    pub frame: Frame,
    /// True for `onMetaData`.
    pub metadata: bool,
    /// RTMP chunks of this message (type-0 header, message stream `SHARED_STREAM_ID`).
    pub wire: Bytes,
}

impl MediaUnit for Packet {
    fn frame(&self) -> &Frame {
        &self.frame
    }
}

impl Packet {
    pub fn new(frame: Frame, metadata: bool, chunk_size: u32) -> Packet {
        let wire = encode_frame(&frame, chunk_size, SHARED_STREAM_ID);
        Packet {
            frame,
            metadata,
            wire,
        }
    }

    /// The wire bytes for a player on message stream `stream_id`.
    pub fn wire_for(&self, stream_id: u32, chunk_size: u32) -> Bytes {
        if stream_id == SHARED_STREAM_ID {
            self.wire.clone()
        } else {
            encode_frame(&self.frame, chunk_size, stream_id)
        }
    }
}

pub fn encode_frame(frame: &Frame, chunk_size: u32, stream_id: u32) -> Bytes {
    let cs = match frame.kind {
        FrameKind::Audio => csid::AUDIO,
        FrameKind::Video => csid::VIDEO,
        FrameKind::Data => csid::MEDIA_DATA,
    };
    let mut out = BytesMut::new();
    MessageWriter::new(chunk_size).raw(
        &mut out,
        cs,
        frame.timestamp,
        frame.rtmp_type_id(),
        stream_id,
        &frame.payload,
    );
    out.freeze()
}
