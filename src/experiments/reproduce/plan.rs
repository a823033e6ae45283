//! The study's jobs and how they depend on each other: what `advmnist reproduce` runs.
//!
//! Every job is described by a [`JobSpec`], plain data that names everything deciding its result
//! (recipe, seed, the other jobs' outputs it reads). Its key is the SHA-256 of that description
//! together with the content hashes of the files it reads (see `runner.rs`), so a finished job is
//! reused exactly when nothing it depends on changed.
//!
//! Models (one set per repetition `r`, seeds `b = 1 + 100 r`):
//! - `lenet-sB`: Caffe's LeNet, the study's basic model ("no method"), also the first member of
//!   the standard committee; `lenet-s(B+1)` .. `lenet-s(B+5)` complete the committee of 6.
//! - `inp-sB`, `all-sB`: Table 1's dropout models (35,000 and 40,000 iterations).
//! - `dae-sB`: the denoising autoencoder (20,000 iterations).
//! - `adv-sB`: staged adversarial training (a 10,000-iteration LeNet, then 5 stages of 5,000), its
//!   6 snapshots the adversarial committee.
//! - `lenet-s(B+50)`: an independently trained LeNet, the source of transfer attacks.
//!
//! Sweeps: for each of Table 2's 9 methods a gradient-sign sweep in the study's attack setting
//! and a Gaussian sweep, plus what the figures need (the `inp` model alone and behind each
//! preprocessing), the white-box attack through each preprocessing pipeline, the gradient Caffe
//! computed (`caffe-f32`) for the single models, and the checks the study did not make on its
//! adversarial committee (PGD through it, transfer from an independent LeNet, gradient sign
//! crafted on each member).

use crate::attacks::Noise;
use crate::models::pipeline::AttackThrough;
use crate::train::adversarial::Variant;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// The size of a run. [`Scale::full`] is the study's; [`Scale::quick`] the same jobs at a small
/// scale, for a first look and for the test suite.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scale {
    pub name: String,
    pub lenet_iterations: u64,
    pub inp_iterations: u64,
    pub all_iterations: u64,
    pub dae_iterations: u64,
    /// Members of the standard committee (the study's 6).
    pub committee: usize,
    pub adv_base_iterations: u64,
    pub adv_stages: usize,
    pub adv_stage_iterations: u64,
    /// Training images whose adversarial versions each stage makes (`None`: all 60,000).
    pub adv_train_images: Option<usize>,
    /// Test images in every Table 2 sweep (the first N of the 10,000).
    pub test_images: usize,
    /// Levels of every Table 2 sweep (the study's 100 test sets).
    pub levels: usize,
    /// Test images and levels of the checks beyond the study (PGD, transfer, per member).
    pub extra_images: usize,
    pub extra_levels: usize,
    pub pgd_steps: usize,
    /// The soundness table's evaluation of every Table 2 row.
    pub soundness: SoundnessScale,
}

/// The settings of the soundness table's evaluations (`experiments::evaluate`, as
/// `advmnist evaluate` runs them), chosen for the run's time budget: at the full scale at most
/// 10 minutes on 2 cores for the 9 rows (docs/evaluate.md, "In reproduce").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SoundnessScale {
    /// The first N test images.
    pub images: usize,
    /// PGD's steps (its own figure and the transfer attack's).
    pub pgd_steps: usize,
    /// APGD's iterations per run.
    pub iterations: usize,
    /// APGD-T's target classes.
    pub targets: usize,
    /// Square's queries per image.
    pub queries: usize,
    /// The checklist's stronger run: APGD-CE restarts.
    pub stronger_restarts: usize,
    /// Draws of the injected noise every attack averages over (EOT), on the rows that inject
    /// noise.
    pub eot_draws: usize,
}

/// The soundness table's L-infinity budgets: the field's smallest and largest on MNIST.
pub const SOUNDNESS_EPS: [f32; 2] = [0.1, 0.3];

impl Scale {
    pub fn full() -> Self {
        Scale {
            name: "full".into(),
            lenet_iterations: 10_000,
            inp_iterations: 35_000,
            all_iterations: 40_000,
            dae_iterations: 20_000,
            committee: 6,
            adv_base_iterations: 10_000,
            adv_stages: 5,
            adv_stage_iterations: 5_000,
            adv_train_images: None,
            test_images: 10_000,
            levels: 100,
            extra_images: 2_000,
            extra_levels: 21,
            pgd_steps: 10,
            soundness: SoundnessScale {
                images: 1_000,
                pgd_steps: 10,
                iterations: 50,
                targets: 1,
                queries: 200,
                stronger_restarts: 1,
                eot_draws: 3,
            },
        }
    }

    /// Every job of the full run, small: a few hundred iterations, 500 test images, 11 levels.
    /// The numbers mean little; the files and rows are those of the full run.
    pub fn quick() -> Self {
        Scale {
            name: "quick".into(),
            lenet_iterations: 300,
            inp_iterations: 300,
            all_iterations: 300,
            dae_iterations: 600,
            committee: 6,
            adv_base_iterations: 300,
            adv_stages: 5,
            adv_stage_iterations: 40,
            adv_train_images: Some(3_000),
            test_images: 500,
            levels: 11,
            extra_images: 200,
            extra_levels: 5,
            pgd_steps: 3,
            soundness: SoundnessScale {
                images: 50,
                pgd_steps: 2,
                iterations: 5,
                targets: 1,
                queries: 20,
                stronger_restarts: 1,
                eot_draws: 2,
            },
        }
    }
}

/// A model file made by a job: `jobs/JOB/FILE`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelRef {
    pub job: String,
    pub file: String,
}

impl ModelRef {
    fn new(job: &str, file: &str) -> Self {
        ModelRef {
            job: job.into(),
            file: file.into(),
        }
    }
}

/// A preprocessing stage in front of the classifier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum PreSpec {
    /// The study's Gaussian low-pass filter of this size, with noise of this sigma injected
    /// before it (0: none).
    Lowpass { size: usize, noise: f32 },
    /// A denoising autoencoder.
    Dae { model: ModelRef },
}

/// Whose gradient makes a sweep job's examples: the defended model's own, followed as an
/// [`AttackThrough`] says; another model's (transfer); or nobody's (random noise).
///
/// Serialised as job specifications have always held it: `classifier`, `whole`, `transfer`,
/// `none` ([`AttackSetting::name`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttackSetting {
    /// The defended model's own gradient. [`AttackThrough::Classifier`]
    /// is the study's: the classifier's own gradient; preprocessing is applied to the finished
    /// examples but not differentiated (for a single model or a committee without
    /// preprocessing this is the white-box attack). [`AttackThrough::Pipeline`]
    /// is white-box through everything the defended model does: preprocessing
    /// (with expectation over its random noise) and the committee's averaged prediction.
    Own(AttackThrough),
    /// Crafted on another model (the sweep's `source`) and given to this one.
    Transfer,
    /// Random noise: no gradient involved.
    None,
}

impl AttackSetting {
    const ALL: [AttackSetting; 4] = [
        AttackSetting::Own(AttackThrough::Classifier),
        AttackSetting::Own(AttackThrough::Pipeline),
        AttackSetting::Transfer,
        AttackSetting::None,
    ];

    /// The name in a job specification.
    pub fn name(self) -> &'static str {
        match self {
            AttackSetting::Own(AttackThrough::Classifier) => "classifier",
            AttackSetting::Own(AttackThrough::Pipeline) => "whole",
            AttackSetting::Transfer => "transfer",
            AttackSetting::None => "none",
        }
    }

    /// The setting's part of a sweep job's name (`sweep-none-fgsm-own-exact-s1`).
    fn in_job_name(self) -> &'static str {
        match self {
            AttackSetting::Own(AttackThrough::Classifier) => "own",
            AttackSetting::Own(AttackThrough::Pipeline) => "whole",
            AttackSetting::Transfer => "transfer",
            AttackSetting::None => "random",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            AttackSetting::Own(AttackThrough::Classifier) => {
                "classifier's own gradient (the study's)"
            }
            AttackSetting::Own(AttackThrough::Pipeline) => "white-box through the whole defence",
            AttackSetting::Transfer => "transfer",
            AttackSetting::None => "random noise",
        }
    }

    /// How the defended model's pipeline is attacked: the own gradient's setting; for transfer
    /// and random noise the defended model's gradient is never asked for, and the pipeline is
    /// built as the study's.
    pub fn through(self) -> AttackThrough {
        match self {
            AttackSetting::Own(through) => through,
            AttackSetting::Transfer | AttackSetting::None => AttackThrough::Classifier,
        }
    }
}

impl Serialize for AttackSetting {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for AttackSetting {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        AttackSetting::ALL
            .into_iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown attack setting '{name}': classifier, whole, transfer or none"
                ))
            })
    }
}

/// A sweep: one defended classifier (one model or a committee, behind optional stages), one
/// kind of noise at evenly spaced levels.
///
/// Serialised in the form job specifications (and so job keys) have always had: the noise's
/// name, then PGD's steps as a field of their own, `pgd_steps` (0 for the other noises).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(try_from = "SweepSpecFields")]
pub struct SweepSpec {
    /// One model, or the members of a committee (averaged softmax outputs).
    pub members: Vec<ModelRef>,
    pub pre: Vec<PreSpec>,
    /// The perturbation. A job's PGD always starts at a random point of the eps-ball (seeded
    /// by `seed`).
    pub noise: Noise,
    pub attack: AttackSetting,
    /// The model the examples are crafted on, for [`AttackSetting::Transfer`].
    pub source: Option<ModelRef>,
    /// `exact` or `caffe-f32` (the softmax cross-entropy backward that makes the gradient).
    pub gradient: String,
    pub levels: usize,
    pub max: f64,
    pub test_images: usize,
    pub seed: u64,
}

/// A [`SweepSpec`] as a job specification writes it: the noise's name, and PGD's steps as a
/// field of their own (0 for the other noises). The field order is the written order.
#[derive(Serialize, Deserialize)]
struct SweepSpecFields {
    members: Vec<ModelRef>,
    pre: Vec<PreSpec>,
    noise: Noise,
    pgd_steps: usize,
    attack: AttackSetting,
    source: Option<ModelRef>,
    gradient: String,
    levels: usize,
    max: f64,
    test_images: usize,
    seed: u64,
}

impl TryFrom<SweepSpecFields> for SweepSpec {
    type Error = String;

    fn try_from(f: SweepSpecFields) -> Result<Self, String> {
        let noise = match f.noise {
            Noise::Pgd { .. } => Noise::Pgd {
                steps: f.pgd_steps,
                random_start: true,
            },
            other if f.pgd_steps == 0 => other,
            other => {
                return Err(format!(
                    "pgd_steps is {} for {other} noise: only PGD has steps",
                    f.pgd_steps
                ))
            }
        };
        Ok(SweepSpec {
            members: f.members,
            pre: f.pre,
            noise,
            attack: f.attack,
            source: f.source,
            gradient: f.gradient,
            levels: f.levels,
            max: f.max,
            test_images: f.test_images,
            seed: f.seed,
        })
    }
}

impl Serialize for SweepSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let pgd_steps = match self.noise {
            Noise::Pgd {
                steps,
                random_start: true,
            } => steps,
            Noise::Pgd { .. } => {
                return Err(serde::ser::Error::custom(
                    "a job's PGD starts at a random point: random_start must be true",
                ))
            }
            _ => 0,
        };
        SweepSpecFields {
            members: self.members.clone(),
            pre: self.pre.clone(),
            noise: self.noise,
            pgd_steps,
            attack: self.attack,
            source: self.source.clone(),
            gradient: self.gradient.clone(),
            levels: self.levels,
            max: self.max,
            test_images: self.test_images,
            seed: self.seed,
        }
        .serialize(serializer)
    }
}

/// An evaluation of one defended classifier by every attack of `experiments::evaluate`, white
/// box through everything it does (preprocessing with EOT over injected noise, a committee's
/// averaged prediction), with the checklist's verdicts and certified bounds: one row of the
/// soundness table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SoundnessSpec {
    /// One model, or the members of a committee (averaged softmax outputs).
    pub members: Vec<ModelRef>,
    pub pre: Vec<PreSpec>,
    /// The independent LeNet the transfer attack's examples are made on.
    pub source: ModelRef,
    /// The L-infinity budgets.
    pub eps: Vec<f32>,
    #[serde(flatten)]
    pub scale: SoundnessScale,
    /// APGD's runs per loss and target (AutoAttack's standard: 1).
    pub restarts: usize,
    pub seed: u64,
}

/// What a job does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JobSpec {
    /// Caffe's LeNet recipe; `dropout` is `none`, `inp` or `all` (Table 1).
    Lenet {
        dropout: String,
        iterations: u64,
        seed: u64,
    },
    /// The denoising autoencoder (`train::dae`).
    Dae {
        iterations: u64,
        seed: u64,
    },
    /// Staged adversarial training (`train::adversarial`).
    Advtrain {
        base_iterations: u64,
        stages: usize,
        stage_iterations: u64,
        /// Only the first N training images (quick runs); `None`: all.
        train_images: Option<usize>,
        /// Eq. 3's eps and c (`train::adversarial`'s defaults).
        eps: f32,
        c: f32,
        seed: u64,
        /// The declared ablation's variation of the procedure; absent for the study's, so the
        /// study's jobs keep their keys.
        #[serde(default, skip_serializing_if = "Variant::is_study")]
        variant: Variant,
    },
    /// On-line adversarial training (`train::online`): Goodfellow et al.'s objective on Caffe's
    /// LeNet recipe, examples from the current weights at every iteration.
    Online {
        iterations: u64,
        alpha: f32,
        eps: f32,
        random_start: bool,
        /// The training curve: every N iterations, on the first `eval_images` test images.
        eval_every: u64,
        eval_images: usize,
        seed: u64,
    },
    Sweep(SweepSpec),
    Soundness(SoundnessSpec),
}

/// One step of the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Unique within the plan; also its folder under `jobs/`.
    pub name: String,
    pub spec: JobSpec,
    /// What it is, in words (progress display, `--list-jobs`).
    pub about: String,
}

impl Job {
    /// The jobs whose outputs this job reads.
    pub fn dependencies(&self) -> Vec<String> {
        let mut deps: Vec<String> = Vec::new();
        let mut add = |m: &ModelRef| {
            if !deps.contains(&m.job) {
                deps.push(m.job.clone());
            }
        };
        if let JobSpec::Sweep(s) = &self.spec {
            s.members.iter().for_each(&mut add);
            for p in &s.pre {
                if let PreSpec::Dae { model } = p {
                    add(model);
                }
            }
            s.source.iter().for_each(&mut add);
        }
        if let JobSpec::Soundness(s) = &self.spec {
            s.members.iter().for_each(&mut add);
            for p in &s.pre {
                if let PreSpec::Dae { model } = p {
                    add(model);
                }
            }
            add(&s.source);
        }
        deps
    }

    /// The files the job leaves in its folder (besides its record).
    pub fn outputs(&self) -> Vec<String> {
        match &self.spec {
            JobSpec::Lenet { .. } => vec!["model.safetensors".into()],
            JobSpec::Dae { .. } => vec!["dae.safetensors".into()],
            JobSpec::Advtrain { stages, .. } => (0..=*stages).map(snapshot_file).collect(),
            JobSpec::Online { .. } => vec![ONLINE_MODEL.into(), ONLINE_RECORD.into()],
            // The gradient Caffe computed also counts what it changes (`gradients.json`).
            JobSpec::Sweep(s) if s.gradient == "caffe-f32" => {
                vec!["sweep.json".into(), "gradients.json".into()]
            }
            JobSpec::Sweep(_) => vec!["sweep.json".into()],
            JobSpec::Soundness(_) => vec![SOUNDNESS_FILE.into()],
        }
    }

    /// Rough cost in training-image equivalents (one LeNet training step on one image), for the
    /// progress display's ETA. Measured ratios on 2 cores (docs/performance.md): inference about
    /// 3x and an input gradient about 1.5x faster than a training step per image; the
    /// autoencoder's training step about 2.2x slower, its reconstruction about 0.6x a training
    /// step.
    pub fn cost(&self) -> f64 {
        match &self.spec {
            JobSpec::Lenet { iterations, .. } => *iterations as f64 * 64.0,
            JobSpec::Dae { iterations, .. } => *iterations as f64 * 64.0 * 2.2,
            JobSpec::Advtrain {
                base_iterations,
                stages,
                stage_iterations,
                train_images,
                variant,
                ..
            } => {
                // A refreshed set is made again every `refresh_every` iterations of a stage.
                let sets_per_stage = match variant.refresh_every {
                    0 => 1.0,
                    r => stage_iterations.div_ceil(r) as f64,
                };
                (*base_iterations + *stages as u64 * stage_iterations) as f64 * 64.0
                    + *stages as f64 * sets_per_stage * train_images.unwrap_or(60_000) as f64 * 2.0
                        / 1.5
            }
            // Each iteration trains on 128 images and makes 64 examples (one input gradient
            // each, two with the random start); each point of the curve is about 21 input
            // gradients per image (`train::online`).
            JobSpec::Online {
                iterations,
                random_start,
                eval_every,
                eval_images,
                ..
            } => {
                let gradients = if *random_start { 2.0 } else { 1.0 };
                let points = iterations.checked_div(*eval_every).unwrap_or(0) + 1;
                *iterations as f64 * 64.0 * (2.0 + gradients / 1.5)
                    + points as f64 * *eval_images as f64 * 21.0 / 1.5
            }
            JobSpec::Sweep(s) => {
                let (members, pre) = (s.members.len() as f64, stages_cost(&s.pre));
                let infer = s.levels as f64 * s.test_images as f64 * (members / 3.0 + pre);
                let gradients = match s.noise {
                    Noise::Gaussian => 0.0,
                    Noise::Pgd { steps, .. } => (s.levels * steps) as f64,
                    Noise::Fgsm => 1.0,
                    Noise::ApgdCe {
                        iterations,
                        restarts,
                    } => (s.levels * iterations * restarts) as f64,
                    Noise::ApgdT {
                        iterations,
                        restarts,
                        targets,
                    } => (s.levels * iterations * restarts * targets) as f64,
                    // Forward passes only, a third of a gradient's cost each.
                    Noise::Square { queries } => (s.levels * queries) as f64 / 3.0,
                } * s.test_images as f64
                    * (members / 1.5 + 2.0 * pre);
                infer + gradients
            }
            // `evaluate::plan`'s cost is in gradient passes per image (EOT included), each
            // through every member and stage.
            JobSpec::Soundness(s) => {
                let (members, pre) = (s.members.len() as f64, stages_cost(&s.pre));
                let passes: f64 = crate::experiments::evaluate::plan(&s.settings())
                    .iter()
                    .map(|(_, c)| c)
                    .sum();
                passes * s.scale.images as f64 * (members / 1.5 + 2.0 * pre)
            }
        }
    }
}

/// The preprocessing's cost per image, in training-image equivalents (measured ratios, see
/// [`Job::cost`]): the autoencoder's reconstruction 0.6, the low-pass filter 0.05.
fn stages_cost(pre: &[PreSpec]) -> f64 {
    pre.iter()
        .map(|p| match p {
            PreSpec::Dae { .. } => 0.6,
            PreSpec::Lowpass { .. } => 0.05,
        })
        .sum()
}

/// The file a soundness job writes: `experiments::evaluate::Report`, serialised.
pub const SOUNDNESS_FILE: &str = "evaluate.json";

impl SoundnessSpec {
    /// Whether a stage injects noise, so that every attack averages over draws (EOT).
    pub fn random(&self) -> bool {
        self.pre
            .iter()
            .any(|p| matches!(p, PreSpec::Lowpass { noise, .. } if *noise > 0.0))
    }

    /// The evaluation's settings: the scale's EOT draws where a stage injects noise, else 1.
    pub fn settings(&self) -> crate::experiments::evaluate::Settings {
        let s = &self.scale;
        crate::experiments::evaluate::Settings {
            pgd_steps: s.pgd_steps,
            iterations: s.iterations,
            restarts: self.restarts,
            targets: s.targets,
            queries: s.queries,
            stronger_restarts: s.stronger_restarts,
            eot_draws: if self.random() {
                s.eot_draws.max(1) as u64
            } else {
                1
            },
            ..crate::experiments::evaluate::Settings::standard(
                self.eps.clone(),
                s.images,
                self.seed,
            )
        }
    }
}

/// The on-line training job's model file and record (`train::online`'s names).
pub const ONLINE_MODEL: &str = crate::train::online::MODEL_FILE;
pub const ONLINE_RECORD: &str = crate::train::online::RECORD_FILE;

/// `snapshot-K.safetensors`: the adversarial-training job's model after stage K (0: natural).
pub fn snapshot_file(k: usize) -> String {
    format!("snapshot-{k}.safetensors")
}

/// One row of the study's Table 2, in the study's order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Method {
    /// Short key (`none`, `dropout`, ...).
    pub key: &'static str,
    /// The study's row label.
    pub label: &'static str,
    /// The study's error (%) at distortion 0, 0.1 and 0.2.
    pub paper: [f64; 3],
}

/// Table 2 of the study.
pub const METHODS: [Method; 9] = [
    Method {
        key: "none",
        label: "No method",
        paper: [0.83, 73.6, 96.1],
    },
    Method {
        key: "dropout",
        label: "Dropout",
        paper: [0.91, 35.7, 98.1],
    },
    Method {
        key: "lowpass",
        label: "Low-pass filter",
        paper: [1.38, 52.0, 95.0],
    },
    Method {
        key: "dae",
        label: "DAE",
        paper: [1.27, 52.4, 93.2],
    },
    Method {
        key: "lowpass+dropout",
        label: "Low-pass filter + dropout",
        paper: [2.51, 34.8, 88.5],
    },
    Method {
        key: "dae+dropout",
        label: "DAE + dropout",
        paper: [1.56, 21.4, 90.3],
    },
    Method {
        key: "committee",
        label: "Standard committee",
        paper: [0.86, 70.9, 97.2],
    },
    Method {
        key: "adv",
        label: "Adversarial training after 5 stages",
        paper: [0.87, 44.5, 92.1],
    },
    Method {
        key: "adv-committee",
        label: "Committee of models trained on adv. examples",
        paper: [0.65, 9.8, 36.5],
    },
];

/// The on-line adversarial training baseline of repetition `base_seed`: Goodfellow et al.'s
/// alpha 0.5 and eps 0.25, with Wong et al.'s random start, on Caffe's LeNet recipe at the
/// scale's LeNet iterations (docs/adversarial-training.md, "On-line adversarial training").
pub fn online_job(scale: &Scale, base_seed: u64) -> Job {
    use crate::train::online::OnlineConfig;
    let iterations = scale.lenet_iterations;
    Job {
        name: format!("online-s{base_seed}"),
        spec: JobSpec::Online {
            iterations,
            alpha: OnlineConfig::DEFAULT_ALPHA,
            eps: OnlineConfig::DEFAULT_EPS,
            random_start: true,
            eval_every: OnlineConfig::DEFAULT_EVAL_EVERY.min(iterations),
            eval_images: OnlineConfig::DEFAULT_EVAL_IMAGES.min(scale.test_images),
            seed: base_seed,
        },
        about: format!(
            "on-line adversarial training (alpha {}, eps {}, random start; seed {base_seed}, {iterations} iterations)",
            OnlineConfig::DEFAULT_ALPHA,
            OnlineConfig::DEFAULT_EPS
        ),
    }
}

/// Whether `key` is one of Table 2's rows.
fn is_table_row(key: &str) -> bool {
    METHODS.iter().any(|m| m.key == key)
}

/// The soundness job of Table 2's row `method` at repetition `base_seed`.
pub fn soundness_job(method: &str, base_seed: u64) -> String {
    format!("soundness-{method}-s{base_seed}")
}

/// The low-pass filter of the Table 2 rows: the 5x5 kernel with noise 0.1 injected before it
/// (the study enhances its filter with injected noise without giving the noise's level;
/// docs/defences.md measured 0.1 as the level that buys robustness for a quarter point of clean
/// error).
pub const LOWPASS: PreSpec = PreSpec::Lowpass {
    size: 5,
    noise: 0.1,
};

/// Largest gradient-sign eps swept: distortion 0.2 (Table 2's last column) needs eps near 0.37
/// on the study's models (section 5.3), and defended models distort less per eps.
pub const FGSM_MAX: f64 = 0.5;
/// Largest Gaussian sigma swept (distortion about 0.3 after clipping on MNIST).
pub const GAUSSIAN_MAX: f64 = 1.0;

/// What a sweep job measures, for the report: the method (a Table 2 key, or a figure-only
/// model such as `inp`), the repetition's base seed, and the sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepRole {
    pub method: String,
    pub base_seed: u64,
    pub noise: Noise,
    pub attack: AttackSetting,
    pub gradient: String,
    /// Which source, for transfer (`independent` LeNet or `member-K`).
    pub source: Option<String>,
}

/// The run: its jobs in an order where every job comes after its dependencies, and the role of
/// each sweep.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Plan {
    pub scale: Scale,
    pub seeds: usize,
    pub jobs: Vec<Job>,
    pub roles: Vec<(String, SweepRole)>,
}

impl Plan {
    /// The models whose Gaussian-noise logits one sweep computes and another reads
    /// (`logits_cache`): the members of a committee swept under Gaussian noise without
    /// preprocessing that are also swept so alone (the standard committee's first member, the
    /// plain LeNet; the adversarial committee's last, the `adv` row's snapshot).
    pub fn shared_gaussian_logits(&self) -> HashSet<ModelRef> {
        let gaussian_sweeps = || {
            self.jobs.iter().filter_map(|j| match &j.spec {
                JobSpec::Sweep(s) if matches!(s.noise, Noise::Gaussian) && s.pre.is_empty() => {
                    Some(&s.members)
                }
                _ => None,
            })
        };
        let alone: HashSet<&ModelRef> = gaussian_sweeps()
            .filter(|m| m.len() == 1)
            .map(|m| &m[0])
            .collect();
        gaussian_sweeps()
            .filter(|m| m.len() > 1)
            .flatten()
            .filter(|m| alone.contains(m))
            .cloned()
            .collect()
    }

    pub fn job(&self, name: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.name == name)
    }

    pub fn role(&self, job: &str) -> Option<&SweepRole> {
        self.roles.iter().find(|(j, _)| j == job).map(|(_, r)| r)
    }

    /// The sweep job of `method` at repetition `base_seed` with this noise (by its name), attack
    /// and gradient.
    pub fn sweep_of(
        &self,
        method: &str,
        base_seed: u64,
        noise: &str,
        attack: AttackSetting,
        gradient: &str,
        source: Option<&str>,
    ) -> Option<&str> {
        self.roles
            .iter()
            .find(|(_, r)| {
                r.method == method
                    && r.base_seed == base_seed
                    && r.noise.name() == noise
                    && r.attack == attack
                    && r.gradient == gradient
                    && r.source.as_deref() == source
            })
            .map(|(j, _)| j.as_str())
    }

    /// Whether sweep `job` runs at Table 2's scale (`test_images` and `levels`), rather than at
    /// the smaller scale of the checks beyond the study.
    pub fn at_table_scale(&self, job: &str) -> bool {
        matches!(
            self.job(job).map(|j| &j.spec),
            Some(JobSpec::Sweep(s))
                if s.test_images == self.scale.test_images && s.levels == self.scale.levels
        )
    }

    /// The repetitions' base seeds.
    pub fn base_seeds(&self) -> Vec<u64> {
        (0..self.seeds as u64).map(|r| 1 + 100 * r).collect()
    }
}

/// The plan of a run at `scale`, each row repeated with `seeds` seeds (at least 1).
pub fn plan(scale: &Scale, seeds: usize) -> Plan {
    assert!(seeds >= 1, "at least one seed");
    let mut jobs: Vec<Job> = Vec::new();
    let mut roles: Vec<(String, SweepRole)> = Vec::new();
    let add = |jobs: &mut Vec<Job>, job: Job| {
        if !jobs.iter().any(|j| j.name == job.name) {
            jobs.push(job);
        }
    };
    for r in 0..seeds as u64 {
        let b = 1 + 100 * r;
        let lenet = |seed: u64| format!("lenet-s{seed}");
        let model = |job: &str| ModelRef::new(job, "model.safetensors");
        // Models.
        for seed in (b..b + scale.committee as u64).chain([b + 50]) {
            add(
                &mut jobs,
                Job {
                    name: lenet(seed),
                    spec: JobSpec::Lenet {
                        dropout: "none".into(),
                        iterations: scale.lenet_iterations,
                        seed,
                    },
                    about: format!(
                        "train LeNet (seed {seed}, {} iterations)",
                        scale.lenet_iterations
                    ),
                },
            );
        }
        for (kind, iterations) in [("inp", scale.inp_iterations), ("all", scale.all_iterations)] {
            add(
                &mut jobs,
                Job {
                    name: format!("{kind}-s{b}"),
                    spec: JobSpec::Lenet {
                        dropout: kind.into(),
                        iterations,
                        seed: b,
                    },
                    about: format!(
                        "train LeNet with dropout '{kind}' (seed {b}, {iterations} iterations)"
                    ),
                },
            );
        }
        let dae = format!("dae-s{b}");
        add(
            &mut jobs,
            Job {
                name: dae.clone(),
                spec: JobSpec::Dae {
                    iterations: scale.dae_iterations,
                    seed: b,
                },
                about: format!(
                    "train the denoising autoencoder (seed {b}, {} iterations)",
                    scale.dae_iterations
                ),
            },
        );
        let adv = format!("adv-s{b}");
        add(
            &mut jobs,
            Job {
                name: adv.clone(),
                spec: JobSpec::Advtrain {
                    base_iterations: scale.adv_base_iterations,
                    stages: scale.adv_stages,
                    stage_iterations: scale.adv_stage_iterations,
                    train_images: scale.adv_train_images,
                    eps: crate::train::adversarial::AdvConfig::DEFAULT_EPS,
                    c: crate::train::adversarial::AdvConfig::DEFAULT_C,
                    seed: b,
                    variant: Variant::default(),
                },
                about: format!(
                    "staged adversarial training (seed {b}, {} + {} x {} iterations)",
                    scale.adv_base_iterations, scale.adv_stages, scale.adv_stage_iterations
                ),
            },
        );

        let online = online_job(scale, b);
        add(&mut jobs, online.clone());

        // The defended classifiers, by method key.
        let dae_stage = PreSpec::Dae {
            model: ModelRef::new(&dae, "dae.safetensors"),
        };
        let standard = vec![model(&lenet(b))];
        let all = vec![model(&format!("all-s{b}"))];
        let inp = vec![model(&format!("inp-s{b}"))];
        let committee: Vec<ModelRef> = (b..b + scale.committee as u64)
            .map(|s| model(&lenet(s)))
            .collect();
        let adv_last = vec![ModelRef::new(&adv, &snapshot_file(scale.adv_stages))];
        let adv_committee: Vec<ModelRef> = (0..=scale.adv_stages)
            .map(|k| ModelRef::new(&adv, &snapshot_file(k)))
            .collect();
        let lp = LOWPASS;
        #[allow(clippy::type_complexity)]
        let defended: Vec<(&str, Vec<PreSpec>, Vec<ModelRef>)> = vec![
            ("none", vec![], standard.clone()),
            ("dropout", vec![], all.clone()),
            ("lowpass", vec![lp.clone()], standard.clone()),
            ("dae", vec![dae_stage.clone()], standard.clone()),
            ("lowpass+dropout", vec![lp.clone()], all.clone()),
            ("dae+dropout", vec![dae_stage.clone()], all.clone()),
            ("committee", vec![], committee),
            ("adv", vec![], adv_last.clone()),
            ("adv-committee", vec![], adv_committee.clone()),
            // Figures 3 to 6 only.
            ("inp", vec![], inp.clone()),
            ("lowpass+inp", vec![lp.clone()], inp.clone()),
            ("dae+inp", vec![dae_stage.clone()], inp),
        ];
        let mut sweep = |jobs: &mut Vec<Job>,
                         method: &str,
                         pre: &[PreSpec],
                         members: &[ModelRef],
                         noise: Noise,
                         attack: AttackSetting,
                         gradient: &str,
                         source: Option<(&str, ModelRef)>,
                         extra: bool| {
            let (test_images, levels) = if extra {
                (scale.extra_images, scale.extra_levels)
            } else {
                (scale.test_images, scale.levels)
            };
            let name = format!(
                "sweep-{method}-{noise}-{}-{gradient}{}-s{b}",
                attack.in_job_name(),
                source
                    .as_ref()
                    .map(|(s, _)| format!("-{s}"))
                    .unwrap_or_default()
            );
            let spec = SweepSpec {
                members: members.to_vec(),
                pre: pre.to_vec(),
                noise,
                attack,
                source: source.as_ref().map(|(_, m)| m.clone()),
                gradient: gradient.into(),
                levels,
                max: if noise == Noise::Gaussian {
                    GAUSSIAN_MAX
                } else {
                    FGSM_MAX
                },
                test_images,
                seed: b,
            };
            let how = if attack == AttackSetting::None {
                attack.describe().to_string()
            } else {
                format!(
                    "{}, {gradient} gradient{}",
                    attack.describe(),
                    source
                        .as_ref()
                        .map(|(s, _)| format!(", crafted on {s}"))
                        .unwrap_or_default()
                )
            };
            let about = format!(
                "{noise} sweep of '{method}' ({how}), {levels} levels on {test_images} test images"
            );
            roles.push((
                name.clone(),
                SweepRole {
                    method: method.into(),
                    base_seed: b,
                    noise,
                    attack,
                    gradient: gradient.into(),
                    source: source.map(|(s, _)| s.to_string()),
                },
            ));
            add(
                jobs,
                Job {
                    name,
                    spec: JobSpec::Sweep(spec),
                    about,
                },
            );
        };
        let (fgsm, gaussian) = (Noise::Fgsm, Noise::Gaussian);
        // A job's PGD starts at a random point of the eps-ball.
        let pgd = Noise::Pgd {
            steps: scale.pgd_steps,
            random_start: true,
        };
        for (method, pre, members) in &defended {
            let own = AttackSetting::Own(AttackThrough::Classifier);
            sweep(
                &mut jobs, method, pre, members, fgsm, own, "exact", None, false,
            );
            sweep(
                &mut jobs,
                method,
                pre,
                members,
                gaussian,
                AttackSetting::None,
                "exact",
                None,
                false,
            );
            if !pre.is_empty() {
                let whole = AttackSetting::Own(AttackThrough::Pipeline);
                sweep(
                    &mut jobs, method, pre, members, fgsm, whole, "exact", None, false,
                );
            }
            if pre.is_empty() && members.len() == 1 && *method != "inp" {
                sweep(
                    &mut jobs,
                    method,
                    pre,
                    members,
                    fgsm,
                    own,
                    "caffe-f32",
                    None,
                    false,
                );
            }
        }
        // Beyond the study: is the adversarial committee's robustness real?
        let independent = model(&lenet(b + 50));
        let online_model = vec![ModelRef::new(&online.name, ONLINE_MODEL)];
        for (method, members) in [
            ("adv-committee", &adv_committee),
            ("adv", &adv_last),
            ("none", &standard),
            ("online", &online_model),
        ] {
            // Gradient sign on the same images as the attacks below, for a fair comparison (for
            // a model or committee without preprocessing, white-box is the study's setting).
            sweep(
                &mut jobs,
                method,
                &[],
                members,
                fgsm,
                AttackSetting::Own(AttackThrough::Pipeline),
                "exact",
                None,
                true,
            );
            sweep(
                &mut jobs,
                method,
                &[],
                members,
                pgd,
                AttackSetting::Own(AttackThrough::Pipeline),
                "exact",
                None,
                true,
            );
            sweep(
                &mut jobs,
                method,
                &[],
                members,
                fgsm,
                AttackSetting::Transfer,
                "exact",
                Some(("independent", independent.clone())),
                true,
            );
        }
        for (k, member) in adv_committee.iter().enumerate() {
            sweep(
                &mut jobs,
                "adv-committee",
                &[],
                &adv_committee,
                fgsm,
                AttackSetting::Transfer,
                "exact",
                Some((&format!("member-{k}"), member.clone())),
                true,
            );
        }
        // The soundness table: every Table 2 row evaluated white-box through everything it
        // does, with the checklist's verdicts and certified bounds.
        for (method, pre, members) in defended.iter().filter(|(m, ..)| is_table_row(m)) {
            add(
                &mut jobs,
                Job {
                    name: soundness_job(method, b),
                    spec: JobSpec::Soundness(SoundnessSpec {
                        members: members.clone(),
                        pre: pre.clone(),
                        source: independent.clone(),
                        eps: SOUNDNESS_EPS.to_vec(),
                        scale: scale.soundness.clone(),
                        restarts: crate::attacks::apgd::DEFAULT_RESTARTS,
                        seed: b,
                    }),
                    about: format!(
                        "soundness of '{method}': every attack at eps {} on {} test images, the checklist, certified bounds",
                        SOUNDNESS_EPS.map(|e| e.to_string()).join(" and "),
                        scale.soundness.images
                    ),
                },
            );
        }
    }
    Plan {
        scale: scale.clone(),
        seeds,
        jobs,
        roles,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dependency_comes_before_its_job_and_names_are_unique() {
        for seeds in [1, 2] {
            let p = plan(&Scale::full(), seeds);
            for (i, job) in p.jobs.iter().enumerate() {
                assert_eq!(
                    p.jobs.iter().filter(|j| j.name == job.name).count(),
                    1,
                    "{}",
                    job.name
                );
                for d in job.dependencies() {
                    let at = p.jobs.iter().position(|j| j.name == d).expect("known dep");
                    assert!(at < i, "{} needs {d}, planned later", job.name);
                }
            }
        }
    }

    #[test]
    fn each_committee_shares_the_gaussian_logits_of_the_one_member_swept_alone() {
        for seeds in [1, 2] {
            let shared = plan(&Scale::full(), seeds).shared_gaussian_logits();
            let mut want = HashSet::new();
            for b in plan(&Scale::full(), seeds).base_seeds() {
                // The standard committee's first member is the plain LeNet of its repetition;
                // the adversarial committee's last is the snapshot the `adv` row sweeps.
                want.insert(ModelRef::new(&format!("lenet-s{b}"), "model.safetensors"));
                want.insert(ModelRef::new(
                    &format!("adv-s{b}"),
                    "snapshot-5.safetensors",
                ));
            }
            assert_eq!(shared, want, "{seeds} seeds");
        }
    }

    #[test]
    fn the_checks_beyond_the_study_are_not_at_table_scale() {
        for scale in [Scale::full(), Scale::quick()] {
            let p = plan(&scale, 1);
            // The white-box sweep of a model without preprocessing is a check beyond the study
            // (on fewer images); through a preprocessing pipeline it is a Table 2 row.
            let extra = p
                .sweep_of(
                    "none",
                    1,
                    "fgsm",
                    AttackSetting::Own(AttackThrough::Pipeline),
                    "exact",
                    None,
                )
                .expect("white-box sweep of the plain LeNet");
            assert!(!p.at_table_scale(extra), "{}: {extra}", scale.name);
            let row = p
                .sweep_of(
                    "dae",
                    1,
                    "fgsm",
                    AttackSetting::Own(AttackThrough::Pipeline),
                    "exact",
                    None,
                )
                .expect("white-box sweep through the DAE");
            assert!(p.at_table_scale(row), "{}: {row}", scale.name);
            assert!(!p.at_table_scale("lenet-s1"), "a training job is no sweep");
        }
    }

    #[test]
    fn every_table_row_has_its_study_sweeps_in_every_repetition() {
        let p = plan(&Scale::quick(), 2);
        for b in p.base_seeds() {
            for m in &METHODS {
                let own = AttackSetting::Own(AttackThrough::Classifier);
                assert!(p.sweep_of(m.key, b, "fgsm", own, "exact", None).is_some());
                assert!(p
                    .sweep_of(m.key, b, "gaussian", AttackSetting::None, "exact", None)
                    .is_some());
            }
        }
        // The committee row averages the standard committee's 6 members.
        let job = p
            .job(
                p.sweep_of(
                    "committee",
                    1,
                    "fgsm",
                    AttackSetting::Own(AttackThrough::Classifier),
                    "exact",
                    None,
                )
                .unwrap(),
            )
            .unwrap();
        let JobSpec::Sweep(s) = &job.spec else {
            panic!("a sweep")
        };
        assert_eq!(s.members.len(), 6);
        assert_eq!(job.dependencies().len(), 6);
    }

    /// Job keys are hashes of the specifications' JSON, so that JSON must never change: these
    /// are the SHA-256s of `serde_json::to_string` of the study's jobs (every job but the
    /// soundness table's and the on-line baseline's) as the plan wrote them when the noise and
    /// the attack setting were still strings and a second enum, and before the soundness jobs
    /// and the on-line baseline joined the plan.
    #[test]
    fn plans_serialise_as_they_always_have() {
        for (scale, seeds, want) in [
            (
                Scale::quick(),
                1,
                "74f837d9a8fc8fdc0251062080678493d8fd2c57a84d62f90f41f84dc65047fd",
            ),
            (
                Scale::full(),
                2,
                "e780bf26d238cb743fb49602becb3befa716c27a4bfeb8900786be3dd2907c95",
            ),
        ] {
            let mut jobs = plan(&scale, seeds).jobs;
            jobs.retain(|j| {
                !matches!(j.spec, JobSpec::Soundness(_) | JobSpec::Online { .. })
                    && !j.name.starts_with("sweep-online-")
            });
            let text = serde_json::to_string(&jobs).unwrap();
            let got = crate::hashing::sha256_hex(text.as_bytes());
            assert_eq!(got, want, "{} scale, {seeds} seed(s)", scale.name);
        }
    }

    #[test]
    fn every_table_row_has_one_soundness_job_per_repetition_reading_its_models() {
        let p = plan(&Scale::quick(), 2);
        for b in p.base_seeds() {
            for m in &METHODS {
                let name = soundness_job(m.key, b);
                let job = p.job(&name).unwrap_or_else(|| panic!("{name}"));
                let JobSpec::Soundness(s) = &job.spec else {
                    panic!("{name} is a soundness job")
                };
                // The same defended model as the row's sweep, and the independent LeNet.
                let sweep = p
                    .sweep_of(
                        m.key,
                        b,
                        "fgsm",
                        AttackSetting::Own(AttackThrough::Classifier),
                        "exact",
                        None,
                    )
                    .unwrap();
                let JobSpec::Sweep(row) = &p.job(sweep).unwrap().spec else {
                    panic!("a sweep")
                };
                assert_eq!((&s.members, &s.pre), (&row.members, &row.pre), "{name}");
                assert_eq!(s.source.job, format!("lenet-s{}", b + 50));
                assert_eq!(s.eps, SOUNDNESS_EPS);
                assert!(job.dependencies().contains(&s.source.job));
                assert_eq!(job.outputs(), [SOUNDNESS_FILE]);
                // EOT exactly where noise is injected.
                assert_eq!(
                    s.settings().eot_draws > 1,
                    m.key.starts_with("lowpass"),
                    "{name}"
                );
                let text = serde_json::to_string(&job.spec).unwrap();
                assert_eq!(serde_json::from_str::<JobSpec>(&text).unwrap(), job.spec);
            }
        }
        let count = |p: &Plan| {
            p.jobs
                .iter()
                .filter(|j| matches!(j.spec, JobSpec::Soundness(_)))
                .count()
        };
        assert_eq!(count(&p), 2 * METHODS.len());
        assert_eq!(count(&plan(&Scale::full(), 1)), METHODS.len());
    }

    #[test]
    fn sweep_specs_read_back_as_written() {
        let p = plan(&Scale::quick(), 1);
        let specs: Vec<&SweepSpec> = p
            .jobs
            .iter()
            .filter_map(|j| match &j.spec {
                JobSpec::Sweep(s) => Some(s),
                _ => None,
            })
            .collect();
        for s in &specs {
            let text = serde_json::to_string(&JobSpec::Sweep((*s).clone())).unwrap();
            let back: JobSpec = serde_json::from_str(&text).unwrap();
            assert_eq!(back, JobSpec::Sweep((*s).clone()), "{text}");
        }
        // PGD's steps are a field of their own; the other noises have 0 there.
        let pgd = specs
            .iter()
            .find(|s| matches!(s.noise, Noise::Pgd { .. }))
            .unwrap();
        let json = serde_json::to_value(pgd).unwrap();
        assert_eq!(
            (&json["noise"], &json["pgd_steps"], &json["attack"]),
            (&"pgd".into(), &3.into(), &"whole".into())
        );
        let text = json.to_string().replace("\"pgd\"", "\"fgsm\"");
        let err = serde_json::from_str::<SweepSpec>(&text).unwrap_err();
        assert!(err.to_string().contains("only PGD has steps"), "{err}");
        // A job's PGD starts at a random point: one that does not cannot be written.
        let mut without = (*pgd).clone();
        without.noise = Noise::PGD_DEFAULT;
        assert!(serde_json::to_string(&without).is_err());
    }

    #[test]
    fn attack_settings_keep_their_names() {
        let names: Vec<String> = AttackSetting::ALL
            .iter()
            .map(|a| serde_json::to_string(a).unwrap())
            .collect();
        assert_eq!(
            names,
            ["\"classifier\"", "\"whole\"", "\"transfer\"", "\"none\""]
        );
        for a in AttackSetting::ALL {
            let text = serde_json::to_string(&a).unwrap();
            assert_eq!(serde_json::from_str::<AttackSetting>(&text).unwrap(), a);
        }
        assert!(serde_json::from_str::<AttackSetting>("\"pipeline\"").is_err());
        assert_eq!(
            AttackSetting::Own(AttackThrough::Pipeline).through(),
            AttackThrough::Pipeline
        );
        assert_eq!(AttackSetting::Transfer.through(), AttackThrough::Classifier);
        assert_eq!(
            AttackSetting::Own(AttackThrough::Classifier),
            AttackSetting::Own(AttackThrough::Classifier)
        );
    }
}
