//! The sink role: streams played on this shard. The first player of a stream subscribes at the
//! owner; the publisher's shard then sends a snapshot and the live media, once per shard.

use super::forward_host::ForwardHost;
use super::{Effect, StreamTable};
use crate::server::ids::ConnId;
use crate::server::key::StreamKey;
use crate::server::links::Links;
use crate::server::mesh::{OwnerMsg, ShardMsg, SinkMsg};
use crate::server::stream::{LocalStream, PlayerRef, Source, StreamLimits};

/// Add a player; the first player of a stream on this shard subscribes at the owner.
pub fn add_player(
    links: &Links,
    streams: &mut StreamTable,
    limits: &StreamLimits,
    key: &StreamKey,
    player: PlayerRef,
    query: &str,
) {
    let s = streams
        .entry(key.clone())
        .or_insert_with(|| LocalStream::new(key.clone(), limits));
    if !s.subscribed() {
        s.epoch = links.new_id();
        let m = OwnerMsg::Subscribe {
            key: key.clone(),
            shard: links.id,
            epoch: s.epoch,
            query: query.to_string(),
        };
        links.send(links.owner_of(key), ShardMsg::Owner(m));
    }
    s.add_player(player);
}

/// Remove a player; the last one of a stream on this shard unsubscribes.
pub fn remove_player(
    links: &Links,
    streams: &mut StreamTable,
    key: &StreamKey,
    conn_id: ConnId,
    stream_id: u32,
) {
    let Some(s) = streams.get_mut(key) else {
        return;
    };
    s.remove_player(conn_id, stream_id);
    if !s.players.is_empty() {
        return;
    }
    if s.subscribed() {
        s.epoch = 0;
        let m = OwnerMsg::Unsubscribe {
            key: key.clone(),
            shard: links.id,
        };
        links.send(links.owner_of(key), ShardMsg::Owner(m));
    }
    if s.is_idle() {
        streams.remove(key);
    }
}

/// Handle one message for the sink role (forward placement included: a forward peer takes
/// the stream like a player here).
pub fn handle(
    links: &Links,
    streams: &mut StreamTable,
    forwards: &mut ForwardHost,
    msg: SinkMsg,
) -> Option<Effect> {
    match msg {
        SinkMsg::Snapshot {
            key,
            publish_id,
            epoch,
            packets,
        } => {
            let s = streams.get_mut(&key)?;
            if s.epoch != epoch || matches!(s.source, Source::Local { .. }) {
                return None; // a stale subscription
            }
            s.start_source(Source::Remote { publish_id });
            let mut started = false;
            for p in &packets {
                started |= s.ingest(p);
            }
            if started {
                links.batch_started(&key);
            }
        }
        SinkMsg::Media {
            key,
            publish_id,
            packet,
        } => {
            let started = match streams.get_mut(&key) {
                Some(s) if s.source == (Source::Remote { publish_id }) => s.ingest(&packet),
                _ => false,
            };
            if started {
                links.batch_started(&key);
            }
        }
        SinkMsg::Unpublished { key, publish_id } => {
            if let Some(s) = streams.get_mut(&key) {
                if s.source == (Source::Remote { publish_id }) {
                    s.end_source();
                }
            }
        }
        SinkMsg::ForwardStart {
            key,
            index,
            targets,
            query,
        } => {
            return Some(forwards.start(key, index, targets, query));
        }
        SinkMsg::ForwardStop { key, index } => forwards.stop(key, index),
    }
    None
}
