//! Logistic output with cross-entropy against targets in [0, 1], as Caffe's
//! `SigmoidCrossEntropyLossLayer` (the autoencoder's reconstruction loss; Hinton and
//! Salakhutdinov 2006 train their MNIST autoencoder on the same loss):
//!
//! ```text
//! y = sigmoid(z),   L_n = -sum_j [ t_j log y_j + (1 - t_j) log(1 - y_j) ]   (summed over pixels)
//! ```
//! computed from the logits `z` without forming `log y`, as Caffe does, so that it cannot
//! overflow: `L_n = sum_j [ max(z_j, 0) - z_j t_j + log(1 + exp(-|z_j|)) ]`.
//!
//! Backward (docs/defences.md): `dL_n/dz_j = y_j - t_j`. The batch loss is the mean of `L_n`
//! over the batch (Caffe's `normalization: BATCH_SIZE`, the layer's default), so the training
//! step scales this by `1/N`.
//!
//! Dimension legend: `N` batch, `P` outputs (pixels).

use crate::kernels::scalar::Scalar;
use ndarray::{Array1, Array2, ArrayView2, Axis, Zip};

/// What the forward pass keeps: the probabilities `y (N, P)`.
#[derive(Clone, Debug)]
pub struct SigmoidXentCache<T> {
    pub output: Array2<T>, // (N, P): sigmoid of the logits
}

/// Each row's loss `(N)` and the cache, from logits `z (N, P)` and targets `t (N, P)`.
pub fn forward<T: Scalar>(
    z: ArrayView2<T>,
    target: ArrayView2<T>,
) -> (Array1<T>, SigmoidXentCache<T>) {
    assert_eq!(z.dim(), target.dim(), "one target per logit");
    let mut losses = Array1::zeros(z.nrows());
    Zip::from(&mut losses)
        .and(z.axis_iter(Axis(0)))
        .and(target.axis_iter(Axis(0)))
        .par_for_each(|l, z, t| {
            *l = Zip::from(&z).and(&t).fold(T::zero(), |acc, &z, &t| {
                acc + z.max(T::zero()) - z * t + (T::one() + (-z.abs()).exp()).ln()
            })
        });
    let output = crate::layers::sigmoid::infer(z);
    (losses, SigmoidXentCache { output })
}

/// `dL/dz (N, P) = scale * (y - t)`; `scale` is `1/N` for the batch-mean loss, 1 for per-image
/// losses.
pub fn backward<T: Scalar>(
    cache: &SigmoidXentCache<T>,
    target: ArrayView2<T>,
    scale: T,
) -> Array2<T> {
    Zip::from(&cache.output)
        .and(&target)
        .par_map_collect(|&y, &t| scale * (y - t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::gradcheck::{assert_gradient_matches, numeric_gradient};
    use crate::testutil::random_array;
    use ndarray::{array, Ix2};

    #[test]
    fn gradient_of_mean_loss_matches_finite_differences() {
        let z = random_array::<f64, Ix2>((3, 7), 1).mapv(|v| 3.0 * v);
        let t = random_array::<f64, Ix2>((3, 7), 2).mapv(|v| 0.5 * v + 0.5);
        let (_, cache) = forward(z.view(), t.view());
        let analytic = backward(&cache, t.view(), 1.0 / 3.0);
        let numeric = numeric_gradient(&z, &ndarray::arr0(1.0), |z| {
            ndarray::arr0(forward(z.view(), t.view()).0.mean().unwrap())
        });
        assert_gradient_matches("dL/dz", &analytic.into_dyn(), &numeric);
    }

    #[test]
    fn hand_worked_case() {
        // z = 0, t = 1: y = 1/2, L = log 2, dL/dz = -1/2.
        // z = ln 3, t = 0: y = 3/4, L = -log(1/4) = log 4, dL/dz = 3/4.
        let z = array![[0.0f64, 3f64.ln()]];
        let t = array![[1.0, 0.0]];
        let (l, cache) = forward(z.view(), t.view());
        assert!((l[0] - (2f64.ln() + 4f64.ln())).abs() < 1e-15);
        let d = backward(&cache, t.view(), 1.0);
        assert!((d[[0, 0]] + 0.5).abs() < 1e-15 && (d[[0, 1]] - 0.75).abs() < 1e-15);
    }

    #[test]
    fn huge_logits_give_finite_loss() {
        // z = +-1000 with the wrong target: log(1 + exp(1000)) would overflow; the stable
        // form gives exactly 1000.
        let z = array![[1000.0f32, -1000.0]];
        let t = array![[0.0f32, 1.0]];
        let (l, _) = forward(z.view(), t.view());
        assert_eq!(l[0], 2000.0);
    }
}
