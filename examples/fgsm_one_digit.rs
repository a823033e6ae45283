//! One test digit, its input gradient and its gradient-sign (FGSM) image, printed as text:
//! the digit, the sign of `dL/dx` pixel by pixel, and the adversarial image side by side, then
//! the prediction before and after and the distortion the attack applied.
//!
//! ```text
//! cargo run --release --example fgsm_one_digit -- [MODEL] [--image N] [--eps E]
//! ```
//!
//! `MODEL` is a LeNet model file (`advmnist train --out m.safetensors`, or the example
//! `train_few_iterations --out m.safetensors`); without one, a LeNet is trained for
//! [`QUICK_ITERATIONS`] iterations first, a few seconds. `--image` picks the test image (0 by
//! default), `--eps` the step (0.1 by default). The attack is the study's Eq. 1,
//! `x' = clip(x + eps sign(dL/dx), 0, 1)` with the true label, as `attacks::fgsm` makes it.

use advmnist::attacks::distortion::distortion_per_pixel;
use advmnist::attacks::fgsm;
use advmnist::data::{default_data_dir, load_mnist, Mnist};
use advmnist::models::file::load_model;
use advmnist::models::gradient::sign;
use advmnist::models::{Classifier, DropoutRates, LeNet};
use advmnist::train::{self, TrainConfig, TrainOptions, TrainState};
use ndarray::{s, ArrayView2, ArrayView4};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str =
    "usage: cargo run --release --example fgsm_one_digit -- [MODEL] [--image N] [--eps E]";

/// Iterations of the LeNet trained when no model file is given: Caffe's recipe, cut short
/// (about 95% of the test set right).
const QUICK_ITERATIONS: u64 = 200;

struct Args {
    model: Option<PathBuf>,
    image: usize,
    eps: f32,
}

/// Reads the arguments; every mistake is a message naming the argument.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        model: None,
        image: 0,
        eps: 0.1,
    };
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--image" => {
                let v = value("--image")?;
                parsed.image = v
                    .parse()
                    .map_err(|_| format!("--image {v}: not a test image index (0 to 9999)"))?;
            }
            "--eps" => {
                let v = value("--eps")?;
                parsed.eps = v
                    .parse()
                    .ok()
                    .filter(|e: &f32| (0.0..=1.0).contains(e))
                    .ok_or(format!("--eps {v}: not a number from 0 to 1"))?;
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            path if parsed.model.is_none() => parsed.model = Some(PathBuf::from(path)),
            extra => return Err(format!("{extra}: only one model file is read")),
        }
    }
    if let Some(path) = &parsed.model {
        if !path.is_file() {
            return Err(format!("{}: no such model file", path.display()));
        }
    }
    Ok(parsed)
}

/// A LeNet trained for [`QUICK_ITERATIONS`] iterations with Caffe's recipe.
fn quick_model(data: &Mnist) -> Result<LeNet<f32>, String> {
    println!("no model file given: training LeNet for {QUICK_ITERATIONS} iterations of 64 images");
    let config = TrainConfig {
        iterations: QUICK_ITERATIONS,
        ..TrainConfig::lenet(DropoutRates::NONE, 1)
    };
    let state = TrainState::new(config.seed);
    train::train(&config, data, state, &TrainOptions::default(), |_| {})
        .map(|trained| trained.net)
        .map_err(|e| e.to_string())
}

/// Softmax of one row of logits, in f64.
fn probabilities(logits: ArrayView2<f32>) -> Vec<f64> {
    let row = logits.row(0);
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &z| m.max(z)) as f64;
    let e: Vec<f64> = row.iter().map(|&z| (z as f64 - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|v| v / sum).collect()
}

/// The prediction and its probability, and the loss with the true label.
fn describe(model: &dyn Classifier, x: ArrayView4<f32>, label: &[u8]) -> String {
    let p = probabilities(model.logits(x).view());
    let predicted = model.predict(x)[0] as usize;
    let (loss, _) = model.input_gradient(x, label);
    format!(
        "predicted {predicted} with probability {:.3}; p(label {}) = {:.3}; loss {:.4}",
        p[predicted], label[0], p[label[0] as usize], loss[0]
    )
}

fn run(args: Args) -> Result<(), String> {
    // The model file first, so that a file which is not a model fails before any work.
    let loaded = match &args.model {
        Some(path) => {
            let (net, _) = load_model(path).map_err(|e| e.to_string())?;
            println!("model: {}", path.display());
            Some(net)
        }
        None => None,
    };
    let data = load_mnist(&default_data_dir()).map_err(|e| e.to_string())?;
    if args.image >= data.test.len() {
        return Err(format!(
            "--image {}: the test set has {} images (0 to {})",
            args.image,
            data.test.len(),
            data.test.len() - 1
        ));
    }
    let net = match loaded {
        Some(net) => net,
        None => quick_model(&data)?,
    };
    let model: &dyn Classifier = &net;

    let n = args.image;
    let x = data.test.images.slice(s![n..n + 1, .., .., ..]);
    let label = &data.test.labels[n..n + 1];
    let (_, gradient) = model.input_gradient(x, label);
    let adversarial = fgsm::fgsm(model, x, label, args.eps);

    println!("\ntest image {n}, label {}", label[0]);
    println!(
        "{:<30}{:<30}FGSM image, eps {}",
        "the digit", "sign of dL/dx", args.eps
    );
    let shade = |p: f32| match p {
        p if p > 0.5 => '#',
        p if p > 0.2 => '+',
        p if p > 0.0 => ':',
        _ => '.',
    };
    let sign_mark = |g: f32| match sign(g) {
        s if s > 0.0 => '+',
        s if s < 0.0 => '-',
        _ => '0',
    };
    let (digit, grad, adv) = (
        x.slice(s![0, 0, .., ..]),
        gradient.slice(s![0, 0, .., ..]),
        adversarial.slice(s![0, 0, .., ..]),
    );
    for ((d, g), a) in digit.rows().into_iter().zip(grad.rows()).zip(adv.rows()) {
        let d: String = d.iter().map(|&p| shade(p)).collect();
        let g: String = g.iter().map(|&v| sign_mark(v)).collect();
        let a: String = a.iter().map(|&p| shade(p)).collect();
        println!("{d}  {g}  {a}");
    }
    println!("(pixels: # above 0.5, + above 0.2, : above 0, . zero; signs: 0 where dL/dx is 0)");

    // A pixel stays where it is when its gradient is 0 (sign 0), or when the step pushes it
    // out of [0, 1] from the bound it sits on (clipped back).
    let zero = gradient.iter().filter(|&&g| g == 0.0).count();
    let clipped = x
        .iter()
        .zip(gradient.iter())
        .filter(|&(&p, &g)| (p == 0.0 && g < 0.0) || (p == 1.0 && g > 0.0))
        .count();
    let moved = x
        .iter()
        .zip(adversarial.iter())
        .filter(|(a, b)| a != b)
        .count();
    println!("\nbefore: {}", describe(model, x, label));
    println!("after:  {}", describe(model, adversarial.view(), label));
    println!(
        "distortion per pixel {:.4} (eps {}): of {} pixels, {moved} moved, {zero} have a zero \
         gradient, {clipped} are held at 0 or 1 by clipping",
        distortion_per_pixel(x, adversarial.view()),
        args.eps,
        x.len()
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
            eprintln!("fgsm_one_digit: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("fgsm_one_digit: {message}");
            ExitCode::FAILURE
        }
    }
}
