//! Durable storage for a node with a data directory: term and vote,
//! identity, the log and the committed state, so that a restart resumes as
//! the same member and nothing acknowledged is lost.
//!
//! The core hands out each change through
//! [`crate::core::Core::poll_persist`]; the driver appends it to the log
//! (or replaces everything with an image) and syncs before it sends or
//! reports anything. [`format`](mod@format) holds the bytes without I/O, [`DataDir`]
//! the files.

mod dir;
mod error;
pub mod format;

pub use dir::{DataDir, Opened, StorageCounters, LOG_BYTES_COMPACT_MIN};
pub use error::{FormatError, StorageError};
