//! Numbers that hold still: every figure of `advmnist bench --report` is timed as several
//! samples after a warm-up, and summarised as median, min and max, with a warning when the
//! samples disagree by more than [`SPREAD_WARNING`] (a busy or shared machine).

use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Samples per figure: an odd count, so the median is one of them.
pub const SAMPLES: usize = 5;
/// Share of a figure's time spent warming up (caches, the allocator's free lists, the CPU's
/// clock) before the samples start, after one first call.
pub const WARM_UP_SHARE: f64 = 0.1;
/// The spread, (max - min) / median, above which a figure is flagged. Repeated runs on a quiet
/// machine of the project's kind differ by 5-10% (docs/performance.md), so above 10% the
/// machine was probably busy with something else.
pub const SPREAD_WARNING: f64 = 0.10;

/// Median, min and max of a figure's samples.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    /// Panics on an empty slice or a NaN: samples are timings, always finite.
    pub fn of(samples: &[f64]) -> Summary {
        assert!(!samples.is_empty(), "a summary needs at least one sample");
        let mut sorted = samples.to_vec();
        sorted.sort_by(|a, b| a.partial_cmp(b).expect("finite samples"));
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
        };
        Summary {
            median,
            min: sorted[0],
            max: sorted[n - 1],
        }
    }

    /// (max - min) / median: 0 for identical samples.
    pub fn spread(&self) -> f64 {
        if self.median > 0.0 {
            (self.max - self.min) / self.median
        } else {
            0.0
        }
    }

    /// The same samples as rates `work / seconds`: the slowest sample gives the lowest rate.
    pub fn as_rate(&self, work: f64) -> Summary {
        Summary {
            median: work / self.median,
            min: work / self.max,
            max: work / self.min,
        }
    }
}

/// The warning for `figure` if its samples' spread exceeds [`SPREAD_WARNING`].
pub fn spread_warning(figure: &str, s: &Summary) -> Option<String> {
    let spread = s.spread();
    (spread > SPREAD_WARNING).then(|| {
        format!(
            "{figure}: samples spread {:.0}% (over {:.0}%)",
            100.0 * spread,
            100.0 * SPREAD_WARNING
        )
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_takes_the_middle_sample_and_the_extremes() {
        let s = Summary::of(&[3.0, 1.0, 2.0, 5.0, 4.0]);
        assert_eq!((s.median, s.min, s.max), (3.0, 1.0, 5.0));
        // even count: the mean of the two middle samples, (2 + 3) / 2
        assert_eq!(Summary::of(&[4.0, 1.0, 3.0, 2.0]).median, 2.5);
    }

    /// Rates invert times: 2 FLOP in 0.5 s is 4 FLOP/s, and the slowest sample (2 s) the lowest
    /// rate (1 FLOP/s).
    #[test]
    fn rates_swap_min_and_max() {
        let r = Summary::of(&[0.5, 1.0, 2.0]).as_rate(2.0);
        assert_eq!((r.median, r.min, r.max), (2.0, 1.0, 4.0));
    }

    /// Synthetic samples around a median of 1.0: (max - min) / median is 0.12 (warned), 0.08
    /// and 0.10 exactly (not warned: the rule is "more than 10%").
    #[test]
    fn spread_warning_only_above_ten_percent() {
        let noisy = Summary::of(&[0.94, 0.98, 1.0, 1.02, 1.06]);
        assert!((noisy.spread() - 0.12).abs() < 1e-12);
        let warning = spread_warning("sgemm/50x500x256/t2", &noisy).expect("12% is warned");
        assert!(
            warning.contains("sgemm/50x500x256/t2") && warning.contains("12%"),
            "{warning}"
        );
        let quiet = Summary::of(&[0.96, 0.99, 1.0, 1.01, 1.04]);
        assert_eq!(spread_warning("x", &quiet), None, "8% is not warned");
        // (10.5 - 9.5) / 10 is exactly the f64 nearest 0.1, as SPREAD_WARNING is.
        let edge = Summary {
            median: 10.0,
            min: 9.5,
            max: 10.5,
        };
        assert_eq!(edge.spread(), SPREAD_WARNING);
        assert_eq!(spread_warning("x", &edge), None, "10% is not warned");
    }

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
