//! `advmnist evaluate`'s report: `evaluate.md` (the attacks' table, the worst case and the
//! certified bound per budget, the checklist's verdicts) and `evaluate.svg` (error against eps,
//! one line per attack, the worst case bold). `evaluate.json` is the report itself, serialised.

use super::plot::register_fonts;
use super::table::{Align, Table};
use crate::experiments::evaluate::{checklist::Mark, Attack, AttackResult, Report};
use plotters::prelude::*;

/// The files of one evaluation, in the order they are written.
pub const EVALUATE_FILES: [&str; 3] = ["evaluate.json", "evaluate.md", "evaluate.svg"];

/// One cell: the error and the distortion the attack produced.
pub(crate) fn cell(r: &AttackResult) -> String {
    match r.distortion {
        Some(d) => format!("{:.1} ({d:.3})", r.error_pct),
        None => format!("{:.1} (-)", r.error_pct),
    }
}

/// What each attack ran, in words.
fn describe(report: &Report, attack: Attack) -> String {
    let s = &report.record.settings;
    match attack {
        Attack::Fgsm => "one gradient-sign step of eps".into(),
        Attack::Pgd => format!(
            "{} steps of 2.5 eps / {}, random start",
            s.pgd_steps, s.pgd_steps
        ),
        Attack::ApgdCe => format!(
            "{} iterations, {} restart(s), cross-entropy",
            s.iterations, s.restarts
        ),
        Attack::ApgdT => format!(
            "{} iterations, {} restart(s) for each of {} targets, targeted DLR loss",
            s.iterations, s.restarts, s.targets
        ),
        Attack::Square => format!("at most {} queries per image, margin loss", s.queries),
        Attack::Transfer => format!("PGD's examples made on {}", report.source),
    }
}

/// `evaluate.md`.
pub fn markdown(report: &Report) -> String {
    let s = &report.record.settings;
    let mut md = format!(
        "# Robustness evaluation: {}\n\nThe first {} test images, L-infinity budgets eps = {}, seed {}{}.\n\n",
        report.model,
        s.images,
        s.eps
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        s.seed,
        if s.eot_draws > 1 {
            format!("; every attack averages over {} draws of the model's noise (EOT)", s.eot_draws)
        } else {
            String::new()
        }
    );
    md.push_str("## Error (%) per attack and budget\n\n");
    md.push_str("Each cell: the error in % (clean errors included) and, in parentheses, the average distortion per pixel of the adversarial examples the attack found (the study's measure). The worst case counts an image wrong if any attack fooled it. The certified error is an upper bound on the error of any attack within the budget: the true robust error lies between the worst case and it.\n\n");
    let mut columns = vec![("attack".to_string(), Align::Left)];
    columns.extend(s.eps.iter().map(|e| (format!("eps {e}"), Align::Right)));
    columns.push(("what it ran".to_string(), Align::Left));
    let mut table = Table::new(columns);
    for attack in Attack::ALL {
        let mut row = vec![attack.name().to_string()];
        for &eps in &s.eps {
            row.push(
                report
                    .record
                    .attacks
                    .iter()
                    .find(|r| r.attack == attack && r.eps == eps)
                    .map_or("-".into(), cell),
            );
        }
        row.push(describe(report, attack));
        table.row(row);
    }
    let mut worst = vec!["**worst case**".to_string()];
    worst.extend(
        s.eps
            .iter()
            .map(|&e| format!("**{:.1}**", report.worst_error_pct(e))),
    );
    worst.push("per image, any attack".into());
    table.row(worst);
    let mut certified = vec!["certified (upper bound)".to_string()];
    for &eps in &s.eps {
        certified.push(
            report
                .certification
                .rows
                .iter()
                .find(|(e, _)| *e == eps)
                .map_or("no certificate".into(), |(_, c)| format!("{c:.1}")),
        );
    }
    certified.push("interval bound propagation".into());
    table.row(certified);
    md.push_str(&table.markdown());
    md.push('\n');
    match (&report.certification.unavailable, report.certification.passes_99_at) {
        (Some(reason), _) => {
            // The reason reads as a sentence of its own ("no certificate: ...").
            let mut sentence = reason.trim_end_matches('.').to_string();
            if let Some(first) = sentence.get(..1) {
                sentence.replace_range(..1, &first.to_uppercase());
            }
            md.push_str(&format!("{sentence}.\n\n"))
        }
        (None, Some(at)) => md.push_str(&format!(
            "The certified error passes 99% at eps = {at}: beyond it the certificate says nothing.\n\n"
        )),
        (None, None) => md.push_str("The certified error stays below 99% up to eps = 1.\n\n"),
    }
    md.push_str(
        "## Checklist (Carlini et al., \"On Evaluating Adversarial Robustness\", 2019)\n\n",
    );
    let mut checks = Table::left(["check", "verdict", "the numbers that decided it"]);
    for v in &report.verdicts {
        checks.row([
            v.check.clone(),
            match v.mark {
                Mark::Pass => "PASS".to_string(),
                Mark::Warn => "**WARN**".to_string(),
            },
            v.evidence.clone(),
        ]);
    }
    md.push_str(&checks.markdown());
    md.push_str("\nThe attacks and checks are explained in docs/evaluate.md.\n");
    md
}

/// `evaluate.svg`: error against eps, one line per attack, the worst case bold and black.
pub fn svg(report: &Report) -> String {
    let s = &report.record.settings;
    let max_eps = s.eps.iter().cloned().fold(0.0f32, f32::max).max(1e-3) as f64;
    register_fonts();
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (800, 560)).into_drawing_area();
        root.fill(&WHITE).expect("drawing to a string cannot fail");
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("Error against the L-infinity budget: {}", report.model),
                ("sans-serif", 18),
            )
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..max_eps * 1.02, 0.0..100.0)
            .expect("valid ranges");
        chart
            .configure_mesh()
            .x_desc("eps (L-infinity)")
            .y_desc("error (%)")
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 17))
            .draw()
            .expect("drawing to a string cannot fail");
        let clean = 100.0
            * report
                .record
                .clean_errors
                .chars()
                .filter(|&c| c == '1')
                .count() as f64
            / s.images.max(1) as f64;
        let line = |points: Vec<(f64, f64)>| {
            let mut all = vec![(0.0, clean)];
            all.extend(points);
            all
        };
        for (i, attack) in Attack::ALL.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let points: Vec<(f64, f64)> = s
                .eps
                .iter()
                .filter_map(|&eps| {
                    report
                        .record
                        .attacks
                        .iter()
                        .find(|r| r.attack == *attack && r.eps == eps)
                        .map(|r| (eps as f64, r.error_pct))
                })
                .collect();
            chart
                .draw_series(LineSeries::new(line(points), color.stroke_width(2)))
                .expect("drawing to a string cannot fail")
                .label(attack.name())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        let worst: Vec<(f64, f64)> = s
            .eps
            .iter()
            .map(|&e| (e as f64, report.worst_error_pct(e)))
            .collect();
        chart
            .draw_series(LineSeries::new(line(worst), BLACK.stroke_width(5)))
            .expect("drawing to a string cannot fail")
            .label("worst case")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(5)));
        if !report.certification.rows.is_empty() {
            let certified: Vec<(f64, f64)> = report
                .certification
                .rows
                .iter()
                .map(|&(e, c)| (e as f64, c))
                .collect();
            let grey = RGBColor(120, 120, 120);
            chart
                .draw_series(LineSeries::new(line(certified), grey.stroke_width(2)))
                .expect("drawing to a string cannot fail")
                .label("certified (upper bound)")
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], grey.stroke_width(2))
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
    out
}
