//! `advmnist bench --report DIR`'s files: `bench.json` (the [`Report`] itself), `bench.md`, and
//! two figures, `roofline.svg` (arithmetic intensity against achieved GFLOP/s, one point per
//! kernel, under the measured ceilings) and `scaling.svg` (speed-up over 1 thread). The numbers
//! are measured in `bench::report`; this module only lays them out.

use crate::bench::report::{Figure, Report};
use crate::bench::stats::SPREAD_WARNING;
use crate::io_safety::{write_atomic, WriteError};
use crate::report::plot::register_fonts;
use plotters::prelude::*;
use std::fmt::Write;
use std::path::Path;

/// Writes `bench.json`, `bench.md`, `roofline.svg` and `scaling.svg` into `dir` (created if
/// needed), each atomically.
pub fn write_bench_report(dir: &Path, r: &Report) -> Result<(), WriteError> {
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

/// A rate with three significant digits or so.
fn number(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn percent(share: Option<f64>) -> String {
    share.map_or(String::new(), |s| format!("{:.0}%", 100.0 * s))
}

/// "median (min-max)", flagged when the samples spread more than [`SPREAD_WARNING`].
fn rate_cell(f: &Figure) -> String {
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

/// The id without its group and thread count: `sgemm/50x500x256/t2` -> `50x500x256`.
fn short_name(f: &Figure) -> String {
    let mut parts: Vec<&str> = f.id.split('/').collect();
    if parts.last().is_some_and(|p| p.starts_with('t')) && f.group != "layer" {
        parts.pop();
    }
    if parts.len() > 1 && matches!(f.group.as_str(), "sgemm" | "layer" | "workload") {
        parts.remove(0);
    }
    parts.join("/")
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
pub fn bench_markdown(r: &Report) -> String {
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
    let _ = writeln!(md, "## The machine\n\n| | |\n|---|---|");
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
        let _ = writeln!(md, "| {k} | {v} |");
    }
    let _ = writeln!(
        md,
        "\n| kernel | path taken on this CPU | chosen in |\n|---|---|---|"
    );
    for p in &m.kernel_paths {
        let _ = writeln!(md, "| {} | {} | {} |", p.kernel, p.path, p.source);
    }
    let _ = writeln!(
        md,
        "\n## Its limits, measured on the spot\n\nsgemm (`matrixmultiply`): on t threads, t \
         single-threaded products side by side, as advmnist runs them. Peak: {} GFLOP/s \
         (`{}`); bandwidth from memory {} GB/s (`{}`), in cache {} GB/s (`{}`).\n",
        number(r.ceilings.sgemm_peak_gflop_per_s),
        r.ceilings.sgemm_peak_figure,
        number(r.ceilings.bandwidth_gb_per_s),
        r.ceilings.bandwidth_figure,
        number(r.ceilings.cache_bandwidth_gb_per_s),
        r.ceilings.cache_bandwidth_figure
    );
    let _ = writeln!(
        md,
        "| figure | what | threads | rate | unit | share of peak |\n|---|---|---:|---:|---|---:|"
    );
    for f in r
        .figures
        .iter()
        .filter(|f| f.group == "sgemm" || f.group == "bandwidth")
    {
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {} | {} | {} |",
            f.id,
            f.what,
            f.threads,
            rate_cell(f),
            f.unit,
            percent(f.share_of_peak)
        );
    }
    let _ = writeln!(
        md,
        "\n## Where the time goes ({n} threads, batch {})\n\nEach pass against its ceiling: \
         sgemm at the shape of its own products, or for passes that only move data the triad's \
         bandwidth, in cache when the pass's bytes fit in the last-level cache.\n\n| pass | ms per call | rate | unit | GFLOP/s | ceiling | share of ceiling | \
         share of peak |\n|---|---:|---:|---|---:|---|---:|---:|",
        s.batch
    );
    for f in r
        .figures
        .iter()
        .filter(|f| f.group == "layer" || f.group == "update")
    {
        let _ = writeln!(
            md,
            "| {} | {:.3} ({:.3}-{:.3}) | {} | {} | {} | {} | {} | {} |",
            f.what,
            1e3 * f.seconds.median,
            1e3 * f.seconds.min,
            1e3 * f.seconds.max,
            rate_cell(f),
            f.unit,
            f.gflop_per_s.map_or(String::new(), number),
            f.ceiling
                .as_deref()
                .map_or(String::new(), |c| format!("`{c}`")),
            percent(f.share_of_ceiling),
            percent(f.share_of_peak)
        );
    }
    let _ = writeln!(
        md,
        "\n## Whole-network workloads\n\n| workload | threads | img/s | GFLOP/s | share of peak | \
         share of sgemm at its own shapes |\n|---|---:|---:|---:|---:|---:|"
    );
    for f in r.figures.iter().filter(|f| f.group == "workload") {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            f.what,
            f.threads,
            rate_cell(f),
            f.gflop_per_s.map_or(String::new(), number),
            percent(f.share_of_peak),
            percent(f.share_of_ceiling)
        );
    }
    let _ = writeln!(md, "\n## Thread scaling\n");
    let header: Vec<String> = (1..=n)
        .map(|t| format!("{t} thread{}", if t > 1 { "s" } else { "" }))
        .collect();
    let _ = writeln!(
        md,
        "| figure | {} | {n} / 1 |\n|---|{}---:|",
        header.join(" | "),
        "---:|".repeat(n)
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
        let _ = writeln!(md, "| {name} | {} | {speedup} |", cells.join(" | "));
    }
    let _ = writeln!(
        md,
        "\nFigures: `roofline.svg` (every kernel's arithmetic intensity against its GFLOP/s on \
         {n} threads, under the measured sgemm peak and bandwidth), `scaling.svg` (speed-up over \
         1 thread). Keys of `bench.json`: docs/performance.md."
    );
    md
}

/// Per workload (and the sgemm peak and the triad), `(threads, median rate)` sorted by threads.
fn scaling_series(r: &Report) -> Vec<(String, Vec<(usize, f64)>)> {
    let mut series: Vec<(String, Vec<(usize, f64)>)> = Vec::new();
    let square = r
        .ceilings
        .sgemm_peak_figure
        .rsplit_once('/')
        .map_or("", |(s, _)| s)
        .to_string();
    for f in &r.figures {
        let name = match f.group.as_str() {
            "workload" => format!("{} ({})", short_name(f), f.unit),
            "bandwidth" => format!("{} ({})", short_name(f), f.unit),
            "sgemm" if f.id.starts_with(&format!("{square}/")) => {
                format!("sgemm {} ({})", short_name(f), f.unit)
            }
            _ => continue,
        };
        match series.iter_mut().find(|(n, _)| *n == name) {
            Some((_, points)) => points.push((f.threads, f.rate.median)),
            None => series.push((name, vec![(f.threads, f.rate.median)])),
        }
    }
    for (_, points) in &mut series {
        points.sort_by_key(|(t, _)| *t);
    }
    series
}

/// Arithmetic intensity (FLOP per byte, counted as each tensor read or written once) against
/// GFLOP/s on N threads, log-log, one point per sgemm shape and per layer pass that multiplies,
/// under the roof `min(peak, bandwidth x intensity)` of the measured ceilings (from memory in
/// black, from the last-level cache in grey).
pub fn roofline_svg(r: &Report) -> String {
    let n = r.settings.max_threads;
    let points: Vec<(&Figure, f64, f64)> = r
        .figures
        .iter()
        .filter(|f| f.threads == n && matches!(f.group.as_str(), "sgemm" | "layer"))
        .filter_map(|f| Some((f, f.intensity_flop_per_byte?, f.gflop_per_s?)))
        .filter(|(_, i, g)| *i > 0.0 && *g > 0.0)
        .collect();
    let peak = r.ceilings.sgemm_peak_gflop_per_s.max(1e-3);
    let bandwidth = r.ceilings.bandwidth_gb_per_s.max(1e-3);
    let (mut x0, mut x1) = (1.0f64, 100.0f64);
    let (mut y0, y1) = (peak / 20.0, peak * 2.0);
    for (_, i, g) in &points {
        x0 = x0.min(i / 2.0);
        x1 = x1.max(i * 2.0);
        y0 = y0.min(g / 2.0);
    }
    register_fonts();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 620)).into_drawing_area();
        root.fill(&WHITE).expect("drawing to a string cannot fail");
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("Roofline, {n} threads: {}", r.machine.cpu_model),
                ("sans-serif", 20),
            )
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
            .expect("valid ranges");
        chart
            .configure_mesh()
            .x_desc("arithmetic intensity (FLOP per byte)")
            .y_desc("GFLOP/s")
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .draw()
            .expect("drawing to a string cannot fail");
        let ridge = (peak / bandwidth).clamp(x0, x1);
        let roof = vec![
            (x0, (bandwidth * x0).min(peak)),
            (ridge, (bandwidth * ridge).min(peak)),
            (x1, peak),
        ];
        chart
            .draw_series(LineSeries::new(roof, BLACK.stroke_width(2)))
            .expect("drawing to a string cannot fail")
            .label(format!(
                "ceilings: sgemm {} GFLOP/s, memory triad {} GB/s",
                number(peak),
                number(bandwidth)
            ))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
        // The same roof for data that stays in the last-level cache, in grey.
        let cache = r.ceilings.cache_bandwidth_gb_per_s.max(1e-3);
        let cache_ridge = (peak / cache).clamp(x0, x1);
        let cache_roof = vec![
            (x0, (cache * x0).min(peak)),
            (cache_ridge, (cache * cache_ridge).min(peak)),
            (x1, peak),
        ];
        let grey = RGBColor(150, 150, 150);
        chart
            .draw_series(LineSeries::new(cache_roof, grey.stroke_width(1)))
            .expect("drawing to a string cannot fail")
            .label(format!("in-cache triad {} GB/s", number(cache)))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], grey.stroke_width(1))
            });
        for (group, color) in [
            ("sgemm", RGBColor(120, 120, 120)),
            ("layer", RGBColor(200, 60, 30)),
        ] {
            let these: Vec<(f64, f64, String)> = points
                .iter()
                .filter(|(f, _, _)| f.group == group)
                .map(|(f, i, g)| (*i, *g, short_name(f)))
                .collect();
            let label = if group == "sgemm" {
                "bare sgemm at a shape"
            } else {
                "layer pass"
            };
            chart
                .draw_series(
                    these
                        .iter()
                        .map(|(i, g, _)| Circle::new((*i, *g), 4, color.filled())),
                )
                .expect("drawing to a string cannot fail")
                .label(label)
                .legend(move |(x, y)| Circle::new((x + 10, y), 4, color.filled()));
            chart
                .draw_series(these.iter().map(|(i, g, name)| {
                    Text::new(
                        name.clone(),
                        (*i, *g),
                        ("sans-serif", 11).into_font().color(&color),
                    )
                }))
                .expect("drawing to a string cannot fail");
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()
            .expect("drawing to a string cannot fail");
        root.present().expect("drawing to a string cannot fail");
    }
    svg
}

/// Speed-up over 1 thread against threads, one line per workload, the sgemm peak and the triad,
/// with the ideal (linear) line.
pub fn scaling_svg(r: &Report) -> String {
    let n = r.settings.max_threads.max(1);
    let series = scaling_series(r);
    let mut top = n as f64;
    for (_, points) in &series {
        if let Some((1, one)) = points.first() {
            for (_, v) in points {
                top = top.max(v / one);
            }
        }
    }
    register_fonts();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 560)).into_drawing_area();
        root.fill(&WHITE).expect("drawing to a string cannot fail");
        let mut chart = ChartBuilder::on(&root)
            .caption("Thread scaling: speed-up over 1 thread", ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(60)
            .build_cartesian_2d(0.5..n as f64 + 0.5, 0.0..top * 1.1)
            .expect("valid ranges");
        chart
            .configure_mesh()
            .x_desc("threads")
            .y_desc("speed-up")
            .x_labels(n.min(16) + 1)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .draw()
            .expect("drawing to a string cannot fail");
        chart
            .draw_series(LineSeries::new(
                vec![(1.0, 1.0), (n as f64, n as f64)],
                BLACK.mix(0.4).stroke_width(1),
            ))
            .expect("drawing to a string cannot fail")
            .label("ideal")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.4)));
        for (k, (name, points)) in series.iter().enumerate() {
            let Some(&(1, one)) = points.first() else {
                continue;
            };
            let color = Palette99::pick(k).to_rgba();
            let line: Vec<(f64, f64)> = points.iter().map(|(t, v)| (*t as f64, v / one)).collect();
            chart
                .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
                .expect("drawing to a string cannot fail")
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart
                .draw_series(line.iter().map(|p| Circle::new(*p, 3, color.filled())))
                .expect("drawing to a string cannot fail");
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()
            .expect("drawing to a string cannot fail");
        root.present().expect("drawing to a string cannot fail");
    }
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_of_known_days() {
        assert_eq!(utc_date(0), (1970, 1, 1));
        assert_eq!(utc_date(951_782_400), (2000, 2, 29)); // a leap day
        assert_eq!(utc_date(1_796_083_200), (2026, 12, 1));
    }
}
