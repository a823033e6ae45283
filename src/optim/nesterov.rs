//! Nesterov's accelerated gradient, exactly as Caffe's `NesterovSolver`
//! (`src/caffe/solvers/nesterov_solver.cpp`, `ComputeUpdateValue`; weight decay added first by
//! `SGDSolver::Regularize`):
//!
//! ```text
//! g' = g + weight_decay * decay_mult * w
//! v' = momentum * v + lr * g'                 (the history, as in plain momentum)
//! w  = w - ((1 + momentum) * v' - momentum * v)   (step back by the old velocity, then over-step)
//! ```
//! The study trains its denoising autoencoder "by Nesterov's accelerated gradient" (section 4.1);
//! its solver is Caffe's `mnist_autoencoder_solver_nesterov.prototxt`: momentum 0.95, weight decay
//! 5e-4 on weights only (`decay_mult: 0` on every bias in `mnist_autoencoder.prototxt`), the same
//! learning rate for weights and biases.

use crate::kernels::scalar::Scalar;
use crate::models::params::{Parameters, TensorUpdate};
use ndarray::{ArrayView, ArrayViewMut, Dimension, Zip};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Nesterov {
    pub momentum: f64,
    pub weight_decay: f64,
    /// Whether biases are decayed too (`decay_mult` 1) or not (0, Caffe's autoencoder example).
    pub decay_biases: bool,
}

impl Nesterov {
    /// `mnist_autoencoder_solver_nesterov.prototxt` with `mnist_autoencoder.prototxt`'s multipliers.
    pub const CAFFE_AUTOENCODER: Nesterov = Nesterov {
        momentum: 0.95,
        weight_decay: 5e-4,
        decay_biases: false,
    };

    /// One update of `params` from `grads`, with the history in `velocity`, element by element
    /// (so in parallel, with no effect on the result).
    pub fn step<T: Scalar, P: Parameters<T>>(
        &self,
        params: &mut P,
        grads: &P,
        velocity: &mut P,
        lr: f64,
    ) {
        for ((mut w, g), mut v) in params
            .parameters_mut()
            .into_iter()
            .zip(grads.parameters())
            .zip(velocity.parameters_mut())
        {
            assert_eq!(w.name, v.name);
            let decayed = self.decays(w.name);
            self.update(
                w.data.view_mut(),
                g.data.view(),
                v.data.view_mut(),
                lr,
                decayed,
            );
        }
    }

    /// Whether the tensor of this name is weight-decayed.
    pub fn decays(&self, name: &str) -> bool {
        self.decay_biases || !name.ends_with(".bias")
    }

    /// The update of one tensor, or of any part of one (element by element: a part updated on
    /// its own gets the bits it gets in [`Self::step`]); `decayed` as [`Self::decays`] says.
    pub fn update<T: Scalar, D: Dimension>(
        &self,
        w: ArrayViewMut<T, D>,
        g: ArrayView<T, D>,
        v: ArrayViewMut<T, D>,
        lr: f64,
        decayed: bool,
    ) {
        let m = T::of(self.momentum);
        let one_plus_m = T::of(1.0 + self.momentum);
        let rate = T::of(lr);
        let wd = T::of(if decayed { self.weight_decay } else { 0.0 });
        Zip::from(w).and(g).and(v).par_for_each(|w, &g, v| {
            let old = *v;
            *v = m * old + rate * (g + wd * *w);
            *w -= one_plus_m * *v - m * old;
        });
    }
}

/// [`Nesterov::update`] with the tensor's decay as [`Nesterov::decays`] says: how the
/// autoencoder's fused training step (`Autoencoder::fused_nesterov_step`) is given the solver.
impl<T: Scalar> TensorUpdate<T> for Nesterov {
    fn update_named<D: Dimension>(
        &self,
        name: &str,
        w: ArrayViewMut<T, D>,
        g: ArrayView<T, D>,
        v: ArrayViewMut<T, D>,
        lr: f64,
    ) {
        self.update(w, g, v, lr, self.decays(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::IMAGE_SIDE;
    use crate::models::{Autoencoder, LeNet};
    use crate::rng::{stream, Purpose};
    use crate::testutil::random_array;
    use ndarray::Ix4;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn two_steps_hand_worked() {
        // m = 0.5, wd = 0.1, lr = 1; weight w = 1, g = 1:
        //   v1 = 0 + 1 * (1 + 0.1) = 1.1;            w1 = 1 - (1.5 * 1.1 - 0) = -0.65
        //   v2 = 0.55 + (1 + 0.1 * -0.65) = 1.485;   w2 = -0.65 - (1.5 * 1.485 - 0.5 * 1.1) = -2.3275
        // bias b = 1, g = 1, not decayed: v1 = 1, b1 = 1 - 1.5 = -0.5;
        //   v2 = 0.5 + 1 = 1.5, b2 = -0.5 - (2.25 - 0.5) = -2.25
        let opt = Nesterov {
            momentum: 0.5,
            weight_decay: 0.1,
            decay_biases: false,
        };
        let mut p = LeNet::<f64>::zeros();
        p.fc2.weight[[0, 0]] = 1.0;
        p.fc2.bias[0] = 1.0;
        let mut g = LeNet::<f64>::zeros();
        g.fc2.weight[[0, 0]] = 1.0;
        g.fc2.bias[0] = 1.0;
        let mut v = LeNet::zeros();
        opt.step(&mut p, &g, &mut v, 1.0);
        assert!((p.fc2.weight[[0, 0]] - -0.65).abs() < 1e-15);
        assert!((p.fc2.bias[0] - -0.5).abs() < 1e-15);
        opt.step(&mut p, &g, &mut v, 1.0);
        assert!((v.fc2.weight[[0, 0]] - 1.485).abs() < 1e-15);
        assert!((p.fc2.weight[[0, 0]] - -2.3275).abs() < 1e-12);
        assert!((p.fc2.bias[0] - -2.25).abs() < 1e-15);
    }

    /// Three steps with corruption, from a net that has moved off its sparse start, both ways:
    /// the same weights and velocities, bit for bit.
    #[test]
    fn fused_step_equals_gradients_then_step() {
        let solver = Nesterov::CAFFE_AUTOENCODER;
        let mut a = Autoencoder::<f32>::caffe_sparse_gaussian(&mut stream(3, Purpose::Init, 0));
        let mut va = Autoencoder::<f32>::zeros();
        let (mut b, mut vb) = (a.clone(), va.clone());
        for step in 0..3u64 {
            let x = random_array::<f32, Ix4>((37, 1, IMAGE_SIDE, IMAGE_SIDE), 20 + step)
                .mapv(|v| v.abs());
            let rngs = |s: u64| -> Vec<ChaCha8Rng> {
                (0..37).map(|i| stream(s, Purpose::Dropout, i)).collect()
            };
            let (loss_a, grads) = a.loss_and_gradients(x.view(), 0.2, &mut rngs(step));
            solver.step(&mut a, &grads, &mut va, 0.01);
            let loss_b =
                b.fused_nesterov_step(x.view(), 0.2, &mut rngs(step), &solver, &mut vb, 0.01);
            assert_eq!(loss_a, loss_b, "step {step}: loss");
            assert!(
                a == b && va == vb,
                "step {step}: weights or velocities differ"
            );
        }
        assert_ne!(va, Autoencoder::zeros(), "the steps moved something");
    }
}
