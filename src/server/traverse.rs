//! `token_traverse` on an edge: before a client is served, its connect and its publish or play
//! (with the tcUrl's and the stream's query, where tokens live) are replayed to an origin, and
//! the client is accepted only if the origin accepts. Per-stream tokens are then checked where
//! the secrets are (SRS checks the connect only). The origins are tried in order; the first
//! one that answers decides, and when none answers the client is refused (fail closed).

use super::shard::Shard;
use crate::config::ClusterConfig;
use crate::rtmp::client::{ClientConfig, ClientError, ClientEvent, ClientRole, ClientSession};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Why the origin did not accept the client.
#[derive(Debug, Error)]
pub enum TraverseError {
    /// The origin refused: its status code and description are passed on to the client.
    #[error("origin {origin} refused: {code} {description}")]
    Refused {
        /// The origin that answered.
        origin: String,
        /// Its status code (e.g. `NetStream.Publish.Denied`).
        code: String,
        /// Its description.
        description: String,
    },
    /// No origin could be asked.
    #[error("no origin answered ({0})")]
    NoOrigin(String),
}

/// What one origin said.
enum Answer {
    Accepted,
    Refused { code: String, description: String },
    Unreachable(String),
}

/// Replay `app` (with `tc_query`) and `stream` (name and query) as `role` to the origins.
pub async fn check(
    shard: &Shard,
    cl: &ClusterConfig,
    app: &str,
    tc_query: &str,
    stream: &str,
    role: ClientRole,
) -> Result<(), TraverseError> {
    let timeout = Duration::from_millis(cl.connect_timeout_ms);
    let mut why = Vec::new();
    for target in cl.origin_targets() {
        let host_port = target.display.clone();
        let tc_url = if tc_query.is_empty() {
            format!("rtmp://{host_port}/{app}")
        } else {
            format!("rtmp://{host_port}/{app}?{tc_query}")
        };
        let cfg = ClientConfig {
            app: app.to_string(),
            tc_url,
            stream: stream.to_string(),
            role,
            chunk_size: shard.cfg().rtmp.chunk_size,
            digest_handshake: false,
            buffer_ms: 0,
        };
        let seed = shard.new_id();
        let answer =
            glommio::timer::timeout(timeout, async { Ok(ask(target.addr, cfg, seed).await) })
                .await
                .unwrap_or_else(|_| Answer::Unreachable(format!("no answer within {timeout:?}")));
        match answer {
            Answer::Accepted => return Ok(()),
            Answer::Refused { code, description } => {
                return Err(TraverseError::Refused {
                    origin: host_port,
                    code,
                    description,
                })
            }
            Answer::Unreachable(e) => why.push(format!("{host_port}: {e}")),
        }
    }
    Err(TraverseError::NoOrigin(why.join("; ")))
}

/// One replay against one origin.
async fn ask(addr: std::net::SocketAddr, cfg: ClientConfig, seed: u64) -> Answer {
    let role = cfg.role;
    let mut stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => return Answer::Unreachable(e.to_string()),
    };
    let mut client = ClientSession::new(cfg, seed, 0);
    let mut buf = vec![0u8; 16 * 1024];
    let started = Instant::now();
    loop {
        while let Some(b) = client.poll_transmit() {
            if let Err(e) = stream.write_all(&b).await {
                return Answer::Unreachable(e.to_string());
            }
        }
        let n = match stream.read(&mut buf).await {
            Ok(0) => return Answer::Unreachable("closed the connection".into()),
            Ok(n) => n,
            Err(e) => return Answer::Unreachable(e.to_string()),
        };
        match client.handle_input(&buf[..n]) {
            Ok(()) => {}
            Err(ClientError::Refused {
                code, description, ..
            }) => return Answer::Refused { code, description },
            Err(e) => return Answer::Unreachable(e.to_string()),
        }
        while let Some(ev) = client.poll_event() {
            let done = match ev {
                ClientEvent::PublishStarted => role == ClientRole::Publish,
                ClientEvent::PlayStarted => role == ClientRole::Play,
                _ => false,
            };
            if done {
                if role == ClientRole::Publish {
                    // Give the stream back before the edge's own push arrives.
                    client.unpublish();
                    while let Some(b) = client.poll_transmit() {
                        let _ = stream.write_all(&b).await;
                    }
                }
                log::debug!(
                    "token traverse to {addr} accepted in {:?}",
                    started.elapsed()
                );
                return Answer::Accepted;
            }
        }
    }
}
