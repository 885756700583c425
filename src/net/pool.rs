//! Idle TCP connections kept between requests, so that a client (or a node
//! forwarding writes to its leader) does not pay a connect per request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use tokio::net::TcpStream;

/// Idle connections kept per address for the next request.
const IDLE_CONNECTIONS_MAX: usize = 8;

/// Open connections between requests, by address: a request takes one (or
/// connects) and gives it back once answered, so sequential requests share
/// a connection and concurrent ones use one each. A node serves the
/// requests of one connection in order.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<TcpStream>>>,
}

impl Pool {
    /// An idle connection to `addr` that the peer has not closed.
    pub(crate) fn take(&self, addr: SocketAddr) -> Option<TcpStream> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let streams = idle.get_mut(&addr)?;
        while let Some(stream) = streams.pop() {
            let mut byte = [0u8; 1];
            // Nothing to read is what a live idle connection looks like;
            // end of stream or a stray byte means it cannot be used.
            if matches!(stream.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            {
                return Some(stream);
            }
        }
        None
    }

    /// Gives `stream` back for the next request to `addr`; beyond
    /// [`IDLE_CONNECTIONS_MAX`] waiting it is closed instead.
    pub(crate) fn put(&self, addr: SocketAddr, stream: TcpStream) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let streams = idle.entry(addr).or_default();
        if streams.len() < IDLE_CONNECTIONS_MAX {
            streams.push(stream);
        }
    }
}
