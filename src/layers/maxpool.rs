//! Max-pooling over 2x2 windows with stride 2 (Caffe's LeNet: `pooling_param { pool: MAX
//! kernel_size: 2 stride: 2 }`).
//!
//! Dimension legend: `N` batch, `C` channels, `H, W` input size (both even), `OH = H/2`, `OW = W/2`.
//!
//! Ties: the first maximum in row-major order inside the window wins (top-left, top-right,
//! bottom-left, bottom-right), and only it receives the gradient. This is Caffe's rule
//! (`pooling_layer.cpp` updates the max only on a strict `>`) and PyTorch's on the CPU.
//! LeNet's pooled sizes (24 -> 12, 8 -> 4) are even, so Caffe's ceil-mode output size and
//! PyTorch's floor-mode size agree; odd sizes are rejected rather than guessed.
//!
//! Backward: `dx[window's argmax] += dy`, every other input of the window gets 0
//! (docs/math.md, "Max-pooling").

use crate::kernels::par_build::{par_build, par_build_pair, par_build_uninit};
use crate::kernels::scalar::Scalar;
use ndarray::{Array4, ArrayView4};
use std::mem::MaybeUninit;

/// What the forward pass keeps for the backward pass.
#[derive(Clone, Debug)]
pub struct MaxPoolCache {
    pub argmax: Array4<u8>, // (N, C, OH, OW): position 0..4 of the max inside its 2x2 window, row-major
    pub input_hw: (usize, usize), // (H, W)
}

fn check_even(h: usize, w: usize) {
    assert!(
        h.is_multiple_of(2) && w.is_multiple_of(2),
        "max-pool 2x2/2 needs even input sizes, got {h}x{w}"
    );
}

/// `y (N, C, H/2, W/2)` and the argmax of every window; images in parallel.
pub fn forward<T: Scalar>(x: ArrayView4<T>) -> (Array4<T>, MaxPoolCache) {
    let (n, c, h, w) = x.dim();
    check_even(h, w);
    let (oh, ow) = (h / 2, w / 2);
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let (plane_in, plane_out) = (h * w, oh * ow);
    // Images in parallel; outputs zeroed piece by piece in the workers (`kernels::par_build`).
    let (y, argmax) = par_build_pair(
        (n, c, oh, ow),
        c * plane_out,
        (n, c, oh, ow),
        c * plane_out,
        |i, ys, am| {
            let xi = &xs[i * c * plane_in..][..c * plane_in];
            for ((yp, ap), xp) in ys
                .chunks_exact_mut(plane_out)
                .zip(am.chunks_exact_mut(plane_out))
                .zip(xi.chunks_exact(plane_in))
            {
                pool_plane(xp, w, yp, ap);
            }
        },
    );
    (
        y,
        MaxPoolCache {
            argmax,
            input_hw: (h, w),
        },
    )
}

/// `y (N, C, H/2, W/2)` alone, for inference: [`forward`]'s values (the same comparisons in
/// the same order, so the same bits, signed zeros included), without writing the argmax that
/// only a backward pass reads.
pub fn infer<T: Scalar>(x: ArrayView4<T>) -> Array4<T> {
    let (n, c, h, w) = x.dim();
    check_even(h, w);
    let (oh, ow) = (h / 2, w / 2);
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let (plane_in, plane_out) = (h * w, oh * ow);
    // SAFETY: `max_plane` writes every element of its plane, and the planes cover the piece.
    unsafe {
        par_build_uninit((n, c, oh, ow), c * plane_out, |i, ys| {
            let xi = &xs[i * c * plane_in..][..c * plane_in];
            for (yp, xp) in ys
                .chunks_exact_mut(plane_out)
                .zip(xi.chunks_exact(plane_in))
            {
                max_plane(xp, w, yp);
            }
        })
    }
}

/// [`pool_plane`]'s values alone, by the same [`window_max`], written into every element of
/// `y` (the unused argmax is left to the compiler to drop).
fn max_plane<T: Scalar>(x: &[T], w: usize, y: &mut [MaybeUninit<T>]) {
    let ow = w / 2;
    for (yr, rows) in y.chunks_exact_mut(ow).zip(x.chunks_exact(2 * w)) {
        let (top, bottom) = rows.split_at(w);
        for ((yv, t), b) in yr
            .iter_mut()
            .zip(top.chunks_exact(2))
            .zip(bottom.chunks_exact(2))
        {
            yv.write(window_max(t, b).0);
        }
    }
}

/// One 2x2 window, top row `t` and bottom row `b`: its maximum and the maximum's position
/// (0..4, row-major). The candidates are compared in row-major order and a strict `>` keeps
/// the first maximum (the tie rule). Written as selects rather than branches: which candidate
/// wins is data-dependent and unpredictable, and the earlier `if v > best { .. }` form, with its
/// mispredicted branches, was about twice as slow (`cargo bench -- pool`; figures in
/// docs/performance.md).
#[inline(always)]
fn window_max<T: Scalar>(t: &[T], b: &[T]) -> (T, u8) {
    let (mut best, mut at) = (t[0], 0u8);
    for (q, v) in [(1u8, t[1]), (2, b[0]), (3, b[1])] {
        let wins = v > best;
        best = if wins { v } else { best };
        at = if wins { q } else { at };
    }
    (best, at)
}

/// One channel of one image: `x` is `(H, W)` row-major, `y` and `argmax` are `(H/2, W/2)`.
fn pool_plane<T: Scalar>(x: &[T], w: usize, y: &mut [T], argmax: &mut [u8]) {
    let ow = w / 2;
    for ((yr, ar), rows) in y
        .chunks_exact_mut(ow)
        .zip(argmax.chunks_exact_mut(ow))
        .zip(x.chunks_exact(2 * w))
    {
        let (top, bottom) = rows.split_at(w);
        for (((yv, av), t), b) in yr
            .iter_mut()
            .zip(ar.iter_mut())
            .zip(top.chunks_exact(2))
            .zip(bottom.chunks_exact(2))
        {
            (*yv, *av) = window_max(t, b);
        }
    }
}

/// `dx (N, C, H, W)`: each window's gradient goes to its argmax; images in parallel.
pub fn backward<T: Scalar>(d_out: ArrayView4<T>, cache: &MaxPoolCache) -> Array4<T> {
    let (n, c, oh, ow) = d_out.dim();
    assert_eq!(
        (n, c, oh, ow),
        cache.argmax.dim(),
        "max-pool backward: d_out and cache disagree"
    );
    let (h, w) = cache.input_hw;
    let d_out = d_out.as_standard_layout();
    let dys = d_out.as_slice().expect("standard layout");
    let ams = cache.argmax.as_slice().expect("standard layout");
    let (plane_in, plane_out) = (h * w, oh * ow);
    // Images in parallel (`kernels::par_build`: no zero-filling pass of its own).
    par_build((n, c, h, w), c * plane_in, |i, dxi| {
        let dyi = &dys[i * c * plane_out..][..c * plane_out];
        let ai = &ams[i * c * plane_out..][..c * plane_out];
        for ((dxp, dyp), ap) in dxi
            .chunks_exact_mut(plane_in)
            .zip(dyi.chunks_exact(plane_out))
            .zip(ai.chunks_exact(plane_out))
        {
            unpool_plane(dyp, ap, w, dxp);
        }
    })
}

/// The backward of [`pool_plane`]: every input of a window is written once, the gradient at
/// its argmax and 0 elsewhere (windows do not overlap). Selects, not a computed index, so that
/// the loop has no data-dependent stores.
fn unpool_plane<T: Scalar>(dy: &[T], argmax: &[u8], w: usize, dx: &mut [T]) {
    let ow = w / 2;
    for ((rows, dyr), ar) in dx
        .chunks_exact_mut(2 * w)
        .zip(dy.chunks_exact(ow))
        .zip(argmax.chunks_exact(ow))
    {
        let (top, bottom) = rows.split_at_mut(w);
        for (((t, b), &g), &a) in top
            .chunks_exact_mut(2)
            .zip(bottom.chunks_exact_mut(2))
            .zip(dyr)
            .zip(ar)
        {
            let z = T::zero();
            t[0] = if a == 0 { g } else { z };
            t[1] = if a == 1 { g } else { z };
            b[0] = if a == 2 { g } else { z };
            b[1] = if a == 3 { g } else { z };
        }
    }
}

/// The naive twin of [`forward`]: a general `K x K` window with stride `S`, scanned with index
/// arithmetic. Same tie rule. Used by the tests with `K = S = 2`.
pub fn forward_naive<T: Scalar>(
    x: ArrayView4<T>,
    k: usize,
    stride: usize,
) -> (Array4<T>, Array4<usize>) {
    let (n, c, h, w) = x.dim();
    let (oh, ow) = ((h - k) / stride + 1, (w - k) / stride + 1);
    let mut y = Array4::zeros((n, c, oh, ow));
    let mut argmax = Array4::zeros((n, c, oh, ow));
    for b in 0..n {
        for ch in 0..c {
            for i in 0..oh {
                for j in 0..ow {
                    let mut best = (T::neg_infinity(), usize::MAX);
                    for di in 0..k {
                        for dj in 0..k {
                            let v = x[[b, ch, i * stride + di, j * stride + dj]];
                            if best.1 == usize::MAX || v > best.0 {
                                best = (v, di * k + dj);
                            }
                        }
                    }
                    y[[b, ch, i, j]] = best.0;
                    argmax[[b, ch, i, j]] = best.1;
                }
            }
        }
    }
    (y, argmax)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::gradcheck::{assert_gradient_matches, numeric_gradient};
    use crate::testutil::{differing_bits, random_array};
    use ndarray::Ix4;

    #[test]
    fn matches_naive_window_scan() {
        let x = random_array::<f32, Ix4>((3, 4, 8, 6), 40);
        let (y, cache) = forward(x.view());
        let (ny, nargmax) = forward_naive(x.view(), 2, 2);
        assert_eq!(y, ny);
        assert_eq!(cache.argmax.mapv(|q| q as usize), nargmax);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        // Random inputs: ties have probability zero, and no window's max changes under a step of
        // `gradcheck::STEP` = 1e-6.
        let x = random_array::<f64, Ix4>((2, 3, 4, 6), 41);
        let (y, cache) = forward(x.view());
        let dy = random_array::<f64, Ix4>(y.dim(), 42);
        let dx = backward(dy.view(), &cache);
        let num = numeric_gradient(&x, &dy, |x| forward(x.view()).0);
        assert_gradient_matches("maxpool dx", &dx.into_dyn(), &num);
    }

    /// `infer` gives `forward`'s values bit for bit, on windows full of ties and signed zeros
    /// (values drawn from {-1, -0, +0, 1}), where a different comparison would pick another
    /// zero.
    #[test]
    fn infer_gives_the_forward_values_bit_for_bit() {
        let x =
            random_array::<f32, Ix4>((3, 4, 6, 8), 9).mapv(|v| match (v * 4.0).floor() as i32 {
                -4 | -3 => -1.0f32,
                -2 | -1 => -0.0,
                0 | 1 => 0.0,
                _ => 1.0,
            });
        let (y, _) = forward(x.view());
        let yi = infer(x.view());
        let differ = differing_bits(&y, &yi);
        assert_eq!(differ, 0, "{differ} pooled values differ in bits");
        assert!(
            x.iter().any(|v| v.to_bits() == (-0.0f32).to_bits()),
            "the test has -0.0s"
        );
    }

    #[test]
    fn hand_worked_case_with_ties() {
        // window [[1 3] [3 2]]: max 3 at top-right (1) and bottom-left (2); the first, 1, wins,
        // so d_in[0,1] += d_out and d_in[1,0] gets nothing.
        let x = Array4::from_shape_vec((1, 1, 2, 2), vec![1.0f64, 3.0, 3.0, 2.0]).unwrap();
        let (y, cache) = forward(x.view());
        assert_eq!(y[[0, 0, 0, 0]], 3.0);
        assert_eq!(cache.argmax[[0, 0, 0, 0]], 1);
        let dx = backward(Array4::from_elem((1, 1, 1, 1), 5.0).view(), &cache);
        assert_eq!(dx.into_raw_vec_and_offset().0, vec![0.0, 5.0, 0.0, 0.0]);
        // All equal: the top-left wins.
        let (_, cache) = forward(Array4::from_elem((1, 1, 2, 2), 0.0f32).view());
        assert_eq!(cache.argmax[[0, 0, 0, 0]], 0);
    }
}
