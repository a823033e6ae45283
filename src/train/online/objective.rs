//! The on-line objective (the parent module has its sources and choices): what decides a run's
//! result ([`OnlineConfig`]), the recipe the generic training loop runs ([`OnlineRecipe`]), and
//! the adversarial examples of each batch ([`OnlineRecipe::adversarial_examples`]).

use super::OnlineError;
use crate::attacks::{fgsm, pgd};
use crate::models::lenet::{DropoutRates, LeNet};
use crate::train::{Recipe, TrainConfig};
use ndarray::{concatenate, Array4, ArrayView4, Axis};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The objective in words, as the record and the model file state it.
pub const OBJECTIVE: &str = "alpha * J(x, y) + (1 - alpha) * J(x_adv, y), J the batch-mean softmax cross-entropy, x_adv made from the current weights at every iteration";

/// How the adversarial examples are made, in words, without and with the random start.
pub const EXAMPLES: &str = "x_adv = clip(x + eps * sign(grad_x J(x, y)), 0, 1), sign(0) = 0 (attacks::fgsm, evaluation mode)";
/// The random start's examples, in words.
pub const EXAMPLES_RANDOM_START: &str = "x_adv = clip(clamp(x0 + 1.25 eps * sign(grad J(x0, y)), x - eps, x + eps), 0, 1), x0 = clip(x + U(-eps, eps), 0, 1) (Wong, Rice and Kolter 2020; evaluation mode)";

/// The step of the random start's sign step, in units of eps: Wong, Rice and Kolter ("Fast is
/// better than free", ICLR 2020, section 4: alpha = 10/255 at eps = 8/255; their released
/// `train_fgsm.py` likewise) take 1.25 eps, a little more than the radius, so that from a
/// start anywhere in the ball most pixels still end, after the projection, on its boundary.
pub const RANDOM_START_STEP: f32 = 1.25;

/// Everything that decides the result of an on-line adversarial training run, beyond the data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OnlineConfig {
    /// Seed of every random draw: the initial weights (those of `advmnist train --seed S`),
    /// the batches, the random starts.
    pub seed: u64,
    /// Iterations (batches), Caffe's LeNet recipe.
    pub iterations: u64,
    /// Natural images per batch (Caffe's LeNet: 64); each iteration also trains on their
    /// adversarial versions.
    pub batch: usize,
    /// The weight of the natural images' loss.
    pub alpha: f32,
    /// The L-infinity radius of the adversarial examples.
    pub eps: f32,
    /// Start each example at a uniform point of the eps-ball (Wong, Rice and Kolter 2020).
    pub random_start: bool,
    /// Evaluate every N iterations, and at the end (0: only at the end).
    pub eval_every: u64,
    /// The evaluation's test images: the first N of the test set.
    pub eval_images: usize,
}

impl OnlineConfig {
    /// Goodfellow, Shlens and Szegedy (2015, section 6): "In all of our experiments, we used
    /// alpha = 0.5".
    pub const DEFAULT_ALPHA: f32 = 0.5;
    /// Their MNIST radius (section 6: eps = .25).
    pub const DEFAULT_EPS: f32 = 0.25;
    /// Test images of each evaluation: enough to see the curves move by a percent (a 95%
    /// binomial interval at 50% error is +-3 points), cheap next to 1,000 iterations.
    pub const DEFAULT_EVAL_IMAGES: usize = 1000;
    /// Iterations between two evaluations.
    pub const DEFAULT_EVAL_EVERY: u64 = 1000;

    /// The defaults: `advmnist train`'s recipe (10,000 iterations, batch 64, seed 1) with
    /// alpha 0.5, eps 0.25, no random start.
    pub fn new(seed: u64) -> Self {
        let lenet = TrainConfig::lenet(DropoutRates::NONE, seed);
        OnlineConfig {
            seed,
            iterations: lenet.iterations,
            batch: lenet.batch,
            alpha: Self::DEFAULT_ALPHA,
            eps: Self::DEFAULT_EPS,
            random_start: false,
            eval_every: Self::DEFAULT_EVAL_EVERY,
            eval_images: Self::DEFAULT_EVAL_IMAGES,
        }
    }

    /// Caffe's LeNet recipe, as `advmnist train --seed S --iters N` runs it (no dropout).
    pub fn lenet(&self) -> TrainConfig {
        TrainConfig {
            iterations: self.iterations,
            batch: self.batch,
            ..TrainConfig::lenet(DropoutRates::NONE, self.seed)
        }
    }

    /// The recipe of the generic loop, running to iteration `until`.
    pub fn recipe(&self, until: u64) -> OnlineRecipe {
        OnlineRecipe {
            lenet: TrainConfig {
                iterations: until,
                ..self.lenet()
            },
            alpha: self.alpha,
            eps: self.eps,
            random_start: self.random_start,
        }
    }

    /// Checks the settings, naming the command line's flag at fault.
    pub fn validate(&self) -> Result<(), OnlineError> {
        let bad = |flag: &'static str, reason: String| Err(OnlineError::Setting { flag, reason });
        if self.iterations == 0 {
            return bad("--iterations", "must be at least 1".into());
        }
        if self.batch == 0 {
            return bad("--batch", "must be at least 1".into());
        }
        if !(self.alpha.is_finite() && (0.0..=1.0).contains(&self.alpha)) {
            return bad("--alpha", format!("must be in [0, 1], got {}", self.alpha));
        }
        if !(self.eps.is_finite() && self.eps > 0.0 && self.eps <= 1.0) {
            return bad("--eps", format!("must be in (0, 1], got {}", self.eps));
        }
        if self.eval_images == 0 {
            return bad("evaluation images", "must be at least 1".into());
        }
        Ok(())
    }
}

/// Caffe's LeNet recipe with the on-line objective: the generic loop's [`Recipe`]. Its
/// weights at iteration 0, its batches, its learning rate and its update are
/// [`TrainConfig`]'s; only the loss differs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OnlineRecipe {
    pub lenet: TrainConfig,
    pub alpha: f32,
    pub eps: f32,
    pub random_start: bool,
}

impl OnlineRecipe {
    /// The adversarial examples of a batch `x (B,1,28,28)` under the current weights `net`,
    /// with the gradient taken in evaluation mode (the model as it predicts: the parent
    /// module says why). Without a random start: exactly `attacks::fgsm(net, x, labels, eps)`.
    /// With it: image `j` starts at `clip(x_j + U(-eps, eps), 0, 1)`, drawn from `rngs[j]` (its
    /// stream of the iteration, `(seed, t B + j)`: the same whatever the thread count), then one
    /// sign step of [`RANDOM_START_STEP`] eps, projected into the eps-ball around `x_j` and into
    /// [0, 1] (`attacks::pgd`'s start and step).
    pub fn adversarial_examples(
        &self,
        net: &LeNet<f32>,
        x: ArrayView4<f32>,
        labels: &[u8],
        rngs: &mut [ChaCha8Rng],
    ) -> Array4<f32> {
        if !self.random_start {
            return fgsm::fgsm(net, x, labels, self.eps);
        }
        assert_eq!(rngs.len(), x.dim().0, "one random stream per image");
        let mut start = x.to_owned();
        for (image, rng) in start.axis_iter_mut(Axis(0)).zip(rngs.iter_mut()) {
            pgd::uniform_start(image, self.eps, rng);
        }
        pgd::steps_from(
            net,
            x,
            labels,
            start,
            self.eps,
            1,
            RANDOM_START_STEP * self.eps,
        )
    }

    /// The weights of the batch `[x; x_adv]` of `2B` images: `alpha / B` for each natural
    /// image, `(1 - alpha) / B` for each adversarial one, so that `sum_n w_n l_n` is
    /// `alpha J(x) + (1 - alpha) J(x_adv)` with `J` the batch mean. With alpha 0.5 every weight
    /// is `1 / 2B`: the mean loss of the batch of `2B`.
    pub fn weights(&self, b: usize) -> Vec<f32> {
        // alpha / B as Caffe's mean computes 1 / B: in f32, so that alpha = 1 gives 1 / B to
        // the bit (`LeNet::loss_and_gradients`' scale).
        let natural = self.alpha / b as f32;
        let adversarial = (1.0 - self.alpha) / b as f32;
        let mut w = vec![natural; b];
        w.extend(std::iter::repeat_n(adversarial, b));
        w
    }
}

impl Recipe for OnlineRecipe {
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
    /// `advmnist train --seed S`'s xavier weights.
    fn initial_net(&self) -> LeNet<f32> {
        self.lenet.initial_net()
    }
    /// The on-line objective: the batch's adversarial examples from the current weights
    /// ([`OnlineRecipe::adversarial_examples`]), then the weighted loss of `[x; x_adv]`
    /// ([`OnlineRecipe::weights`]) and its gradient. No dropout: the recipe is `advmnist
    /// train`'s default, which has none, so training mode and evaluation mode coincide.
    fn loss_and_gradients(
        &self,
        net: &LeNet<f32>,
        x: ArrayView4<f32>,
        labels: &[u8],
        rngs: &mut [ChaCha8Rng],
    ) -> (f32, LeNet<f32>) {
        let b = x.dim().0;
        let adversarial = self.adversarial_examples(net, x, labels, rngs);
        let both = concatenate(Axis(0), &[x, adversarial.view()]).expect("images of one shape");
        let both_labels = [labels, labels].concat();
        net.weighted_loss_and_gradients(both.view(), &both_labels, &self.weights(b), None)
    }
    /// Caffe's update with the `inv` rate, as `advmnist train`.
    fn update(
        &self,
        net: &mut LeNet<f32>,
        grads: &LeNet<f32>,
        velocity: &mut LeNet<f32>,
        t: u64,
    ) -> f64 {
        self.lenet.update(net, grads, velocity, t)
    }
    fn settings(&self) -> Vec<(&'static str, String)> {
        let mut s = self.lenet.settings();
        s.extend([
            ("--alpha", self.alpha.to_string()),
            ("--eps", self.eps.to_string()),
            ("--random-start", self.random_start.to_string()),
        ]);
        s
    }
}
