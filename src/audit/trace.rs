//! Every intermediate tensor of one image's trip through LeNet and back: the forward outputs
//! from the pixels to the loss, the backward gradients from the loss to the pixels, and the
//! parameter gradients, each under one name (see [`NAMING`]) in PyTorch's layout.
//!
//! The trace calls the same layer functions, with the same arguments and in the same order, as
//! `LeNet::forward` and `LeNet::backward` in evaluation mode (no dropout) on a batch of one:
//! conv1 through `kernels::direct`, pool1, conv2 by im2col + GEMM, pool2, fc1, ReLU, fc2, then
//! the backward chain. So its `backward.input` is the bits `LeNet::input_gradient` returns for
//! that image (tested in `tests/integration/audit.rs`), and its parameter gradients are the bits
//! `LeNet::backward` accumulates into zeroed gradients from `d_logits`.
//!
//! Dimension legend: one image (`N = 1`); `C` channels, `H, W` height and width, NCHW.

use crate::data::IMAGE_SIDE;
use crate::kernels::scalar::Scalar;
use crate::layers::conv;
use crate::layers::dense;
use crate::layers::maxpool::{self, MaxPoolCache};
use crate::layers::relu;
use crate::layers::softmax_xent;
use crate::models::file::with_sorted_metadata;
use crate::models::lenet::LeNet;
use ndarray::{Array2, Array4, ArrayD, ArrayView2, ArrayView4};
use std::collections::BTreeMap;

/// The naming scheme of a trace, as written into every trace file's metadata.
pub const NAMING: &str = "forward.X: the output of stage X (forward.input is what the network \
    sees); backward.X = dL/d(forward.X), same shape; grad.P = dL/dP for parameter P (PyTorch's \
    names); forward.poolK.indices: PyTorch's max_pool2d(return_indices=True) indices, the flat \
    position h*W+w of each window's maximum in its input plane; L = -log softmax(logits)[label]; \
    NCHW. A committee: memberK.X is member K's X (memberK.forward.softmax its p_K, \
    memberK.backward.logits = dL/dz_K), committee.logits = log pbar, committee.probs = pbar, \
    committee.loss = L = -log pbar[label], committee.weights = w_K, backward.input = dL/dx. \
    A pipeline: pre.input is the image given to it, preK.output stage K's output (preK.noise \
    the held standard normal draw and preK.noisy = clip(x + sigma noise, 0, 1) for a noisy \
    filter), forward.* to grad.* LeNet's on the last output, backward.preK = dL/d(input of \
    stage K)";

/// The value of the `format` metadata key of a trace file (so that `load_model` refuses one).
pub const TRACE_FORMAT: &str = "advmnist-trace";

/// A traced tensor's values: floats in the trace's precision, or max-pool indices.
#[derive(Clone, Debug, PartialEq)]
pub enum TraceValues<T> {
    Float(ArrayD<T>),
    Index(ArrayD<i64>),
}

/// One named tensor of a trace.
#[derive(Clone, Debug, PartialEq)]
pub struct TracedTensor<T> {
    pub name: String,
    pub values: TraceValues<T>,
}

/// The tensors of one image's trace, in the order they are computed.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace<T> {
    pub label: u8,
    pub tensors: Vec<TracedTensor<T>>,
}

/// Summary statistics of one tensor, the rows of `advmnist trace`'s table.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorStats {
    pub name: String,
    pub shape: Vec<usize>,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub l2: f64,
    pub zeros: usize, // elements exactly equal to 0 (either sign)
    pub len: usize,
    pub is_index: bool, // max-pool indices: mean, L2 and zeros mean nothing and are not printed
}

impl<T: Scalar> Trace<T> {
    pub(crate) fn push(&mut self, name: &str, values: ArrayD<T>) {
        self.tensors.push(TracedTensor {
            name: name.into(),
            values: TraceValues::Float(values),
        });
    }

    fn push_indices(&mut self, name: &str, cache: &MaxPoolCache) {
        let (_, w) = cache.input_hw;
        // PyTorch's index: the flat position in the (H, W) input plane of the window's maximum;
        // `argmax` is the position 0..4 inside the window, row-major (`layers::maxpool`).
        let indices = ArrayD::from_shape_fn(cache.argmax.shape(), |ix| {
            let (i, j, q) = (
                ix[2],
                ix[3],
                cache.argmax[[ix[0], ix[1], ix[2], ix[3]]] as usize,
            );
            ((2 * i + q / 2) * w + 2 * j + q % 2) as i64
        });
        self.tensors.push(TracedTensor {
            name: name.into(),
            values: TraceValues::Index(indices),
        });
    }

    /// The float tensor called `name`, if the trace has one.
    pub fn get(&self, name: &str) -> Option<&ArrayD<T>> {
        self.tensors.iter().find_map(|t| match &t.values {
            TraceValues::Float(a) if t.name == name => Some(a),
            _ => None,
        })
    }

    /// The index tensor called `name`, if the trace has one.
    pub fn get_indices(&self, name: &str) -> Option<&ArrayD<i64>> {
        self.tensors.iter().find_map(|t| match &t.values {
            TraceValues::Index(a) if t.name == name => Some(a),
            _ => None,
        })
    }

    /// Adds a tensor computed outside the network (the clean and perturbed images).
    pub fn insert_front(&mut self, name: &str, values: ArrayD<T>) {
        self.tensors.insert(
            0,
            TracedTensor {
                name: name.into(),
                values: TraceValues::Float(values),
            },
        );
    }

    /// One row of statistics per tensor, in trace order. Sums are taken in f64.
    pub fn stats(&self) -> Vec<TensorStats> {
        self.tensors
            .iter()
            .map(|t| {
                let values: Vec<f64> = match &t.values {
                    TraceValues::Float(a) => a.iter().map(|v| v.f64()).collect(),
                    TraceValues::Index(a) => a.iter().map(|&v| v as f64).collect(),
                };
                let shape = match &t.values {
                    TraceValues::Float(a) => a.shape().to_vec(),
                    TraceValues::Index(a) => a.shape().to_vec(),
                };
                let len = values.len();
                TensorStats {
                    name: t.name.clone(),
                    shape,
                    min: values.iter().cloned().fold(f64::INFINITY, f64::min),
                    max: values.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
                    mean: values.iter().sum::<f64>() / len.max(1) as f64,
                    l2: values.iter().map(|v| v * v).sum::<f64>().sqrt(),
                    zeros: values.iter().filter(|&&v| v == 0.0).count(),
                    len,
                    is_index: matches!(t.values, TraceValues::Index(_)),
                }
            })
            .collect()
    }

    /// The trace as safetensors bytes: floats as F32 or F64 (the trace's precision), indices as
    /// I64, the metadata's keys sorted (so equal traces give equal bytes).
    pub fn to_safetensors(&self, metadata: &BTreeMap<String, String>) -> Vec<u8> {
        use safetensors::tensor::{Dtype, TensorView};
        let float_dtype = if T::NAME == "F64" {
            Dtype::F64
        } else {
            Dtype::F32
        };
        let encoded: Vec<(Dtype, Vec<usize>, Vec<u8>)> = self
            .tensors
            .iter()
            .map(|t| match &t.values {
                TraceValues::Float(a) => {
                    let bytes = a
                        .as_standard_layout()
                        .iter()
                        .flat_map(|&v| {
                            if float_dtype == Dtype::F64 {
                                v.f64().to_le_bytes().to_vec()
                            } else {
                                (v.f64() as f32).to_le_bytes().to_vec()
                            }
                        })
                        .collect();
                    (float_dtype, a.shape().to_vec(), bytes)
                }
                TraceValues::Index(a) => (
                    Dtype::I64,
                    a.shape().to_vec(),
                    a.as_standard_layout()
                        .iter()
                        .flat_map(|v| v.to_le_bytes())
                        .collect(),
                ),
            })
            .collect();
        let views: Vec<(String, TensorView<'_>)> = self
            .tensors
            .iter()
            .zip(&encoded)
            .map(|(t, (dtype, shape, bytes))| {
                (
                    t.name.clone(),
                    TensorView::new(*dtype, shape.clone(), bytes).expect("sizes agree"),
                )
            })
            .collect();
        let mut metadata = metadata.clone();
        metadata.insert("format".into(), TRACE_FORMAT.into());
        metadata.insert("naming".into(), NAMING.into());
        metadata.insert("label".into(), self.label.to_string());
        metadata.insert("precision".into(), T::NAME.to_ascii_lowercase());
        with_sorted_metadata(
            &safetensors::tensor::serialize(views, None).expect("tensors serialize"),
            &metadata,
        )
    }
}

/// What [`trace_forward`] keeps for [`trace_backward`]: the layers' caches of one image.
pub(crate) struct ForwardCaches<T> {
    conv1: conv::ConvCache<T>,
    pool1: MaxPoolCache,
    conv2: conv::ConvCache<T>,
    pool2: MaxPoolCache,
    fc1: dense::DenseCache<T>,
    relu: relu::ReluCache<T, ndarray::Ix2>,
    fc2: dense::DenseCache<T>,
}

/// LeNet's forward pass of one image `x (1,1,28,28)` from conv1 to the logits, each output
/// recorded as `{prefix}forward.X` (the input itself is not recorded: the caller names it).
/// The layer functions, arguments and order of `LeNet::features_forward` then
/// `LeNet::forward` (no dropout).
pub(crate) fn trace_forward<T: Scalar>(
    t: &mut Trace<T>,
    prefix: &str,
    net: &LeNet<T>,
    x: ArrayView4<T>,
) -> (Array2<T>, ForwardCaches<T>) {
    let name = |stage: &str| format!("{prefix}forward.{stage}");
    let (h, conv1) = conv::forward(x.to_owned(), &net.conv1);
    t.push(&name("conv1"), h.clone().into_dyn());
    let (h, pool1) = maxpool::forward(h.view());
    t.push(&name("pool1"), h.clone().into_dyn());
    t.push_indices(&name("pool1.indices"), &pool1);
    let (h, conv2) = conv::forward(h, &net.conv2);
    t.push(&name("conv2"), h.clone().into_dyn());
    let (h, pool2) = maxpool::forward(h.view());
    t.push(&name("pool2"), h.clone().into_dyn());
    t.push_indices(&name("pool2.indices"), &pool2);
    // (C,H,W) order, as torch.flatten.
    let flat = h.into_shape_with_order((1, 800)).expect("contiguous");
    t.push(&name("flatten"), flat.clone().into_dyn());
    let (h, fc1) = dense::forward(flat, &net.fc1);
    t.push(&name("fc1"), h.clone().into_dyn());
    let (h, relu) = relu::forward(h.view());
    t.push(&name("relu"), h.clone().into_dyn());
    let (logits, fc2) = dense::forward(h, &net.fc2);
    t.push(&name("logits"), logits.clone().into_dyn());
    let caches = ForwardCaches {
        conv1,
        pool1,
        conv2,
        pool2,
        fc1,
        relu,
        fc2,
    };
    (logits, caches)
}

/// LeNet's backward pass of one image from `d_logits (1,10)`, any upstream gradient of its
/// logits: `{prefix}backward.logits` down to `{prefix}backward.input`, then
/// `{prefix}grad.P` for every parameter, as `LeNet::backward` with `input_gradient = true` and
/// every parameter gradient. Returns the input gradient `(1,1,28,28)`.
pub(crate) fn trace_backward<T: Scalar>(
    t: &mut Trace<T>,
    prefix: &str,
    net: &LeNet<T>,
    caches: ForwardCaches<T>,
    d_logits: Array2<T>,
) -> Array4<T> {
    let name = |stage: &str| format!("{prefix}backward.{stage}");
    let ForwardCaches {
        conv1,
        pool1,
        conv2,
        pool2,
        fc1,
        relu: relu_cache,
        fc2,
    } = caches;
    t.push(&name("logits"), d_logits.clone().into_dyn());
    let mut g_fc2 = dense::DenseParams::zeros(10, 500);
    dense::backward_params(d_logits.view(), &fc2, &mut g_fc2);
    let d = dense::backward_input(d_logits.view(), &net.fc2);
    t.push(&name("relu"), d.clone().into_dyn());
    let d = relu::backward(d.view(), &relu_cache);
    t.push(&name("fc1"), d.clone().into_dyn());
    let mut g_fc1 = dense::DenseParams::zeros(500, 800);
    dense::backward_params(d.view(), &fc1, &mut g_fc1);
    let d = dense::backward_input(d.view(), &net.fc1);
    t.push(&name("flatten"), d.clone().into_dyn());
    let d = d.into_shape_with_order((1, 50, 4, 4)).expect("contiguous");
    t.push(&name("pool2"), d.clone().into_dyn());
    let d = maxpool::backward(d.view(), &pool2);
    t.push(&name("conv2"), d.clone().into_dyn());
    let (dw2, db2) = conv::group_param_gradients(d.view(), conv2.input.view(), net.conv2.kernel());
    let d = conv::backward_input(d.view(), &conv2, &net.conv2);
    t.push(&name("pool1"), d.clone().into_dyn());
    // conv1's weight gradient straight from pool1's gradient, as LeNet computes it.
    let (dw1, db1) = conv::group_param_gradients_through_pool(
        d.view(),
        pool1.argmax.view(),
        conv1.input.view(),
        net.conv1.kernel(),
    );
    let d = maxpool::backward(d.view(), &pool1);
    t.push(&name("conv1"), d.clone().into_dyn());
    let d = conv::backward_input(d.view(), &conv1, &net.conv1);
    t.push(&name("input"), d.clone().into_dyn());

    // Parameter gradients, in `PARAMETER_SHAPES` order and PyTorch's layouts.
    let grad = |param: &str| format!("{prefix}grad.{param}");
    let conv_weight = |dw: ndarray::Array2<T>, shape: &[usize]| {
        dw.into_shape_with_order(shape.to_vec())
            .expect("(O, C*K*K) is (O, C, K, K) flattened")
    };
    t.push(
        &grad("conv1.weight"),
        conv_weight(dw1, net.conv1.weight.shape()),
    );
    t.push(&grad("conv1.bias"), db1.into_dyn());
    t.push(
        &grad("conv2.weight"),
        conv_weight(dw2, net.conv2.weight.shape()),
    );
    t.push(&grad("conv2.bias"), db2.into_dyn());
    t.push(&grad("fc1.weight"), g_fc1.weight.into_dyn());
    t.push(&grad("fc1.bias"), g_fc1.bias.into_dyn());
    t.push(&grad("fc2.weight"), g_fc2.weight.into_dyn());
    t.push(&grad("fc2.bias"), g_fc2.bias.into_dyn());
    d
}

/// The image's own softmax and cross-entropy from its `logits (1,10)`, recorded as
/// `forward.softmax` and `forward.loss`; returns `d_logits` of that loss (`scale = 1`).
pub(crate) fn trace_loss<T: Scalar>(t: &mut Trace<T>, logits: ArrayView2<T>) -> Array2<T> {
    let labels = [t.label];
    let (loss, xent) = softmax_xent::forward(logits, &labels);
    t.push("forward.softmax", xent.probs.clone().into_dyn());
    // One loss per image: shape (1), as PyTorch's cross_entropy with reduction='none'.
    t.push("forward.loss", loss.into_dyn());
    softmax_xent::backward(&xent, &labels, T::one())
}

/// An empty trace of an image with true label `label`.
pub(crate) fn empty<T>(label: u8) -> Trace<T> {
    assert!(label < 10, "label {label} is not a digit");
    Trace {
        label,
        tensors: Vec::new(),
    }
}

/// Traces one image `x (1,1,28,28)` with its true `label` through `net` in evaluation mode.
///
/// The loss is the image's own cross-entropy (`scale = 1` in `softmax_xent::backward`), as
/// `LeNet::input_gradient` and the attacks use, not a batch mean.
pub fn trace<T: Scalar>(net: &LeNet<T>, x: ArrayView4<T>, label: u8) -> Trace<T> {
    let mut t = empty(label);
    trace_into(&mut t, net, x);
    t
}

/// [`trace`], appended to `t`: `forward.input` .. `forward.loss`, `backward.logits` ..
/// `backward.input`, `grad.*`. Returns the input gradient.
pub(crate) fn trace_into<T: Scalar>(
    t: &mut Trace<T>,
    net: &LeNet<T>,
    x: ArrayView4<T>,
) -> Array4<T> {
    assert_eq!(
        x.dim(),
        (1, 1, IMAGE_SIDE, IMAGE_SIDE),
        "a trace is of one 28x28 image, (1,1,28,28)"
    );
    t.push("forward.input", x.to_owned().into_dyn());
    let (logits, caches) = trace_forward(t, "", net, x);
    let d_logits = trace_loss(t, logits.view());
    trace_backward(t, "", net, caches, d_logits)
}

/// The names a trace without perturbation holds, in order (for docs and tests).
pub fn tensor_names() -> Vec<&'static str> {
    vec![
        "forward.input",
        "forward.conv1",
        "forward.pool1",
        "forward.pool1.indices",
        "forward.conv2",
        "forward.pool2",
        "forward.pool2.indices",
        "forward.flatten",
        "forward.fc1",
        "forward.relu",
        "forward.logits",
        "forward.softmax",
        "forward.loss",
        "backward.logits",
        "backward.relu",
        "backward.fc1",
        "backward.flatten",
        "backward.pool2",
        "backward.conv2",
        "backward.pool1",
        "backward.conv1",
        "backward.input",
        "grad.conv1.weight",
        "grad.conv1.bias",
        "grad.conv2.weight",
        "grad.conv2.bias",
        "grad.fc1.weight",
        "grad.fc1.bias",
        "grad.fc2.weight",
        "grad.fc2.bias",
    ]
}

/// The trace's statistics as the table `advmnist trace` prints.
pub fn format_table(stats: &[TensorStats]) -> String {
    // The name column fits the longest name (22 wide at least, as for one LeNet's tensors).
    let width = stats
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0)
        .max(22);
    let mut out = format!(
        "{:<width$} {:<15} {:>11} {:>11} {:>11} {:>10} {:>13}\n",
        "tensor", "shape", "min", "max", "mean", "L2", "zeros"
    );
    for s in stats {
        let shape = format!(
            "({})",
            s.shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        if s.is_index {
            out.push_str(&format!(
                "{:<width$} {:<15} {:>11} {:>11} {:>11} {:>10} {:>13}\n",
                s.name, shape, s.min, s.max, "-", "-", "-"
            ));
            continue;
        }
        out.push_str(&format!(
            "{:<width$} {:<15} {:>11.3e} {:>11.3e} {:>11.3e} {:>10.3e} {:>13}\n",
            s.name,
            shape,
            s.min,
            s.max,
            s.mean,
            s.l2,
            format!("{}/{}", s.zeros, s.len)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::random_array;
    use ndarray::Array4;
    use rand_chacha::rand_core::SeedableRng;

    fn small_net() -> LeNet<f64> {
        LeNet::xavier(&mut rand_chacha::ChaCha8Rng::seed_from_u64(5))
    }

    #[test]
    fn names_follow_the_scheme_and_backward_shapes_match_forward() {
        let net = small_net();
        let x =
            random_array::<f64, ndarray::Ix4>((1, 1, IMAGE_SIDE, IMAGE_SIDE), 3).mapv(|v| v.abs());
        let t = trace(&net, x.view(), 4);
        let names: Vec<&str> = t.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, tensor_names());
        for s in t.stats() {
            if let Some(stage) = s.name.strip_prefix("backward.") {
                let forward = t.get(&format!("forward.{stage}")).expect("forward twin");
                assert_eq!(forward.shape(), &s.shape[..], "{}", s.name);
            }
            if let Some(param) = s.name.strip_prefix("grad.") {
                let p = net.parameters();
                let p = p.iter().find(|p| p.name == param).expect("a parameter");
                assert_eq!(p.data.shape(), &s.shape[..], "{}", s.name);
            }
        }
    }

    #[test]
    fn pool_indices_are_pytorchs_flat_positions() {
        // Window [[1 3] [3 2]] at (0,0) of a 2x4 plane; [[0 0] [0 9]] at (0,1).
        // argmax 1 -> row 0, col 1 -> index 1; argmax 3 -> row 1, col 3 -> index 1*4 + 3 = 7.
        let x = Array4::from_shape_vec(
            (1, 1, 2, 4),
            vec![1.0f64, 3.0, 0.0, 0.0, 3.0, 2.0, 0.0, 9.0],
        )
        .unwrap();
        let (_, cache) = maxpool::forward(x.view());
        let mut t = Trace::<f64> {
            label: 0,
            tensors: vec![],
        };
        t.push_indices("i", &cache);
        assert_eq!(
            t.get_indices("i")
                .unwrap()
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            vec![1, 7]
        );
    }

    #[test]
    fn stats_hand_worked() {
        // [3, 0, -4]: min -4, max 3, mean -1/3, L2 5, one zero.
        let mut t = Trace::<f32> {
            label: 0,
            tensors: vec![],
        };
        t.push("v", ndarray::arr1(&[3.0f32, 0.0, -4.0]).into_dyn());
        let s = &t.stats()[0];
        assert_eq!((s.min, s.max, s.l2, s.zeros, s.len), (-4.0, 3.0, 5.0, 1, 3));
        assert!((s.mean + 1.0 / 3.0).abs() < 1e-15);
    }
}
