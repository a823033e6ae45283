//! Gaussian noise (the study's random perturbation): `X' = clip(X + N(0, sigma^2), 0, 1)`.
//!
//! Each image's noise comes from its own seeded stream (`rng::stream(seed, GaussianNoise, i)`),
//! so it does not depend on the thread count or on which other images are in the set. A sweep
//! draws one standard-normal field `Z` per image and scales it, `X' = clip(X + sigma Z)`: the
//! same `Z` at every sigma (common random numbers), so the error curve is smooth in sigma.

use crate::rng::{stream, Purpose};
use ndarray::{Array4, ArrayView4, Axis};
use ndarray_rand::rand_distr::StandardNormal;
use ndarray_rand::RandomExt;
use rayon::prelude::*;

/// A standard-normal field shaped like `x`, image `i` drawn from stream `(seed, i)`.
pub fn standard_normal_like(x: ArrayView4<f32>, seed: u64) -> Array4<f32> {
    standard_normal_from(x, seed, 0)
}

/// [`standard_normal_like`] for images at positions `first..` of a larger set: image `i` of
/// `x` drawn from stream `(seed, first + i)`, the draw it gets in the whole set.
pub fn standard_normal_from(x: ArrayView4<f32>, seed: u64, first: u64) -> Array4<f32> {
    let mut z = Array4::zeros(x.raw_dim());
    z.axis_iter_mut(Axis(0))
        .into_par_iter()
        .enumerate()
        .for_each(|(i, mut zi)| {
            let draw = ndarray::Array3::<f32>::random_using(
                zi.raw_dim(),
                StandardNormal,
                &mut stream(seed, Purpose::GaussianNoise, first + i as u64),
            );
            zi.assign(&draw);
        });
    z
}

/// `clip(X + sigma Z, 0, 1)` with a fresh `Z` from `seed`.
pub fn gaussian(x: ArrayView4<f32>, sigma: f32, seed: u64) -> Array4<f32> {
    crate::attacks::fgsm::perturb(x, standard_normal_like(x, seed).view(), sigma)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::IMAGE_SIDE;

    #[test]
    fn noise_is_standard_normal_and_seeded() {
        let x = Array4::from_elem((20, 1, IMAGE_SIDE, IMAGE_SIDE), 0.5f32);
        let z = standard_normal_like(x.view(), 3);
        assert_eq!(z, standard_normal_like(x.view(), 3));
        assert_ne!(z, standard_normal_like(x.view(), 4));
        // 15,680 draws: the mean's standard error is 0.008, the variance's about 0.011.
        let mean = z.mean().unwrap();
        let var = z.mapv(|v| (v - mean) * (v - mean)).mean().unwrap();
        assert!(
            mean.abs() < 0.04 && (var - 1.0).abs() < 0.06,
            "mean {mean}, var {var}"
        );
        // One image's noise does not depend on the set it is in.
        assert_eq!(
            standard_normal_like(x.slice(ndarray::s![..5, .., .., ..]), 3),
            z.slice(ndarray::s![..5, .., .., ..])
        );
    }

    #[test]
    fn clipped_into_the_image_range() {
        let x = Array4::from_elem((4, 1, IMAGE_SIDE, IMAGE_SIDE), 1.0f32);
        let p = gaussian(x.view(), 2.0, 1);
        assert!(p.iter().all(|&v| (0.0..=1.0).contains(&v)));
    }
}
