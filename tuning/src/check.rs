//! Host settings that matter for a broker: current value, recommendation,
//! and why. Reads `/proc` and `/sys` only; runs unprivileged.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// How a setting can be changed by `rill tune apply`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Fix {
    /// Write `value` to each of these files (sysctl under /proc/sys, or sysfs).
    Write { paths: Vec<PathBuf>, value: String },
    /// Cannot be changed from a running host by this tool; `how` says what to do.
    Manual { how: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct Setting {
    pub name: String,
    pub current: String,
    pub recommended: String,
    /// `Some(true)` meets the recommendation, `Some(false)` does not, `None` is informational.
    pub ok: Option<bool>,
    pub why: String,
    pub fix: Option<Fix>,
}

fn read(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn sysctl_path(name: &str) -> PathBuf {
    Path::new("/proc/sys").join(name.replace('.', "/"))
}

fn setting(
    name: &str,
    current: Option<String>,
    recommended: &str,
    ok: Option<bool>,
    why: &str,
    fix: Option<Fix>,
) -> Setting {
    Setting {
        name: name.to_string(),
        current: current.unwrap_or_else(|| "n/a".into()),
        recommended: recommended.to_string(),
        ok,
        why: why.to_string(),
        fix,
    }
}

/// A sysctl that should be at least `min`.
fn sysctl_at_least(name: &str, min: u64, why: &str) -> Setting {
    let path = sysctl_path(name);
    let current = read(&path);
    let ok = current
        .as_ref()
        .and_then(|c| c.parse::<u64>().ok())
        .map(|v| v >= min);
    let fix = Some(Fix::Write {
        paths: vec![path],
        value: min.to_string(),
    });
    setting(name, current, &format!(">= {min}"), ok, why, fix)
}

/// A sysctl that should be at most `max`.
fn sysctl_at_most(name: &str, max: u64, why: &str) -> Setting {
    let path = sysctl_path(name);
    let current = read(&path);
    let ok = current
        .as_ref()
        .and_then(|c| c.parse::<u64>().ok())
        .map(|v| v <= max);
    let fix = Some(Fix::Write {
        paths: vec![path],
        value: max.to_string(),
    });
    setting(name, current, &format!("<= {max}"), ok, why, fix)
}

/// A TCP buffer triple whose maximum should be at least `max_min`.
fn tcp_buffers(name: &str, max_min: u64) -> Setting {
    let path = sysctl_path(name);
    let current = read(&path);
    let parts: Vec<u64> = current
        .as_deref()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let ok = (parts.len() == 3).then(|| parts[2] >= max_min);
    let value = match parts.as_slice() {
        [a, b, _] => format!("{a} {b} {max_min}"),
        _ => format!("4096 131072 {max_min}"),
    };
    setting(
        name,
        current,
        &format!("max >= {max_min}"),
        ok,
        "large socket buffers keep throughput up on fast links and long fetches",
        Some(Fix::Write {
            paths: vec![path],
            value,
        }),
    )
}

/// The bracketed choice of a sysfs selector such as `always [madvise] never`.
pub fn selected(s: &str) -> Option<String> {
    let start = s.find('[')?;
    let end = s[start..].find(']')? + start;
    Some(s[start + 1..end].to_string())
}

fn rlimit(resource: libc::__rlimit_resource_t) -> (u64, u64) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we own.
    unsafe { libc::getrlimit(resource, &mut r) };
    (r.rlim_cur, r.rlim_max)
}

fn show_limit(v: u64) -> String {
    if v == libc::RLIM_INFINITY {
        "unlimited".into()
    } else {
        v.to_string()
    }
}

/// The sysfs `queue` directory of the block device holding `dir`.
pub fn queue_dir(dir: &Path) -> Option<PathBuf> {
    let dev = std::fs::metadata(dir).ok()?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let node = std::fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    let device = if node.join("partition").exists() {
        node.parent()?.to_path_buf()
    } else {
        node
    };
    let queue = device.join("queue");
    queue.exists().then_some(queue)
}

/// Every check, for a broker whose data lives in `data_dir`.
pub fn run(data_dir: &Path) -> Vec<Setting> {
    let mut out = Vec::new();

    let governors: Vec<PathBuf> = (0..1024)
        .map(|c| {
            PathBuf::from(format!(
                "/sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor"
            ))
        })
        .take_while(|p| p.exists())
        .collect();
    let current: Vec<String> = governors.iter().filter_map(read).collect();
    let mut distinct = current.clone();
    distinct.dedup();
    out.push(setting(
        "cpu frequency governor",
        (!current.is_empty()).then(|| distinct.join(",")),
        "performance",
        (!current.is_empty()).then(|| current.iter().all(|g| g == "performance")),
        "a shard polls its rings; frequency scaling adds latency when load arrives",
        (!governors.is_empty()).then(|| Fix::Write {
            paths: governors.clone(),
            value: "performance".into(),
        }),
    ));

    out.push(setting(
        "SMT (hyper-threading)",
        read("/sys/devices/system/cpu/smt/active").map(|v| if v == "1" { "on".to_string() } else { "off".to_string() }),
        "either; one shard per physical core",
        None,
        "two shards on sibling threads share one core's caches and pipelines; with SMT on, give the broker one CPU per core (--cores and taskset)",
        None,
    ));

    let irq = irq_summary();
    out.push(setting(
        "NIC/NVMe interrupt affinity",
        Some(irq.clone()),
        "spread over CPUs, ideally away from busy shards",
        None,
        "interrupts landing on one shard's core steal its cycles; spread queues or steer them to spare cores",
        None,
    ));

    let thp = read("/sys/kernel/mm/transparent_hugepage/enabled");
    let thp_sel = thp.as_deref().and_then(selected);
    out.push(setting(
        "transparent huge pages",
        thp_sel.clone(),
        "madvise or never",
        thp_sel.as_ref().map(|s| s != "always"),
        "'always' adds compaction stalls to page faults; the broker's buffers do not need it",
        thp.is_some().then(|| Fix::Write {
            paths: vec![PathBuf::from("/sys/kernel/mm/transparent_hugepage/enabled")],
            value: "madvise".into(),
        }),
    ));

    out.push(sysctl_at_most(
        "vm.swappiness",
        1,
        "swapping out a shard's memory turns microsecond work into disk waits",
    ));
    out.push(sysctl_at_most("vm.dirty_ratio", 20, "segment data bypasses the page cache (O_DIRECT); keep other writers' dirty pages from piling up behind it"));
    out.push(sysctl_at_most(
        "vm.dirty_background_ratio",
        10,
        "start background writeback of other files early, so it does not burst",
    ));
    out.push(sysctl_at_least(
        "net.core.somaxconn",
        4096,
        "many clients connecting at once must not overflow the accept backlog",
    ));
    out.push(sysctl_at_least(
        "net.core.rmem_max",
        16 << 20,
        "lets sockets grow receive buffers for large produce requests",
    ));
    out.push(sysctl_at_least(
        "net.core.wmem_max",
        16 << 20,
        "lets sockets grow send buffers for large fetch responses",
    ));
    out.push(tcp_buffers("net.ipv4.tcp_rmem", 16 << 20));
    out.push(tcp_buffers("net.ipv4.tcp_wmem", 16 << 20));
    out.push(sysctl_at_least(
        "fs.aio-max-nr",
        1 << 20,
        "asynchronous I/O contexts are a host-wide budget; several brokers or tools share it",
    ));

    let (memlock, _) = rlimit(libc::RLIMIT_MEMLOCK);
    out.push(setting(
        "memlock limit (ulimit -l)",
        Some(show_limit(memlock)),
        ">= 8 MiB (unlimited is best)",
        Some(memlock == libc::RLIM_INFINITY || memlock >= 8 << 20),
        "glommio registers locked memory with io_uring for every shard",
        Some(Fix::Manual {
            how:
                "LimitMEMLOCK=infinity in the systemd unit, or memlock in /etc/security/limits.conf"
                    .into(),
        }),
    ));
    let (nofile, _) = rlimit(libc::RLIMIT_NOFILE);
    out.push(setting(
        "open files limit (ulimit -n)",
        Some(show_limit(nofile)),
        ">= 65536",
        Some(nofile == libc::RLIM_INFINITY || nofile >= 65536),
        "every connection and every segment file is a descriptor",
        Some(Fix::Manual {
            how: "LimitNOFILE=1048576 in the systemd unit, or nofile in /etc/security/limits.conf"
                .into(),
        }),
    ));
    let uring = read("/proc/sys/kernel/io_uring_disabled");
    out.push(setting(
        "kernel.io_uring_disabled",
        uring.clone().or(Some("absent (io_uring allowed)".into())),
        "0",
        Some(uring.as_deref().is_none_or(|v| v == "0")),
        "all broker I/O goes through io_uring",
        Some(Fix::Write {
            paths: vec![sysctl_path("kernel.io_uring_disabled")],
            value: "0".into(),
        }),
    ));
    let clock = read("/sys/devices/system/clocksource/clocksource0/current_clocksource");
    out.push(setting(
        "clocksource",
        clock.clone(),
        "tsc (kvm-clock on VMs)",
        clock.as_deref().map(|c| c == "tsc" || c == "kvm-clock"),
        "timers and latency measurements read the clock constantly; hpet and acpi_pm are slow",
        None,
    ));

    match queue_dir(data_dir) {
        Some(queue) => {
            let sched = read(queue.join("scheduler"));
            let sel = sched.as_deref().and_then(selected).or(sched.clone());
            out.push(setting(
                "disk scheduler (data dir)",
                sel.clone(),
                "none",
                sel.as_ref().map(|s| s == "none"),
                "fast SSDs do their own scheduling; a kernel scheduler only adds latency to the broker's direct I/O",
                Some(Fix::Write { paths: vec![queue.join("scheduler")], value: "none".into() }),
            ));
            let nomerges = read(queue.join("nomerges"));
            out.push(setting(
                "disk nomerges (data dir)",
                nomerges.clone(),
                "2",
                nomerges.as_deref().map(|v| v == "2"),
                "the broker already writes large aligned blocks; merge attempts are wasted work",
                Some(Fix::Write {
                    paths: vec![queue.join("nomerges")],
                    value: "2".into(),
                }),
            ));
        }
        None => out.push(setting(
            "disk (data dir)",
            None,
            "a block device",
            None,
            "the data directory is not on a block device found in /sys (tmpfs, overlay or missing)",
            None,
        )),
    }
    out
}

/// NIC and NVMe/virtio interrupt lines and the CPUs they may use.
fn irq_summary() -> String {
    let Some(interrupts) = read("/proc/interrupts") else {
        return "n/a".into();
    };
    let mut lines = Vec::new();
    for line in interrupts.lines() {
        let lower = line.to_lowercase();
        if ![
            "nvme", "virtio", "eth", "ens", "enp", "mlx", "ixgbe", "i40e", "ena",
        ]
        .iter()
        .any(|k| lower.contains(k))
        {
            continue;
        }
        let Some((irq, _)) = line.trim_start().split_once(':') else {
            continue;
        };
        if irq.parse::<u32>().is_err() {
            continue;
        }
        let affinity =
            read(format!("/proc/irq/{irq}/smp_affinity_list")).unwrap_or_else(|| "?".into());
        let name = line.split_whitespace().last().unwrap_or("?");
        lines.push(format!("{name}→{affinity}"));
    }
    if lines.is_empty() {
        "no NIC/NVMe interrupt lines found".into()
    } else {
        lines.join(" ")
    }
}

/// Renders the checks as a table for people.
pub fn table(settings: &[Setting]) -> String {
    let mut out = format!(
        "{:<32} {:<24} {:<30} {}\n",
        "SETTING", "CURRENT", "RECOMMENDED", "STATUS / WHY"
    );
    for s in settings {
        let status = match s.ok {
            Some(true) => "ok",
            Some(false) => "CHANGE",
            None => "info",
        };
        let current: String = s
            .current
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(24)
            .collect();
        out.push_str(&format!(
            "{:<32} {:<24} {:<30} {status}: {}\n",
            s.name, current, s.recommended, s.why
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_unprivileged_and_reports_every_area() {
        let dir = tempfile::tempdir().unwrap();
        let settings = run(dir.path());
        let names: Vec<&str> = settings.iter().map(|s| s.name.as_str()).collect();
        for wanted in [
            "cpu frequency governor",
            "SMT (hyper-threading)",
            "transparent huge pages",
            "vm.swappiness",
            "net.core.somaxconn",
            "net.ipv4.tcp_rmem",
            "fs.aio-max-nr",
            "memlock limit (ulimit -l)",
            "kernel.io_uring_disabled",
            "clocksource",
            "NIC/NVMe interrupt affinity",
        ] {
            assert!(names.contains(&wanted), "missing {wanted}: {names:?}");
        }
        assert!(settings.iter().any(|s| s.name.starts_with("disk")));
        assert!(table(&settings).lines().count() == settings.len() + 1);
        assert!(serde_json::to_string(&settings)
            .unwrap()
            .contains("recommended"));
        assert_eq!(
            selected("always [madvise] never").as_deref(),
            Some("madvise")
        );
    }
}
