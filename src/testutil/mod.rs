//! Helpers shared by the unit tests, the integration tests and the benchmarks: seeded random
//! tensors (`rng::random_array`, which `advmnist bench` uses too), a tensor comparison that
//! names the tensor and shows where it differs (in the manner of llm.c's `check_tensor`), and
//! the central finite differences every backward pass is tested against ([`gradcheck`]).
//!
//! For tests only: no code outside a test uses this module (a test checks it).

pub mod gradcheck;

use crate::kernels::scalar::Scalar;
use ndarray::{Array, ArrayViewD, Dimension};

pub use crate::rng::random_array;

/// Panics unless `|got - want| <= abs_tol + rel_tol * |want|` everywhere, printing the tensor's
/// name, the first few offending (index, got, want) triples and the largest difference.
pub fn assert_close<T: Scalar>(
    name: &str,
    got: ArrayViewD<T>,
    want: ArrayViewD<T>,
    abs_tol: f64,
    rel_tol: f64,
) {
    assert_eq!(
        got.shape(),
        want.shape(),
        "{name}: shape {:?} vs {:?}",
        got.shape(),
        want.shape()
    );
    let mut bad = Vec::new();
    let mut max_diff = 0.0f64;
    for ((idx, &g), &w) in got.indexed_iter().zip(want.iter()) {
        let (g, w) = (g.f64(), w.f64());
        let diff = (g - w).abs();
        if diff.is_nan() || diff > max_diff {
            max_diff = if diff.is_nan() { f64::NAN } else { diff };
        }
        // Written so that a NaN difference counts as a failure.
        if diff.is_nan() || diff > abs_tol + rel_tol * w.abs() {
            bad.push((idx, g, w));
        }
    }
    if !bad.is_empty() {
        let shown: Vec<String> = bad
            .iter()
            .take(5)
            .map(|(i, g, w)| format!("{:?}: got {g:.9e}, want {w:.9e}", i.slice()))
            .collect();
        panic!(
            "{name}: {} of {} elements differ (abs_tol {abs_tol:e}, rel_tol {rel_tol:e}); max |diff| {max_diff:e}\n  {}",
            bad.len(),
            got.len(),
            shown.join("\n  ")
        );
    }
}

/// Every f32 result in `got` within the textbook bound of a sum of `n` terms rounded in f32 of
/// its exact (f64) value in `want`: `|got - want| <= n * 2^-24 * magnitude`, where `magnitude`
/// is the sum of the terms' absolute values (the same loops on |inputs|). The kernels' naive
/// twins are checked against naive f64 loops with it.
pub fn assert_within_rounded_sum_bound<'a>(
    what: &str,
    got: impl IntoIterator<Item = &'a f32>,
    want: impl IntoIterator<Item = &'a f64>,
    magnitude: impl IntoIterator<Item = &'a f64>,
    n: f64,
) {
    for ((a, e), m) in got.into_iter().zip(want).zip(magnitude) {
        let tol = n * f64::from(f32::EPSILON) / 2.0 * m;
        assert!(
            (f64::from(*a) - e).abs() <= tol,
            "{what}: {a} vs {e} (tolerance {tol})"
        );
    }
}

/// How many elements of `got` and `want` differ in their bits (so +0.0 and -0.0 differ, and a
/// NaN equals only the same NaN): for the kernels that promise another path's exact results.
pub fn differing_bits<D: Dimension>(got: &Array<f32, D>, want: &Array<f32, D>) -> usize {
    assert_eq!(got.shape(), want.shape(), "shapes differ");
    got.iter()
        .zip(want.iter())
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count()
}
