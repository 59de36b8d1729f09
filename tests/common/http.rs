//! A tiny HTTP/1.1 client on std's `TcpStream`: whole responses, and an open chunked stream for
//! HTTP-FLV. Response heads and chunked bodies go through the bench crate's parsers
//! (`shardcast_bench::httpflv`, the ones its HTTP-FLV players use), held here to what a server
//! must send: an `HTTP/1.x` status line, CRLF line ends, UTF-8 header text.

use super::tail;
use shardcast_bench::httpflv::{parse_head, BodyDecoder, BodyEvent, Framing};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A whole HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names as sent; look them up with [`HttpResponse::header`].
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// From connecting to the end of the body.
    pub elapsed: Duration,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; `Err` shows the body.
    pub fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_slice(&self.body)
            .map_err(|e| format!("body is not JSON ({e}): {:?}", tail(&self.text(), 5)))
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A response head: status, headers, the body's framing, and the head's length in bytes.
#[derive(Debug, Clone)]
pub struct HttpHead {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub framing: Framing,
    pub len: usize,
}

/// A response head at the start of `buf`; `Ok(None)` while it is incomplete. `Err` when it is
/// malformed, over 64 KiB, or not what a server must send (see the module doc).
pub fn parse_http_head(buf: &[u8]) -> Result<Option<HttpHead>, String> {
    let shown = || String::from_utf8_lossy(&buf[..buf.len().min(200)]).into_owned();
    let head = match parse_head(buf).map_err(|e| format!("{e}: {:?}", shown()))? {
        Some(h) => h,
        None if buf.len() > 64 * 1024 => return Err("response head larger than 64 KiB".into()),
        None => return Ok(None),
    };
    let raw = &buf[..head.len];
    let text = std::str::from_utf8(raw).map_err(|_| {
        format!(
            "response head is not UTF-8: {:?}",
            &raw[..raw.len().min(200)]
        )
    })?;
    if !text.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1.x status line: {:?}", shown()));
    }
    if text.matches('\n').count() != text.matches("\r\n").count() {
        return Err(format!(
            "a line of the response head ends in a bare LF: {text:?}"
        ));
    }
    let mut headers = Vec::new();
    for field in head.fields() {
        let (k, v) = field.map_err(|e| format!("{e} in {text:?}"))?;
        // Both are UTF-8: the whole head is.
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        headers.push((s(k), s(v)));
    }
    let framing = head.framing().map_err(|e| format!("{e} in {text:?}"))?;
    Ok(Some(HttpHead {
        status: head.status,
        headers,
        framing,
        len: head.len,
    }))
}

/// A response body as it arrives: whole chunks (chunked framing, CRLF only), or the bytes so
/// far (a Content-Length or read-to-close body).
#[derive(Debug)]
struct Body {
    decoder: BodyDecoder,
    chunked: bool,
    /// The chunk being read (or, not chunked, the bytes not yet taken).
    partial: Vec<u8>,
    /// Whole chunks not yet taken.
    chunks: VecDeque<Vec<u8>>,
    /// The body has ended: its last chunk, or Content-Length reached.
    done: bool,
}

impl Body {
    fn new(framing: Framing) -> Body {
        Body {
            decoder: BodyDecoder::new(framing).crlf_only(),
            chunked: framing == Framing::Chunked,
            partial: Vec::new(),
            chunks: VecDeque::new(),
            done: false,
        }
    }

    /// Feed raw body bytes; `Err` on broken chunk framing.
    fn push(&mut self, bytes: &[u8]) -> Result<(), String> {
        if self.done {
            return Ok(());
        }
        let (partial, chunks) = (&mut self.partial, &mut self.chunks);
        self.done = self
            .decoder
            .feed_events(bytes, |ev| {
                match ev {
                    BodyEvent::Data(d) => partial.extend_from_slice(d),
                    BodyEvent::ChunkEnd => chunks.push_back(std::mem::take(partial)),
                }
                Ok(())
            })
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// The next whole chunk (not chunked: whatever arrived), if there is one.
    fn next_chunk(&mut self) -> Option<Vec<u8>> {
        match self.chunks.pop_front() {
            Some(c) => Some(c),
            None if !self.chunked && !self.partial.is_empty() => {
                Some(std::mem::take(&mut self.partial))
            }
            None => None,
        }
    }

    /// Everything received and not yet taken.
    fn take_all(&mut self) -> Vec<u8> {
        let mut all: Vec<u8> = self.chunks.drain(..).flatten().collect();
        all.append(&mut self.partial);
        all
    }
}

/// Send `raw` bytes as a request on a new connection and read one whole response (to its
/// Content-Length, its last chunk, or the end of the connection), all within `timeout`.
/// A write the server cut short (it may answer and close before reading everything) is not an
/// error by itself: the answer is still read.
pub fn http_send(port: u16, raw: &[u8], timeout: Duration) -> Result<HttpResponse, String> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut sock = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout)
        .map_err(|e| format!("connect 127.0.0.1:{port}: {e}"))?;
    let _ = sock.set_nodelay(true);
    sock.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let write_error = sock.write_all(raw).err();
    // Everything read (for the error messages), and the body once the head is in.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut head: Option<(HttpHead, Body)> = None;
    loop {
        if head.is_none() {
            if let Some(h) = parse_http_head(&buf)? {
                let mut body = Body::new(h.framing);
                body.push(&buf[h.len..])?;
                head = Some((h, body));
            }
        }
        if let Some((h, body)) = &mut head {
            if body.done {
                return Ok(HttpResponse {
                    status: h.status,
                    headers: h.headers.clone(),
                    body: body.take_all(),
                    elapsed: started.elapsed(),
                });
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "no whole response within {timeout:?}; got {} bytes: {:?}",
                buf.len(),
                String::from_utf8_lossy(&buf[..buf.len().min(300)])
            ));
        }
        sock.set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        let ended = match sock.read(&mut chunk) {
            Ok(0) => Some("end of connection".to_string()),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if let Some((_, body)) = &mut head {
                    body.push(&chunk[..n])?;
                }
                None
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                None
            }
            Err(e) => Some(format!("read: {e}")),
        };
        if let Some(why) = ended {
            return match head {
                // No length and not chunked: the body runs to the end of the connection.
                Some((h, mut body)) if h.framing == Framing::UntilClose => Ok(HttpResponse {
                    status: h.status,
                    headers: h.headers,
                    body: body.take_all(),
                    elapsed: started.elapsed(),
                }),
                _ => Err(format!(
                    "{why} before a whole response (write error: {write_error:?}); got {} bytes: {:?}",
                    buf.len(),
                    String::from_utf8_lossy(&buf[..buf.len().min(300)])
                )),
            };
        }
    }
}

/// `METHOD path HTTP/1.1` with `Connection: close`, read to the end of the response.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    timeout: Duration,
) -> Result<HttpResponse, String> {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: shardcast-e2e\r\nAccept: */*\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    http_send(port, req.as_bytes(), timeout)
}

/// `GET path`, panicking when no whole response comes within 10 s.
pub fn http_get(port: u16, path: &str) -> HttpResponse {
    http_request(port, "GET", path, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// An API call: status and JSON body (panics when the body is not JSON).
pub fn api_call(port: u16, method: &str, path: &str) -> (u16, serde_json::Value) {
    let r = http_request(port, method, path, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let v = r
        .json()
        .unwrap_or_else(|e| panic!("{method} {path} -> {}: {e}", r.status));
    (r.status, v)
}

/// The clients `GET /api/v1/clients` on `port` lists with API type `kind` (e.g. "rtmp-play").
#[allow(dead_code)]
pub fn clients_of_type(port: u16, kind: &str) -> Vec<serde_json::Value> {
    let (status, v) = api_call(port, "GET", "/api/v1/clients");
    assert_eq!(status, 200, "{v}");
    v["clients"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c["type"] == kind)
        .collect()
}

/// An open streaming response (HTTP-FLV): the head is read, the body comes chunk by chunk.
pub struct HttpStream {
    pub sock: TcpStream,
    /// 0 until the head is read.
    pub status: u16,
    pub headers: Vec<(String, String)>,
    head_buf: Vec<u8>,
    /// The body, once the head is read.
    body: Option<Body>,
}

impl HttpStream {
    /// Connect and send `GET path`, without waiting for an answer.
    pub fn request(port: u16, path: &str) -> Result<HttpStream, String> {
        let mut sock =
            TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(5))
                .map_err(|e| format!("connect 127.0.0.1:{port}: {e}"))?;
        let _ = sock.set_nodelay(true);
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: shardcast-e2e\r\nAccept: */*\r\n\r\n"
        );
        sock.write_all(req.as_bytes())
            .map_err(|e| format!("write request: {e}"))?;
        Ok(HttpStream {
            sock,
            status: 0,
            headers: Vec::new(),
            head_buf: Vec::new(),
            body: None,
        })
    }

    /// Read the response head within `timeout`.
    pub fn read_head(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(h) = parse_http_head(&self.head_buf)? {
                let mut body = Body::new(h.framing);
                body.push(&self.head_buf[h.len..])?;
                self.status = h.status;
                self.headers = h.headers;
                self.body = Some(body);
                self.head_buf.clear();
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "no response head within {timeout:?}; got {:?}",
                    String::from_utf8_lossy(&self.head_buf)
                ));
            }
            self.sock
                .set_read_timeout(Some(left))
                .map_err(|e| e.to_string())?;
            match self.sock.read(&mut chunk) {
                Ok(0) => {
                    return Err(format!(
                        "closed before a response head; got {:?}",
                        String::from_utf8_lossy(&self.head_buf)
                    ))
                }
                Ok(n) => self.head_buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(format!("read head: {e}")),
            }
        }
    }

    /// `GET path` and read the response head within `timeout`.
    pub fn open(port: u16, path: &str, timeout: Duration) -> Result<HttpStream, String> {
        let mut s = HttpStream::request(port, path)?;
        s.read_head(timeout)?;
        Ok(s)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The next chunk of the body within `timeout`. `Err` on timeout, on the end of the body
    /// or the connection, and on broken chunk framing.
    pub fn next_chunk(&mut self, timeout: Duration) -> Result<Vec<u8>, String> {
        if self.body.is_none() {
            self.read_head(timeout)?;
        }
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 16 * 1024];
        loop {
            let body = self.body.as_mut().expect("the head was read");
            if let Some(c) = body.next_chunk() {
                return Ok(c);
            }
            if body.done {
                return Err("the body ended (last chunk)".into());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no chunk within {timeout:?}"));
            }
            self.sock
                .set_read_timeout(Some(left))
                .map_err(|e| e.to_string())?;
            match self.sock.read(&mut buf) {
                Ok(0) => return Err("connection closed mid-body".into()),
                Ok(n) => body.push(&buf[..n])?,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(format!("read body: {e}")),
            }
        }
    }
}
