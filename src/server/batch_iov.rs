//! A merged-write batch as the iovecs of one wire form, built once per stream and flush and
//! reused for every player that is caught up.

use super::packet::Packet;
use super::writer::sys::Cursor;
use crate::rtmp::chunk::MessageHeads;
use bytes::Bytes;

/// The iovecs of a batch's packets in one wire form, and where each packet starts.
///
/// RTMP is sent as each packet's chunk headers with the payload between them, pointing into
/// the payload where the publisher's read left it. A copy of every packet with its headers
/// (`Packet::wire`) cost a fifth of the server's CPU at 1000 streams x 2 players (the copy,
/// its allocation and its free: 2.64-2.89 -> 2.01-2.05 CPU s/GB in a prototype) and the GOP
/// cache held that copy beside the payload. The copy is still made for what a full socket
/// leaves over (the writer task sends `Bytes`).
#[derive(Default)]
pub struct BatchIov {
    iov: Vec<libc::iovec>,
    /// Chunk headers the RTMP iovecs point into (None: a payload RTMP cannot carry); not
    /// touched while `iov` is in use.
    heads: Vec<Option<MessageHeads>>,
    /// Index in `iov` of each packet's first piece.
    starts: Vec<usize>,
}

fn piece(b: &[u8]) -> libc::iovec {
    libc::iovec {
        iov_base: b.as_ptr() as *mut libc::c_void,
        iov_len: b.len(),
    }
}

impl BatchIov {
    /// Nothing built.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Forget the last batch (before its packets may go).
    pub fn clear(&mut self) {
        self.iov.clear();
        self.heads.clear();
        self.starts.clear();
    }

    /// The shared RTMP form of `batch`. The packets must stay alive and the batch unchanged
    /// while the iovecs are used.
    pub fn build_rtmp(&mut self, batch: &[Packet]) {
        self.clear();
        self.heads.extend(batch.iter().map(Packet::wire_heads));
        for (p, heads) in batch.iter().zip(&self.heads) {
            self.starts.push(self.iov.len());
            let Some(heads) = heads else {
                self.iov.push(piece(p.wire())); // never sent: empty
                continue;
            };
            self.iov.push(piece(heads.first()));
            let size = p.chunk_size() as usize;
            for (i, part) in p.frame.payload.chunks(size).enumerate() {
                if i > 0 {
                    self.iov.push(piece(heads.continuation()));
                }
                self.iov.push(piece(part));
            }
        }
    }

    /// One buffer per packet: `form(p)` (the HTTP-FLV chunks).
    pub fn build_whole(&mut self, batch: &[Packet], form: impl Fn(&Packet) -> &Bytes) {
        self.clear();
        for p in batch {
            self.starts.push(self.iov.len());
            self.iov.push(piece(form(p)));
        }
    }

    /// Every iovec of the batch.
    pub fn all(&self) -> &[libc::iovec] {
        &self.iov
    }

    /// The iovecs from packet `first` on.
    pub fn from(&self, first: usize) -> &[libc::iovec] {
        &self.iov[self.starts[first]..]
    }

    /// Where a write of [`from(first)`](Self::from) stopped: the packet (index in the batch)
    /// and how many bytes of its wire form went out.
    pub fn locate(&self, first: usize, at: Cursor) -> (usize, usize) {
        let idx = self.starts[first] + at.idx;
        let packet = self.starts.partition_point(|&s| s <= idx) - 1;
        let before: usize = self.iov[self.starts[packet]..idx]
            .iter()
            .map(|v| v.iov_len)
            .sum();
        (packet, before + at.off)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Frame;

    fn bytes_of(iov: &[libc::iovec]) -> Vec<u8> {
        let mut out = Vec::new();
        for v in iov {
            // SAFETY: every iovec points into a live packet of the test's batch.
            out.extend_from_slice(unsafe {
                std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len)
            });
        }
        out
    }

    fn batch() -> Vec<Packet> {
        let sizes_and_ts = [
            (0usize, 0u32),
            (1, 5),
            (4096, 77),
            (4097, 9),
            (20000, 0xFF_FFFE),
            (10, 0xFF_FFFF),
            (9000, 0x0100_0000),
            (300, 3),
        ];
        sizes_and_ts
            .iter()
            .enumerate()
            .map(|(i, &(len, ts))| {
                let payload: Vec<u8> = (0..len).map(|b| (b * 7 + i) as u8).collect();
                let frame = if i % 2 == 0 {
                    Frame::video(ts, Bytes::from(payload))
                } else {
                    Frame::audio(ts, Bytes::from(payload))
                };
                Packet::new(frame, false, 4096)
            })
            .collect()
    }

    #[test]
    fn rtmp_pieces_are_the_wire_form_from_every_packet() {
        let batch = batch();
        let mut iov = BatchIov::default();
        iov.build_rtmp(&batch);
        for first in 0..batch.len() {
            let want: Vec<u8> = batch[first..]
                .iter()
                .flat_map(|p| p.wire().to_vec())
                .collect();
            assert_eq!(bytes_of(iov.from(first)), want, "from packet {first}");
        }
        assert_eq!(iov.all().len(), iov.from(0).len());
    }

    #[test]
    fn a_stop_anywhere_maps_back_to_packet_and_offset() {
        let batch = batch();
        for rtmp in [true, false] {
            let mut iov = BatchIov::default();
            if rtmp {
                iov.build_rtmp(&batch);
            } else {
                iov.build_whole(&batch, |p| p.http_flv_bytes());
            }
            let len = |p: &Packet| {
                if rtmp {
                    p.wire().len()
                } else {
                    p.http_flv_bytes().len()
                }
            };
            for first in [0, 3] {
                let slice = iov.from(first);
                let total: usize = batch[first..].iter().map(len).sum();
                for n in (0..total).step_by(97).chain([total - 1]) {
                    let mut at = Cursor::default();
                    at.advance(slice, n);
                    let (k, off) = iov.locate(first, at);
                    let before: usize = batch[first..k].iter().map(len).sum();
                    assert_eq!(before + off, n, "rtmp {rtmp} from {first}: {n} bytes");
                    assert!(off < len(&batch[k]), "inside packet {k}");
                }
            }
        }
    }
}
