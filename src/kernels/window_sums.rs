//! The weight gradient of a convolution whose output goes straight into 2x2/2 max-pooling,
//! summed over the pool's windows (`layers::conv::group_param_gradients_through_pool`, which
//! explains the math): per window `p` with output gradient `g[p]` whose maximum sat at
//! convolution output `(y, x)`, `dW[ki, kj] += g[p] * x[y + ki, x + kj]`.
//!
//! Dimension legend: `K` kernel size, `w` the row stride of the input plane, `pw` windows per
//! pooled row. A window's maximum is numbered 0..4 inside the window, row-major, as
//! `layers::maxpool` stores it in its `argmax`.
//!
//! LeNet's 5x5 kernels take [`window_sums_5`], which reads each patch row as 8 values and, on a
//! CPU with AVX2 (detected at run time), as one 256-bit operation; any other kernel size takes
//! [`window_sums_any_k`], its naive twin: the same sums in the same order.

#[cfg(target_arch = "x86_64")]
use crate::kernels::isa::{self, Isa};
use crate::kernels::scalar::Scalar;

/// Columns of padding that let [`window_sums_5`] read 8 values from any patch row.
pub const PAD: usize = 8 - 5;

/// For one image, output channel and input channel, with a 5x5 kernel: `sums` (5 rows of 8, the
/// first 5 of each kept) `= sum over windows p of g[p] * (the 5x5 patch at window p's maximum)`,
/// the sums over `p` in window order, started from zero. `x` is the plane padded with [`PAD`]
/// zero columns (row stride `w`), so each patch row is read as 8 values and multiplied as one
/// short vector, the last 3 products unused. Every kept value is the same sum in the same order
/// as a 5-wide loop gives. 8-wide rows with windows walked row by row (no division per window)
/// more than halved the time of the path it replaced (pool1's backward + GEMM); the timings are
/// in docs/performance.md, "What was done".
///
/// Not inlined: its caller keeps only 5 of the 8 lanes of each row, and once inlined the
/// compiler dropped the other 3 and shuffled the 5 it kept between registers (`perf annotate`).
///
/// With AVX2 (detected at run time) each row is one 256-bit operation; the operations, and so
/// the results, are the same as on the baseline path (`window_sums_paths_agree_bit_for_bit`).
/// It is faster than the baseline path (docs/performance.md).
#[inline(never)]
pub fn window_sums_5<T: Scalar>(
    g: &[T],
    argmax: &[u8],
    x: &[T],
    w: usize,
    pw: usize,
    sums: &mut [[T; 8]; 5],
) {
    #[cfg(target_arch = "x86_64")]
    if isa::selected() >= Isa::Avx2 {
        // SAFETY: the CPU supports AVX2 (`isa::selected` never exceeds the CPU); that is the only requirement
        // `window_sums_5_avx2` adds to `window_sums_5_portable`.
        return unsafe { window_sums_5_avx2(g, argmax, x, w, pw, sums) };
    }
    window_sums_5_portable(g, argmax, x, w, pw, sums)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn window_sums_5_avx2<T: Scalar>(
    g: &[T],
    argmax: &[u8],
    x: &[T],
    w: usize,
    pw: usize,
    sums: &mut [[T; 8]; 5],
) {
    window_sums_5_portable(g, argmax, x, w, pw, sums)
}

#[inline(always)]
fn window_sums_5_portable<T: Scalar>(
    g: &[T],
    argmax: &[u8],
    x: &[T],
    w: usize,
    pw: usize,
    sums: &mut [[T; 8]; 5],
) {
    let mut acc = [[T::zero(); 8]; 5];
    // Window rows, then windows along a row (row-major, as `max_position` numbers them).
    for (py, (g_row, a_row)) in g.chunks_exact(pw).zip(argmax.chunks_exact(pw)).enumerate() {
        for (px, (&gv, &a)) in g_row.iter().zip(a_row).enumerate() {
            let (y, x0) = max_position(py, px, a);
            let patch = &x[y * w + x0..][..4 * w + 8];
            for (ki, acc_row) in acc.iter_mut().enumerate() {
                let row: &[T; 8] = patch[ki * w..][..8].try_into().expect("8 values");
                for (av, &xv) in acc_row.iter_mut().zip(row) {
                    *av += gv * xv;
                }
            }
        }
    }
    *sums = acc;
}

/// [`window_sums_5`] for any kernel size (same sums, same order), reading the unpadded plane.
pub fn window_sums_any_k<T: Scalar>(
    g: &[T],
    argmax: &[u8],
    x: &[T],
    w: usize,
    pw: usize,
    k: usize,
    dw: &mut [T],
) {
    let mut acc = vec![T::zero(); k * k];
    for (py, (g_row, a_row)) in g.chunks_exact(pw).zip(argmax.chunks_exact(pw)).enumerate() {
        for (px, (&gv, &a)) in g_row.iter().zip(a_row).enumerate() {
            let (y, x0) = max_position(py, px, a);
            for (ki, acc_row) in acc.chunks_exact_mut(k).enumerate() {
                for (av, &xv) in acc_row.iter_mut().zip(&x[(y + ki) * w + x0..][..k]) {
                    *av += gv * xv;
                }
            }
        }
    }
    for (d, &a) in dw.iter_mut().zip(&acc) {
        *d += a;
    }
}

/// Where window `(py, px)` of 2x2/2 max-pooling had its maximum, in the pooled input:
/// `argmax` is the position 0..4 inside the window, row-major (`layers::maxpool`).
fn max_position(py: usize, px: usize, argmax: u8) -> (usize, usize) {
    let a = argmax as usize;
    (2 * py + a / 2, 2 * px + a % 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::random_array;

    /// The AVX2 path of the 5x5 window sums (where the CPU has it) gives the same bits as the
    /// baseline path.
    #[test]
    fn window_sums_paths_agree_bit_for_bit() {
        let x = random_array::<f32, ndarray::Ix2>((28, 28 + PAD), 50);
        let g = random_array::<f32, ndarray::Ix1>(144, 51);
        let argmax: Vec<u8> = (0..144).map(|i| (i * 7 % 4) as u8).collect();
        let (mut a, mut b) = ([[0.0; 8]; 5], [[0.0; 8]; 5]);
        let (xs, gs) = (x.as_slice().unwrap(), g.as_slice().unwrap());
        window_sums_5(gs, &argmax, xs, 28 + PAD, 12, &mut a);
        window_sums_5_portable(gs, &argmax, xs, 28 + PAD, 12, &mut b);
        assert_eq!(a, b);
        assert_ne!(a, [[0.0; 8]; 5]);
    }

    /// The 8-wide path and the naive any-size loop give the same bits for a 5x5 kernel.
    #[test]
    fn five_wide_rows_and_any_size_loop_agree_bit_for_bit() {
        let x = random_array::<f32, ndarray::Ix2>((28, 28), 52);
        let mut padded = vec![0.0f32; 28 * (28 + PAD)];
        for (dst, src) in padded
            .chunks_exact_mut(28 + PAD)
            .zip(x.as_slice().unwrap().chunks_exact(28))
        {
            dst[..28].copy_from_slice(src);
        }
        let g = random_array::<f32, ndarray::Ix1>(144, 53);
        let argmax: Vec<u8> = (0..144).map(|i| (i * 5 % 4) as u8).collect();
        let gs = g.as_slice().unwrap();
        let mut sums = [[0.0; 8]; 5];
        window_sums_5(gs, &argmax, &padded, 28 + PAD, 12, &mut sums);
        let mut any_k = [0.0f32; 25];
        window_sums_any_k(gs, &argmax, x.as_slice().unwrap(), 28, 12, 5, &mut any_k);
        let five: Vec<f32> = sums.iter().flat_map(|row| row[..5].to_vec()).collect();
        assert_eq!(five, any_k.to_vec());
    }
}
