//! RTMP handshake (C0/C1/C2 and S0/S1/S2) as pure, incremental state machines.
//!
//! Both the plain handshake and the digest ("complex", Flash Player 9+)
//! handshake are supported; the latter matters because ffmpeg and Flash-based
//! clients validate the server's S1/S2 digests. Randomness and time come from
//! the caller, so the machines are deterministic and need no I/O.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

/// Size of C1/S1/C2/S2. C0/S0 are a single version byte.
pub const HANDSHAKE_SIZE: usize = 1536;

const RTMP_VERSION: u8 = 3;
const RTMPE_VERSION: u8 = 6;
/// Size of each of the two blocks (key and digest) in a digest C1/S1.
const BLOCK_SIZE: usize = 764;
const DIGEST_LEN: usize = 32;
/// The offset bytes are summed modulo this so the digest fits in its block.
const OFFSET_MODULO: usize = 728;
/// Bytes of a C2/S2 answer that the trailing signature covers.
const SIGNED_LEN: usize = HANDSHAKE_SIZE - DIGEST_LEN;
/// Version field of our S1; its first byte must be >= 3 for ffmpeg to check
/// the S1 digest, which then has to be right.
const SERVER_VERSION: [u8; 4] = [0x04, 0x05, 0x00, 0x01];
/// Version field of a digest C1, as a Flash Player 9+ would send.
const CLIENT_VERSION: [u8; 4] = [0x80, 0x00, 0x07, 0x02];

/// Constant tail shared by the Flash Player and Flash Media Server keys.
const KEY_TAIL: [u8; 32] = [
    0xF0, 0xEE, 0xC2, 0x4A, 0x80, 0x68, 0xBE, 0xE8, 0x2E, 0x00, 0xD0, 0xD1, 0x02, 0x9E, 0x7E, 0x57,
    0x6E, 0xEC, 0x5D, 0x2D, 0x29, 0x80, 0x6F, 0xAB, 0x93, 0xB8, 0xE6, 0x36, 0xCF, 0xEB, 0x31, 0xAE,
];
/// Full Flash Player key: its first 30 bytes sign C1, all 62 sign C2.
const PLAYER_KEY: [u8; 62] = concat_key(b"Genuine Adobe Flash Player 001");
const PLAYER_KEY_TEXT_LEN: usize = 30;
/// Full Flash Media Server key: its first 36 bytes sign S1, all 68 sign S2.
const SERVER_KEY: [u8; 68] = concat_key(b"Genuine Adobe Flash Media Server 001");
const SERVER_KEY_TEXT_LEN: usize = 36;

const fn concat_key<const A: usize, const N: usize>(text: &[u8; A]) -> [u8; N] {
    assert!(A + KEY_TAIL.len() == N);
    let mut out = [0u8; N];
    let mut i = 0;
    while i < A {
        out[i] = text[i];
        i += 1;
    }
    while i < N {
        out[i] = KEY_TAIL[i - A];
        i += 1;
    }
    out
}

/// Which handshake the peer used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeKind {
    /// Plain handshake (zero version field, or no digest validated): C2/S2 echo the peer's C1/S1.
    Plain,
    /// `scheme` 0: key block first, digest block second; 1: digest block first.
    Digest {
        /// Digest layout (0 or 1).
        scheme: u8,
    },
}

/// Why a handshake failed.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum HandshakeError {
    /// C0/S0 announced a version other than 3 (6 is encrypted RTMPE).
    #[error("unsupported RTMP handshake version {0}{note}", note = version_note(*.0))]
    UnsupportedVersion(u8),
    /// The server's S1 has a non-zero version but neither digest scheme validates.
    #[error("S1 carries a version but no valid server digest")]
    BadServerDigest,
    /// [`ClientHandshake::feed`] called before [`ClientHandshake::start`].
    #[error("ClientHandshake::feed called before start")]
    NotStarted,
}

fn version_note(version: u8) -> &'static str {
    if version == RTMPE_VERSION {
        " (encrypted RTMPE is not supported)"
    } else {
        ""
    }
}

/// Result of one `feed` call.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes to send to the peer (may be empty).
    pub reply: Vec<u8>,
    /// How many input bytes were used; the rest belongs to the chunk stream.
    pub consumed: usize,
    /// The handshake is complete.
    pub done: bool,
}

/// Filler randomness: xorshift64* seeded by the caller. Not cryptographic;
/// the handshake only needs unpredictable-looking padding.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        let mixed = seed ^ 0x9E37_79B9_7F4A_7C15;
        Self(if mixed == 0 {
            0x2545_F491_4F6C_DD1D
        } else {
            mixed
        })
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; DIGEST_LEN] {
    let mut mac = new_mac(key);
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn new_mac(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

/// Position of the 32-byte digest inside a 1536-byte C1/S1 for `scheme`.
fn digest_pos(packet: &[u8], scheme: u8) -> usize {
    let block = if scheme == 0 { 8 + BLOCK_SIZE } else { 8 };
    let sum: usize = packet[block..block + 4]
        .iter()
        .map(|&b| usize::from(b))
        .sum();
    block + 4 + sum % OFFSET_MODULO
}

/// Finds the scheme whose digest validates under `key` (scheme 1 first, as
/// Flash Player 9+ and ffmpeg use it); returns it with the digest bytes.
fn find_digest(packet: &[u8], key: &[u8]) -> Option<(u8, [u8; DIGEST_LEN])> {
    [1u8, 0].into_iter().find_map(|scheme| {
        let pos = digest_pos(packet, scheme);
        let claimed = &packet[pos..pos + DIGEST_LEN];
        let mut mac = new_mac(key);
        mac.update(&packet[..pos]);
        mac.update(&packet[pos + DIGEST_LEN..]);
        mac.verify_slice(claimed).ok()?;
        let mut digest = [0u8; DIGEST_LEN];
        digest.copy_from_slice(claimed);
        Some((scheme, digest))
    })
}

/// Writes the digest of a C1/S1 into its slot for `scheme`; returns it.
fn sign_packet(packet: &mut [u8], scheme: u8, key: &[u8]) -> [u8; DIGEST_LEN] {
    let pos = digest_pos(packet, scheme);
    let digest = hmac_sha256(key, &[&packet[..pos], &packet[pos + DIGEST_LEN..]]);
    packet[pos..pos + DIGEST_LEN].copy_from_slice(&digest);
    digest
}

/// C2/S2 answering a digest C1/S1: random bytes signed with a key derived
/// from the peer's digest, proving we knew the full key.
fn digest_answer(rng: &mut XorShift, peer_digest: &[u8], full_key: &[u8]) -> Vec<u8> {
    let mut packet = vec![0u8; HANDSHAKE_SIZE];
    rng.fill(&mut packet[..SIGNED_LEN]);
    let key = hmac_sha256(full_key, &[peer_digest]);
    let signature = hmac_sha256(&key, &[&packet[..SIGNED_LEN]]);
    packet[SIGNED_LEN..].copy_from_slice(&signature);
    packet
}

/// time(4) + version(4) + random filler.
fn hello_packet(rng: &mut XorShift, epoch_ms: u32, version: [u8; 4]) -> Vec<u8> {
    let mut packet = vec![0u8; HANDSHAKE_SIZE];
    packet[..4].copy_from_slice(&epoch_ms.to_be_bytes());
    packet[4..8].copy_from_slice(&version);
    rng.fill(&mut packet[8..]);
    packet
}

fn check_version(version: u8) -> Result<(), HandshakeError> {
    if version == RTMP_VERSION {
        Ok(())
    } else {
        Err(HandshakeError::UnsupportedVersion(version))
    }
}

/// Appends input to `buf` until it holds `target` bytes; returns bytes taken.
fn fill_to(buf: &mut Vec<u8>, target: usize, input: &[u8]) -> usize {
    let n = (target - buf.len()).min(input.len());
    buf.extend_from_slice(&input[..n]);
    n
}

enum ServerState {
    /// Collecting C0 + C1.
    AwaitC0C1(Vec<u8>),
    /// Skipping this many bytes of C2.
    AwaitC2(usize),
    Done,
    Failed(HandshakeError),
}

/// Server side: reads C0+C1, answers S0+S1+S2, then swallows C2.
pub struct ServerHandshake {
    rng: XorShift,
    epoch_ms: u32,
    state: ServerState,
    kind: Option<HandshakeKind>,
}

impl ServerHandshake {
    /// seed: filler randomness from the caller (any u64; use a small xorshift PRNG to fill random bytes); epoch_ms: the time field for S1.
    pub fn new(seed: u64, epoch_ms: u32) -> Self {
        Self {
            rng: XorShift::new(seed),
            epoch_ms,
            state: ServerState::AwaitC0C1(Vec::with_capacity(1 + HANDSHAKE_SIZE)),
            kind: None,
        }
    }

    /// Feed any amount of bytes (1 byte at a time must work). Consumes C0+C1 and replies S0+S1+S2 once C1 is complete;
    /// then consumes C2 (1536 bytes) and reports done. Bytes after C2 are NOT consumed (they are the first chunk bytes; the caller passes them on).
    /// After done, feed returns consumed 0.
    pub fn feed(&mut self, input: &[u8]) -> Result<Progress, HandshakeError> {
        let mut progress = Progress::default();
        let mut rest = input;
        loop {
            match &mut self.state {
                ServerState::Failed(err) => return Err(err.clone()),
                ServerState::Done => {
                    progress.done = true;
                    return Ok(progress);
                }
                _ if rest.is_empty() => return Ok(progress),
                ServerState::AwaitC0C1(buf) => {
                    if buf.is_empty() {
                        if let Err(err) = check_version(rest[0]) {
                            self.state = ServerState::Failed(err.clone());
                            return Err(err);
                        }
                    }
                    let n = fill_to(buf, 1 + HANDSHAKE_SIZE, rest);
                    rest = &rest[n..];
                    progress.consumed += n;
                    if buf.len() == 1 + HANDSHAKE_SIZE {
                        let c0c1 = std::mem::take(buf);
                        progress.reply = self.answer(&c0c1[1..]);
                        self.state = ServerState::AwaitC2(HANDSHAKE_SIZE);
                    }
                }
                ServerState::AwaitC2(remaining) => {
                    // C2 is never validated: many clients send junk there.
                    let n = (*remaining).min(rest.len());
                    *remaining -= n;
                    rest = &rest[n..];
                    progress.consumed += n;
                    if *remaining == 0 {
                        self.state = ServerState::Done;
                    }
                }
            }
        }
    }

    /// Known once C1 has been read.
    pub fn kind(&self) -> Option<HandshakeKind> {
        self.kind
    }

    /// Builds S0+S1+S2 for a complete C1.
    fn answer(&mut self, c1: &[u8]) -> Vec<u8> {
        // A zero version means a plain client; otherwise try the digest
        // schemes, and fall back to plain when neither validates.
        let digest = if c1[4..8] == [0; 4] {
            None
        } else {
            find_digest(c1, &PLAYER_KEY[..PLAYER_KEY_TEXT_LEN])
        };
        let mut reply = Vec::with_capacity(1 + 2 * HANDSHAKE_SIZE);
        reply.push(RTMP_VERSION);
        match digest {
            Some((scheme, c1_digest)) => {
                self.kind = Some(HandshakeKind::Digest { scheme });
                let mut s1 = hello_packet(&mut self.rng, self.epoch_ms, SERVER_VERSION);
                sign_packet(&mut s1, scheme, &SERVER_KEY[..SERVER_KEY_TEXT_LEN]);
                reply.extend_from_slice(&s1);
                reply.extend_from_slice(&digest_answer(&mut self.rng, &c1_digest, &SERVER_KEY));
            }
            None => {
                self.kind = Some(HandshakeKind::Plain);
                let s1 = hello_packet(&mut self.rng, self.epoch_ms, [0; 4]);
                reply.extend_from_slice(&s1);
                reply.extend_from_slice(c1);
            }
        }
        reply
    }
}

enum ClientState {
    NotStarted,
    /// Collecting S0 + S1.
    AwaitS0S1(Vec<u8>),
    /// Skipping this many bytes of S2.
    AwaitS2(usize),
    Done,
    Failed(HandshakeError),
}

/// Client side: sends C0+C1, answers S1 with C2, then swallows S2.
pub struct ClientHandshake {
    rng: XorShift,
    epoch_ms: u32,
    digest: bool,
    c0c1: Vec<u8>,
    state: ClientState,
    kind: Option<HandshakeKind>,
}

impl ClientHandshake {
    /// A client handshake; `seed` fills the random bytes, `epoch_ms` is C1's time field, `digest`
    /// sends a digest (Flash Player 9+) C1 instead of a plain one.
    pub fn new(seed: u64, epoch_ms: u32, digest: bool) -> Self {
        Self {
            rng: XorShift::new(seed),
            epoch_ms,
            digest,
            c0c1: Vec::new(),
            state: ClientState::NotStarted,
            kind: None,
        }
    }

    /// C0 + C1 (digest C1 when `digest`, scheme 1 with version bytes like a Flash Player 9+, e.g. 0x80 0x00 0x07 0x02; plain: zeros).
    /// Calling it again returns the same bytes.
    pub fn start(&mut self) -> Vec<u8> {
        if self.c0c1.is_empty() {
            let mut c0c1 = Vec::with_capacity(1 + HANDSHAKE_SIZE);
            c0c1.push(RTMP_VERSION);
            if self.digest {
                let mut c1 = hello_packet(&mut self.rng, self.epoch_ms, CLIENT_VERSION);
                sign_packet(&mut c1, 1, &PLAYER_KEY[..PLAYER_KEY_TEXT_LEN]);
                c0c1.extend_from_slice(&c1);
            } else {
                c0c1.extend_from_slice(&hello_packet(&mut self.rng, self.epoch_ms, [0; 4]));
            }
            self.c0c1 = c0c1;
        }
        if matches!(self.state, ClientState::NotStarted) {
            self.state = ClientState::AwaitS0S1(Vec::with_capacity(1 + HANDSHAKE_SIZE));
        }
        self.c0c1.clone()
    }

    /// Feed S0+S1+S2 in any pieces: once S1 is complete the reply carries C2; done when S2 has been consumed (bytes after S2 not consumed).
    pub fn feed(&mut self, input: &[u8]) -> Result<Progress, HandshakeError> {
        let mut progress = Progress::default();
        let mut rest = input;
        loop {
            match &mut self.state {
                ClientState::NotStarted => return Err(HandshakeError::NotStarted),
                ClientState::Failed(err) => return Err(err.clone()),
                ClientState::Done => {
                    progress.done = true;
                    return Ok(progress);
                }
                _ if rest.is_empty() => return Ok(progress),
                ClientState::AwaitS0S1(buf) => {
                    if buf.is_empty() {
                        if let Err(err) = check_version(rest[0]) {
                            self.state = ClientState::Failed(err.clone());
                            return Err(err);
                        }
                    }
                    let n = fill_to(buf, 1 + HANDSHAKE_SIZE, rest);
                    rest = &rest[n..];
                    progress.consumed += n;
                    if buf.len() == 1 + HANDSHAKE_SIZE {
                        let s0s1 = std::mem::take(buf);
                        match self.answer(&s0s1[1..]) {
                            Ok(c2) => {
                                progress.reply = c2;
                                self.state = ClientState::AwaitS2(HANDSHAKE_SIZE);
                            }
                            Err(err) => {
                                self.state = ClientState::Failed(err.clone());
                                return Err(err);
                            }
                        }
                    }
                }
                ClientState::AwaitS2(remaining) => {
                    let n = (*remaining).min(rest.len());
                    *remaining -= n;
                    rest = &rest[n..];
                    progress.consumed += n;
                    if *remaining == 0 {
                        self.state = ClientState::Done;
                    }
                }
            }
        }
    }

    /// How the server answered; known once S1 has been read.
    pub fn kind(&self) -> Option<HandshakeKind> {
        self.kind
    }

    /// Builds C2 for a complete S1.
    fn answer(&mut self, s1: &[u8]) -> Result<Vec<u8>, HandshakeError> {
        // A zero version is a plain server even when we offered a digest.
        if !self.digest || s1[4..8] == [0; 4] {
            self.kind = Some(HandshakeKind::Plain);
            return Ok(s1.to_vec());
        }
        let (scheme, s1_digest) = find_digest(s1, &SERVER_KEY[..SERVER_KEY_TEXT_LEN])
            .ok_or(HandshakeError::BadServerDigest)?;
        self.kind = Some(HandshakeKind::Digest { scheme });
        Ok(digest_answer(&mut self.rng, &s1_digest, &PLAYER_KEY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP_TEXT: &[u8] = b"Genuine Adobe Flash Player 001";
    const FMS_TEXT: &[u8] = b"Genuine Adobe Flash Media Server 001";

    /// Independent HMAC-SHA256 straight from the crates.
    fn mac(key: &[u8], data: &[u8]) -> [u8; 32] {
        let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
        m.update(data);
        m.finalize().into_bytes().into()
    }

    fn full_key(text: &[u8]) -> Vec<u8> {
        let mut k = text.to_vec();
        k.extend_from_slice(&KEY_TAIL);
        k
    }

    /// Digest offset recomputed from the spec wording.
    fn spec_digest_pos(packet: &[u8], scheme: u8) -> usize {
        let block_start = if scheme == 0 { 8 + 764 } else { 8 };
        let b = &packet[block_start..block_start + 4];
        let offset = (b[0] as usize + b[1] as usize + b[2] as usize + b[3] as usize) % 728 + 4;
        block_start + offset
    }

    fn spec_packet_digest(packet: &[u8], pos: usize, key: &[u8]) -> [u8; 32] {
        let mut data = packet[..pos].to_vec();
        data.extend_from_slice(&packet[pos + 32..]);
        assert_eq!(data.len(), 1504);
        mac(key, &data)
    }

    fn filler(seed: u8) -> Vec<u8> {
        (0..HANDSHAKE_SIZE)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// C1 signed by hand for `scheme` with the 30-byte player key.
    fn hand_c1(scheme: u8) -> (Vec<u8>, [u8; 32]) {
        let mut c1 = filler(scheme + 7);
        c1[..4].copy_from_slice(&1000u32.to_be_bytes());
        c1[4..8].copy_from_slice(&[9, 0, 124, 2]);
        let pos = spec_digest_pos(&c1, scheme);
        let digest = spec_packet_digest(&c1, pos, &full_key(FP_TEXT)[..30]);
        c1[pos..pos + 32].copy_from_slice(&digest);
        (c1, digest)
    }

    fn c0(c1: &[u8]) -> Vec<u8> {
        let mut v = vec![3];
        v.extend_from_slice(c1);
        v
    }

    /// Feeds `data` in `step`-sized pieces; collects replies and consumption.
    fn feed_in_steps(
        mut feed: impl FnMut(&[u8]) -> Result<Progress, HandshakeError>,
        data: &[u8],
        step: usize,
    ) -> (Vec<u8>, usize, bool) {
        let mut reply = Vec::new();
        let mut consumed = 0;
        let mut done = false;
        for piece in data.chunks(step) {
            let p = feed(piece).unwrap();
            reply.extend(p.reply);
            consumed += p.consumed;
            done = p.done;
        }
        (reply, consumed, done)
    }

    fn run_pair(digest: bool, step: usize) {
        let trailing = b"\x02\x00\x00\x00chunk";
        let mut server = ServerHandshake::new(42, 5000);
        let mut client = ClientHandshake::new(7, 1234, digest);

        let c0c1 = client.start();
        assert_eq!(c0c1.len(), 1 + HANDSHAKE_SIZE);
        assert_eq!(c0c1[0], 3);
        assert_eq!(client.start(), c0c1, "start is idempotent");

        let (s0s1s2, used, done) = feed_in_steps(|b| server.feed(b), &c0c1, step);
        assert_eq!(used, 1 + HANDSHAKE_SIZE);
        assert!(!done);
        assert_eq!(s0s1s2.len(), 1 + 2 * HANDSHAKE_SIZE);
        assert_eq!(s0s1s2[0], 3);
        assert_eq!(s0s1s2[1..5], 5000u32.to_be_bytes());
        let expected_kind = if digest {
            HandshakeKind::Digest { scheme: 1 }
        } else {
            HandshakeKind::Plain
        };
        assert_eq!(server.kind(), Some(expected_kind));

        let mut to_client = s0s1s2.clone();
        to_client.extend_from_slice(trailing);
        if step >= to_client.len() {
            let p = client.feed(&to_client).unwrap();
            assert_eq!(p.consumed, s0s1s2.len());
            assert!(p.done);
            assert_eq!(p.reply.len(), HANDSHAKE_SIZE);
        }
        let mut client2 = ClientHandshake::new(7, 1234, digest);
        assert_eq!(client2.start(), c0c1, "same seed, same C1");
        let (c2, used, done) = feed_in_steps(|b| client2.feed(b), &s0s1s2, step);
        assert_eq!(used, s0s1s2.len());
        assert!(done);
        assert_eq!(c2.len(), HANDSHAKE_SIZE);
        assert_eq!(client2.kind(), Some(expected_kind));
        // Bytes after S2 stay with the caller.
        let p = client2.feed(trailing).unwrap();
        assert_eq!((p.consumed, p.done, p.reply.len()), (0, true, 0));

        if !digest {
            assert_eq!(s0s1s2[1 + HANDSHAKE_SIZE..], c0c1[1..], "S2 echoes C1");
            assert_eq!(c2, s0s1s2[1..1 + HANDSHAKE_SIZE], "C2 echoes S1");
        }

        let mut to_server = c2.clone();
        to_server.extend_from_slice(trailing);
        if step >= to_server.len() {
            let p = server.feed(&to_server).unwrap();
            assert_eq!(p.consumed, HANDSHAKE_SIZE);
            assert!(p.done);
            assert!(p.reply.is_empty());
        } else {
            let (reply, used, done) = feed_in_steps(|b| server.feed(b), &c2, step);
            assert!(reply.is_empty());
            assert_eq!(used, HANDSHAKE_SIZE);
            assert!(done);
        }
        let p = server.feed(trailing).unwrap();
        assert_eq!((p.consumed, p.done, p.reply.len()), (0, true, 0));
    }

    #[test]
    fn plain_pair_one_piece() {
        run_pair(false, usize::MAX);
    }

    #[test]
    fn plain_pair_byte_by_byte() {
        run_pair(false, 1);
    }

    #[test]
    fn digest_pair_one_piece() {
        run_pair(true, usize::MAX);
    }

    #[test]
    fn digest_pair_byte_by_byte() {
        run_pair(true, 1);
    }

    #[test]
    fn digest_pair_odd_pieces() {
        run_pair(true, 97);
    }

    #[test]
    fn keys_match_spec() {
        assert_eq!(PLAYER_KEY.len(), 62);
        assert_eq!(SERVER_KEY.len(), 68);
        assert_eq!(PLAYER_KEY[..], full_key(FP_TEXT)[..]);
        assert_eq!(SERVER_KEY[..], full_key(FMS_TEXT)[..]);
        assert_eq!(&PLAYER_KEY[..PLAYER_KEY_TEXT_LEN], FP_TEXT);
        assert_eq!(&SERVER_KEY[..SERVER_KEY_TEXT_LEN], FMS_TEXT);
    }

    #[test]
    fn client_digest_c1_is_valid_scheme_1() {
        let mut client = ClientHandshake::new(99, 77, true);
        let c0c1 = client.start();
        let c1 = &c0c1[1..];
        assert_eq!(c1[..4], 77u32.to_be_bytes());
        assert_eq!(c1[4..8], [0x80, 0x00, 0x07, 0x02]);
        let pos = spec_digest_pos(c1, 1);
        assert_eq!(
            c1[pos..pos + 32],
            spec_packet_digest(c1, pos, &full_key(FP_TEXT)[..30])
        );
        let plain = ClientHandshake::new(99, 77, false).start();
        assert_eq!(plain[5..9], [0, 0, 0, 0]);
    }

    fn check_server_answers_hand_c1(scheme: u8) {
        let (c1, c1_digest) = hand_c1(scheme);
        let mut server = ServerHandshake::new(3, 0xDEAD_BEEF);
        assert_eq!(server.kind(), None);
        let p = server.feed(&c0(&c1)).unwrap();
        assert_eq!(p.consumed, 1 + HANDSHAKE_SIZE);
        assert_eq!(server.kind(), Some(HandshakeKind::Digest { scheme }));

        let s1 = &p.reply[1..1 + HANDSHAKE_SIZE];
        let s2 = &p.reply[1 + HANDSHAKE_SIZE..];
        assert_eq!(s1[..4], 0xDEAD_BEEFu32.to_be_bytes());
        assert_eq!(s1[4..8], [0x04, 0x05, 0x00, 0x01]);
        assert!(s1[4] >= 3, "ffmpeg only checks digests for version >= 3");

        // S1 digest sits where the same scheme says, keyed with 36 bytes.
        let pos = spec_digest_pos(s1, scheme);
        let s1_digest = spec_packet_digest(s1, pos, &full_key(FMS_TEXT)[..36]);
        assert_eq!(s1[pos..pos + 32], s1_digest);

        // S2 = 1504 bytes + HMAC(HMAC(full server key, C1 digest), those bytes).
        let derived = mac(&full_key(FMS_TEXT), &c1_digest);
        assert_eq!(s2[1504..], mac(&derived, &s2[..1504]));

        // And our client accepts the answer and signs C2 the same way.
        let mut client = ClientHandshake::new(11, 0, true);
        client.start();
        let cp = client.feed(&p.reply).unwrap();
        assert!(cp.done);
        assert_eq!(client.kind(), Some(HandshakeKind::Digest { scheme }));
        let c2 = cp.reply;
        let derived = mac(&full_key(FP_TEXT), &s1_digest);
        assert_eq!(c2[1504..], mac(&derived, &c2[..1504]));
    }

    #[test]
    fn server_answers_hand_built_scheme_0() {
        check_server_answers_hand_c1(0);
    }

    #[test]
    fn server_answers_hand_built_scheme_1() {
        check_server_answers_hand_c1(1);
    }

    #[test]
    fn server_rejects_bad_versions() {
        for v in [6u8, 0xFF, 0, 4] {
            let mut server = ServerHandshake::new(1, 1);
            let err = server.feed(&[v]).unwrap_err();
            assert_eq!(err, HandshakeError::UnsupportedVersion(v));
            // Stays failed, even with more input.
            assert_eq!(server.feed(&[3; 10]).unwrap_err(), err);
        }
        let mut server = ServerHandshake::new(1, 1);
        let mut input = vec![6];
        input.extend(filler(0));
        assert_eq!(
            server.feed(&input).unwrap_err(),
            HandshakeError::UnsupportedVersion(6)
        );
        assert!(HandshakeError::UnsupportedVersion(6)
            .to_string()
            .contains("RTMPE"));
        assert!(!HandshakeError::UnsupportedVersion(0xFF)
            .to_string()
            .contains("RTMPE"));
    }

    #[test]
    fn client_rejects_bad_versions() {
        for v in [6u8, 0xFF] {
            let mut client = ClientHandshake::new(1, 1, true);
            client.start();
            assert_eq!(
                client.feed(&[v, 0, 0]).unwrap_err(),
                HandshakeError::UnsupportedVersion(v)
            );
        }
    }

    #[test]
    fn client_feed_before_start_fails() {
        let mut client = ClientHandshake::new(1, 1, false);
        assert_eq!(client.feed(&[3]).unwrap_err(), HandshakeError::NotStarted);
    }

    #[test]
    fn junk_digest_falls_back_to_plain() {
        let mut c1 = filler(5);
        c1[4..8].copy_from_slice(&[9, 0, 124, 2]);
        let mut server = ServerHandshake::new(8, 100);
        let p = server.feed(&c0(&c1)).unwrap();
        assert_eq!(server.kind(), Some(HandshakeKind::Plain));
        assert_eq!(p.reply[5..9], [0, 0, 0, 0], "plain S1 has zero version");
        assert_eq!(p.reply[1 + HANDSHAKE_SIZE..], c1[..], "S2 echoes C1");
    }

    #[test]
    fn zero_version_c1_is_plain() {
        let mut c1 = filler(1);
        c1[..4].copy_from_slice(&42u32.to_be_bytes());
        c1[4..8].fill(0);
        let mut server = ServerHandshake::new(8, 100);
        let p = server.feed(&c0(&c1)).unwrap();
        assert_eq!(server.kind(), Some(HandshakeKind::Plain));
        assert_eq!(p.reply[1..5], 100u32.to_be_bytes());
        assert_eq!(
            p.reply[1 + HANDSHAKE_SIZE..1 + HANDSHAKE_SIZE + 4],
            42u32.to_be_bytes()
        );
        assert_eq!(p.reply[1 + HANDSHAKE_SIZE..], c1[..]);
    }

    #[test]
    fn server_accepts_junk_c2() {
        let (c1, _) = hand_c1(1);
        let mut server = ServerHandshake::new(8, 100);
        server.feed(&c0(&c1)).unwrap();
        let p = server.feed(&[0xAB; HANDSHAKE_SIZE + 3]).unwrap();
        assert_eq!(p.consumed, HANDSHAKE_SIZE);
        assert!(p.done);
    }

    #[test]
    fn server_replies_only_when_c1_complete() {
        let (c1, _) = hand_c1(0);
        let all = c0(&c1);
        let mut server = ServerHandshake::new(8, 100);
        let p = server.feed(&all[..HANDSHAKE_SIZE]).unwrap();
        assert_eq!(
            (p.consumed, p.reply.len(), p.done),
            (HANDSHAKE_SIZE, 0, false)
        );
        assert_eq!(server.kind(), None);
        let p = server.feed(&[]).unwrap();
        assert_eq!((p.consumed, p.reply.len(), p.done), (0, 0, false));
        let p = server.feed(&all[HANDSHAKE_SIZE..]).unwrap();
        assert_eq!((p.consumed, p.reply.len()), (1, 1 + 2 * HANDSHAKE_SIZE));
    }

    #[test]
    fn client_rejects_bad_server_digest() {
        let mut s0s1 = vec![3];
        let mut s1 = filler(9);
        s1[4..8].copy_from_slice(&[4, 5, 0, 1]);
        s0s1.extend_from_slice(&s1);
        let mut client = ClientHandshake::new(2, 0, true);
        client.start();
        assert_eq!(
            client.feed(&s0s1).unwrap_err(),
            HandshakeError::BadServerDigest
        );
        assert_eq!(
            client.feed(&[0; 10]).unwrap_err(),
            HandshakeError::BadServerDigest
        );
    }

    #[test]
    fn digest_client_accepts_plain_server() {
        let mut s1 = filler(4);
        s1[4..8].fill(0);
        let mut input = vec![3];
        input.extend_from_slice(&s1);
        input.extend_from_slice(&filler(6));
        input.push(0xC3);
        let mut client = ClientHandshake::new(2, 0, true);
        client.start();
        let p = client.feed(&input).unwrap();
        assert_eq!(client.kind(), Some(HandshakeKind::Plain));
        assert_eq!(p.reply, s1, "C2 echoes S1");
        assert_eq!(p.consumed, 1 + 2 * HANDSHAKE_SIZE);
        assert!(p.done);
    }

    #[test]
    fn plain_client_does_not_check_digest() {
        let mut s1 = filler(9);
        s1[4..8].copy_from_slice(&[4, 5, 0, 1]);
        let mut input = vec![3];
        input.extend_from_slice(&s1);
        let mut client = ClientHandshake::new(2, 0, false);
        client.start();
        let p = client.feed(&input).unwrap();
        assert_eq!(p.reply, s1);
        assert!(!p.done);
    }

    #[test]
    fn digest_offset_stays_inside_block() {
        for scheme in [0u8, 1] {
            let mut p = vec![0u8; HANDSHAKE_SIZE];
            let block = if scheme == 0 { 772 } else { 8 };
            p[block..block + 4].fill(0xFF);
            let pos = digest_pos(&p, scheme);
            assert_eq!(pos, spec_digest_pos(&p, scheme));
            assert!(pos + 32 <= block + 764);
            p[block..block + 4].fill(0);
            assert_eq!(digest_pos(&p, scheme), block + 4);
        }
    }

    #[test]
    fn seeds_change_filler() {
        let a = ClientHandshake::new(1, 0, false).start();
        let b = ClientHandshake::new(2, 0, false).start();
        let z = ClientHandshake::new(0, 0, false).start();
        assert_ne!(a[9..], b[9..]);
        assert!(z[9..].iter().any(|&x| x != 0), "seed 0 still fills");
    }
}
