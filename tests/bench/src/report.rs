//! The stdout table (path × metric, with ratios) and the JSON document;
//! the File Transfer table.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::psm::human_bytes;
use super::sftp::{GOAL, SftpFigures};
use super::stalled::Stalled;
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
    if plan.latency_samples > 0 {
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
    }
    let n = plan.connections;
    if n > 0 {
        burst_metrics(n, &mut add);
    }
    add(
        "RSS idle, MiB (all procs)".into(),
        true,
        Box::new(|r| sum_mib(&r.rss_idle_kib)),
    );
    if n > 0 {
        add(
            format!("RSS {n} conns open, MiB"),
            true,
            Box::new(|r| sum_mib(&r.rss_loaded_kib)),
        );
    }
    if !plan.stalled.is_zero() {
        add(
            "stalled reader: other download, % of alone".into(),
            false,
            Box::new(|r| r.stalled.as_ref().map(|s| 100.0 * s.ratio)),
        );
        add(
            "stalled reader: server RSS growth, MiB".into(),
            true,
            Box::new(|r| {
                r.stalled
                    .as_ref()
                    .filter(|s| !s.server.is_empty())
                    .map(Stalled::server_rss_growth_mib)
            }),
        );
    }
    m
}

/// The rows of the connection burst.
fn burst_metrics(n: usize, add: &mut impl FnMut(String, bool, Getter)) {
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
        format!("{n} conns: CPU ms per conn"),
        true,
        Box::new(move |r| Some(r.burst_cpu_s? * 1e3 / n.max(1) as f64)),
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
const RATIOS: [(&str, &str, &str); 9] = [
    ("cpam/openssh", "cpam", "openssh"),
    ("cpam/openssh-tty", "cpam", "openssh-tty"),
    ("cpam/direct", "cpam", "direct"),
    ("openssh/direct", "openssh", "direct"),
    ("cpam-b/cpam", "cpam-b", "cpam"),
    ("ipc-driver/forward", "ipconnect-driver", "cpam"),
    ("ipc-legacy/forward", "ipconnect-legacy", "cpam"),
    ("relay/one-node", "cpam-relay", "cpam-pg"),
    ("3-nodes/one-node", "cpam-3nodes", "cpam-pg"),
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

    if results.iter().any(|r| !r.bulk.is_empty()) {
        out.push_str("\nCPU during the bulk transfer (utime+stime from /proc/PID/stat):\n");
    }
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
    if let Some(n) = results
        .iter()
        .find_map(|r| r.concurrency.as_ref().map(|c| c.connections))
        .filter(|_| results.iter().any(|r| !r.burst_processes.is_empty()))
    {
        let _ = writeln!(
            out,
            "\nCPU during the {n}-connection burst, ms per connection (opening and one round trip):"
        );
        for r in results.iter().filter(|r| !r.burst_processes.is_empty()) {
            let per = |s: f64| s * 1e3 / n.max(1) as f64;
            let _ = writeln!(
                out,
                "  {:<12} {:>6.2}",
                r.name,
                per(r.burst_cpu_s.unwrap_or(0.0))
            );
            for (name, cpu_s) in &r.burst_processes {
                let _ = writeln!(out, "      {name:<40} {:>6.2}", per(*cpu_s));
            }
        }
    }
    out.push_str(&stalled_table(results, plan));
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

/// The stalled-reader rows, one per path that measured it.
fn stalled_table(results: &[PathResult], plan: &Plan) -> String {
    let rows: Vec<(&str, &Stalled)> = results
        .iter()
        .filter_map(|r| Some((r.name.as_str(), r.stalled.as_ref()?)))
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "\nStalled reader: two downloads from the source through the path, one reader stopped for {} s \
         (server: cpam-server; for OpenSSH the sshd listener and its sessions)\n",
        plan.stalled.as_secs()
    );
    let _ = writeln!(
        out,
        "  {:<12} {:>12} {:>13} {:>13} {:>22} {:>9} {:>16} {:>11}",
        "path",
        "alone, MiB/s",
        "during, MiB/s",
        "during/alone",
        "server RSS, MiB (+)",
        "tunnel up",
        "stopped resumed",
        "other load"
    );
    for (name, s) in rows {
        let rss = if s.server.is_empty() {
            "-".to_owned()
        } else {
            format!(
                "{:.1} (+{:.1})",
                s.server_rss_before_kib as f64 / 1024.0,
                s.server_rss_growth_mib()
            )
        };
        let resumed = match s.resume_ms {
            Some(ms) if s.resumed => format!("yes, {ms:.0} ms"),
            _ => "no".to_owned(),
        };
        let _ = writeln!(
            out,
            "  {:<12} {:>12.1} {:>13.1} {:>12.2}× {:>22} {:>9} {:>16} {:>11.2}",
            name,
            s.alone_mib_s,
            s.during_mib_s,
            s.ratio,
            rss,
            if s.tunnel_up { "yes" } else { "NO" },
            resumed,
            s.foreign_cores
        );
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
            "stalled_seconds": plan.stalled.as_secs(),
        },
        "paths": results,
        "ratios": ratios,
    })
}

/// The File Transfer table: one row per path and direction.
pub fn sftp_table(f: &SftpFigures) -> String {
    let mut out = format!(
        "\nFile Transfer: stock sftp direct, through the raw tunnel and through the auditing SSH proxy; cpam-connect put/get\n\
         ({} random file, sha256 {}; CPU-s/GB per process, GB = 10^9 bytes)\n\n",
        human_bytes(f.bytes),
        if f.sha256.is_empty() { "-" } else { &f.sha256 }
    );
    let header = [
        "path",
        "dir",
        "MB/s ↑",
        "/raw ↑",
        "transfer, s",
        "wall, s",
        "server ↓",
        "gk ↓",
        "forward ↓",
        "cpam ↓",
        "client ↓",
        "sshd ↓",
        "all ↓",
        "other load (tries)",
    ];
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    let cell = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), |v| format!("{v:.2}"));
    for r in &f.rows {
        let raw = f.row("raw", r.direction).and_then(|x| x.mb_per_s);
        let c = &r.cpu_s_per_gb;
        lines.push(vec![
            r.path.to_owned(),
            r.direction.to_owned(),
            r.mb_per_s
                .map_or_else(|| "–".to_owned(), |v| format!("{v:.1}")),
            ratio(r.mb_per_s, raw).map_or_else(|| "–".to_owned(), |v| format!("{v:.2}×")),
            cell(r.transfer_s),
            cell(r.wall_s),
            cell(c.server),
            cell(c.gatekeeper),
            cell(c.forward),
            cell(c.cpam()),
            cell(c.client),
            cell(c.sshd),
            cell(c.all()),
            r.other_load_cores
                .map_or_else(|| "–".to_owned(), |v| format!("{v:.2} ({})", r.tries)),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for (n, l) in lines.iter().enumerate() {
        let cells: Vec<String> = l
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pad = " ".repeat(widths[i] - c.chars().count());
                if i < 2 {
                    format!("{c}{pad}")
                } else {
                    format!("{pad}{c}")
                }
            })
            .collect();
        out += &format!("| {} |\n", cells.join(" | "));
        if n == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out += &format!("|-{}-|\n", rule.join("-|-"));
        }
    }
    out += "MB/s over the transfer: from the client opening the file to its exit; wall: logging in included\n\
            client: sftp and its ssh, or cpam-connect (logging in included); \
            other load: cores used meanwhile outside the bench and the path \
            (above 0.10 the row is tried again in the next round, up to 3 rounds, and the least disturbed try kept)\n";
    if let Some(h) = f.hash_cpu_s_per_gb {
        out += &format!(
            "SHA-256 in-process (sha2, one core): {h:.2} CPU-s/GB ({:.0} MB/s)\n",
            1e3 / h
        );
    }
    if !f.session_s.is_empty() {
        let s: Vec<String> = f
            .session_s
            .iter()
            .map(|(p, s)| format!("{p} {s:.2}"))
            .collect();
        out += &format!(
            "sftp session moving nothing (log in, pwd, quit), s: {}\n",
            s.join(", ")
        );
    }
    for s in f.summary() {
        let x = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), |v| format!("{v:.2}×"));
        out += &format!(
            "{}: proxy/raw {} (goal ≥ {GOAL}×: {}), cpam-connect/raw {}, direct/raw {}; \
             CPU-s/GB of all processes proxy/raw {}; auditing cost (proxy − raw server) {} CPU-s/GB, \
             SHA-256 {} of the proxy's server CPU\n",
            s.direction,
            // Three digits: the verdict must not look like 0.90× NOT met.
            s.proxy_over_raw
                .map_or_else(|| "–".to_owned(), |v| format!("{v:.3}×")),
            match s.goal_met {
                Some(true) => "met",
                Some(false) => "NOT met",
                None => "–",
            },
            x(s.connect_over_raw),
            x(s.direct_over_raw),
            x(s.proxy_over_raw_cpu_all),
            cell(s.audit_cost_server_cpu_s_per_gb),
            s.hash_share_of_proxy_server
                .map_or_else(|| "–".to_owned(), |v| format!("{:.0} %", v * 100.0)),
        );
    }
    for r in &f.rows {
        if let Some(a) = &r.audit {
            out += &format!(
                "audit ({} {}): session.file {} {} {} bytes sha256 {} {}\n",
                r.path,
                r.direction,
                a["direction"].as_str().unwrap_or("?"),
                a["path"].as_str().unwrap_or("?"),
                a["size"],
                a["sha256"].as_str().unwrap_or("?"),
                a["result"].as_str().unwrap_or("?"),
            );
        }
    }
    for e in &f.errors {
        out += &format!("ERROR sftp: {e}\n");
    }
    for r in &f.rows {
        for e in &r.errors {
            out += &format!("ERROR sftp {} {}: {e}\n", r.path, r.direction);
        }
    }
    out
}
