//! Auditing a model, tensor by tensor: [`trace`] records every intermediate tensor of one
//! image's forward and backward pass (`advmnist trace`), and [`gradcheck`] checks a model's
//! hand-written gradients against central finite differences on real test images
//! (`advmnist gradcheck`). docs/walkthrough.md walks through a real trace from loss to pixel.

pub mod gradcheck;
pub mod trace;

use crate::attacks::fgsm;
use crate::rng::{stream, Purpose};
use ndarray::{Array4, ArrayView4};
use ndarray_rand::rand_distr::StandardNormal;
use ndarray_rand::RandomExt;

/// A perturbation of the traced image, computed as `sweep` and `show` compute it: in f32, with
/// the model's own f32 input gradient for FGSM, clipped to [0, 1].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Perturbation {
    /// `clip(x + eps sign(dL/dx), 0, 1)`, the true label (`attacks::fgsm`).
    Fgsm { eps: f32 },
    /// `clip(x + sigma Z, 0, 1)`, `Z` standard normal from the stream
    /// `(seed, GaussianNoise, image)` of test image number `image`: the draw `sweep` makes for
    /// that image when it perturbs the whole test set (`attacks::gaussian`).
    Gaussian { sigma: f32, seed: u64, image: u64 },
}

impl Perturbation {
    /// The perturbed image `(1,1,28,28)`.
    pub fn apply(
        &self,
        model: &crate::models::LeNet<f32>,
        x: ArrayView4<f32>,
        label: u8,
    ) -> Array4<f32> {
        match *self {
            Perturbation::Fgsm { eps } => fgsm::fgsm(model, x, &[label], eps),
            Perturbation::Gaussian { sigma, seed, image } => {
                let z = ndarray::Array3::<f32>::random_using(
                    (1, 28, 28),
                    StandardNormal,
                    &mut stream(seed, Purpose::GaussianNoise, image),
                )
                .insert_axis(ndarray::Axis(0));
                fgsm::perturb(x, z.view(), sigma)
            }
        }
    }

    /// `fgsm` or `gaussian`, for file metadata.
    pub fn name(&self) -> &'static str {
        match self {
            Perturbation::Fgsm { .. } => "fgsm",
            Perturbation::Gaussian { .. } => "gaussian",
        }
    }

    /// eps or sigma.
    pub fn level(&self) -> f32 {
        match *self {
            Perturbation::Fgsm { eps } => eps,
            Perturbation::Gaussian { sigma, .. } => sigma,
        }
    }
}
