//! The write path of a connection, in the order bytes take it: a [`ConnWriter`] queue per
//! connection; the shard's [`Flusher`] (merged writes on a [`schedule::FlushSchedule`]); the
//! writer [`task`] that waits for room; [`sys`], the raw `sendmsg` calls with one cursor.

pub mod conn_writer;
pub mod flusher;
pub mod schedule;
pub mod sys;
pub mod task;

pub use conn_writer::ConnWriter;
pub use flusher::Flusher;
pub use task::{close_and_wait, run_writer};
