//! The first bytes of a connection on a listener with `proxy_protocol` on: read a PROXY header
//! (from trusted balancers only, see [`crate::lb::trust`]) in the connection's own task, under
//! the listener's handshake timeout, and say who the client is and which bytes were already
//! read past the header (they are the start of the RTMP handshake or HTTP request).

use crate::lb::proxy_protocol::{Decoded, ProxyDecoder, ProxyError};
use crate::lb::trust::{decide, Decision, ProxyMode, RejectReason, Seen};
use futures_lite::AsyncReadExt;
use glommio::net::TcpStream;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use thiserror::Error;

/// What the connection turned out to be.
#[derive(Debug)]
pub enum Prelude {
    /// Serve it as coming from `client`; `initial` are the bytes already read after the header.
    Serve {
        /// The client's address: the header's source, or the socket's peer.
        client: SocketAddr,
        /// Application bytes read with the header.
        initial: Vec<u8>,
    },
    /// A balancer's health check (connect and close, or a LOCAL header then close): close
    /// without a word in the log.
    HealthCheck,
}

/// Why the connection is closed before its protocol starts (one log line, then close).
#[derive(Debug, Error)]
pub enum PreludeError {
    /// The trust policy refused it.
    #[error("{0}")]
    Refused(RejectReason),
    /// The peer closed in the middle of a header.
    #[error("PROXY header truncated after {0} bytes")]
    Truncated(usize),
    /// The header did not arrive in time (trickled, or nothing sent).
    #[error("no complete PROXY header within {secs} s ({got} bytes)")]
    TimedOut {
        /// The handshake timeout.
        secs: u64,
        /// Bytes received by then.
        got: usize,
    },
    /// The socket failed.
    #[error("read failed: {0}")]
    Read(std::io::Error),
}

/// Read until the decoder decides, then apply the trust policy. `peer` is the socket's peer
/// and `trusted` whether it is a trusted balancer.
pub async fn read(
    stream: &mut TcpStream,
    peer: SocketAddr,
    mode: ProxyMode,
    trusted: bool,
    timeout: Duration,
) -> Result<Prelude, PreludeError> {
    let deadline = Instant::now() + timeout;
    let mut decoder = ProxyDecoder::new();
    let mut chunk = vec![0u8; 4096];
    let mut got = 0usize;
    let (seen, initial) = loop {
        let n = read_some(stream, &mut chunk, deadline, timeout, got).await?;
        if n == 0 {
            // Connect-and-close (a TCP health check) before any byte is no alarm.
            return match got {
                0 => Ok(Prelude::HealthCheck),
                got => Err(PreludeError::Truncated(got)),
            };
        }
        got += n;
        match decoder.feed(&chunk[..n]) {
            Ok(Decoded::NeedMore) => continue,
            Ok(Decoded::NotProxy { mut held }) => {
                held.extend_from_slice(&chunk[..n]);
                break (Seen::Nothing, held);
            }
            Ok(Decoded::Done { header, consumed }) => {
                break (Seen::Header(header), chunk[consumed..n].to_vec());
            }
            Err(e @ ProxyError::Finished) => unreachable!("decoder fed after it answered: {e}"),
            Err(e) => break (Seen::Malformed(e), Vec::new()),
        }
    };
    match decide(mode, trusted, seen) {
        Decision::Reject(why) => Err(PreludeError::Refused(why)),
        Decision::Accept { client, .. } => Ok(Prelude::Serve { client, initial }),
        d if d.is_health_check() && initial.is_empty() => {
            // HAProxy's LOCAL header: a TCP check closes now, an HTTP check sends its request.
            let n = read_some(stream, &mut chunk, deadline, timeout, got).await?;
            if n == 0 {
                return Ok(Prelude::HealthCheck);
            }
            Ok(Prelude::Serve {
                client: peer,
                initial: chunk[..n].to_vec(),
            })
        }
        Decision::UseSocketPeer(_) => Ok(Prelude::Serve {
            client: peer,
            initial,
        }),
    }
}

/// One read before `deadline`; 0 at end of stream.
async fn read_some(
    stream: &mut TcpStream,
    chunk: &mut [u8],
    deadline: Instant,
    timeout: Duration,
    got: usize,
) -> Result<usize, PreludeError> {
    let timed_out = || PreludeError::TimedOut {
        secs: timeout.as_secs(),
        got,
    };
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(timed_out());
    }
    let _ = stream.set_read_timeout(Some(left));
    match stream.read(chunk).await {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(timed_out()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(0),
        Err(e) => Err(PreludeError::Read(e)),
    }
}
