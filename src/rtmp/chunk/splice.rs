//! Chunk splicing for a relay: an origin's chunk stream in, and out of it (a) the media
//! messages of one message stream as wire bytes a player can take as they are, and (b) every
//! other message, whole, for the relay's own session (statuses, acks, pings, Set Chunk Size).
//!
//! A media message whose chunks arrived back to back, with a fmt-0 first header (absolute
//! timestamp, its own length, type and stream id) and fmt-3 continuations that repeat the
//! extended timestamp exactly when it has one, is already context-free: the player's decoder
//! needs nothing it saw before to read it. Those bytes are handed out as one slice of the
//! receive buffer ([`SplicedMedia::copied`] false): no per-message copy, no re-chunking. Origins
//! that write every message with a fmt-0 start (SRS, nginx-rtmp, shardcast's shared fan-out
//! bytes) hit this path for all their media.
//!
//! Anything else is rewritten to that form (one copy of the payload): a first header in fmt
//! 1/2/3 (it leans on an earlier header, possibly of a message that was cut out, or that the
//! player never saw), chunks interleaved with another chunk stream's, a missing or stray
//! repeated extended timestamp. So every forwarded message starts with a fmt-0 header, the
//! player's per-csid state never matters, and a player queue may drop any whole message.
//!
//! The sender's chunk size must be the player's: the relay announces it (Set Chunk Size) before
//! it forwards anything, and follows a change by falling back to re-chunking (a change is a
//! [`Spliced::Local`] Set Chunk Size; [`ChunkSplicer::chunk_size`] tells the new size).
//!
//! **Ordered receivers** ([`ChunkSplicer::ordered`]): a publisher's origin leg is no player
//! queue, it gets every forwarded message in order. There a compressed start (fmt 1/2/3, as
//! ffmpeg and OBS write all but the first message of a chunk stream) is handed out as received
//! when it resolves at the receiver to what it resolves here: the splicer keeps the receiver's
//! last header per chunk stream (what it was handed, as handed) and compares the fields the
//! start leans on. The first message of each chunk stream towards the receiver, and the first
//! after a cut-out message changed what the sender's header leans on, are rewritten to fmt 0.
//!
//! Header rules are the decoder's ([`super::ChunkDecoder`]): fmt-3 starting a message adds the
//! last timestamp field again, a repeated extended timestamp is recognised by its value, a
//! fresh header on a chunk stream with a message open drops that message.

use std::collections::HashMap;

use bytes::{Buf, Bytes, BytesMut};

use super::decoder::{peek_extended, ExtPeek};
use super::plan::{chunk_control, plan_chunk, ChunkPlan, Control, Prev};
use super::{
    encode_message, ChunkError, DecoderLimits, HeaderState, RawMessage, DEFAULT_CHUNK_SIZE,
    EXTENDED_MARKER,
};

/// Message types forwarded as media: audio, video, AMF0 and AMF3 data (onMetaData).
pub fn is_media(type_id: u8) -> bool {
    matches!(type_id, 8 | 9 | 15 | 18)
}

/// Most payload bytes of a message's start given as [`SplicedMedia::head`] (enough for FLV
/// audio/video tag headers, enhanced RTMP included).
pub const HEAD_LEN: usize = 16;

/// One media message, ready for the player.
#[derive(Debug, Clone, PartialEq)]
pub struct SplicedMedia {
    /// Chunk stream id it came (and goes) on.
    pub csid: u32,
    /// Absolute timestamp, ms.
    pub timestamp: u32,
    /// 8 audio, 9 video, 15/18 data.
    pub type_id: u8,
    /// Its chunks: fmt-0 start, fmt-3 continuations, at the sender's chunk size.
    pub wire: Bytes,
    /// The first payload bytes (at most [`HEAD_LEN`]), to classify the frame.
    pub head: Bytes,
    /// The wire had to be rewritten (one copy) instead of handed out as received.
    pub copied: bool,
    /// The chunk size the wire is cut at (the sender's when it arrived).
    pub chunk_size: u32,
}

/// What the splicer hands out, in the order the messages completed.
#[derive(Debug, Clone, PartialEq)]
pub enum Spliced {
    /// A media message of the spliced message stream.
    Media(SplicedMedia),
    /// Any other message, reassembled (the relay's session handles it; nothing of it is
    /// forwarded).
    Local(RawMessage),
}

#[derive(Debug, Default)]
struct Stream {
    /// The current (or last) message's header.
    header: Header,
    /// Payload bytes still owed by the message in progress; 0 between messages.
    remaining: u32,
    /// The message in progress is forwarded media (else a local message).
    forward: bool,
    /// Payload of a message taken chunk by chunk.
    partial: BytesMut,
}

/// A message's resolved header.
type Header = HeaderState;

/// One chunk at the front of the buffer, parsed without touching state.
type Plan = ChunkPlan;

impl Stream {
    /// What the next chunk's header builds on.
    fn prev(&self) -> Prev {
        Prev {
            header: self.header,
            remaining: self.remaining,
        }
    }
}

/// Splits an origin's chunk stream into forwardable media and local messages.
#[derive(Debug)]
pub struct ChunkSplicer {
    buf: BytesMut,
    limits: DecoderLimits,
    chunk_size: u32,
    /// Media of this message stream is forwarded.
    stream_id: u32,
    streams: HashMap<u32, Stream>,
    failed: Option<ChunkError>,
    /// Ordered receiver: its last header per chunk stream, as it was handed out.
    peer: Option<HashMap<u32, Header>>,
    /// Chunk streams someone else writes on towards the receiver too: never taken as known.
    shared: Vec<u32>,
}

impl ChunkSplicer {
    /// A splicer for a stream already at `chunk_size` (the origin's, as its session learned
    /// it), forwarding the media of message stream `stream_id`. Chunk streams start without a
    /// previous header: the splicer takes over at a message boundary.
    pub fn new(chunk_size: u32, stream_id: u32, limits: DecoderLimits) -> ChunkSplicer {
        ChunkSplicer {
            buf: BytesMut::new(),
            limits,
            chunk_size: chunk_size.max(1),
            stream_id,
            streams: HashMap::new(),
            failed: None,
            peer: None,
            shared: Vec::new(),
        }
    }

    /// For a receiver that gets every forwarded message, in order, and nothing else on their
    /// chunk streams except on `shared` (where the relay's own session writes too): compressed
    /// starts that resolve there as here go out as received (see the module doc). The relay's
    /// writer must forget each chunk stream a forwarded message used.
    pub fn ordered(mut self, shared: &[u32]) -> ChunkSplicer {
        self.peer = Some(HashMap::new());
        self.shared = shared.to_vec();
        self
    }

    /// A splicer at the protocol's default chunk size (tests, fresh connections).
    pub fn with_defaults(stream_id: u32) -> ChunkSplicer {
        ChunkSplicer::new(DEFAULT_CHUNK_SIZE, stream_id, DecoderLimits::default())
    }

    /// Take over chunk stream `csid` whose last header (as the previous reader saw it) is
    /// `h`, so fmt 1/2/3 headers after the hand-over resolve as they would have.
    pub fn seed(&mut self, csid: u32, h: HeaderState) {
        self.streams.insert(
            csid,
            Stream {
                header: h,
                ..Stream::default()
            },
        );
    }

    /// Someone else wrote a message on `csid` towards an ordered receiver: its header there is
    /// not known any more (the next forwarded message on it is rewritten to fmt 0).
    pub fn peer_wrote(&mut self, csid: u32) {
        if let Some(peer) = self.peer.as_mut() {
            peer.remove(&csid);
        }
    }

    /// Append received bytes (any split).
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The sender's chunk size now.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Bytes received but not yet handed out.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete message, or `None` until more bytes arrive. After an error every
    /// call returns it: the stream is out of sync.
    pub fn next_spliced(&mut self) -> Result<Option<Spliced>, ChunkError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.step();
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn step(&mut self) -> Result<Option<Spliced>, ChunkError> {
        loop {
            let Some(plan) = self.plan(0)? else {
                return Ok(None);
            };
            if let Some(h) = plan.start {
                if is_media(h.type_id) && h.stream_id == self.stream_id {
                    let known = plan.fmt == 0 || self.resolves_at_peer(&plan);
                    match self.whole_message(&plan, h, known)? {
                        Whole::NeedMore => return Ok(None),
                        Whole::Ready { total, as_is } => {
                            return Ok(Some(self.take_whole(&plan, h, total, as_is)));
                        }
                        Whole::Interleaved => {}
                    }
                }
            }
            if let Some(out) = self.commit(plan)? {
                return Ok(Some(out));
            }
        }
    }

    /// Parse the chunk at `at` in the buffer (state as it is now; see [`plan_chunk`]).
    fn plan(&self, at: usize) -> Result<Option<Plan>, ChunkError> {
        let prev = |csid| self.streams.get(&csid).map(Stream::prev);
        plan_chunk(
            &self.buf[at..],
            prev,
            self.streams.len(),
            &self.limits,
            self.chunk_size,
        )
    }

    /// Does a compressed start resolve at an ordered receiver as it does here? It leans on
    /// the previous header's timestamp and stream id (fmt 1), and its length and type (fmt
    /// 2), and its timestamp field (fmt 3).
    fn resolves_at_peer(&self, plan: &Plan) -> bool {
        let (Some(peer), Some(prev)) = (
            self.peer.as_ref().and_then(|p| p.get(&plan.csid)),
            self.streams.get(&plan.csid).map(|s| &s.header),
        ) else {
            return false;
        };
        let base = peer.timestamp == prev.timestamp && peer.stream_id == prev.stream_id;
        let shape = peer.len == prev.len && peer.type_id == prev.type_id;
        let field = peer.ts_field == prev.ts_field && peer.extended == prev.extended;
        match plan.fmt {
            1 => base,
            2 => base && shape,
            3 => base && shape && field,
            _ => false,
        }
    }

    /// What an ordered receiver now holds for `csid`: `h` as is, or a rewrite's fmt-0 form.
    fn note_peer(&mut self, csid: u32, h: Header, as_is: bool) {
        let Some(peer) = self.peer.as_mut() else {
            return;
        };
        if self.shared.contains(&csid) {
            return;
        }
        let h = if as_is {
            h
        } else {
            Header {
                ts_field: h.timestamp,
                extended: h.timestamp >= EXTENDED_MARKER,
                ..h
            }
        };
        peer.insert(csid, h);
    }

    /// Are all of a media message's chunks in the buffer, back to back? `known`: its first
    /// header reads alone, or as here at an ordered receiver.
    fn whole_message(&self, first: &Plan, h: Header, known: bool) -> Result<Whole, ChunkError> {
        // Readable at the receiver, and the extended field as a context-free encoding writes it.
        let mut as_is = known;
        let mut at = first.header_len + first.payload_len;
        let mut left = h.len as usize - first.payload_len;
        let cs = self.chunk_size as usize;
        let basic = basic_len(first.csid);
        while left > 0 {
            let buf = &self.buf[at..];
            let Some(&b0) = buf.first() else {
                return Ok(Whole::NeedMore);
            };
            if b0 >> 6 != 3 || basic_len_of(b0) != basic {
                return Ok(Whole::Interleaved);
            }
            let Some(b) = buf.get(..basic) else {
                return Ok(Whole::NeedMore);
            };
            if csid_of(b) != first.csid {
                return Ok(Whole::Interleaved);
            }
            let mut pos = basic;
            if h.extended {
                match peek_extended(&buf[pos..], h.ts_field) {
                    ExtPeek::NeedMore => return Ok(Whole::NeedMore),
                    ExtPeek::Present => pos += 4,
                    // Omitted (some encoders): the player's decoder may not be as lenient.
                    ExtPeek::Absent => as_is = false,
                }
            }
            let n = left.min(cs);
            if buf.len() < pos + n {
                return Ok(Whole::NeedMore);
            }
            at += pos + n;
            left -= n;
        }
        Ok(Whole::Ready { total: at, as_is })
    }

    /// Hand out a whole media message and update the chunk stream's state.
    fn take_whole(&mut self, first: &Plan, h: Header, total: usize, as_is: bool) -> Spliced {
        let wire = self.buf.split_to(total).freeze();
        let s = self.streams.entry(first.csid).or_default();
        s.partial = BytesMut::new();
        s.remaining = 0;
        s.header = h;
        self.note_peer(first.csid, h, as_is);
        if as_is {
            let body = first.header_len;
            let head = wire.slice(body..body + first.payload_len.min(HEAD_LEN));
            return Spliced::Media(SplicedMedia {
                csid: first.csid,
                timestamp: h.timestamp,
                type_id: h.type_id,
                wire,
                head,
                copied: false,
                chunk_size: self.chunk_size,
            });
        }
        // Gather the payload out of the received chunks, then write it context-free.
        let mut payload = BytesMut::with_capacity(h.len as usize);
        let mut at = first.header_len;
        let mut left = h.len as usize;
        let cs = self.chunk_size as usize;
        let basic = basic_len(first.csid);
        loop {
            let n = left.min(cs);
            payload.extend_from_slice(&wire[at..at + n]);
            at += n;
            left -= n;
            if left == 0 {
                break;
            }
            at += basic;
            if h.extended && wire[at..].starts_with(&h.ts_field.to_be_bytes()) {
                at += 4;
            }
        }
        Spliced::Media(self.rewritten(first.csid, h, payload.freeze()))
    }

    fn rewritten(&self, csid: u32, h: Header, payload: Bytes) -> SplicedMedia {
        let mut out = BytesMut::new();
        encode_message(
            &mut out,
            self.chunk_size,
            csid,
            h.timestamp,
            h.type_id,
            h.stream_id,
            &payload,
        );
        SplicedMedia {
            csid,
            timestamp: h.timestamp,
            type_id: h.type_id,
            wire: out.freeze(),
            head: payload.slice(..payload.len().min(HEAD_LEN)),
            copied: true,
            chunk_size: self.chunk_size,
        }
    }

    /// Take one chunk into its message (local messages, interleaved media).
    fn commit(&mut self, plan: Plan) -> Result<Option<Spliced>, ChunkError> {
        let forward_sid = self.stream_id;
        let s = self.streams.entry(plan.csid).or_default();
        self.buf.advance(plan.header_len);
        if let Some(h) = plan.start {
            s.partial = BytesMut::new();
            s.header = h;
            s.remaining = h.len;
            s.forward = is_media(h.type_id) && h.stream_id == forward_sid;
        }
        s.partial.extend_from_slice(&self.buf[..plan.payload_len]);
        self.buf.advance(plan.payload_len);
        s.remaining -= plan.payload_len as u32;
        if s.remaining > 0 {
            return Ok(None);
        }
        let payload = std::mem::take(&mut s.partial).freeze();
        let h = s.header;
        if s.forward {
            self.note_peer(plan.csid, h, false);
            return Ok(Some(Spliced::Media(self.rewritten(plan.csid, h, payload))));
        }
        let msg = RawMessage {
            csid: plan.csid,
            timestamp: h.timestamp,
            type_id: h.type_id,
            stream_id: h.stream_id,
            payload,
        };
        self.apply_control(&msg)?;
        Ok(Some(Spliced::Local(msg)))
    }

    /// Set Chunk Size and Abort, as the decoder applies them.
    fn apply_control(&mut self, msg: &RawMessage) -> Result<(), ChunkError> {
        match chunk_control(msg.type_id, &msg.payload, &self.limits)? {
            Some(Control::ChunkSize(size)) => self.chunk_size = size,
            Some(Control::Abort(csid)) => {
                if let Some(s) = self.streams.get_mut(&csid) {
                    s.partial = BytesMut::new();
                    s.remaining = 0;
                }
            }
            None => {}
        }
        Ok(())
    }
}

enum Whole {
    NeedMore,
    Interleaved,
    Ready { total: usize, as_is: bool },
}

fn basic_len(csid: u32) -> usize {
    match csid {
        0..=63 => 1,
        64..=319 => 2,
        _ => 3,
    }
}

fn basic_len_of(b0: u8) -> usize {
    match b0 & 0x3F {
        0 => 2,
        1 => 3,
        _ => 1,
    }
}

fn csid_of(b: &[u8]) -> u32 {
    match b[0] & 0x3F {
        0 => 64 + u32::from(b[1]),
        1 => 64 + u32::from(u16::from_le_bytes([b[1], b[2]])),
        n => u32::from(n),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ChunkDecoder, ChunkWriter, EXTENDED_MARKER, MSG_ABORT, MSG_SET_CHUNK_SIZE};
    use super::*;

    const SID: u32 = 1;

    /// One message as the origin sends it.
    #[derive(Clone)]
    struct M {
        csid: u32,
        ts: u32,
        type_id: u8,
        sid: u32,
        payload: Vec<u8>,
    }

    fn m(csid: u32, ts: u32, type_id: u8, sid: u32, len: usize) -> M {
        let payload = (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(ts as u8 ^ type_id))
            .collect();
        M {
            csid,
            ts,
            type_id,
            sid,
            payload,
        }
    }

    fn set_chunk_size(size: u32) -> M {
        M {
            csid: 2,
            ts: 0,
            type_id: MSG_SET_CHUNK_SIZE,
            sid: 0,
            payload: size.to_be_bytes().to_vec(),
        }
    }

    /// How the origin writes its chunks.
    #[derive(Clone, Copy, Debug)]
    enum Form {
        /// Every message context-free (fmt 0 start), back to back: SRS, shardcast.
        Fmt0,
        /// Compressed headers (fmt 1/2/3 starts): ffmpeg, librtmp.
        Compressed,
        /// fmt-0 starts, but the chunks of consecutive messages interleaved pairwise.
        Interleaved,
    }

    /// A chunked message's pieces: each chunk's bytes.
    fn chunks(out: &[u8], cs: u32, msg: &M) -> Vec<Vec<u8>> {
        let basic = basic_len(msg.csid);
        let ext = if msg.ts >= EXTENDED_MARKER { 4 } else { 0 };
        let mut at = basic + 11 + ext;
        let mut left = msg.payload.len();
        let mut v = Vec::new();
        let mut start = 0;
        loop {
            let n = left.min(cs as usize);
            at += n;
            left -= n;
            v.push(out[start..at].to_vec());
            if left == 0 {
                break;
            }
            start = at;
            at += basic + ext;
        }
        v
    }

    /// The origin's bytes for `msgs` at `cs` (Set Chunk Size messages change it for what
    /// follows, as on the wire).
    fn encode(msgs: &[M], mut cs: u32, form: Form) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = ChunkWriter::new();
        w.set_chunk_size(cs);
        let mut pending: Option<(u32, Vec<Vec<u8>>)> = None;
        for msg in msgs {
            match form {
                Form::Compressed => {
                    let mut b = BytesMut::new();
                    w.write(&mut b, msg.csid, msg.ts, msg.type_id, msg.sid, &msg.payload);
                    out.extend_from_slice(&b);
                }
                Form::Fmt0 | Form::Interleaved => {
                    let mut b = BytesMut::new();
                    encode_message(
                        &mut b,
                        cs,
                        msg.csid,
                        msg.ts,
                        msg.type_id,
                        msg.sid,
                        &msg.payload,
                    );
                    let pieces = chunks(&b, cs, msg);
                    if matches!(form, Form::Fmt0) || msg.type_id == MSG_SET_CHUNK_SIZE {
                        if let Some((_, p)) = pending.take() {
                            out.extend(p.concat());
                        }
                        out.extend_from_slice(&b);
                    } else {
                        match pending.take() {
                            // Two messages on different chunk streams: alternate chunk by
                            // chunk (one chunk stream carries one message at a time).
                            Some((csid, prev)) if csid != msg.csid => {
                                for i in 0..prev.len().max(pieces.len()) {
                                    if let Some(c) = prev.get(i) {
                                        out.extend_from_slice(c);
                                    }
                                    if let Some(c) = pieces.get(i) {
                                        out.extend_from_slice(c);
                                    }
                                }
                            }
                            Some((_, prev)) => {
                                out.extend(prev.concat());
                                pending = Some((msg.csid, pieces));
                            }
                            None => pending = Some((msg.csid, pieces)),
                        }
                    }
                }
            }
            if msg.type_id == MSG_SET_CHUNK_SIZE {
                cs = u32::from_be_bytes(msg.payload[..4].try_into().unwrap());
                w.set_chunk_size(cs);
            }
        }
        if let Some((_, p)) = pending.take() {
            out.extend(p.concat());
        }
        out
    }

    fn run(splicer: &mut ChunkSplicer, parts: &[&[u8]]) -> Vec<Spliced> {
        let mut v = Vec::new();
        for p in parts {
            splicer.push(p);
            while let Some(s) = splicer
                .next_spliced()
                .unwrap_or_else(|e| panic!("{e} after {}", v.len()))
            {
                v.push(s);
            }
        }
        v
    }

    /// Check a splice of `input` against the decoder's reading of it: media of `SID` comes
    /// out as context-free wires (each decodes alone to the same message), everything else as
    /// the same local messages, in order.
    fn check(input: &[u8], cs: u32, out: &[Spliced], ctx: &str) -> (usize, usize) {
        let mut dec = ChunkDecoder::default();
        let mut want = Vec::new();
        // The decoder must start at the same chunk size: announce it to it.
        let mut pre = BytesMut::new();
        encode_message(
            &mut pre,
            128,
            2,
            0,
            MSG_SET_CHUNK_SIZE,
            0,
            &cs.to_be_bytes(),
        );
        dec.push(&pre);
        dec.next_message().unwrap().unwrap();
        dec.push(input);
        while let Some(msg) = dec.next_message().unwrap() {
            want.push(msg);
        }
        assert_eq!(out.len(), want.len(), "{ctx}: message count");
        let (mut as_is, mut copied) = (0, 0);
        for (i, (got, want)) in out.iter().zip(&want).enumerate() {
            match got {
                Spliced::Media(sm) => {
                    assert!(
                        is_media(want.type_id) && want.stream_id == SID,
                        "{ctx} #{i}"
                    );
                    // Alone, at its chunk size, it decodes to the message.
                    let mut d = ChunkDecoder::default();
                    let mut pre = BytesMut::new();
                    encode_message(&mut pre, 128, 2, 0, 1, 0, &sm.chunk_size.to_be_bytes());
                    d.push(&pre);
                    d.next_message().unwrap();
                    d.push(&sm.wire);
                    let alone = d.next_message().unwrap().expect("whole message");
                    assert_eq!(d.buffered(), 0, "{ctx} #{i}: exactly one message");
                    assert_eq!(
                        (alone.csid, alone.timestamp, alone.type_id, alone.stream_id),
                        (want.csid, want.timestamp, want.type_id, want.stream_id),
                        "{ctx} #{i}"
                    );
                    assert_eq!(alone.payload, want.payload, "{ctx} #{i}: payload");
                    assert_eq!(sm.wire[0] >> 6, 0, "{ctx} #{i}: fmt-0 start");
                    assert_eq!(
                        sm.head[..],
                        want.payload[..want.payload.len().min(HEAD_LEN)]
                    );
                    assert_eq!((sm.timestamp, sm.type_id), (want.timestamp, want.type_id));
                    if sm.copied {
                        copied += 1;
                    } else {
                        as_is += 1;
                        // Handed out as received: a run of the input.
                        assert!(
                            input.windows(sm.wire.len()).any(|w| w == &sm.wire[..]),
                            "{ctx} #{i}: as-is wire is not input bytes"
                        );
                    }
                }
                Spliced::Local(l) => {
                    assert!(
                        !(is_media(want.type_id) && want.stream_id == SID),
                        "{ctx} #{i}"
                    );
                    assert_eq!(l, want, "{ctx} #{i}");
                }
            }
        }
        (as_is, copied)
    }

    /// A play session's worth of origin messages: control, statuses, metadata, media on two
    /// chunk streams, a message on another stream, a Set Chunk Size midway.
    fn session(ts0: u32, big: usize) -> Vec<M> {
        vec![
            m(2, 0, 5, 0, 4),        // Window Acknowledgement Size
            m(2, 0, 4, 0, 6),        // User Control (StreamBegin)
            m(5, 0, 20, SID, 120),   // onStatus Play.Start
            m(5, 0, 18, SID, 40),    // |RtmpSampleAccess (data, forwarded)
            m(6, ts0, 18, SID, 300), // onMetaData
            m(6, ts0, 9, SID, big),  // video sequence header / keyframe
            m(4, ts0, 8, SID, 7),    // audio
            m(6, ts0 + 40, 9, SID, big / 3 + 1),
            m(4, ts0 + 23, 8, SID, 300),
            m(2, 0, 4, 0, 6), // ping request: local
            m(6, ts0 + 80, 9, SID, big / 2),
            m(7, ts0 + 80, 9, 2, 50), // media of another stream: local
            m(4, ts0 + 46, 8, SID, 300),
            set_chunk_size(200),
            m(6, ts0 + 120, 9, SID, 1000),
            m(4, ts0 + 69, 8, SID, 0), // empty message
            m(6, ts0 + 160, 9, SID, 1000),
            m(5, ts0 + 160, 20, SID, 90), // onStatus UnpublishNotify
        ]
    }

    #[test]
    fn every_form_chunk_size_and_split_point() {
        for (ts0, big) in [
            (0u32, 5_000usize),
            (EXTENDED_MARKER - 50, 3_000),
            (0x7FFF_0000, 700),
        ] {
            for cs in [128u32, 1000, 4096, 60_000] {
                for form in [Form::Fmt0, Form::Compressed, Form::Interleaved] {
                    let msgs = session(ts0, big);
                    let input = encode(&msgs, cs, form);
                    let ctx = format!("ts0={ts0} cs={cs} {form:?}");
                    let mut s = ChunkSplicer::new(cs, SID, DecoderLimits::default());
                    let out = run(&mut s, &[&input]);
                    let (as_is, copied) = check(&input, cs, &out, &ctx);
                    assert_eq!(s.buffered(), 0);
                    assert_eq!(s.chunk_size(), 200, "{ctx}: followed Set Chunk Size");
                    match form {
                        Form::Fmt0 => assert_eq!(copied, 0, "{ctx}: no copy, {as_is} as is"),
                        Form::Compressed => assert!(copied > 0, "{ctx}"),
                        Form::Interleaved => assert!(copied > 0 && as_is > 0, "{ctx}"),
                    }
                    // Split in two at every byte position (every 7th for the big inputs):
                    // the same output.
                    let step = if input.len() > 20_000 { 7 } else { 1 };
                    for at in (0..=input.len()).step_by(step) {
                        let mut s = ChunkSplicer::new(cs, SID, DecoderLimits::default());
                        let out2 = run(&mut s, &[&input[..at], &input[at..]]);
                        assert_eq!(out2, out, "{ctx}: split at {at}");
                    }
                }
            }
        }
    }

    #[test]
    fn byte_by_byte_is_the_same() {
        let msgs = session(1000, 900);
        for form in [Form::Fmt0, Form::Compressed, Form::Interleaved] {
            let input = encode(&msgs, 128, form);
            let mut s = ChunkSplicer::new(128, SID, DecoderLimits::default());
            let whole = run(&mut s, &[&input]);
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            let mut s = ChunkSplicer::new(128, SID, DecoderLimits::default());
            assert_eq!(run(&mut s, &bytes), whole, "{form:?}");
        }
    }

    #[test]
    fn omitted_repeated_extended_timestamp_is_rewritten() {
        // An encoder that leaves the 4-byte field off fmt-3 continuations: the decoder reads
        // it, but a strict player might not; the splicer writes it in.
        let msg = m(6, EXTENDED_MARKER + 5, 9, SID, 300);
        let mut full = BytesMut::new();
        encode_message(&mut full, 128, 6, msg.ts, 9, SID, &msg.payload);
        let pieces = chunks(&full, 128, &msg);
        let mut input = pieces[0].clone();
        for p in &pieces[1..] {
            input.push(p[0]);
            input.extend_from_slice(&p[5..]);
        }
        let mut s = ChunkSplicer::new(128, SID, DecoderLimits::default());
        let out = run(&mut s, &[&input]);
        let Spliced::Media(sm) = &out[0] else {
            panic!()
        };
        assert!(sm.copied);
        assert_eq!(sm.wire, full.freeze(), "rewritten with the repeated field");
    }

    #[test]
    fn a_continuation_without_a_start_is_an_error_and_sticks() {
        // The relay hands over at a message boundary; a fmt-1 chunk on a chunk stream the
        // splicer never saw cannot be read.
        let mut s = ChunkSplicer::with_defaults(SID);
        s.push(&[0x46, 0, 0, 40, 0, 0, 1, 9]);
        let e = s.next_spliced().unwrap_err();
        assert_eq!(e, ChunkError::NoPreviousHeader { csid: 6, fmt: 1 });
        assert_eq!(s.next_spliced().unwrap_err(), e);
        // Limits as the decoder's.
        let mut s = ChunkSplicer::new(
            128,
            SID,
            DecoderLimits {
                max_message_len: 100,
                ..DecoderLimits::default()
            },
        );
        let mut b = BytesMut::new();
        encode_message(&mut b, 128, 6, 0, 9, SID, &[0; 101]);
        s.push(&b);
        assert!(matches!(
            s.next_spliced(),
            Err(ChunkError::MessageTooLong { len: 101, .. })
        ));
        let mut s = ChunkSplicer::with_defaults(SID);
        let mut b = BytesMut::new();
        encode_message(
            &mut b,
            128,
            2,
            0,
            MSG_SET_CHUNK_SIZE,
            0,
            &0u32.to_be_bytes(),
        );
        s.push(&b);
        assert_eq!(s.next_spliced(), Err(ChunkError::ChunkSizeZero));
    }

    #[test]
    fn hand_over_from_a_decoder_at_a_message_boundary() {
        // A decoder reads the start of the session, the splicer takes over with its header
        // states, and reads the rest exactly as the decoder would have.
        let msgs = session(5, 700);
        for form in [Form::Fmt0, Form::Compressed] {
            let input = encode(&msgs, 128, form);
            let mut dec = ChunkDecoder::default();
            let mut pre = BytesMut::new();
            encode_message(
                &mut pre,
                128,
                2,
                0,
                MSG_SET_CHUNK_SIZE,
                0,
                &128u32.to_be_bytes(),
            );
            dec.push(&pre);
            dec.next_message().unwrap();
            let mut handed = 0;
            for (at, b) in input.iter().enumerate() {
                dec.push(std::slice::from_ref(b));
                while dec.next_message().unwrap().is_some() {}
                if dec.is_idle() && at > input.len() / 3 {
                    handed = at + 1;
                    break;
                }
            }
            assert!(handed > 0);
            let mut s = ChunkSplicer::new(dec.chunk_size(), SID, DecoderLimits::default());
            for (csid, h) in dec.header_states() {
                s.seed(csid, h);
            }
            let out = run(&mut s, &[&input[handed..]]);
            // The decoder's reading of the rest, from the same state.
            let mut whole = ChunkDecoder::default();
            whole.push(&pre);
            whole.next_message().unwrap();
            whole.push(&input);
            let mut all = Vec::new();
            while let Some(m) = whole.next_message().unwrap() {
                all.push(m);
            }
            let rest = &all[all.len() - out.len()..];
            for (got, want) in out.iter().zip(rest) {
                match got {
                    Spliced::Local(l) => assert_eq!(l, want, "{form:?}"),
                    Spliced::Media(m) => assert_eq!(
                        (m.timestamp, m.type_id, &m.head[..]),
                        (
                            want.timestamp,
                            want.type_id,
                            &want.payload[..want.payload.len().min(HEAD_LEN)]
                        ),
                        "{form:?}"
                    ),
                }
            }
            assert!(!out.is_empty());
        }
    }

    /// A publisher's messages after Publish.Start, as ffmpeg and OBS write them: audio on 4,
    /// video on 6, metadata on 8 (ffmpeg's channels; OBS puts all media on 4), acks and user
    /// control on 2, a Set Chunk Size midway, a command on a media chunk stream (the relay
    /// cuts it out, so the receiver's state there goes stale), FCUnpublish and deleteStream.
    fn publisher(ts0: u32, big: usize, one_csid: bool) -> Vec<M> {
        let (a, v, d) = if one_csid { (4, 4, 4) } else { (4, 6, 8) };
        let mut out = vec![
            m(d, ts0, 18, SID, 280), // @setDataFrame onMetaData
            m(v, ts0, 9, SID, 50),   // AVC sequence header
            m(a, ts0, 8, SID, 7),    // AAC sequence header
            m(v, ts0, 9, SID, big),  // keyframe
        ];
        for i in 1..12u32 {
            out.push(m(a, ts0 + 23 * i, 8, SID, 300));
            // Constant frame size now and then: fmt 2/3 starts.
            let len = if i % 3 == 0 {
                900
            } else {
                big / 3 + i as usize
            };
            out.push(m(v, ts0 + 40 * i, 9, SID, len));
            if i == 4 {
                out.push(m(2, 0, 3, 0, 4)); // Acknowledgement
                out.push(m(2, 0, 4, 0, 6)); // User Control (pong)
            }
            if i == 6 {
                out.push(set_chunk_size(200));
            }
            if i == 8 {
                out.push(m(v, ts0 + 40 * i, 20, SID, 60)); // a command on a media csid
                out.push(m(7, ts0 + 40 * i, 9, 2, 50)); // media of another stream
            }
        }
        out.push(m(3, 0, 20, 0, 40)); // FCUnpublish
        out.push(m(3, 0, 20, 0, 35)); // deleteStream
        out
    }

    /// What an ordered receiver (a publisher's origin) decodes from the relay: its own
    /// session's earlier messages (on the chunk streams the client's media will use too), then
    /// each forwarded wire, with the relay's Set Chunk Size and an ack of its own in between,
    /// the relay's writer forgetting each chunk stream a forwarded message used.
    fn at_receiver(out: &[Spliced], cs: u32) -> Vec<RawMessage> {
        let mut own = ChunkWriter::new();
        let mut wire = BytesMut::new();
        // connect, publish, and media re-chunked before the splice took over.
        own.write(&mut wire, 3, 0, 20, 0, &[5; 90]);
        own.write(&mut wire, 5, 0, 20, SID, &[6; 40]);
        for csid in [4, 6, 8] {
            own.write(&mut wire, csid, 7, 9, SID, &[7; 30]);
        }
        let mut dec = ChunkDecoder::default();
        dec.push(&wire);
        while dec.next_message().unwrap().is_some() {}
        let mut got = Vec::new();
        let mut at = 128;
        let _ = cs;
        for s in out {
            let mut wire = BytesMut::new();
            match s {
                Spliced::Media(sm) => {
                    if sm.chunk_size != at {
                        own.write(&mut wire, 2, 0, 1, 0, &sm.chunk_size.to_be_bytes());
                        own.set_chunk_size(sm.chunk_size);
                        at = sm.chunk_size;
                    }
                    wire.extend_from_slice(&sm.wire);
                    own.forget(sm.csid);
                }
                Spliced::Local(_) => own.write(&mut wire, 2, 0, 3, 0, &[0, 0, 1, 0]),
            }
            dec.push(&wire);
            while let Some(msg) = dec.next_message().unwrap() {
                if is_media(msg.type_id) {
                    got.push(msg);
                }
            }
        }
        got
    }

    #[test]
    fn an_ordered_receiver_gets_compressed_starts_as_received() {
        for (ts0, big) in [(0u32, 5_000usize), (EXTENDED_MARKER - 300, 3_000)] {
            for cs in [128u32, 4096, 60_000] {
                for form in [Form::Compressed, Form::Fmt0, Form::Interleaved] {
                    // OBS's single media chunk stream, in the encoder's own form only.
                    let layouts: &[bool] = match form {
                        Form::Compressed => &[false, true],
                        _ => &[false],
                    };
                    for &one_csid in layouts {
                        let msgs = publisher(ts0, big, one_csid);
                        let input = encode(&msgs, cs, form);
                        let ctx = format!("ts0={ts0} cs={cs} {form:?} one_csid={one_csid}");
                        let new = || {
                            ChunkSplicer::new(cs, SID, DecoderLimits::default()).ordered(&[2, 3, 5])
                        };
                        let mut s = new();
                        let out = run(&mut s, &[&input]);
                        let (as_is, copied, want) = check_media(&input, cs, &out, &ctx);
                        // The receiver decodes exactly the media of the publish stream, in the
                        // order the relay's decoder completes them.
                        let got: Vec<(u32, u8, Vec<u8>)> = at_receiver(&out, cs)
                            .into_iter()
                            .map(|m| (m.timestamp, m.type_id, m.payload.to_vec()))
                            .collect();
                        assert_eq!(got.len(), want.len(), "{ctx}");
                        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                            assert_eq!(g, w, "{ctx}: media #{i} at the receiver");
                        }
                        match form {
                            // Rewritten: the first message of each chunk stream (the receiver's
                            // state there is the relay's own), the first after the cut-out
                            // command, and (interleaved) the ones cut apart.
                            Form::Compressed | Form::Fmt0 => assert!(
                                copied <= 4 && as_is >= want.len() - 4,
                                "{ctx}: {as_is} as is, {copied} copied"
                            ),
                            Form::Interleaved => assert!(as_is > 0, "{ctx}"),
                        }
                        let step = if input.len() > 20_000 { 7 } else { 1 };
                        for at in (0..=input.len()).step_by(step) {
                            let mut s = new();
                            let out2 = run(&mut s, &[&input[..at], &input[at..]]);
                            assert_eq!(out2, out, "{ctx}: split at {at}");
                        }
                    }
                }
            }
        }
    }

    /// Like [`check`] for an ordered splice: local messages as the decoder reads them, media
    /// counted (fmt-0 starts context-free, compressed ones as input bytes).
    /// Also gives the media as (timestamp, type, payload), in that order.
    fn check_media(input: &[u8], cs: u32, out: &[Spliced], ctx: &str) -> Checked {
        let mut dec = ChunkDecoder::default();
        let mut pre = BytesMut::new();
        encode_message(&mut pre, 128, 2, 0, 1, 0, &cs.to_be_bytes());
        dec.push(&pre);
        dec.next_message().unwrap().unwrap();
        dec.push(input);
        let mut want = Vec::new();
        while let Some(msg) = dec.next_message().unwrap() {
            want.push(msg);
        }
        assert_eq!(out.len(), want.len(), "{ctx}: message count");
        let (mut as_is, mut copied) = (0, 0);
        for (i, (got, want)) in out.iter().zip(&want).enumerate() {
            match got {
                Spliced::Media(sm) => {
                    assert!(
                        is_media(want.type_id) && want.stream_id == SID,
                        "{ctx} #{i}"
                    );
                    assert_eq!((sm.timestamp, sm.type_id), (want.timestamp, want.type_id));
                    if sm.copied {
                        copied += 1;
                        assert_eq!(sm.wire[0] >> 6, 0, "{ctx} #{i}: a rewrite is fmt 0");
                    } else {
                        as_is += 1;
                        assert!(
                            input.windows(sm.wire.len()).any(|w| w == &sm.wire[..]),
                            "{ctx} #{i}: as-is wire is not input bytes"
                        );
                    }
                }
                Spliced::Local(l) => assert_eq!(l, want, "{ctx} #{i}"),
            }
        }
        let media = want
            .iter()
            .filter(|m| is_media(m.type_id) && m.stream_id == SID)
            .map(|m| (m.timestamp, m.type_id, m.payload.to_vec()))
            .collect();
        (as_is, copied, media)
    }

    type Checked = (usize, usize, Vec<(u32, u8, Vec<u8>)>);

    #[test]
    fn abort_drops_a_local_message_in_progress() {
        let mut b = BytesMut::new();
        let cmd = m(5, 0, 20, SID, 300);
        encode_message(&mut b, 128, 5, 0, 20, SID, &cmd.payload);
        let first = chunks(&b, 128, &cmd)[0].clone();
        let mut input = first;
        let mut abort = BytesMut::new();
        encode_message(&mut abort, 128, 2, 0, MSG_ABORT, 0, &5u32.to_be_bytes());
        input.extend_from_slice(&abort);
        let v = m(6, 10, 9, SID, 50);
        let mut b2 = BytesMut::new();
        encode_message(&mut b2, 128, 6, 10, 9, SID, &v.payload);
        input.extend_from_slice(&b2);
        let mut s = ChunkSplicer::with_defaults(SID);
        let out = run(&mut s, &[&input]);
        assert_eq!(out.len(), 2);
        assert!(matches!(&out[0], Spliced::Local(l) if l.type_id == MSG_ABORT));
        let Spliced::Media(sm) = &out[1] else {
            panic!()
        };
        assert_eq!((sm.copied, &sm.wire[..]), (false, &b2[..]));
    }
}
