//! shardcast-bench as a library: the load generator's parts, used by its binary, and its wire
//! parsers (`flv`, `httpflv`), which shardcast's end-to-end tests share instead of keeping their
//! own copies.

pub mod args;
pub mod compare;
pub mod conn;
pub mod flv;
pub mod httpflv;
pub mod latency;
pub mod lbreport;
pub mod nodes;
pub mod player;
pub mod procstat;
pub mod publisher;
pub mod pump;
pub mod report;
pub mod rtmpscan;
pub mod runner;
pub mod schedule;
pub mod stats;
