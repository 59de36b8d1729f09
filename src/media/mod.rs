//! Media plumbing shared by publishers and players: frame classification,
//! codec tag parsing, the late-joiner GOP cache and timestamp smoothing.
//!
//! Everything here is pure (no I/O, no clock) so it can run inline on the
//! hot path and be tested without a network.

pub mod codec;
pub mod flv;
pub mod frame;
pub mod gop_cache;
pub mod timestamp;

pub use codec::{
    audio_codec_name, avc_dimensions, parse_audio_tag, parse_video_tag, video_codec_name,
    AudioCodec, AudioTagInfo, VideoCodec, VideoTagInfo,
};
pub use frame::{Frame, FrameKind, MediaUnit};
pub use gop_cache::{GopCache, StreamHeaders};
pub use timestamp::TimestampSmoother;
