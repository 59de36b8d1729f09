//! RTMP without I/O: plain state machines fed bytes, returning bytes and events. Nothing here
//! touches a socket, an executor or the clock, so all of it is tested in memory.

pub mod amf0;
pub mod chunk;
pub mod client;
pub mod handshake;
pub mod message;
pub mod session;
