//! HTTP/1.1 request heads (parsed with `httparse`) and responses.

use thiserror::Error;

/// A parsed HTTP request head.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Request method, e.g. `GET`.
    pub method: String,
    /// Path without the query, percent-decoding not applied (stream names are plain).
    pub path: String,
    /// The part of the target after `?` (`""` if none).
    pub query: String,
    /// Keep the connection open after the response (HTTP/1.1 default, or per `Connection`).
    pub keep_alive: bool,
    /// `Content-Length`, when sent (and a number).
    pub content_length: Option<usize>,
    /// `Transfer-Encoding: chunked` was sent.
    pub chunked: bool,
}

/// Why a request head was refused.
#[derive(Debug, Error, PartialEq)]
pub enum HeadError {
    /// The head is larger than the limit (bytes); answered 431.
    #[error("request head larger than {0} bytes")]
    TooLarge(usize),
    /// More than 48 header fields; answered 431.
    #[error("too many header fields")]
    TooManyHeaders,
    /// Not a valid HTTP/1.x request head; answered 400.
    #[error("malformed request: {0}")]
    Malformed(String),
}

impl HeadError {
    /// The HTTP status to answer with: 431 or 400.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::TooLarge(_) | HeadError::TooManyHeaders => 431,
            HeadError::Malformed(_) => 400,
        }
    }
}

/// Parse a request head from the start of `buf`. `Ok(None)`: more bytes needed.
/// On success also returns the head's length.
pub fn parse_head(buf: &[u8], max: usize) -> Result<Option<(Request, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut req = httparse::Request::new(&mut headers);
    let status = match req.parse(buf) {
        Ok(s) => s,
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(e) => return Err(HeadError::Malformed(e.to_string())),
    };
    let len = match status {
        httparse::Status::Partial if buf.len() >= max => return Err(HeadError::TooLarge(max)),
        httparse::Status::Partial => return Ok(None),
        httparse::Status::Complete(n) if n > max => return Err(HeadError::TooLarge(max)),
        httparse::Status::Complete(n) => n,
    };
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let version_11 = req.version == Some(1);
    let connection = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("connection"))
        .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase());
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    let content_length = header("content-length").and_then(|v| v.parse().ok());
    let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let keep_alive = match connection.as_deref() {
        Some(v) if v.contains("close") => false,
        Some(v) if v.contains("keep-alive") => true,
        _ => version_11,
    };
    Ok(Some((
        Request {
            method: req.method.unwrap_or("GET").to_string(),
            path: path.to_string(),
            query: query.to_string(),
            keep_alive,
            content_length,
            chunked,
        },
        len,
    )))
}

/// Reason phrase for an HTTP status code (`Unknown` for ones this server does not send).
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// A whole response with a body.
pub fn response(status: u16, content_type: &str, body: &[u8], keep_alive: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nServer: shardcast/{}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nAccess-Control-Allow-Origin: *\r\nAccess-Control-Allow-Methods: GET, POST, DELETE, OPTIONS\r\nCache-Control: no-cache\r\nConnection: {}\r\n\r\n",
        reason(status),
        env!("CARGO_PKG_VERSION"),
        body.len(),
        if keep_alive { "keep-alive" } else { "close" },
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// The head of an open-ended chunked response (HTTP-FLV).
pub fn chunked_head(status: u16, content_type: &str) -> String {
    format!(
        "HTTP/1.1 {status} {}\r\nServer: shardcast/{}\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\nAccess-Control-Allow-Origin: *\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
        reason(status),
        env!("CARGO_PKG_VERSION"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_path_query_and_keep_alive() {
        let (r, n) = parse_head(
            b"GET /live/s.flv?vhost=v HTTP/1.1\r\nHost: x\r\n\r\nrest",
            8192,
        )
        .unwrap()
        .unwrap();
        assert_eq!(n, 45);
        assert_eq!(r.path, "/live/s.flv");
        assert_eq!(r.query, "vhost=v");
        assert!(r.keep_alive);
        let (r, _) = parse_head(b"GET / HTTP/1.0\r\n\r\n", 8192)
            .unwrap()
            .unwrap();
        assert!(!r.keep_alive);
        let (r, _) = parse_head(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 8192)
            .unwrap()
            .unwrap();
        assert!(!r.keep_alive);
    }

    #[test]
    fn partial_oversized_and_garbage() {
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHo", 8192), Ok(None));
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(2000));
        assert_eq!(
            parse_head(big.as_bytes(), 1024),
            Err(HeadError::TooLarge(1024))
        );
        let e = parse_head(b"\x01\x02\x03 nonsense\r\n\r\n", 8192).unwrap_err();
        assert_eq!(e.status(), 400);
        let many: String = (0..60).map(|i| format!("H{i}: v\r\n")).collect();
        let req = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(
            parse_head(req.as_bytes(), 8192),
            Err(HeadError::TooManyHeaders)
        );
    }

    #[test]
    fn response_has_length() {
        let r = String::from_utf8(response(404, "text/plain", b"nope", false)).unwrap();
        assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(r.contains("Content-Length: 4\r\n"));
        assert!(r.ends_with("\r\n\r\nnope"));
    }
}
