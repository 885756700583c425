//! The simulated network: which links are cut, what the faults are, and
//! when (if ever) a transmit arrives.

use std::collections::BTreeMap;

use bytes::Bytes;
use simple_raft::wire::{decode_frame, DecodeLimits, Frame};

use super::rng::Rng;

/// Virtual milliseconds.
pub type Millis = u64;

/// The datagram faults of a run. Streams (TCP) are never lost, duplicated
/// or corrupted, only cut by partitions and crashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Faults {
    /// Datagrams dropped, per thousand.
    pub loss_permille: u32,
    /// Datagrams delivered twice, per thousand.
    pub duplicate_permille: u32,
    /// Datagrams with flipped bits, per thousand.
    pub corrupt_permille: u32,
    /// Shortest datagram delay.
    pub delay_min_ms: Millis,
    /// Longest datagram delay (delays are uniform, so datagrams reorder).
    pub delay_max_ms: Millis,
    /// Longest stream delay (streams keep their order per link).
    pub stream_delay_max_ms: Millis,
}

impl Faults {
    /// A quiet LAN: no loss, no corruption, 1-5 ms.
    pub fn none() -> Faults {
        Faults {
            loss_permille: 0,
            duplicate_permille: 0,
            corrupt_permille: 0,
            delay_min_ms: 1,
            delay_max_ms: 5,
            stream_delay_max_ms: 5,
        }
    }

    /// A hostile network drawn from the run's seed.
    pub fn random(rng: &mut Rng) -> Faults {
        let delay_max_ms = rng.range(1, 50);
        Faults {
            loss_permille: rng.range(0, 500) as u32,
            duplicate_permille: rng.range(0, 100) as u32,
            corrupt_permille: rng.range(0, 50) as u32,
            delay_min_ms: rng.range(1, delay_max_ms),
            delay_max_ms,
            stream_delay_max_ms: rng.range(1, 20),
        }
    }
}

/// A transmit shown to a scenario's filter.
#[derive(Debug, Clone)]
pub struct Packet {
    /// Sender index.
    pub from: usize,
    /// Receiver index.
    pub to: usize,
    /// Sent over the stream transport.
    pub stream: bool,
    /// The decoded frame (every transmit the core sends decodes).
    pub frame: Frame,
}

/// Decides, given a packet at its delivery time, whether to drop it.
pub type Filter = Box<dyn FnMut(Millis, &Packet) -> bool>;

/// Decodes a frame the core sent (no size limit, any cluster).
pub fn decode(bytes: &[u8]) -> Option<Frame> {
    let limits = DecodeLimits {
        cluster_id: None,
        frame_bytes_max: usize::MAX,
    };
    decode_frame(bytes, &limits).ok()
}

/// Links, faults and the randomness of delivery.
pub struct Network {
    /// The current faults.
    pub faults: Faults,
    /// How many active partitions cut each directed link `(from, to)`.
    cut: BTreeMap<(usize, usize), u32>,
    /// Per directed link, when its last stream frame arrives (streams stay
    /// in order).
    stream_tail: BTreeMap<(usize, usize), Millis>,
    /// A scenario's drop rule, applied at delivery.
    pub filter: Option<Filter>,
    /// Every delivered frame, when a scenario asks for it.
    pub log: Option<Vec<(Millis, Packet)>>,
    rng: Rng,
}

impl Network {
    /// A network with these faults and nothing cut.
    pub fn new(faults: Faults, rng: Rng) -> Network {
        Network {
            faults,
            cut: BTreeMap::new(),
            stream_tail: BTreeMap::new(),
            filter: None,
            log: None,
            rng,
        }
    }

    /// Whether `from -> to` is cut.
    pub fn is_cut(&self, from: usize, to: usize) -> bool {
        self.cut.contains_key(&(from, to))
    }

    /// Cuts each directed link (counted: overlapping partitions heal one
    /// by one).
    pub fn cut_links(&mut self, links: &[(usize, usize)]) {
        for &link in links {
            *self.cut.entry(link).or_insert(0) += 1;
        }
    }

    /// Undoes one [`Network::cut_links`] of these links.
    pub fn heal_links(&mut self, links: &[(usize, usize)]) {
        for link in links {
            if let Some(count) = self.cut.get_mut(link) {
                *count -= 1;
                if *count == 0 {
                    self.cut.remove(link);
                }
            }
        }
    }

    /// Heals every link.
    pub fn heal_all(&mut self) {
        self.cut.clear();
    }

    /// Every cut link.
    pub fn cut_count(&self) -> usize {
        self.cut.len()
    }

    /// When copies of a datagram arrive, and with what bytes: none if lost,
    /// two if duplicated; copies may be corrupted.
    pub fn datagram(&mut self, now: Millis, bytes: &Bytes) -> Vec<(Millis, Bytes, bool)> {
        let f = self.faults;
        if self.rng.chance(f.loss_permille) {
            return Vec::new();
        }
        let copies = if self.rng.chance(f.duplicate_permille) {
            2
        } else {
            1
        };
        let mut out = Vec::with_capacity(copies);
        for _ in 0..copies {
            let at = now + self.rng.range(f.delay_min_ms, f.delay_max_ms);
            if self.rng.chance(f.corrupt_permille) {
                out.push((at, self.corrupt(bytes), true));
            } else {
                out.push((at, bytes.clone(), false));
            }
        }
        out
    }

    /// Flips one to three bits, or cuts the frame short.
    fn corrupt(&mut self, bytes: &Bytes) -> Bytes {
        let mut v = bytes.to_vec();
        if v.is_empty() {
            return Bytes::new();
        }
        if self.rng.chance(100) {
            let keep = self.rng.index(v.len());
            v.truncate(keep);
        } else {
            let flips = self.rng.range(1, 3);
            let mut done = Vec::new();
            while (done.len() as u64) < flips {
                let bit = self.rng.index(v.len() * 8);
                if !done.contains(&bit) {
                    done.push(bit);
                    v[bit / 8] ^= 1 << (bit % 8);
                }
            }
        }
        Bytes::from(v)
    }

    /// When a stream frame (or a fetched snapshot) sent now on
    /// `from -> to` arrives: after the ones before it on that link.
    pub fn stream(&mut self, now: Millis, from: usize, to: usize) -> Millis {
        let at = now + self.rng.range(1, self.faults.stream_delay_max_ms.max(1));
        let tail = self.stream_tail.entry((from, to)).or_insert(0);
        *tail = (*tail).max(at);
        *tail
    }

    /// Applies the scenario's filter and log to a packet about to be
    /// delivered; false means drop it.
    pub fn admit(
        &mut self,
        now: Millis,
        from: usize,
        to: usize,
        stream: bool,
        bytes: &[u8],
    ) -> bool {
        if self.filter.is_none() && self.log.is_none() {
            return true;
        }
        let Some(frame) = decode(bytes) else {
            return true; // corrupted: the core refuses it
        };
        let packet = Packet {
            from,
            to,
            stream,
            frame,
        };
        if let Some(filter) = self.filter.as_mut() {
            if filter(now, &packet) {
                return false;
            }
        }
        if let Some(log) = self.log.as_mut() {
            log.push((now, packet));
        }
        true
    }
}
