//! The stdout table (path × metric, with ratios) and the JSON document.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::{PathResult, Plan};

/// Reads one figure from a path's result.
type Getter = Box<dyn Fn(&PathResult) -> Option<f64>>;

/// One row of the table: a label, whether lower is better, and how to read
/// the value from a path's result.
struct Metric {
    label: String,
    lower_is_better: bool,
    get: Getter,
}

fn metrics(plan: &Plan) -> Vec<Metric> {
    let mut m: Vec<Metric> = Vec::new();
    let mut add = |label: String, lower: bool, get: Getter| {
        m.push(Metric {
            label,
            lower_is_better: lower,
            get,
        })
    };
    for &s in &plan.streams {
        let find = move |r: &PathResult| r.bulk.iter().find(|b| b.bulk.streams == s).cloned();
        add(
            format!("bulk {s} stream(s), Gbit/s"),
            false,
            Box::new(move |r| find(r).map(|b| b.bulk.gbit_per_s)),
        );
        add(
            format!("CPU-s/GB, {s} stream(s), tunnel"),
            true,
            Box::new(move |r| {
                find(r)
                    .filter(|b| !b.processes.is_empty())
                    .map(|b| b.cpu_s_per_gb)
            }),
        );
    }
    add(
        "first byte p50, ms".into(),
        true,
        Box::new(|r| r.first_byte.as_ref()?.p50_ms),
    );
    add(
        "first byte p99, ms".into(),
        true,
        Box::new(|r| r.first_byte.as_ref()?.p99_ms),
    );
    let n = plan.connections;
    add(
        format!("{n} conns: total, s"),
        true,
        Box::new(|r| r.concurrency.as_ref().map(|c| c.total_s)),
    );
    add(
        format!("{n} conns: RTT p50, ms"),
        true,
        Box::new(|r| r.concurrency.as_ref()?.rtt_p50_ms),
    );
    add(
        format!("{n} conns: RTT p99, ms"),
        true,
        Box::new(|r| r.concurrency.as_ref()?.rtt_p99_ms),
    );
    add(
        format!("{n} conns: connect p99, ms"),
        true,
        Box::new(|r| r.concurrency.as_ref()?.connect_p99_ms),
    );
    add(
        format!("{n} conns: completed"),
        false,
        Box::new(|r| r.concurrency.as_ref().map(|c| c.completed as f64)),
    );
    add(
        format!("{n} conns: failed"),
        true,
        Box::new(|r| r.concurrency.as_ref().map(|c| c.failed as f64)),
    );
    add(
        "RSS idle, MiB (all procs)".into(),
        true,
        Box::new(|r| sum_mib(&r.rss_idle_kib)),
    );
    add(
        format!("RSS {n} conns open, MiB"),
        true,
        Box::new(|r| sum_mib(&r.rss_loaded_kib)),
    );
    m
}

fn sum_mib(m: &std::collections::BTreeMap<String, u64>) -> Option<f64> {
    (!m.is_empty()).then(|| m.values().sum::<u64>() as f64 / 1024.0)
}

fn fmt_val(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(x) if x.fract() == 0.0 && x.abs() < 1e9 => format!("{x:.0}"),
        Some(x) if x.abs() >= 100.0 => format!("{x:.1}"),
        Some(x) if x.abs() >= 1.0 => format!("{x:.2}"),
        Some(x) => format!("{x:.3}"),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

/// The ratio columns: (header, numerator path, denominator path). The
/// table shows those whose two paths were measured.
const RATIOS: [(&str, &str, &str); 7] = [
    ("cpam/openssh", "cpam", "openssh"),
    ("cpam/openssh-tty", "cpam", "openssh-tty"),
    ("cpam/direct", "cpam", "direct"),
    ("openssh/direct", "openssh", "direct"),
    ("cpam-b/cpam", "cpam-b", "cpam"),
    ("ipc-driver/forward", "ipconnect-driver", "cpam"),
    ("ipc-legacy/forward", "ipconnect-legacy", "cpam"),
];

/// Renders the table, per-process CPU and notes.
pub fn table(results: &[PathResult], plan: &Plan) -> String {
    let ms = metrics(plan);
    let by_name = |n: &str| results.iter().find(|r| r.name == n);
    let ratios: Vec<_> = RATIOS
        .iter()
        .filter(|(_, a, b)| by_name(a).is_some() && by_name(b).is_some())
        .collect();
    let mut header: Vec<String> = vec!["metric".into()];
    header.extend(results.iter().map(|r| r.name.clone()));
    header.extend(ratios.iter().map(|r| r.0.to_owned()));
    let mut rows: Vec<Vec<String>> = Vec::new();
    for m in &ms {
        let mut row = vec![format!(
            "{}{}",
            m.label,
            if m.lower_is_better { " ↓" } else { " ↑" }
        )];
        row.extend(results.iter().map(|r| fmt_val((m.get)(r))));
        for (_, num, den) in ratios.iter().copied() {
            let v = ratio(
                by_name(num).and_then(|r| (m.get)(r)),
                by_name(den).and_then(|r| (m.get)(r)),
            );
            row.push(v.map_or("-".into(), |x| format!("{x:.2}×")));
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let line = |cells: &[String], out: &mut String| {
        for (i, c) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(c.chars().count());
            if i == 0 {
                let _ = write!(out, "{c}{}", " ".repeat(pad));
            } else {
                let _ = write!(out, "  {}{c}", " ".repeat(pad));
            }
        }
        out.push('\n');
    };
    line(&header, &mut out);
    let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
    out.push_str(&"-".repeat(total));
    out.push('\n');
    for r in &rows {
        line(r, &mut out);
    }
    out.push_str("↓ lower is better, ↑ higher is better; ratios are within this run\n");

    out.push_str("\nCPU during the bulk transfer (utime+stime from /proc/PID/stat):\n");
    for r in results {
        for b in &r.bulk {
            if b.processes.is_empty() {
                let _ = writeln!(
                    out,
                    "  {} {} stream(s): no tunnel processes; bench (client+sink) {:.2} s, other load {:.2} cores",
                    r.name, b.bulk.streams, b.bench_cpu_s, b.foreign_cores
                );
                continue;
            }
            let _ = writeln!(
                out,
                "  {} {} stream(s): {:.2} CPU-s for {:.2} GB = {:.2} CPU-s/GB (bench client+sink: {:.2} s, idle before {:.0} %, other load {:.2} cores)",
                r.name,
                b.bulk.streams,
                b.cpu_s,
                b.bulk.bytes as f64 / 1e9,
                b.cpu_s_per_gb,
                b.bench_cpu_s,
                b.idle_before * 100.0,
                b.foreign_cores
            );
            for p in &b.processes {
                let _ = writeln!(
                    out,
                    "      {:<40} {:>6.2} s  {:>6.2} s/GB",
                    p.name, p.cpu_s, p.cpu_s_per_gb
                );
            }
        }
    }
    for r in results {
        for n in &r.notes {
            let _ = writeln!(out, "note ({}): {n}", r.name);
        }
        for e in &r.errors {
            let _ = writeln!(out, "ERROR ({}): {e}", r.name);
        }
    }
    out
}

/// The JSON document: options, per-path results and the ratios of the table.
pub fn json(results: &[PathResult], plan: &Plan) -> Value {
    let ms = metrics(plan);
    let by_name = |n: &str| results.iter().find(|r| r.name == n);
    let mut ratios = serde_json::Map::new();
    for (label, num, den) in RATIOS {
        let mut m = serde_json::Map::new();
        for metric in &ms {
            if let Some(v) = ratio(
                by_name(num).and_then(|r| (metric.get)(r)),
                by_name(den).and_then(|r| (metric.get)(r)),
            ) {
                m.insert(metric.label.clone(), json!(v));
            }
        }
        ratios.insert(label.to_owned(), Value::Object(m));
    }
    json!({
        "machine": {
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "clk_tck": plan.clk_tck,
        },
        "options": {
            "bytes": plan.bytes,
            "streams": plan.streams,
            "latency_samples": plan.latency_samples,
            "connections": plan.connections,
            "round_trips": plan.round_trips,
            "size": plan.size,
        },
        "paths": results,
        "ratios": ratios,
    })
}
