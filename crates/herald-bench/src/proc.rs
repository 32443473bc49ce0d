//! Server resource use from /proc. Nginx serves from worker processes forked by the master, so a
//! sample covers the given pid and all its descendants.

use std::fs;

#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub rss_kb: u64,
    pub cpu_us: u64,
}

/// RSS and CPU time (user + system) of `pid` and its descendants.
pub fn sample(pid: u32) -> std::io::Result<Sample> {
    let tick_us = 1_000_000 / clock_ticks_per_sec();
    let mut total = Sample::default();
    for p in with_descendants(pid)? {
        let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue; // exited meanwhile
        };
        if let Some((utime, stime)) = parse_stat_times(&stat) {
            total.cpu_us += (utime + stime) * tick_us;
        }
        if let Ok(status) = fs::read_to_string(format!("/proc/{p}/status")) {
            total.rss_kb += parse_vm_rss_kb(&status).unwrap_or(0);
        }
    }
    Ok(total)
}

/// Open file descriptors of `pid` (its own, not its children's).
pub fn open_fds(pid: u32) -> std::io::Result<u64> {
    Ok(fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64)
}

/// The host's TCP socket memory in KiB (every socket's buffers, the load generator's too) and
/// its orphaned sockets (closed by their process, still sending), from /proc/net/sockstat.
pub fn tcp_sockstat() -> std::io::Result<(u64, u64)> {
    let text = fs::read_to_string("/proc/net/sockstat")?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    parse_sockstat(&text)
        .map(|(pages, orphans)| (pages * page / 1024, orphans))
        .ok_or_else(|| std::io::Error::other("no TCP line in /proc/net/sockstat"))
}

/// TCP `mem` (pages) and `orphan`.
fn parse_sockstat(text: &str) -> Option<(u64, u64)> {
    let fields: Vec<&str> = text.lines().find_map(|l| l.strip_prefix("TCP:"))?.split_whitespace().collect();
    let value = |name: &str| fields.chunks(2).find(|p| p[0] == name).and_then(|p| p.get(1)?.parse().ok());
    Some((value("mem")?, value("orphan")?))
}

fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

fn with_descendants(root: u32) -> std::io::Result<Vec<u32>> {
    let mut parents = Vec::new();
    for entry in fs::read_dir("/proc")? {
        let Some(pid) = entry?.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(ppid) = fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|s| parse_stat_ppid(&s)) {
            parents.push((pid, ppid));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    Ok(found)
}

/// Fields after the command name, which may itself contain spaces and parentheses.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().collect())
}

fn parse_stat_ppid(stat: &str) -> Option<u32> {
    stat_fields(stat)?.get(1)?.parse().ok()
}

/// utime and stime, fields 14 and 15 of /proc/<pid>/stat, in clock ticks.
fn parse_stat_times(stat: &str) -> Option<(u64, u64)> {
    let f = stat_fields(stat)?;
    Some((f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?))
}

fn parse_vm_rss_kb(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_command_name() {
        let stat = "42 (nginx: (worker) x) S 7 42 42 0 -1 4194624 100 0 0 0 250 31 0 0 20 0 1 0";
        assert_eq!(parse_stat_ppid(stat), Some(7));
        assert_eq!(parse_stat_times(stat), Some((250, 31)));
    }

    #[test]
    fn sockstat() {
        let text = "sockets: used 39\nTCP: inuse 12 orphan 3 tw 26841 alloc 15 mem 422\nUDP: inuse 0 mem 0\n";
        assert_eq!(parse_sockstat(text), Some((422, 3)));
    }

    #[test]
    fn vm_rss() {
        assert_eq!(parse_vm_rss_kb("Name:\tx\nVmRSS:\t  10240 kB\n"), Some(10240));
    }

    #[test]
    fn own_process_is_sampled() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_kb > 0);
        assert!(open_fds(std::process::id()).unwrap() >= 3);
    }
}
