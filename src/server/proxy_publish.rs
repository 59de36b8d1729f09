//! A proxy's publisher leg (client -> proxy -> origin) without re-chunking. Once the origin
//! said Publish.Start, the client's message stream id is the origin's and the proxy's session
//! is between messages, the client's bytes go to a [`ChunkSplicer`] instead of the session:
//! media of the publish stream goes to the origin as slices of what was read (a compressed
//! start, as ffmpeg and OBS write every message but the first of a chunk stream, as it came:
//! the origin gets every forwarded message in order, see [`ChunkSplicer::ordered`]); everything
//! else (FCUnpublish, deleteStream, acks, Set Chunk Size, user control) is cut out and handled
//! by the proxy's own session, which still counts every byte for its acknowledgements.
//!
//! The origin must read the client's chunks at the client's chunk size: the upstream session
//! announces it (a Set Chunk Size through its own writer, so its header compression stays right)
//! before the first forwarded byte and again whenever the client changes it. Its own messages
//! (acks, pongs, the final FCUnpublish) go on the control, command and stream chunk streams,
//! which the splicer never takes as known at the origin; a chunk stream a forwarded message
//! used is forgotten by the upstream session's writer, so its next message there is fmt 0.

use super::kinds::{PathStats, RelayPath};
use super::proxy_upstream::Upstream;
use crate::rtmp::chunk::splice::{ChunkSplicer, Spliced};
use crate::rtmp::chunk::DecoderLimits;
use crate::rtmp::message::csid;
use crate::rtmp::session::{ServerSession, SessionError};
use bytes::Bytes;
use std::cell::Cell;

/// The chunk streams the upstream session writes on itself while the splice runs.
const OWN_CSIDS: [u32; 3] = [csid::CONTROL, csid::COMMAND, csid::STREAM];

/// The state of a publisher's leg towards the origin.
pub enum PublishLeg {
    /// Media is re-chunked until the session reaches a message boundary.
    Pending,
    /// Re-chunked for good (splicing off, or the stream ids differ).
    Rechunk,
    /// Spliced.
    Splice(Box<ChunkSplicer>),
}

impl PublishLeg {
    /// Start splicing if the legs allow it and the client's session is at a message boundary
    /// (`Pending` stays until it is); `Rechunk` with the reason when they never will.
    pub fn try_start(
        session: &ServerSession,
        up: &Upstream,
        client_sid: u32,
        enabled: bool,
        limits: DecoderLimits,
    ) -> Result<PublishLeg, String> {
        if !enabled {
            return Err("relay_splice = false".into());
        }
        let origin_sid = up.session.borrow().stream_id();
        if origin_sid != client_sid {
            return Err(format!(
                "origin message stream {origin_sid}, client's {client_sid}"
            ));
        }
        let Some((chunk_size, headers)) = session.handover() else {
            return Ok(PublishLeg::Pending);
        };
        let mut sp = ChunkSplicer::new(chunk_size, client_sid, limits).ordered(&OWN_CSIDS);
        for (csid, h) in headers {
            sp.seed(csid, h);
        }
        let mut p = up.path.get();
        p.path = RelayPath::Splice;
        up.path.set(p);
        Ok(PublishLeg::Splice(Box::new(sp)))
    }
}

/// The origin's side of a spliced publish, as [`feed`] needs it.
pub trait OriginLeg {
    /// The chunk size the origin reads the proxy's bytes at.
    fn chunk_size(&self) -> u32;
    /// Announce `size` to the origin, in line before what follows, and write at it from now.
    fn announce_chunk_size(&self, size: u32);
    /// A forwarded message goes on `csid`: the proxy's own writer must not lean on its last
    /// header there.
    fn forget_chunk_stream(&self, csid: u32);
    /// Queue forwarded wire bytes (after anything the proxy's own session queued).
    fn forward(&self, wire: Bytes);
    /// The leg's path and counts.
    fn path(&self) -> &Cell<PathStats>;
}

impl OriginLeg for Upstream {
    fn chunk_size(&self) -> u32 {
        self.session.borrow().out_chunk_size()
    }

    fn announce_chunk_size(&self, size: u32) {
        self.session.borrow_mut().set_out_chunk_size(size);
    }

    fn forget_chunk_stream(&self, csid: u32) {
        self.session.borrow_mut().forget_chunk_stream(csid);
    }

    fn forward(&self, wire: Bytes) {
        // The session's own bytes (a Set Chunk Size, acks) go first.
        self.flush();
        self.writer.send_control(wire);
    }

    fn path(&self) -> &Cell<PathStats> {
        &self.path
    }
}

/// Splice `data` from the client to the origin; the session gets the byte count and the
/// messages that are not forwarded (poll its events after).
pub fn feed(
    sp: &mut ChunkSplicer,
    data: &[u8],
    session: &mut ServerSession,
    origin: &impl OriginLeg,
) -> Result<(), SessionError> {
    sp.push(data);
    let mut p = origin.path().get();
    let r = loop {
        match sp.next_spliced() {
            Ok(None) => break Ok(()),
            Err(e) => break Err(e.into()),
            Ok(Some(Spliced::Media(m))) => {
                if m.chunk_size != origin.chunk_size() {
                    origin.announce_chunk_size(m.chunk_size);
                }
                origin.forget_chunk_stream(m.csid);
                if m.copied {
                    p.rewritten += 1;
                } else {
                    p.as_is += 1;
                }
                origin.forward(m.wire);
            }
            Ok(Some(Spliced::Local(raw))) => {
                if let Err(e) = session.handle_raw(&raw) {
                    break Err(e);
                }
            }
        }
    };
    origin.path().set(p);
    // After the messages, as the session's own reading does: a Window Acknowledgement Size
    // in this read counts for it.
    session.count_received(data.len());
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Frame;
    use crate::rtmp::chunk::{encode_message, ChunkDecoder, ChunkWriter, RawMessage};
    use crate::rtmp::client::{ClientConfig, ClientEvent, ClientRole, ClientSession};
    use crate::rtmp::session::{SessionConfig, SessionEvent};
    use bytes::BytesMut;
    use std::cell::RefCell;

    /// An origin leg in memory: the proxy's own writer and everything queued.
    struct Mem {
        writer: RefCell<ChunkWriter>,
        out: RefCell<BytesMut>,
        path: Cell<PathStats>,
    }

    impl OriginLeg for Mem {
        fn chunk_size(&self) -> u32 {
            self.writer.borrow().chunk_size()
        }
        fn announce_chunk_size(&self, size: u32) {
            let mut w = self.writer.borrow_mut();
            w.write(&mut self.out.borrow_mut(), 2, 0, 1, 0, &size.to_be_bytes());
            w.set_chunk_size(size);
        }
        fn forget_chunk_stream(&self, csid: u32) {
            self.writer.borrow_mut().forget(csid);
        }
        fn forward(&self, wire: Bytes) {
            self.out.borrow_mut().extend_from_slice(&wire);
        }
        fn path(&self) -> &Cell<PathStats> {
            &self.path
        }
    }

    fn drain(dec: &mut ChunkDecoder) -> Vec<RawMessage> {
        let mut v = Vec::new();
        while let Some(m) = dec.next_message().unwrap() {
            v.push(m);
        }
        v
    }

    /// A library publisher (header-compressing, as ffmpeg) at `chunk_size` through the
    /// proxy's session up to Publish.Start, then spliced: the origin decodes the same media,
    /// the proxy's session acknowledges every byte and sees FCUnpublish.
    fn publish_spliced(chunk_size: u32, split: usize) {
        let mut server = ServerSession::new(SessionConfig::default(), 1, 0);
        let mut cfg = ClientConfig::from_url("rtmp://o/live/s", ClientRole::Publish).unwrap();
        cfg.chunk_size = chunk_size;
        let mut client = ClientSession::new(cfg, 2, 0);
        let mut sid = 0;
        let mut started = false;
        for _ in 0..20 {
            while let Some(b) = client.poll_transmit() {
                server.handle_input(&b).unwrap();
            }
            loop {
                while let Some(ev) = server.poll_event() {
                    match ev {
                        SessionEvent::ConnectRequested { .. } => server.accept_connect(),
                        SessionEvent::PublishRequested { stream_id, .. } => {
                            sid = stream_id;
                            server.accept_publish(stream_id);
                        }
                        _ => {}
                    }
                }
                if !server.resumable() {
                    break;
                }
                server.handle_input(&[]).unwrap();
            }
            while let Some(b) = server.poll_transmit() {
                client.handle_input(&b).unwrap();
            }
            while let Some(ev) = client.poll_event() {
                started |= ev == ClientEvent::PublishStarted;
            }
            if started {
                break;
            }
        }
        assert!(started && sid > 0);
        // The proxy's own session already wrote on the client's media chunk streams.
        let origin = Mem {
            writer: RefCell::new(ChunkWriter::new()),
            out: RefCell::new(BytesMut::new()),
            path: Cell::new(PathStats::default()),
        };
        for csid in [5, 6, 7] {
            let mut out = origin.out.borrow_mut();
            origin
                .writer
                .borrow_mut()
                .write(&mut out, csid, 3, 9, sid, &[1; 40]);
        }
        let (cs, headers) = server.handover().expect("at a message boundary");
        assert_eq!(cs, chunk_size);
        let limits = DecoderLimits::default();
        let mut sp = ChunkSplicer::new(cs, sid, limits).ordered(&OWN_CSIDS);
        for (c, h) in headers {
            sp.seed(c, h);
        }
        // The client asks for acknowledgements every 10 000 bytes.
        let mut input = BytesMut::new();
        encode_message(&mut input, 128, 2, 0, 5, 0, &10_000u32.to_be_bytes());
        let mut frames = Vec::new();
        for n in 0..60u32 {
            let len = if n % 10 == 0 {
                9_000
            } else {
                1_500 + n as usize * 7
            };
            let v = Frame::video(n * 40, Bytes::from(vec![n as u8; len]));
            let a = Frame::audio(n * 40 + 3, Bytes::from(vec![!n as u8; 300]));
            for f in [v, a] {
                client.send_frame(&f, false);
                frames.push(f);
            }
        }
        client.unpublish();
        while let Some(b) = client.poll_transmit() {
            input.extend_from_slice(&b);
        }
        for piece in input.chunks(split) {
            feed(&mut sp, piece, &mut server, &origin).unwrap();
        }
        assert_eq!(sp.buffered(), 0);
        // The origin reads its own earlier messages, then the spliced media.
        let mut dec = ChunkDecoder::default();
        dec.push(&origin.out.borrow());
        let got: Vec<(u32, Bytes)> = drain(&mut dec)
            .into_iter()
            .skip(3)
            .filter(|m| m.type_id == 8 || m.type_id == 9)
            .map(|m| (m.timestamp, m.payload))
            .collect();
        let want: Vec<(u32, Bytes)> = frames
            .iter()
            .map(|f| (f.timestamp, f.payload.clone()))
            .collect();
        assert_eq!(got.len(), want.len(), "cs={chunk_size} split={split}");
        assert!(got == want, "cs={chunk_size} split={split}: the same media");
        let p = origin.path.get();
        assert_eq!(p.as_is + p.rewritten, want.len() as u64);
        // Only each chunk stream's first message needs a rewrite (fmt 1 from the library
        // writer leans on a header the origin never saw).
        assert!(p.rewritten <= 2, "{p:?}");
        // Every byte acknowledged, as if the session had read them.
        let mut acks = ChunkDecoder::default();
        let mut pre = BytesMut::new();
        let out_cs = server.out_chunk_size();
        encode_message(&mut pre, 128, 2, 0, 1, 0, &out_cs.to_be_bytes());
        acks.push(&pre);
        let mut seen = Vec::new();
        while let Some(b) = server.poll_transmit() {
            acks.push(&b);
        }
        for m in drain(&mut acks) {
            if m.type_id == 3 {
                seen.push(u32::from_be_bytes(m.payload[..4].try_into().unwrap()));
            }
        }
        // As often as the session's own reading would (once per read at most), to within a
        // window of the last byte.
        let ctx = format!(
            "{seen:?} for {} bytes, cs={chunk_size} split={split}",
            input.len()
        );
        let reads = input.len().div_ceil(split);
        assert!(seen.len() >= (input.len() / 10_000).min(reads) - 1, "{ctx}");
        assert!(seen.windows(2).all(|w| w[1] - w[0] >= 10_000), "{ctx}");
        assert!(
            *seen.last().unwrap() as usize + 10_000 >= input.len(),
            "{ctx}"
        );
        let mut stopped = false;
        while let Some(ev) = server.poll_event() {
            stopped |= matches!(ev, SessionEvent::PublishStopped { .. });
        }
        assert!(
            stopped,
            "FCUnpublish/deleteStream reached the proxy's session"
        );
    }

    #[test]
    fn a_publishers_media_reaches_the_origin_spliced() {
        for cs in [128, 4096, 60_000] {
            for split in [1, 7, 1000, 1 << 20] {
                publish_spliced(cs, split);
            }
        }
    }
}
