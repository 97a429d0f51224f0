//! The `rill-bench` / `rill bench` command.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::embedded::EmbeddedBroker;
use crate::report::{CpuUse, Report};
use crate::runner::{self, RunOptions};
use crate::workload::{Rate, Workload};

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Workload files (TOML), run one after another.
    #[arg(required = true)]
    pub workloads: Vec<PathBuf>,
    /// Start a local `rill broker` on a temporary data directory for the run
    /// (--brokers is then ignored).
    #[arg(long)]
    pub embedded: bool,
    /// With --brokers: the broker's process id, if it runs on this machine,
    /// to report its CPU time per GB produced (the embedded broker's is known).
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// Bootstrap brokers of any Kafka-API cluster.
    #[arg(long, env = "RILL_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Where the embedded broker keeps its data (a temporary directory is
    /// made inside) and where the disk is probed.
    #[arg(long, default_value = ".")]
    pub data_dir: PathBuf,
    /// With --brokers: the broker's data directory, if on this machine, to
    /// measure its disk.
    #[arg(long)]
    pub disk_dir: Option<PathBuf>,
    /// Skip measuring the disk and loopback limits.
    #[arg(long)]
    pub skip_limits: bool,
    /// Directory for the JSON and HTML reports.
    #[arg(long, default_value = "bench-results")]
    pub out: PathBuf,
    /// Override the measured duration of every workload (seconds).
    #[arg(long)]
    pub duration_secs: Option<u64>,
    /// Override the warm-up of every workload (seconds).
    #[arg(long)]
    pub warmup_secs: Option<u64>,
    /// Override the rate of every workload (messages per second, "max", or
    /// "max*F" for a fraction of a calibrated maximum).
    #[arg(long)]
    pub rate: Option<String>,
    /// Override the idempotence of every workload's producers (true/false).
    #[arg(long)]
    pub idempotence: Option<bool>,
    /// Run the embedded broker on these CPUs only, one shard each
    /// (comma-separated ids, as `taskset -c`); default: every CPU.
    #[arg(long, value_delimiter = ',', value_name = "CPUS")]
    pub broker_cpus: Vec<usize>,
    /// Run the load generator on these CPUs only; default: every CPU.
    #[arg(long, value_delimiter = ',', value_name = "CPUS")]
    pub generator_cpus: Vec<usize>,
    /// Worker threads of the load generator.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
    /// Seconds of the max-rate calibration run for "max*F" rates.
    #[arg(long, default_value_t = 8)]
    pub calibration_secs: u64,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let mut workloads = Vec::new();
    for path in &args.workloads {
        let mut w = Workload::load(path)?;
        if let Some(d) = args.duration_secs {
            w.duration_secs = d;
        }
        if let Some(d) = args.warmup_secs {
            w.warmup_secs = d;
        }
        if let Some(i) = args.idempotence {
            w.idempotence = i;
        }
        if let Some(r) = &args.rate {
            w.rate = match r.as_str() {
                m if m == "max" || m.starts_with("max*") => Rate::Max(m.to_string()),
                n => Rate::Fixed(n.parse().with_context(|| format!("--rate {n}"))?),
            };
        }
        workloads.push(w);
    }
    if !args.broker_cpus.is_empty() && !args.embedded {
        anyhow::bail!("--broker-cpus places the embedded broker: use it with --embedded (or start the broker with taskset)");
    }
    let broker = if args.embedded {
        Some(EmbeddedBroker::start_on(
            &crate::embedded::rill_binary(),
            &args.data_dir,
            &args.broker_cpus,
        )?)
    } else {
        None
    };
    let all_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if !args.generator_cpus.is_empty() {
        crate::cpu::pin_process(&args.generator_cpus)
            .with_context(|| format!("pinning the generator to CPUs {:?}", args.generator_cpus))?;
    }
    let layout = crate::cpu::layout(&args.broker_cpus, &args.generator_cpus);
    let (brokers, target) = match &broker {
        Some(b) => (
            b.addr.clone(),
            format!("embedded rill broker at {} ({layout})", b.addr),
        ),
        None => {
            let generator = match args.generator_cpus.as_slice() {
                [] => "every CPU".to_string(),
                c => format!("CPUs {c:?}"),
            };
            (
                args.brokers.clone(),
                format!("brokers {} (generator on {generator})", args.brokers),
            )
        }
    };
    if let Some(dir) = match &broker {
        Some(b) => Some(b.data_dir()),
        None => args.disk_dir.as_deref(),
    } {
        crate::limits::warn_if_buffered_loop("rill-bench", dir);
    }
    let limits = if args.skip_limits {
        crate::limits::Limits::default()
    } else {
        let dir: Option<&Path> = match &broker {
            Some(b) => Some(b.data_dir()),
            None => args.disk_dir.as_deref(),
        };
        eprintln!("rill-bench: measuring the hardware limits (disk write, loopback TCP)…");
        let l = crate::limits::measure(dir);
        let mb = |v: Option<f64>| v.map_or("not measured".into(), |v| format!("{v:.1} MB/s"));
        eprintln!(
            "rill-bench: disk O_DIRECT write {}, write+fdatasync {}, read {}; loopback TCP {}",
            mb(l.disk_write_mb_s),
            mb(l.disk_write_synced_mb_s),
            mb(l.disk_read_mb_s),
            mb(l.loopback_tcp_mb_s)
        );
        l
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    let options = RunOptions {
        brokers,
        progress: !args.quiet,
        drain_timeout: Duration::from_secs(30),
    };
    for mut w in workloads {
        let mut calibrated = None;
        if let Some(fraction) = w.rate.fraction_of_max() {
            // A short max-rate run of the same workload sets the rate.
            let mut probe = w.clone();
            probe.rate = Rate::Max("max".into());
            probe.warmup_secs = probe.warmup_secs.min(2);
            probe.duration_secs = args.calibration_secs.max(1);
            probe.max_messages = None;
            eprintln!(
                "rill-bench: calibrating {} at max rate for {} s",
                w.name, probe.duration_secs
            );
            let quiet = RunOptions {
                progress: false,
                ..options.clone()
            };
            let max = rt.block_on(runner::run(&probe, &quiet))?.produce.msgs_per_s;
            anyhow::ensure!(
                max > 0.0,
                "the calibration run of {} produced nothing",
                w.name
            );
            eprintln!(
                "rill-bench: max {max:.0} msgs/s; running at {:.0} % = {:.0} msgs/s",
                fraction * 100.0,
                fraction * max
            );
            calibrated = Some(max);
            w.rate = Rate::Fixed(fraction * max);
        }
        eprintln!(
            "rill-bench: running {} ({} s warm-up, {} s measured)",
            w.name, w.warmup_secs, w.duration_secs
        );
        let broker_pid = broker.as_ref().map(EmbeddedBroker::pid).or(args.broker_pid);
        let me = std::process::id();
        let started = std::time::Instant::now();
        let cpu_before = broker_pid.and_then(crate::cpu::process_cpu_seconds);
        let own_before = crate::cpu::process_cpu_seconds(me);
        let result = rt.block_on(runner::run(&w, &options))?;
        let cpu_after = broker_pid.and_then(crate::cpu::process_cpu_seconds);
        let own_after = crate::cpu::process_cpu_seconds(me);
        let wall_seconds = started.elapsed().as_secs_f64();
        let mut report = Report::new(w.clone(), target.clone(), limits.clone(), result);
        report.calibrated_max_msgs_per_s = calibrated;
        let count = |cpus: &[usize]| {
            if cpus.is_empty() {
                all_cpus
            } else {
                cpus.len()
            }
        };
        if let (Some(a), Some(b)) = (cpu_before, cpu_after) {
            report.set_broker_cpu(CpuUse {
                cpu_seconds: b - a,
                wall_seconds,
                // Without --broker-cpus a broker elsewhere may have any number.
                capacity_cpus: count(&args.broker_cpus) as f64,
            });
        }
        if let (Some(a), Some(b)) = (own_before, own_after) {
            report.generator_cpu = Some(CpuUse {
                cpu_seconds: b - a,
                wall_seconds,
                capacity_cpus: count(&args.generator_cpus).min(args.threads.max(1)) as f64,
            });
        }
        let json = args.out.join(format!("{}.json", w.name));
        let html = args.out.join(format!("{}.html", w.name));
        std::fs::write(&json, report.json())
            .with_context(|| format!("writing {}", json.display()))?;
        std::fs::write(&html, report.html())
            .with_context(|| format!("writing {}", html.display()))?;
        print!("{}", report.text());
        println!("reports: {} {}\n", json.display(), html.display());
    }
    drop(broker);
    Ok(())
}
