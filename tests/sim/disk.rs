//! A durable node's disk in memory: the same image and log bytes a data
//! directory holds, written with the library's encoder and read back with
//! its recovery, so a crash can leave any torn state a real one could.

use simple_raft::core::{DurableImage, Persist};
use simple_raft::storage::format::{self, FileHeader, Recovery};

use super::rng::Rng;

/// The cluster id of every simulated node.
const CLUSTER: u32 = 0;
/// Largest log record read back.
/// The simulated log is folded into an image this early, so that runs
/// cross many image replacements.
const LOG_BYTES_COMPACT_MIN: usize = 2048;

/// One write of a batch, in order.
enum Write {
    Record(Vec<u8>),
    Image(Vec<u8>),
}

/// The files of one node's data directory.
#[derive(Debug, Clone)]
pub struct Disk {
    image: Option<Vec<u8>>,
    log: Vec<u8>,
    generation: u64,
    /// Writes cut short by a crash, for the report.
    pub torn_writes: u64,
    /// Images written.
    pub images: u64,
}

impl Default for Disk {
    fn default() -> Disk {
        Disk {
            image: None,
            log: format::log_header(header(0)).to_vec(),
            generation: 0,
            torn_writes: 0,
            images: 0,
        }
    }
}

fn header(generation: u64) -> FileHeader {
    FileHeader {
        cluster_id: CLUSTER,
        generation,
    }
}

impl Disk {
    /// Whether nothing was ever written (or the directory was wiped).
    pub fn is_empty(&self) -> bool {
        self.image.is_none() && self.log.len() == format::HEADER_BYTES
    }

    /// Writes a batch handed out by `poll_persist`, then syncs; folds the
    /// log into an image of `image_now` when it has grown.
    pub fn write(&mut self, batch: Vec<Persist>, image_now: impl FnOnce() -> DurableImage) {
        for write in self.encode(batch) {
            self.apply(write);
        }
        let image_len = self.image.as_ref().map_or(0, Vec::len);
        if self.log.len() >= LOG_BYTES_COMPACT_MIN && self.log.len() > image_len {
            let image = image_now();
            self.apply(Write::Image(format::encode_image(
                &image,
                header(self.generation + 1),
            )));
        }
    }

    /// A crash in the middle of writing `batch`: a prefix of its bytes
    /// reaches the disk, the last of them perhaps garbled; an image is
    /// replaced whole or not at all, and the log after it may be the old
    /// one (a crash between the two renames).
    pub fn write_torn(&mut self, batch: Vec<Persist>, rng: &mut Rng) {
        let writes = self.encode(batch);
        let total: usize = writes
            .iter()
            .map(|w| match w {
                Write::Record(b) | Write::Image(b) => b.len(),
            })
            .sum();
        let mut budget = rng.below(total as u64) as usize;
        self.torn_writes += 1;
        for write in writes {
            match write {
                Write::Image(bytes) if budget >= bytes.len() => {
                    budget -= bytes.len();
                    self.apply(Write::Image(bytes));
                }
                Write::Image(bytes) => {
                    if rng.chance(500) {
                        // The image was renamed into place, the log was not.
                        self.generation += 1;
                        self.image = Some(bytes);
                    }
                    return;
                }
                Write::Record(bytes) if budget >= bytes.len() => {
                    budget -= bytes.len();
                    self.apply(Write::Record(bytes));
                }
                Write::Record(bytes) => {
                    let at = self.log.len();
                    self.log.extend_from_slice(&bytes[..budget]);
                    let header = format::RECORD_HEADER_BYTES;
                    if budget > header && rng.chance(300) {
                        // A sector that reached the disk half written. Not
                        // the length: a length garbled with bytes after it
                        // looks like damage inside the log, which recovery
                        // refuses rather than cut (see docs/STORAGE.md).
                        let i = at + header + rng.index(budget - header);
                        self.log[i] ^= 1 << rng.below(8);
                    }
                    return;
                }
            }
        }
    }

    fn encode(&self, batch: Vec<Persist>) -> Vec<Write> {
        let mut generation = self.generation;
        batch
            .into_iter()
            .map(|change| match change {
                Persist::Record(record) => {
                    let mut bytes = Vec::new();
                    format::encode_record(&record, &mut bytes);
                    Write::Record(bytes)
                }
                Persist::Image(image) => {
                    generation += 1;
                    Write::Image(format::encode_image(&image, header(generation)))
                }
            })
            .collect()
    }

    fn apply(&mut self, write: Write) {
        match write {
            Write::Record(bytes) => self.log.extend_from_slice(&bytes),
            Write::Image(bytes) => {
                self.generation += 1;
                self.image = Some(bytes);
                self.log = format::log_header(header(self.generation)).to_vec();
                self.images += 1;
            }
        }
    }

    /// What a restart reads, with the log cut back as the data directory
    /// cuts it. An error means the files cannot be trusted.
    pub fn recover(&mut self) -> Result<Recovery, String> {
        let recovery = format::recover(self.image.as_deref(), Some(&self.log), CLUSTER)
            .map_err(|e| format!("recovery refused the {} file: {}", e.file, e.reason))?;
        self.generation = recovery.generation;
        match recovery.log_keep_bytes {
            Some(keep) => self.log.truncate(keep),
            None => self.log = format::log_header(header(self.generation)).to_vec(),
        }
        Ok(recovery)
    }
}
