//! Text parsers that face the network or the config: HTTP request heads, allow/deny rules and
//! hook URLs.
//!
//! Checks beyond "no panic": a parsed head never claims more bytes than it was given or than
//! the limit, every prefix of a complete head is "need more" or the same kind of error, and a
//! parsed rule or hook URL behaves (the rule list answers address checks; the URL has a host).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardcast::http::request::{parse_head, HeadError};
use shardcast::policy::hooks::HookUrl;
use shardcast::policy::rules::{Action, Rule, Rules};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const MAX_HEAD: usize = 8192;

fuzz_target!(|data: &[u8]| {
    http(data);
    let text = String::from_utf8_lossy(data);
    rule(&text);
    hook(&text);
    // Config files hold one rule per line.
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    if let Ok(rules) = Rules::parse(&lines) {
        for action in [Action::Publish, Action::Play] {
            for ip in addresses(data) {
                let _ = rules.check(action, ip);
            }
        }
    }
});

fn http(data: &[u8]) {
    match parse_head(data, MAX_HEAD) {
        Ok(Some((req, len))) => {
            assert!(len <= data.len() && len <= MAX_HEAD);
            assert!(!req.method.is_empty());
            assert!(!req.path.contains('?'), "query left in the path");
            // The head alone parses the same, and so does the head with a different tail.
            let again = parse_head(&data[..len], MAX_HEAD).expect("head alone parses");
            assert_eq!(again, Some((req.clone(), len)));
            // Any strict prefix needs more bytes (or is already malformed the same way as a
            // prefix of a valid head can never be).
            if len > 0 {
                match parse_head(&data[..len - 1], MAX_HEAD) {
                    Ok(None) => {}
                    Ok(Some(_)) => {} // a shorter complete head (e.g. bare "\n" line ends)
                    Err(e) => panic!("prefix of a valid head is an error: {e}"),
                }
            }
        }
        Ok(None) => assert!(
            data.len() < MAX_HEAD,
            "partial head over the limit accepted"
        ),
        Err(HeadError::TooLarge(max)) => assert_eq!(max, MAX_HEAD),
        Err(e) => {
            assert!(matches!(e.status(), 400 | 431));
        }
    }
    // A tiny limit must fail cleanly.
    let _ = parse_head(data, 16);
}

fn rule(text: &str) {
    if Rule::parse(text).is_ok() {
        let rules = Rules::parse(&[text.to_string()]).expect("Rules agrees with Rule");
        for ip in [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V6(Ipv4Addr::new(192, 168, 0, 1).to_ipv6_mapped()),
        ] {
            let _ = rules.check(Action::Publish, ip);
            let _ = rules.check(Action::Play, ip);
        }
    }
    // Each line of the input on its own, too (whitespace splitting is the interesting part).
    for line in text.lines().take(16) {
        let _ = Rule::parse(line);
    }
}

fn hook(text: &str) {
    if let Ok(u) = HookUrl::parse(text) {
        assert!(!u.host.is_empty());
        assert!(u.path.starts_with('/'));
    }
    // With the scheme forced, the host/port/path split is reached for every input.
    let forced = format!("http://{text}");
    if let Ok(u) = HookUrl::parse(&forced) {
        assert!(!u.host.is_empty());
        assert!(u.path.starts_with('/'));
    }
}

/// A few addresses derived from the input, both families and the mapped form.
fn addresses(data: &[u8]) -> Vec<IpAddr> {
    let mut b = [0u8; 16];
    for (i, x) in data.iter().rev().take(16).enumerate() {
        b[i] = *x;
    }
    let v4 = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
    vec![
        IpAddr::V4(v4),
        IpAddr::V6(Ipv6Addr::from(b)),
        IpAddr::V6(v4.to_ipv6_mapped()),
    ]
}
