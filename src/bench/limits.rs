//! The machine's limits, measured on the spot: `matrixmultiply`'s sgemm at a shape (LeNet's own
//! shapes, and the large square whose rate is "the peak"), and a streaming triad for the
//! bandwidth from memory and from the last-level cache. On t threads, t single-threaded
//! products (or t pieces of the triad) run side by side, as advmnist runs its own.

use super::measure::{measure, Measurement, Work, F32};
use super::shapes::GemmShape;
use crate::kernels::gemm::gemm;
use crate::rng::random_array;
use ndarray::Array2;
use rayon::prelude::*;
use std::hint::black_box;

/// The large square sgemm whose throughput is "the machine's peak" here.
pub const LARGE_SQUARE: usize = 1024;
/// Bytes of each array of the in-cache triad: 3 MiB in all, inside the last-level cache of any
/// machine of the project's kind, about the size of the data a layer pass moves at batch 64.
pub const CACHE_TRIAD_BYTES: usize = 1 << 20;

/// `threads` copies of one sgemm side by side, each on its own output.
pub fn sgemm_measurement(shape: &GemmShape, seconds: f64) -> Measurement {
    let t = rayon::current_num_threads();
    let (m, k, n) = (shape.m, shape.k, shape.n);
    let a = random_array::<f32, _>((m, k), 1);
    let b = random_array::<f32, _>((k, n), 2);
    let mut outputs: Vec<Array2<f32>> = (0..t).map(|_| Array2::zeros((m, n))).collect();
    let bytes = F32 * (m * k + k * n + m * n) as f64;
    let what = if shape.product == "square" {
        "large square sgemm (the peak)".to_string()
    } else {
        format!("sgemm at {}'s shape", shape.product)
    };
    measure(
        format!("sgemm/{}/t{t}", shape.name()),
        "sgemm",
        what,
        Work::flop(shape.flop() * t as f64, bytes * t as f64),
        seconds,
        || {
            // One product per thread: rayon hands each of the t outputs to its own worker.
            outputs
                .par_iter_mut()
                .for_each(|c| gemm(1.0, a.view(), b.view(), 0.0, c.view_mut()))
        },
    )
}

/// The streaming triad `a = b + 3 c` over three arrays of `elements` f32, cut into one
/// contiguous piece per thread. Counts 12 bytes per element (two reads, one write). `level`
/// (`memory` or `cache`) names where the arrays live.
pub fn triad_measurement(level: &str, elements: usize, seconds: f64) -> Measurement {
    let t = rayon::current_num_threads();
    let b = vec![1.0f32; elements];
    let c = vec![2.0f32; elements];
    let mut a = vec![0.0f32; elements];
    let piece = elements.div_ceil(t);
    measure(
        format!("bandwidth/{level}/t{t}"),
        "bandwidth",
        format!(
            "{level} bandwidth: a = b + 3c over 3 x {} MiB",
            (elements * 4) as f64 / f64::from(1 << 20)
        ),
        Work::bytes(3.0 * F32 * elements as f64),
        seconds,
        || {
            a.par_chunks_mut(piece)
                .zip(b.par_chunks(piece))
                .zip(c.par_chunks(piece))
                .for_each(|((a, b), c)| {
                    for ((a, b), c) in a.iter_mut().zip(b).zip(c) {
                        *a = b + 3.0 * c;
                    }
                });
            black_box(&a);
        },
    )
}

/// Independent accumulators of the FMA-throughput loop: more than the FMA units' latency times
/// their count on any x86-64 core of the project's kind (4 cycles x 2 units = 8), so the loop
/// is limited by issue, not by latency; 24 of AVX-512's 32 registers, 12 of AVX2's 16.
const FMA_CHAINS_512: usize = 24;
const FMA_CHAINS_256: usize = 12;
/// Steps of each chain per call: about half a millisecond on a 3 GHz core.
const FMA_STEPS: usize = 20_000;

/// The FMA-throughput peak: on each of `threads` threads, 20,000 steps (`FMA_STEPS`) of
/// independent chains `a = a * m + c` at the widest vector level the kernels take (`isa::selected`):
/// fused multiply-adds of 16 floats (AVX-512) or 8 (AVX2 + FMA); at the generic level a
/// multiply and an add of the baseline's vectors. Counts 2 FLOPs per lane and step. This is
/// the most floating-point work the cores do, whatever the memory: the ceiling no kernel can
/// pass, where sgemm's 1024^3 is the one a good GEMM reaches.
pub fn fma_peak_measurement(seconds: f64) -> Measurement {
    let t = rayon::current_num_threads();
    let level = crate::kernels::isa::selected();
    let (lanes, chains) = match level {
        crate::kernels::isa::Isa::Avx512 => (16, FMA_CHAINS_512),
        crate::kernels::isa::Isa::Avx2 => (8, FMA_CHAINS_256),
        crate::kernels::isa::Isa::Generic => (4, FMA_CHAINS_256),
    };
    let flop = 2.0 * (lanes * chains * FMA_STEPS) as f64;
    let mut sinks = vec![0.0f32; t];
    measure(
        format!("fma/t{t}"),
        "fma",
        format!("FMA throughput: {chains} independent chains of {lanes}-float fused multiply-adds ({level})"),
        Work::flop(flop * t as f64, 0.0),
        seconds,
        || {
            sinks
                .par_iter_mut()
                .for_each(|s| *s = black_box(fma_chains(level, black_box(0.999))));
        },
    )
}

/// [`FMA_STEPS`] steps of the chains at `level`; returns a sum of them so none is optimised
/// away. `m` < 1 keeps every value between 0 and 1: no overflow and no subnormal slows a step.
fn fma_chains(level: crate::kernels::isa::Isa, m: f32) -> f32 {
    use crate::kernels::isa::Isa;
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `isa::selected` never exceeds what the CPU runs.
        if level >= Isa::Avx512 {
            return unsafe { fma_chains_avx512(m) };
        }
        if level >= Isa::Avx2 {
            return unsafe { fma_chains_avx2(m) };
        }
    }
    let _ = level;
    let mut acc = [[0.5f32; 4]; FMA_CHAINS_256];
    for _ in 0..FMA_STEPS {
        for a in acc.iter_mut() {
            for v in a.iter_mut() {
                *v = *v * m + 0.001;
            }
        }
    }
    acc.iter().flatten().sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn fma_chains_avx512(m: f32) -> f32 {
    use std::arch::x86_64::*;
    let (mv, c) = (_mm512_set1_ps(m), _mm512_set1_ps(0.001));
    let mut acc = [_mm512_set1_ps(0.5); FMA_CHAINS_512];
    for _ in 0..FMA_STEPS {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, mv, c);
        }
    }
    let sum = acc
        .iter()
        .fold(_mm512_setzero_ps(), |s, &a| _mm512_add_ps(s, a));
    _mm512_reduce_add_ps(sum)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_chains_avx2(m: f32) -> f32 {
    use std::arch::x86_64::*;
    let (mv, c) = (_mm256_set1_ps(m), _mm256_set1_ps(0.001));
    let mut acc = [_mm256_set1_ps(0.5); FMA_CHAINS_256];
    for _ in 0..FMA_STEPS {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, mv, c);
        }
    }
    let mut out = [0.0f32; 8];
    let sum = acc
        .iter()
        .fold(_mm256_setzero_ps(), |s, &a| _mm256_add_ps(s, a));
    _mm256_storeu_ps(out.as_mut_ptr(), sum);
    out.iter().sum()
}
