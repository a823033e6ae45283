//! Central finite differences, the oracle every backward pass is tested against.
//!
//! For a function `f: R^n -> R^m` and a fixed upstream gradient `g` in `R^m`, the scalar
//! `L(x) = <g, f(x)>` has `dL/dx = J_f(x)^T g`, which is exactly what a backward pass computes
//! from `g`. Each component is estimated by `(L(x + h e_i) - L(x - h e_i)) / 2h`.
//!
//! Everything runs in f64. The central difference has truncation error `h^2 |f'''| / 6` and
//! rounding error about `u |L| / h` with `u = 2^-53 ~ 1.1e-16`; with `h = 1e-6` these are about
//! 1e-12 and 1e-10 relative, so a tolerance of 1e-6 leaves four orders of magnitude of margin
//! while any real mistake (a missing term, a wrong index, a transposed weight) shows up as an
//! error of order 1. A small step also matters for the kinks of a real network (max-pool
//! near-ties, ReLU near 0): a step that crosses one averages two different one-sided slopes.
//! With `h = 1e-5` the whole-LeNet check crossed one such near-tie (three neighbouring pixels
//! off by about 1%); with `h = 1e-6` it does not. (tinygrad's `gradcheck` uses 1e-6 too, which
//! would be far too small in f32, where `u / h` would be 0.06.)

use ndarray::{Array, ArrayD, Dimension};

/// Step of the central difference (see the module comment for why).
pub const STEP: f64 = 1e-6;
/// Tolerance of a gradient check: `|analytic - numeric| <= TOL * (1 + |numeric|)`.
pub const TOL: f64 = 1e-6;

/// Estimates `d<g, f(x)>/dx` at `x` by central differences, perturbing every element of `x`.
pub fn numeric_gradient<D: Dimension, E: Dimension>(
    x: &Array<f64, D>,
    upstream: &Array<f64, E>,
    mut f: impl FnMut(&Array<f64, D>) -> Array<f64, E>,
) -> ArrayD<f64> {
    assert!(
        x.is_standard_layout(),
        "numeric_gradient needs a standard-layout input"
    );
    let mut xp = x.clone();
    let mut grad = ArrayD::zeros(x.shape());
    for (i, g) in grad.iter_mut().enumerate() {
        let orig = xp.as_slice_memory_order().expect("contiguous")[i];
        xp.as_slice_memory_order_mut().unwrap()[i] = orig + STEP;
        let plus = (&f(&xp) * upstream).sum();
        xp.as_slice_memory_order_mut().unwrap()[i] = orig - STEP;
        let minus = (&f(&xp) * upstream).sum();
        xp.as_slice_memory_order_mut().unwrap()[i] = orig;
        *g = (plus - minus) / (2.0 * STEP);
    }
    grad
}

/// Panics unless the analytic gradient matches the numeric one within [`TOL`], naming `what`.
pub fn assert_gradient_matches(what: &str, analytic: &ArrayD<f64>, numeric: &ArrayD<f64>) {
    super::assert_close(what, analytic.view(), numeric.view(), TOL, TOL);
}
