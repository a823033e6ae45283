//! Stochastic gradient descent with momentum and weight decay, exactly as Caffe's `SGDSolver`
//! (`src/caffe/solvers/sgd_solver.cpp`: `Regularize`, then `ComputeUpdateValue`, then the
//! blob's `Update`):
//!
//! ```text
//! g' = g + weight_decay * w                       (L2, on weights and biases alike:
//!                                                  LeNet's prototxt sets no decay_mult)
//! v  = momentum * v + lr * lr_mult * g'           (lr_mult 1 for weights, 2 for biases)
//! w  = w - v
//! ```
//! Note that Caffe folds the learning rate into the velocity, unlike PyTorch's `SGD`, which
//! keeps `v = m v + g'` and steps `w -= lr v`; the two agree only while the rate is constant.

use crate::kernels::scalar::Scalar;
use crate::models::params::Parameters;
use ndarray::Zip;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SgdMomentum {
    pub momentum: f64,
    pub weight_decay: f64,
    /// Learning-rate multiplier of the biases (`param { lr_mult: 2 }` in the prototxt).
    pub bias_lr_mult: f64,
}

impl SgdMomentum {
    /// `lenet_solver.prototxt`: momentum 0.9, weight_decay 0.0005; biases learn twice as fast.
    pub const LENET: SgdMomentum = SgdMomentum {
        momentum: 0.9,
        weight_decay: 5e-4,
        bias_lr_mult: 2.0,
    };

    /// One update of `params` from `grads`, with the momentum buffers in `velocity`, for any
    /// network (tensors matched by position, names checked). Every element is updated on its
    /// own, so the elements run in parallel with no effect on the result.
    pub fn step<T: Scalar, P: Parameters<T>>(
        &self,
        params: &mut P,
        grads: &P,
        velocity: &mut P,
        lr: f64,
    ) {
        let (m, wd) = (T::of(self.momentum), T::of(self.weight_decay));
        for ((mut w, g), mut v) in params
            .parameters_mut()
            .into_iter()
            .zip(grads.parameters())
            .zip(velocity.parameters_mut())
        {
            assert_eq!(w.name, v.name);
            let lr_mult = if w.name.ends_with(".bias") {
                self.bias_lr_mult
            } else {
                1.0
            };
            let rate = T::of(lr * lr_mult);
            Zip::from(&mut w.data)
                .and(&g.data)
                .and(&mut v.data)
                .par_for_each(|w, &g, v| {
                    *v = m * *v + rate * (g + wd * *w);
                    *w -= *v;
                });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::LeNet;

    #[test]
    fn two_steps_hand_worked() {
        // One weight and one bias entry followed through two steps with m = 0.9, wd = 0.1, lr = 0.5:
        // weight w = 1, g = 2: v1 = 0.5 * (2 + 0.1 * 1) = 1.05, w1 = -0.05;
        //   v2 = 0.9 * 1.05 + 0.5 * (2 + 0.1 * -0.05) = 0.945 + 0.9975 = 1.9425, w2 = -1.9925.
        // bias (lr_mult 2) b = 1, g = 2: v1 = 1.0 * 2.1 = 2.1, b1 = -1.1.
        let sgd = SgdMomentum {
            momentum: 0.9,
            weight_decay: 0.1,
            bias_lr_mult: 2.0,
        };
        let mut p = LeNet::<f64>::zeros();
        p.fc2.weight[[0, 0]] = 1.0;
        p.fc2.bias[0] = 1.0;
        let mut g = LeNet::<f64>::zeros();
        g.fc2.weight[[0, 0]] = 2.0;
        g.fc2.bias[0] = 2.0;
        let mut v = LeNet::zeros();
        sgd.step(&mut p, &g, &mut v, 0.5);
        assert!((p.fc2.weight[[0, 0]] - -0.05).abs() < 1e-15);
        assert!((p.fc2.bias[0] - -1.1).abs() < 1e-15);
        sgd.step(&mut p, &g, &mut v, 0.5);
        assert!((v.fc2.weight[[0, 0]] - 1.9425).abs() < 1e-15);
        assert!((p.fc2.weight[[0, 0]] - -1.9925).abs() < 1e-15);
        // Entries with zero weight and gradient stay exactly zero.
        assert_eq!(p.fc1.weight.iter().filter(|&&w| w != 0.0).count(), 0);
    }
}
