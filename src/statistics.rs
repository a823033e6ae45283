//! Summary statistics of a small sample, as the human study (the study's section 5.4) and
//! `reproduce`'s repetitions report them: the mean, the sample standard deviation, and the 95%
//! confidence interval of the mean with Student's t, whose quantiles are computed here.
//!
//! The sample standard deviation has divisor n - 1: the values (subjects, models, seeds) are a
//! sample, and the SD estimates the population's. The 95% confidence interval of the mean is
//! `mean +- t(0.975, n - 1) * sd / sqrt(n)` with Student's t: the SD is estimated from few
//! values, so the normal 1.96 would make the interval too narrow (with 5 values, t is 2.776).
//! The interval is reported as computed; it may reach past the values' range (0 or 100 for an
//! accuracy), where a figure clips it to the axis.

use serde::Serialize;

/// `t` with `P(T <= t) = p` for Student's t with `df` degrees of freedom, `p` in (0.5, 1).
/// Bisection on the CDF, written through the regularised incomplete beta function:
/// `P(T > t) = I_{df/(df+t^2)}(df/2, 1/2) / 2` for `t >= 0`.
pub fn student_t_quantile(p: f64, df: f64) -> f64 {
    assert!(p > 0.5 && p < 1.0 && df > 0.0);
    let upper_tail = |t: f64| 0.5 * regularized_incomplete_beta(df / (df + t * t), df / 2.0, 0.5);
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while upper_tail(hi) > 1.0 - p {
        hi *= 2.0;
    }
    // 200 halvings reach the f64 resolution of any bracket.
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if upper_tail(mid) > 1.0 - p {
            lo = mid
        } else {
            hi = mid
        }
    }
    0.5 * (lo + hi)
}

/// `ln Gamma(x)`, Lanczos approximation (g = 7, 9 terms; relative error below 1e-15).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Gamma(x) Gamma(1 - x) = pi / sin(pi x).
        std::f64::consts::PI.ln() - (std::f64::consts::PI * x).sin().ln() - ln_gamma(1.0 - x)
    } else {
        let x = x - 1.0;
        let mut a = G[0];
        let t = x + 7.5;
        for (i, g) in G.iter().enumerate().skip(1) {
            a += g / (x + i as f64);
        }
        0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
    }
}

/// `I_x(a, b)` by its continued fraction (Numerical Recipes, `betai`/`betacf`, modified Lentz).
fn regularized_incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    // The fraction converges fast for x < (a + 1) / (a + b + 2); otherwise use I_x(a,b) = 1 - I_{1-x}(b,a).
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_continued_fraction(x, a, b) / a
    } else {
        1.0 - front * beta_continued_fraction(1.0 - x, b, a) / b
    }
}

fn beta_continued_fraction(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        for aa in [
            m * (b - m) * x / ((a + m2 - 1.0) * (a + m2)),
            -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0)),
        ] {
            d = 1.0 + aa * d;
            if d.abs() < TINY {
                d = TINY;
            }
            c = 1.0 + aa / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            h *= d * c;
        }
        if (d * c - 1.0).abs() < 1e-16 {
            break;
        }
    }
    h
}

/// Mean, sample SD and 95% Student-t confidence interval of a sample (one group's accuracies,
/// one method's errors over seeds).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    /// Divisor n - 1; `None` for a single value.
    pub sd: Option<f64>,
    /// `mean -+ t(0.975, n-1) sd / sqrt(n)`; `None` for a single value.
    pub ci95_low: Option<f64>,
    pub ci95_high: Option<f64>,
}

/// Summarises `values` (at least one).
pub fn summarise(values: &[f64]) -> Summary {
    assert!(!values.is_empty(), "a summary of nothing");
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return Summary {
            n,
            mean,
            sd: None,
            ci95_low: None,
            ci95_high: None,
        };
    }
    let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    let half = student_t_quantile(0.975, (n - 1) as f64) * sd / (n as f64).sqrt();
    Summary {
        n,
        mean,
        sd: Some(sd),
        ci95_low: Some(mean - half),
        ci95_high: Some(mean + half),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn student_t_quantiles_match_tables() {
        // qt(0.975, df) in R 4.3: 12.706205, 4.302653, 2.776445, 2.093024, 1.983972; df -> inf: 1.959964.
        for (df, want) in [
            (1.0, 12.706_204_736),
            (2.0, 4.302_652_730),
            (4.0, 2.776_445_105),
            (19.0, 2.093_024_054),
            (100.0, 1.983_971_519),
            (1e7, 1.959_964_2),
        ] {
            let got = student_t_quantile(0.975, df);
            assert!(
                (got - want).abs() < 1e-6,
                "t(0.975, {df}): got {got}, want {want}"
            );
        }
    }
}
