//! Perturbations of test images (the study's section 3.1) and their measure (section 3.2):
//! Gaussian noise, the fast gradient sign method, and, beyond the study, projected gradient
//! descent in the L-infinity ball. Attacks see a model only through `models::Classifier`.
//!
//! Every perturbed set is clipped to the valid image range [0, 1] (the study's images live in
//! (0, 1); a pixel outside is no image at all) and checked by [`validate`] before use.

pub mod distortion;
pub mod fgsm;
pub mod gaussian;
pub mod pgd;

use crate::models::Classifier;
use ndarray::{Array4, ArrayView4, Zip};

/// The one description of a perturbation, shared by the library, `sweep`, `show` and the
/// command line. Levels are eps (gradient sign, PGD) or sigma (Gaussian).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Noise {
    /// The fast gradient sign method (the study's Eq. 1): one gradient pass serves every level.
    Fgsm,
    /// Gaussian noise N(0, sigma^2): one standard-normal field per image, scaled at every level.
    Gaussian,
    /// Projected gradient descent in the L-infinity ball: `steps` gradient passes per level.
    Pgd { steps: usize, random_start: bool },
}

impl Noise {
    /// The name used on the command line and in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Noise::Fgsm => "fgsm",
            Noise::Gaussian => "gaussian",
            Noise::Pgd { .. } => "pgd",
        }
    }

    /// The name of a level: `eps` or `sigma`.
    pub fn level_symbol(&self) -> &'static str {
        match self {
            Noise::Gaussian => "sigma",
            _ => "eps",
        }
    }

    /// Whether `|x' - x| <= level` holds (gradient attacks); Gaussian noise is unbounded before
    /// clipping, so only its range is checked.
    pub fn bounded(&self) -> bool {
        !matches!(self, Noise::Gaussian)
    }
}

/// A perturbation of one set of images against one model, prepared once for every level: the
/// gradient-sign pattern or the Gaussian field does not depend on the level, so it is computed
/// here once; PGD recomputes its gradients at each level.
pub struct Perturbation<'a> {
    noise: Noise,
    model: &'a dyn Classifier,
    x: ArrayView4<'a, f32>,
    labels: &'a [u8],
    seed: u64,
    direction: Option<Array4<f32>>, // (N,1,28,28): sign(dL/dx) or Z, for single-step noises
}

impl<'a> Perturbation<'a> {
    /// `seed` drives the Gaussian field and PGD's random start.
    pub fn new(
        noise: Noise,
        model: &'a dyn Classifier,
        x: ArrayView4<'a, f32>,
        labels: &'a [u8],
        seed: u64,
    ) -> Self {
        let direction = match noise {
            Noise::Fgsm => Some(fgsm::gradient_sign(model, x, labels)),
            Noise::Gaussian => Some(gaussian::standard_normal_like(x, seed)),
            Noise::Pgd { .. } => None,
        };
        Perturbation {
            noise,
            model,
            x,
            labels,
            seed,
            direction,
        }
    }

    /// The perturbed set at `level`, clipped to [0, 1] and checked by [`validate`].
    pub fn at(&self, level: f32) -> Result<Array4<f32>, InvalidPerturbation> {
        let perturbed = match (self.noise, &self.direction) {
            (
                Noise::Pgd {
                    steps,
                    random_start,
                },
                _,
            ) => {
                let mut pc = pgd::PgdConfig::new(level, steps);
                pc.random_start = random_start.then_some(self.seed);
                pgd::pgd(self.model, self.x, self.labels, &pc)
            }
            (_, Some(d)) => fgsm::perturb(self.x, d.view(), level),
            (_, None) => unreachable!("single-step noises have a direction"),
        };
        validate(
            self.x,
            perturbed.view(),
            self.noise.bounded().then_some(level),
        )?;
        Ok(perturbed)
    }
}

/// Slack for `|x' - x| <= eps`: `x + eps` rounded to f32 may exceed `x` by eps plus half an ulp
/// of 1 (6e-8); 1e-6 covers that with room and is still far below any meaningful perturbation.
pub const EPS_SLACK: f32 = 1e-6;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InvalidPerturbation {
    #[error("perturbed image {image}: pixel {pixel} is {value}, not a number in [0, 1]")]
    OutOfRange {
        image: usize,
        pixel: usize,
        value: f32,
    },
    #[error("perturbed image {image}: pixel {pixel} moved by {moved}, more than eps = {eps}")]
    TooFar {
        image: usize,
        pixel: usize,
        moved: f32,
        eps: f32,
    },
    #[error("perturbed set has shape {found:?}, the clean set {expected:?}")]
    Shape {
        found: Vec<usize>,
        expected: Vec<usize>,
    },
}

/// Checks a perturbed set against its clean set: every pixel a number in [0, 1] and, when
/// `eps` is given, within `eps` (+ [`EPS_SLACK`]) of the clean pixel. A violation is an error.
pub fn validate(
    clean: ArrayView4<f32>,
    perturbed: ArrayView4<f32>,
    eps: Option<f32>,
) -> Result<(), InvalidPerturbation> {
    if clean.shape() != perturbed.shape() {
        return Err(InvalidPerturbation::Shape {
            found: perturbed.shape().to_vec(),
            expected: clean.shape().to_vec(),
        });
    }
    let per_image = clean.len() / clean.dim().0.max(1);
    let mut first: Option<InvalidPerturbation> = None;
    let mut index = 0usize;
    Zip::from(&clean).and(&perturbed).for_each(|&x, &p| {
        if first.is_none() {
            let (image, pixel) = (index / per_image, index % per_image);
            // `!(0 <= p <= 1)` also catches NaN.
            if !((0.0..=1.0).contains(&p)) {
                first = Some(InvalidPerturbation::OutOfRange {
                    image,
                    pixel,
                    value: p,
                });
            } else if let Some(eps) = eps {
                let moved = (p - x).abs();
                if moved > eps + EPS_SLACK {
                    first = Some(InvalidPerturbation::TooFar {
                        image,
                        pixel,
                        moved,
                        eps,
                    });
                }
            }
        }
        index += 1;
    });
    first.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array4;

    #[test]
    fn validate_catches_each_fault() {
        let clean = Array4::from_elem((2, 1, 2, 2), 0.5f32);
        let mut p = clean.clone();
        assert_eq!(validate(clean.view(), p.view(), Some(0.1)), Ok(()));
        p[[1, 0, 1, 0]] = 0.7;
        assert_eq!(
            validate(clean.view(), p.view(), Some(0.1)),
            Err(InvalidPerturbation::TooFar {
                image: 1,
                pixel: 2,
                moved: 0.19999999,
                eps: 0.1
            })
        );
        p[[0, 0, 0, 1]] = f32::NAN;
        assert!(matches!(
            validate(clean.view(), p.view(), None),
            Err(InvalidPerturbation::OutOfRange {
                image: 0,
                pixel: 1,
                ..
            })
        ));
        p[[0, 0, 0, 1]] = 1.5;
        assert!(matches!(
            validate(clean.view(), p.view(), None),
            Err(InvalidPerturbation::OutOfRange { .. })
        ));
    }
}
