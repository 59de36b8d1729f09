//! A shard's connection table and admission. `admit` hands out a [`Slot`] that gives the
//! connection back to every limit when it drops, however the connection ends.

use super::global::Global;
use super::ids::{ConnId, FastMap};
use super::key::StreamKey;
use super::kinds::ClientKind;
use super::writer::ConnWriter;
use crate::config::ServerConfig;
use std::cell::{Cell, RefCell};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::io::RawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use thiserror::Error;

/// Which limit refused a connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AdmitError {
    /// `server.max_connections` over all shards.
    #[error("max_connections ({0}) reached")]
    MaxConnections(usize),
    /// `server.max_connections_per_shard`.
    #[error("max_connections_per_shard ({0}) reached")]
    MaxPerShard(usize),
    /// `server.max_connections_per_ip`.
    #[error("max_connections_per_ip ({limit}) reached for {ip}")]
    MaxPerIp {
        /// The limit.
        limit: usize,
        /// The client's address.
        ip: IpAddr,
    },
}

/// A live connection, for shutdown, kicks and stats. The connection task updates the cells.
pub struct ConnEntry {
    /// The socket (for shutdown(2) on kick and at exit).
    pub fd: RawFd,
    /// The client's address.
    pub peer: SocketAddr,
    /// `peer` as text, made once for the stats.
    pub peer_text: Arc<str>,
    /// When it connected.
    pub started: Instant,
    /// What it does now.
    pub kind: Cell<ClientKind>,
    /// The stream it publishes or plays.
    pub stream: RefCell<Option<StreamKey>>,
    /// Its tcUrl (secrets redacted) or HTTP path.
    pub tc_url: RefCell<Arc<str>>,
    /// Bytes read from it.
    pub bytes_in: Cell<u64>,
    /// Its sending half.
    pub writer: Rc<ConnWriter>,
    /// Disconnected through the API (the close line says so).
    pub kicked: Cell<bool>,
    /// (bytes in, bytes out) at the last stats visit, and the rates then (kbit/s).
    pub rate: Cell<(u64, u64, u64, u64)>,
    /// A proxy's player relay: its path and counts, as the relay updates them.
    pub relay: RefCell<Option<Rc<Cell<super::kinds::PathStats>>>>,
}

impl ConnEntry {
    /// An idle connection's entry.
    pub fn new(fd: RawFd, peer: SocketAddr, writer: Rc<ConnWriter>) -> ConnEntry {
        ConnEntry {
            fd,
            peer,
            peer_text: peer.to_string().into(),
            started: Instant::now(),
            kind: Cell::new(ClientKind::Idle),
            stream: RefCell::new(None),
            tc_url: RefCell::new("".into()),
            bytes_in: Cell::new(0),
            writer,
            kicked: Cell::new(false),
            rate: Cell::new((0, 0, 0, 0)),
            relay: RefCell::new(None),
        }
    }
}

/// A connection's place under the limits; dropping it gives the place back.
/// Counted under the per-IP limit only once the client's address is known (behind a balancer,
/// after its PROXY header).
pub struct Slot {
    global: Arc<Global>,
    open: Rc<Cell<usize>>,
    ip: Option<IpAddr>,
}

impl Slot {
    /// Count this connection under `ip`'s per-IP limit: the client's address, known only after
    /// a balancer's PROXY header. Only for a slot from [`Conns::admit_unbound`].
    pub fn bind_ip(&mut self, ip: IpAddr, limits: &ServerConfig) -> Result<(), AdmitError> {
        debug_assert!(self.ip.is_none(), "a slot is bound to one address");
        count_ip(&self.global, limits, ip)?;
        self.ip = Some(ip);
        Ok(())
    }
}

/// Take one place under `ip`'s per-IP limit.
fn count_ip(global: &Global, limits: &ServerConfig, ip: IpAddr) -> Result<(), AdmitError> {
    let mut per_ip = global.per_ip.lock().unwrap_or_else(|e| e.into_inner());
    let n = per_ip.entry(ip).or_insert(0);
    if limits.max_connections_per_ip > 0 && *n >= limits.max_connections_per_ip {
        if *n == 0 {
            per_ip.remove(&ip);
        }
        return Err(AdmitError::MaxPerIp {
            limit: limits.max_connections_per_ip,
            ip,
        });
    }
    *n += 1;
    Ok(())
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.global.connections.fetch_sub(1, Ordering::Relaxed);
        self.open.set(self.open.get().saturating_sub(1));
        let Some(ip) = self.ip else { return };
        let mut per_ip = self.global.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&ip);
            }
        }
    }
}

/// One shard's connections.
#[derive(Default)]
pub struct Conns {
    table: RefCell<FastMap<ConnId, Rc<ConnEntry>>>,
    /// Connections admitted on this shard and not yet released.
    open: Rc<Cell<usize>>,
}

impl Conns {
    /// Take a connection slot for `peer`, or say which limit refuses it.
    pub fn admit(
        &self,
        global: &Arc<Global>,
        limits: &ServerConfig,
        peer: SocketAddr,
    ) -> Result<Slot, AdmitError> {
        self.admit_inner(global, limits, Some(peer.ip()))
    }

    /// A slot under the total and per-shard limits only, for a connection whose client address
    /// comes later (a PROXY header); [`Slot::bind_ip`] adds the per-IP limit then.
    pub fn admit_unbound(
        &self,
        global: &Arc<Global>,
        limits: &ServerConfig,
    ) -> Result<Slot, AdmitError> {
        self.admit_inner(global, limits, None)
    }

    fn admit_inner(
        &self,
        global: &Arc<Global>,
        limits: &ServerConfig,
        ip: Option<IpAddr>,
    ) -> Result<Slot, AdmitError> {
        let total = global.connections.fetch_add(1, Ordering::Relaxed) + 1;
        let shard_open = self.open.get() + 1;
        let refuse = if total > limits.max_connections {
            Some(AdmitError::MaxConnections(limits.max_connections))
        } else if limits.max_connections_per_shard > 0
            && shard_open > limits.max_connections_per_shard
        {
            Some(AdmitError::MaxPerShard(limits.max_connections_per_shard))
        } else {
            ip.and_then(|ip| count_ip(global, limits, ip).err())
        };
        if let Some(why) = refuse {
            global.connections.fetch_sub(1, Ordering::Relaxed);
            return Err(why);
        }
        self.open.set(shard_open);
        Ok(Slot {
            global: global.clone(),
            open: self.open.clone(),
            ip,
        })
    }

    /// List a connection (for stats, kicks and shutdown). The entry is shared with the
    /// connection's task, which updates its figures without a lookup per read.
    pub fn insert(&self, id: ConnId, entry: ConnEntry) -> Rc<ConnEntry> {
        let entry = Rc::new(entry);
        self.table.borrow_mut().insert(id, entry.clone());
        entry
    }

    /// A connection ended.
    pub fn remove(&self, id: ConnId) {
        self.table.borrow_mut().remove(&id);
    }

    /// Update a connection's entry, if it is listed.
    pub fn with(&self, id: ConnId, f: impl FnOnce(&ConnEntry)) {
        if let Some(e) = self.table.borrow().get(&id) {
            f(e);
        }
    }

    /// Visit every connection (the stats).
    pub fn for_each(&self, mut f: impl FnMut(ConnId, &ConnEntry)) {
        for (&id, e) in self.table.borrow().iter() {
            f(id, e);
        }
    }

    /// Connections listed.
    pub fn len(&self) -> usize {
        self.table.borrow().len()
    }

    /// No connection listed.
    pub fn is_empty(&self) -> bool {
        self.table.borrow().is_empty()
    }

    /// Was connection `id` disconnected through the API?
    pub fn kicked(&self, id: ConnId) -> bool {
        self.table.borrow().get(&id).is_some_and(|e| e.kicked.get())
    }

    /// Disconnect connection `id` if it is here (its read sees end of stream).
    pub fn kick(&self, id: ConnId) -> bool {
        match self.table.borrow().get(&id) {
            Some(c) => {
                c.kicked.set(true);
                // SAFETY: shutdown(2) on a descriptor owned by a live connection task.
                unsafe { libc::shutdown(c.fd, libc::SHUT_RDWR) };
                true
            }
            None => false,
        }
    }

    /// Wake every connection's read with end of stream (shutdown).
    pub fn shutdown_all(&self) {
        for c in self.table.borrow().values() {
            // SAFETY: shutdown(2) on a descriptor owned by a live connection task.
            unsafe { libc::shutdown(c.fd, libc::SHUT_RDWR) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, shard: usize, ip: usize) -> ServerConfig {
        ServerConfig {
            max_connections: total,
            max_connections_per_shard: shard,
            max_connections_per_ip: ip,
            ..ServerConfig::default()
        }
    }

    #[test]
    fn slots_are_given_back_when_dropped() {
        let g = Arc::new(Global::new(
            1,
            crate::control_plane::Calls::start().unwrap(),
        ));
        let c = Conns::default();
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let l = limits(10, 0, 2);
        let a = c.admit(&g, &l, peer).unwrap();
        let _b = c.admit(&g, &l, peer).unwrap();
        assert!(matches!(
            c.admit(&g, &l, peer),
            Err(AdmitError::MaxPerIp { limit: 2, .. })
        ));
        drop(a);
        let _c = c
            .admit(&g, &l, peer)
            .expect("the dropped slot is free again");
        assert_eq!(g.connections.load(Ordering::Relaxed), 2);
        assert_eq!(c.open.get(), 2);
    }

    #[test]
    fn an_unbound_slot_counts_its_address_once_bound() {
        let g = Arc::new(Global::new(
            1,
            crate::control_plane::Calls::start().unwrap(),
        ));
        let c = Conns::default();
        let client: IpAddr = "192.0.2.7".parse().unwrap();
        let l = limits(10, 0, 1);
        // Many connections from the balancer are fine: none is counted per IP yet.
        let mut a = c.admit_unbound(&g, &l).unwrap();
        let mut b = c.admit_unbound(&g, &l).unwrap();
        a.bind_ip(client, &l).unwrap();
        assert!(matches!(
            b.bind_ip(client, &l),
            Err(AdmitError::MaxPerIp { limit: 1, .. })
        ));
        drop(b);
        drop(a);
        assert!(g.per_ip.lock().unwrap().is_empty());
        assert_eq!(g.connections.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn each_limit_says_its_name() {
        let g = Arc::new(Global::new(
            1,
            crate::control_plane::Calls::start().unwrap(),
        ));
        let c = Conns::default();
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let _s = c.admit(&g, &limits(1, 0, 0), peer).unwrap();
        let e = c.admit(&g, &limits(1, 0, 0), peer).err().unwrap();
        assert_eq!(e.to_string(), "max_connections (1) reached");
        let e = c.admit(&g, &limits(10, 1, 0), peer).err().unwrap();
        assert_eq!(e.to_string(), "max_connections_per_shard (1) reached");
    }
}
