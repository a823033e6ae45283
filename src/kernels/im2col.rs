//! im2col and col2im for a valid (unpadded), stride-1 convolution, and the naive direct
//! convolution loops that the GEMM path is tested against.
//!
//! Dimension legend: `N` batch, `C` input channels, `O` output channels, `H, W` input height and
//! width, `K` kernel size, `OH = H - K + 1`, `OW = W - K + 1`, `P = OH * OW` output positions.
//!
//! `cols` has one row per weight of a filter and one column per output position:
//! `cols[(c*K + ki)*K + kj, oi*OW + oj] = x[c, oi + ki, oj + kj]`. The row order is the order of
//! a PyTorch/Caffe weight `(O, C, K, K)` flattened to `(O, C*K*K)`, so the convolution of one
//! image is the single product `Y (O, P) = W (O, C*K*K) x cols (C*K*K, P)`.

use crate::kernels::scalar::Scalar;
use ndarray::{
    Array4, ArrayView1, ArrayView2, ArrayView3, ArrayView4, ArrayViewMut2, ArrayViewMut3,
};

/// Output side of a valid convolution: `H - K + 1`.
pub fn out_size(h: usize, k: usize) -> usize {
    assert!(k <= h, "kernel {k} larger than input {h}");
    h - k + 1
}

/// Fills `cols (C*K*K, OH*OW)` from one image `x (C, H, W)`. `cols` may be a column block of a
/// wider matrix (one image's columns of a whole batch's `cols`), as long as its rows are
/// contiguous.
pub fn im2col<T: Scalar>(x: ArrayView3<T>, k: usize, mut cols: ArrayViewMut2<T>) {
    let (c_in, h, w) = x.dim();
    let (oh, ow) = (out_size(h, k), out_size(w, k));
    assert_eq!(
        cols.dim(),
        (c_in * k * k, oh * ow),
        "im2col: cols has the wrong shape"
    );
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let mut rows = cols.rows_mut().into_iter();
    for plane in xs.chunks_exact(h * w) {
        for ki in 0..k {
            for kj in 0..k {
                let mut row = rows.next().expect("C*K*K rows");
                let dst = row
                    .as_slice_mut()
                    .expect("im2col: each row of cols must be contiguous");
                // Output row oi of this (c, ki, kj) reads the input run starting at (oi+ki, kj).
                // (A plain loop, not copy_from_slice: runs are as short as 8 values, where a
                // memmove call costs more than the copy; measured with perf on conv2.)
                for (oi, run) in dst.chunks_exact_mut(ow).enumerate() {
                    let src = &plane[(oi + ki) * w + kj..][..ow];
                    for (d, &v) in run.iter_mut().zip(src) {
                        *d = v;
                    }
                }
            }
        }
    }
    debug_assert_eq!(oh * ow, cols.ncols());
}

/// [`im2col`] for a group of `G` images at once: fills `out` with the row-major matrix
/// `cols_g (C*K*K, G*P)`, image `i` in columns `i*P .. (i+1)*P`, and returns it as a view.
/// One pass over a plain slice: the per-row view bookkeeping of [`im2col`] cost as much as the
/// copying for conv2's short runs (measured with perf on layers/forward/conv2). `im2col` is its
/// reference in the tests.
pub fn im2col_group<'a, T: Scalar>(
    x: ArrayView4<T>,
    k: usize,
    out: &'a mut [T],
) -> ArrayViewMut2<'a, T> {
    let (g, c_in, h, w) = x.dim();
    let (oh, ow) = (out_size(h, k), out_size(w, k));
    let (p, rows) = (oh * ow, c_in * k * k);
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let out = &mut out[..rows * g * p];
    for (r, row) in out.chunks_exact_mut(g * p).enumerate() {
        let (c, ki, kj) = (r / (k * k), (r / k) % k, r % k);
        for (i, image_cols) in row.chunks_exact_mut(p).enumerate() {
            let plane = &xs[(i * c_in + c) * h * w..][..h * w];
            // Output row oi of this (c, ki, kj) reads the input run starting at (oi+ki, kj).
            copy_runs(image_cols, &plane[ki * w + kj..], w, ow);
        }
    }
    ArrayViewMut2::from_shape((rows, g * p), out).expect("sizes agree")
}

/// The adjoint of [`im2col`]: `dx (C, H, W) += col2im(dcols (C*K*K, OH*OW))`. Each input pixel
/// collects the gradient of every (output position, weight) pair that read it. Like `im2col`,
/// `dcols` may be a column block of a wider matrix whose rows are contiguous.
pub fn col2im_add<T: Scalar>(dcols: ArrayView2<T>, k: usize, mut dx: ArrayViewMut3<T>) {
    let (c_in, h, w) = dx.dim();
    let (oh, ow) = (out_size(h, k), out_size(w, k));
    assert_eq!(
        dcols.dim(),
        (c_in * k * k, oh * ow),
        "col2im: dcols has the wrong shape"
    );
    let xs = dx.as_slice_mut().expect("col2im: dx must be contiguous");
    let mut rows = dcols.rows().into_iter();
    for plane in xs.chunks_exact_mut(h * w) {
        for ki in 0..k {
            for kj in 0..k {
                let row = rows.next().expect("C*K*K rows");
                let src = row
                    .to_slice()
                    .expect("col2im: each row of dcols must be contiguous");
                // Output row oi of this (c, ki, kj) was read from the input run at (oi+ki, kj).
                add_runs(&mut plane[ki * w + kj..], src, w, ow);
            }
        }
    }
    debug_assert_eq!(oh * ow, dcols.ncols());
}

/// `dst` holds runs of `ow` values; run `i` is copied from `src[i * w..][..ow]` (a column of
/// output positions reading a strided block of the input).
///
/// The runs are short and their length is known only at run time, so a `memmove` call per run
/// costs more than the copy. Conv2's width, 8, is dispatched to a copy of fixed length, which
/// the compiler turns into a few vector moves (about twice as fast for conv2's im2col). Other
/// widths, conv1's 24 included, take an element-by-element loop: a fixed-length copy of 24 was
/// slower there. Both measured in docs/performance.md, "What was done".
#[inline]
fn copy_runs<T: Copy>(dst: &mut [T], src: &[T], w: usize, ow: usize) {
    #[inline(always)]
    fn fixed<T: Copy, const OW: usize>(dst: &mut [T], src: &[T], w: usize) {
        for (i, run) in dst.chunks_exact_mut(OW).enumerate() {
            let run: &mut [T; OW] = run.try_into().expect("OW values");
            *run = src[i * w..i * w + OW].try_into().expect("OW values");
        }
    }
    match ow {
        8 => fixed::<T, 8>(dst, src, w),
        _ => {
            for (i, run) in dst.chunks_exact_mut(ow).enumerate() {
                for (d, &v) in run.iter_mut().zip(&src[i * w..][..ow]) {
                    *d = v;
                }
            }
        }
    }
}

/// The adjoint of [`copy_runs`]: run `i` of `src` is added into `dst[i * w..][..ow]`. Both of
/// LeNet's widths are dispatched to fixed lengths here: dropping the 24 made conv1's input
/// gradient 6% slower (`cargo bench -- backward_input/conv1`).
#[inline]
fn add_runs<T: Scalar>(dst: &mut [T], src: &[T], w: usize, ow: usize) {
    #[inline(always)]
    fn fixed<T: Scalar, const OW: usize>(dst: &mut [T], src: &[T], w: usize) {
        for (i, run) in src.chunks_exact(OW).enumerate() {
            let run: &[T; OW] = run.try_into().expect("OW values");
            let d: &mut [T; OW] = (&mut dst[i * w..i * w + OW]).try_into().expect("OW values");
            for (x, &g) in d.iter_mut().zip(run) {
                *x += g;
            }
        }
    }
    match ow {
        8 => fixed::<T, 8>(dst, src, w),
        24 => fixed::<T, 24>(dst, src, w),
        _ => {
            for (i, run) in src.chunks_exact(ow).enumerate() {
                for (x, &g) in dst[i * w..i * w + ow].iter_mut().zip(run) {
                    *x += g;
                }
            }
        }
    }
}

/// Naive direct convolution: `y[n,o,i,j] = b[o] + sum_{c,ki,kj} w[o,c,ki,kj] x[n,c,i+ki,j+kj]`.
pub fn conv2d_naive<T: Scalar>(
    x: ArrayView4<T>,
    weight: ArrayView4<T>,
    bias: ArrayView1<T>,
) -> Array4<T> {
    let (n, c_in, h, w) = x.dim();
    let (o_ch, c2, k, _) = weight.dim();
    assert_eq!(c_in, c2);
    let (oh, ow) = (out_size(h, k), out_size(w, k));
    Array4::from_shape_fn((n, o_ch, oh, ow), |(b, o, i, j)| {
        let mut s = bias[o];
        for c in 0..c_in {
            for ki in 0..k {
                for kj in 0..k {
                    s += weight[[o, c, ki, kj]] * x[[b, c, i + ki, j + kj]];
                }
            }
        }
        s
    })
}

/// Naive backward of [`conv2d_naive`]: returns `(dx, dweight, dbias)` by scattering each output
/// gradient to every input and weight that produced it.
pub fn conv2d_naive_backward<T: Scalar>(
    d_out: ArrayView4<T>,
    x: ArrayView4<T>,
    weight: ArrayView4<T>,
) -> (Array4<T>, Array4<T>, ndarray::Array1<T>) {
    let (n, c_in, h, w) = x.dim();
    let (o_ch, _, k, _) = weight.dim();
    let (oh, ow) = (out_size(h, k), out_size(w, k));
    let mut dx = Array4::zeros((n, c_in, h, w));
    let mut dw = Array4::zeros(weight.dim());
    let mut db = ndarray::Array1::zeros(o_ch);
    for b in 0..n {
        for o in 0..o_ch {
            for i in 0..oh {
                for j in 0..ow {
                    let g = d_out[[b, o, i, j]];
                    db[o] += g;
                    for c in 0..c_in {
                        for ki in 0..k {
                            for kj in 0..k {
                                dx[[b, c, i + ki, j + kj]] += weight[[o, c, ki, kj]] * g;
                                dw[[o, c, ki, kj]] += x[[b, c, i + ki, j + kj]] * g;
                            }
                        }
                    }
                }
            }
        }
    }
    (dx, dw, db)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::random_array;
    use ndarray::{Array2, Array3, Ix3};

    #[test]
    fn group_im2col_equals_per_image_im2col() {
        let (g, c, h, w, k) = (3, 2, 6, 5, 3);
        let x = random_array::<f32, ndarray::Ix4>((g, c, h, w), 7);
        let p = out_size(h, k) * out_size(w, k);
        let mut want = Array2::zeros((c * k * k, g * p));
        for i in 0..g {
            im2col(
                x.slice(ndarray::s![i, .., .., ..]),
                k,
                want.slice_mut(ndarray::s![.., i * p..(i + 1) * p]),
            );
        }
        let mut buffer = vec![f32::NAN; c * k * k * (g + 2) * p]; // larger than needed, garbage-filled
        assert_eq!(im2col_group(x.view(), k, &mut buffer), want);
    }

    #[test]
    fn im2col_hand_worked_case() {
        // x = [[0 1 2] [3 4 5] [6 7 8]], K = 2: four positions, four weights.
        // row (ki,kj)=(0,0) reads the top-left of each window: 0 1 3 4; (0,1): 1 2 4 5; ...
        let x = Array3::from_shape_fn((1, 3, 3), |(_, i, j)| (3 * i + j) as f64);
        let mut cols = Array2::zeros((4, 4));
        im2col(x.view(), 2, cols.view_mut());
        let want = ndarray::arr2(&[
            [0., 1., 3., 4.],
            [1., 2., 4., 5.],
            [3., 4., 6., 7.],
            [4., 5., 7., 8.],
        ]);
        assert_eq!(cols, want);
    }

    /// col2im is the adjoint (transpose) of im2col: <im2col(x), g> = <x, col2im(g)> for all x, g.
    /// Both sides sum the same products in f64, so they agree to rounding (1e-12 relative).
    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        let (c, h, w, k) = (3, 7, 6, 3);
        let x = random_array::<f64, Ix3>((c, h, w), 5);
        let g = random_array::<f64, ndarray::Ix2>((c * k * k, out_size(h, k) * out_size(w, k)), 6);
        let mut cols = Array2::zeros(g.dim());
        im2col(x.view(), k, cols.view_mut());
        let mut dx = Array3::zeros((c, h, w));
        col2im_add(g.view(), k, dx.view_mut());
        let lhs = (&cols * &g).sum();
        let rhs = (&x * &dx).sum();
        assert!(
            (lhs - rhs).abs() <= 1e-12 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );
    }
}
