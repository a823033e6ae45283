//! Learning-rate policies, as Caffe's `SGDSolver::GetLearningRate` (`src/caffe/solvers/sgd_solver.cpp`).

use serde::{Deserialize, Serialize};

/// Caffe's `inv` policy: `base_lr * (1 + gamma * iter)^(-power)`, where `iter` counts the updates
/// already made (0 for the first). `lenet_solver.prototxt`: base_lr 0.01, gamma 1e-4, power 0.75.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct InvPolicy {
    pub base_lr: f64,
    pub gamma: f64,
    pub power: f64,
}

impl InvPolicy {
    pub const LENET: InvPolicy = InvPolicy {
        base_lr: 0.01,
        gamma: 1e-4,
        power: 0.75,
    };

    pub fn rate(&self, iter: u64) -> f64 {
        self.base_lr * (1.0 + self.gamma * iter as f64).powf(-self.power)
    }
}

/// Caffe's `step` policy: `base_lr * gamma^floor(iter / stepsize)`.
/// `mnist_autoencoder_solver_nesterov.prototxt`: base_lr 0.01, gamma 0.1, stepsize 10,000.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepPolicy {
    pub base_lr: f64,
    pub gamma: f64,
    pub stepsize: u64,
}

impl StepPolicy {
    pub fn rate(&self, iter: u64) -> f64 {
        self.base_lr * self.gamma.powi((iter / self.stepsize.max(1)) as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_schedule_hand_worked() {
        let p = StepPolicy {
            base_lr: 0.01,
            gamma: 0.1,
            stepsize: 10_000,
        };
        assert_eq!(p.rate(9_999), 0.01);
        assert!((p.rate(10_000) - 0.001).abs() < 1e-18);
        assert!((p.rate(25_000) - 0.0001).abs() < 1e-18);
    }

    #[test]
    fn lenet_schedule_hand_worked() {
        let p = InvPolicy::LENET;
        assert_eq!(p.rate(0), 0.01);
        // iter 10,000: 0.01 * 2^-0.75 = 0.01 / 1.6817928... = 0.0059460356...
        assert!((p.rate(10_000) - 0.005_946_035_575_013_605).abs() < 1e-15);
    }
}
