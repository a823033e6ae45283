//! A run's files: `advtrain.json` (the record), the snapshots' model files and their metadata,
//! and the checks that let a resumed run trust what an earlier run wrote.

use super::config::{AdvConfig, StageRecipe};
use super::eq3::FORMULA;
use super::pool::{AdversarialSet, PoolComposition};
use super::AdvError;
use crate::data::Mnist;
use crate::hashing::sha256_hex;
use crate::io_safety::write_atomic;
use crate::models::file::{load_model, read_archive, ModelFileError, ModelMeta};
use crate::models::lenet::{DropoutRates, LeNet};
use crate::train::checkpoint::CheckpointError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The record's `format` value.
pub const RECORD_FORMAT: &str = "advmnist-advtrain";
/// The record of a run, in its output folder.
pub const RECORD_FILE: &str = "advtrain.json";
/// The run's checkpoint, in its output folder.
pub const CHECKPOINT_FILE: &str = "advtrain.ckpt";

/// The file name of snapshot `k`.
pub fn snapshot_file(k: usize) -> String {
    format!("snapshot-{k}.safetensors")
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

pub(super) fn io_error(path: &Path, e: impl std::fmt::Display) -> AdvError {
    AdvError::Io {
        path: path.into(),
        reason: e.to_string(),
    }
}

pub(super) fn write_record(path: &Path, record: &AdvRecord) -> Result<(), AdvError> {
    let mut json = serde_json::to_string_pretty(record).expect("plain structs");
    json.push('\n');
    write_atomic(path, json.as_bytes()).map_err(ModelFileError::from)?;
    Ok(())
}

/// Reads and checks the format of a run's record (`advtrain.json`).
pub fn read_record(path: &Path) -> Result<AdvRecord, AdvError> {
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
pub(super) fn check_record(
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
        ("the variant", theirs.variant.name(), cfg.variant.name()),
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
pub(super) fn holds_a_run(dir: &Path) -> bool {
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
pub(super) fn load_recorded_snapshot(
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
pub(super) fn checkpoint_stage(path: &Path) -> Result<usize, AdvError> {
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
pub(super) fn snapshot_meta(
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
    put("schedule", cfg.variant.schedule());
    if !cfg.variant.is_study() {
        put("variant", cfg.variant.name());
    }
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
