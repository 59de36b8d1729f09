//! Chunk stream decoder: received bytes in, whole messages out.

use super::csid_map::CsidMap;
use super::encoder::continuation_header;
use super::plan::{chunk_control, plan_chunk, ChunkPlan, Control, Prev};

use bytes::{Buf, Bytes, BytesMut};

use super::{ChunkError, DecoderLimits, HeaderState, RawMessage, DEFAULT_CHUNK_SIZE};

/// What one chunk stream id remembers between chunks.
#[derive(Debug, Default)]
struct ChunkStream {
    /// The current (or last) message's header: what fmt 1/2/3 chunks build on (a fmt-3 chunk
    /// that starts a new message adds `ts_field` again, spec 5.3.1.2.4).
    header: HeaderState,
    /// Payload bytes still owed by the message in progress; 0 between messages.
    remaining: u32,
    /// Reassembly buffer of a message spanning several chunks.
    partial: BytesMut,
}

impl ChunkStream {
    /// What the next chunk's header builds on.
    fn prev(&self) -> Prev {
        Prev {
            header: self.header,
            remaining: self.remaining,
        }
    }

    fn drop_partial(&mut self) {
        self.remaining = 0;
        self.partial = BytesMut::new();
    }
}

/// Outcome of looking for an optional repeated extended timestamp.
pub(super) enum ExtPeek {
    NeedMore,
    Present,
    Absent,
}

/// Decides whether a fmt-3 chunk carries the repeated extended timestamp.
/// Some encoders omit it, so the bytes only count as the field when they match.
pub(super) fn peek_extended(rest: &[u8], expected: u32) -> ExtPeek {
    let want = expected.to_be_bytes();
    let n = rest.len().min(4);
    if rest[..n] != want[..n] {
        ExtPeek::Absent
    } else if n < 4 {
        ExtPeek::NeedMore
    } else {
        ExtPeek::Present
    }
}

pub(super) fn be24(b: &[u8]) -> u32 {
    u32::from_be_bytes([0, b[0], b[1], b[2]])
}

pub(super) fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Reassembles RTMP messages from a chunk stream received in arbitrary pieces.
#[derive(Debug)]
pub struct ChunkDecoder {
    buf: BytesMut,
    limits: DecoderLimits,
    chunk_size: u32,
    streams: CsidMap<ChunkStream>,
    /// First error seen; the stream cannot be resynchronised after one.
    failed: Option<ChunkError>,
    /// Receive buffers allocated so far.
    #[cfg(test)]
    rebuffers: usize,
}

/// Receive buffers above this capacity are given back once mostly spent.
const SHRINK_ABOVE: usize = 8 * 1024;
/// A spent receive buffer with less room than this is not kept for the next read.
const KEEP_SPARE: usize = 1024;
/// Smallest receive buffer: small reads (one message each, without merged reads) share one.
const MIN_RECEIVE_BUFFER: usize = 4 * 1024;

impl Default for ChunkDecoder {
    fn default() -> Self {
        Self::new(DecoderLimits::default())
    }
}

impl ChunkDecoder {
    /// A decoder at the default chunk size of 128, bounded by `limits`.
    pub fn new(limits: DecoderLimits) -> Self {
        Self {
            buf: BytesMut::new(),
            limits,
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: CsidMap::default(),
            failed: None,
            #[cfg(test)]
            rebuffers: 0,
        }
    }

    /// Append received bytes (any split, 1 byte at a time must work).
    ///
    /// Bytes that do not fit what is left of the current receive buffer go into a fresh one
    /// sized to them (not the doubling `BytesMut` would do): whole-chunk payloads are slices of
    /// these buffers and the GOP cache keeps them, so a buffer's spare room and the bytes before
    /// a keyframe stay allocated as long as the GOP. Measured with 200 publishers: 26 KiB per
    /// stream pinned that way with 64 KiB buffers.
    pub fn push(&mut self, data: &[u8]) {
        if self.buf.capacity() - self.buf.len() < data.len() {
            self.rebuffer(data.len());
        }
        self.buf.extend_from_slice(data);
    }

    /// Move what is buffered into a new buffer with room for `more` bytes.
    fn rebuffer(&mut self, more: usize) {
        let len = self.buf.len();
        // A large chunk still arriving in small pieces grows geometrically, so pushing it a
        // byte at a time stays linear.
        let cap = (len + more).max(MIN_RECEIVE_BUFFER).max(2 * len);
        #[cfg(test)]
        {
            self.rebuffers += 1;
        }
        let mut fresh = BytesMut::with_capacity(cap);
        fresh.extend_from_slice(&self.buf);
        self.buf = fresh;
    }

    /// Next complete message, or None when more bytes are needed.
    ///
    /// Set Chunk Size and Abort are applied here, before the next chunk is
    /// parsed, and still returned so the session can log them. After an error
    /// every later call returns the same error: the stream is out of sync.
    pub fn next_message(&mut self) -> Result<Option<RawMessage>, ChunkError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let result = self.decode();
        if let Err(err) = &result {
            self.failed = Some(err.clone());
        }
        result
    }

    /// The peer's current chunk size, in bytes.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Give back a receive buffer much larger than what it still holds (the tail of a chunk
    /// that has not all arrived): a copy of that tail replaces it. Without this a publisher kept
    /// ~28 KiB of spent receive buffers (heaptrack, 200 publishers at 100 ms merged reads).
    ///
    /// A spent buffer with little room left is let go of at once: what the messages still
    /// hold of it is theirs to free. Kept, it stayed allocated until the next read even when
    /// nothing else held it (no GOP cache, no players): ~7 KiB per publisher at 100 ms merged
    /// reads.
    pub fn shrink(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() < KEEP_SPARE {
            self.buf = BytesMut::new();
        } else if self.buf.capacity() > SHRINK_ABOVE && self.buf.len() <= self.buf.capacity() / 4 {
            self.buf = BytesMut::from(&self.buf[..]);
        }
    }

    /// Bytes received but not yet consumed by a complete chunk.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> DecoderLimits {
        self.limits
    }

    /// Nothing buffered and no message half received: the stream may be handed over here.
    pub fn is_idle(&self) -> bool {
        self.buf.is_empty() && self.streams.values().all(|s| s.remaining == 0)
    }

    /// Each chunk stream's last header, for whoever reads the stream on from here.
    pub fn header_states(&self) -> Vec<(u32, HeaderState)> {
        self.streams
            .iter()
            .map(|(&csid, s)| (csid, s.header))
            .collect()
    }

    fn decode(&mut self) -> Result<Option<RawMessage>, ChunkError> {
        while let Some(plan) = self.plan()? {
            if let Some(msg) = self.commit(plan) {
                self.apply_control(&msg)?;
                return Ok(Some(msg));
            }
        }
        Ok(None)
    }

    /// Parses the chunk at the front of the buffer (see [`plan_chunk`]).
    fn plan(&self) -> Result<Option<ChunkPlan>, ChunkError> {
        let prev = |csid| self.streams.get(csid).map(ChunkStream::prev);
        plan_chunk(
            &self.buf,
            prev,
            self.streams.len(),
            &self.limits,
            self.chunk_size,
        )
    }

    /// Consumes a planned chunk; returns the message it completes, if any.
    fn commit(&mut self, plan: ChunkPlan) -> Option<RawMessage> {
        let stream = self.streams.entry_or_default(plan.csid);
        self.buf.advance(plan.header_len);

        if let Some(h) = plan.start {
            // A fresh header while a message is still open means the sender gave
            // up on it; drop it as an Abort would rather than mix two payloads.
            stream.drop_partial();
            stream.header = h;

            if plan.payload_len == h.len as usize {
                // Whole message in one chunk: hand out a slice of the receive
                // buffer, no copy.
                let payload = if h.len == 0 {
                    Bytes::new()
                } else {
                    self.buf.split_to(plan.payload_len).freeze()
                };
                return Some(message(plan.csid, stream, payload));
            }
            if !h.extended {
                if let Some(payload) =
                    reassemble_in_place(&mut self.buf, plan.csid, h.len as usize, plan.payload_len)
                {
                    return Some(message(plan.csid, stream, payload));
                }
            }
            // len <= max_message_len was checked when the header was parsed. Reserve what
            // has arrived plus a little, not the announced length: 64 chunk streams each
            // announcing 8 MiB must not reserve 512 MiB before any of it is sent.
            let first = (h.len as usize).min(plan.payload_len.max(64 * 1024));
            stream.partial = BytesMut::with_capacity(first);
            stream.remaining = h.len;
        }

        stream
            .partial
            .extend_from_slice(&self.buf[..plan.payload_len]);
        self.buf.advance(plan.payload_len);
        stream.remaining -= plan.payload_len as u32;
        if stream.remaining > 0 {
            return None;
        }
        let payload = std::mem::take(&mut stream.partial).freeze();
        Some(message(plan.csid, stream, payload))
    }

    /// Applies chunk-layer protocol control before the next chunk is parsed.
    fn apply_control(&mut self, msg: &RawMessage) -> Result<(), ChunkError> {
        match chunk_control(msg.type_id, &msg.payload, &self.limits)? {
            Some(Control::ChunkSize(size)) => self.chunk_size = size,
            Some(Control::Abort(csid)) => {
                if let Some(stream) = self.streams.get_mut(csid) {
                    stream.drop_partial();
                }
            }
            None => {}
        }
        Ok(())
    }
}

/// A message whose chunks all arrived in one read, back to back (no other chunk stream's
/// chunks between them, no extended timestamps): its payload pieces are moved together over
/// the continuation headers inside the receive buffer and handed out as one slice of it.
/// `buf` starts at the first chunk's payload, `first` bytes long (the chunk size).
///
/// Why: reassembled into a buffer of its own, such a message was stored twice for as long as
/// the GOP cache kept the frames sharing its receive buffer (its chunks stayed in that buffer):
/// 8-19 KiB per GOP of a 0.5 Mbit/s stream at chunk size 4096.
fn reassemble_in_place(buf: &mut BytesMut, csid: u32, len: usize, first: usize) -> Option<Bytes> {
    if first == 0 || len <= first {
        return None;
    }
    let (basic, hb) = continuation_header(csid, None);
    let basic = &basic[..hb];
    let pieces = (len - first).div_ceil(first);
    if buf.len() < len + pieces * hb {
        return None;
    }
    for i in 1..=pieces {
        let at = i * first + (i - 1) * hb;
        if &buf[at..at + hb] != basic {
            return None;
        }
    }
    for i in 1..=pieces {
        let from = i * (first + hb);
        let n = first.min(len - i * first);
        buf.copy_within(from..from + n, i * first);
    }
    let payload = buf.split_to(len).freeze();
    buf.advance(pieces * hb);
    Some(payload)
}

fn message(csid: u32, stream: &ChunkStream, payload: Bytes) -> RawMessage {
    RawMessage {
        csid,
        timestamp: stream.header.timestamp,
        type_id: stream.header.type_id,
        stream_id: stream.header.stream_id,
        payload,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{decode, drain, msg, pattern, Rng};
    use super::*;

    // Hand-built chunk pieces, written out byte by byte so they do not rely on
    // the encoder under test.

    fn basic(fmt: u8, csid: u32) -> Vec<u8> {
        let f = fmt << 6;
        match csid {
            2..=63 => vec![f | csid as u8],
            64..=319 => vec![f, (csid - 64) as u8],
            _ => {
                let rel = csid - 64;
                vec![f | 1, (rel & 0xFF) as u8, (rel >> 8) as u8]
            }
        }
    }

    fn u24(v: u32) -> [u8; 3] {
        [(v >> 16) as u8, (v >> 8) as u8, v as u8]
    }

    /// 3-byte timestamp field plus the extended field when needed.
    fn ts_fields(v: u32) -> (Vec<u8>, Vec<u8>) {
        if v >= 0xFF_FFFF {
            (vec![0xFF, 0xFF, 0xFF], v.to_be_bytes().to_vec())
        } else {
            (u24(v).to_vec(), Vec::new())
        }
    }

    fn h0(csid: u32, ts: u32, len: u32, type_id: u8, sid: u32) -> Vec<u8> {
        let (field, ext) = ts_fields(ts);
        let mut v = basic(0, csid);
        v.extend_from_slice(&field);
        v.extend_from_slice(&u24(len));
        v.push(type_id);
        v.extend_from_slice(&sid.to_le_bytes());
        v.extend_from_slice(&ext);
        v
    }

    fn h1(csid: u32, delta: u32, len: u32, type_id: u8) -> Vec<u8> {
        let (field, ext) = ts_fields(delta);
        let mut v = basic(1, csid);
        v.extend_from_slice(&field);
        v.extend_from_slice(&u24(len));
        v.push(type_id);
        v.extend_from_slice(&ext);
        v
    }

    fn h2(csid: u32, delta: u32) -> Vec<u8> {
        let (field, ext) = ts_fields(delta);
        let mut v = basic(2, csid);
        v.extend_from_slice(&field);
        v.extend_from_slice(&ext);
        v
    }

    fn h3(csid: u32) -> Vec<u8> {
        basic(3, csid)
    }

    fn h3x(csid: u32, ext: u32) -> Vec<u8> {
        let mut v = basic(3, csid);
        v.extend_from_slice(&ext.to_be_bytes());
        v
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn set_chunk_size(value: u32) -> Vec<u8> {
        cat(&[&h0(2, 0, 4, 1, 0), &value.to_be_bytes()])
    }

    fn abort(csid: u32) -> Vec<u8> {
        cat(&[&h0(2, 0, 4, 2, 0), &csid.to_be_bytes()])
    }

    fn limits(
        max_chunk_size: u32,
        max_message_len: u32,
        max_chunk_streams: usize,
    ) -> DecoderLimits {
        DecoderLimits {
            max_chunk_size,
            max_message_len,
            max_chunk_streams,
        }
    }

    fn decode_err(bytes: &[u8], limits: DecoderLimits) -> ChunkError {
        let mut dec = ChunkDecoder::new(limits);
        dec.push(bytes);
        drain(&mut dec).expect_err("stream must be rejected")
    }

    #[test]
    fn fmt0_single_chunk_literal_bytes() {
        let bytes = [
            0x03, 0x00, 0x00, 0x64, 0x00, 0x00, 0x05, 0x14, 0x01, 0x00, 0x00, 0x00, b'h', b'e',
            b'l', b'l', b'o',
        ];
        assert_eq!(decode(&bytes), vec![msg(3, 100, 20, 1, b"hello")]);
    }

    #[test]
    fn fmt0_stream_id_is_little_endian() {
        let bytes = [0x04, 0, 0, 0, 0, 0, 1, 9, 0x01, 0x02, 0x03, 0x04, 0xAB];
        let got = decode(&bytes);
        assert_eq!(got[0].stream_id, 0x0403_0201);
        assert_eq!(&got[0].payload[..], &[0xAB]);
    }

    #[test]
    fn fmt0_then_fmt0_takes_absolute_timestamps_even_backwards() {
        let bytes = cat(&[&h0(4, 500, 1, 8, 1), b"a", &h0(4, 100, 2, 9, 3), b"bc"]);
        assert_eq!(
            decode(&bytes),
            vec![msg(4, 500, 8, 1, b"a"), msg(4, 100, 9, 3, b"bc")]
        );
    }

    #[test]
    fn fmt1_after_fmt0_adds_delta_and_replaces_length_and_type() {
        let bytes = cat(&[&h0(4, 1000, 3, 8, 1), b"abc", &h1(4, 20, 4, 9), b"defg"]);
        assert_eq!(
            decode(&bytes),
            vec![msg(4, 1000, 8, 1, b"abc"), msg(4, 1020, 9, 1, b"defg")]
        );
    }

    #[test]
    fn fmt2_after_fmt0_and_after_fmt1_keeps_length_type_and_stream() {
        let bytes = cat(&[
            &h0(5, 1000, 2, 8, 7),
            b"ab",
            &h2(5, 33),
            b"cd",
            &h1(5, 1, 3, 9),
            b"efg",
            &h2(5, 10),
            b"hij",
        ]);
        assert_eq!(
            decode(&bytes),
            vec![
                msg(5, 1000, 8, 7, b"ab"),
                msg(5, 1033, 8, 7, b"cd"),
                msg(5, 1034, 9, 7, b"efg"),
                msg(5, 1044, 9, 7, b"hij"),
            ]
        );
    }

    #[test]
    fn fmt3_new_message_after_fmt2_repeats_the_delta() {
        let bytes = cat(&[
            &h0(4, 1000, 1, 8, 1),
            b"a",
            &h2(4, 20),
            b"b",
            &h3(4),
            b"c",
            &h3(4),
            b"d",
        ]);
        let ts: Vec<u32> = decode(&bytes).iter().map(|m| m.timestamp).collect();
        assert_eq!(ts, vec![1000, 1020, 1040, 1060]);
    }

    #[test]
    fn fmt3_new_message_after_fmt1_repeats_delta_length_and_type() {
        let bytes = cat(&[
            &h0(4, 0, 1, 8, 2),
            b"a",
            &h1(4, 25, 2, 9),
            b"bc",
            &h3(4),
            b"de",
        ]);
        assert_eq!(
            decode(&bytes),
            vec![
                msg(4, 0, 8, 2, b"a"),
                msg(4, 25, 9, 2, b"bc"),
                msg(4, 50, 9, 2, b"de")
            ]
        );
    }

    #[test]
    fn fmt3_new_message_after_fmt0_uses_its_timestamp_as_delta() {
        // Spec 5.3.1.2.4: the delta of a Type 3 chunk right after Type 0 is the
        // Type 0 timestamp.
        let bytes = cat(&[&h0(4, 40, 1, 8, 1), b"a", &h3(4), b"b"]);
        assert_eq!(
            decode(&bytes),
            vec![msg(4, 40, 8, 1, b"a"), msg(4, 80, 8, 1, b"b")]
        );
    }

    #[test]
    fn multi_chunk_messages_under_fmt0_fmt1_fmt2() {
        let p = pattern(300, 1);
        let q = pattern(129, 2);
        let r = pattern(129, 3);
        let bytes = cat(&[
            &h0(4, 10, 300, 9, 1),
            &p[..128],
            &h3(4),
            &p[128..256],
            &h3(4),
            &p[256..],
            &h1(4, 5, 129, 8),
            &q[..128],
            &h3(4),
            &q[128..],
            &h2(4, 7),
            &r[..128],
            &h3(4),
            &r[128..],
        ]);
        assert_eq!(
            decode(&bytes),
            vec![
                msg(4, 10, 9, 1, &p),
                msg(4, 15, 8, 1, &q),
                msg(4, 22, 8, 1, &r)
            ]
        );
    }

    #[test]
    fn message_of_exactly_chunk_size_is_one_chunk() {
        let p = pattern(128, 9);
        let bytes = cat(&[&h0(3, 0, 128, 20, 0), &p, &h0(3, 1, 1, 20, 0), b"z"]);
        let got = decode(&bytes);
        assert_eq!(got, vec![msg(3, 0, 20, 0, &p), msg(3, 1, 20, 0, b"z")]);
    }

    #[test]
    fn basic_header_boundaries_decode_with_continuations() {
        for csid in [2u32, 63, 64, 319, 320, 65_599] {
            let p = pattern(200, csid as u8);
            let bytes = cat(&[&h0(csid, 7, 200, 9, 1), &p[..128], &h3(csid), &p[128..]]);
            assert_eq!(decode(&bytes), vec![msg(csid, 7, 9, 1, &p)], "csid {csid}");
        }
        // Literal forms, independent of the test builders.
        let two = [0x00, 0xFF, 0, 0, 0, 0, 0, 1, 8, 0, 0, 0, 0, 0x42];
        assert_eq!(decode(&two)[0].csid, 319);
        let three = [0x01, 0x00, 0x01, 0, 0, 0, 0, 0, 1, 8, 0, 0, 0, 0, 0x42];
        assert_eq!(decode(&three)[0].csid, 320);
        let max = [0x01, 0xFF, 0xFF, 0, 0, 0, 0, 0, 1, 8, 0, 0, 0, 0, 0x42];
        assert_eq!(decode(&max)[0].csid, 65_599);
    }

    #[test]
    fn three_byte_form_may_carry_a_small_csid() {
        // Not what an encoder should send, but unambiguous: 64 + 5.
        let bytes = [0x01, 0x05, 0x00, 0, 0, 0, 0, 0, 1, 8, 0, 0, 0, 0, 0x42];
        assert_eq!(decode(&bytes)[0].csid, 69);
        // The continuation may use the 2-byte form of the same id.
        let p = pattern(130, 4);
        let bytes = cat(&[
            &[0x01, 0x05, 0x00],
            &h0(69, 0, 130, 9, 1)[2..],
            &p[..128],
            &[0xC0, 0x05],
            &p[128..],
        ]);
        assert_eq!(decode(&bytes), vec![msg(69, 0, 9, 1, &p)]);
    }

    #[test]
    fn interleaved_chunk_streams_reassemble_independently() {
        let v = pattern(300, 1);
        let a = pattern(200, 2);
        let bytes = cat(&[
            &h0(6, 40, 300, 9, 1),
            &v[..128],
            &h0(4, 41, 200, 8, 1),
            &a[..128],
            &h0(2, 0, 4, 5, 0),
            &[0, 0, 0x10, 0],
            &h3(6),
            &v[128..256],
            &h3(4),
            &a[128..],
            &h3(6),
            &v[256..],
        ]);
        assert_eq!(
            decode(&bytes),
            vec![
                msg(2, 0, 5, 0, &[0, 0, 0x10, 0]),
                msg(4, 41, 8, 1, &a),
                msg(6, 40, 9, 1, &v),
            ]
        );
    }

    #[test]
    fn extended_timestamp_on_fmt0_single_chunk() {
        let bytes = [
            0x03, 0xFF, 0xFF, 0xFF, 0, 0, 2, 9, 1, 0, 0, 0, 0x01, 0x00, 0x00, 0x00, b'o', b'k',
        ];
        assert_eq!(decode(&bytes), vec![msg(3, 0x0100_0000, 9, 1, b"ok")]);
        // 0xFFFFFF itself is sent through the extended field.
        let bytes = cat(&[&h0(3, 0xFF_FFFF, 1, 9, 1), b"x"]);
        assert_eq!(bytes.len(), 12 + 4 + 1);
        assert_eq!(decode(&bytes), vec![msg(3, 0xFF_FFFF, 9, 1, b"x")]);
    }

    #[test]
    fn extended_timestamp_repeated_on_fmt3_continuations() {
        let ts = 0x1234_5678;
        let p = pattern(300, 5);
        let bytes = cat(&[
            &h0(4, ts, 300, 9, 1),
            &p[..128],
            &h3x(4, ts),
            &p[128..256],
            &h3x(4, ts),
            &p[256..],
        ]);
        assert_eq!(decode(&bytes), vec![msg(4, ts, 9, 1, &p)]);
    }

    #[test]
    fn extended_timestamp_omitted_on_fmt3_continuations() {
        let ts = 0x1234_5678;
        let p = vec![0xAA; 300];
        // One continuation repeats the field, the other omits it.
        let bytes = cat(&[
            &h0(4, ts, 300, 9, 1),
            &p[..128],
            &h3(4),
            &p[128..256],
            &h3x(4, ts),
            &p[256..],
        ]);
        assert_eq!(decode(&bytes), vec![msg(4, ts, 9, 1, &p)]);
    }

    #[test]
    fn omitted_extended_field_with_partly_matching_payload_is_payload() {
        let ts = 0x1234_5678;
        // Continuation payload starts like the field (0x12 0x34) and then differs.
        let mut p = pattern(130, 1);
        p[128] = 0x12;
        p[129] = 0x34;
        let bytes = cat(&[&h0(4, ts, 130, 9, 1), &p[..128], &h3(4), &p[128..]]);
        let mut dec = ChunkDecoder::default();
        dec.push(&bytes[..bytes.len() - 2]);
        assert_eq!(dec.next_message(), Ok(None));
        dec.push(&bytes[bytes.len() - 2..]);
        // Two payload bytes owed, both available, but the peek still needs to
        // see a mismatch or four matching bytes: they match so far.
        assert_eq!(dec.next_message(), Ok(None));
        assert_eq!(dec.buffered(), 3);
        // The next chunk's first byte settles it: the field was absent.
        dec.push(&cat(&[&h0(5, 0, 1, 8, 1), b"n"]));
        assert_eq!(dec.next_message(), Ok(Some(msg(4, ts, 9, 1, &p))));
        assert_eq!(dec.next_message(), Ok(Some(msg(5, 0, 8, 1, b"n"))));
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn extended_delta_on_fmt1_and_fmt2() {
        let big = 0x0100_0000;
        let bytes = cat(&[
            &h0(4, 10, 1, 8, 1),
            b"a",
            &h1(4, big, 2, 9),
            b"bc",
            &h2(4, big + 1),
            b"de",
        ]);
        assert_eq!(&bytes[13..17], &[0x44, 0xFF, 0xFF, 0xFF]);
        assert_eq!(
            decode(&bytes),
            vec![
                msg(4, 10, 8, 1, b"a"),
                msg(4, 10 + big, 9, 1, b"bc"),
                msg(4, 11 + 2 * big, 9, 1, b"de"),
            ]
        );
    }

    #[test]
    fn fmt3_after_extended_delta_repeats_it_with_or_without_the_field() {
        let big = 0x0200_0000;
        let p = pattern(200, 3);
        let bytes = cat(&[
            &h0(4, 0, 200, 9, 1),
            &p[..128],
            &h3(4),
            &p[128..],
            &h2(4, big),
            &p[..128],
            &h3x(4, big),
            &p[128..],
            // New message by fmt 3, field repeated.
            &h3x(4, big),
            &p[..128],
            &h3x(4, big),
            &p[128..],
            // New message by fmt 3, field omitted everywhere.
            &h3(4),
            &p[..128],
            &h3(4),
            &p[128..],
        ]);
        let ts: Vec<u32> = decode(&bytes).iter().map(|m| m.timestamp).collect();
        assert_eq!(ts, vec![0, big, 2 * big, 3 * big]);
        assert!(decode(&bytes).iter().all(|m| m.payload[..] == p[..]));
    }

    #[test]
    fn timestamps_wrap_past_u32_max() {
        let bytes = cat(&[
            &h0(4, 0xFFFF_FFF0, 1, 8, 1),
            b"a",
            &h2(4, 0x20),
            b"b",
            &h3(4),
            b"c",
            &h1(4, 0xFFFF_FFFF, 1, 8),
            b"d",
        ]);
        let ts: Vec<u32> = decode(&bytes).iter().map(|m| m.timestamp).collect();
        assert_eq!(ts, vec![0xFFFF_FFF0, 0x10, 0x30, 0x2F]);
    }

    #[test]
    fn zero_length_messages() {
        let bytes = cat(&[
            &h0(4, 5, 0, 18, 1),
            &h3(4),
            &h2(4, 1),
            &h1(4, 0, 1, 8),
            b"x",
        ]);
        assert_eq!(
            decode(&bytes),
            vec![
                msg(4, 5, 18, 1, b""),
                msg(4, 10, 18, 1, b""),
                msg(4, 11, 18, 1, b""),
                msg(4, 11, 8, 1, b"x"),
            ]
        );
    }

    #[test]
    fn set_chunk_size_applies_to_the_next_chunk() {
        let p = pattern(1000, 8);
        // Everything arrives at once: the 1000-byte message is a single chunk
        // only under the new size.
        let bytes = cat(&[&set_chunk_size(4096), &h0(6, 0, 1000, 9, 1), &p]);
        let mut dec = ChunkDecoder::default();
        dec.push(&bytes);
        assert_eq!(dec.chunk_size(), DEFAULT_CHUNK_SIZE);
        let first = dec.next_message().unwrap().unwrap();
        assert_eq!(first, msg(2, 0, 1, 0, &4096u32.to_be_bytes()));
        assert_eq!(dec.chunk_size(), 4096);
        assert_eq!(dec.next_message(), Ok(Some(msg(6, 0, 9, 1, &p))));
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn set_chunk_size_mid_message_changes_the_remaining_chunks() {
        let p = pattern(600, 2);
        let bytes = cat(&[
            &h0(6, 0, 600, 9, 1),
            &p[..128],
            &set_chunk_size(300),
            &h3(6),
            &p[128..428],
            &h3(6),
            &p[428..],
        ]);
        let got = decode(&bytes);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], msg(6, 0, 9, 1, &p));
    }

    #[test]
    fn set_chunk_size_ignores_top_bit() {
        let mut dec = ChunkDecoder::default();
        dec.push(&set_chunk_size(0x8000_1000));
        assert!(dec.next_message().unwrap().is_some());
        assert_eq!(dec.chunk_size(), 0x1000);
    }

    #[test]
    fn set_chunk_size_zero_is_rejected() {
        let d = DecoderLimits::default();
        assert_eq!(decode_err(&set_chunk_size(0), d), ChunkError::ChunkSizeZero);
        // 2^31 is 0 once the reserved bit is masked off.
        assert_eq!(
            decode_err(&set_chunk_size(0x8000_0000), d),
            ChunkError::ChunkSizeZero
        );
    }

    #[test]
    fn set_chunk_size_above_limit_is_rejected() {
        assert_eq!(
            decode_err(&set_chunk_size(0x7FFF_FFFF), DecoderLimits::default()),
            ChunkError::ChunkSizeTooLarge {
                size: 0x7FFF_FFFF,
                limit: 16_777_215
            }
        );
        let small = limits(1000, 1 << 20, 8);
        assert_eq!(
            decode_err(&set_chunk_size(1001), small),
            ChunkError::ChunkSizeTooLarge {
                size: 1001,
                limit: 1000
            }
        );
        let mut dec = ChunkDecoder::new(small);
        dec.push(&set_chunk_size(1000));
        assert!(dec.next_message().unwrap().is_some());
        assert_eq!(dec.chunk_size(), 1000);
    }

    #[test]
    fn short_control_messages_are_rejected() {
        let bytes = cat(&[&h0(2, 0, 3, 1, 0), &[0, 0, 1]]);
        assert_eq!(
            decode_err(&bytes, DecoderLimits::default()),
            ChunkError::ControlMessageTooShort { type_id: 1, len: 3 }
        );
        let bytes = h0(2, 0, 0, 2, 0);
        assert_eq!(
            decode_err(&bytes, DecoderLimits::default()),
            ChunkError::ControlMessageTooShort { type_id: 2, len: 0 }
        );
    }

    #[test]
    fn abort_drops_the_partial_message() {
        let p = pattern(300, 6);
        let bytes = cat(&[
            &h0(5, 7, 300, 9, 1),
            &p[..128],
            &abort(5),
            &h0(5, 9, 3, 8, 1),
            b"new",
        ]);
        assert_eq!(
            decode(&bytes),
            vec![
                msg(2, 0, 2, 0, &5u32.to_be_bytes()),
                msg(5, 9, 8, 1, b"new")
            ]
        );
    }

    #[test]
    fn fmt3_after_abort_starts_a_new_message_with_the_old_header() {
        let p = pattern(300, 6);
        let q = pattern(300, 7);
        let bytes = cat(&[
            &h0(5, 7, 300, 9, 1),
            &p[..128],
            &abort(5),
            &h3(5),
            &q[..128],
            &h3(5),
            &q[128..256],
            &h3(5),
            &q[256..],
        ]);
        let got = decode(&bytes);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1], msg(5, 14, 9, 1, &q));
    }

    #[test]
    fn abort_of_idle_or_unknown_csid_is_harmless() {
        let bytes = cat(&[
            &h0(5, 1, 1, 8, 1),
            b"a",
            &abort(5),
            &abort(77),
            &h3(5),
            b"b",
        ]);
        let got = decode(&bytes);
        assert_eq!(got.len(), 4);
        assert_eq!(got[3], msg(5, 2, 8, 1, b"b"));
    }

    #[test]
    fn new_header_mid_message_drops_the_partial_message() {
        let p = pattern(300, 1);
        let bytes = cat(&[
            &h0(4, 0, 300, 9, 1),
            &p[..128],
            &h1(4, 5, 2, 8),
            b"xy",
            &h0(4, 100, 300, 9, 1),
            &p[..128],
            &h1(4, 1, 2, 9),
            b"zw",
        ]);
        assert_eq!(
            decode(&bytes),
            vec![msg(4, 5, 8, 1, b"xy"), msg(4, 101, 9, 1, b"zw")]
        );
    }

    #[test]
    fn message_too_long_is_reported_from_the_header_alone() {
        let l = limits(65_536, 1000, 8);
        let mut dec = ChunkDecoder::new(l);
        dec.push(&h0(4, 0, 1001, 9, 1));
        assert_eq!(
            dec.next_message(),
            Err(ChunkError::MessageTooLong {
                len: 1001,
                limit: 1000
            })
        );
        // The limit itself is fine.
        let mut dec = ChunkDecoder::new(l);
        dec.push(&cat(&[&h0(4, 0, 1000, 9, 1), &pattern(128, 0)]));
        assert_eq!(dec.next_message(), Ok(None));
        // fmt 1 headers are checked too.
        let bytes = cat(&[&h0(4, 0, 1, 9, 1), b"a", &h1(4, 0, 0xFF_FFFF, 9)]);
        assert_eq!(
            decode_err(&bytes, DecoderLimits::default()),
            ChunkError::MessageTooLong {
                len: 0xFF_FFFF,
                limit: 8 * 1024 * 1024
            }
        );
    }

    #[test]
    fn shrink_lets_go_of_a_spent_buffer_and_keeps_one_with_room() {
        // A read of one 6000-byte message, all of it in one buffer the size of the read.
        let mut wire = BytesMut::new();
        super::super::encode_message(&mut wire, 128, 4, 0, 9, 1, &[7u8; 6000]);
        let mut dec = ChunkDecoder::default();
        dec.push(&wire);
        let msg = dec.next_message().unwrap().unwrap();
        assert!(!msg.payload.is_unique(), "a slice of the receive buffer");
        dec.shrink();
        assert!(
            msg.payload.is_unique(),
            "the decoder let go of the spent buffer"
        );
        // A small read leaves most of the smallest buffer for the next ones.
        let mut small = BytesMut::new();
        super::super::encode_message(&mut small, 128, 3, 0, 20, 0, &[7u8; 100]);
        let mut dec = ChunkDecoder::default();
        dec.push(&small);
        let msg = dec.next_message().unwrap().unwrap();
        dec.shrink();
        assert!(!msg.payload.is_unique(), "kept for the next read");
        dec.push(&small);
        let next = dec.next_message().unwrap().unwrap();
        assert_eq!(dec.rebuffers, 1, "small reads share one buffer");
        assert_eq!((msg.payload.len(), next.payload.len()), (100, 100));
    }

    #[test]
    fn shrink_gives_back_a_spent_buffer_and_keeps_the_partial_chunk() {
        let mut dec = ChunkDecoder::default();
        // A whole 100-byte message on csid 3, then the first 10 bytes of the next chunk header
        // and payload, pushed as one 40 KiB read would leave them.
        let mut wire = BytesMut::new();
        super::super::encode_message(&mut wire, 128, 3, 0, 20, 0, &[7u8; 100]);
        let whole = wire.len();
        super::super::encode_message(&mut wire, 128, 3, 0, 20, 0, &[8u8; 100]);
        let mut big = BytesMut::with_capacity(40 * 1024);
        big.extend_from_slice(&wire[..whole + 10]);
        dec.buf = big;
        let msg = dec.next_message().unwrap().unwrap();
        assert_eq!(msg.payload.len(), 100);
        assert!(dec.next_message().unwrap().is_none());
        dec.shrink();
        assert!(dec.buf.capacity() < 1024, "capacity {}", dec.buf.capacity());
        assert_eq!(dec.buffered(), 10);
        dec.push(&wire[whole + 10..]);
        assert_eq!(dec.next_message().unwrap().unwrap().payload[..], [8u8; 100]);
    }

    #[test]
    fn a_read_that_does_not_fit_gets_a_buffer_of_its_own_size() {
        let mut wire = BytesMut::new();
        for i in 0..60u8 {
            super::super::encode_message(&mut wire, 128, 4, u32::from(i), 8, 1, &[i; 100]);
        }
        let mut dec = ChunkDecoder::default();
        // Small reads share one minimum-sized buffer.
        dec.push(&wire[..100]);
        assert_eq!(dec.buf.capacity(), MIN_RECEIVE_BUFFER);
        let first = dec.buf.as_ptr();
        dec.push(&wire[100..1000]);
        assert_eq!(dec.buf.as_ptr(), first);
        let held = dec.next_message().unwrap().unwrap();
        // A large read: a buffer of exactly the tail plus the read, not a doubling.
        let tail = dec.buffered();
        dec.push(&wire[1000..]);
        assert_eq!(dec.buf.capacity(), tail + wire.len() - 1000);
        assert_eq!(dec.rebuffers, 2);
        let got = drain(&mut dec).unwrap();
        assert_eq!(got.len(), 59);
        assert_eq!(held.payload[..], [0u8; 100]);
        assert_eq!(got[58].payload[..], [59u8; 100]);
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn a_large_chunk_pushed_byte_by_byte_grows_geometrically() {
        let limits = limits(65_536, 1 << 20, 8);
        let mut wire = BytesMut::new();
        super::super::encode_message(&mut wire, 128, 2, 0, 1, 0, &60_000u32.to_be_bytes());
        let p = pattern(60_000, 5);
        super::super::encode_message(&mut wire, 60_000, 4, 0, 9, 1, &p);
        let mut dec = ChunkDecoder::new(limits);
        let mut got = Vec::new();
        for b in wire.iter() {
            dec.push(&[*b]);
            while let Some(m) = dec.next_message().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].payload[..], p[..]);
        assert!(
            dec.rebuffers < 8,
            "{} buffers for one 60000-byte chunk",
            dec.rebuffers
        );
    }

    #[test]
    fn a_message_read_whole_is_reassembled_inside_the_receive_buffer() {
        for csid in [4u32, 100, 400] {
            let p = pattern(1000, 6);
            let mut wire = BytesMut::new();
            super::super::encode_message(&mut wire, 128, csid, 5, 9, 1, &p);
            super::super::encode_message(&mut wire, 128, csid, 6, 8, 1, b"after");
            let mut dec = ChunkDecoder::default();
            dec.push(&wire);
            let start = dec.buf.as_ptr() as usize;
            let end = start + wire.len();
            let m = dec.next_message().unwrap().unwrap();
            assert_eq!(m.payload[..], p[..], "csid {csid}");
            assert_eq!((m.timestamp, m.type_id), (5, 9));
            let at = m.payload.as_ptr() as usize;
            assert!(
                at > start && at < end,
                "csid {csid}: payload not in the receive buffer"
            );
            assert_eq!(dec.streams.get(csid).unwrap().partial.capacity(), 0);
            let next = dec.next_message().unwrap().unwrap();
            assert_eq!((&next.payload[..], next.timestamp), (&b"after"[..], 6));
            assert_eq!(dec.buffered(), 0);
        }
    }

    #[test]
    fn interleaved_or_cut_off_messages_are_reassembled_apart() {
        // Chunks of another chunk stream between the pieces, and a message whose last piece
        // is not there yet, both take the copying path and decode the same.
        let p = pattern(300, 7);
        let mut wire = BytesMut::new();
        wire.extend_from_slice(&h0(4, 0, 300, 9, 1));
        wire.extend_from_slice(&p[..128]);
        wire.extend_from_slice(&cat(&[&h0(5, 0, 2, 8, 1), b"au"]));
        wire.extend_from_slice(&h3(4));
        wire.extend_from_slice(&p[128..256]);
        wire.extend_from_slice(&h3(4));
        wire.extend_from_slice(&p[256..]);
        let mut dec = ChunkDecoder::default();
        dec.push(&wire[..wire.len() - 1]);
        assert_eq!(drain(&mut dec).unwrap(), vec![msg(5, 0, 8, 1, b"au")]);
        dec.push(&wire[wire.len() - 1..]);
        assert_eq!(drain(&mut dec).unwrap(), vec![msg(4, 0, 9, 1, &p)]);
    }

    #[test]
    fn too_many_chunk_streams() {
        let l = limits(65_536, 1 << 20, 2);
        let ok = cat(&[&h0(3, 0, 1, 8, 1), b"a", &h0(4, 0, 1, 8, 1), b"b"]);
        let mut dec = ChunkDecoder::new(l);
        dec.push(&ok);
        // Reusing known ids does not count.
        dec.push(&cat(&[&h0(3, 1, 1, 8, 1), b"c", &h3(4), b"d"]));
        assert_eq!(drain(&mut dec).unwrap().len(), 4);
        dec.push(&h0(5, 0, 1, 8, 1));
        assert_eq!(
            dec.next_message(),
            Err(ChunkError::TooManyChunkStreams { limit: 2 })
        );
    }

    #[test]
    fn compressed_header_on_unknown_csid_is_rejected() {
        for (fmt, bytes) in [
            (1u8, cat(&[&h1(9, 0, 1, 8), b"a"])),
            (2, cat(&[&h2(9, 0), b"a"])),
            (3, cat(&[&h3(9), b"a"])),
        ] {
            assert_eq!(
                decode_err(&bytes, DecoderLimits::default()),
                ChunkError::NoPreviousHeader { csid: 9, fmt },
            );
        }
        // Reported from the basic header alone.
        let mut dec = ChunkDecoder::default();
        dec.push(&[0x47]);
        assert_eq!(
            dec.next_message(),
            Err(ChunkError::NoPreviousHeader { csid: 7, fmt: 1 })
        );
    }

    #[test]
    fn errors_are_sticky() {
        let mut dec = ChunkDecoder::default();
        dec.push(&h3(9));
        let err = dec.next_message().unwrap_err();
        dec.push(&cat(&[&h0(4, 0, 1, 8, 1), b"a"]));
        assert_eq!(dec.next_message(), Err(err));
    }

    #[test]
    fn partial_input_waits_and_reports_buffered() {
        let bytes = cat(&[&h0(4, 0, 3, 8, 1), b"abc"]);
        let mut dec = ChunkDecoder::default();
        assert_eq!(dec.next_message(), Ok(None));
        dec.push(&bytes[..5]);
        assert_eq!(dec.next_message(), Ok(None));
        assert_eq!(dec.buffered(), 5);
        dec.push(&bytes[5..]);
        assert_eq!(dec.next_message(), Ok(Some(msg(4, 0, 8, 1, b"abc"))));
        assert_eq!(dec.buffered(), 0);
        assert_eq!(dec.next_message(), Ok(None));
    }

    #[test]
    fn single_chunk_payload_is_a_slice_of_the_receive_buffer() {
        let mut dec = ChunkDecoder::default();
        dec.push(&cat(&[&h0(4, 0, 100, 9, 1), &pattern(100, 3)]));
        let base = dec.buf.as_ptr() as usize;
        let m = dec.next_message().unwrap().unwrap();
        assert_eq!(m.payload.as_ptr() as usize, base + 12);
        assert_eq!(m.payload[..], pattern(100, 3)[..]);
    }

    #[test]
    fn multi_chunk_payload_is_reserved_once() {
        let p = pattern(1000, 1);
        let mut bytes = h0(4, 0, 1000, 9, 1);
        for (i, piece) in p.chunks(128).enumerate() {
            if i > 0 {
                bytes.extend_from_slice(&h3(4));
            }
            bytes.extend_from_slice(piece);
        }
        let mut dec = ChunkDecoder::default();
        dec.push(&bytes[..12 + 128]);
        assert_eq!(dec.next_message(), Ok(None));
        let cap = dec.streams.get(4).unwrap().partial.capacity();
        assert!(cap >= 1000, "reserved {cap}");
        let ptr = dec.streams.get(4).unwrap().partial.as_ptr();
        dec.push(&bytes[12 + 128..]);
        let m = dec.next_message().unwrap().unwrap();
        assert_eq!(m.payload.as_ptr(), ptr, "reassembly buffer was reallocated");
        assert_eq!(m.payload[..], p[..]);
    }

    /// A stream that exercises most features at once, with its expected messages.
    fn mixed_stream() -> (Vec<u8>, Vec<RawMessage>) {
        let ext_ts = 0x0100_0000;
        let v = pattern(450, 7);
        assert_ne!(
            v[400], 0x01,
            "omitted-field chunk must not look like the field"
        );
        let a = pattern(10, 1);
        let junk = pattern(300, 9);
        let bytes = cat(&[
            &set_chunk_size(200),
            &h0(6, ext_ts, 450, 9, 1),
            &v[..200],
            &h0(4, 5, 10, 8, 1),
            &a,
            &h3x(6, ext_ts),
            &v[200..400],
            &h2(4, 20),
            &a,
            &h3(6),
            &v[400..],
            &h3(4),
            &a,
            &h1(4, 0xFF_FFFF, 3, 8),
            b"abc",
            &h0(8, 0, 300, 9, 1),
            &junk[..200],
            &abort(8),
            &h0(8, 3, 0, 18, 1),
            &h0(320, 1, 4, 20, 0),
            b"call",
            &h3x(4, 0xFF_FFFF),
            b"def",
        ]);
        let expected = vec![
            msg(2, 0, 1, 0, &200u32.to_be_bytes()),
            msg(4, 5, 8, 1, &a),
            msg(4, 25, 8, 1, &a),
            msg(6, ext_ts, 9, 1, &v),
            msg(4, 45, 8, 1, &a),
            msg(4, 45 + 0xFF_FFFF, 8, 1, b"abc"),
            msg(2, 0, 2, 0, &8u32.to_be_bytes()),
            msg(8, 3, 18, 1, b""),
            msg(320, 1, 20, 0, b"call"),
            msg(4, 45 + 2 * 0xFF_FFFF, 8, 1, b"def"),
        ];
        (bytes, expected)
    }

    #[test]
    fn mixed_stream_decodes_in_one_piece() {
        let (bytes, expected) = mixed_stream();
        assert_eq!(decode(&bytes), expected);
    }

    #[test]
    fn split_at_every_offset_gives_the_same_messages() {
        let (bytes, expected) = mixed_stream();
        for at in 0..=bytes.len() {
            let mut dec = ChunkDecoder::default();
            dec.push(&bytes[..at]);
            let mut got = drain(&mut dec).unwrap();
            dec.push(&bytes[at..]);
            got.extend(drain(&mut dec).unwrap());
            assert_eq!(got, expected, "split at {at}");
            assert_eq!(dec.buffered(), 0);
        }
    }

    #[test]
    fn one_byte_at_a_time_gives_the_same_messages() {
        let (bytes, expected) = mixed_stream();
        let mut dec = ChunkDecoder::default();
        let mut got = Vec::new();
        for b in &bytes {
            dec.push(std::slice::from_ref(b));
            got.extend(drain(&mut dec).unwrap());
        }
        assert_eq!(got, expected);
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn random_splits_give_the_same_messages() {
        let (bytes, expected) = mixed_stream();
        for seed in 0..200 {
            let mut rng = Rng::new(seed);
            let mut dec = ChunkDecoder::default();
            let mut got = Vec::new();
            let mut pos = 0;
            while pos < bytes.len() {
                let n = (1 + rng.below(64)).min(bytes.len() - pos);
                dec.push(&bytes[pos..pos + n]);
                pos += n;
                got.extend(drain(&mut dec).unwrap());
            }
            assert_eq!(got, expected, "seed {seed}");
        }
    }

    /// Feeds `bytes` in random pieces; must end in None or an error, never a panic.
    fn run_garbage(bytes: &[u8], limits: DecoderLimits, rng: &mut Rng) {
        let mut dec = ChunkDecoder::new(limits);
        let mut pos = 0;
        while pos < bytes.len() {
            let n = (1 + rng.below(300)).min(bytes.len() - pos);
            dec.push(&bytes[pos..pos + n]);
            pos += n;
            loop {
                match dec.next_message() {
                    Ok(Some(m)) => {
                        assert!(m.payload.len() as u64 <= u64::from(limits.max_message_len));
                        assert!(dec.chunk_size() >= 1 && dec.chunk_size() <= limits.max_chunk_size);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        assert_eq!(dec.next_message(), Err(e));
                        return;
                    }
                }
            }
        }
    }

    #[test]
    fn garbage_never_panics() {
        let tight = limits(512, 2048, 6);
        for seed in 0..400 {
            let mut rng = Rng::new(seed);
            let len = 1 + rng.below(4096);
            // Half the seeds draw from a few header-like bytes so that more
            // input gets past the first header.
            let biased = seed % 2 == 0;
            let alphabet = [
                0x00, 0x01, 0x02, 0x03, 0x04, 0x43, 0x83, 0xC3, 0xC4, 0xFF, 0x80,
            ];
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    if biased {
                        alphabet[rng.below(alphabet.len())]
                    } else {
                        rng.byte()
                    }
                })
                .collect();
            run_garbage(&bytes, tight, &mut rng);
            run_garbage(&bytes, DecoderLimits::default(), &mut rng);
        }
    }

    #[test]
    fn garbage_after_valid_prefix_never_panics() {
        let (valid, _) = mixed_stream();
        for seed in 0..200 {
            let mut rng = Rng::new(1000 + seed);
            let mut bytes = valid.clone();
            // Flip a few bytes of a valid stream: the nastiest inputs are near-valid.
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(bytes.len());
                bytes[i] = rng.byte();
            }
            run_garbage(&bytes, limits(4096, 4096, 4), &mut rng);
            run_garbage(&bytes, DecoderLimits::default(), &mut rng);
        }
    }
}
