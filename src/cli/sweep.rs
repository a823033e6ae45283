//! `advmnist sweep`: error against distortion over noise levels (`experiments::sweep`).

use super::args::{at_least_one, at_most, whole_number, ClassifierArgs, DefenceArgs};
use super::outputs::{check_output_folder, pre_inputs, refuse_overwrite};
use super::{progress, warn_if_logits_overflow};
use advmnist::data::{self, Split};
use advmnist::experiments::sweep::{self, NamedModel, Noise, SweepConfig};
use advmnist::models::assemble::{load_lenets, named_classifiers, with_preprocessing};
use advmnist::models::WithGradient;
use advmnist::report;
use anyhow::{bail, Result};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct SweepArgs {
    /// Model file(s) to evaluate (each attacked through its own gradient unless --source).
    #[arg(
        long = "model",
        value_name = "FILE",
        required_unless_present = "committee"
    )]
    models: Vec<PathBuf>,
    #[command(flatten)]
    choice: ClassifierArgs,
    #[command(flatten)]
    defence: DefenceArgs,
    /// The perturbation.
    #[arg(long, value_enum)]
    noise: Noise,
    /// Number of levels, evenly spaced from 0 to --max, both included: from 2 to 1,000.
    #[arg(long, default_value_t = 100, value_parser = whole_number::<usize>)]
    levels: usize,
    /// Largest level (eps or sigma). Default: 0.5 for fgsm and pgd, 1.0 for gaussian.
    #[arg(long, value_name = "X")]
    max: Option<f32>,
    /// Craft the examples on this model and evaluate every --model on them (transfer attack).
    #[arg(long, value_name = "FILE")]
    source: Option<PathBuf>,
    /// Report each model's error at these distortions, interpolated between levels (Table 2):
    /// each a finite number >= 0.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "D1,D2,...",
        allow_negative_numbers = true
    )]
    at: Vec<f64>,
    /// PGD: gradient steps per level (step size 2.5 eps / steps), at most 1,000.
    #[arg(long, default_value_t = 10, value_parser = at_most(advmnist::limits::MAX_PGD_STEPS))]
    steps: usize,
    /// PGD: start from a uniformly random point of the eps-ball.
    #[arg(long)]
    random_start: bool,
    /// APGD-CE and APGD-T: random restarts per run, at most 100.
    #[arg(long, default_value_t = advmnist::attacks::apgd::DEFAULT_RESTARTS, value_parser = at_most(advmnist::limits::MAX_RESTARTS))]
    restarts: usize,
    /// Square: queries per image, at most 100,000.
    #[arg(long, default_value_t = advmnist::attacks::square::DEFAULT_QUERIES, value_parser = at_most(advmnist::limits::MAX_QUERIES))]
    queries: usize,
    /// Seed of the Gaussian noise and of the attacks' random starts and searches.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = whole_number::<u64>)]
    seed: u64,
    /// Output folder.
    #[arg(long, default_value = "sweep", value_name = "DIR")]
    out: PathBuf,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

pub fn sweep(a: SweepArgs, data_dir: &Path) -> Result<()> {
    if !(2..=advmnist::limits::MAX_LEVELS).contains(&a.levels) {
        bail!(
            "--levels must be from 2 (0 and --max) to {}, got {}: more levels take longer without showing more",
            advmnist::limits::MAX_LEVELS,
            a.levels
        );
    }
    if let Some(d) = a.at.iter().find(|d| !(d.is_finite() && **d >= 0.0)) {
        bail!("--at distortions must be finite numbers >= 0, got {d}");
    }
    let noise = match a.noise {
        Noise::Pgd { .. } => {
            if a.steps == 0 {
                bail!("--steps must be at least 1");
            }
            Noise::Pgd {
                steps: a.steps,
                random_start: a.random_start,
            }
        }
        Noise::ApgdCe { iterations, .. } => Noise::ApgdCe {
            iterations,
            restarts: at_least_one("--restarts", a.restarts)?,
        },
        Noise::ApgdT {
            iterations,
            targets,
            ..
        } => Noise::ApgdT {
            iterations,
            restarts: at_least_one("--restarts", a.restarts)?,
            targets,
        },
        Noise::Square { .. } => Noise::Square {
            queries: at_least_one("--queries", a.queries)?,
        },
        single_step => single_step,
    };
    if a.source.is_some() && noise == Noise::Gaussian {
        bail!("--source makes no sense with --noise gaussian: random noise does not come from a model");
    }
    let max = a
        .max
        .unwrap_or(if noise == Noise::Gaussian { 1.0 } else { 0.5 });
    if !(max > 0.0 && max.is_finite()) {
        bail!("--max must be a positive number, got {max}");
    }
    check_output_folder("--out", &a.out)?;
    let written = report::SWEEP_FILES.map(|f| a.out.join(f));
    let daes = pre_inputs(&a.defence);
    let committee = a.choice.committee()?;
    let members = a.choice.committee_inputs(&committee);
    let mut inputs: Vec<(&str, &Path)> =
        a.models.iter().map(|m| ("--model", m.as_path())).collect();
    inputs.extend(a.source.iter().map(|m| ("--source", m.as_path())));
    inputs.extend(daes.iter().map(|d| ("--pre dae:", d.as_path())));
    inputs.extend(members.iter().map(|m| ("--committee", m.as_path())));
    let outputs: Vec<(&str, &Path)> = written.iter().map(|w| ("--out", w.as_path())).collect();
    refuse_overwrite(&outputs, &inputs, data_dir)?;
    let preprocessing = a.defence.preprocessing()?;
    let test = data::load_split(data_dir, Split::Test)?;
    let attackers = if a.source.is_some() {
        1
    } else {
        a.models.len()
    };
    advmnist::limits::check_memory(
        &format!("the perturbed test images of {attackers} attacked models (--model, --source)"),
        advmnist::limits::sweep_bytes(attackers, test.len()),
    )
    .map_err(anyhow::Error::msg)?;
    let nets = load_lenets(&a.models)?;
    let sources = load_lenets(a.source.as_slice())?;
    let members = load_lenets(committee.as_ref().map_or(&[][..], |c| &c.members))?;
    let committee_name = committee.as_ref().map(|c| c.name.as_str());
    let bases = named_classifiers(&nets, committee_name, &members, a.choice.gradient);
    // Labels name the gradient of every attack that follows one (not Gaussian noise).
    let attacked = (a.source.is_none() && noise != Noise::Gaussian).then_some(a.choice.gradient);
    let defended_models = with_preprocessing(&bases, &preprocessing, attacked);
    let models: Vec<NamedModel> = defended_models
        .iter()
        .map(|(n, m)| NamedModel {
            name: n.clone(),
            model: m.as_ref(),
        })
        .collect();
    // A transfer attack's examples come from the bare source model's own gradient.
    let source_model = sources.first().map(|(_, m)| WithGradient {
        classifier: m,
        rule: a.choice.gradient,
    });
    let source = sources
        .iter()
        .zip(&source_model)
        .map(|((n, _), m)| NamedModel {
            name: n.clone(),
            model: m,
        })
        .next();
    for m in models.iter().chain(source.as_ref()) {
        warn_if_logits_overflow(&m.name, m.model, &test);
    }
    let cfg = SweepConfig {
        noise,
        levels: sweep::levels(a.levels, max as f64),
        seed: a.seed,
        at: a.at.clone(),
    };
    let bar = progress::bar(
        (cfg.levels.len() * models.len()) as u64,
        "{msg} {bar:30} {pos}/{len} evaluations  ETA {eta}",
    );
    bar.set_message(format!("{} sweep", noise.name()));
    let result = sweep::sweep(&models, source.as_ref(), &test, &cfg, |done, _| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    let title = match &a.source {
        Some(s) => format!(
            "{} examples crafted on {} [gradient {}]",
            noise.name(),
            s.display(),
            a.choice.gradient
        ),
        None => format!("{} noise", noise.name()),
    };
    report::write_sweep(&a.out, &result, &title)?;
    if a.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        for r in &result.at {
            match r.error_pct {
                Some(e) => println!("{}: error {e:.2}% at distortion {}", r.model, r.distortion),
                None => println!(
                    "{}: distortion {} is outside the swept range",
                    r.model, r.distortion
                ),
            }
        }
        println!(
            "wrote {}/sweep.csv, sweep.json, sweep.svg in {:.1} s",
            a.out.display(),
            result.wall_s
        );
    }
    Ok(())
}
