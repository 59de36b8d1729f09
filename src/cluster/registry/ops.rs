//! The registry's decisions as sans-I/O [`Operation`]s: placement, claims, lookups, counts.

use super::*;

/// The command recording a heartbeat.
pub fn heartbeat_command(hb: &Heartbeat, timing: &Timing, now_ms: u64) -> Command {
    let record = OriginRecord::from_heartbeat(hb);
    Command::PutOrigin {
        id: record.id.clone(),
        record: serde_json::to_string(&record).unwrap_or_default(),
        ttl_ms: timing.record_ttl_ms(),
        now_ms,
    }
}

/// Placement order: lower is better. CPU counts in 5% steps (so noise does not flap the
/// choice), then egress, players, streams; origins that report no load count as idle. Ties go
/// by a hash of stream and origin (rendezvous), so equally loaded origins share streams
/// evenly instead of one taking them all.
pub(crate) fn placement_key(key: &str, o: &OriginInfo) -> (u64, f64, u64, u64, u64) {
    let l = o.record.load.unwrap_or_default();
    let cpu_step = (l.cpu / 5.0).floor().max(0.0) as u64;
    (
        cpu_step,
        l.egress_mbps,
        l.players,
        l.streams,
        rendezvous(key, &o.record.id),
    )
}

pub(crate) fn rendezvous(key: &str, id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes().chain(std::iter::once(0)).chain(id.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Pick the least-loaded of `live` for stream `key`.
pub fn choose<'a>(key: &str, live: &'a [OriginInfo]) -> Option<&'a OriginInfo> {
    live.iter().min_by(|a, b| {
        let (ka, kb) = (placement_key(key, a), placement_key(key, b));
        ka.0.cmp(&kb.0)
            .then(ka.1.total_cmp(&kb.1))
            .then(ka.2.cmp(&kb.2))
            .then(ka.3.cmp(&kb.3))
            .then(ka.4.cmp(&kb.4))
    })
}

/// Records for `ids` from a `GetOrigins` reply, paired with their scores; expired or corrupt
/// records are left out (an origin that cannot be described cannot be used).
pub(crate) fn records(scored: &[(String, u64)], values: Vec<Option<String>>) -> Vec<OriginInfo> {
    scored
        .iter()
        .zip(values)
        .filter_map(|((_, score), v)| {
            let record: OriginRecord = serde_json::from_str(v.as_deref()?).ok()?;
            Some(OriginInfo {
                record,
                last_seen_ms: *score,
            })
        })
        .collect()
}

/// Every live origin.
#[derive(Debug)]
pub struct LiveOp {
    since_ms: u64,
    scored: Option<Vec<(String, u64)>>,
}

impl LiveOp {
    /// Origins alive at `now_ms`.
    pub fn new(timing: &Timing, now_ms: u64) -> LiveOp {
        LiveOp {
            since_ms: now_ms.saturating_sub(timing.dead_after_ms()),
            scored: None,
        }
    }
}

impl Operation for LiveOp {
    type Output = Vec<OriginInfo>;

    fn step(&mut self, reply: Option<Reply>) -> Step<Vec<OriginInfo>> {
        match (reply, &self.scored) {
            (None, None) => Step::Send(Command::LiveOrigins {
                since_ms: self.since_ms,
            }),
            (Some(Reply::Scored(list)), None) if list.is_empty() => Step::Done(Ok(Vec::new())),
            (Some(Reply::Scored(list)), None) => {
                let ids = list.iter().map(|(id, _)| id.clone()).collect();
                self.scored = Some(list);
                Step::Send(Command::GetOrigins { ids })
            }
            (Some(Reply::Values(v)), Some(scored)) if v.len() == scored.len() => {
                Step::Done(Ok(records(scored, v)))
            }
            (r, None) => unexpected("LiveOrigins", r),
            (r, Some(_)) => unexpected("GetOrigins", r),
        }
    }
}

/// Where to put a new publish: the least-loaded live origin.
#[derive(Debug)]
pub struct PlaceOp {
    key: String,
    live: LiveOp,
}

impl PlaceOp {
    /// Place stream `key` (`vhost/app/stream`) at `now_ms`.
    pub fn new(key: &str, timing: &Timing, now_ms: u64) -> PlaceOp {
        PlaceOp {
            key: key.to_string(),
            live: LiveOp::new(timing, now_ms),
        }
    }
}

impl Operation for PlaceOp {
    type Output = OriginInfo;

    fn step(&mut self, reply: Option<Reply>) -> Step<OriginInfo> {
        match self.live.step(reply) {
            Step::Send(c) => Step::Send(c),
            Step::Done(Ok(live)) => Step::Done(
                choose(&self.key, &live)
                    .cloned()
                    .ok_or(RegistryError::NoOrigin),
            ),
            Step::Done(Err(e)) => Step::Done(Err(e)),
        }
    }
}

#[derive(Debug)]
pub(crate) enum ClaimState {
    Start,
    Claiming,
    /// Our own earlier claim was found: extending it.
    Renewing,
    /// Someone's claim was found: is its origin alive?
    Checking {
        raw: String,
        held: Mapping,
    },
    /// Its origin is dead: taking the claim over.
    TakingOver,
}

/// Claim stream `key` for `origin`, held by proxy `holder`: SET-NX, and if the current claim's
/// origin is dead, a compare-and-swap takeover.
#[derive(Debug)]
pub struct ClaimOp {
    key: String,
    ours: Mapping,
    value: String,
    ttl_ms: u64,
    timing: Timing,
    now_ms: u64,
    state: ClaimState,
    rounds: u32,
}

impl ClaimOp {
    /// Claim `key` for (`origin`, `holder`) for `ttl_ms`.
    pub fn new(
        key: &str,
        origin: &str,
        holder: &str,
        ttl_ms: u64,
        timing: &Timing,
        now_ms: u64,
    ) -> ClaimOp {
        let ours = Mapping {
            origin: origin.to_string(),
            holder: holder.to_string(),
        };
        ClaimOp {
            key: key.to_string(),
            value: ours.encode(),
            ours,
            ttl_ms,
            timing: *timing,
            now_ms,
            state: ClaimState::Start,
            rounds: 0,
        }
    }

    fn claim(&mut self) -> Step<()> {
        self.rounds += 1;
        if self.rounds > MAX_ROUNDS {
            return Step::Done(Err(RegistryError::Contended));
        }
        self.state = ClaimState::Claiming;
        Step::Send(Command::ClaimUrl {
            key: self.key.clone(),
            value: self.value.clone(),
            ttl_ms: self.ttl_ms,
        })
    }
}

impl Operation for ClaimOp {
    type Output = ();

    fn step(&mut self, reply: Option<Reply>) -> Step<()> {
        match (std::mem::replace(&mut self.state, ClaimState::Start), reply) {
            (ClaimState::Start, None) => self.claim(),
            (ClaimState::Claiming, Some(Reply::Value(None))) => Step::Done(Ok(())),
            (ClaimState::Claiming, Some(Reply::Value(Some(raw)))) => {
                if raw == self.value {
                    self.state = ClaimState::Renewing;
                    return Step::Send(Command::RefreshUrl {
                        key: self.key.clone(),
                        value: self.value.clone(),
                        ttl_ms: self.ttl_ms,
                    });
                }
                match Mapping::decode(&self.key, &raw) {
                    Ok(held) => {
                        let id = held.origin.clone();
                        self.state = ClaimState::Checking { raw, held };
                        Step::Send(Command::OriginSeen { id })
                    }
                    // Unreadable: nobody can use it; replace it.
                    Err(_) => self.take_over(raw),
                }
            }
            (ClaimState::Renewing, Some(Reply::Count(1))) => Step::Done(Ok(())),
            // Expired between the two calls: start over.
            (ClaimState::Renewing, Some(Reply::Count(0))) => self.claim(),
            (ClaimState::Checking { raw, held }, Some(Reply::Score(seen))) => match seen {
                Some(last) if self.timing.alive(last, self.now_ms) => {
                    Step::Done(Err(RegistryError::AlreadyMapped {
                        origin: held.origin,
                        holder: held.holder,
                    }))
                }
                _ => self.take_over(raw),
            },
            (ClaimState::TakingOver, Some(Reply::Count(1))) => Step::Done(Ok(())),
            // Changed under us (another proxy took over first, or it expired): start over.
            (ClaimState::TakingOver, Some(Reply::Count(0))) => self.claim(),
            (state, r) => unexpected(
                match state {
                    ClaimState::Start | ClaimState::Claiming => "ClaimUrl",
                    ClaimState::Renewing => "RefreshUrl",
                    ClaimState::Checking { .. } => "OriginSeen",
                    ClaimState::TakingOver => "ReplaceUrl",
                },
                r,
            ),
        }
    }
}

impl ClaimOp {
    fn take_over(&mut self, expected: String) -> Step<()> {
        self.state = ClaimState::TakingOver;
        Step::Send(Command::ReplaceUrl {
            key: self.key.clone(),
            expected,
            value: self.value.clone(),
            ttl_ms: self.ttl_ms,
        })
    }

    /// The claim this operation makes.
    pub fn mapping(&self) -> &Mapping {
        &self.ours
    }
}

#[derive(Debug)]
pub(crate) enum LookupState {
    Start,
    Getting,
    Checking(Mapping),
    Describing(Mapping, u64),
}

/// Where to send a player of stream `key`: its origin, if alive.
#[derive(Debug)]
pub struct LookupOp {
    key: String,
    timing: Timing,
    now_ms: u64,
    state: LookupState,
}

impl LookupOp {
    /// Look `key` up at `now_ms`.
    pub fn new(key: &str, timing: &Timing, now_ms: u64) -> LookupOp {
        LookupOp {
            key: key.to_string(),
            timing: *timing,
            now_ms,
            state: LookupState::Start,
        }
    }
}

impl Operation for LookupOp {
    type Output = Route;

    fn step(&mut self, reply: Option<Reply>) -> Step<Route> {
        match (
            std::mem::replace(&mut self.state, LookupState::Start),
            reply,
        ) {
            (LookupState::Start, None) => {
                self.state = LookupState::Getting;
                Step::Send(Command::GetUrl {
                    key: self.key.clone(),
                })
            }
            (LookupState::Getting, Some(Reply::Value(None))) => {
                Step::Done(Err(RegistryError::NotFound))
            }
            (LookupState::Getting, Some(Reply::Value(Some(raw)))) => {
                match Mapping::decode(&self.key, &raw) {
                    Ok(m) => {
                        let id = m.origin.clone();
                        self.state = LookupState::Checking(m);
                        Step::Send(Command::OriginSeen { id })
                    }
                    Err(e) => Step::Done(Err(e.into())),
                }
            }
            (LookupState::Checking(m), Some(Reply::Score(seen))) => match seen {
                Some(last) if self.timing.alive(last, self.now_ms) => {
                    let ids = vec![m.origin.clone()];
                    self.state = LookupState::Describing(m, last);
                    Step::Send(Command::GetOrigins { ids })
                }
                _ => Step::Done(Err(RegistryError::OriginDead { origin: m.origin })),
            },
            (LookupState::Describing(m, last), Some(Reply::Values(v))) if v.len() == 1 => {
                match records(&[(m.origin.clone(), last)], v).pop() {
                    Some(origin) => Step::Done(Ok(Route {
                        origin,
                        holder: m.holder,
                    })),
                    None => Step::Done(Err(RegistryError::OriginDead { origin: m.origin })),
                }
            }
            (state, r) => unexpected(
                match state {
                    LookupState::Start | LookupState::Getting => "GetUrl",
                    LookupState::Checking(_) => "OriginSeen",
                    LookupState::Describing(..) => "GetOrigins",
                },
                r,
            ),
        }
    }
}

/// One command whose `Count` reply is the answer.
#[derive(Debug)]
pub struct CountOp {
    cmd: Option<Command>,
    name: &'static str,
}

impl CountOp {
    /// Extend our claim on `key`.
    pub fn refresh(key: &str, mapping: &Mapping, ttl_ms: u64) -> CountOp {
        CountOp::new(Command::RefreshUrl {
            key: key.to_string(),
            value: mapping.encode(),
            ttl_ms,
        })
    }

    /// Drop our claim on `key`.
    pub fn release(key: &str, mapping: &Mapping) -> CountOp {
        CountOp::new(Command::ReleaseUrl {
            key: key.to_string(),
            value: mapping.encode(),
        })
    }

    /// Forget origins silent for longer than [`Timing::prune_after_ms`].
    pub fn prune(timing: &Timing, now_ms: u64) -> CountOp {
        CountOp::new(Command::PruneOrigins {
            before_ms: now_ms.saturating_sub(timing.prune_after_ms()),
        })
    }

    fn new(cmd: Command) -> CountOp {
        CountOp {
            name: cmd.name(),
            cmd: Some(cmd),
        }
    }
}

impl Operation for CountOp {
    type Output = u64;

    fn step(&mut self, reply: Option<Reply>) -> Step<u64> {
        match (self.cmd.take(), reply) {
            (Some(cmd), None) => Step::Send(cmd),
            (None, Some(Reply::Count(n))) => Step::Done(Ok(n)),
            (_, r) => unexpected(self.name, r),
        }
    }
}
