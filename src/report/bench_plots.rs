//! The two figures of `advmnist bench --report`: `roofline.svg` (arithmetic intensity against
//! achieved GFLOP/s, one point per kernel, under the measured ceilings) and `scaling.svg`
//! (speed-up over 1 thread), drawn from a [`Profile`] with plotters.

use crate::bench::measure::Measurement;
use crate::bench::profile::Profile;
use crate::report::plot::register_fonts;
use plotters::prelude::*;

/// A rate with three significant digits or so, without exponent for the sizes seen here.
pub(crate) fn number(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The id without its group and thread count: `sgemm/50x500x256/t2` -> `50x500x256`.
pub(crate) fn short_name(f: &Measurement) -> String {
    let mut parts: Vec<&str> = f.id.split('/').collect();
    if parts.last().is_some_and(|p| p.starts_with('t')) && f.group != "layer" {
        parts.pop();
    }
    if parts.len() > 1 && matches!(f.group.as_str(), "sgemm" | "layer" | "workload") {
        parts.remove(0);
    }
    parts.join("/")
}

/// Per workload (and the sgemm peak and the triad), `(threads, median rate)` sorted by threads.
pub(crate) fn scaling_series(r: &Profile) -> Vec<(String, Vec<(usize, f64)>)> {
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
pub fn roofline_svg(r: &Profile) -> String {
    let n = r.settings.max_threads;
    let points: Vec<(&Measurement, f64, f64)> = r
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
pub fn scaling_svg(r: &Profile) -> String {
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
