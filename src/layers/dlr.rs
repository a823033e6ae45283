//! The difference-of-logits-ratio loss (DLR) of Croce and Hein, "Reliable evaluation of
//! adversarial robustness with an ensemble of diverse parameter-free attacks" (ICML 2020),
//! section 4, in its targeted form (their Eq. 6), the loss APGD-T ascends.
//!
//! Dimension legend: `N` batch, `K` classes; `pi_1 >= pi_2 >= ...` are a row's logits sorted
//! in decreasing order.
//!
//! Forward, for image `n` with true class `y` and target class `t`:
//! ```text
//! L = -(z_y - z_t) / D,    D = z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12
//! ```
//! The numerator is the logit margin the attack must close; dividing by a difference of
//! logits makes the loss invariant to shifting and to scaling the logits, so a model cannot
//! hide behind a large or a tiny logit scale (cross-entropy saturates on the first and its
//! gradient vanishes on both). The `1e-12` is the reference code's (`dlr_loss_targeted` in
//! `autoattack/autopgd_base.py`), guarding a row whose logits are all equal.
//!
//! Backward (quotient rule, `N = z_y - z_t`):
//! ```text
//! dL/dz_k = -(dN/dz_k) / D + (N / D^2) dD/dz_k
//! dN/dz: +1 at y, -1 at t          dD/dz: +1 at pi1, -1/2 at pi3, -1/2 at pi4
//! ```
//! The terms add where the indices coincide (`y` is often `pi1`). Sorting a row with ties:
//! equal logits keep their index order (a stable sort, the lower index ranked first), so the
//! derivative of `D` goes to one of the tied logits; at a tie `D` is not differentiable and
//! either choice is a subgradient. (PyTorch's `sort` does not promise an order for ties.)

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

/// The reference code's guard against a zero denominator.
pub const GUARD: f32 = 1e-12;

/// The indices of a row's logits in decreasing order, ties by increasing index.
pub fn ranked(z: ArrayView1<f32>) -> Vec<usize> {
    let mut order: Vec<usize> = (0..z.len()).collect();
    // `sort_by` is stable; `total_cmp` orders NaN consistently instead of panicking.
    order.sort_by(|&a, &b| z[b].total_cmp(&z[a]));
    order
}

/// Each image's targeted DLR loss `(N)` and `dL/dz` `(N, K)`, for true classes `labels` and
/// targets `targets` (a target equal to the label gives loss 0 and a gradient from `D` alone,
/// which is 0: no attack asks for it). Needs at least 4 classes.
pub fn targeted(
    logits: ArrayView2<f32>,
    labels: &[u8],
    targets: &[u8],
) -> (Array1<f32>, Array2<f32>) {
    let (n, k) = logits.dim();
    assert!(k >= 4, "the targeted DLR loss needs at least 4 classes");
    assert_eq!(labels.len(), n, "one label per row of logits");
    assert_eq!(targets.len(), n, "one target per row of logits");
    let mut loss = Array1::zeros(n);
    let mut grad = Array2::zeros((n, k));
    for i in 0..n {
        let z = logits.row(i);
        let (y, t) = (labels[i] as usize, targets[i] as usize);
        let pi = ranked(z);
        let d = z[pi[0]] - 0.5 * (z[pi[2]] + z[pi[3]]) + GUARD;
        let num = z[y] - z[t];
        loss[i] = -num / d;
        let mut g = grad.row_mut(i);
        g[y] -= 1.0 / d;
        g[t] += 1.0 / d;
        let q = num / (d * d);
        g[pi[0]] += q;
        g[pi[2]] -= 0.5 * q;
        g[pi[3]] -= 0.5 * q;
    }
    (loss, grad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array2};

    /// The loss by its formula on a hand-worked row.
    #[test]
    fn the_loss_is_the_formula() {
        // Sorted: 5 (class 2), 3 (class 0), 1 (class 3), -1 (class 1), ...
        let z = array![[3.0f32, -1.0, 5.0, 1.0, -2.0]];
        let (loss, _) = targeted(z.view(), &[0], &[2]);
        // N = z_0 - z_2 = -2; D = 5 - (1 + -1)/2 = 5.
        assert!((loss[0] - 0.4).abs() < 1e-7, "{}", loss[0]);
        let (loss, _) = targeted(z.view(), &[2], &[4]);
        // N = 5 - (-2) = 7; L = -7/5.
        assert!((loss[0] + 1.4).abs() < 1e-7, "{}", loss[0]);
    }

    /// Shifting or scaling the logits leaves the loss as it was (Croce and Hein's point).
    #[test]
    fn the_loss_ignores_shift_and_scale() {
        let z = array![[0.3f32, -1.7, 2.2, 0.9, 4.1, -0.2, 1.1, 0.0, -3.0, 2.5]];
        let (base, _) = targeted(z.view(), &[4], &[9]);
        let moved = z.mapv(|v| 7.0 * v - 11.0);
        let (after, _) = targeted(moved.view(), &[4], &[9]);
        assert!((base[0] - after[0]).abs() < 1e-5, "{base} {after}");
    }

    /// The hand-written gradient against central differences in f64 of the formula, for rows
    /// where the true class is first, third, fourth or elsewhere in the ranking.
    #[test]
    fn the_gradient_matches_finite_differences() {
        let rows: Array2<f32> = array![
            [2.0, -1.0, 0.5, 1.5, -0.3, 0.8, 3.0, -2.0, 0.1, 1.1],
            [5.0, -1.0, 0.5, 1.5, -0.3, 0.8, 3.0, -2.0, 0.1, 1.1],
            [0.9, -1.0, 0.5, 1.5, -0.3, 0.8, 3.0, -2.0, 0.1, 2.0],
            [-0.5, -1.0, 0.5, 1.5, -0.3, 0.8, 3.0, -2.0, 0.1, 2.0],
        ];
        let labels = [0u8, 0, 0, 0];
        let targets = [6u8, 6, 9, 3];
        let (_, grad) = targeted(rows.view(), &labels, &targets);
        let f64_loss = |z: &[f64], y: usize, t: usize| {
            let mut s = z.to_vec();
            s.sort_by(|a, b| b.total_cmp(a));
            -(z[y] - z[t]) / (s[0] - 0.5 * (s[2] + s[3]) + 1e-12)
        };
        let h = 1e-6;
        for i in 0..rows.nrows() {
            let z: Vec<f64> = rows.row(i).iter().map(|&v| v as f64).collect();
            for k in 0..z.len() {
                let (mut up, mut down) = (z.clone(), z.clone());
                up[k] += h;
                down[k] -= h;
                let (y, t) = (labels[i] as usize, targets[i] as usize);
                let numeric = (f64_loss(&up, y, t) - f64_loss(&down, y, t)) / (2.0 * h);
                let exact = grad[[i, k]] as f64;
                assert!(
                    (numeric - exact).abs() < 1e-5,
                    "row {i} class {k}: numeric {numeric}, hand-written {exact}"
                );
            }
        }
    }

    #[test]
    fn ties_rank_the_lower_index_first() {
        let z = array![1.0f32, 3.0, 3.0, 0.0, 3.0];
        assert_eq!(ranked(z.view()), vec![1, 2, 4, 0, 3]);
    }
}
