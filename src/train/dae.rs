//! The denoising autoencoder's training recipe (the study's section 4.1): Caffe's
//! `mnist_autoencoder_solver_nesterov.prototxt` (Nesterov, momentum 0.95, weight decay 5e-4 on
//! weights only, base_lr 0.01 divided by 10 every `stepsize` iterations) with the corruption the
//! study adds: dropout on the input layer. The target is the clean image.
//!
//! Defaults that differ from Caffe's example, and why (docs/defences.md has the measurements):
//! batch 64 instead of 100, as LeNet's; and fewer iterations than its 65,000, so that the default
//! training stays under 15 minutes on 2 cores.

use super::Recipe;
use crate::models::autoencoder::Autoencoder;
use crate::optim::lr::StepPolicy;
use crate::optim::nesterov::Nesterov;
use crate::rng::{stream, Purpose};
use ndarray::ArrayView4;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DaeConfig {
    pub iterations: u64,
    pub seed: u64,
    pub batch: usize,
    /// Input dropout rate: the corruption.
    pub corruption: f64,
    pub solver: Nesterov,
    pub lr: StepPolicy,
}

impl DaeConfig {
    /// Default corruption: 0.2, the rate the study uses for dropout on LeNet's input (Table 1)
    /// and the PyTorch peer's (`scripts/peers/torch_dae_bench.py`).
    pub const DEFAULT_CORRUPTION: f64 = 0.2;
    pub const DEFAULT_ITERATIONS: u64 = 20_000;

    /// The model-file metadata of this run's state after `iteration` iterations: the corruption
    /// as input dropout, and the whole recipe as JSON under `recipe`.
    pub fn model_meta(&self, data_sha256: &str, iteration: u64) -> crate::models::file::ModelMeta {
        crate::models::file::ModelMeta {
            dropout: crate::models::DropoutRates {
                input: self.corruption,
                ..crate::models::DropoutRates::NONE
            },
            seed: self.seed,
            iterations: iteration,
            data_sha256: data_sha256.to_string(),
            extra: [(
                "recipe".to_string(),
                serde_json::to_string(self).expect("plain struct"),
            )]
            .into(),
        }
    }

    pub fn new(seed: u64) -> Self {
        DaeConfig {
            iterations: Self::DEFAULT_ITERATIONS,
            seed,
            batch: 64,
            corruption: Self::DEFAULT_CORRUPTION,
            solver: Nesterov::CAFFE_AUTOENCODER,
            lr: StepPolicy {
                base_lr: 0.01,
                gamma: 0.1,
                stepsize: 10_000,
            },
        }
    }
}

impl Recipe for DaeConfig {
    type Net = Autoencoder<f32>;
    fn iterations(&self) -> u64 {
        self.iterations
    }
    fn seed(&self) -> u64 {
        self.seed
    }
    fn batch(&self) -> usize {
        self.batch
    }
    fn initial_net(&self) -> Autoencoder<f32> {
        Autoencoder::caffe_sparse_gaussian(&mut stream(self.seed, Purpose::Init, 0))
    }
    fn loss_and_gradients(
        &self,
        net: &Autoencoder<f32>,
        x: ArrayView4<f32>,
        _labels: &[u8],
        rngs: &mut [ChaCha8Rng],
    ) -> (f32, Autoencoder<f32>) {
        net.loss_and_gradients(x, self.corruption, rngs)
    }
    fn update(
        &self,
        net: &mut Autoencoder<f32>,
        grads: &Autoencoder<f32>,
        velocity: &mut Autoencoder<f32>,
        t: u64,
    ) -> f64 {
        let lr = self.lr.rate(t);
        self.solver.step(net, grads, velocity, lr);
        lr
    }
    /// Fused (`Autoencoder::fused_nesterov_step`): the same bits as the default, without the
    /// whole gradient in memory.
    fn step(
        &self,
        net: &mut Autoencoder<f32>,
        velocity: &mut Autoencoder<f32>,
        x: ArrayView4<f32>,
        _labels: &[u8],
        rngs: &mut [ChaCha8Rng],
        t: u64,
    ) -> (f32, Option<f64>) {
        let lr = self.lr.rate(t);
        let loss = net.fused_nesterov_step(x, self.corruption, rngs, &self.solver, velocity, lr);
        (loss, loss.is_finite().then_some(lr))
    }
    fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("--seed", self.seed.to_string()),
            ("--batch", self.batch.to_string()),
            ("--dropout", self.corruption.to_string()),
            (
                "solver settings",
                format!("{:?} {:?}", self.solver, self.lr),
            ),
        ]
    }
}
