//! Cluster decisions a client's connection asks before serving it: is the stream published at a
//! coworker (a publish here would make a second source), should a play be redirected there, and
//! how long may a player wait for a stream that is pulled from elsewhere.

use super::discovery::discover;
use super::key::StreamKey;
use super::shard::Shard;
use crate::cluster::url::RtmpUrl;
use crate::config::OnRemote;
use std::time::Instant;

/// A coworker that publishes `key` already, if this vhost has coworkers.
pub async fn published_at_coworker(shard: &Shard, key: &StreamKey) -> Option<String> {
    let cfg = shard.cfg();
    let cl = cfg.cluster_for(key.vhost());
    if !cl.has_coworkers() {
        return None;
    }
    discover(shard, cl, key).await.map(|at| at.host_port())
}

/// Where to send a player of `key` when this origin redirects plays of streams a coworker has
/// (and the stream is not published here).
pub async fn redirect_for(shard: &Shard, key: &StreamKey, query: &str) -> Option<RtmpUrl> {
    let cfg = shard.cfg();
    let cl = cfg.cluster_for(key.vhost());
    if !cl.has_coworkers() || cl.on_remote != OnRemote::Redirect {
        return None;
    }
    if shard.global().is_published(key) {
        return None;
    }
    let at = discover(shard, cl, key).await?;
    Some(RtmpUrl {
        host: at.host,
        port: at.port,
        app: key.app().to_string(),
        stream: key.stream_name().to_string(),
        query: query.to_string(),
    })
}

/// When a new player of `key` must have media by, if the stream may come from elsewhere and
/// is not live on this shard yet.
pub fn start_deadline(shard: &Shard, key: &StreamKey) -> Option<Instant> {
    let cfg = shard.cfg();
    let cl = cfg.cluster_for(key.vhost());
    (cl.pulls() && !shard.stream_live(key)).then(|| Instant::now() + cl.start_timeout())
}
