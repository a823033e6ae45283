//! A direct convolution for LeNet's conv1 on MNIST-sized images: one input channel, 5x5
//! kernels, 28 columns in, 24 out. Its naive twin is `im2col::conv2d_naive`.
//!
//! Why not im2col + GEMM, as every other convolution here: conv1's product per image is
//! `W (20, 25) x cols (25, 576)`, the worst shape of the network for `matrixmultiply`'s 16 x 16
//! AVX-512 tiles (20 rows fill 20/32 of two tiles, an inner dimension of 25 repays little of
//! the packing), and building `cols` copies each pixel up to 25 times. Here each output row is
//! computed in place: for a block of 4 output channels and 2 output rows, 8 rows of 24 sums
//! are accumulated together (192 values: 12 AVX-512 registers) while the 6 input rows they
//! need stream past once. With AVX2's sixteen 8-float registers, 192 sums spill, so that path
//! takes blocks of 2 channels and 1 row (48 sums; measured in `conv_image_avx2`'s comment).
//!
//! Each output is `(sum over the 25 taps, in row-major tap order, of w * x) + b`, each product
//! and sum rounded on its own (no fused multiply-add), the same on every code path below. The
//! one compiled for AVX-512 (or AVX2) only lets the compiler use wider vectors for the same
//! operations, and a block size only decides which outputs are summed side by side, never the
//! order within one output's sum, so the results are bit-identical whichever path the CPU gets
//! (`direct_paths_agree_bit_for_bit`). They differ from the GEMM path in rounding only (its
//! sums run in another order).
//!
//! With AVX-512 it beats `conv::infer`'s GEMM path; compiled for the baseline x86-64 (SSE2) alone
//! it is slower than the GEMM, which is why the wider paths are chosen at run time (timings in
//! docs/performance.md, "What was done").

use crate::data::IMAGE_SIDE;
#[cfg(target_arch = "x86_64")]
use crate::kernels::isa::{self, Isa};
use crate::kernels::scalar::Scalar;
use std::mem::MaybeUninit;

/// Kernel size, input width and output width of the shape this kernel handles.
pub const K: usize = 5;
pub const WIDTH: usize = IMAGE_SIDE;
pub const OUT_WIDTH: usize = WIDTH - K + 1;
/// Output channels and output rows computed together (8 rows of 24 sums) on the baseline and
/// AVX-512 paths (the AVX2 path takes smaller blocks: [`conv_image_avx2`]); [`applies`] asks
/// for whole blocks of this size, so every smaller block that divides it fits too.
const CHANNELS_AT_ONCE: usize = 4;
const ROWS_AT_ONCE: usize = 2;

/// Whether [`conv_image`] handles a convolution of this shape: `c` input channels of
/// `h x w`, `o` output channels, kernel `k`.
pub fn applies(c: usize, h: usize, w: usize, o: usize, k: usize) -> bool {
    c == 1
        && k == K
        && w == WIDTH
        && h >= K
        && (h - K + 1).is_multiple_of(ROWS_AT_ONCE)
        && o.is_multiple_of(CHANNELS_AT_ONCE)
}

/// `y (O, H-4, 24) = conv(x (H, 28), weight (O, 1, 5, 5)) + bias (O)` for one image, on the
/// widest vector path the CPU offers. The shape must satisfy [`applies`]. Every element of `y`
/// is written (the blocks cover every channel and row, and each output is stored once, never
/// read), so `y` may be uninitialised: a fresh output need not be zeroed first
/// (`writes_every_output`).
pub fn conv_image<T: Scalar>(x: &[T], weight: &[T], bias: &[T], y: &mut [MaybeUninit<T>]) {
    #[cfg(target_arch = "x86_64")]
    {
        let level = isa::selected();
        if level >= Isa::Avx512 {
            // SAFETY: the CPU supports AVX-512F (`isa::selected` never exceeds the CPU); that
            // is the only requirement `conv_image_avx512` adds to `conv_image_portable`.
            return unsafe { conv_image_avx512(x, weight, bias, y) };
        }
        if level >= Isa::Avx2 {
            // SAFETY: as above, for AVX2.
            return unsafe { conv_image_avx2(x, weight, bias, y) };
        }
    }
    conv_image_portable(x, weight, bias, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn conv_image_avx512<T: Scalar>(x: &[T], weight: &[T], bias: &[T], y: &mut [MaybeUninit<T>]) {
    conv_image_portable(x, weight, bias, y)
}

/// AVX2 has 16 vector registers of 8 floats: the 192 sums of a 4 x 2 block (24 registers)
/// spill to memory, so this path keeps 2 channels x 1 row (48 sums, 6 registers). Measured on
/// an AMD EPYC with AVX2 (one thread, 1,024 images, best of 8, quiet machine): 4 x 2 blocks
/// 21.2 GFLOP/s, 4 x 1 30.2, 2 x 2 26.5, 1 x 2 30.9, 2 x 1 38.7.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn conv_image_avx2<T: Scalar>(x: &[T], weight: &[T], bias: &[T], y: &mut [MaybeUninit<T>]) {
    conv_image_blocked::<T, 2, 1>(x, weight, bias, y)
}

/// The kernel itself, for the baseline instruction set (and inlined into the wider paths), in
/// blocks of 4 channels x 2 rows.
#[inline(always)]
pub fn conv_image_portable<T: Scalar>(x: &[T], weight: &[T], bias: &[T], y: &mut [MaybeUninit<T>]) {
    conv_image_blocked::<T, CHANNELS_AT_ONCE, ROWS_AT_ONCE>(x, weight, bias, y)
}

/// The kernel in blocks of `CH` output channels x `RO` output rows: `CH * RO * 24` sums kept
/// in registers while the `RO + 4` input rows they need stream past once. The blocking changes
/// only which sums are kept together, never the order of any one output's sum (its 25 taps in
/// row-major order, then the bias), so every blocking gives the same bits.
#[inline(always)]
fn conv_image_blocked<T: Scalar, const CH: usize, const RO: usize>(
    x: &[T],
    weight: &[T],
    bias: &[T],
    y: &mut [MaybeUninit<T>],
) {
    let o = bias.len();
    let h = x.len() / WIDTH;
    let oh = h - K + 1;
    assert!(
        x.len().is_multiple_of(WIDTH) && applies(1, h, WIDTH, o, K),
        "direct conv: unsupported shape"
    );
    assert!(
        CHANNELS_AT_ONCE.is_multiple_of(CH) && ROWS_AT_ONCE.is_multiple_of(RO),
        "direct conv: a block divides the shapes `applies` admits"
    );
    assert_eq!(
        weight.len(),
        o * K * K,
        "direct conv: weight is (O, 1, 5, 5)"
    );
    assert_eq!(
        y.len(),
        o * oh * OUT_WIDTH,
        "direct conv: y is (O, H-4, 24)"
    );
    for o0 in (0..o).step_by(CH) {
        let w_block = &weight[o0 * K * K..][..CH * K * K];
        for i0 in (0..oh).step_by(RO) {
            // acc[q][r][j]: output channel o0 + q, row i0 + r, column j.
            let mut acc = [[[T::zero(); OUT_WIDTH]; RO]; CH];
            // Input row i0 + t feeds output row i0 + r through kernel row t - r.
            for t in 0..K + RO - 1 {
                let row = &x[(i0 + t) * WIDTH..][..WIDTH];
                for kj in 0..K {
                    let xs: &[T; OUT_WIDTH] = row[kj..][..OUT_WIDTH].try_into().expect("24");
                    for r in 0..RO {
                        if t < r || t - r >= K {
                            continue;
                        }
                        let tap = (t - r) * K + kj;
                        for (q, acc_q) in acc.iter_mut().enumerate() {
                            let wv = w_block[q * K * K + tap];
                            for (a, &xv) in acc_q[r].iter_mut().zip(xs) {
                                *a += wv * xv;
                            }
                        }
                    }
                }
            }
            for (q, acc_q) in acc.iter().enumerate() {
                let b = bias[o0 + q];
                for (r, acc_qr) in acc_q.iter().enumerate() {
                    let out = &mut y[((o0 + q) * oh + i0 + r) * OUT_WIDTH..][..OUT_WIDTH];
                    for (d, &a) in out.iter_mut().zip(acc_qr) {
                        d.write(a + b);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::im2col::conv2d_naive;
    use crate::testutil::{assert_close, random_array};
    use ndarray::{Ix1, Ix4};

    /// One image: `(x, weight, bias, y)`.
    type ImageKernel<T> = fn(&[T], &[T], &[T], &mut [MaybeUninit<T>]);

    fn run<T: Scalar>(
        x: &ndarray::Array4<T>,
        w: &ndarray::Array4<T>,
        b: &ndarray::Array1<T>,
        f: ImageKernel<T>,
    ) -> ndarray::Array4<T> {
        let (n, _, h, _) = x.dim();
        let o = b.len();
        // NaN everywhere first: an output the kernel failed to write would show.
        let mut y = ndarray::Array4::from_elem((n, o, h - 4, OUT_WIDTH), T::of(f64::NAN));
        for (xi, mut yi) in x.outer_iter().zip(y.outer_iter_mut()) {
            let yi = yi.as_slice_mut().unwrap();
            // SAFETY: `MaybeUninit<T>` has `T`'s layout, and the kernel only writes values of T.
            let yi = unsafe { &mut *(yi as *mut [T] as *mut [MaybeUninit<T>]) };
            f(
                xi.as_slice().unwrap(),
                w.as_slice().unwrap(),
                b.as_slice().unwrap(),
                yi,
            );
        }
        y
    }

    /// Against the naive loops in f64: the same products, summed with the bias at the end
    /// rather than the start, so equal to rounding (1e-12).
    #[test]
    fn matches_naive_loops() {
        for (n, o, h, seed) in [(2, 20, 28, 1), (3, 8, 10, 5)] {
            let x = random_array::<f64, Ix4>((n, 1, h, 28), seed);
            let w = random_array::<f64, Ix4>((o, 1, 5, 5), seed + 1);
            let b = random_array::<f64, Ix1>(o, seed + 2);
            let got = run(&x, &w, &b, conv_image);
            let want = conv2d_naive(x.view(), w.view(), b.view());
            assert_close(
                &format!("direct conv {n}x{o}x{h}"),
                got.view().into_dyn(),
                want.view().into_dyn(),
                1e-12,
                1e-12,
            );
        }
    }

    /// The path chosen at run time (AVX-512 or AVX2 where the CPU has it), and the AVX2 path
    /// itself where the CPU has AVX2, give the same bits as the baseline path.
    #[test]
    fn direct_paths_agree_bit_for_bit() {
        let x = random_array::<f32, Ix4>((3, 1, IMAGE_SIDE, IMAGE_SIDE), 11);
        let w = random_array::<f32, Ix4>((20, 1, 5, 5), 12);
        let b = random_array::<f32, Ix1>(20, 13);
        assert_eq!(
            run(&x, &w, &b, conv_image),
            run(&x, &w, &b, conv_image_portable)
        );
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present, checked just above.
            let avx2 = |x: &[f32], w: &[f32], b: &[f32], y: &mut [MaybeUninit<f32>]| unsafe {
                conv_image_avx2(x, w, b, y)
            };
            assert_eq!(run(&x, &w, &b, avx2), run(&x, &w, &b, conv_image_portable));
        }
        let (x, w, b) = (x.mapv(f64::from), w.mapv(f64::from), b.mapv(f64::from));
        assert_eq!(
            run(&x, &w, &b, conv_image),
            run(&x, &w, &b, conv_image_portable)
        );
    }

    #[test]
    fn writes_every_output() {
        let x = random_array::<f32, Ix4>((2, 1, IMAGE_SIDE, IMAGE_SIDE), 14);
        let w = random_array::<f32, Ix4>((20, 1, 5, 5), 15);
        let b = random_array::<f32, Ix1>(20, 16);
        let y = run(&x, &w, &b, conv_image);
        assert!(y.iter().all(|v| !v.is_nan()), "an output left unwritten");
    }

    #[test]
    fn applies_only_to_its_shape() {
        assert!(applies(1, 28, 28, 20, 5)); // LeNet's conv1
        assert!(!applies(20, 12, 12, 50, 5)); // conv2
        assert!(!applies(1, 28, 28, 20, 3));
        assert!(!applies(1, 27, 28, 20, 5)); // 23 output rows: not a whole number of pairs
        assert!(!applies(1, 28, 28, 10, 5)); // 10 channels: not a whole number of blocks of 4
    }
}
