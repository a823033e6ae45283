//! On-line adversarial training (Goodfellow, Shlens and Szegedy, "Explaining and Harnessing
//! Adversarial Examples", ICLR 2015, section 6): every batch's adversarial examples are made
//! from the current weights, and the network descends the objective (their Eq. in section 6)
//!
//! ```text
//! J~(theta, x, y) = alpha J(theta, x, y) + (1 - alpha) J(theta, x + eps sign(grad_x J(theta, x, y)), y)
//! ```
//!
//! with their MNIST values alpha = 0.5 ("In all of our experiments, we used alpha = 0.5") and
//! eps = 0.25. Where staged training (`train::adversarial`, the study's Eq. 3) makes a whole
//! set of examples per stage with a frozen snapshot, here the examples always follow the
//! weights they attack. The run is `advmnist train`'s (Caffe's LeNet recipe, [`TrainConfig`]:
//! xavier weights from `--seed`, the same batches, SGD with momentum 0.9 and weight decay 5e-4,
//! the `inv` learning rate); only the loss differs.
//!
//! Semantic choices, each made where the code is:
//! - **Clipping.** `x_adv = clip(x + eps sign(g), 0, 1)`, exactly `attacks::fgsm`: the paper's
//!   formula does not clip, but its MNIST images live in [0, 1], as every image of this crate
//!   (the study's section 3.1: "each element is in range (0,1)"); an unclipped example would
//!   train the network on pixels no attack or test image ever has. `sign(0) = 0`.
//! - **The gradient of the examples is taken in evaluation mode**, the model as it predicts
//!   (`Classifier::input_gradient`, each image's own loss): those are the examples
//!   `attacks::fgsm` makes at test time, so the model trains on the attack it is measured
//!   against, and they do not depend on a dropout draw. Caffe's LeNet recipe has no dropout, so
//!   here evaluation mode and training mode give the same gradient; the choice would matter only
//!   with dropout. The gradient is of each image's own loss rather than of the batch mean: the
//!   sign is the same, but a mean's 1/B could round a tiny gradient entry to zero.
//! - **The examples are constants of the objective**: the weights' gradient flows through
//!   `J(x_adv)` at fixed `x_adv`, not through the making of `x_adv` (the paper's "adversarial
//!   objective function based on the fast gradient sign method", differentiated as an ordinary
//!   loss on new inputs).
//! - **The weighted objective is a weighted batch**: `[x; x_adv]`, `2B` images, with weights
//!   `alpha / B` and `(1 - alpha) / B` (`LeNet::weighted_loss_and_gradients`); with alpha 0.5
//!   that is the mean loss of the `2B` images. Plain training's loss and its bytes are untouched
//!   (`LeNet::loss_and_gradients` is not this path), and alpha = 1 gives plain training's weights
//!   exactly (tested).
//! - **Random start** (`random_start`, Wong, Rice and Kolter, "Fast is better than free:
//!   Revisiting adversarial training", ICLR 2020, Algorithm 3): each example starts at
//!   `clip(x + U(-eps, eps), 0, 1)`, takes one sign step of 1.25 eps from there, and is
//!   projected back into the eps-ball and [0, 1] (`attacks::pgd`'s start and step). The start is
//!   drawn from the image's random stream of the iteration (`rngs[j]` of the generic loop:
//!   `(seed, t B + j)`), so it does not depend on the thread count and a resumed run draws it
//!   again exactly.
//!
//! Every `eval_every` iterations and at the end the run measures, on the first test images, the
//! clean error and the error under FGSM and under 10-step PGD at eps 0.1 and 0.25 ([`curve`]),
//! so that catastrophic overfitting (FGSM's error falling while PGD's climbs) shows.
//!
//! Files in the output folder: while training, `online.ckpt` (the generic checkpoint) and
//! `online.progress.json` (the curve so far); at the end, `online.safetensors` (the model),
//! `online.json` (the record: settings, curve, the model's SHA-256) and `online.svg` (the
//! curve), written as one set with the manifest `online.sha256` (`report::online::write`),
//! after which the checkpoint and the progress file are removed ([`remove_run_files`]).
//!
//! The parts: [`objective`] (the settings, the recipe and the examples), [`curve`] (the
//! evaluation), [`record`] (the files) and [`run`] (the run, resumably).

pub mod curve;
pub mod objective;
pub mod record;
pub mod run;

pub use curve::{evaluate, AttackError, CurvePoint, CURVE_EPS, CURVE_PGD_STEPS};
pub use objective::{OnlineConfig, OnlineRecipe, OBJECTIVE, RANDOM_START_STEP};
pub use record::{
    to_json, OnlineRecord, CHECKPOINT_FILE, FIGURE_FILE, MODEL_FILE, PROGRESS_FILE, RECORD_FILE,
    SET_NAME,
};
pub use run::{
    remove_run_files, run_online, FinishedRun, OnlineEvent, OnlineOptions, OnlineOutcome,
};

use super::checkpoint::CheckpointError;
use super::TrainError;
use crate::models::file::ModelFileError;
#[cfg(doc)]
use crate::train::TrainConfig;
use std::path::PathBuf;

/// Why a run cannot start, continue or finish; each names the flag or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum OnlineError {
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
    #[error("{path}: an earlier on-line adversarial training run's files are here; pass --resume to continue it, or choose another --out")]
    EarlierRun { path: PathBuf },
    #[error("{path}: not a file of advmnist advtrain --mode online ({reason})")]
    BadRecord { path: PathBuf, reason: String },
    #[error("{path}: the run there was made with {what} {found}, but this run asks for {wanted}; resume with the same settings or choose another --out")]
    Mismatch {
        path: PathBuf,
        what: String,
        found: String,
        wanted: String,
    },
    #[error("{path}: {reason}; the run cannot continue to the same bytes without it: start afresh in another --out")]
    Inconsistent { path: PathBuf, reason: String },
}
