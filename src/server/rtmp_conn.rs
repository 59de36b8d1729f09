//! One RTMP client: the socket read loop. It feeds the session state machine, carries out its
//! requests against the shard (claim, subscribe), and hands outgoing bytes to the connection's
//! writer. Opening and closing are the shared lifecycle in `conn`.

use super::cluster_gate;
use super::conn::ClientConn;
use super::conns::Slot;
use super::forward_backend;
use super::ids::ConnId;
use super::key::StreamKey;
use super::kinds::{ClientKind, CloseReason, ConnError};
use super::merged_read::{self, Scratch};
use super::parked_publisher::{Parked, Route, Woken};
use super::shard::Shard;
use super::stream::{PlayerKind, PlayerRef};
use super::traverse::{self, TraverseError};
use super::writer::ConnWriter;
use crate::cluster::redirect::redirect_bytes;
use crate::policy::{self, ClientInfo, Refusal};
use crate::rtmp::client::ClientRole;
use crate::rtmp::session::{ServerSession, SessionError, SessionEvent};
use futures_lite::AsyncReadExt;
use glommio::net::TcpStream;
use log::{debug, info, warn};
use std::net::SocketAddr;
use std::os::unix::io::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Read buffer sizes: before a role (handshake, connect), as a publisher, as a player.
const READ_BUF_START: usize = 2048;
const READ_BUF_PUBLISHER: usize = 16 * 1024;
const READ_BUF_PLAYER: usize = 256;

pub use super::key::DEFAULT_VHOST;

/// How a connection takes its next input.
enum Take {
    /// Wait for the socket (a runtime read with a timeout).
    Wait,
    /// Read what is queued now (a full merged read leaves more behind).
    Now,
    /// Park on the shard's merged-read tick of this period.
    Tick(Duration),
}

/// The close reason of a failed read.
fn read_failed(e: std::io::Error) -> CloseReason {
    if e.kind() == std::io::ErrorKind::ConnectionReset {
        CloseReason::ResetByPeer
    } else {
        CloseReason::Read(e)
    }
}

struct Publishing {
    stream_id: u32,
    key: StreamKey,
    publish_id: u64,
    /// The stream name's query, for hooks.
    query: String,
}

struct Playing {
    stream_id: u32,
    key: StreamKey,
    query: String,
    /// A pulled stream must bring media by then (edge, relaying origin).
    start_deadline: Option<Instant>,
}

struct Conn {
    client: ClientConn,
    shard: Rc<Shard>,
    id: ConnId,
    peer: SocketAddr,
    /// `None` only while parked on the read tick.
    session: Option<ServerSession>,
    writer: Rc<ConnWriter>,
    app: String,
    vhost: String,
    publishing: Vec<Publishing>,
    playing: Vec<Playing>,
    tc_url: String,
    bytes_in: u64,
}

/// Serve one accepted connection until it closes. `peer` is the client (a PROXY header's
/// source behind a balancer); `initial` are bytes already read from it (after that header).
pub async fn serve(
    shard: Rc<Shard>,
    mut stream: TcpStream,
    id: ConnId,
    peer: SocketAddr,
    slot: Slot,
    initial: Vec<u8>,
) {
    let cfg = shard.cfg();
    let writer = shard.new_writer();
    let Some(client) = ClientConn::open(shard.clone(), &stream, id, peer, slot, writer.clone())
    else {
        return;
    };
    let _ = stream.set_nodelay(true);
    let mut conn = Conn {
        client,
        shard: shard.clone(),
        id,
        peer,
        session: Some(super::conn::rtmp_session(&cfg, id)),
        writer,
        app: String::new(),
        vhost: DEFAULT_VHOST.to_string(),
        publishing: Vec::new(),
        playing: Vec::new(),
        tc_url: String::new(),
        bytes_in: 0,
    };
    let reason = conn.run(&mut stream, initial).await;
    conn.cleanup();
    let Conn {
        client, bytes_in, ..
    } = conn;
    client.close(reason, bytes_in).await;
}

impl Conn {
    async fn run(&mut self, stream: &mut TcpStream, initial: Vec<u8>) -> CloseReason {
        let cfg = self.shard.cfg();
        let handshake_deadline =
            Instant::now() + Duration::from_secs(cfg.server.handshake_timeout_secs);
        let idle = Duration::from_secs(cfg.server.publish_idle_timeout_secs);
        // Sized by role: players send little (acks), publishers a lot; a player's memory is
        // what bounds how many one shard holds. Made when a runtime read needs it.
        let mut want = READ_BUF_START;
        let mut buf = Vec::new();
        let fd = stream.as_raw_fd();
        let mut next = Take::Wait;
        if !initial.is_empty() {
            if let Err(reason) = self.take_input(&initial).await {
                return reason;
            }
        }
        loop {
            // Merged reads: what is queued goes through the shard's scratch buffer straight
            // into the session (no read buffer of the connection's own).
            let got = match std::mem::replace(&mut next, Take::Wait) {
                Take::Now => match merged_read::recv_scratch(fd, |b| self.feed(b)) {
                    Ok(Scratch::Took(n, result)) => Some((result, n == merged_read::SCRATCH_LEN)),
                    Ok(Scratch::Eof) => return self.client.eof_reason(),
                    Ok(Scratch::Empty) => None, // nothing queued: wait for it
                    Err(e) => return read_failed(e),
                },
                Take::Tick(period) => match self.park(fd, period).await {
                    Woken::Fed(result) => Some((result, false)),
                    Woken::Quiet => None,
                    // A failed write shuts the socket down, which ends the read: say why.
                    _ if self.writer.failed() => return self.write_failed(),
                    Woken::Eof => return self.client.eof_reason(),
                    Woken::Failed(e) => return read_failed(e),
                },
                Take::Wait => None,
            };
            let (result, full) = match got {
                Some(got) => got,
                None => match self
                    .read_wait(stream, &mut buf, want, handshake_deadline, idle)
                    .await
                {
                    Ok(Some(got)) => got,
                    Ok(None) => continue, // a start deadline passed, the connection goes on
                    Err(reason) => return reason,
                },
            };
            if self.shard.is_stopping() {
                return CloseReason::ShuttingDown;
            }
            if let Err(reason) = self.drain(result).await {
                return reason;
            }
            // Merged reads: a publisher's socket fills until the shard's next read tick (a full
            // read goes on at once).
            let mr = self.shard.merged_read_period();
            let merged = !mr.is_zero() && !self.publishing.is_empty();
            if merged {
                next = if full { Take::Now } else { Take::Tick(mr) };
            }
            want = if merged {
                READ_BUF_START // only the wait for a quiet publisher's next bytes reads here
            } else if !self.publishing.is_empty() {
                READ_BUF_PUBLISHER
            } else if !self.playing.is_empty() {
                READ_BUF_PLAYER
            } else {
                READ_BUF_START
            };
            // A merged-read publisher reads through the shard's scratch buffer (and sleeps
            // parked): it keeps none of its own (2 KiB per publisher).
            if merged || buf.len() != want {
                buf = Vec::new();
            }
            if self.writer.failed() {
                return self.write_failed();
            }
        }
    }

    /// The close reason once the writer failed.
    fn write_failed(&self) -> CloseReason {
        CloseReason::Failed(ConnError::Write(self.writer.error().unwrap_or_default()))
    }

    /// Wait for the socket the ordinary way (a runtime read into `buf`, sized `want`, under the
    /// handshake, start or idle timeout) and feed what came. `Ok(None)`: a player's start
    /// deadline passed and was dealt with; `Err`: the connection ends.
    async fn read_wait(
        &mut self,
        stream: &mut TcpStream,
        buf: &mut Vec<u8>,
        want: usize,
        handshake_deadline: Instant,
        idle: Duration,
    ) -> Result<Option<(Result<(), SessionError>, bool)>, CloseReason> {
        let start_due = self.playing.iter().filter_map(|p| p.start_deadline).min();
        let timeout = if !self.session().handshake_done() {
            let left = handshake_deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CloseReason::Failed(ConnError::HandshakeTimeout));
            }
            Some(left)
        } else if let Some(due) = start_due {
            Some(
                due.saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            )
        } else if self.playing.is_empty() {
            Some(idle)
        } else {
            None // players may be silent for as long as they like
        };
        if buf.len() != want {
            *buf = vec![0u8; want];
        }
        let _ = stream.set_read_timeout(timeout);
        let read = stream.read(buf).await;
        // A failed write shuts the socket down, which ends the read: say why.
        if self.writer.failed() {
            return Err(self.write_failed());
        }
        let n = match read {
            Ok(0) => return Err(self.client.eof_reason()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut && start_due.is_some() => {
                return match self.check_starts() {
                    Some(reason) => Err(reason),
                    None => Ok(None),
                };
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(CloseReason::Failed(if self.session().handshake_done() {
                    ConnError::IdleTimeout
                } else {
                    ConnError::HandshakeTimeout
                }));
            }
            Err(e) => return Err(read_failed(e)),
        };
        Ok(Some((self.feed(&buf[..n]), n == buf.len())))
    }

    /// Park the session on the shard's read tick until something other than media needs this
    /// task (see `parked_publisher`).
    async fn park(&mut self, fd: RawFd, period: Duration) -> Woken {
        let Some(session) = self.session.take() else {
            return Woken::Fed(Ok(()));
        };
        let routes = self
            .publishing
            .iter()
            .map(|p| Route {
                stream_id: p.stream_id,
                key: p.key.clone(),
                publish_id: p.publish_id,
            })
            .collect();
        let parked = Parked::new(
            fd,
            self.shard.clone(),
            self.writer.clone(),
            self.client.in_counter(),
            routes,
            session,
        );
        let (woken, session, bytes_in) = parked.wait(period).await;
        self.session = Some(session);
        self.bytes_in += bytes_in;
        woken
    }

    /// The session (away only while parked, when this task sleeps).
    fn session(&mut self) -> &mut ServerSession {
        self.session
            .as_mut()
            .expect("the session is home whenever the task runs")
    }

    /// Bytes from the client into the session, and what they ask for carried out.
    async fn take_input(&mut self, input: &[u8]) -> Result<(), CloseReason> {
        let result = self.feed(input);
        self.drain(result).await
    }

    /// Bytes from the client into the session (no await: the bytes may be the shard's scratch
    /// buffer, which is free again once this returns).
    fn feed(&mut self, input: &[u8]) -> Result<(), SessionError> {
        self.bytes_in += input.len() as u64;
        self.client.add_bytes_in(input.len() as u64);
        self.session().handle_input(input)
    }

    /// Carry out what the session decoded; `result` is how feeding it ended.
    async fn drain(&mut self, mut result: Result<(), SessionError>) -> Result<(), CloseReason> {
        loop {
            // Replies and events queued before an error are still delivered.
            self.flush();
            while let Some(ev) = self.session().poll_event() {
                if let Err(cause) = self.handle_event(ev).await {
                    self.flush();
                    return Err(CloseReason::Failed(cause));
                }
                self.flush();
            }
            if let Err(e) = result {
                return Err(CloseReason::Failed(e.into()));
            }
            // A decided request may have left messages waiting behind it.
            if !self.session().resumable() {
                return Ok(());
            }
            result = self.session().handle_input(&[]);
        }
    }

    /// Refuse a publish with `NetStream.Publish.BadName` (the connection stays open).
    fn bad_name(&mut self, stream_id: u32, key: &StreamKey, why: &str) {
        let name = key.stream_name();
        self.session().reject_publish(
            stream_id,
            "NetStream.Publish.BadName",
            &format!("{name}: {why}"),
        );
        warn!(
            "shard={} client={} peer={} publish refused stream={key}: {why}",
            self.shard.id(),
            self.id,
            self.peer
        );
    }

    /// What every publish or play passes first: rules, secrets and hooks here, then (an edge
    /// with `token_traverse`) the origin. `Err`: the status code and refusal to answer with.
    async fn check_request(
        &self,
        role: ClientRole,
        name: &str,
        query: &str,
    ) -> Result<(), (String, Refusal)> {
        let (cfg, calls, info) = (self.shard.cfg(), &self.shard.global().calls, self.info());
        let (local, denied) = match role {
            ClientRole::Publish => (
                policy::check_publish(&cfg, calls, &info, name, query).await,
                "NetStream.Publish.Denied",
            ),
            ClientRole::Play => (
                policy::check_play(&cfg, calls, &info, name, query).await,
                "NetStream.Play.Failed",
            ),
        };
        local.map_err(|cause| (denied.to_string(), cause))?;
        self.traverse(name, query, role)
            .await
            .map_err(|e| traverse_refusal(e, denied))
    }

    /// On an edge with `token_traverse`, replay this client's connect and publish/play to an
    /// origin first (nothing to do elsewhere).
    async fn traverse(
        &self,
        name: &str,
        query: &str,
        role: ClientRole,
    ) -> Result<(), TraverseError> {
        let cfg = self.shard.cfg();
        let cl = cfg.cluster_for(&self.vhost);
        if !(cl.is_edge() && cl.token_traverse) {
            return Ok(());
        }
        let tc_query = self.tc_url.split_once('?').map_or("", |(_, q)| q);
        let stream = if query.is_empty() {
            name.to_string()
        } else {
            format!("{name}?{query}")
        };
        traverse::check(&self.shard, cl, &self.app, tc_query, &stream, role).await
    }

    /// Players of pulled streams past their start deadline: served ones stop waiting, the
    /// others get `NetStream.Play.StreamNotFound` and the connection ends.
    fn check_starts(&mut self) -> Option<CloseReason> {
        let now = Instant::now();
        let timeout = self.shard.cfg().cluster_for(&self.vhost).start_timeout();
        for i in 0..self.playing.len() {
            if self.playing[i].start_deadline.is_none_or(|d| d > now) {
                continue;
            }
            if self.shard.stream_live(&self.playing[i].key) {
                self.playing[i].start_deadline = None;
                continue;
            }
            let p = &self.playing[i];
            let (stream_id, key) = (p.stream_id, p.key.clone());
            self.session().reject_play(
                stream_id,
                "NetStream.Play.StreamNotFound",
                &format!("{} is not available", key.stream_name()),
            );
            self.flush();
            return Some(CloseReason::Failed(ConnError::StreamNotFound {
                key,
                waited_ms: timeout.as_millis() as u64,
            }));
        }
        None
    }

    fn flush(&mut self) {
        while let Some(b) = self.session().poll_transmit() {
            self.writer.send_control(b);
        }
    }

    fn key(&self, name: &str) -> StreamKey {
        StreamKey::new(&self.vhost, &self.app, name)
    }

    /// Carry out one session event; `Err(cause)` closes the connection.
    async fn handle_event(&mut self, ev: SessionEvent) -> Result<(), ConnError> {
        let sh = self.shard.clone();
        match ev {
            SessionEvent::HandshakeDone { kind } => {
                debug!("shard={} client={} handshake {kind:?}", sh.id(), self.id);
            }
            SessionEvent::ConnectRequested {
                app,
                tc_url,
                vhost,
                vhost_explicit,
            } => {
                self.app = app;
                // An explicit ?vhost= always counts; a tcUrl host only when it names a
                // configured vhost (so 127.0.0.1 and localhost reach the same streams).
                self.vhost = if vhost_explicit || sh.cfg().knows_vhost(&vhost) {
                    vhost
                } else {
                    DEFAULT_VHOST.to_string()
                };
                let shown = policy::redact(&tc_url);
                info!(
                    "shard={} client={} peer={} connect app={} vhost={} tcUrl={shown}",
                    sh.id(),
                    self.id,
                    self.peer,
                    self.app,
                    self.vhost
                );
                self.tc_url = tc_url;
                self.client.set_tc_url(shown.into());
                if let Err(cause) = Box::pin(policy::check_connect(
                    &sh.cfg(),
                    &sh.global().calls,
                    &self.info(),
                ))
                .await
                {
                    self.session().reject_connect(&cause.client);
                    return Err(ConnError::ConnectRefused(cause));
                }
                self.session().accept_connect();
            }
            SessionEvent::PublishRequested {
                stream_id,
                name,
                query,
                ..
            } => {
                let key = self.key(&name);
                let owner = sh.owner_of(&key);
                let checked = self.check_request(ClientRole::Publish, &name, &query);
                if let Err((code, cause)) = Box::pin(checked).await {
                    self.session()
                        .reject_publish(stream_id, &code, &cause.client);
                    return Err(ConnError::PublishRefused { key, cause });
                }
                if let Some(at) = Box::pin(cluster_gate::published_at_coworker(&sh, &key)).await {
                    self.bad_name(stream_id, &key, &format!("published at coworker {at}"));
                    return Ok(());
                }
                match Box::pin(sh.claim_publish(&key, self.id, false, &query)).await {
                    Ok(publish_id) => {
                        self.session().accept_publish(stream_id);
                        info!(
                            "shard={} client={} peer={} publish stream={key} owner={owner}",
                            sh.id(),
                            self.id,
                            self.peer
                        );
                        self.client
                            .set_kind(ClientKind::FmlePublish, Some(key.clone()));
                        forward_backend::spawn(&sh, &key, publish_id, &self.info(), &query);
                        self.publishing.push(Publishing {
                            stream_id,
                            key,
                            publish_id,
                            query,
                        });
                    }
                    Err(why) => self.bad_name(stream_id, &key, &why.to_string()),
                }
            }
            SessionEvent::PlayRequested {
                stream_id,
                name,
                query,
                reset,
                ..
            } => {
                let key = self.key(&name);
                let checked = self.check_request(ClientRole::Play, &name, &query);
                if let Err((code, cause)) = Box::pin(checked).await {
                    self.session().reject_play(stream_id, &code, &cause.client);
                    return Err(ConnError::PlayRefused { key, cause });
                }
                if let Some(to) = Box::pin(cluster_gate::redirect_for(&sh, &key, &query)).await {
                    // The 302 goes on message stream 0, as SRS sends it, not on `stream_id`.
                    self.flush();
                    let chunk = self.session().out_chunk_size();
                    self.writer.send_control(redirect_bytes(chunk, &to));
                    return Err(ConnError::Redirected {
                        key,
                        to: to.to_string(),
                    });
                }
                self.session().accept_play(stream_id, reset, &name);
                // Play.Start must reach the writer before the first media.
                self.flush();
                sh.add_player(
                    &key,
                    PlayerRef::new(self.id, stream_id, self.writer.clone(), PlayerKind::Rtmp),
                    &query,
                );
                info!(
                    "shard={} client={} peer={} play stream={key} owner={}",
                    sh.id(),
                    self.id,
                    self.peer,
                    sh.owner_of(&key)
                );
                self.client
                    .set_kind(ClientKind::RtmpPlay, Some(key.clone()));
                let start_deadline = cluster_gate::start_deadline(&sh, &key);
                self.playing.push(Playing {
                    stream_id,
                    key,
                    query,
                    start_deadline,
                });
            }
            SessionEvent::Media {
                stream_id,
                frame,
                metadata,
            } => {
                if let Some(p) = self.publishing.iter().find(|p| p.stream_id == stream_id) {
                    sh.publish_frame(&p.key, p.publish_id, frame, metadata);
                }
            }
            SessionEvent::PublishStopped { stream_id } => {
                if let Some(i) = self
                    .publishing
                    .iter()
                    .position(|p| p.stream_id == stream_id)
                {
                    let p = self.publishing.remove(i);
                    sh.unpublish(&p.key, p.publish_id);
                    let name = p.key.stream_name();
                    policy::notify(
                        &sh.cfg(),
                        &sh.global().calls,
                        "on_unpublish",
                        &self.info(),
                        name,
                        &p.query,
                    );
                    info!(
                        "shard={} client={} unpublish stream={}",
                        sh.id(),
                        self.id,
                        p.key
                    );
                }
            }
            SessionEvent::PlayStopped { stream_id } => {
                if let Some(i) = self.playing.iter().position(|p| p.stream_id == stream_id) {
                    let p = self.playing.remove(i);
                    sh.remove_player(&p.key, self.id, stream_id);
                    let name = p.key.stream_name();
                    policy::notify(
                        &sh.cfg(),
                        &sh.global().calls,
                        "on_stop",
                        &self.info(),
                        name,
                        &p.query,
                    );
                }
            }
        }
        Ok(())
    }

    /// The connection is gone: give up its publishes and player slots.
    fn cleanup(&mut self) {
        let cfg = self.shard.cfg();
        for p in &self.publishing {
            self.shard.unpublish(&p.key, p.publish_id);
            policy::notify(
                &cfg,
                &self.shard.global().calls,
                "on_unpublish",
                &self.info(),
                p.key.stream_name(),
                &p.query,
            );
        }
        for p in &self.playing {
            self.shard.remove_player(&p.key, self.id, p.stream_id);
            policy::notify(
                &cfg,
                &self.shard.global().calls,
                "on_stop",
                &self.info(),
                p.key.stream_name(),
                &p.query,
            );
        }
    }

    /// Who this client is, for policy decisions and hooks.
    fn info(&self) -> ClientInfo<'_> {
        ClientInfo {
            id: self.id.get(),
            ip: self.peer.ip(),
            vhost: &self.vhost,
            app: &self.app,
            tc_url: &self.tc_url,
        }
    }
}

/// The status code and refusal to give a client the origin did not accept.
fn traverse_refusal(e: TraverseError, fallback: &str) -> (String, Refusal) {
    let code = match &e {
        TraverseError::Refused { code, .. } if !code.is_empty() => code.clone(),
        _ => fallback.to_string(),
    };
    let client = match &e {
        TraverseError::Refused { description, .. } => description.clone(),
        TraverseError::NoOrigin(_) => "no origin could check the request".to_string(),
    };
    (
        code,
        Refusal {
            client,
            log: format!("token traverse: {e}"),
        },
    )
}
