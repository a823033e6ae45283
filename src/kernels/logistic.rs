//! The logistic function `1 / (1 + exp(-x))` over a slice, for the autoencoder's units: a fast
//! f32 path beside the naive one it is tested against.
//!
//! The naive path calls the C library's `expf` per element: a function call the compiler cannot
//! vectorise. The autoencoder evaluates 4,314 logistic units per image (the hidden layers and the
//! output), as many as its products' multiply-adds divided by about 650, so a scalar `exp` was
//! a large share of its time (docs/performance.md).
//!
//! The fast path computes `exp` as Cephes' `expf` does (the range reduction and polynomial of
//! `cephes/single/expf.c`), written as straight-line arithmetic the compiler vectorises, even on
//! the baseline x86-64 (SSE2):
//!
//! ```text
//! x  = clamp(x, -87.3, 88.7)       (so 2^n stays a normal float)
//! n  = round(x / ln 2)              (by adding and subtracting 1.5 * 2^23: round to nearest;
//!                                    the integer read from the sum's bits)
//! r  = x - n ln2_hi - n ln2_lo      (ln 2 split so n ln2_hi is exact)
//! e^r ~ 1 + r + r^2 P(r)            (degree-5 P, |r| <= ln2 / 2)
//! e^x = e^r * 2^n                   (2^n from its exponent bits)
//! ```
//! Measured against the naive path over a sweep of inputs (test below): relative error of the
//! logistic under 4e-7 (a few f32 ulps). Clamping changes the logistic only where it is already
//! within 1e-38 of 0 or 1.

#[cfg(target_arch = "x86_64")]
use crate::kernels::isa::{self, Isa};

/// The naive logistic, element by element with the C library's `exp`.
pub fn logistic_naive(v: &mut [f32]) {
    for x in v {
        *x = 1.0 / (1.0 + (-*x).exp());
    }
}

/// `e^x` as Cephes' `expf`, for the vectorised loop below.
#[inline(always)]
fn exp_cephes(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let x = x.clamp(-87.3, 88.7);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5; // Cephes prints 5.0000001E-1, which is 0.5 in f32
    let er = p * r * r + r + 1.0;
    // n as an integer without a float-to-int conversion (which Rust saturates, and the compiler
    // then leaves unvectorised, one lane at a time): t lies in [2^23, 2^24), where floats are
    // consecutive integers, so its bits minus ROUND's are exactly n (|n| <= 128 after the clamp).
    let n_int = t.to_bits() as i32 - ROUND.to_bits() as i32;
    let two_n = f32::from_bits(((n_int + 127) as u32) << 23);
    er * two_n
}

/// The logistic of every element, in place (fast path), on the widest vector path the CPU
/// offers. Every path runs the same IEEE operations in the same order on each element (no
/// fused multiply-add is formed: Rust does not contract `a * b + c`), so all give the same bits
/// (`vector_paths_agree_bit_for_bit`); only how many elements go at once differs.
pub fn logistic(v: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        let level = isa::selected();
        if level >= Isa::Avx512 {
            // SAFETY: the CPU supports AVX-512F (`isa::selected` never exceeds the CPU); that
            // is the only requirement `logistic_avx512` adds to `logistic_portable`.
            return unsafe { logistic_avx512(v) };
        }
        if level >= Isa::Avx2 {
            // SAFETY: as above, for AVX2.
            return unsafe { logistic_avx2(v) };
        }
    }
    logistic_portable(v)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn logistic_avx512(v: &mut [f32]) {
    logistic_portable(v)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn logistic_avx2(v: &mut [f32]) {
    logistic_portable(v)
}

/// The fast path for the baseline instruction set (4 lanes of SSE2), inlined into the wider ones.
#[inline(always)]
pub fn logistic_portable(v: &mut [f32]) {
    for x in v.iter_mut() {
        *x = 1.0 / (1.0 + exp_cephes(-*x));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_path_matches_the_naive_one() {
        // Every 1/64 from -100 to 100, plus values near the clamps and zero.
        let mut xs: Vec<f32> = (-6400..=6400).map(|i| i as f32 / 64.0).collect();
        xs.extend([
            -88.0,
            -87.4,
            87.4,
            89.0,
            1e-30,
            -1e-30,
            0.0,
            -0.0,
            f32::MAX,
            f32::MIN,
        ]);
        let mut fast = xs.clone();
        let mut naive = xs.clone();
        logistic(&mut fast);
        logistic_naive(&mut naive);
        let mut worst = 0.0f64;
        for ((x, f), n) in xs.iter().zip(&fast).zip(&naive) {
            assert!(
                f.is_finite() && (0.0..=1.0).contains(f),
                "logistic({x}) = {f}"
            );
            let err = if *n > 1e-30 {
                ((f - n) / n).abs() as f64
            } else {
                (f - n).abs() as f64 * 1e30
            };
            worst = worst.max(err);
            assert!(err < 4e-7, "logistic({x}): fast {f}, naive {n}");
        }
        assert!(worst > 0.0, "the two paths are distinct computations");
    }

    #[test]
    fn vector_paths_agree_bit_for_bit() {
        // 1,003 values (not a multiple of any vector width), from -100 to 100 and beyond.
        let xs: Vec<f32> = (0..1003)
            .map(|i| (i as f32 - 501.0) * 0.2 + 0.013)
            .collect();
        let mut portable = xs.clone();
        logistic_portable(&mut portable);
        let mut dispatched = xs.clone();
        logistic(&mut dispatched);
        assert_eq!(dispatched, portable);
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") {
            let mut avx2 = xs.clone();
            // SAFETY: AVX2 is present, checked just above.
            unsafe { logistic_avx2(&mut avx2) };
            assert_eq!(avx2, portable);
        }
    }

    #[test]
    fn hand_worked_values() {
        // logistic(0) = 1/2 exactly; logistic(ln 3) = 3/4.
        let mut v = [0.0f32, 3f32.ln()];
        logistic(&mut v);
        assert_eq!(v[0], 0.5);
        assert!((v[1] - 0.75).abs() < 1e-7);
    }
}
