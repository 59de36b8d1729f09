//! Helpers shared by the fuzz targets and the seed generator.
//!
//! # Input framing
//! The targets that feed a state machine in pieces (`handshake`, `chunk_decoder`, `session`) read
//! their input as
//!
//! ```text
//! byte 0      flags: bits 0..=2 = number of split bytes - 1 (1..=8), bits 3..=7 per target
//! byte 1      aux: a per-target parameter (seed, decision bits, ...)
//! 1..=8 bytes split sizes, used cyclically to cut the body into pieces (see `piece_len`)
//! rest        the body, fed piece by piece
//! ```
//!
//! [`Framed::encode`] builds such an input, so seeds use the same layout.

use shardcast::rtmp::chunk::{
    ChunkDecoder, DecoderLimits, MAX_MESSAGE_LEN, MAX_PROTOCOL_CHUNK_SIZE,
};
use shardcast::rtmp::handshake::HANDSHAKE_SIZE;
use shardcast::rtmp::message;

/// An input split into header fields and a body.
#[derive(Debug, Clone, Copy)]
pub struct Framed<'a> {
    pub flags: u8,
    pub aux: u8,
    sizes: &'a [u8],
    pub body: &'a [u8],
}

impl<'a> Framed<'a> {
    /// `None` when the input is too short to hold the header.
    pub fn parse(data: &'a [u8]) -> Option<Framed<'a>> {
        let (&flags, rest) = data.split_first()?;
        let (&aux, rest) = rest.split_first()?;
        let n = usize::from(flags & 7) + 1;
        if rest.len() < n {
            return None;
        }
        let (sizes, body) = rest.split_at(n);
        Some(Framed {
            flags,
            aux,
            sizes,
            body,
        })
    }

    /// Builds an input. `flags` bits 0..=2 are replaced by the number of `sizes` (1..=8).
    pub fn encode(flags: u8, aux: u8, sizes: &[u8], body: &[u8]) -> Vec<u8> {
        assert!((1..=8).contains(&sizes.len()), "1..=8 split sizes");
        let mut out = Vec::with_capacity(2 + sizes.len() + body.len());
        out.push((flags & !7) | (sizes.len() as u8 - 1));
        out.push(aux);
        out.extend_from_slice(sizes);
        out.extend_from_slice(body);
        out
    }

    /// Target-specific flag bit `n` (3..=7).
    pub fn flag(&self, n: u32) -> bool {
        debug_assert!((3..=7).contains(&n));
        self.flags & (1 << n) != 0
    }

    /// The body cut into pieces whose sizes cycle through the split bytes. Every byte of the
    /// body is in exactly one piece; pieces are never empty.
    pub fn pieces(&self) -> Pieces<'a> {
        Pieces {
            sizes: self.sizes,
            next: 0,
            rest: self.body,
        }
    }
}

/// Piece length for a split byte: top two bits pick a scale, so one byte reaches from single
/// bytes (the hard case for incremental parsers) to "everything at once".
/// - `00xxxxxx`: 1..=64
/// - `01xxxxxx`: 16..=1024 in steps of 16
/// - `10xxxxxx`: 128..=8192 in steps of 128
/// - `11xxxxxx`: the whole rest
pub fn piece_len(b: u8) -> usize {
    let low = usize::from(b & 0x3F) + 1;
    match b >> 6 {
        0 => low,
        1 => low * 16,
        2 => low * 128,
        _ => usize::MAX,
    }
}

pub struct Pieces<'a> {
    sizes: &'a [u8],
    next: usize,
    rest: &'a [u8],
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let len = piece_len(self.sizes[self.next % self.sizes.len()]).min(self.rest.len());
        self.next += 1;
        let (piece, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(piece)
    }
}

/// A plain client handshake: C0 (version 3), C1 (time, zero version, filler) and C2 (filler).
/// The server never validates C2, and a zero C1 version selects the plain handshake.
pub fn plain_client_handshake() -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 2 * HANDSHAKE_SIZE);
    out.push(3);
    // C1: time 0, version 0, then a fixed non-zero pattern.
    out.extend_from_slice(&[0; 8]);
    out.extend((8..HANDSHAKE_SIZE).map(|i| (i * 7 + 1) as u8));
    // C2: anything.
    out.extend((0..HANDSHAKE_SIZE).map(|i| (i * 13 + 5) as u8));
    out
}

/// Checks everything a server sends as a client would read it: the S0+S1+S2 answer, then a
/// chunk stream whose every message must decode. A server that writes something its own
/// client-side decoder rejects is a bug, even when no panic happens.
pub struct OutputChecker {
    /// Handshake bytes still to skip before the chunk stream starts.
    handshake_left: usize,
    decoder: ChunkDecoder,
    pub messages: usize,
}

impl Default for OutputChecker {
    fn default() -> Self {
        Self::new()
    }
}

impl OutputChecker {
    pub fn new() -> Self {
        OutputChecker {
            handshake_left: 1 + 2 * HANDSHAKE_SIZE,
            decoder: ChunkDecoder::new(DecoderLimits {
                max_chunk_size: MAX_PROTOCOL_CHUNK_SIZE,
                max_message_len: MAX_MESSAGE_LEN,
                max_chunk_streams: 1024,
            }),
            messages: 0,
        }
    }

    pub fn push(&mut self, mut bytes: &[u8]) {
        if self.handshake_left > 0 {
            if self.handshake_left == 1 + 2 * HANDSHAKE_SIZE && !bytes.is_empty() {
                assert_eq!(bytes[0], 3, "server S0 must be version 3");
            }
            let n = self.handshake_left.min(bytes.len());
            self.handshake_left -= n;
            bytes = &bytes[n..];
        }
        if bytes.is_empty() {
            return;
        }
        self.decoder.push(bytes);
        loop {
            match self.decoder.next_message() {
                Ok(Some(raw)) => {
                    self.messages += 1;
                    if let Err(e) =
                        message::decode(&raw, &shardcast::rtmp::amf0::DecodeLimits::default())
                    {
                        panic!("server sent a message its peer cannot decode: {e} ({raw:?})");
                    }
                }
                Ok(None) => break,
                Err(e) => panic!("server sent an undecodable chunk stream: {e}"),
            }
        }
    }
}
