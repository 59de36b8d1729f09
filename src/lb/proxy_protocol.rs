//! The PROXY protocol (HAProxy's `proxy-protocol.txt`, versions 1 and 2) without I/O: a decoder
//! fed the first bytes of a connection, and the encoders a proxy needs for its own upstream
//! connections.
//!
//! A balancer in TCP mode hides the client: the socket's peer is the balancer. With the PROXY
//! protocol it prepends one header carrying the client's address, and the RTMP or HTTP bytes follow
//! unchanged. The decoder says where the header ends so those bytes are kept.
//!
//! The spec forbids guessing whether a header is present; shardcast's `optional` mode does guess
//! (for a migration, from trusted balancers only, see [`super::trust`]). The guess is safe because
//! neither RTMP (C0 is `0x03`) nor HTTP can begin like a header: the answer is [`Parsed::NotProxy`]
//! as soon as the first bytes leave both prefixes, and an error only once they are unmistakably a
//! header (`PROXY ` complete, or the v2 signature up to its NUL byte).
//!
//! Version 2 families other than TCP over IPv4/IPv6 (UDP, UNIX, UNSPEC) are accepted with no
//! usable address: the spec lets a receiver fall back to UNSPEC ("use the real connection's
//! addresses") for combinations it does not support, and an RTMP client is never behind them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use thiserror::Error;

/// The 12 bytes every version 2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Longest version 1 line, CRLF included: `PROXY UNKNOWN` with two full IPv6 addresses and ports.
/// A line without CRLF within this many bytes is invalid.
pub const V1_MAX_LEN: usize = 107;

/// Largest version 2 header accepted, its fixed 16 bytes included. The spec sizes headers to fit
/// the smallest segment every TCP host must take (576 - 40 = 536 bytes) so they arrive at once;
/// HAProxy's IPv6 addresses (36 bytes) plus the TLVs it sends by default (none, or a few dozen
/// bytes of ALPN/authority/unique-id) fit many times over, while a peer cannot make us buffer 64 KiB.
pub const V2_MAX_LEN: usize = 536;

/// The fixed part of a version 2 header: signature, version/command, family, length.
const V2_FIXED: usize = 16;

const V1_PREFIX: &[u8; 6] = b"PROXY ";

/// Signature bytes after which the input can only be a (possibly broken) v2 header: `\r\n\r\n`
/// could still be blank lines before an HTTP request line, the NUL at offset 4 cannot.
const V2_COMMITTED: usize = 5;

/// Address bytes of one (source, destination) pair per v2 family.
const V2_INET_LEN: usize = 4 + 4 + 2 + 2;
const V2_INET6_LEN: usize = 16 + 16 + 2 + 2;
const V2_UNIX_LEN: usize = 108 + 108;

/// Which wire format carried the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The text line, `PROXY TCP4 …\r\n`.
    V1,
    /// The binary header starting with [`V2_SIGNATURE`].
    V2,
}

/// What the balancer says this connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// The balancer opened the connection itself (a health check): the socket's own addresses
    /// are the real ones. Only version 2 has it.
    Local,
    /// Relayed on behalf of a client whose addresses the header carries (if its family has any).
    Proxy,
}

/// The proxied transport and address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP over IPv4: addresses present.
    Tcp4,
    /// TCP over IPv6: addresses present.
    Tcp6,
    /// UDP over IPv4 (v2 only): accepted, addresses not used.
    Udp4,
    /// UDP over IPv6 (v2 only): accepted, addresses not used.
    Udp6,
    /// A UNIX stream socket (v2 only): accepted, no IP address.
    UnixStream,
    /// A UNIX datagram socket (v2 only): accepted, no IP address.
    UnixDgram,
    /// v1 `UNKNOWN`, v2 `UNSPEC`, or any v2 `LOCAL` header (whose family is ignored).
    Unknown,
}

/// A decoded header. TLVs after the v2 addresses are skipped, not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// Wire format.
    pub version: Version,
    /// `LOCAL` (health check) or `PROXY`.
    pub command: Command,
    /// Transport and family.
    pub transport: Transport,
    /// The client's address and port, for `PROXY` over TCP4/TCP6.
    pub source: Option<SocketAddr>,
    /// The address the client connected to (the balancer's frontend), likewise.
    pub destination: Option<SocketAddr>,
}

impl ProxyHeader {
    /// The client address to use instead of the socket's peer: `Some` only for a `PROXY` command
    /// that carried TCP addresses. `None` means "use the socket's own addresses".
    pub fn client(&self) -> Option<SocketAddr> {
        match self.command {
            Command::Proxy => self.source,
            Command::Local => None,
        }
    }
}

/// Result of [`parse`] over the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A prefix of a header: read more and parse again from the start.
    NeedMore,
    /// These bytes are not a PROXY header at all (RTMP, HTTP, …); nothing was consumed.
    NotProxy,
    /// A complete header in the first `consumed` bytes; the rest belongs to RTMP/HTTP.
    Done {
        /// The header.
        header: ProxyHeader,
        /// Its length in bytes.
        consumed: usize,
    },
}

/// Why a header was refused. Every variant means "close the connection".
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ProxyError {
    /// No CRLF within the first [`V1_MAX_LEN`] bytes.
    #[error("PROXY v1 line has no CRLF within {V1_MAX_LEN} bytes")]
    V1TooLong,
    /// A CR or LF that is not part of a CRLF.
    #[error("PROXY v1 line ends with a lone CR or LF")]
    V1BadLineEnd,
    /// The word after `PROXY ` is not one of the three defined.
    #[error("PROXY v1 protocol {0:?} is not TCP4, TCP6 or UNKNOWN")]
    V1UnknownProtocol(String),
    /// Not exactly four single-space-separated fields after `TCP4`/`TCP6`.
    #[error("PROXY v1 line has {0} fields after the protocol, wants 4 separated by single spaces")]
    V1FieldCount(usize),
    /// An address that does not parse as the announced family.
    #[error("PROXY v1 address {0:?} is not a canonical {1} address")]
    V1BadAddress(String, &'static str),
    /// A port that is not a plain decimal in range.
    #[error("PROXY v1 port {0:?} is not a decimal in 0..=65535 without leading zeros")]
    V1BadPort(String),
    /// The bytes committed to a v2 signature (past its NUL) and then left it.
    #[error("PROXY v2 signature is wrong")]
    V2BadSignature,
    /// The high nibble of byte 13 is not 2.
    #[error("PROXY v2 version {0} (only 2 is defined)")]
    V2BadVersion(u8),
    /// The low nibble of byte 13 is neither LOCAL (0) nor PROXY (1).
    #[error("PROXY v2 command {0:#x} is neither LOCAL nor PROXY")]
    V2BadCommand(u8),
    /// A family nibble above 3 or a protocol nibble above 2 (PROXY command only).
    #[error("PROXY v2 family/protocol byte {0:#04x} is not defined")]
    V2BadFamily(u8),
    /// The length field is smaller than the family's addresses.
    #[error("PROXY v2 declares {declared} address bytes, family {family:#04x} needs {needed}")]
    V2ShortAddress {
        /// The family/protocol byte.
        family: u8,
        /// The length field.
        declared: u16,
        /// Bytes that family's addresses take.
        needed: usize,
    },
    /// The header would exceed [`V2_MAX_LEN`].
    #[error("PROXY v2 header of {0} bytes is over the {V2_MAX_LEN}-byte cap")]
    V2TooLong(usize),
    /// [`ProxyDecoder::feed`] after it already answered.
    #[error("ProxyDecoder fed again after it finished")]
    Finished,
}

/// Parse the bytes received so far on a connection (always from its first byte). Stateless: the
/// caller keeps its read buffer, calls again with more bytes after [`Parsed::NeedMore`], and drops
/// `consumed` bytes after [`Parsed::Done`]. Decides within [`V2_MAX_LEN`] bytes at the latest.
pub fn parse(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let Some(&first) = buf.first() else {
        return Ok(Parsed::NeedMore);
    };
    match first {
        b'P' => {
            let n = buf.len().min(V1_PREFIX.len());
            if buf[..n] != V1_PREFIX[..n] {
                return Ok(Parsed::NotProxy);
            }
            if n < V1_PREFIX.len() {
                return Ok(Parsed::NeedMore);
            }
            parse_v1(buf)
        }
        b'\r' => {
            let n = buf.len().min(V2_SIGNATURE.len());
            if let Some(i) = (0..n).find(|&i| buf[i] != V2_SIGNATURE[i]) {
                return if i < V2_COMMITTED {
                    Ok(Parsed::NotProxy)
                } else {
                    Err(ProxyError::V2BadSignature)
                };
            }
            parse_v2(buf)
        }
        _ => Ok(Parsed::NotProxy),
    }
}

/// `buf` starts with `PROXY `.
fn parse_v1(buf: &[u8]) -> Result<Parsed, ProxyError> {
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(end) = window.iter().position(|&b| b == b'\r' || b == b'\n') else {
        return if buf.len() >= V1_MAX_LEN {
            Err(ProxyError::V1TooLong)
        } else {
            Ok(Parsed::NeedMore)
        };
    };
    if window[end] == b'\n' {
        return Err(ProxyError::V1BadLineEnd);
    }
    match window.get(end + 1) {
        None if end + 1 >= V1_MAX_LEN => return Err(ProxyError::V1TooLong),
        None => return Ok(Parsed::NeedMore),
        Some(b'\n') => {}
        Some(_) => return Err(ProxyError::V1BadLineEnd),
    }
    let line = &buf[V1_PREFIX.len()..end];
    let header = parse_v1_fields(line)?;
    Ok(Parsed::Done {
        header,
        consumed: end + 2,
    })
}

/// The part of a v1 line between `PROXY ` and CRLF.
fn parse_v1_fields(line: &[u8]) -> Result<ProxyHeader, ProxyError> {
    let mut fields = line.split(|&b| b == b' ');
    let protocol = fields.next().unwrap_or_default();
    let (transport, family) = match protocol {
        b"TCP4" => (Transport::Tcp4, "IPv4"),
        b"TCP6" => (Transport::Tcp6, "IPv6"),
        // The sender may omit the rest; the receiver ignores whatever comes before CRLF.
        b"UNKNOWN" => {
            return Ok(ProxyHeader {
                version: Version::V1,
                command: Command::Proxy,
                transport: Transport::Unknown,
                source: None,
                destination: None,
            })
        }
        other => {
            return Err(ProxyError::V1UnknownProtocol(
                String::from_utf8_lossy(other).into_owned(),
            ))
        }
    };
    let rest: Vec<&[u8]> = fields.collect();
    let [src, dst, sport, dport] = rest[..] else {
        return Err(ProxyError::V1FieldCount(rest.len()));
    };
    let v6 = transport == Transport::Tcp6;
    let src = v1_addr(src, v6, family)?;
    let dst = v1_addr(dst, v6, family)?;
    let (sport, dport) = (v1_port(sport)?, v1_port(dport)?);
    Ok(ProxyHeader {
        version: Version::V1,
        command: Command::Proxy,
        transport,
        source: Some(SocketAddr::new(src, sport)),
        destination: Some(SocketAddr::new(dst, dport)),
    })
}

/// An address of the line's family. std's parsers are strict enough for "canonical": no leading
/// zeros in IPv4 octets, no zone or brackets in IPv6.
fn v1_addr(field: &[u8], v6: bool, family: &'static str) -> Result<IpAddr, ProxyError> {
    let bad = || ProxyError::V1BadAddress(String::from_utf8_lossy(field).into_owned(), family);
    let text = std::str::from_utf8(field).map_err(|_| bad())?;
    if v6 {
        text.parse::<Ipv6Addr>().map(IpAddr::V6).map_err(|_| bad())
    } else {
        text.parse::<Ipv4Addr>().map(IpAddr::V4).map_err(|_| bad())
    }
}

fn v1_port(field: &[u8]) -> Result<u16, ProxyError> {
    let bad = || ProxyError::V1BadPort(String::from_utf8_lossy(field).into_owned());
    let digits_only = !field.is_empty() && field.len() <= 5 && field.iter().all(u8::is_ascii_digit);
    if !digits_only || (field.len() > 1 && field[0] == b'0') {
        return Err(bad());
    }
    let value = field
        .iter()
        .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    u16::try_from(value).map_err(|_| bad())
}

/// `buf` is a prefix of, or starts with, the full signature.
fn parse_v2(buf: &[u8]) -> Result<Parsed, ProxyError> {
    if buf.len() < V2_FIXED {
        return Ok(Parsed::NeedMore);
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::V2BadVersion(ver_cmd >> 4));
    }
    let command = match ver_cmd & 0x0f {
        0x0 => Command::Local,
        0x1 => Command::Proxy,
        other => return Err(ProxyError::V2BadCommand(other)),
    };
    let fam = buf[13];
    let declared = u16::from_be_bytes([buf[14], buf[15]]);
    let total = V2_FIXED + usize::from(declared);
    if total > V2_MAX_LEN {
        return Err(ProxyError::V2TooLong(total));
    }
    // LOCAL: "discard the protocol block including the family which is ignored". Checked before
    // waiting for the body, so a bad PROXY header fails as soon as its 16 bytes are in.
    let transport = match command {
        Command::Local => Transport::Unknown,
        Command::Proxy => {
            let (transport, needed) = v2_family(fam)?;
            if usize::from(declared) < needed {
                return Err(ProxyError::V2ShortAddress {
                    family: fam,
                    declared,
                    needed,
                });
            }
            transport
        }
    };
    if buf.len() < total {
        return Ok(Parsed::NeedMore);
    }
    let body = &buf[V2_FIXED..total];
    let (source, destination) = match transport {
        Transport::Tcp4 => {
            let ip = |at: usize| Ipv4Addr::new(body[at], body[at + 1], body[at + 2], body[at + 3]);
            let (sport, dport) = (be16(body, 8), be16(body, 10));
            (
                Some(SocketAddr::V4(SocketAddrV4::new(ip(0), sport))),
                Some(SocketAddr::V4(SocketAddrV4::new(ip(4), dport))),
            )
        }
        Transport::Tcp6 => {
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&body[at..at + 16]);
                Ipv6Addr::from(octets)
            };
            let (sport, dport) = (be16(body, 32), be16(body, 34));
            (
                Some(SocketAddr::V6(SocketAddrV6::new(ip(0), sport, 0, 0))),
                Some(SocketAddr::V6(SocketAddrV6::new(ip(16), dport, 0, 0))),
            )
        }
        _ => (None, None),
    };
    Ok(Parsed::Done {
        header: ProxyHeader {
            version: Version::V2,
            command,
            transport,
            source,
            destination,
        },
        consumed: total,
    })
}

/// The transport of a v2 family/protocol byte and the address bytes it needs. Nibbles outside
/// the spec's values are invalid; a valid family with an UNSPEC protocol (or the reverse) is UNSPEC.
fn v2_family(fam: u8) -> Result<(Transport, usize), ProxyError> {
    let (family, protocol) = (fam >> 4, fam & 0x0f);
    if family > 3 || protocol > 2 {
        return Err(ProxyError::V2BadFamily(fam));
    }
    Ok(match (family, protocol) {
        (1, 1) => (Transport::Tcp4, V2_INET_LEN),
        (1, 2) => (Transport::Udp4, V2_INET_LEN),
        (2, 1) => (Transport::Tcp6, V2_INET6_LEN),
        (2, 2) => (Transport::Udp6, V2_INET6_LEN),
        (3, 1) => (Transport::UnixStream, V2_UNIX_LEN),
        (3, 2) => (Transport::UnixDgram, V2_UNIX_LEN),
        _ => (Transport::Unknown, 0),
    })
}

fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

/// Result of one [`ProxyDecoder::feed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// All of the input was a header prefix and is held; feed more.
    NeedMore,
    /// Not a PROXY header. `held` are the bytes kept from earlier feeds (empty unless the peer sent
    /// a lone prefix such as `P` first): the application stream is `held` then this input, whole.
    NotProxy {
        /// Bytes from earlier feeds, to put back in front of this input.
        held: Vec<u8>,
    },
    /// The header is complete; the first `consumed` bytes of *this* input finished it, the rest of
    /// this input belongs to RTMP/HTTP.
    Done {
        /// The header.
        header: ProxyHeader,
        /// Bytes of this input that belonged to the header.
        consumed: usize,
    },
}

/// [`parse`] for callers that hand over bytes as they arrive instead of keeping a buffer: holds a
/// partial header itself (never more than [`V2_MAX_LEN`] bytes). One per connection, finished
/// after the first answer other than [`Decoded::NeedMore`] or an error.
#[derive(Debug, Default)]
pub struct ProxyDecoder {
    held: Vec<u8>,
    finished: bool,
}

impl ProxyDecoder {
    /// A decoder that has seen nothing yet.
    pub fn new() -> ProxyDecoder {
        ProxyDecoder::default()
    }

    /// Feed the next bytes of the connection.
    pub fn feed(&mut self, input: &[u8]) -> Result<Decoded, ProxyError> {
        if self.finished {
            return Err(ProxyError::Finished);
        }
        let before = self.held.len();
        let parsed = if before == 0 {
            parse(input)
        } else {
            // Only what a decision can need is copied; a large read is not.
            let take = input.len().min(V2_MAX_LEN.saturating_sub(before));
            self.held.extend_from_slice(&input[..take]);
            parse(&self.held)
        };
        let parsed = match parsed {
            Ok(p) => p,
            Err(e) => {
                self.finish();
                return Err(e);
            }
        };
        Ok(match parsed {
            Parsed::NeedMore => {
                if before == 0 {
                    self.held.extend_from_slice(input);
                }
                Decoded::NeedMore
            }
            Parsed::NotProxy => {
                self.held.truncate(before);
                let held = std::mem::take(&mut self.held);
                self.finish();
                Decoded::NotProxy { held }
            }
            Parsed::Done { header, consumed } => {
                self.finish();
                Decoded::Done {
                    header,
                    consumed: consumed - before,
                }
            }
        })
    }

    fn finish(&mut self) {
        self.finished = true;
        self.held = Vec::new();
    }
}

/// Both addresses of one family: IPv4 when both are IPv4 (or IPv4-mapped IPv6), otherwise IPv6
/// with any IPv4 address mapped, since a header has a single family.
enum Pair {
    V4(SocketAddrV4, SocketAddrV4),
    V6(SocketAddrV6, SocketAddrV6),
}

fn pair(src: SocketAddr, dst: SocketAddr) -> Pair {
    match (src.ip().to_canonical(), dst.ip().to_canonical()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Pair::V4(
            SocketAddrV4::new(s, src.port()),
            SocketAddrV4::new(d, dst.port()),
        ),
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            Pair::V6(
                SocketAddrV6::new(v6(s), src.port(), 0, 0),
                SocketAddrV6::new(v6(d), dst.port(), 0, 0),
            )
        }
    }
}

/// A version 1 line announcing a relayed TCP connection from `src` (the client) to `dst`.
pub fn encode_v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let line = match pair(src, dst) {
        Pair::V4(s, d) => format!(
            "PROXY TCP4 {} {} {} {}\r\n",
            s.ip(),
            d.ip(),
            s.port(),
            d.port()
        ),
        Pair::V6(s, d) => format!(
            "PROXY TCP6 {} {} {} {}\r\n",
            s.ip(),
            d.ip(),
            s.port(),
            d.port()
        ),
    };
    line.into_bytes()
}

/// A version 2 `PROXY` header for a relayed TCP connection from `src` (the client) to `dst`, with
/// no TLVs.
pub fn encode_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(V2_FIXED + V2_INET6_LEN);
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x21);
    match pair(src, dst) {
        Pair::V4(s, d) => {
            out.push(0x11);
            out.extend_from_slice(&(V2_INET_LEN as u16).to_be_bytes());
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
            out.extend_from_slice(&s.port().to_be_bytes());
            out.extend_from_slice(&d.port().to_be_bytes());
        }
        Pair::V6(s, d) => {
            out.push(0x21);
            out.extend_from_slice(&(V2_INET6_LEN as u16).to_be_bytes());
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
            out.extend_from_slice(&s.port().to_be_bytes());
            out.extend_from_slice(&d.port().to_be_bytes());
        }
    }
    out
}

/// A version 2 `LOCAL` header (UNSPEC family, no addresses): what a proxy's own health check
/// sends so the receiver uses the socket's addresses.
pub fn encode_v2_local() -> Vec<u8> {
    let mut out = Vec::with_capacity(V2_FIXED);
    out.extend_from_slice(&V2_SIGNATURE);
    out.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn done(buf: &[u8]) -> (ProxyHeader, usize) {
        match parse(buf) {
            Ok(Parsed::Done { header, consumed }) => (header, consumed),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    /// A v2 header from its parts, the length field computed from `body`.
    fn v2(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(ver_cmd);
        out.push(fam);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn tcp4_body() -> Vec<u8> {
        let mut b = vec![192, 0, 2, 7, 10, 0, 0, 1];
        b.extend_from_slice(&40000u16.to_be_bytes());
        b.extend_from_slice(&1935u16.to_be_bytes());
        b
    }

    #[test]
    fn v1_valid_lines() {
        let cases: &[(&str, Transport, Option<&str>, Option<&str>)] = &[
            (
                "PROXY TCP4 192.0.2.7 10.0.0.1 40000 1935\r\n",
                Transport::Tcp4,
                Some("192.0.2.7:40000"),
                Some("10.0.0.1:1935"),
            ),
            (
                "PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n",
                Transport::Tcp4,
                Some("0.0.0.0:0"),
                Some("255.255.255.255:65535"),
            ),
            (
                "PROXY TCP6 2001:db8::7 ::1 5 1935\r\n",
                Transport::Tcp6,
                Some("[2001:db8::7]:5"),
                Some("[::1]:1935"),
            ),
            (
                "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
                Transport::Tcp6,
                Some("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
                Some("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
            ),
            ("PROXY UNKNOWN\r\n", Transport::Unknown, None, None),
            (
                "PROXY UNKNOWN whatever the sender had 1 2\r\n",
                Transport::Unknown,
                None,
                None,
            ),
        ];
        for &(line, transport, src, dst) in cases {
            let (h, consumed) = done(line.as_bytes());
            assert_eq!(consumed, line.len(), "{line}");
            assert_eq!(h.version, Version::V1);
            assert_eq!(h.command, Command::Proxy);
            assert_eq!(h.transport, transport, "{line}");
            assert_eq!(h.source, src.map(sa), "{line}");
            assert_eq!(h.destination, dst.map(sa), "{line}");
            assert_eq!(h.client(), src.map(sa));
        }
    }

    #[test]
    fn v1_longest_line_is_107_bytes() {
        let full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let line = format!("PROXY UNKNOWN {full} {full} 65535 65535\r\n");
        assert_eq!(line.len(), V1_MAX_LEN);
        assert_eq!(done(line.as_bytes()).1, V1_MAX_LEN);
        // One byte more and the CRLF is past the limit.
        let line = format!("PROXY UNKNOWN {full} {full} 65535 655350\r\n");
        assert_eq!(parse(line.as_bytes()), Err(ProxyError::V1TooLong));
    }

    #[test]
    fn v1_malformed_lines() {
        let long = format!("PROXY UNKNOWN {}", "x".repeat(120));
        let cr_at_limit = format!("PROXY UNKNOWN {}\r", "x".repeat(V1_MAX_LEN - 15));
        assert_eq!(cr_at_limit.len(), V1_MAX_LEN);
        let cases: &[(&str, ProxyError)] = &[
            (&long, ProxyError::V1TooLong),
            (&cr_at_limit, ProxyError::V1TooLong),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", ProxyError::V1BadLineEnd),
            (
                "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
                ProxyError::V1BadLineEnd,
            ),
            ("PROXY \n", ProxyError::V1BadLineEnd),
            (
                "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
                ProxyError::V1UnknownProtocol("TCP5".into()),
            ),
            (
                "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
                ProxyError::V1UnknownProtocol("tcp4".into()),
            ),
            (
                "PROXY UNKNOWNX\r\n",
                ProxyError::V1UnknownProtocol("UNKNOWNX".into()),
            ),
            ("PROXY \r\n", ProxyError::V1UnknownProtocol("".into())),
            ("PROXY TCP4\r\n", ProxyError::V1FieldCount(0)),
            (
                "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
                ProxyError::V1FieldCount(3),
            ),
            (
                "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
                ProxyError::V1FieldCount(5),
            ),
            (
                "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
                ProxyError::V1FieldCount(5),
            ),
            (
                "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
                ProxyError::V1FieldCount(5),
            ),
            (
                "PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n",
                ProxyError::V1BadAddress("256.2.3.4".into(), "IPv4"),
            ),
            (
                "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
                ProxyError::V1BadAddress("01.2.3.4".into(), "IPv4"),
            ),
            (
                "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
                ProxyError::V1BadAddress("1.2.3".into(), "IPv4"),
            ),
            (
                "PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
                ProxyError::V1BadAddress("::1".into(), "IPv4"),
            ),
            (
                "PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
                ProxyError::V1BadAddress("1.2.3.4".into(), "IPv6"),
            ),
            (
                "PROXY TCP6 [::1] ::1 1 2\r\n",
                ProxyError::V1BadAddress("[::1]".into(), "IPv6"),
            ),
            (
                "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
                ProxyError::V1BadAddress("fe80::1%eth0".into(), "IPv6"),
            ),
            (
                "PROXY TCP6 ::1 ::1:: 1 2\r\n",
                ProxyError::V1BadAddress("::1::".into(), "IPv6"),
            ),
            (
                "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
                ProxyError::V1BadPort("65536".into()),
            ),
            (
                "PROXY TCP4 1.2.3.4 5.6.7.8 1 080\r\n",
                ProxyError::V1BadPort("080".into()),
            ),
            (
                "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
                ProxyError::V1BadPort("-1".into()),
            ),
            (
                "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
                ProxyError::V1BadPort("+1".into()),
            ),
            (
                "PROXY TCP4 1.2.3.4 5.6.7.8 1 999999\r\n",
                ProxyError::V1BadPort("999999".into()),
            ),
            (
                "PROXY TCP4 1.2.3.4 5.6.7.8 1 0x10\r\n",
                ProxyError::V1BadPort("0x10".into()),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line.as_bytes()).as_ref(), Err(want), "{line:?}");
        }
    }

    #[test]
    fn detection_of_other_protocols() {
        let sig = &V2_SIGNATURE[..];
        let mut broken_sig = sig.to_vec();
        broken_sig[11] = b'X';
        let cases: &[(&[u8], Result<Parsed, ProxyError>)] = &[
            (b"", Ok(Parsed::NeedMore)),
            (b"P", Ok(Parsed::NeedMore)),
            (b"PROXY", Ok(Parsed::NeedMore)),
            (b"PROXY ", Ok(Parsed::NeedMore)),
            (b"PROXY TCP4 1.2.3.4", Ok(Parsed::NeedMore)),
            (b"\r", Ok(Parsed::NeedMore)),
            (&sig[..11], Ok(Parsed::NeedMore)),
            (sig, Ok(Parsed::NeedMore)),
            // RTMP C0, HTTP methods, TLS: decided on the first differing byte.
            (&[0x03, 0, 0, 0], Ok(Parsed::NotProxy)),
            (b"GET / HTTP/1.1\r\n", Ok(Parsed::NotProxy)),
            (b"POST /api HTTP/1.1\r\n", Ok(Parsed::NotProxy)),
            (b"PUT /x HTTP/1.1\r\n", Ok(Parsed::NotProxy)),
            (b"PROXy", Ok(Parsed::NotProxy)),
            (b"proxy tcp4", Ok(Parsed::NotProxy)),
            (&[0x16, 0x03, 0x01], Ok(Parsed::NotProxy)),
            // Blank lines before an HTTP request line are still not a header...
            (b"\r\nGET / HTTP/1.1\r\n", Ok(Parsed::NotProxy)),
            (b"\r\n\r\nGET", Ok(Parsed::NotProxy)),
            // ...but after the NUL it can only be a broken v2 signature.
            (b"\r\n\r\n\0X", Err(ProxyError::V2BadSignature)),
            (&broken_sig, Err(ProxyError::V2BadSignature)),
        ];
        for (input, want) in cases {
            assert_eq!(&parse(input), want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn v2_valid_headers() {
        let mut tcp6_body = Vec::new();
        tcp6_body.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        tcp6_body.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        tcp6_body.extend_from_slice(&40000u16.to_be_bytes());
        tcp6_body.extend_from_slice(&1935u16.to_be_bytes());
        let mut with_tlvs = tcp4_body();
        // PP2_TYPE_ALPN "h2", then a NOOP with 3 bytes: skipped.
        with_tlvs.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2', 0x04, 0x00, 0x03, 0, 0, 0]);
        /// Header bytes, then what it should decode to.
        type Case = (
            Vec<u8>,
            Command,
            Transport,
            Option<&'static str>,
            Option<&'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                v2(0x21, 0x11, &tcp4_body()),
                Command::Proxy,
                Transport::Tcp4,
                Some("192.0.2.7:40000"),
                Some("10.0.0.1:1935"),
            ),
            (
                v2(0x21, 0x21, &tcp6_body),
                Command::Proxy,
                Transport::Tcp6,
                Some("[2001:db8::7]:40000"),
                Some("[::1]:1935"),
            ),
            (
                v2(0x21, 0x11, &with_tlvs),
                Command::Proxy,
                Transport::Tcp4,
                Some("192.0.2.7:40000"),
                Some("10.0.0.1:1935"),
            ),
            (
                v2(0x20, 0x00, &[]),
                Command::Local,
                Transport::Unknown,
                None,
                None,
            ),
            // LOCAL ignores the family, even an invalid one, and skips whatever block follows.
            (
                v2(0x20, 0x11, &tcp4_body()),
                Command::Local,
                Transport::Unknown,
                None,
                None,
            ),
            (
                v2(0x20, 0xff, &[1, 2, 3]),
                Command::Local,
                Transport::Unknown,
                None,
                None,
            ),
            (
                v2(0x21, 0x00, &[]),
                Command::Proxy,
                Transport::Unknown,
                None,
                None,
            ),
            (
                v2(0x21, 0x10, &[9; 4]),
                Command::Proxy,
                Transport::Unknown,
                None,
                None,
            ),
            (
                v2(0x21, 0x12, &tcp4_body()),
                Command::Proxy,
                Transport::Udp4,
                None,
                None,
            ),
            (
                v2(0x21, 0x22, &tcp6_body),
                Command::Proxy,
                Transport::Udp6,
                None,
                None,
            ),
            (
                v2(0x21, 0x31, &[0; 216]),
                Command::Proxy,
                Transport::UnixStream,
                None,
                None,
            ),
            (
                v2(0x21, 0x32, &[0; 216]),
                Command::Proxy,
                Transport::UnixDgram,
                None,
                None,
            ),
        ];
        for (bytes, command, transport, src, dst) in cases {
            let (h, consumed) = done(&bytes);
            assert_eq!(consumed, bytes.len());
            assert_eq!(h.version, Version::V2);
            assert_eq!(
                (h.command, h.transport),
                (command, transport),
                "{bytes:02x?}"
            );
            assert_eq!(h.source, src.map(sa));
            assert_eq!(h.destination, dst.map(sa));
            assert_eq!(h.client(), src.map(sa));
        }
    }

    #[test]
    fn v2_malformed_headers() {
        let cases: Vec<(Vec<u8>, ProxyError)> = vec![
            (v2(0x11, 0x11, &tcp4_body()), ProxyError::V2BadVersion(1)),
            (v2(0x31, 0x11, &tcp4_body()), ProxyError::V2BadVersion(3)),
            (v2(0x22, 0x11, &tcp4_body()), ProxyError::V2BadCommand(2)),
            (v2(0x2f, 0x11, &tcp4_body()), ProxyError::V2BadCommand(0xf)),
            (v2(0x21, 0x41, &tcp4_body()), ProxyError::V2BadFamily(0x41)),
            (v2(0x21, 0x13, &tcp4_body()), ProxyError::V2BadFamily(0x13)),
            (v2(0x21, 0xff, &[]), ProxyError::V2BadFamily(0xff)),
            (
                v2(0x21, 0x11, &tcp4_body()[..11]),
                ProxyError::V2ShortAddress {
                    family: 0x11,
                    declared: 11,
                    needed: 12,
                },
            ),
            (
                v2(0x21, 0x21, &tcp4_body()),
                ProxyError::V2ShortAddress {
                    family: 0x21,
                    declared: 12,
                    needed: 36,
                },
            ),
            (
                v2(0x21, 0x31, &[0; 36]),
                ProxyError::V2ShortAddress {
                    family: 0x31,
                    declared: 36,
                    needed: 216,
                },
            ),
            (
                v2(0x21, 0x11, &vec![0; V2_MAX_LEN - 16 + 1]),
                ProxyError::V2TooLong(V2_MAX_LEN + 1),
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(parse(&bytes), Err(want.clone()), "{want}");
            // Every one of these is known from the fixed 16 bytes, before the body arrives.
            assert_eq!(parse(&bytes[..16]), Err(want));
        }
    }

    #[test]
    fn v2_cap_is_inclusive() {
        let bytes = v2(0x21, 0x11, &vec![0; V2_MAX_LEN - 16]);
        assert_eq!(done(&bytes).1, V2_MAX_LEN);
    }

    #[test]
    fn v2_length_field_is_big_endian() {
        let mut bytes = v2(0x21, 0x11, &tcp4_body());
        bytes[14..16].copy_from_slice(&[0x01, 0x00]); // 256, not 1
        bytes.resize(16 + 256, 0);
        assert_eq!(done(&bytes).1, 16 + 256);
    }

    #[test]
    fn truncated_headers_need_more_until_complete() {
        let headers = [
            v2(0x21, 0x11, &tcp4_body()),
            v2(0x20, 0x00, &[]),
            b"PROXY TCP6 2001:db8::7 ::1 5 1935\r\n".to_vec(),
            b"PROXY UNKNOWN\r\n".to_vec(),
        ];
        for header in headers {
            for cut in 0..header.len() {
                assert_eq!(parse(&header[..cut]), Ok(Parsed::NeedMore), "{cut}");
            }
            assert_eq!(done(&header).1, header.len());
        }
    }

    #[test]
    fn trailing_bytes_are_not_consumed() {
        let rtmp = [0x03u8, 1, 2, 3, 4];
        for header in [
            encode_v1(sa("192.0.2.7:40000"), sa("10.0.0.1:1935")),
            encode_v2(sa("192.0.2.7:40000"), sa("10.0.0.1:1935")),
            encode_v2_local(),
        ] {
            let mut buf = header.clone();
            buf.extend_from_slice(&rtmp);
            let (_, consumed) = done(&buf);
            assert_eq!(consumed, header.len());
            assert_eq!(&buf[consumed..], &rtmp);
        }
        // A v1 line followed by an HTTP request whose own CRLFs must not confuse the search.
        let buf = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nGET / HTTP/1.1\r\n\r\n";
        assert_eq!(done(buf).1, 32);
    }

    #[test]
    fn decoder_byte_by_byte() {
        let header = encode_v2(sa("[2001:db8::7]:40000"), sa("[::1]:1935"));
        let mut stream = header.clone();
        stream.extend_from_slice(b"\x03rest");
        let mut d = ProxyDecoder::new();
        for &b in &header[..header.len() - 1] {
            assert_eq!(d.feed(&[b]), Ok(Decoded::NeedMore));
        }
        // The last header byte arrives together with the first RTMP bytes.
        match d.feed(&stream[header.len() - 1..]) {
            Ok(Decoded::Done {
                header: h,
                consumed,
            }) => {
                assert_eq!(consumed, 1);
                assert_eq!(h.client(), Some(sa("[2001:db8::7]:40000")));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(d.feed(b"more"), Err(ProxyError::Finished));
    }

    #[test]
    fn decoder_in_chunks_keeps_the_payload() {
        for header in [
            encode_v1(sa("192.0.2.7:40000"), sa("10.0.0.1:1935")),
            encode_v2(sa("192.0.2.7:40000"), sa("10.0.0.1:1935")),
        ] {
            let payload: Vec<u8> = (0u8..=200).collect();
            let mut stream = header.clone();
            stream.extend_from_slice(&payload);
            for size in [1, 2, 3, 7, 16, 29, 64, 1000] {
                let mut d = ProxyDecoder::new();
                let mut rest = Vec::new();
                let mut got = None;
                for chunk in stream.chunks(size) {
                    if got.is_some() {
                        rest.extend_from_slice(chunk);
                        continue;
                    }
                    match d.feed(chunk).unwrap() {
                        Decoded::NeedMore => {}
                        Decoded::Done { header, consumed } => {
                            got = Some(header);
                            rest.extend_from_slice(&chunk[consumed..]);
                        }
                        other => panic!("{other:?}"),
                    }
                }
                assert_eq!(got.unwrap().client(), Some(sa("192.0.2.7:40000")));
                assert_eq!(rest, payload, "chunks of {size}");
            }
        }
    }

    #[test]
    fn decoder_gives_back_a_held_prefix() {
        let mut d = ProxyDecoder::new();
        assert_eq!(d.feed(b"P"), Ok(Decoded::NeedMore));
        assert_eq!(
            d.feed(b"OST / HTTP/1.1\r\n"),
            Ok(Decoded::NotProxy {
                held: b"P".to_vec()
            })
        );
        let mut d = ProxyDecoder::new();
        assert_eq!(
            d.feed(&[0x03, 0, 0]),
            Ok(Decoded::NotProxy { held: Vec::new() })
        );
    }

    #[test]
    fn decoder_reports_errors_once() {
        let mut d = ProxyDecoder::new();
        assert_eq!(d.feed(b"PROXY TCP4 1.2.3.4 "), Ok(Decoded::NeedMore));
        assert_eq!(d.feed(b"5.6.7.8 1 2\n"), Err(ProxyError::V1BadLineEnd));
        assert_eq!(d.feed(b"\r\n"), Err(ProxyError::Finished));
    }

    #[test]
    fn decoder_holds_at_most_the_cap() {
        let mut d = ProxyDecoder::new();
        let sig_and_fixed = v2(0x21, 0x11, &vec![0; V2_MAX_LEN - 16]);
        assert_eq!(d.feed(&sig_and_fixed[..20]), Ok(Decoded::NeedMore));
        let mut rest = sig_and_fixed[20..].to_vec();
        rest.extend_from_slice(&vec![7; 100_000]);
        match d.feed(&rest) {
            Ok(Decoded::Done { consumed, .. }) => assert_eq!(consumed, V2_MAX_LEN - 20),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn encode_parse_round_trip() {
        let cases = [
            (
                "192.0.2.7:40000",
                "10.0.0.1:1935",
                Transport::Tcp4,
                "192.0.2.7:40000",
                "10.0.0.1:1935",
            ),
            (
                "[2001:db8::7]:1",
                "[::1]:2",
                Transport::Tcp6,
                "[2001:db8::7]:1",
                "[::1]:2",
            ),
            // IPv4-mapped IPv6 on both sides: sent as TCP4.
            (
                "[::ffff:192.0.2.7]:5",
                "[::ffff:10.0.0.1]:6",
                Transport::Tcp4,
                "192.0.2.7:5",
                "10.0.0.1:6",
            ),
            // Mixed families: one header has one family, so IPv4 is mapped into IPv6.
            (
                "192.0.2.7:5",
                "[::1]:6",
                Transport::Tcp6,
                "[::ffff:192.0.2.7]:5",
                "[::1]:6",
            ),
        ];
        for (src, dst, transport, want_src, want_dst) in cases {
            for bytes in [encode_v1(sa(src), sa(dst)), encode_v2(sa(src), sa(dst))] {
                let (h, consumed) = done(&bytes);
                assert_eq!(consumed, bytes.len());
                assert_eq!(h.command, Command::Proxy);
                assert_eq!(h.transport, transport, "{src} {dst}");
                assert_eq!(h.source, Some(sa(want_src)));
                assert_eq!(h.destination, Some(sa(want_dst)));
            }
        }
        let (h, consumed) = done(&encode_v2_local());
        assert_eq!(
            (h.command, h.client(), consumed),
            (Command::Local, None, 16)
        );
    }

    #[test]
    fn encoded_bytes_match_the_spec_layout() {
        let v1 = encode_v1(sa("192.168.0.1:56324"), sa("192.168.0.11:443"));
        assert_eq!(v1, b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
        let v2 = encode_v2(sa("172.19.0.1:42578"), sa("172.19.0.3:80"));
        assert_eq!(
            v2,
            [
                0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11,
                0x00, 0x0c, 0xac, 0x13, 0x00, 0x01, 0xac, 0x13, 0x00, 0x03, 0xa6, 0x52, 0x00, 0x50
            ]
        );
    }
}
