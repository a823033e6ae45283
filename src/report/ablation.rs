//! The declared ablation's report (`reproduce --ablation advtrain`): `ablation-advtrain.md`,
//! `ablation-advtrain.json` and the verdict on the study's row, in words computed from the
//! gathered numbers by the rules declared before the grid ran (docs/adversarial-training.md).

use crate::experiments::reproduce::ablation::{
    Ablation, AblationRow, CLEAN_WITHIN, REPRODUCES_WITHIN, STUDY_ROW,
};
use crate::io_safety::{write_set, WriteError};
use crate::report::table::{Align, Table};
use crate::statistics::Summary;
use std::path::Path;

/// The files of the ablation's report, written as one set (`ablation-advtrain.sha256` last).
pub const FILES: [&str; 2] = ["ablation-advtrain.md", "ablation-advtrain.json"];

/// A cell's text: the mean; with several seeds, its 95% interval and each seed's value.
fn text(s: &Summary) -> String {
    match (s.ci95_low, s.ci95_high) {
        (Some(lo), Some(hi)) => {
            let seeds: Vec<String> = s.values.iter().map(|v| format!("{v:.1}")).collect();
            format!("{:.1} [{lo:.1}, {hi:.1}] ({})", s.mean, seeds.join(", "))
        }
        _ => format!("{:.1}", s.mean),
    }
}

fn clean_text(s: &Summary) -> String {
    match s.ci95_low {
        Some(_) => text(s),
        None => format!("{:.2}", s.mean),
    }
}

/// The row's name in the table: its key, the variant, and the marks.
fn name(r: &AblationRow) -> String {
    let mut name = match &r.cell {
        Some(c) if c.variant.is_study() => format!("eps {}, c {}", c.eps, c.c),
        Some(c) => format!("{} (eps {}, c {})", c.key, c.eps, c.c),
        None => "on-line (alpha 0.5, eps 0.25, random start)".into(),
    };
    if r.default {
        name.push_str(", **default**");
    }
    if r.reproduces {
        name.push_str(", **reproduces**");
    }
    name
}

/// The table: the study's row first, then every cell in the declared order, then the on-line
/// baseline.
pub fn table(a: &Ablation) -> Table {
    let right = |h: &str| (h.to_string(), Align::Right);
    let mut t = Table::new([
        ("row".to_string(), Align::Left),
        right("seeds"),
        right("last: clean"),
        right("last: 0.1"),
        right("last: 0.2"),
        right("committee: clean"),
        right("committee: 0.1"),
        right("committee: 0.2"),
        right("Gaussian 0.1"),
        right("transfer 0.1"),
        right("PGD 0.1"),
    ]);
    let mut study = vec!["*the study's Table 2 row*".to_string(), "-".into()];
    study.extend(STUDY_ROW.iter().map(|v| format!("{v}")));
    study.extend(std::iter::repeat_n("-".to_string(), 6));
    t.row(study);
    for r in &a.rows {
        let mut cells = vec![name(r), r.base_seeds.len().to_string()];
        cells.push(clean_text(&r.last[0]));
        cells.extend(r.last[1..].iter().map(text));
        match &r.committee {
            Some(c) => {
                cells.push(clean_text(&c[0]));
                cells.extend(c[1..].iter().map(text));
            }
            None => cells.extend(std::iter::repeat_n("-".to_string(), 3)),
        }
        cells.extend([text(&r.gaussian), text(&r.transfer), text(&r.pgd)]);
        t.row(cells);
    }
    t
}

/// The spread of a row's error at 0.1 over its seeds (largest minus smallest), when it has
/// several.
fn spread(r: &AblationRow) -> Option<f64> {
    let v = &r.last[1].values;
    (v.len() > 1).then(|| {
        v.iter().cloned().fold(f64::MIN, f64::max) - v.iter().cloned().fold(f64::MAX, f64::min)
    })
}

/// For a row with several seeds: whether each of the study's three numbers (clean, 0.1, 0.2)
/// lies within the row's 95% interval of the last snapshot, with the interval.
pub(crate) fn within_intervals(r: &AblationRow) -> Option<[(bool, f64, f64); 3]> {
    let mut out = [(false, 0.0, 0.0); 3];
    for (i, s) in r.last.iter().enumerate() {
        let (lo, hi) = (s.ci95_low?, s.ci95_high?);
        out[i] = ((lo..=hi).contains(&STUDY_ROW[i]), lo, hi);
    }
    Some(out)
}

/// The verdict, one sentence per declared question, from the numbers.
pub fn verdict(a: &Ablation) -> Vec<String> {
    let row = |key: &str| a.rows.iter().find(|r| r.key == key);
    let mut out = Vec::new();
    let at01 = |r: &AblationRow| r.last[1].mean;
    if a.reproducing.is_empty() {
        out.push(format!(
            "**No cell reproduces the study's row** (last snapshot within {REPRODUCES_WITHIN} points of {} and {} at distortion 0.1 and 0.2, clean within {CLEAN_WITHIN} of {}).",
            STUDY_ROW[1], STUDY_ROW[2], STUDY_ROW[0]
        ));
    } else {
        out.push(format!(
            "**Cells that reproduce the study's row**: {}.",
            a.reproducing.join(", ")
        ));
    }
    if let Some(c) = row(&a.closest) {
        out.push(format!(
            "The closest cell at distortion 0.1 is {} at {:.1}% ({:.2} / {:.1} / {:.1} at 0 / 0.1 / 0.2, against {} / {} / {}).",
            c.key, at01(c), c.last[0].mean, c.last[1].mean, c.last[2].mean, STUDY_ROW[0], STUDY_ROW[1], STUDY_ROW[2]
        ));
    }
    let Some(default) = a.rows.iter().find(|r| r.default) else {
        return out;
    };
    let spread = spread(default);
    match spread {
        Some(s) => out.push(format!(
            "The default cell's error at 0.1 spreads over {s:.1} points across its {} seeds; a difference from it within that spread is not counted as an effect.",
            default.base_seeds.len()
        )),
        None => out.push(
            "The seeds' spread is not measured in this run (one seed): differences below are single runs."
                .into(),
        ),
    }
    // The study's row against every interval over seeds (the rule above reads the mean; a
    // single staged run is one draw, and the seeds say how far one draw goes).
    let mut inside_all = Vec::new();
    for r in a.rows.iter().filter(|r| r.cell.is_some()) {
        let Some(judged) = within_intervals(r) else {
            continue;
        };
        let words: Vec<String> = judged
            .iter()
            .zip(["clean", "0.1", "0.2"])
            .zip(STUDY_ROW)
            .map(|(((inside, lo, hi), level), study)| {
                format!(
                    "{study} at {level} {} [{lo:.1}, {hi:.1}]",
                    if *inside { "inside" } else { "outside" }
                )
            })
            .collect();
        out.push(format!(
            "The study's row against {}'s intervals over {} seeds: {}.",
            r.key,
            r.base_seeds.len(),
            words.join(", ")
        ));
        if judged[1].0 && judged[2].0 {
            inside_all.push(r.key.clone());
        }
    }
    if !inside_all.is_empty() {
        out.push(format!(
            "At distortion 0.1 and 0.2 the study's row is within what {} gives from seed to seed: one staged run's last snapshot cannot tell it apart from the study's.",
            inside_all.join(" and ")
        ));
    }
    let effect = |d: f64| match spread {
        Some(s) => d.abs() > s,
        None => d.abs() > 0.0,
    };
    // eps: which eps cells come within 5 points at 0.1.
    let near: Vec<String> = a
        .rows
        .iter()
        .filter_map(|r| {
            let c = r.cell.as_ref()?;
            (c.variant.is_study() && (at01(r) - STUDY_ROW[1]).abs() <= REPRODUCES_WITHIN)
                .then(|| r.key.clone())
        })
        .collect();
    out.push(if near.is_empty() {
        match spread {
            // One seed per cell cannot exclude what the seeds' spread could hide.
            Some(s) if s > REPRODUCES_WITHIN => format!(
                "eps: no eps of the grid brings the last snapshot within 5 points of 44.5% at 0.1 with one seed, but the default's seeds spread over {s:.1} points: the unstated eps is not excluded on one seed per cell."
            ),
            _ => "eps: no eps of the grid brings the last snapshot within 5 points of 44.5% at 0.1, with c 0 or 0.2: the unstated eps is excluded as the cause.".into(),
        }
    } else {
        format!(
            "eps: within 5 points of 44.5% at 0.1: {}.",
            near.join(", ")
        )
    });
    // c: c = 0 against c = 0.2 at each eps.
    let diffs: Vec<String> = crate::experiments::reproduce::ablation::EPS
        .iter()
        .filter_map(|eps| {
            let zero = row(&format!("eps{eps}-c0"))?;
            let point2 = row(&format!("eps{eps}-c0.2"))?;
            Some(format!("{:+.1}", at01(point2) - at01(zero)))
        })
        .collect();
    out.push(format!(
        "c: c 0.2 minus c 0 at 0.1, eps 0.1 to 0.3: {} points.",
        diffs.join(", ")
    ));
    for (key, what) in [
        ("restart", "a learning-rate restart at each stage"),
        ("newest", "the newest set only"),
        ("fresh", "a refreshed newest set"),
    ] {
        if let Some(r) = row(key) {
            let d = at01(r) - at01(default);
            out.push(format!(
                "{what} ({key}): {:.1}% at 0.1, {d:+.1} points from the default{}.",
                at01(r),
                if effect(d) {
                    ""
                } else {
                    ", within the seeds' spread"
                }
            ));
        }
    }
    // Gradient masking: own-gradient error below Gaussian noise's, or far below PGD's.
    let masked: Vec<String> = a
        .rows
        .iter()
        .filter(|r| r.last[1].mean < r.gaussian.mean || r.pgd.mean - r.last[1].mean > 40.0)
        .map(|r| r.key.clone())
        .collect();
    if !masked.is_empty() {
        out.push(format!(
            "Signs of a masked gradient (own-gradient error at 0.1 below Gaussian noise's, or PGD's more than 40 points above it): {}.",
            masked.join(", ")
        ));
    }
    out
}

/// `ablation-advtrain.md`.
pub fn markdown(a: &Ablation) -> String {
    let mut s = format!(
        "# The declared ablation of staged adversarial training ({} scale)\n\n\
         Error (%) of each cell's last snapshot and of its committee (every snapshot averaged) under \
         gradient-sign examples made with their own gradient, at average distortion per pixel 0, 0.1 \
         and 0.2 (interpolated along a sweep, as Table 2); of the last snapshot at 0.1 under Gaussian \
         noise, under gradient-sign examples crafted on an independent LeNet (transfer) and under PGD. \
         The grid and the reading of each outcome were declared before it ran \
         (docs/adversarial-training.md, \"The declared ablation\"). With several seeds a cell reads: \
         mean [95% interval] (each seed); the interval: {}.\n\n",
        a.scale, a.ci95_method
    );
    s.push_str(&table(a).markdown());
    s.push_str("\n## Verdict\n\n");
    for line in verdict(a) {
        s.push_str(&format!("- {line}\n"));
    }
    s
}

/// Writes the report's files into `dir` as one set.
pub fn write(dir: &Path, a: &Ablation) -> Result<(), WriteError> {
    let md = markdown(a);
    let mut json = serde_json::to_string_pretty(a).expect("plain data");
    json.push('\n');
    write_set(
        dir,
        "ablation-advtrain",
        &[(FILES[0], md.as_bytes()), (FILES[1], json.as_bytes())],
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::experiments::reproduce::ablation::{cells, meets_the_declared_rule, Cell};
    use crate::experiments::reproduce::Scale;
    use crate::statistics::summarise_percentages;

    /// A row whose last snapshot errs on `last` (one value per seed, each level) and whose
    /// other measures are plain, on 10,000 test images per seed.
    pub(crate) fn row(
        cell: Option<Cell>,
        last: [&[f64]; 3],
        pgd: f64,
        gaussian: f64,
    ) -> AblationRow {
        let s = |v: &[f64]| summarise_percentages(v, &vec![10_000; v.len()]);
        let n = last[0].len();
        let last3 = [s(last[0]), s(last[1]), s(last[2])];
        let reproduces = cell.is_some() && meets_the_declared_rule(&last3);
        AblationRow {
            key: cell.as_ref().map_or("online".into(), |c| c.key.clone()),
            default: cell.as_ref().is_some_and(Cell::is_default),
            cell,
            base_seeds: [1, 101, 201][..n].to_vec(),
            reproduces,
            last: last3,
            committee: None,
            gaussian: s(&vec![gaussian; n]),
            transfer: s(&vec![5.0; n]),
            pgd: s(&vec![pgd; n]),
        }
    }

    pub(crate) fn ablation(rows: Vec<AblationRow>) -> Ablation {
        Ablation::new("test".into(), rows)
    }

    /// The default cell as measured at the full scale over seeds 1, 101 and 201
    /// (docs/adversarial-training.md): its seeds straddle the study's 44.5 and 92.1.
    pub(crate) fn measured_default() -> AblationRow {
        row(
            Some(cell("eps0.25-c0.2")),
            [
                &[1.29, 1.45, 1.11],
                &[73.9, 47.2, 53.5],
                &[89.5, 68.6, 69.1],
            ],
            99.7,
            18.7,
        )
    }

    pub(crate) fn cell(key: &str) -> Cell {
        cells(&Scale::full())
            .into_iter()
            .find(|c| c.key == key)
            .unwrap()
    }

    #[test]
    fn a_default_whose_seeds_straddle_the_study_is_called_indistinguishable_not_reproducing() {
        let a = ablation(vec![
            measured_default(),
            row(
                Some(cell("eps0.1-c0")),
                [&[0.69], &[23.1], &[93.9]],
                67.6,
                0.9,
            ),
            row(
                Some(cell("restart")),
                [&[1.51], &[78.9], &[86.2]],
                99.3,
                7.4,
            ),
        ]);
        let v = verdict(&a);
        let all = v.join("\n");
        assert!(v[0].starts_with("**No cell reproduces"), "{all}");
        assert!(v[1].contains("eps0.25-c0.2 at 58.2%"), "{all}");
        // The clean error is outside the default's interval, 0.1 and 0.2 inside.
        let line = v
            .iter()
            .find(|l| {
                l.starts_with("The study's row against eps0.25-c0.2's intervals over 3 seeds")
            })
            .unwrap_or_else(|| panic!("{all}"));
        assert!(line.contains("0.87 at clean outside"), "{line}");
        assert!(
            line.contains("44.5 at 0.1 inside") && line.contains("92.1 at 0.2 inside"),
            "{line}"
        );
        assert!(
            all.contains("within what eps0.25-c0.2 gives from seed to seed"),
            "{all}"
        );
        // A variant 20.7 points above the default's mean lies within its 26.7-point spread.
        assert!(all.contains("over 26.7 points across its 3 seeds"), "{all}");
        assert!(
            all.contains(
                "(restart): 78.9% at 0.1, +20.7 points from the default, within the seeds' spread"
            ),
            "{all}"
        );
        // One seed per cell cannot exclude eps when the seeds spread wider than the rule.
        assert!(all.contains("not excluded on one seed per cell"), "{all}");
        // PGD 41.5 points above the default's mean and 44.5 above eps0.1-c0's: both named as masking.
        assert!(
            all.contains("more than 40 points above it): eps0.25-c0.2, eps0.1-c0"),
            "{all}"
        );
    }

    #[test]
    fn a_cell_within_the_declared_distances_reproduces_and_a_narrow_default_excludes_effects() {
        let a = ablation(vec![
            row(
                Some(cell("eps0.25-c0.2")),
                [&[1.3, 1.3, 1.3], &[70.0, 71.0, 72.0], &[89.0, 89.5, 90.0]],
                80.0,
                5.0,
            ),
            row(
                Some(cell("eps0.1-c0")),
                [&[0.9], &[46.0], &[90.0]],
                60.0,
                1.0,
            ),
            row(Some(cell("newest")), [&[1.0], &[50.0], &[95.0]], 60.0, 1.0),
        ]);
        let v = verdict(&a);
        let all = v.join("\n");
        assert_eq!(
            v[0], "**Cells that reproduce the study's row**: eps0.1-c0.",
            "{all}"
        );
        assert!(v[1].contains("eps0.1-c0 at 46.0%"), "{all}");
        assert!(all.contains("44.5 at 0.1 outside"), "{all}");
        assert!(!all.contains("from seed to seed"), "{all}");
        assert!(
            all.contains("eps: within 5 points of 44.5% at 0.1: eps0.1-c0."),
            "{all}"
        );
        // -21 points against a 2-point spread is an effect: no "within the seeds' spread".
        assert!(
            all.contains("(newest): 50.0% at 0.1, -21.0 points from the default."),
            "{all}"
        );
        assert!(!all.contains("masked"), "{all}");
    }

    #[test]
    fn one_seed_everywhere_says_the_spread_is_not_measured() {
        let a = ablation(vec![row(
            Some(cell("eps0.25-c0.2")),
            [&[1.29], &[73.9], &[89.5]],
            99.96,
            13.3,
        )]);
        let all = verdict(&a).join("\n");
        assert!(all.contains("not measured in this run (one seed)"), "{all}");
        assert!(!all.contains("intervals over"), "{all}");
        assert!(
            all.contains("the unstated eps is excluded as the cause"),
            "{all}"
        );
    }
}
