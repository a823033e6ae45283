//! The reproduction's report: `table2.json`, `table2.md`, the figures (SVG), `report.html` (one
//! self-contained page) and `manifest.json`.

use crate::experiments::reproduce::table::{column_key, CurvePlot, Gathered, TableRow, COLUMNS};
use crate::experiments::reproduce::{JobRecord, Plan};
use crate::io_safety::{write_set, WriteError};
use crate::report::plot;
use crate::report::table::{escape, Table};
use crate::statistics::CI95_METHOD;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

fn cell(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into())
}

/// One table's cell text: the mean; with several seeds also its 95% interval
/// ([`CI95_METHOD`], named once in the report's introduction) and each seed's value, e.g.
/// `2.90 [0.93, 8.71] (seeds: 1.80, 4.00)`.
fn value_text(r: &TableRow, col: &str) -> String {
    match r.over_seeds.get(col).and_then(|s| s.as_ref()) {
        Some(s) => match (s.ci95_low, s.ci95_high) {
            (Some(lo), Some(hi)) => {
                let seeds: Vec<String> = s.values.iter().map(|v| format!("{v:.2}")).collect();
                format!(
                    "{:.2} [{lo:.2}, {hi:.2}] (seeds: {})",
                    s.mean,
                    seeds.join(", ")
                )
            }
            _ => format!("{:.2}", s.mean),
        },
        None => "-".into(),
    }
}

/// The introduction's account of a cell with several seeds (nothing with one).
fn seeds_sentence(plan: &Plan) -> String {
    if plan.seeds > 1 {
        format!(
            " Each cell: the mean over the seeds [its 95% confidence interval] (each seed's \
             value); the interval: {CI95_METHOD}, within 0-100% (docs/reproduce.md)."
        )
    } else {
        String::new()
    }
}

/// A table of rows: method, attack, gradient, the error at each column's distortion, and with
/// `with_paper` the study's three numbers.
fn rows_table(rows: &[TableRow], with_paper: bool) -> Table {
    let cols: Vec<String> = COLUMNS.iter().map(|&d| column_key(d)).collect();
    let mut headers: Vec<String> = ["method", "attack", "gradient"].map(String::from).to_vec();
    headers.extend(cols.iter().map(|c| format!("dist={c}")));
    if with_paper {
        headers.push("study (0 / 0.1 / 0.2)".into());
    }
    let mut t = Table::left(headers);
    for r in rows {
        let mut cells = vec![r.method.clone(), r.attack.clone(), r.gradient.clone()];
        cells.extend(cols.iter().map(|c| value_text(r, c)));
        if with_paper {
            cells.push(match &r.paper {
                Some(p) => cols
                    .iter()
                    .map(|c| cell(p.get(c).copied()))
                    .collect::<Vec<_>>()
                    .join(" / "),
                None => String::new(),
            });
        }
        t.row(cells);
    }
    t
}

/// `table2.md`: Table 2 as reproduced, the study's numbers beside it, then the Gaussian table and
/// the checks beyond the study.
pub fn table2_markdown(g: &Gathered, plan: &Plan) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Table 2, reproduced ({} scale, {} seed{})\n\nError (%) on the first {} MNIST test images at average distortion per pixel 0, 0.1 and 0.2 (interpolated along each {}-level sweep).{}\n",
        plan.scale.name,
        plan.seeds,
        if plan.seeds == 1 { "" } else { "s" },
        plan.scale.test_images,
        plan.scale.levels,
        seeds_sentence(plan)
    );
    s.push_str("## Gradient-sign noise\n\n");
    s.push_str(&rows_table(&g.table2, true).markdown());
    s.push_str("\n## Gaussian noise\n\n");
    s.push_str(&rows_table(&g.gaussian, false).markdown());
    s.push_str("\n## The exact gradient and the one Caffe computed\n\n");
    s.push_str(&gradients_table(g).markdown());
    s.push_str(&format!(
        "\n## Beyond the study: the adversarial committee under other attacks\n\nOn the first {} test images, {} levels.\n\n",
        plan.scale.extra_images, plan.scale.extra_levels
    ));
    s.push_str(&rows_table(&g.beyond, false).markdown());
    s
}

/// The gradient comparison as a table: per model, images whose true class's term is exactly 0
/// under each rule, and how many gradient signs differ.
fn gradients_table(g: &Gathered) -> Table {
    let mut t = Table::left([
        "model",
        "images",
        "dz_y = 0, exact",
        "dz_y = 0, caffe-f32",
        "images with a differing sign",
        "pixels with a differing sign",
        "largest share of one image's signs",
    ]);
    for (label, c) in &g.gradients {
        let n = |k: &str| {
            c[k].as_u64()
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into())
        };
        t.row([
            label.clone(),
            n("images"),
            n("true_term_lost_exact"),
            n("true_term_lost_caffe_f32"),
            n("images_sign_differs"),
            format!("{} of {}", n("pixels_sign_differs"), n("pixels")),
            format!(
                "{:.1}%",
                100.0
                    * c["max_image_fraction_sign_differs"]
                        .as_f64()
                        .unwrap_or(f64::NAN)
            ),
        ]);
    }
    t
}

/// What is known about each row's agreement with the study, beyond the numbers.
fn known(key: &str) -> &'static str {
    match key {
        "none" => "The study's basic model. Its gradient in float32 Caffe loses the true class's term for confident images (see the caffe-f32 row and docs/math.md): the exact gradient is the stronger attack.",
        "dropout" => "The study does not say which dropout model Table 2 uses; this row uses Table 1's All (dropout on every layer), the most robust to gradient sign in its section 5.1.",
        "lowpass" | "lowpass+dropout" => "The 5x5 kernel with noise 0.1 injected before it: the study enhances its filter with injected noise but gives no level (docs/defences.md). Attacked through the classifier alone, as the study did, and white-box through the filter.",
        "dae" | "dae+dropout" => "The study attacks the classifier and cleans the examples with the autoencoder; the white-box row differentiates through the autoencoder too.",
        "committee" => "Six LeNets with different seeds, their softmax outputs averaged, attacked through the averaged prediction.",
        "adv" => "The last snapshot of staged adversarial training alone (docs/adversarial-training.md for eps and c, which the study does not give).",
        "adv-committee" => "All six snapshots averaged. See the checks beyond the study: if white-box robustness is not matched under transfer and PGD, the committee's advantage is gradient masking.",
        _ => "",
    }
}

/// A row "agrees" with the study at a column when its error is within this many percentage
/// points of the study's ...
pub const AGREES_WITHIN_POINTS: f64 = 0.5;
/// ... or within this share of the study's error (the larger allowance wins): at the small
/// scales of `--quick` and at errors of tens of percent, seeds alone move a number by points.
pub const AGREES_WITHIN_SHARE: f64 = 0.1;

/// The rule behind "agrees", as the report states it.
pub fn agreement_rule() -> String {
    format!(
        "a number agrees with the study's when it differs by at most {AGREES_WITHIN_POINTS} \
         percentage points or by at most {:.0}% of the study's number, whichever allows more; \
         otherwise it is higher or lower",
        100.0 * AGREES_WITHIN_SHARE
    )
}

/// A sentence comparing a row with the study's numbers, by [`agreement_rule`].
fn agreement(r: &TableRow) -> String {
    let Some(paper) = &r.paper else {
        return String::new();
    };
    let mut parts = Vec::new();
    for d in COLUMNS {
        let c = column_key(d);
        if let (Some(Some(ours)), Some(theirs)) = (r.error_pct.get(&c), paper.get(&c)) {
            let diff = ours - theirs;
            let verdict = if diff.abs() <= AGREES_WITHIN_POINTS
                || diff.abs() <= AGREES_WITHIN_SHARE * theirs
            {
                "agrees"
            } else if diff > 0.0 {
                "higher"
            } else {
                "lower"
            };
            parts.push(format!(
                "at {c}: {ours:.2} vs {theirs:.2} ({verdict}, {diff:+.2})"
            ));
        }
    }
    parts.join("; ")
}

/// `report.html`: one page, no network: the tables, the figures inline, and a row-by-row
/// account of what agrees with the study and what does not.
pub fn report_html(g: &Gathered, plan: &Plan, figures: &[(String, String)]) -> String {
    let mut s = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>advmnist: the study reproduced</title>\n<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;line-height:1.45}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #999;padding:3px 8px;text-align:left}th{background:#eee}figure{margin:1.5em 0}svg{max-width:100%;height:auto}</style></head><body>\n",
    );
    let _ = writeln!(
        s,
        "<h1>Robustness of deep convolutional networks: the study reproduced</h1>\n<p>Uličný, Lundström and Byttner, ISICS 2016, reproduced by advmnist {} at the <b>{}</b> scale with {} seed(s): {} test images and {} levels per sweep. Errors are in %, at average distortion per pixel 0, 0.1 and 0.2, interpolated along each sweep.{}</p>",
        env!("CARGO_PKG_VERSION"),
        plan.scale.name,
        plan.seeds,
        plan.scale.test_images,
        plan.scale.levels,
        escape(&seeds_sentence(plan))
    );
    if plan.scale.name != "full" {
        s.push_str("<p><b>This is not the study's scale</b>: models are trained for a few hundred iterations and the sweeps are small, so the numbers say little; the rows and files are those of the full run.</p>\n");
    }
    s.push_str("<h2>Table 2: gradient-sign noise</h2>\n");
    s.push_str(&rows_table(&g.table2, true).html());
    let _ = writeln!(
        s,
        "<h2>Row by row</h2>\n<p>Each of the study's rows against its numbers. The rule: {}.</p>\n<ul>",
        escape(&agreement_rule())
    );
    for r in g.table2.iter().filter(|r| r.paper.is_some()) {
        let _ = writeln!(
            s,
            "<li><b>{}</b>: {}. {}</li>",
            escape(&r.method),
            agreement(r),
            escape(known(&r.key))
        );
    }
    s.push_str("</ul>\n<h2>Gaussian noise</h2>\n");
    s.push_str(&rows_table(&g.gaussian, false).html());
    s.push_str("<h2>The exact gradient and the one Caffe computed</h2>\n<p>Caffe's SoftmaxWithLoss computes the true class's entry of the loss gradient as p_y - 1 in float32, which is exactly 0 once p_y rounds to 1: the true class's term leaves the input gradient and its signs turn (docs/committees.md). Counted on the sweep's test images:</p>\n");
    s.push_str(&gradients_table(g).html());
    s.push_str("<h2>Beyond the study: is the adversarial committee's robustness real?</h2>\n");
    s.push_str(&rows_table(&g.beyond, false).html());
    s.push_str(&beyond_verdict(g));
    s.push_str("<h2>The one row that does not reproduce</h2>\n");
    s.push_str(&adv_row_verdict(g));
    s.push_str(&super::soundness::html(g, plan));
    for (title, svg) in figures {
        let _ = writeln!(
            s,
            "<figure>{svg}<figcaption>{}</figcaption></figure>",
            escape(title)
        );
    }
    s.push_str("<p>Every number comes from the sweep files under <code>jobs/</code>; <code>manifest.json</code> lists every model's hash, seed and configuration.</p>\n</body></html>\n");
    s
}

/// The plain answer: does the adversarial committee's advantage survive other attacks?
fn beyond_verdict(g: &Gathered) -> String {
    let at = |attack_prefix: &str| {
        g.beyond
            .iter()
            .find(|r| r.key == "adv-committee" && r.attack.starts_with(attack_prefix))
            .and_then(|r| r.error_pct.get("0.1").copied().flatten())
    };
    let (Some(white), Some(pgd), Some(transfer)) = (
        at("white-box gradient sign"),
        at("PGD"),
        at("transfer from an independent"),
    ) else {
        return "<p>Not every check finished, or distortion 0.1 lies outside their sweeps: no verdict.</p>\n".into();
    };
    let member = at("crafted on each single member");
    let worst = [Some(pgd), Some(transfer), member]
        .into_iter()
        .flatten()
        .fold(white, f64::max);
    format!(
        "<p>At distortion 0.1 the adversarial committee's error is {white:.2}% under the study's gradient sign, {pgd:.2}% under PGD through it, {transfer:.2}% on examples crafted on an independent LeNet{}. {}</p>\n",
        member
            .map(|m| format!(", and {m:.2}% on the strongest single member's"))
            .unwrap_or_default(),
        if worst > white + 5.0 {
            format!("Another attack does {:.1} points better than the study's: part of the committee's robustness is the attack's weakness (gradient masking), not the committee's strength.", worst - white)
        } else {
            "No other attack does more than 5 points better than the study's: the advantage survives these checks.".into()
        }
    )
}

/// The verdict on the study's row "adversarial training after 5 stages", in one paragraph with
/// this run's numbers: reproduced or not by the declared rule, the checks that show why (the
/// last snapshot under transfer, its own gradient and PGD), the declared ablation's result when
/// the run folder holds it, and the on-line baseline beside it.
pub fn adv_row_verdict(g: &Gathered) -> String {
    use crate::experiments::reproduce::ablation::{CLEAN_WITHIN, REPRODUCES_WITHIN, STUDY_ROW};
    let row = g
        .table2
        .iter()
        .find(|r| r.key == "adv" && r.paper.is_some());
    let value = |r: &TableRow, col: &str| r.error_pct.get(col).copied().flatten();
    let Some((clean, at01, at02)) =
        row.and_then(|r| Some((value(r, "0")?, value(r, "0.1")?, value(r, "0.2")?)))
    else {
        return "<p>The row's sweep did not reach distortion 0.2: no verdict.</p>\n".into();
    };
    let reproduced = (clean - STUDY_ROW[0]).abs() <= CLEAN_WITHIN
        && (at01 - STUDY_ROW[1]).abs() <= REPRODUCES_WITHIN
        && (at02 - STUDY_ROW[2]).abs() <= REPRODUCES_WITHIN;
    let beyond = |key: &str, attack_prefix: &str| {
        g.beyond
            .iter()
            .find(|r| r.key == key && r.attack.starts_with(attack_prefix))
            .and_then(|r| value(r, "0.1"))
    };
    let mut s = format!(
        "<p><b>Adversarial training after 5 stages</b>: {clean:.2} / {at01:.1} / {at02:.1}% at distortion 0 / 0.1 / 0.2 against the study's {} / {} / {}: <b>{}</b> (reproduced means within {REPRODUCES_WITHIN} points at 0.1 and 0.2 and within {CLEAN_WITHIN} clean, declared in docs/adversarial-training.md before the ablation ran).",
        STUDY_ROW[0],
        STUDY_ROW[1],
        STUDY_ROW[2],
        if reproduced { "reproduced" } else { "not reproduced" }
    );
    if let (Some(white), Some(pgd), Some(transfer)) = (
        beyond("adv", "white-box gradient sign"),
        beyond("adv", "PGD"),
        beyond("adv", "transfer from an independent"),
    ) {
        let _ = write!(
            s,
            " Why, as the checks show it: at distortion 0.1 the last snapshot errs on {transfer:.1}% of the examples crafted on an independent LeNet but on {white:.1}% of its own gradient-sign examples and {pgd:.1}% under PGD{}. It has learnt the examples it was shown, not robustness: each stage's set was made by the snapshot before, whose gradient the next one no longer shares (docs/adversarial-training.md, \"Diagnostics\": consecutive snapshots agree on 52 to 58% of their gradient signs at the full scale).",
            if transfer + 20.0 < white {
                ", a gap of the kind that masks a gradient rather than removes it"
            } else {
                ""
            }
        );
    }
    match &g.ablation {
        Some(a) => {
            let closest = a.rows.iter().find(|r| r.key == a.closest);
            let _ = write!(
                s,
                " In the declared ablation in this folder ({} cells: eps, c, a learning-rate restart, the newest set only, a refreshed set), {}{}.",
                a.rows.iter().filter(|r| r.cell.is_some()).count(),
                if a.reproducing.is_empty() {
                    "no cell reproduces the row".to_string()
                } else {
                    format!("the row is reproduced by {}", a.reproducing.join(", "))
                },
                closest
                    .map(|c| format!(
                        "; the closest at 0.1 is {} with {:.2} / {:.1} / {:.1}%",
                        c.key, c.last[0].mean, c.last[1].mean, c.last[2].mean
                    ))
                    .unwrap_or_default()
            );
            let default = a.rows.iter().find(|r| r.default);
            if let Some((d, j)) =
                default.and_then(|d| Some((d, crate::report::ablation::within_intervals(d)?)))
            {
                let at = |i: usize| {
                    format!(
                        "{:.1} [{:.1}, {:.1}]",
                        d.last[i].mean, j[i].1, j[i].2
                    )
                };
                let _ = write!(
                    s,
                    " Over {} seeds the default cell's last snapshot errs on {} at 0.1 and {} at 0.2 (95% intervals), with a clean error of {:.2} [{:.2}, {:.2}]: the study's {} and {} lie {} these intervals{}.",
                    d.base_seeds.len(),
                    at(1),
                    at(2),
                    d.last[0].mean,
                    j[0].1,
                    j[0].2,
                    STUDY_ROW[1],
                    STUDY_ROW[2],
                    match (j[1].0, j[2].0) {
                        (true, true) => "within",
                        (false, false) => "outside",
                        _ => "partly within",
                    },
                    if j[1].0 && j[2].0 {
                        ", so one staged run's last snapshot cannot be told apart from the study's at 0.1 and 0.2"
                    } else {
                        ""
                    }
                );
            }
        }
        None => s.push_str(" The declared ablation (<code>advmnist reproduce --ablation advtrain</code> on this folder) has not run here; docs/adversarial-training.md gives its full-scale result."),
    }
    if let (Some(white), Some(pgd)) = (
        beyond("online", "white-box gradient sign"),
        beyond("online", "PGD"),
    ) {
        let _ = write!(
            s,
            " The on-line baseline (Goodfellow et al.'s training, examples from the current weights at every batch) errs on {white:.1}% of its own gradient-sign examples and {pgd:.1}% under PGD at 0.1."
        );
    }
    s.push_str("</p>\n");
    s
}

/// The name of the report's set of files (its manifest is `report.sha256`).
pub const REPORT_SET: &str = "report";

/// Writes the report files into `out` (created if missing): `table2.json`, `table2.md`,
/// `gaussian.json`, `beyond.json`, `soundness.json`, `soundness.md`, the figures,
/// `report.html` and `manifest.json`.
pub fn write_report(
    out: &Path,
    plan: &Plan,
    g: &Gathered,
    figures: &[CurvePlot],
    manifest: &serde_json::Value,
) -> Result<Vec<String>, WriteError> {
    std::fs::create_dir_all(out).map_err(|source| WriteError {
        path: out.into(),
        source,
    })?;
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (
            "table2.json".into(),
            serde_json::to_vec_pretty(&g.table2).expect("plain data"),
        ),
        (
            "gaussian.json".into(),
            serde_json::to_vec_pretty(&g.gaussian).expect("plain data"),
        ),
        (
            "beyond.json".into(),
            serde_json::to_vec_pretty(&g.beyond).expect("plain data"),
        ),
        ("table2.md".into(), table2_markdown(g, plan).into_bytes()),
        (
            "soundness.json".into(),
            serde_json::to_vec_pretty(&g.soundness).expect("plain data"),
        ),
        (
            "soundness.md".into(),
            super::soundness::markdown(g, plan).into_bytes(),
        ),
    ];
    let mut inline = Vec::new();
    for f in figures {
        let svg = plot::error_vs_distortion_svg(&f.result, f.title);
        inline.push((f.title.to_string(), svg.clone()));
        files.push((f.file.to_string(), svg.into_bytes()));
    }
    files.push((
        "report.html".into(),
        report_html(g, plan, &inline).into_bytes(),
    ));
    files.push((
        "manifest.json".into(),
        serde_json::to_vec_pretty(manifest).expect("plain data"),
    ));
    // One set, with its manifest `report.sha256` written last (`io_safety::write_set`): a
    // reader never takes a mix of two runs' files for a report.
    let set: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    write_set(out, REPORT_SET, &set)?;
    let mut names: Vec<String> = files.into_iter().map(|(n, _)| n).collect();
    names.push(format!("{REPORT_SET}.sha256"));
    Ok(names)
}

/// `manifest.json`: every job's record (models' hashes, seeds, configurations, wall times), the
/// data's checksums, advmnist's version and commit, the threads used.
pub fn manifest(
    plan: &Plan,
    records: &BTreeMap<String, JobRecord>,
    data_sha256: &str,
    data_checksums: &str,
    threads: usize,
) -> serde_json::Value {
    serde_json::json!({
        "advmnist_version": env!("CARGO_PKG_VERSION"),
        "git_commit": option_env!("ADVMNIST_GIT_COMMIT").unwrap_or("unknown"),
        "scale": plan.scale,
        "seeds": plan.seeds,
        "threads": threads,
        "data_sha256": data_sha256,
        "data_checksums": data_checksums,
        "jobs": plan.jobs.iter().map(|j| serde_json::json!({
            "name": j.name,
            "about": j.about,
            "depends_on": j.dependencies(),
            "record": records.get(&j.name),
        })).collect::<Vec<_>>(),
        "total_job_wall_s": records.values().map(|r| r.wall_s).sum::<f64>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statistics::summarise_percentages;

    fn row_of(summary: Option<crate::statistics::Summary>) -> TableRow {
        TableRow {
            key: "none".into(),
            method: "No method".into(),
            noise: "fgsm".into(),
            attack: "own".into(),
            gradient: "exact".into(),
            error_pct: BTreeMap::from([("0".into(), summary.as_ref().map(|s| s.mean))]),
            over_seeds: BTreeMap::from([("0".into(), summary)]),
            paper: None,
            jobs: Vec::new(),
        }
    }

    #[test]
    fn cells_show_the_mean_and_with_several_seeds_the_interval_and_each_seed() {
        // One seed: the mean alone, as the one-seed report has always printed it.
        let one = row_of(Some(summarise_percentages(&[2.9], &[500])));
        assert_eq!(value_text(&one, "0"), "2.90");
        // Two seeds: the mean, its interval (within 0-100 although Student's t on these two
        // values reaches below 0) and each seed's value in the order of the seeds.
        let s = summarise_percentages(&[1.8, 4.0], &[500, 500]);
        let (low, high) = (s.ci95_low.unwrap(), s.ci95_high.unwrap());
        assert!(0.0 < low && high < 100.0);
        let two = row_of(Some(s));
        assert_eq!(
            value_text(&two, "0"),
            format!("2.90 [{low:.2}, {high:.2}] (seeds: 1.80, 4.00)")
        );
        assert_eq!(value_text(&row_of(None), "0"), "-");
    }

    #[test]
    fn the_verdict_paragraph_reads_the_ablation_s_seed_intervals_when_it_ran_in_the_folder() {
        use crate::report::ablation::tests::{ablation, cell, measured_default, row};
        let adv = TableRow {
            key: "adv".into(),
            method: "Adversarial training after 5 stages".into(),
            error_pct: BTreeMap::from([
                ("0".into(), Some(1.29)),
                ("0.1".into(), Some(73.9)),
                ("0.2".into(), Some(89.5)),
            ]),
            paper: Some(BTreeMap::from([("0.1".into(), 44.5)])),
            ..row_of(None)
        };
        let mut g = Gathered {
            table2: vec![adv],
            gaussian: Vec::new(),
            beyond: Vec::new(),
            gradients: Vec::new(),
            soundness: Vec::new(),
            ablation: None,
        };
        let alone = adv_row_verdict(&g);
        assert!(
            alone.contains("1.29 / 73.9 / 89.5%") && alone.contains("<b>not reproduced</b>"),
            "{alone}"
        );
        assert!(alone.contains("has not run here"), "{alone}");
        // The default cell over three seeds straddles the study's 44.5 and 92.1.
        g.ablation = Some(ablation(vec![
            measured_default(),
            row(
                Some(cell("eps0.3-c0")),
                [&[1.23], &[50.5], &[53.3]],
                96.8,
                22.2,
            ),
        ]));
        let both = adv_row_verdict(&g);
        assert!(both.contains("no cell reproduces the row; the closest at 0.1 is eps0.3-c0 with 1.23 / 50.5 / 53.3%"), "{both}");
        assert!(
            both.contains("Over 3 seeds the default cell's last snapshot errs on 58.2 ["),
            "{both}"
        );
        assert!(both.contains("lie within these intervals, so one staged run's last snapshot cannot be told apart"), "{both}");
        // Three seeds close together, far from the study's numbers: outside, and no such claim.
        g.ablation = Some(ablation(vec![row(
            Some(cell("eps0.25-c0.2")),
            [&[1.3, 1.3, 1.3], &[70.0, 71.0, 72.0], &[80.0, 80.5, 81.0]],
            99.7,
            18.7,
        )]));
        let narrow = adv_row_verdict(&g);
        assert!(
            narrow.contains("lie outside these intervals.") && !narrow.contains("told apart"),
            "{narrow}"
        );
    }
}
