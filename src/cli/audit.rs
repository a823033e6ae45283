//! `advmnist trace` and `advmnist gradcheck`: the audits of a LeNet, a committee or a pipeline
//! (`audit::target::AuditTarget`).

use super::args::{at_most, test_digit, trace_noise, whole_number};
use super::outputs::{check_writable_target, refuse_overwrite};
use advmnist::attacks::Noise;
use advmnist::audit::target::AuditTarget;
use advmnist::audit::Perturbation;
use advmnist::data::{self, Split};
use advmnist::limits::{MAX_GRADCHECK_IMAGES, MAX_IMAGE_INDEX, MAX_PARAMS_PER_TENSOR};
use anyhow::{bail, Result};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct TraceArgs {
    /// Model file.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "committee",
        conflicts_with = "committee"
    )]
    model: Option<PathBuf>,
    #[command(flatten)]
    audited: AuditedArgs,
    /// Index of the test image (0 to 9,999); at most 999,999 with any --data.
    #[arg(long, value_name = "N", value_parser = at_most(MAX_IMAGE_INDEX))]
    image: usize,
    /// Trace the image perturbed by this noise (computed in f32, as `sweep` does, with the
    /// traced classifier's own gradient) instead of the clean image.
    #[arg(long, value_parser = trace_noise(), requires = "level")]
    noise: Option<Noise>,
    /// The noise level: eps for fgsm, sigma for gaussian.
    #[arg(
        long,
        value_name = "X",
        requires = "noise",
        allow_negative_numbers = true
    )]
    level: Option<f32>,
    /// Seed of the Gaussian noise (the draw `sweep --seed` makes for this test image).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = whole_number::<u64>)]
    seed: u64,
    /// Run the whole trace in f64 (the model's f32 weights widened exactly).
    #[arg(long = "f64")]
    double: bool,
    /// Write every tensor to this safetensors file instead of printing the table.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// What `trace` and `gradcheck` audit besides one LeNet: a committee, or stages in front of
/// the --model.
#[derive(Args)]
struct AuditedArgs {
    /// Audit a committee instead of one model: model files separated by commas, or a
    /// committee file C.json (docs/committees.md).
    #[arg(long, value_name = "FILE,FILE,...|C.json")]
    committee: Option<String>,
    /// A preprocessing stage in front of the --model, in the order given (repeat the flag for
    /// more), as eval's --pre: lowpass:S, lowpass:S,noise=SIGMA or dae:FILE. The white-box
    /// gradient through every stage is audited, injected noise held at draw 0.
    #[arg(long = "pre", value_name = "STAGE")]
    pre: Vec<String>,
    /// Seed of the injected noise (eval's --pre-seed).
    #[arg(long, default_value_t = 1, value_name = "S", value_parser = whole_number::<u64>)]
    pre_seed: u64,
}

impl AuditedArgs {
    /// One LeNet, a committee or a pipeline, its files checked by name before any work.
    fn target(&self, model: &Option<PathBuf>) -> Result<AuditTarget> {
        Ok(AuditTarget::new(
            model.as_deref(),
            self.committee.as_deref(),
            &self.pre,
            self.pre_seed,
        )?)
    }
}

#[derive(Args)]
pub struct GradcheckArgs {
    /// Model file.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "committee",
        conflicts_with = "committee"
    )]
    model: Option<PathBuf>,
    #[command(flatten)]
    audited: AuditedArgs,
    /// How many test images (from --first on), at most 1,000.
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = at_most(MAX_GRADCHECK_IMAGES))]
    images: usize,
    /// Index of the first test image, at most 999,999.
    #[arg(long, default_value_t = 0, value_name = "N", value_parser = at_most(MAX_IMAGE_INDEX))]
    first: usize,
    /// Entries checked per parameter tensor (all of a smaller tensor); default 20, at most
    /// 400,000. One LeNet only: a committee's members and a pipeline's LeNet are checked with
    /// --model each.
    #[arg(long, value_name = "N", value_parser = at_most(MAX_PARAMS_PER_TENSOR))]
    params: Option<usize>,
    /// Seed of the choice of parameter entries.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = whole_number::<u64>)]
    seed: u64,
}

/// Entries per parameter tensor `gradcheck` checks by default.
const DEFAULT_GRADCHECK_PARAMS: usize = 20;

pub fn trace(a: TraceArgs, data_dir: &Path) -> Result<()> {
    use advmnist::audit::trace::format_table;
    use advmnist::audit::trace_metadata;
    // Every check before any work.
    let target = a.audited.target(&a.model)?;
    if let Some(out) = &a.out {
        check_writable_target("--out", out)?;
        let inputs = target.inputs();
        let inputs: Vec<(&str, &Path)> = inputs.iter().map(|(f, p)| (*f, p.as_path())).collect();
        refuse_overwrite(&[("--out", out)], &inputs, data_dir)?;
    }
    let perturbation = match (a.noise, a.level) {
        (Some(noise), Some(level)) => {
            if !(level >= 0.0 && level.is_finite()) {
                bail!("--level must be a number >= 0, got {level}");
            }
            Some(match noise {
                Noise::Fgsm => Perturbation::Fgsm { eps: level },
                Noise::Gaussian => Perturbation::Gaussian {
                    sigma: level,
                    seed: a.seed,
                    image: a.image as u64,
                },
                other => unreachable!("trace_noise() lists fgsm and gaussian, not {other}"),
            })
        }
        _ => None,
    };
    let (digit, label) = test_digit(data_dir, a.image)?;
    let t = target.trace(digit.images.view(), label, perturbation, a.double)?;
    let predicted = t.predicted();
    let stats = t.stats();
    let what = match perturbation {
        Some(p) => format!("{} at level {}", p.name(), p.level()),
        None => "clean".to_string(),
    };
    let what = format!("{what}){}", target.through());
    let precision = if a.double { "f64" } else { "f32" };
    match &a.out {
        Some(out) => {
            let bytes = t.to_safetensors(&trace_metadata(&target.subject(), a.image, perturbation));
            advmnist::io_safety::write_atomic(out, &bytes)?;
            eprintln!(
                "test image {} ({what}, label {label}, predicted {predicted}: wrote {} tensors ({precision}) to {}",
                a.image,
                stats.len(),
                out.display()
            );
        }
        None => {
            println!(
                "test image {} ({what}, label {label}, predicted {predicted}, {precision}",
                a.image
            );
            print!("{}", format_table(&stats));
        }
    }
    Ok(())
}

pub fn gradcheck(a: GradcheckArgs, data_dir: &Path) -> Result<()> {
    use advmnist::audit::gradcheck::format_report;
    if a.images == 0 || a.params == Some(0) {
        bail!("--images and --params must be at least 1");
    }
    let target = a.audited.target(&a.model)?;
    if a.params.is_some() && !target.is_lenet() {
        bail!(
            "--params: parameter gradients are checked for one LeNet (--model FILE without --pre); check a committee's members, or a pipeline's LeNet, each with --model FILE"
        );
    }
    let test = data::load_split(data_dir, Split::Test)?;
    if a.first
        .checked_add(a.images)
        .is_none_or(|end| end > test.len())
    {
        bail!(
            "--first {} --images {} asks for test images past the {} available",
            a.first,
            a.images,
            test.len()
        );
    }
    let digits = test.subset(a.first..a.first + a.images);
    let x = digits.images.mapv(|v| v as f64);
    let report = target.gradcheck(
        x.view(),
        &digits.labels,
        a.params.unwrap_or(DEFAULT_GRADCHECK_PARAMS),
        a.seed,
    )?;
    print!("{}", format_report(&report));
    if !report.pass() {
        bail!("gradcheck FAILED: a hand-written gradient disagrees with finite differences (see the table)");
    }
    Ok(())
}
