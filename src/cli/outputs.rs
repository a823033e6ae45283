//! Every command's file checks, before any work (`advmnist::io_safety`): where an output goes,
//! and that no output is one of the inputs, the data folder's files always among them.

use anyhow::Result;
use std::path::{Path, PathBuf};

/// Refuses any output that is one of the inputs or of the data folder's files.
pub fn refuse_overwrite(
    outputs: &[(&str, &Path)],
    inputs: &[(&str, &Path)],
    data_dir: &Path,
) -> Result<()> {
    let data_files = advmnist::io_safety::data_inputs(data_dir);
    let mut all: Vec<(&str, &Path)> = inputs.to_vec();
    all.extend(data_files.iter().map(|p| ("--data", p.as_path())));
    advmnist::io_safety::refuse_overwrite(outputs, &all).map_err(anyhow::Error::msg)
}

/// Refuses an output file whose place cannot take it (a folder, a missing folder, ...).
pub fn check_writable_target(flag: &str, path: &Path) -> Result<()> {
    advmnist::io_safety::check_output_file(flag, path).map_err(anyhow::Error::msg)
}

/// Refuses an output folder that is a file or cannot be created.
pub fn check_output_folder(flag: &str, path: &Path) -> Result<()> {
    advmnist::io_safety::check_output_folder(flag, path).map_err(anyhow::Error::msg)
}

/// The autoencoder files named by `--pre dae:FILE` stages: inputs too.
pub fn pre_inputs(defence: &super::args::DefenceArgs) -> Vec<PathBuf> {
    advmnist::models::assemble::stage_files(&defence.pre)
}
