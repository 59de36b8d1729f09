//! A small FLV tag reader: the publishers' media source. The whole file is read once into
//! shared `Frame`s (payloads are refcounted `Bytes`), so every publisher on every thread sends
//! the same memory and the load generator never re-reads or re-parses during a run.

use bytes::Bytes;
use shardcast::media::{parse_video_tag, Frame, FrameKind};
use std::path::Path;
use thiserror::Error;

/// FLV file header length (signature, version, flags, header size).
const HEADER_LEN: usize = 9;
/// Tag header: type, 24-bit size, 24-bit timestamp, 8-bit timestamp extension, 24-bit stream id.
const TAG_HEADER_LEN: usize = 11;
const TAG_AUDIO: u8 = 8;
const TAG_VIDEO: u8 = 9;
const TAG_SCRIPT: u8 = 18;

#[derive(Debug, Error)]
pub enum FlvError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("not an FLV file (no `FLV` signature)")]
    NotFlv,
    #[error("FLV header size {0} is smaller than 9 bytes")]
    BadHeader(u32),
    #[error("tag at byte {offset} is encrypted (filter bit set), which is not supported")]
    Encrypted { offset: usize },
    #[error("FLV file has no audio or video tags")]
    NoMedia,
}

/// One tag ready to send: the frame, and whether it is `onMetaData` (sent as @setDataFrame).
#[derive(Debug, Clone)]
pub struct MediaTag {
    pub frame: Frame,
    pub metadata: bool,
}

impl MediaTag {
    /// Sequence headers and metadata describe the stream; they are sent once, not on every loop.
    pub fn is_stream_header(&self) -> bool {
        self.metadata || self.frame.sequence_header
    }
}

/// A parsed FLV file with what the publishers need to loop it in real time.
#[derive(Debug, Clone)]
pub struct FlvMedia {
    /// Tags in file order, timestamps rebased so the first tag is at 0.
    pub tags: Vec<MediaTag>,
    /// Added to every timestamp per completed loop, so both tracks keep increasing.
    pub loop_period_ms: u32,
    /// Video frame rate from the median timestamp step (None without video).
    pub video_fps: Option<f64>,
    /// True when the file ended inside a tag (the partial tag is dropped).
    pub truncated: bool,
}

impl FlvMedia {
    pub fn load(path: &Path) -> Result<FlvMedia, FlvError> {
        let data = std::fs::read(path).map_err(|source| FlvError::Read {
            path: path.display().to_string(),
            source,
        })?;
        FlvMedia::parse(Bytes::from(data))
    }

    /// Parses a whole FLV file. Unknown tag types are skipped; a truncated last tag is dropped.
    pub fn parse(data: Bytes) -> Result<FlvMedia, FlvError> {
        if data.len() < HEADER_LEN || &data[..3] != b"FLV" {
            return Err(FlvError::NotFlv);
        }
        let header_len = be32(&data[5..9]);
        if (header_len as usize) < HEADER_LEN {
            return Err(FlvError::BadHeader(header_len));
        }
        // Skip the header and PreviousTagSize0.
        let mut pos = header_len as usize + 4;
        let mut tags = Vec::new();
        let mut truncated = false;
        while pos < data.len() {
            let Some(h) = data.get(pos..pos + TAG_HEADER_LEN) else {
                truncated = true;
                break;
            };
            if h[0] & 0x20 != 0 {
                return Err(FlvError::Encrypted { offset: pos });
            }
            let tag_type = h[0] & 0x1F;
            let size = be24(&h[1..4]) as usize;
            // The extension byte holds bits 24..31 of the timestamp.
            let ts = be24(&h[4..7]) | (u32::from(h[7]) << 24);
            let start = pos + TAG_HEADER_LEN;
            let end = start + size;
            if end > data.len() {
                truncated = true;
                break;
            }
            let payload = data.slice(start..end);
            // The trailing PreviousTagSize is not needed to walk the file; a short one at EOF is fine.
            pos = end + 4;
            let tag = match tag_type {
                TAG_AUDIO => MediaTag {
                    frame: Frame::audio(ts, payload),
                    metadata: false,
                },
                // End-of-sequence markers (ffmpeg writes one last) would tell players' decoders
                // the stream ended on every lap; they are not frames.
                TAG_VIDEO if is_end_of_sequence(&payload) => continue,
                TAG_VIDEO => MediaTag {
                    frame: Frame::video(ts, payload),
                    metadata: false,
                },
                TAG_SCRIPT => MediaTag {
                    metadata: is_on_metadata(&payload),
                    frame: Frame::data(ts, payload),
                },
                _ => continue,
            };
            tags.push(tag);
        }
        if !tags.iter().any(|t| t.frame.kind != FrameKind::Data) {
            return Err(FlvError::NoMedia);
        }
        let first = tags.iter().map(|t| t.frame.timestamp).min().unwrap_or(0);
        for t in &mut tags {
            t.frame.timestamp -= first;
        }
        let span = tags.iter().map(|t| t.frame.timestamp).max().unwrap_or(0);
        let video_step = median_step(&tags, FrameKind::Video);
        let step = video_step
            .or_else(|| median_step(&tags, FrameKind::Audio))
            .unwrap_or(1)
            .max(1);
        Ok(FlvMedia {
            tags,
            loop_period_ms: span + step,
            video_fps: video_step.map(|s| 1000.0 / f64::from(s.max(1))),
            truncated,
        })
    }

    /// Number of tags that are not stream headers (what one loop sends after the first).
    #[cfg(test)]
    pub fn media_tags(&self) -> usize {
        self.tags.iter().filter(|t| !t.is_stream_header()).count()
    }
}

/// True for an AVC/HEVC end-of-sequence video tag (legacy or enhanced RTMP).
pub fn is_end_of_sequence(p: &[u8]) -> bool {
    parse_video_tag(p).is_some_and(|i| i.end_of_sequence)
}

/// True when a script tag's first AMF0 value is the string `onMetaData`.
fn is_on_metadata(p: &[u8]) -> bool {
    const NAME: &[u8] = b"onMetaData";
    p.len() >= 3 + NAME.len()
        && p[0] == 0x02
        && usize::from(u16::from_be_bytes([p[1], p[2]])) == NAME.len()
        && &p[3..3 + NAME.len()] == NAME
}

/// Median positive timestamp step of one track, in ms (sequence headers excluded).
fn median_step(tags: &[MediaTag], kind: FrameKind) -> Option<u32> {
    let ts: Vec<u32> = tags
        .iter()
        .filter(|t| t.frame.kind == kind && !t.frame.sequence_header)
        .map(|t| t.frame.timestamp)
        .collect();
    let mut steps: Vec<u32> = ts
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .filter(|&d| d > 0)
        .collect();
    if steps.is_empty() {
        return None;
    }
    steps.sort_unstable();
    Some(steps[steps.len() / 2])
}

fn be24(b: &[u8]) -> u32 {
    u32::from_be_bytes([0, b[0], b[1], b[2]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Appends one tag (header, payload, PreviousTagSize) to an FLV body.
    pub(crate) fn push_tag(out: &mut Vec<u8>, tag_type: u8, ts: u32, payload: &[u8]) {
        let size = payload.len() as u32;
        out.push(tag_type);
        out.extend_from_slice(&size.to_be_bytes()[1..]);
        out.extend_from_slice(&ts.to_be_bytes()[1..]);
        out.push((ts >> 24) as u8);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(payload);
        out.extend_from_slice(&(size + 11).to_be_bytes());
    }

    pub(crate) fn header() -> Vec<u8> {
        let mut v = b"FLV\x01\x05\x00\x00\x00\x09".to_vec();
        v.extend_from_slice(&[0, 0, 0, 0]);
        v
    }

    /// A 25 fps video + audio file of `frames` video frames, keyframe every 25, with metadata
    /// and sequence headers, starting at `t0` ms.
    pub(crate) fn sample(frames: u32, t0: u32) -> Vec<u8> {
        let mut f = header();
        let mut meta = vec![0x02, 0x00, 0x0A];
        meta.extend_from_slice(b"onMetaData");
        meta.extend_from_slice(&[0x08, 0, 0, 0, 0, 0, 0, 9]);
        push_tag(&mut f, TAG_SCRIPT, t0, &meta);
        push_tag(&mut f, TAG_VIDEO, t0, &[0x17, 0x00, 0, 0, 0, 1, 0x64]);
        push_tag(&mut f, TAG_AUDIO, t0, &[0xAF, 0x00, 0x12, 0x10]);
        for i in 0..frames {
            let ts = t0 + i * 40;
            let key = if i % 25 == 0 { 0x17 } else { 0x27 };
            push_tag(&mut f, TAG_VIDEO, ts, &[key, 0x01, 0, 0, 0, i as u8]);
            push_tag(&mut f, TAG_AUDIO, ts + 3, &[0xAF, 0x01, i as u8]);
        }
        f
    }

    #[test]
    fn parses_tags_flags_and_rates() {
        let m = FlvMedia::parse(Bytes::from(sample(50, 1000))).unwrap();
        assert_eq!(m.tags.len(), 3 + 100);
        assert!(m.tags[0].metadata && m.tags[0].frame.kind == FrameKind::Data);
        assert!(m.tags[1].frame.sequence_header && m.tags[2].frame.sequence_header);
        assert!(m.tags.iter().take(3).all(MediaTag::is_stream_header));
        assert_eq!(m.media_tags(), 100);
        assert!(m.tags[3].frame.keyframe);
        assert!(!m.tags[5].frame.keyframe);
        // Rebased to 0, last audio at 49*40+3.
        assert_eq!(m.tags[0].frame.timestamp, 0);
        assert_eq!(m.tags.last().unwrap().frame.timestamp, 49 * 40 + 3);
        assert_eq!(m.video_fps, Some(25.0));
        assert_eq!(m.loop_period_ms, 49 * 40 + 3 + 40);
        assert!(!m.truncated);
    }

    #[test]
    fn extended_timestamp_byte_is_the_high_byte() {
        let mut f = header();
        push_tag(&mut f, TAG_VIDEO, 0x0100_0010, &[0x17, 0x01, 0, 0, 0]);
        push_tag(&mut f, TAG_VIDEO, 0x0100_0038, &[0x27, 0x01, 0, 0, 0]);
        let m = FlvMedia::parse(Bytes::from(f)).unwrap();
        // 0x38 - 0x10 = 40 ms apart once rebased.
        assert_eq!(m.tags[1].frame.timestamp, 40);
    }

    #[test]
    fn end_of_sequence_is_dropped() {
        let mut f = sample(3, 0);
        push_tag(&mut f, TAG_VIDEO, 80, &[0x17, 0x02, 0, 0, 0]);
        let m = FlvMedia::parse(Bytes::from(f)).unwrap();
        assert_eq!(m.tags.len(), 3 + 6);
        assert!(is_end_of_sequence(&[0x17, 0x02, 0, 0, 0]));
        assert!(!is_end_of_sequence(&[0x17, 0x01, 0, 0, 0]));
    }

    #[test]
    fn truncated_tail_and_unknown_tags() {
        let mut f = sample(10, 0);
        push_tag(&mut f, 0x07, 500, b"ignored");
        let full = f.len();
        push_tag(&mut f, TAG_VIDEO, 600, &[0x27, 0x01, 0, 0, 0, 1, 2, 3]);
        f.truncate(full + 14);
        let m = FlvMedia::parse(Bytes::from(f)).unwrap();
        assert!(m.truncated);
        assert_eq!(m.tags.len(), 3 + 20);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            FlvMedia::parse(Bytes::from_static(b"GIF89a....")),
            Err(FlvError::NotFlv)
        ));
        let mut bad = header();
        bad[8] = 3;
        assert!(matches!(
            FlvMedia::parse(Bytes::from(bad)),
            Err(FlvError::BadHeader(3))
        ));
        assert!(matches!(
            FlvMedia::parse(Bytes::from(header())),
            Err(FlvError::NoMedia)
        ));
        let mut enc = header();
        push_tag(&mut enc, TAG_VIDEO | 0x20, 0, &[0x17]);
        assert!(matches!(
            FlvMedia::parse(Bytes::from(enc)),
            Err(FlvError::Encrypted { offset: 13 })
        ));
    }

    #[test]
    fn metadata_detection() {
        assert!(is_on_metadata(b"\x02\x00\x0aonMetaData\x08"));
        assert!(!is_on_metadata(b"\x02\x00\x0aonCuePoint\x08"));
        assert!(!is_on_metadata(b"\x02\x00"));
    }
}
