//! A publisher: loops the FLV in real time, paced by its tag timestamps. Each lap adds the file's
//! loop period to every timestamp so both tracks keep increasing, and stream headers (metadata,
//! sequence headers) go out once. In fanout mode every audio/video message's send instant is
//! stamped on the latency board just before it is written.

use crate::conn::Conn;
use crate::flv::FlvMedia;
use crate::latency::fingerprint;
use crate::runner::{Role, ThreadCtx};
use futures_lite::{future, AsyncReadExt, FutureExt};
use serde::Serialize;
use shardcast::rtmp::client::{ClientConfig, ClientEvent, ClientSession};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How long connect + handshake + publish approval may take.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Grace for the goodbye (FCUnpublish, deleteStream) at the end of the run.
const STOP_FLUSH: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Default, Serialize)]
pub struct PublisherReport {
    pub stream: usize,
    pub published: bool,
    pub frames_sent: u64,
    pub bytes_sent: u64,
    pub laps: u64,
    /// Worst delay between a frame's due time and its send, in ms (the generator falling behind).
    pub max_lateness_ms: f64,
    pub disconnected: bool,
    pub error: Option<String>,
}

/// Where a publisher is in the file: tag index and completed laps.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cursor {
    pub index: usize,
    pub lap: u64,
}

impl Cursor {
    /// The next tag to send and its offset from the start of publishing in ms; stream headers
    /// are skipped after the first lap.
    pub fn next<'a>(&mut self, media: &'a FlvMedia) -> (&'a crate::flv::MediaTag, u64) {
        loop {
            if self.index >= media.tags.len() {
                self.index = 0;
                self.lap += 1;
            }
            let tag = &media.tags[self.index];
            if self.lap > 0 && tag.is_stream_header() {
                self.index += 1;
                continue;
            }
            let offset =
                u64::from(tag.frame.timestamp) + self.lap * u64::from(media.loop_period_ms);
            return (tag, offset);
        }
    }

    pub fn advance(&mut self) {
        self.index += 1;
    }
}

pub async fn run(ctx: Rc<ThreadCtx>, index: usize, report: Rc<RefCell<PublisherReport>>) {
    glommio::timer::sleep(ctx.until(ctx.shared.schedule.publisher_start(index))).await;
    if ctx.stopping(Role::Publisher) {
        return;
    }
    let result = publish(&ctx, index, &report).await;
    let mut r = report.borrow_mut();
    match result {
        Ok(()) => {}
        Err(_) if ctx.stopping(Role::Publisher) => {}
        Err(PubError::Closed) => r.disconnected = true,
        Err(PubError::Failed(e)) => r.error = Some(e),
    }
}

enum PubError {
    Closed,
    Failed(String),
}

async fn publish(
    ctx: &Rc<ThreadCtx>,
    index: usize,
    report: &Rc<RefCell<PublisherReport>>,
) -> Result<(), PubError> {
    let shared = ctx.shared.clone();
    let target = &shared.publish_targets[index];
    let fail = |what: &str, e: &dyn std::fmt::Display| PubError::Failed(format!("{what}: {e}"));
    let mut cfg: ClientConfig = target
        .config()
        .ok_or_else(|| fail("url", &"publishers speak RTMP only"))?;
    cfg.chunk_size = shared.args.chunk_size;
    let mut session = ClientSession::new(cfg, 0xb0b ^ index as u64, ctx.epoch_ms());
    let mut buf = vec![0u8; 4096];

    let start = async {
        let mut conn = Conn::open(ctx, target.addr, Role::Publisher)
            .await
            .map_err(|e| fail("connect", &e))?;
        conn.flush(&mut session)
            .await
            .map_err(|e| fail("write", &e))?;
        loop {
            let n = read(&mut conn, &mut buf).await?;
            session
                .handle_input(&buf[..n])
                .map_err(|e| fail("rtmp", &e))?;
            let started = std::iter::from_fn(|| session.poll_event())
                .any(|ev| ev == ClientEvent::PublishStarted);
            conn.flush(&mut session)
                .await
                .map_err(|e| fail("write", &e))?;
            if started {
                return Ok(conn);
            }
        }
    };
    let timeout = async {
        glommio::timer::sleep(START_TIMEOUT).await;
        Err(PubError::Failed("publish not approved within 10 s".into()))
    };
    let mut conn = start.or(timeout).await?;
    report.borrow_mut().published = true;

    let began = Instant::now();
    let mut cursor = Cursor::default();
    loop {
        if ctx.stopping(Role::Publisher) {
            session.unpublish();
            let _ = future::or(async { conn.flush(&mut session).await.map(drop) }, async {
                glommio::timer::sleep(STOP_FLUSH).await;
                Ok(())
            })
            .await;
            return Ok(());
        }
        let next_due = send_due(
            ctx,
            index,
            &mut session,
            &mut cursor,
            began,
            &mut report.borrow_mut(),
        );
        let sent = conn
            .flush(&mut session)
            .await
            .map_err(|e| fail("write", &e))?;
        report.borrow_mut().bytes_sent += sent as u64;

        // Wait for the next frame, serving whatever the server sends meanwhile (acks, pings).
        let wait = ctx
            .on_tick(next_due)
            .saturating_duration_since(Instant::now());
        let input = async { Some(read(&mut conn, &mut buf).await) };
        let tick = async {
            glommio::timer::sleep(wait).await;
            None
        };
        if let Some(n) = input.or(tick).await {
            let n = n?;
            if ctx.stopping(Role::Publisher) {
                continue;
            }
            session
                .handle_input(&buf[..n])
                .map_err(|e| fail("rtmp", &e))?;
            while session.poll_event().is_some() {}
        }
    }
}

/// Queues every frame that is due by now; returns when the next one is due. No await inside.
fn send_due(
    ctx: &ThreadCtx,
    index: usize,
    session: &mut ClientSession,
    cursor: &mut Cursor,
    began: Instant,
    r: &mut PublisherReport,
) -> Instant {
    let shared = &ctx.shared;
    let media = shared.media.as_ref().expect("publishers have media");
    let now = Instant::now();
    loop {
        let (tag, offset) = cursor.next(media);
        let due = began + Duration::from_millis(offset);
        if due > now {
            return due;
        }
        let mut frame = tag.frame.clone();
        frame.timestamp = shared.args.start_ts.wrapping_add(offset as u32);
        session.send_frame(&frame, tag.metadata);
        if let Some(b) = &shared.board {
            let fp = fingerprint(&frame.payload);
            b.record(
                index,
                frame.kind,
                frame.timestamp,
                fp,
                ctx.since_epoch_ns(now),
            );
        }
        r.frames_sent += 1;
        r.laps = cursor.lap;
        let late = now.saturating_duration_since(due).as_secs_f64() * 1000.0;
        r.max_lateness_ms = r.max_lateness_ms.max(late);
        cursor.advance();
    }
}

/// One read; a closed connection is an error here (the server hung up on a publisher).
async fn read(conn: &mut Conn, buf: &mut [u8]) -> Result<usize, PubError> {
    match conn.stream.read(buf).await {
        Ok(0) => Err(PubError::Closed),
        Ok(n) => Ok(n),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Err(PubError::Closed),
        Err(e) => Err(PubError::Failed(format!("read: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn cursor_loops_with_increasing_timestamps_and_headers_once() {
        let media = FlvMedia::parse(Bytes::from(crate::flv::tests::sample(10, 500))).unwrap();
        let mut c = Cursor::default();
        let mut last = [None::<u64>; 3];
        let mut headers = 0;
        let per_lap = media.tags.len() + 2 * media.media_tags();
        for _ in 0..per_lap {
            let (tag, off) = c.next(&media);
            if tag.is_stream_header() {
                headers += 1;
            } else {
                let k = tag.frame.kind as usize;
                if let Some(prev) = last[k] {
                    assert!(off > prev, "track {k} went from {prev} to {off}");
                }
                last[k] = Some(off);
            }
            c.advance();
        }
        assert_eq!(headers, 3, "metadata and two sequence headers, once");
        assert_eq!(c.lap, 2);
        // Video at 0, 40, ... 360 then 400 + 3 + 40 (period) for lap 1.
        assert_eq!(media.loop_period_ms, 9 * 40 + 3 + 40);
    }
}
