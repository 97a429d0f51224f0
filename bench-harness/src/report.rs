//! Reports: a JSON file for scripts and a self-contained HTML page (inline
//! SVG charts, no scripts, no external files) for people.

use std::fmt::Write as _;

use serde::Serialize;

use crate::limits::Limits;
use crate::runner::RunResult;
use crate::stats::LatencySummary;
use crate::workload::Workload;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub workload: Workload,
    pub target: String,
    pub started_at: String,
    pub limits: Limits,
    /// Produce MB/s ÷ disk write MB/s (every produced byte is written once).
    pub produce_fraction_of_disk: Option<f64>,
    /// (produce + consume) MB/s ÷ loopback TCP MB/s (both cross loopback).
    pub traffic_fraction_of_loopback: Option<f64>,
    /// Consume MB/s ÷ the same run's O_DIRECT read MB/s (catch-up
    /// workloads, whose backlog is read from the disk).
    pub consume_fraction_of_disk_read: Option<f64>,
    /// For a "max*F" rate: the msgs/s of the calibration run.
    pub calibrated_max_msgs_per_s: Option<f64>,
    /// Produce MB/s ÷ the same run's O_DIRECT-write-then-fdatasync MB/s
    /// (the ceiling of a durable log writing once per commit).
    pub produce_fraction_of_synced_write: Option<f64>,
    /// The broker's CPU seconds per GB produced over the whole run (serving the
    /// consumers of the run included).
    pub broker_cpu_seconds_per_gb: Option<f64>,
    /// The broker's CPU use (user + system) over the run, when its process
    /// is known (embedded, or `--broker-pid`).
    pub broker_cpu: Option<CpuUse>,
    /// The load generator's (this process's) CPU use over the run.
    pub generator_cpu: Option<CpuUse>,
    pub result: RunResult,
}

/// What a process used of the CPUs it could use, over one run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CpuUse {
    pub cpu_seconds: f64,
    pub wall_seconds: f64,
    /// CPUs it could keep busy: the CPUs it may run on, and for the
    /// generator no more than its worker threads.
    pub capacity_cpus: f64,
}

impl CpuUse {
    /// CPUs kept busy on average (CPU seconds ÷ wall seconds).
    pub fn busy_cpus(&self) -> f64 {
        self.cpu_seconds / self.wall_seconds.max(1e-9)
    }

    /// Busy ÷ capacity.
    pub fn utilisation(&self) -> f64 {
        self.busy_cpus() / self.capacity_cpus.max(1e-9)
    }

    /// At or above 90 % of what it could use: the figures of the run are
    /// bound by this process.
    pub fn saturated(&self) -> bool {
        self.utilisation() >= 0.9
    }
}

impl Report {
    pub fn new(workload: Workload, target: String, limits: Limits, result: RunResult) -> Report {
        let produce_fraction_of_disk = limits.disk_write_mb_s.map(|d| result.produce.mb_per_s / d);
        let produce_fraction_of_synced_write = limits
            .disk_write_synced_mb_s
            .map(|d| result.produce.mb_per_s / d);
        let traffic_fraction_of_loopback = limits
            .loopback_tcp_mb_s
            .map(|l| (result.produce.mb_per_s + result.consume.mb_per_s) / l);
        let consume_fraction_of_disk_read = limits
            .disk_read_mb_s
            .filter(|_| workload.catch_up)
            .map(|d| result.consume.mb_per_s / d);
        Report {
            consume_fraction_of_disk_read,
            workload,
            target,
            started_at: humantime_now(),
            limits,
            produce_fraction_of_disk,
            traffic_fraction_of_loopback,
            produce_fraction_of_synced_write,
            calibrated_max_msgs_per_s: None,
            broker_cpu_seconds_per_gb: None,
            broker_cpu: None,
            generator_cpu: None,
            result,
        }
    }

    /// Records the broker's CPU use over the run.
    pub fn set_broker_cpu(&mut self, cpu: CpuUse) {
        self.broker_cpu = Some(cpu);
        let gb = self.result.produced_bytes_all as f64 / 1e9;
        self.broker_cpu_seconds_per_gb = (gb > 0.0).then(|| cpu.cpu_seconds / gb);
    }

    /// Lines on who was busy: the broker's and the generator's CPU use,
    /// which one bound the run, and the producers' requests (how many were
    /// in flight, and their round trip).
    fn load_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(q) = &self.result.produce_requests {
            lines.push(format!(
                "produce requests {:.0}/s of {:.0} batches, {:.1} KB each; round trip {:.2} ms on average, {:.1} ms at most; {:.1} in flight on average of at most {}",
                q.per_second,
                q.batches_per_request,
                q.bytes_per_request / 1e3,
                q.round_trip_mean_ms,
                q.round_trip_max_ms,
                q.in_flight_mean,
                q.in_flight_max
            ));
        }
        if let (Some(cpu), Some(per_gb)) = (self.broker_cpu, self.broker_cpu_seconds_per_gb) {
            lines.push(format!(
                "broker CPU {:.2} s over the run: {per_gb:.2} CPU-s per GB produced; busy {:.2} of {} CPUs ({:.0} %)",
                cpu.cpu_seconds,
                cpu.busy_cpus(),
                cpu.capacity_cpus,
                cpu.utilisation() * 100.0
            ));
        }
        if let Some(cpu) = self.generator_cpu {
            lines.push(format!(
                "generator CPU {:.2} s over the run: busy {:.2} of {} CPUs it can use ({:.0} %)",
                cpu.cpu_seconds,
                cpu.busy_cpus(),
                cpu.capacity_cpus,
                cpu.utilisation() * 100.0
            ));
            if cpu.saturated() && self.workload.rate.per_second().is_some() {
                lines.push(
                    "(at a fixed rate a paced producer yields in a loop until each send is due, so the generator's CPU use says nothing about saturation here)"
                        .to_string(),
                );
            } else if cpu.saturated() {
                lines.push(
                    "the GENERATOR was saturated: these figures measure the load generator, not the broker (give it more CPUs or --threads)"
                        .to_string(),
                );
            }
        }
        if self.broker_cpu.is_some_and(|c| c.saturated()) {
            lines.push("the broker's CPUs were saturated".to_string());
        }
        lines
    }

    /// The summary printed at the end of a run.
    pub fn text(&self) -> String {
        let r = &self.result;
        let mut s = String::new();
        let _ = writeln!(s, "workload {} against {}", self.workload.name, self.target);
        let w = &self.workload;
        let _ = writeln!(
            s,
            "producers acks={} idempotence={} linger {} ms, batch {} B",
            w.acks,
            w.idempotence
                && w.acks.parse::<rill_client::Acks>().ok() == Some(rill_client::Acks::All),
            w.linger_ms,
            w.batch_size
        );
        let _ = writeln!(s, "consumers: {}", w.consumers_description());
        if let Some(max) = self.calibrated_max_msgs_per_s {
            let _ = writeln!(
                s,
                "rate {:.0} msgs/s, from a calibration run at max rate: {max:.0} msgs/s",
                self.workload.rate.per_second().unwrap_or(0.0)
            );
        }
        let pct = |f: Option<f64>| f.map_or("n/a".to_string(), |f| format!("{:.1} %", f * 100.0));
        let _ = writeln!(
            s,
            "produce  {:>12.0} msg/s {:>9.1} MB/s  ({} of disk write {}; {} of write+fdatasync {})",
            r.produce.msgs_per_s,
            r.produce.mb_per_s,
            pct(self.produce_fraction_of_disk),
            self.limits
                .disk_write_mb_s
                .map_or("not measured".into(), |d| format!("{d:.1} MB/s")),
            pct(self.produce_fraction_of_synced_write),
            self.limits
                .disk_write_synced_mb_s
                .map_or("not measured".into(), |d| format!("{d:.1} MB/s"))
        );
        let _ = writeln!(
            s,
            "consume  {:>12.0} msg/s {:>9.1} MB/s  (produce+consume {} of loopback {})",
            r.consume.msgs_per_s,
            r.consume.mb_per_s,
            pct(self.traffic_fraction_of_loopback),
            self.limits
                .loopback_tcp_mb_s
                .map_or("not measured".into(), |d| format!("{d:.0} MB/s"))
        );
        if let (Some(f), Some(d)) = (
            self.consume_fraction_of_disk_read,
            self.limits.disk_read_mb_s,
        ) {
            let _ = writeln!(
                s,
                "catch-up: the backlog read at {} of the disk's O_DIRECT read {d:.1} MB/s",
                pct(Some(f))
            );
        }
        for line in self.load_lines() {
            let _ = writeln!(s, "{line}");
        }
        let _ = writeln!(
            s,
            "{:<14} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "latency ms", "p50", "p90", "p99", "p99.9", "p99.99", "max"
        );
        for (name, l) in [
            ("publish", &r.publish_latency),
            ("end-to-end", &r.end_to_end_latency),
        ] {
            let _ = writeln!(
                s,
                "{:<14} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                name, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.p9999_ms, l.max_ms
            );
        }
        let _ = writeln!(
            s,
            "errors {}{}; undelivered {}",
            r.errors,
            r.first_error
                .as_ref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default(),
            r.undelivered
        );
        s
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plain data")
    }

    pub fn html(&self) -> String {
        let r = &self.result;
        let w = &self.workload;
        let mut h = String::new();
        let _ = write!(
            h,
            r#"<!doctype html><html><head><meta charset="utf-8"><title>rill-bench: {name}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1000px}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}
th{{background:#f2f2f2}}td:first-child,th:first-child{{text-align:left}}
.muted{{color:#666}} h2{{margin-top:1.5em}}
</style></head><body>
<h1>rill-bench: {name}</h1>
<p class="muted">{desc}<br>consumers: {consumers}<br>target {target} · started {started}{calibration}</p>
"#,
            name = esc(&w.name),
            desc = esc(&w.description),
            consumers = esc(&w.consumers_description()),
            target = esc(&self.target),
            started = esc(&self.started_at),
            calibration = self
                .calibrated_max_msgs_per_s
                .map(|m| format!(
                    "<br>rate {:.0} msgs/s, set from a calibration run at max rate ({m:.0} msgs/s)",
                    w.rate.per_second().unwrap_or(0.0)
                ))
                .unwrap_or_default(),
        );
        let pct = |f: Option<f64>| f.map_or("n/a".to_string(), |f| format!("{:.1} %", f * 100.0));
        let _ = write!(
            h,
            r#"<h2>Throughput (measured phase)</h2>
<table><tr><th></th><th>msgs/s</th><th>MB/s</th><th>hardware limit</th><th>fraction</th></tr>
<tr><td>produce</td><td>{:.0}</td><td>{:.1}</td><td>disk O_DIRECT write {}</td><td>{}</td></tr>
<tr><td></td><td></td><td></td><td>O_DIRECT write + fdatasync {}</td><td>{}</td></tr>
<tr><td>consume (all subscriptions)</td><td>{:.0}</td><td>{:.1}</td><td>loopback TCP {}</td><td>{} (produce+consume)</td></tr>
</table>
<p class="muted">{} messages produced, {} consumed in the measured phase; errors: {}{}; undelivered at the end: {}</p>
<p>{}</p>
"#,
            r.produce.msgs_per_s,
            r.produce.mb_per_s,
            self.limits
                .disk_write_mb_s
                .map_or("not measured".into(), |d| format!("{d:.1} MB/s")),
            pct(self.produce_fraction_of_disk),
            self.limits
                .disk_write_synced_mb_s
                .map_or("not measured".into(), |d| format!("{d:.1} MB/s")),
            pct(self.produce_fraction_of_synced_write),
            r.consume.msgs_per_s,
            r.consume.mb_per_s,
            self.limits
                .loopback_tcp_mb_s
                .map_or("not measured".into(), |d| format!("{d:.0} MB/s")),
            pct(self.traffic_fraction_of_loopback),
            r.produce.messages,
            r.consume.messages,
            r.errors,
            r.first_error
                .as_ref()
                .map(|e| format!(" (first: {})", esc(e)))
                .unwrap_or_default(),
            r.undelivered,
            self.load_lines()
                .iter()
                .map(|l| esc(l))
                .collect::<Vec<_>>()
                .join("<br>"),
        );
        let _ = write!(
            h,
            "<h2>Latency (ms)</h2><table><tr><th></th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>p99.99</th><th>max</th></tr>"
        );
        for (name, l) in [
            ("publish (ack)", &r.publish_latency),
            ("end-to-end", &r.end_to_end_latency),
        ] {
            let _ = write!(
                h,
                "<tr><td>{name}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>",
                l.count, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.p9999_ms, l.max_ms
            );
        }
        h.push_str("</table>");
        h.push_str("<h2>Throughput over time</h2>");
        h.push_str(&throughput_chart(r));
        h.push_str("<h2>Latency by percentile</h2>");
        h.push_str(&percentile_chart(&r.publish_latency, &r.end_to_end_latency));
        let _ = writeln!(
            h,
            "<h2>Workload</h2><pre>{}</pre></body></html>",
            esc(&toml::to_string(w).unwrap_or_default())
        );
        h
    }
}

fn humantime_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{secs} s since the epoch (UTC)")
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const W: f64 = 900.0;
const H: f64 = 320.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 45.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 50.0;

/// A "nice" axis maximum at or above `v`.
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * mag >= v {
            return m * mag;
        }
    }
    10.0 * mag
}

fn frame(svg: &mut String, y_max: f64, y_label: &str, x_ticks: &[(f64, String)], x_label: &str) {
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let _ = write!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#999"/>"##
    );
    for i in 0..=4 {
        let v = y_max * i as f64 / 4.0;
        let y = TOP + plot_h - plot_h * i as f64 / 4.0;
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="12" text-anchor="end">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            trim(v)
        );
    }
    for (x, label) in x_ticks {
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#999"/><text x="{x:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 5.0,
            TOP + plot_h + 18.0,
            esc(label)
        );
    }
    let _ = write!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" font-size="13" text-anchor="middle">{}</text><text x="16" y="{:.1}" font-size="13" text-anchor="middle" transform="rotate(-90 16 {:.1})">{}</text>"##,
        LEFT + plot_w / 2.0,
        H - 8.0,
        esc(x_label),
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        esc(y_label)
    );
}

fn trim(v: f64) -> String {
    if v >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn polyline(points: &[(f64, f64)], color: &str, dash: bool) -> String {
    let pts: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect();
    format!(
        r#"<polyline fill="none" stroke="{color}" stroke-width="2"{} points="{}"/>"#,
        if dash {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        },
        pts.join(" ")
    )
}

fn legend(items: &[(&str, &str, bool)]) -> String {
    let mut s = String::new();
    for (i, (label, color, dash)) in items.iter().enumerate() {
        let x = LEFT + 10.0 + i as f64 * 200.0;
        let _ = write!(
            s,
            r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="2"{}/><text x="{}" y="{}" font-size="12">{}</text>"#,
            x + 24.0,
            if *dash {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            },
            x + 30.0,
            TOP + 16.0,
            esc(label),
            y = TOP + 12.0,
        );
    }
    s
}

/// Produce and consume MB/s per second of the run; the warm-up shaded.
pub fn throughput_chart(r: &RunResult) -> String {
    let tl = &r.timeline;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}">"#
    );
    let n = tl.len().max(1) as f64;
    let y_max = nice_max(
        tl.iter()
            .map(|s| s.produce_mb.max(s.consume_mb))
            .fold(0.0, f64::max),
    );
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let x = |t: f64| LEFT + plot_w * (t / n);
    let y = |v: f64| TOP + plot_h - plot_h * (v / y_max);
    let step = ((n / 10.0).ceil() as usize).max(1);
    let ticks: Vec<(f64, String)> = (0..=tl.len())
        .step_by(step)
        .map(|t| (x(t as f64), format!("{t}s")))
        .collect();
    frame(&mut svg, y_max, "MB/s", &ticks, "time since start (s)");
    if let Some(first_measured) = tl.iter().position(|s| s.measuring) {
        let _ = write!(
            svg,
            r##"<rect x="{LEFT}" y="{TOP}" width="{:.1}" height="{plot_h}" fill="#000" fill-opacity="0.05"/><text x="{:.1}" y="{:.1}" font-size="11" fill="#666">warm-up</text>"##,
            x(first_measured as f64) - LEFT,
            LEFT + 4.0,
            TOP + plot_h - 6.0
        );
    }
    let produce: Vec<(f64, f64)> = tl
        .iter()
        .map(|s| (x(s.t as f64), y(s.produce_mb)))
        .collect();
    let consume: Vec<(f64, f64)> = tl
        .iter()
        .map(|s| (x(s.t as f64), y(s.consume_mb)))
        .collect();
    svg.push_str(&polyline(&produce, "#1f77b4", false));
    svg.push_str(&polyline(&consume, "#d62728", true));
    svg.push_str(&legend(&[
        ("produce MB/s", "#1f77b4", false),
        ("consume MB/s (all subscriptions)", "#d62728", true),
    ]));
    svg.push_str("</svg>");
    svg
}

/// Latency against percentile, the x axis in "nines" (50, 90, 99, 99.9 …).
pub fn percentile_chart(publish: &LatencySummary, e2e: &LatencySummary) -> String {
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}">"#
    );
    let nines = |p: f64| -(1.0 - (p / 100.0).min(0.999_999)).log10();
    let x_max = nines(99.999);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let curve = |l: &LatencySummary| -> Vec<(f64, f64)> {
        l.curve
            .iter()
            .filter(|(p, _)| *p <= 99.999)
            .copied()
            .collect()
    };
    let (pc, ec) = (curve(publish), curve(e2e));
    let y_max = nice_max(pc.iter().chain(&ec).map(|(_, v)| *v).fold(0.0, f64::max));
    let x = |p: f64| LEFT + plot_w * (nines(p) / x_max);
    let y = |v: f64| TOP + plot_h - plot_h * (v / y_max);
    let ticks: Vec<(f64, String)> = [0.0, 90.0, 99.0, 99.9, 99.99, 99.999]
        .iter()
        .map(|&p| (x(p), format!("p{p}")))
        .collect();
    frame(&mut svg, y_max, "latency (ms)", &ticks, "percentile");
    svg.push_str(&polyline(
        &pc.iter().map(|&(p, v)| (x(p), y(v))).collect::<Vec<_>>(),
        "#1f77b4",
        false,
    ));
    svg.push_str(&polyline(
        &ec.iter().map(|&(p, v)| (x(p), y(v))).collect::<Vec<_>>(),
        "#d62728",
        true,
    ));
    svg.push_str(&legend(&[
        ("publish (ack)", "#1f77b4", false),
        ("end-to-end", "#d62728", true),
    ]));
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(nice_max(173.0), 200.0);
        assert_eq!(nice_max(0.7), 1.0);
        assert_eq!(nice_max(2.2), 2.5);
        assert_eq!(esc("<a&b>"), "&lt;a&amp;b&gt;");
    }
}
