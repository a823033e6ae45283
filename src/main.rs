//! The `advmnist` command line: parses arguments, calls the library, prints. Nothing else.

use advmnist::data::{self, Split};
use advmnist::models::file::{load_model, save_model};
use advmnist::models::lenet::{error_pct, DropoutRates};
use advmnist::train::{self, Event, TrainConfig, TrainOptions};
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// advmnist: a hand-written LeNet on MNIST, its adversarial examples, and the study
/// "Robustness of Deep Convolutional Neural Networks for Image Recognition"
/// (Uličný, Lundström, Byttner, ISICS 2016), reproduced and audited.
#[derive(Parser)]
#[command(version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// Worker threads (default: RAYON_NUM_THREADS, else one per core). Results are
    /// bit-identical whatever the count.
    #[arg(long, global = true, value_name = "T")]
    threads: Option<usize>,
    /// Folder of the four MNIST-format IDX files (.gz or raw), e.g. Fashion-MNIST.
    /// Default: ADVMNIST_DATA, else the bundled mnist/ folder.
    #[arg(long, global = true, value_name = "DIR")]
    data: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Train a LeNet as Caffe's lenet_solver.prototxt does (SGD, momentum 0.9, weight decay
    /// 5e-4, `inv` learning rate from 0.01, batch 64), checkpointing as it goes.
    ///
    /// Example: advmnist train --out lenet.safetensors
    Train(TrainArgs),
    /// Test error of one or more model files on the 10,000 test images.
    ///
    /// Example: advmnist eval --model lenet.safetensors --json
    Eval(EvalArgs),
}

#[derive(Args)]
struct TrainArgs {
    /// Where to write the trained model (safetensors).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Iterations (batches). Default: 10,000; 35,000 for --dropout inp; 40,000 for --dropout all
    /// (the study's Table 1).
    #[arg(long, value_name = "N")]
    iters: Option<u64>,
    /// Seed of every random draw (initial weights, shuffling, dropout masks).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Dropout: none, inp (0.2 on the input), all (0.2,0.2,0.2,0.5,0.5), or five rates
    /// input,conv1,conv2,fc1,output (each applied to that layer's output).
    #[arg(long, default_value = "none", value_parser = DropoutRates::parse)]
    dropout: DropoutRates,
    /// Images per batch.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Checkpoint file. Default: the --out path with .ckpt appended.
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Checkpoint every N iterations (0: never).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    checkpoint_every: u64,
    /// Measure the test error every N iterations (0: only at the end).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    eval_every: u64,
    /// Continue the run saved in the checkpoint file, to the same model an uninterrupted
    /// run gives.
    #[arg(long)]
    resume: bool,
}

#[derive(Args)]
struct EvalArgs {
    /// Model file(s) to evaluate.
    #[arg(long = "model", value_name = "FILE", required = true)]
    models: Vec<PathBuf>,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    if let Some(t) = cli.global.threads {
        if t == 0 {
            bail!("--threads must be at least 1");
        }
        rayon::ThreadPoolBuilder::new().num_threads(t).build_global().context("setting up the thread pool")?;
    }
    let data_dir = cli.global.data.clone().unwrap_or_else(data::default_data_dir);
    match cli.command {
        Command::Train(a) => cmd_train(a, data_dir),
        Command::Eval(a) => cmd_eval(a, data_dir),
    }
}

fn cmd_train(a: TrainArgs, data_dir: PathBuf) -> Result<()> {
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
    let started = Instant::now();
    let data = data::load_mnist(&data_dir)?;
    let checkpoint = a.checkpoint.clone().unwrap_or_else(|| train::default_checkpoint_path(&a.out));
    let (state, note) = train::starting_state(&cfg, &data, Some(&checkpoint), a.resume)?;
    if let Some(note) = note {
        eprintln!("{note}");
    }
    eprintln!(
        "training LeNet: {} iterations, batch {}, dropout {}, seed {}, {} threads",
        cfg.iterations,
        cfg.batch,
        cfg.dropout.describe(),
        cfg.seed,
        rayon::current_num_threads()
    );
    let bar = ProgressBar::new(cfg.iterations).with_position(state.iteration);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} it  {msg}  {per_sec}  ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let say = |bar: &ProgressBar, line: String| if bar.is_hidden() { eprintln!("{line}") } else { bar.println(line) };
    let options = TrainOptions { checkpoint: Some(checkpoint.clone()), checkpoint_every: a.checkpoint_every, eval_every: a.eval_every };
    let result = train::train(&cfg, &data, state, &options, |event| match event {
        Event::Iteration { iteration, loss, lr } => {
            bar.set_position(iteration);
            if iteration % 10 == 0 {
                bar.set_message(format!("loss {loss:.4}  lr {lr:.5}"));
            }
        }
        Event::Evaluated { iteration, test_error_pct } => {
            say(&bar, format!("iteration {iteration}: test error {test_error_pct:.2}%"))
        }
        Event::Checkpointed { .. } => {}
    });
    bar.finish_and_clear();
    let state = result?;
    save_model(&a.out, &state.net, &train::model_meta(&cfg, &data, state.iteration))
        .with_context(|| format!("saving the model to {}", a.out.display()))?;
    if checkpoint.exists() {
        std::fs::remove_file(&checkpoint).with_context(|| format!("removing the finished run's checkpoint {}", checkpoint.display()))?;
    }
    let test_error = error_pct(&state.net.predict(data.test.images.view()), &data.test.labels);
    eprintln!(
        "wrote {} ({} iterations, test error {test_error:.2}%) in {:.1} s",
        a.out.display(),
        state.iteration,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn cmd_eval(a: EvalArgs, data_dir: PathBuf) -> Result<()> {
    let test = data::load_split(&data_dir, Split::Test)?;
    let mut rows = Vec::new();
    for path in &a.models {
        let (net, _) = load_model(path)?;
        let err = error_pct(&net.predict(test.images.view()), &test.labels);
        rows.push(serde_json::json!({"model": path.display().to_string(), "test_error_pct": err, "n": test.len()}));
        if !a.json {
            println!("{}: test error {err:.2}% on {} images", path.display(), test.len());
        }
    }
    if a.json {
        println!("{}", serde_json::json!({ "models": rows }));
    }
    Ok(())
}
