//! The study's stacked denoising autoencoder (section 4.1): 784-1000-500-250-30-250-500-1000-784,
//! as Caffe's `examples/mnist/mnist_autoencoder.prototxt` builds it (the reference design of
//! Hinton and Salakhutdinov 2006): logistic hidden units, a linear 30-unit code, a logistic
//! output trained with cross-entropy against the clean image (`layers::sigmoid_xent`).
//!
//! ```text
//! x (N,784) -> [dropout: the corruption, training only] -> encode1 1000 -> sigmoid
//!   -> encode2 500 -> sigmoid -> encode3 250 -> sigmoid -> encode4 30 (the code, linear)
//!   -> decode4 250 -> sigmoid -> decode3 500 -> sigmoid -> decode2 1000 -> sigmoid
//!   -> decode1 784 (logits) -> sigmoid = the reconstruction
//! ```
//! Layer names are Caffe's; tensors are PyTorch's `nn.Linear` layout `(out, in)`.
//!
//! Corruption: "dropout on the input layer" (the study): Caffe's inverted dropout, so kept pixels
//! are scaled by `1/(1-p)` at training time, exactly as LeNet's input dropout (`layers::dropout`).
//!
//! Parallelism: each dense layer cuts its own products into pieces (`layers::dense`); inference
//! of a large batch runs fixed chunks side by side. No piece depends on the thread count.

use crate::data::{IMAGE_SIDE, PIXELS};
use crate::kernels::parallel::serial;
use crate::kernels::scalar::Scalar;
use crate::kernels::transpose::transpose;
use crate::layers::dense::{self, DenseCache, DenseParams};
use crate::layers::dropout::{self, DropoutCache};
use crate::layers::sigmoid::{self, SigmoidCache};
use crate::layers::sigmoid_xent;
use crate::models::params::{Network, Parameter, ParameterMut, Parameters, TensorUpdate};
use ndarray::{Array2, Array4, ArrayView2, ArrayView4, Axis, Ix2};
use ndarray_rand::rand_distr::{Bernoulli, StandardNormal};
use ndarray_rand::RandomExt;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Units per layer, input to output.
pub const LAYER_SIZES: [usize; 9] = [PIXELS, 1000, 500, 250, 30, 250, 500, 1000, PIXELS];
/// Caffe's layer names, input to output.
pub const LAYER_NAMES: [&str; 8] = [
    "encode1", "encode2", "encode3", "encode4", "decode4", "decode3", "decode2", "decode1",
];
const TENSOR_NAMES: [&str; 16] = [
    "encode1.weight",
    "encode1.bias",
    "encode2.weight",
    "encode2.bias",
    "encode3.weight",
    "encode3.bias",
    "encode4.weight",
    "encode4.bias",
    "decode4.weight",
    "decode4.bias",
    "decode3.weight",
    "decode3.bias",
    "decode2.weight",
    "decode2.bias",
    "decode1.weight",
    "decode1.bias",
];
/// The code layer (encode4) is linear; the output layer's logistic is part of the loss.
const CODE_LAYER: usize = 3;
const OUTPUT_LAYER: usize = 7;
/// Images per chunk when reconstructing a large batch (each chunk on one worker). Each chunk
/// packs every weight once, so larger chunks pack less per image; 250 makes 4 equal chunks of
/// the benchmark's 1,000 images (an even share for 1, 2 or 4 threads) and 40 of the test set.
/// (Measured against other sizes in docs/performance.md.) The chunk size changes no value:
/// each image's sums are the same.
pub const INFERENCE_CHUNK: usize = 250;
/// Caffe's gaussian filler in `mnist_autoencoder.prototxt`: std 1, `sparse: 15`.
pub const SPARSE: f64 = 15.0;

/// The eight dense layers' parameters, input to output. The same struct holds gradients and
/// momentum buffers.
#[derive(Clone, Debug, PartialEq)]
pub struct Autoencoder<T = f32> {
    pub layers: Vec<DenseParams<T>>, // layer l: weight (LAYER_SIZES[l+1], LAYER_SIZES[l]), bias (LAYER_SIZES[l+1])
}

/// Everything the forward pass keeps for the backward pass of `N` images.
#[derive(Clone, Debug)]
pub struct AutoencoderCache<T> {
    pub input_dropout: Option<DropoutCache<T, Ix2>>, // mask (N,784), training only
    pub dense: Vec<DenseCache<T>>,                   // layer l: its input (N, LAYER_SIZES[l])
    pub sigmoid: Vec<Option<SigmoidCache<T, Ix2>>>, // layer l: its logistic output, None for the code and output layers
}

impl<T: Scalar> Autoencoder<T> {
    pub fn zeros() -> Self {
        Autoencoder {
            layers: (0..8)
                .map(|l| DenseParams::zeros(LAYER_SIZES[l + 1], LAYER_SIZES[l]))
                .collect(),
        }
    }

    /// Caffe's `gaussian` filler with `std: 1, sparse: 15` (`include/caffe/filler.hpp`): each
    /// weight N(0, 1), then kept with probability `15 / num_outputs` (Caffe's formula: its comment
    /// speaks of 15 non-zero *inputs* per output, but it divides by the number of outputs, so
    /// encode1 keeps 1.5% of its weights and encode4 half of them); biases 0. Layers drawn in
    /// order from one seeded stream, each weight matrix then its mask.
    pub fn caffe_sparse_gaussian(rng: &mut ChaCha8Rng) -> Self {
        let mut net = Self::zeros();
        for layer in &mut net.layers {
            let (outputs, inputs) = layer.weight.dim();
            let draw = Array2::<f64>::random_using((outputs, inputs), StandardNormal, rng);
            let keep = Bernoulli::new((SPARSE / outputs as f64).min(1.0)).expect("probability");
            let mask = Array2::random_using((outputs, inputs), keep, rng);
            ndarray::Zip::from(&mut layer.weight)
                .and(&draw)
                .and(&mask)
                .for_each(|w, &v, &k| *w = if k { T::of(v) } else { T::zero() });
        }
        net
    }

    /// Converts every tensor to another precision.
    pub fn cast<U: Scalar>(&self) -> Autoencoder<U> {
        Autoencoder {
            layers: self
                .layers
                .iter()
                .map(|l| DenseParams {
                    weight: l.weight.mapv(|v| U::of(v.f64())),
                    bias: l.bias.mapv(|v| U::of(v.f64())),
                })
                .collect(),
        }
    }

    /// Forward pass of `x (N,784)` to the output logits `(N,784)`, keeping every cache. With
    /// `corruption = Some((p, rngs))`, the input is corrupted by dropout at rate `p`, image `n`
    /// drawing its mask from `rngs[n]` (training); without, no corruption (evaluation).
    pub fn forward(
        &self,
        x: ArrayView2<T>,
        corruption: Option<(f64, &mut [ChaCha8Rng])>,
    ) -> (Array2<T>, AutoencoderCache<T>) {
        let (mut h, input_dropout) = match corruption {
            Some((p, rngs)) if p > 0.0 => {
                let (h, c) = dropout::forward(x, p, rngs);
                (h, Some(c))
            }
            _ => (x.to_owned(), None),
        };
        let mut dense_caches = Vec::with_capacity(8);
        let mut sigmoid_caches = Vec::with_capacity(8);
        for (l, p) in self.layers.iter().enumerate() {
            let (z, c) = dense::forward(h, p);
            dense_caches.push(c);
            if l == CODE_LAYER || l == OUTPUT_LAYER {
                h = z;
                sigmoid_caches.push(None);
            } else {
                let (y, c) = sigmoid::forward(z.view());
                h = y;
                sigmoid_caches.push(Some(c));
            }
        }
        let cache = AutoencoderCache {
            input_dropout,
            dense: dense_caches,
            sigmoid: sigmoid_caches,
        };
        (h, cache)
    }

    /// Backward pass from `d_logits (N,784)` (the output layer's logits). With `grads`,
    /// accumulates every parameter gradient into it; with `input_gradient`, returns `dL/dx (N,784)`
    /// (through the corruption mask, if the forward pass was corrupted).
    pub fn backward(
        &self,
        d_logits: ArrayView2<T>,
        cache: &AutoencoderCache<T>,
        mut grads: Option<&mut Autoencoder<T>>,
        input_gradient: bool,
    ) -> Option<Array2<T>> {
        let mut d = d_logits.to_owned();
        for l in (0..self.layers.len()).rev() {
            if let Some(c) = &cache.sigmoid[l] {
                d = sigmoid::backward(d.view(), c);
            }
            if let Some(g) = grads.as_deref_mut() {
                dense::backward_params(d.view(), &cache.dense[l], &mut g.layers[l]);
            }
            if l > 0 || input_gradient {
                d = dense::backward_input(d.view(), &self.layers[l]);
            }
        }
        if !input_gradient {
            return None;
        }
        Some(match &cache.input_dropout {
            Some(c) => dropout::backward(d.view(), c),
            None => d,
        })
    }

    /// The reconstruction `sigmoid(logits)` of `x (N,784)`: through the weights as they are
    /// (`wt` None; each layer cuts its product into parallel pieces), or through the weights
    /// transposed by [`Self::transposed_weights`], one product per layer (for a chunk run on one
    /// worker inside `serial`). The same bits either way.
    fn reconstruct_rows(&self, mut h: Array2<T>, wt: Option<&[Array2<T>]>) -> Array2<T> {
        for (l, p) in self.layers.iter().enumerate() {
            h = match wt {
                Some(wt) => dense::infer_transposed(h.view(), wt[l].view(), p.bias.view()),
                None => dense::infer(h.view(), p),
            };
            if l != CODE_LAYER {
                sigmoid::infer_in_place(&mut h);
            }
        }
        h
    }

    /// Every layer's `W^T (I, O)` in standard layout: the right operand `matrixmultiply` packs
    /// by contiguous copies (`kernels::transpose`). Made once per reconstruction call and shared
    /// by its chunks.
    fn transposed_weights(&self) -> Vec<Array2<T>> {
        self.layers
            .par_iter()
            .map(|p| transpose(p.weight.view()))
            .collect()
    }

    /// The reconstruction of images `(N,1,28,28)`. Up to [`INFERENCE_CHUNK`] images go through
    /// the layers as they are, each layer cutting its products into parallel pieces (for so few
    /// images a transpose of the weights would cost about what it saves); more go in chunks of
    /// [`INFERENCE_CHUNK`] side by side, each on one worker through the transposed weights. Both
    /// give the bits of the training-time forward pass followed by the logistic
    /// (`chunked_reconstruction_equals_one_pass`).
    pub fn reconstruct(&self, x: ArrayView4<T>) -> Array4<T> {
        let n = x.dim().0;
        let flat = flatten(x);
        let out = if n <= INFERENCE_CHUNK {
            self.reconstruct_rows(flat, None)
        } else {
            let wt = self.transposed_weights();
            let mut out = Array2::zeros((n, PIXELS));
            out.axis_chunks_iter_mut(Axis(0), INFERENCE_CHUNK)
                .into_par_iter()
                .zip(
                    flat.axis_chunks_iter(Axis(0), INFERENCE_CHUNK)
                        .into_par_iter(),
                )
                .for_each(|(mut o, xc)| {
                    o.assign(&serial(|| self.reconstruct_rows(xc.to_owned(), Some(&wt))))
                });
            out
        };
        out.into_shape_with_order((n, 1, IMAGE_SIDE, IMAGE_SIDE))
            .expect("784 pixels")
    }

    /// The mean over the images of each one's reconstruction loss against itself (nats).
    pub fn reconstruction_loss(&self, x: ArrayView4<T>) -> T {
        let n = x.dim().0;
        let flat = flatten(x);
        let losses: Vec<T> = flat
            .axis_chunks_iter(Axis(0), INFERENCE_CHUNK)
            .into_par_iter()
            .map(|xc| {
                serial(|| {
                    let (z, _) = self.forward(xc, None);
                    sigmoid_xent::forward(z.view(), xc).0.sum()
                })
            })
            .collect();
        losses.into_iter().fold(T::zero(), |a, b| a + b) / T::of(n.max(1) as f64)
    }

    /// The batch-mean reconstruction loss of `x (N,1,28,28)` corrupted by input dropout at rate
    /// `p` (image `n`'s mask from `rngs[n]`), against the clean `x`, and its gradient with respect
    /// to every parameter.
    pub fn loss_and_gradients(
        &self,
        x: ArrayView4<T>,
        p: f64,
        rngs: &mut [ChaCha8Rng],
    ) -> (T, Autoencoder<T>) {
        let (loss, d_logits, cache) = self.training_loss(x, p, rngs);
        let mut grads = Autoencoder::zeros();
        self.backward(d_logits.view(), &cache, Some(&mut grads), false);
        (loss, grads)
    }

    /// The training forward pass of [`Self::loss_and_gradients`]: the batch-mean loss, its
    /// gradient with respect to the output logits `(N,784)`, and the caches.
    fn training_loss(
        &self,
        x: ArrayView4<T>,
        p: f64,
        rngs: &mut [ChaCha8Rng],
    ) -> (T, Array2<T>, AutoencoderCache<T>) {
        let n = x.dim().0;
        let flat = flatten(x);
        let scale = T::one() / T::of(n as f64);
        let (z, cache) = self.forward(flat.view(), Some((p, rngs)));
        let (losses, xent) = sigmoid_xent::forward(z.view(), flat.view());
        let d_logits = sigmoid_xent::backward(&xent, flat.view(), scale);
        (losses.sum() * scale, d_logits, cache)
    }

    /// [`Self::loss_and_gradients`] followed by the solver's step on every tensor
    /// (`Nesterov::step(self, &grads, velocity, lr)` for `optim::nesterov::Nesterov`), fused:
    /// going down the layers, each layer's input gradient is taken with its old weights, then its
    /// weight gradient is made piece by piece and applied at once (`dense::
    /// backward_params_then_update`), so the gradient is never whole in memory and never zeroed
    /// or read back from it. The same bits as the two calls (`optim::nesterov`'s test
    /// `fused_step_equals_gradients_then_step`). The solver is passed in ([`TensorUpdate`]):
    /// the optimisers sit above the models. Returns the loss; a non-finite loss leaves the
    /// weights and velocity untouched.
    pub fn fused_nesterov_step(
        &mut self,
        x: ArrayView4<T>,
        p: f64,
        rngs: &mut [ChaCha8Rng],
        solver: &(impl TensorUpdate<T> + Sync),
        velocity: &mut Autoencoder<T>,
        lr: f64,
    ) -> T {
        let (loss, mut d, cache) = self.training_loss(x, p, rngs);
        if !loss.is_finite() {
            return loss;
        }
        for l in (0..self.layers.len()).rev() {
            if let Some(c) = &cache.sigmoid[l] {
                d = sigmoid::backward(d.view(), c);
            }
            // Layer l's input gradient before its weights change; none for the first layer.
            let d_input = (l > 0).then(|| dense::backward_input(d.view(), &self.layers[l]));
            let (weight, bias) = (TENSOR_NAMES[2 * l], TENSOR_NAMES[2 * l + 1]);
            dense::backward_params_then_update(
                d.view(),
                &cache.dense[l],
                &mut self.layers[l],
                &mut velocity.layers[l],
                |w, g, v| solver.update_named(weight, w, g, v, lr),
                |b, g, v| solver.update_named(bias, b, g, v, lr),
            );
            if let Some(di) = d_input {
                d = di;
            }
        }
        loss
    }

    /// The vector-Jacobian product of the reconstruction at `x (N,1,28,28)`: given
    /// `d_out = dL/d(reconstruction)`, returns `dL/dx`. The reconstruction is `y = sigmoid(z)`,
    /// so `dL/dz = d_out * y (1 - y)`, then the chain back through the eight layers.
    pub fn reconstruction_vjp(&self, x: ArrayView4<T>, d_out: ArrayView4<T>) -> Array4<T> {
        let (_, kept) = self.reconstruct_keeping(x);
        self.reconstruction_vjp_kept(&kept, d_out)
    }

    /// The reconstruction of `x (N,1,28,28)`, keeping what [`Self::reconstruction_vjp_kept`]
    /// needs, so that a pipeline's forward pass is not run again for its backward pass.
    pub fn reconstruct_keeping(&self, x: ArrayView4<T>) -> (Array4<T>, ReconstructionCache<T>) {
        let n = x.dim().0;
        let (z, cache) = self.forward(flatten(x).view(), None);
        let output = sigmoid::infer(z.view());
        let images = output
            .clone()
            .into_shape_with_order((n, 1, IMAGE_SIDE, IMAGE_SIDE))
            .expect("784 pixels");
        (images, ReconstructionCache { cache, output })
    }

    /// `dL/dx` from `d_out = dL/d(reconstruction)`: `dL/dz = d_out * y (1 - y)` at the output
    /// logits, then the chain back through the eight layers.
    pub fn reconstruction_vjp_kept(
        &self,
        kept: &ReconstructionCache<T>,
        d_out: ArrayView4<T>,
    ) -> Array4<T> {
        let n = d_out.dim().0;
        let d_out = flatten(d_out);
        let d_z = ndarray::Zip::from(&d_out)
            .and(&kept.output)
            .par_map_collect(|&g, &y| g * y * (T::one() - y));
        let dx = self
            .backward(d_z.view(), &kept.cache, None, true)
            .expect("input gradient requested");
        dx.into_shape_with_order((n, 1, IMAGE_SIDE, IMAGE_SIDE))
            .expect("784 pixels")
    }
}

/// What a reconstruction keeps for its vector-Jacobian product.
#[derive(Clone, Debug)]
pub struct ReconstructionCache<T> {
    pub cache: AutoencoderCache<T>,
    pub output: Array2<T>, // (N,784): the reconstruction y
}

/// Images `(N,1,28,28)` as rows of pixels `(N,784)`, in (row, column) order.
fn flatten<T: Scalar>(x: ArrayView4<T>) -> Array2<T> {
    let n = x.dim().0;
    x.as_standard_layout()
        .into_owned()
        .into_shape_with_order((n, PIXELS))
        .expect("28x28 images")
}

impl<T: Scalar> Parameters<T> for Autoencoder<T> {
    fn parameters(&self) -> Vec<Parameter<'_, T>> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(l, p)| {
                [
                    Parameter {
                        name: TENSOR_NAMES[2 * l],
                        data: p.weight.view().into_dyn(),
                    },
                    Parameter {
                        name: TENSOR_NAMES[2 * l + 1],
                        data: p.bias.view().into_dyn(),
                    },
                ]
            })
            .collect()
    }

    fn parameters_mut(&mut self) -> Vec<ParameterMut<'_, T>> {
        self.layers
            .iter_mut()
            .enumerate()
            .flat_map(|(l, p)| {
                [
                    ParameterMut {
                        name: TENSOR_NAMES[2 * l],
                        data: p.weight.view_mut().into_dyn(),
                    },
                    ParameterMut {
                        name: TENSOR_NAMES[2 * l + 1],
                        data: p.bias.view_mut().into_dyn(),
                    },
                ]
            })
            .collect()
    }
}

impl Network for Autoencoder<f32> {
    const FORMAT: &'static str = "advmnist-dae";
    const DESCRIPTION: &'static str = "a denoising autoencoder";
    const ARCHITECTURE: &'static str = "stacked denoising autoencoder 784-1000-500-250-30-250-500-1000-784: logistic hidden units, linear code, logistic output, cross-entropy";
    fn zeros_like_network() -> Self {
        Autoencoder::zeros()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{stream, Purpose};
    use crate::testutil::gradcheck::{assert_gradient_matches, numeric_gradient};
    use crate::testutil::random_array;
    use ndarray::Ix4;

    fn small_net() -> Autoencoder<f64> {
        // Caffe's sparse filler makes std-1 weights: saturated logistic units whose finite
        // differences are still exact enough in f64; scale them down so the check exercises the
        // curved part of every unit.
        let mut net = Autoencoder::<f64>::caffe_sparse_gaussian(&mut stream(4, Purpose::Init, 0));
        for (l, p) in net.layers.iter_mut().enumerate() {
            p.weight.mapv_inplace(|w| 0.3 * w);
            p.bias = random_array((p.bias.len(),), 10 + l as u64);
        }
        net
    }

    #[test]
    fn input_gradient_matches_finite_differences() {
        let net = small_net();
        let x = random_array::<f64, Ix4>((1, 1, IMAGE_SIDE, IMAGE_SIDE), 3).mapv(|v| 0.5 + 0.5 * v);
        let g = random_array::<f64, Ix4>((1, 1, IMAGE_SIDE, IMAGE_SIDE), 5);
        let analytic = net.reconstruction_vjp(x.view(), g.view());
        let numeric = numeric_gradient(&x, &g, |x| net.reconstruct(x.view()));
        assert_gradient_matches("d<g, reconstruction>/dx", &analytic.into_dyn(), &numeric);
    }

    #[test]
    fn parameter_gradients_match_finite_differences_for_a_fixed_mask() {
        let net = small_net();
        let x = random_array::<f64, Ix4>((3, 1, IMAGE_SIDE, IMAGE_SIDE), 6).mapv(|v| 0.5 + 0.5 * v);
        let rngs = || {
            (0..3)
                .map(|i| stream(9, Purpose::Dropout, i))
                .collect::<Vec<_>>()
        };
        let (_, grads) = net.loss_and_gradients(x.view(), 0.2, &mut rngs());
        // Spot-check entries of every tensor (the full check would need 2.8M forward passes).
        for (t, name) in TENSOR_NAMES.iter().enumerate() {
            let count = grads.parameters()[t].data.len();
            for k in 0..4 {
                let i = (k * 7919 + t * 31) % count;
                let mut plus = net.clone();
                let mut minus = net.clone();
                // The loss sums 2,352 pixel terms (about 613 here), so each evaluation carries
                // rounding of order 1e-13 that the difference quotient divides by 2h: measured on
                // encode4.bias[7], h = 1e-6 was off by 1e-6 while h = 1e-3 and 1e-4 agreed with
                // the analytic value to 3e-10 and 1.3e-9. Truncation error at h = 1e-4 is ~h^2.
                let h = 1e-4;
                plus.parameters_mut()[t]
                    .data
                    .as_slice_memory_order_mut()
                    .unwrap()[i] += h;
                minus.parameters_mut()[t]
                    .data
                    .as_slice_memory_order_mut()
                    .unwrap()[i] -= h;
                let lp = plus.loss_and_gradients(x.view(), 0.2, &mut rngs()).0;
                let lm = minus.loss_and_gradients(x.view(), 0.2, &mut rngs()).0;
                let numeric = (lp - lm) / (2.0 * h);
                let analytic = grads.parameters()[t].data.as_slice_memory_order().unwrap()[i];
                assert!(
                    (analytic - numeric).abs()
                        <= crate::testutil::gradcheck::TOL * (1.0 + numeric.abs()),
                    "{name} [{i}]: analytic {analytic}, numeric {numeric}"
                );
            }
        }
    }

    #[test]
    fn sparse_filler_keeps_fifteen_over_outputs() {
        let net = Autoencoder::<f32>::caffe_sparse_gaussian(&mut stream(1, Purpose::Init, 0));
        for (l, p) in net.layers.iter().enumerate() {
            let kept = p.weight.iter().filter(|&&w| w != 0.0).count() as f64;
            let (o, i) = p.weight.dim();
            let q = (SPARSE / o as f64).min(1.0);
            let expected = q * (o * i) as f64;
            let sd = (q * (1.0 - q) * (o * i) as f64).sqrt().max(1.0);
            assert!(
                (kept - expected).abs() < 5.0 * sd,
                "layer {l}: {kept} non-zero weights, expected {expected:.0} +- {sd:.0}"
            );
            assert!(p.bias.iter().all(|&b| b == 0.0));
        }
    }

    #[test]
    fn chunked_reconstruction_equals_one_pass() {
        let net = Autoencoder::<f32>::caffe_sparse_gaussian(&mut stream(2, Purpose::Init, 0));
        // 530 images: two whole chunks and a short one through the transposed weights; the
        // first 7 alone through the layers' pieces.
        let x = random_array::<f32, Ix4>((530, 1, IMAGE_SIDE, IMAGE_SIDE), 8).mapv(|v| v.abs());
        let whole = net.reconstruct(x.view());
        let flat = x.clone().into_shape_with_order((530, PIXELS)).unwrap();
        let (z, _) = net.forward(flat.view(), None);
        let one = sigmoid::infer(z.view())
            .into_shape_with_order((530, 1, IMAGE_SIDE, IMAGE_SIDE))
            .unwrap();
        assert_eq!(whole, one);
        let few = net.reconstruct(x.slice(ndarray::s![..7, .., .., ..]));
        assert_eq!(few, one.slice(ndarray::s![..7, .., .., ..]));
    }
}
