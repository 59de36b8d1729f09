//! A player's RTMP chunk stream read in place: message boundaries, headers and the first and
//! last [`EDGE`](crate::httpflv::EDGE) bytes of each media message, without reassembling media payloads.
//!
//! The client session ([`shardcast::rtmp::client::ClientSession`]) decodes every message into
//! a fresh buffer and an event; a load generator's players only need each media message's type,
//! timestamp, length and the bytes at both ends (codec flags and the latency fingerprint). Once
//! the session has played and its decoder is between messages
//! ([`ClientSession::handover`](shardcast::rtmp::client::ClientSession::handover)), the player
//! reads on with a [`ChunkScanner`] seeded with the decoder's chunk size and per-chunk-stream
//! headers. Media messages are handed out as [`MediaMessage`]s (no allocation, no payload copy);
//! every other message is reassembled as before and handed out as a [`RawMessage`] for the
//! session ([`ClientSession::handle_raw`](shardcast::rtmp::client::ClientSession::handle_raw)):
//! statuses, pings, window sizes, stream EOF. Set Chunk Size and Abort are applied here.
//!
//! Header rules are the chunk decoder's ([`shardcast::rtmp::chunk::ChunkDecoder`]): a fmt-3
//! chunk starting a message adds the last timestamp field again, a repeated extended timestamp
//! on a fmt-3 chunk is recognised by its value, a fresh header on a chunk stream with a message
//! open drops that message. The scanner only keeps what a chunk header split across two reads
//! needs, so the read buffer may be shared by every connection of a thread.

use crate::httpflv::Edges;
use bytes::Bytes;
use shardcast::rtmp::chunk::{
    chunk_control, parse_chunk_header, ChunkError, Control, DecoderLimits, HeaderState, Prev,
    RawMessage, MSG_ABORT, MSG_SET_CHUNK_SIZE,
};

/// Longest chunk header: 3-byte basic header, 11-byte message header, 4-byte extended timestamp.
const MAX_HEADER: usize = 18;

/// Message types a player counts as media: audio, video, AMF0 and AMF3 data.
pub fn is_media(type_id: u8) -> bool {
    matches!(type_id, 8 | 9 | 15 | 18)
}

/// One complete media message as it streamed past.
#[derive(Debug, Clone, Copy)]
pub struct MediaMessage<'a> {
    /// Chunk stream id it came on.
    pub csid: u32,
    /// 8 audio, 9 video, 15 or 18 data.
    pub type_id: u8,
    /// Absolute timestamp, ms.
    pub timestamp: u32,
    /// Message stream id.
    pub stream_id: u32,
    /// Payload length.
    pub len: u32,
    /// The first `min(len, EDGE)` payload bytes ([`crate::httpflv::EDGE`]).
    pub head: &'a [u8],
    /// The last `min(len, EDGE)` payload bytes.
    pub tail: &'a [u8],
}

/// What the scanner hands out, in the order the messages completed.
#[derive(Debug)]
pub enum Scanned<'a> {
    /// A media message (type 8, 9, 15 or 18): header fields and payload edges.
    Media(MediaMessage<'a>),
    /// Any other message, reassembled (Set Chunk Size and Abort are applied, not handed out).
    Local(RawMessage),
}

/// One chunk stream's state between chunks.
#[derive(Debug)]
struct ChunkStream {
    csid: u32,
    /// The current (or last) message's header.
    header: HeaderState,
    /// Payload bytes still owed by the message in progress; 0 between messages.
    remaining: u32,
    /// Media in progress: its edges.
    edges: Edges,
    /// Any other message in progress: its payload so far.
    local: Vec<u8>,
}

impl ChunkStream {
    fn new(csid: u32, header: HeaderState) -> Self {
        ChunkStream {
            csid,
            header,
            remaining: 0,
            edges: Edges::default(),
            local: Vec::new(),
        }
    }
}

/// A chunk header parsed against its chunk stream's previous header.
#[derive(Debug)]
struct Parsed {
    csid: u32,
    /// Bytes of basic + message header + extended timestamp.
    len: usize,
    /// The resolved header when the chunk starts a message; `None` for a continuation.
    start: Option<HeaderState>,
}

/// Reads an RTMP chunk stream in place (see the module doc). After an error every call
/// returns it: the stream is out of sync.
#[derive(Debug)]
pub struct ChunkScanner {
    limits: DecoderLimits,
    chunk_size: u32,
    /// Few chunk streams are in use (control, command, audio, video, data): a short list.
    streams: Vec<ChunkStream>,
    /// A chunk header split across reads: its first bytes.
    pending: [u8; MAX_HEADER],
    pending_len: usize,
    /// The chunk whose payload is being read: index into `streams`.
    cur: usize,
    /// Payload bytes of the current chunk still to come; 0 when a header is next.
    chunk_left: u32,
    failed: Option<ChunkError>,
}

impl ChunkScanner {
    /// A scanner taking over a stream at a message boundary: the sender's `chunk_size` and each
    /// chunk stream's last header (as [`ClientSession::handover`] tells them).
    ///
    /// [`ClientSession::handover`]: shardcast::rtmp::client::ClientSession::handover
    pub fn new(chunk_size: u32, headers: &[(u32, HeaderState)], limits: DecoderLimits) -> Self {
        ChunkScanner {
            limits,
            chunk_size: chunk_size.max(1),
            streams: headers
                .iter()
                .map(|&(csid, h)| ChunkStream::new(csid, h))
                .collect(),
            pending: [0; MAX_HEADER],
            pending_len: 0,
            cur: 0,
            chunk_left: 0,
            failed: None,
        }
    }

    /// The sender's chunk size now.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Reads `data` (the next bytes of the stream, any split) and calls `on` for each message
    /// completed in it, in order. An error of `on` stops the scan and is returned.
    pub fn feed<E: From<ChunkError>>(
        &mut self,
        data: &[u8],
        mut on: impl FnMut(Scanned<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        if let Some(e) = &self.failed {
            return Err(e.clone().into());
        }
        let mut i = 0;
        while i < data.len() {
            if self.chunk_left == 0 {
                let parsed = match self.header(&data[i..]) {
                    Ok(Some((parsed, used))) => {
                        i += used;
                        parsed
                    }
                    Ok(None) => break,
                    Err(e) => {
                        self.failed = Some(e.clone());
                        return Err(e.into());
                    }
                };
                if let Err(e) = self.begin(parsed) {
                    self.failed = Some(e.clone());
                    return Err(e.into());
                }
                if self.chunk_left == 0 {
                    // A message of length 0: complete with its header.
                    self.complete(&mut on)?;
                    continue;
                }
            }
            let take = (self.chunk_left as usize).min(data.len() - i);
            let piece = &data[i..i + take];
            i += take;
            self.chunk_left -= take as u32;
            let s = &mut self.streams[self.cur];
            s.remaining -= take as u32;
            if is_media(s.header.type_id) {
                s.edges.keep(piece);
            } else {
                s.local.extend_from_slice(piece);
            }
            if self.chunk_left == 0 && s.remaining == 0 {
                self.complete(&mut on)?;
            }
        }
        Ok(())
    }

    /// The chunk header at the front of `pending` + `data`: what it says and how many bytes of
    /// `data` it used (the rest of a split one goes to `pending`), or `None` until more come.
    fn header(&mut self, data: &[u8]) -> Result<Option<(Parsed, usize)>, ChunkError> {
        if self.pending_len == 0 {
            return match self.parse(data)? {
                Some(p) => {
                    let n = p.len;
                    Ok(Some((p, n)))
                }
                None => {
                    // Shorter than a header: all of it is the start of the next one.
                    self.pending[..data.len()].copy_from_slice(data);
                    self.pending_len = data.len();
                    Ok(None)
                }
            };
        }
        let had = self.pending_len;
        let add = (MAX_HEADER - had).min(data.len());
        let mut joined = [0u8; MAX_HEADER];
        joined[..had].copy_from_slice(&self.pending[..had]);
        joined[had..had + add].copy_from_slice(&data[..add]);
        match self.parse(&joined[..had + add])? {
            Some(p) => {
                self.pending_len = 0;
                let used = p.len - had;
                Ok(Some((p, used)))
            }
            None => {
                self.pending[had..had + add].copy_from_slice(&data[..add]);
                self.pending_len = had + add;
                Ok(None)
            }
        }
    }

    fn stream_index(&self, csid: u32) -> Option<usize> {
        self.streams.iter().position(|s| s.csid == csid)
    }

    /// Parses a chunk header from the front of `b` (the chunk decoder's own parser), without
    /// touching state; `None` until all of it is there.
    fn parse(&self, b: &[u8]) -> Result<Option<Parsed>, ChunkError> {
        let prev = |csid| {
            self.stream_index(csid).map(|i| Prev {
                header: self.streams[i].header,
                remaining: self.streams[i].remaining,
            })
        };
        Ok(
            parse_chunk_header(b, prev, self.streams.len(), &self.limits)?.map(|h| Parsed {
                csid: h.csid,
                len: h.header_len,
                start: h.start,
            }),
        )
    }

    /// Takes a parsed header on: the chunk's stream is current, its payload next.
    fn begin(&mut self, p: Parsed) -> Result<(), ChunkError> {
        let idx = match self.stream_index(p.csid) {
            Some(i) => i,
            None => {
                let h = p.start.ok_or(ChunkError::NoPreviousHeader {
                    csid: p.csid,
                    fmt: 3,
                })?;
                self.streams.push(ChunkStream::new(p.csid, h));
                self.streams.len() - 1
            }
        };
        let s = &mut self.streams[idx];
        if let Some(h) = p.start {
            // A fresh header while a message is open drops that message, as the decoder does.
            s.header = h;
            s.remaining = h.len;
            s.edges.clear();
            s.local.clear();
        }
        self.cur = idx;
        self.chunk_left = s.remaining.min(self.chunk_size);
        Ok(())
    }

    /// The current stream's message is complete: hand it out (chunk control is applied).
    fn complete<E: From<ChunkError>>(
        &mut self,
        on: &mut impl FnMut(Scanned<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let s = &mut self.streams[self.cur];
        let h = s.header;
        if is_media(h.type_id) {
            return on(Scanned::Media(MediaMessage {
                csid: s.csid,
                type_id: h.type_id,
                timestamp: h.timestamp,
                stream_id: h.stream_id,
                len: h.len,
                head: s.edges.head(),
                tail: s.edges.tail(),
            }));
        }
        let payload = std::mem::take(&mut s.local);
        if h.type_id == MSG_SET_CHUNK_SIZE || h.type_id == MSG_ABORT {
            if let Err(e) = self.control(h.type_id, &payload) {
                self.failed = Some(e.clone());
                return Err(e.into());
            }
            // The buffer goes back for the next control message.
            let s = &mut self.streams[self.cur];
            s.local = payload;
            s.local.clear();
            return Ok(());
        }
        on(Scanned::Local(RawMessage {
            csid: self.streams[self.cur].csid,
            timestamp: h.timestamp,
            type_id: h.type_id,
            stream_id: h.stream_id,
            payload: Bytes::from(payload),
        }))
    }

    /// Set Chunk Size or Abort, checked as the decoder checks them.
    fn control(&mut self, type_id: u8, p: &[u8]) -> Result<(), ChunkError> {
        match chunk_control(type_id, p, &self.limits)? {
            Some(Control::ChunkSize(size)) => self.chunk_size = size,
            Some(Control::Abort(csid)) => {
                if let Some(i) = self.stream_index(csid) {
                    let s = &mut self.streams[i];
                    s.remaining = 0;
                    s.edges.clear();
                    s.local.clear();
                }
            }
            None => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::httpflv::EDGE;
    use bytes::BytesMut;
    use shardcast::rtmp::chunk::{ChunkDecoder, ChunkWriter};

    /// Small deterministic generator (xorshift), so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// What a message looked like: header fields, length, edges (and the whole payload of
    /// non-media messages).
    #[derive(Debug, Clone, PartialEq)]
    struct Seen {
        csid: u32,
        type_id: u8,
        timestamp: u32,
        stream_id: u32,
        len: u32,
        head: Vec<u8>,
        tail: Vec<u8>,
        local: Option<Vec<u8>>,
    }

    fn of_raw(m: &RawMessage) -> Seen {
        let p = &m.payload[..];
        Seen {
            csid: m.csid,
            type_id: m.type_id,
            timestamp: m.timestamp,
            stream_id: m.stream_id,
            len: p.len() as u32,
            head: p[..p.len().min(EDGE)].to_vec(),
            tail: p[p.len().saturating_sub(EDGE)..].to_vec(),
            local: (!is_media(m.type_id)).then(|| p.to_vec()),
        }
    }

    fn of_scanned(s: &Scanned<'_>) -> Seen {
        match s {
            Scanned::Media(m) => Seen {
                csid: m.csid,
                type_id: m.type_id,
                timestamp: m.timestamp,
                stream_id: m.stream_id,
                len: m.len,
                head: m.head.to_vec(),
                tail: m.tail.to_vec(),
                local: None,
            },
            Scanned::Local(r) => of_raw(r),
        }
    }

    fn limits() -> DecoderLimits {
        DecoderLimits {
            max_message_len: 64 * 1024 * 1024,
            ..DecoderLimits::default()
        }
    }

    /// The reference: the chunk decoder's messages, chunk control left out (the scanner
    /// applies it and does not hand it out).
    fn reference(wire: &[u8]) -> Vec<Seen> {
        let mut d = ChunkDecoder::new(limits());
        d.push(wire);
        let mut out = Vec::new();
        while let Some(m) = d.next_message().unwrap() {
            if m.type_id != MSG_SET_CHUNK_SIZE && m.type_id != MSG_ABORT {
                out.push(of_raw(&m));
            }
        }
        assert_eq!(d.buffered(), 0, "reference left bytes");
        out
    }

    /// Feeds `wire` in pieces of random length (1 byte up to `max_piece`).
    fn scan(sc: &mut ChunkScanner, wire: &[u8], rng: &mut Rng, max_piece: u64) -> Vec<Seen> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < wire.len() {
            let n = (1 + rng.below(max_piece) as usize).min(wire.len() - i);
            sc.feed::<ChunkError>(&wire[i..i + n], |s| {
                out.push(of_scanned(&s));
                Ok(())
            })
            .unwrap();
            i += n;
        }
        out
    }

    /// A stream as a player gets it: control messages, commands, then media on several chunk
    /// streams (one- two- and three-byte basic headers), chunk size changes, timestamps that
    /// cross into the extended range, empty and multi-chunk payloads. Written with the
    /// header-compressing writer, so fmt 1, 2 and 3 starts all occur.
    fn stream(rng: &mut Rng, messages: usize) -> Vec<u8> {
        let mut w = ChunkWriter::new();
        let mut out = BytesMut::new();
        w.write(&mut out, 2, 0, 5, 0, &2_500_000u32.to_be_bytes());
        w.write(&mut out, 3, 0, 20, 0, b"\x02\x00\x07_result");
        let mut ts = [16_776_000u32, 16_776_000, 0, 5];
        for k in 0..messages {
            if rng.below(40) == 0 {
                let size = [1u32, 7, 128, 1000, 4096, 60_000][rng.below(6) as usize];
                w.write(&mut out, 2, 0, MSG_SET_CHUNK_SIZE, 0, &size.to_be_bytes());
                w.set_chunk_size(size);
                continue;
            }
            let track = rng.below(4) as usize;
            let (csid, type_id) = [(6, 9), (4, 8), (100, 18), (400, 20)][track];
            // Steady steps (fmt 2/3 starts) with the odd jump (fmt 1).
            ts[track] = ts[track].wrapping_add(if rng.below(5) == 0 {
                rng.below(3000) as u32
            } else {
                40
            });
            let len = match rng.below(6) {
                0 => 0,
                1 => rng.below(40) as usize,
                2 => 20 + rng.below(10) as usize,
                _ => rng.below(9000) as usize,
            };
            let len = if track == 1 && rng.below(2) == 0 {
                200
            } else {
                len
            };
            let payload: Vec<u8> = (0..len).map(|j| (j as u64 * 31 + k as u64) as u8).collect();
            w.write(&mut out, csid, ts[track], type_id, 1, &payload);
        }
        out.to_vec()
    }

    #[test]
    fn matches_the_decoder_in_any_split() {
        for seed in 1..40u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let wire = stream(&mut rng, 300);
            let want = reference(&wire);
            assert!(want.len() > 200);
            let max_piece = [1, 5, 20, 300, 20_000][seed as usize % 5];
            let mut sc = ChunkScanner::new(128, &[], limits());
            let got = scan(&mut sc, &wire, &mut rng, max_piece);
            for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g, w, "seed {seed}, message {k}");
            }
            assert_eq!(got.len(), want.len(), "seed {seed}");
        }
    }

    #[test]
    fn takes_over_from_the_decoder_at_a_message_boundary() {
        for seed in 1..20u64 {
            let mut rng = Rng(seed);
            let wire = stream(&mut rng, 200);
            let want = reference(&wire);
            // The decoder reads up to some message boundary, then the scanner goes on.
            let mut d = ChunkDecoder::new(limits());
            let mut early = Vec::new();
            let mut i = 0;
            while i < wire.len() / 2 || !d.is_idle() {
                d.push(&wire[i..i + 1]);
                i += 1;
                while let Some(m) = d.next_message().unwrap() {
                    if m.type_id != MSG_SET_CHUNK_SIZE && m.type_id != MSG_ABORT {
                        early.push(of_raw(&m));
                    }
                }
            }
            let mut sc = ChunkScanner::new(d.chunk_size(), &d.header_states(), limits());
            let mut got = early;
            got.extend(scan(&mut sc, &wire[i..], &mut rng, 3000));
            assert_eq!(got, want, "seed {seed}");
        }
    }

    fn h0(csid: u8, ts: u32, len: u32, type_id: u8) -> Vec<u8> {
        let mut v = vec![csid];
        v.extend_from_slice(&ts.min(0xFF_FFFF).to_be_bytes()[1..]);
        v.extend_from_slice(&len.to_be_bytes()[1..]);
        v.push(type_id);
        v.extend_from_slice(&1u32.to_le_bytes());
        if ts >= 0xFF_FFFF {
            v.extend_from_slice(&ts.to_be_bytes());
        }
        v
    }

    /// A Set Chunk Size of 4 and then `rest`, so short hand-built messages span chunks.
    fn at_chunk_size_4(rest: &[u8]) -> Vec<u8> {
        let mut v = h0(2, 0, 4, MSG_SET_CHUNK_SIZE);
        v.extend_from_slice(&4u32.to_be_bytes());
        v.extend_from_slice(rest);
        v
    }

    fn media_seen(wire: &[u8], max_piece: u64) -> Vec<Seen> {
        let mut sc = ChunkScanner::new(128, &[], limits());
        scan(&mut sc, wire, &mut Rng(7), max_piece)
    }

    #[test]
    fn repeated_extended_timestamp_is_optional_on_fmt3() {
        let ts = 0x0100_0000;
        let payload = [9u8, 8, 7, 6, 5, 4];
        // Chunk size 4: the second chunk is a fmt-3 continuation, with and without the field.
        let mut with = h0(6, ts, 6, 9);
        with.extend_from_slice(&payload[..4]);
        with.push(0xC6);
        with.extend_from_slice(&ts.to_be_bytes());
        with.extend_from_slice(&payload[4..]);
        let mut without = h0(6, ts, 6, 9);
        without.extend_from_slice(&payload[..4]);
        without.push(0xC6);
        without.extend_from_slice(&payload[4..]);
        for wire in [at_chunk_size_4(&with), at_chunk_size_4(&without)] {
            assert_eq!(reference(&wire), media_seen(&wire, 1));
            let got = media_seen(&wire, 100);
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].timestamp, ts);
            assert_eq!(got[0].head, payload);
        }
    }

    #[test]
    fn fmt3_start_adds_the_last_delta_again() {
        // fmt 0 at 1000, fmt 2 with delta 40, then two fmt-3 starts: 1080, 1120.
        let mut wire = h0(4, 1000, 2, 8);
        wire.extend_from_slice(&[0xAF, 1]);
        wire.extend_from_slice(&[0x84, 0, 0, 40, 0xAF, 1]);
        wire.extend_from_slice(&[0xC4, 0xAF, 1]);
        wire.extend_from_slice(&[0xC4, 0xAF, 1]);
        let got = media_seen(&wire, 2);
        let ts: Vec<u32> = got.iter().map(|s| s.timestamp).collect();
        assert_eq!(ts, [1000, 1040, 1080, 1120]);
        assert_eq!(got, reference(&wire));
    }

    #[test]
    fn abort_and_fresh_headers_drop_the_open_message() {
        // A 6-byte video message cut after 4 bytes by an Abort, then a whole one.
        let mut wire = h0(6, 0, 6, 9);
        wire.extend_from_slice(&[1, 2, 3, 4]);
        wire.extend_from_slice(&h0(2, 0, 4, MSG_ABORT));
        wire.extend_from_slice(&6u32.to_be_bytes());
        wire.extend_from_slice(&h0(6, 40, 2, 9));
        wire.extend_from_slice(&[5, 6]);
        // Another one cut by a fresh fmt-0 header on the same chunk stream.
        wire.extend_from_slice(&h0(6, 80, 6, 9));
        wire.extend_from_slice(&[7, 7, 7, 7]);
        wire.extend_from_slice(&h0(6, 120, 1, 9));
        wire.push(8);
        let wire = at_chunk_size_4(&wire);
        let got = media_seen(&wire, 3);
        assert_eq!(got, reference(&wire));
        let heads: Vec<&[u8]> = got.iter().map(|s| &s.head[..]).collect();
        assert_eq!(heads, [&[5u8, 6][..], &[8]]);
    }

    #[test]
    fn broken_streams_fail_and_stay_failed() {
        let feed = |wire: &[u8]| {
            let mut sc = ChunkScanner::new(128, &[], limits());
            let first = sc.feed::<ChunkError>(wire, |_| Ok(())).unwrap_err();
            let again = sc.feed::<ChunkError>(&[0xC6], |_| Ok(())).unwrap_err();
            assert_eq!(first, again);
            first
        };
        assert_eq!(
            feed(&[0x46, 0, 0, 40, 0, 0, 2, 9]),
            ChunkError::NoPreviousHeader { csid: 6, fmt: 1 }
        );
        assert_eq!(
            feed(&[0xC5]),
            ChunkError::NoPreviousHeader { csid: 5, fmt: 3 }
        );
        let mut zero = h0(2, 0, 4, MSG_SET_CHUNK_SIZE);
        zero.extend_from_slice(&0u32.to_be_bytes());
        assert_eq!(feed(&zero), ChunkError::ChunkSizeZero);
        let mut short = h0(2, 0, 2, MSG_SET_CHUNK_SIZE);
        short.extend_from_slice(&[0, 1]);
        assert!(matches!(
            feed(&short),
            ChunkError::ControlMessageTooShort { len: 2, .. }
        ));
        let mut sc = ChunkScanner::new(128, &[], DecoderLimits::default());
        let long = h0(6, 0, 9 * 1024 * 1024, 9);
        assert!(matches!(
            sc.feed::<ChunkError>(&long, |_| Ok(())),
            Err(ChunkError::MessageTooLong { .. })
        ));
    }

    #[test]
    fn callback_errors_stop_the_scan() {
        let mut wire = h0(6, 0, 1, 9);
        wire.push(0x17);
        wire.extend_from_slice(&h0(6, 40, 1, 9));
        wire.push(0x27);
        let mut sc = ChunkScanner::new(128, &[], limits());
        let mut n = 0;
        let r = sc.feed::<ChunkError>(&wire, |_| {
            n += 1;
            Err(ChunkError::ChunkSizeZero)
        });
        assert_eq!(r, Err(ChunkError::ChunkSizeZero));
        assert_eq!(n, 1);
    }
}
