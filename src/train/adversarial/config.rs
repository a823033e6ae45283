//! What decides a staged adversarial training run's result ([`AdvConfig`]), the recipe of each
//! stage ([`StageRecipe`]: one continuous SGD run, see the parent module), and how a run is
//! driven ([`AdvOptions`]).

use super::AdvError;
use crate::data::mnist::PIXELS;
use crate::models::lenet::{DropoutRates, LeNet};
use crate::train::{Recipe, TrainConfig};
use ndarray::ArrayView4;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Everything that decides the result of a staged adversarial training run, beyond the data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdvConfig {
    /// Seed of every random draw (initial weights, shuffling).
    pub seed: u64,
    /// Iterations of the natural model (snapshot 0), Caffe's recipe.
    pub base_iterations: u64,
    /// Adversarial stages after the natural model; the run writes `stages + 1` snapshots.
    pub stages: usize,
    /// Iterations per stage.
    pub stage_iterations: u64,
    /// The gradient-sign step (Eq. 1's eps) of the first step.
    pub eps: f32,
    /// The scale of the second step's gradient (Eq. 3's c).
    pub c: f32,
    /// Images per batch (Caffe's LeNet: 64).
    pub batch: usize,
    /// The declared ablation's variations of the procedure (docs/adversarial-training.md, "The
    /// declared ablation"); the study's procedure has none. Left out of the files when off, so
    /// that a run of the study's procedure writes the bytes it always has.
    #[serde(default, skip_serializing_if = "Variant::is_study")]
    pub variant: Variant,
}

/// A variation of the staged procedure, for the declared ablation. Each one changes one thing;
/// [`Variant::default`] is the study's procedure as this crate reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    /// Each stage restarts Caffe's `inv` learning rate at iteration 0 (0.01) with zero momentum:
    /// what Caffe does when a stage is trained with `caffe train --weights` from the previous
    /// snapshot (fine-tuning), rather than continued from its `.solverstate`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub restart: bool,
    /// Each stage trains on the natural images and the newest adversarial set only (the earlier
    /// sets dropped), so the newest set is half the pool instead of `1 / (k + 1)` of it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub newest_only: bool,
    /// Every this many iterations of a stage (counted from its start), the stage's newest set
    /// is made again by the current weights, so the examples are never more than this many
    /// iterations old; 0: never (the study's). At the stage's end the slot holds again the set
    /// its snapshot made, so every later stage sees the sets the snapshots made.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub refresh_every: u64,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Variant {
    /// Whether this is the study's procedure (no variation).
    pub fn is_study(&self) -> bool {
        *self == Variant::default()
    }

    /// The variant's name in the ablation (`study`, `restart`, `newest`, `fresh`, or a `+` of
    /// several).
    pub fn name(&self) -> String {
        let mut parts = Vec::new();
        if self.restart {
            parts.push("restart".to_string());
        }
        if self.newest_only {
            parts.push("newest".to_string());
        }
        if self.refresh_every > 0 {
            parts.push(format!("fresh{}", self.refresh_every));
        }
        if parts.is_empty() {
            "study".into()
        } else {
            parts.join("+")
        }
    }

    /// The schedule in words, for the snapshots' metadata.
    pub fn schedule(&self) -> String {
        if self.restart {
            "each stage restarts Caffe's inv learning rate at its iteration 0 with zero momentum (fine-tuning from the previous snapshot)".into()
        } else {
            "one SGD run: Caffe's inv learning rate at the global iteration, momentum carried across stages".into()
        }
    }
}

impl AdvConfig {
    /// eps 0.25: Goodfellow, Shlens and Szegedy's eps for adversarial training on MNIST (the
    /// study's reference \[3\]). On the 10,000-iteration model it moves a training image by 0.138
    /// per pixel on average after clipping, between the two distortions of the study's Table 2
    /// (0.1 and 0.2) (docs/adversarial-training.md).
    pub const DEFAULT_EPS: f32 = 0.25;
    /// c 0.2 = eps / 1.29, where 1.29 is the median over training images of the largest
    /// |grad_X L| at the gradient-sign example X_R, measured on the 10,000-iteration model
    /// (`examples/advtrain_gradients.rs`): the gradient step then moves the median image's most
    /// sensitive pixel by about eps, as far as the sign step moves every pixel, and adds 0.02
    /// per pixel on average (docs/adversarial-training.md).
    pub const DEFAULT_C: f32 = 0.2;

    /// The global iteration at which stage `k` ends (stage 0: the natural model).
    pub fn stage_end(&self, k: usize) -> u64 {
        self.base_iterations + k as u64 * self.stage_iterations
    }

    /// The global iteration at which stage `k` starts.
    pub fn stage_start(&self, k: usize) -> u64 {
        if k == 0 {
            0
        } else {
            self.stage_end(k - 1)
        }
    }

    /// Caffe's LeNet recipe (no dropout) running to the end of stage `k`.
    pub fn lenet(&self, k: usize) -> TrainConfig {
        TrainConfig {
            iterations: self.stage_end(k),
            batch: self.batch,
            ..TrainConfig::lenet(DropoutRates::NONE, self.seed)
        }
    }

    /// Bytes of the pool stage `k` trains on, in f32: `(k + 1) * n` images of 784 pixels for a
    /// training set of `n` images (stage 5 of MNIST: 6 x 60,000 images, 1.13 GB).
    pub fn pool_bytes(&self, k: usize, n: usize) -> usize {
        self.pool_images(k, n) * PIXELS * std::mem::size_of::<f32>()
    }

    /// Images of the pool stage `k` trains on, for a training set of `n` images: the natural
    /// set and one set per earlier snapshot (with `newest_only`, the newest one only).
    pub fn pool_images(&self, k: usize, n: usize) -> usize {
        let sets = if self.variant.newest_only {
            k.min(1)
        } else {
            k
        };
        (sets + 1) * n
    }

    /// Checks the settings, naming the command line's flag at fault.
    pub fn validate(&self) -> Result<(), AdvError> {
        let bad = |flag: &'static str, reason: String| Err(AdvError::Setting { flag, reason });
        if self.base_iterations == 0 {
            return bad("--base-iters", "must be at least 1".into());
        }
        if self.stage_iterations == 0 {
            return bad("--stage-iters", "must be at least 1".into());
        }
        if self.batch == 0 {
            return bad("--batch", "must be at least 1".into());
        }
        if !(self.eps.is_finite() && self.eps > 0.0 && self.eps <= 1.0) {
            return bad("--eps", format!("must be in (0, 1], got {}", self.eps));
        }
        if self.variant.refresh_every > 0 && self.variant.newest_only {
            return bad(
                "--refresh-every",
                "cannot be combined with --newest-only: the ablation varies one thing at a time"
                    .into(),
            );
        }
        if !(self.c.is_finite() && self.c >= 0.0) {
            return bad(
                "--c",
                format!("must be finite and at least 0, got {}", self.c),
            );
        }
        Ok(())
    }
}

impl Default for AdvConfig {
    /// The study's setting (section 4.1) with this crate's eps and c: seed 1, 10,000 natural
    /// iterations, 5 stages of 5,000, batch 64.
    fn default() -> Self {
        AdvConfig {
            seed: 1,
            base_iterations: 10_000,
            stages: 5,
            stage_iterations: 5_000,
            eps: Self::DEFAULT_EPS,
            c: Self::DEFAULT_C,
            batch: 64,
            variant: Variant::default(),
        }
    }
}

/// The recipe of one stage: Caffe's LeNet recipe to the stage's last global iteration, with
/// the stage's identity, so that a checkpoint says which stage it belongs to and cannot be
/// resumed into another run's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageRecipe {
    pub stage: usize,
    pub lenet: TrainConfig,
    pub base_iterations: u64,
    pub stage_iterations: u64,
    pub eps: f32,
    pub c: f32,
    #[serde(default, skip_serializing_if = "Variant::is_study")]
    pub variant: Variant,
}

impl StageRecipe {
    /// Stage `k` of `cfg`, running to global iteration `until` (the stage's end, or earlier
    /// when the run is asked to stop inside it).
    pub fn new(cfg: &AdvConfig, k: usize, until: u64) -> Self {
        StageRecipe {
            stage: k,
            lenet: TrainConfig {
                iterations: until,
                ..cfg.lenet(k)
            },
            base_iterations: cfg.base_iterations,
            stage_iterations: cfg.stage_iterations,
            eps: cfg.eps,
            c: cfg.c,
            variant: cfg.variant.clone(),
        }
    }

    /// The iteration count Caffe's `inv` rate is taken at for global iteration `t`: `t` itself
    /// (one run across stages), or, with [`Variant::restart`], the iterations since the stage
    /// began.
    pub fn schedule_iteration(&self, t: u64) -> u64 {
        if self.variant.restart && self.stage > 0 {
            t - (self.base_iterations + (self.stage as u64 - 1) * self.stage_iterations)
        } else {
            t
        }
    }
}

impl Recipe for StageRecipe {
    type Net = LeNet<f32>;
    fn iterations(&self) -> u64 {
        self.lenet.iterations
    }
    fn seed(&self) -> u64 {
        self.lenet.seed
    }
    fn batch(&self) -> usize {
        self.lenet.batch
    }
    fn initial_net(&self) -> LeNet<f32> {
        self.lenet.initial_net()
    }
    fn loss_and_gradients(
        &self,
        net: &LeNet<f32>,
        x: ArrayView4<f32>,
        labels: &[u8],
        rngs: &mut [ChaCha8Rng],
    ) -> (f32, LeNet<f32>) {
        self.lenet.loss_and_gradients(net, x, labels, rngs)
    }
    /// Caffe's update with the `inv` rate at the global iteration `t`: the schedule runs on
    /// across stages (or restarts with each, [`StageRecipe::schedule_iteration`]).
    fn update(
        &self,
        net: &mut LeNet<f32>,
        grads: &LeNet<f32>,
        velocity: &mut LeNet<f32>,
        t: u64,
    ) -> f64 {
        self.lenet
            .update(net, grads, velocity, self.schedule_iteration(t))
    }
    fn settings(&self) -> Vec<(&'static str, String)> {
        let mut s = self.lenet.settings();
        s.extend([
            ("the stage", self.stage.to_string()),
            ("--base-iters", self.base_iterations.to_string()),
            ("--stage-iters", self.stage_iterations.to_string()),
            ("--eps", self.eps.to_string()),
            ("--c", self.c.to_string()),
            ("the variant", self.variant.name()),
        ]);
        s
    }
}

/// How a run is driven: resumption, checkpoints, evaluation, and an optional early stop.
#[derive(Clone, Debug)]
pub struct AdvOptions {
    /// Continue the run found in the folder (without it, a folder holding a run is refused).
    pub resume: bool,
    /// Checkpoint every N global iterations (0: only at the end of each stage).
    pub checkpoint_every: u64,
    /// Measure the test error every N global iterations (0: only at each stage's end).
    pub eval_every: u64,
    /// Stop once this global iteration is reached, with a checkpoint (and, at a stage's end,
    /// its snapshot), as a run killed right after its checkpoint; `--resume` continues it.
    pub stop_after: Option<u64>,
}

impl Default for AdvOptions {
    fn default() -> Self {
        AdvOptions {
            resume: false,
            checkpoint_every: 1000,
            eval_every: 0,
            stop_after: None,
        }
    }
}
