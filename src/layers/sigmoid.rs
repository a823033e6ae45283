//! Logistic sigmoid: `y = 1 / (1 + exp(-x))`; backward `dx = dy * y * (1 - y)`
//! (the autoencoder's activation).

use crate::kernels::parallel::min_pieces_per_job;
use crate::kernels::scalar::Scalar;
use ndarray::{Array, ArrayView, Dimension, Zip};
use rayon::prelude::*;

/// What the forward pass keeps: the output, from which the derivative `y (1 - y)` follows.
#[derive(Clone, Debug)]
pub struct SigmoidCache<T, D: Dimension> {
    pub output: Array<T, D>, // same shape as the input
}

/// The logistic of every element. Rows (the first axis) run in parallel pieces of
/// [`ROWS_PER_PIECE`]; each element is computed on its own, so the pieces change no value. For
/// very negative x the f64 path's exp(-x) overflows to inf and 1/(1+inf) = 0, the right limit;
/// the f32 path clamps its argument first (`kernels::logistic`).
pub fn infer<T: Scalar, D: Dimension>(x: ArrayView<T, D>) -> Array<T, D> {
    let mut y = x.as_standard_layout().into_owned();
    let per_row = y.len() / y.shape().first().copied().unwrap_or(1).max(1);
    y.as_slice_mut()
        .expect("standard layout")
        .par_chunks_mut((ROWS_PER_PIECE * per_row).max(1))
        .with_min_len(min_pieces_per_job())
        .for_each(T::logistic_in_place);
    y
}

/// The logistic of every element of `x`, in place, on the calling thread (for a chunk that is
/// one of many pieces run side by side): the same values as [`infer`].
pub fn infer_in_place<T: Scalar, D: Dimension>(x: &mut Array<T, D>) {
    T::logistic_in_place(x.as_slice_memory_order_mut().expect("a contiguous array"));
}

/// Rows per parallel piece of [`infer`].
pub const ROWS_PER_PIECE: usize = 16;

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
        .par_map_collect(|&g, &y| g * y * (T::one() - y))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::gradcheck::{assert_gradient_matches, numeric_gradient};
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
