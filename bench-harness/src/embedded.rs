//! `--embedded`: a `rill broker` child process on a temporary data
//! directory and a free loopback port, stopped when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

pub struct EmbeddedBroker {
    child: Child,
    pub addr: String,
    dir: tempfile::TempDir,
}

/// The `rill` binary: `$RILL_BIN`, this executable if it is `rill`, a
/// `rill` next to it (target/release), or `rill` on the PATH.
pub fn rill_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("RILL_BIN") {
        return PathBuf::from(p);
    }
    if let Ok(me) = std::env::current_exe() {
        if me.file_name().is_some_and(|n| n == "rill") {
            return me;
        }
        if let Some(sibling) = me.parent().map(|d| d.join("rill")) {
            if sibling.exists() {
                return sibling;
            }
        }
    }
    PathBuf::from("rill")
}

impl EmbeddedBroker {
    /// Starts a broker ([`rill_binary`]) with its data in a new directory
    /// under `parent`.
    pub fn start(parent: &Path) -> anyhow::Result<EmbeddedBroker> {
        EmbeddedBroker::start_on(&rill_binary(), parent, &[])
    }

    /// Starts the `rill` binary at `bin`.
    pub fn start_binary(bin: &Path, parent: &Path) -> anyhow::Result<EmbeddedBroker> {
        EmbeddedBroker::start_on(bin, parent, &[])
    }

    /// Starts the `rill` binary at `bin` on these CPUs only, one shard per
    /// CPU (`taskset -c CPUS rill broker --cores N`); all CPUs when empty.
    pub fn start_on(bin: &Path, parent: &Path, cpus: &[usize]) -> anyhow::Result<EmbeddedBroker> {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        let dir = tempfile::Builder::new()
            .prefix("rill-bench-")
            .tempdir_in(parent)
            .with_context(|| format!("creating a data directory in {}", parent.display()))?;
        let mut command = Command::new(bin);
        command
            .args([
                "broker",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(dir.path());
        if !cpus.is_empty() {
            command.args(["--cores", &cpus.len().to_string()]);
            let cpus = cpus.to_vec();
            // SAFETY: between fork and exec only sched_setaffinity runs, an
            // async-signal-safe system call on memory prepared before fork.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                    crate::cpu::pin_process(&cpus)
                });
            }
        }
        let mut child = command
            .env(
                "RILL_LOG",
                std::env::var("RILL_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (build it with cargo build --release)",
                    bin.display()
                )
            })?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("rill broker listening on ") {
                    let _ = tx.send(
                        rest.split_whitespace()
                            .next()
                            .unwrap_or_default()
                            .to_string(),
                    );
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                bail!("the embedded broker did not start within 30 s");
            }
        };
        Ok(EmbeddedBroker { child, addr, dir })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        // SIGTERM for a clean stop, then make sure.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
