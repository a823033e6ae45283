//! `advmnist committee` and `advmnist gradients`: committee files, and what Caffe's float32
//! rounding does to a model's gradients.

use super::outputs::check_writable_target;
use advmnist::data::{self, Split};
use advmnist::models::assemble::load_lenets;
use advmnist::models::committee;
use advmnist::models::file::load_model;
use anyhow::Result;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct GradientsArgs {
    /// Model file.
    #[arg(long, value_name = "FILE")]
    model: PathBuf,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// Counts what Caffe's float32 rounding does to the model's gradients on the test set.
pub fn gradients(a: GradientsArgs, data_dir: &Path) -> Result<()> {
    let test = data::load_split(data_dir, Split::Test)?;
    let (net, _) = load_model(&a.model)?;
    let r = advmnist::models::gradient::compare_rules(&net, test.images.view(), &test.labels);
    if a.json {
        let mut v = serde_json::to_value(&r)?;
        v["model"] = a.model.display().to_string().into();
        println!("{v}");
    } else {
        println!("{} on {} test images:", a.model.display(), r.images);
        println!(
            "  true class's term lost (dz_y == 0): exact {}, caffe-f32 {}",
            r.true_term_lost_exact, r.true_term_lost_caffe_f32
        );
        println!(
            "  gradient signs that differ: {} of {} pixels ({:.3}%), in {} images; at most {:.1}% of one image",
            r.pixels_sign_differs,
            r.pixels,
            100.0 * r.pixels_sign_differs as f64 / r.pixels.max(1) as f64,
            r.images_sign_differs,
            100.0 * r.max_image_fraction_sign_differs
        );
    }
    Ok(())
}

#[derive(Args)]
pub struct CommitteeFileArgs {
    /// The committee file to write (JSON; member paths relative to its folder).
    #[arg(long, value_name = "C.json")]
    out: PathBuf,
    /// The members' model files.
    #[arg(value_name = "FILE", required = true)]
    members: Vec<PathBuf>,
}

pub fn committee(a: CommitteeFileArgs) -> Result<()> {
    check_writable_target("--out", &a.out)?;
    // Each member must be a LeNet model file: checked now rather than when the committee is used.
    load_lenets(&a.members)?;
    committee::write_committee_file(&a.out, &a.members)?;
    eprintln!("wrote {} ({} members)", a.out.display(), a.members.len());
    Ok(())
}
