//! A proxy's client (`[cluster] mode = "proxy"`): the handshake and `connect` are answered here;
//! a `publish` is placed on the least-loaded live origin and the stream claimed in the shared
//! registry, a `play` goes to the origin its stream is mapped to. The client's request is then
//! replayed to that origin ([`proxy_upstream`](super::proxy_upstream)) and the client gets the
//! origin's answer: Publish.Start / Play.Start, or the origin's refusal. From there media is
//! relayed both ways until either side ends; a publish's claim is released at the end. A
//! publisher's chunks go to the origin spliced when the legs allow it
//! ([`proxy_publish`](super::proxy_publish)), a player's come from it spliced
//! ([`proxy_upstream`](super::proxy_upstream)).
//!
//! Registry answers a client gets at once: a stream another proxy's publisher holds is
//! `NetStream.Publish.BadName`; a play of an unmapped stream, or of one whose origin stopped
//! heartbeating, is `NetStream.Play.StreamNotFound`.

use super::conn::ClientConn;
use super::conns::Slot;
use super::ids::ConnId;
use super::key::{StreamKey, DEFAULT_VHOST};
use super::kinds::{ClientKind, CloseReason, ConnError};
use super::proxy_publish::{self, PublishLeg};
use super::proxy_upstream::{self, PlayerSink, Upstream, UpstreamError};
use super::shard::Shard;
use super::writer::ConnWriter;
use crate::control_plane::registry::{RegistryAnswer, RegistryFailure, RegistryRequest};
use crate::policy::Refusal;
use crate::rtmp::client::{ClientConfig, ClientRole};
use crate::rtmp::message::csid;
use crate::rtmp::session::{ServerSession, SessionEvent};
use futures_lite::AsyncReadExt;
use glommio::net::TcpStream;
use log::info;
use std::cell::Cell;
use std::net::SocketAddr;
use std::os::unix::io::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// A publisher relay whose origin takes nothing for this long behind is dropped.
const MAX_UPSTREAM_QUEUE: usize = 64 << 20;

/// The session being relayed.
struct Relay {
    up: Rc<Upstream>,
    /// The client's chunk size as the relay announced it (a splice announces the origin's).
    chunk_size: Rc<Cell<u32>>,
    role: ClientRole,
    stream_id: u32,
    key: StreamKey,
    reader: glommio::Task<TcpStream>,
    /// A publisher's leg towards the origin (a player's is always `Rechunk` here: its
    /// splice runs in the reader task).
    leg: PublishLeg,
}

struct Conn {
    client: ClientConn,
    shard: Rc<Shard>,
    id: ConnId,
    peer: SocketAddr,
    session: ServerSession,
    writer: Rc<ConnWriter>,
    client_fd: i32,
    app: String,
    vhost: String,
    tc_url: String,
    bytes_in: u64,
    relay: Option<Relay>,
    /// A publish claim to release at the end.
    claimed: Option<StreamKey>,
}

/// Serve one accepted connection as a proxy until either side closes.
pub async fn serve(
    shard: Rc<Shard>,
    mut stream: TcpStream,
    id: ConnId,
    peer: SocketAddr,
    slot: Slot,
    initial: Vec<u8>,
) {
    let cfg = shard.cfg();
    let writer = shard.new_relay_writer(true);
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
        session: super::conn::rtmp_session(&cfg, id),
        writer,
        client_fd: stream.as_raw_fd(),
        app: String::new(),
        vhost: DEFAULT_VHOST.to_string(),
        tc_url: String::new(),
        bytes_in: 0,
        relay: None,
        claimed: None,
    };
    let mut reason = conn.run(&mut stream, initial).await;
    if let Some(r) = conn.relay.take() {
        let ended = r.up.ended.borrow().clone();
        if let (Some(why), CloseReason::ClosedByPeer) = (&ended, &reason) {
            if r.role == ClientRole::Play && r.up.stream_eof.get() {
                let size = r.chunk_size.get();
                if size != conn.session.out_chunk_size() {
                    conn.session.adopt_out_chunk_size(size);
                }
                conn.session
                    .unpublish_notify(r.stream_id, r.key.stream_name());
                conn.flush();
            }
            reason = CloseReason::Failed(ConnError::Upstream {
                origin: r.up.origin.clone(),
                why: why.clone(),
            });
        }
        if r.role == ClientRole::Publish {
            r.up.session.borrow_mut().unpublish();
            r.up.flush();
        }
        r.up.close().await;
        // The reader ends once the origin socket is shut down; its socket is dropped here.
        drop(r.reader.await);
        let p = r.up.path.get();
        info!(
            "shard={} client={id} peer={peer} proxy {}relay ended stream={} path={} rechunked={} as_is={} rewritten={}",
            shard.id(),
            match r.role {
                ClientRole::Publish => "publish ",
                ClientRole::Play => "",
            },
            r.key,
            p.path.name(),
            p.rechunked,
            p.as_is,
            p.rewritten
        );
    }
    if let Some(key) = conn.claimed.take() {
        shard
            .global()
            .calls
            .registry_notice(RegistryRequest::Release {
                key: key.to_string(),
            });
    }
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
        let mut buf = vec![0u8; 64 * 1024];
        if !initial.is_empty() {
            if let Err(reason) = self.take_input(&initial).await {
                return reason;
            }
        }
        loop {
            let timeout = match &self.relay {
                _ if !self.session.handshake_done() => {
                    let left = handshake_deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return CloseReason::Failed(ConnError::HandshakeTimeout);
                    }
                    Some(left)
                }
                Some(r) if r.role == ClientRole::Play => None,
                _ => Some(idle),
            };
            let _ = stream.set_read_timeout(timeout);
            let read = stream.read(&mut buf).await;
            if let Some(e) = self.writer.error() {
                return CloseReason::Failed(ConnError::Write(e));
            }
            let n = match read {
                Ok(0) => return self.client.eof_reason(),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    return CloseReason::ResetByPeer
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return CloseReason::Failed(if self.session.handshake_done() {
                        ConnError::IdleTimeout
                    } else {
                        ConnError::HandshakeTimeout
                    });
                }
                Err(e) => return CloseReason::Read(e),
            };
            if self.shard.is_stopping() {
                return CloseReason::ShuttingDown;
            }
            if let Err(reason) = self.take_input(&buf[..n]).await {
                return reason;
            }
            if let Some(r) = &self.relay {
                if r.up.ended.borrow().is_some() {
                    return CloseReason::ClosedByPeer;
                }
                if r.up.writer.queued_bytes() > MAX_UPSTREAM_QUEUE {
                    return CloseReason::Failed(ConnError::Upstream {
                        origin: r.up.origin.clone(),
                        why: "the origin takes the stream too slowly".into(),
                    });
                }
            }
        }
    }

    async fn take_input(&mut self, mut input: &[u8]) -> Result<(), CloseReason> {
        self.adopt_chunk_size();
        self.bytes_in += input.len() as u64;
        self.client.add_bytes_in(input.len() as u64);
        if let Some(Relay {
            leg: PublishLeg::Splice(sp),
            up,
            ..
        }) = &mut self.relay
        {
            let up = up.clone();
            let result = proxy_publish::feed(sp, input, &mut self.session, &*up);
            self.flush();
            while let Some(ev) = self.session.poll_event() {
                if let Err(cause) = self.handle_event(ev).await {
                    self.flush();
                    return Err(CloseReason::Failed(cause));
                }
                self.flush();
            }
            up.flush();
            return result.map_err(|e| CloseReason::Failed(e.into()));
        }
        loop {
            let result = self.session.handle_input(input);
            input = &[];
            self.flush();
            while let Some(ev) = self.session.poll_event() {
                if let Err(cause) = self.handle_event(ev).await {
                    self.flush();
                    return Err(CloseReason::Failed(cause));
                }
                self.flush();
            }
            if let Some(r) = &self.relay {
                r.up.flush();
            }
            if let Err(e) = result {
                return Err(CloseReason::Failed(e.into()));
            }
            if !self.session.resumable() {
                break;
            }
        }
        self.try_publish_splice();
        Ok(())
    }

    /// A publisher's relay whose leg is undecided: splice from here if the legs allow it and
    /// the session is at a message boundary.
    fn try_publish_splice(&mut self) {
        let Some(r) = &mut self.relay else { return };
        if !matches!(r.leg, PublishLeg::Pending) {
            return;
        }
        let cfg = self.shard.cfg();
        let label = format!(
            "shard={} client={} stream={}",
            self.shard.id(),
            self.id,
            r.key
        );
        let limits = super::conn::decoder_limits(&cfg);
        let started = PublishLeg::try_start(
            &self.session,
            &r.up,
            r.stream_id,
            cfg.proxy.relay_splice,
            limits,
        );
        r.leg = match started {
            Ok(PublishLeg::Splice(sp)) => {
                info!(
                    "{label} proxy publish relay path=splice chunk_size={} (after {} re-chunked messages)",
                    sp.chunk_size(),
                    r.up.path.get().rechunked
                );
                PublishLeg::Splice(sp)
            }
            Ok(leg) => leg,
            Err(why) => {
                info!("{label} proxy publish relay path=rechunk ({why})");
                PublishLeg::Rechunk
            }
        };
    }

    /// A splice announced the origin's chunk size to the client: chunk what this session
    /// writes from now on at that size too.
    fn adopt_chunk_size(&mut self) {
        if let Some(r) = &self.relay {
            let size = r.chunk_size.get();
            if size != self.session.out_chunk_size() {
                self.session.adopt_out_chunk_size(size);
            }
        }
    }

    fn flush(&mut self) {
        while let Some(b) = self.session.poll_transmit() {
            self.writer.send_control(b);
        }
    }

    async fn handle_event(&mut self, ev: SessionEvent) -> Result<(), ConnError> {
        match ev {
            SessionEvent::HandshakeDone { .. } => {}
            SessionEvent::ConnectRequested {
                app,
                tc_url,
                vhost,
                vhost_explicit,
            } => {
                self.app = app;
                self.vhost = if vhost_explicit || self.shard.cfg().knows_vhost(&vhost) {
                    vhost
                } else {
                    DEFAULT_VHOST.to_string()
                };
                let shown = crate::policy::redact(&tc_url);
                info!(
                    "shard={} client={} peer={} connect app={} vhost={} tcUrl={shown}",
                    self.shard.id(),
                    self.id,
                    self.peer,
                    self.app,
                    self.vhost
                );
                self.client.set_tc_url(shown.into());
                self.tc_url = tc_url;
                // The origin answers the replayed connect; this one only opens the session.
                self.session.accept_connect();
            }
            SessionEvent::PublishRequested {
                stream_id,
                name,
                query,
                ..
            } => Box::pin(self.start(ClientRole::Publish, stream_id, &name, &query, true)).await?,
            SessionEvent::PlayRequested {
                stream_id,
                name,
                query,
                reset,
                ..
            } => Box::pin(self.start(ClientRole::Play, stream_id, &name, &query, reset)).await?,
            SessionEvent::Media {
                frame, metadata, ..
            } => {
                if let Some(r) = &mut self.relay {
                    r.up.session.borrow_mut().send_frame(&frame, metadata);
                    let mut p = r.up.path.get();
                    p.rechunked += 1;
                    r.up.path.set(p);
                    if let PublishLeg::Splice(sp) = &mut r.leg {
                        // Split out of an aggregate while splicing: the origin's header on
                        // those chunk streams is the session's now.
                        for c in [csid::AUDIO, csid::VIDEO] {
                            sp.peer_wrote(c);
                        }
                    }
                }
            }
            SessionEvent::PublishStopped { .. } | SessionEvent::PlayStopped { .. } => {
                if let Some(r) = &self.relay {
                    *r.up.ended.borrow_mut() = Some("the client stopped".into());
                }
            }
        }
        Ok(())
    }

    /// Ask the registry, open the origin's leg and answer the client with its answer.
    async fn start(
        &mut self,
        role: ClientRole,
        stream_id: u32,
        name: &str,
        query: &str,
        reset: bool,
    ) -> Result<(), ConnError> {
        let sh = self.shard.clone();
        let key = StreamKey::new(&self.vhost, &self.app, name);
        let (bad_name, not_found) = match role {
            ClientRole::Publish => ("NetStream.Publish.BadName", "NetStream.Publish.Denied"),
            ClientRole::Play => ("NetStream.Play.Failed", "NetStream.Play.StreamNotFound"),
        };
        let refuse = |this: &mut Conn, code: &str, client: String, log: String| {
            match role {
                ClientRole::Publish => this.session.reject_publish(stream_id, code, &client),
                ClientRole::Play => this.session.reject_play(stream_id, code, &client),
            }
            let cause = Refusal { client, log };
            match role {
                ClientRole::Publish => ConnError::PublishRefused {
                    key: key.clone(),
                    cause,
                },
                ClientRole::Play => ConnError::PlayRefused {
                    key: key.clone(),
                    cause,
                },
            }
        };
        if self.relay.is_some() {
            return Err(refuse(
                self,
                bad_name,
                "one stream per connection through a proxy".into(),
                "a second publish/play on one connection".into(),
            ));
        }
        let req = match role {
            ClientRole::Publish => RegistryRequest::Publish {
                key: key.to_string(),
            },
            ClientRole::Play => RegistryRequest::Play {
                key: key.to_string(),
            },
        };
        let origin = match sh.global().calls.registry(req).await {
            Ok(RegistryAnswer::Origin(o)) => o,
            Ok(other) => {
                let log = format!("unexpected registry answer {other:?}");
                return Err(refuse(self, not_found, "proxy error".into(), log));
            }
            Err(f) => {
                let code = match (&f, role) {
                    (RegistryFailure::AlreadyMapped { .. }, _) => "NetStream.Publish.BadName",
                    (RegistryFailure::NotFound | RegistryFailure::OriginDead(_), _) => not_found,
                    (_, ClientRole::Publish) => "NetStream.Publish.Denied",
                    (_, ClientRole::Play) => "NetStream.Play.Failed",
                };
                let client = format!("{name}: {f}");
                return Err(refuse(self, code, client, format!("registry: {f}")));
            }
        };
        if role == ClientRole::Publish {
            self.claimed = Some(key.clone());
        }
        let cfg = self.upstream_config(&origin.rtmp, role, name, query);
        let timeout = sh.cfg().proxy.connect_timeout();
        let client = sh.cfg().proxy.send_proxy_protocol.then_some(self.peer);
        let opened = proxy_upstream::open(&sh, &origin, cfg, timeout, client).await;
        let (up, up_stream, after) = match opened {
            Ok(x) => x,
            Err(e) => {
                let (code, client) = match &e {
                    UpstreamError::Refused {
                        code, description, ..
                    } if !code.is_empty() => (code.clone(), description.clone()),
                    _ => (not_found.to_string(), format!("{name}: origin unavailable")),
                };
                return Err(refuse(self, &code, client, format!("origin {e}")));
            }
        };
        let chunk_size = Rc::new(Cell::new(self.session.out_chunk_size()));
        let sink = match role {
            ClientRole::Publish => {
                self.session.accept_publish(stream_id);
                self.client
                    .set_kind(ClientKind::FmlePublish, Some(key.clone()));
                None
            }
            ClientRole::Play => {
                self.session.accept_play(stream_id, reset, name);
                self.client
                    .set_kind(ClientKind::RtmpPlay, Some(key.clone()));
                Some(PlayerSink {
                    writer: self.writer.clone(),
                    stream_id,
                    chunk_size: chunk_size.clone(),
                    has_video: Cell::new(false),
                    splice: sh.cfg().proxy.relay_splice,
                    label: format!("shard={} client={} stream={key}", sh.id(), self.id),
                })
            }
        };
        // Play.Start before the first media.
        self.flush();
        if let Some(s) = &sink {
            for ev in after {
                s.relay(ev, &up);
            }
        }
        info!(
            "shard={} client={} peer={} proxy {} stream={key} origin={} ({})",
            sh.id(),
            self.id,
            self.peer,
            match role {
                ClientRole::Publish => "publish",
                ClientRole::Play => "play",
            },
            origin.id,
            up.origin
        );
        self.client.set_relay(up.path.clone());
        let reader = glommio::spawn_local(proxy_upstream::read_origin(
            up.clone(),
            up_stream,
            sink,
            self.client_fd,
        ));
        self.relay = Some(Relay {
            up,
            chunk_size,
            role,
            stream_id,
            key,
            reader,
            leg: match role {
                ClientRole::Publish => PublishLeg::Pending,
                ClientRole::Play => PublishLeg::Rechunk,
            },
        });
        Ok(())
    }

    /// The client's request as the origin should see it: the origin's address, the client's
    /// app and tcUrl query, its stream name and query, and the vhost when not the default.
    fn upstream_config(
        &self,
        origin: &str,
        role: ClientRole,
        name: &str,
        query: &str,
    ) -> ClientConfig {
        let mut tc_query = self
            .tc_url
            .split_once('?')
            .map_or(String::new(), |(_, q)| q.to_string());
        if self.vhost != DEFAULT_VHOST && !tc_query.contains("vhost=") {
            if !tc_query.is_empty() {
                tc_query.push('&');
            }
            tc_query.push_str(&format!("vhost={}", self.vhost));
        }
        let tc_url = if tc_query.is_empty() {
            format!("rtmp://{origin}/{}", self.app)
        } else {
            format!("rtmp://{origin}/{}?{tc_query}", self.app)
        };
        ClientConfig {
            app: self.app.clone(),
            tc_url,
            stream: if query.is_empty() {
                name.to_string()
            } else {
                format!("{name}?{query}")
            },
            role,
            chunk_size: self.shard.cfg().rtmp.chunk_size,
            digest_handshake: false,
            buffer_ms: 1000,
        }
    }
}
