//! Fully connected (inner product) layer: `y = x W^T + b`, with `W` in PyTorch's `(O, I)` layout
//! (Caffe's `InnerProduct` stores the same `(num_output, input)` matrix).
//!
//! Dimension legend: `N` batch, `I` inputs, `O` outputs.
//!
//! Backward (docs/math.md, "Dense"):
//!   `dW (O, I) += dY^T (O, N) x X (N, I)`,  `db += sum_n dY[n, :]`,  `dX (N, I) = dY (N, O) x W (O, I)`.

use crate::kernels::gemm::gemm;
use crate::kernels::parallel::ROWS_PER_TASK;
use crate::scalar::Scalar;
use ndarray::{Array1, Array2, ArrayView2, Axis};
use rayon::prelude::*;

/// The learnable parameters of a dense layer.
#[derive(Clone, Debug, PartialEq)]
pub struct DenseParams<T> {
    pub weight: Array2<T>, // (O, I)
    pub bias: Array1<T>,   // (O)
}

/// What the forward pass keeps for the backward pass.
#[derive(Clone, Debug)]
pub struct DenseCache<T> {
    pub input: Array2<T>, // (N, I): needed for dW
}

impl<T: Scalar> DenseParams<T> {
    pub fn zeros(outputs: usize, inputs: usize) -> Self {
        DenseParams {
            weight: Array2::zeros((outputs, inputs)),
            bias: Array1::zeros(outputs),
        }
    }
}

/// `y (N, O)` without a cache. Rows of the batch in parallel, [`ROWS_PER_TASK`] at a time.
pub fn infer<T: Scalar>(x: ArrayView2<T>, p: &DenseParams<T>) -> Array2<T> {
    let n = x.nrows();
    // Broadcast the bias into Y first, then accumulate the product on top (beta = 1).
    let mut y = p
        .bias
        .broadcast((n, p.bias.len()))
        .expect("bias broadcast")
        .to_owned();
    y.axis_chunks_iter_mut(Axis(0), ROWS_PER_TASK)
        .into_par_iter()
        .zip(x.axis_chunks_iter(Axis(0), ROWS_PER_TASK).into_par_iter())
        // Y (n, O) += X (n, I) x W^T (I, O)
        .for_each(|(yc, xc)| gemm(T::one(), xc, p.weight.t(), T::one(), yc));
    y
}

/// `y (N, O)`, keeping the input for the backward pass.
pub fn forward<T: Scalar>(x: ArrayView2<T>, p: &DenseParams<T>) -> (Array2<T>, DenseCache<T>) {
    (
        infer(x, p),
        DenseCache {
            input: x.to_owned(),
        },
    )
}

/// Accumulates `grads.weight += dL/dW` and `grads.bias += dL/db`.
///
/// `dW` is split by its rows (output units): each task computes whole dot products over the
/// batch, so the split changes no sum.
pub fn backward_params<T: Scalar>(
    d_out: ArrayView2<T>,
    cache: &DenseCache<T>,
    grads: &mut DenseParams<T>,
) {
    grads
        .weight
        .axis_chunks_iter_mut(Axis(0), ROWS_PER_TASK)
        .into_par_iter()
        .zip(
            d_out
                .axis_chunks_iter(Axis(1), ROWS_PER_TASK)
                .into_par_iter(),
        )
        // dW (o, I) += dY^T (o, N) x X (N, I)
        .for_each(|(dw, dy)| gemm(T::one(), dy.t(), cache.input.view(), T::one(), dw));
    grads.bias += &d_out.sum_axis(Axis(0));
}

/// The input gradient `dX (N, I) = dY (N, O) x W (O, I)`; rows of the batch in parallel.
pub fn backward_input<T: Scalar>(d_out: ArrayView2<T>, p: &DenseParams<T>) -> Array2<T> {
    let mut dx = Array2::zeros((d_out.nrows(), p.weight.ncols()));
    dx.axis_chunks_iter_mut(Axis(0), ROWS_PER_TASK)
        .into_par_iter()
        .zip(
            d_out
                .axis_chunks_iter(Axis(0), ROWS_PER_TASK)
                .into_par_iter(),
        )
        .for_each(|(dxc, dyc)| gemm(T::one(), dyc, p.weight.view(), T::zero(), dxc));
    dx
}

/// Both gradients.
pub fn backward<T: Scalar>(
    d_out: ArrayView2<T>,
    cache: &DenseCache<T>,
    p: &DenseParams<T>,
    grads: &mut DenseParams<T>,
) -> Array2<T> {
    backward_params(d_out, cache, grads);
    backward_input(d_out, p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::gradcheck::{assert_gradient_matches, numeric_gradient};
    use crate::testutil::{assert_close, random_array};
    use ndarray::{Array1, Ix1, Ix2};

    #[test]
    fn forward_matches_naive_loop() {
        let p = DenseParams {
            weight: random_array::<f32, Ix2>((7, 13), 50),
            bias: random_array::<f32, Ix1>(7, 51),
        };
        let x = random_array::<f32, Ix2>((5, 13), 52);
        let y = infer(x.view(), &p);
        let naive = Array2::from_shape_fn((5, 7), |(n, o)| {
            p.bias[o] + (0..13).map(|i| x[[n, i]] * p.weight[[o, i]]).sum::<f32>()
        });
        // 13 products of magnitude <= 1 in f32: rounding below 13 * 6e-8, so 1e-5 is ample.
        assert_close(
            "dense y",
            y.view().into_dyn(),
            naive.view().into_dyn(),
            1e-5,
            0.0,
        );
    }

    /// 37 rows and 40 outputs span three `ROWS_PER_TASK` pieces each way: every piece of the
    /// row-split GEMMs against plain loops (f64: same products, other order, equal to 1e-12).
    #[test]
    fn row_pieces_match_naive_loops() {
        let p = DenseParams {
            weight: random_array::<f64, Ix2>((40, 9), 57),
            bias: random_array::<f64, Ix1>(40, 58),
        };
        let x = random_array::<f64, Ix2>((37, 9), 59);
        let (y, cache) = forward(x.view(), &p);
        let naive_y = Array2::from_shape_fn((37, 40), |(n, o)| {
            p.bias[o] + (0..9).map(|i| x[[n, i]] * p.weight[[o, i]]).sum::<f64>()
        });
        assert_close(
            "dense y (37 rows)",
            y.view().into_dyn(),
            naive_y.view().into_dyn(),
            1e-12,
            1e-12,
        );
        let dy = random_array::<f64, Ix2>(y.dim(), 60);
        let mut grads = DenseParams::zeros(40, 9);
        let dx = backward(dy.view(), &cache, &p, &mut grads);
        let naive_dw = Array2::from_shape_fn((40, 9), |(o, i)| {
            (0..37).map(|n| dy[[n, o]] * x[[n, i]]).sum::<f64>()
        });
        let naive_dx = Array2::from_shape_fn((37, 9), |(n, i)| {
            (0..40).map(|o| dy[[n, o]] * p.weight[[o, i]]).sum::<f64>()
        });
        let naive_db = Array1::from_shape_fn(40, |o| (0..37).map(|n| dy[[n, o]]).sum::<f64>());
        assert_close(
            "dense dW (37 rows)",
            grads.weight.view().into_dyn(),
            naive_dw.view().into_dyn(),
            1e-12,
            1e-12,
        );
        assert_close(
            "dense dx (37 rows)",
            dx.view().into_dyn(),
            naive_dx.view().into_dyn(),
            1e-12,
            1e-12,
        );
        assert_close(
            "dense db (37 rows)",
            grads.bias.view().into_dyn(),
            naive_db.view().into_dyn(),
            1e-12,
            1e-12,
        );
    }

    #[test]
    fn gradients_match_finite_differences() {
        let p = DenseParams {
            weight: random_array::<f64, Ix2>((4, 6), 53),
            bias: random_array::<f64, Ix1>(4, 54),
        };
        let x = random_array::<f64, Ix2>((3, 6), 55);
        let (y, cache) = forward(x.view(), &p);
        let dy = random_array::<f64, Ix2>(y.dim(), 56);
        let mut grads = DenseParams::zeros(4, 6);
        let dx = backward(dy.view(), &cache, &p, &mut grads);
        assert_gradient_matches(
            "dense dx",
            &dx.into_dyn(),
            &numeric_gradient(&x, &dy, |x| infer(x.view(), &p)),
        );
        let num_dw = numeric_gradient(&p.weight, &dy, |w| {
            infer(
                x.view(),
                &DenseParams {
                    weight: w.clone(),
                    bias: p.bias.clone(),
                },
            )
        });
        assert_gradient_matches("dense dW", &grads.weight.clone().into_dyn(), &num_dw);
        let num_db = numeric_gradient(&p.bias, &dy, |b| {
            infer(
                x.view(),
                &DenseParams {
                    weight: p.weight.clone(),
                    bias: b.clone(),
                },
            )
        });
        assert_gradient_matches("dense db", &grads.bias.clone().into_dyn(), &num_db);
    }

    #[test]
    fn hand_worked_case() {
        // x = [1 2], W = [[3 4]], b = [5]: y = 1*3 + 2*4 + 5 = 16.
        // dL/dy = 1 -> dW = x = [[1 2]], db = 1, dx = W = [3 4].
        let p = DenseParams {
            weight: ndarray::arr2(&[[3.0f64, 4.0]]),
            bias: ndarray::arr1(&[5.0]),
        };
        let (y, cache) = forward(ndarray::arr2(&[[1.0, 2.0]]).view(), &p);
        assert_eq!(y, ndarray::arr2(&[[16.0]]));
        let mut g = DenseParams::zeros(1, 2);
        let dx = backward(ndarray::arr2(&[[1.0]]).view(), &cache, &p, &mut g);
        assert_eq!(g.weight, ndarray::arr2(&[[1.0, 2.0]]));
        assert_eq!(g.bias, ndarray::arr1(&[1.0]));
        assert_eq!(dx, ndarray::arr2(&[[3.0, 4.0]]));
    }
}
