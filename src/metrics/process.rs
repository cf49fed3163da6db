//! The standard `process_*` metrics (as Prometheus' client libraries name
//! them), from `/proc/self` on Linux; elsewhere none. This file reads
//! them; `exposition.rs` writes them out.

use crate::stats::Kind;

/// One process metric: name, help, kind, value.
pub(super) type Metric = (&'static str, &'static str, Kind, f64);

/// The process metrics, when the OS gives them (the exposition writes them).
#[cfg(target_os = "linux")]
pub(super) fn metrics() -> Vec<Metric> {
    let Some(p) = read() else {
        return Vec::new(); // /proc unreadable: leave them out rather than report zeros
    };
    vec![
        (
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            Kind::Counter,
            p.cpu_seconds,
        ),
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            Kind::Gauge,
            p.resident_bytes,
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            Kind::Gauge,
            p.virtual_bytes,
        ),
        (
            "process_open_fds",
            "Number of open file descriptors.",
            Kind::Gauge,
            p.open_fds,
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors.",
            Kind::Gauge,
            p.max_fds,
        ),
        (
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            Kind::Gauge,
            p.start_time,
        ),
    ]
}

/// Elsewhere no process metrics.
#[cfg(not(target_os = "linux"))]
pub(super) fn metrics() -> Vec<Metric> {
    Vec::new()
}

/// What `/proc` says of this process.
#[cfg(target_os = "linux")]
struct Process {
    /// utime + stime, in seconds.
    cpu_seconds: f64,
    /// Resident set size, in bytes.
    resident_bytes: f64,
    /// Virtual memory size, in bytes.
    virtual_bytes: f64,
    /// Entries of /proc/self/fd.
    open_fds: f64,
    /// The soft open-file limit.
    max_fds: f64,
    /// Start time, seconds since the Unix epoch.
    start_time: f64,
}

/// Reads `/proc/self/stat`, `/proc/self/fd`, `/proc/stat` (boot time) and
/// the open-file limit.
#[cfg(target_os = "linux")]
fn read() -> Option<Process> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name (which may hold spaces):
    // utime and stime are the 14th and 15th fields overall, starttime the
    // 22nd, vsize the 23rd and rss the 24th.
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    // SAFETY: sysconf only reads a configuration value.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK) as f64,
            libc::sysconf(libc::_SC_PAGESIZE) as f64,
        )
    };
    let boot: f64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as f64;
    let max_fds = rlimit::getrlimit(rlimit::Resource::NOFILE).ok()?.0 as f64;
    Some(Process {
        cpu_seconds: (num(11)? + num(12)?) / ticks,
        start_time: boot + num(19)? / ticks,
        virtual_bytes: num(20)?,
        resident_bytes: num(21)? * page,
        open_fds,
        max_fds,
    })
}
