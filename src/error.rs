//! The library's one error type.

use std::net::SocketAddr;

use crate::core::{ConfigError, RequestError};
use crate::wire::ClientFailure;

/// Why a call failed. Each variant says whether the replicated state may
/// have changed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot work. Nothing changed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The data directory could not be opened (or, on a running node,
    /// written: the node stopped). Nothing changed on disk that recovery
    /// does not expect.
    #[error("data directory: {0}")]
    Storage(#[from] crate::storage::StorageError),
    /// Binding the sockets failed. Nothing changed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// No leader was reachable before the request timeout. Nothing changed.
    #[error("no leader reachable")]
    NoLeader,
    /// No outcome before the request timeout: a write may or may not have
    /// committed (in a session: at most once, and a copy sent later applies
    /// as nothing); a read
    /// changed nothing.
    #[error("timed out")]
    Timeout,
    /// A limit was reached. Nothing changed.
    #[error("busy: {0}")]
    Busy(String),
    /// The change is larger than the limits allow, or would take the map
    /// above `state_bytes_max`. Nothing changed.
    #[error("too large: {0}")]
    TooLarge(String),
    /// This node is not (or no longer) a cluster member. Nothing changed.
    #[error("not a member of a cluster")]
    NotMember,
    /// Another membership change or transfer is in progress. Nothing changed.
    #[error("another membership change is in progress")]
    ChangeInProgress,
    /// The write's session expired before its outcome was known (the
    /// cluster closed the session to make room for newer ones, or forgot
    /// this request): an earlier attempt may have applied, and nothing of
    /// it will apply now. The next write opens a new session.
    #[error("session expired: the outcome of this write is not known")]
    SessionExpired,
    /// The request was refused as invalid. Nothing changed.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The node has stopped. Nothing changed.
    #[error("the node has stopped")]
    Stopped,
    /// The request went out to `addr` but no answer came back (the
    /// connection broke or closed): a write may or may not have happened
    /// (a session write sent again applies at most once); a read changed
    /// nothing.
    #[error("{addr}: no answer ({message})")]
    NoAnswer {
        /// The peer.
        addr: SocketAddr,
        /// What happened to the connection.
        message: String,
    },
    /// A peer could not be reached or answered garbage. Nothing changed.
    #[error("{addr}: {message}")]
    Unreachable {
        /// The peer.
        addr: SocketAddr,
        /// What went wrong.
        message: String,
    },
}

impl Error {
    pub(crate) fn from_request(error: RequestError) -> Error {
        match error {
            RequestError::NotLeader { .. } => Error::NoLeader,
            RequestError::Uncertain | RequestError::Timeout => Error::Timeout,
            RequestError::Busy { limit } => Error::Busy(limit.to_string()),
            RequestError::NotMember => Error::NotMember,
            RequestError::TooLarge { bytes, limit } => {
                Error::TooLarge(format!("{bytes} bytes, limit {limit}"))
            }
            RequestError::StateFull { .. } => Error::TooLarge(error.to_string()),
            RequestError::NoTransferTarget => Error::Invalid("no voter to hand over to".into()),
            RequestError::ChangeInProgress => Error::ChangeInProgress,
            RequestError::SessionExpired => Error::SessionExpired,
        }
    }

    pub(crate) fn from_failure(failure: ClientFailure, message: String) -> Error {
        match failure {
            ClientFailure::NoLeader => Error::NoLeader,
            ClientFailure::Timeout | ClientFailure::Uncertain => Error::Timeout,
            ClientFailure::Busy => Error::Busy(message),
            ClientFailure::TooLarge => Error::TooLarge(message),
            ClientFailure::NotMember => Error::NotMember,
            ClientFailure::Invalid => Error::Invalid(message),
            ClientFailure::Stopping => Error::Stopped,
            ClientFailure::SessionExpired => Error::SessionExpired,
        }
    }

    /// The wire category of this error, for a client response.
    pub(crate) fn failure(&self) -> ClientFailure {
        match self {
            Error::NoLeader | Error::Unreachable { .. } => ClientFailure::NoLeader,
            Error::Timeout | Error::NoAnswer { .. } => ClientFailure::Timeout,
            Error::Busy(_) | Error::ChangeInProgress => ClientFailure::Busy,
            Error::TooLarge(_) => ClientFailure::TooLarge,
            Error::NotMember => ClientFailure::NotMember,
            Error::Invalid(_) | Error::Config(_) | Error::Bind { .. } => ClientFailure::Invalid,
            Error::Stopped | Error::Storage(_) => ClientFailure::Stopping,
            Error::SessionExpired => ClientFailure::SessionExpired,
        }
    }
}
