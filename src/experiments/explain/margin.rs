//! The logit margin of the true class, `m = z[t] - max_{k != t} z[k]`: positive exactly when
//! the digit is classified right (ties aside), and the quantity the Square attack and the
//! certificates work on (docs/math.md, section 12; docs/evaluate.md). Unlike the loss of a
//! confident digit, about `exp(-m)`, the margin is a piecewise-linear function of the logits,
//! so its first-order prediction holds as long as the network's ReLU signs, max-pool winners
//! and the runner-up class stay as they were.
//!
//! Its gradient is the margin's own: with the runner-up `j` of the clean image,
//! `dm/dx = J^T (onehot(t) - onehot(j))`, the vector-Jacobian product of the logits
//! (`Classifier::logits_vjp`, the model's own backward pass) with that upstream gradient. It is
//! not the loss gradient rescaled: `dL/dz = p - onehot(t)` weighs every wrong class by its
//! probability (docs/math.md, section 2), the margin only the runner-up.

use crate::models::Classifier;
use ndarray::{Array2, ArrayView1, ArrayView4};

/// The margin `z[t] - max_{k != t} z[k]` of f32 logits `(10)`, in f64 (each difference of two
/// f32s is exact there), and the runner-up `k` (the first one on a tie, as `argmax_rows`).
pub fn logit_margin(logits: ArrayView1<f32>, label: u8) -> (f64, u8) {
    let t = label as usize;
    let runner_up = (0..logits.len())
        .filter(|&k| k != t)
        .fold(None, |best: Option<usize>, k| match best {
            Some(b) if logits[k] <= logits[b] => Some(b),
            _ => Some(k),
        })
        .expect("at least two classes");
    (
        f64::from(logits[t]) - f64::from(logits[runner_up]),
        runner_up as u8,
    )
}

/// `dm/dx (1,1,28,28)` at image `x (1,1,28,28)` for the margin between `label` and
/// `runner_up`: `model.logits_vjp(x, onehot(label) - onehot(runner_up))`.
pub fn margin_gradient(
    model: &dyn Classifier,
    x: ArrayView4<f32>,
    label: u8,
    runner_up: u8,
) -> ndarray::Array4<f32> {
    assert_eq!(x.dim().0, 1, "one image");
    assert_ne!(label, runner_up, "a margin is between two classes");
    let mut d_logits = Array2::<f32>::zeros((1, crate::data::CLASSES));
    d_logits[[0, label as usize]] = 1.0;
    d_logits[[0, runner_up as usize]] = -1.0;
    model.logits_vjp(x, d_logits.view())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::arr1;

    #[test]
    fn margin_and_runner_up_hand_worked() {
        // z = [1, 5, 3, 5], t = 2: the largest other logit is 5, first at class 1; m = 3 - 5.
        let z = arr1(&[1.0f32, 5.0, 3.0, 5.0]);
        assert_eq!(logit_margin(z.view(), 2), (-2.0, 1));
        // t = 1: the others' largest is 5 at class 3 (class 1 itself is left out); m = 0.
        assert_eq!(logit_margin(z.view(), 1), (0.0, 3));
        // f32s are 8 apart at 1e8; the difference of two of them is exact in f64.
        let big = arr1(&[1.0e8f32, 1.0e8 + 8.0]);
        assert_eq!(logit_margin(big.view(), 1), (8.0, 0));
    }
}
