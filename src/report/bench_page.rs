//! The pages of `advmnist bench`: the files of `--report DIR`, which are `bench.json` (the
//! [`Profile`] itself), `bench.md`, and the two figures of `report::bench_plots`
//! (`roofline.svg`, `scaling.svg`); and the side-by-side table of `--compare A B`
//! ([`comparison_markdown`]). The numbers are measured in `bench::profile` and matched in
//! `bench::compare`; this module only lays them out.

use crate::bench::compare::compare;
use crate::bench::measure::Measurement;
use crate::bench::profile::Profile;
use crate::bench::stats::SPREAD_WARNING;
use crate::io_safety::{write_atomic, WriteError};
use crate::report::bench_plots::{number, roofline_svg, scaling_series, scaling_svg};
use crate::report::table::{Align, Table};
use std::fmt::Write;
use std::path::Path;

/// Writes `bench.json`, `bench.md`, `roofline.svg` and `scaling.svg` into `dir` (created if
/// needed), each atomically.
pub fn write_bench_report(dir: &Path, r: &Profile) -> Result<(), WriteError> {
    std::fs::create_dir_all(dir).map_err(|source| WriteError {
        path: dir.into(),
        source,
    })?;
    let json = serde_json::to_string_pretty(r).expect("plain data");
    write_atomic(&dir.join("bench.json"), json.as_bytes())?;
    write_atomic(&dir.join("bench.md"), bench_markdown(r).as_bytes())?;
    write_atomic(&dir.join("roofline.svg"), roofline_svg(r).as_bytes())?;
    write_atomic(&dir.join("scaling.svg"), scaling_svg(r).as_bytes())
}

fn percent(share: Option<f64>) -> String {
    share.map_or(String::new(), |s| format!("{:.0}%", 100.0 * s))
}

/// "median (min-max)", flagged when the samples spread more than [`SPREAD_WARNING`].
fn rate_cell(f: &Measurement) -> String {
    let flag = if f.spread > SPREAD_WARNING {
        " ⚠"
    } else {
        ""
    };
    format!(
        "{} ({}-{}){flag}",
        number(f.rate.median),
        number(f.rate.min),
        number(f.rate.max)
    )
}

/// Year, month, day (UTC) of a Unix time (Howard Hinnant's `civil_from_days`).
fn utc_date(unix: u64) -> (i64, u32, u32) {
    let z = (unix / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// `bench.md`: the machine, its limits, where the time goes, the workloads and their scaling.
pub fn bench_markdown(r: &Profile) -> String {
    let m = &r.machine;
    let s = &r.settings;
    let n = s.max_threads;
    let mut md = String::new();
    let (y, mo, d) = utc_date(s.unix_time);
    let secs = s.unix_time % 86_400;
    let _ = writeln!(md, "# advmnist bench report\n");
    let _ = writeln!(
        md,
        "Measured {y}-{mo:02}-{d:02} {:02}:{:02} UTC: {} samples per figure after a warm-up, \
         {} s per figure, batch {}, 1 to {n} threads. Each figure is the median with the min and \
         max of its samples; ⚠ marks a spread ((max - min) / median) above {:.0}%.\n",
        secs / 3600,
        secs / 60 % 60,
        s.samples_per_figure,
        s.seconds_per_figure,
        s.batch,
        100.0 * SPREAD_WARNING
    );
    if !r.warnings.is_empty() {
        let _ = writeln!(
            md,
            "## Warnings\n\nSamples that spread more than {:.0}% ((max - min) / median) mean the \
             machine was busy or changed its clock while measuring: trust those figures less, \
             and compare only figures measured side by side.\n",
            100.0 * SPREAD_WARNING
        );
        for w in &r.warnings {
            let _ = writeln!(md, "- {w}");
        }
        md.push('\n');
    }
    md.push_str("## The machine\n\n");
    let mut machine = Table::left(["", ""]);
    let load = m
        .load_average
        .map_or("unknown".to_string(), |l| format!("{l:.2}"));
    for (k, v) in [
        ("CPU", m.cpu_model.clone()),
        ("logical CPUs", m.logical_cpus.to_string()),
        ("threads used", format!("1 to {}", m.threads)),
        ("caches (cpu0)", m.describe_caches()),
        ("load average at the start", load),
        (
            "advmnist",
            format!("{}, commit {}", m.advmnist_version, m.git_commit),
        ),
        ("rustc", m.rustc.clone()),
        ("OS, architecture", format!("{}, {}", m.os, m.arch)),
    ] {
        machine.row([k.to_string(), v]);
    }
    md.push_str(&machine.markdown());
    let mut kernels = Table::left(["kernel", "path taken on this CPU", "chosen in"]);
    for p in &m.kernel_paths {
        kernels.row([&p.kernel, &p.path, &p.source]);
    }
    md.push('\n');
    md.push_str(&kernels.markdown());
    let _ = writeln!(
        md,
        "\n## Its limits, measured on the spot\n\nsgemm (`matrixmultiply`): on t threads, t \
         single-threaded products side by side, as advmnist runs them. Peak: {} GFLOP/s \
         (`{}`); the FMA-throughput peak, independent fused multiply-adds at the widest level \
         the kernels take: {} GFLOP/s (`{}`); bandwidth from memory {} GB/s (`{}`), in cache \
         {} GB/s (`{}`). \"Share of peak\" is of sgemm's peak, \"of FMA peak\" of the FMA \
         throughput, each on as many threads.\n",
        number(r.ceilings.sgemm_peak_gflop_per_s),
        r.ceilings.sgemm_peak_figure,
        number(r.ceilings.fma_peak_gflop_per_s),
        r.ceilings.fma_peak_figure,
        number(r.ceilings.bandwidth_gb_per_s),
        r.ceilings.bandwidth_figure,
        number(r.ceilings.cache_bandwidth_gb_per_s),
        r.ceilings.cache_bandwidth_figure
    );
    let mut limits = Table::new([
        ("figure", Align::Left),
        ("what", Align::Left),
        ("threads", Align::Right),
        ("rate", Align::Right),
        ("unit", Align::Left),
        ("share of peak", Align::Right),
        ("of FMA peak", Align::Right),
    ]);
    for f in r
        .figures
        .iter()
        .filter(|f| ["fma", "sgemm", "bandwidth"].contains(&f.group.as_str()))
    {
        limits.row([
            format!("`{}`", f.id),
            f.what.clone(),
            f.threads.to_string(),
            rate_cell(f),
            f.unit.clone(),
            percent(f.share_of_peak),
            percent(f.share_of_fma_peak),
        ]);
    }
    md.push_str(&limits.markdown());
    let _ = write!(
        md,
        "\n## Where the time goes ({n} threads, batch {})\n\nEach pass against its ceiling: \
         sgemm at the shape of its own products, or for passes that only move data the triad's \
         bandwidth, in cache when the pass's bytes fit in the last-level cache.\n\n",
        s.batch
    );
    let mut passes = Table::new([
        ("pass", Align::Left),
        ("ms per call", Align::Right),
        ("rate", Align::Right),
        ("unit", Align::Left),
        ("GFLOP/s", Align::Right),
        ("ceiling", Align::Left),
        ("share of ceiling", Align::Right),
        ("share of peak", Align::Right),
        ("of FMA peak", Align::Right),
    ]);
    for f in r
        .figures
        .iter()
        .filter(|f| f.group == "layer" || f.group == "update")
    {
        passes.row([
            f.what.clone(),
            format!(
                "{:.3} ({:.3}-{:.3})",
                1e3 * f.seconds.median,
                1e3 * f.seconds.min,
                1e3 * f.seconds.max
            ),
            rate_cell(f),
            f.unit.clone(),
            f.gflop_per_s.map_or(String::new(), number),
            f.ceiling
                .as_deref()
                .map_or(String::new(), |c| format!("`{c}`")),
            percent(f.share_of_ceiling),
            percent(f.share_of_peak),
            percent(f.share_of_fma_peak),
        ]);
    }
    md.push_str(&passes.markdown());
    md.push_str("\n## Whole-network workloads\n\n");
    let mut workloads = Table::new([
        ("workload", Align::Left),
        ("threads", Align::Right),
        ("img/s", Align::Right),
        ("GFLOP/s", Align::Right),
        ("share of peak", Align::Right),
        ("of FMA peak", Align::Right),
        ("share of sgemm at its own shapes", Align::Right),
    ]);
    for f in r.figures.iter().filter(|f| f.group == "workload") {
        workloads.row([
            f.what.clone(),
            f.threads.to_string(),
            rate_cell(f),
            f.gflop_per_s.map_or(String::new(), number),
            percent(f.share_of_peak),
            percent(f.share_of_fma_peak),
            percent(f.share_of_ceiling),
        ]);
    }
    md.push_str(&workloads.markdown());
    md.push_str("\n## Thread scaling\n\n");
    let mut scaling = Table::new(
        std::iter::once(("figure".to_string(), Align::Left))
            .chain((1..=n).map(|t| {
                let header = format!("{t} thread{}", if t > 1 { "s" } else { "" });
                (header, Align::Right)
            }))
            .chain(std::iter::once((format!("{n} / 1"), Align::Right))),
    );
    for (name, series) in scaling_series(r) {
        let cells: Vec<String> = (1..=n)
            .map(|t| {
                series
                    .iter()
                    .find(|(th, _)| *th == t)
                    .map_or(String::new(), |(_, v)| number(*v))
            })
            .collect();
        let speedup = match (series.first(), series.iter().find(|(t, _)| *t == n)) {
            (Some((1, one)), Some((_, all))) => format!("{:.2}x", all / one),
            _ => String::new(),
        };
        scaling.row(
            std::iter::once(name)
                .chain(cells)
                .chain(std::iter::once(speedup)),
        );
    }
    md.push_str(&scaling.markdown());
    let _ = writeln!(
        md,
        "\nFigures: `roofline.svg` (every kernel's arithmetic intensity against its GFLOP/s on \
         {n} threads, under the measured sgemm peak and bandwidth), `scaling.svg` (speed-up over \
         1 thread). Keys of `bench.json`: docs/performance.md."
    );
    md
}

/// `advmnist bench --compare A B`: the side-by-side table as Markdown, headed by what each
/// profile was measured on (`bench::compare` matches the figures).
pub fn comparison_markdown(a_name: &str, a: &Profile, b_name: &str, b: &Profile) -> String {
    let (rows, only_a, only_b) = compare(a, b);
    let mut md = String::new();
    md.push_str(&format!(
        "# advmnist bench: {b_name} (B) against {a_name} (A)\n\n"
    ));
    let mut machines = Table::left(["", "A", "B"]);
    for (what, fa, fb) in [
        ("file", a_name.to_string(), b_name.to_string()),
        (
            "CPU",
            a.machine.cpu_model.clone(),
            b.machine.cpu_model.clone(),
        ),
        (
            "threads (max)",
            a.settings.max_threads.to_string(),
            b.settings.max_threads.to_string(),
        ),
        (
            "caches",
            a.machine.describe_caches(),
            b.machine.describe_caches(),
        ),
        (
            "advmnist",
            format!("{} {}", a.machine.advmnist_version, a.machine.git_commit),
            format!("{} {}", b.machine.advmnist_version, b.machine.git_commit),
        ),
        ("rustc", a.machine.rustc.clone(), b.machine.rustc.clone()),
        (
            "warnings",
            a.warnings.len().to_string(),
            b.warnings.len().to_string(),
        ),
    ] {
        machines.row([what.to_string(), fa, fb]);
    }
    md.push_str(&machines.markdown());
    md.push_str("\nMedians; B/A above 1 means B was faster.\n\n");
    let mut figures = Table::new([
        ("figure", Align::Left),
        ("unit", Align::Left),
        ("A", Align::Right),
        ("B", Align::Right),
        ("B/A", Align::Right),
    ]);
    for r in &rows {
        figures.row([
            r.id.clone(),
            r.unit.clone(),
            number(r.a),
            number(r.b),
            format!("{:.2}", r.ratio),
        ]);
    }
    md.push_str(&figures.markdown());
    if only_a + only_b > 0 {
        md.push_str(&format!(
            "\nNot compared: {only_a} figures only in A, {only_b} only in B (other thread counts or \
             shapes).\n"
        ));
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The comparison's rows: B twice as fast on `train` (2.00), half as fast on `infer` (0.50).
    #[test]
    fn comparison_rows_show_both_rates_and_the_ratio() {
        use crate::bench::compare::tests::fixtures::two_profiles;
        let (a, b) = two_profiles();
        let md = comparison_markdown("a.json", &a, "b.json", &b);
        assert!(
            md.contains("| workload/train/t1 | img/s | 1000 | 2000 | 2.00 |"),
            "{md}"
        );
        assert!(
            md.contains("| workload/infer/t1 | img/s | 4000 | 2000 | 0.50 |"),
            "{md}"
        );
    }

    #[test]
    fn utc_dates_of_known_days() {
        assert_eq!(utc_date(0), (1970, 1, 1));
        assert_eq!(utc_date(951_782_400), (2000, 2, 29)); // a leap day
        assert_eq!(utc_date(1_796_083_200), (2026, 12, 1));
    }
}
