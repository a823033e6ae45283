//! One test digit explained: the numbers of `advmnist explain`'s page (`report::explain` lays
//! them out), for a class to follow a digit through LeNet and back and then watch the
//! gradient-sign attack use what the backward pass made.
//!
//! - the forward pass, layer by layer, and the backward pass from `dL/dz` to `dL/dx`: the
//!   tensors of `audit::trace::trace` in f32 (the very tensors `advmnist trace --out` writes for
//!   the same model and image), under the trace's names;
//! - the attack ([`attack`]): the input gradient's sign, the margin's gradient, and the digit at
//!   every eps of the slider with its first-order predictions;
//! - the warm-up ([`warm_up`]): the same steps on a linear model of two pixels;
//! - optionally ([`rules`]): Caffe's float32 gradient beside the exact one.
//!
//! Everything the page shows is computed here, in Rust; the page's JavaScript only draws it.

pub mod attack;
pub mod margin;
pub mod rules;
pub mod warm_up;

use crate::attacks::InvalidPerturbation;
use crate::audit::trace::trace;
use crate::models::lenet::{argmax_rows, LeNet};
use ndarray::{ArrayView4, Ix2};

/// The forward tensors the page draws, in order: the trace's names (docs/walkthrough.md).
/// `forward.flatten` is `forward.pool2` reshaped, so it is left out.
pub const FORWARD_TENSORS: [&str; 9] = [
    "forward.input",
    "forward.conv1",
    "forward.pool1",
    "forward.conv2",
    "forward.pool2",
    "forward.fc1",
    "forward.relu",
    "forward.logits",
    "forward.softmax",
];

/// The backward steps the page draws, from the loss to the pixels. `backward.flatten` is
/// `backward.pool2` flattened (the un-flatten of docs/math.md, section 8, step 7, moves no
/// data), so it is left out.
pub const BACKWARD_TENSORS: [&str; 8] = [
    "backward.logits",
    "backward.relu",
    "backward.fc1",
    "backward.pool2",
    "backward.conv2",
    "backward.pool1",
    "backward.conv1",
    "backward.input",
];

/// One tensor of the trace, as the page embeds it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Tensor {
    pub name: String,      // the trace's name, e.g. `backward.conv1`
    pub shape: Vec<usize>, // the trace's shape, batch of one first, e.g. [1, 20, 24, 24]
    pub values: Vec<f32>,  // row-major (NCHW)
    pub zeros: usize,      // entries exactly 0 (either sign), as `trace`'s table counts them
}

/// The numbers of one explained test digit.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Explanation {
    pub image: usize, // the test image's index
    pub label: u8,
    pub predicted: u8,
    pub loss: f32,             // the trace's `forward.loss`, -log p[t]
    pub forward: Vec<Tensor>,  // FORWARD_TENSORS, in order
    pub backward: Vec<Tensor>, // BACKWARD_TENSORS, in order
    pub attack: attack::FgsmExplained,
    pub warm_up: warm_up::LinearWarmUp,
    pub rules: Option<rules::RuleContrast>,
}

impl Explanation {
    /// The forward or backward tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&Tensor> {
        self.forward
            .iter()
            .chain(&self.backward)
            .find(|t| t.name == name)
    }
}

/// What `explain` cannot lay out.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error(
        "test image {image}: {tensor} has a value that is not finite ({value}); the model's \
         weights are finite but too large for f32 (see `advmnist eval`'s overflow warning)"
    )]
    NotFinite {
        image: usize,
        tensor: String,
        value: f32,
    },
    #[error("test image {image}: {source}")]
    Attack {
        image: usize,
        source: InvalidPerturbation,
    },
}

/// Explains test image number `image`, `x (1,1,28,28)` with its true `label`, under `model`;
/// with `compare_f32`, Caffe's float32 gradient beside the exact one too.
pub fn explain(
    model: &LeNet<f32>,
    image: usize,
    x: ArrayView4<f32>,
    label: u8,
    compare_f32: bool,
) -> Result<Explanation, ExplainError> {
    let t = trace(model, x, label);
    let take = |name: &str| -> Result<Tensor, ExplainError> {
        let a = t
            .get(name)
            .expect("every trace holds the tensors the page draws");
        if let Some(&value) = a.iter().find(|v| !v.is_finite()) {
            return Err(ExplainError::NotFinite {
                image,
                tensor: name.to_string(),
                value,
            });
        }
        Ok(Tensor {
            name: name.to_string(),
            shape: a.shape().to_vec(),
            values: a.iter().copied().collect(),
            zeros: a.iter().filter(|&&v| v == 0.0).count(),
        })
    };
    let forward = FORWARD_TENSORS
        .iter()
        .map(|n| take(n))
        .collect::<Result<Vec<_>, _>>()?;
    let backward = BACKWARD_TENSORS
        .iter()
        .map(|n| take(n))
        .collect::<Result<Vec<_>, _>>()?;
    let loss = take("forward.loss")?.values[0];
    let logits = t.get("forward.logits").expect("traced");
    let logits = logits
        .view()
        .into_dimensionality::<Ix2>()
        .expect("logits are (1, 10)");
    let gradient = t
        .get("backward.input")
        .expect("traced")
        .view()
        .into_dimensionality::<ndarray::Ix4>()
        .expect("the input gradient is (1,1,28,28)");
    let attack = attack::explain_fgsm(model, x, label, gradient)
        .map_err(|source| ExplainError::Attack { image, source })?;
    let not_finite = |tensor: String, values: &[f32]| match values.iter().find(|v| !v.is_finite()) {
        Some(&value) => Err(ExplainError::NotFinite {
            image,
            tensor,
            value,
        }),
        None => Ok(()),
    };
    not_finite("the margin's gradient".into(), &attack.margin_gradient)?;
    for level in &attack.levels {
        not_finite(format!("the logits at eps {}", level.eps), &level.logits)?;
    }
    Ok(Explanation {
        image,
        label,
        predicted: argmax_rows(logits)[0],
        loss,
        forward,
        backward,
        attack,
        warm_up: warm_up::default_warm_up(),
        rules: compare_f32.then(|| rules::contrast_rules(model, x, label)),
    })
}
