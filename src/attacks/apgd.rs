//! Auto-PGD (APGD) in the L-infinity ball: Croce and Hein, "Reliable evaluation of adversarial
//! robustness with an ensemble of diverse parameter-free attacks", ICML 2020, Algorithm 1, as
//! their reference code runs it (`autoattack/autopgd_base.py`, which torchattacks copies).
//! Two losses: cross-entropy (APGD-CE) and the targeted DLR loss (APGD-T, `layers::dlr`).
//!
//! One run from a start `x^(0)`, projection `P` onto the eps-ball around the clean image and
//! [0, 1], step size `eta` starting at `2 eps`, momentum `alpha = 0.75`:
//! ```text
//! z^(k+1) = P( x^(k) + eta^(k) sign(grad L(x^(k))) )
//! x^(k+1) = P( x^(k) + alpha (z^(k+1) - x^(k)) + (1 - alpha)(x^(k) - x^(k-1)) )   (alpha = 1 at k = 0)
//! ```
//! The best point (highest loss) is kept. At checkpoints after 22, 19, 16, 13, 10, 7 and then
//! every 6 iterations (for 100 iterations: `0.22 n`, then 3 fewer each time, at least `0.06 n`,
//! the reference code's `n_iter_2`, `size_decr`, `n_iter_min`), an image halves its step and
//! restarts from its best point when
//! 1. the loss rose in at most `rho = 0.75` of the steps since the last checkpoint (an
//!    oscillating or stalled search), or
//! 2. its step was not halved at the last checkpoint and its best loss has not improved since.
//!
//! Reference semantics kept: the random start `x + eps t / max|t|`, `t` uniform in [-1, 1) per
//! pixel; condition 1 at the first checkpoint compares the first step's loss with a history
//! entry the reference code has not yet written, which holds 0; an image counts as fooled as
//! soon as any iterate (the start included) is misclassified, targeted or not.
//!
//! Deviations, none of which changes which images are fooled: an image leaves the batch once
//! fooled (the reference keeps computing its gradient and overwrites its adversarial example
//! with later misclassified iterates; here the first one is kept); every image draws its random
//! start from its own stream, so its result does not depend on the batch it runs in.
//!
//! Restarts and targets as AutoAttack's "standard" version: APGD-CE one run from a random
//! start; APGD-T one run for each of the 9 classes ranked 2nd to 10th by the clean logits,
//! each on the images still classified right.

use super::{select_mut, stack, Outcome};
use crate::layers::{dlr, softmax_xent};
use crate::models::gradient::sign;
use crate::models::{Classifier, LogitLoss};
use crate::rng::{stream, Purpose};
use ndarray::{s, Array1, Array2, Array3, ArrayView2, ArrayView4, Axis, Zip};
use ndarray_rand::rand::Rng;
use rayon::prelude::*;

/// Iterations per run: AutoAttack's standard version.
pub const DEFAULT_ITERATIONS: usize = 100;
/// Runs from a random start per loss (APGD-CE) or per target class (APGD-T): the standard
/// version's.
pub const DEFAULT_RESTARTS: usize = 1;
/// Target classes of APGD-T: the standard version's 9, every class but the predicted one.
pub const DEFAULT_TARGETS: usize = 9;
/// The momentum `alpha` of the update (Croce and Hein, section 3.2).
pub const MOMENTUM: f32 = 0.75;
/// The share of rising steps below which a checkpoint halves the step (`rho`, section 3.2).
pub const RHO: f32 = 0.75;

/// Which loss APGD ascends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApgdLoss {
    /// Softmax cross-entropy with the true label (APGD-CE).
    CrossEntropy,
    /// The targeted DLR loss, one run per target: the classes ranked 2nd to `targets + 1`-th
    /// by the clean logits (APGD-T).
    TargetedDlr { targets: usize },
}

/// APGD's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ApgdConfig {
    pub eps: f32,
    pub loss: ApgdLoss,
    pub iterations: usize,
    pub restarts: usize,
    /// Drives the random starts: image `i`'s start of run `r` comes from the stream
    /// `(seed, ApgdStart, (first_stream + i) * 2^20 + r)`.
    pub seed: u64,
    pub first_stream: u64,
}

impl ApgdConfig {
    /// The standard version's settings for `loss` at `eps`.
    pub fn standard(eps: f32, loss: ApgdLoss, seed: u64) -> Self {
        ApgdConfig {
            eps,
            loss,
            iterations: DEFAULT_ITERATIONS,
            restarts: DEFAULT_RESTARTS,
            seed,
            first_stream: 0,
        }
    }
}

/// Runs per image at most: restarts times targets, for the random start's stream index.
const MAX_RUNS: u64 = 1 << 20;

/// The checkpoint schedule's three lengths for `iterations` (the reference code's
/// `n_iter_2`, `n_iter_min`, `size_decr`).
fn schedule(iterations: usize) -> (usize, usize, usize) {
    let part = |share: f64| ((share * iterations as f64) as usize).max(1);
    (part(0.22), part(0.06), part(0.03))
}

/// The iterations after which a checkpoint falls, for `iterations` in all.
pub fn checkpoints(iterations: usize) -> Vec<usize> {
    let (first, least, decrease) = schedule(iterations);
    let mut at = Vec::new();
    let (mut k, mut next) = (first, first);
    while next <= iterations {
        at.push(next);
        k = k.saturating_sub(decrease).max(least);
        next += k;
    }
    at
}

/// APGD on every image of `x` (labels `labels`): images the model already misclassifies are
/// fooled at their clean selves; the others are attacked as the module comment says.
pub fn apgd(
    model: &dyn Classifier,
    x: ArrayView4<f32>,
    labels: &[u8],
    cfg: &ApgdConfig,
) -> Outcome {
    assert_eq!(labels.len(), x.dim().0, "one label per image");
    assert!(cfg.restarts as u64 * (targets_of(cfg.loss) as u64) < MAX_RUNS);
    let clean_logits = model.logits(x);
    let mut outcome = Outcome::clean(x, labels, &clean_logits);
    let runs: Vec<Option<usize>> = match cfg.loss {
        ApgdLoss::CrossEntropy => vec![None; cfg.restarts],
        ApgdLoss::TargetedDlr { targets } => (1..=targets.min(crate::data::CLASSES - 1))
            .flat_map(|rank| std::iter::repeat_n(Some(rank), cfg.restarts))
            .collect(),
    };
    for (run, rank) in runs.into_iter().enumerate() {
        let left: Vec<usize> = (0..labels.len()).filter(|&i| !outcome.fooled[i]).collect();
        if left.is_empty() {
            break;
        }
        let targets: Option<Vec<u8>> = rank.map(|rank| {
            left.iter()
                .map(|&i| dlr::ranked(clean_logits.row(i))[rank] as u8)
                .collect()
        });
        let found = run_once(model, x, labels, &left, targets.as_deref(), cfg, run as u64);
        for (j, adversarial) in found {
            let i = left[j];
            outcome.fooled[i] = true;
            outcome
                .adversarial
                .slice_mut(s![i, .., .., ..])
                .assign(&adversarial);
        }
    }
    outcome
}

/// Runs per target of a loss.
fn targets_of(loss: ApgdLoss) -> usize {
    match loss {
        ApgdLoss::CrossEntropy => 1,
        ApgdLoss::TargetedDlr { targets } => targets.max(1),
    }
}

/// One image's state in a run.
struct Track {
    clean: Array3<f32>,     // (1,28,28)
    x: Array3<f32>,         // x^(k)
    previous: Array3<f32>,  // x^(k-1)
    grad: Array3<f32>,      // dL/dx at x^(k)
    best: Array3<f32>,      // the highest-loss point so far
    best_grad: Array3<f32>, // dL/dx there
    best_loss: f32,
    step: f32,
    losses: Vec<f32>, // the loss after each iteration (the reference's `loss_steps`)
    halved_last_check: bool,
    best_loss_last_check: f32,
}

/// Projection onto the eps-ball around the clean pixel `x0` and onto [0, 1].
fn project(v: f32, x0: f32, eps: f32) -> f32 {
    v.clamp(x0 - eps, x0 + eps).clamp(0.0, 1.0)
}

impl Track {
    /// One update: the gradient-sign step, then the momentum combination (alpha = 1 first).
    fn advance(&mut self, eps: f32, first: bool) {
        let alpha = if first { 1.0 } else { MOMENTUM };
        let mut next = self.x.clone();
        Zip::from(&mut next)
            .and(&self.x)
            .and(&self.previous)
            .and(&self.grad)
            .and(&self.clean)
            .for_each(|n, &x, &prev, &g, &x0| {
                let z = project(x + self.step * sign(g), x0, eps);
                *n = project(x + alpha * (z - x) + (1.0 - alpha) * (x - prev), x0, eps);
            });
        self.previous = std::mem::replace(&mut self.x, next);
    }

    /// Condition 1 at a checkpoint after iteration `i`, `k` iterations since the last: the loss
    /// rose in at most `rho k` of them. (An entry before the first iteration reads 0, as the
    /// reference code's unwritten history row does.)
    fn oscillates(&self, i: usize, k: usize) -> bool {
        let at = |j: isize| if j < 0 { 0.0 } else { self.losses[j as usize] };
        let rises = (0..k as isize)
            .filter(|&c| at(i as isize - c) > at(i as isize - c - 1))
            .count();
        rises as f32 <= k as f32 * RHO
    }
}

/// The loss of one run on the images `left` (positions into the batch).
struct RunLoss {
    labels: Vec<u8>,
    targets: Option<Vec<u8>>,
}

impl LogitLoss for RunLoss {
    fn loss_and_gradient(
        &self,
        first: usize,
        logits: ArrayView2<f32>,
    ) -> (Array1<f32>, Array2<f32>) {
        let rows = first..first + logits.nrows();
        let labels = &self.labels[rows.clone()];
        match &self.targets {
            None => {
                let (loss, cache) = softmax_xent::forward(logits, labels);
                (loss, softmax_xent::backward(&cache, labels, 1.0))
            }
            Some(targets) => dlr::targeted(logits, labels, &targets[rows]),
        }
    }
}

/// One run on the images `left` of `x` (with `targets`, one per left image, for APGD-T):
/// the position in `left` and the first misclassified point of every image it fooled.
fn run_once(
    model: &dyn Classifier,
    x: ArrayView4<f32>,
    labels: &[u8],
    left: &[usize],
    targets: Option<&[u8]>,
    cfg: &ApgdConfig,
    run: u64,
) -> Vec<(usize, Array3<f32>)> {
    let eps = cfg.eps;
    let mut tracks: Vec<Track> = left
        .par_iter()
        .map(|&i| {
            let clean = x.index_axis(Axis(0), i).to_owned();
            let index = (cfg.first_stream + i as u64) * MAX_RUNS + run;
            let mut rng = stream(cfg.seed, Purpose::ApgdStart, index);
            let t = clean.mapv(|_| 2.0 * rng.random::<f32>() - 1.0);
            let peak = t.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let start = Zip::from(&clean)
                .and(&t)
                .map_collect(|&x0, &t| (x0 + eps * t / peak).clamp(0.0, 1.0));
            Track {
                x: start.clone(),
                previous: start.clone(),
                grad: Array3::zeros(clean.raw_dim()),
                best: start,
                best_grad: Array3::zeros(clean.raw_dim()),
                best_loss: f32::NEG_INFINITY,
                step: 2.0 * eps,
                losses: Vec::with_capacity(cfg.iterations),
                halved_last_check: true,
                best_loss_last_check: f32::NEG_INFINITY,
                clean,
            }
        })
        .collect();
    let mut active: Vec<usize> = (0..left.len()).collect();
    let mut found = Vec::new();

    // The loss and gradient at every active image's current point; images whose point is
    // misclassified leave, fooled. `record` says whether the point is an iterate of the run
    // (its loss enters the history) or the start.
    let mut evaluate = |tracks: &mut [Track], active: &mut Vec<usize>, record: bool| {
        let batch = stack(active.iter().map(|&j| &tracks[j].x));
        let loss = RunLoss {
            labels: active.iter().map(|&j| labels[left[j]]).collect(),
            targets: targets.map(|t| active.iter().map(|&j| t[j]).collect()),
        };
        let result = model.loss_gradient(batch.view(), &loss);
        let predicted = crate::models::lenet::argmax_rows(result.logits.view());
        let mut still = Vec::with_capacity(active.len());
        for (b, &j) in active.iter().enumerate() {
            let track = &mut tracks[j];
            if predicted[b] != loss.labels[b] {
                found.push((j, track.x.clone()));
                continue;
            }
            let l = result.loss[b];
            let g = result.grad.index_axis(Axis(0), b);
            if record {
                track.losses.push(l);
            }
            if l > track.best_loss {
                track.best_loss = l;
                track.best.assign(&track.x);
                track.best_grad.assign(&g);
            }
            track.grad.assign(&g);
            still.push(j);
        }
        *active = still;
    };

    evaluate(&mut tracks, &mut active, false);
    for t in tracks.iter_mut() {
        t.best_loss_last_check = t.best_loss;
    }
    let (first_check, least, decrease) = schedule(cfg.iterations);
    let (mut k, mut since) = (first_check, 0usize);
    for i in 0..cfg.iterations {
        if active.is_empty() {
            break;
        }
        let mut moving: Vec<&mut Track> = select_mut(&mut tracks, &active);
        moving.par_iter_mut().for_each(|t| t.advance(eps, i == 0));
        evaluate(&mut tracks, &mut active, true);
        since += 1;
        if since == k {
            for &j in &active {
                let t = &mut tracks[j];
                let stalled = !t.halved_last_check && t.best_loss_last_check >= t.best_loss;
                let halve = t.oscillates(i, k) || stalled;
                t.halved_last_check = halve;
                t.best_loss_last_check = t.best_loss;
                if halve {
                    t.step /= 2.0;
                    t.x.assign(&t.best);
                    t.grad.assign(&t.best_grad);
                }
            }
            k = k.saturating_sub(decrease).max(least);
            since = 0;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attacks::linear::linear_setting;
    use crate::data::IMAGE_SIDE;

    #[test]
    fn the_checkpoints_are_the_reference_schedule() {
        // 0.22 n, then 3 fewer each time, at least 0.06 n: 22, 19, 16, 13, 10, 7, 6, 6.
        assert_eq!(checkpoints(100), vec![22, 41, 57, 70, 80, 87, 93, 99]);
        assert_eq!(checkpoints(10), vec![2, 3, 4, 5, 6, 7, 8, 9, 10]);
    }

    /// On a linear model the exact worst case is known: APGD-T fools every image that is not
    /// robust and none that is, and every point it returns lies in the ball and in [0, 1].
    #[test]
    fn apgd_finds_the_exact_worst_case_of_a_linear_model() {
        let (model, x, labels) = linear_setting();
        for eps in [0.003f32, 0.008] {
            let exact: Vec<bool> = (0..labels.len())
                .map(|i| !model.robust(x.index_axis(Axis(0), i), labels[i] as usize, eps))
                .collect();
            let broken = exact.iter().filter(|&&b| b).count();
            assert!(
                broken > 20 && broken < 180,
                "eps {eps}: {broken} of 200 not robust"
            );
            for loss in [ApgdLoss::TargetedDlr { targets: 9 }, ApgdLoss::CrossEntropy] {
                let out = apgd(
                    &model,
                    x.view(),
                    &labels,
                    &ApgdConfig::standard(eps, loss, 3),
                );
                crate::attacks::validate(x.view(), out.adversarial.view(), Some(eps)).unwrap();
                let predicted = model.predict(out.adversarial.view());
                for i in 0..labels.len() {
                    assert_eq!(out.fooled[i], predicted[i] != labels[i], "image {i}");
                    assert!(
                        !out.fooled[i] || exact[i],
                        "{loss:?} fooled robust image {i}"
                    );
                }
                let found = out.fooled.iter().filter(|&&f| f).count();
                match loss {
                    // Targeted runs reach every class's corner: the exact count.
                    ApgdLoss::TargetedDlr { .. } => assert_eq!(found, broken, "eps {eps}"),
                    // Cross-entropy's gradient `sum_j p_j w_j - w_y` heads for a mixture of
                    // the likely classes, not for the one whose corner is closest, and misses
                    // some (121 of 136 at eps 0.008): the reason APGD-T runs beside it.
                    ApgdLoss::CrossEntropy => {
                        assert!(found * 100 >= broken * 85, "{found} of {broken}")
                    }
                }
            }
        }
    }

    /// The loss and gradient APGD-CE asks for are, bit for bit, the model's own cross-entropy
    /// input gradient: for a LeNet, and through a pipeline that injects noise (the mean over
    /// its EOT draws); for a committee they agree to rounding (its own gradient sums the
    /// members' terms in another order).
    #[test]
    fn the_cross_entropy_loss_gradient_is_each_models_input_gradient() {
        use crate::defences::lowpass::LowPassFilter;
        use crate::models::pipeline::{AttackThrough, Pipeline, Stage};
        let net = crate::models::LeNet::<f32>::xavier(&mut stream(4, Purpose::Init, 0));
        let other = crate::models::LeNet::<f32>::xavier(&mut stream(5, Purpose::Init, 0));
        let x =
            crate::testutil::random_array::<f32, ndarray::Ix4>((6, 1, IMAGE_SIDE, IMAGE_SIDE), 5)
                .mapv(|v| v.abs());
        let labels = vec![0u8, 1, 2, 3, 4, 5];
        let loss = RunLoss {
            labels: labels.clone(),
            targets: None,
        };
        let mut pipeline = Pipeline::new(
            vec![Stage::LowPass(LowPassFilter::study(5, 0.1, 3).unwrap())],
            &net,
            AttackThrough::Pipeline,
        );
        pipeline.eot_samples = 3;
        assert_eq!(pipeline.eot_draws(), 3);
        for (name, model) in [("lenet", &net as &dyn Classifier), ("pipeline", &pipeline)] {
            let (l, g) = model.input_gradient(x.view(), &labels);
            let lg = model.loss_gradient(x.view(), &loss);
            assert_eq!(lg.loss, l, "{name}");
            assert_eq!(lg.grad, g, "{name}");
            assert_eq!(lg.logits, model.logits(x.view()), "{name}");
        }
        let committee = crate::models::Committee::new(vec![&net, &other]);
        let (l, g) = committee.input_gradient(x.view(), &labels);
        let lg = committee.loss_gradient(x.view(), &loss);
        let scale = g.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(lg
            .grad
            .iter()
            .zip(&g)
            .all(|(a, b)| (a - b).abs() <= 1e-5 * scale));
        assert!(lg
            .loss
            .iter()
            .zip(&l)
            .all(|(a, b)| (a - b).abs() <= 1e-5 * b.abs().max(1.0)));
        // The committee's own path computes its members' logits once: the bits of the
        // trait's default (logits, then the loss's gradient through `logits_vjp`).
        let logits = committee.logits(x.view());
        let (losses, d_logits) = loss.loss_and_gradient(0, logits.view());
        let grad = committee.logits_vjp(x.view(), d_logits.view());
        assert_eq!((&lg.logits, &lg.loss, &lg.grad), (&logits, &losses, &grad));
    }

    /// The same images and seed give the same outcome on 1 thread and on 3.
    #[test]
    fn the_outcome_does_not_depend_on_the_thread_count() {
        let net = crate::models::LeNet::<f32>::xavier(&mut stream(4, Purpose::Init, 0));
        let x =
            crate::testutil::random_array::<f32, ndarray::Ix4>((12, 1, IMAGE_SIDE, IMAGE_SIDE), 5)
                .mapv(|v| v.abs());
        let labels = net.predict(x.view());
        let cfg = ApgdConfig {
            iterations: 12,
            ..ApgdConfig::standard(0.015, ApgdLoss::TargetedDlr { targets: 3 }, 8)
        };
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| apgd(&net, x.view(), &labels, &cfg))
        };
        let one = run(1);
        assert!(
            one.fooled.iter().any(|&f| f) && !one.fooled.iter().all(|&f| f),
            "{:?}",
            one.fooled
        );
        assert_eq!(one, run(3));
    }
}
