//! Server-side cost from /proc: CPU seconds (utime + stime) and resident memory of a server
//! process and all its descendants (nginx's master and workers, shardcast's one process), sampled
//! by the load generator exactly at the window edges so CPU per GB covers the same interval as the
//! bytes counted.

use serde::Serialize;
use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ProcSample {
    /// utime + stime of every process in the tree, in seconds.
    pub cpu_s: f64,
    /// Sum of VmRSS over the tree, in KiB.
    pub rss_kib: u64,
    /// Processes found (0: the server is gone).
    pub processes: usize,
}

/// Fields of /proc/PID/stat after the command name: (ppid, utime + stime in ticks).
fn parse_stat(text: &str) -> Option<(i32, u64)> {
    // The command name is in parentheses and may contain spaces; fields resume after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is the state (field 3); ppid is field 4, utime 14, stime 15.
    let ppid = f.get(1)?.parse().ok()?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

fn parse_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Every process alive: (pid, ppid, utime + stime in ticks), sorted by pid. The one walk of
/// /proc that the server's tree and the machine's busy time both read.
fn every_process() -> Vec<(i32, i32, u64)> {
    let mut v: Vec<(i32, i32, u64)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<i32>().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (ppid, ticks) = parse_stat(&stat)?;
            Some((pid, ppid, ticks))
        })
        .collect();
    v.sort_unstable_by_key(|&(pid, _, _)| pid);
    v
}

/// The roots and every descendant among `procs`, with their CPU ticks.
fn process_tree(roots: &[i32], procs: &[(i32, i32, u64)]) -> Vec<(i32, u64)> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for &(pid, ppid, _) in procs {
        children.entry(ppid).or_default().push(pid);
    }
    let mut seen = HashSet::new();
    let mut stack: Vec<i32> = roots.to_vec();
    while let Some(p) = stack.pop() {
        if seen.insert(p) {
            stack.extend(children.get(&p).into_iter().flatten());
        }
    }
    procs
        .iter()
        .filter(|(pid, _, _)| seen.contains(pid))
        .map(|&(pid, _, ticks)| (pid, ticks))
        .collect()
}

/// Samples the process trees rooted at `roots`; `None` when there is nothing to sample.
pub fn sample(roots: &[i32]) -> Option<ProcSample> {
    if roots.is_empty() {
        return None;
    }
    let ticks = clock_ticks();
    let mut s = ProcSample::default();
    for (pid, t) in process_tree(roots, &every_process()) {
        s.cpu_s += t as f64 / ticks;
        s.rss_kib += std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .as_deref()
            .and_then(parse_rss_kib)
            .unwrap_or(0);
        s.processes += 1;
    }
    Some(s)
}

/// The whole machine's CPU time, so a run can tell how much of the machine was busy with
/// something other than the server and the generator (another build, another load).
///
/// Why every process's own counters and the clock, not /proc/stat's busy and idle columns: on
/// this VM those are tick-sampled, and a load generator waking on timers is mostly asleep when
/// the tick lands (1000 publishers: 0.15-0.25 busy cores read while the server and the
/// generator alone used 0.54), while idle time was charged twice (as idle or iowait and as
/// softirq run from idle: up to 2.7 s per CPU per second), so "busy outside the run" read 0.45-0.8
/// cores in quiet runs and 0 in busy ones.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HostSample {
    /// user + nice + system + irq + softirq over every CPU from /proc/stat, in seconds (only
    /// used without process counters).
    pub busy_s: f64,
    /// busy + idle + iowait + steal, in seconds (the wall time without a clock reading).
    pub total_s: f64,
    /// CPUs listed (`cpuN` lines).
    pub cpus: u32,
    /// When it was read.
    #[serde(skip)]
    pub taken: Option<std::time::Instant>,
    /// Every process's utime + stime in seconds, by pid (sorted).
    #[serde(skip)]
    pub processes: Vec<(i32, f64)>,
}

impl HostSample {
    /// CPU seconds the processes of `later` used since `self`: a process that started meanwhile
    /// counts whole, one that ended meanwhile is not seen.
    pub fn process_cpu_since(&self, later: &HostSample) -> f64 {
        later
            .processes
            .iter()
            .map(|&(pid, t)| {
                let before = self
                    .processes
                    .binary_search_by_key(&pid, |&(p, _)| p)
                    .map_or(0.0, |i| self.processes[i].1);
                (t - before).max(0.0)
            })
            .sum()
    }
}

/// The aggregate `cpu` line of /proc/stat.
fn parse_host(stat: &str, ticks: f64) -> Option<HostSample> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy = at(0) + at(1) + at(2) + at(5) + at(6);
    let total = busy + at(3) + at(4) + at(7);
    let cpus = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count() as u32;
    (v.len() >= 4).then(|| HostSample {
        busy_s: busy as f64 / ticks,
        total_s: total as f64 / ticks,
        cpus,
        ..HostSample::default()
    })
}

/// Samples the machine's CPU time; `None` without /proc/stat.
pub fn host() -> Option<HostSample> {
    let taken = std::time::Instant::now();
    let ticks = clock_ticks();
    let mut h = parse_host(&std::fs::read_to_string("/proc/stat").ok()?, ticks)?;
    h.taken = Some(taken);
    h.processes = every_process()
        .into_iter()
        .map(|(pid, _, t)| (pid, t as f64 / ticks))
        .collect();
    Some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_fields() {
        let stat = "cpu  100 5 50 1000 20 1 24 0 0 0\ncpu0 50 5 25 500 10 1 12 0 0 0\nintr 1\n";
        let h = parse_host(stat, 100.0).unwrap();
        assert_eq!(h.busy_s, 1.8);
        assert_eq!(h.total_s, 12.0);
        assert_eq!((h.cpus, h.taken), (1, None));
        assert!(h.processes.is_empty());
        assert_eq!(parse_host("cpu0 1 2 3 4\n", 100.0), None);
        assert_eq!(parse_host("cpu  1 x 3 4\n", 100.0), None);
        let h = host().unwrap();
        assert!(h.total_s >= h.busy_s && h.total_s > 0.0);
        let me = std::process::id() as i32;
        assert!(h.processes.iter().any(|&(p, _)| p == me), "sees itself");
        assert!(
            h.processes.windows(2).all(|w| w[0].0 < w[1].0),
            "sorted by pid"
        );
    }

    #[test]
    fn process_cpu_between_samples() {
        let at = |processes: Vec<(i32, f64)>| HostSample {
            processes,
            ..HostSample::default()
        };
        let a = at(vec![(1, 5.0), (7, 2.0), (9, 100.0)]);
        // 1 used 1 s, 7 ended, 9's counter cannot go back, 12 started and used 0.5 s.
        let b = at(vec![(1, 6.0), (9, 99.0), (12, 0.5)]);
        assert!((a.process_cpu_since(&b) - 1.5).abs() < 1e-9);
    }

    #[test]
    fn stat_fields() {
        let line = "1234 (nginx: worker (x)) S 1200 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0 100 0 0";
        assert_eq!(parse_stat(line), Some((1200, 325)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn rss_field() {
        let status = "Name:\tx\nVmPeak:\t 999 kB\nVmRSS:\t   4242 kB\nThreads:\t1\n";
        assert_eq!(parse_rss_kib(status), Some(4242));
        assert_eq!(parse_rss_kib("Name: x\n"), None);
    }

    #[test]
    fn samples_this_process() {
        let me = std::process::id() as i32;
        let s = sample(&[me]).unwrap();
        assert!(s.processes >= 1);
        assert!(s.rss_kib > 0);
        assert_eq!(sample(&[]), None);
        // The CPU figure is this process's own: spinning gets at least one more tick charged.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let (mut after, mut x) = (s.cpu_s, 0u64);
        while after <= s.cpu_s && std::time::Instant::now() < deadline {
            for i in 0..200_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
            after = sample(&[me]).unwrap().cpu_s;
        }
        assert!(
            after > s.cpu_s,
            "CPU seconds did not grow while spinning: {} -> {after}",
            s.cpu_s
        );
    }
}
