//! Process CPU and memory from `/proc/self`, read at each scrape (the names
//! are Prometheus' standard process metrics, so existing dashboards work).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Linux reports utime/stime in USER_HZ ticks, 100 per second on every
/// architecture we build for (the kernel fixes USER_HZ for user space).
const TICKS_PER_SECOND: f64 = 100.0;

/// What one read of `/proc/self` gives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessSample {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub threads: u64,
    pub open_fds: u64,
}

/// CPU seconds (user + system) and threads from a `/proc/<pid>/stat` line.
/// The command name (field 2) may hold spaces and parentheses, so fields are
/// counted after its last `)`.
pub fn parse_stat(stat: &str) -> Option<(f64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime 14, stime 15, num_threads 20.
    let field = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    let (utime, stime, threads) = (field(14)?, field(15)?, field(20)?);
    Some(((utime + stime) as f64 / TICKS_PER_SECOND, threads))
}

/// Resident memory in bytes from `/proc/<pid>/status` (`VmRSS: <n> kB`).
pub fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Reads this process's figures; `None` off Linux or if `/proc` is absent.
pub fn sample() -> Option<ProcessSample> {
    let (cpu_seconds, threads) = parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    let resident_bytes = parse_rss(&std::fs::read_to_string("/proc/self/status").ok()?)?;
    let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    Some(ProcessSample {
        cpu_seconds,
        resident_bytes,
        threads,
        open_fds,
    })
}

/// Registered once; encodes a fresh [`sample`] at every scrape.
#[derive(Debug, Default)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = sample() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(s.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time spent, in seconds.",
            None,
            cpu.metric_type(),
        )?)?;
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                s.resident_bytes,
            ),
            ("process_threads", "OS threads of the process.", s.threads),
            (
                "process_open_fds",
                "Open file descriptors (sockets included).",
                s.open_fds,
            ),
        ];
        for (name, help, v) in gauges {
            let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        // A command name with spaces and a ')' inside, as the kernel allows.
        let line = "4242 (voxline (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 130 0 0 20 0 7 0 12345 1000000 500 18446744073709551615";
        assert_eq!(parse_stat(line), Some((3.8, 7)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1"), None);
    }

    #[test]
    fn rss_is_read_in_kib() {
        let status = "Name:\tvoxline\nVmPeak:\t 9000 kB\nVmRSS:\t   13360 kB\nThreads:\t7\n";
        assert_eq!(parse_rss(status), Some(13360 * 1024));
        assert_eq!(parse_rss("Name: x\n"), None);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample().expect("/proc/self on Linux");
        assert!(
            s.resident_bytes > 0 && s.threads >= 1 && s.open_fds >= 1,
            "{s:?}"
        );
    }
}
