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
