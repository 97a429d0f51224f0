//! What the consumer-group tests share: the group member processes
//! (`clients/groups.py`), the broker they run against, waiting, and
//! reading committed offsets.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{clients_dir, python, run, Broker};

pub fn groups_py(python: &Path, broker: &Broker, args: &[&str]) -> String {
    let (ok, out, err) = run(
        Command::new(python)
            .arg(clients_dir().join("groups.py"))
            .arg(broker.addr())
            .args(args),
        Duration::from_secs(180),
    );
    assert!(
        ok,
        "groups.py {args:?} failed\nstdout:\n{out}\nstderr:\n{err}"
    );
    out
}

pub fn debian() -> PathBuf {
    PathBuf::from(python())
}

pub fn test_clients() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.test-clients")
        .canonicalize()
        .expect("the newest Kafka clients are not installed: run `bash scripts/test.sh` (the README's test command) or `bash scripts/test-clients.sh`")
}

/// A group member process (`groups.py member`), stopped by its stop file.
pub struct Member {
    child: Child,
    out: PathBuf,
    stop: PathBuf,
}

impl Member {
    pub fn start(
        py: &Path,
        broker: &Broker,
        dir: &Path,
        name: &str,
        topic: &str,
        group: &str,
        extra: &[&str],
    ) -> Member {
        let out = dir.join(format!("{name}.out"));
        let stop = dir.join(format!("{name}.stop"));
        let _ = std::fs::remove_file(&stop);
        let child = Command::new(py)
            .arg(clients_dir().join("groups.py"))
            .arg(broker.addr())
            .args(["member", topic, group])
            .arg(&out)
            .arg(&stop)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start a member");
        Member { child, out, stop }
    }

    pub fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// (partition, offset) of every record it read.
    pub fn records(&self) -> Vec<(i32, i64)> {
        self.lines()
            .iter()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (p, o) = l.split_once(' ')?;
                Some((p.parse().ok()?, o.parse().ok()?))
            })
            .collect()
    }

    /// Its assignments, in order.
    pub fn assignments(&self) -> Vec<Vec<i32>> {
        self.lines()
            .iter()
            .filter_map(|l| l.strip_prefix("# assigned "))
            .map(|l| {
                l.split(',')
                    .filter(|s| !s.is_empty())
                    .map(|p| p.parse().unwrap())
                    .collect()
            })
            .collect()
    }

    /// What it owns now: its assignments and revocations folded in order
    /// (the consumer protocol assigns and revokes incrementally).
    pub fn owned(&self) -> BTreeSet<i32> {
        let mut owned = BTreeSet::new();
        for l in self.lines() {
            let parts = |l: &str| -> Vec<i32> {
                l.split(',')
                    .filter(|s| !s.is_empty())
                    .map(|p| p.parse().unwrap())
                    .collect()
            };
            if let Some(l) = l.strip_prefix("# assigned ") {
                owned.extend(parts(l));
            } else if let Some(l) = l.strip_prefix("# revoked ") {
                for p in parts(l) {
                    owned.remove(&p);
                }
            }
        }
        owned
    }

    pub fn stop(mut self) {
        std::fs::write(&self.stop, b"").unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "a member did not stop");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    start.elapsed()
}

pub fn committed(broker: &Broker, topic: &str, group: &str, partitions: i32) -> BTreeMap<i32, i64> {
    groups_py(
        &debian(),
        broker,
        &["committed", topic, group, &partitions.to_string()],
    )
    .lines()
    .map(|l| {
        let (p, o) = l.split_once(' ').unwrap();
        (p.parse().unwrap(), o.parse().unwrap())
    })
    .collect()
}

pub fn broker(dir: &Path) -> Broker {
    Broker::start(
        &dir.join("data"),
        &[
            "--group-initial-rebalance-delay-ms",
            "1000",
            // KIP-848 groups: the broker sets the heartbeat and session times.
            "--group-consumer-heartbeat-interval-ms",
            "500",
            "--group-consumer-session-timeout-ms",
            "6000",
        ],
    )
}

/// The newest confluent-kafka on the KIP-848 consumer protocol.
pub const KIP848: &str = "group.protocol=consumer";
