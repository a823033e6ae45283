//! A LeNet trained for a few iterations with Caffe's recipe (`train::TrainConfig::lenet`:
//! xavier weights, momentum SGD, the `inv` learning-rate policy), printing the loss as it falls
//! and the test error as it is measured, and optionally saving the model file.
//!
//! ```text
//! cargo run --release --example train_few_iterations -- [ITERATIONS] [--batch B] [--seed S] [--out MODEL]
//! ```
//!
//! 200 iterations of 64 images by default (a few seconds; about 95% of the test set right);
//! the study trains 10,000. The file `--out` writes is an ordinary model file, for
//! `fgsm_one_digit MODEL`, `attack_committee MODEL MODEL ...` and every `advmnist` command.

use advmnist::data::{default_data_dir, load_mnist};
use advmnist::io_safety::check_output_file;
use advmnist::limits::{LENET_TRAIN_BYTES_PER_IMAGE, MAX_ITERATIONS};
use advmnist::models::file::save_model;
use advmnist::models::DropoutRates;
use advmnist::train::driver::check_batch;
use advmnist::train::{self, Event, TrainConfig, TrainOptions, TrainState};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

const USAGE: &str = "usage: cargo run --release --example train_few_iterations -- [ITERATIONS] \
                     [--batch B] [--seed S] [--out MODEL]";

struct Args {
    iterations: u64,
    batch: usize,
    seed: u64,
    out: Option<PathBuf>,
}

/// Reads the arguments; every mistake is a message naming the argument.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        iterations: 200,
        batch: 64,
        seed: 1,
        out: None,
    };
    let mut iterations_given = false;
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--batch" => {
                let v = value("--batch")?;
                parsed.batch = v
                    .parse()
                    .ok()
                    .filter(|&b| b > 0)
                    .ok_or(format!("--batch {v}: not a whole number above 0"))?;
            }
            "--seed" => {
                let v = value("--seed")?;
                parsed.seed = v
                    .parse()
                    .map_err(|_| format!("--seed {v}: not a whole number"))?;
            }
            "--out" => {
                let path = PathBuf::from(value("--out")?);
                check_output_file("--out", &path)?;
                parsed.out = Some(path);
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            count if !iterations_given => {
                parsed.iterations = count
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_ITERATIONS).contains(n))
                    .ok_or(format!(
                        "{count}: ITERATIONS is a whole number from 1 to {MAX_ITERATIONS}"
                    ))?;
                iterations_given = true;
            }
            extra => return Err(format!("{extra}: unexpected argument")),
        }
    }
    Ok(parsed)
}

fn run(args: Args) -> Result<(), String> {
    let data = load_mnist(&default_data_dir()).map_err(|e| e.to_string())?;
    check_batch(args.batch, &data, LENET_TRAIN_BYTES_PER_IMAGE)?;
    let config = TrainConfig {
        iterations: args.iterations,
        batch: args.batch,
        ..TrainConfig::lenet(DropoutRates::NONE, args.seed)
    };
    // About ten loss lines and four test-error measurements, whatever the length of the run.
    let print_every = (args.iterations / 10).max(1);
    let options = TrainOptions {
        eval_every: (args.iterations / 4).max(1),
        ..TrainOptions::default()
    };
    println!(
        "training LeNet: {} iterations of {} images, seed {}",
        config.iterations, config.batch, config.seed
    );
    let started = Instant::now();
    let state = TrainState::new(config.seed);
    let trained = train::train(&config, &data, state, &options, |event| match event {
        Event::Iteration {
            iteration,
            loss,
            lr,
        } if iteration % print_every == 0 || iteration == 1 => {
            println!("iteration {iteration:>6}: loss {loss:.4} (learning rate {lr:.5})")
        }
        Event::Evaluated { iteration, value } => {
            println!("iteration {iteration:>6}: test error {value:.2}%")
        }
        _ => {}
    })
    .map_err(|e| e.to_string())?;
    println!("{:.1} s", started.elapsed().as_secs_f64());
    if let Some(path) = &args.out {
        let meta = train::model_meta(&config, &data, trained.iteration);
        save_model(path, &trained.net, &meta).map_err(|e| e.to_string())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let args = match parse_args(args.into_iter()) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("train_few_iterations: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("train_few_iterations: {message}");
            ExitCode::FAILURE
        }
    }
}
