//! The measurements behind `advtrain`'s default eps and c (docs/adversarial-training.md):
//! input-gradient magnitudes of a model on training images, at the clean image X and at its
//! gradient-sign example X_R = clip(X + eps sign(g(X)), 0, 1), and what Eq. 3's second step
//! `clip(X_R + c g(X_R), 0, 1)` does for several c.
//!
//! cargo run --release --example advtrain_gradients -- MODEL [IMAGES] [EPS,EPS,...] [C,C,...]

use advmnist::attacks::distortion::distortion_per_pixel;
use advmnist::attacks::fgsm;
use advmnist::data::{default_data_dir, load_mnist};
use advmnist::models::file::load_model;
use advmnist::models::lenet::error_pct;
use advmnist::models::Classifier;
use advmnist::train::adversarial::gradient_step;
use ndarray::{s, Array4, Axis};

/// The q-quantile (0..=1) of a list, by sorting (nearest rank).
fn quantile(values: &[f32], q: f64) -> f32 {
    let mut v = values.to_vec();
    v.sort_by(f32::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Per image: the largest |g| and the mean |g| over its 784 pixels.
fn per_image(g: &Array4<f32>) -> (Vec<f32>, Vec<f32>) {
    g.outer_iter()
        .map(|img| {
            let max = img.iter().fold(0f32, |m, v| m.max(v.abs()));
            let mean = img.iter().map(|v| v.abs()).sum::<f32>() / img.len() as f32;
            (max, mean)
        })
        .unzip()
}

fn describe(name: &str, values: &[f32]) {
    println!(
        "  {name:<28} median {:.3e}  p10 {:.3e}  p90 {:.3e}  p99 {:.3e}  max {:.3e}",
        quantile(values, 0.5),
        quantile(values, 0.1),
        quantile(values, 0.9),
        quantile(values, 0.99),
        quantile(values, 1.0)
    );
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let model_path = args
        .get(1)
        .expect("usage: MODEL [IMAGES] [EPS,...] [C,...]");
    let n: usize = args.get(2).map_or(Ok(60_000), |a| a.parse())?;
    let list = |i: usize, default: &str| -> Vec<f32> {
        args.get(i)
            .map_or(default, String::as_str)
            .split(',')
            .map(|v| v.parse().expect("a number"))
            .collect()
    };
    let epss = list(3, "0.1,0.2,0.25,0.3");
    let cs = list(4, "0.01,0.1,0.3,1,3,10");
    let data = load_mnist(&default_data_dir())?;
    let (model, _) = load_model(std::path::Path::new(model_path))?;
    let x = data.train.images.slice(s![..n, .., .., ..]);
    let labels = &data.train.labels[..n];
    println!("model {model_path}, first {n} training images");

    let (loss0, g0) = Classifier::input_gradient(&model, x, labels);
    let (max0, mean0) = per_image(&g0);
    println!(
        "at X (clean): error {:.2}%",
        error_pct(&model.predict(x), labels)
    );
    describe("max |g| per image", &max0);
    describe("mean |g| per image", &mean0);
    describe("loss per image", &loss0.to_vec());
    let zero = g0
        .outer_iter()
        .filter(|img| img.iter().all(|&v| v == 0.0))
        .count();
    println!("  images whose gradient is exactly zero: {zero}");

    // Is an image's gradient the same alone as inside a chunk? (The tests recompute single
    // images and compare bit for bit.)
    let same = (0..8).all(|i| {
        let (_, gi) = model.input_gradient(x.slice(s![i..i + 1, .., .., ..]), &labels[i..i + 1]);
        gi.index_axis(Axis(0), 0) == g0.index_axis(Axis(0), i)
    });
    println!("  single-image gradients equal the chunk's, bit for bit (8 images): {same}");

    let sign = g0.mapv(advmnist::models::gradient::sign);
    for &eps in &epss {
        let x_r = fgsm::perturb(x, sign.view(), eps);
        let (loss1, g1) = model.input_gradient(x_r.view(), labels);
        let (max1, mean1) = per_image(&g1);
        println!(
            "eps {eps}: X_R error {:.2}%, distortion per pixel {:.4}",
            error_pct(&model.predict(x_r.view()), labels),
            distortion_per_pixel(x, x_r.view())
        );
        describe("max |g| at X_R per image", &max1);
        describe("mean |g| at X_R per image", &mean1);
        describe("loss at X_R per image", &loss1.to_vec());
        let ratio: Vec<f32> = mean1
            .iter()
            .zip(&mean0)
            .filter(|(_, &m0)| m0 > 0.0)
            .map(|(m1, m0)| m1 / m0)
            .collect();
        describe("mean |g(X_R)| / mean |g(X)|", &ratio);
        for &c in &cs {
            let x2 = gradient_step(x_r.view(), g1.view(), c);
            let step: Vec<f32> = x2
                .outer_iter()
                .zip(x_r.outer_iter())
                .map(|(a, b)| {
                    a.iter()
                        .zip(b.iter())
                        .map(|(p, q)| (p - q).abs())
                        .sum::<f32>()
                        / 784.0
                })
                .collect();
            let moved =
                x2.iter().zip(x_r.iter()).filter(|(p, q)| p != q).count() as f64 / x2.len() as f64;
            println!(
                "  c {c:<5}: X' error {:.2}%, distortion X'-X {:.4}, |X'-X_R| per pixel median {:.2e} p90 {:.2e}, pixels moved by the step {:.1}%",
                error_pct(&model.predict(x2.view()), labels),
                distortion_per_pixel(x, x2.view()),
                quantile(&step, 0.5),
                quantile(&step, 0.9),
                100.0 * moved
            );
        }
    }
    Ok(())
}
