//! Summary statistics of a few percentages, as the human study (the study's section 5.4) and
//! `reproduce`'s repetitions report them: the mean, the sample standard deviation, the values
//! themselves, and a 95% confidence interval of the mean that stays within [0, 100]
//! ([`summarise_percentages`], named [`CI95_METHOD`]). Student's t quantiles are computed here.
//!
//! The sample standard deviation has divisor n - 1: the values (subjects, models, seeds) are a
//! sample, and the SD estimates the population's.

use serde::Serialize;

/// `P(T > t)` for Student's t with `df` degrees of freedom, `t >= 0`, through the regularised
/// incomplete beta function: `I_{df/(df+t^2)}(df/2, 1/2) / 2`.
fn student_t_upper_tail(t: f64, df: f64) -> f64 {
    0.5 * regularized_incomplete_beta(df / (df + t * t), df / 2.0, 0.5)
}

/// `t` with `P(T <= t) = p` for Student's t with `df` degrees of freedom, `p` in (0.5, 1).
///
/// Newton's method on `g(t) = P(T > t) - (1 - p)` from `t = 0`, with `g' = -density`. For
/// `t >= 0` the upper tail is decreasing and convex, so every tangent lies below it and each
/// step lands at or short of the root: the iterates rise monotonically to it, never past, and
/// near it converge quadratically (a dozen steps for one degree of freedom, where the root is
/// 12.7). The tests check it against bisection on the same tail.
pub fn student_t_quantile(p: f64, df: f64) -> f64 {
    assert!(
        p > 0.5 && p < 1.0 && df > 0.0,
        "student_t_quantile({p}, {df})"
    );
    // ln of the density's constant, Gamma((df + 1) / 2) / (sqrt(df pi) Gamma(df / 2)).
    let ln_c =
        ln_gamma((df + 1.0) / 2.0) - ln_gamma(df / 2.0) - 0.5 * (df * std::f64::consts::PI).ln();
    let mut t = 0.0f64;
    for _ in 0..200 {
        let density = (ln_c - (df + 1.0) / 2.0 * (t * t / df).ln_1p()).exp();
        let step = (student_t_upper_tail(t, df) - (1.0 - p)) / density;
        t += step;
        // Rounding can leave a last step a hair below zero at the root.
        if step <= 1e-15 * t {
            break;
        }
    }
    t
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
    // The fraction needs O(sqrt(max(a, b))) terms (Numerical Recipes, section 6.4): with
    // `a = df / 2` that is a few hundred for the df of 10^5 trials.
    for m in 1..=10_000 {
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

/// The name of the 95% interval [`summarise_percentages`] computes, as reports print it.
pub const CI95_METHOD: &str = "Wilson score interval at the Korn-Graubard effective number of \
     trials (t with n - 1 df), never narrower than on the units' trials pooled";

/// Mean, sample SD and 95% confidence interval of a few percentages (one group's accuracies at
/// one condition, one method's errors over seeds), with the values they were made from.
///
/// With a single value it serialises as `{n, mean, sd: null, ci95_low: null, ci95_high: null}`,
/// as it always has: the method, values and trials are written only when there are several.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    /// Divisor n - 1; `None` for a single value.
    pub sd: Option<f64>,
    /// The 95% interval of [`CI95_METHOD`], within [0, 100]; `None` for a single value.
    pub ci95_low: Option<f64>,
    pub ci95_high: Option<f64>,
    /// [`CI95_METHOD`] when there is an interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ci95_method: Option<&'static str>,
    /// Each unit's percentage, in the order given.
    #[serde(skip_serializing_if = "at_most_one")]
    pub values: Vec<f64>,
    /// Each unit's number of trials (images) behind its percentage.
    #[serde(skip_serializing_if = "at_most_one")]
    pub trials: Vec<usize>,
}

fn at_most_one<T>(v: &[T]) -> bool {
    v.len() <= 1
}

/// Summarises a few percentages (at least one), each a unit's rate over its own trials:
/// `values[i]` % of `trials[i]` images, for a seed's model, a subject or a model.
///
/// # The interval
///
/// The target is the rate the units share, estimated by the unweighted mean `p` of their
/// rates. Student's t interval `p -+ t(0.975, n-1) sd / sqrt(n)` is symmetric, so near 0 or 100
/// it reaches past the possible range, and it is a single point whenever the units happen to
/// agree (two seeds with the same error count, common with few units and few errors). Instead
/// the units are treated as the clusters of a survey and the interval is the one for a
/// proportion estimated from few clusters, built from three published pieces:
///
/// 1. The variance of the mean from the units' spread, `v = sd^2 / n`, and the effective number
///    of trials `n_eff = p (1 - p) / v`: the number of independent trials whose binomial rate
///    would be as uncertain as the mean (Kish's effective sample size, L. Kish, "Survey
///    Sampling", Wiley 1965).
/// 2. Few units estimate `v` poorly, which Student's t allows for: E. L. Korn and
///    B. I. Graubard ("Confidence intervals for proportions with small expected number of
///    positive counts estimated from survey data", Survey Methodology 24(2), 1998, 193-201)
///    shrink the effective trials by the squared ratio of the quantiles,
///    `n_df = n_eff (t(0.975, n_total - 1) / t(0.975, n - 1))^2` (by a factor of 42 with two
///    units), `n_total` the trials there are (step 3). Their interval is Clopper-Pearson's on
///    `n_df` trials, R's `survey::svyciprop(method = "beta")`; the NCHS presentation standard
///    for proportions (Parker et al. 2017) is built on it.
/// 3. `n_df` is capped at `n_total = n^2 / sum(1 / trials[i])`, the trials behind the mean:
///    `n` independent binomial rates average to a rate of variance `p (1 - p) / n_total` (with
///    equal counts `n_total` is simply their sum). The cap is this crate's choice, not Korn and
///    Graubard's: each unit's rate is measured on a finite set of images, so the mean is not
///    known more precisely than binomial sampling of those images allows, whatever the units'
///    spread; that variance is known, not estimated, so it takes no shrinkage for degrees of
///    freedom. The interval is thus the wider of two, each valid under its own model: units
///    that differ (Korn and Graubard's) and units that differ only binomially (the pooled
///    trials'). The cap also gives the interval its width where `v` is 0 (units that agree, or
///    a rate of 0 or 100%).
/// 4. On `n_df` trials, Wilson's score interval (E. B. Wilson, "Probable inference, the law of
///    succession, and statistical inference", JASA 22, 1927, 209-212) with
///    `z = t(0.975, n_total - 1)`: the rates `q` with `|p - q| <= z sqrt(q (1 - q) / n_df)`,
///    `(p + z^2 / 2n_df -+ z sqrt(p (1 - p) / n_df + z^2 / 4n_df^2)) / (1 + z^2 / n_df)`. It
///    lies within [0, 1] by construction, contains `p`, and has width even at `p = 0` (then
///    `[0, z^2 / (n_df + z^2)]`). Survey software offers it beside Clopper-Pearson's, as
///    "modified Wilson" limits (SAS PROC SURVEYFREQ); it is chosen here over Clopper-Pearson's
///    as the less conservative of the two (Clopper-Pearson's covers more than 95% by
///    construction) and for its closed form.
///
/// Coverage of the true rate is measured by simulation in this module's tests, for 2, 3 and 5
/// units of 500 and 10,000 trials and 20 units of 15 trials, at rates 1% to 90%, with units
/// that differ only binomially (97.7-99.6% for 2 to 5 units: the cap makes it conservative
/// there) and units whose own rates differ (93-97%); docs/reproduce.md gives the figures.
pub fn summarise_percentages(values: &[f64], trials: &[usize]) -> Summary {
    assert!(!values.is_empty(), "a summary of nothing");
    assert_eq!(values.len(), trials.len(), "one trial count per value");
    assert!(
        values.iter().all(|v| (0.0..=100.0).contains(v)),
        "percentages must lie in [0, 100]: {values:?}"
    );
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n as f64;
    let mut summary = Summary {
        n,
        mean,
        sd: None,
        ci95_low: None,
        ci95_high: None,
        ci95_method: None,
        values: values.to_vec(),
        trials: trials.to_vec(),
    };
    if n == 1 {
        return summary;
    }
    let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    let (low, high) = rate_interval_95(mean / 100.0, sd / 100.0, trials);
    summary.sd = Some(sd);
    summary.ci95_low = Some(100.0 * low);
    summary.ci95_high = Some(100.0 * high);
    summary.ci95_method = Some(CI95_METHOD);
    summary
}

/// Steps 1-4 of [`summarise_percentages`] on the proportion scale: the interval around the
/// mean rate `p` of `trials.len()` (at least 2) units whose rates have sample SD `sd`.
fn rate_interval_95(p: f64, sd: f64, trials: &[usize]) -> (f64, f64) {
    let n = trials.len() as f64;
    // A unit with no trials has the rate 0 by convention (`accuracy_pct`); counted as one trial
    // it adds the most uncertainty a unit can.
    let n_total = n * n / trials.iter().map(|&t| 1.0 / t.max(1) as f64).sum::<f64>();
    let z = student_t_quantile(0.975, n_total - 1.0);
    let variance = sd * sd / n;
    let n_df = if variance > 0.0 {
        let ratio = z / student_t_quantile(0.975, n - 1.0);
        (p * (1.0 - p) / variance * ratio * ratio).min(n_total)
    } else {
        n_total
    };
    let z2 = z * z / n_df;
    let centre = (p + z2 / 2.0) / (1.0 + z2);
    let half = z / (1.0 + z2) * (p * (1.0 - p) / n_df + z2 / (4.0 * n_df)).sqrt();
    // At p = 0 (or 1) the limit is 0 (or 1) exactly; the clamps only absorb rounding there.
    ((centre - half).max(0.0), (centre + half).min(1.0))
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

    /// The naive twin of [`student_t_quantile`]: bisection on the same upper tail, to the f64
    /// resolution of the bracket.
    fn student_t_quantile_by_bisection(p: f64, df: f64) -> f64 {
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        while student_t_upper_tail(hi, df) > 1.0 - p {
            hi *= 2.0;
        }
        loop {
            let mid = 0.5 * (lo + hi);
            if mid == lo || mid == hi {
                return mid;
            }
            if student_t_upper_tail(mid, df) > 1.0 - p {
                lo = mid
            } else {
                hi = mid
            }
        }
    }

    #[test]
    fn newton_and_bisection_agree_on_student_t_quantiles() {
        // Both find a root of the same computed tail, which for large df is itself accurate
        // only to about 1e-11 relative near the centre: there `x = df / (df + t^2)` lies within
        // 1e-5 of 1, and the rounding of x costs digits. The two roots agree to that, not to
        // the last bit. The df reach those of the intervals: n_total - 1 for 5 units of 10,000
        // images is 49,999.
        const TOLERANCE: f64 = 1e-9;
        let mut worst = (0.0f64, 0.0, 0.0);
        for df in [
            0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 9.0, 29.0, 149.0, 999.0, 49_999.0, 1e5,
        ] {
            for p in [0.6, 0.9, 0.975, 0.995] {
                let (fast, naive) = (
                    student_t_quantile(p, df),
                    student_t_quantile_by_bisection(p, df),
                );
                let difference = ((fast - naive) / naive).abs();
                if difference > worst.0 {
                    worst = (difference, p, df);
                }
            }
        }
        assert!(
            worst.0 < TOLERANCE,
            "largest relative difference {} at t({}, {})",
            worst.0,
            worst.1,
            worst.2
        );
    }

    /// An interval on the percentage scale from the units' values and trial counts.
    type Method = fn(&[f64], &[usize]) -> (f64, f64);

    fn this_crates(values: &[f64], trials: &[usize]) -> (f64, f64) {
        let s = summarise_percentages(values, trials);
        (s.ci95_low.unwrap(), s.ci95_high.unwrap())
    }

    /// How the units' rates are drawn around the true rate `p`.
    #[derive(Clone, Copy, Debug)]
    enum Units {
        /// Every unit's rate is `p`: units differ only by binomial sampling of their trials.
        Binomial,
        /// Every unit's rate is drawn from Beta(p k, (1 - p) k) with k chosen so that the rates
        /// have `factor` times the binomial SD of a unit's trials (as seeds of one method differ
        /// by more than the sampling of their test images), then sampled binomially.
        Overdispersed { factor: f64 },
    }

    /// `(share of intervals covering 100 p, share lying within [0, 100])` over `replicates`
    /// draws of `n` units of `trials` trials each, each unit's value `Binomial(trials, p_i) /
    /// trials * 100` with `p_i` drawn as `units` says.
    fn coverage(
        method: Method,
        units: Units,
        (n, trials, p): (usize, usize, f64),
        replicates: usize,
        seed: u64,
    ) -> (f64, f64) {
        use ndarray_rand::rand_distr::{Beta, Binomial, Distribution};
        use rand_chacha::rand_core::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        // Beta(p k, (1 - p) k) has variance p (1 - p) / (k + 1); equal to factor^2 times the
        // binomial variance p (1 - p) / trials at k = trials / factor^2 - 1.
        let beta = match units {
            Units::Binomial => None,
            Units::Overdispersed { factor } => {
                let k = trials as f64 / (factor * factor) - 1.0;
                Some(Beta::new(p * k, (1.0 - p) * k).unwrap())
            }
        };
        let counts = vec![trials; n];
        let (mut covered, mut in_range) = (0usize, 0usize);
        for _ in 0..replicates {
            let values: Vec<f64> = (0..n)
                .map(|_| {
                    let rate = beta.map_or(p, |b| b.sample(&mut rng));
                    let errors = Binomial::new(trials as u64, rate).unwrap().sample(&mut rng);
                    100.0 * errors as f64 / trials as f64
                })
                .collect();
            let (low, high) = method(&values, &counts);
            covered += (low <= 100.0 * p && 100.0 * p <= high) as usize;
            in_range += (0.0 <= low && low <= high && high <= 100.0) as usize;
        }
        (
            covered as f64 / replicates as f64,
            in_range as f64 / replicates as f64,
        )
    }

    /// Replicates per setting: the coverage estimate's standard error is about
    /// sqrt(0.95 * 0.05 / 3000) = 0.004, far below the 0.05 margin to the 90% floor.
    const REPLICATES: usize = 3_000;

    /// Every setting of the simulation: (units, trials per unit, rate), with its own seed.
    /// Seeds of `reproduce` (2, 3 or 5 of 500 or 10,000 test images), and subjects of the human
    /// study (20 of 15 images at one condition).
    fn settings() -> Vec<((usize, usize, f64), u64)> {
        let mut out = Vec::new();
        let units = [2, 3, 5].into_iter().flat_map(|n| [(n, 500), (n, 10_000)]);
        for (n, trials) in units.chain([(20, 15)]) {
            for p in [0.01, 0.1, 0.5, 0.9] {
                out.push(((n, trials, p), out.len() as u64));
            }
        }
        out
    }

    #[test]
    fn the_interval_covers_the_true_rate_and_stays_within_0_and_100() {
        let mut failures = Vec::new();
        for units in [Units::Binomial, Units::Overdispersed { factor: 2.0 }] {
            for (setting, seed) in settings() {
                let (covered, in_range) = coverage(this_crates, units, setting, REPLICATES, seed);
                eprintln!("{units:?}, (units, trials, rate) {setting:?}: coverage {covered:.4}");
                if covered < 0.90 || in_range < 1.0 {
                    failures.push(format!(
                        "{units:?} {setting:?}: coverage {covered}, in [0, 100] {in_range}"
                    ));
                }
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }

    #[test]
    fn the_coverage_check_rejects_intervals_known_to_be_wrong() {
        let units = Units::Binomial;
        // The normal interval with z = 1.96 in place of t: with two units it covers
        // P(|t_1| < 1.96) = 2 atan(1.96) / pi = 70% of the time.
        let normal: Method = |v, t| {
            let s = summarise_percentages(v, t);
            let half = 1.959_964 * s.sd.unwrap() / (v.len() as f64).sqrt();
            ((s.mean - half).max(0.0), (s.mean + half).min(100.0))
        };
        let (covered, _) = coverage(normal, units, (2, 10_000, 0.5), REPLICATES, 1);
        assert!(
            covered < 0.80,
            "normal interval, 2 units: coverage {covered}"
        );
        // The mean alone, an interval clipped to a point: it covers only an exact hit.
        let point: Method = |v, t| {
            let m = summarise_percentages(v, t).mean;
            (m, m)
        };
        let (covered, _) = coverage(point, units, (3, 500, 0.1), REPLICATES, 2);
        assert!(covered < 0.20, "point interval: coverage {covered}");
        // Student's t on the percentages themselves, the interval reported before: at a rate of
        // 1% on 500 images it reaches below 0 whenever the two units differ.
        let student: Method = |v, t| {
            let s = summarise_percentages(v, t);
            let n = v.len() as f64;
            let half = student_t_quantile(0.975, n - 1.0) * s.sd.unwrap() / n.sqrt();
            (s.mean - half, s.mean + half)
        };
        let (_, in_range) = coverage(student, units, (2, 500, 0.01), REPLICATES, 3);
        assert!(
            in_range < 0.5,
            "Student's t interval in [0, 100]: {in_range}"
        );
    }

    #[test]
    fn a_single_value_has_no_interval_and_serialises_as_before() {
        let one = summarise_percentages(&[42.0], &[500]);
        assert_eq!(
            (one.mean, one.sd, one.ci95_low, one.ci95_high),
            (42.0, None, None, None)
        );
        assert_eq!(
            serde_json::to_string(&one).unwrap(),
            r#"{"n":1,"mean":42.0,"sd":null,"ci95_low":null,"ci95_high":null}"#
        );
        let two = summarise_percentages(&[40.0, 44.0], &[500, 500]);
        let json = serde_json::to_value(&two).unwrap();
        assert_eq!(json["values"], serde_json::json!([40.0, 44.0]));
        assert_eq!(json["trials"], serde_json::json!([500, 500]));
        assert_eq!(json["ci95_method"], CI95_METHOD);
    }

    #[test]
    fn intervals_of_extreme_values_are_real_intervals_within_0_and_100() {
        for values in [
            [0.0, 0.0],
            [100.0, 100.0],
            [0.0, 100.0],
            [99.8, 100.0],
            [0.2, 0.2],
            [50.0, 50.0],
        ] {
            for trials in [10, 500, 10_000] {
                let s = summarise_percentages(&values, &[trials, trials]);
                let (low, high) = (s.ci95_low.unwrap(), s.ci95_high.unwrap());
                assert!(
                    0.0 <= low && low <= s.mean && s.mean <= high && high <= 100.0 && low < high,
                    "{values:?} of {trials}: [{low}, {high}] around {}",
                    s.mean
                );
            }
        }
        // All zero of 500 + 500 trials: no spread, so n_df is the 1000 trials there are, and
        // Wilson's interval at p = 0 is [0, z^2 / (1000 + z^2)], z = t(0.975, 999).
        let s = summarise_percentages(&[0.0, 0.0], &[500, 500]);
        let z2 = student_t_quantile(0.975, 999.0).powi(2);
        let want = 100.0 * z2 / (1000.0 + z2);
        assert_eq!(s.ci95_low, Some(0.0));
        assert!(
            (s.ci95_high.unwrap() - want).abs() < 1e-12,
            "{s:?}, want {want}"
        );
        // Units far apart: the spread, not the cap, sets the width. Rate 30% with SD 10 over
        // three units on 10,000 images each: v = 0.01 / 3, n_eff = 0.21 / v = 63, and
        // n_df = 63 (1.960 / 4.303)^2 = 13.1, so the interval is about as wide as Student's t
        // on the same values, 30 -+ 24.8, but drawn towards 50% as a rate's uncertainty is.
        let s = summarise_percentages(&[20.0, 40.0, 30.0], &[10_000; 3]);
        let half = student_t_quantile(0.975, 2.0) * 10.0 / 3f64.sqrt();
        let (low, high) = (s.ci95_low.unwrap(), s.ci95_high.unwrap());
        let ratio = (high - low) / (2.0 * half);
        assert!(
            (0.8..1.2).contains(&ratio) && high - 30.0 > 30.0 - low,
            "[{low}, {high}] against Student's 30 -+ {half}"
        );
        // Unequal trials: two units of 10 and 1000 trials that agree are as uncertain as
        // n_total = 4 / (1/10 + 1/1000) = 39.6 pooled trials, not 1010.
        let s = summarise_percentages(&[0.0, 0.0], &[10, 1000]);
        let z2 = student_t_quantile(0.975, 4.0 / 0.101 - 1.0).powi(2);
        let want = 100.0 * z2 / (4.0 / 0.101 + z2);
        assert!(
            (s.ci95_high.unwrap() - want).abs() < 1e-9,
            "{s:?}, want {want}"
        );
    }
}
