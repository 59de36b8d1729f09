//! The wire side of HTTP-FLV players, kept pure so it is tested byte by byte: the URL and the
//! request, the response head, a de-chunker for `Transfer-Encoding: chunked` (or a plain body),
//! and an incremental FLV tag parser. Everything is parsed in place from the player's one read
//! buffer: payload bytes are never copied or gathered, a tag only keeps its first and last 32
//! bytes (enough for the codec flags and the latency fingerprint), so a player costs the same
//! memory whatever the size of its keyframes.

use shardcast::media::{parse_audio_tag, parse_video_tag, FrameKind};
use thiserror::Error;

/// FLV file header: signature, version, flags, header size.
const FILE_HEADER_LEN: usize = 9;
/// Tag header: type, 24-bit size, 24-bit timestamp, 8-bit timestamp extension, 24-bit stream id.
const TAG_HEADER_LEN: usize = 11;
/// Bytes kept from each end of a tag's payload.
pub const EDGE: usize = 32;
/// Longest chunk-size line accepted (hex digits; 15 of them already make 2^60 bytes).
const MAX_SIZE_DIGITS: u8 = 15;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum HttpFlvError {
    #[error("HTTP status {0} (expected 200)")]
    Status(u16),
    #[error("malformed response head: {0}")]
    BadHead(&'static str),
    #[error("response head larger than {0} bytes")]
    HeadTooLarge(usize),
    #[error("bad chunked encoding: {0}")]
    Chunk(&'static str),
    #[error("not an FLV stream (no `FLV` signature)")]
    NotFlv,
    #[error("FLV header size {0} is smaller than 9 bytes")]
    BadHeader(u32),
    #[error("FLV previous tag size {got} does not match the tag ({want})")]
    PrevTagSize { got: u32, want: u32 },
}

/// `http://host[:port]/path[?query]` split into `host[:port]` and `/path[?query]`; `None` when
/// it is not such a URL (no host, no path after the host, or user info).
pub fn split_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("http://")?;
    let slash = rest.find('/')?;
    let (hostport, path) = rest.split_at(slash);
    let path = path.split('#').next().unwrap_or(path);
    if hostport.is_empty() || hostport.contains('@') || path.len() < 2 {
        return None;
    }
    Some((hostport, path))
}

/// The request a player sends, once per run and shared by every player of the URL.
pub fn request(hostport: &str, path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nUser-Agent: shardcast-bench/{}\r\nAccept: */*\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Chunked,
    Length(u64),
    UntilClose,
}

/// A 200 response head: its length in the buffer and the body's framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead {
    pub len: usize,
    pub framing: Framing,
}

/// A response head of any status, as [`parse_head`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head<'a> {
    pub status: u16,
    /// The head's length in the buffer, its closing empty line included.
    pub len: usize,
    /// The status line and the header lines (without the closing empty line).
    lines: &'a [u8],
}

impl<'a> Head<'a> {
    /// The header fields in order, names and values trimmed; `Err` for a line without a colon.
    pub fn fields(&self) -> impl Iterator<Item = Result<(&'a [u8], &'a [u8]), HttpFlvError>> {
        head_lines(self.lines).skip(1).map(|line| {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                return Err(HttpFlvError::BadHead("header line without a colon"));
            };
            Ok((line[..colon].trim_ascii(), line[colon + 1..].trim_ascii()))
        })
    }

    /// How the body is delimited: chunked when the last transfer coding is `chunked`, else by
    /// Content-Length, else until the connection closes.
    pub fn framing(&self) -> Result<Framing, HttpFlvError> {
        let mut chunked = false;
        let mut length = None;
        for field in self.fields() {
            let (name, value) = field?;
            if name.eq_ignore_ascii_case(b"transfer-encoding") {
                // The last coding is the one that frames the body.
                let last = value
                    .rsplit(|&b| b == b',')
                    .next()
                    .unwrap_or_default()
                    .trim_ascii();
                chunked = last.eq_ignore_ascii_case(b"chunked");
            } else if name.eq_ignore_ascii_case(b"content-length") {
                match std::str::from_utf8(value).ok().and_then(|s| s.parse().ok()) {
                    Some(v) => length = Some(v),
                    None => return Err(HttpFlvError::BadHead("bad Content-Length")),
                }
            }
        }
        Ok(match (chunked, length) {
            (true, _) => Framing::Chunked,
            (false, Some(n)) => Framing::Length(n),
            (false, None) => Framing::UntilClose,
        })
    }
}

/// The lines of a head, each without its CR, up to the first empty one.
fn head_lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .take_while(|l| !l.is_empty())
}

/// Parses a response head of any status from the start of `buf`. `Ok(None)`: more bytes
/// needed. Lines may end in CRLF or a bare LF. The header lines are checked by
/// [`Head::fields`] and [`Head::framing`], not here.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head<'_>>, HttpFlvError> {
    let bad = |m| Err(HttpFlvError::BadHead(m));
    // Blank lines before the status line are tolerated (RFC 9112, 2.2).
    let first = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let text = &buf[first..];
    // The head ends at the first empty line after the status line.
    let mut end = None;
    let mut line_start = 0;
    for (i, &b) in text.iter().enumerate() {
        if b == b'\n' {
            let line = &text[line_start..i];
            if line.is_empty() || line == b"\r" {
                end = Some(i + 1);
                break;
            }
            line_start = i + 1;
        }
    }
    let Some(end) = end else {
        // A partial status line can already be judged, so a non-HTTP peer fails fast.
        let n = text.len().min(5);
        if text[..n] != b"HTTP/"[..n] {
            return bad("not an HTTP response");
        }
        return Ok(None);
    };
    let Some(after) = head_lines(&text[..end])
        .next()
        .and_then(|l| l.strip_prefix(b"HTTP/"))
    else {
        return bad("not an HTTP response");
    };
    let mut parts = after.splitn(3, |&b| b == b' ');
    let _version = parts.next();
    let code = parts.next().unwrap_or_default();
    if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
        return bad("no status code");
    }
    let status = code
        .iter()
        .fold(0u16, |acc, &d| acc * 10 + u16::from(d - b'0'));
    Ok(Some(Head {
        status,
        len: first + end,
        lines: &text[..end],
    }))
}

/// Parses a response head from the start of `buf`. `Ok(None)`: more bytes needed. Lines may
/// end in CRLF or a bare LF. Any status but 200 is an error.
pub fn parse_response_head(buf: &[u8]) -> Result<Option<ResponseHead>, HttpFlvError> {
    let Some(head) = parse_head(buf)? else {
        return Ok(None);
    };
    if head.status != 200 {
        return Err(HttpFlvError::Status(head.status));
    }
    Ok(Some(ResponseHead {
        len: head.len,
        framing: head.framing()?,
    }))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading the chunk size's hex digits.
    Size {
        value: u64,
        digits: u8,
    },
    /// After the size: extensions or whitespace up to the line end.
    Ext {
        value: u64,
    },
    /// CR seen at the end of the size line.
    SizeLf {
        value: u64,
    },
    Data {
        left: u64,
    },
    /// After a chunk's data: CRLF (or LF).
    DataCr,
    DataLf,
    /// After the last chunk: trailer lines until an empty one.
    TrailerStart,
    TrailerLine,
    TrailerLf,
    Done,
}

/// Turns the response body back into the FLV byte stream.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    decoding: Decoding,
    /// Reject a bare LF where chunked framing wants CRLF.
    crlf_only: bool,
}

#[derive(Debug, Clone, Copy)]
enum Decoding {
    Chunked(ChunkState),
    Length(u64),
    UntilClose,
}

/// What [`BodyDecoder::feed_events`] reports, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEvent<'a> {
    /// A run of payload bytes (a slice of the input, never copied).
    Data(&'a [u8]),
    /// A chunk of chunked framing has ended, the line end after its data included.
    ChunkEnd,
}

impl BodyDecoder {
    pub fn new(framing: Framing) -> Self {
        BodyDecoder {
            decoding: match framing {
                Framing::Chunked => Decoding::Chunked(ChunkState::Size {
                    value: 0,
                    digits: 0,
                }),
                Framing::Length(n) => Decoding::Length(n),
                Framing::UntilClose => Decoding::UntilClose,
            },
            crlf_only: false,
        }
    }

    /// A decoder that refuses a bare LF ending a chunk-size line, a chunk's data or the last
    /// chunk (a sender must send CRLF; by default a bare LF is accepted, as RFC 9112 allows a
    /// recipient to). Trailer lines are not checked.
    pub fn crlf_only(mut self) -> Self {
        self.crlf_only = true;
        self
    }

    /// Feeds raw body bytes; `sink` gets each run of payload bytes in order (slices of
    /// `input`, never copied). Returns true once the body has ended (the last chunk and its
    /// trailer, or Content-Length reached); anything after that is ignored.
    pub fn feed(
        &mut self,
        input: &[u8],
        mut sink: impl FnMut(&[u8]) -> Result<(), HttpFlvError>,
    ) -> Result<bool, HttpFlvError> {
        self.feed_events(input, |ev| match ev {
            BodyEvent::Data(d) => sink(d),
            BodyEvent::ChunkEnd => Ok(()),
        })
    }

    /// Like [`BodyDecoder::feed`], and tells where each chunk ends too.
    pub fn feed_events(
        &mut self,
        input: &[u8],
        mut sink: impl FnMut(BodyEvent<'_>) -> Result<(), HttpFlvError>,
    ) -> Result<bool, HttpFlvError> {
        match &mut self.decoding {
            Decoding::UntilClose => {
                if !input.is_empty() {
                    sink(BodyEvent::Data(input))?;
                }
                Ok(false)
            }
            Decoding::Length(left) => {
                let take = (*left).min(input.len() as u64) as usize;
                if take > 0 {
                    sink(BodyEvent::Data(&input[..take]))?;
                }
                *left -= take as u64;
                Ok(*left == 0)
            }
            Decoding::Chunked(st) => dechunk(st, self.crlf_only, input, &mut sink),
        }
    }
}

fn dechunk(
    st: &mut ChunkState,
    crlf_only: bool,
    input: &[u8],
    sink: &mut impl FnMut(BodyEvent<'_>) -> Result<(), HttpFlvError>,
) -> Result<bool, HttpFlvError> {
    use ChunkState::*;
    let bad = |m| Err(HttpFlvError::Chunk(m));
    let bare_lf = || {
        if crlf_only {
            Err(HttpFlvError::Chunk("bare LF in chunked framing"))
        } else {
            Ok(())
        }
    };
    if *st == Done {
        return Ok(true);
    }
    let mut i = 0;
    while i < input.len() {
        if let Data { left } = *st {
            let take = left.min((input.len() - i) as u64) as usize;
            sink(BodyEvent::Data(&input[i..i + take]))?;
            i += take;
            *st = if left == take as u64 {
                DataCr
            } else {
                Data {
                    left: left - take as u64,
                }
            };
            continue;
        }
        let b = input[i];
        i += 1;
        // The size line has ended: a chunk of data, or the last chunk.
        let line_end = |value: u64| {
            if value == 0 {
                TrailerStart
            } else {
                Data { left: value }
            }
        };
        *st = match *st {
            Size { value, digits } => match b {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    if digits >= MAX_SIZE_DIGITS {
                        return bad("chunk size too large");
                    }
                    let d = (b as char).to_digit(16).unwrap_or(0);
                    Size {
                        value: (value << 4) | u64::from(d),
                        digits: digits + 1,
                    }
                }
                _ if digits == 0 => return bad("missing chunk size"),
                b';' | b' ' | b'\t' => Ext { value },
                b'\r' => SizeLf { value },
                b'\n' => {
                    bare_lf()?;
                    line_end(value)
                }
                _ => return bad("bad character in chunk size"),
            },
            Ext { value } => match b {
                b'\r' => SizeLf { value },
                b'\n' => {
                    bare_lf()?;
                    line_end(value)
                }
                _ => Ext { value },
            },
            SizeLf { value } => match b {
                b'\n' => line_end(value),
                _ => return bad("CR without LF after chunk size"),
            },
            DataCr => match b {
                b'\r' => DataLf,
                b'\n' => {
                    bare_lf()?;
                    sink(BodyEvent::ChunkEnd)?;
                    Size {
                        value: 0,
                        digits: 0,
                    }
                }
                _ => return bad("chunk data longer than its size"),
            },
            DataLf => match b {
                b'\n' => {
                    sink(BodyEvent::ChunkEnd)?;
                    Size {
                        value: 0,
                        digits: 0,
                    }
                }
                _ => return bad("CR without LF after chunk data"),
            },
            TrailerStart => match b {
                b'\r' => TrailerLf,
                b'\n' => {
                    bare_lf()?;
                    Done
                }
                _ => TrailerLine,
            },
            TrailerLine => match b {
                b'\n' => TrailerStart,
                _ => TrailerLine,
            },
            TrailerLf => match b {
                b'\n' => Done,
                _ => return bad("CR without LF in trailer"),
            },
            Data { .. } | Done => unreachable!("Data is handled above, Done returns"),
        };
        if *st == Done {
            return Ok(true);
        }
    }
    Ok(*st == Done)
}

/// One complete FLV tag as the parser saw it pass: its header fields and the bytes at both ends
/// of its payload (both the whole payload when it is at most [`EDGE`] bytes).
#[derive(Debug, Clone, Copy)]
pub struct FlvTag<'a> {
    /// Tag type with the filter bit cleared (8 audio, 9 video, 18 script data).
    pub tag_type: u8,
    pub timestamp: u32,
    pub size: u32,
    /// The first `min(size, 32)` payload bytes.
    pub head: &'a [u8],
    /// The last `min(size, 32)` payload bytes.
    pub tail: &'a [u8],
}

impl FlvTag<'_> {
    pub fn kind(&self) -> Option<FrameKind> {
        match self.tag_type {
            8 => Some(FrameKind::Audio),
            9 => Some(FrameKind::Video),
            18 => Some(FrameKind::Data),
            _ => None,
        }
    }

    /// The same fingerprint the publishers stamp ([`crate::latency::fingerprint`]).
    pub fn fingerprint(&self) -> u32 {
        crate::latency::fingerprint_parts(self.size as usize, self.head, self.tail)
    }

    /// Keyframe, sequence header and end-of-sequence flags from the payload's first bytes,
    /// as `shardcast::media::Frame` sets them.
    pub fn flags(&self) -> TagFlags {
        match self.kind() {
            Some(FrameKind::Video) => match parse_video_tag(self.head) {
                Some(i) => TagFlags {
                    keyframe: i.keyframe && !i.sequence_header,
                    sequence_header: i.sequence_header,
                    end_of_sequence: i.end_of_sequence,
                },
                None => TagFlags::default(),
            },
            Some(FrameKind::Audio) => TagFlags {
                sequence_header: parse_audio_tag(self.head).is_some_and(|i| i.sequence_header),
                ..TagFlags::default()
            },
            _ => TagFlags::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TagFlags {
    pub keyframe: bool,
    pub sequence_header: bool,
    pub end_of_sequence: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlvState {
    FileHeader,
    /// The rest of a longer file header, then PreviousTagSize0.
    Skip(u64),
    TagHeader,
    Payload(u32),
    PrevSize,
}

/// Incremental FLV parser over the de-chunked body: fixed size, no allocation.
#[derive(Debug, Clone)]
pub struct FlvParser {
    state: FlvState,
    /// Header bytes being gathered (file header, tag header or previous tag size).
    acc: [u8; TAG_HEADER_LEN],
    have: usize,
    tag_type: u8,
    timestamp: u32,
    size: u32,
    edges: Edges,
}

/// The first and last [`EDGE`] bytes of a payload that streams past in pieces (what a player
/// keeps of a media message: codec flags and the latency fingerprint need no more). Fixed size,
/// no allocation; shared by the FLV tag parser and the RTMP chunk scanner.
#[derive(Debug, Clone, Copy)]
pub struct Edges {
    head: [u8; EDGE],
    head_len: usize,
    tail: [u8; EDGE],
    tail_len: usize,
}

impl Default for Edges {
    fn default() -> Self {
        Edges {
            head: [0; EDGE],
            head_len: 0,
            tail: [0; EDGE],
            tail_len: 0,
        }
    }
}

impl Edges {
    /// Forget the payload seen so far (a new one starts).
    pub fn clear(&mut self) {
        self.head_len = 0;
        self.tail_len = 0;
    }

    /// The next piece of the payload.
    pub fn keep(&mut self, s: &[u8]) {
        if self.head_len < EDGE {
            let n = (EDGE - self.head_len).min(s.len());
            self.head[self.head_len..self.head_len + n].copy_from_slice(&s[..n]);
            self.head_len += n;
        }
        if s.len() >= EDGE {
            self.tail.copy_from_slice(&s[s.len() - EDGE..]);
            self.tail_len = EDGE;
        } else {
            let keep = self.tail_len.min(EDGE - s.len());
            self.tail
                .copy_within(self.tail_len - keep..self.tail_len, 0);
            self.tail[keep..keep + s.len()].copy_from_slice(s);
            self.tail_len = keep + s.len();
        }
    }

    /// The first `min(len, EDGE)` bytes of the payload seen so far.
    pub fn head(&self) -> &[u8] {
        &self.head[..self.head_len]
    }

    /// The last `min(len, EDGE)` bytes of the payload seen so far.
    pub fn tail(&self) -> &[u8] {
        &self.tail[..self.tail_len]
    }
}

impl Default for FlvParser {
    fn default() -> Self {
        FlvParser {
            state: FlvState::FileHeader,
            acc: [0; TAG_HEADER_LEN],
            have: 0,
            tag_type: 0,
            timestamp: 0,
            size: 0,
            edges: Edges::default(),
        }
    }
}

fn be24(b: &[u8]) -> u32 {
    u32::from_be_bytes([0, b[0], b[1], b[2]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl FlvParser {
    /// Gathers up to `need` header bytes from `input[*i..]`; true once all are there.
    fn gather(&mut self, input: &[u8], i: &mut usize, need: usize) -> bool {
        let take = (need - self.have).min(input.len() - *i);
        self.acc[self.have..self.have + take].copy_from_slice(&input[*i..*i + take]);
        self.have += take;
        *i += take;
        if self.have == need {
            self.have = 0;
            true
        } else {
            false
        }
    }

    fn emit(&mut self, on_tag: &mut impl FnMut(&FlvTag<'_>)) {
        on_tag(&FlvTag {
            tag_type: self.tag_type,
            timestamp: self.timestamp,
            size: self.size,
            head: self.edges.head(),
            tail: self.edges.tail(),
        });
    }

    /// Feeds de-chunked body bytes; `on_tag` is called for every tag completed in them, when
    /// its payload's last byte arrives.
    pub fn feed(
        &mut self,
        input: &[u8],
        mut on_tag: impl FnMut(&FlvTag<'_>),
    ) -> Result<(), HttpFlvError> {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                FlvState::FileHeader => {
                    if !self.gather(input, &mut i, FILE_HEADER_LEN) {
                        // Judge the signature as soon as its bytes are in.
                        let n = self.have.min(3);
                        if self.acc[..n] != b"FLV"[..n] {
                            return Err(HttpFlvError::NotFlv);
                        }
                        continue;
                    }
                    if &self.acc[..3] != b"FLV" {
                        return Err(HttpFlvError::NotFlv);
                    }
                    let len = be32(&self.acc[5..9]);
                    if (len as usize) < FILE_HEADER_LEN {
                        return Err(HttpFlvError::BadHeader(len));
                    }
                    self.state = FlvState::Skip(u64::from(len) - FILE_HEADER_LEN as u64 + 4);
                }
                FlvState::Skip(left) => {
                    let take = left.min((input.len() - i) as u64);
                    i += take as usize;
                    self.state = if take == left {
                        FlvState::TagHeader
                    } else {
                        FlvState::Skip(left - take)
                    };
                }
                FlvState::TagHeader => {
                    if !self.gather(input, &mut i, TAG_HEADER_LEN) {
                        continue;
                    }
                    let h = &self.acc;
                    self.tag_type = h[0] & 0x1F;
                    self.size = be24(&h[1..4]);
                    // The extension byte holds bits 24..31 of the timestamp.
                    self.timestamp = be24(&h[4..7]) | (u32::from(h[7]) << 24);
                    self.edges.clear();
                    if self.size == 0 {
                        self.emit(&mut on_tag);
                        self.state = FlvState::PrevSize;
                    } else {
                        self.state = FlvState::Payload(self.size);
                    }
                }
                FlvState::Payload(left) => {
                    let take = (left as usize).min(input.len() - i);
                    self.edges.keep(&input[i..i + take]);
                    i += take;
                    if take == left as usize {
                        self.emit(&mut on_tag);
                        self.state = FlvState::PrevSize;
                    } else {
                        self.state = FlvState::Payload(left - take as u32);
                    }
                }
                FlvState::PrevSize => {
                    if !self.gather(input, &mut i, 4) {
                        continue;
                    }
                    let got = be32(&self.acc[..4]);
                    let want = self.size + TAG_HEADER_LEN as u32;
                    if got != want {
                        return Err(HttpFlvError::PrevTagSize { got, want });
                    }
                    self.state = FlvState::TagHeader;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flv::tests::{header, push_tag, sample};
    use crate::latency::fingerprint;

    /// What a test remembers of a tag: header fields, flags and fingerprint.
    #[derive(Debug, Clone, PartialEq)]
    struct Seen {
        tag_type: u8,
        ts: u32,
        size: u32,
        head: Vec<u8>,
        flags: TagFlags,
        fp: u32,
    }

    fn seen(t: &FlvTag<'_>) -> Seen {
        Seen {
            tag_type: t.tag_type,
            ts: t.timestamp,
            size: t.size,
            head: t.head.to_vec(),
            flags: t.flags(),
            fp: t.fingerprint(),
        }
    }

    /// Chunked encoding of `body` in chunks of the given sizes (cycled), with an extension on
    /// some size lines, then the last chunk and a trailer.
    fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut pos = 0;
        let mut k = 0;
        while pos < body.len() {
            let n = sizes[k % sizes.len()].min(body.len() - pos);
            if k % 3 == 1 {
                out.extend_from_slice(format!("{n:X};name=v\r\n").as_bytes());
            } else {
                out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
            }
            out.extend_from_slice(&body[pos..pos + n]);
            out.extend_from_slice(b"\r\n");
            pos += n;
            k += 1;
        }
        out.extend_from_slice(b"0\r\nX-Trailer: 1\r\n\r\n");
        out
    }

    /// Decodes `wire` fed in the given pieces; returns the body and whether it ended.
    fn dechunk_pieces(wire: &[u8], cuts: &[usize]) -> Result<(Vec<u8>, bool), HttpFlvError> {
        let mut d = BodyDecoder::new(Framing::Chunked);
        let mut out = Vec::new();
        let mut prev = 0;
        let mut done = false;
        for &c in cuts.iter().chain(std::iter::once(&wire.len())) {
            done = d.feed(&wire[prev..c], |s| {
                out.extend_from_slice(s);
                Ok(())
            })?;
            prev = c;
            if done {
                break;
            }
        }
        Ok((out, done))
    }

    fn flv_body() -> Vec<u8> {
        let mut f = sample(30, 16_777_200);
        // A payload larger than the edges, and an empty tag.
        let big: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
        let mut v = vec![0x27, 0x01, 0, 0, 0];
        v.extend_from_slice(&big);
        push_tag(&mut f, 9, 16_779_000, &v);
        push_tag(&mut f, 18, 16_779_000, &[]);
        f
    }

    /// Reference: the tags of a whole FLV fed in one piece.
    fn reference(body: &[u8]) -> Vec<Seen> {
        let mut p = FlvParser::default();
        let mut out = Vec::new();
        p.feed(body, |t| out.push(seen(t))).unwrap();
        out
    }

    #[test]
    fn dechunks_split_at_every_offset() {
        let body: Vec<u8> = (0..200u32).map(|i| i as u8).collect();
        let wire = chunked(&body, &[1, 17, 64, 3]);
        let (whole, done) = dechunk_pieces(&wire, &[]).unwrap();
        assert!(done);
        assert_eq!(whole, body);
        for cut in 0..=wire.len() {
            let (got, done) = dechunk_pieces(&wire, &[cut]).unwrap();
            assert!(done, "cut {cut}");
            assert_eq!(got, body, "cut {cut}");
        }
        // Byte by byte.
        let cuts: Vec<usize> = (1..wire.len()).collect();
        let (got, done) = dechunk_pieces(&wire, &cuts).unwrap();
        assert!(done);
        assert_eq!(got, body);
    }

    #[test]
    fn dechunk_tolerates_bare_lf_and_stops_at_the_end() {
        let mut wire = b"3\nabc\n2 ; x\r\nde\r\n0\n\ngarbage".to_vec();
        let (got, done) = dechunk_pieces(&wire, &[]).unwrap();
        assert!(done);
        assert_eq!(got, b"abcde");
        // Open-ended stream: not done while chunks keep coming.
        wire = b"4\r\nFLV\x01\r\n".to_vec();
        let (got, done) = dechunk_pieces(&wire, &[2]).unwrap();
        assert!(!done);
        assert_eq!(got, b"FLV\x01");
    }

    #[test]
    fn dechunk_rejects_bad_framing() {
        for (wire, what) in [
            ("\r\n", "missing chunk size"),
            ("zz\r\n", "missing chunk size"),
            ("3x\r\n", "bad character in chunk size"),
            ("3\rx", "CR without LF after chunk size"),
            ("3\r\nabcd", "chunk data longer than its size"),
            ("3\r\nabc\rX", "CR without LF after chunk data"),
            ("1000000000000000\r\n", "chunk size too large"),
        ] {
            assert_eq!(
                dechunk_pieces(wire.as_bytes(), &[]),
                Err(HttpFlvError::Chunk(what)),
                "{wire:?}"
            );
        }
    }

    #[test]
    fn plain_bodies() {
        let mut d = BodyDecoder::new(Framing::Length(5));
        let mut out = Vec::new();
        assert!(!d
            .feed(b"abc", |s| {
                out.extend_from_slice(s);
                Ok(())
            })
            .unwrap());
        assert!(d
            .feed(b"defgh", |s| {
                out.extend_from_slice(s);
                Ok(())
            })
            .unwrap());
        assert_eq!(out, b"abcde");
        let mut d = BodyDecoder::new(Framing::UntilClose);
        assert!(!d
            .feed(b"xyz", |s| {
                assert_eq!(s, b"xyz");
                Ok(())
            })
            .unwrap());
    }

    #[test]
    fn parses_tags_with_flags_and_fingerprints() {
        let body = flv_body();
        let tags = reference(&body);
        // Metadata, two sequence headers, 30 x (video, audio), the big frame, the empty tag.
        assert_eq!(tags.len(), 3 + 60 + 2);
        assert_eq!(tags[0].tag_type, 18);
        assert!(tags[1].flags.sequence_header && !tags[1].flags.keyframe);
        assert!(tags[2].flags.sequence_header && tags[2].tag_type == 8);
        assert!(tags[3].flags.keyframe && tags[3].ts == 16_777_200);
        assert!(!tags[5].flags.keyframe && tags[5].ts == 16_777_240);
        // Timestamps past 24 bits use the extension byte.
        assert!(tags[5].ts > 0xFF_FFFF);
        let big = &tags[63];
        assert_eq!(big.size, 305);
        assert_eq!(big.head.len(), EDGE);
        let mut payload = vec![0x27, 0x01, 0, 0, 0];
        payload.extend((0..300u32).map(|i| (i * 7) as u8));
        assert_eq!(big.fp, fingerprint(&payload));
        assert_eq!(tags[64].size, 0);
        assert_eq!(tags[64].fp, fingerprint(&[]));
        // Small payloads: the fingerprint of the whole payload.
        assert_eq!(tags[3].fp, fingerprint(&[0x17, 0x01, 0, 0, 0, 0]));
    }

    #[test]
    fn flv_split_at_every_offset() {
        let body = flv_body();
        let want = reference(&body);
        for cut in 0..=body.len() {
            let mut p = FlvParser::default();
            let mut got = Vec::new();
            p.feed(&body[..cut], |t| got.push(seen(t))).unwrap();
            p.feed(&body[cut..], |t| got.push(seen(t))).unwrap();
            assert_eq!(got, want, "cut {cut}");
        }
        // Byte by byte, and in odd-sized pieces.
        for step in [1, 7, 33] {
            let mut p = FlvParser::default();
            let mut got = Vec::new();
            for piece in body.chunks(step) {
                p.feed(piece, |t| got.push(seen(t))).unwrap();
            }
            assert_eq!(got, want, "step {step}");
        }
    }

    #[test]
    fn chunked_flv_split_at_every_offset() {
        let body = flv_body();
        let want = reference(&body);
        let wire = chunked(&body, &[13, 100, 1, 250]);
        for cut in 0..=wire.len() {
            let mut d = BodyDecoder::new(Framing::Chunked);
            let mut p = FlvParser::default();
            let mut got = Vec::new();
            let mut done = false;
            for piece in [&wire[..cut], &wire[cut..]] {
                done = d.feed(piece, |s| p.feed(s, |t| got.push(seen(t)))).unwrap();
            }
            assert!(done, "cut {cut}");
            assert_eq!(got, want, "cut {cut}");
        }
    }

    #[test]
    fn longer_file_header_is_skipped() {
        let mut f = b"FLV\x01\x05\x00\x00\x00\x0c\xAA\xBB\xCC".to_vec();
        f.extend_from_slice(&[0, 0, 0, 0]);
        push_tag(&mut f, 9, 40, &[0x17, 0x01, 0, 0, 0]);
        let tags = reference(&f);
        assert_eq!(tags.len(), 1);
        assert_eq!(tags[0].ts, 40);
    }

    #[test]
    fn flv_rejects_bad_streams() {
        let mut p = FlvParser::default();
        assert_eq!(p.feed(b"GI", |_| {}), Err(HttpFlvError::NotFlv));
        let mut p = FlvParser::default();
        let mut bad = header();
        bad[8] = 3;
        assert_eq!(p.feed(&bad, |_| {}), Err(HttpFlvError::BadHeader(3)));
        let mut f = header();
        push_tag(&mut f, 9, 0, &[0x17, 0x01]);
        let n = f.len();
        f[n - 1] ^= 1;
        let mut p = FlvParser::default();
        assert_eq!(
            p.feed(&f, |_| {}),
            Err(HttpFlvError::PrevTagSize { got: 12, want: 13 })
        );
    }

    #[test]
    fn response_heads() {
        let ok = b"HTTP/1.1 200 OK\r\nServer: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nd\r\nFLV";
        for cut in 0..ok.len() {
            let r = parse_response_head(&ok[..cut]).unwrap();
            let head_len = ok.len() - 6;
            if cut < head_len {
                assert_eq!(r, None, "cut {cut}");
            } else {
                assert_eq!(
                    r,
                    Some(ResponseHead {
                        len: head_len,
                        framing: Framing::Chunked
                    })
                );
            }
        }
        let plain = b"HTTP/1.0 200 OK\ncontent-type: video/x-flv\ncontent-length: 42\n\nFLV";
        assert_eq!(
            parse_response_head(plain).unwrap().unwrap().framing,
            Framing::Length(42)
        );
        let open = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n";
        assert_eq!(
            parse_response_head(open).unwrap().unwrap().framing,
            Framing::Chunked
        );
        let close = b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\n\r\n";
        assert_eq!(
            parse_response_head(close).unwrap().unwrap().framing,
            Framing::UntilClose
        );
        assert_eq!(
            parse_response_head(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
            Err(HttpFlvError::Status(404))
        );
        assert!(matches!(
            parse_response_head(b"RTMP"),
            Err(HttpFlvError::BadHead(_))
        ));
        assert!(matches!(
            parse_response_head(b"HTTP/1.1 2000 OK\r\n\r\n"),
            Err(HttpFlvError::BadHead(_))
        ));
        assert!(matches!(
            parse_response_head(b"HTTP/1.1 200 OK\r\nbroken\r\n\r\n"),
            Err(HttpFlvError::BadHead(_))
        ));
    }

    #[test]
    fn heads_of_any_status() {
        let nf =
            b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nno!";
        for cut in 0..nf.len() - 3 {
            assert_eq!(parse_head(&nf[..cut]), Ok(None), "cut {cut}");
        }
        let h = parse_head(nf).unwrap().unwrap();
        assert_eq!((h.status, h.len), (404, nf.len() - 3));
        let fields: Vec<_> = h.fields().map(Result::unwrap).collect();
        assert_eq!(
            fields,
            [
                (&b"Content-Type"[..], &b"text/plain"[..]),
                (b"Content-Length", b"3")
            ]
        );
        assert_eq!(h.framing(), Ok(Framing::Length(3)));
        // Header lines are judged by `fields` and `framing`, after the status.
        let broken = parse_head(b"HTTP/1.1 500 X\r\nbroken\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(broken.status, 500);
        assert!(matches!(
            broken.fields().next(),
            Some(Err(HttpFlvError::BadHead(_)))
        ));
        assert!(matches!(broken.framing(), Err(HttpFlvError::BadHead(_))));
        assert!(matches!(
            parse_head(b"HTTP/1.1 2000 OK\r\n\r\n"),
            Err(HttpFlvError::BadHead(_))
        ));
    }

    /// Decodes `wire` in the given pieces into whole chunks (and whether the body ended).
    fn chunks_of(
        mut d: BodyDecoder,
        wire: &[u8],
        cuts: &[usize],
    ) -> Result<(Vec<Vec<u8>>, bool), HttpFlvError> {
        let (mut chunks, mut cur, mut prev, mut done) = (Vec::new(), Vec::new(), 0, false);
        for &c in cuts.iter().chain(std::iter::once(&wire.len())) {
            done = d.feed_events(&wire[prev..c], |ev| {
                match ev {
                    BodyEvent::Data(s) => cur.extend_from_slice(s),
                    BodyEvent::ChunkEnd => chunks.push(std::mem::take(&mut cur)),
                }
                Ok(())
            })?;
            prev = c;
        }
        Ok((chunks, done))
    }

    #[test]
    fn chunk_ends_are_reported_wherever_the_input_is_cut() {
        let body: Vec<u8> = (0..100u32).map(|i| i as u8).collect();
        let wire = chunked(&body, &[13, 1, 40]);
        let want: Vec<Vec<u8>> = [13, 1, 40, 13, 1, 32]
            .iter()
            .scan(0, |pos, &n| {
                *pos += n;
                Some(body[*pos - n..*pos].to_vec())
            })
            .collect();
        for cut in 0..=wire.len() {
            let got = chunks_of(BodyDecoder::new(Framing::Chunked), &wire, &[cut]).unwrap();
            assert_eq!(got, (want.clone(), true), "cut {cut}");
        }
        // Only chunked framing has chunks.
        let plain = chunks_of(BodyDecoder::new(Framing::Length(3)), b"abc", &[1]).unwrap();
        assert_eq!(plain, (vec![], true));
    }

    #[test]
    fn crlf_only_refuses_bare_lf() {
        let strict = || BodyDecoder::new(Framing::Chunked).crlf_only();
        let ok = b"3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\n";
        let got = chunks_of(strict(), ok, &[]).unwrap();
        assert_eq!(got, (vec![b"abc".to_vec(), b"de".to_vec()], true));
        for wire in [
            &b"3\nabc\r\n"[..],
            b"3;x\nabc\r\n",
            b"3\r\nabc\n",
            b"3\r\nabc\r\n0\r\n\n",
        ] {
            assert_eq!(
                chunks_of(strict(), wire, &[]),
                Err(HttpFlvError::Chunk("bare LF in chunked framing")),
                "{wire:?}"
            );
            // The default decoder takes them.
            assert!(chunks_of(BodyDecoder::new(Framing::Chunked), wire, &[]).is_ok());
        }
    }

    #[test]
    fn urls_and_requests() {
        assert_eq!(
            split_url("http://127.0.0.1:8080/live/s.flv?x=1"),
            Some(("127.0.0.1:8080", "/live/s.flv?x=1"))
        );
        assert_eq!(split_url("http://h/a.flv#frag"), Some(("h", "/a.flv")));
        assert_eq!(split_url("http://h"), None);
        assert_eq!(split_url("http://h/"), None);
        assert_eq!(split_url("http:///a.flv"), None);
        assert_eq!(split_url("http://u@h/a.flv"), None);
        assert_eq!(split_url("rtmp://h/a/b"), None);
        let r = request("h:1", "/live/s.flv");
        assert!(r.starts_with("GET /live/s.flv HTTP/1.1\r\nHost: h:1\r\n"));
        assert!(r.ends_with("\r\n\r\n"));
    }
}
