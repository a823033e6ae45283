//! Auditing a pipeline, preprocessing stages in front of one LeNet (`advmnist gradcheck --model
//! FILE --pre STAGE`, `advmnist trace --model FILE --pre STAGE`): its white-box input gradient
//! checked in f64 against central differences on real test images, and one image's trace
//! through the stages, LeNet and back.
//!
//! **In f64.** The stages run in f64 on the f32 model's numbers widened exactly: the low-pass
//! filter's f32 kernel (`LowPassFilter::blur`, generic over `Scalar`), the autoencoder's f32
//! weights (`Autoencoder::cast`), LeNet's (`LeNet::cast`).
//!
//! **Injected noise is held fixed.** `lowpass:S,noise=SIGMA` adds `sigma z` before the blur, `z`
//! drawn from a stream keyed by the image's own f32 pixels (`defences::lowpass`): a moved pixel
//! would draw entirely new noise, and the difference quotient would measure the noise, not a
//! derivative. The check therefore draws `z` once, at the point, for **draw 0** (the draw the
//! pipeline classifies with, and the first of an EOT gradient's), and holds it fixed in every
//! evaluation at `x`, `x + h` and `x - h` ([`StagesAt`]). For a first stage, whose input is the
//! test image itself, `z` is the f32 pipeline's own draw; behind another stage it is the draw
//! keyed by that stage's f64 input rounded to f32 (a valid draw; the f32 pipeline's own
//! intermediate image can differ in its last bits). The white-box gradient of one draw is what
//! is checked; an EOT gradient is a mean of such gradients.
//!
//! **What is checked.** `d_logits`, LeNet's link 1 on the preprocessed images, as for one LeNet;
//! and `input`, the white-box gradient `dL/dx = J_1^T ... J_K^T (dL/dz_K)`: LeNet's
//! `input_gradient` at the last stage's output, then each stage's own backward pass in reverse
//! (`LowPassFilter::vjp_fixed`, `Autoencoder::reconstruction_vjp`), as `Pipeline` chains them
//! (`models::pipeline`: `Stage::vjp` calls the same functions), against central differences of
//! `F = sum_n <g_n, z_n(stages(x))>` with `g = d_logits` fixed
//! ([`gradcheck::numeric_input_gradient_through`]).
//!
//! **Kinks.** LeNet's kink rule applies to its input, the stages' output: a pixel is a kink when
//! LeNet's max-pool winners or ReLU signs at the perturbed pipeline output differ from those at
//! the point's. A low-pass filter is linear and the autoencoder smooth, so they add no kinks of
//! their own, except where injected noise clips: a pixel is also a kink when the set of clipped
//! values (`x + sigma z` outside (0, 1)) changes at `+h` or `-h`. A kink is checked on the
//! point's piece: LeNet with its winners and signs held (`gradcheck::logits_on_piece`), and each
//! noisy filter with its clipped values held at their clipped value and the others at
//! `x + sigma z` ([`StagesAt::apply_on_piece`], independent of `LowPassFilter::inject_with`).
//!
//! Step, tolerance and floor are one LeNet's. The autoencoder is smooth, not piecewise linear,
//! so the difference has a truncation error `h^2 F'''/6`, and `F`'s rounding (about 1e-15,
//! divided by `2h`) weighs against the pipeline's gradient rather than LeNet's. Measured with
//! the default LeNet and the default autoencoder (`advmnist dae train`) on test image 3: the
//! worst relative error at `h = 1e-4` was 1.1e-7, and on that pixel the error was 6.4e-6 at
//! `h = 1e-3` (truncation), 1.5e-7 at `1e-5` and 3.4e-6 at `1e-6` (rounding): `1e-4` is again
//! the right step. An autoencoder whose reconstruction hardly depends on its input (random
//! weights uniform in +-sqrt(6/fan_in): largest input gradient 8.7e-5, measured) leaves
//! gradients so small that rounding alone reached 4.5e-5 at `h = 1e-4`, a FAIL (on its worst
//! pixel 1.8e-4 at `1e-5`); the tests use larger random weights (`tests/integration/audit.rs`).
//! Parameter gradients are not checked here: LeNet's are checked by `gradcheck --model FILE`
//! alone, the autoencoder's by its tests.
//!
//! The trace of one image (`advmnist trace --model FILE --pre STAGE ...`) names, in computing
//! order: `pre.input`, the image the pipeline is given; for stage `k = 1..K`, for a noisy
//! filter `pre{k}.noise` (the standard normal draw `z` of draw 0, held) and `pre{k}.noisy`
//! (`clip(x + sigma z, 0, 1)`, the blur's input), then `pre{k}.output`; LeNet's own names on the
//! preprocessed image (`forward.input` is `pre{K}.output`, ..., `backward.input` is
//! `dL/d(pre{K}.output)`, `grad.*`); then `backward.pre{K}` .. `backward.pre1`, the gradient with
//! respect to stage `k`'s *input* (`backward.pre1 = dL/d(pre.input)`, the pipeline's white-box
//! input gradient of draw 0).

use crate::audit::gradcheck::{
    self, compare, numeric_input_gradient_through, tile, GradcheckReport, InputStages,
};
use crate::audit::trace::{self, Trace};
use crate::data::IMAGE_SIDE;
use crate::defences::lowpass::LowPassFilter;
use crate::kernels::scalar::Scalar;
use crate::layers::softmax_xent;
use crate::models::autoencoder::Autoencoder;
use crate::models::lenet::LeNet;
use crate::models::pipeline::Stage;
use ndarray::{Array4, ArrayView4, Axis, Zip};

/// The draw every check and trace holds: the one a pipeline classifies with.
pub const DRAW: u64 = 0;

/// One stage in precision `T` at a point, its injected noise (if any) drawn there.
#[derive(Clone, Debug)]
pub enum StageAt<T> {
    LowPass {
        filter: LowPassFilter,
        noise: Option<Array4<f32>>, // (N,1,28,28): the standard normal z of draw DRAW, held
    },
    Autoencoder(Autoencoder<T>),
}

/// A pipeline's stages in precision `T` at images `x`, every injected noise drawn at `x` and
/// held fixed: a deterministic function of the images from then on.
#[derive(Clone, Debug)]
pub struct StagesAt<T> {
    pub stages: Vec<StageAt<T>>,
    pub names: Vec<String>, // as on the command line: lowpass:5,noise=0.2, dae:FILE
}

/// A forward pass through the stages, kept for the backward pass and the trace.
pub struct StagesForward<T> {
    pub inputs: Vec<Array4<T>>, // stage k's input (N,1,28,28); inputs[0] is x
    pub noisy: Vec<Option<Injected<T>>>, // stage k's injected noise, for a noisy filter
    pub output: Array4<T>,      // (N,1,28,28): the last stage's output, LeNet's input
}

/// What a noisy filter injected.
pub struct Injected<T> {
    pub noisy: Array4<T>, // (N,1,28,28): x' = clip(x + sigma z, 0, 1), the blur's input
    pub mask: Array4<T>,  // (N,1,28,28): dx'/dx, 1 where not clipped, else 0
}

impl<T: Scalar> StagesAt<T> {
    /// `stages` in `T` at images `x (N,1,28,28)`: each noisy filter's noise of draw [`DRAW`]
    /// is drawn from its input at `x`, as f32 (module comment).
    pub fn at(stages: &[Stage], x: ArrayView4<T>) -> Self {
        let mut at = StagesAt {
            stages: Vec::with_capacity(stages.len()),
            names: stages.iter().map(Stage::describe).collect(),
        };
        let mut h = x.to_owned();
        for stage in stages {
            let s = match stage {
                Stage::LowPass(f) => StageAt::LowPass {
                    filter: f.clone(),
                    noise: f.noise_draw(h.mapv(|v| v.f64() as f32).view(), DRAW),
                },
                Stage::Autoencoder { net, .. } => StageAt::Autoencoder(net.cast::<T>()),
            };
            h = at.apply_stage(&s, h.view()).0;
            at.stages.push(s);
        }
        at
    }

    /// One stage's output, and a noisy filter's `x'` and mask.
    fn apply_stage(
        &self,
        stage: &StageAt<T>,
        x: ArrayView4<T>,
    ) -> (Array4<T>, Option<Injected<T>>) {
        match stage {
            StageAt::LowPass {
                filter,
                noise: Some(z),
            } => {
                let (noisy, mask) = filter.inject_with(x, z.view());
                (filter.blur(noisy.view()), Some(Injected { noisy, mask }))
            }
            StageAt::LowPass {
                filter,
                noise: None,
            } => (filter.blur(x), None),
            StageAt::Autoencoder(net) => (net.reconstruct(x), None),
        }
    }

    /// The forward pass through every stage.
    pub fn forward(&self, x: ArrayView4<T>) -> StagesForward<T> {
        let mut inputs = Vec::with_capacity(self.stages.len());
        let mut noisy = Vec::with_capacity(self.stages.len());
        let mut h = x.to_owned();
        for stage in &self.stages {
            let (next, kept) = self.apply_stage(stage, h.view());
            inputs.push(h);
            noisy.push(kept);
            h = next;
        }
        StagesForward {
            inputs,
            noisy,
            output: h,
        }
    }

    /// `dL/d(input of stage k)` from `g = dL/d(output of stage k)`.
    pub fn stage_vjp(&self, k: usize, forward: &StagesForward<T>, g: ArrayView4<T>) -> Array4<T> {
        match &self.stages[k] {
            StageAt::LowPass { filter, .. } => {
                let mask = forward.noisy[k].as_ref().map(|i| i.mask.view());
                filter.vjp_fixed(g, mask)
            }
            StageAt::Autoencoder(net) => net.reconstruction_vjp(forward.inputs[k].view(), g),
        }
    }

    /// `dL/dx` from `g = dL/d(output)`: each stage's backward pass, last stage first.
    pub fn vjp(&self, forward: &StagesForward<T>, mut g: Array4<T>) -> Array4<T> {
        for k in (0..self.stages.len()).rev() {
            g = self.stage_vjp(k, forward, g.view());
        }
        g
    }

    /// `lowpass:5 + dae:FILE`, as `Pipeline::describe_stages`.
    pub fn describe(&self) -> String {
        self.names.join(" + ")
    }

    fn has_noise(&self) -> bool {
        self.stages
            .iter()
            .any(|s| matches!(s, StageAt::LowPass { noise: Some(_), .. }))
    }
}

/// Where a noisy filter's values were not clipped, and its `x'`, at a point.
pub struct NoisyPiece {
    pub unclipped: Array4<bool>, // (N,1,28,28): 0 < x + sigma z < 1
    pub noisy: Array4<f64>,      // (N,1,28,28): x' = clip(x + sigma z, 0, 1)
}

impl StagesAt<f64> {
    /// The stages' output with every noisy filter's clipping held at `piece`: where the
    /// point's value was not clipped `x' = x + sigma z` (whatever its value now), elsewhere the
    /// point's clipped value (0 or 1). Written out here, apart from `LowPassFilter::inject_with`.
    pub fn apply_on_piece(&self, x: ArrayView4<f64>, piece: &[Option<NoisyPiece>]) -> Array4<f64> {
        let mut h = x.to_owned();
        for (stage, held) in self.stages.iter().zip(piece) {
            h = match (stage, held) {
                (
                    StageAt::LowPass {
                        filter,
                        noise: Some(z),
                    },
                    Some(held),
                ) => {
                    let sigma = f64::from(filter.noise);
                    let mut noisy = Array4::zeros(h.raw_dim());
                    Zip::from(&mut noisy)
                        .and(&h)
                        .and(z)
                        .and(&held.unclipped)
                        .and(&held.noisy)
                        .for_each(|out, &x, &z, &free, &clipped| {
                            *out = if free {
                                x + sigma * f64::from(z)
                            } else {
                                clipped
                            };
                        });
                    filter.blur(noisy.view())
                }
                (stage, _) => self.apply_stage(stage, h.view()).0,
            };
        }
        h
    }
}

impl InputStages for StagesAt<f64> {
    /// One entry per stage: a noisy filter's clipping, `None` for the others.
    type Piece = Vec<Option<NoisyPiece>>;

    fn apply(&self, x: ArrayView4<f64>) -> (Array4<f64>, Self::Piece) {
        let forward = self.forward(x);
        let piece = forward
            .noisy
            .into_iter()
            .map(|kept| {
                kept.map(|Injected { noisy, mask }| NoisyPiece {
                    unclipped: mask.mapv(|m| m == 1.0),
                    noisy,
                })
            })
            .collect();
        (forward.output, piece)
    }

    fn apply_on_piece(&self, x: ArrayView4<f64>, piece: &Self::Piece) -> Array4<f64> {
        StagesAt::apply_on_piece(self, x, piece)
    }

    fn same_for(&self, a: &Self::Piece, b: &Self::Piece, n: usize) -> bool {
        a.iter().zip(b).all(|(a, b)| match (a, b) {
            (Some(a), Some(b)) => {
                a.unclipped.index_axis(Axis(0), n) == b.unclipped.index_axis(Axis(0), n)
            }
            _ => true,
        })
    }

    fn has_pieces(&self) -> bool {
        self.has_noise()
    }

    fn tiled(&self, times: usize) -> Self {
        let stages = self
            .stages
            .iter()
            .map(|stage| match stage {
                StageAt::LowPass { filter, noise } => StageAt::LowPass {
                    filter: filter.clone(),
                    noise: noise.as_ref().map(|z| tile(z.view(), times)),
                },
                StageAt::Autoencoder(net) => StageAt::Autoencoder(net.clone()),
            })
            .collect();
        StagesAt {
            stages,
            names: self.names.clone(),
        }
    }

    fn tiled_piece(&self, piece: &Self::Piece, times: usize) -> Self::Piece {
        piece
            .iter()
            .map(|held| {
                held.as_ref().map(|held| NoisyPiece {
                    unclipped: tile(held.unclipped.view(), times),
                    noisy: tile(held.noisy.view(), times),
                })
            })
            .collect()
    }
}

/// The white-box input gradient of draw [`DRAW`] in f64, and the `d_logits` it starts from:
/// LeNet's own input gradient at the stages' output, then back through every stage.
pub fn pipeline_input_gradient(
    stages: &StagesAt<f64>,
    net: &LeNet<f64>,
    x: ArrayView4<f64>,
    labels: &[u8],
) -> (ndarray::Array2<f64>, Array4<f64>) {
    let forward = stages.forward(x);
    let logits = net.logits(forward.output.view());
    let (_, xent) = softmax_xent::forward(logits.view(), labels);
    let d_logits = softmax_xent::backward(&xent, labels, 1.0);
    let (_, g) = net.input_gradient(forward.output.view(), labels);
    (d_logits, stages.vjp(&forward, g))
}

/// Checks the pipeline `stages` + `net` (in f64) on images `x (N,1,28,28)` with their true
/// `labels`: `d_logits` and `input` (module comment).
pub fn gradcheck_pipeline(
    stages: &[Stage],
    net: &LeNet<f64>,
    x: ArrayView4<f64>,
    labels: &[u8],
) -> GradcheckReport {
    let n = x.dim().0;
    assert_eq!(labels.len(), n, "one label per image");
    let at = StagesAt::<f64>::at(stages, x);
    let (d_logits, analytic) = pipeline_input_gradient(&at, net, x, labels);
    let mut tensors = Vec::new();

    // Link 1, LeNet's, on the preprocessed images.
    let preprocessed = at.forward(x).output;
    let numeric = gradcheck::numeric_logit_gradient(net.logits(preprocessed.view()).view(), labels);
    tensors.push(compare(
        "d_logits",
        d_logits.as_slice().expect("contiguous"),
        numeric.as_slice().expect("contiguous"),
        &vec![false; numeric.len()],
    ));

    // Link 2: through LeNet and every stage.
    let (numeric, kinks) = numeric_input_gradient_through(&at, &[net], x, &[d_logits.view()]);
    tensors.push(compare(
        "input",
        analytic.as_slice().expect("contiguous"),
        numeric.as_slice().expect("contiguous"),
        kinks.as_slice().expect("contiguous"),
    ));
    let mut notes = vec![format!(
        "pipeline {} + LeNet, white-box (through every stage's backward pass), in f64 (f32 kernels and weights widened exactly)",
        at.describe()
    )];
    if at.has_noise() {
        notes.push(format!(
            "injected noise: draw {DRAW}'s z drawn once at the point and held fixed at x, x + h and x - h (a moved pixel would draw new noise); a pixel whose clipping changes is a kink"
        ));
    }
    notes.push(
        "input: a pixel is a kink when LeNet's max-pool winners or ReLU signs change at the stages' output; parameter gradients: gradcheck --model alone".to_string(),
    );
    GradcheckReport {
        images: n,
        tensors,
        notes,
    }
}

/// Traces one image `x (1,1,28,28)` with its true `label` through `stages` (draw [`DRAW`],
/// noise held as in the check) and `net` (names in the module comment).
pub fn trace_pipeline<T: Scalar>(
    stages: &[Stage],
    net: &LeNet<T>,
    x: ArrayView4<T>,
    label: u8,
) -> Trace<T> {
    assert_eq!(
        x.dim(),
        (1, 1, IMAGE_SIDE, IMAGE_SIDE),
        "a trace is of one 28x28 image, (1,1,28,28)"
    );
    let at = StagesAt::<T>::at(stages, x);
    let forward = at.forward(x);
    let mut t = trace::empty(label);
    t.push("pre.input", x.to_owned().into_dyn());
    for k in 0..at.stages.len() {
        let name = |what: &str| format!("pre{}.{what}", k + 1);
        if let (StageAt::LowPass { noise: Some(z), .. }, Some(injected)) =
            (&at.stages[k], &forward.noisy[k])
        {
            t.push(&name("noise"), z.mapv(|v| T::of(v.into())).into_dyn());
            t.push(&name("noisy"), injected.noisy.clone().into_dyn());
        }
        let output = forward.inputs.get(k + 1).unwrap_or(&forward.output);
        t.push(&name("output"), output.clone().into_dyn());
    }
    let mut g = trace::trace_into(&mut t, net, forward.output.view());
    for k in (0..at.stages.len()).rev() {
        g = at.stage_vjp(k, &forward, g.view());
        t.push(&format!("backward.pre{}", k + 1), g.clone().into_dyn());
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::random_array;
    use ndarray::Ix4;

    fn digit_like() -> Array4<f64> {
        // Pixels in [0, 1] with a blank border, as a digit's.
        let mut x = random_array::<f64, Ix4>((2, 1, IMAGE_SIDE, IMAGE_SIDE), 51).mapv(|v| v.abs());
        x.slice_mut(ndarray::s![.., .., ..4, ..]).fill(0.0);
        x
    }

    /// Held noise: the stages are a fixed function of the images (the same output wherever
    /// the images are), and on the point's own piece `apply_on_piece` is `apply`.
    #[test]
    fn held_noise_is_a_fixed_function_and_its_piece_is_exact() {
        let stages = vec![Stage::LowPass(LowPassFilter::study(5, 0.3, 2).unwrap())];
        let x = digit_like();
        let at = StagesAt::<f64>::at(&stages, x.view());
        let (out, piece) = InputStages::apply(&at, x.view());
        assert_eq!(at.apply_on_piece(x.view(), &piece), out);
        let moved = &x + 1e-3;
        let (again, _) = InputStages::apply(&at, moved.view());
        // The f32 filter draws new noise for moved pixels; the held stages do not.
        let fresh = StagesAt::<f64>::at(&stages, moved.view())
            .forward(moved.view())
            .output;
        let step = (&again - &out)
            .mapv(f64::abs)
            .fold(0.0f64, |a, &v| a.max(v));
        let redraw = (&fresh - &out)
            .mapv(f64::abs)
            .fold(0.0f64, |a, &v| a.max(v));
        assert!(
            step < 2e-3 && redraw > 0.05,
            "held {step}, redrawn {redraw}"
        );
        // The noise is the f32 filter's own draw for a first stage.
        let StageAt::LowPass { noise: Some(z), .. } = &at.stages[0] else {
            panic!("a noisy filter")
        };
        let Stage::LowPass(f) = &stages[0] else {
            unreachable!()
        };
        assert_eq!(z, &f.noise_draw(x.mapv(|v| v as f32).view(), DRAW).unwrap());
    }

    /// The f32 trace of a pipeline starts from the pipeline's input, ends with the gradient with
    /// respect to it, and names every stage.
    #[test]
    fn pipeline_trace_names() {
        use rand_chacha::rand_core::SeedableRng;
        let net = LeNet::<f32>::xavier(&mut rand_chacha::ChaCha8Rng::seed_from_u64(3));
        let stages = vec![
            Stage::LowPass(LowPassFilter::study(3, 0.1, 2).unwrap()),
            Stage::LowPass(LowPassFilter::study(5, 0.0, 2).unwrap()),
        ];
        let x = digit_like().mapv(|v| v as f32);
        let x = x.slice(ndarray::s![..1, .., .., ..]);
        let t = trace_pipeline(&stages, &net, x, 1);
        let names: Vec<&str> = t.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names[..5],
            [
                "pre.input",
                "pre1.noise",
                "pre1.noisy",
                "pre1.output",
                "pre2.output"
            ]
        );
        assert_eq!(names[names.len() - 2..], ["backward.pre2", "backward.pre1"]);
        assert_eq!(t.get("forward.input"), t.get("pre2.output"));
        assert_eq!(names.len(), 5 + trace::tensor_names().len() + 2);
    }
}
