//! Boxes of inputs and activations, and the constants that make their bounds hold for the
//! float32 network rather than for exact arithmetic (the argument is in the parent module's
//! comment, "Why the bounds hold for the float32 network").
//!
//! An [`Interval`] is a pair of f64 arrays of one shape, `lower <= upper` elementwise: the box
//! of every value a tensor of that shape can take. [`Rounding`] is the widening of one affine
//! output: `slack = coefficient * magnitude + underflow`, from the number of products it sums.

use ndarray::{Array, ArrayView, Dimension, Zip};

/// Unit roundoff of f32 (round to nearest): `2^-24`.
pub const F32_UNIT_ROUNDOFF: f64 = 1.0 / (1u64 << 24) as f64;
/// Unit roundoff of f64 (round to nearest): `2^-53`.
pub const F64_UNIT_ROUNDOFF: f64 = 1.0 / (1u64 << 53) as f64;
/// The most an f32 product can be off by absolutely when its result is subnormal (gradual
/// underflow: half the smallest subnormal, `2^-150`), doubled: `2^-149` per product. Sums of
/// subnormals are exact (Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed.,
/// section 2.1, eq. 2.8), so only products add this absolute error.
pub const F32_UNDERFLOW_PER_PRODUCT: f64 = 1.401_298_464_324_817e-45; // 2^-149
/// Where an affine output's magnitude bound stops being trusted: every partial sum of a dot
/// product with `|w|.|x| + |b| <= 2^120` stays below 2^121, far from f32's overflow at 2^128.
/// Above it (or on NaN) the output's box is the whole line, which certifies nothing.
pub const MAGNITUDE_LIMIT: f64 = 1.329_227_995_784_916e36; // 2^120

/// `gamma_n = n u / (1 - n u)` (Higham, section 3.1, eq. 3.8): `|prod (1 + d_i)^(+-1) - 1| <=
/// gamma_n` for `n` factors with `|d_i| <= u`.
pub fn gamma(n: usize, unit_roundoff: f64) -> f64 {
    let nu = n as f64 * unit_roundoff;
    assert!(nu < 0.5, "gamma_{n}: n u = {nu} is too large for the bound");
    nu / (1.0 - nu)
}

/// The widening of an affine output `y = sum_{i<n} w_i x_i + b` with `n` products (parent
/// module, steps 2 and 3): `slack = coefficient * (|w|.a + |b|) + underflow`, with
/// `a = max(|lower|, |upper|)` the input's largest magnitude.
///
/// - `coefficient = (gamma_{n+1}(f32) + gamma_{4n+16}(f64)) * (1 + gamma_{n+8}(f64))`: the f32
///   network's rounding (the standard dot-product bound: `n + 1` terms with the bias), the f64
///   bound computation's own rounding, and a last factor for computing the magnitude and the
///   slack themselves in f64 (each possibly rounded down).
/// - `underflow = (n + 1) * 2^-149`: gradual underflow in the f32 products (and, far below it,
///   in the f64 ones).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rounding {
    pub coefficient: f64,
    pub underflow: f64,
}

impl Rounding {
    /// The widening for an output that sums `products` products and a bias (a bias of 0 when
    /// there is none).
    pub fn for_products(products: usize) -> Self {
        let n = products;
        Rounding {
            coefficient: (gamma(n + 1, F32_UNIT_ROUNDOFF) + gamma(4 * n + 16, F64_UNIT_ROUNDOFF))
                * (1.0 + gamma(n + 8, F64_UNIT_ROUNDOFF)),
            underflow: (n + 1) as f64 * F32_UNDERFLOW_PER_PRODUCT,
        }
    }

    /// The box of one affine output from the f64 sums of the parent module's step 2:
    /// `twice_centre = W (lower + upper)`, `twice_radius = |W| (upper - lower)`,
    /// `magnitude = |W| max(|lower|, |upper|)`, and the bias `b`:
    /// `[(twice_centre - twice_radius)/2 + b - slack, (twice_centre + twice_radius)/2 + b + slack]`.
    /// An output whose magnitude exceeds [`MAGNITUDE_LIMIT`], or is NaN, gets the whole line.
    #[inline]
    pub fn finish(
        &self,
        twice_centre: f64,
        twice_radius: f64,
        magnitude: f64,
        b: f64,
    ) -> (f64, f64) {
        let magnitude = magnitude + b.abs();
        if magnitude.is_nan() || magnitude > MAGNITUDE_LIMIT || !twice_centre.is_finite() {
            return (f64::NEG_INFINITY, f64::INFINITY);
        }
        let slack = self.coefficient * magnitude + self.underflow;
        (
            0.5 * (twice_centre - twice_radius) + b - slack,
            0.5 * (twice_centre + twice_radius) + b + slack,
        )
    }
}

/// A box: every value of a tensor lies in `[lower, upper]`, elementwise. Always in f64.
#[derive(Clone, Debug, PartialEq)]
pub struct Interval<D: Dimension> {
    pub lower: Array<f64, D>,
    pub upper: Array<f64, D>,
}

impl<D: Dimension> Interval<D> {
    /// Panics unless the two ends have the same shape.
    pub fn new(lower: Array<f64, D>, upper: Array<f64, D>) -> Self {
        assert_eq!(
            lower.shape(),
            upper.shape(),
            "an interval's ends must have one shape"
        );
        Interval { lower, upper }
    }

    /// The box holding the single point `x`.
    pub fn point(x: ArrayView<f32, D>) -> Self {
        let x = x.mapv(f64::from);
        Interval::new(x.clone(), x)
    }

    pub fn shape(&self) -> &[usize] {
        self.lower.shape()
    }

    /// The three arrays the affine bounds take (parent module, step 2): `lower + upper`,
    /// `upper - lower` and `max(|lower|, |upper|)`, each in f64. Where an end is infinite the
    /// first is NaN or infinite, which [`Rounding::finish`] turns into the whole line.
    pub fn sum_difference_magnitude(&self) -> (Array<f64, D>, Array<f64, D>, Array<f64, D>) {
        let sum = &self.lower + &self.upper;
        let difference = &self.upper - &self.lower;
        let magnitude = Zip::from(&self.lower)
            .and(&self.upper)
            .map_collect(|&l, &u| l.abs().max(u.abs()));
        (sum, difference, magnitude)
    }

    /// The first element of `x` outside the box, as (flat index, value, lower, upper): for
    /// tests to name what failed. NaN counts as outside.
    pub fn first_outside(&self, x: ArrayView<f32, D>) -> Option<(usize, f32, f64, f64)> {
        assert_eq!(x.shape(), self.shape(), "a point of another shape");
        x.iter()
            .zip(self.lower.iter().zip(self.upper.iter()))
            .enumerate()
            .find(|(_, (&v, (&l, &u)))| !(l <= f64::from(v) && f64::from(v) <= u))
            .map(|(i, (&v, (&l, &u)))| (i, v, l, u))
    }

    /// Whether every element of `x` lies in the box.
    pub fn contains(&self, x: ArrayView<f32, D>) -> bool {
        self.first_outside(x).is_none()
    }
}

/// `a + b` rounded towards -infinity: the f64 sum, one step lower where it rounded up. Whether
/// it did is read from its exact error, Knuth's TwoSum (Higham, section 4.3, Algorithm 4.4:
/// `err = (a - (s - b')) + (b - b')` with `b' = s - a` is exactly `a + b - s`). An exact sum is
/// left as it is (stepping 0 down would make a subnormal, whose products are slow).
pub fn add_round_down(a: f64, b: f64) -> f64 {
    let (s, err) = two_sum(a, b);
    if err < 0.0 {
        next_down(s)
    } else {
        s
    }
}

/// `a + b` rounded towards +infinity (see [`add_round_down`]).
pub fn add_round_up(a: f64, b: f64) -> f64 {
    let (s, err) = two_sum(a, b);
    if err > 0.0 {
        next_up(s)
    } else {
        s
    }
}

/// The least f64 above `v` (finite `v`), as `f64::next_up`, which is newer than this crate's
/// minimum Rust version: the next bit pattern away from zero for `v > 0`, towards zero for
/// `v < 0`, the smallest subnormal for either zero.
pub fn next_up(v: f64) -> f64 {
    debug_assert!(v.is_finite(), "next_up of {v}");
    if v == 0.0 {
        f64::from_bits(1)
    } else if v > 0.0 {
        f64::from_bits(v.to_bits() + 1)
    } else {
        f64::from_bits(v.to_bits() - 1)
    }
}

/// The greatest f64 below `v` (finite `v`), as `f64::next_down`.
pub fn next_down(v: f64) -> f64 {
    -next_up(-v)
}

/// The f64 sum `s` of `a + b` and its exact error `a + b - s` (finite inputs).
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let b_virtual = s - a;
    let a_virtual = s - b_virtual;
    (s, (a - a_virtual) + (b - b_virtual))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn constants_are_the_powers_of_two_they_name() {
        assert_eq!(F32_UNIT_ROUNDOFF, 2f64.powi(-24));
        assert_eq!(F64_UNIT_ROUNDOFF, 2f64.powi(-53));
        assert_eq!(F32_UNDERFLOW_PER_PRODUCT, 2f64.powi(-149));
        assert_eq!(MAGNITUDE_LIMIT, 2f64.powi(120));
        // f32's unit roundoff is half the distance from 1 to the next float.
        assert_eq!(F32_UNIT_ROUNDOFF, f64::from(f32::EPSILON) / 2.0);
    }

    #[test]
    fn gamma_matches_its_formula_and_grows() {
        // gamma_1 = u / (1 - u); for f32 that is 2^-24 / (1 - 2^-24).
        let g1 = gamma(1, F32_UNIT_ROUNDOFF);
        assert_eq!(g1, 2f64.powi(-24) / (1.0 - 2f64.powi(-24)));
        // LeNet's fc1 sums 800 products and a bias: gamma_801 = 801 u / (1 - 801 u) ~ 4.774e-5.
        let g = gamma(801, F32_UNIT_ROUNDOFF);
        assert!((g - 4.774_4e-5).abs() < 1e-8, "gamma_801 = {g}");
        assert!(gamma(802, F32_UNIT_ROUNDOFF) > g);
    }

    /// A sum that rounds at nearly every step: `(1 + 2^-23) * (1/3)` added 100 times to 0 in
    /// f32. Its error against the exact sum stays under `gamma_101 * sum |terms|`.
    #[test]
    fn the_dot_product_bound_covers_an_accumulated_sum() {
        let (w, x) = (1.0f32 + f32::EPSILON, 1.0f32 / 3.0);
        let mut acc = 0.0f32;
        for _ in 0..100 {
            acc += w * x;
        }
        let exact = 100.0 * f64::from(w) * f64::from(x);
        let error = (f64::from(acc) - exact).abs();
        assert!(error > 0.0, "the f32 sum rounds");
        let bound = gamma(101, F32_UNIT_ROUNDOFF) * exact;
        assert!(error <= bound, "error {error:e} > bound {bound:e}");
    }

    #[test]
    fn finish_widens_outwards_and_gives_up_on_huge_or_nan() {
        let r = Rounding::for_products(3);
        // W (x_lo + x_hi) = 2, |W| (x_hi - x_lo) = 1, |W| a = 4, b = 0.5: centre 1 + 0.5,
        // radius 0.5: [1, 2] before the slack, slack = coefficient * 4.5 + underflow.
        let (lo, hi) = r.finish(2.0, 1.0, 4.0, 0.5);
        let slack = r.coefficient * 4.5 + r.underflow;
        assert_eq!(lo, 1.0 - slack);
        assert_eq!(hi, 2.0 + slack);
        assert!(slack > 4.0 * 4.5 * F32_UNIT_ROUNDOFF);
        assert_eq!(
            r.finish(0.0, 0.0, f64::NAN, 0.0),
            (f64::NEG_INFINITY, f64::INFINITY)
        );
        assert_eq!(
            r.finish(0.0, 0.0, 2.0 * MAGNITUDE_LIMIT, 0.0),
            (f64::NEG_INFINITY, f64::INFINITY)
        );
    }

    #[test]
    fn interval_helpers() {
        let box_ = Interval::new(array![-1.0, 0.5], array![0.5, 2.0]);
        let (s, d, m) = box_.sum_difference_magnitude();
        assert_eq!(s, array![-0.5, 2.5]);
        assert_eq!(d, array![1.5, 1.5]);
        assert_eq!(m, array![1.0, 2.0]);
        assert!(box_.contains(array![0.0f32, 2.0].view()));
        assert_eq!(
            box_.first_outside(array![0.0f32, 2.5].view()),
            Some((1, 2.5, 0.5, 2.0))
        );
        assert!(!box_.contains(array![f32::NAN, 1.0].view()));
    }

    #[test]
    fn next_up_and_down_step_one_f64() {
        assert_eq!(next_up(1.0), 1.0 + f64::EPSILON);
        assert_eq!(next_down(1.0), 1.0 - f64::EPSILON / 2.0);
        assert_eq!(next_up(-1.0), -1.0 + f64::EPSILON / 2.0);
        assert_eq!(next_up(0.0), f64::from_bits(1));
        assert_eq!(next_up(-0.0), f64::from_bits(1));
        assert_eq!(next_down(0.0), -f64::from_bits(1));
        assert_eq!(next_up(-f64::from_bits(1)), 0.0);
        assert_eq!(next_up(f64::MAX), f64::INFINITY);
    }

    #[test]
    fn directed_sums_round_outwards_only_when_inexact() {
        // 1 + 2^-60 is not an f64: the sum rounds to 1, its error is +2^-60.
        let tiny = 2f64.powi(-60);
        assert_eq!(add_round_down(1.0, tiny), 1.0);
        assert_eq!(add_round_up(1.0, tiny), 1.0 + f64::EPSILON);
        assert_eq!(add_round_down(1.0, -tiny), 1.0 - f64::EPSILON / 2.0);
        assert_eq!(add_round_up(1.0, -tiny), 1.0);
        // Exact sums stay: 0.5 - 0.25, 0 + 0.
        assert_eq!(add_round_down(0.5, -0.25), 0.25);
        assert_eq!(add_round_up(0.5, -0.25), 0.25);
        assert_eq!(add_round_down(0.0, 0.0), 0.0);
    }
}
