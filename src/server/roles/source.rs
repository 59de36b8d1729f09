//! The source role: streams published on this shard. A publish is claimed at the owner; once
//! granted, each frame is smoothed, encoded once, fanned out to this shard's players and sent
//! once to each subscribed shard.

use super::StreamTable;
use crate::media::Frame;
use crate::server::ids::ConnId;
use crate::server::key::StreamKey;
use crate::server::links::Links;
use crate::server::mesh::{ClaimRefused, OwnerMsg, ShardMsg, SinkMsg, SourceMsg};
use crate::server::packet::Packet;
use crate::server::registry::Subscriber;
use crate::server::stream::{LocalStream, RemoteSub, Source, StreamLimits};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use std::collections::HashMap;
use std::sync::atomic::Ordering;

/// The answer a claiming connection waits for.
pub type ClaimAnswer = Result<(), ClaimRefused>;

struct PendingClaim {
    key: StreamKey,
    conn_id: ConnId,
    publish_id: u64,
    reply: LocalSender<ClaimAnswer>,
}

/// Claims waiting for their owner's answer.
#[derive(Default)]
pub struct SourceRole {
    claims: HashMap<u64, PendingClaim>,
}

/// A claim sent to the owner: the publish id it will have, and where the answer arrives.
pub struct Claim {
    /// The publish id, once granted.
    pub publish_id: u64,
    /// The owner's answer.
    pub answer: LocalReceiver<ClaimAnswer>,
}

/// Who asks to publish, and how.
#[derive(Debug, Clone, Copy)]
pub struct ClaimRequest<'a> {
    /// The publishing connection (or upstream).
    pub conn_id: ConnId,
    /// Fed by an upstream: never forwarded or pushed back.
    pub pulled: bool,
    /// The publisher's stream query (an edge's push carries it).
    pub query: &'a str,
}

impl SourceRole {
    /// Ask the owner for the right to publish `key`; refused at once when this shard publishes
    /// it already or `max_streams` are live.
    pub fn claim(
        &mut self,
        links: &Links,
        streams: &StreamTable,
        key: &StreamKey,
        req: ClaimRequest<'_>,
        max_streams: usize,
    ) -> Result<Claim, ClaimRefused> {
        let ClaimRequest {
            conn_id,
            pulled,
            query,
        } = req;
        if streams
            .get(key)
            .is_some_and(|s| matches!(s.source, Source::Local { .. }))
        {
            return Err(ClaimRefused::AlreadyPublished);
        }
        if max_streams > 0 && links.global.live_streams.load(Ordering::Relaxed) >= max_streams {
            return Err(ClaimRefused::MaxStreams(max_streams));
        }
        let claim_id = links.new_id();
        let publish_id = links.new_id();
        let (reply, answer) = local_channel::new_bounded(1);
        self.claims.insert(
            claim_id,
            PendingClaim {
                key: key.clone(),
                conn_id,
                publish_id,
                reply,
            },
        );
        let m = OwnerMsg::ClaimPublish {
            key: key.clone(),
            shard: links.id,
            claim_id,
            publish_id,
            pulled,
            query: query.to_string(),
        };
        links.send(links.owner_of(key), ShardMsg::Owner(m));
        Ok(Claim { publish_id, answer })
    }

    /// Handle one message for the source role.
    pub fn handle(
        &mut self,
        links: &Links,
        streams: &mut StreamTable,
        limits: &StreamLimits,
        msg: SourceMsg,
    ) {
        match msg {
            SourceMsg::ClaimReply { claim_id, result } => {
                let Some(claim) = self.claims.remove(&claim_id) else {
                    return;
                };
                match result {
                    Ok(subscribers) => grant(links, streams, limits, claim, subscribers),
                    Err(why) => {
                        let _ = claim.reply.try_send(Err(why));
                    }
                }
            }
            SourceMsg::AddSubscriber { key, shard, epoch } => {
                let Some(s) = streams.get_mut(&key) else {
                    return;
                };
                let Source::Local { publish_id, .. } = s.source else {
                    return; // not published here (any more); the next claim lists the shard
                };
                s.remote_subs.retain(|r| r.shard != shard);
                s.remote_subs.push(RemoteSub {
                    shard,
                    lagging: false,
                });
                let packets = s.snapshot();
                let m = SinkMsg::Snapshot {
                    key,
                    publish_id,
                    epoch,
                    packets,
                };
                links.send(shard, ShardMsg::Sink(m));
            }
            SourceMsg::RemoveSubscriber { key, shard } => {
                if let Some(s) = streams.get_mut(&key) {
                    s.remote_subs.retain(|r| r.shard != shard);
                }
            }
        }
    }
}

/// The owner granted a claim: the stream goes live here before anything else is handled, so
/// subscriptions that follow the grant find it.
fn grant(
    links: &Links,
    streams: &mut StreamTable,
    limits: &StreamLimits,
    claim: PendingClaim,
    subscribers: Vec<Subscriber>,
) {
    let PendingClaim {
        key,
        conn_id,
        publish_id,
        reply,
    } = claim;
    if reply.try_send(Ok(())).is_err() {
        // The connection went away while waiting: give the stream back at once.
        let owner = links.owner_of(&key);
        links.send(
            owner,
            ShardMsg::Owner(OwnerMsg::Release { key, publish_id }),
        );
        return;
    }
    links.global.live_streams.fetch_add(1, Ordering::Relaxed);
    links.global.set_published(&key, true);
    let s = streams
        .entry(key.clone())
        .or_insert_with(|| LocalStream::new(key.clone(), limits));
    s.start_source(Source::Local {
        conn_id,
        publish_id,
    });
    s.remote_subs.clear();
    for sub in subscribers.into_iter().filter(|s| s.shard != links.id) {
        s.remote_subs.push(RemoteSub {
            shard: sub.shard,
            lagging: false,
        });
        let m = SinkMsg::Snapshot {
            key: key.clone(),
            publish_id,
            epoch: sub.epoch,
            packets: Vec::new(),
        };
        links.send(sub.shard, ShardMsg::Sink(m));
    }
}

/// Frames from a local publisher, in order (`metadata`: an `onMetaData`): one read's worth
/// takes one table lookup.
pub fn publish_frames(
    links: &Links,
    streams: &mut StreamTable,
    chunk_size: u32,
    key: &StreamKey,
    publish_id: u64,
    frames: impl Iterator<Item = (Frame, bool)>,
) {
    let Some(s) = streams.get_mut(key) else {
        return;
    };
    if !matches!(s.source, Source::Local { publish_id: p, .. } if p == publish_id) {
        return;
    }
    for (mut frame, metadata) in frames {
        frame.timestamp = s.smoother.smooth(frame.kind, frame.timestamp);
        if !s.has_audience() {
            s.ingest_unplayed(frame, metadata);
            continue;
        }
        let packet = Packet::new(frame, metadata, chunk_size);
        if s.ingest(&packet) {
            links.batch_started(key);
        }
        let restart = packet.frame.keyframe || packet.frame.sequence_header || packet.metadata;
        for sub in &mut s.remote_subs {
            if sub.lagging && !restart {
                continue;
            }
            let msg = ShardMsg::Sink(SinkMsg::Media {
                key: key.clone(),
                publish_id,
                packet: packet.clone(),
            });
            sub.lagging = !links.outboxes[sub.shard].try_push_media(msg);
        }
    }
}

/// The local publisher stopped (or its connection closed).
pub fn unpublish(links: &Links, streams: &mut StreamTable, key: &StreamKey, publish_id: u64) {
    let Some(s) = streams.get_mut(key) else {
        return;
    };
    if !matches!(s.source, Source::Local { publish_id: p, .. } if p == publish_id) {
        return;
    }
    for sub in &s.remote_subs {
        let m = SinkMsg::Unpublished {
            key: key.clone(),
            publish_id,
        };
        links.send(sub.shard, ShardMsg::Sink(m));
    }
    s.end_source();
    links.global.live_streams.fetch_sub(1, Ordering::Relaxed);
    links.global.set_published(key, false);
    if s.is_idle() {
        streams.remove(key);
    }
    let m = OwnerMsg::Release {
        key: key.clone(),
        publish_id,
    };
    links.send(links.owner_of(key), ShardMsg::Owner(m));
}
