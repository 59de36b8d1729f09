//! The registry's [`Command`]s carried out on Redis with redis-rs: each command's
//! [`Command::redis_plan`] argv (one call, or a MULTI/EXEC pipeline), and the reply read back
//! as the [`Reply`] its operation expects (RESP2 or RESP3 shapes).

use crate::cluster::registry::{Command, Reply, StoreError};

/// Carry out `cmd` on Redis and read the reply as the command expects it.
pub async fn exec(
    mut cm: redis::aio::ConnectionManager,
    cmd: &Command,
) -> Result<Reply, StoreError> {
    let plan = cmd.redis_plan();
    let backend = |e: redis::RedisError| StoreError::Backend(Box::new(e));
    let to_cmd = |argv: &Vec<String>| {
        let mut c = redis::cmd(&argv[0]);
        for a in &argv[1..] {
            c.arg(a);
        }
        c
    };
    let value: redis::Value = if plan.transaction {
        let mut p = redis::pipe();
        p.atomic();
        for call in &plan.calls {
            p.add_command(to_cmd(call));
        }
        p.query_async(&mut cm).await.map_err(backend)?
    } else {
        to_cmd(&plan.calls[0])
            .query_async(&mut cm)
            .await
            .map_err(backend)?
    };
    read_reply(cmd, value)
}

fn text(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => Some(s.clone()),
        redis::Value::Int(i) => Some(i.to_string()),
        redis::Value::Double(d) => Some(d.to_string()),
        _ => None,
    }
}

fn score(v: &redis::Value) -> Option<u64> {
    text(v)?.parse::<f64>().ok().map(|f| f as u64)
}

/// A Redis reply as the [`Reply`] the command's operation reads.
fn read_reply(cmd: &Command, v: redis::Value) -> Result<Reply, StoreError> {
    use redis::Value as V;
    let wrong = |v: V| StoreError::Backend(format!("unexpected Redis reply {v:?}").into());
    Ok(match cmd {
        Command::PutOrigin { .. } => Reply::Ok,
        Command::LiveOrigins { .. } => match v {
            V::Array(items) => {
                let mut out = Vec::new();
                if items.iter().all(|i| matches!(i, V::Array(_))) {
                    // RESP3: [[member, score], ...]
                    for i in items {
                        if let V::Array(pair) = i {
                            if let (Some(m), Some(s)) =
                                (pair.first().and_then(text), pair.get(1).and_then(score))
                            {
                                out.push((m, s));
                            }
                        }
                    }
                } else {
                    for pair in items.chunks(2) {
                        if let (Some(m), Some(s)) =
                            (pair.first().and_then(text), pair.get(1).and_then(score))
                        {
                            out.push((m, s));
                        }
                    }
                }
                Reply::Scored(out)
            }
            other => return Err(wrong(other)),
        },
        Command::GetOrigins { .. } | Command::GetUrls { .. } => match v {
            V::Array(items) => Reply::Values(items.iter().map(text).collect()),
            other => return Err(wrong(other)),
        },
        Command::OriginSeen { .. } => Reply::Score(score(&v)),
        Command::ClaimUrl { .. } | Command::GetUrl { .. } => match v {
            V::Nil => Reply::Value(None),
            other => Reply::Value(text(&other)),
        },
        Command::PruneOrigins { .. }
        | Command::RefreshUrl { .. }
        | Command::ReplaceUrl { .. }
        | Command::ReleaseUrl { .. } => match v {
            V::Int(n) => Reply::Count(n.max(0) as u64),
            other => return Err(wrong(other)),
        },
        Command::ScanUrls { .. } => match v {
            V::Array(parts) if parts.len() == 2 => {
                let cursor = text(&parts[0]).and_then(|c| c.parse().ok()).unwrap_or(0);
                let keys = match &parts[1] {
                    V::Array(k) => k
                        .iter()
                        .filter_map(text)
                        .filter_map(|k| {
                            k.strip_prefix(crate::cluster::registry::URL_KEY_PREFIX)
                                .map(str::to_string)
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                Reply::Page { cursor, keys }
            }
            other => return Err(wrong(other)),
        },
    })
}
