//! A dense layer's forward product `Y (N, O) += X (N, I) W^T` that reads the weights `W (O, I)`
//! where they lie, with **the same bits as `matrixmultiply`**, which it replaces on CPUs with
//! AVX2 + FMA. Its naive twin is [`forward_reference`].
//!
//! Why: `matrixmultiply` packs both operands of every product into panels first. `W^T` as a
//! view of a row-major `W` has contiguous columns, a layout its packing reads one element at a
//! time (`packing.rs`'s "general layout case"): in `perf` of the autoencoder's training step
//! (batch 64, 2 threads, the AMD EPYC with AVX-512) packing took 27% of the samples, 17 of them
//! in the forward products, as much as their multiply-adds. At batch 64 each weight is used 64
//! times per pass, too few to repay a copy made element by element. Here the lanes of a vector
//! are the *images*: the batch is transposed once per call into `X^T (I, N)` (small: N x I
//! against W's O x I), and a tile of [`OUTPUTS_AT_ONCE`] outputs x up to 64 images keeps its
//! sums in registers while, at each step `i` of the inner dimension, it loads the images' values
//! `X^T[i]` and broadcasts the tile's weights `W[o][i]` straight from their rows. Each weight is
//! read once per 64 images; nothing is packed.
//!
//! **The same bits.** As `kernels::conv_fma` explains, `matrixmultiply`'s FMA kernels compute
//! each element of `C = A B + C` as `c + chain(0..256) + chain(256..512) + ...`: for each block
//! of [`KC`] steps of the inner dimension a chain of fused multiply-adds in order from +0.0,
//! added into `c` rounded once. This kernel keeps every output's running value `c` beside its
//! chain and does exactly that, so `y` gets the bits of `gemm(1, x, w.t(), 1, y)` wherever
//! `matrixmultiply` takes a fused kernel (AVX2 + FMA, or AVX-512): tested against
//! `kernels::gemm` in `reference_gives_matrixmultiplys_bits`. Without AVX2 + FMA, [`chosen`]
//! is false and the layer keeps the GEMM.

use crate::kernels::isa::{self, Isa};
use crate::kernels::parallel::min_pieces_per_job;
use ndarray::{s, ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

/// `matrixmultiply`'s block of the inner dimension for f32 (`kernels::conv_fma::KC`).
pub const KC: usize = crate::kernels::conv_fma::KC;

/// Outputs of a tile: with 4 vectors of 16 images (AVX-512), 24 registers of sums, 4 of the
/// images' values and 1 broadcast weight: 29 of 32 registers; per step 4 loads and 6
/// broadcasts for 24 fused multiply-adds. With AVX2 (8 lanes), 6 outputs x 2 vectors: 12
/// registers of sums, 2 of values, 1 weight: 15 of 16.
pub const OUTPUTS_AT_ONCE: usize = 6;

/// Transposed rows (inputs) per parallel piece of [`Batch::new`]: at batch 64, 16 KB.
pub const INPUTS_PER_PIECE: usize = 64;

/// Images a tile covers at most: 4 vectors of 16 (AVX-512) or 2 of 8 (AVX2); the transposed
/// batch is padded with zeros to a multiple of [`LANE_GROUP`].
pub const LANE_GROUP: usize = 16;

/// Whether this CPU has a kernel here, and `matrixmultiply` a fused kernel whose bits it keeps.
pub fn available() -> bool {
    isa::detected() >= Isa::Avx2
}

/// Whether the dense layers take this kernel: at every level with a kernel of its own
/// (`isa::selected()` at AVX2 or above).
pub fn chosen() -> bool {
    chosen_level().is_some()
}

/// The level whose kernel the dense layers take, `None` where they keep the GEMM.
pub fn chosen_level() -> Option<Isa> {
    let level = isa::selected();
    (level >= Isa::Avx2).then_some(level)
}

/// A batch `X (N, I)` transposed to `X^T (I, N')`, `N'` = N rounded up to [`LANE_GROUP`], the
/// padding zeros, each row starting on a 64-byte boundary (one cache line per AVX-512 load).
pub struct Batch {
    data: Vec<f32>,
    offset: usize,
    images: usize,
    padded: usize,
    inputs: usize,
}

impl Batch {
    /// `x (N, I)`, any layout, transposed, in parallel pieces of [`INPUTS_PER_PIECE`] transposed
    /// rows: each piece reads its inputs' values from every image's row, in order, and writes
    /// them side by side. Only values are moved, so the pieces change nothing; they take the
    /// transpose off the calling thread, where it held the other workers up (the autoencoder's
    /// eight transposes, 160 us per training step on one thread).
    pub fn new(x: ArrayView2<f32>) -> Self {
        let (images, inputs) = x.dim();
        let padded = images.div_ceil(LANE_GROUP) * LANE_GROUP;
        let mut data = vec![0.0f32; inputs * padded + LANE_GROUP];
        let offset = data.as_ptr().align_offset(64).min(LANE_GROUP - 1);
        data[offset..offset + inputs * padded]
            .par_chunks_mut((INPUTS_PER_PIECE * padded).max(1))
            .enumerate()
            .with_min_len(min_pieces_per_job())
            .for_each(|(p, piece)| {
                let first = p * INPUTS_PER_PIECE;
                let these = s![first..first + piece.len() / padded];
                for (n, row) in x.outer_iter().enumerate() {
                    // X^T[i][n] = X[n][i] for this piece's inputs i.
                    for (t, &v) in piece[n..].iter_mut().step_by(padded).zip(row.slice(these)) {
                        *t = v;
                    }
                }
            });
        Batch {
            data,
            offset,
            images,
            padded,
            inputs,
        }
    }

    fn rows(&self) -> &[f32] {
        &self.data[self.offset..self.offset + self.inputs * self.padded]
    }
}

/// `y (N, O) += x (N, I) w^T` for the batch `x` as [`Batch`] holds it and `w (O, I)` with
/// contiguous rows (`w.strides()[1] == 1`, any row stride: a piece of a layer's rows), on the
/// kernel of `level` (AVX-512, or AVX2 + FMA below it; [`chosen`] must allow it). `y` may be
/// any view (a piece of a layer's output columns); it is read, then each element written once.
pub fn forward(level: Isa, x: &Batch, w: ArrayView2<f32>, mut y: ArrayViewMut2<f32>) {
    let (o, inputs) = w.dim();
    assert_eq!(inputs, x.inputs, "dense_fma: w is (O, I) for x (N, I)");
    assert_eq!(y.dim(), (x.images, o), "dense_fma: y is (N, O)");
    assert!(
        o == 0 || inputs <= 1 || w.strides()[1] == 1,
        "dense_fma: w's rows must be contiguous"
    );
    assert!(
        level >= Isa::Avx2 && level <= isa::detected(),
        "dense_fma: no kernel at level {level} on this CPU (widest {})",
        isa::detected()
    );
    if o == 0 || x.images == 0 {
        return;
    }
    let ldw = w.strides()[0];
    let (rsy, csy) = (y.strides()[0], y.strides()[1]);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU runs `level` (checked above); `w`'s rows are contiguous, `O` of them `ldw`
    // apart, and `y`'s `N x O` elements are reached through its strides, as the views
    // guarantee; `x.rows()` holds `I` rows of `padded` values, which the tiles never pass.
    unsafe {
        let (wp, yp) = (w.as_ptr(), y.as_mut_ptr());
        if level >= Isa::Avx512 {
            avx512::forward(x, wp, ldw, o, yp, rsy, csy)
        } else {
            avx2::forward(x, wp, ldw, o, yp, rsy, csy)
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("no level above generic off x86-64: {ldw} {rsy} {csy}");
}

/// The naive twin: every output on its own, by the same rule (its value, then each [`KC`]
/// block's chain of fused multiply-adds from +0.0 added in).
pub fn forward_reference(x: ArrayView2<f32>, w: ArrayView2<f32>, mut y: ArrayViewMut2<f32>) {
    let inputs = x.ncols();
    for (xn, mut yn) in x.outer_iter().zip(y.outer_iter_mut()) {
        for (wo, c) in w.outer_iter().zip(yn.iter_mut()) {
            for block in (0..inputs).step_by(KC) {
                let mut chain = 0.0f32;
                for i in block..(block + KC).min(inputs) {
                    chain = xn[i].mul_add(wo[i], chain);
                }
                *c += chain;
            }
        }
    }
}

/// GEMM's `beta` as [`product`] takes it: whether it overwrites its output, adds into it, or
/// adds onto +0.0 as if it were zeroed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Beta {
    /// `C = A B`: the first block's chain is stored as it is; `C` is never read.
    Zero,
    /// `C = A B + C`: every block's chain is added into `C`, rounded once.
    One,
    /// `C = 0 + A B`: the first block's chain is added into +0.0, the others into `C`: the
    /// bits [`Beta::One`] gives on a zeroed `C`, without zeroing `C` or reading it first (a
    /// weight gradient made into a scratch block of unspecified contents).
    OntoZeros,
}

/// `c (M, N) = a (M, K) b (K, N)` (or `+=`, by `beta`) with `b`'s and `c`'s rows contiguous
/// (`a` any layout), on the kernel of `level`: the bits of `gemm(1, a, b, beta, c)`. Here the
/// lanes are `c`'s columns: a tile of [`OUTPUTS_AT_ONCE`] rows x up to 64 columns loads, at
/// each step `k`, `b[k][..]` where it lies and broadcasts the rows' `a[m][k]`, so that `b` is
/// never copied into panels first. A dense layer's input gradient `dX = dY W` is this with
/// `b` = `W` (its packing took 7.5% of the autoencoder's training step in the same `perf`
/// profile), and its weight gradient `dW += dY^T X` with `b` = `X`.
pub fn product(
    level: Isa,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    mut c: ArrayViewMut2<f32>,
    beta: Beta,
) {
    let ((m, k), (k2, n)) = (a.dim(), b.dim());
    assert_eq!(k, k2, "dense_fma: a is (M, K) for b (K, N)");
    assert_eq!(c.dim(), (m, n), "dense_fma: c is (M, N)");
    assert!(
        n <= 1 || (b.strides()[1] == 1 && c.strides()[1] == 1),
        "dense_fma: b's and c's rows must be contiguous"
    );
    assert!(
        level >= Isa::Avx2 && level <= isa::detected(),
        "dense_fma: no kernel at level {level} on this CPU (widest {})",
        isa::detected()
    );
    if m == 0 || n == 0 || (k == 0 && beta == Beta::One) {
        return;
    }
    if k == 0 {
        c.fill(0.0);
        return;
    }
    let operands = Operands {
        k,
        a: a.as_ptr(),
        rsa: a.strides()[0],
        csa: a.strides()[1],
        b: b.as_ptr(),
        ldb: b.strides()[0],
        c: c.as_mut_ptr(),
        ldc: c.strides()[0],
        width: n,
        beta,
    };
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU runs `level` (checked above); every element reached is inside one of the
    // three views, through its own strides, with `b`'s and `c`'s rows contiguous (checked).
    unsafe {
        if level >= Isa::Avx512 {
            avx512::product(m, operands)
        } else {
            avx2::product(m, operands)
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("no level above generic off x86-64: {m} {}", operands.k);
}

/// How many tiles of outputs ahead [`forward`] prefetches its weights, one line per row every
/// 16 steps: in a training step they come from memory (the previous step's update last wrote
/// them). One tile ahead made the autoencoder's training step 0.6% faster, two 1.1% (2
/// threads, a Zen 4 EPYC, docs/performance.md).
pub const PREFETCH_TILES_AHEAD: usize = 2;

/// The rows a forward tile prefetches: `rows` rows of the weights from `first` on, at the
/// tile's own row stride.
#[derive(Clone, Copy)]
struct Ahead {
    rows: usize,
    first: *const f32,
}

/// [`product`]'s operands as its tiles take them: `a (M, k)` through its strides, `b (k, width)`
/// and `c (M, width)` with contiguous rows, each pointer at the block's first element.
#[derive(Clone, Copy)]
struct Operands {
    k: usize,
    a: *const f32,
    rsa: isize,
    csa: isize,
    b: *const f32,
    ldb: isize,
    c: *mut f32,
    ldc: isize,
    width: usize,
    beta: Beta,
}

/// The naive twin of [`product`]: every element on its own, each block's chain stored (the
/// first, with [`Beta::Zero`]), added into +0.0 (the first, with [`Beta::OntoZeros`]) or added
/// into `c`.
pub fn product_reference(
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    mut c: ArrayViewMut2<f32>,
    beta: Beta,
) {
    let k = a.ncols();
    if k == 0 && beta != Beta::One {
        c.fill(0.0);
    }
    for (am, mut cm) in a.outer_iter().zip(c.outer_iter_mut()) {
        for (j, c) in cm.iter_mut().enumerate() {
            for block in (0..k).step_by(KC) {
                let mut chain = 0.0f32;
                for p in block..(block + KC).min(k) {
                    chain = am[p].mul_add(b[[p, j]], chain);
                }
                *c = match (block, beta) {
                    (0, Beta::Zero) => chain,
                    (0, Beta::OntoZeros) => 0.0 + chain,
                    _ => *c + chain,
                };
            }
        }
    }
}

/// The tile loops, written once for both vector widths: `$vec` of `$lanes` floats, tiles of
/// each number of vectors in `$v` (the widest first).
#[cfg(target_arch = "x86_64")]
macro_rules! tiles {
    ($feature:literal, $vec:ty, $lanes:literal, [$($v:literal),+],
     $zero:ident, $load:ident, $store:ident, $set1:ident, $fma:ident, $add:ident) => {
        use super::{Ahead, Batch, Beta, Operands, KC, OUTPUTS_AT_ONCE, PREFETCH_TILES_AHEAD};
        use std::arch::x86_64::*;

        /// The batch in groups of up to `$v[0]` vectors of images, each group through every
        /// tile of outputs.
        #[target_feature(enable = $feature)]
        pub(super) unsafe fn forward(
            x: &Batch,
            w: *const f32,
            ldw: isize,
            o: usize,
            y: *mut f32,
            rsy: isize,
            csy: isize,
        ) {
            let mut n0 = 0;
            while n0 < x.images {
                // The widest group first: `$v` lists the group sizes, widest first.
                let vectors = (x.images - n0).div_ceil($lanes).min([$($v),+][0]);
                match vectors {
                    $($v => outputs::<$v>(x, n0, w, ldw, o, y, rsy, csy),)+
                    _ => unreachable!("a group of 1 to {} vectors", [$($v),+][0]),
                }
                n0 += vectors * $lanes;
            }
        }

        /// Every tile of outputs for the images `n0..n0 + V * lanes`.
        #[target_feature(enable = $feature)]
        #[inline]
        #[allow(clippy::too_many_arguments)]
        unsafe fn outputs<const V: usize>(
            x: &Batch,
            n0: usize,
            w: *const f32,
            ldw: isize,
            o: usize,
            y: *mut f32,
            rsy: isize,
            csy: isize,
        ) {
            let images = (x.images - n0).min(V * $lanes);
            let y = y.offset(n0 as isize * rsy);
            let mut o0 = 0;
            while o0 < o {
                let (w, y) = (w.offset(o0 as isize * ldw), y.offset(o0 as isize * csy));
                let r = (o - o0).min(OUTPUTS_AT_ONCE);
                // The rows of the tile PREFETCH_TILES_AHEAD tiles on that exist.
                let skip = r + (PREFETCH_TILES_AHEAD - 1) * OUTPUTS_AT_ONCE;
                let ahead = (o - o0).saturating_sub(skip).min(OUTPUTS_AT_ONCE);
                let next = Ahead { rows: ahead, first: w.wrapping_offset(skip as isize * ldw) };
                match r {
                    OUTPUTS_AT_ONCE => tile::<OUTPUTS_AT_ONCE, V>(x, n0, images, w, ldw, y, rsy, csy, next),
                    5 => tile::<5, V>(x, n0, images, w, ldw, y, rsy, csy, next),
                    4 => tile::<4, V>(x, n0, images, w, ldw, y, rsy, csy, next),
                    3 => tile::<3, V>(x, n0, images, w, ldw, y, rsy, csy, next),
                    2 => tile::<2, V>(x, n0, images, w, ldw, y, rsy, csy, next),
                    _ => tile::<1, V>(x, n0, images, w, ldw, y, rsy, csy, next),
                }
                o0 += r;
            }
        }

        /// `R` outputs x `V` vectors of images (the first `images` of them real): their values
        /// from `y` into `total`, then for each block of [`KC`] steps a chain from +0.0 added
        /// into `total` (rounded once), then `total` back into `y`. Every 16 steps, one cache
        /// line of each of `next`'s rows is prefetched (values are not touched).
        #[target_feature(enable = $feature)]
        #[inline]
        #[allow(clippy::too_many_arguments)]
        unsafe fn tile<const R: usize, const V: usize>(
            x: &Batch,
            n0: usize,
            images: usize,
            w: *const f32,
            ldw: isize,
            y: *mut f32,
            rsy: isize,
            csy: isize,
            next: Ahead,
        ) {
            let (inputs, padded) = (x.inputs, x.padded);
            let at = |r: usize, n: usize| y.offset(n as isize * rsy + r as isize * csy);
            let mut lane = [0.0f32; $lanes];
            let mut total = [[$zero(); V]; R];
            for (r, tr) in total.iter_mut().enumerate() {
                for (v, t) in tr.iter_mut().enumerate() {
                    for (l, slot) in lane.iter_mut().enumerate() {
                        let n = v * $lanes + l;
                        *slot = if n < images { *at(r, n) } else { 0.0 };
                    }
                    *t = $load(lane.as_ptr());
                }
            }
            let rows: [*const f32; R] = std::array::from_fn(|r| w.offset(r as isize * ldw));
            let xs = x.rows().as_ptr().add(n0);
            let mut block = 0;
            while block < inputs {
                let end = (block + KC).min(inputs);
                let mut acc = [[$zero(); V]; R];
                for i in block..end {
                    if i % 16 == 0 {
                        for r in 0..next.rows {
                            let line = next.first.offset(r as isize * ldw).add(i);
                            _mm_prefetch::<_MM_HINT_T0>(line as *const i8);
                        }
                    }
                    let xp = xs.add(i * padded);
                    let xv: [$vec; V] = std::array::from_fn(|v| $load(xp.add(v * $lanes)));
                    for (acc_r, row) in acc.iter_mut().zip(&rows) {
                        let wv = $set1(*row.add(i));
                        for (a, &xi) in acc_r.iter_mut().zip(&xv) {
                            *a = $fma(xi, wv, *a);
                        }
                    }
                }
                for (tr, ar) in total.iter_mut().zip(&acc) {
                    for (t, &a) in tr.iter_mut().zip(ar) {
                        *t = $add(*t, a);
                    }
                }
                block = end;
            }
            for (r, tr) in total.iter().enumerate() {
                for (v, &t) in tr.iter().enumerate() {
                    $store(lane.as_mut_ptr(), t);
                    for (l, &value) in lane.iter().enumerate() {
                        let n = v * $lanes + l;
                        if n < images {
                            *at(r, n) = value;
                        }
                    }
                }
            }
        }

        /// [`super::product`]'s loops: `c`'s columns in tiles of up to `$v[0]` whole
        /// vectors, then a last tile of one partial vector; in each, the rows `R` at a time.
        #[target_feature(enable = $feature)]
        pub(super) unsafe fn product(m: usize, all: Operands) {
            let mut j0 = 0;
            while j0 < all.width {
                let vectors = ((all.width - j0) / $lanes).min([$($v),+][0]);
                let width = if vectors == 0 { all.width - j0 } else { vectors * $lanes };
                let mut m0 = 0;
                while m0 < m {
                    let r = (m - m0).min(OUTPUTS_AT_ONCE);
                    let args = Operands {
                        a: all.a.offset(m0 as isize * all.rsa),
                        b: all.b.add(j0),
                        c: all.c.offset(m0 as isize * all.ldc).add(j0),
                        width,
                        ..all
                    };
                    match (r, vectors) {
                        $((OUTPUTS_AT_ONCE, $v) => product_tile::<OUTPUTS_AT_ONCE, $v>(args),)+
                        (OUTPUTS_AT_ONCE, _) => product_tile::<OUTPUTS_AT_ONCE, 0>(args),
                        $((5, $v) => product_tile::<5, $v>(args),)+
                        (5, _) => product_tile::<5, 0>(args),
                        $((4, $v) => product_tile::<4, $v>(args),)+
                        (4, _) => product_tile::<4, 0>(args),
                        $((3, $v) => product_tile::<3, $v>(args),)+
                        (3, _) => product_tile::<3, 0>(args),
                        $((2, $v) => product_tile::<2, $v>(args),)+
                        (2, _) => product_tile::<2, 0>(args),
                        $((1, $v) => product_tile::<1, $v>(args),)+
                        _ => product_tile::<1, 0>(args),
                    }
                    m0 += r;
                }
                j0 += width;
            }
        }

        /// `R` rows x `V` whole vectors of columns, or with `V` = 0 one partial vector of
        /// `width` columns: for each block of [`KC`] steps a chain from +0.0, stored into `c`
        /// (the first block with [`Beta::Zero`]), added into +0.0 (the first with
        /// [`Beta::OntoZeros`]) or added into `c`, rounded once.
        #[target_feature(enable = $feature)]
        #[inline]
        unsafe fn product_tile<const R: usize, const V: usize>(t: Operands) {
            const { assert!(V <= 4) };
            let vectors = V.max(1);
            let load = |p: *const f32| if V == 0 { load_part(p, t.width) } else { $load(p) };
            let rows: [*const f32; R] = std::array::from_fn(|r| t.a.offset(r as isize * t.rsa));
            let out = |r: usize, v: usize| t.c.offset(r as isize * t.ldc).add(v * $lanes);
            let mut block = 0;
            while block < t.k {
                let end = (block + KC).min(t.k);
                let mut acc = [[$zero(); 4]; R];
                for p in block..end {
                    let bp = t.b.offset(p as isize * t.ldb);
                    let mut bv = [$zero(); 4];
                    for (v, slot) in bv.iter_mut().enumerate().take(vectors) {
                        *slot = load(bp.add(v * $lanes));
                    }
                    for (acc_r, row) in acc.iter_mut().zip(&rows) {
                        let g = $set1(*row.offset(p as isize * t.csa));
                        for (acc, &bi) in acc_r.iter_mut().zip(&bv).take(vectors) {
                            *acc = $fma(g, bi, *acc);
                        }
                    }
                }
                for (r, acc_r) in acc.iter().enumerate() {
                    for (v, &chain) in acc_r.iter().enumerate().take(vectors) {
                        let p = out(r, v);
                        let value = match (block, t.beta) {
                            (0, Beta::Zero) => chain,
                            (0, Beta::OntoZeros) => $add($zero(), chain),
                            _ => $add(load(p), chain),
                        };
                        if V == 0 {
                            store_part(p, value, t.width)
                        } else {
                            $store(p, value)
                        }
                    }
                }
                block = end;
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    /// The first `lanes` (< 16) floats at `p`, zeros after them; nothing past them is read.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load_part(p: *const f32, lanes: usize) -> __m512 {
        _mm512_maskz_loadu_ps(((1u32 << lanes) - 1) as __mmask16, p)
    }

    /// Stores the first `lanes` (< 16) floats of `v` at `p`; nothing past them is written.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn store_part(p: *mut f32, v: __m512, lanes: usize) {
        _mm512_mask_storeu_ps(p, ((1u32 << lanes) - 1) as __mmask16, v)
    }

    tiles!(
        "avx512f,avx2,fma",
        __m512,
        16,
        [4, 3, 2, 1],
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        _mm512_storeu_ps,
        _mm512_set1_ps,
        _mm512_fmadd_ps,
        _mm512_add_ps
    );
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    /// The lanes mask for the first `lanes` (< 8) floats: all ones in those lanes.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn mask(lanes: usize) -> __m256i {
        let l = lanes as i32;
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(l),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }

    /// The first `lanes` (< 8) floats at `p`, zeros after them; nothing past them is read.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn load_part(p: *const f32, lanes: usize) -> __m256 {
        _mm256_maskload_ps(p, mask(lanes))
    }

    /// Stores the first `lanes` (< 8) floats of `v` at `p`; nothing past them is written.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn store_part(p: *mut f32, v: __m256, lanes: usize) {
        _mm256_maskstore_ps(p, mask(lanes), v)
    }

    tiles!(
        "avx2,fma",
        __m256,
        8,
        [2, 1],
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        _mm256_storeu_ps,
        _mm256_set1_ps,
        _mm256_fmadd_ps,
        _mm256_add_ps
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv_fma::tests::levels;
    use crate::kernels::gemm::gemm;
    use crate::testutil::{assert_within_rounded_sum_bound, differing_bits, random_array};
    use ndarray::{s, Array2, ArrayView2, Ix2};

    /// (images, inputs, outputs): the autoencoder's first layer and LeNet's fc1 and fc2 at a
    /// small batch; blocks of KC exactly (256, 512) and one step past them; ragged images (1,
    /// 13, 17, 70: a partial vector, and 4 + 1 vectors) and outputs (1 to 7, 500); 300 images
    /// (the weight gradient's sums past one block).
    const SHAPES: [(usize, usize, usize); 11] = [
        (64, 784, 40),
        (64, 800, 500),
        (64, 500, 10),
        (17, 256, 7),
        (13, 512, 6),
        (70, 257, 5),
        (1, 1, 1),
        (3, 30, 250),
        (33, 1000, 3),
        (100, 250, 13),
        (300, 40, 9),
    ];

    fn operands(n: usize, i: usize, o: usize, seed: u64) -> [Array2<f32>; 3] {
        [
            random_array::<f32, Ix2>((n, i), seed),
            random_array::<f32, Ix2>((o, i), seed + 1),
            random_array::<f32, Ix2>((n, o), seed + 2),
        ]
    }

    /// The reference against the product in f64: the same terms rounded in f32 along the way,
    /// so within the textbook bound for a rounded sum, `n * 2^-24 * sum |terms|` with n = I + 1
    /// steps (each fused step, and each block's add, rounds once).
    #[test]
    fn reference_matches_naive_loops() {
        for (k, (n, i, o)) in SHAPES.into_iter().enumerate() {
            let [x, w, y0] = operands(n, i, o, 10 * k as u64);
            let mut y = y0.clone();
            forward_reference(x.view(), w.view(), y.view_mut());
            let f64s = |a: &Array2<f32>| a.mapv(f64::from);
            let want = f64s(&x).dot(&f64s(&w).t()) + f64s(&y0);
            let abs = |a: &Array2<f32>| a.mapv(|v| f64::from(v.abs()));
            let magnitude = abs(&x).dot(&abs(&w).t()) + abs(&y0);
            let what = format!("{n} x {i} x {o}");
            assert_within_rounded_sum_bound(
                &what,
                y.iter(),
                want.iter(),
                magnitude.iter(),
                (i + 1) as f64,
            );
        }
    }

    /// The point of it all: where `matrixmultiply` takes a fused kernel, its `gemm(1, x, w^T,
    /// 1, y)` gives the reference's bits, element for element.
    #[test]
    fn reference_gives_matrixmultiplys_bits() {
        if !available() {
            eprintln!("skipped: no AVX2 + FMA on this CPU (nor a fused matrixmultiply kernel)");
            return;
        }
        for (k, (n, i, o)) in SHAPES.into_iter().enumerate() {
            let [x, w, y0] = operands(n, i, o, 10 * k as u64);
            let (mut by_gemm, mut by_reference) = (y0.clone(), y0);
            gemm(1.0, x.view(), w.t(), 1.0, by_gemm.view_mut());
            forward_reference(x.view(), w.view(), by_reference.view_mut());
            let differ = differing_bits(&by_gemm, &by_reference);
            assert_eq!(
                differ, 0,
                "{n} x {i} x {o}: {differ} outputs differ in bits"
            );
        }
    }

    /// The batch's naive twin: `X^T[i][n] = X[n][i]`, zeros past the images, on 1 and 3
    /// threads, for a contiguous and a strided `x`, with pieces whole, cut short, and absent.
    #[test]
    fn batch_is_the_transpose_padded_with_zeros_on_any_thread_count() {
        for (k, (n, i)) in [(64, 784), (17, 130), (33, 64), (1, 1), (0, 5), (5, 0)]
            .into_iter()
            .enumerate()
        {
            let x = random_array::<f32, Ix2>((n, i), 90 + k as u64);
            let padded = n.div_ceil(LANE_GROUP) * LANE_GROUP;
            let want: Vec<f32> = (0..i * padded)
                .map(|at| {
                    let (input, image) = (at / padded.max(1), at % padded.max(1));
                    if image < n {
                        x[[image, input]]
                    } else {
                        0.0
                    }
                })
                .collect();
            let xt = x.t().as_standard_layout().into_owned();
            for threads in [1, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                for view in [x.view(), xt.t()] {
                    let batch = pool.install(|| Batch::new(view));
                    assert_eq!(batch.rows(), &want[..], "{n} x {i}, {threads} threads");
                    assert_eq!(batch.rows().as_ptr() as usize % 64, 0, "rows aligned");
                }
            }
        }
    }

    /// Each kernel this CPU runs against the reference, bit for bit, writing into a piece of a
    /// wider output (a layer's parallel piece) from a piece of a taller weight: the columns
    /// around the piece are left as they were.
    #[test]
    fn kernel_and_reference_agree_bit_for_bit() {
        for level in levels() {
            for (k, (n, i, o)) in SHAPES.into_iter().enumerate() {
                let [x, w_all, y_all] = operands(n, i, o + 5, 10 * k as u64);
                let (w, cols) = (w_all.slice(s![2..o + 2, ..]), s![.., 2..o + 2]);
                let mut want = y_all.clone();
                forward_reference(x.view(), w, want.slice_mut(cols));
                let mut got = y_all.clone();
                forward(level, &Batch::new(x.view()), w, got.slice_mut(cols));
                let differ = differing_bits(&got, &want);
                assert_eq!(
                    differ, 0,
                    "{level}, {n} x {i} x {o}: {differ} outputs differ in bits"
                );
                // A transposed (column-major) input gives the same batch.
                let xt = x.t().as_standard_layout().into_owned();
                let mut again = y_all.clone();
                forward(level, &Batch::new(xt.t()), w, again.slice_mut(cols));
                assert_eq!(differing_bits(&again, &want), 0, "{level}: strided x");
            }
        }
    }

    /// `product` in its three modes, as the dense layers call it: the input gradient
    /// `dX = dY W` (overwrite; `W` a piece of a wider weight's columns, `dX` of a wider
    /// output's), the weight gradient `dW += dY^T X` (`a` a transposed view), and the same onto
    /// zeros in a scratch block. The reference against f64 within the rounded-sum bound, against
    /// `matrixmultiply`'s bits where it has a fused kernel (onto a zeroed block for
    /// `OntoZeros`), and each kernel against the reference; the columns around the piece are
    /// left as they were (NaN inside it first for `Zero` and `OntoZeros`, which never read it).
    #[test]
    fn product_kernel_reference_and_gemm_agree() {
        for (k, (n, o, i)) in SHAPES.into_iter().enumerate() {
            let [dy, w_all, _] = operands(n, o, i + 5, 10 * k as u64);
            let w_all = w_all.t().as_standard_layout().into_owned(); // (O, I + 5)
            let cols = s![.., 2..i + 2];
            let dx_case = (dy.view(), w_all.slice(cols), (n, i + 5), Beta::Zero);
            // dW (O, I) += dY^T (O, N) X (N, I): here dY is `w_all`'s first N rows' columns.
            let x = random_array::<f32, Ix2>((n, i + 5), 7 + k as u64);
            let dw_case = (dy.t(), x.slice(cols), (o, i + 5), Beta::One);
            // ... and into a scratch block: as `Beta::One` onto zeros, never reading it.
            let scratch_case = (dy.t(), x.slice(cols), (o, i + 5), Beta::OntoZeros);
            for (a, b, shape, beta) in [dx_case, dw_case, scratch_case] {
                let fresh = || {
                    let mut c = random_array::<f32, Ix2>(shape, 99);
                    if beta != Beta::One {
                        c.slice_mut(cols).fill(f32::NAN);
                    }
                    c
                };
                let before = fresh();
                let mut want = fresh();
                product_reference(a, b, want.slice_mut(cols), beta);
                let f64s = |v: ArrayView2<f32>| v.mapv(f64::from);
                let abs = |v: ArrayView2<f32>| v.mapv(|e| f64::from(e.abs()));
                let (mut exact, mut magnitude) = (f64s(a).dot(&f64s(b)), abs(a).dot(&abs(b)));
                if beta == Beta::One {
                    exact += &f64s(before.slice(cols));
                    magnitude += &abs(before.slice(cols));
                }
                let what = format!("{beta:?} {:?} x {:?}", a.dim(), b.dim());
                let got = want.slice(cols).to_owned();
                let terms = (a.ncols() + 1) as f64;
                assert_within_rounded_sum_bound(
                    &what,
                    got.iter(),
                    exact.iter(),
                    magnitude.iter(),
                    terms,
                );
                if available() {
                    let mut by_gemm = fresh();
                    let beta = match beta {
                        Beta::Zero => 0.0,
                        Beta::One => 1.0,
                        Beta::OntoZeros => {
                            by_gemm.slice_mut(cols).fill(0.0);
                            1.0
                        }
                    };
                    gemm(1.0, a, b, beta, by_gemm.slice_mut(cols));
                    assert_eq!(differing_bits(&by_gemm, &want), 0, "{what}: gemm");
                }
                for level in levels() {
                    let mut by_kernel = fresh();
                    product(level, a, b, by_kernel.slice_mut(cols), beta);
                    assert_eq!(differing_bits(&by_kernel, &want), 0, "{what}: {level}");
                }
            }
        }
    }

    /// Where the modes differ by more than a read: a product that underflows to -0.0 is stored
    /// as -0.0 by `Zero`, but added onto +0.0 by `One` on a zeroed output and by `OntoZeros`
    /// (-1e-30 x 1e-30 = -1e-60, below f32's smallest subnormal); with an empty inner
    /// dimension `Zero` and `OntoZeros` write zeros and `One` leaves the output as it was. The
    /// reference and every kernel alike.
    #[test]
    fn modes_on_negative_zero_and_an_empty_inner_dimension() {
        let (a, b) = (ndarray::arr2(&[[-1e-30f32]]), ndarray::arr2(&[[1e-30f32]]));
        let (a0, b0) = (Array2::<f32>::zeros((1, 0)), Array2::<f32>::zeros((0, 1)));
        let cases = [
            (Beta::Zero, -0.0f32, 0.0f32),
            (Beta::One, 0.0, 5.0),
            (Beta::OntoZeros, 0.0, 0.0),
        ];
        for (beta, underflowed, empty) in cases {
            let start = if beta == Beta::One { 0.0 } else { f32::NAN };
            let mut c = ndarray::arr2(&[[start]]);
            product_reference(a.view(), b.view(), c.view_mut(), beta);
            assert_eq!(
                c[[0, 0]].to_bits(),
                underflowed.to_bits(),
                "{beta:?} reference"
            );
            let mut c = ndarray::arr2(&[[5.0f32]]);
            product_reference(a0.view(), b0.view(), c.view_mut(), beta);
            assert_eq!(c[[0, 0]], empty, "{beta:?} reference, empty");
            for level in levels() {
                let mut c = ndarray::arr2(&[[start]]);
                product(level, a.view(), b.view(), c.view_mut(), beta);
                assert_eq!(
                    c[[0, 0]].to_bits(),
                    underflowed.to_bits(),
                    "{beta:?} {level}"
                );
                let mut c = ndarray::arr2(&[[5.0f32]]);
                product(level, a0.view(), b0.view(), c.view_mut(), beta);
                assert_eq!(c[[0, 0]], empty, "{beta:?} {level}, empty");
            }
        }
    }

    #[test]
    #[should_panic(expected = "rows must be contiguous")]
    fn refuses_a_weight_with_strided_rows() {
        let [x, w, mut y] = operands(4, 8, 3, 1);
        let wt = w.t().as_standard_layout().into_owned();
        forward(Isa::Avx2, &Batch::new(x.view()), wt.t(), y.view_mut());
    }
}
