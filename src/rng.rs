//! Seeded random streams. Every random draw in advmnist comes from a ChaCha8 stream named by
//! `(seed, purpose, index)`, so a draw never depends on the thread count, on the order in which
//! other draws happen, or on how a batch is split; and the random state of a training run at
//! iteration `t` is just `(seed, t)`. Inputs made up for tests and benchmarks come from
//! [`random_array`].

use ndarray::{Array, Dimension, ShapeBuilder};
use ndarray_rand::rand_distr::Uniform;
use ndarray_rand::RandomExt;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// What a random stream is for; part of its derivation, so streams never overlap.
#[derive(Clone, Copy, Debug)]
#[repr(u64)]
pub enum Purpose {
    Init = 1,
    Shuffle = 2,
    Dropout = 3,
    /// Gaussian noise added to test images (`attacks::gaussian`).
    GaussianNoise = 4,
    /// The random start of an iterative attack (`attacks::pgd`).
    RandomStart = 5,
    /// Noise injected by a preprocessing defence (`defences::lowpass`), keyed by image content.
    InjectedNoise = 6,
    /// A subject's image set in the human study (`experiments::human_study`), index = subject id.
    HumanStudy = 7,
    /// The random starts of APGD (`attacks::apgd`), index = image and restart.
    ApgdStart = 8,
    /// Square's random search (`attacks::square`), index = image.
    SquareSearch = 9,
}

/// A ChaCha8 stream for `(seed, purpose, index)`: the three are mixed by SplitMix64's finaliser
/// into the 64-bit seed that `ChaCha8Rng::seed_from_u64` expands into a key.
pub fn stream(seed: u64, purpose: Purpose, index: u64) -> ChaCha8Rng {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    ChaCha8Rng::seed_from_u64(mix(mix(mix(seed) ^ purpose as u64) ^ index))
}

/// A tensor of the given shape, uniform in [-1, 1), drawn in f64 from the ChaCha8 stream of
/// `seed` alone (not one of [`stream`]'s: these are made-up inputs, not draws of a run) and
/// rounded to nearest in `T`: the inputs of the tests and of `advmnist bench`.
pub fn random_array<T: num_traits::FromPrimitive, D: Dimension>(
    shape: impl ShapeBuilder<Dim = D>,
    seed: u64,
) -> Array<T, D> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Array::<f64, D>::random_using(shape, Uniform::new(-1.0, 1.0).unwrap(), &mut rng)
        .mapv(|v| T::from_f64(v).expect("a float type holds any value in [-1, 1)"))
}
