//! Timing: how long a step takes, measured so that the numbers hold still. `advmnist bench`
//! times each workload as images per second over a fixed time ([`images_per_second`]);
//! `advmnist bench --report` times every figure as [`SAMPLES`] samples after a warm-up
//! ([`sample`]) and describes it as a [`Measurement`] ([`measure`]).

use super::stats::MedianRange;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Bytes of an f32.
pub const F32: f64 = 4.0;

/// Samples per figure: an odd count, so the median is one of them.
pub const SAMPLES: usize = 5;
/// Share of a figure's time spent warming up (caches, the allocator's free lists, the CPU's
/// clock) before the samples start, after one first call.
pub const WARM_UP_SHARE: f64 = 0.1;
/// Runs `step` three times (warm-up), then for at least `seconds`; returns images per second.
pub fn images_per_second(images_per_step: usize, seconds: f64, mut step: impl FnMut()) -> f64 {
    for _ in 0..3 {
        step();
    }
    let start = Instant::now();
    let mut steps = 0u64;
    while start.elapsed() < Duration::from_secs_f64(seconds) {
        step();
        steps += 1;
    }
    (steps as f64 * images_per_step as f64) / start.elapsed().as_secs_f64()
}

/// Seconds per call of `step`, as [`SAMPLES`] samples in `seconds` in all: one call and
/// [`WARM_UP_SHARE`] of the time to warm up, then each sample runs calls for its share of the
/// rest (at least one call) and gives their mean time.
pub fn sample(seconds: f64, mut step: impl FnMut()) -> Vec<f64> {
    let warm_up = Instant::now();
    step();
    while warm_up.elapsed().as_secs_f64() < WARM_UP_SHARE * seconds {
        step();
    }
    let per_sample = Duration::from_secs_f64((1.0 - WARM_UP_SHARE) * seconds / SAMPLES as f64);
    (0..SAMPLES)
        .map(|_| {
            let start = Instant::now();
            let mut calls = 0u32;
            while calls == 0 || start.elapsed() < per_sample {
                step();
                calls += 1;
            }
            start.elapsed().as_secs_f64() / f64::from(calls)
        })
        .collect()
}

/// One measured figure of the profile (an entry of `bench.json`'s `figures`). `rate` is in
/// `unit` (higher is faster); `seconds` is per call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// Stable name, e.g. `sgemm/50x500x256/t2`, `layer/conv2/forward`, `workload/train/t1`.
    pub id: String,
    /// `sgemm`, `fma`, `bandwidth`, `layer`, `update` or `workload`.
    pub group: String,
    pub what: String,
    pub threads: usize,
    /// `GFLOP/s`, `GB/s` or `img/s`.
    pub unit: String,
    /// One call's work in the unit's numerator (GFLOP, GB or images).
    pub work_per_call: f64,
    /// Nominal FLOPs of one call (a multiply-add counts 2); 0 for data movement.
    pub flop_per_call: f64,
    /// Bytes one call must read and write at least (each tensor once); 0 where not counted.
    pub bytes_per_call: f64,
    /// `flop_per_call / bytes_per_call`, where both are counted.
    pub intensity_flop_per_byte: Option<f64>,
    pub samples: usize,
    pub seconds: MedianRange,
    pub rate: MedianRange,
    /// (max - min) / median of the samples.
    pub spread: f64,
    pub gflop_per_s: Option<f64>,
    pub gb_per_s: Option<f64>,
    /// GFLOP/s as a share of sgemm at 1024^3 on as many threads.
    pub share_of_peak: Option<f64>,
    /// GFLOP/s as a share of the FMA-throughput peak (`fma/tT`) on as many threads. Absent
    /// from reports written before it was measured.
    #[serde(default)]
    pub share_of_fma_peak: Option<f64>,
    /// What this figure is compared with, and that figure's rate (GFLOP/s or GB/s).
    pub ceiling: Option<String>,
    pub ceiling_rate: Option<f64>,
    pub share_of_ceiling: Option<f64>,
}

/// Runs `f` on a fresh pool of `threads` threads.
pub fn on_threads<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> Result<R, String> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| format!("setting up a pool of {threads} threads: {e}"))?;
    Ok(pool.install(f))
}

/// What a figure counts per call.
pub struct Work {
    pub unit: &'static str,
    /// In the unit's numerator.
    pub per_call: f64,
    pub flop: f64,
    pub bytes: f64,
}

impl Work {
    pub fn flop(flop: f64, bytes: f64) -> Work {
        Work {
            unit: "GFLOP/s",
            per_call: flop / 1e9,
            flop,
            bytes,
        }
    }
    pub fn bytes(bytes: f64) -> Work {
        Work {
            unit: "GB/s",
            per_call: bytes / 1e9,
            flop: 0.0,
            bytes,
        }
    }
}

/// Times `step` and describes it; shares are filled in later, once the ceilings are known.
pub fn measure(
    id: String,
    group: &str,
    what: String,
    work: Work,
    seconds: f64,
    step: impl FnMut(),
) -> Measurement {
    let times = MedianRange::of(&sample(seconds, step));
    let per_second = |amount: f64| (amount > 0.0).then(|| amount / 1e9 / times.median);
    Measurement {
        id,
        group: group.into(),
        what,
        threads: rayon::current_num_threads(),
        unit: work.unit.into(),
        work_per_call: work.per_call,
        flop_per_call: work.flop,
        bytes_per_call: work.bytes,
        intensity_flop_per_byte: (work.flop > 0.0 && work.bytes > 0.0)
            .then(|| work.flop / work.bytes),
        samples: SAMPLES,
        seconds: times,
        rate: times.as_rate(work.per_call),
        spread: times.spread(),
        gflop_per_s: per_second(work.flop),
        gb_per_s: per_second(work.bytes),
        share_of_peak: None,
        share_of_fma_peak: None,
        ceiling: None,
        ceiling_rate: None,
        share_of_ceiling: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_gives_one_positive_time_per_sample() {
        let mut calls = 0;
        let times = sample(0.01, || calls += 1);
        assert_eq!(times.len(), SAMPLES);
        assert!(times.iter().all(|&t| t > 0.0));
        assert!(
            calls > SAMPLES,
            "a warm-up call and at least one per sample"
        );
    }
}
