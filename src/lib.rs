//! simple-raft keeps a small replicated state — a member list, a
//! `String -> String` map and an election number — in sync across the nodes
//! of a LAN cluster, with one elected leader as the source of record.
//!
//! A service embeds a [`Node`]: it starts it with its address, the nodes to
//! contact, and the original design's three timings (update interval,
//! leader timeout, election timeout); it watches the node's [`State`] to
//! know whether it leads; it writes with [`Node::update`] (the whole map),
//! [`Node::set`] and [`Node::remove`], which return once a majority has the
//! change, from any node (writes are forwarded to the leader).
//!
//! ```
//! use std::time::Duration;
//! use simple_raft::{Node, State};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), simple_raft::Error> {
//! // No nodes to contact: this node founds a cluster, and leads it.
//! let node = Node::init(
//!     "127.0.0.1:0",
//!     &[],
//!     Duration::from_millis(50),  // update (heartbeat) interval
//!     Duration::from_millis(500), // leader timeout
//!     Duration::from_millis(500), // election timeout
//! )
//! .await?;
//! node.wait_for(Duration::from_secs(5), |s| s.state == State::Leader).await?;
//!
//! let version = node.set("owner", "scheduler-1").await?; // committed
//! assert_eq!(node.get("owner").await?.as_deref(), Some("scheduler-1"));
//! assert!(node.status().version >= version);
//!
//! // Others join with `Node::init(their_addr, &[this_addr], ...)`.
//! node.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! Without a data directory a node keeps nothing on disk: restarted, it
//! joins again as a new member and catches up from the others. With one
//! ([`Config::data_dir`]) it syncs its term, vote and log before it answers,
//! and comes back as the same member with everything it acknowledged, even
//! if every node crashed at once.
//!
//! # Layout
//!
//! The crate is layered so that dependencies point one way, down:
//! [`wire`] (frames and messages, pure functions over bytes) is used by
//! [`core`] (the Raft state machine, without I/O: time and randomness are
//! passed in, and what must be durable is handed out before anything is
//! sent), whose durable changes [`storage`] turns into files; above them
//! the small shared modules (the [`Config`], the [`Error`], the [`Status`]
//! and [`Metrics`] a node reports, client sessions), then `net` (TCP
//! framing and the connection pool), the [`Client`] over it, the driver
//! (a tokio task per node, which serves TCP and forwards writes to the
//! leader with a `Client`), and on top the [`Node`] handle. No module
//! imports from one above it:
//!
//! ```text
//! wire <- core <- storage <- config, error, status, session
//!      <- net <- client <- driver <- node
//! ```
//!
//! The command line (`simple-raft` binary, the demo and the cluster
//! benchmark) is the `simple-raft-cli` package of the workspace, so a
//! service that embeds this crate builds none of its dependencies.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod config;
pub mod core;
mod driver;
mod error;
mod net;
mod node;
mod session;
mod status;
pub mod storage;
pub mod wire;

pub use client::Client;
pub use config::Config;
pub use driver::SharedMap;
pub use error::Error;
pub use node::Node;
pub use status::{Metrics, State, Status};
