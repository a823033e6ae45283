//! Numbers that hold still: every figure of `advmnist bench --report` is timed as several
//! samples after a warm-up (`bench::measure::sample`), and summarised as median, min and max
//! ([`MedianRange`]), with a warning when the samples disagree by more than [`SPREAD_WARNING`]
//! (a busy or shared machine).

use serde::{Deserialize, Serialize};

/// The spread, (max - min) / median, above which a figure is flagged. Repeated runs on a quiet
/// machine of the project's kind differ by 5-10% (docs/performance.md), so above 10% the
/// machine was probably busy with something else.
pub const SPREAD_WARNING: f64 = 0.10;

/// Median, min and max of a figure's samples.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MedianRange {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl MedianRange {
    /// Panics on an empty slice or a NaN: samples are timings, always finite.
    pub fn of(samples: &[f64]) -> MedianRange {
        assert!(!samples.is_empty(), "a summary needs at least one sample");
        let mut sorted = samples.to_vec();
        sorted.sort_by(|a, b| a.partial_cmp(b).expect("finite samples"));
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
        };
        MedianRange {
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
    pub fn as_rate(&self, work: f64) -> MedianRange {
        MedianRange {
            median: work / self.median,
            min: work / self.max,
            max: work / self.min,
        }
    }
}

/// The warning for `figure` if its samples' spread exceeds [`SPREAD_WARNING`].
pub fn spread_warning(figure: &str, s: &MedianRange) -> Option<String> {
    let spread = s.spread();
    (spread > SPREAD_WARNING).then(|| {
        format!(
            "{figure}: samples spread {:.0}% (over {:.0}%)",
            100.0 * spread,
            100.0 * SPREAD_WARNING
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_takes_the_middle_sample_and_the_extremes() {
        let s = MedianRange::of(&[3.0, 1.0, 2.0, 5.0, 4.0]);
        assert_eq!((s.median, s.min, s.max), (3.0, 1.0, 5.0));
        // even count: the mean of the two middle samples, (2 + 3) / 2
        assert_eq!(MedianRange::of(&[4.0, 1.0, 3.0, 2.0]).median, 2.5);
    }

    /// Rates invert times: 2 FLOP in 0.5 s is 4 FLOP/s, and the slowest sample (2 s) the lowest
    /// rate (1 FLOP/s).
    #[test]
    fn rates_swap_min_and_max() {
        let r = MedianRange::of(&[0.5, 1.0, 2.0]).as_rate(2.0);
        assert_eq!((r.median, r.min, r.max), (2.0, 1.0, 4.0));
    }

    /// Synthetic samples around a median of 1.0: (max - min) / median is 0.12 (warned), 0.08
    /// and 0.10 exactly (not warned: the rule is "more than 10%").
    #[test]
    fn spread_warning_only_above_ten_percent() {
        let noisy = MedianRange::of(&[0.94, 0.98, 1.0, 1.02, 1.06]);
        assert!((noisy.spread() - 0.12).abs() < 1e-12);
        let warning = spread_warning("sgemm/50x500x256/t2", &noisy).expect("12% is warned");
        assert!(
            warning.contains("sgemm/50x500x256/t2") && warning.contains("12%"),
            "{warning}"
        );
        let quiet = MedianRange::of(&[0.96, 0.99, 1.0, 1.01, 1.04]);
        assert_eq!(spread_warning("x", &quiet), None, "8% is not warned");
        // (10.5 - 9.5) / 10 is exactly the f64 nearest 0.1, as SPREAD_WARNING is.
        let edge = MedianRange {
            median: 10.0,
            min: 9.5,
            max: 10.5,
        };
        assert_eq!(edge.spread(), SPREAD_WARNING);
        assert_eq!(spread_warning("x", &edge), None, "10% is not warned");
    }
}
