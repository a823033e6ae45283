//! Certified robustness by interval bound propagation (Gowal et al., "On the Effectiveness of
//! Interval Bound Propagation for Training Verifiably Robust Models", 2018, arXiv:1810.12715):
//! for a test image `x` with label `y` and a radius `eps`, a proof that **every** input `x'`
//! with `|x' - x|_inf <= eps` and `0 <= x' <= 1` is classified `y` by the float32 network that
//! runs (`LeNet::logits`, after any deterministic preprocessing [`Stage`]s), or no answer. An
//! attack that fails proves nothing; a certificate rules out every attack within `eps`.
//!
//! # The method
//!
//! 1. **The input box** ([`input_box`]): `[max(x - eps, 0), min(x + eps, 1)]`, each end rounded
//!    outwards where its f64 value is inexact, so it holds every f32 input of the ball.
//! 2. **Layer by layer** a box of a layer's inputs gives a box of its outputs
//!    ([`interval::Interval`], always f64). Affine layers (convolutions, dense layers, the
//!    low-pass filter's passes) in centre/radius form: for `x` in `[l, u]`,
//!    `W x + b` lies in `W c + b -+ |W| r` with `c = (l + u)/2`, `r = (u - l)/2` (Gowal et al.,
//!    section 3, eq. 6; [`affine`]). ReLU, max-pooling and the logistic are non-decreasing:
//!    applied to both ends ([`monotone`]).
//! 3. **The last layer elided** (Gowal et al., section 3): the margins `z_y - z_j` are affine in
//!    fc1's output, with rows `w_y - w_j` and biases `b_y - b_j`, and are bounded directly
//!    ([`affine::margin_bounds`]), which is tighter than `lower(z_y) - upper(z_j)`.
//! 4. **Certified** iff every margin's lower bound is `> 0`: then `fl(z_y) > fl(z_j)` for every
//!    `j != y`, so the argmax (the first maximum, `models::lenet::argmax_rows`) is `y` whatever
//!    the tie rule. At `eps = 0` this is "predicted right", unless a margin is smaller than
//!    the rounding slack below. That slack is small in each layer but is carried through every
//!    later layer's `|W|`, so at eps 0 the trained LeNet's logit boxes are about 0.2 wide (its
//!    logits reach 27); on the first 1,000 test images eps 0 certifies exactly the right
//!    predictions.
//!
//! # Why the bounds hold for the float32 network
//!
//! The claim, by induction over the layers: for every f32 input in the ball, the f32 tensor the
//! network computes at each layer lies in that layer's box. It holds at the input (step 1).
//!
//! - **Exact layers.** ReLU (`v > 0 ? v : 0`), max-pooling (a comparison selects an input) and
//!   the flatten compute their f32 results exactly; each is non-decreasing in every input, so
//!   the box of both ends holds the result.
//! - **Affine layers in f32.** Let `x^` be the layer's f32 input, inside `[l, u]`, and
//!   `y = sum_{i<n} w_i x^_i + b` the exact real value. Every f32 path of this crate computes
//!   `y^` as a sum of the `n` products and the bias in some order, each product rounded once
//!   or fused into an FMA, each partial sum rounded: conv1's direct kernel (taps in row-major
//!   order, bias last: `kernels::direct`), conv2's fused kernel or the GEMM path (chains of FMAs
//!   in blocks of 256 from the bias: `kernels::conv_fma`), the dense layers (bias first, then
//!   `matrixmultiply` with `alpha = beta = 1`, exact scalings), the blur's passes (from 0, tap
//!   by tap: `defences::lowpass`). For any such order each term passes through at most `n + 1`
//!   roundings, so (Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed., section
//!   3.1, eqs. 3.4-3.5, for `n + 1` terms; an FMA only removes roundings)
//!   `|y^ - y| <= gamma_{n+1} (sum_i |w_i| |x^_i| + |b|) <= gamma_{n+1} (|w|.a + |b|)`, with
//!   `gamma_k = k u / (1 - k u)`, `u = 2^-24` and `a = max(|l|, |u|)` elementwise. Gradual
//!   underflow adds at most `2^-150` per product (sums of subnormals are exact), covered by
//!   `(n + 1) 2^-149`. And `y` itself lies in the centre/radius box of real arithmetic. So
//!   `y^` lies in that box widened by `slack = gamma_{n+1}(f32) (|w|.a + |b|) + (n+1) 2^-149`.
//! - **The bound's own f64 arithmetic.** The box is computed in f64 as
//!   `M = W (l + u)`, `R = |W| (u - l)`, `A = |W| a`, then `(M -+ R)/2 + b -+ slack`. Counting
//!   the roundings: `l + u` and `u - l` one each (relative `u64 = 2^-53`, and `|l + u|`,
//!   `u - l <= 2a`), the two n-term sums `gamma_n(f64)` each (eq. 3.5 again), then the sum
//!   and halving of `M -+ R`, the bias and the slack one rounding each; all errors are
//!   multiples of `u64 (|w|.a + |b| + slack)`, together under `(2n + 7) u64 (|w|.a + |b|)`,
//!   which `gamma_{4n+16}(f64)` covers with room. The computed `A` may fall short of the true
//!   `|w|.a` by `gamma_{n+1}(f64)` relative, and forming the slack rounds a few times more:
//!   the factor `(1 + gamma_{n+8}(f64))` on the coefficient covers both
//!   ([`interval::Rounding`]).
//! - **Overflow.** The f32 bound assumes no overflow: where `|w|.a + |b|` exceeds 2^120 (every
//!   partial sum is below it, far from f32's 2^128) or is NaN, the box is the whole line
//!   ([`interval::MAGNITUDE_LIMIT`]), which certifies nothing.
//! - **The margins.** `fl(z_y) - fl(z_j) >= (w_y - w_j).h + (b_y - b_j) - slack_y - slack_j`,
//!   each logit being rounded on its own; `w_y - w_j` formed in f64 adds
//!   `u64 (|w_y| + |w_j|).a`, inside the two f64 allowances.
//! - **The logistic** (the autoencoder's units): the f32 kernel is within
//!   [`monotone::SIGMOID_KERNEL_ERROR`] of the real function (measured on a dense grid, with a
//!   margin of more than 10x: the one constant here that is measured, not proved), and the f64 logistic
//!   computing the bound within a relative [`monotone::SIGMOID_F64_RELATIVE_ERROR`].
//!
//! Assumed: IEEE 754 binary32 and binary64 with round to nearest and gradual underflow (Rust's
//! defaults: no flush-to-zero), and the network computing as the files named above do.
//!
//! A stage that injects noise makes the network random: a certificate for one draw of the noise
//! says nothing of the next, so such a pipeline has none ([`NoCertificate`]). Committees are
//! left to the caller.
//!
//! Dimension legend: `N` images, `C` channels, `H, W` height and width; LeNet's shapes in
//! `models::lenet`.

pub mod affine;
pub mod interval;
pub mod monotone;

use crate::data::{CLASSES, IMAGE_SIDE};
use crate::models::autoencoder::{Autoencoder, LAYER_NAMES};
use crate::models::lenet::LeNet;
use crate::models::pipeline::Stage;
use affine::{
    blur_bound, conv_bound, dense_bound, flatten, margin_bounds, unflatten, AffineMap, ConvMap,
};
use interval::{add_round_down, add_round_up, Interval};
use monotone::{maxpool_bound, relu_bound, sigmoid_bound};
use ndarray::{s, Array1, Array2, ArrayView4, Axis, Ix2, Ix4};

/// Why no certificate can be given.
#[derive(Debug, thiserror::Error)]
#[error("no certificate: {0}")]
pub struct NoCertificate(pub String);

/// Images bounded at a time, to bound memory: a chunk's boxes are widest at conv1's output,
/// two ends of (20, 24, 24) f64 values, 184 KB per image, beside its input's five arrays
/// (two ends, sum, difference, magnitude: 31 KB), so about 55 MB for 256 images.
pub const CERTIFY_CHUNK: usize = 256;

/// The autoencoder's linear layer, `encode4` (the 30-unit code; `models::autoencoder`'s module
/// comment): every other layer, the output included, is followed by the logistic.
pub const AUTOENCODER_CODE_LAYER: usize = 3;

/// The box of the L-infinity ball of radius `eps` around each image, intersected with [0, 1]:
/// `[max(x - eps, 0), min(x + eps, 1)]`, computed in f64 and rounded outwards where inexact (the
/// difference of two f32 values need not be an f64 one).
pub fn input_box(x: ArrayView4<f32>, eps: f32) -> Interval<Ix4> {
    let eps = f64::from(eps);
    Interval::new(
        x.mapv(|v| add_round_down(f64::from(v), -eps).max(0.0)),
        x.mapv(|v| add_round_up(f64::from(v), eps).min(1.0)),
    )
}

/// LeNet's layers as bounds: f64 weights, their absolute values, the rounding widening of each
/// layer. Made once per call, shared by every chunk.
#[derive(Clone, Debug)]
pub struct LeNetBound {
    pub conv1: ConvMap, // W (20, 25)
    pub conv2: ConvMap, // W (50, 500)
    pub fc1: AffineMap, // W (500, 800)
    pub fc2: AffineMap, // W (10, 500)
}

impl LeNetBound {
    pub fn new(net: &LeNet<f32>) -> Self {
        LeNetBound {
            conv1: ConvMap::new(&net.conv1),
            conv2: ConvMap::new(&net.conv2),
            fc1: AffineMap::dense(&net.fc1),
            fc2: AffineMap::dense(&net.fc2),
        }
    }

    /// The box of fc1's ReLU output `(N, 500)`, fc2's input, for images in `x (N,1,28,28)`:
    /// conv1 -> max-pool -> conv2 -> max-pool -> flatten -> fc1 -> ReLU, as
    /// `LeNet::logits_serial`.
    pub fn hidden(&self, x: &Interval<Ix4>) -> Interval<Ix2> {
        let h = maxpool_bound(&conv_bound(&self.conv1, x));
        let h = maxpool_bound(&conv_bound(&self.conv2, &h));
        relu_bound(&dense_bound(&self.fc1, &flatten(h)))
    }

    /// The box of the logits `(N, 10)`: fc2 as a plain affine layer.
    pub fn logits(&self, x: &Interval<Ix4>) -> Interval<Ix2> {
        dense_bound(&self.fc2, &self.hidden(x))
    }

    /// Lower bounds `(N, 10)` on the margins `fl(z_y) - fl(z_j)`, `+inf` at `j = y`: fc2
    /// elided into the margins ([`affine::margin_bounds`]).
    pub fn margins(&self, x: &Interval<Ix4>, labels: &[u8]) -> Array2<f64> {
        margin_bounds(&self.fc2, &self.hidden(x), labels)
    }
}

/// A preprocessing stage as bounds.
#[derive(Clone, Debug)]
pub enum StageBound {
    /// The low-pass filter's 1-D kernel `(S)`: the blur is two affine passes.
    LowPass(Array1<f32>),
    /// The autoencoder's eight dense layers, input to output.
    Autoencoder(Vec<AffineMap>),
}

impl StageBound {
    /// Refuses a stage that injects noise: the network is then random, and a certificate for
    /// one draw is none for the next.
    pub fn new(stage: &Stage) -> Result<Self, NoCertificate> {
        if stage.is_random() {
            return Err(NoCertificate(format!(
                "the stage {} injects noise, so the network is random: a random network has no \
                 deterministic certificate",
                stage.describe()
            )));
        }
        Ok(match stage {
            Stage::LowPass(f) => StageBound::LowPass(f.kernel_1d().to_owned()),
            Stage::Autoencoder { net, .. } => StageBound::Autoencoder(autoencoder_maps(net)),
        })
    }

    /// The box of the stage's output for inputs in `x (N,1,28,28)` (same shape).
    pub fn apply(&self, x: &Interval<Ix4>) -> Interval<Ix4> {
        match self {
            StageBound::LowPass(k) => blur_bound(k.view(), x),
            StageBound::Autoencoder(layers) => {
                let mut h = flatten(x.clone());
                for (l, layer) in layers.iter().enumerate() {
                    h = dense_bound(layer, &h);
                    if l != AUTOENCODER_CODE_LAYER {
                        h = sigmoid_bound(&h);
                    }
                }
                unflatten(h, (1, IMAGE_SIDE, IMAGE_SIDE))
            }
        }
    }
}

fn autoencoder_maps(net: &Autoencoder) -> Vec<AffineMap> {
    assert_eq!(net.layers.len(), LAYER_NAMES.len(), "eight dense layers");
    net.layers.iter().map(AffineMap::dense).collect()
}

/// Refuses what no box can be made of: a negative or non-finite `eps`, images not
/// `(N,1,28,28)`, pixels outside [0, 1] (the network's input domain), a label count or value
/// that does not fit.
fn check_inputs(x: ArrayView4<f32>, labels: Option<&[u8]>, eps: f32) -> Result<(), NoCertificate> {
    if !(eps.is_finite() && eps >= 0.0) {
        return Err(NoCertificate(format!(
            "eps must be a finite number >= 0, got {eps}"
        )));
    }
    let (n, c, h, w) = x.dim();
    if (c, h, w) != (1, IMAGE_SIDE, IMAGE_SIDE) {
        return Err(NoCertificate(format!(
            "images must be (N,1,{IMAGE_SIDE},{IMAGE_SIDE}), got ({n},{c},{h},{w})"
        )));
    }
    if let Some(v) = x.iter().find(|v| !(0.0..=1.0).contains(*v)) {
        return Err(NoCertificate(format!(
            "a pixel is {v}, outside [0, 1]: the ball is intersected with [0, 1]"
        )));
    }
    if let Some(labels) = labels {
        if labels.len() != n {
            return Err(NoCertificate(format!(
                "{} labels for {n} images",
                labels.len()
            )));
        }
        if let Some(l) = labels.iter().find(|&&l| usize::from(l) >= CLASSES) {
            return Err(NoCertificate(format!("label {l} is not a digit")));
        }
    }
    Ok(())
}

/// The input box of a chunk of images, through every stage.
fn preprocessed_box(stages: &[StageBound], x: ArrayView4<f32>, eps: f32) -> Interval<Ix4> {
    let mut b = input_box(x, eps);
    for stage in stages {
        b = stage.apply(&b);
    }
    b
}

fn stage_bounds(stages: &[Stage]) -> Result<Vec<StageBound>, NoCertificate> {
    stages.iter().map(StageBound::new).collect()
}

/// Lower bounds `(N, 10)` on every margin `fl(z_y) - fl(z_j)` of the float32 network (stages,
/// then LeNet) over the eps-ball of each image intersected with [0, 1]; `+inf` at `j = y`.
/// [`CERTIFY_CHUNK`] images at a time, each layer in parallel inside.
pub fn margin_lower_bounds(
    net: &LeNet<f32>,
    stages: &[Stage],
    x: ArrayView4<f32>,
    labels: &[u8],
    eps: f32,
) -> Result<Array2<f64>, NoCertificate> {
    check_inputs(x, Some(labels), eps)?;
    let stages = stage_bounds(stages)?;
    let lenet = LeNetBound::new(net);
    let n = x.dim().0;
    let mut margins = Array2::zeros((n, CLASSES));
    for start in (0..n).step_by(CERTIFY_CHUNK) {
        let range = start..(start + CERTIFY_CHUNK).min(n);
        let b = preprocessed_box(&stages, x.slice(s![range.clone(), .., .., ..]), eps);
        margins
            .slice_mut(s![range.clone(), ..])
            .assign(&lenet.margins(&b, &labels[range]));
    }
    Ok(margins)
}

/// The box of the logits `(N, 10)` of the float32 network over each image's eps-ball
/// intersected with [0, 1] (fc2 not elided: for showing and testing the bounds themselves).
pub fn logit_bounds(
    net: &LeNet<f32>,
    stages: &[Stage],
    x: ArrayView4<f32>,
    eps: f32,
) -> Result<Interval<Ix2>, NoCertificate> {
    check_inputs(x, None, eps)?;
    let stages = stage_bounds(stages)?;
    let lenet = LeNetBound::new(net);
    let n = x.dim().0;
    let mut out = Interval::new(Array2::zeros((n, CLASSES)), Array2::zeros((n, CLASSES)));
    for start in (0..n).step_by(CERTIFY_CHUNK) {
        let range = start..(start + CERTIFY_CHUNK).min(n);
        let b = preprocessed_box(&stages, x.slice(s![range.clone(), .., .., ..]), eps);
        let logits = lenet.logits(&b);
        out.lower
            .slice_mut(s![range.clone(), ..])
            .assign(&logits.lower);
        out.upper.slice_mut(s![range, ..]).assign(&logits.upper);
    }
    Ok(out)
}

/// Per image: true when every input in the eps-ball (intersected with [0, 1]) is provably
/// classified as its label by the float32 network that runs (the stages, then LeNet): every
/// margin's lower bound ([`margin_lower_bounds`]) is `> 0`. A misclassified clean image is
/// never certified. `Err` for a random stage (noise injection) or inputs no box can be made
/// of (`eps` negative or not finite, pixels outside [0, 1], labels that do not fit).
pub fn certify(
    net: &LeNet<f32>,
    stages: &[Stage],
    x: ArrayView4<f32>,
    labels: &[u8],
    eps: f32,
) -> Result<Vec<bool>, NoCertificate> {
    let margins = margin_lower_bounds(net, stages, x, labels, eps)?;
    Ok(margins
        .axis_iter(Axis(0))
        .map(|row| row.iter().all(|&m| m > 0.0))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defences::lowpass::LowPassFilter;
    use crate::models::pipeline::{AttackThrough, Pipeline};
    use crate::models::Classifier;
    use crate::rng::{stream, Purpose};
    use crate::testutil::random_array;
    use ndarray::{Array4, ArrayView2, Zip};

    /// Images in [0, 1] with MNIST's look: mostly 0 (the background), strokes in (0.3, 1).
    fn mnist_like(n: usize, seed: u64) -> Array4<f32> {
        random_array::<f32, Ix4>((n, 1, IMAGE_SIDE, IMAGE_SIDE), seed).mapv(|v| {
            if v > 0.3 {
                v
            } else {
                0.0
            }
        })
    }

    fn lenet(seed: u64) -> LeNet<f32> {
        LeNet::<f32>::xavier(&mut stream(seed, Purpose::Init, 0))
    }

    /// The float32 network the bounds are for, as every attack sees it: the stages, then LeNet
    /// (a pipeline without stages is LeNet itself).
    fn model<'a>(net: &'a LeNet<f32>, stages: &[Stage]) -> Pipeline<'a> {
        Pipeline::new(stages.to_vec(), net, AttackThrough::Pipeline)
    }

    /// Labels that make both cases happen: the prediction for even images, the next class for
    /// odd ones (misclassified).
    fn mixed_labels(model: &dyn Classifier, x: ArrayView4<f32>) -> Vec<u8> {
        model
            .predict(x)
            .iter()
            .enumerate()
            .map(|(i, &p)| if i % 2 == 0 { p } else { (p + 1) % 10 })
            .collect()
    }

    /// A point of each image's box: `x + eps * t` for `t` in [-1, 1], clipped to [0, 1].
    fn in_ball(x: &Array4<f32>, eps: f32, t: &Array4<f32>) -> Array4<f32> {
        Zip::from(x)
            .and(t)
            .map_collect(|&v, &t| (v + eps * t.clamp(-1.0, 1.0)).clamp(0.0, 1.0))
    }

    /// `d_logits (N, 10)` of the margin `z_j - z_y` towards each image's runner-up class `j`.
    fn towards_runner_up(model: &dyn Classifier, x: ArrayView4<f32>, labels: &[u8]) -> Array2<f32> {
        let logits = model.logits(x);
        let mut d = Array2::<f32>::zeros(logits.raw_dim());
        for ((z, &y), mut d) in logits.outer_iter().zip(labels).zip(d.outer_iter_mut()) {
            let y = usize::from(y);
            let j = (0..10)
                .filter(|&j| j != y)
                .max_by(|&a, &b| z[a].total_cmp(&z[b]))
                .expect("nine other classes");
            d[j] = 1.0;
            d[y] = -1.0;
        }
        d
    }

    /// Projected sign-gradient ascent on the margin `z_j - z_y` towards each image's runner-up
    /// class `j` (PGD on the margin, Madry et al. 2018): `steps` steps of `eps / 4`, each
    /// projected back into the ball and [0, 1]. Every iterate is returned, so corners and
    /// interior points are both checked.
    fn pgd_points(
        model: &dyn Classifier,
        x: &Array4<f32>,
        labels: &[u8],
        eps: f32,
        steps: usize,
    ) -> Vec<Array4<f32>> {
        let d = towards_runner_up(model, x.view(), labels);
        let mut points = Vec::new();
        let mut p = x.clone();
        for _ in 0..steps {
            let g = model.logits_vjp(p.view(), d.view());
            // The step in units of eps, so that `in_ball` projects it.
            let t = Zip::from(&p).and(x).and(&g).map_collect(|&p, &x, &g| {
                (p - x + eps / 4.0 * g.signum()) / eps.max(f32::MIN_POSITIVE)
            });
            p = in_ball(x, eps, &t);
            points.push(p.clone());
        }
        points
    }

    /// Images the model classifies with a clear margin: from [`mnist_like`] images, sign-gradient
    /// steps of 0.05 (clipped to [0, 1]) that raise the margin of class `i % 10` of image `i`
    /// over its runner-up. A randomly initialised LeNet separates MNIST-like images by margins
    /// of about 0.1, under the rounding slack the bounds carry at eps 0 (a logit box about 0.1
    /// wide); these images are classified by margins well above it. Returns them with their
    /// classes.
    fn confident_images(model: &dyn Classifier, n: usize, seed: u64) -> (Array4<f32>, Vec<u8>) {
        let mut x = mnist_like(n, seed);
        let classes: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        for _ in 0..40 {
            let d = towards_runner_up(model, x.view(), &classes);
            let g = model.logits_vjp(x.view(), d.view());
            x.zip_mut_with(&g, |v, &g| *v = (*v - 0.05 * g.signum()).clamp(0.0, 1.0));
        }
        (x, classes)
    }

    /// The smallest margin `z_y - z_j` of each image.
    fn smallest_margins(model: &dyn Classifier, x: ArrayView4<f32>, labels: &[u8]) -> Vec<f32> {
        model
            .logits(x)
            .outer_iter()
            .zip(labels)
            .map(|(z, &y)| {
                let y = usize::from(y);
                (0..10)
                    .filter(|&j| j != y)
                    .map(|j| z[y] - z[j])
                    .fold(f32::INFINITY, f32::min)
            })
            .collect()
    }

    /// Every logit of `points` inside the box, every f32 margin above its lower bound.
    fn check_points(
        what: &str,
        logits: ArrayView2<f32>,
        bounds: &Interval<Ix2>,
        margins: &Array2<f64>,
        labels: &[u8],
    ) {
        if let Some((at, v, l, u)) = bounds.first_outside(logits) {
            panic!(
                "{what}: logit {at} (image {}, class {}) = {v} outside [{l}, {u}]",
                at / 10,
                at % 10
            );
        }
        for (i, (z, &y)) in logits.outer_iter().zip(labels).enumerate() {
            for j in (0..10).filter(|&j| j != usize::from(y)) {
                let margin = f64::from(z[usize::from(y)]) - f64::from(z[j]);
                assert!(
                    margin >= margins[[i, j]],
                    "{what}: image {i}, class {j}: margin {margin} below its bound {}",
                    margins[[i, j]]
                );
            }
        }
    }

    /// The soundness check of a network: at each eps, random points of each ball, random
    /// corners, and the iterates of a sign-gradient attack on each image's closest margin give
    /// f32 logits (the network that runs) inside the logit bounds and margins above the margin
    /// bounds.
    fn check_soundness(net: &LeNet<f32>, stages: &[Stage], x: &Array4<f32>, levels: &[f32]) {
        let model = model(net, stages);
        let labels = mixed_labels(&model, x.view());
        for &eps in levels {
            let bounds = logit_bounds(net, stages, x.view(), eps).unwrap();
            let margins = margin_lower_bounds(net, stages, x.view(), &labels, eps).unwrap();
            let check = |what: String, p: &Array4<f32>| {
                check_points(
                    &what,
                    model.logits(p.view()).view(),
                    &bounds,
                    &margins,
                    &labels,
                )
            };
            for seed in 0..4 {
                let t = random_array::<f32, Ix4>(x.raw_dim(), 10 + seed);
                check(format!("eps {eps}, random {seed}"), &in_ball(x, eps, &t));
                // The corners of the same draw: each pixel at an end of its range.
                let corner = in_ball(x, eps, &t.mapv(f32::signum));
                check(format!("eps {eps}, corner {seed}"), &corner);
            }
            for (k, p) in pgd_points(&model, x, &labels, eps, 8).iter().enumerate() {
                check(format!("eps {eps}, attack step {k}"), p);
            }
        }
    }

    #[test]
    fn input_box_clips_and_rounds_outwards() {
        let x = Array4::from_shape_vec((1, 1, 1, 3), vec![0.0f32, 0.5, 1.0]).unwrap();
        let b = input_box(x.view(), 0.25);
        assert_eq!(b.lower[[0, 0, 0, 0]], 0.0);
        assert_eq!(b.upper[[0, 0, 0, 2]], 1.0);
        // 0.5 -+ 0.25 are exact: no rounding.
        assert_eq!(b.lower[[0, 0, 0, 1]], 0.25);
        assert_eq!(b.upper[[0, 0, 0, 1]], 0.75);
        // eps 0: the box is the point itself.
        assert_eq!(input_box(x.view(), 0.0), Interval::point(x.view()));
        // An eps whose difference with a pixel is no f64: rounded outwards.
        let y = Array4::from_elem((1, 1, 1, 1), 1.0f32 - f32::EPSILON);
        let b = input_box(y.view(), 1e-30);
        assert!(b.lower[[0, 0, 0, 0]] < f64::from(y[[0, 0, 0, 0]]));
        assert!(b.upper[[0, 0, 0, 0]] > f64::from(y[[0, 0, 0, 0]]));
    }

    /// The main soundness check on a real LeNet, at eps from 0 to 0.1.
    #[test]
    fn lenet_bounds_hold_for_random_and_attack_points() {
        check_soundness(&lenet(1), &[], &mnist_like(12, 2), &[0.0, 0.003, 0.02, 0.1]);
    }

    /// At eps 0 the box is the image itself: the exact logits (LeNet in f64) and the f32 ones
    /// differ (so the rounding slack is needed: a box around the exact values alone would miss
    /// the network that runs), and both lie inside. The box is not a point: each layer's
    /// rounding slack is carried through the later layers' `|W|`, which multiplies widths by
    /// 10-60 per layer for these weights, so the logits' boxes come out about 0.1 wide.
    #[test]
    fn at_eps_zero_the_box_holds_the_f32_logits() {
        let net = lenet(3);
        let x = mnist_like(8, 4);
        let b = logit_bounds(&net, &[], x.view(), 0.0).unwrap();
        let f32_logits = net.logits(x.view());
        let exact = net.cast::<f64>().logits(x.mapv(f64::from).view());
        assert!(
            f32_logits
                .iter()
                .zip(&exact)
                .any(|(&a, &e)| f64::from(a) != e),
            "the f32 logits round"
        );
        assert_eq!(b.first_outside(f32_logits.view()), None);
        for ((&l, &u), &e) in b.lower.iter().zip(&b.upper).zip(&exact) {
            assert!(l <= e && e <= u, "exact logit {e} outside [{l}, {u}]");
            assert!(u - l < 0.5, "box [{l}, {u}] at eps 0");
        }
    }

    /// At eps 0, certified is predicted right, on images classified by a clear margin (half of
    /// them labelled wrongly on purpose). Returns nothing; panics naming the image otherwise.
    fn check_eps_zero(net: &LeNet<f32>, stages: &[Stage], seed: u64) {
        let model = model(net, stages);
        let (x, classes) = confident_images(&model, 20, seed);
        let margins = smallest_margins(&model, x.view(), &classes);
        let clear = margins.iter().filter(|&&m| m > 0.5).count();
        assert!(
            clear >= 15,
            "only {clear} of 20 images are clearly classified: {margins:?}"
        );
        let labels: Vec<u8> = classes
            .iter()
            .enumerate()
            .map(|(i, &c)| if i % 2 == 0 { c } else { (c + 3) % 10 })
            .collect();
        let right: Vec<bool> = model
            .predict(x.view())
            .iter()
            .zip(&labels)
            .map(|(p, l)| p == l)
            .collect();
        let certified = certify(net, stages, x.view(), &labels, 0.0).unwrap();
        for (i, ((&c, &r), &m)) in certified.iter().zip(&right).zip(&margins).enumerate() {
            assert!(!c || r, "image {i}: certified but predicted wrong");
            if m > 0.5 {
                assert_eq!(
                    c, r,
                    "image {i} (margin {m}): certified {c}, predicted right {r}"
                );
            }
        }
    }

    #[test]
    fn eps_zero_certifies_exactly_the_right_predictions() {
        check_eps_zero(&lenet(5), &[], 6);
    }

    /// A larger ball holds a smaller one, and interval bounds are monotone in the box, so an
    /// image certified at some eps is certified at every smaller one. The eps range runs from
    /// most images certified to none, so the check is not empty.
    #[test]
    fn certification_shrinks_as_eps_grows() {
        let net = lenet(7);
        let x = mnist_like(40, 8);
        let labels = net.predict(x.view());
        let levels = [0.0f32, 1e-7, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 1e-3, 0.1];
        let certified: Vec<Vec<bool>> = levels
            .iter()
            .map(|&eps| certify(&net, &[], x.view(), &labels, eps).unwrap())
            .collect();
        let counts: Vec<usize> = certified
            .iter()
            .map(|c| c.iter().filter(|&&b| b).count())
            .collect();
        eprintln!("certified of 40 at eps {levels:?}: {counts:?}");
        assert!(counts[0] >= 20, "at eps 0 most images clear the slack");
        assert_eq!(counts[levels.len() - 1], 0, "nothing holds at eps 0.1");
        for (k, pair) in certified.windows(2).enumerate() {
            for (i, (&small, &large)) in pair[0].iter().zip(&pair[1]).enumerate() {
                assert!(
                    small || !large,
                    "image {i}: certified at eps {} but not at {}",
                    levels[k + 1],
                    levels[k]
                );
            }
        }
    }

    /// A low-pass stage without noise is bounded: sampled and attack points through the f32
    /// filter and LeNet lie inside, and eps 0 certifies the right predictions. One with noise
    /// is refused with the reason.
    #[test]
    fn lowpass_stage_is_supported_and_noise_refused() {
        let net = lenet(9);
        let stages = [Stage::LowPass(LowPassFilter::study(5, 0.0, 1).unwrap())];
        check_soundness(&net, &stages, &mnist_like(6, 10), &[0.0, 0.01]);
        check_eps_zero(&net, &stages, 11);
        let x = mnist_like(2, 12);
        let noisy = [Stage::LowPass(LowPassFilter::study(5, 0.1, 1).unwrap())];
        let err = certify(&net, &noisy, x.view(), &[0, 1], 0.01).unwrap_err();
        assert!(err.to_string().contains("random network"), "{err}");
        assert!(logit_bounds(&net, &noisy, x.view(), 0.0).is_err());
    }

    /// Through an autoencoder stage (Caffe's sparse Gaussian initialisation, seeded): the f32
    /// reconstruction of sampled points lies in the stage's box, and the box is not vacuous.
    #[test]
    fn autoencoder_stage_bounds_hold() {
        assert_eq!(LAYER_NAMES[AUTOENCODER_CODE_LAYER], "encode4");
        let ae = Autoencoder::<f32>::caffe_sparse_gaussian(&mut stream(11, Purpose::Init, 0));
        let stage = Stage::Autoencoder {
            name: "test".into(),
            net: Box::new(ae),
        };
        let bound = StageBound::new(&stage).unwrap();
        let x = mnist_like(6, 12);
        let eps = 0.0005;
        let b = bound.apply(&input_box(x.view(), eps));
        for seed in 0..6 {
            let t = random_array::<f32, Ix4>(x.raw_dim(), 30 + seed);
            let p = in_ball(
                &x,
                eps,
                &t.mapv(|v| if seed % 2 == 0 { v } else { v.signum() }),
            );
            let y = stage.apply(p.view(), 0);
            if let Some((at, v, l, u)) = b.first_outside(y.view()) {
                panic!("sample {seed}: reconstruction pixel {at} = {v} outside [{l}, {u}]");
            }
        }
        let mean_width = (&b.upper - &b.lower).mean().unwrap();
        eprintln!("autoencoder box at eps {eps}: mean width {mean_width:.4}");
        assert!(
            mean_width < 0.5,
            "the box is nearly vacuous: mean width {mean_width}"
        );
        // And certification runs through it.
        let net = lenet(13);
        let labels = mixed_labels(&net, x.view());
        assert!(certify(&net, &[stage], x.view(), &labels, eps).is_ok());
    }

    #[test]
    fn bad_inputs_are_refused() {
        let net = lenet(15);
        let x = mnist_like(2, 16);
        for (eps, what) in [(-0.1f32, "eps"), (f32::NAN, "eps"), (f32::INFINITY, "eps")] {
            let err = certify(&net, &[], x.view(), &[0, 1], eps)
                .unwrap_err()
                .to_string();
            assert!(err.contains(what), "{err}");
        }
        assert!(certify(&net, &[], x.view(), &[0], 0.1)
            .unwrap_err()
            .to_string()
            .contains("1 labels for 2 images"));
        assert!(certify(&net, &[], x.view(), &[0, 10], 0.1)
            .unwrap_err()
            .to_string()
            .contains("label 10"));
        let mut bright = x.clone();
        bright[[1, 0, 3, 3]] = 1.5;
        assert!(certify(&net, &[], bright.view(), &[0, 1], 0.1)
            .unwrap_err()
            .to_string()
            .contains("outside [0, 1]"));
    }

    /// The environment variable naming the model file of [`certified_error_of_a_trained_model`].
    const MODEL_ENV: &str = "ADVMNIST_CERTIFY_MODEL";

    /// Not a unit test: the certified error of a trained LeNet (the file `$ADVMNIST_CERTIFY_MODEL`)
    /// on the first 1,000 MNIST test images at several eps, with the time each took, and the
    /// smallest eps of a grid where the certified error passes 99%. Run with
    /// `ADVMNIST_CERTIFY_MODEL=lenet.safetensors cargo test --release --lib certify -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn certified_error_of_a_trained_model() {
        let Some(path) = std::env::var_os(MODEL_ENV) else {
            eprintln!("skipped: set {MODEL_ENV} to a LeNet model file");
            return;
        };
        let (net, _) = crate::models::file::load_model(std::path::Path::new(&path)).unwrap();
        let test =
            crate::data::load_split(&crate::data::default_data_dir(), crate::data::Split::Test)
                .unwrap()
                .subset(0..1000);
        let predicted = net.predict(test.images.view());
        let clean = predicted
            .iter()
            .zip(&test.labels)
            .filter(|(p, l)| p != l)
            .count();
        eprintln!("clean error: {:.1}% of {}", clean as f64 / 10.0, test.len());
        let certified_error = |eps: f32| {
            let start = std::time::Instant::now();
            let c = certify(&net, &[], test.images.view(), &test.labels, eps).unwrap();
            let error = 100.0 * c.iter().filter(|&&b| !b).count() as f64 / c.len() as f64;
            (error, start.elapsed().as_secs_f64())
        };
        let at_zero = certify(&net, &[], test.images.view(), &test.labels, 0.0).unwrap();
        let right: Vec<bool> = predicted
            .iter()
            .zip(&test.labels)
            .map(|(p, l)| p == l)
            .collect();
        assert_eq!(at_zero, right, "at eps 0, certified is predicted right");
        let b = logit_bounds(&net, &[], test.images.view(), 0.0).unwrap();
        let width = &b.upper - &b.lower;
        let scale = b.upper.iter().fold(0.0f64, |a, &v| a.max(v.abs()));
        eprintln!(
            "logit boxes at eps 0 (the rounding slack alone): mean width {:.2e}, widest {:.2e}; largest |logit| {scale:.1}",
            width.mean().unwrap(),
            width.fold(0.0f64, |a, &w| a.max(w))
        );
        for eps in [
            0.0f32, 1e-5, 1e-4, 2e-4, 5e-4, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1,
        ] {
            let (error, seconds) = certified_error(eps);
            eprintln!("eps {eps}: certified error {error:.1}% ({seconds:.2} s)");
        }
        // The certified error grows with eps (a certificate at eps holds at every smaller
        // one), so the grid 0.0001, 0.0002, ..., 0.3 is searched by bisection.
        let grid: Vec<f32> = (1..=3000).map(|i| i as f32 * 1e-4).collect();
        let (mut below, mut above) = (0usize, grid.len());
        while below < above {
            let mid = (below + above) / 2;
            if certified_error(grid[mid]).0 > 99.0 {
                above = mid;
            } else {
                below = mid + 1;
            }
        }
        let first = grid.get(below);
        eprintln!("smallest eps of the grid 0.0001..0.3 (step 0.0001) with certified error above 99%: {first:?}");
    }
}
