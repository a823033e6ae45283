//! Which softmax cross-entropy gradient an attack follows (docs/committees.md, "Two gradients").
//!
//! - [`GradientRule::Exact`], advmnist's own (`layers::softmax_xent::backward`): the true class's
//!   entry `p_y - 1` is computed as `-sum_{k != y} p_k`, so it stays a small negative number for
//!   a confident image.
//! - [`GradientRule::CaffeF32`]: what Caffe's `SoftmaxWithLoss` computes in float32 (and
//!   PyTorch's float32 `F.cross_entropy` likewise): the probabilities, then `p_y -= 1`, which
//!   rounds to exactly 0 once `p_y` is 1.0 in f32. The true class's term then drops out of the
//!   input gradient and its direction turns: an unintended gradient masking that part of the
//!   study's numbers reflects (docs/math.md, section 11).
//!
//! [`WithGradient`] puts either rule on any [`Classifier`]: `Exact` delegates unchanged, so it
//! is bit-identical to the classifier alone; `CaffeF32` takes the classifier's logits, applies
//! Caffe's formula (`softmax_xent::caffe_softmax_f32`, `caffe_backward_f32`) and chains the
//! result through the classifier's own `logits_vjp`. [`compare_rules`] counts, over a set of
//! images, what the difference does.

use crate::layers::softmax_xent;
use crate::models::Classifier;
use ndarray::{Array1, Array2, Array4, ArrayView2, ArrayView4, Axis, Zip};

/// The softmax cross-entropy backward an input gradient uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub enum GradientRule {
    /// advmnist's: `p_y - 1 = -sum_{k != y} p_k`, never rounded to 0 while another class has
    /// a non-zero probability.
    #[default]
    #[serde(rename = "exact")]
    Exact,
    /// Caffe's `SoftmaxWithLoss` in float32: `p_y - 1` by f32 subtraction.
    #[serde(rename = "caffe-f32")]
    CaffeF32,
}

impl GradientRule {
    /// Every rule, in the order of [`GradientRule::parse`]'s message.
    pub const ALL: [GradientRule; 2] = [GradientRule::Exact, GradientRule::CaffeF32];

    /// The name used on the command line and in every output: `exact`, `caffe-f32`.
    pub fn name(self) -> &'static str {
        match self {
            GradientRule::Exact => "exact",
            GradientRule::CaffeF32 => "caffe-f32",
        }
    }

    /// Parses a name as [`GradientRule::name`] writes it.
    pub fn parse(text: &str) -> Result<GradientRule, String> {
        GradientRule::ALL
            .into_iter()
            .find(|r| r.name() == text.trim())
            .ok_or_else(|| format!("unknown gradient '{text}': expected exact or caffe-f32"))
    }

    /// Each image's loss `(N)` and `dL/dz (N, K)` from the logits `z (N, K)` under this rule,
    /// with scale 1 (each image's own loss, as attacks need).
    pub fn loss_and_logit_gradient(
        self,
        logits: ArrayView2<f32>,
        labels: &[u8],
    ) -> (Array1<f32>, Array2<f32>) {
        match self {
            GradientRule::Exact => {
                let (losses, cache) = softmax_xent::forward(logits, labels);
                (losses, softmax_xent::backward(&cache, labels, 1.0))
            }
            GradientRule::CaffeF32 => {
                let probs = softmax_xent::caffe_softmax_f32(logits);
                (
                    softmax_xent::caffe_losses_f32(probs.view(), labels),
                    softmax_xent::caffe_backward_f32(probs.view(), labels),
                )
            }
        }
    }
}

impl std::fmt::Display for GradientRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for GradientRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        GradientRule::parse(s)
    }
}

/// A classifier whose input gradient follows `rule`.
pub struct WithGradient<'a> {
    pub classifier: &'a dyn Classifier,
    pub rule: GradientRule,
}

impl Classifier for WithGradient<'_> {
    fn logits(&self, x: ArrayView4<f32>) -> Array2<f32> {
        self.classifier.logits(x)
    }

    fn input_gradient(&self, x: ArrayView4<f32>, labels: &[u8]) -> (Array1<f32>, Array4<f32>) {
        match self.rule {
            // Unchanged: the classifier's own backward pass, bit for bit.
            GradientRule::Exact => self.classifier.input_gradient(x, labels),
            GradientRule::CaffeF32 => {
                assert_eq!(labels.len(), x.dim().0, "one label per image");
                // The logits are (N, 10), small for any N; the classifier's logits_vjp bounds
                // the memory of the backward pass itself (LeNet runs it in chunks).
                let logits = self.classifier.logits(x);
                let (losses, d_logits) = self.rule.loss_and_logit_gradient(logits.view(), labels);
                (losses, self.classifier.logits_vjp(x, d_logits.view()))
            }
        }
    }

    fn logits_vjp(&self, x: ArrayView4<f32>, d_logits: ArrayView2<f32>) -> Array4<f32> {
        self.classifier.logits_vjp(x, d_logits)
    }

    fn predict(&self, x: ArrayView4<f32>) -> Vec<u8> {
        self.classifier.predict(x)
    }

    fn loss_gradient(
        &self,
        x: ArrayView4<f32>,
        loss: &dyn crate::models::LogitLoss,
    ) -> crate::models::LossGradient {
        self.classifier.loss_gradient(x, loss)
    }

    fn eot_draws(&self) -> u64 {
        self.classifier.eot_draws()
    }

    fn logits_of_draw(&self, x: ArrayView4<f32>, draw: u64) -> Array2<f32> {
        self.classifier.logits_of_draw(x, draw)
    }
}

/// `sign(g)` with `sign(0) = 0`: the direction the gradient-sign attacks take per pixel
/// (`attacks::fgsm`, `attacks::pgd`), written here so that [`compare_rules`] counts differing
/// signs by the same rule. A pixel whose gradient is exactly zero is left alone: that happens,
/// e.g., where max-pooling routed no gradient to a pixel, and pushing it either way would be
/// arbitrary. (`f32::signum` would give +1 for +0.0, so it is not used.)
pub fn sign(g: f32) -> f32 {
    if g > 0.0 {
        1.0
    } else if g < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// What the two rules do differently on a set of images ([`compare_rules`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RuleComparison {
    pub images: usize,
    /// Images whose true class's entry `dL/dz_y` is exactly 0 under `exact`.
    pub true_term_lost_exact: usize,
    /// Images whose true class's entry `dL/dz_y` is exactly 0 under `caffe-f32`.
    pub true_term_lost_caffe_f32: usize,
    /// Pixels whose gradient sign (with `sign(0) = 0`, as FGSM) differs between the rules.
    pub pixels_sign_differs: usize,
    pub pixels: usize,
    /// Images with at least one differing sign.
    pub images_sign_differs: usize,
    /// The largest fraction of one image's pixels whose signs differ.
    pub max_image_fraction_sign_differs: f64,
}

/// Compares the rules on `model` over images `x` with their labels: how many images lose the
/// true class's term under each, and how many gradient signs (what FGSM uses) differ. Both
/// gradients are [`WithGradient`]'s, on `model`'s logits: meant for a single network such as
/// LeNet (`advmnist gradients --model`). A committee applies the rule per member instead
/// (`Committee::gradient`), which this function does not look into.
pub fn compare_rules(model: &dyn Classifier, x: ArrayView4<f32>, labels: &[u8]) -> RuleComparison {
    let logits = model.logits(x);
    let lost = |rule: GradientRule| {
        let (_, dz) = rule.loss_and_logit_gradient(logits.view(), labels);
        dz.axis_iter(Axis(0))
            .zip(labels)
            .filter(|(row, &y)| row[y as usize] == 0.0)
            .count()
    };
    let exact = WithGradient {
        classifier: model,
        rule: GradientRule::Exact,
    }
    .input_gradient(x, labels)
    .1;
    let caffe = WithGradient {
        classifier: model,
        rule: GradientRule::CaffeF32,
    }
    .input_gradient(x, labels)
    .1;
    let per_image: Vec<usize> = exact
        .outer_iter()
        .zip(caffe.outer_iter())
        .map(|(a, b)| {
            let mut differ = 0;
            Zip::from(&a).and(&b).for_each(|&a, &b| {
                if sign(a) != sign(b) {
                    differ += 1;
                }
            });
            differ
        })
        .collect();
    let pixels_per_image = x.len() / x.dim().0.max(1);
    RuleComparison {
        images: labels.len(),
        true_term_lost_exact: lost(GradientRule::Exact),
        true_term_lost_caffe_f32: lost(GradientRule::CaffeF32),
        pixels_sign_differs: per_image.iter().sum(),
        pixels: x.len(),
        images_sign_differs: per_image.iter().filter(|&&d| d > 0).count(),
        max_image_fraction_sign_differs: per_image
            .iter()
            .map(|&d| d as f64 / pixels_per_image.max(1) as f64)
            .fold(0.0, f64::max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_of_zero_is_zero() {
        assert_eq!(
            [sign(2.0), sign(-1e-30), sign(0.0), sign(-0.0)],
            [1.0, -1.0, 0.0, 0.0]
        );
    }
}
