//! Staged adversarial training: the study's "adversarial committee" (section 3.3, Eq. 3; set up
//! in section 4.1). A LeNet is trained on the natural training set (Caffe's recipe, 10,000
//! iterations): snapshot 0. Then, for stage `k = 1..=K`, the latest snapshot `k-1` makes
//! adversarial versions of the whole training set,
//!
//! ```text
//! X_R = clip(X + eps * sign(grad_X L(theta, X, y)), 0, 1)        the gradient-sign example (Eq. 1)
//! X'  = clip(X_R + c * grad_X L(theta, X_R, y), 0, 1)            Eq. 3's gradient step from it
//! ```
//!
//! which join the pool (the natural images and the adversarial images of every earlier
//! snapshot); stage `k` trains `stage_iterations` more iterations on the whole pool and gives
//! snapshot `k`. The `K + 1` snapshots are the adversarial committee.
//!
//! Semantic choices (docs/adversarial-training.md has the measurements behind them):
//! - **Clipping before the second gradient.** Eq. 3 as the issue writes it is
//!   `clip(X + R + c grad L(X + R))`. Here `X + R` is clipped first: it is the gradient-sign
//!   example of Eq. 1 exactly as `attacks::fgsm` makes it, a valid image, and the study describes
//!   Eq. 3 as two stages, the second adding the scaled gradient "to the gradient sign noise
//!   examples". Unclipped, the second gradient would be taken at pixels of -eps and 1 + eps, a
//!   point the network never sees in training or in any attack. Only pixels that `X + R` pushes
//!   out of [0, 1] are affected by the choice.
//! - **One continuous SGD run.** The learning rate follows Caffe's `inv` policy over the global
//!   iteration count (stage `k` runs iterations `base + (k-1) S .. base + k S`), and the
//!   momentum buffers carry over from one stage to the next: what Caffe does when a run is
//!   continued from its `.solverstate` with a new data source. Restarting the schedule at 0.01
//!   each stage would be a warm restart the study does not mention. Batches are drawn by the
//!   generic loop at the global iteration from the endless sequence of permutations of the
//!   current pool (`train::BatchSampler`).
//! - **Order of the pool**: the natural images, then the set made by snapshot 0, then by
//!   snapshot 1, and so on; every set keeps the training set's order and labels.
//!
//! Files in the output folder: `snapshot-K.safetensors` (model files whose metadata records the
//! stage, eps, c, the pool's composition and the base model's hash), `advtrain.json` (the
//! record: every snapshot with its SHA-256, and every adversarial set's SHA-256) and
//! `advtrain.ckpt` (the generic checkpoint: inside a stage, its latest state; between stages,
//! the finished stage's last state with its momentum, which the next stage continues from).
//! A resumed run reuses every recorded snapshot after checking its hash, makes the current
//! pool again from the snapshots (checking each set against its recorded hash), and continues
//! from the checkpoint, to the bytes an uninterrupted run writes.

use super::checkpoint::{self, CheckpointError};
use super::{run, Event, NoHook, Recipe, TrainConfig, TrainError, TrainOptions, TrainState};
use super::{test_error_pct, TrainingSet};
use crate::attacks::fgsm;
use crate::data::{Dataset, Mnist};
use crate::hashing::{sha256_hex, Sha256Stream};
use crate::io_safety::write_atomic;
use crate::models::file::{encode, read_archive, tensors_of, ModelFileError};
use crate::models::file::{load_model, ModelMeta};
use crate::models::lenet::{DropoutRates, LeNet};
use crate::models::Classifier;
use ndarray::{s, Array4, ArrayView4, ArrayViewMut4, Axis, Zip};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The record's `format` value.
pub const RECORD_FORMAT: &str = "advmnist-advtrain";
/// The record of a run, in its output folder.
pub const RECORD_FILE: &str = "advtrain.json";
/// The run's checkpoint, in its output folder.
pub const CHECKPOINT_FILE: &str = "advtrain.ckpt";
/// Images per piece of work when making adversarial images: each piece is two input-gradient
/// passes of [`crate::models::lenet::INPUT_GRADIENT_CHUNK`] images, and the pieces run in
/// parallel. The partition is fixed from the start of the set, so which images share a pass
/// never depends on the thread count.
pub const ADVERSARIAL_CHUNK: usize = crate::models::lenet::INPUT_GRADIENT_CHUNK;
/// Images between two progress reports while making adversarial images (a multiple of
/// [`ADVERSARIAL_CHUNK`], so reports never split a piece).
const PROGRESS_BLOCK: usize = 16 * ADVERSARIAL_CHUNK;
const PIXELS: usize = 28 * 28;

/// The file name of snapshot `k`.
pub fn snapshot_file(k: usize) -> String {
    format!("snapshot-{k}.safetensors")
}

/// Everything that decides the result of a staged adversarial training run, beyond the data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdvConfig {
    /// Seed of every random draw (initial weights, shuffling).
    pub seed: u64,
    /// Iterations of the natural model (snapshot 0), Caffe's recipe.
    pub base_iterations: u64,
    /// Adversarial stages after the natural model; the run writes `stages + 1` snapshots.
    pub stages: usize,
    /// Iterations per stage.
    pub stage_iterations: u64,
    /// The gradient-sign step (Eq. 1's eps) of the first step.
    pub eps: f32,
    /// The scale of the second step's gradient (Eq. 3's c).
    pub c: f32,
    /// Images per batch (Caffe's LeNet: 64).
    pub batch: usize,
}

impl AdvConfig {
    /// eps 0.25: Goodfellow, Shlens and Szegedy's eps for adversarial training on MNIST (the
    /// study's reference \[3\]). On the 10,000-iteration model it moves a training image by 0.138
    /// per pixel on average after clipping, between the two distortions of the study's Table 2
    /// (0.1 and 0.2) (docs/adversarial-training.md).
    pub const DEFAULT_EPS: f32 = 0.25;
    /// c 0.2 = eps / 1.29, where 1.29 is the median over training images of the largest
    /// |grad_X L| at the gradient-sign example X_R, measured on the 10,000-iteration model
    /// (`examples/advtrain_gradients.rs`): the gradient step then moves the median image's most
    /// sensitive pixel by about eps, as far as the sign step moves every pixel, and adds 0.02
    /// per pixel on average (docs/adversarial-training.md).
    pub const DEFAULT_C: f32 = 0.2;

    /// The global iteration at which stage `k` ends (stage 0: the natural model).
    pub fn stage_end(&self, k: usize) -> u64 {
        self.base_iterations + k as u64 * self.stage_iterations
    }

    /// The global iteration at which stage `k` starts.
    pub fn stage_start(&self, k: usize) -> u64 {
        if k == 0 {
            0
        } else {
            self.stage_end(k - 1)
        }
    }

    /// Caffe's LeNet recipe (no dropout) running to the end of stage `k`.
    pub fn lenet(&self, k: usize) -> TrainConfig {
        TrainConfig {
            iterations: self.stage_end(k),
            batch: self.batch,
            ..TrainConfig::lenet(DropoutRates::NONE, self.seed)
        }
    }

    /// Bytes of the pool stage `k` trains on, in f32: `(k + 1) * n` images of 784 pixels for a
    /// training set of `n` images (stage 5 of MNIST: 6 x 60,000 images, 1.13 GB).
    pub fn pool_bytes(&self, k: usize, n: usize) -> usize {
        (k + 1) * n * PIXELS * std::mem::size_of::<f32>()
    }

    /// Checks the settings, naming the command line's flag at fault.
    pub fn validate(&self) -> Result<(), AdvError> {
        let bad = |flag: &'static str, reason: String| Err(AdvError::Setting { flag, reason });
        if self.base_iterations == 0 {
            return bad("--base-iters", "must be at least 1".into());
        }
        if self.stage_iterations == 0 {
            return bad("--stage-iters", "must be at least 1".into());
        }
        if self.batch == 0 {
            return bad("--batch", "must be at least 1".into());
        }
        if !(self.eps.is_finite() && self.eps > 0.0 && self.eps <= 1.0) {
            return bad("--eps", format!("must be in (0, 1], got {}", self.eps));
        }
        if !(self.c.is_finite() && self.c >= 0.0) {
            return bad(
                "--c",
                format!("must be finite and at least 0, got {}", self.c),
            );
        }
        Ok(())
    }
}

impl Default for AdvConfig {
    /// The study's setting (section 4.1) with this crate's eps and c: seed 1, 10,000 natural
    /// iterations, 5 stages of 5,000, batch 64.
    fn default() -> Self {
        AdvConfig {
            seed: 1,
            base_iterations: 10_000,
            stages: 5,
            stage_iterations: 5_000,
            eps: Self::DEFAULT_EPS,
            c: Self::DEFAULT_C,
            batch: 64,
        }
    }
}

/// The recipe of one stage: Caffe's LeNet recipe to the stage's last global iteration, with
/// the stage's identity, so that a checkpoint says which stage it belongs to and cannot be
/// resumed into another run's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageRecipe {
    pub stage: usize,
    pub lenet: TrainConfig,
    pub base_iterations: u64,
    pub stage_iterations: u64,
    pub eps: f32,
    pub c: f32,
}

impl StageRecipe {
    /// Stage `k` of `cfg`, running to global iteration `until` (the stage's end, or earlier
    /// when the run is asked to stop inside it).
    pub fn new(cfg: &AdvConfig, k: usize, until: u64) -> Self {
        StageRecipe {
            stage: k,
            lenet: TrainConfig {
                iterations: until,
                ..cfg.lenet(k)
            },
            base_iterations: cfg.base_iterations,
            stage_iterations: cfg.stage_iterations,
            eps: cfg.eps,
            c: cfg.c,
        }
    }
}

impl Recipe for StageRecipe {
    type Net = LeNet<f32>;
    fn iterations(&self) -> u64 {
        self.lenet.iterations
    }
    fn seed(&self) -> u64 {
        self.lenet.seed
    }
    fn batch(&self) -> usize {
        self.lenet.batch
    }
    fn initial_net(&self) -> LeNet<f32> {
        self.lenet.initial_net()
    }
    fn loss_and_gradients(
        &self,
        net: &LeNet<f32>,
        x: ArrayView4<f32>,
        labels: &[u8],
        rngs: &mut [ChaCha8Rng],
    ) -> (f32, LeNet<f32>) {
        self.lenet.loss_and_gradients(net, x, labels, rngs)
    }
    /// Caffe's update with the `inv` rate at the global iteration `t`: the schedule runs on
    /// across stages.
    fn update(
        &self,
        net: &mut LeNet<f32>,
        grads: &LeNet<f32>,
        velocity: &mut LeNet<f32>,
        t: u64,
    ) -> f64 {
        self.lenet.update(net, grads, velocity, t)
    }
    fn settings(&self) -> Vec<(&'static str, String)> {
        let mut s = self.lenet.settings();
        s.extend([
            ("the stage", self.stage.to_string()),
            ("--base-iters", self.base_iterations.to_string()),
            ("--stage-iters", self.stage_iterations.to_string()),
            ("--eps", self.eps.to_string()),
            ("--c", self.c.to_string()),
        ]);
        s
    }
}

/// One set of adversarial versions of the training set, made by one snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdversarialSet {
    pub from_snapshot: usize,
    pub images: usize,
    /// SHA-256 of the set's pixels as little-endian f32, image after image.
    pub sha256: String,
}

/// What a stage trains on: the natural training set and the adversarial sets of earlier
/// snapshots, in this order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PoolComposition {
    pub natural: usize,
    pub adversarial: Vec<AdversarialSet>,
}

impl PoolComposition {
    pub fn images(&self) -> usize {
        self.natural + self.adversarial.iter().map(|s| s.images).sum::<usize>()
    }
}

/// One finished snapshot, as `advtrain.json` lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub stage: usize,
    /// The file name, relative to the record's folder.
    pub path: String,
    /// SHA-256 of the whole file.
    pub sha256: String,
    /// Updates made since the xavier initialisation (the global iteration).
    pub iterations: u64,
    /// What the stage that made this snapshot trained on (stage 0: the natural set alone).
    pub pool: PoolComposition,
    pub eps: f32,
    pub c: f32,
    pub seed: u64,
    /// Test error (%) on the test set the run was given.
    pub test_error_pct: f64,
}

/// `advtrain.json`: the run's settings, every snapshot, and every adversarial set made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdvRecord {
    pub format: String,
    pub advmnist_version: String,
    pub config: AdvConfig,
    pub data_sha256: String,
    /// How each adversarial image was made.
    pub formula: String,
    /// SHA-256 of `snapshot-0.safetensors`, once written.
    pub base_model_sha256: Option<String>,
    pub snapshots: Vec<SnapshotRecord>,
    pub adversarial_sets: Vec<AdversarialSet>,
}

/// The formula, as recorded in the record and in every snapshot's metadata.
pub const FORMULA: &str = "X' = clip(X_R + c * grad_X L(theta, X_R, y), 0, 1), X_R = clip(X + eps * sign(grad_X L(theta, X, y)), 0, 1), sign(0) = 0";

/// How a run is driven: resumption, checkpoints, evaluation, and an optional early stop.
#[derive(Clone, Debug)]
pub struct AdvOptions {
    /// Continue the run found in the folder (without it, a folder holding a run is refused).
    pub resume: bool,
    /// Checkpoint every N global iterations (0: only at the end of each stage).
    pub checkpoint_every: u64,
    /// Measure the test error every N global iterations (0: only at each stage's end).
    pub eval_every: u64,
    /// Stop once this global iteration is reached, with a checkpoint (and, at a stage's end,
    /// its snapshot), as a run killed right after its checkpoint; `--resume` continues it.
    pub stop_after: Option<u64>,
}

impl Default for AdvOptions {
    fn default() -> Self {
        AdvOptions {
            resume: false,
            checkpoint_every: 1000,
            eval_every: 0,
            stop_after: None,
        }
    }
}

/// What a run produced.
#[derive(Clone, Debug, PartialEq)]
pub struct AdvOutcome {
    /// `DIR/snapshot-0.safetensors`, ..., one per finished stage.
    pub snapshots: Vec<PathBuf>,
    /// `DIR/advtrain.json`.
    pub record: PathBuf,
    /// Whether every stage is done (false after `stop_after`).
    pub finished: bool,
    /// How many snapshots were reused from an earlier run after checking their hashes.
    pub reused: usize,
}

/// Progress reports from [`run_adversarial`].
#[derive(Clone, Debug)]
pub enum AdvEvent {
    /// A note for the user (e.g. where a resumed run continues).
    Note(String),
    /// Snapshot `stage` of an earlier run was found intact and is reused.
    SnapshotReused { stage: usize, path: PathBuf },
    /// Progress making the adversarial set of snapshot `from_snapshot`, used from stage
    /// `from_snapshot + 1` on (`done` of `total` images).
    MakingAdversarial {
        stage: usize,
        stages: usize,
        from_snapshot: usize,
        done: usize,
        total: usize,
    },
    /// Stage `stage` (0: the natural model) starts or resumes training, at global iteration
    /// `from`, to `to`, on `pool`.
    Training {
        stage: usize,
        stages: usize,
        from: u64,
        to: u64,
        pool: PoolComposition,
    },
    /// The generic loop's report inside stage `stage` (iterations are global).
    Train { stage: usize, event: Event },
    /// Snapshot `stage` is written.
    SnapshotSaved {
        stage: usize,
        path: PathBuf,
        sha256: String,
        test_error_pct: f64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum AdvError {
    #[error("{flag} {reason}")]
    Setting { flag: &'static str, reason: String },
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    File(#[from] ModelFileError),
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("{path}: an earlier adversarial training run's files are here; pass --resume to continue it, or choose another --out")]
    EarlierRun { path: PathBuf },
    #[error("{path}: not a record of advmnist advtrain ({reason})")]
    BadRecord { path: PathBuf, reason: String },
    #[error("{path}: the run there was made with {what} {found}, but this run asks for {wanted}; resume with the same settings or choose another --out")]
    Mismatch {
        path: PathBuf,
        what: String,
        found: String,
        wanted: String,
    },
    #[error("{path}: its SHA-256 is {found}, but {record} records {wanted}: the file changed after the run wrote it; delete it, its later snapshots and the record's entries (or the whole folder) to have them made again")]
    SnapshotChanged {
        path: PathBuf,
        record: PathBuf,
        found: String,
        wanted: String,
    },
    #[error("the adversarial images made again from snapshot {from_snapshot} have SHA-256 {found}, but {record} records {wanted}: this build or machine computes them differently, so the run cannot continue to the same bytes; start it afresh in another --out")]
    SetChanged {
        from_snapshot: usize,
        record: PathBuf,
        found: String,
        wanted: String,
    },
    #[error("{path}: {reason}; the run cannot continue to the same bytes without it: start afresh in another --out")]
    Inconsistent { path: PathBuf, reason: String },
}

/// Eq. 3's second step for a batch: `clip(x_r + c * g, 0, 1)`, `g` the gradient at `x_r`.
pub fn gradient_step(x_r: ArrayView4<f32>, g: ArrayView4<f32>, c: f32) -> Array4<f32> {
    Zip::from(&x_r)
        .and(&g)
        .par_map_collect(|&x, &g| (x + c * g).clamp(0.0, 1.0))
}

/// The adversarial versions (Eq. 3, see the module's documentation) of one piece of images,
/// written into `out`: two input-gradient passes of `model`.
fn adversarial_piece(
    model: &dyn Classifier,
    x: ArrayView4<f32>,
    labels: &[u8],
    eps: f32,
    c: f32,
    mut out: ArrayViewMut4<f32>,
) {
    let x_r = fgsm::fgsm(model, x, labels, eps);
    let (_, g) = model.input_gradient(x_r.view(), labels);
    out.assign(&gradient_step(x_r.view(), g.view(), c));
}

/// Fills `out` (`(N, 1, 28, 28)`) with the adversarial versions of `x` under `model`, pieces of
/// [`ADVERSARIAL_CHUNK`] images in parallel, calling `progress(done)` after every block of
/// pieces. Every image's result is the same whatever the thread count: the pieces are fixed,
/// and each piece's passes are.
fn fill_adversarial(
    model: &dyn Classifier,
    x: ArrayView4<f32>,
    labels: &[u8],
    eps: f32,
    c: f32,
    mut out: ArrayViewMut4<f32>,
    mut progress: impl FnMut(usize),
) {
    let n = x.dim().0;
    assert_eq!(labels.len(), n, "one label per image");
    assert_eq!(out.dim(), x.dim(), "one output per image");
    for block in (0..n).step_by(PROGRESS_BLOCK) {
        let end = (block + PROGRESS_BLOCK).min(n);
        // The pieces are independent (no image's result depends on another piece), so they run
        // in parallel; each writes only its own rows of `out`.
        out.slice_mut(s![block..end, .., .., ..])
            .axis_chunks_iter_mut(Axis(0), ADVERSARIAL_CHUNK)
            .into_par_iter()
            .enumerate()
            .for_each(|(i, piece)| {
                let start = block + i * ADVERSARIAL_CHUNK;
                let range = start..start + piece.dim().0;
                adversarial_piece(
                    model,
                    x.slice(s![range.clone(), .., .., ..]),
                    &labels[range],
                    eps,
                    c,
                    piece,
                );
            });
        progress(end);
    }
}

/// The adversarial versions of `x` under `model` (Eq. 3 with the clipping described in the
/// module's documentation), made as a stage makes them.
pub fn adversarial_examples(
    model: &dyn Classifier,
    x: ArrayView4<f32>,
    labels: &[u8],
    eps: f32,
    c: f32,
) -> Array4<f32> {
    let mut out = Array4::zeros(x.raw_dim());
    fill_adversarial(model, x, labels, eps, c, out.view_mut(), |_| {});
    out
}

/// SHA-256 of images as little-endian f32, image after image.
pub fn images_sha256(images: ArrayView4<f32>) -> String {
    let mut hasher = Sha256Stream::new();
    let mut buffer = Vec::with_capacity(4 * PIXELS);
    for image in images.outer_iter() {
        buffer.clear();
        buffer.extend(image.iter().flat_map(|v| v.to_le_bytes()));
        hasher.update(&buffer);
    }
    hasher.hex()
}

/// The pool a stage trains on, grown in place: one buffer with room for every set the run
/// will add, so that adding a set never copies the pool (at stage 5 it is 1.13 GB).
struct Pool {
    data: Dataset,
    composition: PoolComposition,
}

impl Pool {
    fn natural(train: &Dataset, sets_to_come: usize) -> Pool {
        let n = train.len();
        let mut pixels = Vec::with_capacity((1 + sets_to_come) * n * PIXELS);
        pixels.extend(train.images.iter());
        Pool {
            data: Dataset {
                images: Array4::from_shape_vec((n, 1, 28, 28), pixels).expect("n images"),
                labels: train.labels.clone(),
            },
            composition: PoolComposition {
                natural: n,
                adversarial: Vec::new(),
            },
        }
    }

    /// Makes snapshot `from_snapshot`'s adversarial versions of the natural images at the end
    /// of the pool, and returns their record.
    fn add_adversarial(
        &mut self,
        model: &LeNet<f32>,
        from_snapshot: usize,
        eps: f32,
        c: f32,
        progress: impl FnMut(usize),
    ) -> AdversarialSet {
        let n = self.composition.natural;
        let old = std::mem::replace(&mut self.data.images, Array4::zeros((0, 1, 28, 28)));
        let (mut pixels, offset) = old.into_raw_vec_and_offset();
        debug_assert_eq!(offset, Some(0));
        let start = pixels.len() / PIXELS;
        pixels.resize(pixels.len() + n * PIXELS, 0.0);
        let mut images =
            Array4::from_shape_vec((start + n, 1, 28, 28), pixels).expect("whole images");
        let (natural, mut rest) = images.view_mut().split_at(Axis(0), n);
        let labels = &self.data.labels[..n];
        fill_adversarial(
            model,
            natural.view(),
            labels,
            eps,
            c,
            rest.slice_mut(s![start - n.., .., .., ..]),
            progress,
        );
        let set = AdversarialSet {
            from_snapshot,
            images: n,
            sha256: images_sha256(images.slice(s![start.., .., .., ..])),
        };
        self.data.images = images;
        self.data.labels.extend_from_within(..n);
        self.composition.adversarial.push(set.clone());
        set
    }
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> AdvError {
    AdvError::Io {
        path: path.into(),
        reason: e.to_string(),
    }
}

fn write_record(path: &Path, record: &AdvRecord) -> Result<(), AdvError> {
    let mut json = serde_json::to_string_pretty(record).expect("plain structs");
    json.push('\n');
    write_atomic(path, json.as_bytes()).map_err(ModelFileError::from)?;
    Ok(())
}

fn read_record(path: &Path) -> Result<AdvRecord, AdvError> {
    let text = std::fs::read_to_string(path).map_err(|e| io_error(path, e))?;
    let record: AdvRecord = serde_json::from_str(&text).map_err(|e| AdvError::BadRecord {
        path: path.into(),
        reason: e.to_string(),
    })?;
    if record.format != RECORD_FORMAT {
        return Err(AdvError::BadRecord {
            path: path.into(),
            reason: format!("its format is '{}'", record.format),
        });
    }
    Ok(record)
}

/// Checks that an earlier run's record was made with the same settings (the stage count may
/// differ: more stages continue the run, fewer stop it sooner) on the same data.
fn check_record(
    path: &Path,
    record: &AdvRecord,
    cfg: &AdvConfig,
    data_sha256: &str,
) -> Result<(), AdvError> {
    let theirs = &record.config;
    let pairs = [
        ("--seed", theirs.seed.to_string(), cfg.seed.to_string()),
        (
            "--base-iters",
            theirs.base_iterations.to_string(),
            cfg.base_iterations.to_string(),
        ),
        (
            "--stage-iters",
            theirs.stage_iterations.to_string(),
            cfg.stage_iterations.to_string(),
        ),
        ("--eps", theirs.eps.to_string(), cfg.eps.to_string()),
        ("--c", theirs.c.to_string(), cfg.c.to_string()),
        ("batch", theirs.batch.to_string(), cfg.batch.to_string()),
        (
            "training data (SHA-256)",
            record.data_sha256.clone(),
            data_sha256.to_string(),
        ),
    ];
    for (what, found, wanted) in pairs {
        if found != wanted {
            return Err(AdvError::Mismatch {
                path: path.into(),
                what: what.into(),
                found,
                wanted,
            });
        }
    }
    for (k, snapshot) in record.snapshots.iter().enumerate() {
        if snapshot.stage != k || snapshot.path != snapshot_file(k) {
            return Err(AdvError::BadRecord {
                path: path.into(),
                reason: format!(
                    "its snapshot {k} is listed as stage {} at {}",
                    snapshot.stage, snapshot.path
                ),
            });
        }
    }
    Ok(())
}

/// Whether `dir` holds any file of a run.
fn holds_a_run(dir: &Path) -> bool {
    dir.join(RECORD_FILE).exists()
        || dir.join(CHECKPOINT_FILE).exists()
        || std::fs::read_dir(dir).is_ok_and(|entries| {
            entries.filter_map(|e| e.ok()).any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with("snapshot-") && name.ends_with(".safetensors")
            })
        })
}

/// Loads snapshot `k` after checking its hash against the record.
fn load_recorded_snapshot(
    dir: &Path,
    record: &AdvRecord,
    k: usize,
) -> Result<LeNet<f32>, AdvError> {
    let path = dir.join(&record.snapshots[k].path);
    let bytes = std::fs::read(&path).map_err(|e| io_error(&path, e))?;
    let found = sha256_hex(&bytes);
    if found != record.snapshots[k].sha256 {
        return Err(AdvError::SnapshotChanged {
            path,
            record: dir.join(RECORD_FILE),
            found,
            wanted: record.snapshots[k].sha256.clone(),
        });
    }
    Ok(load_model(&path)?.0)
}

/// The stage a checkpoint belongs to, read from its recipe.
fn checkpoint_stage(path: &Path) -> Result<usize, AdvError> {
    let archive = read_archive(path)?;
    archive
        .metadata
        .get("config")
        .and_then(|c| serde_json::from_str::<StageRecipe>(c).ok())
        .map(|r| r.stage)
        .ok_or_else(|| {
            AdvError::Checkpoint(CheckpointError::NotACheckpoint {
                path: path.into(),
                reason: "its recipe is not a stage of advmnist advtrain".into(),
            })
        })
}

/// The metadata of snapshot `k`'s model file.
fn snapshot_meta(
    cfg: &AdvConfig,
    data: &Mnist,
    k: usize,
    pool: &PoolComposition,
    record: &AdvRecord,
) -> ModelMeta {
    let mut extra = BTreeMap::new();
    let mut put = |key: &str, value: String| {
        extra.insert(format!("advtrain.{key}"), value);
    };
    put("stage", k.to_string());
    put("eps", cfg.eps.to_string());
    put("c", cfg.c.to_string());
    put("pool", serde_json::to_string(pool).expect("plain struct"));
    put("formula", FORMULA.into());
    put(
        "base_model_sha256",
        match (&record.base_model_sha256, k) {
            (_, 0) => "self: this is the base model (stage 0)".into(),
            (Some(h), _) => h.clone(),
            (None, _) => unreachable!("snapshot 0 is recorded before stage 1"),
        },
    );
    if k > 0 {
        put(
            "previous_snapshot_sha256",
            record.snapshots[k - 1].sha256.clone(),
        );
    }
    put(
        "schedule",
        "one SGD run: Caffe's inv learning rate at the global iteration, momentum carried across stages".into(),
    );
    put(
        "recipe",
        serde_json::to_string(&cfg.lenet(k)).expect("plain struct"),
    );
    ModelMeta {
        dropout: DropoutRates::NONE,
        seed: cfg.seed,
        iterations: cfg.stage_end(k),
        data_sha256: data.sha256.clone(),
        extra,
    }
}

/// Runs (or, with `options.resume`, continues) staged adversarial training into `dir`: see the
/// module's documentation. `data.train` is the natural training set; `data.test` is used for
/// the test error of each snapshot (and every `options.eval_every` iterations).
pub fn run_adversarial(
    cfg: &AdvConfig,
    data: &Mnist,
    dir: &Path,
    options: &AdvOptions,
    mut observer: impl FnMut(AdvEvent),
) -> Result<AdvOutcome, AdvError> {
    cfg.validate()?;
    if cfg.batch > data.train.len() {
        return Err(AdvError::Setting {
            flag: "--batch",
            reason: format!(
                "{} is larger than the training set ({} images)",
                cfg.batch,
                data.train.len()
            ),
        });
    }
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let record_path = dir.join(RECORD_FILE);
    let ckpt = dir.join(CHECKPOINT_FILE);
    if !options.resume && holds_a_run(dir) {
        return Err(AdvError::EarlierRun { path: dir.into() });
    }
    let mut record = if record_path.exists() {
        let r = read_record(&record_path)?;
        check_record(&record_path, &r, cfg, &data.sha256)?;
        r
    } else {
        AdvRecord {
            format: RECORD_FORMAT.into(),
            advmnist_version: env!("CARGO_PKG_VERSION").into(),
            config: cfg.clone(),
            data_sha256: data.sha256.clone(),
            formula: FORMULA.into(),
            base_model_sha256: None,
            snapshots: Vec::new(),
            adversarial_sets: Vec::new(),
        }
    };
    if record.snapshots.len() > cfg.stages + 1 {
        return Err(AdvError::Mismatch {
            path: record_path,
            what: "--stages".into(),
            found: (record.snapshots.len() - 1).to_string(),
            wanted: cfg.stages.to_string(),
        });
    }
    record.config.stages = cfg.stages;
    let done = record.snapshots.len();
    let mut snapshots = Vec::new();
    for k in 0..done {
        snapshots.push(dir.join(snapshot_file(k)));
    }
    let finish = |snapshots: Vec<PathBuf>, finished| AdvOutcome {
        snapshots,
        record: dir.join(RECORD_FILE),
        finished,
        reused: done,
    };
    if done == cfg.stages + 1 {
        // Every stage is done: check the snapshots, nothing else to do.
        for (k, path) in snapshots.iter().enumerate() {
            load_recorded_snapshot(dir, &record, k)?;
            observer(AdvEvent::SnapshotReused {
                stage: k,
                path: path.clone(),
            });
        }
        return Ok(finish(snapshots, true));
    }

    // The state the next stage starts from. Stage `done` is either in progress in the
    // checkpoint, or about to start from the end of stage `done - 1`, which the checkpoint holds.
    let first = done;
    let mut state: TrainState = if ckpt.exists() {
        let stage = checkpoint_stage(&ckpt)?;
        if stage + 1 == first {
            let recipe = StageRecipe::new(cfg, stage, cfg.stage_end(stage));
            let state = checkpoint::load(&ckpt, &recipe, &data.sha256)?;
            if state.iteration != cfg.stage_end(stage) {
                return Err(AdvError::Inconsistent {
                    path: ckpt,
                    reason: format!("it holds stage {stage} at iteration {}, before the end of that stage, whose snapshot is recorded", state.iteration),
                });
            }
            state
        } else if stage == first {
            let recipe = StageRecipe::new(cfg, stage, cfg.stage_end(stage));
            checkpoint::load(&ckpt, &recipe, &data.sha256)?
        } else {
            return Err(AdvError::Inconsistent {
                path: ckpt,
                reason: format!(
                    "it holds stage {stage}, but {} records {done} finished snapshots",
                    record_path.display()
                ),
            });
        }
    } else if first == 0 {
        TrainState::start(StageRecipe::new(cfg, 0, cfg.stage_end(0)).initial_net())
    } else {
        return Err(AdvError::Inconsistent {
            path: ckpt,
            reason: format!(
                "the momentum at the end of stage {} is kept there, and the file is missing",
                first - 1
            ),
        });
    };
    if options.resume && (done > 0 || state.iteration > 0) {
        observer(AdvEvent::Note(format!(
            "resuming in {}: {done} snapshot(s) done, stage {first} from iteration {}",
            dir.display(),
            state.iteration
        )));
    }

    // The snapshots already made: check them, and make the pool they contributed to again.
    let mut pool = Pool::natural(&data.train, cfg.stages);
    let mut latest: Option<LeNet<f32>> = None;
    for (k, path) in snapshots.iter().enumerate() {
        let net = load_recorded_snapshot(dir, &record, k)?;
        observer(AdvEvent::SnapshotReused {
            stage: k,
            path: path.clone(),
        });
        if k + 1 < done {
            // Snapshot k's set was made before stage k + 1, which is finished.
            add_set(
                &mut pool,
                &net,
                k,
                cfg,
                &mut record,
                &record_path,
                &mut observer,
            )?;
        }
        latest = Some(net);
    }
    if let Some(net) = &latest {
        if state.iteration == cfg.stage_end(first - 1) && state.net != *net {
            return Err(AdvError::Inconsistent {
                path: ckpt,
                reason: format!(
                    "its weights at the end of stage {} differ from {}",
                    first - 1,
                    snapshots[first - 1].display()
                ),
            });
        }
    }

    let evaluate =
        |net: &LeNet<f32>| test_error_pct(net, data.test.images.view(), &data.test.labels);
    for k in first..=cfg.stages {
        if k > 0 && pool.composition.adversarial.len() < k {
            let net = latest
                .take()
                .expect("the previous snapshot is loaded or just made");
            add_set(
                &mut pool,
                &net,
                k - 1,
                cfg,
                &mut record,
                &record_path,
                &mut observer,
            )?;
        }
        let end = cfg.stage_end(k);
        let until = options
            .stop_after
            .map_or(end, |s| s.clamp(state.iteration, end));
        let recipe = StageRecipe::new(cfg, k, until);
        observer(AdvEvent::Training {
            stage: k,
            stages: cfg.stages,
            from: state.iteration,
            to: end,
            pool: pool.composition.clone(),
        });
        let mut last_evaluation = None;
        state = run(
            &recipe,
            TrainingSet {
                data: &pool.data,
                sha256: &data.sha256,
            },
            state,
            &TrainOptions {
                checkpoint: Some(ckpt.clone()),
                checkpoint_every: options.checkpoint_every,
                eval_every: options.eval_every,
            },
            Some(&evaluate),
            &mut NoHook,
            |event| {
                if let Event::Evaluated { iteration, value } = event {
                    last_evaluation = Some((iteration, value));
                }
                observer(AdvEvent::Train { stage: k, event })
            },
        )?;
        if let Some((name, _, value)) = state.net.first_non_finite() {
            return Err(TrainError::Diverged {
                iteration: state.iteration,
                what: format!("a weight of {name}"),
                value: value as f32,
                last_checkpoint: None,
            }
            .into());
        }
        // The checkpoint goes first: written after the snapshot, a kill in between would leave
        // a recorded snapshot without the momentum the next stage continues from.
        checkpoint::save(&ckpt, &recipe, &data.sha256, &state)?;
        if state.iteration < end {
            return Ok(finish(snapshots, false));
        }
        let test_error = match last_evaluation {
            Some((iteration, value)) if iteration == state.iteration => value,
            _ => evaluate(&state.net),
        };
        let meta = snapshot_meta(cfg, data, k, &pool.composition, &record);
        let bytes = encode(&tensors_of(&state.net, ""), &meta.to_map());
        let path = dir.join(snapshot_file(k));
        write_atomic(&path, &bytes).map_err(ModelFileError::from)?;
        let sha256 = sha256_hex(&bytes);
        if k == 0 {
            record.base_model_sha256 = Some(sha256.clone());
        }
        record.snapshots.push(SnapshotRecord {
            stage: k,
            path: snapshot_file(k),
            sha256: sha256.clone(),
            iterations: state.iteration,
            pool: pool.composition.clone(),
            eps: cfg.eps,
            c: cfg.c,
            seed: cfg.seed,
            test_error_pct: test_error,
        });
        write_record(&record_path, &record)?;
        observer(AdvEvent::SnapshotSaved {
            stage: k,
            path: path.clone(),
            sha256,
            test_error_pct: test_error,
        });
        snapshots.push(path);
        latest = Some(state.net.clone());
        if options.stop_after.is_some_and(|s| s <= end) && k < cfg.stages {
            return Ok(finish(snapshots, false));
        }
    }
    Ok(finish(snapshots, true))
}

/// Makes snapshot `k`'s adversarial set into the pool, and records it (or checks it against
/// the record when an earlier run made it).
fn add_set(
    pool: &mut Pool,
    net: &LeNet<f32>,
    k: usize,
    cfg: &AdvConfig,
    record: &mut AdvRecord,
    record_path: &Path,
    observer: &mut impl FnMut(AdvEvent),
) -> Result<(), AdvError> {
    let total = pool.composition.natural;
    observer(AdvEvent::MakingAdversarial {
        stage: k + 1,
        stages: cfg.stages,
        from_snapshot: k,
        done: 0,
        total,
    });
    let set = pool.add_adversarial(net, k, cfg.eps, cfg.c, |done| {
        observer(AdvEvent::MakingAdversarial {
            stage: k + 1,
            stages: cfg.stages,
            from_snapshot: k,
            done,
            total,
        })
    });
    match record.adversarial_sets.get(k) {
        Some(recorded) if *recorded != set => Err(AdvError::SetChanged {
            from_snapshot: k,
            record: record_path.into(),
            found: set.sha256,
            wanted: recorded.sha256.clone(),
        }),
        Some(_) => Ok(()),
        None => {
            record.adversarial_sets.push(set);
            write_record(record_path, record)
        }
    }
}
