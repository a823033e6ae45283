//! The training loop: Caffe's LeNet recipe (`lenet_solver.prototxt`) on a seeded shuffle of the
//! training set, with atomic checkpoints, exact resumption, and a stop on divergence.
//!
//! All randomness is drawn from ChaCha8 streams derived from `(seed, purpose, index)` (see
//! [`crate::rng::stream`]): the initial weights, the shuffle of each epoch, and each image's
//! dropout masks at each iteration. So the whole random state of a run at iteration `t` is just `(seed, t)`: a
//! checkpoint that stores the iteration restores the random state exactly, and no image's
//! randomness depends on how the batch is split across threads.

pub mod checkpoint;

use crate::data::Mnist;
use crate::models::file::ModelMeta;
use crate::models::lenet::{error_pct, DropoutRates, LeNet};
use crate::optim::lr::InvPolicy;
use crate::optim::sgd::SgdMomentum;
use crate::rng::{stream, Purpose};
use ndarray::{Array4, Axis};
use ndarray_rand::rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

/// Everything that decides the result of a training run.
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

/// The state of a run between two iterations.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainState {
    pub net: LeNet<f32>,
    pub velocity: LeNet<f32>, // SGD momentum buffers, same shapes as the net
    pub iteration: u64,       // updates made so far
}

impl TrainState {
    /// Iteration 0: Caffe's xavier weights from the seed's init stream, zero momentum.
    pub fn new(seed: u64) -> Self {
        TrainState {
            net: LeNet::xavier(&mut stream(seed, Purpose::Init, 0)),
            velocity: LeNet::zeros(),
            iteration: 0,
        }
    }
}

/// Progress reports from [`train`], for a progress bar or a log.
#[derive(Clone, Debug)]
pub enum Event {
    Iteration { iteration: u64, loss: f32, lr: f64 },
    Evaluated { iteration: u64, test_error_pct: f64 },
    Checkpointed { iteration: u64, path: PathBuf },
}

/// Where and how often to checkpoint, and how often to measure the test error.
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

/// The model-file metadata for a run's current state.
pub fn model_meta(cfg: &TrainConfig, data: &Mnist, iteration: u64) -> ModelMeta {
    ModelMeta {
        dropout: cfg.dropout,
        seed: cfg.seed,
        iterations: iteration,
        data_sha256: data.sha256.clone(),
        extra: Default::default(),
    }
}

/// Runs `cfg.iterations - state.iteration` more iterations.
pub fn train(
    cfg: &TrainConfig,
    data: &Mnist,
    mut state: TrainState,
    options: &TrainOptions,
    mut observer: impl FnMut(Event),
) -> Result<TrainState, TrainError> {
    let mut sampler = BatchSampler::new(cfg.seed, data.train.len());
    // A resumed run starts from its checkpoint, which stays the last good one until replaced.
    let mut last_checkpoint: Option<(PathBuf, u64)> = match &options.checkpoint {
        Some(path) if state.iteration > 0 && path.exists() => Some((path.clone(), state.iteration)),
        _ => None,
    };
    let mut x = Array4::<f32>::zeros((cfg.batch, 1, 28, 28));
    let mut labels = vec![0u8; cfg.batch];
    while state.iteration < cfg.iterations {
        let t = state.iteration;
        for (j, &i) in sampler.batch(t, cfg.batch).iter().enumerate() {
            x.index_axis_mut(Axis(0), j)
                .assign(&data.train.images.index_axis(Axis(0), i));
            labels[j] = data.train.labels[i];
        }
        let mut rngs: Vec<ChaCha8Rng> = (0..cfg.batch as u64)
            .map(|j| stream(cfg.seed, Purpose::Dropout, t * cfg.batch as u64 + j))
            .collect();
        let (loss, grads) =
            state
                .net
                .loss_and_gradients(x.view(), &labels, &cfg.dropout, &mut rngs);
        if !loss.is_finite() {
            return Err(TrainError::Diverged {
                iteration: t,
                what: "the loss".into(),
                value: loss,
                last_checkpoint,
            });
        }
        let lr = cfg.lr.rate(t);
        cfg.solver
            .step(&mut state.net, &grads, &mut state.velocity, lr);
        state.iteration += 1;
        observer(Event::Iteration {
            iteration: state.iteration,
            loss,
            lr,
        });
        let done = state.iteration == cfg.iterations;
        // Every `eval_every` iterations and at the end; never with `eval_every == 0`.
        if options.eval_every > 0 && (state.iteration % options.eval_every == 0 || done) {
            let test_error_pct =
                test_error_pct(&state.net, data.test.images.view(), &data.test.labels);
            observer(Event::Evaluated {
                iteration: state.iteration,
                test_error_pct,
            });
        }
        if let Some(path) = &options.checkpoint {
            if options.checkpoint_every > 0
                && state.iteration % options.checkpoint_every == 0
                && !done
            {
                // A state whose weights went non-finite is not worth keeping: the previous
                // checkpoint stays the last good one.
                if let Some((name, _, value)) = state.net.first_non_finite() {
                    return Err(TrainError::Diverged {
                        iteration: state.iteration,
                        what: format!("a weight of {name}"),
                        value: value as f32,
                        last_checkpoint,
                    });
                }
                checkpoint::save(path, cfg, &data.sha256, &state)?;
                last_checkpoint = Some((path.clone(), state.iteration));
                observer(Event::Checkpointed {
                    iteration: state.iteration,
                    path: path.clone(),
                });
            }
        }
    }
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
pub fn starting_state(
    cfg: &TrainConfig,
    data: &Mnist,
    checkpoint: Option<&Path>,
    resume: bool,
) -> Result<(TrainState, Option<String>), checkpoint::CheckpointError> {
    match checkpoint {
        Some(path) if path.exists() => {
            if resume {
                let state = checkpoint::load(path, cfg, &data.sha256)?;
                let note = format!(
                    "resuming from {} at iteration {}",
                    path.display(),
                    state.iteration
                );
                Ok((state, Some(note)))
            } else {
                Err(checkpoint::CheckpointError::NotACheckpoint {
                    path: path.into(),
                    reason: "it exists from an earlier run; pass --resume to continue that run, or delete it to start over".into(),
                })
            }
        }
        Some(path) if resume => Ok((
            TrainState::new(cfg.seed),
            Some(format!(
                "no checkpoint at {}: starting at iteration 0",
                path.display()
            )),
        )),
        _ => Ok((TrainState::new(cfg.seed), None)),
    }
}
