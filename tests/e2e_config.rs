//! The command line and the config file: `-t` checks, errors that name the key, and a listen
//! address that is already taken.

mod common;

use common::*;
use std::fs;
use std::net::TcpListener;
use std::path::Path;

/// The check must fail with exactly one stderr line that names `key` and shows no panic.
fn assert_rejected(text: &str, key: &str) {
    let out = check_config(text);
    let what = format!("config {text:?}: {}", out.describe());
    assert!(out.status.is_some(), "timed out: {what}");
    assert!(!out.success(), "accepted: {what}");
    assert_eq!(out.status.and_then(|s| s.code()), Some(1), "{what}");
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "want one line on stderr: {what}");
    assert!(lines[0].starts_with("shardcast: "), "{what}");
    assert!(
        lines[0].contains(key),
        "error does not name `{key}`: {what}"
    );
    for bad in ["panicked", "backtrace", "RUST_BACKTRACE"] {
        assert!(!out.stderr.contains(bad), "`{bad}` on stderr: {what}");
    }
}

#[test]
fn shipped_config_checks_ok() {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/shardcast.toml");
    let out = shardcast_cli(&["-t"], &conf);
    assert!(out.success(), "{}", out.describe());
    assert!(out.stdout.contains("is ok"), "{}", out.describe());
}

#[test]
fn unknown_key_is_named() {
    assert_rejected("[server]\nlisten = \"127.0.0.1:1\"\nfoo = 1\n", "foo");
    assert_rejected("[rtmp]\nchunksize = 4096\n", "chunksize");
}

#[test]
fn zero_shards_is_refused() {
    assert_rejected("[server]\nshards = 0\n", "server.shards");
}

#[test]
fn bad_listen_address_is_refused() {
    assert_rejected("[server]\nlisten = \"nope\"\n", "server.listen");
}

#[test]
fn zero_chunk_size_is_refused() {
    assert_rejected("[rtmp]\nchunk_size = 0\n", "rtmp.chunk_size");
}

#[test]
fn wrong_type_is_refused() {
    assert_rejected("[server]\nmax_connections = \"many\"\n", "max_connections");
}

#[test]
fn port_in_use_fails_with_the_address() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = TempDir::new("config");
    let path = dir.join("shardcast.toml");
    fs::write(
        &path,
        format!("[server]\nlisten = \"{addr}\"\nshards = 2\n"),
    )
    .unwrap();
    let out = shardcast_cli(&[], &path);
    assert!(
        out.status.is_some(),
        "still running with its port taken: {}",
        out.describe()
    );
    assert!(!out.success(), "{}", out.describe());
    assert!(
        out.stderr.contains(&addr),
        "error does not name {addr}: {}",
        out.describe()
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.describe());
    drop(taken);
}
