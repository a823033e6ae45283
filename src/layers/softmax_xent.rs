//! Softmax followed by cross-entropy with the true label, fused (Caffe's `SoftmaxWithLoss`,
//! PyTorch's `F.cross_entropy`).
//!
//! Dimension legend: `N` batch, `K` classes.
//!
//! Forward: `p = softmax(z)`, computed as `exp(z - max z) / sum exp(z - max z)` so that large
//! logits cannot overflow; per-image loss `l_n = -log p[n, y_n] = logsumexp(z_n) - z_n[y_n]`.
//! Backward: `dz[n, k] = scale * (p[n, k] - [k == y_n])` (docs/math.md, "Softmax and
//! cross-entropy"). The caller chooses `scale`: `1/N` for the batch-mean loss that training
//! minimises (Caffe's default `normalization: VALID`), `1` for each image's own loss. A loss
//! that weighs its images, `sum_n w_n l_n` (on-line adversarial training's
//! `alpha J(x) + (1 - alpha) J(x_adv)`), has `dz[n, k] = w_n (p[n, k] - [k == y_n])`:
//! [`backward_weighted`], of which [`backward`] is the case of equal weights.
//!
//! The true class's entry is computed as `p_y - 1 = -sum_{k != y} p_k`, not by subtracting 1
//! from `p_y`: for a confident image `p_y` rounds to exactly 1.0 in f32, and `p_y - 1` would be
//! 0 where the true value is a small negative number. The gradient's magnitude hardly changes,
//! but its sign does, and the sign is all the gradient-sign attack uses: on the default model
//! 878 of the 10,000 test images have `dz_y = 0` this way, and FGSM's error at eps 0.2 is
//! understated by 3.5 points (80.34% against 83.81%; docs/committees.md). Caffe and PyTorch
//! subtract.

use crate::kernels::scalar::Scalar;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

/// What the forward pass keeps for the backward pass.
#[derive(Clone, Debug)]
pub struct SoftmaxXentCache<T> {
    pub probs: Array2<T>, // (N, K): softmax of the logits
}

/// Row-wise softmax of `z (N, K)`.
pub fn softmax<T: Scalar>(z: ArrayView2<T>) -> Array2<T> {
    let mut p = z.to_owned();
    for mut row in p.axis_iter_mut(Axis(0)) {
        let max = row.iter().cloned().fold(T::neg_infinity(), T::max);
        row.mapv_inplace(|v| (v - max).exp());
        let sum: T = row.sum();
        row.mapv_inplace(|v| v / sum);
    }
    p
}

/// `log sum_k exp(z[k])` of one row, as `max + ln(sum_k exp(z[k] - max))` (docs/math.md,
/// "Log-sum-exp stabilisation"); the sum runs in index order.
pub fn log_sum_exp<T: Scalar>(z: ArrayView1<T>) -> T {
    let max = z.iter().cloned().fold(T::neg_infinity(), T::max);
    max + z.iter().map(|&v| (v - max).exp()).sum::<T>().ln()
}

/// Row-wise log-softmax `log p[n, k] = z[n, k] - logsumexp(z[n, :])`, the same log-sum-exp as
/// [`forward`], so that `-log_softmax(z)[n, y_n]` is bit for bit [`forward`]'s loss
/// (`a - b == -(b - a)` exactly in IEEE arithmetic).
pub fn log_softmax<T: Scalar>(z: ArrayView2<T>) -> Array2<T> {
    let mut s = z.to_owned();
    for mut row in s.axis_iter_mut(Axis(0)) {
        let lse = log_sum_exp(row.view());
        row.mapv_inplace(|v| v - lse);
    }
    s
}

/// Per-image losses `(N)` and the cache. Labels must be below `K`.
pub fn forward<T: Scalar>(
    logits: ArrayView2<T>,
    labels: &[u8],
) -> (Array1<T>, SoftmaxXentCache<T>) {
    assert_eq!(logits.nrows(), labels.len(), "one label per row of logits");
    let losses = Array1::from_shape_fn(labels.len(), |n| {
        let z = logits.row(n);
        let y = labels[n] as usize;
        assert!(
            y < z.len(),
            "label {y} out of range for {} classes",
            z.len()
        );
        log_sum_exp(z) - z[y]
    });
    (
        losses,
        SoftmaxXentCache {
            probs: softmax(logits),
        },
    )
}

/// `dL/dz (N, K) = scale * (p - onehot(y))`: [`backward_weighted`] with every weight `scale`
/// (the same operations, so the same bits).
pub fn backward<T: Scalar>(cache: &SoftmaxXentCache<T>, labels: &[u8], scale: T) -> Array2<T> {
    backward_weighted(cache, labels, &vec![scale; labels.len()])
}

/// The gradient of the weighted loss `L = sum_n w_n l_n`: `dL/dz (N, K)`, row `n` being
/// `w_n * (p[n, :] - onehot(y_n))`. `weights (N)`: one per image.
pub fn backward_weighted<T: Scalar>(
    cache: &SoftmaxXentCache<T>,
    labels: &[u8],
    weights: &[T],
) -> Array2<T> {
    assert_eq!(weights.len(), labels.len(), "one weight per image");
    let mut dz = cache.probs.clone();
    for ((mut row, &y), &scale) in dz.axis_iter_mut(Axis(0)).zip(labels).zip(weights) {
        let y = y as usize;
        // p_y - 1 = -(sum of the other probabilities), exact even when p_y rounds to 1.
        let others: T = row
            .iter()
            .enumerate()
            .filter(|&(k, _)| k != y)
            .map(|(_, &p)| p)
            .sum();
        row[y] = -others;
        row.mapv_inplace(|v| v * scale);
    }
    dz
}

/// Caffe's `SoftmaxLayer::Forward_cpu` in float32 (BVLC/caffe, `src/caffe/layers/softmax_layer.cpp`,
/// commit 9b89154): per row, the max over the classes (`std::max`, starting from class 0), then
/// `exp(z - max)`, their sum (`caffe_cpu_gemv` with a vector of ones: summed here in index
/// order, as the reference BLAS `sgemv` does; an optimised BLAS may order the ten additions
/// otherwise, which moves a probability by at most an ulp or so), and each `exp` divided by the
/// sum (`caffe_div`). Only the order of the sum differs from [`softmax`], which sums with
/// `ndarray`'s interleaved partial sums.
pub fn caffe_softmax_f32(z: ArrayView2<f32>) -> Array2<f32> {
    let mut p = z.to_owned();
    for mut row in p.axis_iter_mut(Axis(0)) {
        let mut max = row[0];
        for &v in row.iter() {
            // std::max(a, b) is `a < b ? b : a`.
            max = if max < v { v } else { max };
        }
        row.mapv_inplace(|v| (v - max).exp());
        let mut sum = 0.0f32;
        for &e in row.iter() {
            sum += e;
        }
        row.mapv_inplace(|e| e / sum);
    }
    p
}

/// Caffe's `SoftmaxWithLossLayer::Forward_cpu` per image (`softmax_loss_layer.cpp`):
/// `-log(max(p[n, y_n], FLT_MIN))` from [`caffe_softmax_f32`]'s probabilities.
pub fn caffe_losses_f32(probs: ArrayView2<f32>, labels: &[u8]) -> Array1<f32> {
    Array1::from_shape_fn(labels.len(), |n| {
        -probs[[n, labels[n] as usize]].max(f32::MIN_POSITIVE).ln()
    })
}

/// Caffe's `SoftmaxWithLossLayer::Backward_cpu` (`softmax_loss_layer.cpp`, commit 9b89154):
/// `bottom_diff = prob` (`caffe_copy`), then `bottom_diff[label] -= 1` in float32, then a scale
/// (`loss_weight / normalizer`; 1 here, each image's own loss, as [`backward`] with `scale = 1`).
/// Unlike [`backward`], the true class's entry is the rounded subtraction: for a confident image
/// `p_y` is exactly 1.0 in f32 and the entry is exactly 0 (docs/math.md, "Two gradients").
pub fn caffe_backward_f32(probs: ArrayView2<f32>, labels: &[u8]) -> Array2<f32> {
    assert_eq!(probs.nrows(), labels.len(), "one label per row");
    let mut dz = probs.to_owned();
    for (mut row, &y) in dz.axis_iter_mut(Axis(0)).zip(labels) {
        row[y as usize] -= 1.0;
    }
    dz
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::gradcheck::{assert_gradient_matches, numeric_gradient};
    use crate::testutil::random_array;
    use ndarray::{Array1, Ix2};

    #[test]
    fn gradient_of_mean_loss_matches_finite_differences() {
        let z = random_array::<f64, Ix2>((4, 10), 90) * 3.0;
        let labels = [3u8, 0, 9, 3];
        let (_, cache) = forward(z.view(), &labels);
        let dz = backward(&cache, &labels, 0.25);
        // Upstream gradient 1 on the scalar mean loss.
        let one = Array1::from_elem(1, 1.0);
        let num = numeric_gradient(&z, &one, |z| {
            Array1::from_elem(1, forward(z.view(), &labels).0.mean().unwrap())
        });
        assert_gradient_matches("softmax-xent dz", &dz.into_dyn(), &num);
    }

    #[test]
    fn hand_worked_case() {
        // Two equal logits: p = [1/2 1/2], loss = log 2; label 0 -> dz = [1/2 - 1, 1/2] = [-1/2 1/2].
        let (loss, cache) = forward(ndarray::arr2(&[[1.0f64, 1.0]]).view(), &[0]);
        assert!((loss[0] - 2f64.ln()).abs() < 1e-15);
        assert_eq!(backward(&cache, &[0], 1.0), ndarray::arr2(&[[-0.5, 0.5]]));
    }

    /// A confident image: p_0 = 1 / (1 + 9 e^-30) rounds to exactly 1.0 in f32, yet
    /// dL/dz_0 = p_0 - 1 = -9 e^-30 / (1 + 9 e^-30) ~ -8.4e-13 must stay negative (its sign is
    /// what FGSM uses), and the entries must still sum to 0 as the exact gradient's do.
    #[test]
    fn confident_image_keeps_the_sign_of_the_true_class() {
        let z =
            ndarray::Array2::from_shape_fn((1, 10), |(_, k)| if k == 0 { 30.0f32 } else { 0.0 });
        let (_, cache) = forward(z.view(), &[0]);
        assert_eq!(
            cache.probs[[0, 0]],
            1.0,
            "the premise: p_0 rounds to 1 in f32"
        );
        let dz = backward(&cache, &[0], 1.0);
        let want = -9.0 * (-30.0f64).exp() / (1.0 + 9.0 * (-30.0f64).exp());
        assert!(dz[[0, 0]] < 0.0, "dz_0 = {}", dz[[0, 0]]);
        assert!(
            ((dz[[0, 0]] as f64) - want).abs() < 1e-6 * want.abs(),
            "{} vs {want}",
            dz[[0, 0]]
        );
        assert!(dz.sum().abs() < 1e-18, "sum {}", dz.sum());
    }

    /// Weights `[w_0, w_1] = [0.75, 0.25]` on two images with equal logits `[1, 1]`, labels
    /// 0 and 1: each row is `p - onehot = [-1/2, 1/2]` or `[1/2, -1/2]` times its weight, so
    /// `dz = [[-0.375, 0.375], [0.125, -0.125]]`; a weight of 0 gives a row of zeros.
    #[test]
    fn weighted_backward_hand_worked() {
        let z = ndarray::arr2(&[[1.0f64, 1.0], [1.0, 1.0]]);
        let (_, cache) = forward(z.view(), &[0, 1]);
        assert_eq!(
            backward_weighted(&cache, &[0, 1], &[0.75, 0.25]),
            ndarray::arr2(&[[-0.375, 0.375], [0.125, -0.125]])
        );
        let dz = backward_weighted(&cache, &[0, 1], &[0.5, 0.0]);
        assert_eq!(dz.row(1).iter().map(|v| v.abs()).sum::<f64>(), 0.0);
    }

    /// The weighted gradient is the gradient of `sum_n w_n l_n` (central differences in f64).
    #[test]
    fn weighted_backward_is_the_weighted_losss_gradient() {
        let z = random_array::<f64, Ix2>((4, 10), 91) * 3.0;
        let labels = [3u8, 0, 9, 3];
        let weights = [0.1, 0.4, 0.0, 0.5];
        let (_, cache) = forward(z.view(), &labels);
        let dz = backward_weighted(&cache, &labels, &weights);
        let one = Array1::from_elem(1, 1.0);
        let num = numeric_gradient(&z, &one, |z| {
            let losses = forward(z.view(), &labels).0;
            Array1::from_elem(1, losses.iter().zip(weights).map(|(l, w)| l * w).sum())
        });
        assert_gradient_matches("weighted softmax-xent dz", &dz.into_dyn(), &num);
    }

    #[test]
    fn huge_logits_do_not_overflow() {
        let (loss, cache) = forward(ndarray::arr2(&[[1000.0f32, 0.0, -1000.0]]).view(), &[1]);
        assert_eq!(loss[0], 1000.0);
        assert!(cache.probs.iter().all(|p| p.is_finite()));
    }
}
