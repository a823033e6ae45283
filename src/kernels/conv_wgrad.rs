//! A direct weight gradient for LeNet's conv2 (any convolution whose output rows are 8 wide and
//! that has at most 64 output channels) on AVX-512 and on AVX2 + FMA that gives **the same bits
//! as the im2col + GEMM path** it replaces (`layers::conv::group_param_gradients`). Its naive
//! twin is [`weight_gradient_reference`]; `im2col::conv2d_naive_backward` checks both to
//! rounding.
//!
//! For a group of `G` images the GEMM path computes `dW (O, C*K*K) = dY (O, G*P) x cols^T
//! (G*P, C*K*K)` with `matrixmultiply`, `beta = 0`. Its rule per element (`sgemm_kernel.rs`,
//! `kernel_target_avx512`, and `gemm.rs`'s loop 4): the inner dimension, here the group's
//! positions `r = image * P + p` in order, is cut into blocks of [`KC`] = 256; each block's
//! products are one chain of fused multiply-adds from +0.0; the first block's chain is written
//! (`beta = 0`: `c = 1 * ab`), each later block's added (`c = c + ab`, one rounding). This
//! kernel does exactly that, at both levels.
//!
//! One exception, unreachable with real data, as in `conv_fma`: `matrixmultiply`'s AVX2 kernel
//! (`kernel_x86_avx`), which an AVX2 machine without AVX-512 takes, writes a `beta = 0` block
//! as `fma(1, ab, +0.0)`, so where a first block's chain is -0.0 (its exact sum negative and
//! below 2^-150 in magnitude) that GEMM stores +0.0 and this kernel -0.0.
//!
//! Why: on the 2-core AVX-512 Xeon the GEMM path's weight gradient ran at 62% of sgemm at its
//! own shape (`advmnist bench --report`, 2026-12-07): it builds `cols` (im2col, 1 MB per group
//! of 8 images) which `matrixmultiply` then copies again into packed panels, and conv2's 50
//! output channels fill 50/64 of its 16 x 16 tiles anyway. Here the output channels are the
//! vector lanes (up to 4 registers of 16; for conv2, 3 and the 2 channels left over packed as
//! below), each step of the chain broadcasts one input value `x[c, i + ki, j + kj]` straight from the
//! image, and the output gradient is transposed once per image to `dY^T (P, lanes)` (at most
//! 16 KB). No im2col and no copy into panels; per image the image, `dY^T` and the running
//! chains of one input row stay in L1 and L2.
//!
//! Register blocking, whole registers: for one input channel `c` and kernel row `ki`, the 5
//! taps `kj` x 4 vectors of channels = 20 registers of sums, plus 4 of `dY^T` and 1 broadcast:
//! 25 of 32. Per position, 4 loads and 5 broadcasts for 20 fused multiply-adds. The chains of all
//! `C*K*K` weights live in a buffer `chains (C*K*K, lanes)` between positions' runs (each block
//! loads its 20 registers, runs a run of positions, stores them).
//!
//! **The channels past the last full vector, packed** (`Packing`). With 50 channels the
//! fourth vector carries 2 channels in 16 lanes, and its 5 fused multiply-adds per position are
//! a fifth of the work for 4% of the chains. Where the kernel is 5 wide and 1 to 3 channels are
//! left over (5 x 3 <= 16), those channels' chains for all 5 taps share one register instead:
//! lane `t * r + q` holds tap `t` of leftover channel `q` (`r` channels left). Per position it
//! takes one more load (`dY` of the leftover channels, laid out once per image in the same
//! pattern, `dyr (P, 16)`) and one permute (the row's 5 input values, each repeated `r`
//! times) for 1 fused multiply-add instead of 5: for conv2, 16 instead of 20, and 250 of 256
//! lanes in use instead of 250 of 320 (registers: 15 + 1 of sums, 3 + 1 of `dY`, the broadcast,
//! the permuted row and the permute's indices: 23 of 32). Each lane is still one weight's chain over the same
//! positions in the same order, so the bits are those of the unpacked kernel.
//!
//! **On AVX2 + FMA** (module `avx2`) the registers hold 8 channels and there are 16 of them:
//! the full registers go two at a time (5 taps x 2 = 10 chains), each pair a pass over the
//! run's positions, and the packed pattern (1 to 3 channels past the full registers of 8;
//! conv2's 48 and 49 again) takes two registers in a pass of its own. The buffers and their
//! layout are the AVX-512 level's with 8 lanes to a register. Per position and pair, 2 loads
//! and 5 broadcasts for 10 fused multiply-adds; its timings against the GEMM path are in
//! docs/performance.md.

use crate::kernels::isa::{self, Isa};
#[cfg(target_arch = "x86_64")]
use crate::kernels::scratch::with_scratch;

/// Output positions per row: as in `conv_fma`.
pub const OUT_WIDTH: usize = 8;
/// `matrixmultiply`'s block of the inner dimension for f32 (as in `conv_fma`).
pub const KC: usize = crate::kernels::conv_fma::KC;
/// The most output channels the kernel holds as lanes: 4 registers of 16.
pub const MAX_CHANNELS: usize = 64;
/// Taps of one kernel row summed side by side.
pub const TAPS_AT_ONCE: usize = 5;

/// How the output channels are laid out in lanes: `full` vectors of 16 channels, then the
/// `rest` channels left over, packed five taps to a register (module doc) when `packed`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Packing {
    full: usize,
    rest: usize,
    packed: bool,
}

impl Packing {
    /// The layout the kernel takes for `o` output channels, a kernel `k` wide and registers of
    /// `width` lanes (16 on AVX-512, 8 on AVX2): packed when `k` is [`TAPS_AT_ONCE`] and 1 to 3
    /// channels are left past the full registers. The packed pattern always spans 16 lanes:
    /// one AVX-512 register, two of AVX2.
    fn of(o: usize, k: usize, width: usize) -> Packing {
        let (full, rest) = (o / width, o % width);
        let packed = k == TAPS_AT_ONCE && rest >= 1 && TAPS_AT_ONCE * rest <= PACKED_LANES;
        Packing { full, rest, packed }
    }
}

/// The lanes of the packed pattern (`dyr`, `rchains`, `rout` rows).
const PACKED_LANES: usize = 16;

/// The shape of a group's convolution: `g` images of `c` input channels of `h x w`, `o`
/// output channels, kernel `k` (stride 1, no padding).
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub g: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub k: usize,
}

impl Shape {
    fn out_height(&self) -> usize {
        self.h - self.k + 1
    }
    fn positions(&self) -> usize {
        self.out_height() * OUT_WIDTH
    }
    fn inner(&self) -> usize {
        self.c * self.k * self.k
    }
    fn check(&self, dy: usize, x: usize, dw: usize) {
        let Shape { g, c, h, w, o, k } = *self;
        assert!(
            applies(c, h, w, o, k),
            "conv_wgrad: unsupported shape {self:?}"
        );
        assert_eq!(
            dy,
            g * o * self.positions(),
            "conv_wgrad: dy is (G, O, OH, 8)"
        );
        assert_eq!(x, g * c * h * w, "conv_wgrad: x is (G, C, H, W)");
        assert_eq!(dw, o * self.inner(), "conv_wgrad: dw is (O, C*K*K)");
    }
}

/// Whether [`weight_gradient`] handles a convolution of this shape: `c` input channels of
/// `h x w`, `o` output channels, kernel `k`, output rows of 8.
pub fn applies(c: usize, h: usize, w: usize, o: usize, k: usize) -> bool {
    c >= 1 && k >= 1 && h >= k && w + 1 == k + OUT_WIDTH && (1..=MAX_CHANNELS).contains(&o)
}

/// Whether `conv::group_param_gradients` takes the kernel: at the AVX2 level and above
/// (`isa::selected()`), each level its own registers. At the generic level the GEMM path is
/// kept.
pub fn chosen() -> bool {
    isa::selected() >= Isa::Avx2
}

/// Whether this CPU runs the kernel at some level (for the tests, which run every level the
/// CPU has whatever the switch says).
pub fn available() -> bool {
    isa::detected() >= Isa::Avx2
}

/// `dw (O, C*K*K) = sum over the group's images and positions of dy x patch`, with the GEMM
/// path's bits, at the level `isa::selected()` gives. [`available`] must be true and the shape
/// must satisfy [`applies`]. Every element of `dw` is written.
pub fn weight_gradient(dy: &[f32], x: &[f32], shape: Shape, dw: &mut [f32]) {
    weight_gradient_at(isa::selected(), dy, x, shape, dw)
}

/// [`weight_gradient`] at a given level: [`Isa::Avx512`] (registers of 16 channels) or
/// [`Isa::Avx2`] (of 8), which this CPU must run. The same bits at both.
pub fn weight_gradient_at(level: Isa, dy: &[f32], x: &[f32], shape: Shape, dw: &mut [f32]) {
    shape.check(dy.len(), x.len(), dw.len());
    assert!(
        level >= Isa::Avx2 && level <= isa::detected(),
        "conv_wgrad: level {} on a CPU with {}",
        level.name(),
        isa::detected().name()
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU runs the level (just checked), and the slices' lengths match the shape
    // (`check`), which is all the kernels' pointer arithmetic relies on.
    unsafe {
        weight_gradient_lanes(level, dy, x, shape, dw)
    }
}

/// The kernel: image by image, each image's positions in runs that end at the group's
/// multiples of [`KC`]; a run that ends a KC block (or the group) leaves its chains in the
/// output (written the first time, added after) instead of in `chains`, and the next run
/// starts its chains from zero: no pass over the buffers of its own. With [`Packing`]'s
/// `packed`, the full vectors' chains go through `chains`/`out` and the leftover channels'
/// through `rchains`/`rout`, one register of 16 lanes per input channel and kernel row.
/// The layout in buffers is the same at both levels; only the register width (`width` lanes)
/// and the functions that run a run of positions differ.
#[cfg(target_arch = "x86_64")]
unsafe fn weight_gradient_lanes(level: Isa, dy: &[f32], x: &[f32], shape: Shape, dw: &mut [f32]) {
    let Shape { g, c, h, w, o, k } = shape;
    let (p, inner) = (shape.positions(), shape.inner());
    let width = if level >= Isa::Avx512 { 16 } else { 8 };
    let packing = Packing::of(o, k, width);
    // Lanes of `dyt`, `chains` and `out`: the full vectors only when the rest is packed.
    let vectors = if packing.packed {
        packing.full
    } else {
        o.div_ceil(width)
    };
    let lanes = vectors * width;
    // dyr (P, 16), rchains and rout (C*K, 16) each: empty unless packed.
    let (dyr_len, rows_len) = if packing.packed {
        (PACKED_LANES * p, PACKED_LANES * c * k)
    } else {
        (0, 0)
    };
    let len = p * lanes + 2 * inner * lanes + dyr_len + 2 * rows_len;
    with_scratch(len, |buffer: &mut [f32]| {
        let (dyt, rest) = buffer.split_at_mut(p * lanes);
        let (chains, rest) = rest.split_at_mut(inner * lanes);
        let (out, rest) = rest.split_at_mut(inner * lanes);
        let (dyr, rest) = rest.split_at_mut(dyr_len);
        let (rchains, rout) = rest.split_at_mut(rows_len);
        dyt.fill(0.0); // the lanes past `o` stay zero
        dyr.fill(0.0); // the lanes past 5 taps x the rest stay zero
        let split = if packing.packed { lanes } else { o };
        // Lane of tap t, leftover channel qq in `dyr`'s and `rchains`' pattern: t * rest + qq.
        let permute: [i32; PACKED_LANES] = std::array::from_fn(|lane| {
            let t = lane / packing.rest.max(1);
            t.min(TAPS_AT_ONCE) as i32 // lanes past the pattern read the masked-off zero
        });
        let total = g * p;
        let mut r = 0; // the group's position index: image * P + position
        for image in 0..g {
            // dY^T (P, lanes) of this image, and `dyr` for the packed rest.
            for (q, row) in dy[image * o * p..][..o * p].chunks_exact(p).enumerate() {
                if q < split {
                    for (pos, &v) in row.iter().enumerate() {
                        dyt[pos * lanes + q] = v;
                    }
                } else {
                    for (pos, &v) in row.iter().enumerate() {
                        for t in 0..TAPS_AT_ONCE {
                            dyr[pos * PACKED_LANES + t * packing.rest + q - split] = v;
                        }
                    }
                }
            }
            let xi = &x[image * c * h * w..][..c * h * w];
            let mut start = 0;
            while start < p {
                let end = p.min(start + (KC - r % KC));
                let ends_block = (r + end - start) % KC == 0 || r + end - start == total;
                let run = Run {
                    shape,
                    lanes,
                    x: xi.as_ptr(),
                    dyt: dyt.as_ptr(),
                    chains: chains.as_mut_ptr(),
                    out: out.as_mut_ptr(),
                    dyr: dyr.as_ptr(),
                    rchains: rchains.as_mut_ptr(),
                    rout: rout.as_mut_ptr(),
                    permute: &permute,
                    start,
                    end,
                    starts_block: r % KC == 0,
                    ends: if !ends_block {
                        End::Keep
                    } else if r < KC {
                        End::Write
                    } else {
                        End::Add
                    },
                };
                if level >= Isa::Avx512 {
                    match (packing.packed, vectors) {
                        (true, 0) => rows_packed::<0>(&run),
                        (true, 1) => rows_packed::<1>(&run),
                        (true, 2) => rows_packed::<2>(&run),
                        (true, _) => rows_packed::<3>(&run),
                        (false, 1) => rows::<1>(&run),
                        (false, 2) => rows::<2>(&run),
                        (false, 3) => rows::<3>(&run),
                        (false, _) => rows::<4>(&run),
                    }
                } else {
                    avx2::rows(&run, vectors, packing.packed);
                }
                r += end - start;
                start = end;
            }
        }
        // out (C*K*K, lanes) and rout (C*K, 16) -> dw (O, C*K*K)
        for (q, dw_row) in dw.chunks_exact_mut(inner).enumerate() {
            if q < split {
                for (s, d) in dw_row.iter_mut().enumerate() {
                    *d = out[s * lanes + q];
                }
            } else {
                for (s, d) in dw_row.iter_mut().enumerate() {
                    *d = rout[s / k * PACKED_LANES + s % k * packing.rest + q - split];
                }
            }
        }
    })
}

/// One run of positions `start..end` of one image, and what every block shares.
#[cfg(target_arch = "x86_64")]
struct Run {
    shape: Shape,
    lanes: usize,
    x: *const f32,    // (C, H, W): this image
    dyt: *const f32,  // (P, lanes): this image
    chains: *mut f32, // (C*K*K, lanes): the chains between runs of one KC block
    out: *mut f32,    // (C*K*K, lanes): the sum of the finished KC blocks
    // The packed rest (unused otherwise): lane t * rest + qq is tap t of leftover channel qq.
    dyr: *const f32, // (P, PACKED_LANES): this image's dY of the leftover channels, once per tap
    rchains: *mut f32, // (C*K, PACKED_LANES): as `chains`, one row per (ci, ki)
    rout: *mut f32,  // (C*K, PACKED_LANES): as `out`
    permute: *const [i32; PACKED_LANES], // lane -> which of the row's 5 input values it multiplies
    start: usize,
    end: usize,
    /// The run starts a KC block: the chains start from +0.0 rather than from `chains`.
    starts_block: bool,
    ends: End,
}

/// Where a run leaves its chains.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, PartialEq)]
enum End {
    /// In `chains`, for the next run of the same KC block.
    Keep,
    /// The first KC block ends here: `out = chain` (the GEMM's `beta = 0`).
    Write,
    /// A later KC block ends here: `out = out + chain`, rounded once.
    Add,
}

/// Every input channel and kernel row of one run, in blocks of [`TAPS_AT_ONCE`] taps (and the
/// taps left over one at a time, for kernels other than 5 wide).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn rows<const V: usize>(run: &Run) {
    let Shape { c, k, .. } = run.shape;
    let whole = k - k % TAPS_AT_ONCE;
    for ci in 0..c {
        for ki in 0..k {
            for kj0 in (0..whole).step_by(TAPS_AT_ONCE) {
                taps::<V, TAPS_AT_ONCE>(run, ci, ki, kj0);
            }
            for kj0 in whole..k {
                taps::<V, 1>(run, ci, ki, kj0);
            }
        }
    }
}

/// The chains of weights `(ci, ki, kj0..kj0 + T)` for all channels (`V` vectors of 16), over
/// the run's positions in order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
unsafe fn taps<const V: usize, const T: usize>(run: &Run, ci: usize, ki: usize, kj0: usize) {
    use std::arch::x86_64::*;
    let Shape { h, w, k, .. } = run.shape;
    let s0 = (ci * k + ki) * k + kj0;
    let chain = |t: usize, v: usize| run.chains.add((s0 + t) * run.lanes + v * 16);
    let mut acc: [[__m512; V]; T] = std::array::from_fn(|t| {
        std::array::from_fn(|v| {
            if run.starts_block {
                _mm512_setzero_ps()
            } else {
                _mm512_loadu_ps(chain(t, v))
            }
        })
    });
    for pos in run.start..run.end {
        let (i, j) = (pos / OUT_WIDTH, pos % OUT_WIDTH);
        let dv: [__m512; V] =
            std::array::from_fn(|v| _mm512_loadu_ps(run.dyt.add(pos * run.lanes + v * 16)));
        let xrow = run.x.add((ci * h + i + ki) * w + j + kj0);
        for (t, acc_t) in acc.iter_mut().enumerate() {
            let xb = _mm512_set1_ps(*xrow.add(t));
            for (a, &d) in acc_t.iter_mut().zip(&dv) {
                *a = _mm512_fmadd_ps(d, xb, *a);
            }
        }
    }
    let out = |t: usize, v: usize| run.out.add((s0 + t) * run.lanes + v * 16);
    for (t, acc_t) in acc.iter().enumerate() {
        for (v, a) in acc_t.iter().enumerate() {
            store(run.ends, chain(t, v), out(t, v), *a);
        }
    }
}

/// Stores a finished run's sum: in `chain` (more of the block to come), or into `sum`
/// (written for the first block, added after).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
unsafe fn store(ends: End, chain: *mut f32, sum: *mut f32, a: std::arch::x86_64::__m512) {
    use std::arch::x86_64::*;
    match ends {
        End::Keep => _mm512_storeu_ps(chain, a),
        End::Write => _mm512_storeu_ps(sum, a),
        End::Add => _mm512_storeu_ps(sum, _mm512_add_ps(_mm512_loadu_ps(sum), a)),
    }
}

/// As [`rows`], the full vectors' chains and the packed rest's together: every input channel
/// and kernel row (the kernel is [`TAPS_AT_ONCE`] wide, so one block of taps per row).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn rows_packed<const F: usize>(run: &Run) {
    let Shape { c, k, .. } = run.shape;
    for ci in 0..c {
        for ki in 0..k {
            taps_packed::<F>(run, ci, ki);
        }
    }
}

/// [`taps`] for the whole kernel row, `F` full vectors of channels, and the leftover channels'
/// chains of all 5 taps in one more register (`racc`): per position, its `dY` lanes from
/// `dyr`, its input values the row's 5 (a masked load) spread by `permute`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
unsafe fn taps_packed<const F: usize>(run: &Run, ci: usize, ki: usize) {
    use std::arch::x86_64::*;
    const T: usize = TAPS_AT_ONCE;
    let Shape { h, w, k, .. } = run.shape;
    let row = ci * k + ki;
    let s0 = row * k;
    let chain = |t: usize, v: usize| run.chains.add((s0 + t) * run.lanes + v * 16);
    let rchain = run.rchains.add(row * PACKED_LANES);
    let mut acc: [[__m512; F]; T] = std::array::from_fn(|t| {
        std::array::from_fn(|v| {
            if run.starts_block {
                _mm512_setzero_ps()
            } else {
                _mm512_loadu_ps(chain(t, v))
            }
        })
    });
    let mut racc = if run.starts_block {
        _mm512_setzero_ps()
    } else {
        _mm512_loadu_ps(rchain)
    };
    let permute = _mm512_loadu_epi32((*run.permute).as_ptr());
    for pos in run.start..run.end {
        let (i, j) = (pos / OUT_WIDTH, pos % OUT_WIDTH);
        let dv: [__m512; F] =
            std::array::from_fn(|v| _mm512_loadu_ps(run.dyt.add(pos * run.lanes + v * 16)));
        let xrow = run.x.add((ci * h + i + ki) * w + j);
        for (t, acc_t) in acc.iter_mut().enumerate() {
            let xb = _mm512_set1_ps(*xrow.add(t));
            for (a, &d) in acc_t.iter_mut().zip(&dv) {
                *a = _mm512_fmadd_ps(d, xb, *a);
            }
        }
        let xs = _mm512_permutexvar_ps(permute, _mm512_maskz_loadu_ps((1 << T) - 1, xrow));
        racc = _mm512_fmadd_ps(_mm512_loadu_ps(run.dyr.add(pos * PACKED_LANES)), xs, racc);
    }
    let out = |t: usize, v: usize| run.out.add((s0 + t) * run.lanes + v * 16);
    let rout = run.rout.add(row * PACKED_LANES);
    for (t, acc_t) in acc.iter().enumerate() {
        for (v, a) in acc_t.iter().enumerate() {
            store(run.ends, chain(t, v), out(t, v), *a);
        }
    }
    store(run.ends, rchain, rout, racc);
}

/// The AVX2 + FMA level: registers of 8 channels and 16 registers in all, so for one input
/// channel and kernel row the full registers go in passes of two (5 taps x 2 = 10 chains, 2
/// of `dY^T`, 1 broadcast: 13 registers), each pass over the run's positions; the packed
/// rest, 16 lanes, takes two registers in a pass of its own. Per position and pass: 2 loads
/// and 5 broadcasts for 10 fused multiply-adds. Each chain is the one the AVX-512 level runs,
/// over the same positions in the same order: the same bits.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{End, Run, Shape, OUT_WIDTH, PACKED_LANES, TAPS_AT_ONCE};
    use std::arch::x86_64::*;

    /// Every input channel and kernel row of one run: `vectors` registers of channels (in
    /// passes of two), then the packed rest if any.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn rows(run: &Run, vectors: usize, packed: bool) {
        let Shape { c, k, .. } = run.shape;
        let whole = k - k % TAPS_AT_ONCE;
        for ci in 0..c {
            for ki in 0..k {
                for v0 in (0..vectors).step_by(2) {
                    let two = v0 + 1 < vectors;
                    for kj0 in (0..whole).step_by(TAPS_AT_ONCE) {
                        if two {
                            taps::<2, TAPS_AT_ONCE>(run, ci, ki, kj0, v0);
                        } else {
                            taps::<1, TAPS_AT_ONCE>(run, ci, ki, kj0, v0);
                        }
                    }
                    for kj0 in whole..k {
                        if two {
                            taps::<2, 1>(run, ci, ki, kj0, v0);
                        } else {
                            taps::<1, 1>(run, ci, ki, kj0, v0);
                        }
                    }
                }
                if packed {
                    rest(run, ci, ki);
                }
            }
        }
    }

    /// Stores a finished run's sum: in `chain` (more of the block to come), or into `sum`
    /// (written for the first block, added after).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn store(ends: End, chain: *mut f32, sum: *mut f32, a: __m256) {
        match ends {
            End::Keep => _mm256_storeu_ps(chain, a),
            End::Write => _mm256_storeu_ps(sum, a),
            End::Add => _mm256_storeu_ps(sum, _mm256_add_ps(_mm256_loadu_ps(sum), a)),
        }
    }

    /// The chains of weights `(ci, ki, kj0..kj0 + T)` for the channels of registers
    /// `v0..v0 + V` (8 each), over the run's positions in order.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn taps<const V: usize, const T: usize>(
        run: &Run,
        ci: usize,
        ki: usize,
        kj0: usize,
        v0: usize,
    ) {
        let Shape { h, w, k, .. } = run.shape;
        let s0 = (ci * k + ki) * k + kj0;
        let at = |base: *mut f32, t: usize, v: usize| base.add((s0 + t) * run.lanes + (v0 + v) * 8);
        let mut acc: [[__m256; V]; T] = std::array::from_fn(|t| {
            std::array::from_fn(|v| {
                if run.starts_block {
                    _mm256_setzero_ps()
                } else {
                    _mm256_loadu_ps(at(run.chains, t, v))
                }
            })
        });
        for pos in run.start..run.end {
            let (i, j) = (pos / OUT_WIDTH, pos % OUT_WIDTH);
            let dv: [__m256; V] = std::array::from_fn(|v| {
                _mm256_loadu_ps(run.dyt.add(pos * run.lanes + (v0 + v) * 8))
            });
            let xrow = run.x.add((ci * h + i + ki) * w + j + kj0);
            for (t, acc_t) in acc.iter_mut().enumerate() {
                let xb = _mm256_set1_ps(*xrow.add(t));
                for (a, &d) in acc_t.iter_mut().zip(&dv) {
                    *a = _mm256_fmadd_ps(d, xb, *a);
                }
            }
        }
        for (t, acc_t) in acc.iter().enumerate() {
            for (v, a) in acc_t.iter().enumerate() {
                store(run.ends, at(run.chains, t, v), at(run.out, t, v), *a);
            }
        }
    }

    /// The packed rest's chains of one input channel and kernel row (5 taps): lanes 0-7 and
    /// 8-15 of the pattern in two registers, the row's 5 input values (a masked load) spread
    /// to each half by `permute`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn rest(run: &Run, ci: usize, ki: usize) {
        let Shape { h, w, k, .. } = run.shape;
        let row = ci * k + ki;
        let rchain = run.rchains.add(row * PACKED_LANES);
        let rout = run.rout.add(row * PACKED_LANES);
        let mut acc: [__m256; 2] = std::array::from_fn(|half| {
            if run.starts_block {
                _mm256_setzero_ps()
            } else {
                _mm256_loadu_ps(rchain.add(half * 8))
            }
        });
        let permute: [__m256i; 2] = std::array::from_fn(|half| {
            _mm256_loadu_si256(run.permute.cast::<i32>().add(half * 8).cast())
        });
        let taps = _mm256_setr_epi32(-1, -1, -1, -1, -1, 0, 0, 0); // TAPS_AT_ONCE = 5 values
        for pos in run.start..run.end {
            let (i, j) = (pos / OUT_WIDTH, pos % OUT_WIDTH);
            let xs = _mm256_maskload_ps(run.x.add((ci * h + i + ki) * w + j), taps);
            for (half, a) in acc.iter_mut().enumerate() {
                let d = _mm256_loadu_ps(run.dyr.add(pos * PACKED_LANES + half * 8));
                *a = _mm256_fmadd_ps(d, _mm256_permutevar8x32_ps(xs, permute[half]), *a);
            }
        }
        for (half, a) in acc.iter().enumerate() {
            store(run.ends, rchain.add(half * 8), rout.add(half * 8), *a);
        }
    }
}

/// The naive twin: every weight's gradient on its own, by the same rule (each [`KC`] block of
/// the group's positions a chain of fused multiply-adds from +0.0; the first block's chain
/// written, each later one added). `f32::mul_add` is fused on every target, so this runs
/// anywhere and defines the bits.
pub fn weight_gradient_reference(dy: &[f32], x: &[f32], shape: Shape, dw: &mut [f32]) {
    shape.check(dy.len(), x.len(), dw.len());
    let Shape { g, c, h, w, o, k } = shape;
    let (p, inner) = (shape.positions(), shape.inner());
    for q in 0..o {
        for s in 0..inner {
            let (ci, ki, kj) = (s / (k * k), s / k % k, s % k);
            let (mut out, mut chain) = (None::<f32>, 0.0f32);
            for r in 0..g * p {
                if r != 0 && r % KC == 0 {
                    out = Some(out.map_or(chain, |v| v + chain));
                    chain = 0.0;
                }
                let (image, pos) = (r / p, r % p);
                let (i, j) = (pos / OUT_WIDTH, pos % OUT_WIDTH);
                let d = dy[(image * o + q) * p + pos];
                let xv = x[((image * c + ci) * h + i + ki) * w + j + kj];
                chain = d.mul_add(xv, chain);
            }
            dw[q * inner + s] = out.map_or(chain, |v| v + chain);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::im2col::conv2d_naive_backward;
    use crate::testutil::{assert_within_rounded_sum_bound, differing_bits, random_array};
    use ndarray::{Array2, Array4, Ix4};

    /// (g, c, h, k, o, seed), w = k + 7: LeNet's conv2 over a group of 8 images (two KC blocks
    /// at an image boundary) and of 3 (one block, not full); blocks that end inside an image
    /// (P = 72: 256 = 3 * 72 + 40); a kernel of 7 (taps 5 + 1 + 1); 1 to 4 vectors of channels.
    /// The channels left past the full vectors: packed, 1 to 3 of them (50, 17, 33, 51, and 3
    /// with no full vector), and not (64: none left; 20: 4 left; 6: a kernel of 7). At AVX2's
    /// 8 lanes: a pair of registers and single taps (20 channels, a kernel of 7), and the packed
    /// rest after an odd number of full registers (42: 5 of 8, 2 left; at AVX-512 10 are left,
    /// unpacked).
    const SHAPES: [(usize, usize, usize, usize, usize, u64); 11] = [
        (8, 20, 12, 5, 50, 1),
        (3, 20, 12, 5, 50, 2),
        (5, 2, 13, 5, 17, 3),
        (2, 3, 12, 7, 6, 4),
        (4, 1, 9, 5, 64, 5),
        (9, 4, 12, 5, 33, 6),
        (5, 3, 13, 5, 51, 7),
        (4, 2, 12, 5, 3, 8),
        (6, 2, 12, 5, 20, 9),
        (3, 2, 12, 7, 20, 10),
        (5, 2, 13, 5, 42, 11),
    ];

    fn inputs(
        (g, c, h, k, o, seed): (usize, usize, usize, usize, usize, u64),
    ) -> (Array4<f32>, Array4<f32>, Shape) {
        let w = k + OUT_WIDTH - 1;
        let x = random_array::<f32, Ix4>((g, c, h, w), seed);
        let dy = random_array::<f32, Ix4>((g, o, h - k + 1, OUT_WIDTH), seed + 100);
        (dy, x, Shape { g, c, h, w, o, k })
    }

    fn run(
        dy: &Array4<f32>,
        x: &Array4<f32>,
        shape: Shape,
        f: fn(&[f32], &[f32], Shape, &mut [f32]),
    ) -> Array2<f32> {
        // NaN first: an output the kernel failed to write would show.
        let mut dw = Array2::from_elem((shape.o, shape.inner()), f32::NAN);
        f(
            dy.as_slice().unwrap(),
            x.as_slice().unwrap(),
            shape,
            dw.as_slice_mut().unwrap(),
        );
        dw
    }

    /// The reference against the naive loops in f64, within the bound for a sum of `G*P`
    /// products rounded in f32 (every fused step and every block's addition rounds once):
    /// `|error| <= n * 2^-24 * sum of |terms|`, `n = G*P + 1`.
    #[test]
    fn reference_matches_naive_loops() {
        for case in SHAPES {
            let (dy, x, shape) = inputs(case);
            let got = run(&dy, &x, shape, weight_gradient_reference);
            let f64s = |a: &Array4<f32>| a.mapv(f64::from);
            let w0 = ndarray::Array4::<f64>::zeros((shape.o, shape.c, shape.k, shape.k));
            let (_, want, _) = conv2d_naive_backward(f64s(&dy).view(), f64s(&x).view(), w0.view());
            let abs = |a: &Array4<f32>| a.mapv(|v| f64::from(v.abs()));
            let (_, magnitude, _) =
                conv2d_naive_backward(abs(&dy).view(), abs(&x).view(), w0.view());
            let n = (shape.g * shape.positions() + 1) as f64;
            let want = want
                .into_shape_with_order((shape.o, shape.inner()))
                .unwrap();
            let magnitude = magnitude
                .into_shape_with_order((shape.o, shape.inner()))
                .unwrap();
            assert_within_rounded_sum_bound(
                &format!("{shape:?}"),
                got.iter(),
                want.iter(),
                magnitude.iter(),
                n,
            );
        }
    }

    /// The kernel against its reference, bit for bit (and every output written), at every
    /// level this CPU runs. That the GEMM path gives the reference's bits too is tested where
    /// that path lives: `layers::conv::tests::gemm_weight_gradient_gives_the_conv_wgrad_reference_bits`.
    #[test]
    fn kernel_and_reference_agree_bit_for_bit() {
        let levels: Vec<Isa> = [Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|&l| l <= isa::detected())
            .collect();
        if levels.is_empty() {
            eprintln!("skipped: no AVX2 + FMA on this CPU");
            return;
        }
        for level in levels {
            for case in SHAPES {
                let (dy, x, shape) = inputs(case);
                let reference = run(&dy, &x, shape, weight_gradient_reference);
                let mut fast = Array2::from_elem((shape.o, shape.inner()), f32::NAN);
                weight_gradient_at(
                    level,
                    dy.as_slice().unwrap(),
                    x.as_slice().unwrap(),
                    shape,
                    fast.as_slice_mut().unwrap(),
                );
                let name = level.name();
                assert!(
                    fast.iter().all(|v| v.is_finite()),
                    "{name} {shape:?}: unwritten"
                );
                let differ = differing_bits(&fast, &reference);
                assert_eq!(
                    differ, 0,
                    "{name} {shape:?}: {differ} weights differ in bits"
                );
            }
        }
    }

    #[test]
    fn packs_one_to_three_leftover_channels_of_a_kernel_five_wide() {
        let packed = |o, k, width| Packing::of(o, k, width).packed;
        assert_eq!(
            Packing::of(50, 5, 16),
            Packing {
                full: 3,
                rest: 2,
                packed: true
            }
        ); // LeNet's conv2 on AVX-512
        assert_eq!(
            Packing::of(50, 5, 8),
            Packing {
                full: 6,
                rest: 2,
                packed: true
            }
        ); // and on AVX2
        assert!(packed(3, 5, 16) && packed(17, 5, 16) && packed(51, 5, 16));
        assert!(!packed(64, 5, 16) && !packed(20, 5, 16)); // none left; 4 x 5 lanes > 16
        assert!(!packed(50, 7, 16) && !packed(50, 3, 8)); // a kernel not 5 wide
        assert!(!packed(20, 5, 8) && !packed(64, 5, 8)); // 4 left of 8; none
        for case in SHAPES {
            let (_, _, _, k, o, _) = case;
            for width in [8, 16] {
                let expect = k == 5 && matches!(o % width, 1..=3);
                assert_eq!(packed(o, k, width), expect, "{case:?} at {width} lanes");
            }
        }
    }

    #[test]
    fn applies_to_rows_of_eight_and_at_most_64_channels() {
        assert!(applies(20, 12, 12, 50, 5)); // LeNet's conv2
        assert!(!applies(1, 28, 28, 20, 5)); // conv1: rows of 24
        assert!(!applies(20, 12, 12, 65, 5)); // 65 channels: more than 4 vectors
        assert!(applies(20, 11, 12, 7, 5)); // any number of output rows
    }
}
