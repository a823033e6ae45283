//! Logistic sigmoid: `y = 1 / (1 + exp(-x))`; backward `dx = dy * y * (1 - y)`
//! (the autoencoder's activation).

use crate::scalar::Scalar;
use ndarray::{Array, ArrayView, Dimension, Zip};

/// What the forward pass keeps: the output, from which the derivative `y (1 - y)` follows.
#[derive(Clone, Debug)]
pub struct SigmoidCache<T, D: Dimension> {
    pub output: Array<T, D>, // same shape as the input
}

pub fn infer<T: Scalar, D: Dimension>(x: ArrayView<T, D>) -> Array<T, D> {
    // For very negative x, exp(-x) overflows to inf and 1/(1+inf) = 0: the right limit, no NaN.
    x.mapv(|v| T::one() / (T::one() + (-v).exp()))
}

pub fn forward<T: Scalar, D: Dimension>(x: ArrayView<T, D>) -> (Array<T, D>, SigmoidCache<T, D>) {
    let y = infer(x);
    (y.clone(), SigmoidCache { output: y })
}

pub fn backward<T: Scalar, D: Dimension>(
    d_out: ArrayView<T, D>,
    cache: &SigmoidCache<T, D>,
) -> Array<T, D> {
    Zip::from(&d_out)
        .and(&cache.output)
        .map_collect(|&g, &y| g * y * (T::one() - y))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::gradcheck::{assert_gradient_matches, numeric_gradient};
    use crate::testutil::random_array;
    use ndarray::Ix2;

    #[test]
    fn gradient_matches_finite_differences() {
        let x = random_array::<f64, Ix2>((3, 7), 70) * 4.0;
        let (y, cache) = forward(x.view());
        let dy = random_array::<f64, Ix2>(y.dim(), 71);
        let dx = backward(dy.view(), &cache);
        assert_gradient_matches(
            "sigmoid dx",
            &dx.into_dyn(),
            &numeric_gradient(&x, &dy, |x| infer(x.view())),
        );
    }

    #[test]
    fn hand_worked_case() {
        // sigmoid(0) = 1/2, derivative 1/2 * 1/2 = 1/4; extreme inputs saturate without NaN.
        let (y, cache) = forward(ndarray::arr1(&[0.0f64, -1000.0, 1000.0]).view());
        assert_eq!(y, ndarray::arr1(&[0.5, 0.0, 1.0]));
        assert_eq!(
            backward(ndarray::arr1(&[1.0, 1.0, 1.0]).view(), &cache),
            ndarray::arr1(&[0.25, 0.0, 0.0])
        );
    }
}
