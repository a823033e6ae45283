//! The warm-up of `advmnist explain`'s page: the fast gradient sign method on a linear model of
//! two pixels and two classes, small enough that every number fits on the screen and can be
//! checked by hand before the same steps are taken through LeNet.
//!
//! The model is the last layer of LeNet shrunk to two inputs: logits `z = W x + b` with `W`
//! `(2 classes, 2 pixels)`, softmax, and the cross-entropy with the true label `t`
//! (docs/math.md, sections 2, 3 and 8, in the same symbols). Then, step by step:
//!
//! ```text
//! z  = W x + b                      p = softmax(z)          L = -log p[t]
//! dz = p - onehot(t)                g = dL/dx = W^T dz      (the dense layer's backward)
//! x' = clip(x + eps sign(g), 0, 1)  delta = x' - x
//! first order: L(x') - L(x) ~ g . delta
//! margin m = z[t] - z[other], its gradient W^T (onehot(t) - onehot(other)), exact for a
//! linear model: m(x') - m(x) = grad m . delta to rounding
//! ```
//!
//! With two classes the loss gradient is the margin's gradient scaled: `dz = -p[other]
//! (onehot(t) - onehot(other))`, so `g = -p[other] grad m`. Its sign is the margin's, and its
//! size shrinks with `p[other]`: the whole story of a confident digit, in two pixels.
//!
//! Everything is computed here in f64, from the plain formulas (no layer of the crate), so that
//! the page's numbers are what a reader with a calculator gets.

/// A linear classifier of two pixels into two classes: `z = W x + b`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct LinearModel {
    pub weight: [[f64; 2]; 2], // (2 classes, 2 pixels): weight[k][i] multiplies pixel i for class k
    pub bias: [f64; 2],        // (2 classes)
}

/// The warm-up's model, image, label and eps: chosen so that the hand arithmetic is short
/// (weights are small whole numbers), that one pixel's step is clipped (pixel 2 at 0.9 is pushed
/// up by 0.2 and stops at 1), and that the prediction flips at eps 0.2 (the margin 0.4 falls
/// by exactly 1.2).
pub const WARM_UP_MODEL: LinearModel = LinearModel {
    weight: [[3.0, -2.0], [-1.0, 2.0]],
    bias: [0.0, 0.0],
};
/// The warm-up's image `x`: two pixels in [0, 1].
pub const WARM_UP_IMAGE: [f64; 2] = [1.0, 0.9];
/// The warm-up's true label.
pub const WARM_UP_LABEL: usize = 0;
/// The warm-up's eps.
pub const WARM_UP_EPS: f64 = 0.2;

/// Every number of the warm-up, in the order the page shows them.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LinearWarmUp {
    pub model: LinearModel,
    pub x: [f64; 2],
    pub label: usize,
    pub eps: f64,
    pub logits: [f64; 2],      // z = W x + b
    pub probs: [f64; 2],       // p = softmax(z)
    pub loss: f64,             // L = -log p[t]
    pub predicted: usize,      // argmax z (the first on a tie)
    pub d_logits: [f64; 2],    // dz = p - onehot(t)
    pub gradient: [f64; 2],    // g = W^T dz
    pub sign: [f64; 2],        // sign(g), sign(0) = 0
    pub stepped: [f64; 2],     // x + eps sign(g), before clipping
    pub adversarial: [f64; 2], // x' = clip(stepped, 0, 1)
    pub delta: [f64; 2],       // x' - x, the perturbation actually applied
    pub adversarial_logits: [f64; 2],
    pub adversarial_probs: [f64; 2],
    pub adversarial_loss: f64,
    pub adversarial_predicted: usize,
    pub loss_change: f64,          // L(x') - L(x)
    pub loss_first_order: f64,     // g . delta
    pub margin: f64,               // m = z[t] - z[other]
    pub adversarial_margin: f64,   // m(x')
    pub margin_gradient: [f64; 2], // W^T (onehot(t) - onehot(other))
    pub margin_change: f64,        // m(x') - m(x)
    pub margin_first_order: f64,   // grad m . delta
    /// The part of the unit square of images where the margin is >= 0 (classified `t`), as a
    /// polygon, for the page's picture.
    pub label_region: Vec<[f64; 2]>,
    /// The decision boundary `m = 0` inside the unit square: its two ends (none if it misses).
    pub boundary: Vec<[f64; 2]>,
}

/// `sign(v)` with `sign(0) = 0`, as `models::gradient::sign` for the attacks.
fn sign(v: f64) -> f64 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

fn dot(a: [f64; 2], b: [f64; 2]) -> f64 {
    a[0] * b[0] + a[1] * b[1]
}

impl LinearModel {
    /// `z = W x + b`.
    pub fn logits(&self, x: [f64; 2]) -> [f64; 2] {
        [
            dot(self.weight[0], x) + self.bias[0],
            dot(self.weight[1], x) + self.bias[1],
        ]
    }

    /// `W^T v`: the dense layer's backward (docs/math.md, section 3), `dX = dY W`.
    pub fn transpose_times(&self, v: [f64; 2]) -> [f64; 2] {
        [
            self.weight[0][0] * v[0] + self.weight[1][0] * v[1],
            self.weight[0][1] * v[0] + self.weight[1][1] * v[1],
        ]
    }
}

/// `softmax(z)`, shifted by the larger logit (docs/math.md, section 2, "Log-sum-exp
/// stabilisation"), and `-log p[t]` as `logsumexp(z) - z[t]`.
fn softmax_and_loss(z: [f64; 2], label: usize) -> ([f64; 2], f64) {
    let m = z[0].max(z[1]);
    let e = [(z[0] - m).exp(), (z[1] - m).exp()];
    let sum = e[0] + e[1];
    ([e[0] / sum, e[1] / sum], m + sum.ln() - z[label])
}

/// The first larger logit, as `lenet::argmax_rows`.
fn argmax(z: [f64; 2]) -> usize {
    usize::from(z[1] > z[0])
}

/// The unit square `[0, 1]^2` cut by the half-plane `a . x + c >= 0` (Sutherland and Hodgman's
/// polygon clipping, one edge): the polygon inside, and the points where the line `a . x + c = 0`
/// crosses the square's edges.
fn clip_unit_square(a: [f64; 2], c: f64) -> (Vec<[f64; 2]>, Vec<[f64; 2]>) {
    let corners = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]];
    let side = |p: [f64; 2]| dot(a, p) + c;
    let (mut inside, mut crossings) = (Vec::new(), Vec::new());
    for k in 0..4 {
        let (p, q) = (corners[k], corners[(k + 1) % 4]);
        let (sp, sq) = (side(p), side(q));
        if sp >= 0.0 {
            inside.push(p);
        }
        if (sp >= 0.0) != (sq >= 0.0) {
            let s = sp / (sp - sq);
            let r = [p[0] + s * (q[0] - p[0]), p[1] + s * (q[1] - p[1])];
            inside.push(r);
            crossings.push(r);
        }
    }
    (inside, crossings)
}

/// The warm-up computed from its inputs (the page uses [`WARM_UP_MODEL`], [`WARM_UP_IMAGE`],
/// [`WARM_UP_LABEL`], [`WARM_UP_EPS`]; see [`default_warm_up`]).
pub fn warm_up(model: &LinearModel, x: [f64; 2], label: usize, eps: f64) -> LinearWarmUp {
    assert!(label < 2, "two classes");
    let other = 1 - label;
    let logits = model.logits(x);
    let (probs, loss) = softmax_and_loss(logits, label);
    let mut d_logits = probs;
    d_logits[label] -= 1.0;
    let gradient = model.transpose_times(d_logits);
    let sign = [sign(gradient[0]), sign(gradient[1])];
    let stepped = [x[0] + eps * sign[0], x[1] + eps * sign[1]];
    // Clipping to the valid range [0, 1], as `attacks::fgsm::perturb`.
    let adversarial = [stepped[0].clamp(0.0, 1.0), stepped[1].clamp(0.0, 1.0)];
    let delta = [adversarial[0] - x[0], adversarial[1] - x[1]];
    let adversarial_logits = model.logits(adversarial);
    let (adversarial_probs, adversarial_loss) = softmax_and_loss(adversarial_logits, label);
    let mut towards_label = [0.0; 2];
    towards_label[label] = 1.0;
    towards_label[other] = -1.0;
    let margin_gradient = model.transpose_times(towards_label);
    let margin = logits[label] - logits[other];
    let adversarial_margin = adversarial_logits[label] - adversarial_logits[other];
    let (label_region, boundary) =
        clip_unit_square(margin_gradient, model.bias[label] - model.bias[other]);
    LinearWarmUp {
        model: *model,
        x,
        label,
        eps,
        logits,
        probs,
        loss,
        predicted: argmax(logits),
        d_logits,
        gradient,
        sign,
        stepped,
        adversarial,
        delta,
        adversarial_logits,
        adversarial_probs,
        adversarial_loss,
        adversarial_predicted: argmax(adversarial_logits),
        loss_change: adversarial_loss - loss,
        loss_first_order: dot(gradient, delta),
        margin,
        adversarial_margin,
        margin_gradient,
        margin_change: adversarial_margin - margin,
        margin_first_order: dot(margin_gradient, delta),
        label_region,
        boundary,
    }
}

/// The page's warm-up.
pub fn default_warm_up() -> LinearWarmUp {
    warm_up(&WARM_UP_MODEL, WARM_UP_IMAGE, WARM_UP_LABEL, WARM_UP_EPS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64, what: &str) {
        assert!((got - want).abs() < 1e-8, "{what}: got {got}, want {want}");
    }

    #[test]
    fn the_default_warm_up_worked_by_hand() {
        let w = default_warm_up();
        // z = (3*1.0 - 2*0.9, -1*1.0 + 2*0.9) = (1.2, 0.8).
        close(w.logits[0], 1.2, "z0");
        close(w.logits[1], 0.8, "z1");
        // p0 = 1 / (1 + e^-(1.2 - 0.8)) = 1 / (1 + 0.670320046) = 0.598687660.
        close(w.probs[0], 0.598_687_660, "p0");
        close(w.probs[1], 0.401_312_340, "p1");
        // L = -ln 0.598687660 = 0.513015252.
        close(w.loss, 0.513_015_252, "L");
        assert_eq!(w.predicted, 0);
        // dz = (p0 - 1, p1) = (-0.401312340, 0.401312340);
        // g = W^T dz = (3 dz0 - dz1, -2 dz0 + 2 dz1) = (-4, 4) * 0.401312340.
        close(w.d_logits[0], -0.401_312_340, "dz0");
        close(w.gradient[0], -1.605_249_360, "g0");
        close(w.gradient[1], 1.605_249_360, "g1");
        assert_eq!(w.sign, [-1.0, 1.0]);
        // x + 0.2 sign(g) = (0.8, 1.1): pixel 2 is clipped to 1, so delta = (-0.2, 0.1).
        close(w.stepped[1], 1.1, "stepped pixel 2");
        assert_eq!(w.adversarial[1], 1.0, "clipped");
        close(w.delta[0], -0.2, "delta0");
        close(w.delta[1], 0.1, "delta1");
        // z' = (3*0.8 - 2*1.0, -0.8 + 2*1.0) = (0.4, 1.2): the prediction flips to 1.
        close(w.adversarial_logits[0], 0.4, "z'0");
        close(w.adversarial_logits[1], 1.2, "z'1");
        assert_eq!(w.adversarial_predicted, 1);
        // L' = ln(1 + e^0.8) = 1.171100666; the loss rises by 0.658085414, while the first
        // order predicts g . delta = 1.605249360 * (0.2 + 0.1) = 0.481574808.
        close(w.adversarial_loss, 1.171_100_666, "L'");
        close(w.loss_change, 0.658_085_414, "L' - L");
        close(w.loss_first_order, 0.481_574_808, "g . delta");
        // The margin 1.2 - 0.8 = 0.4 becomes 0.4 - 1.2 = -0.8; its gradient is
        // W^T (1, -1) = (3 + 1, -2 - 2) = (4, -4), and (4, -4) . (-0.2, 0.1) = -1.2 exactly.
        close(w.margin, 0.4, "m");
        close(w.adversarial_margin, -0.8, "m'");
        assert_eq!(w.margin_gradient, [4.0, -4.0]);
        close(w.margin_change, -1.2, "m' - m");
        close(w.margin_first_order, -1.2, "grad m . delta");
        // m = 4 x1 - 4 x2 >= 0 below the diagonal: the boundary runs corner to corner.
        assert_eq!(w.boundary, vec![[1.0, 1.0], [0.0, 0.0]]);
        assert!(w.label_region.contains(&[1.0, 0.0]) && !w.label_region.contains(&[0.0, 1.0]));
    }

    #[test]
    fn the_loss_gradient_is_the_margins_scaled_by_minus_p_other() {
        // dz = p - onehot(t) = -p[other] (onehot(t) - onehot(other)) for two classes.
        for (x, label) in [([0.3, 0.6], 0), ([0.9, 0.1], 1), ([0.0, 1.0], 0)] {
            let w = warm_up(&WARM_UP_MODEL, x, label, 0.1);
            let p_other = w.probs[1 - label];
            for i in 0..2 {
                close(w.gradient[i], -p_other * w.margin_gradient[i], "g");
            }
            // The margin of a linear model is linear: its first order is its change.
            close(w.margin_first_order, w.margin_change, "margin");
        }
    }
}
