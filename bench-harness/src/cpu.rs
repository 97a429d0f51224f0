//! CPU time a broker process spent, read from `/proc/PID/stat`, so a report
//! can say what a gigabyte produced cost the broker (not the load generator);
//! and pinning processes to CPUs for the pinned layout.

/// User + system CPU seconds of process `pid` so far; `None` if it cannot
/// be read (not on this machine, gone, or not Linux).
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line, in seconds.
fn parse_stat(stat: &str) -> Option<f64> {
    // The command name (field 2) is in parentheses and may hold spaces.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3 (state): utime is field 14 → index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then(|| (utime + stime) as f64 / ticks as f64)
}

/// Restricts the calling process (and the threads it starts from now on)
/// to `cpus`, as `taskset -c` does.
pub fn pin_process(cpus: &[usize]) -> std::io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes
    // inside it for ids below CPU_SETSIZE, checked first.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            if c >= libc::CPU_SETSIZE as usize {
                return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
            }
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The layout of a run, as the report states it.
pub fn layout(broker_cpus: &[usize], generator_cpus: &[usize]) -> String {
    let list = |c: &[usize]| {
        c.iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    match (broker_cpus.is_empty(), generator_cpus.is_empty()) {
        (true, true) => "shared: broker and generator on every CPU".to_string(),
        (false, true) => format!(
            "broker on CPUs {}, generator on every CPU",
            list(broker_cpus)
        ),
        (true, false) => format!(
            "broker on every CPU, generator on CPUs {}",
            list(generator_cpus)
        ),
        (false, false) => format!(
            "pinned: broker on CPUs {}, generator on CPUs {}",
            list(broker_cpus),
            list(generator_cpus)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_says_where_each_side_runs() {
        assert_eq!(
            layout(&[], &[]),
            "shared: broker and generator on every CPU"
        );
        assert_eq!(
            layout(&[1], &[0]),
            "pinned: broker on CPUs 1, generator on CPUs 0"
        );
        assert!(pin_process(&[usize::MAX]).is_err());
    }

    #[test]
    fn reads_utime_and_stime_past_a_name_with_spaces() {
        let line =
            "4242 (rill broker x) S 1 4242 4242 0 -1 4194560 1 0 0 0 250 150 0 0 20 0 3 0 1 1 1";
        let secs = parse_stat(line).unwrap();
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        assert!((secs - 400.0 / ticks).abs() < 1e-9, "{secs}");
        assert!(process_cpu_seconds(std::process::id()).is_some());
    }
}
