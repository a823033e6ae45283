//! Rectified linear unit: `y = max(0, x)`; backward `dx = dy * [x > 0]`.
//!
//! At exactly `x = 0` the derivative is taken as 0, as PyTorch's `threshold_backward` and
//! Caffe's `relu_layer.cpp` (`bottom_data > 0`) do. Any subgradient in [0, 1] would be valid.

use crate::kernels::scalar::Scalar;
use ndarray::{Array, ArrayView, Dimension, Zip};

/// What the forward pass keeps: the output, whose sign is the sign of the input.
#[derive(Clone, Debug)]
pub struct ReluCache<T, D: Dimension> {
    pub output: Array<T, D>, // same shape as the input
}

pub fn infer<T: Scalar, D: Dimension>(x: ArrayView<T, D>) -> Array<T, D> {
    x.mapv(|v| if v > T::zero() { v } else { T::zero() })
}

pub fn forward<T: Scalar, D: Dimension>(x: ArrayView<T, D>) -> (Array<T, D>, ReluCache<T, D>) {
    let y = infer(x);
    (y.clone(), ReluCache { output: y })
}

pub fn backward<T: Scalar, D: Dimension>(
    d_out: ArrayView<T, D>,
    cache: &ReluCache<T, D>,
) -> Array<T, D> {
    // y > 0 exactly when x > 0, so the output serves as the mask.
    Zip::from(&d_out)
        .and(&cache.output)
        .map_collect(|&g, &y| if y > T::zero() { g } else { T::zero() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::gradcheck::{assert_gradient_matches, numeric_gradient};
    use crate::testutil::random_array;
    use ndarray::Ix2;

    #[test]
    fn gradient_matches_finite_differences() {
        // Uniform inputs in [-1, 1): none lies within the step (`gradcheck::STEP` = 1e-6) of the
        // kink at 0 (probability 1e-6 per element; this seed has none), so the central
        // difference is exact up to rounding.
        let x = random_array::<f64, Ix2>((4, 9), 60);
        let (y, cache) = forward(x.view());
        let dy = random_array::<f64, Ix2>(y.dim(), 61);
        let dx = backward(dy.view(), &cache);
        assert_gradient_matches(
            "relu dx",
            &dx.into_dyn(),
            &numeric_gradient(&x, &dy, |x| infer(x.view())),
        );
    }

    #[test]
    fn hand_worked_case() {
        // x = [-1 0 2]: y = [0 0 2]; dy = [5 5 5] -> dx = [0 0 5] (zero gradient at exactly 0).
        let x = ndarray::arr1(&[-1.0f32, 0.0, 2.0]);
        let (y, cache) = forward(x.view());
        assert_eq!(y, ndarray::arr1(&[0.0, 0.0, 2.0]));
        assert_eq!(
            backward(ndarray::arr1(&[5.0, 5.0, 5.0]).view(), &cache),
            ndarray::arr1(&[0.0, 0.0, 5.0])
        );
    }
}
