//! The process's open-file limit: raised to the hard limit at start, and
//! split between the partition logs' descriptor budget and what the broker
//! keeps for connections and everything else.

/// Every partition holds open files and every client a socket: the soft
/// limit on open files goes up to the hard one (a systemd unit's
/// LimitNOFILE, or the shell's `ulimit -Hn`), both logged. Returns the soft
/// limit in force, if it could be read.
pub(crate) fn raise_nofile_limit() -> Option<usize> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "reading the open-file limit failed");
        return None;
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            ..lim
        };
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        } else {
            tracing::warn!(soft = before, hard = lim.rlim_max, error = %std::io::Error::last_os_error(),
                "raising the open-file limit failed");
        }
    }
    tracing::info!(
        soft_before = before,
        soft = lim.rlim_cur,
        hard = lim.rlim_max,
        "open-file limit"
    );
    Some(usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX))
}

/// Descriptors kept out of the partition logs' budget for everything
/// else: the listeners and client connections, the metadata store's saves,
/// signal handling, the executors' rings, log files. A tenth of the limit,
/// at least 128 and at most 4,096.
pub fn files_reserved(limit: usize) -> usize {
    (limit / 10).clamp(128, 4096).min(limit)
}

/// Sets the partition logs' open-file budget from the process's limit, so
/// that partitions never take the descriptors the broker needs to go on
/// serving (and to start at all).
pub(crate) fn budget_open_files(limit: Option<usize>) {
    let Some(limit) = limit else {
        return;
    };
    let reserved = files_reserved(limit);
    rill_storage::descriptors::set_budget(limit - reserved);
    tracing::info!(
        limit,
        reserved,
        partition_files = limit - reserved,
        "open files for partition logs"
    );
}
