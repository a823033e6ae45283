//! The evaluation a run makes every `eval_every` iterations and at its end, on the first
//! `eval_images` test images: the clean error, and the error under FGSM and under PGD (10
//! steps, random start) at L-infinity radii 0.1 and 0.25, each attack with the current weights'
//! own gradient. Together they show catastrophic overfitting (Wong, Rice and Kolter 2020,
//! section 5): a model trained on single-step examples can learn to mask its gradient, so that
//! FGSM's error falls while PGD's, which iterates, climbs back towards 100%.

use crate::attacks::{Noise, Perturbation};
use crate::models::lenet::{error_pct, LeNet};
use ndarray::ArrayView4;
use serde::{Deserialize, Serialize};

/// The radii of the evaluation: the study's Table 2 reaches 0.1; 0.25 is the training radius
/// of Goodfellow et al.'s MNIST experiments and of the default run.
pub const CURVE_EPS: [f32; 2] = [0.1, 0.25];
/// PGD's steps in the evaluation, of `2.5 eps / 10` each (`attacks::pgd::PgdConfig::new`),
/// from a random start.
pub const CURVE_PGD_STEPS: usize = 10;

/// One attack's error at one radius.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttackError {
    pub eps: f32,
    /// Error (%) on the perturbed images (images the model gets wrong clean count as errors).
    pub error_pct: f64,
}

/// One evaluation of the curve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Updates made before the evaluation.
    pub iteration: u64,
    /// Error (%) on the clean images.
    pub clean_error_pct: f64,
    /// FGSM with the model's own gradient, one entry per radius of [`CURVE_EPS`].
    pub fgsm: Vec<AttackError>,
    /// PGD, [`CURVE_PGD_STEPS`] steps from a random start, one entry per radius.
    pub pgd: Vec<AttackError>,
}

/// The evaluation of `net` on the images `x` (the first test images) after `iteration`
/// updates. PGD's random start of image `i` is drawn from stream `(seed, RandomStart, i)`, as
/// `advmnist sweep --noise pgd --random-start --seed S` draws it: the same start at every
/// evaluation of a run, and never one of the training's streams.
pub fn evaluate(
    net: &LeNet<f32>,
    x: ArrayView4<f32>,
    labels: &[u8],
    seed: u64,
    iteration: u64,
) -> CurvePoint {
    let error_under = |images: ArrayView4<f32>| error_pct(&net.predict(images), labels);
    let fgsm = Perturbation::new(Noise::Fgsm, net, x, labels, seed);
    let pgd = Perturbation::new(
        Noise::Pgd {
            steps: CURVE_PGD_STEPS,
            random_start: true,
        },
        net,
        x,
        labels,
        seed,
    );
    let under = |attack: &Perturbation<'_>| -> Vec<AttackError> {
        CURVE_EPS
            .iter()
            .map(|&eps| {
                let perturbed = attack
                    .at(eps)
                    .expect("FGSM and PGD keep every image in [0, 1] and within eps");
                AttackError {
                    eps,
                    error_pct: error_under(perturbed.view()),
                }
            })
            .collect()
    };
    CurvePoint {
        iteration,
        clean_error_pct: error_under(x),
        fgsm: under(&fgsm),
        pgd: under(&pgd),
    }
}

impl CurvePoint {
    /// The error of `attack` ("fgsm" or "pgd") at `eps`, if evaluated.
    pub fn error_at(&self, attack: &str, eps: f32) -> Option<f64> {
        let errors = match attack {
            "fgsm" => &self.fgsm,
            "pgd" => &self.pgd,
            _ => return None,
        };
        errors.iter().find(|e| e.eps == eps).map(|e| e.error_pct)
    }
}
