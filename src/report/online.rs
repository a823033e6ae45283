//! On-line adversarial training's files (`train::online`): the curve's figure, and the model,
//! the record and the figure written as one set.

use super::plot::register_fonts;
use crate::io_safety::WriteError;
use crate::train::online::{
    record::to_json, FinishedRun, OnlineRecord, CURVE_EPS, FIGURE_FILE, MODEL_FILE, RECORD_FILE,
    SET_NAME,
};
use plotters::prelude::*;
use std::path::Path;

/// `online.svg`: error (%) against iteration on the curve's test images: clean, FGSM and PGD at
/// each radius of [`CURVE_EPS`]. FGSM's lines are dashed, PGD's solid, one colour per radius,
/// so catastrophic overfitting reads as a dashed line falling while its solid twin rises.
pub fn curve_svg(record: &OnlineRecord) -> String {
    let cfg = &record.config;
    let last = record
        .curve
        .last()
        .map_or(cfg.iterations, |p| p.iteration)
        .max(1) as f64;
    register_fonts();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 560)).into_drawing_area();
        root.fill(&WHITE).expect("drawing to a string cannot fail");
        let title = format!(
            "On-line adversarial training: alpha {}, eps {}{}, seed {}",
            cfg.alpha,
            cfg.eps,
            if cfg.random_start {
                ", random start"
            } else {
                ""
            },
            cfg.seed
        );
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..last * 1.02, 0.0..100.0)
            .expect("valid ranges");
        chart
            .configure_mesh()
            .x_desc(format!(
                "iteration (error on the first {} test images)",
                record.curve_images
            ))
            .y_desc("error (%)")
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 17))
            .draw()
            .expect("drawing to a string cannot fail");
        let line = |values: Vec<(f64, f64)>, style: ShapeStyle, dashed: bool, label: String| {
            (values, style, dashed, label)
        };
        let mut lines = vec![line(
            record
                .curve
                .iter()
                .map(|p| (p.iteration as f64, p.clean_error_pct))
                .collect(),
            BLACK.stroke_width(2),
            false,
            "clean".into(),
        )];
        for (i, &eps) in CURVE_EPS.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            for (attack, dashed) in [("fgsm", true), ("pgd", false)] {
                lines.push(line(
                    record
                        .curve
                        .iter()
                        .filter_map(|p| p.error_at(attack, eps).map(|e| (p.iteration as f64, e)))
                        .collect(),
                    color.stroke_width(2),
                    dashed,
                    format!("{} eps {eps}", attack.to_uppercase()),
                ));
            }
        }
        for (values, style, dashed, label) in lines {
            let series = if dashed {
                chart.draw_series(DashedLineSeries::new(values, 8, 5, style))
            } else {
                chart.draw_series(LineSeries::new(values, style))
            };
            series
                .expect("drawing to a string cannot fail")
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .expect("drawing to a string cannot fail");
        root.present().expect("drawing to a string cannot fail");
    }
    svg
}

/// The files of a finished run, as one set in `dir`: `online.safetensors`, `online.json` and
/// `online.svg`, with the manifest `online.sha256` written last
/// ([`crate::io_safety::write_set`]), so the record never stands beside another run's model.
pub fn write(dir: &Path, run: &FinishedRun) -> Result<(), WriteError> {
    let json = to_json(&run.record);
    let svg = curve_svg(&run.record);
    crate::io_safety::write_set(
        dir,
        SET_NAME,
        &[
            (MODEL_FILE, run.model.as_slice()),
            (RECORD_FILE, json.as_bytes()),
            (FIGURE_FILE, svg.as_bytes()),
        ],
    )
}
