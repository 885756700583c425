//! A data directory on disk: the `image` and `log` files of
//! [`super::format`], a lock against a second process, and the fsyncs that
//! make a change durable.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::error::StorageError;
use super::format::{
    self, FileHeader, Record, Recovery, TailDamage, HEADER_BYTES, IMAGE_FILE, LOG_FILE,
};
use crate::core::DurableImage;

/// Held while the directory is open; a second process gets
/// [`StorageError::Locked`].
const LOCK_FILE: &str = "lock";

/// The log is compacted into a new image once it is this large and larger
/// than the last image: writing images then costs at most as many bytes as
/// the log itself.
pub const LOG_BYTES_COMPACT_MIN: u64 = 1024 * 1024;

/// What opening a directory found.
#[derive(Debug)]
pub struct Opened {
    /// The durable state to restore (empty for a new directory).
    pub image: DurableImage,
    /// Log records replayed onto the last image.
    pub records: usize,
    /// A torn or damaged log tail that was cut off.
    pub damage: Option<TailDamage>,
}

/// Counters of a data directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageCounters {
    /// Log records appended.
    pub records_written: u64,
    /// Bytes written, log records and images.
    pub bytes_written: u64,
    /// fsyncs of the log.
    pub syncs: u64,
    /// Images written (snapshot installs and compactions).
    pub images_written: u64,
    /// Bytes of a torn or damaged log tail cut off when the directory was
    /// opened (0: none).
    pub recovered_bytes_dropped: u64,
}

/// An open data directory.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    cluster_id: u32,
    generation: u64,
    log: File,
    log_bytes: u64,
    image_bytes: u64,
    /// Appended records not yet synced.
    unsynced: bool,
    scratch: Vec<u8>,
    counters: StorageCounters,
    _lock: File,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StorageError + 'a {
    move |source| StorageError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// Reads `path` whole, or `None` if it does not exist.
fn read_optional(path: &Path, bytes_max: usize) -> Result<Option<Vec<u8>>, StorageError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("open", path)(e)),
    };
    let len = file.metadata().map_err(io("stat", path))?.len();
    if len > bytes_max as u64 {
        return Err(StorageError::Format {
            path: path.to_owned(),
            reason: super::FormatError::TooLarge {
                bytes: len,
                limit: bytes_max,
            },
        });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.read_to_end(&mut bytes).map_err(io("read", path))?;
    Ok(Some(bytes))
}

/// fsync of a directory, so that a rename in it is durable.
fn sync_dir(path: &Path) -> Result<(), StorageError> {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(io("sync", path))
}

/// Writes `bytes` to `name` atomically: a temporary file, written and
/// synced, renamed over the old one, and the directory synced.
fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let target = dir.join(name);
    let mut file = File::create(&tmp).map_err(io("create", &tmp))?;
    file.write_all(bytes).map_err(io("write", &tmp))?;
    file.sync_all().map_err(io("sync", &tmp))?;
    drop(file);
    std::fs::rename(&tmp, &target).map_err(io("rename", &target))?;
    sync_dir(dir)
}

impl DataDir {
    /// Opens (creating if needed) the data directory at `path` for a node
    /// of `cluster_id` known as `addr`, and recovers what it holds. A
    /// torn log tail is cut off (reported in [`Opened::damage`]); any
    /// other damage, another cluster's or address's directory, or a
    /// directory in use refuses to open, with nothing changed.
    pub fn open(
        path: &Path,
        cluster_id: u32,
        addr: &str,
    ) -> Result<(DataDir, Opened), StorageError> {
        if !path.is_dir() {
            std::fs::create_dir_all(path).map_err(io("create", path))?;
            // The new directory's own entry must survive a crash too.
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        let lock_path = path.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("open", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StorageError::Locked {
                    path: path.to_owned(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io("lock", &lock_path)(e)),
        }
        let image_path = path.join(IMAGE_FILE);
        let log_path = path.join(LOG_FILE);
        // An image can be as large as the largest snapshot frame, and more.
        let image_file = read_optional(&image_path, usize::MAX / 2)?;
        let log_file = read_optional(&log_path, usize::MAX / 2)?;
        let recovery: Recovery =
            format::recover(image_file.as_deref(), log_file.as_deref(), cluster_id).map_err(
                |e| StorageError::Format {
                    path: path.join(e.file),
                    reason: e.reason,
                },
            )?;
        if let Some(identity) = &recovery.image.identity {
            if identity.addr != addr {
                return Err(StorageError::Mismatch {
                    path: path.to_owned(),
                    found: identity.addr.clone(),
                    expected: addr.to_owned(),
                });
            }
        }
        let header = FileHeader {
            cluster_id,
            generation: recovery.generation,
        };
        let (log, log_bytes) = match recovery.log_keep_bytes {
            Some(keep) => {
                let log = OpenOptions::new()
                    .write(true)
                    .open(&log_path)
                    .map_err(io("open", &log_path))?;
                if recovery.damage.is_some() {
                    log.set_len(keep as u64)
                        .map_err(io("truncate", &log_path))?;
                    log.sync_all().map_err(io("sync", &log_path))?;
                }
                (log, keep as u64)
            }
            None => {
                replace_file(path, LOG_FILE, &format::log_header(header))?;
                let log = OpenOptions::new()
                    .write(true)
                    .open(&log_path)
                    .map_err(io("open", &log_path))?;
                (log, HEADER_BYTES as u64)
            }
        };
        let mut dir = DataDir {
            path: path.to_owned(),
            cluster_id,
            generation: recovery.generation,
            log,
            log_bytes,
            image_bytes: image_file.map_or(0, |f| f.len() as u64),
            unsynced: false,
            scratch: Vec::new(),
            counters: StorageCounters {
                recovered_bytes_dropped: recovery
                    .damage
                    .as_ref()
                    .map_or(0, |d| d.bytes_dropped as u64),
                ..StorageCounters::default()
            },
            _lock: lock,
        };
        dir.seek_end()?;
        let tmp = [IMAGE_FILE, LOG_FILE].map(|name| path.join(format!("{name}.tmp")));
        for stale in tmp {
            let _ = std::fs::remove_file(stale);
        }
        Ok((
            dir,
            Opened {
                image: recovery.image,
                records: recovery.records,
                damage: recovery.damage,
            },
        ))
    }

    fn seek_end(&mut self) -> Result<(), StorageError> {
        use std::io::Seek;
        let log_path = self.path.join(LOG_FILE);
        self.log
            .seek(std::io::SeekFrom::Start(self.log_bytes))
            .map_err(io("seek", &log_path))?;
        Ok(())
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record (durable after [`DataDir::sync`]).
    pub fn append(&mut self, record: &Record) -> Result<(), StorageError> {
        self.scratch.clear();
        format::encode_record(record, &mut self.scratch);
        let content = self.scratch.len() - format::RECORD_HEADER_BYTES;
        if content > format::RECORD_BYTES_MAX {
            // Never write what recovery would not read back.
            return Err(StorageError::Format {
                path: self.path.join(LOG_FILE),
                reason: super::FormatError::TooLarge {
                    bytes: content as u64,
                    limit: format::RECORD_BYTES_MAX,
                },
            });
        }
        self.log
            .write_all(&self.scratch)
            .map_err(io("write", &self.path.join(LOG_FILE)))?;
        self.log_bytes += self.scratch.len() as u64;
        self.counters.records_written += 1;
        self.counters.bytes_written += self.scratch.len() as u64;
        self.unsynced = true;
        Ok(())
    }

    /// Makes every appended record durable.
    pub fn sync(&mut self) -> Result<(), StorageError> {
        if !self.unsynced {
            return Ok(());
        }
        self.log
            .sync_data()
            .map_err(io("sync", &self.path.join(LOG_FILE)))?;
        self.unsynced = false;
        self.counters.syncs += 1;
        Ok(())
    }

    /// Replaces everything with `image`: the image file first, then an
    /// empty log of the new generation. A crash in between leaves the new
    /// image and an older log, which recovery ignores.
    pub fn write_image(&mut self, image: &DurableImage) -> Result<(), StorageError> {
        let header = FileHeader {
            cluster_id: self.cluster_id,
            generation: self.generation + 1,
        };
        let bytes = format::encode_image(image, header);
        replace_file(&self.path, IMAGE_FILE, &bytes)?;
        self.generation = header.generation;
        self.image_bytes = bytes.len() as u64;
        replace_file(&self.path, LOG_FILE, &format::log_header(header))?;
        let log_path = self.path.join(LOG_FILE);
        self.log = OpenOptions::new()
            .write(true)
            .open(&log_path)
            .map_err(io("open", &log_path))?;
        self.log_bytes = HEADER_BYTES as u64;
        self.seek_end()?;
        self.unsynced = false;
        self.counters.images_written += 1;
        self.counters.bytes_written += bytes.len() as u64 + HEADER_BYTES as u64;
        Ok(())
    }

    /// Whether the log has grown enough to be folded into a new image.
    pub fn wants_compaction(&self) -> bool {
        self.log_bytes >= LOG_BYTES_COMPACT_MIN && self.log_bytes > self.image_bytes
    }

    /// Bytes in the log file.
    pub fn log_bytes(&self) -> u64 {
        self.log_bytes
    }

    /// Counters since opening.
    pub fn counters(&self) -> StorageCounters {
        self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{HardState, Identity};
    use crate::wire::{Change, Entry, NodeId};

    const ADDR: &str = "127.0.0.1:4000";

    /// A fresh directory under the system's temporary directory, removed
    /// when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let path = std::env::temp_dir().join(format!(
                "simple-raft-{name}-{}-{}",
                std::process::id(),
                rand::random::<u32>()
            ));
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn entry(version: u64) -> Record {
        Record::Entry {
            version,
            entry: Entry {
                term: 1,
                change: Change::Set {
                    key: format!("k{version}"),
                    value: "v".into(),
                },
            },
        }
    }

    fn open(path: &Path) -> (DataDir, Opened) {
        DataDir::open(path, 1, ADDR).expect("opens")
    }

    #[test]
    fn synced_records_survive_reopening() {
        let tmp = TempDir::new("reopen");
        {
            let (mut dir, opened) = open(&tmp.0);
            assert_eq!(opened.image, DurableImage::default());
            dir.append(&Record::Identity(Some(Identity {
                id: NodeId(3),
                incarnation: 1,
                addr: ADDR.into(),
                generation: 7,
            })))
            .expect("append");
            dir.append(&Record::HardState(HardState {
                term: 4,
                voted_for: Some(NodeId(3)),
            }))
            .expect("append");
            for version in 1..=3 {
                dir.append(&entry(version)).expect("append");
            }
            dir.sync().expect("sync");
        }
        let (_, opened) = open(&tmp.0);
        assert_eq!(opened.records, 5);
        assert_eq!(opened.image.hard_state.term, 4);
        assert_eq!(opened.image.entries.len(), 3);
        assert_eq!(opened.damage, None);
    }

    #[test]
    fn a_torn_tail_is_truncated_on_disk_and_reported_once() {
        let tmp = TempDir::new("torn");
        {
            let (mut dir, _) = open(&tmp.0);
            for version in 1..=3 {
                dir.append(&entry(version)).expect("append");
            }
            dir.sync().expect("sync");
        }
        let log = tmp.0.join(LOG_FILE);
        let len = std::fs::metadata(&log).expect("stat").len();
        let file = OpenOptions::new().write(true).open(&log).expect("open");
        file.set_len(len - 3).expect("tear the last record");
        drop(file);
        let (mut dir, opened) = open(&tmp.0);
        let damage = opened.damage.expect("reported");
        assert_eq!(opened.image.entries.len(), 2);
        assert_eq!(damage.offset as u64 + damage.bytes_dropped as u64, len - 3);
        // Appending goes on after the cut.
        dir.append(&entry(3)).expect("append");
        dir.sync().expect("sync");
        drop(dir);
        let (_, opened) = open(&tmp.0);
        assert_eq!(opened.damage, None);
        assert_eq!(opened.image.entries.len(), 3);
    }

    #[test]
    fn damage_inside_the_log_refuses_to_open_naming_the_file_and_offset() {
        let tmp = TempDir::new("damaged");
        {
            let (mut dir, _) = open(&tmp.0);
            for version in 1..=3 {
                dir.append(&entry(version)).expect("append");
            }
            dir.sync().expect("sync");
        }
        let log = tmp.0.join(LOG_FILE);
        let mut bytes = std::fs::read(&log).expect("read");
        let len = bytes.len();
        // The last byte of the first record's content.
        let first_record = HEADER_BYTES;
        let first_len =
            u32::from_le_bytes(bytes[first_record..first_record + 4].try_into().unwrap());
        bytes[first_record + format::RECORD_HEADER_BYTES + first_len as usize - 1] ^= 0x01;
        std::fs::write(&log, &bytes).expect("damage the first record");
        let error = DataDir::open(&tmp.0, 1, ADDR).map(|_| ()).unwrap_err();
        let shown = error.to_string();
        assert!(shown.contains(&log.display().to_string()), "{shown}");
        assert!(
            shown.contains(&format!("at byte {first_record}")),
            "{shown}"
        );
        // Nothing was cut.
        assert_eq!(std::fs::metadata(&log).expect("stat").len() as usize, len);
    }

    #[test]
    fn an_image_replaces_the_log_and_records_follow_it() {
        let tmp = TempDir::new("image");
        let (mut dir, _) = open(&tmp.0);
        for version in 1..=3 {
            dir.append(&entry(version)).expect("append");
        }
        dir.sync().expect("sync");
        let mut image = DurableImage::default();
        image.hard_state.term = 9;
        image.snapshot.last.version = 3;
        dir.write_image(&image).expect("image");
        assert_eq!(dir.log_bytes(), HEADER_BYTES as u64);
        dir.append(&entry(4)).expect("append");
        dir.sync().expect("sync");
        drop(dir);
        let (_, opened) = open(&tmp.0);
        assert_eq!(opened.image.hard_state.term, 9);
        assert_eq!(opened.image.entries.len(), 1);
        assert_eq!(opened.records, 1);
    }

    #[test]
    fn a_directory_in_use_or_of_another_address_is_refused() {
        let tmp = TempDir::new("lock");
        let (mut dir, _) = open(&tmp.0);
        assert!(matches!(
            DataDir::open(&tmp.0, 1, ADDR),
            Err(StorageError::Locked { .. })
        ));
        dir.append(&Record::Identity(Some(Identity {
            id: NodeId(1),
            incarnation: 1,
            addr: ADDR.into(),
            generation: 7,
        })))
        .expect("append");
        dir.sync().expect("sync");
        drop(dir);
        assert!(matches!(
            DataDir::open(&tmp.0, 1, "127.0.0.1:4001"),
            Err(StorageError::Mismatch { .. })
        ));
        assert!(matches!(
            DataDir::open(&tmp.0, 2, ADDR),
            Err(StorageError::Format { .. })
        ));
    }
}
