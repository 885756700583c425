//! Cluster keys: the keyed MAC (authentication tag) that every frame of a
//! keyed cluster carries, and the keyring a node signs and verifies with.
//!
//! The tag is a BLAKE3 keyed hash, truncated to [`TAG_BYTES`], over every
//! byte of the frame except the tag itself and the crc32: the header (with
//! the `TAGGED` flag set), the payload and the tag length byte that follows
//! the tag. The MAC key is derived from the 32-byte cluster key with BLAKE3's
//! key derivation and a context string of its own, so the key material is
//! never used for anything else (the fingerprint shown in logs is derived
//! with another context).
//!
//! A [`Keyring`] signs with its first entry (the primary) and accepts a
//! frame tagged with any of its keys: a key can be rotated across a running
//! cluster in three steps (see `docs/WIRE.md`). The entry [`KeyEntry::Unkeyed`]
//! stands for "no key": as the primary it sends frames without a tag, and
//! listed anywhere it accepts frames without one; it exists only so that a
//! running cluster can move from no key to a key (and back) the same way.

use core::fmt;

/// Bytes of the tag this build writes. The wire accepts
/// [`super::TAG_BYTES_MIN`]`..=`[`super::TAG_BYTES_MAX`]; a verifier computes
/// the MAC at the length the frame carries.
pub const TAG_BYTES: usize = 16;
/// Bytes of a cluster key.
pub const KEY_BYTES: usize = 32;
/// Most entries a keyring takes: a frame with a bad tag costs one MAC per
/// key, so the list stays short (two keys suffice for a rotation).
pub const KEYRING_ENTRIES_MAX: usize = 8;

/// Context of the MAC key derivation; changing it changes every tag.
const MAC_CONTEXT: &str = "simple-raft wire v1 frame tag";
/// Context of the fingerprint derivation.
const FINGERPRINT_CONTEXT: &str = "simple-raft cluster key fingerprint";

/// One 32-byte cluster key. Its `Debug` shows a fingerprint, never the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey {
    mac_key: [u8; 32],
    fingerprint: [u8; 4],
}

impl ClusterKey {
    /// The key from its 32 bytes.
    pub fn new(key: [u8; KEY_BYTES]) -> ClusterKey {
        let fingerprint = blake3::derive_key(FINGERPRINT_CONTEXT, &key);
        ClusterKey {
            mac_key: blake3::derive_key(MAC_CONTEXT, &key),
            fingerprint: [
                fingerprint[0],
                fingerprint[1],
                fingerprint[2],
                fingerprint[3],
            ],
        }
    }

    /// The key from 64 hex digits.
    pub fn from_hex(text: &str) -> Option<ClusterKey> {
        let digits = text.as_bytes();
        if digits.len() != 2 * KEY_BYTES {
            return None;
        }
        let mut key = [0u8; KEY_BYTES];
        for (byte, pair) in key.iter_mut().zip(digits.chunks(2)) {
            let pair = core::str::from_utf8(pair).ok()?;
            *byte = u8::from_str_radix(pair, 16).ok()?;
        }
        Some(ClusterKey::new(key))
    }

    /// Eight hex digits that tell keys apart in logs without revealing
    /// them.
    pub fn fingerprint(&self) -> String {
        self.fingerprint
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The tag of `signed` (every byte of the frame before the tag) and the
    /// tag length byte, `out.len()` bytes long.
    fn mac(&self, signed: &[u8], out: &mut [u8]) {
        let mut hasher = blake3::Hasher::new_keyed(&self.mac_key);
        hasher.update(signed);
        hasher.update(&[out.len() as u8]);
        hasher.finalize_xof().fill(out);
    }
}

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterKey({})", self.fingerprint())
    }
}

/// One entry of a keyring: a key, or "no key" during a move to or from
/// keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyEntry {
    /// A cluster key.
    Key(ClusterKey),
    /// No key: as the primary, frames are sent without a tag; anywhere in
    /// the ring, frames without a tag are accepted.
    Unkeyed,
}

impl fmt::Display for KeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyEntry::Key(key) => f.write_str(&key.fingerprint()),
            KeyEntry::Unkeyed => f.write_str("unkeyed"),
        }
    }
}

/// The keys a node signs and verifies frames with: it signs with the first
/// (the primary) and accepts any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyring {
    entries: Vec<KeyEntry>,
}

/// A keyring (or a key file) that cannot be used; says why without showing
/// any key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// No entry at all.
    #[error("no key: a key file needs at least one line with a key")]
    Empty,
    /// More entries than [`KEYRING_ENTRIES_MAX`].
    #[error("{count} keys; at most {KEYRING_ENTRIES_MAX} are allowed")]
    TooMany {
        /// How many there were.
        count: usize,
    },
    /// A line is neither a key nor `unkeyed`.
    #[error(
        "line {line}: expected 64 hex digits (a 32-byte key) or `unkeyed`, found {chars} characters that are not"
    )]
    Malformed {
        /// The line number, from 1.
        line: usize,
        /// Its length after trimming (its content is not shown: it may be
        /// a mistyped key).
        chars: usize,
    },
    /// The same entry twice.
    #[error("line {line} repeats an earlier entry")]
    Duplicate {
        /// The line number (or entry position) of the repeat, from 1.
        line: usize,
    },
}

impl Keyring {
    /// A keyring of one key.
    pub fn new(primary: [u8; KEY_BYTES]) -> Keyring {
        Keyring {
            entries: vec![KeyEntry::Key(ClusterKey::new(primary))],
        }
    }

    /// Also accepts frames tagged with `key` (at the end of the ring).
    /// Adding a key already there, or beyond [`KEYRING_ENTRIES_MAX`], does
    /// nothing.
    pub fn with_accepted(mut self, key: [u8; KEY_BYTES]) -> Keyring {
        let entry = KeyEntry::Key(ClusterKey::new(key));
        if !self.entries.contains(&entry) && self.entries.len() < KEYRING_ENTRIES_MAX {
            self.entries.push(entry);
        }
        self
    }

    /// A keyring of these entries; the first is the primary.
    pub fn from_entries(entries: Vec<KeyEntry>) -> Result<Keyring, KeyringError> {
        if entries.is_empty() {
            return Err(KeyringError::Empty);
        }
        if entries.len() > KEYRING_ENTRIES_MAX {
            return Err(KeyringError::TooMany {
                count: entries.len(),
            });
        }
        for (i, entry) in entries.iter().enumerate() {
            if entries[..i].contains(entry) {
                return Err(KeyringError::Duplicate { line: i + 1 });
            }
        }
        Ok(Keyring { entries })
    }

    /// Parses a key file: one entry a line, the first is the primary. An
    /// entry is 64 hex digits (a 32-byte key) or the word `unkeyed`.
    /// Everything from a `#` to the end of its line is a comment; blank
    /// lines are ignored.
    pub fn parse(text: &str) -> Result<Keyring, KeyringError> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let content = line.split('#').next().unwrap_or_default().trim();
            if content.is_empty() {
                continue;
            }
            let entry = if content == "unkeyed" {
                KeyEntry::Unkeyed
            } else {
                let key = ClusterKey::from_hex(content).ok_or(KeyringError::Malformed {
                    line: line_no,
                    chars: content.chars().count(),
                })?;
                KeyEntry::Key(key)
            };
            if entries.contains(&entry) {
                return Err(KeyringError::Duplicate { line: line_no });
            }
            entries.push(entry);
            if entries.len() > KEYRING_ENTRIES_MAX {
                return Err(KeyringError::TooMany {
                    count: entries.len(),
                });
            }
        }
        Keyring::from_entries(entries)
    }

    /// The entries, the primary first.
    pub fn entries(&self) -> &[KeyEntry] {
        &self.entries
    }

    /// The entry frames are sent with.
    pub fn primary(&self) -> &KeyEntry {
        &self.entries[0]
    }

    /// Whether frames without a tag are accepted (an `unkeyed` entry).
    pub fn accepts_untagged(&self) -> bool {
        self.entries.contains(&KeyEntry::Unkeyed)
    }

    /// The key frames are signed with; `None` when the primary is
    /// `unkeyed`.
    pub(crate) fn signing_key(&self) -> Option<&ClusterKey> {
        match self.primary() {
            KeyEntry::Key(key) => Some(key),
            KeyEntry::Unkeyed => None,
        }
    }

    /// Whether `tag` is the tag of `signed` under one of the keys. Computes
    /// the MAC at the tag's length and compares in constant time.
    pub fn verify(&self, signed: &[u8], tag: &[u8]) -> bool {
        let mut expected = [0u8; super::TAG_BYTES_MAX];
        let Some(expected) = expected.get_mut(..tag.len()) else {
            return false;
        };
        self.entries.iter().any(|entry| match entry {
            KeyEntry::Key(key) => {
                key.mac(signed, expected);
                constant_time_eq::constant_time_eq(expected, tag)
            }
            KeyEntry::Unkeyed => false,
        })
    }

    /// Fingerprints of the entries, for logs: `"1a2b3c4d, unkeyed"`.
    pub fn describe(&self) -> String {
        self.entries
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The [`TAG_BYTES`]-byte tag of `signed` under `key`.
pub(crate) fn sign(key: &ClusterKey, signed: &[u8]) -> [u8; TAG_BYTES] {
    let mut tag = [0u8; TAG_BYTES];
    key.mac(signed, &mut tag);
    tag
}
