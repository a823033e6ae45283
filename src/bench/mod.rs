//! `advmnist bench`: images per second, and the GFLOP/s they imply, for the three workloads the
//! PyTorch peer (`scripts/peers/torch_lenet_bench.py`) measures, on the same shapes:
//! a training step (forward, backward, SGD update; batch B), the input gradient used by the
//! gradient-sign attack (forward + backward to the input; batch B), and inference (batch 1000).
//! Each workload is warmed up, then repeated for a fixed time.
//!
//! `advmnist bench --report DIR` ([`profile`]) measures more: the machine ([`machine`]), its
//! limits ([`limits`]: sgemm at LeNet's shapes ([`shapes`]) and at 1024^3, memory bandwidth),
//! every layer's passes ([`layers`]), the same workloads on 1..N threads, each figure as
//! repeated samples ([`measure`], [`stats`]); [`compare`] matches two such profiles figure by
//! figure. `report::bench_page` lays them out.

pub mod compare;
pub mod layers;
pub mod limits;
pub mod machine;
pub mod measure;
pub mod profile;
pub mod shapes;
pub mod stats;

use crate::data::IMAGE_SIDE;
use crate::models::lenet::{DropoutRates, LeNet};
use crate::optim::lr::InvPolicy;
use crate::optim::sgd::SgdMomentum;
use crate::rng::random_array;
use crate::rng::{stream, Purpose};
use measure::images_per_second;
use ndarray::Array4;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

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
    /// The denoising autoencoder's workloads (`scripts/peers/torch_dae_bench.py`'s peers):
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

/// Measures the six workloads on random images and labels, `seconds` each.
pub fn run(batch: usize, seconds: f64) -> BenchResult {
    let mut rates = Vec::with_capacity(WORKLOADS.len());
    for_each_workload(batch, |w, step| {
        rates.push(images_per_second(w.images_per_step(batch), seconds, step))
    });
    let [train_img_per_s, fgsm_img_per_s, infer_img_per_s, dae_train, dae_infer, pipeline] =
        rates[..]
    else {
        unreachable!("for_each_workload runs every workload once")
    };
    BenchResult {
        dae_train_img_per_s: dae_train,
        dae_infer_img_per_s: dae_infer,
        pipeline_fgsm_img_per_s: pipeline,
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

/// Images per inference and reconstruction call, whatever `--batch` is (as the PyTorch peers).
pub const INFERENCE_BATCH: usize = 1000;

/// One whole-network workload: what `advmnist bench` times, and what it counts per image.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    /// The workload's name: its `advmnist bench --json` key is `NAME_img_per_s`.
    pub name: &'static str,
    pub what: &'static str,
    /// Whether a call handles `--batch` images (else [`INFERENCE_BATCH`]).
    pub on_batch: bool,
    /// Nominal FLOPs per image (a multiply-add counts 2).
    pub flop_per_image: f64,
}

impl Workload {
    pub fn images_per_step(&self, batch: usize) -> usize {
        if self.on_batch {
            batch
        } else {
            INFERENCE_BATCH
        }
    }
}

/// The workloads of [`for_each_workload`], in its order.
pub const WORKLOADS: [Workload; 6] = [
    Workload {
        name: "train",
        what: "LeNet training step (forward, backward, SGD update)",
        on_batch: true,
        flop_per_image: TRAIN_STEP_FLOP,
    },
    Workload {
        name: "fgsm",
        what: "LeNet input gradient (forward, backward to the input)",
        on_batch: true,
        flop_per_image: INPUT_GRADIENT_FLOP,
    },
    Workload {
        name: "infer",
        what: "LeNet inference, batch 1000",
        on_batch: false,
        flop_per_image: FORWARD_FLOP,
    },
    Workload {
        name: "dae_train",
        what: "autoencoder training step (input dropout 0.2, Nesterov)",
        on_batch: true,
        flop_per_image: DAE_TRAIN_STEP_FLOP,
    },
    Workload {
        name: "dae_infer",
        what: "autoencoder reconstruction, batch 1000",
        on_batch: false,
        flop_per_image: DAE_FORWARD_FLOP,
    },
    Workload {
        name: "pipeline_fgsm",
        what: "white-box input gradient through autoencoder + LeNet",
        on_batch: true,
        flop_per_image: PIPELINE_INPUT_GRADIENT_FLOP,
    },
];

/// The autoencoder's training step: forward, every weight gradient, every input gradient but
/// the first layer's (784 x 1000), as LeNet's [`TRAIN_STEP_FLOP`] counts.
pub const DAE_TRAIN_STEP_FLOP: f64 = 3.0 * DAE_FORWARD_FLOP - 2.0 * 784.0 * 1000.0;
/// The white-box gradient through autoencoder + LeNet: the autoencoder's forward pass (its
/// caches kept for the backward pass), LeNet's forward and input gradient, the autoencoder's
/// input gradient.
pub const PIPELINE_INPUT_GRADIENT_FLOP: f64 = 2.0 * DAE_FORWARD_FLOP + INPUT_GRADIENT_FLOP;

/// Sets up the six workloads of `advmnist bench` on random images and labels and hands each,
/// in the order of [`WORKLOADS`], to `measure` as a closure that runs one call. Keeping the
/// set-up in one place lets `--json` and `--report` time exactly the same work.
pub fn for_each_workload(batch: usize, mut measure: impl FnMut(&Workload, &mut dyn FnMut())) {
    let mut net = LeNet::<f32>::xavier(&mut stream(0, Purpose::Init, 0));
    let mut velocity = LeNet::zeros();
    let x: Array4<f32> =
        random_array::<f32, _>((batch, 1, IMAGE_SIDE, IMAGE_SIDE), 1).mapv(|v| 0.5 * (v + 1.0));
    let labels: Vec<u8> = (0..batch).map(|i| (i % 10) as u8).collect();
    let mut rngs: Vec<ChaCha8Rng> = (0..batch as u64)
        .map(|i| stream(0, Purpose::Dropout, i))
        .collect();
    let (solver, lr) = (SgdMomentum::LENET, InvPolicy::LENET);
    measure(&WORKLOADS[0], &mut || {
        let (_, grads) = net.loss_and_gradients(x.view(), &labels, &DropoutRates::NONE, &mut rngs);
        solver.step(&mut net, &grads, &mut velocity, lr.rate(0));
    });
    measure(&WORKLOADS[1], &mut || {
        std::hint::black_box(net.input_gradient(x.view(), &labels));
    });
    let xb: Array4<f32> = random_array::<f32, _>((INFERENCE_BATCH, 1, IMAGE_SIDE, IMAGE_SIDE), 2)
        .mapv(|v| 0.5 * (v + 1.0));
    measure(&WORKLOADS[2], &mut || {
        std::hint::black_box(net.predict(xb.view()));
    });
    dae_workloads(&net, &x, &labels, &xb, batch, &mut measure);
}

/// The autoencoder's three workloads: training step, reconstruction, pipeline input gradient.
fn dae_workloads(
    net: &LeNet<f32>,
    x: &Array4<f32>,
    labels: &[u8],
    xb: &Array4<f32>,
    batch: usize,
    measure: &mut impl FnMut(&Workload, &mut dyn FnMut()),
) {
    use crate::models::autoencoder::Autoencoder;
    use crate::models::pipeline::{AttackThrough, Pipeline, Stage};
    use crate::models::Classifier;
    use crate::train::dae::DaeConfig;
    use crate::train::Recipe;
    let cfg = DaeConfig::new(0);
    let mut dae = Autoencoder::<f32>::caffe_sparse_gaussian(&mut stream(0, Purpose::Init, 0));
    let mut velocity = Autoencoder::zeros();
    let mut rngs: Vec<ChaCha8Rng> = (0..batch as u64)
        .map(|i| stream(0, Purpose::Dropout, i))
        .collect();
    measure(&WORKLOADS[3], &mut || {
        // The step `advmnist dae train` takes (its recipe's, fused with the update).
        cfg.step(&mut dae, &mut velocity, x.view(), labels, &mut rngs, 0);
    });
    measure(&WORKLOADS[4], &mut || {
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
    measure(&WORKLOADS[5], &mut || {
        std::hint::black_box(pipeline.input_gradient(x.view(), labels));
    });
}
