//! The `--compare-f32` panel: the input gradient under Caffe's float32 softmax cross-entropy
//! backward beside the exact one, and the pixels whose signs (what FGSM uses) differ
//! (docs/math.md, section 11, "Two gradients"; `models::gradient`).
//!
//! The two rules differ only in the true class's entry of `dL/dz`: the exact rule computes
//! `p[t] - 1` as `-sum_{k != t} p[k]`; Caffe subtracts 1 in f32, which gives exactly 0 once
//! `p[t]` rounds to 1.0. For such a confident digit the true class's term leaves the input
//! gradient and its direction turns; for a doubtful digit the two agree to rounding.

use crate::models::gradient::{compare_rules, sign, GradientRule, RuleComparison, WithGradient};
use crate::models::Classifier;
use ndarray::ArrayView4;

/// Both rules' gradients of one image and where their signs differ.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RuleContrast {
    pub d_logits_exact: Vec<f32>, // (10) dL/dz under the exact rule
    pub d_logits_caffe: Vec<f32>, // (10) dL/dz under Caffe's float32 rule
    pub exact: Vec<f32>,          // (28*28) dL/dx, exact rule (the attack panel's g)
    pub caffe: Vec<f32>,          // (28*28) dL/dx, Caffe's float32 rule
    pub sign_differs: Vec<u8>,    // (28*28) 1 where sign(exact) != sign(caffe), with sign(0) = 0
    /// `models::gradient::compare_rules` on this one image (its `pixels_sign_differs` counts
    /// the ones of `sign_differs`).
    pub comparison: RuleComparison,
}

/// The two rules on image `x (1,1,28,28)` with its `label`, each through
/// [`WithGradient`] on `model`, as `advmnist gradients` and `--gradient` use them.
pub fn contrast_rules(model: &dyn Classifier, x: ArrayView4<f32>, label: u8) -> RuleContrast {
    assert_eq!(x.dim().0, 1, "one image");
    let labels = [label];
    let logits = model.logits(x);
    let gradient = |rule: GradientRule| -> (Vec<f32>, Vec<f32>) {
        let (_, dz) = rule.loss_and_logit_gradient(logits.view(), &labels);
        let g = WithGradient {
            classifier: model,
            rule,
        }
        .input_gradient(x, &labels)
        .1;
        (dz.iter().copied().collect(), g.iter().copied().collect())
    };
    let (d_logits_exact, exact) = gradient(GradientRule::Exact);
    let (d_logits_caffe, caffe) = gradient(GradientRule::CaffeF32);
    let sign_differs = exact
        .iter()
        .zip(&caffe)
        .map(|(&a, &b)| u8::from(sign(a) != sign(b)))
        .collect();
    RuleContrast {
        d_logits_exact,
        d_logits_caffe,
        exact,
        caffe,
        sign_differs,
        comparison: compare_rules(model, x, &labels),
    }
}
