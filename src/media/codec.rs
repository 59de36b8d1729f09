//! Just enough FLV / Enhanced RTMP tag-header parsing to classify frames
//! (keyframe, sequence header) and report codecs, plus an SPS reader for
//! stats. Everything works on borrowed slices and never allocates.

/// Video codec of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// H.264 / AVC (FLV codec id 7, FourCC `avc1`).
    Avc,
    /// H.265 / HEVC (FourCC `hvc1`, or the non-standard FLV codec id 12).
    Hevc,
    /// AV1 (FourCC `av01`).
    Av1,
    /// VP9 (FourCC `vp09`).
    Vp9,
    /// Legacy FLV codec id, or an unknown FourCC as a big-endian `u32`
    /// (0 when a multitrack tag carries no FourCC).
    Other(u32),
}

/// Audio codec of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    /// AAC (FLV sound format 10, FourCC `mp4a`).
    Aac,
    /// MP3 (FLV sound format 2 or 14, FourCC `.mp3`).
    Mp3,
    /// Opus (FourCC `Opus`).
    Opus,
    /// Legacy FLV sound format; 9 for an enhanced header with an unknown FourCC.
    Other(u8),
}

/// What a video tag header says about its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoTagInfo {
    /// The codec named by the header.
    pub codec: VideoCodec,
    /// Decoder can start here (frame type 1 carrying coded frames).
    pub keyframe: bool,
    /// Codec configuration record (AVC sequence header, E-RTMP SequenceStart).
    pub sequence_header: bool,
    /// End of sequence (AVC end of sequence, E-RTMP SequenceEnd).
    pub end_of_sequence: bool,
}

/// What an audio tag header says about its frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioTagInfo {
    /// The codec named by the header.
    pub codec: AudioCodec,
    /// Codec configuration (AAC AudioSpecificConfig, E-RTMP SequenceStart).
    pub sequence_header: bool,
}

// Legacy FLV video header.
const FRAME_TYPE_KEY: u8 = 1;
const FRAME_TYPE_COMMAND: u8 = 5;
const CODEC_ID_AVC: u8 = 7;
/// Not in the FLV spec, but widely used by pre-E-RTMP HEVC extensions.
const CODEC_ID_HEVC_EXT: u8 = 12;
const AVC_PACKET_SEQUENCE_HEADER: u8 = 0;
const AVC_PACKET_NALU: u8 = 1;
const AVC_PACKET_END_OF_SEQUENCE: u8 = 2;

// Enhanced RTMP video packet types.
const EX_HEADER_BIT: u8 = 0x80;
const VPT_SEQUENCE_START: u8 = 0;
const VPT_CODED_FRAMES: u8 = 1;
const VPT_SEQUENCE_END: u8 = 2;
const VPT_CODED_FRAMES_X: u8 = 3;
const VPT_MPEG2TS_SEQUENCE_START: u8 = 5;
const VPT_MULTITRACK: u8 = 6;
/// ModEx is 7 for both audio and video packet types.
const PT_MOD_EX: u8 = 7;

// Audio.
const SOUND_FORMAT_MP3: u8 = 2;
const SOUND_FORMAT_EX_HEADER: u8 = 9;
const SOUND_FORMAT_AAC: u8 = 10;
const SOUND_FORMAT_MP3_8K: u8 = 14;
const AAC_PACKET_SEQUENCE_HEADER: u8 = 0;
const APT_SEQUENCE_START: u8 = 0;
const APT_MULTITRACK: u8 = 5;

impl VideoCodec {
    /// Maps an E-RTMP video FourCC; unknown ones keep their value in `Other`.
    pub fn from_fourcc(fourcc: [u8; 4]) -> VideoCodec {
        match &fourcc {
            b"avc1" => VideoCodec::Avc,
            b"hvc1" => VideoCodec::Hevc,
            b"av01" => VideoCodec::Av1,
            b"vp09" => VideoCodec::Vp9,
            _ => VideoCodec::Other(u32::from_be_bytes(fourcc)),
        }
    }
}

impl AudioCodec {
    /// Maps an E-RTMP audio FourCC; unknown ones become `Other(9)` (the
    /// ExHeader sound format) because `Other` only holds a legacy id.
    pub fn from_fourcc(fourcc: [u8; 4]) -> AudioCodec {
        match &fourcc {
            b"Opus" => AudioCodec::Opus,
            b"mp4a" => AudioCodec::Aac,
            b".mp3" => AudioCodec::Mp3,
            _ => AudioCodec::Other(SOUND_FORMAT_EX_HEADER),
        }
    }
}

/// Codec name as reported in stats (`H264`, `H265`, `AV1`, `VP9`, `other`).
pub fn video_codec_name(c: VideoCodec) -> &'static str {
    match c {
        VideoCodec::Avc => "H264",
        VideoCodec::Hevc => "H265",
        VideoCodec::Av1 => "AV1",
        VideoCodec::Vp9 => "VP9",
        VideoCodec::Other(_) => "other",
    }
}

/// Codec name as reported in stats (`AAC`, `MP3`, `Opus`, `other`).
pub fn audio_codec_name(c: AudioCodec) -> &'static str {
    match c {
        AudioCodec::Aac => "AAC",
        AudioCodec::Mp3 => "MP3",
        AudioCodec::Opus => "Opus",
        AudioCodec::Other(_) => "other",
    }
}

fn fourcc_at(p: &[u8], pos: usize) -> Option<[u8; 4]> {
    p.get(pos..pos.checked_add(4)?)?.try_into().ok()
}

/// Skips E-RTMP v2 ModEx blocks (which may chain) and returns the position
/// after them plus the real packet type. `None` if the blocks are truncated.
fn skip_mod_ex(p: &[u8], mut pos: usize, mut packet_type: u8) -> Option<(usize, u8)> {
    while packet_type == PT_MOD_EX {
        let mut size = usize::from(*p.get(pos)?) + 1;
        pos += 1;
        if size == 256 {
            let wide = u16::from_be_bytes([*p.get(pos)?, *p.get(pos + 1)?]);
            size = usize::from(wide) + 1;
            pos += 2;
        }
        pos = pos.checked_add(size)?;
        // High nibble is the ModEx type; low nibble the next packet type.
        packet_type = *p.get(pos)? & 0x0F;
        pos += 1;
    }
    Some((pos, packet_type))
}

/// Classifies an FLV VIDEODATA payload, legacy or Enhanced RTMP.
/// `None` when the payload is too short to tell.
pub fn parse_video_tag(payload: &[u8]) -> Option<VideoTagInfo> {
    let b0 = *payload.first()?;
    if b0 & EX_HEADER_BIT != 0 {
        return parse_ex_video(payload, b0);
    }
    let frame_type = b0 >> 4;
    let codec_id = b0 & 0x0F;
    let codec = match codec_id {
        CODEC_ID_AVC => VideoCodec::Avc,
        CODEC_ID_HEVC_EXT => VideoCodec::Hevc,
        other => {
            return Some(VideoTagInfo {
                codec: VideoCodec::Other(u32::from(other)),
                keyframe: frame_type == FRAME_TYPE_KEY,
                sequence_header: false,
                end_of_sequence: false,
            })
        }
    };
    let packet_type = *payload.get(1)?;
    // A command frame (type 5) carries no picture, so none of its flags count.
    let media = frame_type != FRAME_TYPE_COMMAND;
    Some(VideoTagInfo {
        codec,
        keyframe: frame_type == FRAME_TYPE_KEY && packet_type == AVC_PACKET_NALU,
        sequence_header: media && packet_type == AVC_PACKET_SEQUENCE_HEADER,
        end_of_sequence: media && packet_type == AVC_PACKET_END_OF_SEQUENCE,
    })
}

fn parse_ex_video(p: &[u8], b0: u8) -> Option<VideoTagInfo> {
    let frame_type = (b0 >> 4) & 0x07;
    let (mut pos, mut packet_type) = skip_mod_ex(p, 1, b0 & 0x0F)?;
    let codec = if packet_type == VPT_MULTITRACK {
        // High nibble: multitrack type; low nibble: the packet type of the tracks.
        packet_type = *p.get(pos)? & 0x0F;
        pos += 1;
        // ManyTracksManyCodecs puts the first track's FourCC at the same spot,
        // so reading here works for every multitrack type.
        fourcc_at(p, pos).map_or(VideoCodec::Other(0), VideoCodec::from_fourcc)
    } else {
        VideoCodec::from_fourcc(fourcc_at(p, pos)?)
    };
    let media = frame_type != FRAME_TYPE_COMMAND;
    Some(VideoTagInfo {
        codec,
        keyframe: frame_type == FRAME_TYPE_KEY
            && matches!(packet_type, VPT_CODED_FRAMES | VPT_CODED_FRAMES_X),
        sequence_header: media
            && matches!(packet_type, VPT_SEQUENCE_START | VPT_MPEG2TS_SEQUENCE_START),
        end_of_sequence: media && packet_type == VPT_SEQUENCE_END,
    })
}

/// Classifies an FLV AUDIODATA payload, legacy or Enhanced RTMP v2.
/// `None` when the payload is too short to tell.
pub fn parse_audio_tag(payload: &[u8]) -> Option<AudioTagInfo> {
    let b0 = *payload.first()?;
    let format = b0 >> 4;
    match format {
        SOUND_FORMAT_AAC => Some(AudioTagInfo {
            codec: AudioCodec::Aac,
            sequence_header: *payload.get(1)? == AAC_PACKET_SEQUENCE_HEADER,
        }),
        SOUND_FORMAT_MP3 | SOUND_FORMAT_MP3_8K => Some(AudioTagInfo {
            codec: AudioCodec::Mp3,
            sequence_header: false,
        }),
        SOUND_FORMAT_EX_HEADER => {
            let (mut pos, mut packet_type) = skip_mod_ex(payload, 1, b0 & 0x0F)?;
            let codec = if packet_type == APT_MULTITRACK {
                packet_type = *payload.get(pos)? & 0x0F;
                pos += 1;
                fourcc_at(payload, pos).map_or(
                    AudioCodec::Other(SOUND_FORMAT_EX_HEADER),
                    AudioCodec::from_fourcc,
                )
            } else {
                AudioCodec::from_fourcc(fourcc_at(payload, pos)?)
            };
            Some(AudioTagInfo {
                codec,
                sequence_header: packet_type == APT_SEQUENCE_START,
            })
        }
        other => Some(AudioTagInfo {
            codec: AudioCodec::Other(other),
            sequence_header: false,
        }),
    }
}

/// Width/height from an AVC sequence header (AVCDecoderConfigurationRecord → first SPS, exp-Golomb parse incl. frame cropping and the high-profile chroma/scaling-list fields). For stats; None on anything odd, never panic.
///
/// Takes the whole FLV video payload: legacy (`0x17 0x00` + CTS) or a plain
/// E-RTMP `avc1` SequenceStart; both put the record at offset 5.
pub fn avc_dimensions(payload: &[u8]) -> Option<(u32, u32)> {
    let info = parse_video_tag(payload)?;
    if info.codec != VideoCodec::Avc || !info.sequence_header {
        return None;
    }
    let b0 = payload[0];
    if b0 & EX_HEADER_BIT != 0 && b0 & 0x0F != VPT_SEQUENCE_START {
        // ModEx / multitrack / MPEG-2 TS layouts: not worth decoding for stats.
        return None;
    }
    avc_config_dimensions(payload.get(5..)?)
}

/// Width/height from a bare AVCDecoderConfigurationRecord (first SPS).
pub fn avc_config_dimensions(record: &[u8]) -> Option<(u32, u32)> {
    if *record.first()? != 1 {
        return None;
    }
    if record.get(5)? & 0x1F == 0 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([*record.get(6)?, *record.get(7)?]));
    sps_dimensions(record.get(8..8 + len)?)
}

/// Width/height (after cropping) from an H.264 SPS NAL unit, header byte included.
pub fn sps_dimensions(nal: &[u8]) -> Option<(u32, u32)> {
    if nal.first()? & 0x1F != 7 {
        return None;
    }
    let mut r = RbspReader::new(&nal[1..]);
    let profile_idc = r.bits(8)?;
    r.bits(16)?; // constraint flags + level_idc
    r.ue()?; // seq_parameter_set_id

    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc > 3 {
            return None;
        }
        if chroma_format_idc == 3 {
            separate_colour_plane = r.flag()?;
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.flag()?; // qpprime_y_zero_transform_bypass_flag
        if r.flag()? {
            // seq_scaling_matrix_present_flag
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.flag()? {
                    r.skip_scaling_list(if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }

    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.flag()?; // delta_pic_order_always_zero_flag
            r.se()?; // offset_for_non_ref_pic
            r.se()?; // offset_for_top_to_bottom_field
            let cycle = r.ue()?;
            if cycle > 255 {
                return None;
            }
            for _ in 0..cycle {
                r.se()?;
            }
        }
        2 => {}
        _ => return None,
    }
    r.ue()?; // max_num_ref_frames
    r.flag()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(r.ue()?) + 1;
    let height_map_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = r.flag()?;
    if !frame_mbs_only {
        r.flag()?; // mb_adaptive_frame_field_flag
    }
    r.flag()?; // direct_8x8_inference_flag
    let (mut crop_l, mut crop_r, mut crop_t, mut crop_b) = (0u64, 0u64, 0u64, 0u64);
    if r.flag()? {
        crop_l = r.ue()?.into();
        crop_r = r.ue()?.into();
        crop_t = r.ue()?.into();
        crop_b = r.ue()?.into();
    }

    let field_factor: u64 = if frame_mbs_only { 1 } else { 2 };
    let chroma_array_type = if separate_colour_plane {
        0
    } else {
        chroma_format_idc
    };
    let (crop_unit_x, crop_unit_y) = match chroma_array_type {
        0 => (1, field_factor),
        1 => (2, 2 * field_factor),
        2 => (2, field_factor),
        _ => (1, field_factor),
    };
    let width = (width_mbs * 16).checked_sub(crop_unit_x * (crop_l + crop_r))?;
    let height =
        (field_factor * height_map_units * 16).checked_sub(crop_unit_y * (crop_t + crop_b))?;
    if width == 0 || height == 0 {
        return None;
    }
    Some((u32::try_from(width).ok()?, u32::try_from(height).ok()?))
}

/// MSB-first bit reader over an RBSP that drops emulation-prevention bytes
/// (`00 00 03`) on the fly, so the SPS never has to be copied.
struct RbspReader<'a> {
    data: &'a [u8],
    pos: usize,
    zeros: u8,
    cur: u8,
    bits_left: u8,
}

impl<'a> RbspReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        RbspReader {
            data,
            pos: 0,
            zeros: 0,
            cur: 0,
            bits_left: 0,
        }
    }

    fn next_byte(&mut self) -> Option<u8> {
        let mut b = *self.data.get(self.pos)?;
        self.pos += 1;
        if self.zeros >= 2 && b == 3 {
            self.zeros = 0;
            b = *self.data.get(self.pos)?;
            self.pos += 1;
        }
        self.zeros = if b == 0 {
            self.zeros.saturating_add(1)
        } else {
            0
        };
        Some(b)
    }

    fn flag(&mut self) -> Option<bool> {
        if self.bits_left == 0 {
            self.cur = self.next_byte()?;
            self.bits_left = 8;
        }
        self.bits_left -= 1;
        Some((self.cur >> self.bits_left) & 1 == 1)
    }

    /// Reads up to 32 bits.
    fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            v = (v << 1) | u32::from(self.flag()?);
        }
        Some(v)
    }

    fn ue(&mut self) -> Option<u32> {
        let mut leading = 0;
        while !self.flag()? {
            leading += 1;
            if leading > 31 {
                return None;
            }
        }
        let v = (1u64 << leading) - 1 + u64::from(self.bits(leading)?);
        u32::try_from(v).ok()
    }

    fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k & 1 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }

    fn skip_scaling_list(&mut self, size: usize) -> Option<()> {
        let mut last = 8i64;
        let mut next = 8i64;
        for _ in 0..size {
            if next != 0 {
                next = (last + self.se()?).rem_euclid(256);
            }
            if next != 0 {
                last = next;
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn video(codec: VideoCodec, keyframe: bool, seq: bool, end: bool) -> Option<VideoTagInfo> {
        Some(VideoTagInfo {
            codec,
            keyframe,
            sequence_header: seq,
            end_of_sequence: end,
        })
    }

    #[test]
    fn legacy_avc_forms() {
        use VideoCodec::Avc;
        assert_eq!(
            parse_video_tag(&[0x17, 0, 0, 0, 0]),
            video(Avc, false, true, false)
        );
        assert_eq!(
            parse_video_tag(&[0x17, 1, 0, 0, 0]),
            video(Avc, true, false, false)
        );
        assert_eq!(
            parse_video_tag(&[0x27, 1, 0, 0, 0]),
            video(Avc, false, false, false)
        );
        assert_eq!(
            parse_video_tag(&[0x37, 1, 0, 0, 0]),
            video(Avc, false, false, false)
        );
        assert_eq!(
            parse_video_tag(&[0x17, 2, 0, 0, 0]),
            video(Avc, false, false, true)
        );
        // Generated keyframe (4) is not a GOP start; command frame (5) carries no media.
        assert_eq!(parse_video_tag(&[0x47, 1]), video(Avc, false, false, false));
        assert_eq!(
            parse_video_tag(&[0x57, 0, 0]),
            video(Avc, false, false, false)
        );
    }

    #[test]
    fn legacy_hevc_and_other_codecs() {
        use VideoCodec::{Hevc, Other};
        assert_eq!(
            parse_video_tag(&[0x1C, 0, 0, 0, 0]),
            video(Hevc, false, true, false)
        );
        assert_eq!(
            parse_video_tag(&[0x1C, 1, 0, 0, 0]),
            video(Hevc, true, false, false)
        );
        assert_eq!(
            parse_video_tag(&[0x2C, 1, 0, 0, 0]),
            video(Hevc, false, false, false)
        );
        assert_eq!(
            parse_video_tag(&[0x2C, 2, 0, 0, 0]),
            video(Hevc, false, false, true)
        );
        // Sorenson H.263 / VP6: one byte is enough, no packet type.
        assert_eq!(
            parse_video_tag(&[0x12]),
            video(Other(2), true, false, false)
        );
        assert_eq!(
            parse_video_tag(&[0x24, 0x00]),
            video(Other(4), false, false, false)
        );
    }

    #[test]
    fn enhanced_video_forms() {
        use VideoCodec::*;
        let tag = |b0: u8, fourcc: &[u8; 4]| {
            let mut v = vec![b0];
            v.extend_from_slice(fourcc);
            v.extend_from_slice(&[0, 0, 0, 0xAA]);
            parse_video_tag(&v)
        };
        assert_eq!(tag(0x90, b"hvc1"), video(Hevc, false, true, false));
        assert_eq!(tag(0x91, b"hvc1"), video(Hevc, true, false, false));
        assert_eq!(tag(0xA1, b"hvc1"), video(Hevc, false, false, false));
        assert_eq!(tag(0x93, b"avc1"), video(Avc, true, false, false));
        assert_eq!(tag(0xA3, b"avc1"), video(Avc, false, false, false));
        assert_eq!(tag(0x92, b"av01"), video(Av1, false, false, true));
        assert_eq!(tag(0x94, b"vp09"), video(Vp9, false, false, false));
        assert_eq!(tag(0x95, b"av01"), video(Av1, false, true, false));
        assert_eq!(tag(0x90, b"vp09"), video(Vp9, false, true, false));
        assert_eq!(
            tag(0x91, b"vvc1"),
            video(Other(u32::from_be_bytes(*b"vvc1")), true, false, false)
        );
        // Too short for the FourCC.
        assert_eq!(parse_video_tag(&[0x91, b'h', b'v']), None);
    }

    #[test]
    fn enhanced_video_multitrack_and_modex() {
        use VideoCodec::*;
        // Multitrack, OneTrack (0) carrying CodedFrames (1), FourCC, track id.
        let mut mt = vec![0x96, 0x01];
        mt.extend_from_slice(b"av01");
        mt.extend_from_slice(&[0, 0xAA]);
        assert_eq!(parse_video_tag(&mt), video(Av1, true, false, false));
        // ManyTracksManyCodecs (2) with SequenceStart.
        let mut mt = vec![0x96, 0x20];
        mt.extend_from_slice(b"hvc1");
        assert_eq!(parse_video_tag(&mt), video(Hevc, false, true, false));
        // Multitrack byte but no FourCC.
        assert_eq!(
            parse_video_tag(&[0x96, 0x01]),
            video(Other(0), true, false, false)
        );
        assert_eq!(parse_video_tag(&[0x96]), None);

        // ModEx (7) with 3 bytes of data, then CodedFrames.
        let mut mx = vec![0x97, 2, 9, 9, 9, 0x01];
        mx.extend_from_slice(b"avc1");
        assert_eq!(parse_video_tag(&mx), video(Avc, true, false, false));
        // ModEx with a 16-bit size (300 bytes), then SequenceStart.
        let mut mx = vec![0x97, 0xFF, 0x01, 0x2B];
        mx.extend(std::iter::repeat_n(0u8, 300));
        mx.push(0x00);
        mx.extend_from_slice(b"hvc1");
        assert_eq!(parse_video_tag(&mx), video(Hevc, false, true, false));
        // Truncated ModEx.
        assert_eq!(parse_video_tag(&[0x97, 5, 1, 2]), None);
    }

    #[test]
    fn short_payloads_are_safe() {
        assert_eq!(parse_video_tag(&[]), None);
        assert_eq!(parse_audio_tag(&[]), None);
        assert_eq!(parse_video_tag(&[0x17]), None);
        assert_eq!(parse_video_tag(&[0x1C]), None);
        assert_eq!(parse_video_tag(&[0x90]), None);
        assert_eq!(parse_audio_tag(&[0xAF]), None);
        assert_eq!(parse_audio_tag(&[0x90]), None);
        assert!(avc_dimensions(&[]).is_none());
        assert!(avc_dimensions(&[0x17]).is_none());
        assert!(avc_dimensions(&[0x17, 0, 0, 0, 0]).is_none());
        // Every prefix of odd input must be handled without panicking.
        let junk: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37) | 0x80).collect();
        for n in 0..junk.len() {
            let _ = parse_video_tag(&junk[..n]);
            let _ = parse_audio_tag(&junk[..n]);
            let _ = avc_dimensions(&junk[..n]);
        }
    }

    #[test]
    fn audio_forms() {
        let aac = |seq| {
            Some(AudioTagInfo {
                codec: AudioCodec::Aac,
                sequence_header: seq,
            })
        };
        assert_eq!(parse_audio_tag(&[0xAF, 0x00, 0x12, 0x10]), aac(true));
        assert_eq!(parse_audio_tag(&[0xAF, 0x01, 0x21]), aac(false));
        assert_eq!(
            parse_audio_tag(&[0x2F, 0xFF]),
            Some(AudioTagInfo {
                codec: AudioCodec::Mp3,
                sequence_header: false
            })
        );
        assert_eq!(
            parse_audio_tag(&[0xE2]).map(|i| i.codec),
            Some(AudioCodec::Mp3)
        );
        // Speex (11) and G.711 A-law (7) stay as their legacy ids.
        assert_eq!(
            parse_audio_tag(&[0xB6]).map(|i| i.codec),
            Some(AudioCodec::Other(11))
        );
        assert_eq!(
            parse_audio_tag(&[0x72]).map(|i| i.codec),
            Some(AudioCodec::Other(7))
        );
    }

    #[test]
    fn enhanced_audio_forms() {
        let ex = |b0: u8, fourcc: &[u8; 4]| {
            let mut v = vec![b0];
            v.extend_from_slice(fourcc);
            v.push(0x55);
            parse_audio_tag(&v)
        };
        let info = |codec, seq| {
            Some(AudioTagInfo {
                codec,
                sequence_header: seq,
            })
        };
        assert_eq!(ex(0x90, b"Opus"), info(AudioCodec::Opus, true));
        assert_eq!(ex(0x91, b"Opus"), info(AudioCodec::Opus, false));
        assert_eq!(ex(0x90, b"mp4a"), info(AudioCodec::Aac, true));
        assert_eq!(ex(0x91, b"mp4a"), info(AudioCodec::Aac, false));
        assert_eq!(ex(0x91, b".mp3"), info(AudioCodec::Mp3, false));
        assert_eq!(ex(0x92, b"Opus"), info(AudioCodec::Opus, false));
        assert_eq!(ex(0x94, b"Opus"), info(AudioCodec::Opus, false));
        assert_eq!(ex(0x90, b"fLaC"), info(AudioCodec::Other(9), true));
        // Multitrack OneTrack SequenceStart.
        let mut mt = vec![0x95, 0x00];
        mt.extend_from_slice(b"Opus");
        mt.push(0);
        assert_eq!(parse_audio_tag(&mt), info(AudioCodec::Opus, true));
        // ModEx then CodedFrames.
        let mut mx = vec![0x97, 0, 0xAB, 0x01];
        mx.extend_from_slice(b"mp4a");
        assert_eq!(parse_audio_tag(&mx), info(AudioCodec::Aac, false));
        assert_eq!(parse_audio_tag(&[0x91, b'O', b'p']), None);
    }

    #[test]
    fn codec_names() {
        assert_eq!(video_codec_name(VideoCodec::Avc), "H264");
        assert_eq!(video_codec_name(VideoCodec::Hevc), "H265");
        assert_eq!(video_codec_name(VideoCodec::Av1), "AV1");
        assert_eq!(video_codec_name(VideoCodec::Vp9), "VP9");
        assert_eq!(video_codec_name(VideoCodec::Other(4)), "other");
        assert_eq!(audio_codec_name(AudioCodec::Aac), "AAC");
        assert_eq!(audio_codec_name(AudioCodec::Mp3), "MP3");
        assert_eq!(audio_codec_name(AudioCodec::Opus), "Opus");
        assert_eq!(audio_codec_name(AudioCodec::Other(11)), "other");
    }

    // Sequence headers produced by ffmpeg/libx264 (FLV video tag bodies).
    const X264_BASELINE_320X240: &str = "17000000000142c00dffe100186742c00dd90141fb011000000300100000030320f142a48001000568cb83cb20";
    const X264_BASELINE_1280X720: &str = "17000000000142c01fffe100196742c01fd9005005bb011000000300100000030320f183248001000568cb83cb20";
    /// High profile, 1088 coded lines cropped to 1080, has emulation-prevention bytes.
    const X264_HIGH_1920X1080: &str = "170000000001640028ffe1001b67640028acd940780227e5c044000003000400000300c83c60c65801000668ebe3cb22c0fdf8f800";
    /// High 4:4:4 (chroma_format_idc 3): width 864 cropped by 10 luma columns.
    const X264_HIGH444_854X480: &str = "170000000001f4001effe1001b67f4001e919b281b07bc5f80880000030008000003019078b16cb001000668ebe3c44844fff8f800";

    #[test]
    fn avc_dimensions_from_real_sequence_headers() {
        assert_eq!(
            avc_dimensions(&hex(X264_BASELINE_320X240)),
            Some((320, 240))
        );
        assert_eq!(
            avc_dimensions(&hex(X264_BASELINE_1280X720)),
            Some((1280, 720))
        );
        assert_eq!(
            avc_dimensions(&hex(X264_HIGH_1920X1080)),
            Some((1920, 1080))
        );
        assert_eq!(avc_dimensions(&hex(X264_HIGH444_854X480)), Some((854, 480)));
    }

    #[test]
    fn avc_dimensions_enhanced_and_rejects() {
        // Same record behind an E-RTMP `avc1` SequenceStart header.
        let legacy = hex(X264_BASELINE_1280X720);
        let mut ex = vec![0x90];
        ex.extend_from_slice(b"avc1");
        ex.extend_from_slice(&legacy[5..]);
        assert_eq!(avc_dimensions(&ex), Some((1280, 720)));
        assert_eq!(avc_config_dimensions(&legacy[5..]), Some((1280, 720)));

        // Not a sequence header, not AVC, truncated record, truncated SPS.
        let mut nalu = legacy.clone();
        nalu[1] = 1;
        assert_eq!(avc_dimensions(&nalu), None);
        let mut hevc = legacy.clone();
        hevc[0] = 0x1C;
        assert_eq!(avc_dimensions(&hevc), None);
        assert_eq!(avc_dimensions(&legacy[..12]), None);
        for n in 0..legacy.len() - 4 {
            // Cutting the SPS short must give None or a value, never panic.
            let _ = avc_dimensions(&legacy[..n]);
        }
        let mut short_sps = legacy.clone();
        short_sps.truncate(5 + 8 + 6);
        assert_eq!(avc_dimensions(&short_sps), None);
        // Zero SPS count.
        let mut no_sps = legacy;
        no_sps[10] = 0xE0;
        assert_eq!(avc_dimensions(&no_sps), None);
    }

    /// Minimal Exp-Golomb writer to build SPS variants the encoders we have won't emit.
    #[derive(Default)]
    struct BitWriter {
        bytes: Vec<u8>,
        nbits: usize,
    }

    impl BitWriter {
        fn bit(&mut self, b: bool) {
            if self.nbits.is_multiple_of(8) {
                self.bytes.push(0);
            }
            if b {
                *self.bytes.last_mut().unwrap() |= 0x80 >> (self.nbits % 8);
            }
            self.nbits += 1;
        }
        fn bits(&mut self, v: u32, n: u32) {
            for i in (0..n).rev() {
                self.bit((v >> i) & 1 == 1);
            }
        }
        fn ue(&mut self, v: u32) {
            let x = v + 1;
            let len = 32 - x.leading_zeros();
            self.bits(0, len - 1);
            self.bits(x, len);
        }
        fn se(&mut self, v: i32) {
            self.ue(if v > 0 {
                (2 * v - 1) as u32
            } else {
                (-2 * v) as u32
            });
        }
        /// RBSP trailing bits, then emulation prevention, then the NAL header.
        fn into_nal(mut self) -> Vec<u8> {
            self.bit(true);
            let mut nal = vec![0x67];
            let mut zeros = 0;
            for b in self.bytes {
                if zeros >= 2 && b <= 3 {
                    nal.push(3);
                    zeros = 0;
                }
                zeros = if b == 0 { zeros + 1 } else { 0 };
                nal.push(b);
            }
            nal
        }
    }

    fn avcc(sps: &[u8]) -> Vec<u8> {
        let mut v = vec![0x17, 0, 0, 0, 0, 1, sps[1], sps[2], sps[3], 0xFF, 0xE1];
        v.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        v.extend_from_slice(sps);
        v.extend_from_slice(&[1, 0, 2, 0x68, 0xCE]);
        v
    }

    #[test]
    fn avc_dimensions_high_profile_scaling_lists_poc1_interlaced() {
        let mut w = BitWriter::default();
        w.bits(100, 8); // High
        w.bits(0, 8);
        w.bits(40, 8);
        w.ue(0); // sps id
        w.ue(1); // 4:2:0
        w.ue(0);
        w.ue(0);
        w.bit(false);
        w.bit(true); // scaling matrix present
        for i in 0..8 {
            let present = i % 2 == 0;
            w.bit(present);
            if present {
                // A few deltas, then -8 drives nextScale to 0 (rest implied).
                for d in [3, -1, 5, 0, -2] {
                    w.se(d);
                }
                let last = 8 + 3 - 1 + 5 - 2;
                w.se(-last);
            }
        }
        w.ue(0); // log2_max_frame_num_minus4
        w.ue(1); // poc type 1
        w.bit(false);
        w.se(-3);
        w.se(7);
        w.ue(3);
        for d in [1, -1, 2] {
            w.se(d);
        }
        w.ue(4); // ref frames
        w.bit(false);
        w.ue(44); // 45 MBs = 720
        w.ue(17); // 18 map units, interlaced => 36 MBs = 576
        w.bit(false); // frame_mbs_only = 0
        w.bit(true); // mbaff
        w.bit(true);
        w.bit(true); // cropping
        w.ue(0);
        w.ue(0);
        w.ue(0);
        w.ue(2); // 2 * (2*2) = 8 lines
        w.bit(false); // no VUI
        let sps = w.into_nal();
        assert_eq!(sps_dimensions(&sps), Some((720, 568)));
        assert_eq!(avc_dimensions(&avcc(&sps)), Some((720, 568)));
    }

    #[test]
    fn avc_dimensions_baseline_hand_built_with_emulation_prevention() {
        // Baseline 320x240: 20x15 MBs, no cropping. Zero constraint/level
        // bytes followed by a long exp-Golomb code (id 100; the range is not
        // checked) put `00 00 03` on the wire, which the reader must drop.
        let mut w = BitWriter::default();
        w.bits(66, 8);
        w.bits(0, 8);
        w.bits(0, 8);
        w.ue(100);
        w.ue(0);
        w.ue(2); // poc type 2
        w.ue(1);
        w.bit(false);
        w.ue(19);
        w.ue(14);
        w.bit(true);
        w.bit(true);
        w.bit(false);
        w.bit(false);
        let sps = w.into_nal();
        assert!(sps.windows(3).any(|x| x == [0, 0, 3]));
        assert_eq!(sps_dimensions(&sps), Some((320, 240)));
    }

    #[test]
    fn sps_rejects_bad_values() {
        // Wrong NAL type.
        assert_eq!(sps_dimensions(&[0x68, 0xCE, 0x3C, 0x80]), None);
        // Cropping larger than the picture.
        let mut w = BitWriter::default();
        w.bits(66, 8);
        w.bits(0, 8);
        w.bits(30, 8);
        w.ue(0);
        w.ue(0);
        w.ue(2);
        w.ue(1);
        w.bit(false);
        w.ue(0); // 16 wide
        w.ue(0);
        w.bit(true);
        w.bit(true);
        w.bit(true);
        w.ue(5); // 10 luma columns
        w.ue(5);
        w.ue(0);
        w.ue(0);
        w.bit(false);
        assert_eq!(sps_dimensions(&w.into_nal()), None);
        // Absurd exp-Golomb prefix.
        assert_eq!(sps_dimensions(&[0x67, 66, 0, 30, 0, 0, 0, 0, 0, 1]), None);
    }
}
