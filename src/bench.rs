//! `advmnist bench`: images per second, and the GFLOP/s they imply, for the three workloads the
//! PyTorch peer (`shared/bench/torch_lenet_bench.py`) measures, on the same shapes:
//! a training step (forward, backward, SGD update; batch B), the input gradient used by the
//! gradient-sign attack (forward + backward to the input; batch B), and inference (batch 1000).
//! Each workload is warmed up, then repeated for a fixed time.

use crate::models::lenet::{DropoutRates, LeNet};
use crate::optim::lr::InvPolicy;
use crate::optim::sgd::SgdMomentum;
use crate::rng::{stream, Purpose};
use crate::testutil::random_array;
use ndarray::{Array4, Ix4};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::time::{Duration, Instant};

/// Multiply-adds count 2 FLOPs. Per image, from the layer shapes:
/// conv1 2*20*25*576 = 576,000; conv2 2*50*500*64 = 3,200,000; fc1 2*500*800 = 800,000;
/// fc2 2*10*500 = 10,000 (pooling, ReLU, softmax and the bias adds are not counted).
pub const FORWARD_FLOP: f64 = 576_000.0 + 3_200_000.0 + 800_000.0 + 10_000.0;
/// Forward plus the input gradient: every layer's `dX` costs as much as its forward product.
pub const INPUT_GRADIENT_FLOP: f64 = 2.0 * FORWARD_FLOP;
/// Forward, every weight gradient (one product each), and every input gradient but conv1's
/// (training never needs the gradient of the pixels).
pub const TRAIN_STEP_FLOP: f64 = 3.0 * FORWARD_FLOP - 576_000.0;

#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    pub threads: usize,
    pub batch: usize,
    pub train_img_per_s: f64,
    pub fgsm_img_per_s: f64,
    pub infer_img_per_s: f64,
    pub train_gflop_per_s: f64,
    pub fgsm_gflop_per_s: f64,
    pub infer_gflop_per_s: f64,
}

/// Runs `step` `warmup` times, then for at least `seconds`; returns images per second.
fn rate(images_per_step: usize, seconds: f64, mut step: impl FnMut()) -> f64 {
    for _ in 0..3 {
        step();
    }
    let start = Instant::now();
    let mut steps = 0u64;
    while start.elapsed() < Duration::from_secs_f64(seconds) {
        step();
        steps += 1;
    }
    (steps as f64 * images_per_step as f64) / start.elapsed().as_secs_f64()
}

/// Measures the three workloads on random images and labels, `seconds` each.
pub fn run(batch: usize, seconds: f64) -> BenchResult {
    let mut net = LeNet::<f32>::xavier(&mut stream(0, Purpose::Init, 0));
    let mut velocity = LeNet::zeros();
    let x: Array4<f32> = random_array::<f32, Ix4>((batch, 1, 28, 28), 1).mapv(|v| 0.5 * (v + 1.0));
    let labels: Vec<u8> = (0..batch).map(|i| (i % 10) as u8).collect();
    let mut rngs: Vec<ChaCha8Rng> = (0..batch as u64)
        .map(|i| stream(0, Purpose::Dropout, i))
        .collect();
    let (solver, lr) = (SgdMomentum::LENET, InvPolicy::LENET);
    let train_img_per_s = rate(batch, seconds, || {
        let (_, grads) = net.loss_and_gradients(x.view(), &labels, &DropoutRates::NONE, &mut rngs);
        solver.step(&mut net, &grads, &mut velocity, lr.rate(0));
    });
    let fgsm_img_per_s = rate(batch, seconds, || {
        std::hint::black_box(net.input_gradient(x.view(), &labels));
    });
    let xb: Array4<f32> = random_array::<f32, Ix4>((1000, 1, 28, 28), 2).mapv(|v| 0.5 * (v + 1.0));
    let infer_img_per_s = rate(1000, seconds, || {
        std::hint::black_box(net.predict(xb.view()));
    });
    BenchResult {
        threads: rayon::current_num_threads(),
        batch,
        train_img_per_s,
        fgsm_img_per_s,
        infer_img_per_s,
        train_gflop_per_s: train_img_per_s * TRAIN_STEP_FLOP / 1e9,
        fgsm_gflop_per_s: fgsm_img_per_s * INPUT_GRADIENT_FLOP / 1e9,
        infer_gflop_per_s: infer_img_per_s * FORWARD_FLOP / 1e9,
    }
}
