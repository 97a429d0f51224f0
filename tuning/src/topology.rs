//! CPU topology from sysfs: allowed CPUs, SMT sibling groups, NUMA nodes.

use std::collections::BTreeSet;

use crate::io_properties::CpuProperties;

/// Parses sysfs CPU lists such as `0-3,8,10-11`.
pub fn parse_cpu_list(s: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(v) = part.trim().parse() {
                    out.push(v);
                }
            }
        }
    }
    out
}

/// CPUs this process may run on (sched_getaffinity).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return (0..std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1))
                .collect();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

pub fn read() -> CpuProperties {
    let cpus = allowed_cpus();
    let mut groups: BTreeSet<Vec<usize>> = BTreeSet::new();
    for &c in &cpus {
        let path = format!("/sys/devices/system/cpu/cpu{c}/topology/thread_siblings_list");
        let siblings = std::fs::read_to_string(path)
            .map(|s| parse_cpu_list(&s))
            .unwrap_or_else(|_| vec![c]);
        groups.insert(siblings);
    }
    let numa_nodes = std::fs::read_dir("/sys/devices/system/node")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    n.starts_with("node") && n[4..].parse::<usize>().is_ok()
                })
                .count()
        })
        .unwrap_or(1)
        .max(1);
    CpuProperties {
        cpus,
        smt_groups: groups.into_iter().collect(),
        numa_nodes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,8,10-11\n"), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(parse_cpu_list(""), Vec::<usize>::new());
        let t = read();
        assert!(!t.cpus.is_empty() && !t.smt_groups.is_empty() && t.numa_nodes >= 1);
    }
}
