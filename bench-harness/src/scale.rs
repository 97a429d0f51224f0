//! `rill-scale`: how one broker copes with very many partitions. Starts a
//! real `rill broker`, creates topics until it owns the asked partitions,
//! writes one record to each, and reports what that cost — create time,
//! resident memory, open files, disk used — then how long a clean stop, a
//! start after it, and a start after `kill -9` take until every partition
//! answers with its record (so a start is measured up to "serving all", not
//! up to "listening").

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use rill_client::{
    Acks, Admin, Client, ClientConfig, NewTopic, OffsetSpec, Producer, ProducerConfig, Record,
    TopicPartition,
};

/// What to build.
#[derive(Debug, Clone)]
pub struct ScaleOptions {
    pub rill: PathBuf,
    /// The data directory is made inside (and removed at the end).
    pub parent_dir: PathBuf,
    pub partitions: usize,
    pub partitions_per_topic: usize,
    /// Topics per CreateTopics request.
    pub topics_per_request: usize,
    pub record_bytes: usize,
    /// Shards of the broker (`--cores`).
    pub cores: usize,
    /// The broker's open-file limit, soft and hard (`ulimit -n`); `None`
    /// leaves the inherited one.
    pub nofile: Option<u64>,
    /// How long the broker stays idle after the writes before it is stopped
    /// (partitions idle for 10 s are parked: a stop has nothing to do for
    /// them); 0 stops at once, the worst case.
    pub settle: Duration,
    /// How long one phase (create, produce, a start) may take.
    pub phase_timeout: Duration,
    pub progress: bool,
    /// Whether the broker gives each partition metric series of its own
    /// (`--metrics-partition-series`).
    pub partition_series: bool,
}

/// The broker's resources at one moment.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Usage {
    pub rss_bytes: u64,
    pub open_files: usize,
    pub disk_bytes: u64,
}

/// What a run measured.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ScaleReport {
    pub partitions: usize,
    pub create_secs: f64,
    pub produce_secs: f64,
    pub produce_records_per_s: f64,
    /// Before anything was created.
    pub empty: Usage,
    /// After every partition got its record.
    pub written: Usage,
    /// After the idle time before the stop.
    pub settled: Usage,
    pub settle_secs: f64,
    pub stop_secs: f64,
    /// After a clean stop: until listening, until every partition serves.
    pub clean_start_listening_secs: f64,
    pub clean_start_serving_secs: f64,
    pub after_clean_start: Usage,
    pub kill_start_listening_secs: f64,
    pub kill_start_serving_secs: f64,
    pub after_kill_start: Usage,
    /// A `/metrics` scrape of the broker with every partition written.
    pub scrape: ScrapeCost,
}

/// What a Prometheus scrape of the broker costs it.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ScrapeCost {
    pub scrapes: usize,
    /// Broker CPU (user + system, every thread) per scrape, less what it
    /// spent without scrapes over as long.
    pub broker_cpu_ms: f64,
    /// That background CPU, per scrape's worth of time.
    pub background_cpu_ms: f64,
    /// Wall time per scrape, as the scraper saw it.
    pub wall_ms: f64,
    pub bytes: usize,
    /// Lines that are samples (not `#` comments).
    pub samples: usize,
}

impl ScaleReport {
    pub fn print(&self) {
        let mb = |b: u64| b as f64 / 1e6;
        let per = |b: u64, base: u64| b.saturating_sub(base) as f64 / self.partitions.max(1) as f64;
        let usage = |name: &str, u: &Usage| {
            println!(
                "{name:<22} rss {:>9.1} MB ({:>7.0} B/partition)  open files {:>6}  disk {:>9.1} MB ({:>7.0} B/partition)",
                mb(u.rss_bytes),
                per(u.rss_bytes, self.empty.rss_bytes),
                u.open_files,
                mb(u.disk_bytes),
                per(u.disk_bytes, self.empty.disk_bytes),
            )
        };
        println!("partitions             {}", self.partitions);
        println!("create                 {:.1} s", self.create_secs);
        println!(
            "produce (1 each)       {:.1} s, {:.0} records/s",
            self.produce_secs, self.produce_records_per_s
        );
        usage("empty broker", &self.empty);
        usage("all written", &self.written);
        let sc = &self.scrape;
        println!(
            "scrape /metrics        {:.1} ms broker CPU (+{:.1} ms background), {:.1} ms wall, {:.2} MB, {} samples (mean of {})",
            sc.broker_cpu_ms,
            sc.background_cpu_ms,
            sc.wall_ms,
            sc.bytes as f64 / 1e6,
            sc.samples,
            sc.scrapes
        );
        if self.settle_secs > 0.0 {
            usage(&format!("idle {:.0} s", self.settle_secs), &self.settled);
        }
        println!("SIGTERM stop           {:.1} s", self.stop_secs);
        println!(
            "start after clean stop listening {:.1} s, every partition serving {:.1} s",
            self.clean_start_listening_secs, self.clean_start_serving_secs
        );
        usage("after clean start", &self.after_clean_start);
        println!(
            "start after kill -9    listening {:.1} s, every partition serving {:.1} s",
            self.kill_start_listening_secs, self.kill_start_serving_secs
        );
        usage("after kill -9 start", &self.after_kill_start);
    }
}

struct RunningBroker {
    child: Child,
    addr: String,
    /// The admin listener's address, once the broker printed it.
    admin: std::sync::mpsc::Receiver<String>,
}

impl RunningBroker {
    fn start(opts: &ScaleOptions, data: &Path) -> anyhow::Result<(RunningBroker, Duration)> {
        let started = Instant::now();
        let mut command = Command::new(&opts.rill);
        command
            .args([
                "broker",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--metrics-partition-series",
                if opts.partition_series {
                    "true"
                } else {
                    "false"
                },
                "--data-dir",
            ])
            .arg(data)
            .args(["--cores", &opts.cores.to_string()])
            .env(
                "RILL_LOG",
                std::env::var("RILL_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(n) = opts.nofile {
            // SAFETY: only setrlimit, async-signal-safe, runs between fork and exec.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                    let l = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", opts.rill.display()))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        let (admin_tx, admin) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("rill broker listening on ") {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(addr.to_string());
                } else if let Some(rest) = line.strip_prefix("admin listener on http://") {
                    let addr = rest.split_whitespace().next().unwrap_or_default();
                    let _ = admin_tx.send(addr.to_string());
                }
            }
        });
        match rx.recv_timeout(opts.phase_timeout) {
            Ok(addr) => Ok((RunningBroker { child, addr, admin }, started.elapsed())),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the broker did not listen within {:?}", opts.phase_timeout)
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits for the exit; returns how long it took.
    fn stop(mut self, timeout: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        unsafe { libc::kill(self.pid() as i32, libc::SIGTERM) };
        while started.elapsed() < timeout {
            if let Some(status) = self.child.try_wait()? {
                ensure!(status.success(), "the broker exited with {status}");
                return Ok(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        bail!("the broker did not stop within {timeout:?} of SIGTERM")
    }

    /// `scrapes` scrapes of `/metrics` one after another, and what each
    /// cost the broker's CPU on average.
    fn scrape(&self, scrapes: usize) -> anyhow::Result<ScrapeCost> {
        let admin = self
            .admin
            .recv_timeout(Duration::from_secs(10))
            .context("the broker printed no admin listener")?;
        let url = format!("http://{admin}/metrics");
        let get = || -> anyhow::Result<String> {
            // Tens of megabytes at 100,000 partitions with per-partition
            // series: more than `into_string` takes.
            let mut text = String::new();
            std::io::Read::read_to_string(
                &mut ureq::get(&url)
                    .timeout(Duration::from_secs(60))
                    .call()
                    .with_context(|| format!("GET {url}"))?
                    .into_reader(),
                &mut text,
            )?;
            Ok(text)
        };
        get()?; // warm: the first scrape makes the series' strings
        let cpu = || crate::cpu::process_cpu_seconds(self.pid()).unwrap_or(0.0);
        let (cpu0, started) = (cpu(), Instant::now());
        let mut text = String::new();
        for _ in 0..scrapes {
            text = get()?;
        }
        let (busy, wall) = (cpu() - cpu0, started.elapsed());
        // What the broker spends meanwhile without scrapes (writing behind,
        // its sweeps) over as long again, taken off.
        let cpu1 = cpu();
        std::thread::sleep(wall);
        let background = cpu() - cpu1;
        let n = scrapes.max(1) as f64;
        Ok(ScrapeCost {
            scrapes,
            broker_cpu_ms: (busy - background).max(0.0) * 1e3 / n,
            background_cpu_ms: background * 1e3 / n,
            wall_ms: wall.as_secs_f64() * 1e3 / n,
            bytes: text.len(),
            samples: text.lines().filter(|l| !l.starts_with('#')).count(),
        })
    }

    fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RunningBroker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Resident memory and open files of `pid`, and the disk taken under `dir`.
pub fn usage(pid: u32, dir: &Path) -> Usage {
    let rss_bytes = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024);
    let open_files = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    Usage {
        rss_bytes,
        open_files,
        disk_bytes: disk_used(dir),
    }
}

/// Bytes of disk blocks taken by the files and directories under `dir`.
pub fn disk_used(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            total += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

fn topic_name(i: usize) -> String {
    format!("scale-{i:05}")
}

fn partition_list(opts: &ScaleOptions) -> Vec<TopicPartition> {
    let topics = opts.partitions.div_ceil(opts.partitions_per_topic);
    (0..topics)
        .flat_map(|t| {
            let n = opts
                .partitions_per_topic
                .min(opts.partitions - t * opts.partitions_per_topic);
            (0..n as i32).map(move |p| TopicPartition::new(topic_name(t), p))
        })
        .collect()
}

async fn connect(addr: &str) -> anyhow::Result<Client> {
    let mut config = ClientConfig::new(addr);
    config.request_timeout = Duration::from_secs(120);
    Ok(Client::connect(config).await?)
}

async fn create(opts: &ScaleOptions, addr: &str) -> anyhow::Result<()> {
    let admin = Admin::new(connect(addr).await?);
    let topics = opts.partitions.div_ceil(opts.partitions_per_topic);
    let specs: Vec<NewTopic> = (0..topics)
        .map(|t| {
            let n = opts
                .partitions_per_topic
                .min(opts.partitions - t * opts.partitions_per_topic);
            NewTopic::new(topic_name(t), n as i32)
        })
        .collect();
    for (i, chunk) in specs.chunks(opts.topics_per_request.max(1)).enumerate() {
        for (name, outcome) in admin.create_topics(chunk).await? {
            outcome.with_context(|| format!("creating {name}"))?;
        }
        if opts.progress {
            eprint!(
                "\rrill-scale: created {} of {topics} topics",
                (i + 1) * chunk.len()
            );
        }
    }
    if opts.progress {
        eprintln!();
    }
    Ok(())
}

async fn produce(opts: &ScaleOptions, addr: &str, all: &[TopicPartition]) -> anyhow::Result<()> {
    let client = connect(addr).await?;
    let producer = Producer::new(
        client,
        ProducerConfig {
            acks: Acks::All,
            linger: Duration::from_millis(20),
            batch_size: opts.record_bytes.max(1024) + 512,
            buffer_memory: 512 << 20,
            delivery_timeout: opts.phase_timeout,
            ack_timeout: opts.phase_timeout.min(Duration::from_secs(60)),
            ..ProducerConfig::default()
        },
    )?;
    let value = bytes::Bytes::from(vec![b'x'; opts.record_bytes]);
    let mut deliveries = Vec::with_capacity(all.len());
    for tp in all {
        deliveries.push(
            producer
                .send(
                    Record::new(tp.topic.clone(), value.clone())
                        .key(format!("{}-{}", tp.topic, tp.partition))
                        .partition(tp.partition),
                )
                .await?,
        );
    }
    for (d, tp) in deliveries.into_iter().zip(all) {
        let m = d
            .await
            .with_context(|| format!("producing to {}-{}", tp.topic, tp.partition))?;
        ensure!(
            m.offset == 0,
            "{}-{} took its record at offset {}",
            tp.topic,
            tp.partition,
            m.offset
        );
    }
    producer.close().await;
    Ok(())
}

/// Waits until every partition answers ListOffsets(latest) with 1 (its
/// record is there); returns how long from `since`.
async fn until_serving(
    opts: &ScaleOptions,
    addr: &str,
    all: &[TopicPartition],
    since: Instant,
) -> anyhow::Result<Duration> {
    let deadline = Instant::now() + opts.phase_timeout;
    let mut waiting: Vec<TopicPartition> = all.to_vec();
    let mut last_error = String::new();
    let client = loop {
        match connect(addr).await {
            Ok(c) => break c,
            Err(e) if Instant::now() < deadline => {
                last_error = e.to_string();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    };
    let admin = Admin::new(client);
    while !waiting.is_empty() {
        if Instant::now() > deadline {
            bail!(
                "{} partitions still not serving after {:?}; last error: {last_error}",
                waiting.len(),
                opts.phase_timeout
            );
        }
        let asked: Vec<(TopicPartition, OffsetSpec)> = waiting
            .iter()
            .map(|tp| (tp.clone(), OffsetSpec::Latest))
            .collect();
        let mut still = Vec::new();
        let round = Instant::now();
        let answered = admin.list_offsets(&asked).await;
        if opts.progress {
            eprintln!(
                "rill-scale: ListOffsets of {} partitions answered in {:?} ({:?} since the start)",
                asked.len(),
                round.elapsed(),
                since.elapsed()
            );
        }
        match answered {
            Ok(answers) => {
                for (tp, outcome) in answers {
                    match outcome {
                        Ok((1, _)) => {}
                        Ok((end, _)) => bail!(
                            "{}-{} ends at {end} after a restart, not 1",
                            tp.topic,
                            tp.partition
                        ),
                        Err(e) => {
                            last_error = e.to_string();
                            still.push(tp);
                        }
                    }
                }
            }
            Err(e) => {
                last_error = e.to_string();
                still = waiting;
            }
        }
        waiting = still;
        if !waiting.is_empty() {
            // Each round asks every partition not yet serving (100,000 at
            // first): asked every 50 ms, that took a tenth of the starting
            // broker's CPU. A quarter of a second is resolution enough.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok(since.elapsed())
}

/// Runs the whole sequence and returns what it measured.
pub fn run(opts: &ScaleOptions) -> anyhow::Result<ScaleReport> {
    std::fs::create_dir_all(&opts.parent_dir)?;
    let dir = tempfile::Builder::new()
        .prefix("rill-scale-")
        .tempdir_in(&opts.parent_dir)?;
    let data = dir.path().join("data");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let all = partition_list(opts);
    let say = |what: &str| {
        if opts.progress {
            eprintln!("rill-scale: {what}");
        }
    };
    let mut report = ScaleReport {
        partitions: all.len(),
        settle_secs: opts.settle.as_secs_f64(),
        ..ScaleReport::default()
    };

    let (broker, _) = RunningBroker::start(opts, &data)?;
    report.empty = usage(broker.pid(), &data);
    say(&format!("creating {} partitions", all.len()));
    let started = Instant::now();
    rt.block_on(create(opts, &broker.addr))?;
    report.create_secs = started.elapsed().as_secs_f64();
    say("writing one record to each");
    let started = Instant::now();
    rt.block_on(produce(opts, &broker.addr, &all))?;
    report.produce_secs = started.elapsed().as_secs_f64();
    report.produce_records_per_s = all.len() as f64 / report.produce_secs.max(1e-9);
    report.written = usage(broker.pid(), &data);
    if !opts.settle.is_zero() {
        say(&format!("idle for {:?}", opts.settle));
        std::thread::sleep(opts.settle);
        report.settled = usage(broker.pid(), &data);
    }
    // After the idle time if there is one: the scrape's own cost is then
    // not buried under the writes' aftermath.
    say("scraping /metrics");
    report.scrape = broker.scrape(20)?;
    say("stopping (SIGTERM)");
    report.stop_secs = broker.stop(opts.phase_timeout)?.as_secs_f64();

    say("starting after the clean stop");
    let started = Instant::now();
    let (broker, listening) = RunningBroker::start(opts, &data)?;
    report.clean_start_listening_secs = listening.as_secs_f64();
    report.clean_start_serving_secs = rt
        .block_on(until_serving(opts, &broker.addr, &all, started))?
        .as_secs_f64();
    report.after_clean_start = usage(broker.pid(), &data);
    say("kill -9, starting again");
    broker.kill9();
    let started = Instant::now();
    let (broker, listening) = RunningBroker::start(opts, &data)?;
    report.kill_start_listening_secs = listening.as_secs_f64();
    report.kill_start_serving_secs = rt
        .block_on(until_serving(opts, &broker.addr, &all, started))?
        .as_secs_f64();
    report.after_kill_start = usage(broker.pid(), &data);
    broker.stop(opts.phase_timeout)?;
    Ok(report)
}
