//! What one proxy knows by itself, so it keeps working while the shared store (Redis) is down:
//! its view of the origins ([`OriginView`], from the heartbeats it received and the origin
//! lists it read) and the claims it holds ([`HeldClaims`]), including the ones it could not
//! write yet because it placed their publish while the store was down. Plain data, no I/O and
//! no clock: the control thread feeds it and carries out what it says.
//!
//! # Catching up
//! A publish placed while the store is down is held as [`HeldState::Pending`]. Each
//! maintenance round asks [`HeldClaims::due`] what to do for every held claim: refresh a
//! written one, claim (SET NX + TTL, as any publish) a pending one; the outcome goes back
//! through [`HeldClaims::settle`], which says what happened once ([`Settled`]) so the log is
//! not repeated every round. A pending claim that finds another proxy's live claim is a
//! [`HeldState::Conflict`]: the publish it belongs to keeps running (accepted media is never
//! dropped), the conflict is logged and counted, and the claim is tried again every round in
//! case the other one goes away.

use super::*;

/// The origins as this proxy last saw them: id -> (record, last heartbeat or last read).
#[derive(Debug, Default)]
pub struct OriginView {
    origins: HashMap<String, OriginInfo>,
}

impl OriginView {
    /// An empty view.
    pub fn new() -> OriginView {
        OriginView::default()
    }

    /// Note an origin seen at `seen_ms`: from a heartbeat this proxy received, or from the
    /// store's list. Never moves an origin's time backwards (as the store's `ZADD GT`).
    pub fn note(&mut self, info: OriginInfo) {
        match self.origins.get_mut(&info.record.id) {
            Some(known) if known.last_seen_ms > info.last_seen_ms => {
                known.record = info.record;
            }
            _ => {
                self.origins.insert(info.record.id.clone(), info);
            }
        }
    }

    /// Note every origin of a store read.
    pub fn note_all(&mut self, list: &[OriginInfo]) {
        for o in list {
            self.note(o.clone());
        }
    }

    /// Origins alive at `now_ms` by this view; forgets the long dead
    /// ([`Timing::prune_after_ms`]).
    pub fn live(&mut self, timing: &Timing, now_ms: u64) -> Vec<OriginInfo> {
        let keep = timing.prune_after_ms();
        self.origins
            .retain(|_, o| now_ms.saturating_sub(o.last_seen_ms) <= keep);
        let mut v: Vec<OriginInfo> = self
            .origins
            .values()
            .filter(|o| timing.alive(o.last_seen_ms, now_ms))
            .cloned()
            .collect();
        v.sort_by(|a, b| a.record.id.cmp(&b.record.id));
        v
    }

    /// The least-loaded live origin for a new publish of `key`, by this view alone.
    pub fn place(&mut self, key: &str, timing: &Timing, now_ms: u64) -> Option<OriginInfo> {
        choose(key, &self.live(timing, now_ms)).cloned()
    }

    /// How many origins are in the view (alive or not).
    pub fn len(&self) -> usize {
        self.origins.len()
    }

    /// The view is empty.
    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }
}

/// Where a held claim stands in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeldState {
    /// Written (SET NX succeeded): refreshed every round.
    Written,
    /// Placed while the store was down: not written yet.
    Pending {
        /// When the publish was placed, epoch ms.
        since_ms: u64,
    },
    /// Catching up found another proxy's live claim on the stream.
    Conflict {
        /// The other claim's origin.
        origin: String,
        /// The proxy holding it.
        holder: String,
    },
}

/// A claim this proxy holds for its publishes of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldClaim {
    /// The claim's value.
    pub mapping: Mapping,
    /// Publishes through this proxy using it.
    pub publishes: u32,
    /// Where it stands in the store.
    pub state: HeldState,
}

/// What a maintenance round does for one held claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// Extend the written claim (`RefreshUrl`); a 0 reply means claim it again.
    Refresh,
    /// Claim it (SET NX + TTL through [`ClaimOp`]).
    Claim,
}

/// How a round's attempt at one claim ended (as the control thread saw it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Refreshed, or claimed: the store holds our value with a fresh TTL.
    Held,
    /// Another proxy's claim with a live origin holds the stream.
    Taken {
        /// Its origin.
        origin: String,
        /// The proxy holding it.
        holder: String,
    },
    /// The store refused for another reason (contended, corrupt).
    Failed(String),
}

/// What [`HeldClaims::settle`] reports, once per change (for the log and the counters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Nothing new.
    Same,
    /// A claim placed while the store was down is now written.
    CaughtUp {
        /// How long it waited, ms.
        waited_ms: u64,
    },
    /// A written claim had been lost (expired while the store was down) and is written again.
    Restored,
    /// A conflict began (or names another proxy/origin than before).
    Conflict {
        /// The other claim's origin.
        origin: String,
        /// The proxy holding it.
        holder: String,
        /// Our origin (where the running publish goes).
        ours: String,
    },
    /// A conflict ended: the other claim went away and ours is written.
    ConflictResolved,
    /// The attempt failed for another reason.
    Failed(String),
}

/// The claims this proxy holds, by stream key.
#[derive(Debug, Default)]
pub struct HeldClaims {
    map: HashMap<String, HeldClaim>,
}

impl HeldClaims {
    /// None held.
    pub fn new() -> HeldClaims {
        HeldClaims::default()
    }

    /// A publish of `key` is placed with `mapping`; `written` when its claim is in the store,
    /// else it is pending since `now_ms`. A different mapping for the key replaces the old.
    pub fn hold(&mut self, key: &str, mapping: Mapping, written: bool, now_ms: u64) {
        let state = if written {
            HeldState::Written
        } else {
            HeldState::Pending { since_ms: now_ms }
        };
        match self.map.get_mut(key) {
            Some(h) if h.mapping == mapping => {
                h.publishes += 1;
                if written {
                    h.state = HeldState::Written;
                }
            }
            _ => {
                self.map.insert(
                    key.to_string(),
                    HeldClaim {
                        mapping,
                        publishes: 1,
                        state,
                    },
                );
            }
        }
    }

    /// One publish of `key` ended; the claim when it was the last one (to release: the
    /// release is compare-and-delete, so it is safe whatever state the claim was in).
    pub fn release(&mut self, key: &str) -> Option<Mapping> {
        let h = self.map.get_mut(key)?;
        if h.publishes > 1 {
            h.publishes -= 1;
            return None;
        }
        self.map.remove(key).map(|h| h.mapping)
    }

    /// Every held claim and what to do for it this round, in key order.
    pub fn due(&self) -> Vec<(String, Mapping, Due)> {
        let mut v: Vec<_> = self
            .map
            .iter()
            .map(|(k, h)| {
                let due = match h.state {
                    HeldState::Written => Due::Refresh,
                    HeldState::Pending { .. } | HeldState::Conflict { .. } => Due::Claim,
                };
                (k.clone(), h.mapping.clone(), due)
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Record how an attempt on `key`'s claim (`mapping`, as [`HeldClaims::due`] gave it)
    /// ended. An answer for a claim since released or replaced changes nothing.
    pub fn settle(
        &mut self,
        key: &str,
        mapping: &Mapping,
        attempt: Attempt,
        now_ms: u64,
    ) -> Settled {
        let Some(h) = self.map.get_mut(key).filter(|h| &h.mapping == mapping) else {
            return Settled::Same;
        };
        match attempt {
            Attempt::Held => {
                let was = std::mem::replace(&mut h.state, HeldState::Written);
                match was {
                    HeldState::Written => Settled::Same,
                    HeldState::Pending { since_ms } => Settled::CaughtUp {
                        waited_ms: now_ms.saturating_sub(since_ms),
                    },
                    HeldState::Conflict { .. } => Settled::ConflictResolved,
                }
            }
            Attempt::Taken { origin, holder } => {
                let now = HeldState::Conflict {
                    origin: origin.clone(),
                    holder: holder.clone(),
                };
                if h.state == now {
                    return Settled::Same;
                }
                h.state = now;
                Settled::Conflict {
                    origin,
                    holder,
                    ours: h.mapping.origin.clone(),
                }
            }
            Attempt::Failed(why) => Settled::Failed(why),
        }
    }

    /// A written claim was found gone (refresh answered 0) and claimed again.
    pub fn restored(&mut self, key: &str, mapping: &Mapping) -> Settled {
        match self.map.get(key) {
            Some(h) if &h.mapping == mapping => Settled::Restored,
            _ => Settled::Same,
        }
    }

    /// The claim held for `key`.
    pub fn get(&self, key: &str) -> Option<&HeldClaim> {
        self.map.get(key)
    }

    /// How many claims are held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// None held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// How many are not written yet (pending or in conflict).
    pub fn unwritten(&self) -> usize {
        self.map
            .values()
            .filter(|h| h.state != HeldState::Written)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IV: u64 = 1_000;
    const T0: u64 = 1_700_000_000_000;

    fn timing() -> Timing {
        Timing {
            heartbeat_interval_ms: IV,
        }
    }

    fn info(id: &str, players: u64, seen: u64) -> OriginInfo {
        OriginInfo {
            record: OriginRecord {
                id: id.into(),
                ip: "127.0.0.1".into(),
                rtmp: format!("127.0.0.1:{}", 1900 + players),
                http: None,
                api: None,
                load: Some(Load {
                    players,
                    ..Load::default()
                }),
            },
            last_seen_ms: seen,
        }
    }

    fn m(origin: &str) -> Mapping {
        Mapping {
            origin: origin.into(),
            holder: "p1".into(),
        }
    }

    #[test]
    fn view_places_on_least_loaded_live_origin() {
        let mut v = OriginView::new();
        let t = timing();
        assert!(v.place("k", &t, T0).is_none(), "nothing known");
        v.note(info("busy", 50, T0));
        v.note(info("idle", 1, T0 - 3 * IV - 1)); // already dead
        v.note_all(&[info("mid", 10, T0)]);
        assert_eq!(v.place("k", &t, T0).unwrap().record.id, "mid");
        // A heartbeat revives the idle one; it wins.
        v.note(info("idle", 1, T0));
        assert_eq!(v.place("k", &t, T0).unwrap().record.id, "idle");
        // An older read does not move its time back, but updates the record.
        v.note(info("idle", 99, T0 - 5 * IV));
        assert_eq!(v.place("k", &t, T0).unwrap().record.id, "mid");
        assert_eq!(v.live(&t, T0 + 3 * IV).len(), 3);
        // Everyone silent: nothing to place on; long silent: forgotten.
        assert!(v.place("k", &t, T0 + 3 * IV + 1).is_none());
        assert_eq!(v.len(), 3);
        v.live(&t, T0 + t.prune_after_ms() + 1);
        assert!(v.is_empty());
    }

    #[test]
    fn pending_claim_catches_up_once() {
        let mut h = HeldClaims::new();
        h.hold("k", m("a"), false, T0);
        assert_eq!(h.unwritten(), 1);
        assert_eq!(h.due(), vec![("k".into(), m("a"), Due::Claim)]);
        // The store still down: the round ends without a settle; the next one claims.
        assert_eq!(
            h.settle("k", &m("a"), Attempt::Held, T0 + 2_500),
            Settled::CaughtUp { waited_ms: 2_500 }
        );
        assert_eq!(h.unwritten(), 0);
        assert_eq!(h.due(), vec![("k".into(), m("a"), Due::Refresh)]);
        assert_eq!(
            h.settle("k", &m("a"), Attempt::Held, T0 + 3_000),
            Settled::Same
        );
        assert_eq!(h.restored("k", &m("a")), Settled::Restored);
        assert_eq!(h.restored("k", &m("b")), Settled::Same);
    }

    #[test]
    fn conflict_is_reported_once_and_retried_until_resolved() {
        let mut h = HeldClaims::new();
        h.hold("k", m("a"), false, T0);
        let taken = || Attempt::Taken {
            origin: "b".into(),
            holder: "p2".into(),
        };
        assert_eq!(
            h.settle("k", &m("a"), taken(), T0),
            Settled::Conflict {
                origin: "b".into(),
                holder: "p2".into(),
                ours: "a".into()
            }
        );
        // Still held (the publish runs), still unwritten, tried every round, logged once.
        assert_eq!(h.get("k").unwrap().publishes, 1);
        assert_eq!(h.unwritten(), 1);
        assert_eq!(h.due()[0].2, Due::Claim);
        assert_eq!(h.settle("k", &m("a"), taken(), T0 + 1), Settled::Same);
        // Another holder now: reported again.
        assert!(matches!(
            h.settle(
                "k",
                &m("a"),
                Attempt::Taken {
                    origin: "b".into(),
                    holder: "p3".into()
                },
                T0 + 2
            ),
            Settled::Conflict { .. }
        ));
        // The other claim went away: ours is written.
        assert_eq!(
            h.settle("k", &m("a"), Attempt::Held, T0 + 3),
            Settled::ConflictResolved
        );
        assert_eq!(h.due()[0].2, Due::Refresh);
        assert_eq!(
            h.settle("k", &m("a"), Attempt::Failed("x".into()), T0 + 4),
            Settled::Failed("x".into())
        );
        assert_eq!(h.get("k").unwrap().state, HeldState::Written);
    }

    #[test]
    fn publishes_share_a_claim_and_the_last_releases_it() {
        let mut h = HeldClaims::new();
        h.hold("k", m("a"), true, T0);
        h.hold("k", m("a"), false, T0);
        assert_eq!(h.get("k").unwrap().publishes, 2);
        assert_eq!(
            h.get("k").unwrap().state,
            HeldState::Written,
            "stays written"
        );
        assert_eq!(h.release("k"), None);
        assert_eq!(h.release("k"), Some(m("a")));
        assert_eq!(h.release("k"), None);
        assert!(h.is_empty());
        // A late answer for a released or replaced claim changes nothing.
        assert_eq!(h.settle("k", &m("a"), Attempt::Held, T0), Settled::Same);
        h.hold("k", m("a"), false, T0);
        h.hold("k", m("b"), false, T0 + 1);
        assert_eq!(h.len(), 1);
        assert_eq!(h.settle("k", &m("a"), Attempt::Held, T0 + 2), Settled::Same);
        assert_eq!(
            h.get("k").unwrap().state,
            HeldState::Pending { since_ms: T0 + 1 }
        );
    }

    #[test]
    fn due_is_in_key_order() {
        let mut h = HeldClaims::new();
        h.hold("b", m("x"), true, T0);
        h.hold("a", m("x"), false, T0);
        let keys: Vec<_> = h.due().into_iter().map(|d| (d.0, d.2)).collect();
        assert_eq!(
            keys,
            vec![("a".into(), Due::Claim), ("b".into(), Due::Refresh)]
        );
    }
}
