//! A direct convolution for LeNet's conv2 (and any convolution whose output rows are 8 wide)
//! that gives **the same bits as the im2col + GEMM path** it replaces. Its naive twin is
//! [`conv_image_reference`], and `im2col::conv2d_naive` checks both to rounding.
//!
//! Why: conv2's product per group of 4 images is `W (50, 500) x cols (500, 256)`. Building
//! `cols` (im2col) and then `matrixmultiply` copying it again into its packed panels took about
//! 18% of inference in perf on the AMD EPYC (7.7% im2col, about 10% packing), on top of the
//! multiply itself. Here each output row of 8 positions is one AVX2 register: for a block of
//! [`CHANNELS_AT_ONCE`] output channels and [`ROWS_AT_ONCE`] output rows (8 registers of
//! sums), each step of the inner dimension loads the 4 input rows' 8 values straight from the
//! image and broadcasts the 2 weights. No im2col, no packing; the image (11.5 KB) stays in L1.
//! On AVX-512 (`conv_image_avx512`) a register holds two output rows, so the kernel first
//! copies each input channel's column shifts where two input rows are adjacent, and keeps 5
//! channels x 8 rows of sums in 20 registers. On the Xeon it took conv2's forward pass from
//! 1.90 ms (im2col + sgemm) to 1.17 ms per 64 images on one thread (docs/performance.md). Which
//! kernel runs is `isa::selected()`'s level ([`Weights`] is prepared for it).
//!
//! **The same bits.** `matrixmultiply`'s FMA kernels (AVX2 + FMA, and AVX-512) compute each
//! element of `C = A B + C` as: for each block of `KC` = 256 steps of the inner dimension,
//! `ab` = a chain of fused multiply-adds over the block in order, starting from +0.0; then
//! `c = fma(1, ab, c)`, i.e. `c + ab` rounded once (`sgemm_kernel.rs`, `kernel_x86_avx` and
//! `kernel_target_avx512`, and `gemm.rs`'s `gemm_loop`, whose loop 4 splits the inner dimension
//! by `KC`). The convolution's GEMM path starts `c` at the bias. This kernel does exactly
//! that, with the inner dimension in im2col's row order `(c, ki, kj)`: `bias + chain(0..256)`,
//! then `+ chain(256..500)`. So where `matrixmultiply` takes an FMA kernel (x86-64 CPUs with
//! AVX2 and FMA, or AVX-512) the two paths agree bit for bit
//! (`kernel_and_reference_agree_bit_for_bit` here, `gemm_path_gives_the_conv_fma_reference_bits` in `layers::conv`), and a model trained through either is the same
//! model. Without both, `matrixmultiply` rounds each product separately and [`available`] is
//! false: the GEMM path is kept.
//!
//! One exception, unreachable with real weights: `matrixmultiply`'s AVX2 edge tiles (conv2's
//! output channels 48 and 49) store `ab + 0.0` before adding it to `c`, so where the bias is
//! -0.0 *and* a whole block's chain rounds to -0.0 (a chain from +0.0 does so only when its
//! exact sum is negative and below 2^-150 in magnitude) the GEMM gives +0.0 and this kernel
//! -0.0. `KC` is `matrixmultiply`'s default; it can be
//! changed only through its `constconf` feature, which nothing here enables, and `Cargo.lock`
//! pins its version: the bit-for-bit test would catch either change on an AVX2 + FMA machine.

use crate::kernels::isa::{self, Isa};
#[cfg(target_arch = "x86_64")]
use crate::kernels::scratch::with_scratch;
use std::mem::MaybeUninit;

/// Output positions per row that this kernel handles: one AVX2 register of f32.
pub const OUT_WIDTH: usize = 8;
/// Output channels and output rows summed side by side: 2 x 4 = 8 registers of sums (with 2
/// FMA units of 4 cycles' latency, 8 independent sums keep both busy), plus 4 input rows and
/// 1 broadcast weight: 13 of AVX2's 16 registers. Per step, 6 loads for 8 fused multiply-adds.
/// Measured on the AMD EPYC (one thread, 2,000 images of conv2, microseconds per image, min
/// over 5 interleaved runs on a machine whose speed drifted by half): 2 x 4 39.5; 5 x 2 48.7;
/// 10 x 1 55.8; the im2col + `matrixmultiply` path 68.3. Weights transposed to
/// (inner, O), so that the block's broadcasts share a cache line, were slower at every
/// blocking (2 x 4: 47.7).
pub const CHANNELS_AT_ONCE: usize = 2;
pub const ROWS_AT_ONCE: usize = 4;
/// `matrixmultiply`'s block of the inner dimension for f32 (`archparam_defaults::S_KC`): the
/// sums are rounded into the output at every multiple of it, as its loop 4 does.
pub const KC: usize = 256;

/// Whether [`conv_image`] handles a convolution of this shape: `c` input channels of `h x w`,
/// `o` output channels, kernel `k` (stride 1, no padding).
pub fn applies(c: usize, h: usize, w: usize, o: usize, k: usize) -> bool {
    c >= 1
        && k >= 1
        && h >= k
        && w + 1 == k + OUT_WIDTH
        && (h - k + 1).is_multiple_of(ROWS_AT_ONCE)
        && o.is_multiple_of(CHANNELS_AT_ONCE)
}

/// Whether this CPU runs the AVX2 + FMA kernel (and, since the AVX-512 kernel needs AVX2 + FMA
/// too, whether it runs any), and `matrixmultiply` (for which the bits are matched) takes one
/// of its fused multiply-add kernels. Asks the CPU, not the switch: the tests run every path
/// the CPU has.
pub fn available() -> bool {
    isa::detected() >= Isa::Avx2
}

/// Whether `conv::infer` takes this kernel: at every level with a kernel of its own
/// (`isa::selected()` at AVX2 or above). [`conv_image`] takes the AVX-512 kernel at
/// [`Isa::Avx512`] and the AVX2 one below it; without AVX2 + FMA the GEMM path is kept.
pub fn chosen() -> bool {
    isa::selected() >= Isa::Avx2
}

/// The shape of one image's convolution: `c` input channels of `h x w`, kernel `k`.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
}

impl Shape {
    fn out_height(&self) -> usize {
        self.h - self.k + 1
    }
    fn inner(&self) -> usize {
        self.c * self.k * self.k
    }
    fn check(&self, x: usize, weight: usize, bias: usize, y: usize) {
        let Shape { c, h, w, k } = *self;
        assert!(
            applies(c, h, w, bias, k),
            "conv_fma: unsupported shape {self:?} with {bias} output channels"
        );
        assert_eq!(x, c * h * w, "conv_fma: x is (C, H, W)");
        assert_eq!(
            weight,
            bias * self.inner(),
            "conv_fma: weight is (O, C*K*K)"
        );
        assert_eq!(
            y,
            bias * self.out_height() * OUT_WIDTH,
            "conv_fma: y is (O, H-K+1, 8)"
        );
    }
}

/// The weights `(O, C*K*K)` as the kernel of one level reads them, prepared once for all the
/// images of a call: at the AVX-512 level, each whole block of [`CHANNELS_AT_ONCE_512`]
/// channels is interleaved step by step, `(O / 5, C*K*K, 5)`, so that a step's 5 broadcasts
/// read one cache line through one pointer (with the 5 rows apart, the kernel ran out of
/// registers for their pointers and reloaded them from the stack at every step). Other levels
/// read the weights as they are. Only the layout changes: the bits do not depend on it.
pub struct Weights<'a> {
    level: Isa,
    weight: &'a [f32],
    blocked: Vec<f32>,
}

impl<'a> Weights<'a> {
    /// `weight (O, C*K*K)` for the kernel of the selected level (`isa::selected()`).
    pub fn for_selected(weight: &'a [f32], o: usize) -> Self {
        Weights::new(isa::selected(), weight, o)
    }

    /// `weight (O, C*K*K)` for the kernel of `level`, with `o` output channels.
    pub fn new(level: Isa, weight: &'a [f32], o: usize) -> Self {
        assert!(
            o > 0 && weight.len().is_multiple_of(o),
            "conv_fma: weight is (O, C*K*K)"
        );
        let inner = weight.len() / o;
        let mut blocked = Vec::new();
        if level >= Isa::Avx512 {
            const CH: usize = CHANNELS_AT_ONCE_512;
            let whole = o - o % CH;
            blocked.reserve_exact(whole * inner);
            for o0 in (0..whole).step_by(CH) {
                for step in 0..inner {
                    for q in 0..CH {
                        blocked.push(weight[(o0 + q) * inner + step]);
                    }
                }
            }
        }
        Weights {
            level,
            weight,
            blocked,
        }
    }
}

/// `y (O, H-K+1, 8) = conv(x (C, H, W), weight (O, C, K, K)) + bias (O)` for one image, with
/// the GEMM path's bits, on the kernel of the weights' level (AVX-512 or AVX2 + FMA; for the
/// selected one, `isa::selected()`, which [`chosen`] must allow). The shape must satisfy
/// [`applies`]. Every element of `y` is written, so it may be uninitialised
/// (`writes_every_output`).
pub fn conv_image(
    x: &[f32],
    shape: Shape,
    weights: &Weights,
    bias: &[f32],
    y: &mut [MaybeUninit<f32>],
) {
    let (level, weight) = (weights.level, weights.weight);
    shape.check(x.len(), weight.len(), bias.len(), y.len());
    assert!(
        level >= Isa::Avx2 && level <= isa::detected(),
        "conv_fma: no kernel at level {level} on this CPU (widest {})",
        isa::detected()
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU runs `level` (just checked), the slices' lengths match the shape
    // (`check`), and `blocked` was built for this weight at this level, which is all the
    // kernels' pointer arithmetic relies on.
    unsafe {
        if level >= Isa::Avx512 {
            conv_image_avx512(x, shape, weights, bias, y)
        } else {
            conv_image_avx2(x, shape, weight, bias, y)
        }
    }
}

/// The kernel, specialised for LeNet's 5x5 kernels (the tap loop unrolled) and for any other
/// size. For each block of 2 channels x 4 rows, the 8 outputs' registers start at the bias
/// (stored into `y`), the inner dimension runs in im2col's order `(c, ki, kj)`, and at every
/// multiple of [`KC`] and at the end the running chains are added into `y` and restart from
/// zero.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn conv_image_avx2(
    x: &[f32],
    shape: Shape,
    weight: &[f32],
    bias: &[f32],
    y: &mut [MaybeUninit<f32>],
) {
    if shape.k == 5 {
        blocks::<5>(x, shape, weight, bias, y)
    } else {
        blocks::<0>(x, shape, weight, bias, y)
    }
}

/// [`conv_image_avx2`]'s loops; `K` is the kernel size, or 0 for "as `shape` says".
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn blocks<const K: usize>(
    x: &[f32],
    shape: Shape,
    weight: &[f32],
    bias: &[f32],
    y: &mut [MaybeUninit<f32>],
) {
    use std::arch::x86_64::*;
    const CH: usize = CHANNELS_AT_ONCE;
    const RO: usize = ROWS_AT_ONCE;
    let Shape { c, h, w, .. } = shape;
    let k = if K == 0 { shape.k } else { K };
    let (o, oh, inner) = (bias.len(), shape.out_height(), shape.inner());
    let (xp, wp, yp) = (x.as_ptr(), weight.as_ptr(), y.as_mut_ptr() as *mut f32);
    // Output row `i` of channel `q`'s 8 values start at `y[(q * oh + i) * 8]`.
    let out = |q: usize, i: usize| yp.add((q * oh + i) * OUT_WIDTH);
    for o0 in (0..o).step_by(CH) {
        // Channel o0 + q's weights, in the inner dimension's order.
        let w_rows: [*const f32; CH] = std::array::from_fn(|q| wp.add((o0 + q) * inner));
        for i0 in (0..oh).step_by(RO) {
            for q in 0..CH {
                let b = _mm256_set1_ps(bias[o0 + q]);
                for r in 0..RO {
                    _mm256_storeu_ps(out(o0 + q, i0 + r), b);
                }
            }
            let mut acc = [[_mm256_setzero_ps(); RO]; CH];
            // y += acc, rounded once per element, then the chains restart from +0.0.
            let flush = |acc: &mut [[__m256; RO]; CH]| {
                for (q, acc_q) in acc.iter_mut().enumerate() {
                    for (r, a) in acc_q.iter_mut().enumerate() {
                        let p = out(o0 + q, i0 + r);
                        _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), *a));
                        *a = _mm256_setzero_ps();
                    }
                }
            };
            // One step of the inner dimension: input column kj of the rows, weight `step`.
            let fma_step = |acc: &mut [[__m256; RO]; CH], rows: &[*const f32; RO], kj, step| {
                let xv: [__m256; RO] = std::array::from_fn(|r| _mm256_loadu_ps(rows[r].add(kj)));
                for (acc_q, w_row) in acc.iter_mut().zip(&w_rows) {
                    let wv = _mm256_broadcast_ss(&*w_row.add(step));
                    for (a, &xr) in acc_q.iter_mut().zip(&xv) {
                        *a = _mm256_fmadd_ps(wv, xr, *a);
                    }
                }
            };
            let mut step = 0; // the inner dimension's index: (ci * k + ki) * k + kj
            for ci in 0..c {
                for ki in 0..k {
                    // Input rows i0 + r + ki of channel ci, for output rows i0 + r.
                    let rows: [*const f32; RO] =
                        std::array::from_fn(|r| xp.add((ci * h + i0 + r + ki) * w));
                    // Whether a multiple of KC falls inside this row's k steps (past step 0):
                    // only then is the flush checked step by step.
                    let next_flush = (step / KC + 1) * KC;
                    if step + k <= next_flush && (step == 0 || step % KC != 0) {
                        for kj in 0..k {
                            fma_step(&mut acc, &rows, kj, step + kj);
                        }
                    } else {
                        for kj in 0..k {
                            if step + kj != 0 && (step + kj) % KC == 0 {
                                flush(&mut acc);
                            }
                            fma_step(&mut acc, &rows, kj, step + kj);
                        }
                    }
                    step += k;
                }
            }
            flush(&mut acc);
        }
    }
}

/// Output channels and pairs of output rows summed side by side by the AVX-512 kernel: 5 x 4
/// = 20 registers of 16 sums (two output rows of 8 each), plus 4 input vectors and 1
/// broadcast weight: 25 of AVX-512's 32 registers. Per step, 4 loads and 5 broadcasts for 20
/// fused multiply-adds. LeNet's conv2 (50 channels, 8 output rows) is 10 x 1 such blocks.
pub const CHANNELS_AT_ONCE_512: usize = 5;
pub const ROW_PAIRS_AT_ONCE_512: usize = 4;
/// Input channels whose steps a block runs between loading and storing its chains: 4 (100
/// steps for conv2), which cut the chains' loads and stores to a quarter of one channel at a
/// time (`cargo bench -- forward/conv2`, one thread: see docs/performance.md).
pub const INPUT_CHANNELS_AT_ONCE_512: usize = 4;

/// The AVX-512 kernel. A register holds two output rows of 8 (16 lanes), so its input vector
/// is two input rows of 8, which are not adjacent in the image (rows are `w` = 12 wide): for
/// each group of [`INPUT_CHANNELS_AT_ONCE_512`] input channels in turn, the image's `k` column
/// shifts are first copied into `shifted (n, K, H, 8)` (`shifted[cl][kj][r][j] = x[c0 + cl][r]
/// [kj + j]`, 1.9 KB per channel for conv2), where rows `r` and `r + 1` of a shift are 16
/// adjacent floats: one load. The running chains live in `chains (O, OH, 8)` between groups
/// (each block loads its 20 registers, runs the group's n*K*K steps, stores them: 40 moves per
/// 2,000 fused multiply-adds); `y` holds the bias plus the blocks of [`KC`] already added,
/// exactly as in the AVX2 kernel, so the bits are the same. All of it (chains 12.8 KB, shifts
/// 7.7 KB, the weights in use) stays in L1.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn conv_image_avx512(
    x: &[f32],
    shape: Shape,
    weights: &Weights,
    bias: &[f32],
    y: &mut [MaybeUninit<f32>],
) {
    use std::arch::x86_64::*;
    let Shape { c, h, w, k } = shape;
    let (o, oh) = (bias.len(), shape.out_height());
    let plane = oh * OUT_WIDTH;
    let yp = y.as_mut_ptr() as *mut f32;
    for (q, &b) in bias.iter().enumerate() {
        for v in 0..plane {
            yp.add(q * plane + v).write(b);
        }
    }
    let group = INPUT_CHANNELS_AT_ONCE_512.min(c);
    with_scratch(
        o * plane + group * k * h * OUT_WIDTH,
        |buffer: &mut [f32]| {
            let (chains, shifted) = buffer.split_at_mut(o * plane);
            chains.fill(0.0);
            for c0 in (0..c).step_by(group) {
                let channels = group.min(c - c0);
                for cl in 0..channels {
                    for kj in 0..k {
                        for r in 0..h {
                            shifted[((cl * k + kj) * h + r) * OUT_WIDTH..][..OUT_WIDTH]
                                .copy_from_slice(&x[((c0 + cl) * h + r) * w + kj..][..OUT_WIDTH]);
                        }
                    }
                }
                let at = Block {
                    c0,
                    channels,
                    shape,
                    shifted: shifted.as_ptr(),
                    weight: weights.weight.as_ptr(),
                    blocked: weights.blocked.as_ptr(),
                    chains: chains.as_mut_ptr(),
                    y: yp,
                };
                if k == 5 {
                    channel_blocks::<5>(&at, o, oh / 2);
                } else {
                    channel_blocks::<0>(&at, o, oh / 2);
                }
            }
            // y += the last chains: every output's final rounding.
            for (v, chain) in chains.chunks_exact(16).enumerate() {
                let p = yp.add(v * 16);
                _mm512_storeu_ps(
                    p,
                    _mm512_add_ps(_mm512_loadu_ps(p), _mm512_loadu_ps(chain.as_ptr())),
                );
            }
        },
    )
}

/// What every block of one group of input channels shares.
#[cfg(target_arch = "x86_64")]
struct Block {
    c0: usize,       // the group's first input channel
    channels: usize, // and how many it has
    shape: Shape,
    shifted: *const f32, // (channels, K, H, 8)
    weight: *const f32,  // (O, C*K*K)
    blocked: *const f32, // (O / 5, C*K*K, 5): `Weights`
    chains: *mut f32,    // (O, OH, 8)
    y: *mut f32,         // (O, OH, 8)
}

/// The group of input channels `at` for every block of output channels x row pairs: whole blocks of
/// [`CHANNELS_AT_ONCE_512`] x [`ROW_PAIRS_AT_ONCE_512`], then the channels and pairs left over
/// (shapes other than conv2's) in narrower blocks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn channel_blocks<const K: usize>(at: &Block, o: usize, pairs: usize) {
    const CH: usize = CHANNELS_AT_ONCE_512;
    const RP: usize = ROW_PAIRS_AT_ONCE_512;
    let (whole_ch, whole_rp) = (o - o % CH, pairs - pairs % RP);
    for p0 in (0..whole_rp).step_by(RP) {
        for o0 in (0..whole_ch).step_by(CH) {
            block::<CH, RP, K>(at, o0, p0);
        }
        for o0 in whole_ch..o {
            block::<1, RP, K>(at, o0, p0);
        }
    }
    for p0 in whole_rp..pairs {
        for o0 in (0..whole_ch).step_by(CH) {
            block::<CH, 1, K>(at, o0, p0);
        }
        for o0 in whole_ch..o {
            block::<1, 1, K>(at, o0, p0);
        }
    }
}

/// One block: output channels `o0..o0 + CH`, row pairs `p0..p0 + RP`, the group of input
/// channels' n*K*K steps in im2col's order, with `y += chain` at each multiple of [`KC`] that
/// falls among them (for conv2 at most one: 100 steps). The steps between run as loops with
/// no test inside.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
unsafe fn block<const CH: usize, const RP: usize, const K: usize>(
    at: &Block,
    o0: usize,
    p0: usize,
) {
    use std::arch::x86_64::*;
    let Shape { h, .. } = at.shape;
    let k = if K == 0 { at.shape.k } else { K };
    let (oh, inner, kk) = (at.shape.out_height(), at.shape.inner(), k * k);
    // Rows 2(p0 + p) and 2(p0 + p) + 1 of channel o0 + q: 16 adjacent floats.
    let offset = |q: usize, p: usize| ((o0 + q) * oh + 2 * (p0 + p)) * OUT_WIDTH;
    let mut acc: [[__m512; RP]; CH] = std::array::from_fn(|q| {
        std::array::from_fn(|p| _mm512_loadu_ps(at.chains.add(offset(q, p))))
    });
    // Weight (o0 + q, step) is at `w + step * w_step + q * w_channel`: the interleaved block
    // for whole blocks, the weight's own row for a channel left over.
    let (w, w_step, w_channel) = if CH == CHANNELS_AT_ONCE_512 {
        (at.blocked.add(o0 * inner), CH, 1)
    } else {
        (at.weight.add(o0 * inner), 1, inner)
    };
    let (base, total) = (at.c0 * kk, at.channels * kk);
    let rows = at.shifted.add(2 * p0 * OUT_WIDTH);
    // Steps base + t for t in from..to: input channel c0 + cl, kernel tap (ki, kj).
    let steps = |acc: &mut [[__m512; RP]; CH], from: usize, to: usize| {
        let (mut cl, mut ki, mut kj) = (from / kk, from % kk / k, from % k);
        for t in from..to {
            let xs = rows.add(((cl * k + kj) * h + ki) * OUT_WIDTH);
            let xv: [__m512; RP] =
                std::array::from_fn(|p| _mm512_loadu_ps(xs.add(2 * p * OUT_WIDTH)));
            let wt = w.add((base + t) * w_step);
            for (q, acc_q) in acc.iter_mut().enumerate() {
                let wv = _mm512_set1_ps(*wt.add(q * w_channel));
                for (a, &xr) in acc_q.iter_mut().zip(&xv) {
                    *a = _mm512_fmadd_ps(wv, xr, *a);
                }
            }
            kj += 1;
            if kj == k {
                kj = 0;
                ki += 1;
                if ki == k {
                    ki = 0;
                    cl += 1;
                }
            }
        }
    };
    // Each multiple of KC past step 0 among these steps: the chains go into y there.
    let (mut from, mut boundary) = (0, base.div_ceil(KC).max(1) * KC);
    while boundary < base + total {
        steps(&mut acc, from, boundary - base);
        for (q, acc_q) in acc.iter_mut().enumerate() {
            for (p, a) in acc_q.iter_mut().enumerate() {
                let yq = at.y.add(offset(q, p));
                _mm512_storeu_ps(yq, _mm512_add_ps(_mm512_loadu_ps(yq), *a));
                *a = _mm512_setzero_ps();
            }
        }
        from = boundary - base;
        boundary += KC;
    }
    steps(&mut acc, from, total);
    for (q, acc_q) in acc.iter().enumerate() {
        for (p, a) in acc_q.iter().enumerate() {
            _mm512_storeu_ps(at.chains.add(offset(q, p)), *a);
        }
    }
}

/// The naive twin: every output on its own, by the same rule (bias, then each [`KC`] block's
/// chain of fused multiply-adds from +0.0 added in). `f32::mul_add` is fused on every target
/// (in software where the CPU lacks FMA), so this runs anywhere and defines the bits.
pub fn conv_image_reference(x: &[f32], shape: Shape, weight: &[f32], bias: &[f32], y: &mut [f32]) {
    shape.check(x.len(), weight.len(), bias.len(), y.len());
    let Shape { h, w, k, .. } = shape;
    let (oh, inner) = (shape.out_height(), shape.inner());
    for (q, &b) in bias.iter().enumerate() {
        for i in 0..oh {
            for j in 0..OUT_WIDTH {
                let (mut out, mut chain) = (b, 0.0f32);
                for step in 0..inner {
                    if step != 0 && step % KC == 0 {
                        out += chain;
                        chain = 0.0;
                    }
                    let (ci, ki, kj) = (step / (k * k), step / k % k, step % k);
                    let xv = x[(ci * h + i + ki) * w + j + kj];
                    chain = weight[q * inner + step].mul_add(xv, chain);
                }
                y[(q * oh + i) * OUT_WIDTH + j] = out + chain;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::kernels::im2col::conv2d_naive;
    use crate::testutil::{assert_within_rounded_sum_bound, differing_bits, random_array};
    use ndarray::{Array1, Array4, Ix1, Ix4};

    /// LeNet's conv2 (inner dimension 500: two KC blocks), one of a single block (C*K*K = 75),
    /// and one of exactly two blocks (C*K*K = 512: the flush at the very end).
    pub(crate) const SHAPES: [(usize, usize, usize, usize, u64); 3] = [
        // (c, h, k, o, seed); w = k + 7
        (20, 12, 5, 50, 1),
        (3, 8, 5, 10, 2),
        (8, 11, 8, 6, 3),
    ];

    pub(crate) fn params(c: usize, k: usize, o: usize, seed: u64) -> (Array4<f32>, Array1<f32>) {
        let w = random_array::<f32, Ix4>((o, c, k, k), seed + 10);
        let b = random_array::<f32, Ix1>(o, seed + 20);
        (w, b)
    }

    /// The outputs `(N, O, OH, OUT_WIDTH)` of `f` (the kernel or its reference), image by image.
    pub(crate) fn run(
        x: &Array4<f32>,
        w: &Array4<f32>,
        b: &Array1<f32>,
        f: impl Fn(&[f32], Shape, &[f32], &[f32], &mut [f32]),
    ) -> Array4<f32> {
        let (n, c, h, wd) = x.dim();
        let (o, _, k, _) = w.dim();
        // NaN everywhere first: an output the kernel failed to write would show.
        let mut y = Array4::from_elem((n, o, h - k + 1, OUT_WIDTH), f32::NAN);
        for (xi, mut yi) in x.outer_iter().zip(y.outer_iter_mut()) {
            f(
                xi.as_slice().unwrap(),
                Shape { c, h, w: wd, k },
                w.as_slice().unwrap(),
                b.as_slice().unwrap(),
                yi.as_slice_mut().unwrap(),
            );
        }
        y
    }

    /// The kernel of `level`, as `run` calls it.
    fn fast(level: Isa) -> impl Fn(&[f32], Shape, &[f32], &[f32], &mut [f32]) {
        move |x, shape, w, b, y| {
            // SAFETY: `MaybeUninit<f32>` has f32's layout, and the kernel only writes f32 values.
            let y = unsafe { &mut *(y as *mut [f32] as *mut [MaybeUninit<f32>]) };
            conv_image(x, shape, &Weights::new(level, w, b.len()), b, y)
        }
    }

    /// The levels with a kernel that this CPU runs (AVX2 + FMA, AVX-512).
    pub(crate) fn levels() -> Vec<Isa> {
        [Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|&l| l <= isa::detected())
            .collect()
    }

    /// The reference against the naive convolution in f64: the same products, rounded in
    /// f32 along the way, so equal within the standard bound for a rounded sum.
    #[test]
    fn reference_matches_naive_loops() {
        for (c, h, k, o, seed) in SHAPES {
            let x = random_array::<f32, Ix4>((2, c, h, k + 7), seed);
            let (w, b) = params(c, k, o, seed);
            let y = run(&x, &w, &b, conv_image_reference);
            let f64s = |a: &Array4<f32>| a.mapv(f64::from);
            let naive = conv2d_naive(f64s(&x).view(), f64s(&w).view(), b.mapv(f64::from).view());
            // The textbook bound for a sum of n terms rounded in f32 (each fused step, and the
            // adds of the blocks and the bias, round once): |error| <= n * 2^-24 * sum of |terms|,
            // n = C*K*K + 2. The sums of |terms| come from the same naive loops on |x|, |w|, |b|.
            let magnitude = conv2d_naive(
                f64s(&x.mapv(f32::abs)).view(),
                f64s(&w.mapv(f32::abs)).view(),
                b.mapv(|v| f64::from(v.abs())).view(),
            );
            let n = (c * k * k + 2) as f64;
            assert_within_rounded_sum_bound(
                &format!("{c}x{h}, k={k}"),
                y.iter(),
                naive.iter(),
                magnitude.iter(),
                n,
            );
        }
    }

    /// Each kernel this CPU runs (AVX2 + FMA, AVX-512) against the reference, bit for bit. The
    /// point of all, that the GEMM path gives the reference's bits too, is tested where that
    /// path lives: `layers::conv::tests::gemm_path_gives_the_conv_fma_reference_bits`.
    #[test]
    fn kernel_and_reference_agree_bit_for_bit() {
        if !available() {
            eprintln!("skipped: no AVX2 + FMA on this CPU (nor a fused matrixmultiply kernel)");
            return;
        }
        // Besides `SHAPES`, shapes that leave channels (6 = 5 + 1) and row pairs (2 of the
        // AVX-512 kernel's 4) over, and one of two whole blocks of channels (10).
        let extra = [(1, 9, 6, 6, 8), (3, 11, 4, 10, 9)];
        for level in levels() {
            for (c, h, k, o, seed) in SHAPES.into_iter().chain(extra) {
                let x = random_array::<f32, Ix4>((5, c, h, k + 7), seed);
                let (w, b) = params(c, k, o, seed);
                let reference = run(&x, &w, &b, conv_image_reference);
                let differ = differing_bits(&run(&x, &w, &b, fast(level)), &reference);
                assert_eq!(
                    differ, 0,
                    "{level}, {c}x{h}, k={k}: kernel: {differ} outputs differ in bits"
                );
            }
        }
    }

    #[test]
    fn writes_every_output() {
        let (c, h, k, o) = (20, 12, 5, 50);
        let x = random_array::<f32, Ix4>((1, c, h, w_of(k)), 4);
        let (w, b) = params(c, k, o, 4);
        for level in levels() {
            // `run` fills with NaN first; random inputs give no NaN of their own.
            let y = run(&x, &w, &b, fast(level));
            assert!(
                y.iter().all(|v| v.is_finite()),
                "{level}: an output was left unwritten"
            );
        }
    }

    fn w_of(k: usize) -> usize {
        k + OUT_WIDTH - 1
    }

    #[test]
    fn applies_only_to_rows_of_eight() {
        assert!(applies(20, 12, 12, 50, 5)); // LeNet's conv2
        assert!(!applies(1, 28, 28, 20, 5)); // conv1: rows of 24
        assert!(!applies(20, 10, 12, 50, 5)); // 6 output rows: not whole fours
        assert!(!applies(20, 12, 12, 49, 5)); // 49 channels: not whole pairs
    }
}
