//! The human study's files: the page a subject answers in (`study_html`), and the report of
//! `human-report` (`human.json`, `human.md`, `human.svg`, as the study's Figure 8). The images
//! and the numbers are made in `experiments::human_study`; this module only lays them out.
//!
//! # The page
//! One self-contained HTML file: no network, plain JavaScript, every image inline as a PNG data
//! URI. It carries the image sets of subjects `1..=N`, made in advance (a set is 205 PNGs of
//! about 0.5-1 KB each, so each subject adds roughly 150-200 KB). The page asks for a subject
//! id, shows one enlarged digit at a time (at least 280 CSS pixels, pixelated scaling, on a
//! neutral grey), takes the answer by key 0-9 or a click on a digit button, shows "Image n of
//! 205", never shows the true label, keeps every answer in local storage (keyed by the study's
//! id, so a reload resumes at the next image), and at the end offers the results as a JSON file.

use crate::data::{IMAGE_SIDE, PIXELS};
use crate::experiments::human_study::{
    ConditionScores, GroupScores, HumanAnalysis, NoiseKind, Study, IMAGES_PER_SUBJECT,
    RESULTS_FORMAT,
};
use crate::io_safety::WriteError;
use crate::report::plot::register_fonts;
use crate::statistics::CI95_METHOD;
use base64::Engine;
use plotters::prelude::*;
use std::fmt::Write;
use std::path::Path;

/// A 28 x 28 grey image as PNG bytes. Deterministic: the same pixels give the same bytes.
pub fn png_bytes(pixels: &[u8]) -> Vec<u8> {
    use image::ImageEncoder;
    assert_eq!(pixels.len(), PIXELS, "a 28 x 28 image");
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(
            pixels,
            IMAGE_SIDE as u32,
            IMAGE_SIDE as u32,
            image::ColorType::L8,
        )
        .expect("encoding to memory cannot fail");
    out
}

/// The page's data: `{study_id, study, images_per_subject, subjects: {"1": [[image, noise,
/// level, label, png_base64], ...]}}`, trials in the order shown.
pub fn study_data_json(study: &Study) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let subjects: serde_json::Map<String, serde_json::Value> = study
        .subjects
        .iter()
        .map(|(set, images)| {
            let trials: Vec<serde_json::Value> = set
                .trials
                .iter()
                .zip(images)
                .map(|(t, px)| {
                    serde_json::json!([
                        t.image,
                        t.noise.name(),
                        t.level,
                        t.label,
                        b64.encode(png_bytes(px))
                    ])
                })
                .collect();
            (set.subject.to_string(), serde_json::Value::Array(trials))
        })
        .collect();
    serde_json::json!({
        "format": RESULTS_FORMAT,
        "study_id": study.design.id(),
        "study": study.design,
        "images_per_subject": IMAGES_PER_SUBJECT,
        "subjects": subjects,
    })
    .to_string()
}

const PAGE_TEMPLATE: &str = include_str!("human_page.html");

/// The study page. Its data sits in a `<script type="application/json">` element, with every
/// `<` escaped as `\u003c` so that nothing in it can close the element.
pub fn study_html(study: &Study) -> String {
    let data = study_data_json(study).replace('<', "\\u003c");
    let last = study.subjects.last().map(|s| s.0.subject).unwrap_or(0);
    // The data goes in last, so that nothing inside it is taken for a placeholder.
    PAGE_TEMPLATE
        .replace("{{LAST_SUBJECT}}", &last.to_string())
        .replace("{{IMAGES}}", &IMAGES_PER_SUBJECT.to_string())
        .replace("{{STUDY_DATA}}", &data)
}

// ---------------------------------------------------------------------------------------------
// The report

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.1}"))
}

/// A group's cell: mean ± SD [95% interval] and, after it, each member's accuracy as
/// `units: a, b, ...` (`units` is "subjects" or "models").
fn cell(g: &GroupScores, units: &str) -> String {
    let s = &g.summary;
    match (s.ci95_low, s.ci95_high) {
        (Some(lo), Some(hi)) => {
            let each: Vec<String> = s.values.iter().map(|v| format!("{v:.1}")).collect();
            format!(
                "{:.1} ± {} [{lo:.1}, {hi:.1}] ({units}: {})",
                s.mean,
                fmt_opt(s.sd),
                each.join(", ")
            )
        }
        _ => format!("{:.1}", s.mean),
    }
}

fn level_name(c: &ConditionScores) -> String {
    match c.noise {
        NoiseKind::Clean => "clean".into(),
        NoiseKind::Hard => "hard digits".into(),
        NoiseKind::GradientSign => format!("gradient sign, eps {}", c.level),
        NoiseKind::Gaussian => format!("Gaussian, sigma {}", c.level),
    }
}

/// `human.md`: one table of accuracies (mean ± SD [95% CI] (each member's), in %), and who
/// was measured.
pub fn human_markdown(a: &HumanAnalysis) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Human study: accuracy of humans and LeNet models\n");
    let _ = writeln!(
        s,
        "Study {} (seed {}, adversarial images made on {}). Subjects: {}. Models: {}.\n",
        a.study_id,
        a.study.seed,
        a.source_model,
        a.subjects.len(),
        a.models.len()
    );
    let _ = writeln!(
        s,
        "Accuracy in %: mean ± standard deviation (n - 1) [95% confidence interval of the mean] \
         (each subject's or model's accuracy), across subjects or across models. The interval: \
         {CI95_METHOD}; it lies within 0-100 (docs/human-study.md). \
         *White-box*: each model is attacked with its own gradient (the study's setting). \
         *Transfer*: each model classifies the very images the subjects saw, made on the source \
         model (white-box for the source itself, a transfer attack for every other model). For \
         clean, Gaussian and hard digits the two are the same images.\n"
    );
    let _ = writeln!(
        s,
        "| condition | humans | models, white-box | models, transfer | human mean response (ms) |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|");
    for c in &a.conditions {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.0} |",
            level_name(c),
            cell(&c.humans, "subjects"),
            cell(&c.models_white_box, "models"),
            cell(&c.models_transfer, "models"),
            c.human_mean_response_ms
        );
    }
    let _ = writeln!(
        s,
        "\nHard digits: MNIST test digits that reference models most disagree on (the study used \
         USPS digits, which cannot be bundled).\n"
    );
    let _ = writeln!(s, "Subjects:\n");
    for (id, file) in &a.subjects {
        let _ = writeln!(s, "- {id}: `{file}`");
    }
    let _ = writeln!(s, "\nModels:\n");
    for m in &a.models {
        let _ = writeln!(s, "- `{m}`");
    }
    s
}

/// A point of a curve: level, mean, and the 95% interval if there is one.
type CurvePoint = (f64, f64, Option<(f64, f64)>);

/// One curve of the figure: one group's points.
struct Curve {
    label: &'static str,
    colour: RGBColor,
    points: Vec<CurvePoint>,
}

fn curve(
    a: &HumanAnalysis,
    noise: NoiseKind,
    label: &'static str,
    colour: RGBColor,
    pick: fn(&ConditionScores) -> &GroupScores,
) -> Curve {
    let points = a
        .conditions
        .iter()
        .filter(|c| c.noise == noise || c.noise == NoiseKind::Clean)
        .map(|c| {
            let s = &pick(c).summary;
            let ci = s.ci95_low.zip(s.ci95_high);
            (c.level, s.mean, ci)
        })
        .collect();
    Curve {
        label,
        colour,
        points,
    }
}

/// `human.svg`: accuracy against noise level, gradient sign (left) and Gaussian (right), each
/// group's mean line inside its shaded 95% confidence region (which lies within 0-100; the
/// clamp below only guards the axis), as the study's Figure 8. Level 0 is the clean images.
pub fn human_svg(a: &HumanAnalysis) -> String {
    register_fonts();
    const HUMANS: RGBColor = RGBColor(31, 119, 180);
    const WHITE_BOX: RGBColor = RGBColor(214, 39, 40);
    const TRANSFER: RGBColor = RGBColor(255, 127, 14);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1200, 520)).into_drawing_area();
        root.fill(&WHITE).expect("drawing to a string cannot fail");
        let panels = root.split_evenly((1, 2));
        let specs = [
            (
                NoiseKind::GradientSign,
                "gradient sign noise",
                "eps",
                vec![
                    curve(a, NoiseKind::GradientSign, "humans", HUMANS, |c| &c.humans),
                    curve(
                        a,
                        NoiseKind::GradientSign,
                        "LeNet, white-box (own gradient)",
                        WHITE_BOX,
                        |c| &c.models_white_box,
                    ),
                    curve(
                        a,
                        NoiseKind::GradientSign,
                        "LeNet, images the humans saw",
                        TRANSFER,
                        |c| &c.models_transfer,
                    ),
                ],
            ),
            (
                NoiseKind::Gaussian,
                "Gaussian noise",
                "sigma",
                vec![
                    curve(a, NoiseKind::Gaussian, "humans", HUMANS, |c| &c.humans),
                    curve(a, NoiseKind::Gaussian, "LeNet", WHITE_BOX, |c| {
                        &c.models_white_box
                    }),
                ],
            ),
        ];
        for (panel, (_, title, x_name, curves)) in panels.iter().zip(specs) {
            let max_x = curves
                .iter()
                .flat_map(|c| c.points.iter().map(|p| p.0))
                .fold(0.0f64, f64::max)
                .max(1e-6);
            let mut chart = ChartBuilder::on(panel)
                .caption(title, ("sans-serif", 22))
                .margin(16)
                .x_label_area_size(46)
                .y_label_area_size(56)
                .build_cartesian_2d(0.0..max_x * 1.03, 0.0..100.0)
                .expect("valid ranges");
            chart
                .configure_mesh()
                .x_desc(x_name)
                .y_desc("accuracy (%)")
                .label_style(("sans-serif", 15))
                .axis_desc_style(("sans-serif", 17))
                .draw()
                .expect("drawing to a string cannot fail");
            for c in &curves {
                let band: Vec<(f64, f64)> =
                    c.points
                        .iter()
                        .filter_map(|&(x, _, ci)| ci.map(|(_, hi)| (x, hi.clamp(0.0, 100.0))))
                        .chain(
                            c.points.iter().rev().filter_map(|&(x, _, ci)| {
                                ci.map(|(lo, _)| (x, lo.clamp(0.0, 100.0)))
                            }),
                        )
                        .collect();
                if band.len() >= 4 {
                    chart
                        .draw_series(std::iter::once(Polygon::new(
                            band,
                            c.colour.mix(0.18).filled(),
                        )))
                        .expect("drawing to a string cannot fail");
                }
                let colour = c.colour;
                chart
                    .draw_series(LineSeries::new(
                        c.points.iter().map(|p| (p.0, p.1)),
                        colour.stroke_width(3),
                    ))
                    .expect("drawing to a string cannot fail")
                    .label(c.label)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(3))
                    });
                chart
                    .draw_series(
                        c.points
                            .iter()
                            .map(|p| Circle::new((p.0, p.1), 4, colour.filled())),
                    )
                    .expect("drawing to a string cannot fail");
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .draw()
                .expect("drawing to a string cannot fail");
        }
        root.present().expect("drawing to a string cannot fail");
    }
    svg
}

/// The files `human-report` writes into its folder: the set and its manifest.
pub const REPORT_FILES: [&str; 4] = ["human.json", "human.md", "human.svg", "human.sha256"];

/// Writes `human.json`, `human.md` and `human.svg` into `dir` (created if missing) as one set,
/// with its manifest `human.sha256` written last ([`crate::io_safety::write_set`]).
pub fn write_human_report(dir: &Path, a: &HumanAnalysis) -> Result<(), WriteError> {
    let json = serde_json::to_string_pretty(a).expect("plain data");
    let markdown = human_markdown(a);
    let svg = human_svg(a);
    crate::io_safety::write_set(
        dir,
        "human",
        &[
            ("human.json", json.as_bytes()),
            ("human.md", markdown.as_bytes()),
            ("human.svg", svg.as_bytes()),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_round_trips_and_is_deterministic() {
        let pixels: Vec<u8> = (0..PIXELS).map(|i| (i * 7 % 256) as u8).collect();
        let png = png_bytes(&pixels);
        assert_eq!(png, png_bytes(&pixels));
        let back = image::load_from_memory(&png).unwrap().to_luma8();
        assert_eq!(back.dimensions(), (28, 28));
        assert_eq!(back.into_raw(), pixels);
    }
}
