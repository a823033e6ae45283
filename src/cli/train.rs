//! `advmnist train` and `advmnist dae train`: one driver (`train::driver`), two recipes.

use super::args::whole_number;
use super::progress;
use advmnist::data::{self, Dataset, Mnist};
use advmnist::models::file::{save_model, ModelMeta};
use advmnist::models::lenet::{DropoutRates, LeNet};
use advmnist::models::Autoencoder;
use advmnist::train::dae::DaeConfig;
use advmnist::train::driver::{check_batch, run_training, Evaluation, RunEvent, RunFiles};
use advmnist::train::{self, Event, Recipe, TrainConfig};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use indicatif::ProgressBar;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct TrainArgs {
    /// Where to write the trained model (safetensors).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Iterations (batches). Default: 10,000; 35,000 for --dropout inp; 40,000 for --dropout all
    /// (the study's Table 1). At most 1,000,000.
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = super::args::at_most(advmnist::limits::MAX_ITERATIONS))]
    iters: Option<u64>,
    /// Seed of every random draw (initial weights, shuffling, dropout masks).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = whole_number::<u64>)]
    seed: u64,
    /// Dropout: none, inp (0.2 on the input), all (0.2,0.2,0.2,0.5,0.5), or five rates
    /// input,conv1,conv2,fc1,output (each applied to that layer's output).
    #[arg(long, default_value = "none", value_parser = DropoutRates::parse)]
    dropout: DropoutRates,
    /// Images per batch: from 1 to the training set's size.
    #[arg(long, default_value_t = 64, allow_negative_numbers = true, value_parser = whole_number::<usize>)]
    batch: usize,
    /// Checkpoint file. Default: the --out path with .ckpt appended.
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Checkpoint every N iterations (0: never), at most 1,000,000.
    #[arg(long, default_value_t = 1000, value_name = "N", value_parser = super::args::at_most(advmnist::limits::MAX_ITERATIONS))]
    checkpoint_every: u64,
    /// Measure the test error every N iterations (0: only at the end), at most 1,000,000.
    #[arg(long, default_value_t = 1000, value_name = "N", value_parser = super::args::at_most(advmnist::limits::MAX_ITERATIONS))]
    eval_every: u64,
    /// Continue the run saved in the checkpoint file, to the same model an uninterrupted
    /// run gives.
    #[arg(long)]
    resume: bool,
}

#[derive(Args)]
pub struct DaeArgs {
    #[command(subcommand)]
    command: DaeCommand,
}

#[derive(Subcommand)]
enum DaeCommand {
    /// Train the autoencoder as Caffe's mnist_autoencoder example does (Nesterov, momentum
    /// 0.95, weight decay 5e-4, learning rate 0.01 divided by 10 every 10,000 iterations), with
    /// dropout on the input as the corruption and the clean image as the target.
    ///
    /// Example: advmnist dae train --out dae.safetensors
    Train(DaeTrainArgs),
}

#[derive(Args)]
struct DaeTrainArgs {
    /// Where to write the trained autoencoder (safetensors).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Iterations (batches), at most 1,000,000.
    #[arg(long, value_name = "N", default_value_t = DaeConfig::DEFAULT_ITERATIONS, allow_negative_numbers = true, value_parser = super::args::at_most(advmnist::limits::MAX_ITERATIONS))]
    iters: u64,
    /// Seed of every random draw (initial weights, shuffling, corruption masks).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = whole_number::<u64>)]
    seed: u64,
    /// Input dropout rate: the corruption the autoencoder learns to undo.
    #[arg(long, default_value_t = DaeConfig::DEFAULT_CORRUPTION, value_name = "R")]
    dropout: f64,
    /// Images per batch: from 1 to the training set's size.
    #[arg(long, default_value_t = 64, allow_negative_numbers = true, value_parser = whole_number::<usize>)]
    batch: usize,
    /// Checkpoint file. Default: the --out path with .ckpt appended.
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Checkpoint every N iterations (0: never), at most 1,000,000.
    #[arg(long, default_value_t = 1000, value_name = "N", value_parser = super::args::at_most(advmnist::limits::MAX_ITERATIONS))]
    checkpoint_every: u64,
    /// Measure the test set's reconstruction error every N iterations (0: only at the end), at
    /// most 1,000,000.
    #[arg(long, default_value_t = 2000, value_name = "N", value_parser = super::args::at_most(advmnist::limits::MAX_ITERATIONS))]
    eval_every: u64,
    /// Continue the run saved in the checkpoint file, to the same model an uninterrupted run
    /// gives.
    #[arg(long)]
    resume: bool,
}

/// `advmnist train`: Caffe's LeNet recipe.
pub fn train(a: TrainArgs, data_dir: &Path) -> Result<()> {
    let mut cfg = TrainConfig::lenet(a.dropout, a.seed);
    if let Some(n) = a.iters {
        if n == 0 {
            bail!("--iters must be at least 1");
        }
        cfg.iterations = n;
    }
    if a.batch == 0 {
        bail!("--batch must be at least 1");
    }
    cfg.batch = a.batch;
    train_lenet(
        cfg,
        RunFlags {
            out: &a.out,
            checkpoint: a.checkpoint.as_deref(),
            checkpoint_every: a.checkpoint_every,
            eval_every: a.eval_every,
            resume: a.resume,
        },
        data_dir,
    )
}

/// Trains a LeNet from `cfg` into `out` as `advmnist train` does with its default flags,
/// resuming from the checkpoint beside it if a run was stopped (how `evaluate` makes its
/// transfer source).
pub fn train_default_lenet(cfg: TrainConfig, out: &Path, data_dir: &Path) -> Result<()> {
    train_lenet(
        cfg,
        RunFlags {
            out,
            checkpoint: None,
            checkpoint_every: 1000,
            eval_every: 0,
            resume: true,
        },
        data_dir,
    )
}

fn train_lenet(cfg: TrainConfig, files: RunFlags<'_>, data_dir: &Path) -> Result<()> {
    let headline = format!(
        "training LeNet: {} iterations, batch {}, dropout {}, seed {}, {} threads",
        cfg.iterations,
        cfg.batch,
        cfg.dropout.describe(),
        cfg.seed,
        rayon::current_num_threads()
    );
    train_and_save(
        TrainingCommand {
            recipe: cfg,
            files,
            bytes_per_image: advmnist::limits::LENET_TRAIN_BYTES_PER_IMAGE,
            headline,
            saved: "the model",
            evaluate: |net: &LeNet<f32>, test: &Dataset| {
                train::test_error_pct(net, test.images.view(), &test.labels)
            },
            describe: |v| format!("test error {v:.2}%"),
            meta: |cfg, data, iteration| train::model_meta(cfg, data, iteration),
        },
        data_dir,
    )
}

/// `advmnist dae ...`.
pub fn dae(a: DaeArgs, data_dir: &Path) -> Result<()> {
    match a.command {
        DaeCommand::Train(a) => dae_train(a, data_dir),
    }
}

/// `advmnist dae train`: Caffe's autoencoder recipe with input dropout as the corruption.
fn dae_train(a: DaeTrainArgs, data_dir: &Path) -> Result<()> {
    let mut cfg = DaeConfig::new(a.seed);
    if a.iters == 0 {
        bail!("--iters must be at least 1");
    }
    cfg.iterations = a.iters;
    if !(0.0..1.0).contains(&a.dropout) {
        bail!("--dropout must be in [0, 1), got {}", a.dropout);
    }
    cfg.corruption = a.dropout;
    if a.batch == 0 {
        bail!("--batch must be at least 1");
    }
    cfg.batch = a.batch;
    let headline = format!(
        "training the denoising autoencoder: {} iterations, batch {}, input dropout {}, seed {}, {} threads",
        cfg.iterations,
        cfg.batch,
        cfg.corruption,
        cfg.seed,
        rayon::current_num_threads()
    );
    train_and_save(
        TrainingCommand {
            recipe: cfg,
            files: RunFlags {
                out: &a.out,
                checkpoint: a.checkpoint.as_deref(),
                checkpoint_every: a.checkpoint_every,
                eval_every: a.eval_every,
                resume: a.resume,
            },
            bytes_per_image: advmnist::limits::DAE_TRAIN_BYTES_PER_IMAGE,
            headline,
            saved: "the autoencoder",
            evaluate: |net: &Autoencoder, test: &Dataset| {
                net.reconstruction_loss(test.images.view()) as f64
            },
            describe: |v| format!("test reconstruction cross-entropy {v:.2} per image"),
            meta: |cfg, data, iteration| cfg.model_meta(&data.sha256, iteration),
        },
        data_dir,
    )
}

/// The flags `train` and `dae train` share: the run's files, how often it checkpoints and
/// evaluates, and whether it resumes.
struct RunFlags<'a> {
    out: &'a Path,
    checkpoint: Option<&'a Path>,
    checkpoint_every: u64,
    eval_every: u64,
    resume: bool,
}

/// A training command: the recipe, and what else differs between `train` and `dae train`.
struct TrainingCommand<'a, R: Recipe> {
    recipe: R,
    files: RunFlags<'a>,
    /// Peak memory per image of a training batch (`advmnist::limits`).
    bytes_per_image: u64,
    /// The line said before the first iteration.
    headline: String,
    /// What the model file holds, for the error message: "the model", "the autoencoder".
    saved: &'static str,
    /// The figure evaluated on the test set.
    evaluate: fn(&R::Net, &Dataset) -> f64,
    /// The figure in words: `test error 1.23%`.
    describe: fn(f64) -> String,
    /// The model file's metadata after the given iterations.
    meta: fn(&R, &Mnist, u64) -> ModelMeta,
}

/// Checks the files, loads the data, checks the batch, trains with a progress bar, saves the
/// model and removes the checkpoint.
fn train_and_save<R: Recipe>(c: TrainingCommand<'_, R>, data_dir: &Path) -> Result<()> {
    let flags = &c.files;
    let files = RunFiles::check(
        flags.out,
        flags.checkpoint,
        flags.checkpoint_every,
        data_dir,
    )
    .map_err(anyhow::Error::msg)?;
    super::interrupt::how_to_go_on(if flags.checkpoint_every == 0 {
        "It saves no checkpoint (--checkpoint-every 0): run the same command again to start over."
            .to_string()
    } else {
        format!(
            "Its checkpoint {} holds the iterations up to its last save (every {} iterations): \
             run the same command with --resume to continue from there, to the bytes of an \
             uninterrupted run.",
            files.checkpoint().display(),
            flags.checkpoint_every
        )
    });
    let data = data::load_mnist(data_dir)?;
    check_batch(c.recipe.batch(), &data, c.bytes_per_image).map_err(anyhow::Error::msg)?;
    let evaluate = |net: &R::Net| (c.evaluate)(net, &data.test);
    let mut bar = ProgressBar::hidden();
    let trained = run_training(
        &c.recipe,
        &data,
        &files,
        flags.resume,
        Evaluation {
            every: flags.eval_every,
            evaluate: &evaluate,
        },
        |event| match event {
            RunEvent::Started { iteration, note } => {
                if let Some(note) = note {
                    eprintln!("{note}");
                }
                eprintln!("{}", c.headline);
                bar = progress::bar(
                    c.recipe.iterations(),
                    "{bar:30} {pos}/{len} it  {msg}  {per_sec}  ETA {eta}",
                )
                .with_position(iteration);
            }
            RunEvent::Train(Event::Iteration {
                iteration,
                loss,
                lr,
            }) => {
                bar.set_position(iteration);
                if iteration % 10 == 0 {
                    bar.set_message(format!("loss {loss:.4}  lr {lr:.5}"));
                }
            }
            RunEvent::Train(Event::Evaluated { iteration, value }) => progress::say(
                &bar,
                format!("iteration {iteration}: {}", (c.describe)(value)),
            ),
            RunEvent::Train(Event::Checkpointed { .. }) => {}
        },
    );
    bar.finish_and_clear();
    let trained = trained?;
    let iterations = trained.state.iteration;
    save_model(
        flags.out,
        &trained.state.net,
        &(c.meta)(&c.recipe, &data, iterations),
    )
    .with_context(|| format!("saving {} to {}", c.saved, flags.out.display()))?;
    files.finish()?;
    eprintln!(
        "wrote {} ({iterations} iterations, {}) in {:.1} s",
        flags.out.display(),
        (c.describe)(trained.final_evaluation),
        trained.seconds
    );
    Ok(())
}
