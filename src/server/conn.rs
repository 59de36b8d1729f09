//! The one connection lifecycle, shared by RTMP clients, HTTP-FLV players and forward peers:
//! open the I/O halves (a second descriptor for the writer task, so reading and writing never
//! wait on each other), list the client, and close with a typed reason: flush the writer, drop
//! the entry, log one close line, and give the slot back when the guard drops.

use super::conns::{ConnEntry, Slot};
use super::ids::ConnId;
use super::key::StreamKey;
use super::kinds::{ClientKind, CloseReason};
use super::shard::Shard;
use super::writer::{close_and_wait, run_writer, ConnWriter};
use glommio::net::TcpStream;
use log::{info, warn};
use std::net::SocketAddr;
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::rc::Rc;
use std::sync::Arc;

/// A socket's writing half, run by its writer task.
pub struct ConnIo {
    /// The queue everyone on the shard writes to.
    pub writer: Rc<ConnWriter>,
    task: glommio::Task<()>,
}

impl ConnIo {
    /// Give `writer` a duplicate of `stream`'s descriptor and start its task.
    pub fn open(stream: &TcpStream, writer: Rc<ConnWriter>) -> std::io::Result<ConnIo> {
        // SAFETY: dup(2) of a descriptor `stream` owns; the copy is checked below.
        let wfd = unsafe { libc::dup(stream.as_raw_fd()) };
        if wfd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: wfd is a fresh descriptor we own.
        let wstream = unsafe { TcpStream::from_raw_fd(wfd) };
        let task = glommio::spawn_local(run_writer(writer.clone(), wstream));
        Ok(ConnIo { writer, task })
    }

    /// Flush what is queued and wait (briefly) for the writer task to end.
    pub async fn close(self) {
        close_and_wait(&self.writer, self.task).await;
    }
}

/// A client connection listed on its shard, from open to its close line.
pub struct ClientConn {
    /// The shard it lives on.
    pub shard: Rc<Shard>,
    /// Its id (knows the shard).
    pub id: ConnId,
    /// The client's address.
    pub peer: SocketAddr,
    /// Its listing in the shard's table (shared, so per-read figures need no lookup).
    entry: Rc<ConnEntry>,
    io: ConnIo,
    kind: ClientKind,
    _slot: Slot,
}

impl ClientConn {
    /// Open the writer half of `stream` and list the client; `None` (logged) when the socket
    /// cannot be duplicated (out of descriptors): the connection is dropped.
    pub fn open(
        shard: Rc<Shard>,
        stream: &TcpStream,
        id: ConnId,
        peer: SocketAddr,
        slot: Slot,
        writer: Rc<ConnWriter>,
    ) -> Option<ClientConn> {
        let io = match ConnIo::open(stream, writer.clone()) {
            Ok(io) => io,
            Err(e) => {
                warn!(
                    "shard={} client={id} peer={peer} error: dup failed: {e}",
                    shard.id()
                );
                return None;
            }
        };
        let entry = shard
            .conns
            .insert(id, ConnEntry::new(stream.as_raw_fd(), peer, writer));
        Some(ClientConn {
            shard,
            entry,
            id,
            peer,
            io,
            kind: ClientKind::Idle,
            _slot: slot,
        })
    }

    /// The connection's sending half.
    pub fn writer(&self) -> &Rc<ConnWriter> {
        &self.io.writer
    }

    /// What the client does now (API, metrics and the close line's role).
    pub fn set_kind(&mut self, kind: ClientKind, stream: Option<StreamKey>) {
        self.kind = kind;
        self.entry.kind.set(kind);
        *self.entry.stream.borrow_mut() = stream;
    }

    /// A proxy relays this client (player or publisher): show its path and counts.
    pub fn set_relay(&self, path: Rc<std::cell::Cell<super::kinds::PathStats>>) {
        *self.entry.relay.borrow_mut() = Some(path);
    }

    /// The tcUrl (redacted) or path shown for this client.
    pub fn set_tc_url(&self, shown: Arc<str>) {
        *self.entry.tc_url.borrow_mut() = shown;
    }

    /// Count bytes read from the client.
    pub fn add_bytes_in(&self, n: u64) {
        add_bytes_in(&self.entry, &self.shard, n);
    }

    /// What counts bytes read from the client where this is not at hand (a parked publisher).
    pub fn in_counter(&self) -> InCounter {
        InCounter {
            entry: self.entry.clone(),
            shard: self.shard.clone(),
        }
    }

    /// Why a read saw end of stream: the API kicked it, or the peer closed.
    pub fn eof_reason(&self) -> CloseReason {
        if self.shard.conns.kicked(self.id) {
            CloseReason::Kicked
        } else {
            CloseReason::ClosedByPeer
        }
    }

    /// Close: flush, unlist, log the close line (and the error line when the server ended it).
    pub async fn close(self, reason: CloseReason, bytes_in: u64) {
        let sh = self.shard.id();
        let (id, peer) = (self.id, self.peer);
        if let CloseReason::Failed(e) = &reason {
            warn!("shard={sh} client={id} peer={peer} error: {e}");
        }
        let writer = self.io.writer.clone();
        self.io.close().await;
        self.shard.conns.remove(id);
        info!(
            "shard={sh} client={id} peer={peer} close reason=\"{reason}\" role={} bytes_in={bytes_in} bytes_out={} writes={} dropped_frames={}",
            self.kind.role(),
            writer.bytes_out(),
            writer.writes(),
            writer.dropped_frames()
        );
    }
}

/// Counts bytes read from one client: its listing and the shard's totals.
pub struct InCounter {
    entry: Rc<ConnEntry>,
    shard: Rc<Shard>,
}

impl InCounter {
    /// Count `n` bytes read.
    pub fn add(&self, n: u64) {
        add_bytes_in(&self.entry, &self.shard, n);
    }
}

fn add_bytes_in(entry: &ConnEntry, shard: &Shard, n: u64) {
    entry.bytes_in.set(entry.bytes_in.get() + n);
    super::counters::IoTotals::add(&shard.totals.bytes_in, n);
}

/// The limits a client's chunk stream is read under (`[rtmp]`).
pub fn decoder_limits(cfg: &crate::config::Config) -> crate::rtmp::chunk::DecoderLimits {
    crate::rtmp::chunk::DecoderLimits {
        max_chunk_size: cfg.rtmp.max_incoming_chunk_size,
        max_message_len: cfg.rtmp.max_message_size,
        max_chunk_streams: cfg.rtmp.max_chunk_streams,
    }
}

/// The RTMP server session for connection `id`, with the limits of `cfg` (RTMP clients and the
/// proxy's clients alike).
pub fn rtmp_session(
    cfg: &crate::config::Config,
    id: ConnId,
) -> crate::rtmp::session::ServerSession {
    use crate::rtmp::amf0::DecodeLimits;
    use crate::rtmp::session::{ServerSession, SessionConfig};
    let session_cfg = SessionConfig {
        out_chunk_size: cfg.rtmp.chunk_size,
        window_ack_size: cfg.rtmp.window_ack_size,
        decoder_limits: decoder_limits(cfg),
        amf_limits: DecodeLimits::default(),
    };
    let seed = id.get().rotate_left(32) ^ super::time::time_seed();
    ServerSession::new(session_cfg, seed, 0)
}
