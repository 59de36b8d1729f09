//! Who may send a PROXY header, and what to do with a connection given what its first bytes were.
//!
//! A PROXY header rewrites the client address every later decision uses (allow/deny rules, hooks,
//! logs, `/control/drop?addr=`), so only balancers listed as trusted may send one; from anyone
//! else a header is an attempt to spoof and the connection is refused.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use serde::Deserialize;
use thiserror::Error;

use super::proxy_protocol::{Command, ProxyError, ProxyHeader};

/// One network: an address with its host bits clear and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a network did not parse.
#[derive(Debug, Clone, Copy, Error, PartialEq, Eq)]
pub enum CidrError {
    /// The part before `/` is not an IPv4 or IPv6 address.
    #[error("not an IPv4 or IPv6 address")]
    BadAddress,
    /// The part after `/` is not a decimal number.
    #[error("the prefix length is not a number")]
    BadPrefix,
    /// The prefix is longer than the address (over 32 for IPv4, 128 for IPv6).
    #[error("prefix /{0} is longer than the address")]
    PrefixTooLong(u32),
    /// Bits are set below the prefix (`10.0.0.1/8`). Refused rather than masked: trusting a
    /// whole /8 because of a typo for a /32 is not a mistake to make silently.
    #[error("address has bits set below /{0}; write the network address or a longer prefix")]
    HostBits(u8),
}

impl Cidr {
    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// Is `ip` in this network? IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a dual-stack
    /// socket reports for an IPv4 peer) count as the IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip) & mask32(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & mask128(self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `a.b.c.d/n`, `x:y::z/n`, or a bare address (a /32 or /128). An IPv4-mapped IPv6 network
    /// with a prefix of at least 96 is stored as the IPv4 network it covers.
    fn from_str(text: &str) -> Result<Cidr, CidrError> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| CidrError::BadAddress)?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                let p: u32 = p.parse().map_err(|_| CidrError::BadPrefix)?;
                if p > max {
                    return Err(CidrError::PrefixTooLong(p));
                }
                p
            }
            Some(_) => return Err(CidrError::BadPrefix),
        } as u8;
        let (addr, prefix) = match addr {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (addr, prefix),
            },
            _ => (addr, prefix),
        };
        let host_bits = match addr {
            IpAddr::V4(v4) => u32::from(v4) & !mask32(prefix) != 0,
            IpAddr::V6(v6) => u128::from(v6) & !mask128(prefix) != 0,
        };
        if host_bits {
            return Err(CidrError::HostBits(prefix));
        }
        Ok(Cidr { addr, prefix })
    }
}

/// A bad entry in the trusted proxy list, named so the config error points at it.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("trusted proxy {entry:?}: {problem}")]
pub struct TrustError {
    /// The entry as written.
    pub entry: String,
    /// What is wrong with it.
    pub problem: CidrError,
}

/// The balancers allowed to send PROXY headers. Empty trusts nobody.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<Cidr>,
}

impl TrustedProxies {
    /// Parse a list such as `["127.0.0.3/32", "10.0.0.0/8", "::1"]`. Surrounding whitespace is
    /// ignored; the first bad entry is the error.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<TrustedProxies, TrustError> {
        let networks = entries
            .iter()
            .map(|entry| {
                let entry = entry.as_ref();
                entry.trim().parse().map_err(|problem| TrustError {
                    entry: entry.to_owned(),
                    problem,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(TrustedProxies { networks })
    }

    /// Is `peer` (the socket's peer address) one of the trusted balancers?
    pub fn contains(&self, peer: IpAddr) -> bool {
        self.networks.iter().any(|n| n.contains(peer))
    }

    /// No entries: nobody may send a header.
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    /// The parsed networks, in configured order.
    pub fn networks(&self) -> &[Cidr] {
        &self.networks
    }
}

/// Whether a listener reads PROXY headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyMode {
    /// Never read: the first bytes are RTMP/HTTP, the socket's peer is the client.
    #[default]
    Off,
    /// Use a header when a trusted balancer sends one, the socket's peer otherwise. Against the
    /// spec's "never guess" rule, for moving a fleet behind a balancer without a flag day; the
    /// guess cannot misfire because neither RTMP nor HTTP looks like a header.
    Optional,
    /// Every connection must come from a trusted balancer with a header.
    Required,
}

/// What the decoder saw at the start of the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// No header (the bytes are RTMP/HTTP), or the decoder was not run.
    Nothing,
    /// A complete, valid header.
    Header(ProxyHeader),
    /// The bytes were a header, but a broken one.
    Malformed(ProxyError),
}

/// Why the socket's own peer address is the one to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerReason {
    /// The listener does not read headers.
    ProxyOff,
    /// `optional` mode and no header came.
    NoHeader,
    /// The balancer's own health check (v2 `LOCAL`): expected, nothing to log.
    HealthCheck,
    /// A header with no usable client address (v1 `UNKNOWN`, v2 UNSPEC, UDP or UNIX family).
    NoAddress,
}

/// Why a connection is closed before any RTMP/HTTP is read.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum RejectReason {
    /// A header from a peer not in the trusted list: a spoofing attempt or a misconfiguration.
    #[error("PROXY header from a peer that is not a trusted proxy")]
    UntrustedHeader,
    /// `required` mode and the peer is not a trusted balancer: something bypassed the balancer.
    #[error("PROXY header required but the peer is not a trusted proxy")]
    UntrustedPeer,
    /// `required` mode, a trusted balancer, and no header: the balancer is misconfigured.
    #[error("PROXY header required but the trusted proxy sent none")]
    MissingHeader,
    /// A broken header from a trusted balancer.
    #[error("malformed PROXY header: {0}")]
    Malformed(ProxyError),
}

/// What to do with the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Serve it as coming from `client` (the header's source).
    Accept {
        /// The real client.
        client: SocketAddr,
        /// The address the client connected to, as the balancer reported it.
        local: Option<SocketAddr>,
    },
    /// Serve it with the socket's own addresses.
    UseSocketPeer(PeerReason),
    /// Close it.
    Reject(RejectReason),
}

impl Decision {
    /// A balancer health check: the caller serves it quietly (no connection log, no alarm).
    pub fn is_health_check(&self) -> bool {
        matches!(self, Decision::UseSocketPeer(PeerReason::HealthCheck))
    }
}

/// Should the caller read a header before deciding? Not with `off`, and not in `required` mode
/// from an untrusted peer, which is refused without reading (`decide(mode, false,
/// Seen::Nothing)` says so).
pub fn should_read_header(mode: ProxyMode, peer_trusted: bool) -> bool {
    match mode {
        ProxyMode::Off => false,
        ProxyMode::Optional => true,
        ProxyMode::Required => peer_trusted,
    }
}

/// The policy, as a plain function of the listener's mode, whether the socket's peer is a trusted
/// balancer, and what the decoder saw. In `optional` mode an untrusted peer is still read, so a
/// header it sends is refused rather than handed to the RTMP/HTTP parser as garbage.
pub fn decide(mode: ProxyMode, peer_trusted: bool, seen: Seen) -> Decision {
    use Decision::{Reject, UseSocketPeer};
    if mode == ProxyMode::Off {
        return UseSocketPeer(PeerReason::ProxyOff);
    }
    if !peer_trusted {
        return match (seen, mode) {
            (Seen::Header(_) | Seen::Malformed(_), _) => Reject(RejectReason::UntrustedHeader),
            (Seen::Nothing, ProxyMode::Required) => Reject(RejectReason::UntrustedPeer),
            (Seen::Nothing, _) => UseSocketPeer(PeerReason::NoHeader),
        };
    }
    match seen {
        Seen::Malformed(e) => Reject(RejectReason::Malformed(e)),
        Seen::Nothing if mode == ProxyMode::Required => Reject(RejectReason::MissingHeader),
        Seen::Nothing => UseSocketPeer(PeerReason::NoHeader),
        Seen::Header(h) => match (h.command, h.client()) {
            (Command::Local, _) => UseSocketPeer(PeerReason::HealthCheck),
            (_, Some(client)) => Decision::Accept {
                client,
                local: h.destination,
            },
            (_, None) => UseSocketPeer(PeerReason::NoAddress),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lb::proxy_protocol::{encode_v2_local, parse, Parsed, Transport, Version};

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn cidr_parsing() {
        let ok: &[(&str, &str, u8)] = &[
            ("127.0.0.3/32", "127.0.0.3", 32),
            ("127.0.0.3", "127.0.0.3", 32),
            ("10.0.0.0/8", "10.0.0.0", 8),
            ("0.0.0.0/0", "0.0.0.0", 0),
            ("::1/128", "::1", 128),
            ("::1", "::1", 128),
            ("2001:db8::/32", "2001:db8::", 32),
            ("::/0", "::", 0),
            // IPv4-mapped networks become the IPv4 network they cover.
            ("::ffff:10.0.0.0/104", "10.0.0.0", 8),
            ("::ffff:127.0.0.3", "127.0.0.3", 32),
        ];
        for &(text, addr, prefix) in ok {
            let c: Cidr = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!((c.addr(), c.prefix()), (ip(addr), prefix), "{text}");
        }
        let bad: &[(&str, CidrError)] = &[
            ("", CidrError::BadAddress),
            ("localhost", CidrError::BadAddress),
            ("10.0.0/8", CidrError::BadAddress),
            ("256.0.0.0/8", CidrError::BadAddress),
            ("fe80::1%eth0", CidrError::BadAddress),
            ("[::1]/128", CidrError::BadAddress),
            ("10.0.0.0/", CidrError::BadPrefix),
            ("10.0.0.0/x", CidrError::BadPrefix),
            ("10.0.0.0/-1", CidrError::BadPrefix),
            ("10.0.0.0/+8", CidrError::BadPrefix),
            ("10.0.0.0/8/8", CidrError::BadPrefix),
            ("10.0.0.0/99999999999", CidrError::BadPrefix),
            ("10.0.0.0/33", CidrError::PrefixTooLong(33)),
            ("::/129", CidrError::PrefixTooLong(129)),
            ("10.0.0.1/8", CidrError::HostBits(8)),
            ("192.168.1.10/16", CidrError::HostBits(16)),
            ("2001:db8::1/32", CidrError::HostBits(32)),
        ];
        for (text, want) in bad {
            assert_eq!(text.parse::<Cidr>().as_ref(), Err(want), "{text}");
        }
    }

    #[test]
    fn trusted_list_membership() {
        let t =
            TrustedProxies::parse(&["127.0.0.3/32", " 10.0.0.0/8 ", "::1/128", "2001:db8::/32"])
                .unwrap();
        let cases: &[(&str, bool)] = &[
            ("127.0.0.3", true),
            ("127.0.0.1", false),
            ("127.0.0.4", false),
            ("10.0.0.0", true),
            ("10.255.255.255", true),
            ("11.0.0.0", false),
            ("9.255.255.255", false),
            ("::1", true),
            ("::2", false),
            ("2001:db8:ffff::1", true),
            ("2001:db9::1", false),
            // A dual-stack socket reports IPv4 peers as mapped IPv6: the IPv4 rules apply.
            ("::ffff:127.0.0.3", true),
            ("::ffff:10.1.2.3", true),
            ("::ffff:127.0.0.1", false),
            // ...but an IPv4 rule does not cover other IPv6 forms of the same bits.
            ("::7f00:3", false),
        ];
        for &(peer, want) in cases {
            assert_eq!(t.contains(ip(peer)), want, "{peer}");
        }
        assert!(!TrustedProxies::default().contains(ip("127.0.0.1")));
        assert!(TrustedProxies::default().is_empty());
        assert_eq!(t.networks().len(), 4);
    }

    #[test]
    fn everything_and_nothing() {
        let all = TrustedProxies::parse(&["0.0.0.0/0", "::/0"]).unwrap();
        for peer in [
            "1.2.3.4",
            "255.255.255.255",
            "::",
            "2001:db8::1",
            "::ffff:1.2.3.4",
        ] {
            assert!(all.contains(ip(peer)), "{peer}");
        }
        let v4_only = TrustedProxies::parse(&["0.0.0.0/0"]).unwrap();
        assert!(!v4_only.contains(ip("2001:db8::1")));
    }

    #[test]
    fn parse_error_names_the_entry() {
        let err = TrustedProxies::parse(&["10.0.0.0/8", "10.0.0.1/8", "bogus"]).unwrap_err();
        assert_eq!(
            err,
            TrustError {
                entry: "10.0.0.1/8".into(),
                problem: CidrError::HostBits(8)
            }
        );
        assert!(err.to_string().contains("\"10.0.0.1/8\""), "{err}");
    }

    fn header(bytes: &[u8]) -> ProxyHeader {
        match parse(bytes) {
            Ok(Parsed::Done { header, .. }) => header,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn decisions() {
        let tcp4 = header(b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 1935\r\n");
        let unknown = header(b"PROXY UNKNOWN\r\n");
        let local = header(&encode_v2_local());
        let bad = Seen::Malformed(ProxyError::V1BadLineEnd);
        let accept = Decision::Accept {
            client: "192.0.2.7:40000".parse().unwrap(),
            local: Some("10.0.0.1:1935".parse().unwrap()),
        };
        use Decision::{Reject, UseSocketPeer};
        use ProxyMode::{Off, Optional, Required};
        let cases: Vec<(ProxyMode, bool, Seen, Decision)> = vec![
            // off: never read, never reject.
            (
                Off,
                true,
                Seen::Nothing,
                UseSocketPeer(PeerReason::ProxyOff),
            ),
            (
                Off,
                false,
                Seen::Header(tcp4),
                UseSocketPeer(PeerReason::ProxyOff),
            ),
            // optional, trusted.
            (Optional, true, Seen::Header(tcp4), accept.clone()),
            (
                Optional,
                true,
                Seen::Nothing,
                UseSocketPeer(PeerReason::NoHeader),
            ),
            (
                Optional,
                true,
                Seen::Header(local),
                UseSocketPeer(PeerReason::HealthCheck),
            ),
            (
                Optional,
                true,
                Seen::Header(unknown),
                UseSocketPeer(PeerReason::NoAddress),
            ),
            (
                Optional,
                true,
                bad.clone(),
                Reject(RejectReason::Malformed(ProxyError::V1BadLineEnd)),
            ),
            // optional, untrusted: plain clients are fine, headers are not.
            (
                Optional,
                false,
                Seen::Nothing,
                UseSocketPeer(PeerReason::NoHeader),
            ),
            (
                Optional,
                false,
                Seen::Header(tcp4),
                Reject(RejectReason::UntrustedHeader),
            ),
            (
                Optional,
                false,
                Seen::Header(local),
                Reject(RejectReason::UntrustedHeader),
            ),
            (
                Optional,
                false,
                bad.clone(),
                Reject(RejectReason::UntrustedHeader),
            ),
            // required, trusted.
            (Required, true, Seen::Header(tcp4), accept),
            (
                Required,
                true,
                Seen::Nothing,
                Reject(RejectReason::MissingHeader),
            ),
            (
                Required,
                true,
                Seen::Header(local),
                UseSocketPeer(PeerReason::HealthCheck),
            ),
            (
                Required,
                true,
                Seen::Header(unknown),
                UseSocketPeer(PeerReason::NoAddress),
            ),
            (
                Required,
                true,
                bad.clone(),
                Reject(RejectReason::Malformed(ProxyError::V1BadLineEnd)),
            ),
            // required, untrusted: refused whatever it sent.
            (
                Required,
                false,
                Seen::Nothing,
                Reject(RejectReason::UntrustedPeer),
            ),
            (
                Required,
                false,
                Seen::Header(tcp4),
                Reject(RejectReason::UntrustedHeader),
            ),
            (Required, false, bad, Reject(RejectReason::UntrustedHeader)),
        ];
        for (mode, trusted, seen, want) in cases {
            let label = format!("{mode:?} trusted={trusted} {seen:?}");
            assert_eq!(decide(mode, trusted, seen), want, "{label}");
        }
    }

    #[test]
    fn health_check_flag() {
        let local = header(&encode_v2_local());
        assert_eq!(local.command, Command::Local);
        assert_eq!(
            (local.version, local.transport),
            (Version::V2, Transport::Unknown)
        );
        assert!(decide(ProxyMode::Required, true, Seen::Header(local)).is_health_check());
        assert!(!decide(ProxyMode::Optional, true, Seen::Nothing).is_health_check());
    }

    #[test]
    fn when_to_read() {
        use ProxyMode::{Off, Optional, Required};
        let cases = [
            (Off, true, false),
            (Off, false, false),
            (Optional, true, true),
            (Optional, false, true),
            (Required, true, true),
            (Required, false, false),
        ];
        for (mode, trusted, want) in cases {
            assert_eq!(
                should_read_header(mode, trusted),
                want,
                "{mode:?} {trusted}"
            );
            if !want && mode == Required {
                assert_eq!(
                    decide(mode, trusted, Seen::Nothing),
                    Decision::Reject(RejectReason::UntrustedPeer)
                );
            }
        }
    }

    #[test]
    fn mode_from_config() {
        #[derive(Deserialize)]
        struct Listener {
            proxy_protocol: ProxyMode,
        }
        for (text, want) in [
            ("off", ProxyMode::Off),
            ("optional", ProxyMode::Optional),
            ("required", ProxyMode::Required),
        ] {
            let l: Listener = toml::from_str(&format!("proxy_protocol = \"{text}\"")).unwrap();
            assert_eq!(l.proxy_protocol, want);
        }
        assert!(toml::from_str::<Listener>("proxy_protocol = \"on\"").is_err());
        assert_eq!(ProxyMode::default(), ProxyMode::Off);
    }
}
