//! Inverted dropout, as Caffe's `dropout_layer.cpp`: at training time each unit is kept with
//! probability `1 - p` and the kept ones are scaled by `1 / (1 - p)`; at test time the layer is
//! the identity. (The study's text describes the equivalent "classic" form, scaling by the keep
//! probability at test time instead; Caffe, which the study used, scales at training time.)
//!
//! Backward: `dx = dy * mask`, where `mask` holds `0` for dropped units and `1/(1-p)` for kept ones.
//!
//! Randomness: one seeded stream per image (axis 0), so an image's mask does not depend on how
//! the batch is split across threads.

use crate::kernels::scalar::Scalar;
use ndarray::{Array, ArrayView, ArrayViewMut1, Axis, Dimension, RemoveAxis, Zip};
use ndarray_rand::rand::Rng;
use ndarray_rand::rand_distr::Bernoulli;

/// What the forward pass keeps.
#[derive(Clone, Debug)]
pub struct DropoutCache<T, D: Dimension> {
    pub mask: Array<T, D>, // same shape as the input: 0 (dropped) or 1/(1-p) (kept)
}

/// Training-time forward with drop probability `p` in [0, 1). `rngs[n]` draws image `n`'s mask.
pub fn forward<T: Scalar, D: Dimension + RemoveAxis, R: Rng + Send>(
    x: ArrayView<T, D>,
    p: f64,
    rngs: &mut [R],
) -> (Array<T, D>, DropoutCache<T, D>) {
    assert!(
        (0.0..1.0).contains(&p),
        "dropout rate must be in [0, 1), got {p}"
    );
    assert_eq!(rngs.len(), x.len_of(Axis(0)), "one random stream per image");
    let keep = Bernoulli::new(1.0 - p).expect("1 - p is a probability");
    let scale = T::of(1.0 / (1.0 - p));
    let mut mask = Array::zeros(x.raw_dim());
    let mut y = Array::zeros(x.raw_dim());
    // Image by image in parallel: image n's mask comes from its own stream `rngs[n]`, drawn in
    // the same order on whichever thread takes the image.
    Zip::from(mask.axis_iter_mut(Axis(0)))
        .and(y.axis_iter_mut(Axis(0)))
        .and(x.axis_iter(Axis(0)))
        .and(ArrayViewMut1::from(rngs))
        .par_for_each(|mut m, mut y, x, rng| {
            // The units in logical (row-major) order, as `iter_mut` visits them.
            for m in m.iter_mut() {
                *m = if rng.sample(keep) { scale } else { T::zero() };
            }
            Zip::from(&mut y)
                .and(&x)
                .and(&m)
                .for_each(|y, &x, &m| *y = x * m);
        });
    (y, DropoutCache { mask })
}

pub fn backward<T: Scalar, D: Dimension>(
    d_out: ArrayView<T, D>,
    cache: &DropoutCache<T, D>,
) -> Array<T, D> {
    &d_out * &cache.mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::gradcheck::{assert_gradient_matches, numeric_gradient};
    use crate::testutil::random_array;
    use ndarray::Ix2;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn rngs(n: usize) -> Vec<ChaCha8Rng> {
        (0..n)
            .map(|i| ChaCha8Rng::seed_from_u64(i as u64))
            .collect()
    }

    #[test]
    fn gradient_matches_finite_differences_for_a_fixed_mask() {
        let x = random_array::<f64, Ix2>((3, 10), 80);
        let (y, cache) = forward(x.view(), 0.5, &mut rngs(3));
        let dy = random_array::<f64, Ix2>(y.dim(), 81);
        let dx = backward(dy.view(), &cache);
        let num = numeric_gradient(&x, &dy, |x| x * &cache.mask);
        assert_gradient_matches("dropout dx", &dx.into_dyn(), &num);
    }

    #[test]
    fn keeps_about_one_minus_p_and_preserves_the_mean() {
        // 200,000 units at p = 0.2: the kept fraction has standard deviation
        // sqrt(0.2*0.8/200000) ~ 0.0009, so 0.8 +- 0.005 is a > 5-sigma band.
        let x = Array::from_elem((100, 2000), 1.0f64);
        let (y, cache) = forward(x.view(), 0.2, &mut rngs(100));
        let kept = cache.mask.iter().filter(|&&m| m > 0.0).count() as f64 / 200_000.0;
        assert!((kept - 0.8).abs() < 0.005, "kept fraction {kept}");
        assert!(cache.mask.iter().all(|&m| m == 0.0 || m == 1.0 / 0.8));
        assert!(
            (y.mean().unwrap() - 1.0).abs() < 0.01,
            "inverted dropout keeps E[y] = x"
        );
    }

    /// The naive twin: the images one after another, image n's units drawn in order from
    /// `rngs[n]`. The parallel forward pass gives its bits on 1 and on 3 threads, and leaves
    /// each stream where the naive loop leaves it.
    #[test]
    fn masks_equal_a_serial_loop_over_the_images_on_any_thread_count() {
        let x = random_array::<f32, ndarray::Ix4>((9, 1, 5, 7), 82);
        let (p, scale) = (0.3, (1.0 / (1.0 - 0.3)) as f32);
        let mut naive_rngs = rngs(9);
        let keep = Bernoulli::new(1.0 - p).unwrap();
        let mut mask = Array::zeros(x.raw_dim());
        for (mut m, rng) in mask.axis_iter_mut(Axis(0)).zip(naive_rngs.iter_mut()) {
            for v in m.iter_mut() {
                *v = if rng.sample(keep) { scale } else { 0.0 };
            }
        }
        let want_y = &x * &mask;
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut streams = rngs(9);
            let (y, cache) = pool.install(|| forward(x.view(), p, &mut streams));
            assert_eq!(cache.mask, mask, "{threads} threads");
            assert_eq!(y, want_y, "{threads} threads");
            let after: Vec<u64> = streams.iter_mut().map(|r| r.random()).collect();
            let naive_after: Vec<u64> = naive_rngs.clone().iter_mut().map(|r| r.random()).collect();
            assert_eq!(
                after, naive_after,
                "each stream advanced as in the naive loop"
            );
        }
    }

    #[test]
    fn same_streams_give_same_masks_and_p_zero_keeps_everything() {
        let x = Array::from_elem((4, 50), 1.0f32);
        let (_, a) = forward(x.view(), 0.5, &mut rngs(4));
        let (_, b) = forward(x.view(), 0.5, &mut rngs(4));
        assert_eq!(a.mask, b.mask);
        let (y, _) = forward(x.view(), 0.0, &mut rngs(4));
        assert_eq!(y, x);
    }
}
