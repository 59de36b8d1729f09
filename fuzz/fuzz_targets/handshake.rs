//! RTMP handshake state machines fed arbitrary bytes in arbitrary pieces.
//!
//! Input: see `fuzz_util::Framed`. flags bit 3: the client offers the digest handshake;
//! aux: PRNG seed and S1/C1 time. The body goes, cut the same way, to a `ServerHandshake` (as
//! C0+C1+C2) and to a started `ClientHandshake` (as S0+S1+S2).
//!
//! Besides "no panic", the targets check the contract documented on `feed`: byte accounting,
//! a single reply of the right size, `done` exactly after the last handshake byte, sticky errors,
//! and that our own digest client accepts whatever our server answers.
#![no_main]

use fuzz_util::Framed;
use libfuzzer_sys::fuzz_target;
use shardcast::rtmp::handshake::{
    ClientHandshake, HandshakeError, HandshakeKind, ServerHandshake, HANDSHAKE_SIZE,
};

const HELLO: usize = 1 + HANDSHAKE_SIZE;
const TOTAL: usize = 1 + 2 * HANDSHAKE_SIZE;

fuzz_target!(|data: &[u8]| {
    let Some(input) = Framed::parse(data) else {
        return;
    };
    let seed = u64::from(input.aux) * 0x0100_0001;
    let epoch = u32::from(input.aux) << 8;
    server(&input, seed, epoch);
    client(&input, seed, epoch, input.flag(3));
});

fn server(input: &Framed, seed: u64, epoch: u32) {
    let mut hs = ServerHandshake::new(seed, epoch);
    let mut consumed = 0usize;
    let mut reply: Option<Vec<u8>> = None;
    let mut failed: Option<HandshakeError> = None;
    for piece in input.pieces() {
        let result = hs.feed(piece);
        if let Some(err) = &failed {
            assert_eq!(result.as_ref().err(), Some(err), "errors are sticky");
            continue;
        }
        let p = match result {
            Ok(p) => p,
            Err(err) => {
                // The only thing a server can object to is C0.
                assert_eq!(consumed, 0, "server failed after C0: {err:?}");
                assert_eq!(err, HandshakeError::UnsupportedVersion(piece[0]));
                assert_ne!(piece[0], 3);
                failed = Some(err);
                continue;
            }
        };
        assert!(p.consumed <= piece.len());
        let before = consumed;
        consumed += p.consumed;
        assert!(consumed <= TOTAL, "server consumed past C2");
        // Everything is consumed until the handshake is over.
        if consumed < TOTAL {
            assert_eq!(p.consumed, piece.len());
        }
        assert_eq!(p.done, consumed == TOTAL, "done exactly after C2");
        let crossed_c1 = before < HELLO && consumed >= HELLO;
        if crossed_c1 {
            assert_eq!(p.reply.len(), TOTAL, "S0+S1+S2 in one reply");
            assert_eq!(p.reply[0], 3);
            assert!(reply.is_none());
            reply = Some(p.reply);
        } else {
            assert!(p.reply.is_empty(), "reply only once C1 is complete");
        }
        if consumed >= HELLO {
            assert!(hs.kind().is_some(), "kind known once C1 is read");
        }
    }
    if failed.is_some() {
        return;
    }
    // After done, feeding more consumes nothing and stays done.
    if consumed == TOTAL {
        let p = hs.feed(&[3, 0, 0]).expect("done handshake accepts feed");
        assert!(p.done && p.consumed == 0 && p.reply.is_empty());
    }
    let (Some(reply), Some(kind)) = (reply, hs.kind()) else {
        return;
    };
    let c1 = &input_body_prefix(input)[1..HELLO];
    match kind {
        // A plain S2 echoes C1.
        HandshakeKind::Plain => assert_eq!(&reply[HELLO..], c1),
        HandshakeKind::Digest { .. } => assert_ne!(&c1[4..8], &[0u8; 4][..]),
    }
    // Our own digest-capable client must accept whatever our server answered, in one piece.
    let mut client = ClientHandshake::new(seed ^ 0x5555, epoch, true);
    client.start();
    let p = client
        .feed(&reply)
        .unwrap_or_else(|e| panic!("own client rejects own server's answer ({kind:?}): {e}"));
    assert!(p.done && p.consumed == TOTAL && p.reply.len() == HANDSHAKE_SIZE);
    assert_eq!(
        client.kind(),
        Some(kind),
        "client sees the server's handshake kind"
    );
}

/// The first C0+C1 bytes of the body (the caller knows they were all consumed).
fn input_body_prefix<'a>(input: &Framed<'a>) -> &'a [u8] {
    &input.body[..HELLO]
}

fn client(input: &Framed, seed: u64, epoch: u32, digest: bool) {
    let mut hs = ClientHandshake::new(seed, epoch, digest);
    assert_eq!(hs.feed(b"\x03").err(), Some(HandshakeError::NotStarted));
    let c0c1 = hs.start();
    assert_eq!(c0c1.len(), HELLO);
    assert_eq!(c0c1[0], 3);
    assert_eq!(hs.start(), c0c1, "start is idempotent");
    assert_eq!(
        c0c1[5..9] == [0u8; 4],
        !digest,
        "C1 version says plain or digest"
    );

    let mut consumed = 0usize;
    let mut answered = false;
    let mut failed: Option<HandshakeError> = None;
    for piece in input.pieces() {
        let result = hs.feed(piece);
        if let Some(err) = &failed {
            assert_eq!(result.as_ref().err(), Some(err), "errors are sticky");
            continue;
        }
        let p = match result {
            Ok(p) => p,
            Err(err) => {
                match err {
                    HandshakeError::UnsupportedVersion(v) => {
                        assert_eq!(consumed, 0);
                        assert_eq!(v, piece[0]);
                    }
                    HandshakeError::BadServerDigest => {
                        // Only once S1 is complete, only for a digest client, and only when S1
                        // carries a version.
                        assert!(digest);
                        assert!(consumed < HELLO && consumed + piece.len() >= HELLO);
                        let s1_version = &input.body[5..9];
                        assert_ne!(s1_version, &[0u8; 4][..]);
                    }
                    HandshakeError::NotStarted => panic!("NotStarted after start"),
                }
                failed = Some(err);
                continue;
            }
        };
        assert!(p.consumed <= piece.len());
        let before = consumed;
        consumed += p.consumed;
        assert!(consumed <= TOTAL, "client consumed past S2");
        if consumed < TOTAL {
            assert_eq!(p.consumed, piece.len());
        }
        assert_eq!(p.done, consumed == TOTAL);
        if before < HELLO && consumed >= HELLO {
            assert_eq!(p.reply.len(), HANDSHAKE_SIZE, "C2 once S1 is complete");
            assert!(!answered);
            answered = true;
            assert!(hs.kind().is_some());
            if hs.kind() == Some(HandshakeKind::Plain) {
                // A plain C2 echoes S1.
                assert_eq!(&p.reply[..], &input.body[1..HELLO]);
            }
        } else {
            assert!(p.reply.is_empty());
        }
    }
    if failed.is_none() && consumed == TOTAL {
        let p = hs.feed(b"more").expect("done handshake accepts feed");
        assert!(p.done && p.consumed == 0);
    }
}
