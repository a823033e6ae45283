//! LeNet as in Caffe's `examples/mnist/lenet_train_test.prototxt`:
//!
//! ```text
//! x (N,1,28,28) -> [dropout input] -> conv1 20@5x5 (N,20,24,24) -> max-pool 2 (N,20,12,12)
//!   -> [dropout conv1] -> conv2 50@5x5 (N,50,8,8) -> max-pool 2 (N,50,4,4) -> [dropout conv2]
//!   -> flatten (N,800) in (C,H,W) order, as torch.flatten -> fc1 (N,500) -> ReLU -> [dropout fc1]
//!   -> fc2 (N,10) logits -> [dropout output] -> softmax + cross-entropy
//! ```
//! No ReLU after the convolutions and no padding, as in Caffe's example. The five optional
//! dropout layers are the five places of the study's Table 1 (Input, Conv1, Conv2, Full, Output);
//! each drops units of that layer's *output*. Dropout on the output layer drops logits before the
//! softmax: unusual, but it is what the table lists, so it is offered as such.
//!
//! Parallelism: the convolutional half (conv1 .. pool2, with their dropouts) runs in fixed
//! chunks of [`FEATURE_CHUNK`] images side by side, each chunk through all of its layers on one
//! worker, so its activations stay in that core's cache; the dense half runs on the whole
//! batch, each layer splitting its own products (see `kernels::parallel`). Inference of a large
//! batch runs fixed chunks of [`INFERENCE_CHUNK`] images side by side. Since no piece depends
//! on the number of threads, and the chunks' weight gradients are added in chunk order, every
//! result is bit-identical for any thread count.

use crate::kernels::parallel::serial;
use crate::kernels::scalar::Scalar;
use crate::layers::conv::{self, ConvCache, ConvParams};
use crate::layers::dense::{self, DenseCache, DenseParams};
use crate::layers::dropout::{self, DropoutCache};
use crate::layers::maxpool::{self, MaxPoolCache};
use crate::layers::relu::{self, ReluCache};
use crate::layers::softmax_xent;
use crate::models::params::{Network, Parameters};
pub use crate::models::params::{Parameter, ParameterMut};
use ndarray::{
    s, Array1, Array2, Array4, ArrayView2, ArrayView4, ArrayViewD, ArrayViewMut2, ArrayViewMutD,
    Axis, Ix2, Ix4,
};
use ndarray_rand::rand_distr::Uniform;
use ndarray_rand::RandomExt;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Images per chunk for inference: each chunk runs the whole network on one worker, keeping
/// its activations in cache. Chunks of 32, 50, 100 and 200 were measured (`advmnist bench`,
/// 2 threads, best of 3): 100 was fastest, by about 3%; the chunking changes no result.
pub const INFERENCE_CHUNK: usize = 100;
/// Images per chunk for input gradients, to bound memory: about 40 KB per image at the peak
/// (counted from the array shapes: docs/design.md, "Memory"), so about 10 MB per chunk.
pub const INPUT_GRADIENT_CHUNK: usize = 256;
/// Images per chunk of the convolutional half in the forward and backward passes: one of the
/// convolutions' fixed weight-gradient groups, so a chunk's `dW` is one group's partial sum.
pub const FEATURE_CHUNK: usize = crate::kernels::parallel::IMAGES_PER_SUM;

/// LeNet's parameters, in PyTorch's names and layouts. The same struct holds gradients and
/// momentum buffers.
#[derive(Clone, Debug, PartialEq)]
pub struct LeNet<T> {
    pub conv1: ConvParams<T>, // weight (20,1,5,5), bias (20)
    pub conv2: ConvParams<T>, // weight (50,20,5,5), bias (50)
    pub fc1: DenseParams<T>,  // weight (500,800), bias (500)
    pub fc2: DenseParams<T>,  // weight (10,500), bias (10)
}

/// Names and shapes of LeNet's tensors, in the order used everywhere (files, optimiser, tests).
pub const PARAMETER_SHAPES: [(&str, &[usize]); 8] = [
    ("conv1.weight", &[20, 1, 5, 5]),
    ("conv1.bias", &[20]),
    ("conv2.weight", &[50, 20, 5, 5]),
    ("conv2.bias", &[50]),
    ("fc1.weight", &[500, 800]),
    ("fc1.bias", &[500]),
    ("fc2.weight", &[10, 500]),
    ("fc2.bias", &[10]),
];

/// Dropout rates at the study's five places (Table 1). Each is the probability of dropping a
/// unit of that layer's output at training time; 0 means no dropout layer there.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DropoutRates {
    pub input: f64,
    pub conv1: f64,
    pub conv2: f64,
    pub fc1: f64,
    pub output: f64,
}

impl DropoutRates {
    pub const NONE: DropoutRates = DropoutRates {
        input: 0.0,
        conv1: 0.0,
        conv2: 0.0,
        fc1: 0.0,
        output: 0.0,
    };
    /// Table 1, "Inp": 0.2 on the input pixels only.
    pub const INP: DropoutRates = DropoutRates {
        input: 0.2,
        ..Self::NONE
    };
    /// Table 1, "All": 0.2 on input, conv1, conv2; 0.5 on fc1 ("Full") and the output.
    pub const ALL: DropoutRates = DropoutRates {
        input: 0.2,
        conv1: 0.2,
        conv2: 0.2,
        fc1: 0.5,
        output: 0.5,
    };

    /// A preset name (`none`, `inp`, `all`) or five comma-separated rates
    /// `input,conv1,conv2,fc1,output`, each in [0, 1).
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "none" => return Ok(Self::NONE),
            "inp" => return Ok(Self::INP),
            "all" => return Ok(Self::ALL),
            _ => {}
        }
        let rates: Vec<&str> = text.split(',').collect();
        if rates.len() != 5 {
            return Err(format!(
                "'{text}' is neither a preset (none, inp, all) nor five comma-separated rates input,conv1,conv2,fc1,output"
            ));
        }
        let mut r = [0.0; 5];
        for (slot, s) in r.iter_mut().zip(&rates) {
            let v: f64 = s
                .trim()
                .parse()
                .map_err(|_| format!("dropout rate '{}' is not a number", s.trim()))?;
            if !(0.0..1.0).contains(&v) {
                return Err(format!("dropout rate {v} is outside [0, 1)"));
            }
            *slot = v;
        }
        Ok(DropoutRates {
            input: r[0],
            conv1: r[1],
            conv2: r[2],
            fc1: r[3],
            output: r[4],
        })
    }

    /// The preset's name where there is one, else the five rates.
    pub fn describe(&self) -> String {
        match *self {
            r if r == Self::NONE => "none".into(),
            r if r == Self::INP => "inp".into(),
            r if r == Self::ALL => "all".into(),
            r => format!("{},{},{},{},{}", r.input, r.conv1, r.conv2, r.fc1, r.output),
        }
    }

    pub fn is_none(&self) -> bool {
        *self == Self::NONE
    }
}

/// Everything the forward pass keeps for the backward pass of a (sub-)batch of `N` images.
/// A dropout cache is `None` where that dropout layer is absent (rate 0 or evaluation mode).
#[derive(Clone, Debug)]
pub struct LeNetCache<T> {
    pub features: Vec<FeatureCache<T>>, // one per FEATURE_CHUNK images, in batch order
    pub fc1: DenseCache<T>,             // input (N,800)
    pub relu: ReluCache<T, Ix2>,        // output (N,500)
    pub fc1_dropout: Option<DropoutCache<T, Ix2>>, // mask (N,500)
    pub fc2: DenseCache<T>,             // input (N,500)
    pub output_dropout: Option<DropoutCache<T, Ix2>>, // mask (N,10)
}

/// One chunk's share of the backward pass.
struct FeatureGradients<T> {
    conv1: Option<(Array2<T>, Array1<T>)>, // (dW (20, 25), db (20)), if parameter gradients are wanted
    conv2: Option<(Array2<T>, Array1<T>)>, // (dW (50, 500), db (50)), likewise
    input: Option<Array4<T>>,              // dL/dx (n,1,28,28), if the input gradient is wanted
}

/// The caches of the convolutional half for one chunk of `n <= FEATURE_CHUNK` images.
#[derive(Clone, Debug)]
pub struct FeatureCache<T> {
    pub input_dropout: Option<DropoutCache<T, Ix4>>, // mask (n,1,28,28)
    pub conv1: ConvCache<T>,                         // input (n,1,28,28)
    pub pool1: MaxPoolCache,                         // argmax (n,20,12,12)
    pub conv1_dropout: Option<DropoutCache<T, Ix4>>, // mask (n,20,12,12)
    pub conv2: ConvCache<T>,                         // input (n,20,12,12)
    pub pool2: MaxPoolCache,                         // argmax (n,50,4,4)
    pub conv2_dropout: Option<DropoutCache<T, Ix4>>, // mask (n,50,4,4)
}

/// Training-time dropout: the rates, and one random stream per image of the (sub-)batch.
pub struct Dropout<'a> {
    pub rates: &'a DropoutRates,
    pub rngs: &'a mut [ChaCha8Rng],
}

fn maybe_dropout<T: Scalar, D: ndarray::Dimension + ndarray::RemoveAxis>(
    x: ndarray::Array<T, D>,
    rate: f64,
    dropout: &mut Option<Dropout<'_>>,
) -> (ndarray::Array<T, D>, Option<DropoutCache<T, D>>) {
    match dropout {
        Some(d) if rate > 0.0 => {
            let (y, cache) = dropout::forward(x.view(), rate, d.rngs);
            (y, Some(cache))
        }
        _ => (x, None),
    }
}

fn maybe_dropout_backward<T: Scalar, D: ndarray::Dimension>(
    d: ndarray::Array<T, D>,
    cache: &Option<DropoutCache<T, D>>,
) -> ndarray::Array<T, D> {
    match cache {
        Some(c) => dropout::backward(d.view(), c),
        None => d,
    }
}

impl<T: Scalar> LeNet<T> {
    /// All-zero parameters (gradient accumulators, momentum buffers).
    pub fn zeros() -> Self {
        LeNet {
            conv1: ConvParams::zeros(20, 1, 5),
            conv2: ConvParams::zeros(50, 20, 5),
            fc1: DenseParams::zeros(500, 800),
            fc2: DenseParams::zeros(10, 500),
        }
    }

    /// Caffe's `xavier` filler with its default `variance_norm: FAN_IN`
    /// (`include/caffe/filler.hpp`): each weight uniform in `[-a, a]` with `a = sqrt(3 / fan_in)`,
    /// `fan_in = C*K*K` for a convolution and the input width for a dense layer; biases 0
    /// (`bias_filler { type: "constant" }` in the prototxt). Tensors are drawn in
    /// [`PARAMETER_SHAPES`] order from one seeded ChaCha8 stream.
    pub fn xavier(rng: &mut ChaCha8Rng) -> Self {
        let mut net = Self::zeros();
        for mut p in net.parameters_mut() {
            if p.name.ends_with(".weight") {
                let fan_in: usize = p.data.shape()[1..].iter().product();
                let a = (3.0 / fan_in as f64).sqrt();
                let draw = ndarray::ArrayD::<f64>::random_using(
                    p.data.raw_dim(),
                    Uniform::new_inclusive(-a, a).unwrap(),
                    rng,
                );
                p.data.zip_mut_with(&draw, |w, &v| *w = T::of(v));
            }
        }
        net
    }

    /// The eight tensors with their names, in [`PARAMETER_SHAPES`] order.
    pub fn parameters(&self) -> Vec<Parameter<'_, T>> {
        fn p<'a, T>(name: &'static str, data: ArrayViewD<'a, T>) -> Parameter<'a, T> {
            Parameter { name, data }
        }
        vec![
            p("conv1.weight", self.conv1.weight.view().into_dyn()),
            p("conv1.bias", self.conv1.bias.view().into_dyn()),
            p("conv2.weight", self.conv2.weight.view().into_dyn()),
            p("conv2.bias", self.conv2.bias.view().into_dyn()),
            p("fc1.weight", self.fc1.weight.view().into_dyn()),
            p("fc1.bias", self.fc1.bias.view().into_dyn()),
            p("fc2.weight", self.fc2.weight.view().into_dyn()),
            p("fc2.bias", self.fc2.bias.view().into_dyn()),
        ]
    }

    pub fn parameters_mut(&mut self) -> Vec<ParameterMut<'_, T>> {
        fn p<'a, T>(name: &'static str, data: ArrayViewMutD<'a, T>) -> ParameterMut<'a, T> {
            ParameterMut { name, data }
        }
        vec![
            p("conv1.weight", self.conv1.weight.view_mut().into_dyn()),
            p("conv1.bias", self.conv1.bias.view_mut().into_dyn()),
            p("conv2.weight", self.conv2.weight.view_mut().into_dyn()),
            p("conv2.bias", self.conv2.bias.view_mut().into_dyn()),
            p("fc1.weight", self.fc1.weight.view_mut().into_dyn()),
            p("fc1.bias", self.fc1.bias.view_mut().into_dyn()),
            p("fc2.weight", self.fc2.weight.view_mut().into_dyn()),
            p("fc2.bias", self.fc2.bias.view_mut().into_dyn()),
        ]
    }

    /// The first non-finite value, if any, as (tensor name, flat index, value).
    pub fn first_non_finite(&self) -> Option<(&'static str, usize, f64)> {
        Parameters::first_non_finite(self)
    }

    /// Converts every tensor to another precision (f32 models to f64 for gradient checks).
    pub fn cast<U: Scalar>(&self) -> LeNet<U> {
        let c = |a: &Array4<T>| a.mapv(|v| U::of(v.f64()));
        let d = |a: &Array2<T>| a.mapv(|v| U::of(v.f64()));
        let b = |a: &Array1<T>| a.mapv(|v| U::of(v.f64()));
        LeNet {
            conv1: ConvParams {
                weight: c(&self.conv1.weight),
                bias: b(&self.conv1.bias),
            },
            conv2: ConvParams {
                weight: c(&self.conv2.weight),
                bias: b(&self.conv2.bias),
            },
            fc1: DenseParams {
                weight: d(&self.fc1.weight),
                bias: b(&self.fc1.bias),
            },
            fc2: DenseParams {
                weight: d(&self.fc2.weight),
                bias: b(&self.fc2.bias),
            },
        }
    }

    /// Forward pass of a (sub-)batch `x (N,1,28,28)`, keeping every cache. With `dropout`,
    /// training mode; without, evaluation mode (dropout is the identity).
    ///
    /// The convolutional half runs in fixed chunks of [`FEATURE_CHUNK`] images side by side,
    /// each chunk through conv1 .. pool2 on one worker, so its activations stay in that core's
    /// cache from layer to layer; the dense half then runs on the whole batch.
    pub fn forward(
        &self,
        x: ArrayView4<T>,
        dropout: Option<Dropout<'_>>,
    ) -> (Array2<T>, LeNetCache<T>) {
        let n = x.dim().0;
        let (rates, mut rngs) = match dropout {
            Some(d) => (*d.rates, Some(d.rngs)),
            None => (DropoutRates::NONE, None),
        };
        let mut flat = Array2::zeros((n, 800));
        let mut chunk_rngs: Vec<Option<&mut [ChaCha8Rng]>> = match rngs.as_deref_mut() {
            Some(r) => r.chunks_mut(FEATURE_CHUNK).map(Some).collect(),
            None => (0..n.div_ceil(FEATURE_CHUNK)).map(|_| None).collect(),
        };
        // conv2's weights in its kernel's layout, made once for every chunk of the batch.
        let conv2 = conv::Prepared::new(&self.conv2);
        let features = flat
            .axis_chunks_iter_mut(Axis(0), FEATURE_CHUNK)
            .into_par_iter()
            .zip(x.axis_chunks_iter(Axis(0), FEATURE_CHUNK).into_par_iter())
            .zip(chunk_rngs.par_iter_mut())
            .map(|((out, xc), r)| {
                let dropout = r.as_deref_mut().map(|rngs| Dropout {
                    rates: &rates,
                    rngs,
                });
                serial(|| self.features_forward(xc, dropout, &conv2, out))
            })
            .collect();
        drop(chunk_rngs);
        let mut dropout = rngs.map(|rngs| Dropout {
            rates: &rates,
            rngs,
        });
        let (h, fc1) = dense::forward(flat, &self.fc1);
        let (h, relu) = relu::forward(h.view());
        let (h, fc1_dropout) = maybe_dropout(h, rates.fc1, &mut dropout);
        let (h, fc2) = dense::forward(h, &self.fc2);
        let (logits, output_dropout) = maybe_dropout(h, rates.output, &mut dropout);
        let cache = LeNetCache {
            features,
            fc1,
            relu,
            fc1_dropout,
            fc2,
            output_dropout,
        };
        (logits, cache)
    }

    /// conv1 .. pool2 (with their dropouts) for one chunk `x (n,1,28,28)`, the flattened
    /// features written to `out (n,800)`; `conv2` is `self.conv2` prepared for the batch.
    fn features_forward(
        &self,
        x: ArrayView4<T>,
        mut dropout: Option<Dropout<'_>>,
        conv2: &conv::Prepared<'_, T>,
        mut out: ArrayViewMut2<T>,
    ) -> FeatureCache<T> {
        let rates = dropout
            .as_ref()
            .map(|d| *d.rates)
            .unwrap_or(DropoutRates::NONE);
        let n = x.dim().0;
        // Each layer's input is moved into its cache (no copy): nothing else needs it.
        let (h, input_dropout) = maybe_dropout(x.to_owned(), rates.input, &mut dropout);
        let (h, conv1) = conv::forward(h, &self.conv1);
        let (h, pool1) = maxpool::forward(h.view());
        let (h, conv1_dropout) = maybe_dropout(h, rates.conv1, &mut dropout);
        let (h, conv2) = conv::forward_prepared(h, conv2);
        let (h, pool2) = maxpool::forward(h.view());
        let (h, conv2_dropout) = maybe_dropout(h, rates.conv2, &mut dropout);
        out.assign(
            &h.into_shape_with_order((n, 800))
                .expect("pool2 output is contiguous"),
        );
        FeatureCache {
            input_dropout,
            conv1,
            pool1,
            conv1_dropout,
            conv2,
            pool2,
            conv2_dropout,
        }
    }

    /// Backward pass from `d_logits (N,10)`, the whole chain from the loss to the pixels.
    /// With `grads`, accumulates every parameter gradient into it; with `input_gradient`,
    /// returns `dL/dx (N,1,28,28)`. Work that neither needs is skipped.
    ///
    /// The dense half runs on the whole batch, the convolutional half in the forward's chunks
    /// side by side; each chunk's convolution weight gradients are summed into `grads` in chunk
    /// order afterwards (a chunk is one of the convolutions' fixed
    /// [`IMAGES_PER_SUM`](crate::kernels::parallel::IMAGES_PER_SUM) groups, so this is the sum
    /// those layers would form over the whole batch).
    pub fn backward(
        &self,
        d_logits: ArrayView2<T>,
        cache: &LeNetCache<T>,
        mut grads: Option<&mut LeNet<T>>,
        input_gradient: bool,
    ) -> Option<Array4<T>> {
        let d = maybe_dropout_backward(d_logits.to_owned(), &cache.output_dropout);
        if let Some(g) = grads.as_deref_mut() {
            dense::backward_params(d.view(), &cache.fc2, &mut g.fc2);
        }
        let d = dense::backward_input(d.view(), &self.fc2);
        let d = maybe_dropout_backward(d, &cache.fc1_dropout);
        let d = relu::backward(d.view(), &cache.relu);
        if let Some(g) = grads.as_deref_mut() {
            dense::backward_params(d.view(), &cache.fc1, &mut g.fc1);
        }
        let d = dense::backward_input(d.view(), &self.fc1);
        let want_params = grads.is_some();
        let chunks: Vec<_> = d
            .axis_chunks_iter(Axis(0), FEATURE_CHUNK)
            .into_par_iter()
            .zip(cache.features.par_iter())
            .map(|(dc, fc)| serial(|| self.features_backward(dc, fc, want_params, input_gradient)))
            .collect();
        if let Some(g) = grads {
            for chunk in &chunks {
                for (grad, p) in [(&chunk.conv1, &mut g.conv1), (&chunk.conv2, &mut g.conv2)] {
                    let (dw, db) = grad.as_ref().expect("parameter gradients requested");
                    let (o, c, k, _) = p.weight.dim();
                    let mut w = p
                        .weight
                        .view_mut()
                        .into_shape_with_order((o, c * k * k))
                        .expect("standard layout");
                    w += dw;
                    p.bias += db;
                }
            }
        }
        if !input_gradient {
            return None;
        }
        let parts: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                chunk
                    .input
                    .as_ref()
                    .expect("input gradient requested")
                    .view()
            })
            .collect();
        Some(ndarray::concatenate(Axis(0), &parts).expect("chunks of one batch"))
    }

    /// The convolutional half backward for one chunk from `d (n,800)`: the chunk's conv1 and
    /// conv2 parameter gradients (if `params`) and its input gradient (if `input_gradient`).
    fn features_backward(
        &self,
        d: ArrayView2<T>,
        cache: &FeatureCache<T>,
        params: bool,
        input_gradient: bool,
    ) -> FeatureGradients<T> {
        let n = d.nrows();
        // Un-flatten (n,800) -> (n,50,4,4): the inverse of the forward's (C,H,W) flatten.
        let d = d
            .into_shape_with_order((n, 50, 4, 4))
            .expect("contiguous")
            .to_owned();
        let d = maybe_dropout_backward(d, &cache.conv2_dropout);
        let d = maxpool::backward(d.view(), &cache.pool2);
        // The chunk is one of the convolutions' fixed groups (FEATURE_CHUNK = IMAGES_PER_SUM).
        let conv2 = params.then(|| {
            conv::group_param_gradients(d.view(), cache.conv2.input.view(), self.conv2.kernel())
        });
        let d = conv::backward_input(d.view(), &cache.conv2, &self.conv2);
        let d = maybe_dropout_backward(d, &cache.conv1_dropout);
        // conv1's weight gradient straight from pool1's gradient: conv1's own output gradient
        // (pool1's backward, three quarters zeros) is built only for the input gradient.
        let conv1 = params.then(|| {
            conv::group_param_gradients_through_pool(
                d.view(),
                cache.pool1.argmax.view(),
                cache.conv1.input.view(),
                self.conv1.kernel(),
            )
        });
        let input = input_gradient.then(|| {
            let d = maxpool::backward(d.view(), &cache.pool1);
            let d = conv::backward_input(d.view(), &cache.conv1, &self.conv1);
            maybe_dropout_backward(d, &cache.input_dropout)
        });
        FeatureGradients {
            conv1,
            conv2,
            input,
        }
    }

    /// Logits of a (sub-)batch in evaluation mode, without caches, on the calling thread.
    pub fn logits_serial(&self, x: ArrayView4<T>) -> Array2<T> {
        self.logits_serial_prepared(x, &conv::Prepared::new(&self.conv2))
    }

    /// [`LeNet::logits_serial`] with `conv2` (`self.conv2`) prepared once for several calls.
    fn logits_serial_prepared(&self, x: ArrayView4<T>, conv2: &conv::Prepared<'_, T>) -> Array2<T> {
        serial(|| {
            let n = x.dim().0;
            let h = maxpool::infer(conv::infer(x, &self.conv1).view());
            let h = maxpool::infer(conv::infer_prepared(h.view(), conv2).view());
            let flat = h.into_shape_with_order((n, 800)).expect("contiguous");
            let h = relu::infer(dense::infer(flat.view(), &self.fc1).view());
            dense::infer(h.view(), &self.fc2)
        })
    }

    /// Logits `(N,10)` of a batch in evaluation mode, chunks in parallel.
    pub fn logits(&self, x: ArrayView4<T>) -> Array2<T> {
        let n = x.dim().0;
        let mut out = Array2::zeros((n, crate::data::CLASSES));
        let conv2 = conv::Prepared::new(&self.conv2);
        out.axis_chunks_iter_mut(Axis(0), INFERENCE_CHUNK)
            .into_par_iter()
            .zip(x.axis_chunks_iter(Axis(0), INFERENCE_CHUNK).into_par_iter())
            .for_each(|(mut o, xc)| o.assign(&self.logits_serial_prepared(xc, &conv2)));
        out
    }

    /// Predicted classes (argmax of the logits; the first maximum on ties).
    pub fn predict(&self, x: ArrayView4<T>) -> Vec<u8> {
        argmax_rows(self.logits(x).view())
    }

    /// Each image's own loss `(N)` and its gradient with respect to that image `(N,1,28,28)`,
    /// in evaluation mode (no dropout), as the gradient-sign attack needs. The gradient is of
    /// each image's loss, not of the batch mean, so it does not shrink with the batch size.
    /// Runs [`INPUT_GRADIENT_CHUNK`] images at a time to bound memory.
    pub fn input_gradient(&self, x: ArrayView4<T>, labels: &[u8]) -> (Array1<T>, Array4<T>) {
        let n = x.dim().0;
        assert_eq!(labels.len(), n, "one label per image");
        let mut losses = Array1::zeros(n);
        let mut grad = Array4::zeros(x.raw_dim());
        for start in (0..n).step_by(INPUT_GRADIENT_CHUNK) {
            let range = start..(start + INPUT_GRADIENT_CHUNK).min(n);
            let labels = &labels[range.clone()];
            let (logits, cache) = self.forward(x.slice(s![range.clone(), .., .., ..]), None);
            let (chunk_losses, xent) = softmax_xent::forward(logits.view(), labels);
            let d_logits = softmax_xent::backward(&xent, labels, T::one());
            let dx = self
                .backward(d_logits.view(), &cache, None, true)
                .expect("input gradient requested");
            grad.slice_mut(s![range.clone(), .., .., ..]).assign(&dx);
            losses.slice_mut(s![range]).assign(&chunk_losses);
        }
        (losses, grad)
    }

    /// The batch-mean loss and its gradient with respect to every parameter, with optional
    /// training-time dropout (`rngs[n]` is image `n`'s stream).
    pub fn loss_and_gradients(
        &self,
        x: ArrayView4<T>,
        labels: &[u8],
        rates: &DropoutRates,
        rngs: &mut [ChaCha8Rng],
    ) -> (T, LeNet<T>) {
        let n = x.dim().0;
        assert_eq!(labels.len(), n, "one label per image");
        assert_eq!(rngs.len(), n, "one random stream per image");
        let scale = T::one() / T::of(n as f64);
        let dropout = (!rates.is_none()).then_some(Dropout { rates, rngs });
        let (logits, cache) = self.forward(x, dropout);
        let (losses, xent) = softmax_xent::forward(logits.view(), labels);
        let d_logits = softmax_xent::backward(&xent, labels, scale);
        let mut grads = LeNet::zeros();
        self.backward(d_logits.view(), &cache, Some(&mut grads), false);
        (losses.sum() * scale, grads)
    }

    /// The weighted loss `sum_n w_n l_n` over the images of `x (N,1,28,28)` and its gradient
    /// with respect to every parameter, `weights (N)` one per image; with `dropout`, training
    /// mode (one stream per image), without, evaluation mode. A mean is the case `w_n = 1/N`;
    /// on-line adversarial training (`train::online`) weighs a batch `[x; x_adv]` of `2B`
    /// images by `alpha / B` and `(1 - alpha) / B`. An image of weight 0 adds nothing to the
    /// gradient: its logits' gradient row is zero, so every sum over the batch it enters adds
    /// zeros.
    pub fn weighted_loss_and_gradients(
        &self,
        x: ArrayView4<T>,
        labels: &[u8],
        weights: &[T],
        dropout: Option<Dropout<'_>>,
    ) -> (T, LeNet<T>) {
        let n = x.dim().0;
        assert_eq!(labels.len(), n, "one label per image");
        assert_eq!(weights.len(), n, "one weight per image");
        if let Some(d) = &dropout {
            assert_eq!(d.rngs.len(), n, "one random stream per image");
        }
        let (logits, cache) = self.forward(x, dropout);
        let (losses, xent) = softmax_xent::forward(logits.view(), labels);
        let d_logits = softmax_xent::backward_weighted(&xent, labels, weights);
        let mut grads = LeNet::zeros();
        self.backward(d_logits.view(), &cache, Some(&mut grads), false);
        // In image order, so the loss does not depend on how the batch is split.
        let loss = losses
            .iter()
            .zip(weights)
            .fold(T::zero(), |sum, (&l, &w)| sum + w * l);
        (loss, grads)
    }
}

impl<T: Scalar> Parameters<T> for LeNet<T> {
    fn parameters(&self) -> Vec<Parameter<'_, T>> {
        LeNet::parameters(self)
    }
    fn parameters_mut(&mut self) -> Vec<ParameterMut<'_, T>> {
        LeNet::parameters_mut(self)
    }
}

impl Network for LeNet<f32> {
    const FORMAT: &'static str = "advmnist-lenet";
    const DESCRIPTION: &'static str = "a LeNet";
    const ARCHITECTURE: &'static str =
        "caffe-lenet: conv 20@5x5, maxpool 2, conv 50@5x5, maxpool 2, fc 500, relu, fc 10";
    fn zeros_like_network() -> Self {
        LeNet::zeros()
    }
}

/// Index of the largest value of each row; the first one on ties (as `torch.argmax`).
pub fn argmax_rows<T: Scalar>(z: ArrayView2<T>) -> Vec<u8> {
    z.axis_iter(Axis(0))
        .map(|row| {
            let mut best = 0;
            for (k, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = k;
                }
            }
            best as u8
        })
        .collect()
}

/// Percentage of predictions that differ from the labels.
pub fn error_pct(predictions: &[u8], labels: &[u8]) -> f64 {
    percent_of_labels(predictions, labels, |p, l| p != l)
}

/// Percentage of answers that match the labels (the human study's accuracy of a subject or a
/// model). Counted, not taken as `100 - error_pct`, whose rounding differs.
pub fn accuracy_pct(answers: &[u8], labels: &[u8]) -> f64 {
    percent_of_labels(answers, labels, |a, l| a == l)
}

/// Percentage of `labels` (0 when there are none) whose answer is `counted`.
fn percent_of_labels(answers: &[u8], labels: &[u8], counted: fn(&u8, &u8) -> bool) -> f64 {
    assert_eq!(answers.len(), labels.len());
    let count = answers
        .iter()
        .zip(labels)
        .filter(|(a, l)| counted(a, l))
        .count();
    100.0 * count as f64 / labels.len().max(1) as f64
}
