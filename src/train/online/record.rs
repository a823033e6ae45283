//! A run's files: the record `online.json` (the finished run, written with the model file and
//! the curve's figure as one set), the progress file `online.progress.json` (the curve so far,
//! while the run trains) and the model file's metadata.

use super::curve::CurvePoint;
use super::objective::{OnlineConfig, EXAMPLES, EXAMPLES_RANDOM_START, OBJECTIVE};
use super::OnlineError;
use crate::io_safety::write_atomic;
use crate::models::file::{ModelFileError, ModelMeta};
use crate::models::lenet::DropoutRates;
use crate::train::TrainConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The model file of a finished run, in its output folder.
pub const MODEL_FILE: &str = "online.safetensors";
/// The record of a finished run.
pub const RECORD_FILE: &str = "online.json";
/// The curve's figure.
pub const FIGURE_FILE: &str = "online.svg";
/// The name of the set the three form (its manifest: `online.sha256`).
pub const SET_NAME: &str = "online";
/// The training checkpoint, while the run trains.
pub const CHECKPOINT_FILE: &str = "online.ckpt";
/// The curve so far, while the run trains.
pub const PROGRESS_FILE: &str = "online.progress.json";
/// The record's `format` value.
pub const RECORD_FORMAT: &str = "advmnist-online-advtrain";
/// The progress file's `format` value.
pub const PROGRESS_FORMAT: &str = "advmnist-online-progress";

/// `online.json`: the run's settings, how it trained, the curve and the model file's hash.
/// It holds no timings, so equal runs give equal bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OnlineRecord {
    pub format: String,
    pub advmnist_version: String,
    pub config: OnlineConfig,
    /// Caffe's LeNet recipe the run followed (`advmnist train`'s).
    pub recipe: TrainConfig,
    pub objective: String,
    /// How each adversarial example was made.
    pub examples: String,
    pub data_sha256: String,
    /// `online.safetensors`, relative to the record's folder.
    pub model: String,
    /// SHA-256 of the whole model file.
    pub model_sha256: String,
    /// Clean error (%) of the final model on the whole test set.
    pub test_error_pct: f64,
    /// Test images of each curve point: the first `config.eval_images` (or all, if fewer).
    pub curve_images: usize,
    /// One point per evaluation, the last at `config.iterations`.
    pub curve: Vec<CurvePoint>,
}

/// `online.progress.json`: what a resumed run needs beside the checkpoint, the curve so far.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub format: String,
    pub config: OnlineConfig,
    pub data_sha256: String,
    pub curve: Vec<CurvePoint>,
}

/// How the examples of `cfg` are made, in words.
pub fn examples_of(cfg: &OnlineConfig) -> &'static str {
    if cfg.random_start {
        EXAMPLES_RANDOM_START
    } else {
        EXAMPLES
    }
}

pub(super) fn io_error(path: &Path, e: impl std::fmt::Display) -> OnlineError {
    OnlineError::Io {
        path: path.into(),
        reason: e.to_string(),
    }
}

/// JSON text of a record or progress file, with a final newline.
pub fn to_json<T: Serialize>(value: &T) -> String {
    let mut json = serde_json::to_string_pretty(value).expect("plain structs");
    json.push('\n');
    json
}

pub(super) fn write_progress(path: &Path, progress: &Progress) -> Result<(), OnlineError> {
    write_atomic(path, to_json(progress).as_bytes()).map_err(ModelFileError::from)?;
    Ok(())
}

pub(super) fn read_progress(path: &Path) -> Result<Progress, OnlineError> {
    let text = std::fs::read_to_string(path).map_err(|e| io_error(path, e))?;
    let progress: Progress = serde_json::from_str(&text).map_err(|e| OnlineError::BadRecord {
        path: path.into(),
        reason: e.to_string(),
    })?;
    if progress.format != PROGRESS_FORMAT {
        return Err(OnlineError::BadRecord {
            path: path.into(),
            reason: format!("its format is '{}'", progress.format),
        });
    }
    Ok(progress)
}

/// Reads a finished run's record.
pub fn read_record(path: &Path) -> Result<OnlineRecord, OnlineError> {
    let text = std::fs::read_to_string(path).map_err(|e| io_error(path, e))?;
    let record: OnlineRecord = serde_json::from_str(&text).map_err(|e| OnlineError::BadRecord {
        path: path.into(),
        reason: e.to_string(),
    })?;
    if record.format != RECORD_FORMAT {
        return Err(OnlineError::BadRecord {
            path: path.into(),
            reason: format!("its format is '{}'", record.format),
        });
    }
    Ok(record)
}

/// Checks that an earlier run's settings (from its record or progress file at `path`) are
/// this run's, on the same data. The iteration count may differ, as `advmnist train`'s may on
/// resumption: the weights, the learning rate and the evaluations up to an iteration do not
/// depend on where the run will end.
pub(super) fn check_settings(
    path: &Path,
    theirs: &OnlineConfig,
    their_data: &str,
    cfg: &OnlineConfig,
    data_sha256: &str,
) -> Result<(), OnlineError> {
    let pairs = [
        ("--seed", theirs.seed.to_string(), cfg.seed.to_string()),
        ("batch", theirs.batch.to_string(), cfg.batch.to_string()),
        ("--alpha", theirs.alpha.to_string(), cfg.alpha.to_string()),
        ("--eps", theirs.eps.to_string(), cfg.eps.to_string()),
        (
            "--random-start",
            theirs.random_start.to_string(),
            cfg.random_start.to_string(),
        ),
        (
            "--eval-every",
            theirs.eval_every.to_string(),
            cfg.eval_every.to_string(),
        ),
        (
            "evaluation images",
            theirs.eval_images.to_string(),
            cfg.eval_images.to_string(),
        ),
        (
            "training data (SHA-256)",
            their_data.to_string(),
            data_sha256.to_string(),
        ),
    ];
    for (what, found, wanted) in pairs {
        if found != wanted {
            return Err(OnlineError::Mismatch {
                path: path.into(),
                what: what.into(),
                found,
                wanted,
            });
        }
    }
    Ok(())
}

/// The metadata of the finished model file: the usual keys (`advmnist train`'s, no dropout)
/// and, under `online.`, the objective and its settings.
pub fn model_meta(cfg: &OnlineConfig, data_sha256: &str) -> ModelMeta {
    let mut extra = BTreeMap::new();
    let mut put = |key: &str, value: String| {
        extra.insert(format!("online.{key}"), value);
    };
    put("objective", OBJECTIVE.into());
    put("examples", examples_of(cfg).into());
    put("alpha", cfg.alpha.to_string());
    put("eps", cfg.eps.to_string());
    put("random_start", cfg.random_start.to_string());
    put(
        "recipe",
        serde_json::to_string(&cfg.lenet()).expect("plain struct"),
    );
    ModelMeta {
        dropout: DropoutRates::NONE,
        seed: cfg.seed,
        iterations: cfg.iterations,
        data_sha256: data_sha256.to_string(),
        extra,
    }
}
