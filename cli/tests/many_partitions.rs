//! One broker, many partitions, few descriptors: 10,000 partitions under an
//! open-file limit of 2,048 (room for a tenth of them), one record each
//! through `rill-client`, a clean stop, a start, `kill -9`, a start — and
//! every partition answers with its record after each. Asserts what they
//! cost: descriptors within the limit, disk and memory per partition.
//! The same sequence at 100,000 partitions is `rill-scale` (README).

use std::time::Duration;

use rill_bench_harness::scale::{self, ScaleOptions};

const PARTITIONS: usize = 10_000;
const OPEN_FILES: u64 = 2048;

#[test]
fn ten_thousand_partitions_on_two_thousand_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ScaleOptions {
        rill: env!("CARGO_BIN_EXE_rill").into(),
        parent_dir: dir.path().to_path_buf(),
        partitions: PARTITIONS,
        partitions_per_topic: 1000,
        topics_per_request: 5,
        record_bytes: 1024,
        cores: 1,
        nofile: Some(OPEN_FILES),
        settle: Duration::ZERO,
        phase_timeout: Duration::from_secs(240),
        progress: false,
        partition_series: false,
    };
    let r = scale::run(&opts).expect("the scale run");
    r.print();
    // With per-partition series off a scrape does not grow with the
    // partitions: the broker-wide families, a few series per API and topic.
    assert!(
        r.scrape.samples < 2000,
        "{} samples in a scrape of 10,000 partitions",
        r.scrape.samples
    );
    for (name, u) in [
        ("written", r.written),
        ("after a clean start", r.after_clean_start),
        ("after kill -9", r.after_kill_start),
    ] {
        assert!(
            u.open_files as u64 <= OPEN_FILES,
            "{name}: {} open files",
            u.open_files
        );
        // A directory, a segment block and a checkpoint (16 KiB), and the
        // journal's files: well under 64 KiB a partition.
        let disk = u.disk_bytes.saturating_sub(r.empty.disk_bytes) / PARTITIONS as u64;
        assert!(
            disk < 40 << 10,
            "{name}: {disk} bytes of disk per partition"
        );
        let rss = u.rss_bytes.saturating_sub(r.empty.rss_bytes) / PARTITIONS as u64;
        assert!(
            rss < 64 << 10,
            "{name}: {rss} bytes of memory per partition"
        );
    }
}
