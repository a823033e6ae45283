//! `advmnist advtrain-report`'s files: `diagnostics.md` (the tables), `diagnostics.svg` (each
//! snapshot's own-gradient FGSM error against distortion) and `diagnostics.json` (the
//! measurements, serialised).

use super::table::{Align, Table};
use crate::experiments::advtrain_diagnostics::{Diagnostics, DISTORTIONS};
use crate::experiments::sweep::{SweepResult, SweepRow};

/// The files, in the order they are written.
pub const DIAGNOSTICS_FILES: [&str; 3] = ["diagnostics.json", "diagnostics.md", "diagnostics.svg"];

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}"))
}

/// Per snapshot: clean error, own-gradient FGSM, Gaussian and PGD errors, gradient signs kept.
pub fn snapshot_table(d: &Diagnostics) -> Table {
    let mut columns = vec![("snapshot".to_string(), Align::Left)];
    columns.push(("clean".into(), Align::Right));
    for dist in DISTORTIONS {
        columns.push((format!("FGSM at {dist}"), Align::Right));
    }
    columns.push((format!("Gaussian at {}", DISTORTIONS[0]), Align::Right));
    columns.push((format!("PGD at {}", DISTORTIONS[0]), Align::Right));
    columns.push(("signs as the snapshot before".into(), Align::Right));
    let mut t = Table::new(columns);
    for s in &d.snapshots {
        let mut row = vec![s.stage.to_string(), format!("{:.2}", s.clean_error_pct)];
        row.extend(s.fgsm_pct.iter().map(|&v| pct(v)));
        row.push(pct(s.gaussian_pct));
        row.push(pct(s.pgd_pct));
        row.push(
            s.sign_agreement_with_previous
                .map_or("-".into(), |a| format!("{:.1}%", 100.0 * a)),
        );
        t.row(row);
    }
    t
}

/// The transfer matrix: a row per snapshot judged, a column per snapshot that made the
/// examples.
pub fn transfer_table(d: &Diagnostics) -> Table {
    let mut columns = vec![("judged by \\ made by".to_string(), Align::Left)];
    columns.extend((0..d.transfer_pct.len()).map(|j| (format!("snapshot {j}"), Align::Right)));
    let mut t = Table::new(columns);
    for (k, row) in d.transfer_pct.iter().enumerate() {
        let mut cells = vec![format!("snapshot {k}")];
        cells.extend(row.iter().enumerate().map(|(j, &v)| {
            if j == k {
                format!("**{}**", pct(v))
            } else {
                pct(v)
            }
        }));
        t.row(cells);
    }
    t
}

/// Per adversarial training set: its distortion and the scale of Eq. 3's second step.
pub fn set_table(d: &Diagnostics) -> Table {
    let mut t = Table::new([
        ("made by snapshot", Align::Left),
        ("images", Align::Right),
        ("same bytes as recorded", Align::Left),
        ("distortion", Align::Right),
        ("of the sign step", Align::Right),
        ("median largest gradient at X_R", Align::Right),
        ("times c", Align::Right),
        ("second step: mean change", Align::Right),
        ("median largest change", Align::Right),
    ]);
    for s in &d.sets {
        t.row([
            s.from_snapshot.to_string(),
            s.images.to_string(),
            match s.same_as_recorded {
                Some(true) => "yes".into(),
                Some(false) => "**no**".into(),
                None => "no record".to_string(),
            },
            format!("{:.4}", s.distortion),
            format!("{:.4}", s.sign_step_distortion),
            format!("{:.4}", s.median_largest_gradient),
            format!("{:.4}", d.c as f64 * s.median_largest_gradient),
            format!("{:.5}", s.second_step_mean_change),
            format!("{:.4}", s.second_step_median_largest_change),
        ]);
    }
    t
}

/// `diagnostics.md`.
pub fn markdown(d: &Diagnostics, run: &str) -> String {
    let s = &d.settings;
    let mut md = format!(
        "# Diagnostics of a staged adversarial-training run: {run}\n\nEq. 3 with eps = {} and c = {}. Errors in % on the first {} test images (PGD: the first {}), read at average distortion per pixel {} and {} along sweeps of {} levels (gradient sign and PGD with {} steps up to eps 0.5, Gaussian noise up to sigma 1), seed {}.\n\n",
        d.eps, d.c, s.test_images, s.pgd_images, DISTORTIONS[0], DISTORTIONS[1], s.levels, s.pgd_steps, s.seed
    );
    md.push_str("## Each snapshot\n\n");
    md.push_str("FGSM: each snapshot's own gradient sign. The last column: the share of input-gradient entries on the test images whose sign equals the previous snapshot's.\n\n");
    md.push_str(&snapshot_table(d).markdown());
    md.push_str(&format!(
        "\n## Transfer between snapshots\n\nError at distortion {} of each snapshot (row) on gradient-sign examples made by each snapshot (column); the diagonal, bold, is the own-gradient attack.\n\n",
        DISTORTIONS[0]
    ));
    md.push_str(&transfer_table(d).markdown());
    md.push_str("\n## The adversarial training sets\n\nEach set made again from its snapshot with Eq. 3, as the stage made it, on the training images the run used. Distortions are average distortion per pixel; \"times c\" is how far the second step moves the median image's most sensitive pixel before clipping.\n\n");
    md.push_str(&set_table(d).markdown());
    md.push_str(
        "\nThe measures are explained in docs/adversarial-training.md (\"Diagnostics\").\n",
    );
    md
}

/// `diagnostics.svg`: own-gradient FGSM error against distortion, a line per snapshot.
pub fn svg(d: &Diagnostics, run: &str) -> String {
    let rows = d
        .fgsm_curves
        .iter()
        .enumerate()
        .flat_map(|(k, curve)| {
            curve.iter().map(move |&(distortion, error_pct)| SweepRow {
                noise: "fgsm".into(),
                level: 0.0,
                distortion,
                model: format!("snapshot {k}"),
                error_pct,
            })
        })
        .collect();
    let result = SweepResult {
        noise: "fgsm".into(),
        rows,
        at: Vec::new(),
        wall_s: 0.0,
    };
    super::plot::error_vs_distortion_svg(
        &result,
        &format!("Own-gradient FGSM error of each snapshot: {run}"),
    )
}
