//! `advmnist explain`: one test digit's forward and backward pass and the gradient-sign attack
//! on it, as one self-contained HTML page (`experiments::explain` computes, `report::explain`
//! lays out).

use super::args::{at_most, test_digit};
use super::outputs::{check_writable_target, refuse_overwrite};
use advmnist::experiments::explain::explain;
use advmnist::limits::MAX_IMAGE_INDEX;
use advmnist::models::file::load_model;
use advmnist::report::explain::{explain_html, ExplainedModel};
use anyhow::Result;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct ExplainArgs {
    /// The LeNet model file (as `advmnist train` writes it).
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// Index of the test image (0 to 9,999); at most 999,999 with any --data.
    #[arg(long, value_name = "N", value_parser = at_most(MAX_IMAGE_INDEX))]
    image: usize,
    /// The page to write (one self-contained HTML file). Its links to docs/math.md are
    /// relative (../docs/math.md): write it into a folder directly inside a clone, e.g.
    /// pages/ or docs/, to follow them.
    #[arg(long, value_name = "FILE.html")]
    out: PathBuf,
    /// Also show the gradient under Caffe's float32 softmax backward (p_y - 1 rounds to 0 for
    /// a confident digit) beside the exact one, and where their signs differ.
    #[arg(long)]
    compare_f32: bool,
}

pub fn explain_command(a: ExplainArgs, data_dir: &Path) -> Result<()> {
    // Every check before any work: where the page goes, that it overwrites no input, that the
    // model is a LeNet, and that the image exists.
    check_writable_target("--out", &a.out)?;
    refuse_overwrite(&[("--out", &a.out)], &[("--model", &a.model)], data_dir)?;
    let (model, _) = load_model(&a.model)?;
    let (digit, label) = test_digit(data_dir, a.image)?;
    let explanation = explain(&model, a.image, digit.images.view(), label, a.compare_f32)?;
    let explained = ExplainedModel {
        file_name: a.model.file_name().map_or_else(
            || a.model.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
        sha256: advmnist::hashing::file_sha256(&a.model)?,
    };
    let html = explain_html(&explanation, &explained);
    advmnist::io_safety::write_atomic(&a.out, html.as_bytes())?;
    eprintln!(
        "test image {} (label {label}, predicted {}): wrote {} ({:.2} MB)",
        a.image,
        explanation.predicted,
        a.out.display(),
        html.len() as f64 / 1e6
    );
    Ok(())
}
