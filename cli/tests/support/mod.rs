//! A real `rill broker` process on a free loopback port, for integration
//! tests that kill, stop or signal it; [`InProcess`] for the others.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    /// The admin listener's address (metrics, health), if it runs one.
    pub admin: Option<String>,
    pub data_dir: PathBuf,
    extra_args: Vec<String>,
    /// Set for a broker started as the README says: `rill broker` with no
    /// `--data-dir`, in this working directory.
    literal_cwd: Option<PathBuf>,
    /// The open-file limit it runs under, if the test set one.
    open_files: Option<u64>,
}

impl Broker {
    /// Starts a broker on a free port with its data in `data_dir`.
    pub fn start(data_dir: &Path, extra_args: &[&str]) -> Broker {
        Broker::start_on(
            data_dir,
            0,
            extra_args.iter().map(|s| s.to_string()).collect(),
        )
    }

    /// Starts `rill broker` with exactly `args` (none: the README's quick
    /// start) in the working directory `cwd`; its data goes where the
    /// defaults put it, `cwd/data` unless `args` say otherwise.
    pub fn start_literal(cwd: &Path, args: &[&str]) -> Broker {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rill"));
        cmd.arg("broker").args(args).current_dir(cwd);
        let (child, port, admin) = spawn_and_wait(cmd);
        Broker {
            child: Some(child),
            port,
            admin,
            data_dir: cwd.join("data"),
            extra_args: args.iter().map(|s| s.to_string()).collect(),
            literal_cwd: Some(cwd.to_path_buf()),
            open_files: None,
        }
    }

    /// Starts a broker whose open-file limit (soft and hard: it cannot
    /// raise it) is `files`; restarts keep it.
    pub fn start_with_open_files(data_dir: &Path, files: u64, extra_args: &[&str]) -> Broker {
        let args = extra_args.iter().map(|s| s.to_string()).collect();
        Broker::launch(data_dir, 0, args, Some(files))
    }

    fn start_on(data_dir: &Path, port: u16, extra_args: Vec<String>) -> Broker {
        Broker::launch(data_dir, port, extra_args, None)
    }

    /// `rill broker` on `data_dir` and `port`, under `ulimit -n open_files`
    /// from a shell when given.
    fn launch(
        data_dir: &Path,
        port: u16,
        extra_args: Vec<String>,
        open_files: Option<u64>,
    ) -> Broker {
        let mut cmd = match open_files {
            Some(n) => {
                let mut c = Command::new("bash");
                c.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(env!("CARGO_BIN_EXE_rill"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_rill")),
        };
        cmd.arg("broker")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"));
        // Tests run brokers side by side: each its own admin port, unless
        // the test chose one.
        if !extra_args.iter().any(|a| a == "--admin-listen") {
            cmd.args(["--admin-listen", "127.0.0.1:0"]);
        }
        cmd.args(&extra_args);
        let (child, port, admin) = spawn_and_wait(cmd);
        Broker {
            child: Some(child),
            port,
            admin,
            data_dir: data_dir.to_path_buf(),
            extra_args,
            literal_cwd: None,
            open_files,
        }
    }
}

/// Spawns the broker command and waits for its "listening on" line; returns
/// the child, the port it bound and its admin listener's address (when it
/// runs one: its line follows at once).
fn spawn_and_wait(mut cmd: Command) -> (Child, u16, Option<String>) {
    let mut child = cmd
        .env(
            "RILL_LOG",
            std::env::var("RILL_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start rill broker");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("rill broker listening on ") {
                let addr = rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let _ = tx.send(addr);
            } else if let Some(rest) = line.strip_prefix("admin listener on http://") {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                let _ = tx.send(format!("admin {addr}"));
            }
        }
    });
    // Generous: a start after an unclean stop syncs the whole filesystem,
    // which on a slow CI disk may hold a build's output not yet written
    // (the broker's log names shards still starting every 10 s).
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("broker did not report its address");
    let port = addr.rsplit(':').next().unwrap().parse().unwrap();
    let admin = rx
        .recv_timeout(Duration::from_secs(2))
        .ok()
        .and_then(|a| a.strip_prefix("admin ").map(str::to_string));
    (child, port, admin)
}

impl Broker {
    /// The process id (to SIGSTOP/SIGCONT it).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGSTOP: the broker freezes (its sockets still take bytes).
    pub fn pause(&self) {
        send_signal(self.pid(), "STOP");
    }

    /// SIGCONT after [`pause`](Self::pause).
    pub fn resume(&self) {
        send_signal(self.pid(), "CONT");
    }

    /// SIGTERM, and the exit status of the clean shutdown.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        send_signal(child.id(), "TERM");
        wait_timeout(&mut child, Duration::from_secs(30))
            .expect("broker did not stop after SIGTERM")
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Starts the broker again on the same port and data directory.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        let mut again = match &self.literal_cwd {
            Some(cwd) => {
                let args: Vec<&str> = self.extra_args.iter().map(String::as_str).collect();
                Broker::start_literal(cwd, &args)
            }
            None => Broker::launch(
                &self.data_dir,
                self.port,
                self.extra_args.clone(),
                self.open_files,
            ),
        };
        self.child = again.child.take();
        self.admin = again.admin.take();
    }

    /// The open-file limit the next [`restart`](Self::restart) runs under.
    pub fn set_open_files(&mut self, files: u64) {
        self.open_files = Some(files);
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// The record batches at the start of a segment file's bytes, up to the
/// zeros reserved after them.
pub fn batches_in(log: &[u8]) -> Vec<&[u8]> {
    let mut batches = Vec::new();
    let mut at = 0;
    while at + 61 <= log.len() {
        let len = i32::from_be_bytes(log[at + 8..at + 12].try_into().unwrap());
        if len <= 0 {
            break; // reserved zeros after the data
        }
        let Some(batch) = log.get(at..at + 12 + len as usize) else {
            break; // torn at the end
        };
        batches.push(batch);
        at += batch.len();
    }
    batches
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

/// Runs a command to completion with a time limit; returns (status ok, stdout, stderr).
pub fn run(cmd: &mut Command, limit: Duration) -> (bool, String, String) {
    run_piped(cmd, None, limit)
}

/// Like [`run`], with `input` written to the command's standard input.
pub fn run_with_input(cmd: &mut Command, input: &[u8], limit: Duration) -> (bool, String, String) {
    run_piped(cmd, Some(input), limit)
}

fn run_piped(cmd: &mut Command, input: Option<&[u8]>, limit: Duration) -> (bool, String, String) {
    if input.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let t_in = input.map(|input| {
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = std::io::Write::write_all(&mut stdin, &input);
        })
    });
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).ok();
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut err, &mut s).ok();
        s
    });
    let status = wait_timeout(&mut child, limit);
    if let Some(t) = t_in {
        let _ = t.join();
    }
    let (o, e) = (t_out.join().unwrap(), t_err.join().unwrap());
    (status.is_some_and(|s| s.success()), o, e)
}

/// Every message of `topic` as kcat prints it with `format` (`kcat -C -e`
/// plus `extra` flags); fails the test if kcat fails.
pub fn kcat_read(addr: &str, topic: &str, format: &str, extra: &[&str]) -> String {
    let (ok, out, err) = run(
        Command::new("kcat")
            .args(["-b", addr, "-C", "-t", topic, "-e", "-q", "-f", format])
            .args(extra),
        Duration::from_secs(60),
    );
    assert!(ok, "kcat -C {topic} failed: {err}");
    out
}

/// Debian's python, where python3-confluent-kafka is installed.
pub fn python() -> &'static str {
    "/usr/bin/python3"
}

pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// A broker inside the test process (`rill_broker::Broker::start`), with as
/// many shards as `rill broker` would start: for tests where a separate
/// process is not the point. Shut down cleanly when dropped.
pub struct InProcess {
    handle: Option<rill_broker::BrokerHandle>,
}

impl InProcess {
    pub fn start(data_dir: &Path) -> InProcess {
        let mut config = rill_broker::BrokerConfig::ephemeral(data_dir).unwrap();
        config.cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        InProcess {
            handle: Some(rill_broker::Broker::start(config).expect("starting a broker")),
        }
    }

    pub fn addr(&self) -> String {
        self.handle.as_ref().expect("running").addr().to_string()
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.stop();
            if let Err(e) = h.wait() {
                eprintln!("in-process broker did not stop cleanly: {e}");
            }
        }
    }
}

/// Every record of `topic` from the beginning up to the end offsets of now.
pub async fn consume_all(
    client: &rill_client::Client,
    topic: &str,
) -> Vec<rill_client::ConsumerRecord> {
    use rill_client::{Admin, Consumer, ConsumerConfig, Offset, OffsetSpec, TopicPartition};
    use std::collections::HashMap;
    let n = client.ensure_topic(topic).await.unwrap();
    let parts: Vec<TopicPartition> = (0..n).map(|p| TopicPartition::new(topic, p)).collect();
    let specs: Vec<_> = parts
        .iter()
        .map(|tp| (tp.clone(), OffsetSpec::Latest))
        .collect();
    let ends: HashMap<i32, i64> = Admin::new(client.clone())
        .list_offsets(&specs)
        .await
        .unwrap()
        .into_iter()
        .map(|(tp, r)| (tp.partition, r.unwrap().0))
        .collect();
    let mut consumer = Consumer::new(
        client.clone(),
        ConsumerConfig {
            start: Offset::Beginning,
            ..ConsumerConfig::default()
        },
    );
    consumer.assign(&parts).await.unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while parts.iter().any(|tp| {
        consumer
            .position(tp)
            .is_none_or(|p| p < ends[&tp.partition])
    }) {
        assert!(Instant::now() < deadline, "consuming {topic} timed out");
        out.extend(consumer.poll(Duration::from_millis(500)).await.unwrap());
    }
    out.retain(|r| r.offset < ends[&r.partition]);
    out
}
