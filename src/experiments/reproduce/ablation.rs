//! The declared ablation of staged adversarial training: `advmnist reproduce --ablation
//! advtrain`. The grid and what each outcome would mean were written down before any cell ran
//! (docs/adversarial-training.md, "The declared ablation"); this module is that grid as jobs of
//! the run folder (content-keyed, resumable, splittable like every job of `reproduce`) and the
//! gathering of their measures into one row per cell.
//!
//! The grid, at the scale's schedule (the full scale: 10,000 + 5 x 5,000 iterations):
//! - Eq. 3's eps in {0.1, 0.15, 0.2, 0.25, 0.3} x c in {0, 0.2}: 10 cells;
//! - at eps 0.25 and c 0.2: `restart`, `newest`, `fresh` ([`Variant`]).
//!
//! The default cell (eps 0.25, c 0.2, the study's procedure) is the main run's `adv-sB` job, the
//! same specification, so a run folder shared with `reproduce` trains it once. The transfer
//! source is the main run's independent LeNet `lenet-s(B+50)`.
//!
//! Measured per cell, on the same images (the scale's test images, the first `extra_images` for
//! PGD): the last snapshot's and the committee's own-gradient gradient-sign error along a sweep
//! (read at distortion 0, 0.1 and 0.2, interpolated as Table 2), the last snapshot's Gaussian
//! error, transfer error (gradient sign crafted on the independent LeNet) and PGD error (the
//! scale's steps, random start), each at distortion 0.1. The on-line baseline (`online-sB`,
//! `plan::online_job`) is measured the same way, without a committee.
//!
//! Seeds: every cell with the first base seed; with `--seeds N`, the default cell, the cells
//! named by `--repeat` and the on-line baseline with N base seeds (1, 101, 201, ...).

use super::plan::{
    online_job, snapshot_file, AttackSetting, Job, JobSpec, ModelRef, Plan, Scale, SweepSpec,
    FGSM_MAX, GAUSSIAN_MAX, ONLINE_MODEL,
};
use super::runner::RunDir;
use super::table::{curve, read_sweep};
use crate::attacks::Noise;
use crate::experiments::sweep::interpolate;
use crate::models::pipeline::AttackThrough;
use crate::statistics::{summarise_percentages, Summary};
use crate::train::adversarial::{AdvConfig, Variant};
use serde::Serialize;

/// The grid's eps values (Eq. 3's sign step).
pub const EPS: [f32; 5] = [0.1, 0.15, 0.2, 0.25, 0.3];
/// The grid's c values (Eq. 3's gradient step; 0 is Eq. 1's sign step alone).
pub const C: [f32; 2] = [0.0, 0.2];
/// The largest PGD radius swept (at most): distortion 0.1, where PGD is read, is reached well
/// below it.
pub const PGD_MAX: f64 = 0.3;
/// The study's Table 2 row "adversarial training after 5 stages": error (%) at distortion 0,
/// 0.1 and 0.2.
pub const STUDY_ROW: [f64; 3] = [0.87, 44.5, 92.1];
/// A cell reproduces the study's row when its last snapshot is within this many points of the
/// study at distortion 0.1 and 0.2 ...
pub const REPRODUCES_WITHIN: f64 = 5.0;
/// ... and its clean error within this many points of 0.87% (declared before the grid ran).
pub const CLEAN_WITHIN: f64 = 0.5;

/// One cell of the grid.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cell {
    /// `eps0.1-c0`, ..., `restart`, `newest`, `fresh`.
    pub key: String,
    pub eps: f32,
    pub c: f32,
    pub variant: Variant,
}

impl Cell {
    /// The default, chosen before the grid: eps 0.25, c 0.2, the study's procedure.
    pub fn is_default(&self) -> bool {
        self.eps == AdvConfig::DEFAULT_EPS
            && self.c == AdvConfig::DEFAULT_C
            && self.variant.is_study()
    }

    /// The cell's training job at base seed `b` (the default cell's is the main run's).
    pub fn training_job(&self, b: u64) -> String {
        if self.is_default() {
            format!("adv-s{b}")
        } else {
            format!("adv-{}-s{b}", self.key)
        }
    }
}

/// Every cell, in the declared order: the eps x c grid (eps growing, c = 0 first), then the
/// three variants. `refresh_every` of the `fresh` cell is a fifth of the scale's stage (1,000
/// iterations at the full scale, as declared).
pub fn cells(scale: &Scale) -> Vec<Cell> {
    let mut cells = Vec::new();
    for eps in EPS {
        for c in C {
            cells.push(Cell {
                key: format!("eps{eps}-c{c}"),
                eps,
                c,
                variant: Variant::default(),
            });
        }
    }
    let at_default = |key: &str, variant: Variant| Cell {
        key: key.into(),
        eps: AdvConfig::DEFAULT_EPS,
        c: AdvConfig::DEFAULT_C,
        variant,
    };
    cells.push(at_default(
        "restart",
        Variant {
            restart: true,
            ..Variant::default()
        },
    ));
    cells.push(at_default(
        "newest",
        Variant {
            newest_only: true,
            ..Variant::default()
        },
    ));
    cells.push(at_default(
        "fresh",
        Variant {
            refresh_every: (scale.adv_stage_iterations / 5).max(1),
            ..Variant::default()
        },
    ));
    cells
}

/// What a measure sweep of a row measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Measure {
    FgsmLast,
    FgsmCommittee,
    GaussianLast,
    TransferLast,
    PgdLast,
}

impl Measure {
    const ALL: [Measure; 5] = [
        Measure::FgsmLast,
        Measure::FgsmCommittee,
        Measure::GaussianLast,
        Measure::TransferLast,
        Measure::PgdLast,
    ];

    fn name(self) -> &'static str {
        match self {
            Measure::FgsmLast => "fgsm-last",
            Measure::FgsmCommittee => "fgsm-committee",
            Measure::GaussianLast => "gaussian-last",
            Measure::TransferLast => "transfer-last",
            Measure::PgdLast => "pgd-last",
        }
    }
}

/// The measure sweep job of row `row` (a cell's key or `online`) at base seed `b`.
fn measure_job(row: &str, measure: Measure, b: u64) -> String {
    format!("abl-{row}-{}-s{b}", measure.name())
}

/// The name of the on-line baseline's row.
pub const ONLINE_ROW: &str = "online";

/// The ablation's plan at `scale`: every cell at the first base seed, and with `seeds` > 1 the
/// default cell, the cells named in `repeat` and the on-line baseline at every base seed. An
/// unknown cell in `repeat` is refused by name.
pub fn plan(scale: &Scale, seeds: usize, repeat: &[String]) -> Result<Plan, String> {
    assert!(seeds >= 1, "at least one seed");
    let cells = cells(scale);
    for key in repeat {
        if !cells.iter().any(|c| &c.key == key) {
            return Err(format!(
                "--repeat {key}: no such cell; the cells are {}",
                cells
                    .iter()
                    .map(|c| c.key.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let mut jobs: Vec<Job> = Vec::new();
    let add = |jobs: &mut Vec<Job>, job: Job| {
        if !jobs.iter().any(|j| j.name == job.name) {
            jobs.push(job);
        }
    };
    for r in 0..seeds as u64 {
        let b = 1 + 100 * r;
        let source = format!("lenet-s{}", b + 50);
        add(
            &mut jobs,
            Job {
                name: source.clone(),
                spec: JobSpec::Lenet {
                    dropout: "none".into(),
                    iterations: scale.lenet_iterations,
                    seed: b + 50,
                },
                about: format!(
                    "train LeNet (seed {}, {} iterations): the transfer source",
                    b + 50,
                    scale.lenet_iterations
                ),
            },
        );
        let source = ModelRef {
            job: source,
            file: "model.safetensors".into(),
        };
        for cell in cells
            .iter()
            .filter(|c| r == 0 || c.is_default() || repeat.contains(&c.key))
        {
            let name = cell.training_job(b);
            add(
                &mut jobs,
                Job {
                    name: name.clone(),
                    spec: JobSpec::Advtrain {
                        base_iterations: scale.adv_base_iterations,
                        stages: scale.adv_stages,
                        stage_iterations: scale.adv_stage_iterations,
                        train_images: scale.adv_train_images,
                        eps: cell.eps,
                        c: cell.c,
                        seed: b,
                        variant: cell.variant.clone(),
                    },
                    about: format!(
                        "staged adversarial training, ablation cell {} (eps {}, c {}, {}; seed {b}, {} + {} x {} iterations)",
                        cell.key, cell.eps, cell.c, cell.variant.name(),
                        scale.adv_base_iterations, scale.adv_stages, scale.adv_stage_iterations
                    ),
                },
            );
            let last = vec![ModelRef {
                job: name.clone(),
                file: snapshot_file(scale.adv_stages),
            }];
            let committee: Vec<ModelRef> = (0..=scale.adv_stages)
                .map(|k| ModelRef {
                    job: name.clone(),
                    file: snapshot_file(k),
                })
                .collect();
            for measure in Measure::ALL {
                let members = if measure == Measure::FgsmCommittee {
                    &committee
                } else {
                    &last
                };
                add(
                    &mut jobs,
                    measure_sweep(scale, &cell.key, measure, members, &source, b),
                );
            }
        }
        let online = online_job(scale, b);
        let model = vec![ModelRef {
            job: online.name.clone(),
            file: ONLINE_MODEL.into(),
        }];
        add(&mut jobs, online);
        for measure in Measure::ALL {
            if measure != Measure::FgsmCommittee {
                add(
                    &mut jobs,
                    measure_sweep(scale, ONLINE_ROW, measure, &model, &source, b),
                );
            }
        }
    }
    Ok(Plan {
        scale: scale.clone(),
        seeds,
        jobs,
        roles: Vec::new(),
    })
}

/// One measure of one row at base seed `b`, as a sweep job.
fn measure_sweep(
    scale: &Scale,
    row: &str,
    measure: Measure,
    members: &[ModelRef],
    source: &ModelRef,
    b: u64,
) -> Job {
    let own = AttackSetting::Own(AttackThrough::Classifier);
    let (noise, attack, max, images, levels) = match measure {
        Measure::FgsmLast | Measure::FgsmCommittee => (
            Noise::Fgsm,
            own,
            FGSM_MAX,
            scale.test_images,
            scale.extra_levels,
        ),
        Measure::GaussianLast => (
            Noise::Gaussian,
            AttackSetting::None,
            GAUSSIAN_MAX,
            scale.test_images,
            scale.extra_levels,
        ),
        Measure::TransferLast => (
            Noise::Fgsm,
            AttackSetting::Transfer,
            FGSM_MAX,
            scale.test_images,
            scale.extra_levels,
        ),
        // The same spacing as the gradient-sign sweeps, up to at most PGD_MAX.
        Measure::PgdLast => {
            let step = FGSM_MAX / (scale.extra_levels - 1) as f64;
            let steps = ((PGD_MAX / step) + 1e-9).floor() as usize;
            (
                Noise::Pgd {
                    steps: scale.pgd_steps,
                    random_start: true,
                },
                AttackSetting::Own(AttackThrough::Pipeline),
                step * steps as f64,
                scale.extra_images,
                steps + 1,
            )
        }
    };
    let name = measure_job(row, measure, b);
    Job {
        about: format!(
            "ablation row {row}: {} ({levels} levels on {images} test images)",
            measure.name()
        ),
        name,
        spec: JobSpec::Sweep(SweepSpec {
            members: members.to_vec(),
            pre: Vec::new(),
            noise,
            attack,
            source: (measure == Measure::TransferLast).then(|| source.clone()),
            gradient: "exact".into(),
            levels,
            max,
            test_images: images,
            seed: b,
        }),
    }
}

/// One row of the ablation: a cell (or the on-line baseline), each measure over its seeds.
#[derive(Clone, Debug, Serialize)]
pub struct AblationRow {
    pub key: String,
    /// `None` for the on-line baseline.
    pub cell: Option<Cell>,
    /// The default cell, chosen before the grid.
    pub default: bool,
    pub base_seeds: Vec<u64>,
    /// The last snapshot's own-gradient error at distortion 0, 0.1 and 0.2.
    pub last: [Summary; 3],
    /// The committee's (every snapshot averaged); `None` for the on-line baseline.
    pub committee: Option<[Summary; 3]>,
    /// The last snapshot at distortion 0.1: Gaussian noise, transfer, PGD.
    pub gaussian: Summary,
    pub transfer: Summary,
    pub pgd: Summary,
    /// Whether the mean is within the declared distances of the study's row.
    pub reproduces: bool,
}

impl AblationRow {
    /// |last snapshot at 0.1 - 44.5|: how far from the study's row.
    pub fn distance_at_01(&self) -> f64 {
        (self.last[1].mean - STUDY_ROW[1]).abs()
    }
}

/// The gathered ablation: its rows in the plan's order, and the cell closest to the study's row.
#[derive(Clone, Debug, Serialize)]
pub struct Ablation {
    pub scale: String,
    pub rows: Vec<AblationRow>,
    /// The cell whose last snapshot is closest to the study's 44.5% at distortion 0.1.
    pub closest: String,
    /// The cells that reproduce the study's row by the declared rule.
    pub reproducing: Vec<String>,
    /// How each interval over seeds is made.
    pub ci95_method: &'static str,
}

/// The error (%) of sweep `job` at distortion `d`, interpolated along its levels, and its test
/// images.
fn error_at(plan: &Plan, dir: &RunDir, job: &str, d: f64) -> Result<(f64, usize), String> {
    // Only a finished job of this specification counts (its record and outputs checked).
    let spec = plan
        .job(job)
        .ok_or_else(|| format!("{job}: not in the plan"))?;
    if dir.verified_record(spec, None).is_none() {
        return Err(format!(
            "{job}: not finished in {}",
            dir.job_dir(job).display()
        ));
    }
    let value = interpolate(&curve(&read_sweep(dir, job)?), d).ok_or_else(|| {
        format!("{job}: its sweep does not reach distortion {d} (largest level too small)")
    })?;
    let images = match plan.job(job).map(|j| &j.spec) {
        Some(JobSpec::Sweep(s)) => s.test_images,
        _ => 0,
    };
    Ok((value, images))
}

/// Gathers the finished measure sweeps of an ablation plan.
pub fn gather(plan: &Plan, dir: &RunDir) -> Result<Ablation, String> {
    let seeds_of = |row: &str| -> Vec<u64> {
        plan.base_seeds()
            .into_iter()
            .filter(|&b| plan.job(&measure_job(row, Measure::FgsmLast, b)).is_some())
            .collect()
    };
    let summary = |row: &str, measure: Measure, d: f64| -> Result<Summary, String> {
        let mut values = Vec::new();
        let mut images = Vec::new();
        for b in seeds_of(row) {
            let (v, n) = error_at(plan, dir, &measure_job(row, measure, b), d)?;
            values.push(v);
            images.push(n);
        }
        Ok(summarise_percentages(&values, &images))
    };
    let three = |row: &str, measure: Measure| -> Result<[Summary; 3], String> {
        Ok([
            summary(row, measure, 0.0)?,
            summary(row, measure, 0.1)?,
            summary(row, measure, 0.2)?,
        ])
    };
    let mut rows = Vec::new();
    let mut keys: Vec<(String, Option<Cell>)> = cells(&plan.scale)
        .into_iter()
        .map(|c| (c.key.clone(), Some(c)))
        .collect();
    keys.push((ONLINE_ROW.into(), None));
    for (key, cell) in keys {
        let last = three(&key, Measure::FgsmLast)?;
        let committee = match cell {
            Some(_) => Some(three(&key, Measure::FgsmCommittee)?),
            None => None,
        };
        let reproduces = cell.is_some() && meets_the_declared_rule(&last);
        rows.push(AblationRow {
            default: cell.as_ref().is_some_and(Cell::is_default),
            base_seeds: seeds_of(&key),
            gaussian: summary(&key, Measure::GaussianLast, 0.1)?,
            transfer: summary(&key, Measure::TransferLast, 0.1)?,
            pgd: summary(&key, Measure::PgdLast, 0.1)?,
            key,
            cell,
            last,
            committee,
            reproduces,
        });
    }
    Ok(Ablation::new(plan.scale.name.clone(), rows))
}

/// The declared rule on a last snapshot's error at distortion 0 / 0.1 / 0.2: its means within
/// [`CLEAN_WITHIN`] of the study's clean error and [`REPRODUCES_WITHIN`] of its 0.1 and 0.2.
pub fn meets_the_declared_rule(last: &[Summary; 3]) -> bool {
    (last[0].mean - STUDY_ROW[0]).abs() <= CLEAN_WITHIN
        && (last[1].mean - STUDY_ROW[1]).abs() <= REPRODUCES_WITHIN
        && (last[2].mean - STUDY_ROW[2]).abs() <= REPRODUCES_WITHIN
}

impl Ablation {
    /// The ablation of these rows: the closest cell and the reproducing ones found from them.
    pub fn new(scale: String, rows: Vec<AblationRow>) -> Ablation {
        let closest = rows
            .iter()
            .filter(|r| r.cell.is_some())
            .min_by(|a, b| a.distance_at_01().total_cmp(&b.distance_at_01()))
            .map(|r| r.key.clone())
            .unwrap_or_default();
        let reproducing = rows
            .iter()
            .filter(|r| r.reproduces)
            .map(|r| r.key.clone())
            .collect();
        Ablation {
            scale,
            rows,
            closest,
            reproducing,
            ci95_method: crate::statistics::CI95_METHOD,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::reproduce::plan as main_plan;

    #[test]
    fn the_grid_is_the_declared_one_with_the_default_marked_once() {
        let cells = cells(&Scale::full());
        assert_eq!(cells.len(), 13);
        let keys: Vec<&str> = cells.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "eps0.1-c0",
                "eps0.1-c0.2",
                "eps0.15-c0",
                "eps0.15-c0.2",
                "eps0.2-c0",
                "eps0.2-c0.2",
                "eps0.25-c0",
                "eps0.25-c0.2",
                "eps0.3-c0",
                "eps0.3-c0.2",
                "restart",
                "newest",
                "fresh"
            ]
        );
        let defaults: Vec<&str> = cells
            .iter()
            .filter(|c| c.is_default())
            .map(|c| c.key.as_str())
            .collect();
        assert_eq!(defaults, ["eps0.25-c0.2"]);
        // The declared refresh: every 1,000 iterations of a 5,000-iteration stage.
        let fresh = cells.iter().find(|c| c.key == "fresh").unwrap();
        assert_eq!(fresh.variant.refresh_every, 1000);
    }

    #[test]
    fn the_default_cell_and_the_transfer_source_are_the_main_run_s_jobs() {
        for scale in [Scale::full(), Scale::quick()] {
            let main = main_plan::plan(&scale, 2);
            let ablation = plan(&scale, 2, &[]).unwrap();
            for name in ["adv-s1", "adv-s101", "lenet-s51", "lenet-s151", "online-s1"] {
                let (a, m) = (ablation.job(name), main.job(name));
                assert!(a.is_some(), "{name} in the ablation");
                assert_eq!(a.map(|j| &j.spec), m.map(|j| &j.spec), "{name}");
            }
        }
    }

    #[test]
    fn seeds_repeat_the_default_the_named_cells_and_the_baseline_only() {
        let scale = Scale::quick();
        let p = plan(&scale, 3, &["eps0.1-c0".into()]).unwrap();
        let trained = |b: u64| -> Vec<String> {
            p.jobs
                .iter()
                .filter(|j| matches!(j.spec, JobSpec::Advtrain { seed, .. } if seed == b))
                .map(|j| j.name.clone())
                .collect()
        };
        assert_eq!(trained(1).len(), 13);
        assert_eq!(trained(101), ["adv-eps0.1-c0-s101", "adv-s101"]);
        assert_eq!(trained(201), ["adv-eps0.1-c0-s201", "adv-s201"]);
        assert!(p.job("online-s201").is_some());
        // Every dependency comes first, every name once.
        for (i, job) in p.jobs.iter().enumerate() {
            assert_eq!(p.jobs.iter().filter(|j| j.name == job.name).count(), 1);
            for d in job.dependencies() {
                let at = p.jobs.iter().position(|j| j.name == d).expect("known");
                assert!(at < i, "{} needs {d}", job.name);
            }
        }
        let err = plan(&scale, 1, &["eps0.5-c0".into()]).unwrap_err();
        assert!(
            err.contains("--repeat eps0.5-c0") && err.contains("eps0.1-c0"),
            "{err}"
        );
    }

    #[test]
    fn the_pgd_sweep_reaches_the_distortion_it_is_read_at_on_the_levels_of_the_others() {
        for scale in [Scale::full(), Scale::quick()] {
            let p = plan(&scale, 1, &[]).unwrap();
            let JobSpec::Sweep(pgd) = &p.job("abl-fresh-pgd-last-s1").unwrap().spec else {
                panic!("a sweep")
            };
            let JobSpec::Sweep(fgsm) = &p.job("abl-fresh-fgsm-last-s1").unwrap().spec else {
                panic!("a sweep")
            };
            let step = |s: &SweepSpec| s.max / (s.levels - 1) as f64;
            assert!((step(pgd) - step(fgsm)).abs() < 1e-12, "{}", scale.name);
            // (The largest radius is the step times a count, so it may exceed PGD_MAX by a
            // rounding: 0.025 x 12 is 0.30000000000000004.)
            assert!(pgd.max <= PGD_MAX + 1e-12 && pgd.max + step(pgd) > PGD_MAX);
            assert!(
                pgd.max >= 0.25,
                "{}: eps 0.25 moves a pixel 0.1 on average",
                scale.name
            );
        }
    }
}
