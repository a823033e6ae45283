//! The gradient-sign attack on one digit at every eps of the page's slider, with what a class
//! needs to see where the linear picture holds: the adversarial image, its probabilities, the
//! distortion, what happened to each pixel, and the first-order predictions `g . delta` of the
//! changes in the loss and in the logit margin beside their true changes.
//!
//! The images are the attack's own: `attacks::Perturbation` with `Noise::Fgsm`, the sign of the
//! clean image's input gradient taken once and stepped at each eps, as `sweep` makes them
//! (docs/math.md, section 8, "The fast gradient sign method"):
//! `x' = clip(x + eps sign(dL/dx), 0, 1)`, `sign(0) = 0`.
//!
//! **First order.** Near `x`, `f(x + delta) ~ f(x) + grad f . delta` (docs/math.md, section 8,
//! "Why the sign"), with `delta = x' - x` the perturbation actually applied, after clipping:
//! - the loss, `f = L = -log p[t]`, with `grad f = g = dL/dx`, the gradient FGSM follows;
//! - the margin, `f = m = z[t] - max_{k != t} z[k]`, with its own gradient (`margin`), taken at
//!   the clean image's runner-up. The true `m(x')` takes the maximum again at `x'`, so once the
//!   runner-up changes the first order overstates the margin (a maximum is never below any one
//!   of its terms).
//!
//! Each product is summed in f64, pixel after pixel in row-major order; `delta` is exact in f64
//! (the difference of two f32 pixels in [0, 1]).
//!
//! **Why the loss and the probabilities are taken in f64 here.** The model's logits are its f32
//! logits, but `-log p[t]` of a confident digit is a tiny number computed as
//! `logsumexp(z) - z[t]`: in f32 its absolute rounding error is about an ulp of `z[t]` (1e-6 at
//! `z[t] ~ 10`), as large as the loss itself at small eps. `softmax_xent::forward` in f64 on the
//! same f32 logits gives the change the class should compare.

use super::margin::{logit_margin, margin_gradient};
use crate::attacks::distortion::distortion_per_pixel;
use crate::attacks::{fgsm, InvalidPerturbation, Noise, Perturbation};
use crate::layers::softmax_xent;
use crate::models::lenet::argmax_rows;
use crate::models::Classifier;
use ndarray::{Array4, ArrayView4, Axis};

/// The slider's largest eps in hundredths: eps runs from 0 to 0.30 in steps of 0.01.
pub const SLIDER_MAX_HUNDREDTHS: usize = 30;

/// The slider's eps values: `k / 100` for `k = 0..=SLIDER_MAX_HUNDREDTHS`, each the f32
/// nearest to `k / 100` (a correctly rounded division of two exact f32s), so that `explain` and
/// a test calling `attacks::fgsm` at "0.07" use the same number.
pub fn slider_eps() -> Vec<f32> {
    (0..=SLIDER_MAX_HUNDREDTHS)
        .map(|k| k as f32 / 100.0)
        .collect()
}

/// What the step did to the pixels at one eps (the table of docs/walkthrough.md, section 7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PixelFates {
    /// Moved by the full step: `x + eps sign(g)` was inside [0, 1].
    pub full_step: usize,
    /// Moved, but by less than eps: the clip stopped them at 0 or 1 on the way.
    pub clipped_partway: usize,
    /// Not moved although `g != 0`: already at the bound they were pushed past (background at
    /// 0 with a negative gradient, ink at 1 with a positive one).
    pub clipped_away: usize,
    /// `g = 0` exactly, so `sign(g) = 0`: left alone at every eps.
    pub zero_gradient: usize,
}

/// The digit at one eps of the slider.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FgsmLevel {
    pub eps: f32,
    pub image: Vec<f32>,  // (28*28) x' = clip(x + eps sign(g), 0, 1), row-major
    pub delta: Vec<f32>,  // (28*28) x' - x (exact in f64, rounded to f32 for the picture)
    pub logits: Vec<f32>, // (10) the model's logits at x'
    pub probs: Vec<f64>,  // (10) softmax of those logits, in f64
    pub predicted: u8,    // argmax of the logits (the first on a tie)
    pub loss: f64,        // -log p[t], in f64
    pub margin: f64,      // z[t] - max_{k != t} z[k]
    pub runner_up: u8,    // the k of that maximum at x'
    pub distortion: f64,  // the study's distortion per pixel, mean |x' - x| (attacks::distortion)
    pub pixels: PixelFates,
    pub loss_change: f64,        // L(x') - L(x)
    pub loss_first_order: f64,   // g . delta
    pub margin_change: f64,      // m(x') - m(x)
    pub margin_first_order: f64, // (dm/dx) . delta
}

/// The attack panel's numbers: the input gradient's sign, the margin's gradient, and the digit
/// at every eps of [`slider_eps`].
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FgsmExplained {
    pub sign: Vec<i8>, // (28*28) sign(dL/dx), sign(0) = 0: the attack's direction
    pub zero_gradient_pixels: usize, // pixels with dL/dx = 0 exactly
    pub margin_runner_up: u8, // the runner-up j of the clean image
    pub margin_gradient: Vec<f32>, // (28*28) dm/dx = J^T (onehot(t) - onehot(j)) at x
    pub levels: Vec<FgsmLevel>, // one per eps of slider_eps(), in order
}

/// The inner product of an f32 gradient and an f64 perturbation, summed in f64 in order.
pub fn first_order(gradient: &[f32], delta: &[f64]) -> f64 {
    assert_eq!(gradient.len(), delta.len(), "one gradient entry per pixel");
    gradient
        .iter()
        .zip(delta)
        .fold(0.0, |sum, (&g, &d)| sum + f64::from(g) * d)
}

/// FGSM on one test image `x (1,1,28,28)` with its `label`, at every eps of [`slider_eps`].
/// `gradient (1,1,28,28)` is `dL/dx` at `x` (the trace's `backward.input`, the bits
/// `model.input_gradient` gives), used for the loss's first order.
pub fn explain_fgsm(
    model: &dyn Classifier,
    x: ArrayView4<f32>,
    label: u8,
    gradient: ArrayView4<f32>,
) -> Result<FgsmExplained, InvalidPerturbation> {
    assert_eq!(x.dim(), (1, 1, 28, 28), "one 28x28 image");
    assert_eq!(gradient.dim(), x.dim(), "the gradient of that image");
    let labels = [label];
    // The attack's direction, as `sweep` takes it: once, at the clean image.
    let direction = fgsm::gradient_sign(model, x, &labels);
    let attack = Perturbation::new(Noise::Fgsm, model, x, &labels, 0);
    let eps_levels = slider_eps();
    let mut images = Array4::<f32>::zeros((eps_levels.len(), 1, 28, 28));
    for (k, &eps) in eps_levels.iter().enumerate() {
        images
            .index_axis_mut(Axis(0), k)
            .assign(&attack.at(eps)?.index_axis(Axis(0), 0));
    }
    // All levels' logits in one batch; each image's logits depend on that image alone.
    let logits = model.logits(images.view());
    let wide = logits.mapv(f64::from);
    let level_labels = vec![label; eps_levels.len()];
    let (losses, xent) = softmax_xent::forward(wide.view(), &level_labels);
    let predicted = argmax_rows(logits.view());

    let clean_logits = logits.index_axis(Axis(0), 0);
    let (_, runner_up) = logit_margin(clean_logits, label);
    let margin_gradient = margin_gradient(model, x, label, runner_up);
    let g: Vec<f32> = gradient.iter().copied().collect();
    let gm: Vec<f32> = margin_gradient.iter().copied().collect();
    let clean: Vec<f32> = x.iter().copied().collect();
    let d: Vec<f32> = direction.iter().copied().collect();

    let (clean_loss, clean_margin) = (losses[0], logit_margin(clean_logits, label).0);
    let levels = eps_levels
        .iter()
        .enumerate()
        .map(|(k, &eps)| {
            let image = images.index_axis(Axis(0), k);
            let adversarial: Vec<f32> = image.iter().copied().collect();
            let delta: Vec<f64> = adversarial
                .iter()
                .zip(&clean)
                .map(|(&a, &c)| f64::from(a) - f64::from(c))
                .collect();
            let (margin, level_runner_up) = logit_margin(logits.index_axis(Axis(0), k), label);
            FgsmLevel {
                eps,
                pixels: pixel_fates(&clean, &d, &adversarial, eps),
                distortion: distortion_per_pixel(x, image.insert_axis(Axis(0))),
                delta: delta.iter().map(|&v| v as f32).collect(),
                image: adversarial,
                logits: logits.index_axis(Axis(0), k).to_vec(),
                probs: xent.probs.index_axis(Axis(0), k).to_vec(),
                predicted: predicted[k],
                loss: losses[k],
                margin,
                runner_up: level_runner_up,
                loss_change: losses[k] - clean_loss,
                loss_first_order: first_order(&g, &delta),
                margin_change: margin - clean_margin,
                margin_first_order: first_order(&gm, &delta),
            }
        })
        .collect();
    Ok(FgsmExplained {
        sign: d.iter().map(|&s| s as i8).collect(),
        zero_gradient_pixels: g.iter().filter(|&&v| v == 0.0).count(),
        margin_runner_up: runner_up,
        margin_gradient: gm,
        levels,
    })
}

/// Each pixel's fate at `eps`: the unclipped step `x + eps d` is the expression
/// `fgsm::perturb` clamps, so a pixel was clipped exactly when the clamp changed it.
fn pixel_fates(clean: &[f32], direction: &[f32], adversarial: &[f32], eps: f32) -> PixelFates {
    let mut fates = PixelFates::default();
    for ((&x, &d), &a) in clean.iter().zip(direction).zip(adversarial) {
        let stepped = x + eps * d;
        if d == 0.0 {
            fates.zero_gradient += 1;
        } else if stepped == a {
            fates.full_step += 1;
        } else if a == x {
            fates.clipped_away += 1;
        } else {
            fates.clipped_partway += 1;
        }
    }
    fates
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slider_levels_are_hundredths_up_to_three_tenths() {
        let eps = slider_eps();
        assert_eq!(eps.len(), 31);
        assert_eq!((eps[0], eps[10], eps[30]), (0.0, 0.1, 0.3));
        assert_eq!(eps[7], 0.07f32);
    }

    #[test]
    fn pixel_fates_hand_worked() {
        // Pixels [0, 0.5, 1, 0.95, 0.3], directions [-1, +1, +1, +1, 0], eps 0.1:
        // 0 - 0.1 clipped back to 0 (clipped away); 0.5 + 0.1 = 0.6 (full step);
        // 1 + 0.1 clipped back to 1 (clipped away); 0.95 + 0.1 stops at 1 (partway);
        // direction 0: zero gradient.
        let x = [0.0f32, 0.5, 1.0, 0.95, 0.3];
        let d = [-1.0f32, 1.0, 1.0, 1.0, 0.0];
        let a: Vec<f32> = x
            .iter()
            .zip(&d)
            .map(|(&x, &d)| (x + 0.1 * d).clamp(0.0, 1.0))
            .collect();
        assert_eq!(
            pixel_fates(&x, &d, &a, 0.1),
            PixelFates {
                full_step: 1,
                clipped_partway: 1,
                clipped_away: 2,
                zero_gradient: 1
            }
        );
    }

    #[test]
    fn first_order_sums_in_f64() {
        // 0.5 * 0.25 + (-2) * 0.125 + 3 * 0 = -0.125.
        assert_eq!(first_order(&[0.5, -2.0, 3.0], &[0.25, 0.125, 0.0]), -0.125);
    }
}
