//! The fast gradient sign method (Goodfellow, Shlens, Szegedy 2015; the study's Eq. 1):
//! `X' = clip(X + eps * sign(grad_X L(theta, X, y)), 0, 1)`, with the true label `y`, the
//! model in evaluation mode (no dropout), and the gradient from the model's own backward pass.
//!
//! `sign(0) = 0`: a pixel whose gradient is exactly zero is left alone (`models::gradient::sign`,
//! where the rule is written down, so that counting differing signs uses the same one).
//!
//! Since the sign pattern of the clean image does not depend on eps, one gradient pass serves
//! every eps of a sweep: see [`perturb`].

use crate::models::gradient::sign;
use crate::models::Classifier;
use ndarray::{Array4, ArrayView4, Zip};

/// The sign pattern `sign(dL/dX)` `(N,1,28,28)` of the clean images under `model`.
pub fn gradient_sign(model: &dyn Classifier, x: ArrayView4<f32>, labels: &[u8]) -> Array4<f32> {
    model.input_gradient(x, labels).1.mapv(sign)
}

/// `clip(X + eps * direction, 0, 1)`.
pub fn perturb(x: ArrayView4<f32>, direction: ArrayView4<f32>, eps: f32) -> Array4<f32> {
    Zip::from(&x)
        .and(&direction)
        .par_map_collect(|&x, &d| (x + eps * d).clamp(0.0, 1.0))
}

/// One gradient-sign step of size `eps` against `model`.
pub fn fgsm(model: &dyn Classifier, x: ArrayView4<f32>, labels: &[u8], eps: f32) -> Array4<f32> {
    perturb(x, gradient_sign(model, x, labels).view(), eps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attacks::distortion::distortion_per_pixel;

    #[test]
    fn perturb_and_distortion_hand_worked_with_clipping() {
        // Pixels [0, 0.5, 1, 0.95], direction [-1, +1, +1, +1], eps 0.1:
        // raw [-0.1, 0.6, 1.1, 1.05] -> clipped [0, 0.6, 1, 1]; moved [0, 0.1, 0, 0.05]
        // -> distortion (0 + 0.1 + 0 + 0.05) / 4 = 0.0375 (not eps = 0.1: clipping absorbs most).
        let x = Array4::from_shape_vec((1, 1, 2, 2), vec![0.0, 0.5, 1.0, 0.95]).unwrap();
        let d = Array4::from_shape_vec((1, 1, 2, 2), vec![-1.0, 1.0, 1.0, 1.0]).unwrap();
        let p = perturb(x.view(), d.view(), 0.1);
        assert_eq!(p.into_raw_vec_and_offset().0, vec![0.0, 0.6, 1.0, 1.0]);
        let p = perturb(x.view(), d.view(), 0.1);
        assert!((distortion_per_pixel(x.view(), p.view()) - 0.0375).abs() < 1e-8);
        // eps = 0 leaves every image bit-for-bit unchanged.
        assert_eq!(perturb(x.view(), d.view(), 0.0), x);
    }
}
