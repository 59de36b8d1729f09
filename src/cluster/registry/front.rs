//! [`Registry`]: the operations driven against a synchronous store.

use super::*;

/// The registry over a synchronous store: the operations above, driven with [`run`].
#[derive(Debug)]
pub struct Registry<S> {
    store: S,
    timing: Timing,
}

impl<S: RegistryStore> Registry<S> {
    /// A registry on `store`.
    pub fn new(store: S, timing: Timing) -> Registry<S> {
        Registry { store, timing }
    }

    /// The store (tests look inside).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Record an origin's heartbeat.
    pub fn heartbeat(&mut self, hb: &Heartbeat, now_ms: u64) -> Result<(), RegistryError> {
        let cmd = heartbeat_command(hb, &self.timing, now_ms);
        match self.store.execute(&cmd, now_ms)? {
            Reply::Ok => Ok(()),
            r => Err(StoreError::UnexpectedReply {
                command: "PutOrigin",
                reply: r,
            }
            .into()),
        }
    }

    /// Every live origin, oldest heartbeat first.
    pub fn live_origins(&mut self, now_ms: u64) -> Result<Vec<OriginInfo>, RegistryError> {
        run(LiveOp::new(&self.timing, now_ms), &mut self.store, now_ms)
    }

    /// The least-loaded live origin for a new publish of `key`.
    pub fn place_publish(&mut self, key: &str, now_ms: u64) -> Result<OriginInfo, RegistryError> {
        run(
            PlaceOp::new(key, &self.timing, now_ms),
            &mut self.store,
            now_ms,
        )
    }

    /// Claim `key` for `origin`, held by proxy `holder`, for `ttl_ms`. `AlreadyMapped` when
    /// another claim with a live origin holds it.
    pub fn claim(
        &mut self,
        key: &str,
        origin: &str,
        holder: &str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<(), RegistryError> {
        let op = ClaimOp::new(key, origin, holder, ttl_ms, &self.timing, now_ms);
        run(op, &mut self.store, now_ms)
    }

    /// Extend our claim; `NotHeld` when it expired or was taken over.
    pub fn refresh(
        &mut self,
        key: &str,
        origin: &str,
        holder: &str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<(), RegistryError> {
        let m = Mapping {
            origin: origin.to_string(),
            holder: holder.to_string(),
        };
        match run(CountOp::refresh(key, &m, ttl_ms), &mut self.store, now_ms)? {
            0 => Err(RegistryError::NotHeld),
            _ => Ok(()),
        }
    }

    /// Drop our claim (the publish ended). False when it was no longer ours.
    pub fn release(
        &mut self,
        key: &str,
        origin: &str,
        holder: &str,
        now_ms: u64,
    ) -> Result<bool, RegistryError> {
        let m = Mapping {
            origin: origin.to_string(),
            holder: holder.to_string(),
        };
        Ok(run(CountOp::release(key, &m), &mut self.store, now_ms)? > 0)
    }

    /// Where a player of `key` goes: `NotFound` when unclaimed, `OriginDead` when its origin
    /// stopped heartbeating.
    pub fn lookup_play(&mut self, key: &str, now_ms: u64) -> Result<Route, RegistryError> {
        run(
            LookupOp::new(key, &self.timing, now_ms),
            &mut self.store,
            now_ms,
        )
    }

    /// Forget long-dead origins; how many went.
    pub fn prune(&mut self, now_ms: u64) -> Result<u64, RegistryError> {
        run(
            CountOp::prune(&self.timing, now_ms),
            &mut self.store,
            now_ms,
        )
    }
}
