//! Training checkpoints: the weights, the momentum buffers, the iteration and the run's
//! configuration, in one safetensors file written atomically (temporary file, then rename).
//!
//! The random state needs no tensor of its own: every random draw of a run is a function of
//! `(seed, iteration)` (see `rng::stream`), and both are in the metadata.

use super::{TrainConfig, TrainState};
use crate::models::file::{encode, lenet_tensors, read_archive, write_atomic, ModelFileError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const CHECKPOINT_FORMAT: &str = "advmnist-checkpoint";
const MOMENTUM_PREFIX: &str = "momentum.";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    File(#[from] ModelFileError),
    #[error("{path}: not an advmnist training checkpoint ({reason})")]
    NotACheckpoint { path: PathBuf, reason: String },
    #[error("{path}: the checkpoint was made with {what} {found}, but this run asks for {wanted}; resume with the same settings or start afresh without --resume")]
    Mismatch {
        path: PathBuf,
        what: String,
        found: String,
        wanted: String,
    },
    #[error("{path}: the checkpoint is at iteration {found}, past the requested --iters {wanted}")]
    PastTheEnd {
        path: PathBuf,
        found: u64,
        wanted: u64,
    },
}

pub fn save(
    path: &Path,
    cfg: &TrainConfig,
    data_sha256: &str,
    state: &TrainState,
) -> Result<(), CheckpointError> {
    let mut tensors = lenet_tensors(&state.net, "");
    tensors.extend(lenet_tensors(&state.velocity, MOMENTUM_PREFIX));
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), CHECKPOINT_FORMAT.to_string());
    meta.insert("iteration".into(), state.iteration.to_string());
    meta.insert(
        "config".into(),
        serde_json::to_string(cfg).expect("plain struct"),
    );
    meta.insert("data_sha256".into(), data_sha256.to_string());
    write_atomic(path, &encode(&tensors, &meta))?;
    Ok(())
}

/// Loads a checkpoint made by a run with the same configuration (the iteration count may grow)
/// on the same data.
pub fn load(
    path: &Path,
    cfg: &TrainConfig,
    data_sha256: &str,
) -> Result<TrainState, CheckpointError> {
    let mut archive = read_archive(path)?;
    let not = |reason: &str| CheckpointError::NotACheckpoint {
        path: path.into(),
        reason: reason.into(),
    };
    if archive.metadata.get("format").map(String::as_str) != Some(CHECKPOINT_FORMAT) {
        return Err(not("its metadata has no format 'advmnist-checkpoint'"));
    }
    let iteration: u64 = archive
        .metadata
        .get("iteration")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| not("no valid 'iteration'"))?;
    let saved: TrainConfig = archive
        .metadata
        .get("config")
        .and_then(|v| serde_json::from_str(v).ok())
        .ok_or_else(|| not("no valid 'config'"))?;
    let mismatch = |what: &str, found: String, wanted: String| {
        Err(CheckpointError::Mismatch {
            path: path.into(),
            what: what.into(),
            found,
            wanted,
        })
    };
    if saved.seed != cfg.seed {
        return mismatch("--seed", saved.seed.to_string(), cfg.seed.to_string());
    }
    if saved.batch != cfg.batch {
        return mismatch("--batch", saved.batch.to_string(), cfg.batch.to_string());
    }
    if saved.dropout != cfg.dropout {
        return mismatch(
            "--dropout",
            saved.dropout.describe(),
            cfg.dropout.describe(),
        );
    }
    if saved.solver != cfg.solver || saved.lr != cfg.lr {
        return mismatch(
            "solver settings",
            format!("{:?} {:?}", saved.solver, saved.lr),
            format!("{:?} {:?}", cfg.solver, cfg.lr),
        );
    }
    let saved_data = archive
        .metadata
        .get("data_sha256")
        .cloned()
        .unwrap_or_default();
    if saved_data != data_sha256 {
        return mismatch(
            "training data (SHA-256)",
            saved_data,
            data_sha256.to_string(),
        );
    }
    if iteration > cfg.iterations {
        return Err(CheckpointError::PastTheEnd {
            path: path.into(),
            found: iteration,
            wanted: cfg.iterations,
        });
    }
    let net = archive.take_lenet("", false)?;
    let velocity = archive.take_lenet(MOMENTUM_PREFIX, true)?;
    Ok(TrainState {
        net,
        velocity,
        iteration,
    })
}
