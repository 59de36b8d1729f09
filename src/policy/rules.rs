//! Allow/deny rules for publish and play by client address, with nginx-rtmp's semantics:
//! rules are checked in order and the first whose action and address match decides; when none
//! matches, the action is allowed.
//!
//! A rule is written `allow publish 127.0.0.1`, `deny play 10.0.0.0/8`, `deny publish all`,
//! `allow play ::1`.

use std::fmt;
use std::net::IpAddr;

/// What a rule governs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Publishing a stream.
    Publish,
    /// Playing a stream.
    Play,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Publish => "publish",
            Action::Play => "play",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Net {
    All,
    Cidr { base: IpAddr, prefix: u8 },
}

/// One `allow|deny publish|play ADDRESS|CIDR|all` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    allow: bool,
    action: Action,
    net: Net,
    text: String,
}

impl Rule {
    /// Parse one rule, e.g. `deny play 10.0.0.0/8`; a bare address is a /32 (or /128).
    pub fn parse(s: &str) -> Result<Rule, String> {
        let words: Vec<&str> = s.split_whitespace().collect();
        let [verdict, action, net] = words.as_slice() else {
            return Err(format!(
                "`{s}`: expected `allow|deny publish|play ADDRESS|CIDR|all`"
            ));
        };
        let allow = match *verdict {
            "allow" => true,
            "deny" => false,
            v => return Err(format!("`{s}`: `{v}` is neither allow nor deny")),
        };
        let action = match *action {
            "publish" => Action::Publish,
            "play" => Action::Play,
            a => return Err(format!("`{s}`: `{a}` is neither publish nor play")),
        };
        let net = if *net == "all" {
            Net::All
        } else {
            let (addr, prefix) = match net.split_once('/') {
                Some((a, p)) => (a, Some(p)),
                None => (*net, None),
            };
            let base: IpAddr = addr
                .parse()
                .map_err(|_| format!("`{s}`: `{addr}` is not an IP address"))?;
            let max = if base.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                Some(p) => p
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or_else(|| format!("`{s}`: prefix `/{p}` out of range"))?,
                None => max,
            };
            Net::Cidr { base, prefix }
        };
        Ok(Rule {
            allow,
            action,
            net,
            text: s.to_string(),
        })
    }

    fn matches(&self, action: Action, ip: IpAddr) -> bool {
        if self.action != action {
            return false;
        }
        match &self.net {
            Net::All => true,
            Net::Cidr { base, prefix } => in_net(ip, *base, *prefix),
        }
    }
}

/// Is `ip` inside `base/prefix`? IPv4-mapped IPv6 addresses count as IPv4.
fn in_net(ip: IpAddr, base: IpAddr, prefix: u8) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    match (ip, base) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - prefix)
            };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// An ordered list of rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules(Vec<Rule>);

impl Rules {
    /// Parse rules in order; the first bad one is the error.
    pub fn parse(lines: &[String]) -> Result<Rules, String> {
        lines
            .iter()
            .map(|l| Rule::parse(l))
            .collect::<Result<_, _>>()
            .map(Rules)
    }

    /// `Ok` when allowed; `Err(rule text)` naming the deny rule that matched.
    pub fn check(&self, action: Action, ip: IpAddr) -> Result<(), String> {
        match self.0.iter().find(|r| r.matches(action, ip)) {
            Some(r) if !r.allow => Err(r.text.clone()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(r: &[&str]) -> Rules {
        Rules::parse(&r.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn first_match_decides() {
        let r = rules(&[
            "allow publish 127.0.0.1",
            "deny publish all",
            "allow play all",
        ]);
        assert!(r.check(Action::Publish, ip("127.0.0.1")).is_ok());
        assert_eq!(
            r.check(Action::Publish, ip("10.1.2.3")),
            Err("deny publish all".into())
        );
        assert!(r.check(Action::Play, ip("10.1.2.3")).is_ok());
    }

    #[test]
    fn cidr_and_ipv6() {
        let r = rules(&["deny play 10.0.0.0/8", "deny play 2001:db8::/32"]);
        assert!(r.check(Action::Play, ip("10.200.0.1")).is_err());
        assert!(r.check(Action::Play, ip("11.0.0.1")).is_ok());
        assert!(r.check(Action::Play, ip("2001:db8::5")).is_err());
        assert!(
            r.check(Action::Play, ip("::ffff:10.0.0.9")).is_err(),
            "mapped v4"
        );
        assert!(
            r.check(Action::Publish, ip("10.0.0.1")).is_ok(),
            "other action"
        );
        assert!(Rules::default().check(Action::Play, ip("1.2.3.4")).is_ok());
    }

    #[test]
    fn bad_rules_are_named() {
        for bad in [
            "allow",
            "permit play all",
            "allow watch all",
            "deny play 300.1.1.1",
            "deny play 10.0.0.0/33",
        ] {
            let e = Rule::parse(bad).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }
}
