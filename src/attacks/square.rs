//! The Square attack in the L-infinity ball: Andriushchenko, Croce, Flammarion and Hein,
//! "Square Attack: a query-efficient black-box adversarial attack via random search", ECCV
//! 2020, Algorithm 1 with the L-infinity square update (their section 3.1), as their reference
//! code runs it (`autoattack/square.py`, which torchattacks copies). It sees the model only
//! through its logits, never a gradient: a defence that merely hides its gradient does not
//! stop it (hence its place in an evaluation, Carlini et al. 2019).
//!
//! It minimises the margin `m(x) = z_y(x) - max_{j != y} z_j(x)` by random search:
//! ```text
//! x_best = P( x + eps s ),  s = +-1 per column (vertical stripes)
//! repeat: draw a square of side h_i at a random place and a sign c = +-1;
//!         x_new = P( x_best + 2 eps c on the square );   if m(x_new) < m(x_best): x_best = x_new
//! ```
//! `P` projects onto the eps-ball and [0, 1], so each pixel of the square lands at a corner of
//! the ball. The side shrinks with the iteration `i` of `n` queries as the reference's
//! rescaled schedule: `p = p_init / 2^j` after `10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000`
//! of `10000 i / n`, `h_i = round(sqrt(p 784))` (at least 1, at most 27), `p_init = 0.8`.
//!
//! Queries: the first evaluation (the stripes) and then one per iteration, at most `queries` in
//! all per image (the reference runs `n_queries` iterations after its first evaluation, one
//! more); an image stops once misclassified. For a model with random stages the margin is the
//! mean over its [`Classifier::eot_draws`] draws (expectation over transformation, each query
//! costing that many forward passes), and an image is fooled when its prediction (draw 0) is
//! wrong.
//!
//! Deviation: every image draws its squares and signs from its own stream, one square per image
//! per iteration, as the paper's Algorithm 1 describes; the reference code draws one square
//! and sign for the whole batch at each iteration. Per image the distribution is the same, and
//! here an image's result does not depend on the batch it runs in.

use super::{select_mut, stack, Outcome};
use crate::data::IMAGE_SIDE;
use crate::models::Classifier;
use crate::rng::{stream, Purpose};
use ndarray::{s, Array1, Array2, Array3, ArrayView2, ArrayView4, Axis, Zip};
use ndarray_rand::rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Queries per image: AutoAttack's standard version.
pub const DEFAULT_QUERIES: usize = 5000;
/// The initial share of pixels a square covers (the reference's `p_init` for L-infinity).
pub const P_INIT: f64 = 0.8;

/// Square's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SquareConfig {
    pub eps: f32,
    /// Evaluations of the model per image, the first one included.
    pub queries: usize,
    /// Image `i` draws from the stream `(seed, SquareSearch, first_stream + i)`.
    pub seed: u64,
    pub first_stream: u64,
}

impl SquareConfig {
    pub fn standard(eps: f32, seed: u64) -> Self {
        SquareConfig {
            eps,
            queries: DEFAULT_QUERIES,
            seed,
            first_stream: 0,
        }
    }
}

/// The share of pixels a square covers at iteration `i` of `queries` (the reference's
/// `p_selection` with its rescaled schedule).
pub fn share(i: usize, queries: usize) -> f64 {
    let it = (i as f64 / queries.max(1) as f64 * 10000.0) as usize;
    let halvings = [10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000]
        .iter()
        .filter(|&&at| it > at)
        .count();
    P_INIT / (1u32 << halvings) as f64
}

/// The side of the square at iteration `i` of `queries`, on a 28 x 28 image.
pub fn side(i: usize, queries: usize) -> usize {
    let pixels = (IMAGE_SIDE * IMAGE_SIDE) as f64;
    // Python's `round`, which the reference uses, rounds halves to even.
    let h = ((share(i, queries) * pixels).sqrt().round_ties_even() as usize).max(1);
    h.min(IMAGE_SIDE - 1)
}

/// `z_y - max_{j != y} z_j` of every row.
pub fn margins(logits: ArrayView2<f32>, labels: &[u8]) -> Array1<f32> {
    Array1::from_shape_fn(labels.len(), |n| {
        let y = labels[n] as usize;
        let z = logits.row(n);
        let other = z
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != y)
            .fold(f32::NEG_INFINITY, |m, (_, &v)| m.max(v));
        z[y] - other
    })
}

/// One image's state.
struct Search {
    clean: Array3<f32>, // (1,28,28)
    best: Array3<f32>,  // the lowest-margin point so far
    best_margin: f32,
    candidate: Array3<f32>, // the point this iteration tries
    rng: ChaCha8Rng,
    queries: usize,
}

/// `+1` or `-1`, as the reference's `random_choice` (`sign(2u - 1)`, `u` uniform in [0, 1)).
fn random_sign(rng: &mut ChaCha8Rng) -> f32 {
    if rng.random::<f32>() < 0.5 {
        -1.0
    } else {
        1.0
    }
}

/// Square on every image of `x`: images the model already misclassifies are fooled at their
/// clean selves, the others searched as the module comment says.
pub fn square(
    model: &dyn Classifier,
    x: ArrayView4<f32>,
    labels: &[u8],
    cfg: &SquareConfig,
) -> Outcome {
    assert_eq!(labels.len(), x.dim().0, "one label per image");
    let eps = cfg.eps;
    let mut outcome = Outcome::clean(x, labels, &model.logits(x));
    let left: Vec<usize> = (0..labels.len()).filter(|&i| !outcome.fooled[i]).collect();
    if left.is_empty() || cfg.queries == 0 {
        return outcome;
    }
    let mut searches: Vec<Search> = left
        .par_iter()
        .map(|&i| {
            let clean = x.index_axis(Axis(0), i).to_owned();
            let mut rng = stream(cfg.seed, Purpose::SquareSearch, cfg.first_stream + i as u64);
            let stripes: Vec<f32> = (0..IMAGE_SIDE).map(|_| random_sign(&mut rng)).collect();
            let start = Array3::from_shape_fn(clean.raw_dim(), |(c, r, col)| {
                (clean[[c, r, col]] + eps * stripes[col]).clamp(0.0, 1.0)
            });
            Search {
                best: start.clone(),
                candidate: start,
                best_margin: f32::INFINITY,
                clean,
                rng,
                queries: 0,
            }
        })
        .collect();
    let mut active: Vec<usize> = (0..left.len()).collect();
    let mut i = 0usize;
    loop {
        // Query every active image's candidate; keep it if it lowers the margin or fools.
        let batch = stack(active.iter().map(|&j| &searches[j].candidate));
        let wanted: Vec<u8> = active.iter().map(|&j| labels[left[j]]).collect();
        let (margin, predicted) = expected_margin(model, batch.view(), &wanted);
        let mut still = Vec::with_capacity(active.len());
        for (b, &j) in active.iter().enumerate() {
            let search = &mut searches[j];
            search.queries += 1;
            let fooled = predicted[b] != wanted[b];
            if fooled || margin[b] < search.best_margin {
                search.best_margin = margin[b];
                std::mem::swap(&mut search.best, &mut search.candidate);
            }
            if fooled {
                let at = left[j];
                outcome.fooled[at] = true;
                outcome
                    .adversarial
                    .slice_mut(s![at, .., .., ..])
                    .assign(&search.best);
            } else if search.queries < cfg.queries {
                still.push(j);
            }
        }
        active = still;
        if active.is_empty() {
            break;
        }
        let h = side(i, cfg.queries);
        let mut moving = select_mut(&mut searches, &active);
        moving.par_iter_mut().for_each(|search| {
            let span = (IMAGE_SIDE - h) as f32;
            let top = (span * search.rng.random::<f32>()) as usize;
            let left_edge = (span * search.rng.random::<f32>()) as usize;
            let c = random_sign(&mut search.rng);
            search.candidate.assign(&search.best);
            let mut window =
                search
                    .candidate
                    .slice_mut(s![.., top..top + h, left_edge..left_edge + h]);
            let clean = search
                .clean
                .slice(s![.., top..top + h, left_edge..left_edge + h]);
            Zip::from(&mut window).and(&clean).for_each(|v, &x0| {
                *v = (*v + 2.0 * eps * c)
                    .clamp(x0 - eps, x0 + eps)
                    .clamp(0.0, 1.0);
            });
        });
        i += 1;
    }
    outcome
}

/// Each image's margin, the mean over the model's draws, and its prediction (draw 0).
fn expected_margin(
    model: &dyn Classifier,
    x: ArrayView4<f32>,
    labels: &[u8],
) -> (Array1<f32>, Vec<u8>) {
    let draws = model.eot_draws().max(1);
    let first: Array2<f32> = model.logits_of_draw(x, 0);
    let predicted = crate::models::lenet::argmax_rows(first.view());
    let mut total = margins(first.view(), labels);
    for draw in 1..draws {
        total += &margins(model.logits_of_draw(x, draw).view(), labels);
    }
    if draws > 1 {
        total /= draws as f32;
    }
    (total, predicted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attacks::linear::linear_setting;
    use crate::models::LogitLoss;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn the_square_shrinks_on_the_reference_schedule() {
        // p_init 0.8 on 784 pixels: side round(sqrt(627.2)) = 25, then 18, 13, 9, 6, 4, 3, 2, 2, 1.
        let sides: Vec<usize> = [0, 11, 51, 201, 501, 1001, 2001, 4001, 6001, 8001]
            .iter()
            .map(|&i| side(i, 10000))
            .collect();
        assert_eq!(sides, vec![25, 18, 13, 9, 6, 4, 3, 2, 2, 1]);
        // Rescaled: at 1,000 queries the 10th iteration is the 100th of 10,000.
        assert_eq!(side(10, 1000), 13);
    }

    /// A model that is never fooled: it predicts class 0 whatever it sees, and counts the
    /// images it is asked about; `.1` draws of randomness (EOT) if more than 1.
    struct Stubborn(AtomicUsize, u64);

    impl Classifier for Stubborn {
        fn eot_draws(&self) -> u64 {
            self.1
        }
        fn logits(&self, x: ArrayView4<f32>) -> Array2<f32> {
            let n = x.dim().0;
            self.0.fetch_add(n, Ordering::Relaxed);
            let mut z = Array2::zeros((n, 10));
            z.column_mut(0).fill(1.0);
            z
        }
        fn input_gradient(
            &self,
            _: ArrayView4<f32>,
            _: &[u8],
        ) -> (Array1<f32>, ndarray::Array4<f32>) {
            unreachable!("Square never asks for a gradient")
        }
        fn logits_vjp(&self, _: ArrayView4<f32>, _: ArrayView2<f32>) -> ndarray::Array4<f32> {
            unreachable!("Square never asks for a gradient")
        }
        fn loss_gradient(
            &self,
            _: ArrayView4<f32>,
            _: &dyn LogitLoss,
        ) -> crate::models::LossGradient {
            unreachable!("Square never asks for a gradient")
        }
    }

    /// Each image gets at most `queries` evaluations: exactly that many when it is never
    /// fooled (plus the one clean evaluation that finds the images to attack).
    #[test]
    fn square_keeps_to_its_query_budget() {
        // With 3 draws of randomness, each query is the mean margin over 3 forward passes.
        for draws in [1u64, 3] {
            let model = Stubborn(AtomicUsize::new(0), draws);
            let x = ndarray::Array4::from_elem((7, 1, IMAGE_SIDE, IMAGE_SIDE), 0.5f32);
            let labels = [0u8; 7];
            let cfg = SquareConfig {
                queries: 300,
                ..SquareConfig::standard(0.3, 1)
            };
            let out = square(&model, x.view(), &labels, &cfg);
            assert!(out.fooled.iter().all(|&f| !f));
            assert_eq!(
                model.0.load(Ordering::Relaxed),
                7 * 300 * draws as usize + 7,
                "{draws} draws"
            );
        }
    }

    /// On a linear model Square fools no robust image, stays in the ball, and finds most of
    /// those that are not robust with a few hundred queries.
    #[test]
    fn square_finds_the_worst_case_of_a_linear_model() {
        let (model, x, labels) = linear_setting();
        let eps = 0.05;
        let out = square(
            &model,
            x.view(),
            &labels,
            &SquareConfig {
                queries: 500,
                ..SquareConfig::standard(eps, 2)
            },
        );
        crate::attacks::validate(x.view(), out.adversarial.view(), Some(eps)).unwrap();
        let predicted = model.predict(out.adversarial.view());
        let mut broken = 0;
        for i in 0..labels.len() {
            assert_eq!(out.fooled[i], predicted[i] != labels[i], "image {i}");
            let exact = !model.robust(x.index_axis(Axis(0), i), labels[i] as usize, eps);
            assert!(!out.fooled[i] || exact, "fooled robust image {i}");
            broken += exact as usize;
        }
        let found = out.fooled.iter().filter(|&&f| f).count();
        assert!(found * 100 >= broken * 90, "{found} of {broken}");
    }
}
