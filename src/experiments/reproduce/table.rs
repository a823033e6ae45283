//! Gathering finished sweeps into the study's Table 2, the checks beyond it, and the figures'
//! curves. Pure data: `report::reproduce` lays it out.

use super::plan::{soundness_job, AttackSetting, JobSpec, Plan, METHODS, SOUNDNESS_FILE};
use super::runner::RunDir;
use crate::experiments::sweep::{interpolate, SweepResult, SweepRow};
use crate::models::pipeline::AttackThrough;
use crate::statistics::{summarise_percentages, Summary};
use serde::Serialize;
use std::collections::BTreeMap;

/// The distortions of Table 2's columns.
pub const COLUMNS: [f64; 3] = [0.0, 0.1, 0.2];

/// Column keys as the JSON writes them.
pub fn column_key(d: f64) -> String {
    if d == 0.0 {
        "0".into()
    } else {
        format!("{d}")
    }
}

/// The on-line adversarial training baseline's label (`plan::online_job`).
pub const ONLINE_LABEL: &str =
    "On-line adversarial training (Goodfellow et al.; alpha 0.5, eps 0.25, random start)";

/// One row of the reproduced table: a method under one attack setting and gradient.
#[derive(Clone, Debug, Serialize)]
pub struct TableRow {
    pub key: String,
    pub method: String,
    pub noise: String,
    pub attack: String,
    pub gradient: String,
    /// Mean over seeds of the error (%) at each column's distortion (`None`: outside the sweep).
    pub error_pct: BTreeMap<String, Option<f64>>,
    /// Per column: n, mean, SD and 95% CI over the seeds (`statistics::summarise_percentages`),
    /// with each seed's error and test images (SD, CI, values and images only with 2 or more).
    pub over_seeds: BTreeMap<String, Option<Summary>>,
    /// The study's numbers, for the study's setting only.
    pub paper: Option<BTreeMap<String, f64>>,
    /// The sweep jobs behind the row, one per seed.
    pub jobs: Vec<String>,
}

/// Everything the report shows.
#[derive(Clone, Debug, Serialize)]
pub struct Gathered {
    /// Table 2: gradient sign, the study's attack setting, then the other settings and
    /// gradients.
    pub table2: Vec<TableRow>,
    /// The same methods under Gaussian noise.
    pub gaussian: Vec<TableRow>,
    /// The adversarial committee (and its references) under attacks the study did not make.
    pub beyond: Vec<TableRow>,
    /// What Caffe's float32 gradient changes, per model with a `caffe-f32` sweep (first seed):
    /// (method label, `models::gradient::RuleComparison` as written by the job).
    pub gradients: Vec<(String, serde_json::Value)>,
    /// The soundness table: every Table 2 row's evaluation, per repetition, in the study's
    /// order.
    pub soundness: Vec<SoundnessRow>,
    /// The declared ablation of staged adversarial training, when every one of its jobs (with
    /// the run's seeds) is finished in the folder (`reproduce --ablation advtrain`).
    #[serde(skip)]
    pub ablation: Option<super::ablation::Ablation>,
}

/// One Table 2 row evaluated by every attack (`experiments::evaluate`), as its job wrote it.
#[derive(Clone, Debug, Serialize)]
pub struct SoundnessRow {
    pub key: String,
    pub method: String,
    pub base_seed: u64,
    pub job: String,
    pub report: crate::experiments::evaluate::Report,
}

pub(super) fn read_sweep(dir: &RunDir, job: &str) -> Result<SweepResult, String> {
    let path = dir.job_dir(job).join("sweep.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not a sweep result: {e}", path.display()))
}

/// The curve (distortion, error %) of a finished sweep.
pub fn curve(result: &SweepResult) -> Vec<(f64, f64)> {
    result
        .rows
        .iter()
        .map(|r| (r.distortion, r.error_pct))
        .collect()
}

/// The pointwise maximum of several curves swept at the same levels (the strongest of several
/// sources at each level).
fn strongest(curves: &[Vec<(f64, f64)>]) -> Vec<(f64, f64)> {
    let n = curves.iter().map(|c| c.len()).min().unwrap_or(0);
    (0..n)
        .map(|i| {
            let d = curves.iter().map(|c| c[i].0).sum::<f64>() / curves.len() as f64;
            let e = curves.iter().map(|c| c[i].1).fold(f64::MIN, f64::max);
            (d, e)
        })
        .collect()
}

fn row(
    key: &str,
    method: &str,
    noise: &str,
    attack: &str,
    gradient: &str,
    per_seed: Curves,
    paper: Option<[f64; 3]>,
) -> TableRow {
    let mut error_pct = BTreeMap::new();
    let mut over_seeds = BTreeMap::new();
    let images: Vec<usize> = per_seed.iter().map(|(_, _, n)| *n).collect();
    for d in COLUMNS {
        let values: Option<Vec<f64>> = per_seed.iter().map(|(_, c, _)| interpolate(c, d)).collect();
        // An interpolated error is a weighted mean of two errors on the same images, so it
        // varies no more than a rate on that many images: the trials of the interval.
        let summary = values.map(|v| summarise_percentages(&v, &images));
        error_pct.insert(column_key(d), summary.as_ref().map(|s| s.mean));
        over_seeds.insert(column_key(d), summary);
    }
    TableRow {
        key: key.into(),
        method: method.into(),
        noise: noise.into(),
        attack: attack.into(),
        gradient: gradient.into(),
        error_pct,
        over_seeds,
        paper: paper.map(|p| {
            COLUMNS
                .iter()
                .zip(p)
                .map(|(&d, v)| (column_key(d), v))
                .collect()
        }),
        jobs: per_seed.into_iter().map(|(j, _, _)| j).collect(),
    }
}

/// Each seed's sweep job, its curve, and the number of test images it was swept on.
type Curves = Vec<(String, Vec<(f64, f64)>, usize)>;

/// The test images of sweep `job` (0 if `job` is not a sweep of `plan`).
fn sweep_images(plan: &Plan, job: &str) -> usize {
    match plan.job(job).map(|j| &j.spec) {
        Some(JobSpec::Sweep(s)) => s.test_images,
        _ => 0,
    }
}

/// Collects the curves of one (method, noise, attack, gradient, source) over the seeds.
fn per_seed(
    plan: &Plan,
    dir: &RunDir,
    method: &str,
    noise: &str,
    attack: AttackSetting,
    gradient: &str,
    source: Option<&str>,
) -> Result<Option<Curves>, String> {
    let mut out = Vec::new();
    for b in plan.base_seeds() {
        let Some(job) = plan.sweep_of(method, b, noise, attack, gradient, source) else {
            return Ok(None);
        };
        out.push((
            job.to_string(),
            curve(&read_sweep(dir, job)?),
            sweep_images(plan, job),
        ));
    }
    Ok(Some(out))
}

/// Gathers the finished sweeps of `plan` in `dir`.
pub fn gather(plan: &Plan, dir: &RunDir) -> Result<Gathered, String> {
    let mut table2 = Vec::new();
    let mut gaussian = Vec::new();
    let settings = [
        (AttackSetting::Own(AttackThrough::Classifier), "exact"),
        (AttackSetting::Own(AttackThrough::Pipeline), "exact"),
        (AttackSetting::Own(AttackThrough::Classifier), "caffe-f32"),
    ];
    for m in &METHODS {
        for (i, (attack, gradient)) in settings.iter().enumerate() {
            if let Some(curves) = per_seed(plan, dir, m.key, "fgsm", *attack, gradient, None)? {
                // A model without preprocessing has its white-box sweep among the checks beyond
                // the study, on fewer images: it belongs to that table, not this one (for such a
                // model the study's own-gradient row is already the white-box attack).
                if !curves.iter().all(|(job, _, _)| plan.at_table_scale(job)) {
                    continue;
                }
                let paper = (i == 0).then_some(m.paper);
                table2.push(row(
                    m.key,
                    m.label,
                    "fgsm",
                    attack.describe(),
                    gradient,
                    curves,
                    paper,
                ));
            }
        }
        if let Some(curves) = per_seed(
            plan,
            dir,
            m.key,
            "gaussian",
            AttackSetting::None,
            "exact",
            None,
        )? {
            gaussian.push(row(
                m.key,
                m.label,
                "gaussian",
                AttackSetting::None.describe(),
                "-",
                curves,
                None,
            ));
        }
    }
    let mut beyond = Vec::new();
    for key in ["adv-committee", "adv", "none", "online"] {
        let label = METHODS
            .iter()
            .find(|m| m.key == key)
            .map(|m| m.label)
            .unwrap_or(ONLINE_LABEL);
        if let Some(c) = per_seed(
            plan,
            dir,
            key,
            "fgsm",
            AttackSetting::Own(AttackThrough::Pipeline),
            "exact",
            None,
        )? {
            beyond.push(row(
                key,
                label,
                "fgsm",
                "white-box gradient sign (the study's)",
                "exact",
                c,
                None,
            ));
        }
        if let Some(c) = per_seed(
            plan,
            dir,
            key,
            "pgd",
            AttackSetting::Own(AttackThrough::Pipeline),
            "exact",
            None,
        )? {
            beyond.push(row(key, label, "pgd", "PGD, white-box", "exact", c, None));
        }
        if let Some(c) = per_seed(
            plan,
            dir,
            key,
            "fgsm",
            AttackSetting::Transfer,
            "exact",
            Some("independent"),
        )? {
            beyond.push(row(
                key,
                label,
                "fgsm",
                "transfer from an independent LeNet",
                "exact",
                c,
                None,
            ));
        }
    }
    // Gradient sign crafted on each member of the adversarial committee: the strongest member.
    let mut strongest_per_seed = Vec::new();
    for b in plan.base_seeds() {
        let mut curves = Vec::new();
        let mut jobs = Vec::new();
        for k in 0..=plan.scale.adv_stages {
            let source = format!("member-{k}");
            if let Some(job) = plan.sweep_of(
                "adv-committee",
                b,
                "fgsm",
                AttackSetting::Transfer,
                "exact",
                Some(&source),
            ) {
                curves.push(curve(&read_sweep(dir, job)?));
                jobs.push(job.to_string());
            }
        }
        if !curves.is_empty() {
            let images = sweep_images(plan, &jobs[0]);
            strongest_per_seed.push((jobs.join("+"), strongest(&curves), images));
        }
    }
    if !strongest_per_seed.is_empty() {
        beyond.push(row(
            "adv-committee",
            "Committee of models trained on adv. examples",
            "fgsm",
            "crafted on each single member, the strongest member at each level",
            "exact",
            strongest_per_seed,
            None,
        ));
    }
    let mut gradients = Vec::new();
    let b = plan.base_seeds()[0];
    for m in &METHODS {
        if let Some(job) = plan.sweep_of(
            m.key,
            b,
            "fgsm",
            AttackSetting::Own(AttackThrough::Classifier),
            "caffe-f32",
            None,
        ) {
            let path = dir.job_dir(job).join("gradients.json");
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
            let value = serde_json::from_str(&text)
                .map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
            gradients.push((m.label.to_string(), value));
        }
    }
    let mut soundness = Vec::new();
    for m in &METHODS {
        for b in plan.base_seeds() {
            let job = soundness_job(m.key, b);
            if plan.job(&job).is_none() {
                continue;
            }
            let path = dir.job_dir(&job).join(SOUNDNESS_FILE);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
            let report = serde_json::from_str(&text)
                .map_err(|e| format!("{}: not an evaluation report: {e}", path.display()))?;
            soundness.push(SoundnessRow {
                key: m.key.into(),
                method: m.label.into(),
                base_seed: b,
                job,
                report,
            });
        }
    }
    // The ablation is optional: gathered only when each of its sweeps is in the folder.
    let ablation = super::ablation::plan(&plan.scale, plan.seeds, &[])
        .ok()
        .and_then(|p| super::ablation::gather(&p, dir).ok());
    Ok(Gathered {
        table2,
        gaussian,
        beyond,
        gradients,
        soundness,
        ablation,
    })
}

/// A plot of error against distortion: named curves, from the first repetition's sweeps,
/// with the file it is written to and its title.
#[derive(Clone, Debug)]
pub struct CurvePlot {
    pub file: &'static str,
    pub title: &'static str,
    pub result: SweepResult,
}

/// The study's Figures 3 to 7, and one for the checks beyond it.
pub fn figures(plan: &Plan, dir: &RunDir) -> Result<Vec<CurvePlot>, String> {
    let b = plan.base_seeds()[0];
    let own = AttackSetting::Own(AttackThrough::Classifier);
    let random = AttackSetting::None;
    #[allow(clippy::type_complexity)]
    let specs: Vec<(
        &str,
        &str,
        Vec<(&str, &str, &str, AttackSetting, Option<&str>)>,
    )> = vec![
        (
            "figure3.svg",
            "Figure 3: dropout against gradient-sign noise",
            vec![
                ("LeNet", "none", "fgsm", own, None),
                ("Inp-Dropout", "inp", "fgsm", own, None),
                ("All-Dropout", "dropout", "fgsm", own, None),
            ],
        ),
        (
            "figure4.svg",
            "Figure 4: dropout against Gaussian noise",
            vec![
                ("LeNet", "none", "gaussian", random, None),
                ("Inp-Dropout", "inp", "gaussian", random, None),
                ("All-Dropout", "dropout", "gaussian", random, None),
            ],
        ),
        (
            "figure5.svg",
            "Figure 5: preprocessing against gradient-sign noise (study's attack)",
            vec![
                ("low-pass + LeNet", "lowpass", "fgsm", own, None),
                ("low-pass + Inp", "lowpass+inp", "fgsm", own, None),
                ("low-pass + All", "lowpass+dropout", "fgsm", own, None),
                ("DAE + LeNet", "dae", "fgsm", own, None),
                ("DAE + Inp", "dae+inp", "fgsm", own, None),
                ("DAE + All", "dae+dropout", "fgsm", own, None),
            ],
        ),
        (
            "figure5-whitebox.svg",
            "Figure 5 attacked white-box through the preprocessing",
            vec![
                (
                    "low-pass + LeNet",
                    "lowpass",
                    "fgsm",
                    AttackSetting::Own(AttackThrough::Pipeline),
                    None,
                ),
                (
                    "low-pass + Inp",
                    "lowpass+inp",
                    "fgsm",
                    AttackSetting::Own(AttackThrough::Pipeline),
                    None,
                ),
                (
                    "low-pass + All",
                    "lowpass+dropout",
                    "fgsm",
                    AttackSetting::Own(AttackThrough::Pipeline),
                    None,
                ),
                (
                    "DAE + LeNet",
                    "dae",
                    "fgsm",
                    AttackSetting::Own(AttackThrough::Pipeline),
                    None,
                ),
                (
                    "DAE + Inp",
                    "dae+inp",
                    "fgsm",
                    AttackSetting::Own(AttackThrough::Pipeline),
                    None,
                ),
                (
                    "DAE + All",
                    "dae+dropout",
                    "fgsm",
                    AttackSetting::Own(AttackThrough::Pipeline),
                    None,
                ),
            ],
        ),
        (
            "figure6.svg",
            "Figure 6: preprocessing against Gaussian noise",
            vec![
                ("low-pass + LeNet", "lowpass", "gaussian", random, None),
                ("low-pass + Inp", "lowpass+inp", "gaussian", random, None),
                (
                    "low-pass + All",
                    "lowpass+dropout",
                    "gaussian",
                    random,
                    None,
                ),
                ("DAE + LeNet", "dae", "gaussian", random, None),
                ("DAE + Inp", "dae+inp", "gaussian", random, None),
                ("DAE + All", "dae+dropout", "gaussian", random, None),
            ],
        ),
        (
            "figure7.svg",
            "Figure 7: committees against gradient-sign noise",
            vec![
                ("single LeNet", "none", "fgsm", own, None),
                ("standard committee", "committee", "fgsm", own, None),
                ("adversarial training, last", "adv", "fgsm", own, None),
                ("adversarial committee", "adv-committee", "fgsm", own, None),
            ],
        ),
        (
            "beyond.svg",
            "The adversarial committee under other attacks",
            vec![
                (
                    "gradient sign, white-box",
                    "adv-committee",
                    "fgsm",
                    AttackSetting::Own(AttackThrough::Pipeline),
                    None,
                ),
                (
                    "PGD, white-box",
                    "adv-committee",
                    "pgd",
                    AttackSetting::Own(AttackThrough::Pipeline),
                    None,
                ),
                (
                    "transfer from an independent LeNet",
                    "adv-committee",
                    "fgsm",
                    AttackSetting::Transfer,
                    Some("independent"),
                ),
                (
                    "crafted on member 0 (natural)",
                    "adv-committee",
                    "fgsm",
                    AttackSetting::Transfer,
                    Some("member-0"),
                ),
            ],
        ),
    ];
    let mut out = Vec::new();
    for (file, title, curves) in specs {
        let mut rows: Vec<SweepRow> = Vec::new();
        let mut noise = String::new();
        for (label, method, n, attack, source) in curves {
            let gradient = "exact";
            let Some(job) = plan.sweep_of(method, b, n, attack, gradient, source) else {
                continue;
            };
            let result = read_sweep(dir, job)?;
            noise = result.noise.clone();
            rows.extend(result.rows.into_iter().map(|mut r| {
                r.model = label.into();
                r
            }));
        }
        out.push(CurvePlot {
            file,
            title,
            result: SweepResult {
                noise,
                rows,
                at: Vec::new(),
                wall_s: 0.0,
            },
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strongest_takes_the_pointwise_maximum() {
        let a = vec![(0.0, 1.0), (0.1, 30.0)];
        let b = vec![(0.0, 2.0), (0.1, 20.0)];
        assert_eq!(strongest(&[a, b]), vec![(0.0, 2.0), (0.1, 30.0)]);
    }

    #[test]
    fn rows_average_seeds_and_keep_the_paper_numbers() {
        let r = row(
            "none",
            "No method",
            "fgsm",
            "own",
            "exact",
            vec![
                ("a".into(), vec![(0.0, 1.0), (0.2, 41.0)], 500),
                ("b".into(), vec![(0.0, 3.0), (0.2, 61.0)], 500),
            ],
            Some([0.83, 73.6, 96.1]),
        );
        assert_eq!(r.error_pct["0"], Some(2.0));
        // At 0.1: seed a 1 + (41 - 1) / 2 = 21, seed b 3 + (61 - 3) / 2 = 32; mean 26.5.
        assert_eq!(
            r.error_pct["0.1"],
            Some(26.5),
            "interpolated, then averaged"
        );
        assert_eq!(r.error_pct["0.2"], Some(51.0));
        let at_02 = r.over_seeds["0.2"].as_ref().unwrap();
        assert_eq!(at_02.n, 2);
        // Each seed's error and images travel with the summary; the interval lies in [0, 100]
        // around the mean.
        assert_eq!(r.over_seeds["0"].as_ref().unwrap().values, vec![1.0, 3.0]);
        for (got, want) in at_02.values.iter().zip([41.0, 61.0]) {
            assert!((got - want).abs() < 1e-12, "{:?}", at_02.values);
        }
        assert_eq!(at_02.trials, vec![500, 500]);
        let (low, high) = (at_02.ci95_low.unwrap(), at_02.ci95_high.unwrap());
        assert!(
            (0.0..51.0).contains(&low) && 51.0 < high && high <= 100.0,
            "[{low}, {high}]"
        );
        let at_01 = &r.over_seeds["0.1"].as_ref().unwrap().values;
        for (got, want) in at_01.iter().zip([21.0, 32.0]) {
            assert!((got - want).abs() < 1e-12, "{at_01:?}");
        }
        assert_eq!(r.paper.as_ref().unwrap()["0.1"], 73.6);
    }
}
