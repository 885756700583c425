//! [`Metrics`] as the node's task assembles them: the core's counters, the
//! driver's and the data directory's, read at one moment.

use std::sync::atomic::Ordering;

use super::DriverCounters;
use crate::core::CoreMetrics;
use crate::status::Metrics;

impl Metrics {
    pub(crate) fn from_parts(
        core: CoreMetrics,
        counters: &DriverCounters,
        storage: Option<crate::storage::StorageCounters>,
    ) -> Metrics {
        let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        Metrics {
            core,
            send_errors: get(&counters.send_errors),
            stream_frames_dropped: get(&counters.stream_frames_dropped),
            tcp_rejected: get(&counters.tcp_rejected),
            tcp_bad_frames: get(&counters.tcp_bad_frames),
            tcp_decode_errors: counters.decode_errors.each_ref().map(get),
            tcp_idle_closed: get(&counters.tcp_idle_closed),
            tcp_first_frame_closed: get(&counters.tcp_first_frame_closed),
            tcp_evicted: get(&counters.tcp_evicted),
            tcp_budget_closed: get(&counters.tcp_budget_closed),
            snapshots_served: get(&counters.snapshots_served),
            snapshots_fetched: get(&counters.snapshots_fetched),
            snapshot_fetch_errors: get(&counters.snapshot_fetch_errors),
            loop_busy_us_max: get(&counters.loop_busy_us_max),
            storage,
        }
    }
}
