//! Figures drawn with `plotters`.

use crate::experiments::sweep::SweepResult;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

/// Registers the DejaVu Sans font (shipped inside the `dejavu` crate) as plotters'
/// "sans-serif", so figures with text draw the same on every machine, with no system fonts.
pub fn register_fonts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for (style, bytes) in [
            (FontStyle::Normal, dejavu::sans::regular()),
            (FontStyle::Bold, dejavu::sans::bold()),
        ] {
            if register_font("sans-serif", style, bytes).is_err() {
                panic!("the bundled DejaVu font failed to parse");
            }
        }
    });
}

/// Error (%) against average distortion per pixel, one line per model, in the manner of the
/// study's Figures 3 and 4. Returns the SVG text.
pub fn error_vs_distortion_svg(result: &SweepResult, title: &str) -> String {
    let mut models: Vec<&str> = Vec::new();
    for r in &result.rows {
        if !models.contains(&r.model.as_str()) {
            models.push(&r.model);
        }
    }
    let max_d = result
        .rows
        .iter()
        .map(|r| r.distortion)
        .fold(0.0f64, f64::max)
        .max(1e-6);
    register_fonts();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (800, 560)).into_drawing_area();
        root.fill(&WHITE).expect("drawing to a string cannot fail");
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..max_d * 1.02, 0.0..100.0)
            .expect("valid ranges");
        chart
            .configure_mesh()
            .x_desc("average distortion per pixel")
            .y_desc("error (%)")
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 17))
            .draw()
            .expect("drawing to a string cannot fail");
        for (i, model) in models.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let points: Vec<(f64, f64)> = result
                .rows
                .iter()
                .filter(|r| r.model == *model)
                .map(|r| (r.distortion, r.error_pct))
                .collect();
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .expect("drawing to a string cannot fail")
                .label(*model)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .expect("drawing to a string cannot fail");
        root.present().expect("drawing to a string cannot fail");
    }
    svg
}
