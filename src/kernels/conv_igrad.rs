//! A direct input gradient for LeNet's conv2 (a convolution with 8 x 8 outputs, input rows of at
//! most 16 and at most [`KC`] output channels) on AVX-512 that gives **the same bits as the
//! GEMM and col2im path** it replaces (`layers::conv::backward_input`). Its naive twin is
//! [`input_gradient_reference`]; `im2col::conv2d_naive_backward` checks both to rounding.
//!
//! The GEMM path computes, per image, `dcols (C*K*K, P) = W^T (C*K*K, O) x dY (O, P)` with
//! `matrixmultiply` (`beta = 0`; the inner dimension, the `O` output channels, is one block of
//! [`KC`] or less: each element is one chain of fused multiply-adds from +0.0 over the channels
//! in order), then `col2im_add` adds each `dcols[(c, ki, kj), (i, j)]` into `dx[c, i + ki,
//! j + kj]`, one rounding per addition, the rows of `dcols` in order. So each input pixel
//! receives its terms in increasing `(ki, kj)`, starting from +0.0. This kernel computes the
//! same chains and adds them in the same order, without building `dcols` or packing.
//!
//! Per input channel `c` and kernel row `ki`, the 5 taps `kj` x 4 registers (each two output
//! rows of 8: all 64 positions) = 20 chains run over the output channels: per channel, 4 loads
//! of `dY` and 5 broadcasts of `W[o, c, ki, kj]` for 20 fused multiply-adds. Then the 8 input
//! rows `ki..ki + 8` of `dx` are loaded (16 lanes, 12 in use), each tap's output row is moved to
//! its columns `kj..kj + 8` (one permute) and added under a mask, tap by tap, and the rows are
//! stored back: in registers, so no store is read back before it has reached the cache.

use crate::kernels::isa::{self, Isa};

/// Output rows and positions per row: conv2's 8 x 8.
pub const OUT_SIDE: usize = 8;
/// `matrixmultiply`'s block of the inner dimension for f32 (as in `conv_fma`).
pub const KC: usize = crate::kernels::conv_fma::KC;
/// Taps of one kernel row summed side by side.
pub const TAPS_AT_ONCE: usize = 5;

/// The shape of one image's convolution: `c` input channels of `h x w`, `o` output channels,
/// kernel `k` (stride 1, no padding).
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub k: usize,
}

impl Shape {
    fn inner(&self) -> usize {
        self.c * self.k * self.k
    }
    fn check(&self, dy: usize, weight: usize, dx: usize) {
        let Shape { c, h, w, o, k } = *self;
        assert!(
            applies(c, h, w, o, k),
            "conv_igrad: unsupported shape {self:?}"
        );
        assert_eq!(dy, o * OUT_SIDE * OUT_SIDE, "conv_igrad: dy is (O, 8, 8)");
        assert_eq!(weight, o * self.inner(), "conv_igrad: weight is (O, C*K*K)");
        assert_eq!(dx, c * h * w, "conv_igrad: dx is (C, H, W)");
    }
}

/// Whether [`input_gradient`] handles a convolution of this shape: outputs of 8 x 8, input rows
/// of at most 16 (one register), at most [`KC`] output channels (one chain each).
pub fn applies(c: usize, h: usize, w: usize, o: usize, k: usize) -> bool {
    c >= 1
        && k >= 1
        && h + 1 == k + OUT_SIDE
        && w + 1 == k + OUT_SIDE
        && w <= 16
        && (1..=KC).contains(&o)
}

/// Whether `conv::backward_input` takes the kernel: at the AVX-512 level (`isa::selected()`).
pub fn chosen() -> bool {
    isa::selected() >= Isa::Avx512
}

/// Whether this CPU runs the kernel (for the tests, which run it whatever the switch says).
pub fn available() -> bool {
    isa::detected() >= Isa::Avx512
}

/// `dx (C, H, W) += conv^T(dy (O, 8, 8), weight (O, C*K*K))` for one image, with the GEMM +
/// col2im path's bits when `dx` starts at zero. [`available`] must be true and the shape must
/// satisfy [`applies`].
pub fn input_gradient(dy: &[f32], weight: &[f32], shape: Shape, dx: &mut [f32]) {
    shape.check(dy.len(), weight.len(), dx.len());
    assert!(available(), "conv_igrad: this CPU has no AVX-512");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU runs AVX-512 (just checked), and the slices' lengths match the shape
    // (`check`), which is all the kernel's pointer arithmetic relies on; the row loads and
    // stores are masked to the row's `w` lanes.
    unsafe {
        let at = At {
            shape,
            dy: dy.as_ptr(),
            weight: weight.as_ptr(),
            dx: dx.as_mut_ptr(),
        };
        let Shape { c, k, .. } = shape;
        let whole = k - k % TAPS_AT_ONCE;
        for ci in 0..c {
            for ki in 0..k {
                for kj0 in (0..whole).step_by(TAPS_AT_ONCE) {
                    taps::<TAPS_AT_ONCE>(&at, ci, ki, kj0);
                }
                for kj0 in whole..k {
                    taps::<1>(&at, ci, ki, kj0);
                }
            }
        }
    }
}

/// What every block of one image shares.
#[cfg(target_arch = "x86_64")]
struct At {
    shape: Shape,
    dy: *const f32,     // (O, 8, 8)
    weight: *const f32, // (O, C*K*K)
    dx: *mut f32,       // (C, H, W)
}

/// Taps `kj0..kj0 + T` of input channel `ci`, kernel row `ki`: their chains over the output
/// channels, then their additions into `dx` rows `ki..ki + 8`, tap by tap.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn taps<const T: usize>(at: &At, ci: usize, ki: usize, kj0: usize) {
    use std::arch::x86_64::*;
    const PAIRS: usize = OUT_SIDE / 2;
    let Shape { h, w, o, k, .. } = at.shape;
    let inner = at.shape.inner();
    let s0 = (ci * k + ki) * k + kj0;
    let mut acc = [[_mm512_setzero_ps(); PAIRS]; T];
    for q in 0..o {
        let dq = at.dy.add(q * OUT_SIDE * OUT_SIDE);
        let dv: [__m512; PAIRS] = std::array::from_fn(|p| _mm512_loadu_ps(dq.add(p * 16)));
        let wq = at.weight.add(q * inner + s0);
        for (t, acc_t) in acc.iter_mut().enumerate() {
            let wb = _mm512_set1_ps(*wq.add(t));
            for (a, &d) in acc_t.iter_mut().zip(&dv) {
                *a = _mm512_fmadd_ps(wb, d, *a);
            }
        }
    }
    // dx rows ki..ki + 8 of channel ci, `w` lanes each.
    let row_mask: __mmask16 = ((1u32 << w) - 1) as __mmask16;
    let plane = at.dx.add(ci * h * w);
    let mut rows: [__m512; OUT_SIDE] =
        std::array::from_fn(|r| _mm512_maskz_loadu_ps(row_mask, plane.add((ki + r) * w)));
    for (t, acc_t) in acc.iter().enumerate() {
        let kj = kj0 + t;
        let lanes: __mmask16 = (0xFFu32 << kj) as __mmask16;
        for half in 0..2 {
            // Lane l of the target row takes lane l - kj of this half (8 * half onwards).
            let index: [i32; 16] =
                std::array::from_fn(|l| ((l as i32 - kj as i32).rem_euclid(8)) + 8 * half as i32);
            let index = _mm512_loadu_si512(index.as_ptr() as *const _);
            for (p, &a) in acc_t.iter().enumerate() {
                let r = 2 * p + half;
                let moved = _mm512_permutexvar_ps(index, a);
                rows[r] = _mm512_mask_add_ps(rows[r], lanes, rows[r], moved);
            }
        }
    }
    for (r, &row) in rows.iter().enumerate() {
        _mm512_mask_storeu_ps(plane.add((ki + r) * w), row_mask, row);
    }
}

/// The naive twin: `dcols` element by element as one chain of fused multiply-adds from +0.0
/// over the output channels, then added into `dx` in col2im's order (rows of `dcols` in
/// order, positions in order). `f32::mul_add` is fused on every target, so this runs anywhere
/// and defines the bits.
pub fn input_gradient_reference(dy: &[f32], weight: &[f32], shape: Shape, dx: &mut [f32]) {
    shape.check(dy.len(), weight.len(), dx.len());
    let Shape { h, w, o, k, .. } = shape;
    let inner = shape.inner();
    for s in 0..inner {
        let (ci, ki, kj) = (s / (k * k), s / k % k, s % k);
        for i in 0..OUT_SIDE {
            for j in 0..OUT_SIDE {
                let pos = i * OUT_SIDE + j;
                let mut chain = 0.0f32;
                for q in 0..o {
                    chain = weight[q * inner + s].mul_add(dy[q * OUT_SIDE * OUT_SIDE + pos], chain);
                }
                dx[(ci * h + i + ki) * w + j + kj] += chain;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::im2col::conv2d_naive_backward;
    use crate::testutil::{assert_within_rounded_sum_bound, differing_bits, random_array};
    use ndarray::{Array3, Ix1};

    /// (c, k, o, seed), h = w = k + 7: LeNet's conv2; a kernel of 7 (taps 5 + 1 + 1) with one
    /// output channel; 1 input channel, kernel 4; the most channels one chain takes (256).
    const SHAPES: [(usize, usize, usize, u64); 4] =
        [(20, 5, 50, 1), (3, 7, 1, 2), (1, 4, 9, 3), (2, 5, 256, 4)];

    fn inputs((c, k, o, seed): (usize, usize, usize, u64)) -> (Vec<f32>, Vec<f32>, Shape) {
        let dy = random_array::<f32, Ix1>(o * OUT_SIDE * OUT_SIDE, seed).to_vec();
        let w = random_array::<f32, Ix1>(o * c * k * k, seed + 100).to_vec();
        let side = k + OUT_SIDE - 1;
        (
            dy,
            w,
            Shape {
                c,
                h: side,
                w: side,
                o,
                k,
            },
        )
    }

    fn run(
        dy: &[f32],
        w: &[f32],
        shape: Shape,
        f: fn(&[f32], &[f32], Shape, &mut [f32]),
    ) -> Array3<f32> {
        let mut dx = Array3::<f32>::zeros((shape.c, shape.h, shape.w));
        f(dy, w, shape, dx.as_slice_mut().unwrap());
        dx
    }

    /// The reference against the naive loops in f64, within the bound for each pixel's sum of
    /// at most `O*K*K` products (each chain step and each addition rounds once):
    /// `|error| <= n * 2^-24 * sum of |terms|`, `n = O + K*K`.
    #[test]
    fn reference_matches_naive_loops() {
        for case in SHAPES {
            let (dy, w, shape) = inputs(case);
            let got = run(&dy, &w, shape, input_gradient_reference);
            let Shape { c, h, o, k, .. } = shape;
            let as4 = |v: &[f32], d: (usize, usize, usize, usize)| {
                ndarray::Array4::from_shape_vec(d, v.iter().map(|&x| f64::from(x)).collect())
                    .unwrap()
            };
            let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<f32>>();
            let x0 = ndarray::Array4::<f64>::zeros((1, c, h, h));
            let (want, _, _) = conv2d_naive_backward(
                as4(&dy, (1, o, 8, 8)).view(),
                x0.view(),
                as4(&w, (o, c, k, k)).view(),
            );
            let (magnitude, _, _) = conv2d_naive_backward(
                as4(&abs(&dy), (1, o, 8, 8)).view(),
                x0.view(),
                as4(&abs(&w), (o, c, k, k)).view(),
            );
            let n = (o + k * k) as f64;
            assert_within_rounded_sum_bound(
                &format!("{shape:?}"),
                got.iter(),
                want.iter(),
                magnitude.iter(),
                n,
            );
        }
    }

    /// The kernel against its reference, bit for bit. That the GEMM + col2im path gives the
    /// reference's bits too is tested where that path lives:
    /// `layers::conv::tests::gemm_input_gradient_gives_the_conv_igrad_reference_bits`.
    #[test]
    fn kernel_and_reference_agree_bit_for_bit() {
        if !available() {
            eprintln!("skipped: no AVX-512 on this CPU");
            return;
        }
        for case in SHAPES {
            let (dy, w, shape) = inputs(case);
            let reference = run(&dy, &w, shape, input_gradient_reference);
            let differ = differing_bits(&run(&dy, &w, shape, input_gradient), &reference);
            assert_eq!(differ, 0, "{shape:?}: {differ} pixels differ in bits");
        }
    }

    #[test]
    fn applies_to_outputs_of_eight_by_eight() {
        assert!(applies(20, 12, 12, 50, 5)); // LeNet's conv2
        assert!(!applies(1, 28, 28, 20, 5)); // conv1
        assert!(!applies(20, 12, 12, 257, 5)); // two chains per element
        assert!(!applies(20, 11, 12, 50, 5)); // 7 output rows
    }
}
