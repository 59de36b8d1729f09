//! Chunk stream encoders: whole messages in, chunked bytes appended to a caller's buffer.

use super::csid_map::CsidMap;

use bytes::{BufMut, BytesMut};

use super::{
    basic_header_len, put_basic_header, put_u24, DEFAULT_CHUNK_SIZE, EXTENDED_MARKER, MAX_CSID,
    MAX_MESSAGE_LEN, MAX_PROTOCOL_CHUNK_SIZE, MIN_CSID,
};

/// Checks the caller's arguments; bad ones are programming errors, not peer input.
fn check_args(chunk_size: u32, csid: u32, payload_len: usize) -> u32 {
    assert!(chunk_size > 0, "RTMP chunk size must be at least 1");
    assert!(
        (MIN_CSID..=MAX_CSID).contains(&csid),
        "chunk stream id {csid} outside {MIN_CSID}..={MAX_CSID}"
    );
    match u32::try_from(payload_len) {
        Ok(len) if len <= MAX_MESSAGE_LEN => len,
        _ => panic!("RTMP message of {payload_len} bytes exceeds {MAX_MESSAGE_LEN}"),
    }
}

/// Size of a chunked message whose first chunk has a `first_header`-byte message header.
fn chunked_len(
    chunk_size: u32,
    csid: u32,
    first_header: usize,
    extended: bool,
    payload_len: usize,
) -> usize {
    let basic = basic_header_len(csid);
    let ext = if extended { 4 } else { 0 };
    let chunks = payload_len.div_ceil(chunk_size as usize).max(1);
    basic + first_header + ext + payload_len + (chunks - 1) * (basic + ext)
}

/// A continuation (fmt 3) chunk's header on `csid`, and its length: the basic header, then the
/// extended timestamp again when the message has one.
pub(super) fn continuation_header(csid: u32, extended: Option<u32>) -> ([u8; 7], usize) {
    let mut h = [0u8; 7];
    let mut b = &mut h[..];
    put_basic_header(&mut b, 3, csid);
    if let Some(ts) = extended {
        b.put_u32(ts);
    }
    let len = 7 - b.len();
    (h, len)
}

/// Appends the payload after a first chunk's header: its first piece, then each further
/// piece behind `continuation` (see [`continuation_header`]).
fn put_payload(out: &mut BytesMut, chunk_size: u32, continuation: &[u8], payload: &[u8]) {
    for (i, piece) in payload.chunks(chunk_size as usize).enumerate() {
        if i > 0 {
            out.put_slice(continuation);
        }
        out.put_slice(piece);
    }
}

/// Encode one whole message context-free: fmt 0 on the first chunk (absolute
/// timestamp; 0xFFFFFF + 4-byte extended timestamp when timestamp >= 0xFFFFFF),
/// fmt 3 on every continuation chunk, repeating the extended timestamp on each
/// fmt-3 chunk when present (as Flash, FFmpeg and librtmp expect).
/// Because every message starts with fmt 0, the bytes do not depend on what was
/// sent before and can be shared by every player.
///
/// # Panics
/// If `chunk_size` is 0, `csid` is outside 2..=65599 or the payload is longer
/// than 0xFFFFFF bytes.
pub fn encode_message(
    out: &mut BytesMut,
    chunk_size: u32,
    csid: u32,
    timestamp: u32,
    type_id: u8,
    stream_id: u32,
    payload: &[u8],
) {
    check_args(chunk_size, csid, payload.len());
    let heads = MessageHeads::new(csid, timestamp, type_id, stream_id, payload.len());
    out.reserve(encoded_len(chunk_size, csid, timestamp, payload.len()));
    out.put_slice(heads.first());
    put_payload(out, chunk_size, heads.continuation(), payload);
}

/// The bytes [`encode_message`] puts around a message's payload: the first chunk's header and
/// the header every continuation chunk repeats. With them a vectored write sends the payload
/// from where it already is (`[first, piece, continuation, piece, ...]`, pieces of the chunk
/// size) instead of from a copy made next to its headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageHeads {
    first: [u8; 18],
    first_len: u8,
    continuation: [u8; 7],
    continuation_len: u8,
}

impl MessageHeads {
    /// The headers of a message of `payload_len` bytes.
    ///
    /// # Panics
    /// As [`encode_message`] (chunk stream id, payload length).
    pub fn new(csid: u32, timestamp: u32, type_id: u8, stream_id: u32, payload_len: usize) -> Self {
        let len = check_args(DEFAULT_CHUNK_SIZE, csid, payload_len);
        let extended = timestamp >= EXTENDED_MARKER;
        let mut first = [0u8; 18];
        let first_len = {
            let mut b = &mut first[..];
            put_basic_header(&mut b, 0, csid);
            put_u24(&mut b, timestamp.min(EXTENDED_MARKER));
            put_u24(&mut b, len);
            b.put_u8(type_id);
            b.put_u32_le(stream_id);
            if extended {
                b.put_u32(timestamp);
            }
            18 - b.len()
        };
        let (continuation, continuation_len) =
            continuation_header(csid, extended.then_some(timestamp));
        MessageHeads {
            first,
            first_len: first_len as u8,
            continuation,
            continuation_len: continuation_len as u8,
        }
    }

    /// The first chunk's header (fmt 0).
    pub fn first(&self) -> &[u8] {
        &self.first[..self.first_len as usize]
    }

    /// A continuation chunk's header (fmt 3, with the extended timestamp when there is one).
    pub fn continuation(&self) -> &[u8] {
        &self.continuation[..self.continuation_len as usize]
    }
}

/// Exact number of bytes encode_message will append (to reserve once).
///
/// # Panics
/// If `chunk_size` is 0.
pub fn encoded_len(chunk_size: u32, csid: u32, timestamp: u32, payload_len: usize) -> usize {
    assert!(chunk_size > 0, "RTMP chunk size must be at least 1");
    chunked_len(
        chunk_size,
        csid,
        11,
        timestamp >= EXTENDED_MARKER,
        payload_len,
    )
}

/// What the writer last sent on one chunk stream id.
#[derive(Debug, Clone, Copy)]
struct SentHeader {
    timestamp: u32,
    /// Timestamp field as sent (absolute after fmt 0, delta after fmt 1/2); a
    /// fmt-3 message start makes the peer add it again.
    ts_field: u32,
    len: u32,
    type_id: u8,
    stream_id: u32,
}

/// Stateful header-compressing writer (fmt 1/2/3 when stream id / length+type /
/// timestamp delta repeat), like a real encoder such as ffmpeg sends; used by
/// client roles (load generator, forward peers) and tests.
///
/// Its output depends on everything written before, so it suits one peer only;
/// use [`encode_message`] for bytes shared between players.
#[derive(Debug)]
pub struct ChunkWriter {
    chunk_size: u32,
    sent: CsidMap<SentHeader>,
}

impl Default for ChunkWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkWriter {
    /// A writer at the default chunk size of 128 with no header history.
    pub fn new() -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            sent: CsidMap::default(),
        }
    }

    /// Chunk size for later writes; the caller must also send Set Chunk Size to the peer.
    ///
    /// # Panics
    /// If `size` is 0 or above 0x7FFFFFFF.
    pub fn set_chunk_size(&mut self, size: u32) {
        assert!(
            (1..=MAX_PROTOCOL_CHUNK_SIZE).contains(&size),
            "RTMP chunk size {size} outside 1..={MAX_PROTOCOL_CHUNK_SIZE}"
        );
        self.chunk_size = size;
    }

    /// Current outgoing chunk size, in bytes.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Someone else wrote on `csid` (a relay forwarding another sender's chunks on it): the
    /// peer's last header there is not this writer's, so the next message on it is fmt 0.
    pub fn forget(&mut self, csid: u32) {
        self.sent.remove(csid);
    }

    /// Appends one message, choosing the smallest header the peer can resolve
    /// from what was last sent on `csid`.
    ///
    /// # Panics
    /// If `csid` is outside 2..=65599 or the payload is longer than 0xFFFFFF bytes.
    pub fn write(
        &mut self,
        out: &mut BytesMut,
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        payload: &[u8],
    ) {
        let len = check_args(self.chunk_size, csid, payload.len());
        // fmt 0 is required for a new chunk stream, a new message stream and
        // whenever the timestamp goes backwards.
        let (fmt, ts_field) = match self.sent.get(csid) {
            Some(prev) if prev.stream_id == stream_id && timestamp >= prev.timestamp => {
                let delta = timestamp - prev.timestamp;
                if prev.len != len || prev.type_id != type_id {
                    (1, delta)
                } else if delta != prev.ts_field {
                    (2, delta)
                } else {
                    (3, delta)
                }
            }
            _ => (0u8, timestamp),
        };
        let extended = ts_field >= EXTENDED_MARKER;
        let header_len = [11, 7, 3, 0][usize::from(fmt)];
        out.reserve(chunked_len(
            self.chunk_size,
            csid,
            header_len,
            extended,
            payload.len(),
        ));

        put_basic_header(out, fmt, csid);
        if fmt <= 2 {
            put_u24(out, ts_field.min(EXTENDED_MARKER));
        }
        if fmt <= 1 {
            put_u24(out, len);
            out.put_u8(type_id);
        }
        if fmt == 0 {
            out.put_u32_le(stream_id);
        }
        if extended {
            out.put_u32(ts_field);
        }
        let (continuation, n) = continuation_header(csid, extended.then_some(ts_field));
        put_payload(out, self.chunk_size, &continuation[..n], payload);

        self.sent.insert(
            csid,
            SentHeader {
                timestamp,
                ts_field,
                len,
                type_id,
                stream_id,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{decode, drain, msg, pattern, Rng};
    use super::super::{ChunkDecoder, RawMessage, CONTROL_CSID, MSG_SET_CHUNK_SIZE};
    use super::*;

    fn encode(chunk_size: u32, m: &RawMessage) -> BytesMut {
        let mut out = BytesMut::new();
        encode_message(
            &mut out,
            chunk_size,
            m.csid,
            m.timestamp,
            m.type_id,
            m.stream_id,
            &m.payload,
        );
        out
    }

    /// Decodes `bytes` encoded at `chunk_size` after announcing that size to the decoder.
    fn decode_at(chunk_size: u32, bytes: &[u8]) -> Vec<RawMessage> {
        let mut all = BytesMut::new();
        encode_message(
            &mut all,
            128,
            CONTROL_CSID,
            0,
            MSG_SET_CHUNK_SIZE,
            0,
            &chunk_size.to_be_bytes(),
        );
        all.extend_from_slice(bytes);
        let mut got = decode(&all);
        assert_eq!(got.remove(0).type_id, MSG_SET_CHUNK_SIZE);
        got
    }

    /// First-byte fmt of each chunk header the writer produced, given where each write started.
    fn fmt_at(out: &[u8], at: usize) -> u8 {
        out[at] >> 6
    }

    #[test]
    fn encode_message_single_chunk_bytes() {
        let out = encode(128, &msg(3, 0x12_3456, 9, 1, b"hello"));
        assert_eq!(
            &out[..],
            &[
                0x03, 0x12, 0x34, 0x56, 0x00, 0x00, 0x05, 0x09, 0x01, 0x00, 0x00, 0x00, b'h', b'e',
                b'l', b'l', b'o'
            ]
        );
    }

    #[test]
    fn encode_message_continuations_use_fmt3() {
        let out = encode(4, &msg(5, 7, 8, 0x0403_0201, b"0123456789"));
        assert_eq!(
            &out[..],
            &[
                0x05, 0, 0, 7, 0, 0, 10, 8, 0x01, 0x02, 0x03, 0x04, b'0', b'1', b'2', b'3', 0xC5,
                b'4', b'5', b'6', b'7', 0xC5, b'8', b'9'
            ]
        );
    }

    #[test]
    fn encode_message_repeats_extended_timestamp_on_every_continuation() {
        let out = encode(4, &msg(5, 0x0100_0000, 8, 1, b"0123456789"));
        assert_eq!(
            &out[..],
            &[
                0x05, 0xFF, 0xFF, 0xFF, 0, 0, 10, 8, 1, 0, 0, 0, 0x01, 0, 0, 0, b'0', b'1', b'2',
                b'3', 0xC5, 0x01, 0, 0, 0, b'4', b'5', b'6', b'7', 0xC5, 0x01, 0, 0, 0, b'8', b'9'
            ]
        );
    }

    #[test]
    fn encode_message_timestamp_boundary() {
        // 0xFFFFFE still fits the 3-byte field; 0xFFFFFF does not.
        let out = encode(128, &msg(3, 0xFF_FFFE, 8, 1, b"x"));
        assert_eq!(&out[1..4], &[0xFF, 0xFF, 0xFE]);
        assert_eq!(out.len(), 13);
        let out = encode(128, &msg(3, 0xFF_FFFF, 8, 1, b"x"));
        assert_eq!(&out[1..4], &[0xFF, 0xFF, 0xFF]);
        assert_eq!(&out[12..16], &[0x00, 0xFF, 0xFF, 0xFF]);
        assert_eq!(out.len(), 17);
    }

    #[test]
    fn encode_message_basic_header_forms() {
        for (csid, want) in [
            (2u32, &[0x02u8][..]),
            (63, &[0x3F]),
            (64, &[0x00, 0x00]),
            (319, &[0x00, 0xFF]),
            (320, &[0x01, 0x00, 0x01]),
            (65_599, &[0x01, 0xFF, 0xFF]),
        ] {
            let out = encode(1, &msg(csid, 0, 8, 1, b"ab"));
            let n = want.len();
            assert_eq!(&out[..n], want, "csid {csid}");
            // The continuation header after the 1-byte first piece.
            let cont = n + 11 + 1;
            assert_eq!(out[cont], want[0] | 0xC0, "csid {csid}");
            assert_eq!(&out[cont + 1..cont + n], &want[1..]);
            assert_eq!(decode_at(1, &out), vec![msg(csid, 0, 8, 1, b"ab")]);
        }
    }

    #[test]
    fn encode_message_appends_to_existing_bytes() {
        let mut out = BytesMut::from(&b"keep"[..]);
        encode_message(&mut out, 128, 3, 0, 8, 1, b"x");
        assert_eq!(&out[..4], b"keep");
        assert_eq!(out.len(), 4 + 13);
    }

    #[test]
    fn round_trip_matrix_and_encoded_len() {
        let csids = [3u32, 64, 320, 65_599];
        let timestamps = [0u32, 0xFF_FFFE, 0xFF_FFFF, 0x0100_0000, u32::MAX];
        let mut case = 0usize;
        for chunk_size in [1u32, 128, 4096] {
            let cs = chunk_size as usize;
            for len in [0usize, 1, cs, cs + 1, 100_000] {
                for ts in timestamps {
                    let csid = csids[case % csids.len()];
                    case += 1;
                    let m = msg(csid, ts, 9, 1, &pattern(len, case as u8));
                    let out = encode(chunk_size, &m);
                    assert_eq!(
                        out.len(),
                        encoded_len(chunk_size, csid, ts, len),
                        "encoded_len cs {chunk_size} len {len} ts {ts:#x}"
                    );
                    assert_eq!(
                        decode_at(chunk_size, &out),
                        vec![m],
                        "cs {chunk_size} len {len} ts {ts:#x}"
                    );
                }
            }
        }
    }

    #[test]
    fn encode_message_output_is_context_free() {
        // The same message bytes decode the same whatever came before them.
        let shared = encode(128, &msg(6, 5000, 9, 1, &pattern(300, 1)));
        let mut a = BytesMut::new();
        encode_message(&mut a, 128, 6, 4000, 9, 1, &pattern(300, 2));
        a.extend_from_slice(&shared);
        let got = decode(&a);
        assert_eq!(got[1], msg(6, 5000, 9, 1, &pattern(300, 1)));
        assert_eq!(decode(&shared), vec![got[1].clone()]);
    }

    #[test]
    fn writer_picks_the_smallest_header() {
        let mut w = ChunkWriter::new();
        let mut out = BytesMut::new();
        let writes: [(u32, u32, u8, u32, usize); 9] = [
            // csid, ts, type, stream, len
            (4, 0, 8, 1, 10),   // new chunk stream: fmt 0
            (4, 20, 8, 1, 10),  // new delta, same len/type: fmt 2
            (4, 40, 8, 1, 10),  // same delta: fmt 3
            (4, 60, 8, 1, 10),  // fmt 3 again
            (4, 80, 8, 1, 12),  // new length: fmt 1
            (4, 100, 9, 1, 12), // new type: fmt 1
            (4, 120, 9, 2, 12), // new message stream: fmt 0
            (4, 50, 9, 2, 12),  // timestamp goes back: fmt 0
            (5, 50, 9, 2, 12),  // other chunk stream: fmt 0
        ];
        let want_fmt = [0u8, 2, 3, 3, 1, 1, 0, 0, 0];
        let want_len = [12usize, 4, 1, 1, 8, 8, 12, 12, 12];
        let mut expected = Vec::new();
        for (i, &(csid, ts, type_id, sid, len)) in writes.iter().enumerate() {
            let payload = pattern(len, i as u8);
            let at = out.len();
            w.write(&mut out, csid, ts, type_id, sid, &payload);
            assert_eq!(fmt_at(&out, at), want_fmt[i], "write {i}");
            assert_eq!(out.len() - at, want_len[i] + len, "write {i}");
            expected.push(msg(csid, ts, type_id, sid, &payload));
        }
        assert_eq!(decode(&out), expected);
    }

    #[test]
    fn writer_uses_fmt3_after_fmt0_when_delta_equals_first_timestamp() {
        let mut w = ChunkWriter::new();
        let mut out = BytesMut::new();
        w.write(&mut out, 4, 40, 8, 1, b"a");
        let at = out.len();
        w.write(&mut out, 4, 80, 8, 1, b"b");
        assert_eq!(&out[at..], &[0xC4, b'b']);
        assert_eq!(
            decode(&out),
            vec![msg(4, 40, 8, 1, b"a"), msg(4, 80, 8, 1, b"b")]
        );
    }

    #[test]
    fn writer_continuations_are_fmt3() {
        let mut w = ChunkWriter::new();
        let mut out = BytesMut::new();
        let p = pattern(300, 4);
        w.write(&mut out, 6, 0, 9, 1, &p);
        assert_eq!(out.len(), 12 + 300 + 2);
        assert_eq!(out[12 + 128], 0xC6);
        assert_eq!(out[12 + 128 + 1 + 128], 0xC6);
        let at = out.len();
        w.write(&mut out, 6, 33, 9, 1, &p);
        assert_eq!(out[at], 0x86, "same length and type: fmt 2");
        assert_eq!(out[at + 4 + 128], 0xC6);
        assert_eq!(
            decode(&out),
            vec![msg(6, 0, 9, 1, &p), msg(6, 33, 9, 1, &p)]
        );
    }

    #[test]
    fn writer_extended_delta_is_repeated_on_fmt3() {
        let big = 0x0200_0000;
        let mut w = ChunkWriter::new();
        w.set_chunk_size(4);
        let mut out = BytesMut::new();
        w.write(&mut out, 4, 0, 8, 1, b"abcdef");
        let at2 = out.len();
        w.write(&mut out, 4, big, 8, 1, b"ghijkl");
        // fmt 2 with the marker, the extended delta, then a fmt 3 continuation repeating it.
        assert_eq!(
            &out[at2..],
            &[
                0x84, 0xFF, 0xFF, 0xFF, 0x02, 0, 0, 0, b'g', b'h', b'i', b'j', 0xC4, 0x02, 0, 0, 0,
                b'k', b'l'
            ]
        );
        let at3 = out.len();
        w.write(&mut out, 4, 2 * big, 8, 1, b"mnopqr");
        assert_eq!(
            &out[at3..],
            &[0xC4, 0x02, 0, 0, 0, b'm', b'n', b'o', b'p', 0xC4, 0x02, 0, 0, 0, b'q', b'r']
        );
        assert_eq!(
            decode_at(4, &out),
            [
                msg(4, 0, 8, 1, b"abcdef"),
                msg(4, big, 8, 1, b"ghijkl"),
                msg(4, 2 * big, 8, 1, b"mnopqr"),
            ]
        );
    }

    #[test]
    fn writer_handles_large_absolute_and_wrapping_timestamps() {
        let mut w = ChunkWriter::new();
        let mut out = BytesMut::new();
        let stamps = [
            u32::MAX - 5,
            u32::MAX,
            10,
            0xFF_FFFF,
            0x1FF_FFFE,
            0x1FF_FFFE,
        ];
        let mut expected = Vec::new();
        for (i, &ts) in stamps.iter().enumerate() {
            let p = pattern(200, i as u8);
            w.write(&mut out, 7, ts, 9, 1, &p);
            expected.push(msg(7, ts, 9, 1, &p));
        }
        assert_eq!(decode(&out), expected);
    }

    #[test]
    fn writer_chunk_size_change_round_trips() {
        let mut w = ChunkWriter::new();
        assert_eq!(w.chunk_size(), DEFAULT_CHUNK_SIZE);
        let mut out = BytesMut::new();
        let p = pattern(5000, 1);
        w.write(&mut out, 6, 0, 9, 1, &p);
        w.write(&mut out, 2, 0, 1, 0, &4096u32.to_be_bytes());
        w.set_chunk_size(4096);
        assert_eq!(w.chunk_size(), 4096);
        let at = out.len();
        w.write(&mut out, 6, 40, 9, 1, &p);
        assert_eq!(out.len() - at, 4 + 5000 + 1, "two chunks at the new size");
        let got = decode(&out);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], msg(6, 0, 9, 1, &p));
        assert_eq!(got[2], msg(6, 40, 9, 1, &p));
    }

    #[test]
    fn writer_random_interleaving_round_trips_in_random_pieces() {
        for seed in 0..20 {
            let mut rng = Rng::new(seed);
            let mut w = ChunkWriter::new();
            let mut out = BytesMut::new();
            let mut expected = Vec::new();
            let mut clocks = [0u32; 4];
            let csids = [3u32, 4, 300, 4000];
            for i in 0..200 {
                let k = rng.below(csids.len());
                // Mostly steady deltas so fmt 3 shows up, sometimes jumps.
                clocks[k] = clocks[k].wrapping_add(match rng.below(10) {
                    0 => rng.next_u64() as u32,
                    1..=2 => rng.below(100) as u32,
                    _ => 23,
                });
                let len = if rng.below(3) == 0 {
                    rng.below(700)
                } else {
                    40
                };
                let type_id = 8 + (rng.below(4) == 0) as u8;
                let p = pattern(len, i as u8);
                w.write(&mut out, csids[k], clocks[k], type_id, 1, &p);
                expected.push(msg(csids[k], clocks[k], type_id, 1, &p));
            }
            let mut dec = ChunkDecoder::default();
            let mut got = Vec::new();
            let mut pos = 0;
            while pos < out.len() {
                let n = (1 + rng.below(500)).min(out.len() - pos);
                dec.push(&out[pos..pos + n]);
                pos += n;
                got.extend(drain(&mut dec).unwrap());
            }
            assert_eq!(got, expected, "seed {seed}");
        }
    }

    #[test]
    fn writer_output_is_smaller_than_context_free_output() {
        let mut w = ChunkWriter::new();
        let mut compressed = BytesMut::new();
        let mut plain = BytesMut::new();
        for i in 0..50u32 {
            w.write(&mut compressed, 4, i * 23, 8, 1, &[0xAF; 20]);
            encode_message(&mut plain, 128, 4, i * 23, 8, 1, &[0xAF; 20]);
        }
        assert_eq!(decode(&compressed), decode(&plain));
        assert!(compressed.len() < plain.len());
    }

    #[test]
    #[should_panic(expected = "chunk size")]
    fn zero_chunk_size_panics() {
        encode_message(&mut BytesMut::new(), 0, 3, 0, 8, 1, b"x");
    }

    #[test]
    #[should_panic(expected = "chunk stream id")]
    fn reserved_csid_panics() {
        encode_message(&mut BytesMut::new(), 128, 1, 0, 8, 1, b"x");
    }

    #[test]
    #[should_panic(expected = "chunk stream id")]
    fn csid_above_max_panics() {
        ChunkWriter::new().write(&mut BytesMut::new(), 65_600, 0, 8, 1, b"x");
    }

    #[test]
    #[should_panic(expected = "chunk size")]
    fn writer_zero_chunk_size_panics() {
        ChunkWriter::new().set_chunk_size(0);
    }
}
