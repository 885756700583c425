//! simple-raft keeps a small replicated state — a member list, a
//! `String -> String` map and an election number — in sync across the nodes
//! of a LAN cluster, with one elected leader as the source of record.
//!
//! The crate is layered so that dependencies point one way:
//! [`wire`] (frames and messages, pure functions over bytes) is used by the
//! protocol core, which is used by the networked driver and the CLI.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod config;
pub mod core;
mod driver;
mod error;
mod node;
pub mod wire;

pub use client::Client;
pub use config::Config;
pub use driver::SharedMap;
pub use error::Error;
pub use node::{Metrics, Node, State, Status};
