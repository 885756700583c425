//! Samples and what the bench reads about processes and the machine:
//! percentiles, CPU time and memory from the proc file system, and the
//! machine's description for the report.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// Latencies of one series, sorted once.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    sorted: Vec<Duration>,
}

impl Latencies {
    pub fn new(mut samples: Vec<Duration>) -> Latencies {
        samples.sort_unstable();
        Latencies { sorted: samples }
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Nearest-rank percentile; zero when there are no samples.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.sorted.len() as f64).ceil() as usize;
        self.sorted[rank.clamp(1, self.sorted.len()) - 1]
    }

    pub fn median(&self) -> Duration {
        self.percentile(50.0)
    }

    pub fn max(&self) -> Duration {
        self.sorted.last().copied().unwrap_or_default()
    }

    pub fn samples(&self) -> &[Duration] {
        &self.sorted
    }
}

pub fn us(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// Clock ticks per second of the CPU times in `stat` files.
pub fn clock_ticks_per_s() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|ticks| *ticks > 0.0)
        .unwrap_or(100.0)
}

/// User plus system CPU time, in clock ticks, from a `stat` file (of a
/// process or of one thread).
pub fn cpu_ticks(stat_path: &str) -> Option<u64> {
    let text = std::fs::read_to_string(stat_path).ok()?;
    // The command name may hold spaces and parentheses: fields start after
    // the last ')'. utime and stime are fields 14 and 15 of the line, so the
    // 12th and 13th after it.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A field of a `status` file in kB (`VmHWM`, `VmRSS`).
pub fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
}

/// The id of the calling thread, for its `stat` file.
pub fn current_thread_id() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// CPU time spent between two readings, as a percentage of one core.
pub fn cpu_percent(ticks: u64, ticks_per_s: f64, window: Duration) -> f64 {
    let secs = window.as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    ticks as f64 / ticks_per_s / secs * 100.0
}

/// The type of the file system `path` is on (`ext4`, `tmpfs`, ...), from
/// the mount table: the mount point that is the longest prefix of it.
pub fn filesystem_of(path: &Path) -> Option<String> {
    let path = std::fs::canonicalize(path).ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_source, point, kind) = (fields.next()?, fields.next()?, fields.next()?);
            // Spaces and the like in mount points are octal escapes.
            let point = point.replace("\\040", " ");
            path.starts_with(&point)
                .then(|| (point.len(), kind.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, kind)| kind)
}

/// The cost of a durable append on the file system of `dir`: `n` times a
/// 64-byte write at the end of a file and an fdatasync, as a node's log
/// does for each drain with something to persist.
pub fn fsync_probe(dir: &Path, n: usize) -> Result<Latencies, String> {
    let path = dir.join("fsync-probe");
    let fail = |e: std::io::Error| format!("fsync probe in {}: {e}", dir.display());
    let mut file = std::fs::OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(fail)?;
    let record = [0x5a_u8; 64];
    let mut samples = Vec::with_capacity(n);
    let mut result = Ok(());
    for _ in 0..n {
        let start = Instant::now();
        if let Err(e) = file.write_all(&record).and_then(|()| file.sync_data()) {
            result = Err(fail(e));
            break;
        }
        samples.push(start.elapsed());
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    result.map(|()| Latencies::new(samples))
}

/// The machine the figures come from.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_mb: u64,
    pub memory_available_mb: u64,
    pub kernel: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                (name.trim() == "model name").then(|| value.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".to_string());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kb = |field: &str| {
            meminfo
                .lines()
                .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|value| value.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|text| text.trim().to_string())
            .unwrap_or_else(|_| "unknown".to_string());
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            memory_mb: mem_kb("MemTotal") / 1024,
            memory_available_mb: mem_kb("MemAvailable") / 1024,
            kernel,
        }
    }
}

/// Today's date (UTC) as YYYY-MM-DD.
pub fn today_utc() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples = (1..=100).map(Duration::from_micros).collect();
        let latencies = Latencies::new(samples);
        assert_eq!(latencies.percentile(50.0), Duration::from_micros(50));
        assert_eq!(latencies.percentile(99.0), Duration::from_micros(99));
        assert_eq!(latencies.max(), Duration::from_micros(100));
        assert_eq!(Latencies::default().median(), Duration::ZERO);
    }

    #[test]
    fn the_calling_process_has_cpu_time_and_memory() {
        assert!(cpu_ticks("/proc/self/stat").is_some());
        assert!(status_kb(std::process::id(), "VmHWM").is_some_and(|kb| kb > 0));
        let tid = current_thread_id().expect("a thread id");
        assert!(cpu_ticks(&format!("/proc/self/task/{tid}/stat")).is_some());
    }

    #[test]
    fn the_temporary_directory_is_on_a_file_system_that_syncs() {
        let dir = std::env::temp_dir();
        assert!(filesystem_of(&dir).is_some_and(|kind| !kind.is_empty()));
        let probe = std::env::temp_dir().join(format!("fsync-probe-test-{}", std::process::id()));
        std::fs::create_dir_all(&probe).expect("a directory");
        let synced = fsync_probe(&probe, 3);
        let _ = std::fs::remove_dir_all(&probe);
        assert_eq!(synced.expect("3 syncs").len(), 3);
    }

    #[test]
    fn the_date_is_a_civil_date() {
        let date = today_utc();
        assert_eq!(date.len(), 10);
        assert!(date.starts_with("20"));
    }
}
