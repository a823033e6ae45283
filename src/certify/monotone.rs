//! Bounds through the monotone layers: ReLU, 2x2 max-pooling and the logistic (sigmoid).
//!
//! A non-decreasing function `f` maps the box `[l, u]` into `[f(l), f(u)]` (Gowal et al. 2018,
//! section 3, eq. 6): applied to both ends, elementwise. ReLU and max-pooling are exact in f32
//! (a comparison selects one of the inputs), so their boxes need no widening. The logistic is
//! not: the f32 kernel (`kernels::logistic`, Cephes' `expf` then `1 / (1 + e)`) differs from
//! the real function by up to [`SIGMOID_KERNEL_ERROR`], and the f64 function that computes the
//! bound by a few f64 ulps ([`SIGMOID_F64_RELATIVE_ERROR`]); the box is widened by both. The
//! f32 kernel need not be monotone itself: for an input `x` in `[l, u]`,
//! `|kernel(x) - s(x)| <= delta` and `s(l) <= s(x) <= s(u)` give
//! `kernel(x) in [s(l) - delta, s(u) + delta]`.

use super::interval::Interval;
use ndarray::{Array4, Dimension, Ix4, Zip};

/// A bound on `|kernels::logistic(x) - 1/(1+exp(-x))|` over every f32 `x`, the exact value in
/// real arithmetic. Measured against the f64 logistic (`sigmoid_kernel_error_is_below_its_bound`:
/// every f32 in [2, 4) and in [-4, -2), a grid of step 2^-10 over [-100, 100], and a million
/// random f32 bit patterns; largest error 8.9e-8, at x = 8.67, at the time of writing), then
/// stated with a margin of more than 10x: a grid measures, it does not prove.
pub const SIGMOID_KERNEL_ERROR: f64 = 1e-6;

/// The relative error allowed for the f64 logistic `1 / (1 + exp(-x))` that computes the
/// bounds: the C library's `exp` is within 1 ulp on the platforms Rust supports (glibc documents
/// it), and the addition and division add one rounding each, so about 4 * 2^-53; 2^-40 is ample.
pub const SIGMOID_F64_RELATIVE_ERROR: f64 = 9.094_947_017_729_282e-13; // 2^-40

/// ReLU: `[max(l, 0), max(u, 0)]`. Exact (`layers::relu`: `v > 0 ? v : 0`).
pub fn relu_bound<D: Dimension>(x: &Interval<D>) -> Interval<D> {
    Interval::new(x.lower.mapv(|v| v.max(0.0)), x.upper.mapv(|v| v.max(0.0)))
}

/// 2x2 max-pooling with stride 2 (`layers::maxpool`, `x (N,C,H,W)` with even `H`, `W` ->
/// `(N,C,H/2,W/2)`): each window's largest lower end and largest upper end. The max of values
/// each in its own box lies between the max of the lower ends and the max of the upper ends.
/// Exact in f32 (the max selects one input), so no widening.
pub fn maxpool_bound(x: &Interval<Ix4>) -> Interval<Ix4> {
    Interval::new(pool_max(&x.lower), pool_max(&x.upper))
}

/// The 2x2/2 window maxima of `x (N,C,H,W)`, images in parallel (independent).
fn pool_max(x: &Array4<f64>) -> Array4<f64> {
    let (n, c, h, w) = x.dim();
    assert!(
        h % 2 == 0 && w % 2 == 0,
        "2x2 max-pooling needs even sides, got {h}x{w}"
    );
    let mut y = Array4::zeros((n, c, h / 2, w / 2));
    Zip::from(y.outer_iter_mut())
        .and(x.outer_iter())
        .par_for_each(|mut yi, xi| {
            for ((ch, i, j), v) in yi.indexed_iter_mut() {
                let (r, s) = (2 * i, 2 * j);
                *v = xi[[ch, r, s]]
                    .max(xi[[ch, r, s + 1]])
                    .max(xi[[ch, r + 1, s]])
                    .max(xi[[ch, r + 1, s + 1]]);
            }
        });
    y
}

/// The logistic in f64, the reference for the bound.
pub fn logistic_f64(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The logistic (`layers::sigmoid` on f32, i.e. `kernels::logistic`):
/// `[s(l)(1 - rho) - delta, s(u)(1 + rho) + delta]` with `rho` = [`SIGMOID_F64_RELATIVE_ERROR`]
/// and `delta` = [`SIGMOID_KERNEL_ERROR`], clipped to [0, 1]: the f32 kernel's output always lies
/// there (`e = exp(-x) >= 0`, so `fl(1 + e) >= 1` and `fl(1 / fl(1 + e))` is in [0, 1], rounding
/// being monotone). Elements in parallel: each is independent.
pub fn sigmoid_bound<D: Dimension>(x: &Interval<D>) -> Interval<D> {
    let (rho, delta) = (SIGMOID_F64_RELATIVE_ERROR, SIGMOID_KERNEL_ERROR);
    Interval::new(
        Zip::from(&x.lower).par_map_collect(|&v| (logistic_f64(v) * (1.0 - rho) - delta).max(0.0)),
        Zip::from(&x.upper).par_map_collect(|&v| (logistic_f64(v) * (1.0 + rho) + delta).min(1.0)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::logistic::logistic;
    use crate::layers::{maxpool, relu, sigmoid};
    use crate::testutil::random_array;
    use ndarray::{array, Array1};
    use rand_chacha::rand_core::{RngCore, SeedableRng};

    /// The largest `|kernel(x) - logistic_f64(x)|` over the f32 values `xs`, with its argument.
    fn worst_kernel_error(xs: &[f32]) -> (f64, f32) {
        let mut ys = xs.to_vec();
        logistic(&mut ys);
        xs.iter()
            .zip(&ys)
            .map(|(&x, &y)| ((f64::from(y) - logistic_f64(f64::from(x))).abs(), x))
            .fold((0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a })
    }

    /// The measurement behind [`SIGMOID_KERNEL_ERROR`]: every f32 in [2, 4) and [-4, -2) (two
    /// binades, 2^23 values each: where the slope and the range reduction both matter), a grid
    /// of step 2^-10 over [-100, 100] (beyond the kernel's clamps), and a million random bit
    /// patterns (every exponent). The largest error must stay below an eighth of the constant,
    /// the margin the constant claims.
    #[test]
    fn sigmoid_kernel_error_is_below_its_bound() {
        let mut worst = (0.0f64, 0.0f32);
        let mut record = |xs: &[f32]| {
            let w = worst_kernel_error(xs);
            if w.0 > worst.0 {
                worst = w;
            }
        };
        for start in [2.0f32, -4.0] {
            let first = start.to_bits();
            let count = 1u32 << 23;
            let xs: Vec<f32> = (0..count).map(|i| f32::from_bits(first + i)).collect();
            record(&xs);
        }
        let grid: Vec<f32> = (-102_400..=102_400).map(|i| i as f32 / 1024.0).collect();
        record(&grid);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let random: Vec<f32> = (0..1_000_000)
            .map(|_| f32::from_bits(rng.next_u32()))
            .filter(|x| x.is_finite())
            .collect();
        record(&random);
        eprintln!(
            "largest |logistic kernel - f64 logistic|: {:.3e} at x = {}",
            worst.0, worst.1
        );
        assert!(worst.0 > 0.0, "the kernel rounds");
        assert!(
            worst.0 < SIGMOID_KERNEL_ERROR / 8.0,
            "kernel error {:.3e} at x = {} is above an eighth of SIGMOID_KERNEL_ERROR",
            worst.0,
            worst.1
        );
    }

    #[test]
    fn relu_hand_worked() {
        // [-2, -1] -> [0, 0]; [-1, 3] -> [0, 3]; [2, 5] -> [2, 5].
        let x = Interval::new(array![-2.0, -1.0, 2.0], array![-1.0, 3.0, 5.0]);
        let y = relu_bound(&x);
        assert_eq!(y.lower, array![0.0, 0.0, 2.0]);
        assert_eq!(y.upper, array![0.0, 3.0, 5.0]);
    }

    #[test]
    fn maxpool_hand_worked() {
        // One 2x2 window: lowers 1, 4, -3, 0 -> max 4; uppers 2, 5, 9, 1 -> max 9.
        let lower = Array4::from_shape_vec((1, 1, 2, 2), vec![1.0, 4.0, -3.0, 0.0]).unwrap();
        let upper = Array4::from_shape_vec((1, 1, 2, 2), vec![2.0, 5.0, 9.0, 1.0]).unwrap();
        let y = maxpool_bound(&Interval::new(lower, upper));
        assert_eq!(y.lower.into_raw_vec_and_offset().0, vec![4.0]);
        assert_eq!(y.upper.into_raw_vec_and_offset().0, vec![9.0]);
    }

    /// Points drawn in a random box: the f32 layers' outputs lie in the bounds.
    #[test]
    fn monotone_layers_contain_sampled_outputs() {
        // Ends that are f32 values, so that a point clamped to them in f32 stays inside.
        let centre = random_array::<f64, Ix4>((2, 3, 6, 4), 1) * 3.0;
        let radius = random_array::<f64, Ix4>((2, 3, 6, 4), 2).mapv(f64::abs) * 0.5;
        let to_f32 = |a: Array4<f64>| a.mapv(|v| f64::from(v as f32));
        let x = Interval::new(to_f32(&centre - &radius), to_f32(&centre + &radius));
        let (pool, rel, sig) = (maxpool_bound(&x), relu_bound(&x), sigmoid_bound(&x));
        for seed in 0..50u64 {
            let t = random_array::<f64, Ix4>(centre.raw_dim(), 100 + seed);
            let p = Zip::from(&x.lower)
                .and(&x.upper)
                .and(&t)
                .map_collect(|&l, &u, &t| {
                    let v = (l + u) / 2.0 + t * (u - l) / 2.0;
                    (v as f32).clamp(l as f32, u as f32)
                });
            assert!(x.contains(p.view()), "the sampled point lies in the box");
            for (name, bound, got) in [
                ("maxpool", &pool, maxpool::infer(p.view())),
                ("relu", &rel, relu::infer(p.view())),
                ("sigmoid", &sig, sigmoid::infer(p.view())),
            ] {
                assert_eq!(
                    bound.first_outside(got.view()),
                    None,
                    "{name}, sample {seed}"
                );
            }
        }
    }

    /// At point boxes the sigmoid's bounds hold the f32 kernel's output (which differs from the
    /// f64 logistic, so `delta` is needed), and they are tight: the logistic within the stated
    /// constants.
    #[test]
    fn sigmoid_bounds_hold_the_kernel_and_are_tight() {
        let grid = Array1::from_iter((-2000..=2000).map(|i| i as f32 / 97.0));
        let b = sigmoid_bound(&Interval::point(grid.view()));
        let kernel = sigmoid::infer(grid.view());
        assert!(grid
            .iter()
            .zip(&kernel)
            .any(|(&x, &k)| f64::from(k) != logistic_f64(f64::from(x))));
        assert_eq!(b.first_outside(kernel.view()), None);
        let x = Array1::from(vec![-30.0f32, -2.5, 0.0, 0.75, 12.0]);
        let b = sigmoid_bound(&Interval::point(x.view()));
        for ((&v, &l), &u) in x.iter().zip(&b.lower).zip(&b.upper) {
            let s = logistic_f64(f64::from(v));
            assert!(l <= s && s <= u);
            assert!(
                u - l <= 2.0 * (SIGMOID_KERNEL_ERROR + SIGMOID_F64_RELATIVE_ERROR) + 1e-15,
                "{v}: [{l}, {u}]"
            );
        }
    }
}
