//! Fully connected (inner product) layer: `y = x W^T + b`, with `W` in PyTorch's `(O, I)` layout
//! (Caffe's `InnerProduct` stores the same `(num_output, input)` matrix).
//!
//! Dimension legend: `N` batch, `I` inputs, `O` outputs.
//!
//! Backward (docs/math.md, "Dense"):
//!   `dW (O, I) += dY^T (O, N) x X (N, I)`,  `db += sum_n dY[n, :]`,  `dX (N, I) = dY (N, O) x W (O, I)`.

use crate::kernels::dense_fma::{self, Beta};
use crate::kernels::gemm::gemm;
use crate::kernels::par_build::par_zeros;
use crate::kernels::parallel::{min_pieces_per_job, piece_len};
use crate::kernels::scalar::{as_f32_view, as_f32_view_mut, Scalar};
use crate::kernels::scratch::with_scratch;
use ndarray::{
    Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis, CowArray, Ix2,
};
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
            weight: par_zeros((outputs, inputs)),
            bias: Array1::zeros(outputs),
        }
    }
}

/// `y (N, O)` without a cache. The outputs are cut into pieces ([`piece_len`]) computed in
/// parallel, each from its own rows of `W` and the whole (small) batch `X`: through
/// `kernels::dense_fma` where the CPU has AVX2 + FMA (f32), else through `matrixmultiply`,
/// with the same bits either way.
pub fn infer<T: Scalar>(x: ArrayView2<T>, p: &DenseParams<T>) -> Array2<T> {
    let n = x.nrows();
    let outputs = p.bias.len();
    // Broadcast the bias into Y first, then accumulate the product on top (beta = 1).
    let mut y = p
        .bias
        .broadcast((n, outputs))
        .expect("bias broadcast")
        .to_owned();
    let piece = piece_len(outputs, n * x.ncols() * outputs);
    let pieces = y
        .axis_chunks_iter_mut(Axis(1), piece)
        .into_par_iter()
        .zip(p.weight.axis_chunks_iter(Axis(0), piece).into_par_iter())
        .with_min_len(min_pieces_per_job());
    // With AVX2 + FMA, f32 goes through `dense_fma`, which reads W where it lies instead of
    // packing its transposed view element by element, and gives the GEMM's bits.
    let level = dense_fma::chosen_level().filter(|_| unit_columns(&p.weight.view()));
    match (as_f32_view(x), level) {
        (Some(x32), Some(level)) => {
            let batch = dense_fma::Batch::new(x32);
            pieces.for_each(|(yc, wc)| {
                let (yc, wc) = (as_f32_view_mut(yc), as_f32_view(wc));
                let (yc, wc) = (yc.expect("T is f32: x was"), wc.expect("T is f32: x was"));
                dense_fma::forward(level, &batch, wc, yc)
            })
        }
        // Y[:, o] (N, o) += X (N, I) x W[o, :]^T (I, o)
        _ => pieces.for_each(|(yc, wc)| gemm(T::one(), x, wc.t(), T::one(), yc)),
    }
    y
}

/// [`infer`] from the weight already transposed, `wt = W^T (I, O)` in standard layout
/// (`kernels::transpose`), as one product on the calling thread: for a chunk of a large batch
/// that is one of many pieces run side by side. `matrixmultiply` packs a row-major right operand
/// with contiguous copies, where `W^T` as a view of `W` is gathered element by element; the sums
/// are the same, in the same order, so `y` has the same bits as [`infer`]'s.
pub fn infer_transposed<T: Scalar>(
    x: ArrayView2<T>,
    wt: ArrayView2<T>,
    bias: ArrayView1<T>,
) -> Array2<T> {
    let n = x.nrows();
    let outputs = bias.len();
    let mut y = bias
        .broadcast((n, outputs))
        .expect("bias broadcast")
        .to_owned();
    // Y (N, O) += X (N, I) x W^T (I, O)
    gemm(T::one(), x, wt, T::one(), y.view_mut());
    y
}

/// `y (N, O)`, keeping the input for the backward pass.
///
/// `x` may be a view (copied into the cache) or an owned array (moved into it, no copy: what
/// the network passes, since it has no further use for a layer's input).
pub fn forward<'a, T: Scalar>(
    x: impl Into<CowArray<'a, T, Ix2>>,
    p: &DenseParams<T>,
) -> (Array2<T>, DenseCache<T>) {
    let x = x.into();
    let y = infer(x.view(), p);
    (
        y,
        DenseCache {
            input: x.into_owned(),
        },
    )
}

/// Accumulates `grads.weight += dL/dW` and `grads.bias += dL/db`.
///
/// `dW` is cut by its rows (output units) into pieces computed in parallel: each computes
/// whole dot products over the batch, so the cut changes no sum.
pub fn backward_params<T: Scalar>(
    d_out: ArrayView2<T>,
    cache: &DenseCache<T>,
    grads: &mut DenseParams<T>,
) {
    let piece = piece_len(grads.weight.nrows(), d_out.nrows() * grads.weight.len());
    grads
        .weight
        .axis_chunks_iter_mut(Axis(0), piece)
        .into_par_iter()
        .zip(d_out.axis_chunks_iter(Axis(1), piece).into_par_iter())
        .with_min_len(min_pieces_per_job())
        // dW[o, :] (o, I) += dY[:, o]^T (o, N) x X (N, I)
        .for_each(|(dw, dy)| product_by_rows(dy.t(), cache.input.view(), Beta::One, dw));
    grads.bias += &d_out.sum_axis(Axis(0));
}

/// Whether a matrix's rows are contiguous, as `dense_fma` needs of the operands it reads or
/// writes by rows (a layer's own arrays always are; a caller's transposed view may not be).
fn unit_columns<T>(m: &ArrayView2<T>) -> bool {
    m.ncols() <= 1 || m.strides()[1] == 1
}

/// `c (M, N) = a (M, K) b (K, N)`, plus `c` when `beta` is [`Beta::One`], onto zeros with
/// [`Beta::OntoZeros`], for one piece of a product whose lanes can be `c`'s rows (the input
/// gradient `dX = dY W`, the weight gradient `dW += dY^T X`): with AVX2 + FMA, f32 goes through
/// `dense_fma::product`, which reads `b` where it lies instead of packing it, and gives the
/// GEMM's bits; else the GEMM (onto `c` zeroed first, for [`Beta::OntoZeros`]).
fn product_by_rows<T: Scalar>(
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    beta: Beta,
    mut c: ArrayViewMut2<T>,
) {
    let level = dense_fma::chosen_level().filter(|_| unit_columns(&b) && unit_columns(&c.view()));
    match (as_f32_view(a), as_f32_view(b), level) {
        (Some(a), Some(b), Some(level)) => {
            let c = as_f32_view_mut(c).expect("T is f32: a was");
            dense_fma::product(level, a, b, c, beta)
        }
        _ => {
            let beta = match beta {
                Beta::Zero => T::zero(),
                Beta::One => T::one(),
                Beta::OntoZeros => {
                    c.fill(T::zero());
                    T::one()
                }
            };
            gemm(T::one(), a, b, beta, c)
        }
    }
}

/// [`backward_params`] fused with a solver's update, for a training step that never holds the
/// whole gradient in memory: each piece of `dW`'s rows is summed onto zeros in a scratch block
/// (the same operations as [`backward_params`] into a zeroed gradient, so the same bits) and at
/// once, while in cache, handed to `update_weight(W rows, dW rows, velocity rows)`; then
/// `update_bias(b, db, velocity)`. The caller takes the input gradient first: it needs the old
/// `W`.
pub fn backward_params_then_update<T: Scalar>(
    d_out: ArrayView2<T>,
    cache: &DenseCache<T>,
    params: &mut DenseParams<T>,
    velocity: &mut DenseParams<T>,
    update_weight: impl Fn(ArrayViewMut2<T>, ArrayView2<T>, ArrayViewMut2<T>) + Sync + Send,
    update_bias: impl FnOnce(ArrayViewMut1<T>, ArrayView1<T>, ArrayViewMut1<T>),
) {
    let piece = piece_len(params.weight.nrows(), d_out.nrows() * params.weight.len());
    params
        .weight
        .axis_chunks_iter_mut(Axis(0), piece)
        .into_par_iter()
        .zip(
            velocity
                .weight
                .axis_chunks_iter_mut(Axis(0), piece)
                .into_par_iter(),
        )
        .zip(d_out.axis_chunks_iter(Axis(1), piece).into_par_iter())
        .with_min_len(min_pieces_per_job())
        .for_each(|((w, v), dy)| {
            // A block of this thread's scratch, not a new zeroed one: `Beta::OntoZeros` sums
            // onto +0.0 without reading it (docs/performance.md: the zeroing showed in `perf`).
            with_scratch::<T, _>(w.len(), |block| {
                let mut dw = ArrayViewMut2::from_shape(w.raw_dim(), block).expect("w's size");
                // dW[o, :] (o, I) = 0 + dY[:, o]^T (o, N) x X (N, I)
                product_by_rows(dy.t(), cache.input.view(), Beta::OntoZeros, dw.view_mut());
                update_weight(w, dw.view(), v);
            })
        });
    // Onto zeros, as `backward_params` accumulates into a zeroed gradient: the same bits.
    let mut db = Array1::zeros(params.bias.len());
    db += &d_out.sum_axis(Axis(0));
    update_bias(params.bias.view_mut(), db.view(), velocity.bias.view_mut());
}

/// The input gradient `dX (N, I) = dY (N, O) x W (O, I)`, cut by the inputs into pieces
/// computed in parallel, each from its own columns of `W` (through `dense_fma` where the CPU
/// has AVX2 + FMA, else the GEMM: the same bits).
pub fn backward_input<T: Scalar>(d_out: ArrayView2<T>, p: &DenseParams<T>) -> Array2<T> {
    let mut dx = Array2::zeros((d_out.nrows(), p.weight.ncols()));
    let piece = piece_len(p.weight.ncols(), d_out.nrows() * p.weight.len());
    dx.axis_chunks_iter_mut(Axis(1), piece)
        .into_par_iter()
        .zip(p.weight.axis_chunks_iter(Axis(1), piece).into_par_iter())
        .with_min_len(min_pieces_per_job())
        // dX[:, i] (N, i) = dY (N, O) x W[:, i] (O, i)
        .for_each(|(dxc, wc)| product_by_rows(d_out, wc, Beta::Zero, dxc));
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
    use crate::testutil::gradcheck::{assert_gradient_matches, numeric_gradient};
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

    /// The transposed-weight path gives the very bits of the pieces' path, on shapes that cut
    /// into several pieces (300 outputs) and that do not (7).
    #[test]
    fn transposed_weight_path_equals_the_pieces_bit_for_bit() {
        for &(n, i, o) in &[(5, 13, 7), (37, 270, 300), (250, 784, 1000)] {
            let p = DenseParams {
                weight: random_array::<f32, Ix2>((o, i), 61),
                bias: random_array::<f32, Ix1>(o, 62),
            };
            let x = random_array::<f32, Ix2>((n, i), 63);
            let wt = crate::kernels::transpose::transpose(p.weight.view());
            let fast = infer_transposed(x.view(), wt.view(), p.bias.view());
            assert_eq!(fast, infer(x.view(), &p), "{n} x {i} -> {o}");
        }
    }

    /// 37 images, 270 inputs, 300 outputs: the outputs are cut into four pieces of 75 (forward,
    /// dW) and the inputs into pieces of 68, 68, 68 and 66 (dX); every piece against plain loops
    /// (f64: the same products summed in another order, equal to 1e-12).
    #[test]
    fn pieces_match_naive_loops() {
        let p = DenseParams {
            weight: random_array::<f64, Ix2>((300, 270), 57),
            bias: random_array::<f64, Ix1>(300, 58),
        };
        let x = random_array::<f64, Ix2>((37, 270), 59);
        let (y, cache) = forward(x.view(), &p);
        let naive_y = Array2::from_shape_fn((37, 300), |(n, o)| {
            p.bias[o] + (0..270).map(|i| x[[n, i]] * p.weight[[o, i]]).sum::<f64>()
        });
        assert_close(
            "dense y (pieces)",
            y.view().into_dyn(),
            naive_y.view().into_dyn(),
            1e-12,
            1e-12,
        );
        let dy = random_array::<f64, Ix2>(y.dim(), 60);
        let mut grads = DenseParams::zeros(300, 270);
        let dx = backward(dy.view(), &cache, &p, &mut grads);
        let naive_dw = Array2::from_shape_fn((300, 270), |(o, i)| {
            (0..37).map(|n| dy[[n, o]] * x[[n, i]]).sum::<f64>()
        });
        let naive_dx = Array2::from_shape_fn((37, 270), |(n, i)| {
            (0..300).map(|o| dy[[n, o]] * p.weight[[o, i]]).sum::<f64>()
        });
        let naive_db = Array1::from_shape_fn(300, |o| (0..37).map(|n| dy[[n, o]]).sum::<f64>());
        assert_close(
            "dense dW (pieces)",
            grads.weight.view().into_dyn(),
            naive_dw.view().into_dyn(),
            1e-12,
            1e-12,
        );
        assert_close(
            "dense dx (pieces)",
            dx.view().into_dyn(),
            naive_dx.view().into_dyn(),
            1e-12,
            1e-12,
        );
        assert_close(
            "dense db (pieces)",
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
