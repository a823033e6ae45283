//! The study's Gaussian low-pass filter with noise injection (section 3.3, after Gu and Rigazio
//! 2014; sizes and variances from section 4.1):
//!
//! ```text
//! x' = clip(x + sigma_noise * z, 0, 1)     (optional noise injection, z ~ N(0, 1) per pixel)
//! y  = K * x'                               ("same" 2-D convolution, zero padding)
//! ```
//!
//! **Kernels.** Size `S` in {3, 5, 7}: `K[a][b] = exp(-(u_a^2 + u_b^2) / (2 var))` at `S` points
//! `u` evenly spaced over [-3, 3] (both ends included), normalised to sum 1; variance 7 for size
//! 3, 1.3 for 5, 0.6 for 7 (the study's choice). Sampled this way all three are mild blurs.
//!
//! **Border rule: zero padding.** MNIST digits sit in the central 20x20 of a 28x28 frame of
//! zeros, so zero and replicate padding differ only where injected noise reaches the border;
//! zero padding keeps the filter a plain linear map whose backward is exactly the correlation
//! with the flipped kernel (below), with no edge terms to accumulate.
//!
//! **Backward.** `y[i,j] = sum_{a,b} K[a,b] x'[i+a-r, j+b-r]` (r = S/2), so
//! `dL/dx'[p,q] = sum_{a,b} K[a,b] dL/dy[p-a+r, q-b+r]`: the same-size correlation of `dL/dy`
//! with the flipped kernel `K[S-1-a, S-1-b]` ([`LowPassFilter::blur_transpose`]). The study's
//! kernels are symmetric, exactly so in f32 (the points `u` are symmetric about 0 in binary:
//! tested), so the flipped kernel is the kernel itself and the backward is the blur again; the
//! flip is written out anyway, so that the backward stays right for any kernel
//! ([`LowPassFilter::custom`], which `advmnist gradcheck`'s tests use with an asymmetric one to
//! show that an unflipped backward fails). Through the clipping, `dx'/dx` is 1 where
//! `0 < x + sigma z < 1` and 0 where it clipped.
//!
//! **Randomness.** The noise of an image comes from the stream `(seed, InjectedNoise, h)` where
//! `h` mixes a hash of the image's pixels with the draw number: the same image gets the same noise
//! whatever batch it is in and however the batch is split, and an attack averaging over `k`
//! draws (expectation over transformation) uses draws `0..k`.
//!
//! Fast path: the Gaussian is separable, `K = k k^T` with `k` the normalised 1-D kernel, so the
//! filter runs as a row pass then a column pass; [`blur_naive`] is the direct 2-D loop it is
//! tested against. The flipped kernel of `k k^T` is `flip(k) flip(k)^T`, so the backward is the
//! same two passes with `k` reversed.
//!
//! **Precision.** The filter runs in f32 everywhere except in the gradient checks
//! (`audit::pipeline`), which run the blur, the clipping and the backward in f64 on the f32
//! kernel widened exactly ([`LowPassFilter::blur`], [`LowPassFilter::inject_with`] and
//! [`LowPassFilter::vjp_fixed`] are generic over [`Scalar`]); the noise `z` is always drawn in
//! f32, keyed by the f32 image ([`LowPassFilter::noise_draw`]), and the f64 check holds that
//! draw fixed. The f32 path's operations, and so its bits, are the ones it had before it was
//! made generic (`x + sigma z` in f32, products and sums in the same order).
//!
//! Dimension legend: `N` images, `H = W = 28`, `S` kernel size.

use crate::kernels::scalar::Scalar;
use crate::rng::{stream, Purpose};
use ndarray::{Array1, Array2, Array4, ArrayView2, ArrayView4, Axis, Zip};
use ndarray_rand::rand_distr::StandardNormal;
use ndarray_rand::RandomExt;

/// The study's variance for each kernel size.
pub fn study_variance(size: usize) -> Option<f64> {
    match size {
        3 => Some(7.0),
        5 => Some(1.3),
        7 => Some(0.6),
        _ => None,
    }
}

/// Default sigma of the injected noise when injection is asked for without a value: 0.1, see
/// docs/defences.md (the clean error it costs, and what it does to the attack).
pub const DEFAULT_NOISE: f32 = 0.1;

#[derive(Clone, Debug, PartialEq)]
pub struct LowPassFilter {
    pub size: usize,
    pub variance: f64,
    /// Sigma of the injected noise; 0 for none.
    pub noise: f32,
    /// Seed of the injected noise.
    pub seed: u64,
    kernel_1d: Array1<f32>, // (S): normalised, K = k k^T
}

impl LowPassFilter {
    /// The study's filter of the given size (3, 5 or 7), with injected noise of sigma `noise`.
    pub fn study(size: usize, noise: f32, seed: u64) -> Result<Self, String> {
        let variance = study_variance(size).ok_or_else(|| {
            format!("low-pass filter size {size}: the study's sizes are 3, 5 and 7")
        })?;
        if !(noise.is_finite() && noise >= 0.0) {
            return Err(format!("noise sigma {noise}: must be a finite number >= 0"));
        }
        Ok(LowPassFilter {
            size,
            variance,
            noise,
            seed,
            kernel_1d: kernel_1d(size, variance),
        })
    }

    /// A filter with any odd-length 1-D kernel `k` (2-D kernel `k k^T`), not normalised, for
    /// tests of the backward pass: with an asymmetric `k`, correlating with the kernel and with
    /// the flipped kernel differ, so a backward that forgets the flip is caught. Not reachable
    /// from the command line; `variance` is NaN and the name `lowpass:custom`.
    pub fn custom(kernel_1d: Array1<f32>, noise: f32, seed: u64) -> Result<Self, String> {
        if kernel_1d.len().is_multiple_of(2) || kernel_1d.iter().any(|v| !v.is_finite()) {
            return Err(format!(
                "a custom low-pass kernel needs an odd number of finite values, got {kernel_1d}"
            ));
        }
        if !(noise.is_finite() && noise >= 0.0) {
            return Err(format!("noise sigma {noise}: must be a finite number >= 0"));
        }
        Ok(LowPassFilter {
            size: kernel_1d.len(),
            variance: f64::NAN,
            noise,
            seed,
            kernel_1d,
        })
    }

    /// The 2-D kernel `(S, S)`: computed directly for the study's filters, `k k^T` for a custom one.
    pub fn kernel(&self) -> Array2<f32> {
        if self.variance.is_nan() {
            let k = self.kernel_1d.view();
            return Array2::from_shape_fn((self.size, self.size), |(a, b)| k[a] * k[b]);
        }
        kernel_2d(self.size, self.variance)
    }

    /// The name used on the command line, e.g. `lowpass:5` or `lowpass:5,noise=0.1`.
    pub fn describe(&self) -> String {
        let size = if self.variance.is_nan() {
            "custom".to_string()
        } else {
            self.size.to_string()
        };
        if self.noise > 0.0 {
            format!("lowpass:{size},noise={}", self.noise)
        } else {
            format!("lowpass:{size}")
        }
    }

    /// The standard normal draw `z (N,1,28,28)` injected into images `x` by draw `draw`, or
    /// `None` for a filter without noise. Image `n`'s draw comes from the stream
    /// `(seed, InjectedNoise, key)`, the key mixing a hash of that image's f32 pixels with the
    /// draw number (module comment): so it is a function of the image, and a gradient check that
    /// moves a pixel must hold it fixed rather than draw again.
    pub fn noise_draw(&self, x: ArrayView4<f32>, draw: u64) -> Option<Array4<f32>> {
        if self.noise == 0.0 {
            return None;
        }
        let mut z = Array4::zeros(x.raw_dim());
        Zip::from(z.axis_iter_mut(Axis(0)))
            .and(x.axis_iter(Axis(0)))
            .par_for_each(|mut zi, xi| {
                let key = image_key(xi) ^ draw.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                zi.assign(&ndarray::Array3::<f32>::random_using(
                    xi.raw_dim(),
                    StandardNormal,
                    &mut stream(self.seed, Purpose::InjectedNoise, key),
                ));
            });
        Some(z)
    }

    /// The noisy input `x' = clip(x + sigma z, 0, 1)` for a given draw `z (N,1,28,28)`, and the
    /// mask `dx'/dx`: 1 where `0 < x + sigma z < 1`, 0 where the value clipped (a value exactly
    /// at 0 or 1 counts as clipped: its gradient is 0, the one-sided slope from outside). In
    /// `T`; `sigma` and `z` widened exactly for f64.
    pub fn inject_with<T: Scalar>(
        &self,
        x: ArrayView4<T>,
        z: ArrayView4<f32>,
    ) -> (Array4<T>, Array4<T>) {
        assert_eq!(x.dim(), z.dim(), "one noise value per pixel");
        let sigma = T::of(self.noise.into());
        let mut noisy = x.to_owned();
        let mut mask = Array4::zeros(x.raw_dim());
        Zip::from(&mut noisy)
            .and(&mut mask)
            .and(&z)
            .par_for_each(|x, m, &z| {
                let v = *x + sigma * T::of(z.into());
                *m = if v > T::zero() && v < T::one() {
                    T::one()
                } else {
                    T::zero()
                };
                // f32::clamp's rule, written for any Scalar.
                *x = if v < T::zero() {
                    T::zero()
                } else if v > T::one() {
                    T::one()
                } else {
                    v
                };
            });
        (noisy, mask)
    }

    /// The noisy input `x'` of draw `draw` and the mask `dx'/dx` (1 where not clipped).
    fn inject(&self, x: ArrayView4<f32>, draw: u64) -> (Array4<f32>, Option<Array4<f32>>) {
        match self.noise_draw(x, draw) {
            None => (x.to_owned(), None),
            Some(z) => {
                let (noisy, mask) = self.inject_with(x, z.view());
                (noisy, Some(mask))
            }
        }
    }

    /// The filtered images of draw `draw` (draws differ only in the injected noise).
    pub fn apply(&self, x: ArrayView4<f32>, draw: u64) -> Array4<f32> {
        let (noisy, _) = self.inject(x, draw);
        self.blur(noisy.view())
    }

    /// `dL/dx` from `dL/dy`, for the same draw: the blur's transpose, then the clipping mask.
    pub fn vjp(&self, x: ArrayView4<f32>, draw: u64, d_out: ArrayView4<f32>) -> Array4<f32> {
        let (_, mask) = self.inject(x, draw);
        self.vjp_fixed(d_out, mask.as_ref().map(|m| m.view()))
    }

    /// `dL/dx` from `dL/dy` given the clipping mask of [`Self::inject_with`] (`None` without
    /// noise): the correlation with the flipped kernel, times the mask.
    pub fn vjp_fixed<T: Scalar>(
        &self,
        d_out: ArrayView4<T>,
        mask: Option<ArrayView4<T>>,
    ) -> Array4<T> {
        let d = self.blur_transpose(d_out);
        match mask {
            Some(m) => d * m,
            None => d,
        }
    }

    /// The same-size blur of each image, as a row pass and a column pass.
    pub fn blur<T: Scalar>(&self, x: ArrayView4<T>) -> Array4<T> {
        blur_separable(x, self.kernel_1d.view())
    }

    /// The transpose of [`Self::blur`]: the same-size correlation with the flipped kernel,
    /// `flip(k) flip(k)^T`, as the same row pass and column pass with `k` reversed (the two
    /// passes act on different axes, so their order does not matter to the result's value).
    pub fn blur_transpose<T: Scalar>(&self, d_out: ArrayView4<T>) -> Array4<T> {
        let flipped: Array1<f32> = self.kernel_1d.iter().rev().copied().collect();
        blur_separable(d_out, flipped.view())
    }

    /// The 1-D kernel `k (S)`.
    pub fn kernel_1d(&self) -> ndarray::ArrayView1<'_, f32> {
        self.kernel_1d.view()
    }

    /// Whether the filter is random (noise injection).
    pub fn is_random(&self) -> bool {
        self.noise > 0.0
    }
}

/// Every plane of `x` through a row pass then a column pass of `k` (widened to `T`).
fn blur_separable<T: Scalar>(x: ArrayView4<T>, k: ndarray::ArrayView1<f32>) -> Array4<T> {
    let k: Array1<T> = k.mapv(|v| T::of(v.into()));
    let mut out = Array4::zeros(x.raw_dim());
    Zip::from(out.outer_iter_mut())
        .and(x.outer_iter())
        .par_for_each(|mut o, xi| {
            for (mut oc, xc) in o.outer_iter_mut().zip(xi.outer_iter()) {
                let rows = pass(xc, k.view(), Axis(1));
                oc.assign(&pass(rows.view(), k.view(), Axis(0)));
            }
        });
    out
}

/// One 1-D same-size pass of `k` along `axis` of a plane, zero padding.
fn pass<T: Scalar>(x: ArrayView2<T>, k: ndarray::ArrayView1<T>, axis: Axis) -> Array2<T> {
    let (h, w) = x.dim();
    let r = (k.len() / 2) as isize;
    let mut y = Array2::zeros((h, w));
    for i in 0..h as isize {
        for j in 0..w as isize {
            let mut acc = T::zero();
            for (a, &kv) in k.iter().enumerate() {
                let (ii, jj) = if axis == Axis(1) {
                    (i, j + a as isize - r)
                } else {
                    (i + a as isize - r, j)
                };
                if ii >= 0 && jj >= 0 && (ii as usize) < h && (jj as usize) < w {
                    acc += kv * x[[ii as usize, jj as usize]];
                }
            }
            y[[i as usize, j as usize]] = acc;
        }
    }
    y
}

/// The direct 2-D same-size correlation of every plane with `kernel`, zero padding: the naive
/// twin of [`LowPassFilter::blur`].
pub fn blur_naive(x: ArrayView4<f32>, kernel: ArrayView2<f32>) -> Array4<f32> {
    let (n, c, h, w) = x.dim();
    let s = kernel.nrows();
    let r = (s / 2) as isize;
    let mut y = Array4::zeros((n, c, h, w));
    for img in 0..n {
        for ch in 0..c {
            for i in 0..h as isize {
                for j in 0..w as isize {
                    let mut acc = 0.0f64;
                    for a in 0..s as isize {
                        for b in 0..s as isize {
                            let (ii, jj) = (i + a - r, j + b - r);
                            if ii >= 0 && jj >= 0 && ii < h as isize && jj < w as isize {
                                acc += kernel[[a as usize, b as usize]] as f64
                                    * x[[img, ch, ii as usize, jj as usize]] as f64;
                            }
                        }
                    }
                    y[[img, ch, i as usize, j as usize]] = acc as f32;
                }
            }
        }
    }
    y
}

/// The normalised 1-D kernel: `exp(-u^2 / (2 var))` at `size` points over [-3, 3], sum 1.
/// The 2-D kernel `exp(-(u^2+v^2)/(2 var))`, normalised, is its outer product with itself.
pub fn kernel_1d(size: usize, variance: f64) -> Array1<f32> {
    let points: Vec<f64> = (0..size)
        .map(|i| -3.0 + 6.0 * i as f64 / (size - 1) as f64)
        .map(|u| (-u * u / (2.0 * variance)).exp())
        .collect();
    let sum: f64 = points.iter().sum();
    points.iter().map(|v| (v / sum) as f32).collect()
}

/// The normalised 2-D kernel `(size, size)`, computed directly (not as an outer product).
pub fn kernel_2d(size: usize, variance: f64) -> Array2<f32> {
    let u = |i: usize| -3.0 + 6.0 * i as f64 / (size - 1) as f64;
    let raw = Array2::from_shape_fn((size, size), |(a, b)| {
        (-(u(a) * u(a) + u(b) * u(b)) / (2.0 * variance)).exp()
    });
    let sum = raw.sum();
    raw.mapv(|v| (v / sum) as f32)
}

/// A 64-bit key of an image's pixels (FNV-1a over their bit patterns): images with equal pixels
/// get equal keys, so their injected noise is equal.
fn image_key(x: ndarray::ArrayView3<f32>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in x.iter() {
        for b in v.to_bits().to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{IMAGE_SIDE, PIXELS};
    use crate::testutil::random_array;
    use ndarray::{array, Ix4};

    #[test]
    fn kernels_sum_to_one_and_match_hand_computed_values() {
        for size in [3, 5, 7] {
            let k = kernel_2d(size, study_variance(size).unwrap());
            assert!((k.sum() - 1.0).abs() < 1e-6, "size {size}: sum {}", k.sum());
        }
        // Size 3, variance 7: points -3, 0, 3; 1-D weights exp(-9/14), 1, exp(-9/14).
        // e = exp(-9/14) = 0.525788...; 1-D sum 1 + 2e = 2.051576; corner = e^2 / (1+2e)^2
        // = 0.276453 / 4.208964 = 0.065682; centre = 1 / 4.208964 = 0.237588.
        let k3 = kernel_2d(3, 7.0);
        assert!((k3[[0, 0]] - 0.065_682).abs() < 1e-5, "{}", k3[[0, 0]]);
        assert!((k3[[1, 1]] - 0.237_588).abs() < 1e-5, "{}", k3[[1, 1]]);
        // Size 5, variance 1.3: points -3, -1.5, 0, 1.5, 3; 1-D weights
        // exp(-9/2.6) = 0.031381, exp(-2.25/2.6) = 0.420890, 1; sum 1 + 2 (0.031381 + 0.420890)
        // = 1.904542; centre = 1 / 1.904542^2 = 0.275689.
        let k5 = kernel_2d(5, 1.3);
        assert!((k5[[2, 2]] - 0.275_689).abs() < 1e-5, "{}", k5[[2, 2]]);
        // The 2-D kernel is the outer product of the 1-D one (separability).
        let k1 = kernel_1d(5, 1.3);
        for a in 0..5 {
            for b in 0..5 {
                assert!((k5[[a, b]] - k1[a] * k1[b]).abs() < 1e-7);
            }
        }
    }

    #[test]
    fn separable_blur_matches_the_naive_loop() {
        let x = random_array::<f32, Ix4>((3, 1, IMAGE_SIDE, IMAGE_SIDE), 1).mapv(|v| v.abs());
        for size in [3, 5, 7] {
            let f = LowPassFilter::study(size, 0.0, 1).unwrap();
            let fast = f.blur(x.view());
            let naive = blur_naive(x.view(), f.kernel().view());
            // Different summation orders in f32 (two passes vs one double sum): 1e-6 covers a
            // few ulps of values below 1.
            crate::testutil::assert_close(
                "blur",
                fast.view().into_dyn(),
                naive.view().into_dyn(),
                1e-6,
                1e-6,
            );
        }
    }

    #[test]
    fn hand_worked_corner_with_zero_padding() {
        // A single 1 at the corner (0,0) of a 28x28 image, size 3: y[0,0] = centre weight,
        // y[0,1] = y[1,0] = edge weight, y[1,1] = corner weight; the padding adds nothing.
        let mut x = Array4::<f32>::zeros((1, 1, IMAGE_SIDE, IMAGE_SIDE));
        x[[0, 0, 0, 0]] = 1.0;
        let f = LowPassFilter::study(3, 0.0, 1).unwrap();
        let y = f.blur(x.view());
        let k = f.kernel();
        assert!((y[[0, 0, 0, 0]] - k[[1, 1]]).abs() < 1e-7);
        assert!((y[[0, 0, 1, 1]] - k[[0, 0]]).abs() < 1e-7);
        assert!(y.sum() < 1.0, "mass leaves through the zero border");
        let _ = array![0];
    }

    #[test]
    fn backward_matches_finite_differences_with_noise_fixed() {
        // The filter is linear in x' and x' is piecewise linear in x: central differences in
        // f64 of the f32 map would drown in rounding, so the check is of <g, y> against the
        // vjp with a step of 1e-2 on pixels away from the clipping kinks (|x + noise - 0 or 1|
        // > 1e-2); on linear pieces a central difference is exact up to rounding (~1e-6 here).
        let f = LowPassFilter::study(5, 0.2, 3).unwrap();
        let x = random_array::<f32, Ix4>((2, 1, IMAGE_SIDE, IMAGE_SIDE), 4).mapv(|v| 0.5 + 0.4 * v);
        let g = random_array::<f32, Ix4>((2, 1, IMAGE_SIDE, IMAGE_SIDE), 5);
        let draw = 1;
        let analytic = f.vjp(x.view(), draw, g.view());
        let (noisy, _) = f.inject(x.view(), draw);
        let h = 1e-2f32;
        let mut checked = 0;
        for i in (0..2 * PIXELS).step_by(7) {
            let v = noisy.as_slice().unwrap()[i];
            if !(v > h && v < 1.0 - h) && v != 0.0 && v != 1.0 {
                continue;
            }
            if v == 0.0 || v == 1.0 {
                // Clipped: the gradient must be exactly zero.
                assert_eq!(analytic.as_slice().unwrap()[i], 0.0);
                continue;
            }
            // The noise is keyed by the image's pixels, so perturb x' directly (the noise fixed).
            let mut plus = noisy.clone();
            plus.as_slice_mut().unwrap()[i] += h;
            let mut minus = noisy.clone();
            minus.as_slice_mut().unwrap()[i] -= h;
            let num = ((&f.blur(plus.view()) * &g).sum() - (&f.blur(minus.view()) * &g).sum())
                / (2.0 * h);
            let a = analytic.as_slice().unwrap()[i];
            assert!(
                (a - num).abs() < 1e-3 * (1.0 + num.abs()),
                "pixel {i}: {a} vs {num}"
            );
            checked += 1;
        }
        assert!(checked > 100, "only {checked} pixels checked");
    }

    #[test]
    fn study_kernels_are_exactly_symmetric_so_the_flip_changes_no_bit() {
        // The points -3 + 6 i / (S - 1) are exact binary fractions mirrored about 0 for S = 3,
        // 5, 7, so k reversed is k bit for bit, and the backward (the blur with the flipped
        // kernel) is the blur itself, as before the flip was written out.
        let x =
            random_array::<f32, Ix4>((2, 1, IMAGE_SIDE, IMAGE_SIDE), 11).mapv(|v| 0.5 + 0.5 * v);
        let g = random_array::<f32, Ix4>((2, 1, IMAGE_SIDE, IMAGE_SIDE), 12);
        for size in [3, 5, 7] {
            let f = LowPassFilter::study(size, 0.2, 4).unwrap();
            let k: Vec<u32> = f.kernel_1d().iter().map(|v| v.to_bits()).collect();
            let mut reversed = k.clone();
            reversed.reverse();
            assert_eq!(k, reversed, "size {size}");
            let (_, mask) = f.inject(x.view(), 3);
            assert_eq!(
                f.vjp(x.view(), 3, g.view()),
                f.blur(g.view()) * mask.unwrap()
            );
        }
    }

    /// The transpose is the adjoint, `<blur(x), y> = <x, blur_transpose(y)>`, for an asymmetric
    /// kernel (in f64: both sides are the same sum in different orders, equal to ~1e-15); and
    /// the unflipped blur is not (by far more than rounding), so an unflipped backward is caught.
    #[test]
    fn blur_transpose_is_the_adjoint_for_an_asymmetric_kernel() {
        let f = LowPassFilter::custom(ndarray::arr1(&[0.6, 0.3, 0.1]), 0.0, 1).unwrap();
        assert_eq!(f.describe(), "lowpass:custom");
        let x = random_array::<f64, Ix4>((2, 1, IMAGE_SIDE, IMAGE_SIDE), 13);
        let y = random_array::<f64, Ix4>((2, 1, IMAGE_SIDE, IMAGE_SIDE), 14);
        let left = (&f.blur(x.view()) * &y).sum();
        let right = (&x * &f.blur_transpose(y.view())).sum();
        assert!(
            (left - right).abs() < 1e-12 * left.abs().max(1.0),
            "{left} vs {right}"
        );
        let unflipped = (&x * &f.blur(y.view())).sum();
        assert!(
            (left - unflipped).abs() > 1e-2 * left.abs(),
            "{left} vs {unflipped}"
        );
        // The naive 2-D loop with the 2-D kernel k k^T agrees with the separable passes.
        let x32 = x.mapv(|v| v as f32);
        crate::testutil::assert_close(
            "custom blur",
            f.blur(x32.view()).view().into_dyn(),
            blur_naive(x32.view(), f.kernel().view()).view().into_dyn(),
            1e-6,
            1e-6,
        );
        assert!(LowPassFilter::custom(ndarray::arr1(&[0.5, 0.5]), 0.0, 1).is_err());
    }

    /// In f64 the filter computes the f32 filter's function: the same noise draw, the same
    /// clipping mask, the blur within f32's rounding of it.
    #[test]
    fn the_f64_path_is_the_f32_filter_widened() {
        let f = LowPassFilter::study(5, 0.3, 8).unwrap();
        let x =
            random_array::<f32, Ix4>((2, 1, IMAGE_SIDE, IMAGE_SIDE), 15).mapv(|v| 0.5 + 0.5 * v);
        let z = f.noise_draw(x.view(), 2).unwrap();
        let (noisy32, mask32) = f.inject_with(x.view(), z.view());
        assert_eq!(noisy32, f.inject(x.view(), 2).0);
        let (noisy64, mask64) = f.inject_with(x.mapv(f64::from).view(), z.view());
        assert_eq!(mask64.mapv(|m| m as f32), mask32);
        let y64 = f.blur(noisy64.view());
        crate::testutil::assert_close(
            "f64 blur",
            y64.view().into_dyn(),
            f.apply(x.view(), 2).mapv(f64::from).view().into_dyn(),
            1e-6,
            1e-6,
        );
        assert!(LowPassFilter::study(5, 0.0, 8)
            .unwrap()
            .noise_draw(x.view(), 0)
            .is_none());
    }

    #[test]
    fn noise_is_keyed_by_content_and_draw() {
        let f = LowPassFilter::study(3, 0.3, 7).unwrap();
        let x = random_array::<f32, Ix4>((4, 1, IMAGE_SIDE, IMAGE_SIDE), 2).mapv(|v| v.abs());
        let all = f.apply(x.view(), 0);
        let part = f.apply(x.slice(ndarray::s![2..3, .., .., ..]), 0);
        assert_eq!(part, all.slice(ndarray::s![2..3, .., .., ..]));
        assert_ne!(f.apply(x.view(), 1), all, "another draw, other noise");
        assert_eq!(f.apply(x.view(), 0), all, "repeatable");
    }
}
