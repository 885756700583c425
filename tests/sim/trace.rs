//! The trace of a run: a hash of every delivery, handler call and event in
//! order (two runs of one seed must produce the same hash), and, when
//! replaying one seed, a readable line per step.

use std::hash::{Hash, Hasher};

/// FNV-1a, 64 bits: deterministic across runs and builds, unlike the
/// standard library's randomly keyed hasher.
#[derive(Debug, Clone)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xCBF2_9CE4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01B3);
        }
    }
}

/// The FNV hash of any hashable value.
pub fn hash_of<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut h = Fnv::default();
    value.hash(&mut h);
    h.finish()
}

/// Hash of a map's pairs in key order, whatever container holds them.
pub fn pairs_hash<'a>(pairs: impl ExactSizeIterator<Item = (&'a String, &'a String)>) -> u64 {
    let mut h = Fnv::default();
    pairs.len().hash(&mut h);
    for pair in pairs {
        pair.hash(&mut h);
    }
    h.finish()
}

/// The running trace of one simulation.
#[derive(Debug)]
pub struct Trace {
    hasher: Fnv,
    verbose: bool,
    records: u64,
}

impl Trace {
    /// A trace that prints its lines when `verbose`.
    pub fn new(verbose: bool) -> Trace {
        Trace {
            hasher: Fnv::default(),
            verbose,
            records: 0,
        }
    }

    /// Adds one record: what happened (a tag), when, where, and a hash of
    /// its contents. `line` is only formatted when printing.
    pub fn record(
        &mut self,
        now: u64,
        tag: &str,
        node: usize,
        content: u64,
        line: impl FnOnce() -> String,
    ) {
        self.records += 1;
        now.hash(&mut self.hasher);
        tag.hash(&mut self.hasher);
        node.hash(&mut self.hasher);
        content.hash(&mut self.hasher);
        if self.verbose {
            println!("{now:>7}ms {tag:<10} n{node:<2} {}", line());
        }
    }

    /// Prints a note (replay mode only); not part of the hash.
    pub fn note(&self, now: u64, line: impl FnOnce() -> String) {
        if self.verbose {
            println!("{now:>7}ms {}", line());
        }
    }

    /// Whether lines are printed.
    pub fn verbose(&self) -> bool {
        self.verbose
    }

    /// The hash of everything recorded so far.
    pub fn hash(&self) -> u64 {
        self.hasher.finish() ^ self.records.rotate_left(32)
    }
}
