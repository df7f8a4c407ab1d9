//! The standard `process_*` metrics (the names every Prometheus client
//! library and dashboard uses), read from `/proc/self` at scrape time.
//! Hand-written (a few lines per file) rather than the `procfs` crate and its
//! dependency tree, for six numbers.
//! Off Linux, or where `/proc` is not mounted, nothing is exposed.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second in `/proc/*/stat`: the kernel's USER_HZ, 100 on
/// every Linux ABI (Prometheus' own procfs library assumes the same).
const USER_HZ: f64 = 100.0;

/// What one scrape reads of this process.
#[derive(Debug, Default, PartialEq)]
pub struct Sample {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub start_time_seconds: f64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
}

/// Reads `/proc/self`; `None` where there is no procfs.
pub fn sample() -> Option<Sample> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let mut s = parse_stat(&stat, boot_time(&boot)?)?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    s.resident_bytes = resident_kib(&status)? * 1024;
    s.open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    s.max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| max_open_files(&l));
    Some(s)
}

/// `/proc/self/stat` (see proc(5)), with the system's boot time.
fn parse_stat(stat: &str, boot_time: u64) -> Option<Sample> {
    // The command name (field 2) is in parentheses and may hold spaces:
    // fields are counted from the last ')'; after it comes field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(Sample {
        cpu_seconds: (field(14)? + field(15)?) as f64 / USER_HZ,
        start_time_seconds: boot_time as f64 + field(22)? as f64 / USER_HZ,
        virtual_bytes: field(23)?,
        ..Sample::default()
    })
}

/// `VmRSS` of `/proc/self/status`, in KiB (in bytes whatever the page size,
/// unlike stat's `rss` in pages).
fn resident_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

/// The `btime` line of `/proc/stat`: boot time, in Unix seconds.
fn boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// The soft limit of "Max open files" in `/proc/self/limits`; `None` when
/// unlimited.
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Encodes a fresh [`sample`] on every scrape.
#[derive(Debug)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = sample() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(s.cpu_seconds);
        let help = "User and system CPU time spent, in seconds.";
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            help,
            None,
            cpu.metric_type(),
        )?)?;
        let bytes = [
            (
                "process_resident_memory_bytes",
                "Resident memory size, in bytes.",
                s.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size, in bytes.",
                s.virtual_bytes,
            ),
            ("process_open_fds", "Open file descriptors.", s.open_fds),
        ];
        let max = s.max_fds.map(|m| {
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                m,
            )
        });
        for (name, help, value) in bytes.into_iter().chain(max) {
            gauge(&mut encoder, name, help, value)?;
        }
        let help = "Start time of the process since the Unix epoch, in seconds.";
        gauge(
            &mut encoder,
            "process_start_time_seconds",
            help,
            s.start_time_seconds,
        )
    }
}

fn gauge<N: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: N,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_spaced_command_name() {
        // Fields 3.. of a real line; comm "(tokio (rt) x)" holds spaces and ')'.
        let stat = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 9000 0 0 0 \
                    250 50 0 0 20 0 12 0 123400 987654321 2500 18446744073709551615";
        let s = parse_stat(stat, 1_700_000_000).unwrap();
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.start_time_seconds, 1_700_001_234.0);
        assert_eq!(s.virtual_bytes, 987_654_321);
    }

    #[test]
    fn reads_boot_time_and_the_soft_fd_limit() {
        assert_eq!(resident_kib("Name:\tx\nVmRSS:\t   10240 kB\n"), Some(10240));
        assert_eq!(
            boot_time("cpu  1 2 3\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(max_open_files(unlimited), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn samples_this_process() {
        let s = sample().expect("/proc is mounted on Linux");
        assert!(s.resident_bytes > 1024 * 1024, "{s:?}");
        assert!(s.open_fds >= 3, "{s:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(s.start_time_seconds <= now + 1.0, "{s:?}");
    }
}
