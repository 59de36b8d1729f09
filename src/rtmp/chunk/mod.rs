//! RTMP chunk stream layer: splits messages into chunks and reassembles them.
//!
//! Pure code (no I/O, no clock): the session feeds received bytes to a
//! [`ChunkDecoder`] and writes what [`encode_message`] / [`ChunkWriter`]
//! append to its own output buffer.

pub mod csid_map;
pub mod decoder;
pub mod encoder;
mod plan;
pub mod splice;

pub use decoder::ChunkDecoder;
pub use encoder::{encode_message, encoded_len, ChunkWriter, MessageHeads};
pub use plan::{chunk_control, parse_chunk_header, ChunkHeader, Control, Prev};

use bytes::BufMut;

/// Chunk size both sides assume until a Set Chunk Size message says otherwise.
pub const DEFAULT_CHUNK_SIZE: u32 = 128;

/// Largest chunk size the protocol can express (the top bit of the field is reserved).
pub const MAX_PROTOCOL_CHUNK_SIZE: u32 = 0x7FFF_FFFF;

/// Smallest chunk stream id a message may use (0 and 1 only select header forms).
pub const MIN_CSID: u32 = 2;

/// Largest chunk stream id the 3-byte basic header can carry.
pub const MAX_CSID: u32 = 65_599;

/// Largest message the 3-byte length field can carry.
pub const MAX_MESSAGE_LEN: u32 = 0xFF_FFFF;

/// Chunk stream reserved for protocol control messages.
pub const CONTROL_CSID: u32 = 2;

/// Message type id of Set Chunk Size (protocol control, handled by the decoder).
pub const MSG_SET_CHUNK_SIZE: u8 = 1;

/// Message type id of Abort Message (protocol control, handled by the decoder).
pub const MSG_ABORT: u8 = 2;

/// 3-byte timestamp value that means "the real value follows as 4 bytes".
const EXTENDED_MARKER: u32 = 0xFF_FFFF;

/// One whole RTMP message as reassembled from chunks.
#[derive(Debug, Clone, PartialEq)]
pub struct RawMessage {
    /// Chunk stream id the message arrived on.
    pub csid: u32,
    /// Absolute timestamp in milliseconds (deltas already accumulated).
    pub timestamp: u32,
    /// Message type id (see `message::type_id`).
    pub type_id: u8,
    /// Message stream id (0 for the NetConnection).
    pub stream_id: u32,
    /// The reassembled message payload.
    pub payload: bytes::Bytes,
}

/// The last message header seen on a chunk stream: what later fmt 1/2/3 headers build on (a
/// decoder hands it to a [`splice::ChunkSplicer`] taking over the stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeaderState {
    /// Absolute timestamp of the last message.
    pub timestamp: u32,
    /// Last timestamp field as sent (absolute after fmt 0, a delta after fmt 1/2).
    pub ts_field: u32,
    /// The field came in the extended timestamp.
    pub extended: bool,
    /// Message length.
    pub len: u32,
    /// Message type id.
    pub type_id: u8,
    /// Message stream id.
    pub stream_id: u32,
}

/// Bounds that keep a hostile peer from making the decoder allocate without end.
#[derive(Debug, Clone, Copy)]
pub struct DecoderLimits {
    /// Largest chunk size a Set Chunk Size may announce.
    pub max_chunk_size: u32,
    /// Largest message length a chunk header may announce.
    pub max_message_len: u32,
    /// Most distinct chunk stream ids one connection may use.
    pub max_chunk_streams: usize,
}

impl Default for DecoderLimits {
    fn default() -> Self {
        Self {
            max_chunk_size: 16_777_215,
            max_message_len: 8 * 1024 * 1024,
            max_chunk_streams: 64,
        }
    }
}

/// Why the chunk stream cannot be decoded; every one is fatal for the connection.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    /// A Set Chunk Size of 0.
    #[error("peer set the chunk size to 0")]
    ChunkSizeZero,
    /// A Set Chunk Size above [`DecoderLimits::max_chunk_size`].
    #[error("peer set the chunk size to {size}, above the limit of {limit}")]
    ChunkSizeTooLarge {
        /// Announced chunk size.
        size: u32,
        /// The limit.
        limit: u32,
    },
    /// A message header announcing more than [`DecoderLimits::max_message_len`] bytes.
    #[error("message of {len} bytes exceeds the limit of {limit}")]
    MessageTooLong {
        /// Announced message length, in bytes.
        len: u32,
        /// The limit.
        limit: u32,
    },
    /// More distinct chunk stream ids than [`DecoderLimits::max_chunk_streams`].
    #[error("peer opened more than {limit} chunk streams")]
    TooManyChunkStreams {
        /// The limit.
        limit: usize,
    },
    /// A fmt 1, 2 or 3 chunk on a chunk stream that never had a full (fmt 0) header.
    #[error("chunk with fmt {fmt} on chunk stream {csid}, which has no previous header")]
    NoPreviousHeader {
        /// Chunk stream id.
        csid: u32,
        /// Chunk header format (1, 2 or 3).
        fmt: u8,
    },
    /// A Set Chunk Size or Abort message with a payload under 4 bytes.
    #[error("protocol control message type {type_id} has {len} payload bytes, needs 4")]
    ControlMessageTooShort {
        /// Message type id.
        type_id: u8,
        /// Payload length, in bytes.
        len: usize,
    },
}

/// Length of the basic header that carries `csid`.
fn basic_header_len(csid: u32) -> usize {
    match csid {
        0..=63 => 1,
        64..=319 => 2,
        _ => 3,
    }
}

/// Appends a basic header; `csid` must be in `MIN_CSID..=MAX_CSID`.
fn put_basic_header(out: &mut impl BufMut, fmt: u8, csid: u32) {
    let fmt = fmt << 6;
    match csid {
        0..=63 => out.put_u8(fmt | csid as u8),
        64..=319 => out.put_slice(&[fmt, (csid - 64) as u8]),
        _ => {
            let rel = (csid - 64) as u16;
            out.put_u8(fmt | 1);
            out.put_u16_le(rel);
        }
    }
}

/// Appends a 24-bit big-endian value (timestamps and lengths in message headers).
fn put_u24(out: &mut impl BufMut, value: u32) {
    out.put_slice(&value.to_be_bytes()[1..]);
}

/// Helpers shared by the decoder and encoder tests.
#[cfg(test)]
mod testutil {
    use super::{ChunkDecoder, ChunkError, RawMessage};

    /// Small deterministic PRNG (xorshift64*) so failures reproduce from the seed.
    pub(super) struct Rng(u64);

    impl Rng {
        pub(super) fn new(seed: u64) -> Self {
            Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }

        pub(super) fn next_u64(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        /// Uniform-ish value in `0..n` (`n > 0`).
        pub(super) fn below(&mut self, n: usize) -> usize {
            (self.next_u64() % n as u64) as usize
        }

        pub(super) fn byte(&mut self) -> u8 {
            (self.next_u64() >> 56) as u8
        }
    }

    /// Deterministic payload bytes that differ from message to message.
    pub(super) fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    pub(super) fn msg(
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        payload: &[u8],
    ) -> RawMessage {
        RawMessage {
            csid,
            timestamp,
            type_id,
            stream_id,
            payload: bytes::Bytes::copy_from_slice(payload),
        }
    }

    /// Pulls messages until the decoder needs more bytes.
    pub(super) fn drain(dec: &mut ChunkDecoder) -> Result<Vec<RawMessage>, ChunkError> {
        let mut out = Vec::new();
        while let Some(m) = dec.next_message()? {
            out.push(m);
        }
        Ok(out)
    }

    /// Decodes a complete byte string with default limits; it must end on a chunk boundary.
    pub(super) fn decode(bytes: &[u8]) -> Vec<RawMessage> {
        let mut dec = ChunkDecoder::default();
        dec.push(bytes);
        let out = drain(&mut dec).expect("valid chunk stream");
        assert_eq!(dec.buffered(), 0, "bytes left over");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits() {
        let l = DecoderLimits::default();
        assert_eq!(l.max_chunk_size, 16_777_215);
        assert_eq!(l.max_message_len, 8 * 1024 * 1024);
        assert_eq!(l.max_chunk_streams, 64);
    }

    #[test]
    fn basic_header_forms_at_boundaries() {
        let cases: [(u32, &[u8]); 6] = [
            (2, &[0x02]),
            (63, &[0x3F]),
            (64, &[0x00, 0x00]),
            (319, &[0x00, 0xFF]),
            (320, &[0x01, 0x00, 0x01]),
            (65_599, &[0x01, 0xFF, 0xFF]),
        ];
        for (csid, want) in cases {
            assert_eq!(basic_header_len(csid), want.len(), "csid {csid}");
            let mut out = bytes::BytesMut::new();
            put_basic_header(&mut out, 0, csid);
            assert_eq!(&out[..], want, "csid {csid} fmt 0");
            let mut out = bytes::BytesMut::new();
            put_basic_header(&mut out, 3, csid);
            assert_eq!(out[0], want[0] | 0xC0, "csid {csid} fmt 3");
            assert_eq!(&out[1..], &want[1..]);
        }
    }

    #[test]
    fn errors_have_readable_messages() {
        let e = ChunkError::ChunkSizeTooLarge { size: 5, limit: 4 };
        assert_eq!(
            e.to_string(),
            "peer set the chunk size to 5, above the limit of 4"
        );
        let e = ChunkError::NoPreviousHeader { csid: 9, fmt: 3 };
        assert_eq!(
            e.to_string(),
            "chunk with fmt 3 on chunk stream 9, which has no previous header"
        );
    }
}
