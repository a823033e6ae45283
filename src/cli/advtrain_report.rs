//! `advmnist advtrain-report`: diagnostics of a finished staged adversarial-training run
//! (`advmnist::experiments::advtrain_diagnostics`), without training.

use super::args::{at_least_one, at_most, whole_number};
use super::outputs::{check_output_folder, refuse_overwrite};
use super::progress;
use advmnist::data;
use advmnist::experiments::advtrain_diagnostics::{self as diag, Settings, TrainingSet};
use advmnist::hashing::file_sha256;
use advmnist::limits;
use advmnist::models::file::load_model;
use advmnist::models::LeNet;
use advmnist::report::advtrain_diagnostics::{self as report, DIAGNOSTICS_FILES};
use advmnist::train::adversarial as adv;
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct AdvtrainReportArgs {
    /// The run's folder: `advtrain.json` and `snapshot-0.safetensors` .. `snapshot-K`, as
    /// `advmnist advtrain --out DIR` writes it (or a `reproduce` run's `jobs/adv-s1`).
    #[arg(value_name = "DIR")]
    run: PathBuf,
    /// Output folder: diagnostics.json, diagnostics.md, diagnostics.svg.
    #[arg(long, default_value = "advtrain-report", value_name = "OUT")]
    out: PathBuf,
    /// The first N test images of every sweep but PGD's (at least 1), at most 10,000.
    #[arg(long, default_value_t = 10_000, value_name = "N", value_parser = at_most(limits::MAX_EVALUATE_IMAGES))]
    test_images: usize,
    /// The first N test images of the PGD sweeps (at least 1), at most 10,000.
    #[arg(long, default_value_t = 2_000, value_name = "N", value_parser = at_most(limits::MAX_EVALUATE_IMAGES))]
    pgd_images: usize,
    /// Levels of every sweep (at least 2), at most 1,000.
    #[arg(long, default_value_t = 21, value_name = "N", value_parser = at_most(limits::MAX_LEVELS))]
    levels: usize,
    /// PGD's steps (at least 1), at most 1,000.
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = at_most(limits::MAX_PGD_STEPS))]
    steps: usize,
    /// Seed of the Gaussian draws and PGD's random starts.
    #[arg(long, default_value_t = 1, value_parser = whole_number::<u64>)]
    seed: u64,
}

pub fn advtrain_report(a: AdvtrainReportArgs, data_dir: &Path) -> Result<()> {
    at_least_one("--test-images", a.test_images)?;
    at_least_one("--pgd-images", a.pgd_images)?;
    at_least_one("--steps", a.steps)?;
    if a.levels < 2 {
        bail!("--levels {}: a sweep needs at least 2 levels", a.levels);
    }
    let record_path = a.run.join(adv::RECORD_FILE);
    if !record_path.is_file() {
        bail!(
            "{}: no {} here: DIR must be the folder `advmnist advtrain --out DIR` wrote",
            a.run.display(),
            adv::RECORD_FILE
        );
    }
    let record = adv::read_record(&record_path)?;
    if record.snapshots.is_empty() {
        bail!("{}: the run has no snapshot yet", record_path.display());
    }
    check_output_folder("--out", &a.out)?;
    let written: Vec<PathBuf> = DIAGNOSTICS_FILES.iter().map(|f| a.out.join(f)).collect();
    let snapshot_paths: Vec<PathBuf> = record
        .snapshots
        .iter()
        .map(|s| a.run.join(&s.path))
        .collect();
    let outputs: Vec<(&str, &Path)> = written.iter().map(|w| ("--out", w.as_path())).collect();
    let inputs: Vec<(&str, &Path)> = snapshot_paths
        .iter()
        .map(|p| ("DIR", p.as_path()))
        .collect();
    refuse_overwrite(&outputs, &inputs, data_dir)?;

    // Every snapshot, its bytes checked against the record.
    let mut snapshots: Vec<LeNet<f32>> = Vec::new();
    for (s, path) in record.snapshots.iter().zip(&snapshot_paths) {
        let hash = file_sha256(path).with_context(|| format!("{}", path.display()))?;
        if hash != s.sha256 {
            bail!(
                "{}: its SHA-256 is {hash}, the record {} says {}",
                path.display(),
                record_path.display(),
                s.sha256
            );
        }
        snapshots.push(load_model(path)?.0);
    }
    let mnist = data::load_mnist(data_dir)?;
    if a.test_images > mnist.test.len() || a.pgd_images > mnist.test.len() {
        bail!(
            "--test-images {} / --pgd-images {}: the test set has {} images",
            a.test_images,
            a.pgd_images,
            mnist.test.len()
        );
    }
    // The training images the stages made examples of: the first `natural` of the pool.
    let natural = record
        .snapshots
        .get(1)
        .map_or(mnist.train.len(), |s| s.pool.natural)
        .min(mnist.train.len());
    let recorded: Vec<Option<String>> = (0..record.snapshots.len().saturating_sub(1))
        .map(|k| {
            record
                .adversarial_sets
                .iter()
                .find(|s| s.from_snapshot == k)
                .map(|s| s.sha256.clone())
        })
        .collect();
    let train = TrainingSet {
        images: mnist.train.images.slice(ndarray::s![..natural, .., .., ..]),
        labels: &mnist.train.labels[..natural],
        recorded,
    };
    let settings = Settings {
        test_images: a.test_images,
        pgd_images: a.pgd_images,
        levels: a.levels,
        pgd_steps: a.steps,
        seed: a.seed,
    };
    eprintln!(
        "diagnosing {} snapshots of {} (eps {}, c {}) on {} test images, {} training images per set, {} threads",
        snapshots.len(),
        a.run.display(),
        record.config.eps,
        record.config.c,
        a.test_images,
        natural,
        rayon::current_num_threads()
    );
    let started = std::time::Instant::now();
    let bar = progress::bar(1, "{msg:50} {bar:30} {pos}/{len}  ETA {eta}");
    let d = diag::diagnose(
        &snapshots,
        &mnist.test,
        &train,
        (record.config.eps, record.config.c),
        &settings,
        &mut |what, done, total| {
            bar.set_message(what.to_string());
            bar.set_length(total.max(1) as u64);
            bar.set_position(done as u64);
        },
    )?;
    bar.finish_and_clear();
    let name = a.run.display().to_string();
    let json = serde_json::to_string_pretty(&d).expect("plain data");
    let md = report::markdown(&d, &name);
    let svg = report::svg(&d, &name);
    advmnist::io_safety::write_set(
        &a.out,
        "diagnostics",
        &[
            ("diagnostics.json", json.as_bytes()),
            ("diagnostics.md", md.as_bytes()),
            ("diagnostics.svg", svg.as_bytes()),
        ],
    )?;
    if d.sets.iter().any(|s| s.same_as_recorded == Some(false)) {
        eprintln!("warning: a training set made again differs from the recorded one (other training images or another advmnist): its figures describe the set made now");
    }
    eprintln!(
        "wrote {} in {:.1} s",
        a.out.join("diagnostics.md").display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
