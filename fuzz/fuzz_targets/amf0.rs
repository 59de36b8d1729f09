//! AMF0 decoding of arbitrary bytes, and a round trip of whatever decodes.
//!
//! `decode_all` must never panic. When it succeeds, `encode_all` of the values must decode again
//! (same limits) to the same values, numbers compared bit for bit (so NaN payloads count too),
//! and encoding is a fixed point from then on. The one documented lossy step is modelled: object
//! keys longer than 65535 bytes are cut at a character boundary by the encoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardcast::rtmp::amf0::{decode_all, decode_one, encode_all, Amf0Value, DecodeLimits};

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits::default();
    let Ok(values) = decode_all(data, &limits) else {
        // decode_one must not panic either, and must fail or stop within the input.
        if let Ok((_, used)) = decode_one(data, &limits) {
            assert!(used <= data.len());
        }
        return;
    };
    // The first value decodes alone to the same thing and its length is sane.
    if let Some(first) = values.first() {
        let (one, used) = decode_one(data, &limits).expect("first value decodes alone");
        assert!(used >= 1 && used <= data.len());
        assert!(same(first, &one), "decode_one and decode_all disagree");
    }
    let bytes = encode_all(&values);
    let again = decode_all(&bytes, &limits)
        .unwrap_or_else(|e| panic!("encode_all output does not decode: {e}\n{values:?}"));
    assert_eq!(values.len(), again.len());
    for (a, b) in values.iter().zip(&again) {
        assert!(same(a, b), "round trip changed a value:\n{a:?}\n{b:?}");
    }
    assert_eq!(encode_all(&again), bytes, "encoding is not a fixed point");
    // A small depth limit must fail cleanly or agree.
    let shallow = DecodeLimits {
        max_depth: 2,
        max_elements: 64,
    };
    if let Ok(v) = decode_all(data, &shallow) {
        assert_eq!(v.len(), values.len());
    }
});

const MAX_KEY: usize = u16::MAX as usize;

/// `b` is what encoding and decoding `a` should give: numbers by bits, keys modulo truncation.
fn same(a: &Amf0Value, b: &Amf0Value) -> bool {
    use Amf0Value::*;
    match (a, b) {
        (Number(x), Number(y)) => x.to_bits() == y.to_bits(),
        (Boolean(x), Boolean(y)) => x == y,
        (String(x), String(y)) => x == y,
        (Null, Null) | (Undefined, Undefined) => true,
        (Object(x), Object(y)) | (EcmaArray(x), EcmaArray(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| truncated(ka) == kb && same(va, vb))
        }
        (StrictArray(x), StrictArray(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(va, vb)| same(va, vb))
        }
        (
            Date {
                millis: ma,
                timezone: ta,
            },
            Date {
                millis: mb,
                timezone: tb,
            },
        ) => ma.to_bits() == mb.to_bits() && ta == tb,
        _ => false,
    }
}

/// A key as the encoder writes it: at most 65535 bytes, cut at a character boundary.
fn truncated(key: &str) -> &str {
    if key.len() <= MAX_KEY {
        return key;
    }
    let mut end = MAX_KEY;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    &key[..end]
}
