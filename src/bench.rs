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
    /// The denoising autoencoder's workloads (`shared/bench/torch_dae_bench.py`'s peers):
    /// a training step (batch B, input dropout 0.2, Nesterov), reconstruction (batch 1000), and
    /// the white-box input gradient of LeNet's loss through DAE + LeNet (batch B).
    pub dae_train_img_per_s: f64,
    pub dae_infer_img_per_s: f64,
    pub pipeline_fgsm_img_per_s: f64,
}

/// The autoencoder's FLOPs per image, forward: 2 per multiply-add, over the encoder's
/// 1,416,500 weights and the decoder's as many (5.67 MFLOP). A training step is about three
/// times this (forward, weight gradients, input gradients but the first layer's).
pub const DAE_FORWARD_FLOP: f64 =
    2.0 * (784.0 * 1000.0 + 1000.0 * 500.0 + 500.0 * 250.0 + 250.0 * 30.0) * 2.0;

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
    let dae = run_dae(&net, &x, &labels, &xb, batch, seconds);
    BenchResult {
        dae_train_img_per_s: dae.0,
        dae_infer_img_per_s: dae.1,
        pipeline_fgsm_img_per_s: dae.2,
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

/// The autoencoder's three workloads: (training step, reconstruction, pipeline input gradient)
/// in images per second.
fn run_dae(
    net: &LeNet<f32>,
    x: &Array4<f32>,
    labels: &[u8],
    xb: &Array4<f32>,
    batch: usize,
    seconds: f64,
) -> (f64, f64, f64) {
    use crate::models::autoencoder::Autoencoder;
    use crate::models::pipeline::{AttackThrough, Pipeline, Stage};
    use crate::models::Classifier;
    use crate::train::dae::DaeConfig;
    let cfg = DaeConfig::new(0);
    let mut dae = Autoencoder::<f32>::caffe_sparse_gaussian(&mut stream(0, Purpose::Init, 0));
    let mut velocity = Autoencoder::zeros();
    let mut rngs: Vec<ChaCha8Rng> = (0..batch as u64)
        .map(|i| stream(0, Purpose::Dropout, i))
        .collect();
    let train = rate(batch, seconds, || {
        let (_, grads) = dae.loss_and_gradients(x.view(), cfg.corruption, &mut rngs);
        cfg.solver
            .step(&mut dae, &grads, &mut velocity, cfg.lr.rate(0));
    });
    let infer = rate(1000, seconds, || {
        std::hint::black_box(dae.reconstruct(xb.view()));
    });
    let pipeline = Pipeline::new(
        vec![Stage::Autoencoder {
            name: "bench".into(),
            net: Box::new(dae),
        }],
        net,
        AttackThrough::Pipeline,
    );
    let fgsm = rate(batch, seconds, || {
        std::hint::black_box(pipeline.input_gradient(x.view(), labels));
    });
    (train, infer, fgsm)
}
