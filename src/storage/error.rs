//! Why a data directory could not be opened or written.

use std::path::PathBuf;

/// A data directory problem. On open, nothing was changed on disk except
/// where a variant says so; on write, the node stops (it must not send what
/// it could not make durable).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another process has the directory open.
    #[error("{} is in use by another process", path.display())]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// A file is not one of ours, or of a newer format.
    #[error("{}: {reason}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: FormatError,
    },
    /// The directory belongs to a node at another address.
    #[error("{}: belongs to {found}, this node is {expected}", path.display())]
    Mismatch {
        /// The directory.
        path: PathBuf,
        /// Whose it is.
        found: String,
        /// Who is opening it.
        expected: String,
    },
}

/// What is wrong with the bytes of a data file. Variants of the log's last
/// record are a torn or damaged tail, which recovery cuts off; anywhere in
/// the image they mean the directory cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The file does not start with our magic bytes.
    #[error("not a simple-raft data file")]
    BadMagic,
    /// Written by a newer version.
    #[error("format version {0} is not supported")]
    UnsupportedVersion(u8),
    /// The file ends inside a header or record.
    #[error("ends {missing} bytes short of a whole record")]
    Truncated {
        /// Bytes missing.
        missing: usize,
    },
    /// A declared length is above the limit.
    #[error("a record of {bytes} bytes is above the limit of {limit}")]
    TooLarge {
        /// Declared length.
        bytes: u64,
        /// The limit.
        limit: usize,
    },
    /// The checksum does not match the content.
    #[error("checksum mismatch")]
    BadChecksum,
    /// The checksum matched but the content did not decode.
    #[error("record does not decode")]
    BadRecord,
    /// The records do not follow on from each other (a version gap).
    #[error("entry {version} does not follow entry {last}")]
    Gap {
        /// The version found.
        version: u64,
        /// The last version held.
        last: u64,
    },
    /// Written for another cluster id.
    #[error("belongs to cluster {found}, not {expected}")]
    OtherCluster {
        /// The file's cluster id.
        found: u32,
        /// This node's.
        expected: u32,
    },
    /// A record of the log is damaged and bytes follow it: not a torn
    /// last record but damage inside the log, which recovery refuses to
    /// cut off (the records after it may have been acknowledged).
    #[error(
        "the record at byte {offset} is damaged ({reason}) and {bytes_after} bytes follow it: \
         damage inside the log, not a torn tail"
    )]
    Damaged {
        /// Where the damaged record starts in the file.
        offset: usize,
        /// Bytes after its declared end.
        bytes_after: usize,
        /// What is wrong with it.
        reason: Box<FormatError>,
    },
    /// The log was started after an image that is not there.
    #[error("the log (generation {log}) is newer than the image (generation {image})")]
    NewerLog {
        /// The log's generation.
        log: u64,
        /// The image's generation (0: none).
        image: u64,
    },
}
