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
//! - **Clipping before the second gradient.** Eq. 3 reads
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
//!
//! The parts, each in its own file: [`config`] (what decides a run's result, and each stage's
//! recipe), [`eq3`] (the study's Eq. 3 example maker), [`pool`] (the growing training pool),
//! [`record`] (`advtrain.json`, the snapshots' files and their checks) and [`run`] (the stages
//! run one after another, resumably).

pub mod config;
pub mod eq3;
pub mod pool;
pub mod record;
pub mod run;

pub use config::{AdvConfig, AdvOptions, StageRecipe, Variant};
pub use eq3::{adversarial_examples, gradient_step, ADVERSARIAL_CHUNK, FORMULA};
pub use pool::{images_sha256, AdversarialSet, PoolComposition};
pub use record::{
    read_record, snapshot_file, AdvRecord, SnapshotRecord, CHECKPOINT_FILE, RECORD_FILE,
    RECORD_FORMAT,
};
pub use run::{run_adversarial, AdvEvent, AdvOutcome, FRESH_FILE};

use super::checkpoint::CheckpointError;
use super::TrainError;
use crate::models::file::ModelFileError;
use std::path::PathBuf;

/// Why a run cannot start, continue or finish; each names the flag or file at fault.
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
