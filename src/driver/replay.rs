//! Freshness of client writes in a keyed cluster.
//!
//! A recorded TCP write (`put`, `delete`, `update`) carries a valid tag
//! forever; sent again later it would apply its old value again. So a
//! client's request id carries the time it was made (see
//! [`crate::client::request_id`]), and a node with cluster keys serves a
//! write only if that time is within [`WRITE_WINDOW_MS`] of its own clock
//! and it has not served the same id before. Protocol frames need no such
//! check: replaying them changes nothing (`docs/WIRE.md` says why).

use std::collections::BTreeSet;

use crate::client::{request_time_ms, REQUEST_ID_RANDOM_BITS};

/// How far a write's time may be from the node's clock, either way.
pub(crate) const WRITE_WINDOW_MS: u64 = 60_000;
/// Writes remembered within the window; beyond this, writes are refused as
/// busy until older ones leave the window.
const SEEN_MAX: usize = 1 << 18;

/// Why a write was not served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its time is outside the window: an old recording, or a clock off by
    /// more than the window.
    Stale { skew_ms: i128 },
    /// This node has served the same request already.
    Replayed,
    /// Too many writes within the window to remember.
    Busy,
}

impl Refusal {
    pub(crate) fn message(&self) -> String {
        match self {
            Refusal::Stale { skew_ms } => format!(
                "write refused as a possible replay: it was made {} s {} this node's clock \
                 (at most {} s allowed; are the clocks in sync?)",
                skew_ms.unsigned_abs() / 1000,
                if *skew_ms < 0 { "ahead of" } else { "behind" },
                WRITE_WINDOW_MS / 1000
            ),
            Refusal::Replayed => "write refused: a replay of a request already served".into(),
            Refusal::Busy => "too many writes within the replay window".into(),
        }
    }
}

/// The ids of the writes served within the window.
#[derive(Debug, Default)]
pub(crate) struct ReplayGuard {
    /// Ids sort by their time (the high bits), so the old ones are a
    /// prefix.
    seen: BTreeSet<u64>,
}

impl ReplayGuard {
    /// Admits a write with `request_id` at `now_ms` (ms since the Unix
    /// epoch), or says why not.
    pub(crate) fn admit(&mut self, request_id: u64, now_ms: u64) -> Result<(), Refusal> {
        let made = request_time_ms(request_id);
        let skew_ms = i128::from(now_ms) - i128::from(made);
        if skew_ms.unsigned_abs() > u128::from(WRITE_WINDOW_MS) {
            return Err(Refusal::Stale { skew_ms });
        }
        let oldest = now_ms.saturating_sub(WRITE_WINDOW_MS) << REQUEST_ID_RANDOM_BITS;
        self.seen = self.seen.split_off(&oldest);
        if self.seen.contains(&request_id) {
            return Err(Refusal::Replayed);
        }
        if self.seen.len() >= SEEN_MAX {
            return Err(Refusal::Busy);
        }
        self.seen.insert(request_id);
        Ok(())
    }
}

/// Milliseconds since the Unix epoch on this machine's clock.
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::request_id;

    #[test]
    fn a_write_is_served_once_and_only_within_the_window() {
        let now = 1_750_000_000_000;
        let mut guard = ReplayGuard::default();
        let id = request_id(now);
        assert_eq!(guard.admit(id, now + 10), Ok(()));
        assert_eq!(guard.admit(id, now + 20), Err(Refusal::Replayed));
        assert!(matches!(
            guard.admit(id, now + WRITE_WINDOW_MS + 1),
            Err(Refusal::Stale { .. })
        ));
        let early = request_id(now + WRITE_WINDOW_MS + 5);
        assert!(matches!(
            guard.admit(early, now),
            Err(Refusal::Stale { .. })
        ));
        // Old ids leave the set as the window moves on.
        let later = now + 2 * WRITE_WINDOW_MS;
        assert_eq!(guard.admit(request_id(later), later), Ok(()));
        assert_eq!(guard.seen.len(), 1);
        assert!(Refusal::Stale { skew_ms: -61_000 }
            .message()
            .contains("61 s ahead of"));
    }
}
