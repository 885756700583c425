//! Which TCP connections a node keeps, and how many bytes they may be
//! reading at once.
//!
//! Connection slots are taken before anything about a peer is known, so a
//! flood of idle connections (a few hundred sockets, some announcing a
//! 64 MiB frame and stalling) could otherwise hold every slot and lock
//! legitimate clients and peers out. Three rules keep the port usable:
//!
//! - Until its first frame is complete, a connection must send the length
//!   prefix, and then every 64 KiB chunk of the body, within
//!   `tcp_first_frame_ms`: a silent or stalled connection goes within
//!   seconds, while a large first frame that keeps arriving (an append from
//!   the leader) is read whole. Only then does the longer `tcp_idle_ms`
//!   apply.
//! - When every slot is taken, a new connection evicts the oldest one that
//!   has not completed a frame yet. A flood therefore only ever competes
//!   with itself: a client that sends its request as soon as it connects
//!   stays unless `tcp_connections_max` more connections arrive before its
//!   first frame is read. Connections that completed a frame are never
//!   evicted; with every slot held by those, new connections are refused.
//! - Frame bodies grow with the bytes that actually arrive, chunk by chunk,
//!   and every chunk being read is taken from a budget shared by all
//!   connections (`tcp_read_bytes_max`): announcing a large frame costs the
//!   sender the bytes it must then send, and a connection that finds the
//!   budget spent is closed rather than waited for.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, Semaphore};

/// The connection slots and the read budget of one node.
#[derive(Debug)]
pub(crate) struct Admission {
    slots_max: usize,
    table: Mutex<Table>,
    budget: Arc<Semaphore>,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    /// Open connections by id, that is in the order they were accepted.
    open: BTreeMap<u64, Open>,
}

#[derive(Debug)]
struct Open {
    /// It has completed a frame: never evicted.
    proven: bool,
    /// Tells its task to close (dropping it does the same).
    evict: Option<oneshot::Sender<()>>,
}

/// The outcome of [`Admission::admit`].
#[derive(Debug)]
pub(crate) enum Admitted {
    /// A free slot.
    Free(Slot),
    /// The slot of the oldest connection without a complete frame, which
    /// is told to close.
    Evicting(Slot),
    /// Every slot is held by a connection that completed a frame.
    Full,
}

/// One connection's slot, freed when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    admission: Arc<Admission>,
    id: u64,
    /// Resolves when a newer connection took this slot.
    pub evicted: oneshot::Receiver<()>,
}

impl Admission {
    /// `slots_max` connections at once, reading `read_bytes_max` bytes of
    /// frame bodies between them.
    pub(crate) fn new(slots_max: usize, read_bytes_max: usize) -> Arc<Admission> {
        Arc::new(Admission {
            slots_max,
            table: Mutex::new(Table::default()),
            budget: Arc::new(Semaphore::new(read_bytes_max.min(Semaphore::MAX_PERMITS))),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a connection just accepted.
    pub(crate) fn admit(self: &Arc<Self>) -> Admitted {
        let mut table = self.table();
        let mut evicting = false;
        if table.open.len() >= self.slots_max {
            let oldest_unproven = table
                .open
                .iter()
                .find(|(_, open)| !open.proven)
                .map(|(id, _)| *id);
            let Some(id) = oldest_unproven else {
                return Admitted::Full;
            };
            if let Some(mut open) = table.open.remove(&id) {
                if let Some(evict) = open.evict.take() {
                    let _ = evict.send(());
                }
            }
            evicting = true;
        }
        let id = table.next_id;
        table.next_id += 1;
        let (evict, evicted) = oneshot::channel();
        table.open.insert(
            id,
            Open {
                proven: false,
                evict: Some(evict),
            },
        );
        let slot = Slot {
            admission: self.clone(),
            id,
            evicted,
        };
        if evicting {
            Admitted::Evicting(slot)
        } else {
            Admitted::Free(slot)
        }
    }

    /// Connections holding a slot now.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.table().open.len()
    }
}

impl Slot {
    /// The connection completed a frame: it is no longer evicted for newer
    /// connections. Returns `false` if it was evicted in the meantime (it
    /// then holds no slot and must close).
    pub(crate) fn prove(&self) -> bool {
        match self.admission.table().open.get_mut(&self.id) {
            Some(open) => {
                open.proven = true;
                true
            }
            None => false,
        }
    }

    /// The read budget shared by every connection.
    pub(crate) fn budget(&self) -> &Arc<Semaphore> {
        &self.admission.budget
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.admission.table().open.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::take_budget;

    fn slot(admitted: Admitted) -> Slot {
        match admitted {
            Admitted::Free(slot) | Admitted::Evicting(slot) => slot,
            Admitted::Full => panic!("refused"),
        }
    }

    #[test]
    fn a_full_table_evicts_the_oldest_connection_without_a_frame() {
        let admission = Admission::new(3, 1 << 20);
        let mut first = slot(admission.admit());
        let second = slot(admission.admit());
        let mut third = slot(admission.admit());
        assert!(second.prove());
        // Full: the fourth takes the first's slot (the oldest unproven).
        let fourth = admission.admit();
        assert!(matches!(fourth, Admitted::Evicting(_)));
        assert!(first.evicted.try_recv().is_ok(), "the first is told to go");
        assert!(!first.prove(), "an evicted connection holds no slot");
        assert_eq!(admission.open(), 3);
        drop(first);
        assert_eq!(admission.open(), 3, "its slot is the fourth's now");
        // Next the third goes, never the proven second.
        let fifth = slot(admission.admit());
        assert!(third.evicted.try_recv().is_ok());
        assert!(fifth.prove());
        let fourth = slot(fourth);
        assert!(fourth.prove());
        // Every slot proven: refused.
        assert!(matches!(admission.admit(), Admitted::Full));
        drop(second);
        assert!(matches!(admission.admit(), Admitted::Free(_)));
    }

    #[test]
    fn the_read_budget_is_shared_and_returned() {
        let admission = Admission::new(2, 100);
        let a = slot(admission.admit());
        let held = take_budget(a.budget(), 80).expect("within the budget");
        assert!(take_budget(a.budget(), 30).is_none(), "spent");
        drop(held);
        assert!(take_budget(a.budget(), 100).is_some());
    }
}
