//! The unit of media the server moves around: one RTMP audio, video or data
//! message, classified once on ingest so fan-out never re-parses it.

use bytes::Bytes;

use super::codec::{parse_audio_tag, parse_video_tag};

/// RTMP message type id for audio.
pub const RTMP_TYPE_AUDIO: u8 = 8;
/// RTMP message type id for video.
pub const RTMP_TYPE_VIDEO: u8 = 9;
/// RTMP message type id for AMF0 data (what we always emit for data).
pub const RTMP_TYPE_DATA_AMF0: u8 = 18;
/// RTMP message type id for AMF3 data (accepted on ingest only).
pub const RTMP_TYPE_DATA_AMF3: u8 = 15;

/// What a [`Frame`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// An audio message (type 8).
    Audio,
    /// A video message (type 9).
    Video,
    /// A data message (type 18, or 15 on ingest), e.g. `onMetaData`.
    Data,
}

impl FrameKind {
    /// Maps an RTMP message type id to a media kind; `None` for non-media
    /// messages (commands, control). Type 15 (AMF3 data) maps to `Data`;
    /// normalising its payload to AMF0 is the caller's job.
    pub fn from_rtmp_type_id(type_id: u8) -> Option<FrameKind> {
        match type_id {
            RTMP_TYPE_AUDIO => Some(FrameKind::Audio),
            RTMP_TYPE_VIDEO => Some(FrameKind::Video),
            RTMP_TYPE_DATA_AMF0 | RTMP_TYPE_DATA_AMF3 => Some(FrameKind::Data),
            _ => None,
        }
    }

    /// The type id used when sending this kind to players.
    pub fn rtmp_type_id(self) -> u8 {
        match self {
            FrameKind::Audio => RTMP_TYPE_AUDIO,
            FrameKind::Video => RTMP_TYPE_VIDEO,
            FrameKind::Data => RTMP_TYPE_DATA_AMF0,
        }
    }
}

/// One media message of a live stream: RTMP message types 8 (audio), 9 (video), 18/15 (data, e.g. onMetaData).
///
/// `payload` is a shared `Bytes`, so cloning a `Frame` is a refcount bump,
/// never a copy of the media.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Audio, video or data.
    pub kind: FrameKind,
    /// RTMP timestamp in milliseconds.
    pub timestamp: u32,
    /// The message payload (an FLV tag body), shared.
    pub payload: Bytes,
    /// A video frame a decoder can start from (never set on sequence headers).
    pub keyframe: bool,
    /// Codec configuration (AVC/HEVC/AV1 config record, AAC AudioSpecificConfig, ...).
    pub sequence_header: bool,
}

impl Frame {
    /// Audio frame; `sequence_header` comes from the tag header, `keyframe` is always false.
    pub fn audio(timestamp: u32, payload: Bytes) -> Frame {
        let sequence_header = parse_audio_tag(&payload).is_some_and(|i| i.sequence_header);
        Frame {
            kind: FrameKind::Audio,
            timestamp,
            payload,
            keyframe: false,
            sequence_header,
        }
    }

    /// Video frame; flags come from the tag header. A sequence header is not a
    /// keyframe, so the GOP cache never starts a GOP on one.
    pub fn video(timestamp: u32, payload: Bytes) -> Frame {
        let (keyframe, sequence_header) = match parse_video_tag(&payload) {
            Some(i) => (i.keyframe && !i.sequence_header, i.sequence_header),
            None => (false, false),
        };
        Frame {
            kind: FrameKind::Video,
            timestamp,
            payload,
            keyframe,
            sequence_header,
        }
    }

    /// Data frame (onMetaData and friends); never a keyframe or sequence header.
    pub fn data(timestamp: u32, payload: Bytes) -> Frame {
        Frame {
            kind: FrameKind::Data,
            timestamp,
            payload,
            keyframe: false,
            sequence_header: false,
        }
    }

    /// Builds a frame from an RTMP message; `None` if the type is not media.
    pub fn from_rtmp(type_id: u8, timestamp: u32, payload: Bytes) -> Option<Frame> {
        Some(match FrameKind::from_rtmp_type_id(type_id)? {
            FrameKind::Audio => Frame::audio(timestamp, payload),
            FrameKind::Video => Frame::video(timestamp, payload),
            FrameKind::Data => Frame::data(timestamp, payload),
        })
    }

    /// RTMP message type id to send this frame with: 8, 9 or 18.
    pub fn rtmp_type_id(&self) -> u8 {
        self.kind.rtmp_type_id()
    }

    /// True for a video keyframe, the only thing that may start a GOP.
    pub fn is_video_keyframe(&self) -> bool {
        self.kind == FrameKind::Video && self.keyframe
    }
}

/// Anything the GOP cache can hold: a Frame, or a caller's wrapper that carries a Frame plus its pre-encoded wire bytes.
pub trait MediaUnit: Clone {
    /// The frame inside.
    fn frame(&self) -> &Frame;

    /// Bytes this unit accounts for in cache limits. Defaults to the payload
    /// length; wrappers holding extra encoded copies may report more.
    fn byte_len(&self) -> usize {
        self.frame().payload.len()
    }
}

impl MediaUnit for Frame {
    fn frame(&self) -> &Frame {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_classify_video() {
        let key = Frame::video(10, Bytes::from_static(&[0x17, 0x01, 0, 0, 0, 0xAA]));
        assert!(key.keyframe && !key.sequence_header);
        assert_eq!(key.rtmp_type_id(), 9);
        assert!(key.is_video_keyframe());

        let seq = Frame::video(0, Bytes::from_static(&[0x17, 0x00, 0, 0, 0, 0x01]));
        assert!(seq.sequence_header && !seq.keyframe);

        let inter = Frame::video(40, Bytes::from_static(&[0x27, 0x01, 0, 0, 0]));
        assert!(!inter.keyframe && !inter.sequence_header);

        let empty = Frame::video(0, Bytes::new());
        assert!(!empty.keyframe && !empty.sequence_header);
    }

    #[test]
    fn constructors_classify_audio_and_data() {
        let seq = Frame::audio(0, Bytes::from_static(&[0xAF, 0x00, 0x12, 0x10]));
        assert!(seq.sequence_header && !seq.keyframe);
        assert_eq!(seq.rtmp_type_id(), 8);
        let raw = Frame::audio(23, Bytes::from_static(&[0xAF, 0x01, 0x21]));
        assert!(!raw.sequence_header);

        let d = Frame::data(0, Bytes::from_static(b"\x02\x00\x0aonMetaData"));
        assert_eq!(d.kind, FrameKind::Data);
        assert_eq!(d.rtmp_type_id(), 18);
        assert!(!d.keyframe && !d.sequence_header);
    }

    #[test]
    fn from_rtmp_maps_type_ids() {
        assert_eq!(
            Frame::from_rtmp(15, 0, Bytes::new()).map(|f| f.kind),
            Some(FrameKind::Data)
        );
        assert_eq!(
            Frame::from_rtmp(15, 0, Bytes::new())
                .unwrap()
                .rtmp_type_id(),
            18
        );
        assert_eq!(
            Frame::from_rtmp(8, 0, Bytes::new()).map(|f| f.kind),
            Some(FrameKind::Audio)
        );
        assert_eq!(
            Frame::from_rtmp(9, 0, Bytes::new()).map(|f| f.kind),
            Some(FrameKind::Video)
        );
        assert!(Frame::from_rtmp(20, 0, Bytes::new()).is_none());
    }

    #[test]
    fn clone_shares_payload() {
        let f = Frame::audio(0, Bytes::from(vec![0xAFu8, 0x01, 1, 2, 3]));
        let g = f.clone();
        assert_eq!(f.payload.as_ptr(), g.payload.as_ptr());
        assert_eq!(f.frame().byte_len(), 5);
    }
}
