//! Which coworker publishes a stream: every coworker is asked at once over the control plane
//! (SRS's `/api/v1/clusters`), the first that has it wins, and the answer is reused for
//! `coworker_cache_ms` so a burst of players asks once.

use super::key::StreamKey;
use super::shard::Shard;
use crate::cluster::coworkers::{
    parse_answer, Cached, ClusterQuery, OriginLocation, QueryPlan, SelfAddrs,
};
use crate::config::ClusterConfig;
use crate::control_plane::HttpCall;
use log::warn;
use std::time::{Duration, Instant};

/// Which coworker publishes `key`: from the cache, else every coworker asked at once (the
/// first that has it wins).
pub async fn discover(
    shard: &Shard,
    cl: &ClusterConfig,
    key: &StreamKey,
) -> Option<OriginLocation> {
    match shard
        .coworker_cache
        .borrow()
        .get(key.as_str(), Instant::now())
    {
        Cached::At(at) => return Some(at.clone()),
        Cached::Nowhere => return None,
        Cached::Miss => {}
    }
    let found = ask(shard, cl, key).await;
    shard
        .coworker_cache
        .borrow_mut()
        .put(key.as_str(), found.clone(), Instant::now());
    found
}

/// Ask every coworker at once; the first (in list order) that has `key` wins.
async fn ask(shard: &Shard, cl: &ClusterConfig, key: &StreamKey) -> Option<OriginLocation> {
    let http_port = shard.cfg().http_addr().map(|a| a.port()).unwrap_or(0);
    let me = SelfAddrs {
        api_port: http_port,
        hosts: Vec::new(),
    };
    let plan = QueryPlan::new(&cl.coworkers, &me);
    let q = ClusterQuery {
        ip: String::new(),
        vhost: key.vhost().to_string(),
        app: key.app().to_string(),
        stream: key.stream_name().to_string(),
        coworker: String::new(),
    };
    let timeout = Duration::from_millis(cl.coworker_timeout_ms);
    let calls = shard.global().calls.clone();
    let asks: Vec<_> = plan
        .requests(&q)
        .map(|(target, path)| {
            let calls = calls.clone();
            let url = format!("http://{target}{path}");
            let target = target.to_string();
            let (shard_id, stream) = (shard.id(), key.clone());
            glommio::spawn_local(async move {
                let answer = calls.http(HttpCall::get(&url, timeout)).await;
                match answer {
                    Ok(a) if a.status == 200 => match parse_answer(&a.body) {
                        Ok(found) => found,
                        Err(e) => {
                            warn!("shard={shard_id} coworker {target} stream={stream} answered garbage: {e}");
                            None
                        }
                    },
                    Ok(a) => {
                        warn!(
                            "shard={shard_id} coworker {target} stream={stream} answered HTTP {}",
                            a.status
                        );
                        None
                    }
                    Err(e) => {
                        warn!("shard={shard_id} coworker {target} stream={stream}: {e}");
                        None
                    }
                }
            })
        })
        .collect();
    let mut found = None;
    for ask in asks {
        let answer = ask.await;
        if found.is_none() {
            found = answer;
        }
    }
    found
}
