//! FLV container pieces for HTTP-FLV: the file header and one tag per frame (FLV spec v10,
//! E.4): 11-byte tag header, the frame payload as-is, then the 4-byte previous tag size.

use super::frame::Frame;
use bytes::{BufMut, Bytes, BytesMut};

/// "FLV", version 1, audio/video flags, header size 9, then PreviousTagSize0.
pub fn file_header(audio: bool, video: bool) -> [u8; 13] {
    let flags = (if audio { 4 } else { 0 }) | (if video { 1 } else { 0 });
    [b'F', b'L', b'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0]
}

/// Bytes `tag` appends for a frame of `payload_len` bytes.
pub fn tag_len(payload_len: usize) -> usize {
    11 + payload_len + 4
}

/// Append one FLV tag for `frame` (payload larger than 16 MiB is not representable and is cut).
pub fn tag(out: &mut BytesMut, frame: &Frame) {
    let len = frame.payload.len().min(0xFF_FFFF);
    let ts = frame.timestamp;
    out.reserve(tag_len(len));
    out.put_u8(frame.rtmp_type_id());
    out.put_slice(&(len as u32).to_be_bytes()[1..]);
    out.put_slice(&ts.to_be_bytes()[1..]);
    out.put_u8((ts >> 24) as u8);
    out.put_slice(&[0, 0, 0]);
    out.put_slice(&frame.payload[..len]);
    out.put_u32((11 + len) as u32);
}

/// One FLV tag as its own `Bytes`.
pub fn tag_bytes(frame: &Frame) -> Bytes {
    let mut out = BytesMut::new();
    tag(&mut out, frame);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_flags() {
        assert_eq!(file_header(true, true)[4], 5);
        assert_eq!(file_header(false, true)[4], 1);
        assert_eq!(&file_header(true, false)[..4], b"FLV\x01");
    }

    #[test]
    fn tag_layout_with_extended_timestamp() {
        let f = Frame::video(0x0123_4567, Bytes::from_static(&[0x17, 1, 0, 0, 0, 9]));
        let t = tag_bytes(&f);
        assert_eq!(t.len(), tag_len(6));
        assert_eq!(t[0], 9);
        assert_eq!(&t[1..4], &[0, 0, 6]);
        assert_eq!(&t[4..7], &[0x23, 0x45, 0x67]);
        assert_eq!(t[7], 0x01);
        assert_eq!(&t[11..17], &[0x17, 1, 0, 0, 0, 9]);
        assert_eq!(&t[17..], &17u32.to_be_bytes());
    }
}
