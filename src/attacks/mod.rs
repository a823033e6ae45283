//! Perturbations of test images (the study's section 3.1) and their measure (section 3.2):
//! Gaussian noise, the fast gradient sign method, and, beyond the study, projected gradient
//! descent in the L-infinity ball. Attacks see a model only through `models::Classifier`.
//!
//! # Example
//!
//! A quickly trained LeNet under the gradient-sign attack and under Gaussian noise, each
//! prepared once as a [`Perturbation`] and applied at two levels.
//!
//! ```
//! use advmnist::attacks::{distortion::distortion_per_pixel, Noise, Perturbation};
//! use advmnist::data::{default_data_dir, load_mnist};
//! use advmnist::models::lenet::error_pct;
//! use advmnist::models::{Classifier, DropoutRates};
//! use advmnist::train::{self, TrainConfig, TrainOptions, TrainState};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let data = load_mnist(&default_data_dir())?;
//! // A quickly trained LeNet (40 iterations of 32 images: about 80% right).
//! let config = TrainConfig {
//!     iterations: 40,
//!     batch: 32,
//!     ..TrainConfig::lenet(DropoutRates::NONE, 1)
//! };
//! let state = TrainState::new(config.seed);
//! let net = train::train(&config, &data, state, &TrainOptions::default(), |_| {})?.net;
//! let model: &dyn Classifier = &net; // an attack sees a model only as a `Classifier`
//!
//! let test = data.test.subset(0..100);
//! let x = test.images.view();
//! let clean = error_pct(&model.predict(x), &test.labels);
//! println!("clean: error {clean:.1}%");
//! let mut errors = Vec::new();
//! // A noise's text form is its name, as on the command line.
//! for noise in ["fgsm".parse::<Noise>()?, Noise::Gaussian] {
//!     // Prepared once: FGSM's sign(dL/dx) or the Gaussian field serves every level.
//!     let perturbation = Perturbation::new(noise, model, x, &test.labels, 0);
//!     for level in [0.1, 0.2] {
//!         let perturbed = perturbation.at(level)?; // clipped to [0, 1], checked by `validate`
//!         let error = error_pct(&model.predict(perturbed.view()), &test.labels);
//!         let distortion = distortion_per_pixel(x, perturbed.view());
//!         let symbol = noise.level_symbol();
//!         println!("{noise} {symbol} {level}: distortion {distortion:.4}, error {error:.1}%");
//!         errors.push(error);
//!     }
//! }
//! // At the same level the gradient's sign does far more harm than random noise.
//! assert!(errors[1] > clean && errors[1] > errors[3]);
//! # Ok(())
//! # }
//! ```
//!
//! # Valid images
//!
//! Every perturbed set is clipped to the valid image range [0, 1] (the study's images live in
//! (0, 1); a pixel outside is no image at all) and checked by [`validate`] before use.

pub mod apgd;
pub mod distortion;
pub mod fgsm;
pub mod gaussian;
pub mod pgd;
pub mod square;

use crate::models::Classifier;
use ndarray::{s, Array4, ArrayView4, Zip};

/// The one description of a perturbation, shared by the library, `sweep`, `show`, `trace`, the
/// human study, `reproduce`'s job specifications and the command line. Levels are eps
/// (gradient sign, PGD) or sigma (Gaussian).
///
/// Its text form is its name, `fgsm`, `gaussian`, `pgd`, `apgd-ce`, `apgd-t` or `square`
/// ([`Noise::name`]): `Display` writes it, `FromStr` reads it, and serde (de)serialises it as
/// that one string, the form job specifications and sweep files have always held. An attack's
/// settings are beside the name (PGD's `--steps` and `--random-start`, a job's `pgd_steps`;
/// APGD's `--restarts`, Square's `--queries`): read from its name alone, an attack has its
/// defaults ([`Noise::PGD_DEFAULT`], AutoAttack's standard settings for the others).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Noise {
    /// The fast gradient sign method (the study's Eq. 1): one gradient pass serves every level.
    Fgsm,
    /// Gaussian noise N(0, sigma^2): one standard-normal field per image, scaled at every level.
    Gaussian,
    /// Projected gradient descent in the L-infinity ball: `steps` gradient passes per level.
    Pgd { steps: usize, random_start: bool },
    /// APGD on the cross-entropy loss (`apgd`): `iterations` per run, `restarts` runs.
    ApgdCe { iterations: usize, restarts: usize },
    /// APGD on the targeted DLR loss (`apgd`), one run per target and restart.
    ApgdT {
        iterations: usize,
        restarts: usize,
        targets: usize,
    },
    /// The gradient-free Square attack (`square`): at most `queries` evaluations per image.
    Square { queries: usize },
}

impl Noise {
    /// PGD as its name alone reads: the command line's defaults, [`pgd::DEFAULT_STEPS`] steps
    /// from the clean image.
    pub const PGD_DEFAULT: Noise = Noise::Pgd {
        steps: pgd::DEFAULT_STEPS,
        random_start: false,
    };

    /// APGD-CE as AutoAttack's standard version runs it.
    pub const APGD_CE_DEFAULT: Noise = Noise::ApgdCe {
        iterations: apgd::DEFAULT_ITERATIONS,
        restarts: apgd::DEFAULT_RESTARTS,
    };

    /// APGD-T as AutoAttack's standard version runs it.
    pub const APGD_T_DEFAULT: Noise = Noise::ApgdT {
        iterations: apgd::DEFAULT_ITERATIONS,
        restarts: apgd::DEFAULT_RESTARTS,
        targets: apgd::DEFAULT_TARGETS,
    };

    /// Square as AutoAttack's standard version runs it.
    pub const SQUARE_DEFAULT: Noise = Noise::Square {
        queries: square::DEFAULT_QUERIES,
    };

    /// Every kind of noise, in the command line's order (each attack with its defaults).
    pub const ALL: [Noise; 6] = [
        Noise::Fgsm,
        Noise::Gaussian,
        Noise::PGD_DEFAULT,
        Noise::APGD_CE_DEFAULT,
        Noise::APGD_T_DEFAULT,
        Noise::SQUARE_DEFAULT,
    ];

    /// The name used on the command line, in reports and in job specifications.
    pub fn name(&self) -> &'static str {
        match self {
            Noise::Fgsm => "fgsm",
            Noise::Gaussian => "gaussian",
            Noise::Pgd { .. } => "pgd",
            Noise::ApgdCe { .. } => "apgd-ce",
            Noise::ApgdT { .. } => "apgd-t",
            Noise::Square { .. } => "square",
        }
    }

    /// One line on what the noise does, as the command line's list of possible values shows
    /// it.
    pub fn describe(&self) -> &'static str {
        match self {
            Noise::Fgsm => {
                "Fast gradient sign: eps * sign(dL/dx), one gradient pass for all levels"
            }
            Noise::Gaussian => "Gaussian noise N(0, sigma^2), the same draw scaled at every level",
            Noise::Pgd { .. } => {
                "Iterative gradient sign in the L-infinity ball (--steps per level)"
            }
            Noise::ApgdCe { .. } => {
                "Auto-PGD on cross-entropy (Croce and Hein 2020): 100 iterations, own step size"
            }
            Noise::ApgdT { .. } => {
                "Auto-PGD on the targeted DLR loss: one run for each of 9 target classes"
            }
            Noise::Square { .. } => {
                "Square: gradient-free random search on the logits (--queries per image)"
            }
        }
    }

    /// Whether the noise uses the model's gradient (every attack but Square and Gaussian
    /// noise).
    pub fn uses_gradient(&self) -> bool {
        !matches!(self, Noise::Gaussian | Noise::Square { .. })
    }

    /// Whether the noise is computed level by level (the iterative attacks), rather than one
    /// direction scaled to every level.
    pub fn iterative(&self) -> bool {
        !matches!(self, Noise::Fgsm | Noise::Gaussian)
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

impl std::fmt::Display for Noise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is none of [`Noise`]'s.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown noise '{0}': the noises are fgsm, gaussian, pgd, apgd-ce, apgd-t and square")]
pub struct UnknownNoise(pub String);

impl std::str::FromStr for Noise {
    type Err = UnknownNoise;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Noise::ALL
            .into_iter()
            .find(|n| n.name() == s)
            .ok_or_else(|| UnknownNoise(s.to_string()))
    }
}

impl serde::Serialize for Noise {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Noise {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// For `#[arg(value_enum)]`: the names with [`Noise::describe`] as each one's help, PGD parsed
/// with its defaults (the command line then applies `--steps` and `--random-start`).
impl clap::ValueEnum for Noise {
    fn value_variants<'a>() -> &'a [Self] {
        &Noise::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()).help(self.describe()))
    }
}

/// A perturbation of one set of images against one model, prepared once for every level: the
/// gradient-sign pattern or the Gaussian field does not depend on the level, so it is computed
/// here once; PGD recomputes its gradients at each level.
///
/// Image `i` of the set draws its random numbers (the Gaussian field, PGD's random start) from
/// its own streams `(seed, purpose, first + i)`, `first` 0 unless given
/// ([`Perturbation::starting_at`]): so an image perturbed alone, or with others, gets the very
/// noise it gets at its position in a larger set.
pub struct Perturbation<'a> {
    noise: Noise,
    model: &'a dyn Classifier,
    x: ArrayView4<'a, f32>,
    labels: &'a [u8],
    seed: u64,
    first: u64,
    direction: Option<Array4<f32>>, // (N,1,28,28): sign(dL/dx) or Z, for single-step noises
}

impl<'a> Perturbation<'a> {
    /// `seed` drives the Gaussian field and PGD's random start; image `i` of `x` draws the
    /// streams of position `i`.
    pub fn new(
        noise: Noise,
        model: &'a dyn Classifier,
        x: ArrayView4<'a, f32>,
        labels: &'a [u8],
        seed: u64,
    ) -> Self {
        Self::starting_at(noise, model, x, labels, seed, 0)
    }

    /// [`Perturbation::new`] for images that sit at positions `first..` of a larger set:
    /// image `i` of `x` draws the streams of position `first + i`. (`trace` perturbs test image
    /// `k` alone, `first = k`, exactly as a sweep over the whole test set perturbs it.)
    pub fn starting_at(
        noise: Noise,
        model: &'a dyn Classifier,
        x: ArrayView4<'a, f32>,
        labels: &'a [u8],
        seed: u64,
        first: u64,
    ) -> Self {
        let direction = match noise {
            Noise::Fgsm => Some(fgsm::gradient_sign(model, x, labels)),
            Noise::Gaussian => Some(gaussian::standard_normal_from(x, seed, first)),
            _ => None,
        };
        Perturbation {
            noise,
            model,
            x,
            labels,
            seed,
            first,
            direction,
        }
    }

    /// PGD's settings at `level`, with this perturbation's random start.
    fn pgd_config(&self, level: f32, steps: usize, random_start: bool) -> pgd::PgdConfig {
        let mut pc = pgd::PgdConfig::new(level, steps);
        pc.random_start = random_start.then_some(self.seed);
        pc.first_stream = self.first;
        pc
    }

    /// The perturbed set at `level`, clipped to [0, 1] and checked by [`validate`].
    pub fn at(&self, level: f32) -> Result<Array4<f32>, InvalidPerturbation> {
        let perturbed = self.unchecked_at(level);
        validate(
            self.x,
            perturbed.view(),
            self.noise.bounded().then_some(level),
        )?;
        Ok(perturbed)
    }

    /// The perturbed set at `level`, clipped to [0, 1] but not checked: for an audit, which
    /// records whatever the attack makes.
    pub fn unchecked_at(&self, level: f32) -> Array4<f32> {
        match (self.noise, &self.direction) {
            (
                Noise::Pgd {
                    steps,
                    random_start,
                },
                _,
            ) => pgd::pgd(
                self.model,
                self.x,
                self.labels,
                &self.pgd_config(level, steps, random_start),
            ),
            (Noise::ApgdCe { .. } | Noise::ApgdT { .. } | Noise::Square { .. }, _) => {
                self.search(self.x, self.labels, self.first, level)
                    .adversarial
            }
            (_, Some(d)) => fgsm::perturb(self.x, d.view(), level),
            (_, None) => unreachable!("single-step noises have a direction"),
        }
    }

    /// APGD or Square at `level` on images `x` that sit at positions `first..` of the set.
    fn search(&self, x: ArrayView4<f32>, labels: &[u8], first: u64, level: f32) -> Outcome {
        match self.noise {
            Noise::ApgdCe {
                iterations,
                restarts,
            } => apgd::apgd(
                self.model,
                x,
                labels,
                &apgd::ApgdConfig {
                    eps: level,
                    loss: apgd::ApgdLoss::CrossEntropy,
                    iterations,
                    restarts,
                    seed: self.seed,
                    first_stream: first,
                },
            ),
            Noise::ApgdT {
                iterations,
                restarts,
                targets,
            } => apgd::apgd(
                self.model,
                x,
                labels,
                &apgd::ApgdConfig {
                    eps: level,
                    loss: apgd::ApgdLoss::TargetedDlr { targets },
                    iterations,
                    restarts,
                    seed: self.seed,
                    first_stream: first,
                },
            ),
            Noise::Square { queries } => square::square(
                self.model,
                x,
                labels,
                &square::SquareConfig {
                    eps: level,
                    queries,
                    seed: self.seed,
                    first_stream: first,
                },
            ),
            other => unreachable!("{other} is not a search"),
        }
    }

    /// The perturbed set with each image at its own level (`levels[i]` for image `i`, e.g. one
    /// level per trial of the human study), clipped to [0, 1] and each image checked by
    /// [`validate`] against its own level. Image `i` is bit for bit what [`Perturbation::at`]
    /// makes of it at `levels[i]`: the direction is the same, only the step differs.
    pub fn at_levels(&self, levels: &[f32]) -> Result<Array4<f32>, InvalidPerturbation> {
        assert_eq!(
            levels.len(),
            self.x.dim().0,
            "one level per image of the perturbed set"
        );
        let perturbed = match (self.noise, &self.direction) {
            (
                Noise::Pgd {
                    steps,
                    random_start,
                },
                _,
            ) => {
                let configs: Vec<pgd::PgdConfig> = levels
                    .iter()
                    .map(|&level| self.pgd_config(level, steps, random_start))
                    .collect();
                pgd::pgd_per_image(self.model, self.x, self.labels, &configs)
            }
            (Noise::ApgdCe { .. } | Noise::ApgdT { .. } | Noise::Square { .. }, _) => {
                // Each image's search depends on that image alone (its own streams, by
                // position): run the images of each level together.
                let mut out = self.x.to_owned();
                let mut distinct: Vec<f32> = levels.to_vec();
                distinct.sort_by(f32::total_cmp);
                distinct.dedup();
                for level in distinct {
                    for (i, &l) in levels.iter().enumerate() {
                        if l == level {
                            let one = s![i..i + 1, .., .., ..];
                            let found = self.search(
                                self.x.slice(one),
                                &self.labels[i..i + 1],
                                self.first + i as u64,
                                level,
                            );
                            out.slice_mut(one).assign(&found.adversarial);
                        }
                    }
                }
                out
            }
            (_, Some(d)) => {
                let mut out = Array4::zeros(self.x.raw_dim());
                for (i, &level) in levels.iter().enumerate() {
                    let one = s![i..i + 1, .., .., ..];
                    out.slice_mut(one).assign(&fgsm::perturb(
                        self.x.slice(one),
                        d.slice(one),
                        level,
                    ));
                }
                out
            }
            (_, None) => unreachable!("single-step noises have a direction"),
        };
        let bounded = self.noise.bounded();
        check(self.x, perturbed.view(), |image| {
            bounded.then_some(levels[image])
        })?;
        Ok(perturbed)
    }
}

/// What an attack that searches for a misclassified point (APGD, Square) returns for a set of
/// images.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// `(N,1,28,28)`: the misclassified point found for a fooled image (its clean self when the
    /// model misclassifies it unperturbed), the clean image for the others.
    pub adversarial: Array4<f32>,
    /// Whether the model misclassifies `adversarial[i]`, clean errors included.
    pub fooled: Vec<bool>,
}

impl Outcome {
    /// Nothing attacked yet: every image at its clean self, fooled where `clean_logits`
    /// already misclassifies it.
    pub fn clean(x: ArrayView4<f32>, labels: &[u8], clean_logits: &ndarray::Array2<f32>) -> Self {
        let predicted = crate::models::lenet::argmax_rows(clean_logits.view());
        Outcome {
            adversarial: x.to_owned(),
            fooled: predicted.iter().zip(labels).map(|(p, y)| p != y).collect(),
        }
    }
}

/// The items at positions `active` (increasing) of `all`, mutably: the images an attack still
/// works on.
fn select_mut<'t, T>(all: &'t mut [T], active: &[usize]) -> Vec<&'t mut T> {
    let mut wanted = active.iter().peekable();
    all.iter_mut()
        .enumerate()
        .filter_map(|(j, t)| {
            (wanted.peek() == Some(&&j)).then(|| {
                wanted.next();
                t
            })
        })
        .collect()
}

/// Images `(1,28,28)` stacked into a batch `(n,1,28,28)`.
fn stack<'a>(images: impl Iterator<Item = &'a ndarray::Array3<f32>>) -> Array4<f32> {
    let views: Vec<_> = images
        .map(|a| a.view().insert_axis(ndarray::Axis(0)))
        .collect();
    if views.is_empty() {
        return Array4::zeros((0, 1, crate::data::IMAGE_SIDE, crate::data::IMAGE_SIDE));
    }
    ndarray::concatenate(ndarray::Axis(0), &views).expect("images of one shape")
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
    check(clean, perturbed, |_| eps)
}

/// [`validate`] with each image's own bound: `eps_of(image)`. The first violation, in pixel
/// order, is the error.
fn check(
    clean: ArrayView4<f32>,
    perturbed: ArrayView4<f32>,
    eps_of: impl Fn(usize) -> Option<f32>,
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
            } else if let Some(eps) = eps_of(image) {
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
    use crate::data::IMAGE_SIDE;
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

    #[test]
    fn noise_names_round_trip_through_text_serde_and_clap() {
        use clap::ValueEnum;
        for name in ["fgsm", "gaussian", "pgd", "apgd-ce", "apgd-t", "square"] {
            let noise: Noise = name.parse().unwrap();
            assert_eq!(noise.to_string(), name);
            assert_eq!(
                serde_json::to_string(&noise).unwrap(),
                format!("\"{name}\"")
            );
            let back: Noise = serde_json::from_str(&format!("\"{name}\"")).unwrap();
            assert_eq!(back, noise);
            assert_eq!(<Noise as ValueEnum>::from_str(name, false).unwrap(), noise);
        }
        for noise in Noise::ALL {
            assert_eq!(noise.to_string().parse::<Noise>(), Ok(noise));
        }
        // PGD read from its name has the command line's defaults; its settings are not text.
        assert_eq!(
            "pgd".parse::<Noise>(),
            Ok(Noise::Pgd {
                steps: 10,
                random_start: false
            })
        );
        let with_settings = Noise::Pgd {
            steps: 3,
            random_start: true,
        };
        assert_eq!(with_settings.to_string(), "pgd");
        assert_eq!(serde_json::to_string(&with_settings).unwrap(), "\"pgd\"");
        assert_eq!(
            "FGSM".parse::<Noise>(),
            Err(UnknownNoise("FGSM".to_string()))
        );
        assert!(serde_json::from_str::<Noise>("\"pgd10\"").is_err());
        // The command line's list: names in this order, each with its one-line help.
        let listed: Vec<(String, String)> = Noise::value_variants()
            .iter()
            .map(|n| {
                let v = n.to_possible_value().unwrap();
                (v.get_name().to_string(), v.get_help().unwrap().to_string())
            })
            .collect();
        assert_eq!(
            listed,
            [
                (
                    "fgsm",
                    "Fast gradient sign: eps * sign(dL/dx), one gradient pass for all levels"
                ),
                (
                    "gaussian",
                    "Gaussian noise N(0, sigma^2), the same draw scaled at every level"
                ),
                (
                    "pgd",
                    "Iterative gradient sign in the L-infinity ball (--steps per level)"
                ),
                (
                    "apgd-ce",
                    "Auto-PGD on cross-entropy (Croce and Hein 2020): 100 iterations, own step size"
                ),
                (
                    "apgd-t",
                    "Auto-PGD on the targeted DLR loss: one run for each of 9 target classes"
                ),
                (
                    "square",
                    "Square: gradient-free random search on the logits (--queries per image)"
                ),
            ]
            .map(|(n, h)| (n.to_string(), h.to_string()))
        );
    }

    /// `#[arg(long, value_enum)]` on a `Noise` lists the names with their help as the
    /// command line always has (the text of `advmnist sweep --help`).
    #[test]
    fn the_command_line_help_lists_the_noises() {
        use clap::{CommandFactory, Parser};
        #[derive(Debug, Parser)]
        struct Args {
            /// The perturbation.
            #[arg(long, value_enum)]
            noise: Noise,
        }
        let long = Args::command().render_long_help().to_string();
        assert!(
            long.contains(
                "      --noise <NOISE>
          The perturbation

          Possible values:
          - fgsm:     Fast gradient sign: eps * sign(dL/dx), one gradient pass for all levels
          - gaussian: Gaussian noise N(0, sigma^2), the same draw scaled at every level
          - pgd:      Iterative gradient sign in the L-infinity ball (--steps per level)
          - apgd-ce:  Auto-PGD on cross-entropy (Croce and Hein 2020): 100 iterations, own step size
          - apgd-t:   Auto-PGD on the targeted DLR loss: one run for each of 9 target classes
          - square:   Square: gradient-free random search on the logits (--queries per image)
"
            ),
            "{long}"
        );
        let short = Args::command().render_help().to_string();
        assert!(
            short.contains(
                "The perturbation [possible values: fgsm, gaussian, pgd, apgd-ce, apgd-t, square]"
            ),
            "{short}"
        );
        let parsed = Args::try_parse_from(["x", "--noise", "pgd"]).unwrap();
        assert_eq!(parsed.noise, Noise::PGD_DEFAULT);
        let err = Args::try_parse_from(["x", "--noise", "fgm"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("invalid value 'fgm' for '--noise <NOISE>'"),
            "{err}"
        );
    }

    /// A small untrained LeNet and six random images in [0, 1] with labels.
    fn setting() -> (crate::models::LeNet<f32>, Array4<f32>, Vec<u8>) {
        let net = crate::models::LeNet::<f32>::xavier(&mut crate::rng::stream(
            2,
            crate::rng::Purpose::Init,
            0,
        ));
        let x =
            crate::testutil::random_array::<f32, ndarray::Ix4>((6, 1, IMAGE_SIDE, IMAGE_SIDE), 7)
                .mapv(|v| v.abs().min(1.0));
        (net, x, vec![0, 1, 2, 3, 4, 5])
    }

    fn image(a: &Array4<f32>, i: usize) -> Array4<f32> {
        a.slice(s![i..i + 1, .., .., ..]).to_owned()
    }

    /// Each image at its own level is, bit for bit, that image of the set perturbed at that
    /// level: for every noise, PGD with its random start too.
    #[test]
    fn a_level_per_image_is_each_image_at_its_level() {
        let (net, x, labels) = setting();
        let levels = [0.0f32, 0.07, 0.21, 0.4, 0.07, 0.54];
        for noise in [
            Noise::Fgsm,
            Noise::Gaussian,
            Noise::Pgd {
                steps: 2,
                random_start: true,
            },
        ] {
            let p = Perturbation::new(noise, &net, x.view(), &labels, 3);
            let each = p.at_levels(&levels).unwrap();
            for (i, &level) in levels.iter().enumerate() {
                assert_eq!(
                    image(&each, i),
                    image(&p.at(level).unwrap(), i),
                    "{noise} image {i}"
                );
            }
        }
    }

    /// An image perturbed alone at its position in a set gets the noise it gets in the set:
    /// the Gaussian field and PGD's random start are drawn by position.
    #[test]
    fn an_image_alone_draws_the_streams_of_its_position() {
        let (net, x, labels) = setting();
        for noise in [
            Noise::Fgsm,
            Noise::Gaussian,
            Noise::Pgd {
                steps: 1,
                random_start: true,
            },
        ] {
            let whole = Perturbation::new(noise, &net, x.view(), &labels, 9)
                .at(0.2)
                .unwrap();
            let alone = x.slice(s![4..5, .., .., ..]);
            let one = Perturbation::starting_at(noise, &net, alone, &labels[4..5], 9, 4);
            assert_eq!(one.at(0.2).unwrap(), image(&whole, 4), "{noise}");
            assert_eq!(one.unchecked_at(0.2), image(&whole, 4), "{noise}");
        }
    }

    #[test]
    fn each_image_is_checked_against_its_own_level() {
        let (net, x, labels) = setting();
        let p = Perturbation::new(Noise::Fgsm, &net, x.view(), &labels, 1);
        let levels = [0.1f32; 6];
        let made = p.at_levels(&levels).unwrap();
        // Image 2 moved by up to 0.1 exceeds a bound of 0.05 given to image 2 alone.
        let tight = |image: usize| Some(if image == 2 { 0.05 } else { 0.1 });
        assert!(matches!(
            check(x.view(), made.view(), tight),
            Err(InvalidPerturbation::TooFar { image: 2, .. })
        ));
    }
}

/// A linear classifier `z = W x + b` on 28 x 28 images, whose worst case in an L-infinity ball
/// is known exactly: the attacks' tests measure them against it.
#[cfg(test)]
pub(crate) mod linear {
    use crate::data::{CLASSES, PIXELS};
    use crate::models::Classifier;
    use ndarray::{Array1, Array2, Array4, ArrayView2, ArrayView4};

    pub struct Linear {
        pub w: Array2<f32>, // (10, 784)
        pub b: Array1<f32>, // (10)
    }

    impl Linear {
        /// Random weights of scale `scale` and zero biases.
        pub fn random(seed: u64, scale: f32) -> Self {
            Linear {
                w: crate::testutil::random_array::<f32, _>((CLASSES, PIXELS), seed) * scale,
                b: Array1::zeros(CLASSES),
            }
        }

        /// Whether image `x (1,28,28)` with label `y` is classified as `y` everywhere in the
        /// eps-ball intersected with [0, 1]: the margin against each class `j` is linear, so
        /// its minimum puts every pixel at the end of its interval that the sign of
        /// `w_y - w_j` picks. (Ties go to the lower index in the model's argmax, so a margin of
        /// exactly 0 is not robust against a lower `j`; random weights make that measure zero.)
        pub fn robust(&self, x: ndarray::ArrayView3<f32>, y: usize, eps: f32) -> bool {
            let flat: Vec<f64> = x.iter().map(|&v| v as f64).collect();
            (0..CLASSES).filter(|&j| j != y).all(|j| {
                let mut margin = (self.b[y] - self.b[j]) as f64;
                for (p, &v) in flat.iter().enumerate() {
                    let d = (self.w[[y, p]] - self.w[[j, p]]) as f64;
                    let lo = (v - eps as f64).max(0.0);
                    let hi = (v + eps as f64).min(1.0);
                    margin += d * if d > 0.0 { lo } else { hi };
                }
                margin > 0.0
            })
        }
    }

    /// A linear model and 200 images in [0, 1], labelled with its own predictions.
    pub fn linear_setting() -> (Linear, Array4<f32>, Vec<u8>) {
        let model = Linear::random(11, 0.05);
        let x = crate::testutil::random_array::<f32, ndarray::Ix4>(
            (200, 1, crate::data::IMAGE_SIDE, crate::data::IMAGE_SIDE),
            12,
        )
        .mapv(|v| v * 0.5 + 0.5);
        let labels = model.predict(x.view());
        (model, x, labels)
    }

    impl Classifier for Linear {
        fn logits(&self, x: ArrayView4<f32>) -> Array2<f32> {
            let n = x.dim().0;
            let flat = x.to_shape((n, PIXELS)).unwrap();
            flat.dot(&self.w.t()) + &self.b
        }

        fn input_gradient(&self, x: ArrayView4<f32>, labels: &[u8]) -> (Array1<f32>, Array4<f32>) {
            let logits = self.logits(x);
            let (loss, cache) = crate::layers::softmax_xent::forward(logits.view(), labels);
            let d = crate::layers::softmax_xent::backward(&cache, labels, 1.0);
            (loss, self.logits_vjp(x, d.view()))
        }

        fn logits_vjp(&self, x: ArrayView4<f32>, d_logits: ArrayView2<f32>) -> Array4<f32> {
            d_logits
                .dot(&self.w)
                .into_shape_with_order(x.raw_dim())
                .unwrap()
        }
    }
}
