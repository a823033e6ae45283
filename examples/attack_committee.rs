//! A committee (the study's sections 3.3 and 5.3) under the gradient-sign attack: the error of
//! each member attacked through its own gradient, of the committee attacked through its own
//! (every member's backward pass, `models::committee`), and of the committee on the examples
//! crafted on its first member alone (transfer).
//!
//! ```text
//! cargo run --release --example attack_committee -- [MODEL MODEL ...] [--images N]
//! ```
//!
//! The `MODEL`s are LeNet model files, the committee's members; without any, three LeNets are
//! trained for [`QUICK_ITERATIONS`] iterations each (seeds 1, 2, 3), a few seconds apiece.
//! `--images` takes the first N test images (1000 by default).

use advmnist::attacks::{Noise, Perturbation};
use advmnist::data::{default_data_dir, load_mnist, Mnist};
use advmnist::models::file::load_model;
use advmnist::models::lenet::error_pct;
use advmnist::models::{Classifier, Committee, DropoutRates, LeNet};
use advmnist::train::{self, TrainConfig, TrainOptions, TrainState};
use ndarray::Array4;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str =
    "usage: cargo run --release --example attack_committee -- [MODEL MODEL ...] [--images N]";

/// Iterations of each member trained when no model file is given.
const QUICK_ITERATIONS: u64 = 200;

/// The attack's steps; 0 is the clean set.
const EPS: [f32; 4] = [0.0, 0.05, 0.1, 0.2];

struct Args {
    models: Vec<PathBuf>,
    images: usize,
}

/// Reads the arguments; every mistake is a message naming the argument.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        models: Vec::new(),
        images: 1000,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--images" => {
                let v = args.next().ok_or("--images needs a value")?;
                parsed.images = v
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or(format!("--images {v}: not a whole number above 0"))?;
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            path => {
                let path = PathBuf::from(path);
                if !path.is_file() {
                    return Err(format!("{}: no such model file", path.display()));
                }
                parsed.models.push(path);
            }
        }
    }
    Ok(parsed)
}

/// Three LeNets trained for [`QUICK_ITERATIONS`] iterations each with Caffe's recipe.
fn quick_members(data: &Mnist) -> Result<Vec<LeNet<f32>>, String> {
    (1..=3)
        .map(|seed| {
            println!("training member {seed}: {QUICK_ITERATIONS} iterations, seed {seed}");
            let config = TrainConfig {
                iterations: QUICK_ITERATIONS,
                ..TrainConfig::lenet(DropoutRates::NONE, seed)
            };
            let state = TrainState::new(seed);
            train::train(&config, data, state, &TrainOptions::default(), |_| {})
                .map(|trained| trained.net)
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// The FGSM images of `x` against `attacker`, one set per eps of [`EPS`]: the gradient's sign
/// is computed once and serves every eps.
fn fgsm_sets(
    attacker: &dyn Classifier,
    x: &Array4<f32>,
    labels: &[u8],
) -> Result<Vec<Array4<f32>>, String> {
    let perturbation = Perturbation::new(Noise::Fgsm, attacker, x.view(), labels, 0);
    EPS.iter()
        .map(|&eps| perturbation.at(eps).map_err(|e| e.to_string()))
        .collect()
}

/// One line of the table: the model's error on each eps's images.
fn row(name: &str, model: &dyn Classifier, sets: &[Array4<f32>], labels: &[u8]) {
    let errors: String = sets
        .iter()
        .map(|set| format!("{:>9.1}%", error_pct(&model.predict(set.view()), labels)))
        .collect();
    println!("{name:<44}{errors}");
}

fn run(args: Args) -> Result<(), String> {
    // The model files first, so that a file which is not a model fails before any work.
    let loaded: Vec<LeNet<f32>> = args
        .models
        .iter()
        .map(|p| load_model(p).map(|(net, _)| net).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let data = load_mnist(&default_data_dir()).map_err(|e| e.to_string())?;
    if args.images > data.test.len() {
        return Err(format!(
            "--images {}: the test set has {} images",
            args.images,
            data.test.len()
        ));
    }
    let nets = if loaded.is_empty() {
        quick_members(&data)?
    } else {
        loaded
    };
    let committee = Committee::new(nets.iter().map(|n| n as &dyn Classifier).collect());
    let test = data.test.subset(0..args.images);
    let (x, labels) = (&test.images, &test.labels[..]);

    println!("\nFGSM, error on the first {} test images", args.images);
    let header: String = EPS
        .iter()
        .map(|eps| format!("{:>10}", format!("eps {eps}")))
        .collect();
    println!(
        "{:<44}{header}",
        "model, and whose gradient made the examples"
    );
    let mut first_member_sets = Vec::new();
    for (m, net) in nets.iter().enumerate() {
        let sets = fgsm_sets(net, x, labels)?;
        row(&format!("member {}, its own", m + 1), net, &sets, labels);
        if m == 0 {
            first_member_sets = sets;
        }
    }
    let name = format!("committee of {}", nets.len());
    let own = fgsm_sets(&committee, x, labels)?;
    row(
        &format!("{name}, its own (white-box)"),
        &committee,
        &own,
        labels,
    );
    row(
        &format!("{name}, member 1's (transfer)"),
        &committee,
        &first_member_sets,
        labels,
    );
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
            eprintln!("attack_committee: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("attack_committee: {message}");
            ExitCode::FAILURE
        }
    }
}
