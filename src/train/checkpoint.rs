//! Training checkpoints, for any network: the weights, the solver's momentum buffers, the
//! iteration, the run's recipe and the batch hook's state, in one safetensors file written
//! atomically (temporary file, then rename).
//!
//! The random state needs no tensor of its own: every random draw of a run is a function of
//! `(seed, iteration)` (see `rng::stream`), and both are in the metadata.

use super::{Recipe, TrainState};
use crate::io_safety::write_atomic;
use crate::models::file::{encode, read_archive, tensors_of, ModelFileError, CHECKPOINT_FORMAT};
use crate::models::params::Network;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const MOMENTUM_PREFIX: &str = "momentum.";
const HOOK_PREFIX: &str = "hook.";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    File(#[from] ModelFileError),
    #[error("{path}: not an advmnist training checkpoint ({reason})")]
    NotACheckpoint { path: PathBuf, reason: String },
    #[error("{path}: a checkpoint of an earlier run is there; pass --resume to continue that run, or delete the file to start over")]
    EarlierRun { path: PathBuf },
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

pub fn save<R: Recipe>(
    path: &Path,
    recipe: &R,
    data_sha256: &str,
    state: &TrainState<R::Net>,
) -> Result<(), CheckpointError> {
    let mut tensors = tensors_of(&state.net, "");
    tensors.extend(tensors_of(&state.velocity, MOMENTUM_PREFIX));
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), CHECKPOINT_FORMAT.to_string());
    meta.insert("network".to_string(), R::Net::FORMAT.to_string());
    meta.insert("iteration".into(), state.iteration.to_string());
    meta.insert(
        "config".into(),
        serde_json::to_string(recipe).expect("plain struct"),
    );
    meta.insert("data_sha256".into(), data_sha256.to_string());
    for (k, v) in &state.hook_state {
        meta.insert(format!("{HOOK_PREFIX}{k}"), v.clone());
    }
    write_atomic(path, &encode(&tensors, &meta)).map_err(ModelFileError::from)?;
    Ok(())
}

/// Loads a checkpoint made by a run of the same network with the same recipe (the iteration
/// count may grow) on the same data.
pub fn load<R: Recipe>(
    path: &Path,
    recipe: &R,
    data_sha256: &str,
) -> Result<TrainState<R::Net>, CheckpointError> {
    let mut archive = read_archive(path)?;
    let not = |reason: &str| CheckpointError::NotACheckpoint {
        path: path.into(),
        reason: reason.into(),
    };
    if archive.metadata.get("format").map(String::as_str) != Some(CHECKPOINT_FORMAT) {
        return Err(not("its metadata has no format 'advmnist-checkpoint'"));
    }
    // Checkpoints written before the network key existed are LeNet's.
    let network = archive
        .metadata
        .get("network")
        .map(String::as_str)
        .unwrap_or(crate::models::file::MODEL_FORMAT);
    if network != R::Net::FORMAT {
        return Err(CheckpointError::Mismatch {
            path: path.into(),
            what: "the network".into(),
            found: crate::models::file::describe_format(network)
                .unwrap_or(network)
                .into(),
            wanted: R::Net::DESCRIPTION.into(),
        });
    }
    let iteration: u64 = archive
        .metadata
        .get("iteration")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| not("no valid 'iteration'"))?;
    let saved: R = archive
        .metadata
        .get("config")
        .and_then(|v| serde_json::from_str(v).ok())
        .ok_or_else(|| not("no valid 'config'"))?;
    for ((what, found), (_, wanted)) in saved.settings().into_iter().zip(recipe.settings()) {
        if found != wanted {
            return Err(CheckpointError::Mismatch {
                path: path.into(),
                what: what.into(),
                found,
                wanted,
            });
        }
    }
    let saved_data = archive
        .metadata
        .get("data_sha256")
        .cloned()
        .unwrap_or_default();
    if saved_data != data_sha256 {
        return Err(CheckpointError::Mismatch {
            path: path.into(),
            what: "training data (SHA-256)".into(),
            found: saved_data,
            wanted: data_sha256.to_string(),
        });
    }
    if iteration > recipe.iterations() {
        return Err(CheckpointError::PastTheEnd {
            path: path.into(),
            found: iteration,
            wanted: recipe.iterations(),
        });
    }
    let hook_state = archive
        .metadata
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(HOOK_PREFIX)
                .map(|k| (k.to_string(), v.clone()))
        })
        .collect();
    let net = archive.take::<R::Net>("", false)?;
    let velocity = archive.take::<R::Net>(MOMENTUM_PREFIX, true)?;
    Ok(TrainState {
        net,
        velocity,
        iteration,
        hook_state,
    })
}
