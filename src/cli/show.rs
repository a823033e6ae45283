//! `advmnist show`: the study's Figure 1 (perturbed digits, predictions, gradients), or the
//! autoencoder's figure.

use super::args::{at_most, whole_number, ClassifierArgs, DefenceArgs};
use super::outputs::{check_writable_target, pre_inputs, refuse_overwrite};
use super::warn_if_logits_overflow;
use advmnist::data::{self, Split};
use advmnist::experiments::sweep::Noise;
use advmnist::limits::{MAX_FIGURE_DIGITS, MAX_IMAGE_INDEX};
use advmnist::models::assemble::{load_lenets, named_classifiers, with_preprocessing};
use anyhow::{bail, Result};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct ShowArgs {
    /// Model file (with --noise and --levels).
    #[arg(long, value_name = "FILE", required_unless_present_any = ["dae", "committee"], conflicts_with = "committee")]
    model: Option<PathBuf>,
    #[command(flatten)]
    choice: ClassifierArgs,
    /// The perturbation (fgsm or gaussian).
    #[arg(long, value_enum, required_unless_present = "dae")]
    noise: Option<Noise>,
    /// Noise levels (eps or sigma), one column each.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "L1,L2,...",
        required_unless_present = "dae"
    )]
    levels: Vec<f32>,
    /// Instead: draw test digits clean, corrupted by input dropout (--dropout), and
    /// reconstructed by this denoising autoencoder.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["model", "noise", "levels", "committee"])]
    dae: Option<PathBuf>,
    /// With --dae: the input dropout rate of the corrupted column.
    #[arg(long, default_value_t = 0.2, value_name = "R")]
    dropout: f64,
    #[command(flatten)]
    defence: DefenceArgs,
    /// Output PNG file.
    #[arg(long, value_name = "FILE.png")]
    out: PathBuf,
    /// How many test digits (rows), at least 1 and at most 1,000.
    #[arg(long, default_value_t = 8, value_parser = at_most(MAX_FIGURE_DIGITS))]
    count: usize,
    /// Index of the first test digit shown, at most 999,999.
    #[arg(long, default_value_t = 0, value_parser = at_most(MAX_IMAGE_INDEX))]
    first: usize,
    /// Seed of the Gaussian noise.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = whole_number::<u64>)]
    seed: u64,
}

pub fn show(a: ShowArgs, data_dir: &Path) -> Result<()> {
    use advmnist::experiments::perturbed_digits::{perturbed_digits, ShowConfig};
    use advmnist::report::digits_png::{check_png_path, render_show_png};
    check_writable_target("--out", &a.out)?;
    let daes = pre_inputs(&a.defence);
    let committee = a.choice.committee()?;
    let members = a.choice.committee_inputs(&committee);
    let mut inputs: Vec<(&str, &Path)> = a.model.iter().map(|m| ("--model", m.as_path())).collect();
    inputs.extend(a.dae.iter().map(|d| ("--dae", d.as_path())));
    inputs.extend(daes.iter().map(|d| ("--pre dae:", d.as_path())));
    inputs.extend(members.iter().map(|m| ("--committee", m.as_path())));
    refuse_overwrite(&[("--out", &a.out)], &inputs, data_dir)?;
    if a.count == 0 {
        bail!("--count must be at least 1 (the number of test digits drawn)");
    }
    if let Some(l) = a.levels.iter().find(|l| !(l.is_finite() && **l >= 0.0)) {
        bail!("--levels must be finite numbers >= 0, got {l}");
    }
    if a.levels.len() > advmnist::limits::MAX_LEVELS {
        bail!(
            "--levels lists {} levels, more than {}",
            a.levels.len(),
            advmnist::limits::MAX_LEVELS
        );
    }
    let test = data::load_split(data_dir, Split::Test)?;
    if a.first
        .checked_add(a.count)
        .is_none_or(|end| end > test.len())
    {
        bail!(
            "--first {} --count {} asks for test digits past the {} available",
            a.first,
            a.count,
            test.len()
        );
    }
    let (width, height) = match a.dae {
        // clean, corrupted, reconstructed
        Some(_) => advmnist::report::digits_png::dae_figure_size(a.count, 3),
        None => advmnist::report::digits_png::figure_size(a.count, a.levels.len()),
    };
    advmnist::limits::check_memory(
        &format!("a figure of {width} x {height} pixels (--count, --levels)"),
        advmnist::limits::figure_bytes(width, height),
    )
    .map_err(anyhow::Error::msg)?;
    let digits = test.subset(a.first..a.first + a.count);
    if let Some(dae_path) = &a.dae {
        let (dae, _) =
            advmnist::models::file::load_network::<advmnist::models::Autoencoder>(dae_path)?;
        let figure = advmnist::experiments::perturbed_digits::reconstructed_digits(
            &dae,
            digits.images.view(),
            &digits.labels,
            a.dropout,
            a.seed,
        )?;
        advmnist::report::digits_png::render_dae_png(&figure, &a.out)?;
        eprintln!("wrote {}", a.out.display());
        return Ok(());
    }
    let preprocessing = a.defence.preprocessing()?;
    let nets = load_lenets(a.model.as_slice())?;
    let members = load_lenets(committee.as_ref().map_or(&[][..], |c| &c.members))?;
    let committee_name = committee.as_ref().map(|c| c.name.as_str());
    let bases = named_classifiers(&nets, committee_name, &members, a.choice.gradient);
    let (name, model) = with_preprocessing(&bases, &preprocessing, Some(a.choice.gradient))
        .pop()
        .expect("clap requires --model or --committee without --dae");
    warn_if_logits_overflow(&name, model.as_ref(), &test);

    let noise = a.noise.expect("clap requires --noise without --dae");
    let cfg = ShowConfig {
        noise,
        levels: a.levels.clone(),
        seed: a.seed,
    };
    check_png_path(&a.out)?;
    let figure = perturbed_digits(model.as_ref(), digits.images.view(), &digits.labels, &cfg)?;
    render_show_png(&figure, &a.out)?;
    eprintln!("wrote {} ({name})", a.out.display());
    Ok(())
}
