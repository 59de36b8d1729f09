//! The chunk stream decoder fed arbitrary bytes in arbitrary pieces, with the server's default
//! limits and with small ones (max_message_len 4096, max_chunk_streams 8).
//!
//! Input: see `fuzz_util::Framed`. flags bit 3: the small limits also cap the chunk size at 4096.
//!
//! Checks beyond "no panic":
//! - every message respects the limits and has a valid chunk stream id;
//! - Set Chunk Size takes effect; errors are sticky;
//! - the result does not depend on how the bytes were split (pieces vs. all at once);
//! - re-encoding the messages with `encode_message` and decoding again gives them back.
#![no_main]

use bytes::BytesMut;
use fuzz_util::Framed;
use libfuzzer_sys::fuzz_target;
use shardcast::rtmp::chunk::{
    encode_message, ChunkDecoder, ChunkError, DecoderLimits, RawMessage, DEFAULT_CHUNK_SIZE,
    MAX_CSID, MIN_CSID, MSG_SET_CHUNK_SIZE,
};

fuzz_target!(|data: &[u8]| {
    let Some(input) = Framed::parse(data) else {
        return;
    };
    let small = DecoderLimits {
        max_chunk_size: if input.flag(3) {
            4096
        } else {
            DecoderLimits::default().max_chunk_size
        },
        max_message_len: 4096,
        max_chunk_streams: 8,
    };
    for limits in [DecoderLimits::default(), small] {
        check(&input, limits);
    }
});

/// Messages decoded before the decoder stopped, and the error that stopped it, if any.
type Outcome = (Vec<RawMessage>, Option<ChunkError>);

fn check(input: &Framed, limits: DecoderLimits) {
    let split = decode(input.pieces(), limits);
    let whole = decode(std::iter::once(input.body), limits);
    assert_eq!(split, whole, "result depends on how the input was split");
    reencode(&whole.0, limits);
}

fn decode<'a>(pieces: impl Iterator<Item = &'a [u8]>, limits: DecoderLimits) -> Outcome {
    let mut dec = ChunkDecoder::new(limits);
    let mut out = Vec::new();
    for piece in pieces {
        dec.push(piece);
        loop {
            match dec.next_message() {
                Ok(Some(msg)) => {
                    assert!(
                        (MIN_CSID..=MAX_CSID).contains(&msg.csid),
                        "csid {}",
                        msg.csid
                    );
                    assert!(msg.payload.len() <= limits.max_message_len as usize);
                    if msg.type_id == MSG_SET_CHUNK_SIZE {
                        let size = u32::from_be_bytes(msg.payload[..4].try_into().unwrap());
                        assert_eq!(dec.chunk_size(), size & 0x7FFF_FFFF);
                    }
                    assert!(dec.chunk_size() >= 1 && dec.chunk_size() <= limits.max_chunk_size);
                    out.push(msg);
                }
                Ok(None) => break,
                Err(err) => {
                    // The stream is out of sync for good.
                    assert_eq!(dec.next_message(), Err(err.clone()));
                    dec.push(&[0xC3, 0, 0]);
                    assert_eq!(dec.next_message(), Err(err.clone()));
                    return (out, Some(err));
                }
            }
        }
    }
    (out, None)
}

/// Encodes the messages again, one whole message per type-0 header at the chunk size in force,
/// and checks that a fresh decoder gives back exactly the same messages.
fn reencode(msgs: &[RawMessage], limits: DecoderLimits) {
    if msgs.is_empty() {
        return;
    }
    let mut out = BytesMut::new();
    let mut chunk_size = DEFAULT_CHUNK_SIZE;
    for m in msgs {
        encode_message(
            &mut out,
            chunk_size,
            m.csid,
            m.timestamp,
            m.type_id,
            m.stream_id,
            &m.payload,
        );
        if m.type_id == MSG_SET_CHUNK_SIZE {
            chunk_size = u32::from_be_bytes(m.payload[..4].try_into().unwrap()) & 0x7FFF_FFFF;
        }
    }
    let (again, err) = decode(std::iter::once(&out[..]), limits);
    assert_eq!(err, None, "re-encoded stream fails to decode");
    assert_eq!(&again[..], msgs, "re-encoded stream decodes differently");
}
