//! One chunk's headers parsed against the previous header of its chunk stream, without touching
//! any state (a short read is retried once more bytes arrived). The decoder, the relay's splicer
//! and the load generator's in-place scanner all read chunk streams; they share this instead of
//! a copy each.

use super::decoder::{be24, be32, peek_extended, ExtPeek};
use super::{
    ChunkError, DecoderLimits, HeaderState, EXTENDED_MARKER, MSG_ABORT, MSG_SET_CHUNK_SIZE,
};

/// What a chunk stream id remembers that its next chunk's header builds on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Prev {
    /// The last message header.
    pub header: HeaderState,
    /// Payload bytes still owed by the message in progress; 0 between messages.
    pub remaining: u32,
}

/// A fully buffered chunk at the front of a buffer.
#[derive(Debug)]
pub(super) struct ChunkPlan {
    pub csid: u32,
    pub fmt: u8,
    /// Bytes before the payload: basic + message header + extended timestamp.
    pub header_len: usize,
    pub payload_len: usize,
    /// The resolved header when the chunk starts a message; `None` for a continuation.
    pub start: Option<HeaderState>,
}

/// One chunk's headers, parsed; its payload may not have arrived yet.
#[derive(Debug, Clone, Copy)]
pub struct ChunkHeader {
    /// Chunk stream id.
    pub csid: u32,
    /// Header format (0-3).
    pub fmt: u8,
    /// Bytes before the payload: basic + message header + extended timestamp.
    pub header_len: usize,
    /// The resolved header when the chunk starts a message; `None` for a continuation.
    pub start: Option<HeaderState>,
    /// Payload bytes the message still owes, this chunk's included.
    pub remaining: u32,
}

/// Parse the chunk header at the front of `buf`; `None` until all of it is there. `prev`
/// answers a chunk stream id's state, `known` is how many chunk streams are in use. Errors are
/// reported as soon as the header shows them.
pub fn parse_chunk_header(
    buf: &[u8],
    prev: impl Fn(u32) -> Option<Prev>,
    known: usize,
    limits: &DecoderLimits,
) -> Result<Option<ChunkHeader>, ChunkError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let fmt = first >> 6;
    let (csid, mut pos) = match first & 0x3F {
        0 => match buf.get(1) {
            Some(&b) => (64 + u32::from(b), 2),
            None => return Ok(None),
        },
        1 => match buf.get(1..3) {
            Some(b) => (64 + u32::from(u16::from_le_bytes([b[0], b[1]])), 3),
            None => return Ok(None),
        },
        n => (u32::from(n), 1),
    };
    let prev = prev(csid);
    if prev.is_none() && fmt == 0 && known >= limits.max_chunk_streams {
        return Err(ChunkError::TooManyChunkStreams {
            limit: limits.max_chunk_streams,
        });
    }
    let need_prev = || prev.ok_or(ChunkError::NoPreviousHeader { csid, fmt });

    let (start, remaining) = if fmt == 3 {
        let Prev {
            header: p,
            remaining,
        } = need_prev()?;
        if p.extended {
            match peek_extended(&buf[pos..], p.ts_field) {
                ExtPeek::NeedMore => return Ok(None),
                ExtPeek::Present => pos += 4,
                ExtPeek::Absent => {}
            }
        }
        if remaining > 0 {
            (None, remaining)
        } else {
            let h = HeaderState {
                timestamp: p.timestamp.wrapping_add(p.ts_field),
                ..p
            };
            (Some(h), p.len)
        }
    } else {
        let prev = if fmt == 0 {
            None
        } else {
            Some(need_prev()?.header)
        };
        let header_len = match fmt {
            0 => 11,
            1 => 7,
            _ => 3,
        };
        let Some(h) = buf.get(pos..pos + header_len) else {
            return Ok(None);
        };
        pos += header_len;
        let field = be24(&h[0..3]);
        let (len, type_id) = match prev {
            Some(p) if fmt == 2 => (p.len, p.type_id),
            _ => (be24(&h[3..6]), h[6]),
        };
        if len > limits.max_message_len {
            return Err(ChunkError::MessageTooLong {
                len,
                limit: limits.max_message_len,
            });
        }
        let extended = field == EXTENDED_MARKER;
        let ts_field = if extended {
            let Some(ext) = buf.get(pos..pos + 4) else {
                return Ok(None);
            };
            pos += 4;
            be32(ext)
        } else {
            field
        };
        let (timestamp, stream_id) = match prev {
            Some(p) => (p.timestamp.wrapping_add(ts_field), p.stream_id),
            None => (ts_field, u32::from_le_bytes([h[7], h[8], h[9], h[10]])),
        };
        let h = HeaderState {
            timestamp,
            ts_field,
            extended,
            len,
            type_id,
            stream_id,
        };
        (Some(h), len)
    };
    Ok(Some(ChunkHeader {
        csid,
        fmt,
        header_len: pos,
        start,
        remaining,
    }))
}

/// Parse the chunk at the front of `buf` ([`parse_chunk_header`]); `None` until its payload is
/// all there too.
pub(super) fn plan_chunk(
    buf: &[u8],
    prev: impl Fn(u32) -> Option<Prev>,
    known: usize,
    limits: &DecoderLimits,
    chunk_size: u32,
) -> Result<Option<ChunkPlan>, ChunkError> {
    let Some(h) = parse_chunk_header(buf, prev, known, limits)? else {
        return Ok(None);
    };
    let payload_len = h.remaining.min(chunk_size) as usize;
    if buf.len() - h.header_len < payload_len {
        return Ok(None);
    }
    Ok(Some(ChunkPlan {
        csid: h.csid,
        fmt: h.fmt,
        header_len: h.header_len,
        payload_len,
        start: h.start,
    }))
}

/// A chunk-layer control message, to apply before the next chunk is parsed.
#[derive(Debug, PartialEq, Eq)]
pub enum Control {
    /// Set Chunk Size: the peer's chunks are this long from now on.
    ChunkSize(u32),
    /// Abort: drop the partial message of this chunk stream id.
    Abort(u32),
}

/// A message of `type_id` with `payload` as a chunk-layer control message (checked against
/// `limits`), if it is one.
pub fn chunk_control(
    type_id: u8,
    payload: &[u8],
    limits: &DecoderLimits,
) -> Result<Option<Control>, ChunkError> {
    if type_id != MSG_SET_CHUNK_SIZE && type_id != MSG_ABORT {
        return Ok(None);
    }
    let Some(b) = payload.get(..4) else {
        return Err(ChunkError::ControlMessageTooShort {
            type_id,
            len: payload.len(),
        });
    };
    let value = be32(b);
    if type_id == MSG_ABORT {
        return Ok(Some(Control::Abort(value)));
    }
    // The top bit is reserved and must be ignored.
    let size = value & 0x7FFF_FFFF;
    if size == 0 {
        return Err(ChunkError::ChunkSizeZero);
    }
    if size > limits.max_chunk_size {
        return Err(ChunkError::ChunkSizeTooLarge {
            size,
            limit: limits.max_chunk_size,
        });
    }
    Ok(Some(Control::ChunkSize(size)))
}
