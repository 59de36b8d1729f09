//! AMF0 (Action Message Format 0) codec for RTMP command and data messages.
//!
//! Pure functions over byte slices. The decoder treats its input as hostile:
//! nesting depth and the total number of decoded values are bounded by
//! [`DecodeLimits`], and no allocation is made that the remaining input could
//! not back up, so a forged 4-byte count cannot reserve gigabytes.

use thiserror::Error;

/// AMF0 type markers (first byte of every encoded value).
mod marker {
    pub const NUMBER: u8 = 0x00;
    pub const BOOLEAN: u8 = 0x01;
    pub const STRING: u8 = 0x02;
    pub const OBJECT: u8 = 0x03;
    pub const NULL: u8 = 0x05;
    pub const UNDEFINED: u8 = 0x06;
    pub const REFERENCE: u8 = 0x07;
    pub const ECMA_ARRAY: u8 = 0x08;
    pub const OBJECT_END: u8 = 0x09;
    pub const STRICT_ARRAY: u8 = 0x0A;
    pub const DATE: u8 = 0x0B;
    pub const LONG_STRING: u8 = 0x0C;
    pub const UNSUPPORTED: u8 = 0x0D;
    pub const XML_DOCUMENT: u8 = 0x0F;
    pub const TYPED_OBJECT: u8 = 0x10;
    pub const AVMPLUS: u8 = 0x11;
}

/// AMF3 markers understood after an AMF0 "avmplus" switch (0x11).
mod amf3 {
    pub const UNDEFINED: u8 = 0x00;
    pub const NULL: u8 = 0x01;
    pub const FALSE: u8 = 0x02;
    pub const TRUE: u8 = 0x03;
    pub const INTEGER: u8 = 0x04;
    pub const DOUBLE: u8 = 0x05;
    pub const STRING: u8 = 0x06;
}

/// Initial capacity cap for arrays: the element count is already bounded by
/// the input length, but one input byte can yield a ~40-byte value, so growth
/// beyond this is left to `Vec` doubling as values actually decode.
const PREALLOC_CAP: usize = 1024;

/// A decoded or to-be-encoded AMF0 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Amf0Value {
    /// Marker 0x00: an IEEE 754 double.
    Number(f64),
    /// Marker 0x01: a boolean.
    Boolean(bool),
    /// Encoded as 0x02, or as long string 0x0C when longer than 65535 bytes.
    /// Long strings (0x0C) and XML documents (0x0F) decode into this too.
    String(String),
    /// Anonymous object; property order is preserved (RTMP peers care).
    Object(Vec<(String, Amf0Value)>),
    /// Marker 0x05: null.
    Null,
    /// Marker 0x06: undefined (0x0D unsupported decodes to this too).
    Undefined,
    /// Marker 0x08: an associative array; property order is preserved.
    EcmaArray(Vec<(String, Amf0Value)>),
    /// Marker 0x0A: a dense array.
    StrictArray(Vec<Amf0Value>),
    /// Marker 0x0B: a date.
    Date {
        /// Milliseconds since the Unix epoch (UTC).
        millis: f64,
        /// Time zone offset; the spec says send 0.
        timezone: i16,
    },
}

/// Bounds applied while decoding untrusted input.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Maximum number of nested containers (object, ECMA array, strict array).
    /// Also bounds recursion, so it must stay small enough for the stack.
    pub max_depth: usize,
    /// Maximum number of values decoded in one call, all nesting levels counted.
    pub max_elements: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_depth: 32,
            max_elements: 65536,
        }
    }
}

/// Why a buffer could not be decoded.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum Amf0Error {
    /// The input ended inside a value.
    #[error("AMF0 input ended in the middle of a value")]
    UnexpectedEof,
    /// A type marker AMF0 does not define.
    #[error("unknown AMF0 type marker 0x{0:02x}")]
    UnknownMarker(u8),
    /// An object-end marker (0x09) where a value was expected.
    #[error("AMF0 object-end marker found where a value was expected")]
    UnexpectedObjectEnd,
    /// Containers nested deeper than [`DecodeLimits::max_depth`].
    #[error("AMF0 value nested deeper than {limit} containers")]
    TooDeep {
        /// The depth limit.
        limit: usize,
    },
    /// More values than [`DecodeLimits::max_elements`].
    #[error("AMF0 input holds more than {limit} values")]
    TooManyElements {
        /// The element limit.
        limit: usize,
    },
    /// Reserved: the decoder converts invalid UTF-8 lossily (clients send
    /// Latin-1 stream names), so it does not currently produce this.
    #[error("AMF0 string is not valid UTF-8")]
    InvalidUtf8,
    /// A reference marker (AMF0 0x07 or an AMF3 reference); not supported.
    #[error("AMF0/AMF3 references are not supported")]
    UnsupportedReference,
    /// An AMF3 marker (after the avmplus switch) this decoder does not handle.
    #[error("unsupported AMF3 type marker 0x{0:02x}")]
    UnsupportedAmf3Marker(u8),
}

impl Amf0Value {
    /// The text of a String, else `None`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf0Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value of a Number, else `None`.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Amf0Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The value of a Boolean, else `None`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Amf0Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// First property named `key` of an Object or ECMA array.
    pub fn get(&self, key: &str) -> Option<&Amf0Value> {
        match self {
            Amf0Value::Object(props) | Amf0Value::EcmaArray(props) => {
                props.iter().find(|(k, _)| k == key).map(|(_, v)| v)
            }
            _ => None,
        }
    }

    /// Builds an Object from key/value pairs, keeping their order.
    pub fn object<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Amf0Value)>) -> Amf0Value {
        Amf0Value::Object(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// Builds a String value.
    pub fn string(s: impl Into<String>) -> Amf0Value {
        Amf0Value::String(s.into())
    }
}

/// Decodes one value from the start of `buf`; returns it with the number of
/// bytes it occupied, so the caller can continue after it.
pub fn decode_one(buf: &[u8], limits: &DecodeLimits) -> Result<(Amf0Value, usize), Amf0Error> {
    let mut decoder = Decoder::new(buf, limits);
    let value = decoder.value(0)?;
    Ok((value, decoder.pos))
}

/// Decodes values until `buf` is exhausted. The element budget covers the
/// whole buffer, so many small top-level values cannot evade it.
pub fn decode_all(buf: &[u8], limits: &DecodeLimits) -> Result<Vec<Amf0Value>, Amf0Error> {
    let mut decoder = Decoder::new(buf, limits);
    let mut values = Vec::new();
    while decoder.remaining() > 0 {
        values.push(decoder.value(0)?);
    }
    Ok(values)
}

/// Appends the AMF0 encoding of `value` to `out`.
///
/// Strings longer than the wire format can express (object keys over 65535
/// bytes, long strings over 4 GiB) are cut at a character boundary instead of
/// producing a corrupt length field.
pub fn encode(value: &Amf0Value, out: &mut Vec<u8>) {
    match value {
        Amf0Value::Number(n) => {
            out.push(marker::NUMBER);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Amf0Value::Boolean(b) => {
            out.push(marker::BOOLEAN);
            out.push(u8::from(*b));
        }
        Amf0Value::String(s) => {
            if s.len() <= usize::from(u16::MAX) {
                out.push(marker::STRING);
                put_short_str(s, out);
            } else {
                let s = truncate_utf8(s, u32::MAX as usize);
                out.push(marker::LONG_STRING);
                out.extend_from_slice(&(s.len() as u32).to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        }
        Amf0Value::Object(props) => {
            out.push(marker::OBJECT);
            put_properties(props, out);
        }
        Amf0Value::Null => out.push(marker::NULL),
        Amf0Value::Undefined => out.push(marker::UNDEFINED),
        Amf0Value::EcmaArray(props) => {
            out.push(marker::ECMA_ARRAY);
            // Only a hint on the wire, so saturating is harmless.
            let hint = u32::try_from(props.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&hint.to_be_bytes());
            put_properties(props, out);
        }
        Amf0Value::StrictArray(items) => {
            out.push(marker::STRICT_ARRAY);
            // The count is authoritative, so never write more items than it says.
            let n = items.len().min(u32::MAX as usize);
            out.extend_from_slice(&(n as u32).to_be_bytes());
            for item in &items[..n] {
                encode(item, out);
            }
        }
        Amf0Value::Date { millis, timezone } => {
            out.push(marker::DATE);
            out.extend_from_slice(&millis.to_be_bytes());
            out.extend_from_slice(&timezone.to_be_bytes());
        }
    }
}

/// Encodes a sequence of values back to back (an RTMP command body).
pub fn encode_all(values: &[Amf0Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for value in values {
        encode(value, &mut out);
    }
    out
}

/// u16 length + bytes, as used by short strings and property keys.
fn put_short_str(s: &str, out: &mut Vec<u8>) {
    let s = truncate_utf8(s, usize::from(u16::MAX));
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Key/value pairs followed by the empty key + object-end terminator.
fn put_properties(props: &[(String, Amf0Value)], out: &mut Vec<u8>) {
    for (key, value) in props {
        put_short_str(key, out);
        encode(value, out);
    }
    out.extend_from_slice(&[0x00, 0x00, marker::OBJECT_END]);
}

/// At most `max` bytes of `s`, cut at a character boundary.
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Cursor over the input plus the running element budget.
struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    limits: DecodeLimits,
    elements: usize,
}

impl<'a> Decoder<'a> {
    fn new(buf: &'a [u8], limits: &DecodeLimits) -> Self {
        Self {
            buf,
            pos: 0,
            limits: *limits,
            elements: 0,
        }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Amf0Error> {
        if n > self.remaining() {
            return Err(Amf0Error::UnexpectedEof);
        }
        let bytes = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Amf0Error> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Amf0Error> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, Amf0Error> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, Amf0Error> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn f64(&mut self) -> Result<f64, Amf0Error> {
        Ok(f64::from_be_bytes(self.array()?))
    }

    fn i16(&mut self) -> Result<i16, Amf0Error> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// Lossy so that Latin-1 stream names from old clients still work.
    fn text(&mut self, len: usize) -> Result<String, Amf0Error> {
        Ok(String::from_utf8_lossy(self.take(len)?).into_owned())
    }

    fn short_text(&mut self) -> Result<String, Amf0Error> {
        let len = self.u16()?;
        self.text(usize::from(len))
    }

    fn long_text(&mut self) -> Result<String, Amf0Error> {
        let len = self.u32()?;
        self.text(len as usize)
    }

    fn count_element(&mut self) -> Result<(), Amf0Error> {
        if self.elements >= self.limits.max_elements {
            return Err(Amf0Error::TooManyElements {
                limit: self.limits.max_elements,
            });
        }
        self.elements += 1;
        Ok(())
    }

    /// Depth for the children of a container found at `depth`.
    fn enter(&self, depth: usize) -> Result<usize, Amf0Error> {
        if depth >= self.limits.max_depth {
            return Err(Amf0Error::TooDeep {
                limit: self.limits.max_depth,
            });
        }
        Ok(depth + 1)
    }

    /// `depth` is the number of containers enclosing this value.
    fn value(&mut self, depth: usize) -> Result<Amf0Value, Amf0Error> {
        let m = self.u8()?;
        self.count_element()?;
        match m {
            marker::NUMBER => Ok(Amf0Value::Number(self.f64()?)),
            marker::BOOLEAN => Ok(Amf0Value::Boolean(self.u8()? != 0)),
            marker::STRING => Ok(Amf0Value::String(self.short_text()?)),
            marker::OBJECT => {
                let inner = self.enter(depth)?;
                Ok(Amf0Value::Object(self.properties(inner, None)?))
            }
            marker::NULL => Ok(Amf0Value::Null),
            marker::UNDEFINED | marker::UNSUPPORTED => Ok(Amf0Value::Undefined),
            marker::REFERENCE => Err(Amf0Error::UnsupportedReference),
            marker::ECMA_ARRAY => {
                let hint = self.u32()? as usize;
                let inner = self.enter(depth)?;
                Ok(Amf0Value::EcmaArray(self.properties(inner, Some(hint))?))
            }
            marker::OBJECT_END => Err(Amf0Error::UnexpectedObjectEnd),
            marker::STRICT_ARRAY => {
                let count = self.u32()? as usize;
                let inner = self.enter(depth)?;
                self.strict_array(count, inner)
            }
            marker::DATE => {
                let millis = self.f64()?;
                let timezone = self.i16()?;
                Ok(Amf0Value::Date { millis, timezone })
            }
            marker::LONG_STRING | marker::XML_DOCUMENT => Ok(Amf0Value::String(self.long_text()?)),
            marker::TYPED_OBJECT => {
                // The class name has no meaning to a media server; keep the
                // properties so a typed object is still usable as an Object.
                let _class = self.short_text()?;
                let inner = self.enter(depth)?;
                Ok(Amf0Value::Object(self.properties(inner, None)?))
            }
            marker::AVMPLUS => self.amf3_value(),
            other => Err(Amf0Error::UnknownMarker(other)),
        }
    }

    /// Properties up to the empty-key + 0x09 terminator. For ECMA arrays
    /// (`hint` is Some) the count is only a hint, except that a buffer ending
    /// exactly after `hint` pairs is accepted without the terminator, which
    /// some encoders omit.
    fn properties(
        &mut self,
        depth: usize,
        hint: Option<usize>,
    ) -> Result<Vec<(String, Amf0Value)>, Amf0Error> {
        let mut props = Vec::new();
        loop {
            if hint == Some(props.len()) && self.remaining() == 0 {
                return Ok(props);
            }
            let key = self.short_text()?;
            if key.is_empty() && self.peek() == Some(marker::OBJECT_END) {
                self.pos += 1;
                return Ok(props);
            }
            let value = self.value(depth)?;
            props.push((key, value));
        }
    }

    fn strict_array(&mut self, count: usize, depth: usize) -> Result<Amf0Value, Amf0Error> {
        // Every value takes at least one byte, so a count larger than the
        // rest of the input is a lie; reject before allocating.
        if count > self.remaining() {
            return Err(Amf0Error::UnexpectedEof);
        }
        if count > self.limits.max_elements.saturating_sub(self.elements) {
            return Err(Amf0Error::TooManyElements {
                limit: self.limits.max_elements,
            });
        }
        let mut items = Vec::with_capacity(count.min(PREALLOC_CAP));
        for _ in 0..count {
            items.push(self.value(depth)?);
        }
        Ok(Amf0Value::StrictArray(items))
    }

    /// One AMF3 value of a simple type, as sent by clients that switch to AMF3
    /// for a single argument.
    fn amf3_value(&mut self) -> Result<Amf0Value, Amf0Error> {
        match self.u8()? {
            amf3::UNDEFINED => Ok(Amf0Value::Undefined),
            amf3::NULL => Ok(Amf0Value::Null),
            amf3::FALSE => Ok(Amf0Value::Boolean(false)),
            amf3::TRUE => Ok(Amf0Value::Boolean(true)),
            amf3::INTEGER => {
                let raw = self.u29()?;
                // Sign-extend from 29 bits.
                let signed = ((raw << 3) as i32) >> 3;
                Ok(Amf0Value::Number(f64::from(signed)))
            }
            amf3::DOUBLE => Ok(Amf0Value::Number(self.f64()?)),
            amf3::STRING => {
                let header = self.u29()?;
                if header & 1 == 0 {
                    return Err(Amf0Error::UnsupportedReference);
                }
                Ok(Amf0Value::String(self.text((header >> 1) as usize)?))
            }
            other => Err(Amf0Error::UnsupportedAmf3Marker(other)),
        }
    }

    /// AMF3 variable-length unsigned 29-bit integer: up to three bytes of 7
    /// bits with a continuation flag, then a final byte of 8 bits.
    fn u29(&mut self) -> Result<u32, Amf0Error> {
        let mut value: u32 = 0;
        for _ in 0..3 {
            let b = self.u8()?;
            value = (value << 7) | u32::from(b & 0x7F);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        let b = self.u8()?;
        Ok((value << 8) | u32::from(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim() -> DecodeLimits {
        DecodeLimits::default()
    }

    fn enc(v: &Amf0Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode(v, &mut out);
        out
    }

    fn round_trip(v: Amf0Value) {
        let bytes = enc(&v);
        let (back, used) = decode_one(&bytes, &lim()).expect("decodes");
        assert_eq!(back, v);
        assert_eq!(used, bytes.len());
    }

    /// AMF3 U29 encoder written for the tests only.
    fn u29_bytes(v: u32) -> Vec<u8> {
        let v = v & 0x1FFF_FFFF;
        if v < 0x80 {
            vec![v as u8]
        } else if v < 0x4000 {
            vec![(v >> 7) as u8 | 0x80, (v & 0x7F) as u8]
        } else if v < 0x20_0000 {
            vec![
                (v >> 14) as u8 | 0x80,
                ((v >> 7) & 0x7F) as u8 | 0x80,
                (v & 0x7F) as u8,
            ]
        } else {
            vec![
                (v >> 22) as u8 | 0x80,
                ((v >> 15) & 0x7F) as u8 | 0x80,
                ((v >> 8) & 0x7F) as u8 | 0x80,
                v as u8,
            ]
        }
    }

    fn amf3_int(v: i32) -> Vec<u8> {
        let mut b = vec![0x11, 0x04];
        b.extend(u29_bytes(v as u32));
        b
    }

    fn connect_values() -> Vec<Amf0Value> {
        vec![
            Amf0Value::string("connect"),
            Amf0Value::Number(1.0),
            Amf0Value::object([
                ("app", Amf0Value::string("live")),
                ("type", Amf0Value::string("nonprivate")),
                (
                    "flashVer",
                    Amf0Value::string("FMLE/3.0 (compatible; Lavf61.1.100)"),
                ),
                ("tcUrl", Amf0Value::string("rtmp://localhost:1935/live")),
                ("fpad", Amf0Value::Boolean(false)),
                ("capabilities", Amf0Value::Number(15.0)),
                ("audioCodecs", Amf0Value::Number(4071.0)),
                ("videoCodecs", Amf0Value::Number(252.0)),
                ("videoFunction", Amf0Value::Number(1.0)),
                ("objectEncoding", Amf0Value::Number(0.0)),
            ]),
        ]
    }

    fn connect_bytes() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"\x02\x00\x07connect");
        b.extend_from_slice(b"\x00\x3f\xf0\x00\x00\x00\x00\x00\x00");
        b.extend_from_slice(b"\x03");
        b.extend_from_slice(b"\x00\x03app\x02\x00\x04live");
        b.extend_from_slice(b"\x00\x04type\x02\x00\x0anonprivate");
        b.extend_from_slice(b"\x00\x08flashVer\x02\x00\x23FMLE/3.0 (compatible; Lavf61.1.100)");
        b.extend_from_slice(b"\x00\x05tcUrl\x02\x00\x1artmp://localhost:1935/live");
        b.extend_from_slice(b"\x00\x04fpad\x01\x00");
        b.extend_from_slice(b"\x00\x0ccapabilities\x00\x40\x2e\x00\x00\x00\x00\x00\x00");
        b.extend_from_slice(b"\x00\x0baudioCodecs\x00\x40\xaf\xce\x00\x00\x00\x00\x00");
        b.extend_from_slice(b"\x00\x0bvideoCodecs\x00\x40\x6f\x80\x00\x00\x00\x00\x00");
        b.extend_from_slice(b"\x00\x0dvideoFunction\x00\x3f\xf0\x00\x00\x00\x00\x00\x00");
        b.extend_from_slice(b"\x00\x0eobjectEncoding\x00\x00\x00\x00\x00\x00\x00\x00\x00");
        b.extend_from_slice(b"\x00\x00\x09");
        b
    }

    /// A value exercising every container, ending in a non-ECMA value so no
    /// strict prefix of its encoding is itself valid.
    fn complex_value() -> Amf0Value {
        Amf0Value::StrictArray(vec![
            Amf0Value::Number(-2.5),
            Amf0Value::Boolean(true),
            Amf0Value::string("héllo"),
            Amf0Value::object([
                ("a", Amf0Value::Null),
                ("b", Amf0Value::Undefined),
                (
                    "c",
                    Amf0Value::EcmaArray(vec![
                        ("x".into(), Amf0Value::Number(1.0)),
                        ("y".into(), Amf0Value::StrictArray(vec![Amf0Value::Null])),
                    ]),
                ),
            ]),
            Amf0Value::Date {
                millis: 1.7e12,
                timezone: -60,
            },
            Amf0Value::string(""),
        ])
    }

    // ---- round trips ----

    #[test]
    fn round_trip_scalars() {
        for n in [
            0.0,
            -0.0,
            1.0,
            -1.5,
            1e300,
            f64::MIN_POSITIVE,
            f64::INFINITY,
        ] {
            round_trip(Amf0Value::Number(n));
        }
        round_trip(Amf0Value::Boolean(true));
        round_trip(Amf0Value::Boolean(false));
        round_trip(Amf0Value::Null);
        round_trip(Amf0Value::Undefined);
        round_trip(Amf0Value::Date {
            millis: 1_234_567_890_123.0,
            timezone: 0,
        });
        round_trip(Amf0Value::Date {
            millis: -5.0,
            timezone: i16::MIN,
        });
    }

    #[test]
    fn round_trip_nan_keeps_bits() {
        let bytes = enc(&Amf0Value::Number(f64::NAN));
        let (v, _) = decode_one(&bytes, &lim()).unwrap();
        assert_eq!(v.as_f64().unwrap().to_bits(), f64::NAN.to_bits());
    }

    #[test]
    fn round_trip_strings() {
        round_trip(Amf0Value::string(""));
        round_trip(Amf0Value::string("live/stream?key=abc"));
        round_trip(Amf0Value::string("ünïcødé ✓ 🎥"));
    }

    #[test]
    fn round_trip_containers() {
        round_trip(Amf0Value::Object(vec![]));
        round_trip(Amf0Value::EcmaArray(vec![]));
        round_trip(Amf0Value::StrictArray(vec![]));
        round_trip(complex_value());
        round_trip(Amf0Value::object([("", Amf0Value::Null)]));
    }

    #[test]
    fn object_preserves_property_order() {
        let v = Amf0Value::object([
            ("z", Amf0Value::Number(1.0)),
            ("a", Amf0Value::Number(2.0)),
            ("m", Amf0Value::Number(3.0)),
        ]);
        let bytes = enc(&v);
        let (back, _) = decode_one(&bytes, &lim()).unwrap();
        let Amf0Value::Object(props) = back else {
            panic!("not an object")
        };
        let keys: Vec<&str> = props.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["z", "a", "m"]);
    }

    // ---- known bytes ----

    #[test]
    fn known_scalar_bytes() {
        assert_eq!(
            enc(&Amf0Value::Number(1.0)),
            [0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(enc(&Amf0Value::Boolean(true)), [0x01, 0x01]);
        assert_eq!(enc(&Amf0Value::Boolean(false)), [0x01, 0x00]);
        assert_eq!(
            enc(&Amf0Value::string("app")),
            [0x02, 0x00, 0x03, b'a', b'p', b'p']
        );
        assert_eq!(enc(&Amf0Value::Null), [0x05]);
        assert_eq!(enc(&Amf0Value::Undefined), [0x06]);
        assert_eq!(
            enc(&Amf0Value::Date {
                millis: 0.0,
                timezone: 1
            }),
            [0x0B, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x01]
        );
        assert_eq!(
            enc(&Amf0Value::EcmaArray(vec![(
                "k".into(),
                Amf0Value::Boolean(true)
            )])),
            [0x08, 0, 0, 0, 1, 0x00, 0x01, b'k', 0x01, 0x01, 0x00, 0x00, 0x09]
        );
        assert_eq!(
            enc(&Amf0Value::StrictArray(vec![
                Amf0Value::Null,
                Amf0Value::Undefined
            ])),
            [0x0A, 0, 0, 0, 2, 0x05, 0x06]
        );
    }

    #[test]
    fn ffmpeg_connect_command_bytes() {
        let values = connect_values();
        let bytes = connect_bytes();
        assert_eq!(encode_all(&values), bytes);
        let decoded = decode_all(&bytes, &lim()).unwrap();
        assert_eq!(decoded, values);
        let cmd = &decoded[2];
        assert_eq!(cmd.get("app").and_then(Amf0Value::as_str), Some("live"));
        assert_eq!(
            cmd.get("tcUrl").and_then(Amf0Value::as_str),
            Some("rtmp://localhost:1935/live")
        );
        assert_eq!(cmd.get("fpad").and_then(Amf0Value::as_bool), Some(false));
        assert_eq!(
            cmd.get("audioCodecs").and_then(Amf0Value::as_f64),
            Some(4071.0)
        );
        assert_eq!(
            cmd.get("objectEncoding").and_then(Amf0Value::as_f64),
            Some(0.0)
        );
        assert_eq!(cmd.get("missing"), None);
    }

    #[test]
    fn decode_one_reports_consumed_and_leaves_rest() {
        let bytes = connect_bytes();
        let (v, used) = decode_one(&bytes, &lim()).unwrap();
        assert_eq!(v, Amf0Value::string("connect"));
        assert_eq!(used, 10);
        let (v, used2) = decode_one(&bytes[used..], &lim()).unwrap();
        assert_eq!(v, Amf0Value::Number(1.0));
        assert_eq!(used2, 9);
    }

    #[test]
    fn decode_all_empty_is_empty() {
        assert_eq!(decode_all(&[], &lim()).unwrap(), vec![]);
        assert_eq!(decode_one(&[], &lim()), Err(Amf0Error::UnexpectedEof));
    }

    // ---- accessors ----

    #[test]
    fn accessors() {
        let s = Amf0Value::string("x");
        assert_eq!(s.as_str(), Some("x"));
        assert_eq!(s.as_f64(), None);
        assert_eq!(s.as_bool(), None);
        assert_eq!(Amf0Value::Number(2.0).as_f64(), Some(2.0));
        assert_eq!(Amf0Value::Number(2.0).as_str(), None);
        assert_eq!(Amf0Value::Boolean(true).as_bool(), Some(true));
        let e = Amf0Value::EcmaArray(vec![
            ("dup".into(), Amf0Value::Number(1.0)),
            ("dup".into(), Amf0Value::Number(2.0)),
        ]);
        assert_eq!(e.get("dup"), Some(&Amf0Value::Number(1.0)));
        assert_eq!(Amf0Value::Null.get("dup"), None);
        assert_eq!(Amf0Value::StrictArray(vec![Amf0Value::Null]).get("0"), None);
    }

    // ---- ECMA arrays ----

    #[test]
    fn ecma_count_hint_is_not_trusted() {
        // Hint says 5, two pairs follow, then the end marker.
        let bytes = [
            0x08, 0, 0, 0, 5, 0, 1, b'a', 0x05, 0, 1, b'b', 0x06, 0, 0, 0x09,
        ];
        let (v, used) = decode_one(&bytes, &lim()).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(
            v,
            Amf0Value::EcmaArray(vec![
                ("a".into(), Amf0Value::Null),
                ("b".into(), Amf0Value::Undefined)
            ])
        );
        // Hint 0 with two pairs.
        let mut zero = bytes;
        zero[4] = 0;
        assert_eq!(decode_one(&zero, &lim()).unwrap().0, v);
        // Huge hint must not allocate or fail.
        let mut huge = bytes;
        huge[1..5].copy_from_slice(&[0xFF; 4]);
        assert_eq!(decode_one(&huge, &lim()).unwrap().0, v);
    }

    #[test]
    fn ecma_missing_end_marker_accepted_when_count_matches_at_buffer_end() {
        let bytes = [0x08, 0, 0, 0, 2, 0, 1, b'a', 0x05, 0, 1, b'b', 0x01, 0x01];
        let (v, used) = decode_one(&bytes, &lim()).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(
            v,
            Amf0Value::EcmaArray(vec![
                ("a".into(), Amf0Value::Null),
                ("b".into(), Amf0Value::Boolean(true))
            ])
        );
        // Empty array with count 0 and nothing after it.
        assert_eq!(
            decode_one(&[0x08, 0, 0, 0, 0], &lim()).unwrap(),
            (Amf0Value::EcmaArray(vec![]), 5)
        );
        // Count disagrees: the buffer end is a truncation.
        let mut wrong = bytes;
        wrong[4] = 3;
        assert_eq!(decode_one(&wrong, &lim()), Err(Amf0Error::UnexpectedEof));
        // Within a larger message the terminator is required.
        let mut nested = vec![0x0A, 0, 0, 0, 2];
        nested.extend_from_slice(&bytes);
        nested.push(0x05);
        assert!(decode_one(&nested, &lim()).is_err());
    }

    // ---- other markers ----

    #[test]
    fn xml_document_and_long_string_decode_to_string() {
        let mut xml = vec![0x0F, 0, 0, 0, 5];
        xml.extend_from_slice(b"<a/>!");
        assert_eq!(
            decode_one(&xml, &lim()).unwrap(),
            (Amf0Value::string("<a/>!"), 10)
        );
        let mut long = vec![0x0C, 0, 0, 0, 2];
        long.extend_from_slice(b"hi");
        assert_eq!(
            decode_one(&long, &lim()).unwrap(),
            (Amf0Value::string("hi"), 7)
        );
    }

    #[test]
    fn special_markers() {
        assert_eq!(
            decode_one(&[0x0D], &lim()).unwrap(),
            (Amf0Value::Undefined, 1)
        );
        assert_eq!(
            decode_one(&[0x07, 0x00, 0x01], &lim()),
            Err(Amf0Error::UnsupportedReference)
        );
        assert_eq!(
            decode_one(&[0x04], &lim()),
            Err(Amf0Error::UnknownMarker(0x04))
        );
        assert_eq!(
            decode_one(&[0x0E], &lim()),
            Err(Amf0Error::UnknownMarker(0x0E))
        );
        assert_eq!(
            decode_one(&[0xFF], &lim()),
            Err(Amf0Error::UnknownMarker(0xFF))
        );
        assert_eq!(
            decode_one(&[0x09], &lim()),
            Err(Amf0Error::UnexpectedObjectEnd)
        );
        // Object whose property value is an object-end marker.
        assert_eq!(
            decode_one(&[0x03, 0, 1, b'a', 0x09], &lim()),
            Err(Amf0Error::UnexpectedObjectEnd)
        );
    }

    #[test]
    fn typed_object_decodes_as_object() {
        let bytes = [
            0x10, 0, 3, b'F', b'o', b'o', 0, 1, b'x', 0x01, 0x01, 0, 0, 0x09,
        ];
        assert_eq!(
            decode_one(&bytes, &lim()).unwrap(),
            (
                Amf0Value::object([("x", Amf0Value::Boolean(true))]),
                bytes.len()
            )
        );
    }

    #[test]
    fn invalid_utf8_is_lossy() {
        // "caf\xe9" in Latin-1.
        let bytes = [0x02, 0, 4, b'c', b'a', b'f', 0xE9];
        let (v, _) = decode_one(&bytes, &lim()).unwrap();
        assert_eq!(v.as_str(), Some("caf\u{FFFD}"));
        // Also in object keys.
        let obj = [0x03, 0, 1, 0xFF, 0x05, 0, 0, 0x09];
        let (v, _) = decode_one(&obj, &lim()).unwrap();
        assert_eq!(v.get("\u{FFFD}"), Some(&Amf0Value::Null));
    }

    #[test]
    fn nonzero_boolean_is_true() {
        assert_eq!(
            decode_one(&[0x01, 0x7F], &lim()).unwrap().0,
            Amf0Value::Boolean(true)
        );
    }

    // ---- hostile input ----

    #[test]
    fn truncation_at_every_offset_errors() {
        let mut samples = vec![complex_value(), Amf0Value::string("x".repeat(70_000))];
        samples.extend(connect_values());
        for v in samples {
            let bytes = enc(&v);
            for cut in 0..bytes.len() {
                let r = decode_one(&bytes[..cut], &lim());
                assert!(r.is_err(), "prefix of {cut}/{} decoded", bytes.len());
            }
        }
        // AMF3 values too.
        for bytes in [
            amf3_int(0x0FFF_FFFF),
            vec![0x11, 0x06, 0x07, b'a', b'b', b'c'],
        ] {
            for cut in 0..bytes.len() {
                assert_eq!(
                    decode_one(&bytes[..cut], &lim()),
                    Err(Amf0Error::UnexpectedEof)
                );
            }
        }
    }

    #[test]
    fn truncated_sequences_never_panic() {
        let bytes = connect_bytes();
        for cut in 0..bytes.len() {
            // Cuts between values decode fine; any other cut must error.
            if let Ok(values) = decode_all(&bytes[..cut], &lim()) {
                assert!(values.len() < 3);
                assert_eq!(values[..], connect_values()[..values.len()]);
            }
        }
    }

    #[test]
    fn depth_limit_boundary() {
        // `n` nested single-element strict arrays around a null.
        let nested = |n: usize| {
            let mut b = Vec::new();
            for _ in 0..n {
                b.extend_from_slice(&[0x0A, 0, 0, 0, 1]);
            }
            b.push(0x05);
            b
        };
        assert!(decode_one(&nested(32), &lim()).is_ok());
        assert_eq!(
            decode_one(&nested(33), &lim()),
            Err(Amf0Error::TooDeep { limit: 32 })
        );
        let shallow = DecodeLimits {
            max_depth: 1,
            ..lim()
        };
        assert!(decode_one(&nested(1), &shallow).is_ok());
        assert_eq!(
            decode_one(&nested(2), &shallow),
            Err(Amf0Error::TooDeep { limit: 1 })
        );
    }

    #[test]
    fn depth_bomb_objects_arrays_ecma() {
        const N: usize = 100_000;
        let mut obj = Vec::with_capacity(N * 4);
        let mut arr = Vec::with_capacity(N * 5);
        let mut ecma = Vec::with_capacity(N * 8);
        for _ in 0..N {
            obj.extend_from_slice(&[0x03, 0, 1, b'a']);
            arr.extend_from_slice(&[0x0A, 0, 0, 0, 1]);
            ecma.extend_from_slice(&[0x08, 0, 0, 0, 1, 0, 1, b'a']);
        }
        for bomb in [obj, arr, ecma] {
            assert_eq!(
                decode_one(&bomb, &lim()),
                Err(Amf0Error::TooDeep { limit: 32 })
            );
            assert_eq!(
                decode_all(&bomb, &lim()),
                Err(Amf0Error::TooDeep { limit: 32 })
            );
        }
        // Raw repeated markers must simply fail, not panic.
        for m in [0x03u8, 0x08, 0x0A, 0x10, 0x11] {
            assert!(decode_one(&vec![m; N], &lim()).is_err());
        }
    }

    #[test]
    fn element_limit_boundary_and_bombs() {
        // Strict array of 65535 nulls = 65536 values: exactly at the limit.
        let mut ok = vec![0x0A];
        ok.extend_from_slice(&65535u32.to_be_bytes());
        ok.extend(std::iter::repeat_n(0x05, 65535));
        assert!(decode_one(&ok, &lim()).is_ok());

        let mut bomb = vec![0x0A];
        bomb.extend_from_slice(&65536u32.to_be_bytes());
        bomb.extend(std::iter::repeat_n(0x05, 65536));
        assert_eq!(
            decode_one(&bomb, &lim()),
            Err(Amf0Error::TooManyElements { limit: 65536 })
        );

        // Object with too many properties (counted one by one).
        let mut obj = vec![0x03];
        for _ in 0..70_000 {
            obj.extend_from_slice(&[0, 1, b'k', 0x05]);
        }
        obj.extend_from_slice(&[0, 0, 0x09]);
        assert_eq!(
            decode_one(&obj, &lim()),
            Err(Amf0Error::TooManyElements { limit: 65536 })
        );

        // The budget is shared across top-level values in decode_all.
        let many = vec![0x05u8; 65537];
        assert_eq!(
            decode_all(&many, &lim()),
            Err(Amf0Error::TooManyElements { limit: 65536 })
        );
        assert_eq!(decode_all(&many[..65536], &lim()).unwrap().len(), 65536);

        let tiny = DecodeLimits {
            max_elements: 2,
            ..lim()
        };
        assert!(decode_one(&[0x0A, 0, 0, 0, 1, 0x05], &tiny).is_ok());
        assert_eq!(
            decode_one(&[0x0A, 0, 0, 0, 2, 0x05, 0x05], &tiny),
            Err(Amf0Error::TooManyElements { limit: 2 })
        );
    }

    #[test]
    fn huge_counts_do_not_allocate() {
        assert_eq!(
            decode_one(&[0x0A, 0xFF, 0xFF, 0xFF, 0xFF], &lim()),
            Err(Amf0Error::UnexpectedEof)
        );
        assert_eq!(
            decode_one(&[0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x05, 0x05], &lim()),
            Err(Amf0Error::UnexpectedEof)
        );
        assert_eq!(
            decode_one(&[0x0C, 0xFF, 0xFF, 0xFF, 0xFF, b'a'], &lim()),
            Err(Amf0Error::UnexpectedEof)
        );
        assert_eq!(
            decode_one(&[0x0F, 0xFF, 0xFF, 0xFF, 0xFF], &lim()),
            Err(Amf0Error::UnexpectedEof)
        );
        assert_eq!(
            decode_one(&[0x02, 0xFF, 0xFF, b'a'], &lim()),
            Err(Amf0Error::UnexpectedEof)
        );
        assert_eq!(
            decode_one(&[0x08, 0xFF, 0xFF, 0xFF, 0xFF], &lim()),
            Err(Amf0Error::UnexpectedEof)
        );
        // AMF3 string with the maximum inline length.
        assert_eq!(
            decode_one(&[0x11, 0x06, 0xFF, 0xFF, 0xFF, 0xFF], &lim()),
            Err(Amf0Error::UnexpectedEof)
        );
    }

    #[test]
    fn long_string_boundary() {
        let at = "a".repeat(65535);
        let bytes = enc(&Amf0Value::string(at.clone()));
        assert_eq!(bytes[..3], [0x02, 0xFF, 0xFF]);
        assert_eq!(bytes.len(), 3 + 65535);
        round_trip(Amf0Value::String(at));

        let over = "a".repeat(65536);
        let bytes = enc(&Amf0Value::string(over.clone()));
        assert_eq!(bytes[..5], [0x0C, 0x00, 0x01, 0x00, 0x00]);
        assert_eq!(bytes.len(), 5 + 65536);
        round_trip(Amf0Value::String(over));
    }

    #[test]
    fn overlong_key_is_truncated_at_char_boundary() {
        // 65534 ASCII bytes + a 2-byte char = 65536 bytes: the char is dropped.
        let key = format!("{}é", "k".repeat(65534));
        let bytes = enc(&Amf0Value::object([(key, Amf0Value::Null)]));
        assert_eq!(bytes[1..3], [0xFF, 0xFE]);
        let (v, used) = decode_one(&bytes, &lim()).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(v.get(&"k".repeat(65534)), Some(&Amf0Value::Null));
    }

    // ---- AMF3 ----

    #[test]
    fn amf3_integer_known_bytes() {
        let cases: [(i32, &[u8]); 10] = [
            (0, &[0x00]),
            (127, &[0x7F]),
            (128, &[0x81, 0x00]),
            (0x3FFF, &[0xFF, 0x7F]),
            (0x4000, &[0x81, 0x80, 0x00]),
            (0x1F_FFFF, &[0xFF, 0xFF, 0x7F]),
            (0x20_0000, &[0x80, 0xC0, 0x80, 0x00]),
            (0x0FFF_FFFF, &[0xBF, 0xFF, 0xFF, 0xFF]),
            (-1, &[0xFF, 0xFF, 0xFF, 0xFF]),
            (-0x1000_0000, &[0xC0, 0x80, 0x80, 0x00]),
        ];
        for (n, u29) in cases {
            let mut bytes = vec![0x11, 0x04];
            bytes.extend_from_slice(u29);
            assert_eq!(bytes, amf3_int(n), "test encoder for {n}");
            assert_eq!(
                decode_one(&bytes, &lim()).unwrap(),
                (Amf0Value::Number(f64::from(n)), bytes.len()),
                "decoding {n}"
            );
        }
    }

    #[test]
    fn amf3_integer_sweep() {
        for n in [
            1,
            63,
            64,
            200,
            16383,
            16384,
            1 << 20,
            -2,
            -128,
            -0x0FFF_FFFF,
        ] {
            let bytes = amf3_int(n);
            assert_eq!(
                decode_one(&bytes, &lim()).unwrap().0,
                Amf0Value::Number(f64::from(n))
            );
        }
    }

    #[test]
    fn amf3_simple_types() {
        assert_eq!(
            decode_one(&[0x11, 0x00], &lim()).unwrap(),
            (Amf0Value::Undefined, 2)
        );
        assert_eq!(
            decode_one(&[0x11, 0x01], &lim()).unwrap(),
            (Amf0Value::Null, 2)
        );
        assert_eq!(
            decode_one(&[0x11, 0x02], &lim()).unwrap(),
            (Amf0Value::Boolean(false), 2)
        );
        assert_eq!(
            decode_one(&[0x11, 0x03], &lim()).unwrap(),
            (Amf0Value::Boolean(true), 2)
        );
        let mut dbl = vec![0x11, 0x05];
        dbl.extend_from_slice(&2.5f64.to_be_bytes());
        assert_eq!(
            decode_one(&dbl, &lim()).unwrap(),
            (Amf0Value::Number(2.5), 10)
        );
        for m in [0x07u8, 0x08, 0x09, 0x0A, 0x0C, 0xFF] {
            assert_eq!(
                decode_one(&[0x11, m, 0, 0, 0, 0], &lim()),
                Err(Amf0Error::UnsupportedAmf3Marker(m))
            );
        }
    }

    #[test]
    fn amf3_strings() {
        assert_eq!(
            decode_one(&[0x11, 0x06, 0x0B, b'h', b'e', b'l', b'l', b'o'], &lim()).unwrap(),
            (Amf0Value::string("hello"), 8)
        );
        assert_eq!(
            decode_one(&[0x11, 0x06, 0x01], &lim()).unwrap(),
            (Amf0Value::string(""), 3)
        );
        // Reference (low bit clear) is refused.
        assert_eq!(
            decode_one(&[0x11, 0x06, 0x00], &lim()),
            Err(Amf0Error::UnsupportedReference)
        );
        assert_eq!(
            decode_one(&[0x11, 0x06, 0x02], &lim()),
            Err(Amf0Error::UnsupportedReference)
        );
        // 200-byte string needs a two-byte U29 header.
        let text = "s".repeat(200);
        let mut bytes = vec![0x11, 0x06];
        bytes.extend(u29_bytes((200 << 1) | 1));
        assert_eq!(bytes.len(), 4);
        bytes.extend_from_slice(text.as_bytes());
        assert_eq!(
            decode_one(&bytes, &lim()).unwrap(),
            (Amf0Value::String(text), 204)
        );
        // Lossy UTF-8 here too.
        assert_eq!(
            decode_one(&[0x11, 0x06, 0x03, 0xE9], &lim()).unwrap().0,
            Amf0Value::string("\u{FFFD}")
        );
    }

    #[test]
    fn amf3_inside_amf0_container() {
        let mut bytes = vec![0x03, 0, 1, b'n'];
        bytes.extend(amf3_int(300));
        bytes.extend_from_slice(&[0, 0, 0x09]);
        let (v, used) = decode_one(&bytes, &lim()).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(v.get("n"), Some(&Amf0Value::Number(300.0)));
    }

    #[test]
    fn errors_display() {
        assert_eq!(
            Amf0Error::UnknownMarker(0x42).to_string(),
            "unknown AMF0 type marker 0x42"
        );
        assert!(Amf0Error::TooDeep { limit: 7 }.to_string().contains('7'));
    }
}
