//! Models built from the layers: LeNet, the denoising autoencoder, and their model files.
//!
//! # Example
//!
//! A LeNet (untrained here: its weights are Caffe's initial ones), written to a model file and
//! read back, and used through [`Classifier`], the one view of a model every attack takes: its
//! logits and each image's input gradient, which central differences confirm.
//!
//! ```
//! use advmnist::data::{default_data_dir, load_split, Split};
//! use advmnist::models::file::{load_model, save_model, ModelMeta};
//! use advmnist::models::{Classifier, DropoutRates, LeNet};
//! use advmnist::rng::{stream, Purpose};
//! use ndarray::s;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // An untrained LeNet: Caffe's xavier weights, drawn from seed 7's stream.
//! let net = LeNet::<f32>::xavier(&mut stream(7, Purpose::Init, 0));
//! for p in net.parameters() {
//!     println!("{:<12} {:?}", p.name, p.data.shape()); // conv1.weight [20, 1, 5, 5], ...
//! }
//!
//! // Written to a model file and read back, bit for bit.
//! let meta = ModelMeta {
//!     dropout: DropoutRates::NONE,
//!     seed: 7,
//!     iterations: 0,
//!     data_sha256: "none: not trained".into(),
//!     extra: Default::default(),
//! };
//! let folder = tempfile::tempdir()?;
//! let path = folder.path().join("initial.safetensors");
//! save_model(&path, &net, &meta)?;
//! let (loaded, loaded_meta) = load_model(&path)?;
//! assert_eq!(loaded, net);
//! assert_eq!(loaded_meta.seed, 7);
//!
//! // A file that is not a model is refused, and the message names it.
//! let notes = folder.path().join("notes.txt");
//! std::fs::write(&notes, "not a model")?;
//! assert!(load_model(&notes).unwrap_err().to_string().contains("notes.txt"));
//!
//! // As a `Classifier`: the logits, and each image's loss and input gradient.
//! let test = load_split(&default_data_dir(), Split::Test)?;
//! let x = test.images.slice(s![0..4, .., .., ..]);
//! let labels = &test.labels[0..4];
//! let model: &dyn Classifier = &loaded;
//! assert_eq!(model.logits(x).shape(), &[4, 10]);
//! let (loss, gradient) = model.input_gradient(x, labels);
//! assert_eq!(gradient.shape(), x.shape()); // (4, 1, 28, 28): dL_n/dx_n
//!
//! // A partial derivative against central differences, (L(x + h e_i) - L(x - h e_i)) / 2h with
//! // h = 1e-3: image 0's largest on the stroke (off it, blank max-pool windows tie, and the tie
//! // rule's derivative is one-sided).
//! let (x0, g) = (x.slice(s![0, 0, .., ..]), gradient.slice(s![0, 0, .., ..]));
//! let ((row, col), &g_i) = g
//!     .indexed_iter()
//!     .filter(|&(at, _)| x0[at] > 0.5)
//!     .max_by(|p, q| p.1.abs().total_cmp(&q.1.abs()))
//!     .unwrap();
//! let loss_at = |h: f32| {
//!     let mut x0 = x.slice(s![0..1, .., .., ..]).to_owned();
//!     x0[[0, 0, row, col]] += h;
//!     model.input_gradient(x0.view(), &labels[0..1]).0[0]
//! };
//! let numeric = (loss_at(1e-3) - loss_at(-1e-3)) / 2e-3;
//! println!(
//!     "loss {:.4}; dL/dx at ({row}, {col}): {g_i:.5}, by differences {numeric:.5}",
//!     loss[0]
//! );
//! // f32 rounding of the loss (about 2.5, an ulp of 2.4e-7) alone moves the quotient by about
//! // 1e-4, 0.1% of this derivative; 1% leaves room for the rest.
//! assert!((numeric - g_i).abs() < 0.01 * g_i.abs());
//! # Ok(())
//! # }
//! ```

pub mod assemble;
pub mod autoencoder;
pub mod committee;
pub mod file;
pub mod gradient;
pub mod lenet;
pub mod params;
pub mod pipeline;

pub use autoencoder::Autoencoder;
pub use committee::Committee;
pub use gradient::{GradientRule, WithGradient};
pub use lenet::{DropoutRates, LeNet};
pub use params::{Network, Parameters};

use crate::models::lenet::argmax_rows;
use ndarray::{s, Array1, Array2, Array4, ArrayView2, ArrayView4};

/// The one abstraction every attack, sweep and report is written against: a classifier that
/// gives class logits for a batch, and each image's loss gradient with respect to that image
/// through its own hand-written backward pass.
pub trait Classifier: Sync {
    /// Logits `(N, 10)` in evaluation mode (no dropout).
    fn logits(&self, x: ArrayView4<f32>) -> Array2<f32>;

    /// Each image's cross-entropy loss `(N)` with its true label and `dL_n/dx_n` `(N,1,28,28)`,
    /// in evaluation mode.
    fn input_gradient(&self, x: ArrayView4<f32>, labels: &[u8]) -> (Array1<f32>, Array4<f32>);

    /// The vector-Jacobian product of the logits in evaluation mode: given `d_logits (N,10)`,
    /// any upstream gradient of the logits, returns `dL/dx (N,1,28,28)` through the model's own
    /// backward pass. (A committee or a loss other than cross-entropy chains through this.)
    fn logits_vjp(&self, x: ArrayView4<f32>, d_logits: ArrayView2<f32>) -> Array4<f32>;

    /// Predicted classes.
    fn predict(&self, x: ArrayView4<f32>) -> Vec<u8> {
        argmax_rows(self.logits(x).view())
    }

    /// The logits, each image's loss under `loss` and that loss's input gradient, in evaluation
    /// mode: what an attack on any loss of the logits needs at one iterate (APGD's
    /// cross-entropy and DLR losses). The default runs [`Classifier::logits`] and then
    /// [`Classifier::logits_vjp`] (two forward passes); a model may do it in one. A model with
    /// random stages averages the loss and the gradient over its draws (each draw's loss taken
    /// at that draw's logits), and returns the logits of draw 0, its prediction.
    fn loss_gradient(&self, x: ArrayView4<f32>, loss: &dyn LogitLoss) -> LossGradient {
        let logits = self.logits(x);
        let (losses, d_logits) = loss.loss_and_gradient(0, logits.view());
        let grad = self.logits_vjp(x, d_logits.view());
        LossGradient {
            logits,
            loss: losses,
            grad,
        }
    }

    /// How many draws of its randomness an attack averages over (expectation over
    /// transformation): 1 for a deterministic model.
    fn eot_draws(&self) -> u64 {
        1
    }

    /// The logits of draw `draw` of the model's randomness; draw 0 is [`Classifier::logits`].
    fn logits_of_draw(&self, x: ArrayView4<f32>, draw: u64) -> Array2<f32> {
        let _ = draw;
        self.logits(x)
    }
}

/// A per-image loss of the logits and its gradient, for [`Classifier::loss_gradient`].
pub trait LogitLoss: Sync {
    /// Given logits `(n, 10)` of images `first..first + n` of the batch, each image's loss
    /// `(n)` and `dloss/dlogits` `(n, 10)`. (A model may hand its batch over in pieces; `first`
    /// says which images a piece holds, so a loss can look up their labels or targets.)
    fn loss_and_gradient(
        &self,
        first: usize,
        logits: ArrayView2<f32>,
    ) -> (Array1<f32>, Array2<f32>);
}

/// What [`Classifier::loss_gradient`] returns.
pub struct LossGradient {
    pub logits: Array2<f32>, // (N, 10), draw 0's for a random model
    pub loss: Array1<f32>,   // (N)
    pub grad: Array4<f32>,   // (N, 1, 28, 28): dloss/dx
}

/// Test images [`logits_overflow`] looks at: enough to catch weights that overflow on every
/// image (as absurdly large ones do), cheap next to any command's work.
pub const OVERFLOW_CHECK_IMAGES: usize = 500;

/// A warning when the model's logits on the first [`OVERFLOW_CHECK_IMAGES`] images of `x` are
/// not all finite. Model files with inf or NaN weights are refused when read, but finite weights
/// can still be so large (1e30, say) that f32 arithmetic overflows to inf, and inf - inf to NaN:
/// the predictions are then arbitrary, and every error measured on them meaningless.
pub fn logits_overflow(model: &dyn Classifier, x: ArrayView4<f32>) -> Option<String> {
    let n = x.dim().0.min(OVERFLOW_CHECK_IMAGES);
    let logits = model.logits(x.slice(s![..n, .., .., ..]));
    let bad = logits
        .rows()
        .into_iter()
        .filter(|row| row.iter().any(|v| !v.is_finite()))
        .count();
    (bad > 0).then(|| {
        format!(
            "its logits overflow to inf or NaN on {bad} of the first {n} test images: the weights are finite but too large for f32 arithmetic, so its predictions (and any error measured on them) are meaningless"
        )
    })
}

impl Classifier for LeNet<f32> {
    fn logits(&self, x: ArrayView4<f32>) -> Array2<f32> {
        LeNet::logits(self, x)
    }
    fn input_gradient(&self, x: ArrayView4<f32>, labels: &[u8]) -> (Array1<f32>, Array4<f32>) {
        LeNet::input_gradient(self, x, labels)
    }
    /// One forward pass per chunk of [`lenet::INPUT_GRADIENT_CHUNK`] images, its logits
    /// handed to `loss` and its cache to the backward pass.
    fn loss_gradient(&self, x: ArrayView4<f32>, loss: &dyn LogitLoss) -> LossGradient {
        let n = x.dim().0;
        let mut out = LossGradient {
            logits: Array2::zeros((n, crate::data::CLASSES)),
            loss: Array1::zeros(n),
            grad: Array4::zeros(x.raw_dim()),
        };
        for start in (0..n).step_by(lenet::INPUT_GRADIENT_CHUNK) {
            let range = start..(start + lenet::INPUT_GRADIENT_CHUNK).min(n);
            let (logits, cache) = self.forward(x.slice(s![range.clone(), .., .., ..]), None);
            let (losses, d_logits) = loss.loss_and_gradient(start, logits.view());
            let dx = self
                .backward(d_logits.view(), &cache, None, true)
                .expect("input gradient requested");
            out.grad
                .slice_mut(s![range.clone(), .., .., ..])
                .assign(&dx);
            out.logits.slice_mut(s![range.clone(), ..]).assign(&logits);
            out.loss.slice_mut(s![range]).assign(&losses);
        }
        out
    }

    fn logits_vjp(&self, x: ArrayView4<f32>, d_logits: ArrayView2<f32>) -> Array4<f32> {
        let n = x.dim().0;
        assert_eq!(d_logits.nrows(), n, "one gradient row per image");
        let mut grad = Array4::zeros(x.raw_dim());
        // In chunks, as LeNet::input_gradient, to bound the caches' memory.
        for start in (0..n).step_by(lenet::INPUT_GRADIENT_CHUNK) {
            let range = start..(start + lenet::INPUT_GRADIENT_CHUNK).min(n);
            let (_, cache) = self.forward(x.slice(s![range.clone(), .., .., ..]), None);
            let dx = self
                .backward(d_logits.slice(s![range.clone(), ..]), &cache, None, true)
                .expect("input gradient requested");
            grad.slice_mut(s![range, .., .., ..]).assign(&dx);
        }
        grad
    }
}
