//! The training loop, for any network: a seeded shuffle of the training set, a per-batch hook
//! that may transform the batch, the network's own loss and gradients, its solver's update,
//! atomic checkpoints, exact resumption, and a stop on divergence. What is specific to a network
//! (its initial weights, its loss, its solver and learning-rate policy, the settings a checkpoint
//! must agree on) is its [`Recipe`]: Caffe's LeNet recipe is [`TrainConfig`], the autoencoder's
//! is `models::autoencoder`'s `DaeConfig` (in `train::dae`).
//!
//! # Example
//!
//! LeNet trained for 40 iterations with Caffe's recipe through the generic loop [`run`],
//! watching its loss and its test error as it goes ([`train`] is the same loop with the test
//! error on the whole test set).
//!
//! ```
//! use advmnist::data::{default_data_dir, load_mnist};
//! use advmnist::models::{DropoutRates, LeNet};
//! use advmnist::train::{self, Event, NoHook, TrainConfig, TrainOptions, TrainState, TrainingSet};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let data = load_mnist(&default_data_dir())?;
//! // Caffe's recipe (momentum SGD, the `inv` policy, xavier weights) for 40 iterations of 32.
//! let config = TrainConfig {
//!     iterations: 40,
//!     batch: 32,
//!     ..TrainConfig::lenet(DropoutRates::NONE, 3)
//! };
//!
//! // The test error on 500 test images, every 20 iterations.
//! let check = data.test.subset(0..500);
//! let evaluate =
//!     |net: &LeNet<f32>| train::test_error_pct(net, check.images.view(), &check.labels);
//! let options = TrainOptions { eval_every: 20, ..TrainOptions::default() };
//!
//! let (mut losses, mut errors) = (Vec::new(), Vec::new());
//! let state = train::run(
//!     &config,
//!     TrainingSet::of(&data),
//!     TrainState::new(config.seed), // iteration 0: xavier weights from the seed, zero momentum
//!     &options,
//!     Some(&evaluate),
//!     &mut NoHook, // a hook may change each batch (adversarial training does)
//!     |event| match event {
//!         Event::Iteration { loss, .. } => losses.push(loss),
//!         Event::Evaluated { iteration, value } => errors.push((iteration, value)),
//!         Event::Checkpointed { .. } => {}
//!     },
//! )?;
//! println!("loss {:.3} -> {:.3}; test error (iteration, %) {errors:?}", losses[0], losses[39]);
//! assert_eq!((state.iteration, losses.len()), (40, 40));
//! let mean = |l: &[f32]| l.iter().sum::<f32>() / l.len() as f32;
//! assert!(mean(&losses[30..]) < mean(&losses[..10]) / 2.0);
//! assert!(errors[1].1 < errors[0].1 && errors[1].1 < 30.0);
//! # Ok(())
//! # }
//! ```
//!
//! # Randomness
//!
//! All randomness is drawn from ChaCha8 streams derived from `(seed, purpose, index)` (see
//! [`crate::rng::stream`]): the initial weights, the shuffle of each epoch, and each image's
//! random stream at each iteration (its dropout masks, the autoencoder's corruption, the random
//! start of an on-line adversarial example). So the whole random state of a run at iteration `t` is just
//! `(seed, t)` (plus the hook's own state, which checkpoints carry): a checkpoint that stores the
//! iteration restores the random state exactly, and no image's randomness depends on how the
//! batch is split across threads.

pub mod adversarial;
pub mod checkpoint;
pub mod dae;
pub mod driver;
pub mod online;

use crate::data::IMAGE_SIDE;
use crate::data::{Dataset, Mnist};
use crate::models::file::ModelMeta;
use crate::models::lenet::{error_pct, DropoutRates, LeNet};
use crate::models::params::{Network, Parameters};
use crate::optim::lr::InvPolicy;
use crate::optim::sgd::SgdMomentum;
use crate::rng::{stream, Purpose};
use ndarray::{Array4, ArrayView4, Axis};
use ndarray_rand::rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What decides the result of training one kind of network, beyond the data.
pub trait Recipe: Serialize + DeserializeOwned + Clone + std::fmt::Debug + Sync {
    type Net: Network;
    fn iterations(&self) -> u64;
    fn seed(&self) -> u64;
    fn batch(&self) -> usize;
    /// Iteration 0's weights.
    fn initial_net(&self) -> Self::Net;
    /// The batch-mean loss and its gradient with respect to every parameter, in training mode;
    /// `rngs[j]` is image `j`'s random stream (dropout, corruption, a random start).
    fn loss_and_gradients(
        &self,
        net: &Self::Net,
        x: ArrayView4<f32>,
        labels: &[u8],
        rngs: &mut [ChaCha8Rng],
    ) -> (f32, Self::Net);
    /// The solver's update after `t` earlier updates; returns the learning rate it used.
    fn update(
        &self,
        net: &mut Self::Net,
        grads: &Self::Net,
        velocity: &mut Self::Net,
        t: u64,
    ) -> f64;
    /// The settings a checkpoint must agree on to be resumed, as (flag or name, value): all but
    /// the iteration count, which may grow.
    fn settings(&self) -> Vec<(&'static str, String)>;
    /// One training step after `t` earlier ones: the batch-mean loss and, unless it is not finite
    /// (then nothing changes), the update; returns the loss and the learning rate used (`None`
    /// when nothing was updated). By default [`Self::loss_and_gradients`] then [`Self::update`]; a
    /// recipe may fuse the two where that gives the same bits.
    fn step(
        &self,
        net: &mut Self::Net,
        velocity: &mut Self::Net,
        x: ArrayView4<f32>,
        labels: &[u8],
        rngs: &mut [ChaCha8Rng],
        t: u64,
    ) -> (f32, Option<f64>) {
        let (loss, grads) = self.loss_and_gradients(net, x, labels, rngs);
        if !loss.is_finite() {
            return (loss, None);
        }
        (loss, Some(self.update(net, &grads, velocity, t)))
    }
}

/// Everything that decides the result of a LeNet training run: Caffe's recipe.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    pub iterations: u64,
    pub seed: u64,
    pub batch: usize,
    pub dropout: DropoutRates,
    pub solver: SgdMomentum,
    pub lr: InvPolicy,
}

impl TrainConfig {
    /// `lenet_solver.prototxt`'s recipe with the given dropout; the iterations default to the
    /// study's (Table 1): 10,000 without dropout, 35,000 for "Inp", 40,000 for "All".
    pub fn lenet(dropout: DropoutRates, seed: u64) -> Self {
        let iterations = match dropout {
            d if d == DropoutRates::INP => 35_000,
            d if d == DropoutRates::ALL => 40_000,
            _ => 10_000,
        };
        TrainConfig {
            iterations,
            seed,
            batch: 64,
            dropout,
            solver: SgdMomentum::LENET,
            lr: InvPolicy::LENET,
        }
    }
}

impl Recipe for TrainConfig {
    type Net = LeNet<f32>;
    fn iterations(&self) -> u64 {
        self.iterations
    }
    fn seed(&self) -> u64 {
        self.seed
    }
    fn batch(&self) -> usize {
        self.batch
    }
    /// Caffe's xavier weights from the seed's init stream.
    fn initial_net(&self) -> LeNet<f32> {
        LeNet::xavier(&mut stream(self.seed, Purpose::Init, 0))
    }
    fn loss_and_gradients(
        &self,
        net: &LeNet<f32>,
        x: ArrayView4<f32>,
        labels: &[u8],
        rngs: &mut [ChaCha8Rng],
    ) -> (f32, LeNet<f32>) {
        net.loss_and_gradients(x, labels, &self.dropout, rngs)
    }
    fn update(
        &self,
        net: &mut LeNet<f32>,
        grads: &LeNet<f32>,
        velocity: &mut LeNet<f32>,
        t: u64,
    ) -> f64 {
        let lr = self.lr.rate(t);
        self.solver.step(net, grads, velocity, lr);
        lr
    }
    fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("--seed", self.seed.to_string()),
            ("--batch", self.batch.to_string()),
            ("--dropout", self.dropout.describe()),
            (
                "solver settings",
                format!("{:?} {:?}", self.solver, self.lr),
            ),
        ]
    }
}

/// The state of a run between two iterations.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainState<N = LeNet<f32>> {
    pub net: N,
    pub velocity: N,    // the solver's momentum buffers, same shapes as the net
    pub iteration: u64, // updates made so far
    /// The batch hook's state at `iteration` (see [`BatchHook::state`]).
    pub hook_state: BTreeMap<String, String>,
}

impl TrainState<LeNet<f32>> {
    /// Iteration 0 of a LeNet run: Caffe's xavier weights from the seed's init stream, zero
    /// momentum.
    pub fn new(seed: u64) -> Self {
        TrainState::start(LeNet::xavier(&mut stream(seed, Purpose::Init, 0)))
    }
}

impl<N: Network> TrainState<N> {
    /// Iteration 0 from the given weights, zero momentum.
    pub fn start(net: N) -> Self {
        TrainState {
            net,
            velocity: N::zeros_like_network(),
            iteration: 0,
            hook_state: BTreeMap::new(),
        }
    }
}

/// A step between drawing a batch and computing its gradient, where the batch may be
/// transformed (e.g. replaced by adversarial examples of the current weights). Whatever state
/// the hook keeps must be given by [`BatchHook::state`], so that a checkpoint can carry it and a
/// resumed run continue exactly.
pub trait BatchHook<N> {
    /// Transforms iteration `iteration`'s batch (images and labels) in place.
    fn transform(&mut self, net: &N, iteration: u64, x: &mut Array4<f32>, labels: &mut [u8]);
    /// The hook's state, as string pairs, stored in checkpoints.
    fn state(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
    /// Restores the state of [`BatchHook::state`] when a run resumes.
    fn restore(&mut self, _state: &BTreeMap<String, String>) -> Result<(), String> {
        Ok(())
    }
}

/// The hook that leaves every batch as drawn.
pub struct NoHook;

impl<N> BatchHook<N> for NoHook {
    fn transform(&mut self, _: &N, _: u64, _: &mut Array4<f32>, _: &mut [u8]) {}
}

/// The training set a run draws its batches from, with the SHA-256 that identifies the data
/// (checkpoints and model files record it).
#[derive(Clone, Copy)]
pub struct TrainingSet<'a> {
    pub data: &'a Dataset,
    pub sha256: &'a str,
}

impl<'a> TrainingSet<'a> {
    /// MNIST's training split, identified by the whole data set's hash.
    pub fn of(mnist: &'a Mnist) -> Self {
        TrainingSet {
            data: &mnist.train,
            sha256: &mnist.sha256,
        }
    }
}

/// Progress reports from [`run`], for a progress bar or a log.
#[derive(Clone, Debug)]
pub enum Event {
    Iteration {
        iteration: u64,
        loss: f32,
        lr: f64,
    },
    /// The evaluator's figure (for LeNet: the test error in %).
    Evaluated {
        iteration: u64,
        value: f64,
    },
    Checkpointed {
        iteration: u64,
        path: PathBuf,
    },
}

/// Where and how often to checkpoint, and how often to evaluate.
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    pub checkpoint: Option<PathBuf>,
    pub checkpoint_every: u64,
    pub eval_every: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(
        "training diverged at iteration {iteration}: {what} is {value}. {}",
        match last_checkpoint { Some((p, i)) => format!("The last good checkpoint, {}, holds iteration {i}.", p.display()), None => "No checkpoint was written.".into() }
    )]
    Diverged {
        iteration: u64,
        /// What went non-finite: "the loss", or a weight tensor such as "a weight of fc1.weight".
        what: String,
        value: f32,
        /// The newest checkpoint on disk from this run (or the one it resumed from), if any.
        last_checkpoint: Option<(PathBuf, u64)>,
    },
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error("resuming the batch hook's state: {0}")]
    Hook(String),
}

impl TrainError {
    /// `Err(Diverged)` naming the first non-finite weight of `net` at `iteration`, if any:
    /// the check before a state is kept (checkpointed, or saved as a model).
    pub fn check_weights<N: Parameters<f32>>(
        net: &N,
        iteration: u64,
        last_checkpoint: Option<(PathBuf, u64)>,
    ) -> Result<(), TrainError> {
        match net.first_non_finite() {
            Some((name, _, value)) => Err(TrainError::Diverged {
                iteration,
                what: format!("a weight of {name}"),
                value: value as f32,
                last_checkpoint,
            }),
            None => Ok(()),
        }
    }
}

/// The training-set indices of the images of iteration `t`'s batch: positions `t*B .. t*B+B` of
/// the endless sequence of epoch permutations (a batch may straddle two epochs, as Caffe's data
/// layer wraps around).
pub struct BatchSampler {
    seed: u64,
    n: usize,
    epoch: u64,
    order: Vec<usize>,
}

impl BatchSampler {
    pub fn new(seed: u64, n: usize) -> Self {
        let mut s = BatchSampler {
            seed,
            n,
            epoch: u64::MAX,
            order: Vec::new(),
        };
        s.load_epoch(0);
        s
    }

    fn load_epoch(&mut self, epoch: u64) {
        if self.epoch != epoch {
            self.order = (0..self.n).collect();
            self.order
                .shuffle(&mut stream(self.seed, Purpose::Shuffle, epoch));
            self.epoch = epoch;
        }
    }

    pub fn batch(&mut self, iteration: u64, batch: usize) -> Vec<usize> {
        (0..batch as u64)
            .map(|j| {
                let pos = iteration * batch as u64 + j;
                self.load_epoch(pos / self.n as u64);
                self.order[(pos % self.n as u64) as usize]
            })
            .collect()
    }
}

/// The model-file metadata of a LeNet run's current state.
pub fn model_meta(cfg: &TrainConfig, data: &Mnist, iteration: u64) -> ModelMeta {
    ModelMeta {
        dropout: cfg.dropout,
        seed: cfg.seed,
        iterations: iteration,
        data_sha256: data.sha256.clone(),
        extra: Default::default(),
    }
}

/// Trains a LeNet on MNIST's training set, measuring the test error every
/// `options.eval_every` iterations: [`run`] with Caffe's recipe and no batch hook.
pub fn train(
    cfg: &TrainConfig,
    data: &Mnist,
    state: TrainState,
    options: &TrainOptions,
    observer: impl FnMut(Event),
) -> Result<TrainState, TrainError> {
    let evaluate =
        |net: &LeNet<f32>| test_error_pct(net, data.test.images.view(), &data.test.labels);
    run(
        cfg,
        TrainingSet::of(data),
        state,
        options,
        Some(&evaluate),
        &mut NoHook,
        observer,
    )
}

/// A test-error evaluation of a network, in percent, called during training.
pub type Evaluator<'a, N> = &'a (dyn Fn(&N) -> f64 + Sync);

/// Runs `recipe.iterations() - state.iteration` more iterations on `set`. `evaluate`, if given,
/// is called every `options.eval_every` iterations and at the end (never with `eval_every` 0);
/// `hook` may transform each batch before its gradient is taken.
pub fn run<R: Recipe>(
    recipe: &R,
    set: TrainingSet<'_>,
    mut state: TrainState<R::Net>,
    options: &TrainOptions,
    evaluate: Option<Evaluator<'_, R::Net>>,
    hook: &mut dyn BatchHook<R::Net>,
    mut observer: impl FnMut(Event),
) -> Result<TrainState<R::Net>, TrainError> {
    let batch = recipe.batch();
    let mut sampler = BatchSampler::new(recipe.seed(), set.data.len());
    hook.restore(&state.hook_state).map_err(TrainError::Hook)?;
    // A resumed run starts from its checkpoint, which stays the last good one until replaced.
    let mut last_checkpoint: Option<(PathBuf, u64)> = match &options.checkpoint {
        Some(path) if state.iteration > 0 && path.exists() => Some((path.clone(), state.iteration)),
        _ => None,
    };
    let mut x = Array4::<f32>::zeros((batch, 1, IMAGE_SIDE, IMAGE_SIDE));
    let mut labels = vec![0u8; batch];
    while state.iteration < recipe.iterations() {
        let t = state.iteration;
        for (j, &i) in sampler.batch(t, batch).iter().enumerate() {
            x.index_axis_mut(Axis(0), j)
                .assign(&set.data.images.index_axis(Axis(0), i));
            labels[j] = set.data.labels[i];
        }
        hook.transform(&state.net, t, &mut x, &mut labels);
        let mut rngs: Vec<ChaCha8Rng> = (0..batch as u64)
            .map(|j| stream(recipe.seed(), Purpose::Dropout, t * batch as u64 + j))
            .collect();
        let (loss, lr) = recipe.step(
            &mut state.net,
            &mut state.velocity,
            x.view(),
            &labels,
            &mut rngs,
            t,
        );
        let Some(lr) = lr else {
            return Err(TrainError::Diverged {
                iteration: t,
                what: "the loss".into(),
                value: loss,
                last_checkpoint,
            });
        };
        state.iteration += 1;
        observer(Event::Iteration {
            iteration: state.iteration,
            loss,
            lr,
        });
        let done = state.iteration == recipe.iterations();
        if let Some(evaluate) = evaluate {
            if options.eval_every > 0 && (state.iteration % options.eval_every == 0 || done) {
                observer(Event::Evaluated {
                    iteration: state.iteration,
                    value: evaluate(&state.net),
                });
            }
        }
        if let Some(path) = &options.checkpoint {
            if options.checkpoint_every > 0
                && state.iteration % options.checkpoint_every == 0
                && !done
            {
                // A state whose weights went non-finite is not worth keeping: the previous
                // checkpoint stays the last good one.
                TrainError::check_weights(&state.net, state.iteration, last_checkpoint.clone())?;
                state.hook_state = hook.state();
                checkpoint::save(path, recipe, set.sha256, &state)?;
                last_checkpoint = Some((path.clone(), state.iteration));
                observer(Event::Checkpointed {
                    iteration: state.iteration,
                    path: path.clone(),
                });
            }
        }
    }
    state.hook_state = hook.state();
    Ok(state)
}

/// Test error (%) of a model on a data set.
pub fn test_error_pct(net: &LeNet<f32>, images: ndarray::ArrayView4<f32>, labels: &[u8]) -> f64 {
    error_pct(&net.predict(images), labels)
}

/// The default checkpoint path for a model path: `m.safetensors` -> `m.safetensors.ckpt`.
pub fn default_checkpoint_path(model: &Path) -> PathBuf {
    let mut s = model.as_os_str().to_owned();
    s.push(".ckpt");
    PathBuf::from(s)
}

/// The state a run starts from: with `resume`, the checkpoint at `checkpoint` if there is one
/// (a missing one means the run died before its first checkpoint: start at iteration 0);
/// without it, iteration 0, refusing to silently overwrite an existing checkpoint.
pub fn starting_state<R: Recipe>(
    recipe: &R,
    data_sha256: &str,
    checkpoint: Option<&Path>,
    resume: bool,
) -> Result<(TrainState<R::Net>, Option<String>), checkpoint::CheckpointError> {
    match checkpoint {
        Some(path) if path.exists() => {
            if resume {
                let state = checkpoint::load(path, recipe, data_sha256)?;
                let note = format!(
                    "resuming from {} at iteration {}",
                    path.display(),
                    state.iteration
                );
                Ok((state, Some(note)))
            } else {
                Err(checkpoint::CheckpointError::EarlierRun { path: path.into() })
            }
        }
        Some(path) if resume => Ok((
            TrainState::start(recipe.initial_net()),
            Some(format!(
                "no checkpoint at {}: starting at iteration 0",
                path.display()
            )),
        )),
        _ => Ok((TrainState::start(recipe.initial_net()), None)),
    }
}
