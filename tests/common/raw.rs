//! Raw connections for hand-made (often hostile) RTMP bytes.

use bytes::BytesMut;
use shardcast::rtmp::amf0::{encode_all, Amf0Value, DecodeLimits};
use shardcast::rtmp::chunk::{encode_message, ChunkDecoder, DecoderLimits};
use shardcast::rtmp::handshake::ClientHandshake;
use shardcast::rtmp::message::{self, Message};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// `n` connections to `port` that have finished the handshake (so the server counts them).
pub fn handshaken_conns(port: u16, n: usize) -> Vec<RawConn> {
    (0..n)
        .map(|i| {
            let mut c = RawConn::open(port);
            c.handshake()
                .unwrap_or_else(|e| panic!("connection {i} within the limit: {e}"));
            c
        })
        .collect()
}

/// A plain TCP connection for hand-made (often hostile) RTMP bytes.
pub struct RawConn {
    pub sock: TcpStream,
    pub port: u16,
    decoder: ChunkDecoder,
    /// Chunk size used by [`RawConn::send`].
    pub chunk_size: u32,
}

impl RawConn {
    pub fn open(server_port: u16) -> RawConn {
        let sock = TcpStream::connect(("127.0.0.1", server_port)).expect("connect to server");
        sock.set_nodelay(true).expect("nodelay");
        let port = sock.local_addr().expect("local addr").port();
        RawConn {
            sock,
            port,
            decoder: ChunkDecoder::new(DecoderLimits {
                max_message_len: 64 * 1024 * 1024,
                ..DecoderLimits::default()
            }),
            chunk_size: 128,
        }
    }

    /// The `peer=` value the server logs for this connection.
    pub fn peer(&self) -> String {
        format!("peer=127.0.0.1:{}", self.port)
    }

    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.sock.write_all(bytes)
    }

    /// A plain client handshake (C0C1, read S0S1S2, C2).
    pub fn handshake(&mut self) -> Result<(), String> {
        let mut hs = ClientHandshake::new(u64::from(self.port), 0, false);
        let c0c1 = hs.start();
        self.write(&c0c1).map_err(|e| format!("write C0C1: {e}"))?;
        self.sock
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4096];
        for _ in 0..100 {
            let n = self
                .sock
                .read(&mut buf)
                .map_err(|e| format!("read S0S1S2: {e}"))?;
            if n == 0 {
                return Err("closed during handshake".into());
            }
            let p = hs.feed(&buf[..n]).map_err(|e| format!("handshake: {e}"))?;
            if !p.reply.is_empty() {
                self.write(&p.reply).map_err(|e| format!("write C2: {e}"))?;
            }
            if p.done {
                self.decoder.push(&buf[p.consumed..n]);
                return Ok(());
            }
        }
        Err("handshake did not finish".into())
    }

    /// One whole message, chunked at `self.chunk_size`.
    pub fn send(&mut self, csid: u32, ts: u32, type_id: u8, stream_id: u32, payload: &[u8]) {
        let mut out = BytesMut::new();
        encode_message(
            &mut out,
            self.chunk_size,
            csid,
            ts,
            type_id,
            stream_id,
            payload,
        );
        // The server may already have hung up on earlier bad bytes: that is for the caller's
        // close check to see, not an error here.
        let _ = self.write(&out);
    }

    pub fn command(&mut self, stream_id: u32, name: &str, txn: f64, args: Vec<Amf0Value>) {
        let mut vals = vec![Amf0Value::string(name), Amf0Value::Number(txn)];
        vals.extend(args);
        let csid = if stream_id == 0 { 3 } else { 5 };
        self.send(csid, 0, 20, stream_id, &encode_all(&vals));
    }

    /// `connect` to app `live`, waiting for its `_result`.
    pub fn rtmp_connect(&mut self) -> Result<(), String> {
        let obj = Amf0Value::object([
            ("app", Amf0Value::string("live")),
            ("tcUrl", Amf0Value::string("rtmp://127.0.0.1/live")),
        ]);
        self.command(0, "connect", 1.0, vec![obj]);
        self.wait_command(Duration::from_secs(5), |c| {
            c.name == "_result" && c.transaction_id == 1.0
        })
        .map(|_| ())
    }

    /// `createStream`, returning the stream id from its `_result`.
    pub fn create_stream(&mut self) -> Result<u32, String> {
        self.command(0, "createStream", 2.0, vec![Amf0Value::Null]);
        let r = self.wait_command(Duration::from_secs(5), |c| {
            c.name == "_result" && c.transaction_id == 2.0
        })?;
        r.args
            .first()
            .and_then(|v| v.as_f64())
            .map(|v| v as u32)
            .ok_or_else(|| format!("createStream result without an id: {r:?}"))
    }

    /// Read and decode until a command `want` accepts arrives.
    pub fn wait_command(
        &mut self,
        timeout: Duration,
        want: impl Fn(&message::Command) -> bool,
    ) -> Result<message::Command, String> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 16 * 1024];
        let mut seen = Vec::new();
        loop {
            while let Some(raw) = self.decoder.next_message().map_err(|e| e.to_string())? {
                if let Ok(Message::Command(c)) = message::decode(&raw, &DecodeLimits::default()) {
                    if want(&c) {
                        return Ok(c);
                    }
                    seen.push(c.name);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no such command in time; saw {seen:?}"));
            }
            self.sock
                .set_read_timeout(Some(left))
                .map_err(|e| e.to_string())?;
            match self.sock.read(&mut buf) {
                Ok(0) => return Err(format!("closed by server; saw {seen:?}")),
                Ok(n) => self.decoder.push(&buf[..n]),
                Err(e) => return Err(format!("read: {e}; saw {seen:?}")),
            }
        }
    }

    /// Wait until the server closes the connection: `Ok(how long it took)` when a read returns
    /// end-of-file or a reset within `timeout`; anything still open then is an `Err`.
    pub fn wait_closed(&mut self, timeout: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        let deadline = started + timeout;
        let mut buf = [0u8; 16 * 1024];
        let mut drained = 0usize;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "still open after {timeout:?} ({drained} bytes read)"
                ));
            }
            self.sock
                .set_read_timeout(Some(left))
                .map_err(|e| e.to_string())?;
            match self.sock.read(&mut buf) {
                Ok(0) => return Ok(started.elapsed()),
                Ok(n) => drained += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return Ok(started.elapsed()), // reset: closed too
            }
        }
    }
}
