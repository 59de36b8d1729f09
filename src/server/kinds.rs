//! Typed roles and reasons used by the API, metrics and logs: what a client is, how a player
//! takes its bytes, how a connection ended. The strings are SRS's and the log format's, made in
//! one place.

use super::key::StreamKey;
use crate::policy::Refusal;
use crate::rtmp::session::SessionError;
use std::fmt;
use thiserror::Error;

/// What a client connection is doing (SRS's client `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientKind {
    /// Connected, not (yet) publishing or playing.
    #[default]
    Idle,
    /// An RTMP publisher (FMLE-style publish).
    FmlePublish,
    /// An RTMP player.
    RtmpPlay,
    /// An HTTP-FLV player.
    FlvPlay,
}

impl ClientKind {
    /// The API's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientKind::Idle => "idle",
            ClientKind::FmlePublish => "fmle-publish",
            ClientKind::RtmpPlay => "rtmp-play",
            ClientKind::FlvPlay => "flv-play",
        }
    }

    /// A publisher of a stream.
    pub fn is_publisher(self) -> bool {
        self == ClientKind::FmlePublish
    }

    /// A player of a stream, whatever the protocol.
    pub fn is_player(self) -> bool {
        matches!(self, ClientKind::RtmpPlay | ClientKind::FlvPlay)
    }

    /// The `role=` of the close line.
    pub fn role(self) -> &'static str {
        match self {
            ClientKind::Idle => "none",
            ClientKind::FmlePublish => "publish",
            ClientKind::RtmpPlay => "play",
            ClientKind::FlvPlay => "flv-play",
        }
    }
}

/// The wire form a player takes a stream's shared bytes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireForm {
    /// RTMP chunks (players and forward peers).
    Rtmp,
    /// FLV tags in HTTP chunks.
    Flv,
}

impl WireForm {
    /// Index into per-form arrays (iovec lists, splice pipes).
    pub fn index(self) -> usize {
        match self {
            WireForm::Rtmp => 0,
            WireForm::Flv => 1,
        }
    }
}

/// Where a forward peer is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardState {
    /// Connecting and asking to publish.
    Connecting,
    /// Publishing to the destination.
    Publishing,
    /// Waiting to retry after a failure.
    Backoff,
    /// The publish ended; the peer is gone.
    Stopped,
}

impl ForwardState {
    /// The name used in the API, metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardState::Connecting => "connecting",
            ForwardState::Publishing => "publishing",
            ForwardState::Backoff => "backoff",
            ForwardState::Stopped => "stopped",
        }
    }
}

/// Where an upstream pulls from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamKind {
    /// An edge pulling from its configured origins.
    Edge,
    /// An origin relaying a stream a coworker publishes.
    Relay,
}

impl UpstreamKind {
    /// The name the API, metrics and logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamKind::Edge => "edge",
            UpstreamKind::Relay => "relay",
        }
    }
}

/// Where an upstream is in its life, as the API and metrics name it (the machine's own states
/// carry deadlines; these are what an operator reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamState {
    /// Nothing running, no players.
    Idle,
    /// Connecting to an origin and asking to play.
    Connecting,
    /// Every origin failed this round: waiting to retry.
    Backoff,
    /// Media flows from an origin.
    Playing,
    /// No players left: kept for `idle_linger_ms`.
    Lingering,
    /// The pull is being closed.
    Closing,
}

impl UpstreamState {
    /// Every state, for gauges that show 1 for the current one.
    pub const ALL: [UpstreamState; 6] = [
        UpstreamState::Idle,
        UpstreamState::Connecting,
        UpstreamState::Backoff,
        UpstreamState::Playing,
        UpstreamState::Lingering,
        UpstreamState::Closing,
    ];

    /// The name the API, metrics and logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamState::Idle => "idle",
            UpstreamState::Connecting => "connecting",
            UpstreamState::Backoff => "backoff",
            UpstreamState::Playing => "playing",
            UpstreamState::Lingering => "lingering",
            UpstreamState::Closing => "closing",
        }
    }
}

/// Why a connection was ended by the server side.
#[derive(Debug, Error)]
pub enum ConnError {
    /// The handshake did not finish within `server.handshake_timeout_secs`.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// Nothing arrived within `server.publish_idle_timeout_secs` (not a player).
    #[error("idle timeout")]
    IdleTimeout,
    /// The peer broke the protocol.
    #[error("{0}")]
    Session(#[from] SessionError),
    /// Rules, secret or hook refused the connect.
    #[error("connect refused: {0}")]
    ConnectRefused(Refusal),
    /// Rules, secret or hook refused a publish.
    #[error("publish of {key} refused: {cause}")]
    PublishRefused {
        /// The stream.
        key: StreamKey,
        /// Why.
        cause: Refusal,
    },
    /// Rules or hook refused a play.
    #[error("play of {key} refused: {cause}")]
    PlayRefused {
        /// The stream.
        key: StreamKey,
        /// Why.
        cause: Refusal,
    },
    /// A pulled stream brought no media within `cluster.start_timeout_ms`.
    #[error("stream {key} not found within {waited_ms} ms")]
    StreamNotFound {
        /// The stream.
        key: StreamKey,
        /// How long the player waited.
        waited_ms: u64,
    },
    /// The play was redirected (RTMP 302) to a coworker that has the stream.
    #[error("play of {key} redirected to {to}")]
    Redirected {
        /// The stream.
        key: StreamKey,
        /// Where to.
        to: String,
    },
    /// Writing to the peer failed (or it stalled past the stall timeout).
    #[error("write error: {0}")]
    Write(String),
    /// A proxy's origin leg failed or ended.
    #[error("origin {origin}: {why}")]
    Upstream {
        /// The origin (`host:port`).
        origin: String,
        /// What happened.
        why: String,
    },
}

/// How a connection ended, as the close line says it.
#[derive(Debug)]
pub enum CloseReason {
    /// The peer closed its end.
    ClosedByPeer,
    /// The peer reset the connection.
    ResetByPeer,
    /// Disconnected through the API.
    Kicked,
    /// The server is stopping.
    ShuttingDown,
    /// Reading failed.
    Read(std::io::Error),
    /// Ended by the server for a reason of its own.
    Failed(ConnError),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::ClosedByPeer => f.write_str("closed by peer"),
            CloseReason::ResetByPeer => f.write_str("reset by peer"),
            CloseReason::Kicked => f.write_str("kicked through the API"),
            CloseReason::ShuttingDown => f.write_str("server shutting down"),
            CloseReason::Read(e) => write!(f, "read error: {e}"),
            CloseReason::Failed(e) => write!(f, "error: {e}"),
        }
    }
}

/// Which way a player's media crossed the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RelayPath {
    /// Decoded into messages and re-chunked for the client.
    #[default]
    Rechunk,
    /// The origin's chunks forwarded as they came (`rtmp::chunk::splice::ChunkSplicer`).
    Splice,
}

impl RelayPath {
    /// As logged.
    pub fn name(self) -> &'static str {
        match self {
            RelayPath::Rechunk => "rechunk",
            RelayPath::Splice => "splice",
        }
    }
}

/// A player relay's path and message counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PathStats {
    /// The path taken (rechunk until a splice starts).
    pub path: RelayPath,
    /// Messages re-chunked (before the splice started, or all of them).
    pub rechunked: u64,
    /// Messages forwarded as received.
    pub as_is: u64,
    /// Messages rewritten to a fmt-0 start (compressed or interleaved at the origin).
    pub rewritten: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_api_and_log_formats() {
        assert_eq!(ClientKind::FmlePublish.as_str(), "fmle-publish");
        assert_eq!(ClientKind::FlvPlay.as_str(), "flv-play");
        assert!(ClientKind::RtmpPlay.is_player() && !ClientKind::Idle.is_player());
        assert_eq!(ClientKind::Idle.role(), "none");
        assert_eq!(
            CloseReason::Failed(ConnError::HandshakeTimeout).to_string(),
            "error: handshake timed out"
        );
        assert_eq!(CloseReason::Kicked.to_string(), "kicked through the API");
    }
}
