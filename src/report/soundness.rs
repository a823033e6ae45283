//! The reproduction's soundness table (`soundness.md`, `soundness.json` and a section of
//! `report.html`): every Table 2 row evaluated by every attack of `experiments::evaluate`,
//! white-box through everything the row's model does, with the distortion each attack
//! produced, the certified bound and the checklist's verdicts.

use super::evaluate::cell;
use super::table::{escape, Align, Table};
use crate::experiments::evaluate::{checklist::Mark, Attack, Settings};
use crate::experiments::reproduce::table::{Gathered, SoundnessRow};
use crate::experiments::reproduce::Plan;
use std::fmt::Write;

/// The row's name: the study's label, with the repetition's seed when there are several.
fn row_name(r: &SoundnessRow, plan: &Plan) -> String {
    if plan.seeds > 1 {
        format!("{} (seed {})", r.method, r.base_seed)
    } else {
        r.method.clone()
    }
}

/// The budgets of the evaluations, in order (every row has the same).
fn budgets(g: &Gathered) -> Vec<f32> {
    g.soundness
        .first()
        .map(|r| r.report.record.settings.eps.clone())
        .unwrap_or_default()
}

/// One table per budget: per row, the clean error, each attack's error with the distortion it
/// produced, the worst case and the certified bound.
pub fn error_tables(g: &Gathered, plan: &Plan) -> Vec<(f32, Table)> {
    budgets(g)
        .into_iter()
        .map(|eps| {
            let mut columns = vec![("row".to_string(), Align::Left)];
            columns.push(("clean".into(), Align::Right));
            columns.extend(
                Attack::ALL
                    .iter()
                    .map(|a| (a.name().to_string(), Align::Right)),
            );
            columns.push(("worst case".into(), Align::Right));
            columns.push(("certified".into(), Align::Right));
            let mut t = Table::new(columns);
            for r in &g.soundness {
                let record = &r.report.record;
                let clean = record.clean_errors.chars().filter(|&c| c == '1').count();
                let mut cells = vec![
                    row_name(r, plan),
                    format!(
                        "{:.1}",
                        100.0 * clean as f64 / record.settings.images.max(1) as f64
                    ),
                ];
                cells.extend(Attack::ALL.iter().map(|&a| {
                    record
                        .attacks
                        .iter()
                        .find(|x| x.attack == a && x.eps == eps)
                        .map_or("-".into(), cell)
                }));
                cells.push(format!("{:.1}", r.report.worst_error_pct(eps)));
                cells.push(
                    r.report
                        .certification
                        .rows
                        .iter()
                        .find(|(e, _)| *e == eps)
                        .map_or("none".into(), |(_, c)| format!("{c:.1}")),
                );
                t.row(cells);
            }
            (eps, t)
        })
        .collect()
}

/// Per row: how many checks pass, and each warning with the numbers that decided it.
pub fn verdict_table(g: &Gathered, plan: &Plan) -> Table {
    let mut t = Table::left(["row", "checks passed", "warnings"]);
    for r in &g.soundness {
        let warnings: Vec<String> = r
            .report
            .verdicts
            .iter()
            .filter(|v| v.mark == Mark::Warn)
            .map(|v| format!("{}: {}", v.check, v.evidence))
            .collect();
        t.row([
            row_name(r, plan),
            format!(
                "{} of {}",
                r.report.verdicts.len() - warnings.len(),
                r.report.verdicts.len()
            ),
            if warnings.is_empty() {
                "none".into()
            } else {
                warnings.join("; ")
            },
        ]);
    }
    t
}

/// What the evaluations ran, in words.
pub fn settings_text(g: &Gathered) -> String {
    let Some(first) = g.soundness.first() else {
        return "No soundness evaluation finished.".into();
    };
    let s: &Settings = &first.report.record.settings;
    let eot = g
        .soundness
        .iter()
        .map(|r| r.report.record.settings.eot_draws)
        .max()
        .unwrap_or(1);
    format!(
        "The first {} test images at L-infinity budgets eps = {}, every attack white-box through everything the row's model does (its preprocessing, a committee's averaged prediction){}: FGSM; PGD, {} steps from a random start; APGD-CE, {} iterations, {} run(s) from a random start; APGD-T, {} iterations for each of {} target class(es); Square, at most {} queries per image; transfer, PGD's examples made on an independent LeNet. The checklist's stronger run: APGD-CE {} more time(s) from other random starts. Each cell: the error in % (clean errors included) and, in parentheses, the average distortion per pixel of the adversarial examples the attack found (the study's measure). The worst case counts an image wrong if any attack fooled it (a lower bound on the robust error); the certified error (interval bound propagation) is an upper bound, where a certificate exists.",
        s.images,
        s.eps
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(" and "),
        if eot > 1 {
            format!(", averaging over {eot} draws of the injected noise (EOT) where a row injects noise")
        } else {
            String::new()
        },
        s.pgd_steps,
        s.iterations,
        s.restarts,
        s.iterations,
        s.targets,
        s.queries,
        s.stronger_restarts
    )
}

/// The adversarial committee's figures at the smallest budget: the study's attack beside
/// APGD and Square.
pub fn committee_verdict(g: &Gathered) -> Option<String> {
    let r = g.soundness.iter().find(|r| r.key == "adv-committee")?;
    let eps = *r.report.record.settings.eps.first()?;
    let of = |a: Attack| {
        r.report
            .record
            .attacks
            .iter()
            .find(|x| x.attack == a && x.eps == eps)
            .map(|x| x.error_pct)
    };
    let (fgsm, ce, t, square) = (
        of(Attack::Fgsm)?,
        of(Attack::ApgdCe)?,
        of(Attack::ApgdT)?,
        of(Attack::Square)?,
    );
    let warnings = r.report.warnings().len();
    Some(format!(
        "On the adversarial committee at eps {eps}, the study's gradient sign reaches {fgsm:.1}%, APGD-CE {ce:.1}%, APGD-T {t:.1}% and Square (which sees only the outputs) {square:.1}%; the worst case is {:.1}%, and {} of the checklist's {} checks warn.",
        r.report.worst_error_pct(eps),
        warnings,
        r.report.verdicts.len()
    ))
}

/// `soundness.md`.
pub fn markdown(g: &Gathered, plan: &Plan) -> String {
    let mut s = String::from("# Soundness of Table 2: every row under every attack\n\n");
    let _ = writeln!(s, "{}\n", settings_text(g));
    for (eps, t) in error_tables(g, plan) {
        let _ = writeln!(s, "## Error (%) at eps = {eps}\n");
        s.push_str(&t.markdown());
        s.push('\n');
    }
    s.push_str("## The checklist's verdicts\n\n");
    s.push_str(&verdict_table(g, plan).markdown());
    if let Some(v) = committee_verdict(g) {
        let _ = writeln!(s, "\n{v}");
    }
    s.push_str("\nEach row's whole report is in `soundness.json` (and `jobs/soundness-*/evaluate.json`); the attacks and checks are explained in docs/evaluate.md.\n");
    s
}

/// The section of `report.html`.
pub fn html(g: &Gathered, plan: &Plan) -> String {
    let mut s = String::from("<h2>Soundness: every row under every attack</h2>\n");
    let _ = writeln!(s, "<p>{}</p>", escape(&settings_text(g)));
    for (eps, t) in error_tables(g, plan) {
        let _ = writeln!(s, "<h3>Error (%) at eps = {eps}</h3>");
        s.push_str(&t.html());
    }
    s.push_str("<h3>The checklist's verdicts</h3>\n");
    s.push_str(&verdict_table(g, plan).html());
    if let Some(v) = committee_verdict(g) {
        let _ = writeln!(s, "<p>{}</p>", escape(&v));
    }
    s
}
