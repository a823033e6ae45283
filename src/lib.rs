//! advmnist: a hand-written LeNet on MNIST, with hand-written backward passes, for studying
//! adversarial robustness (Uličný, Lundström, Byttner, "Robustness of Deep Convolutional Neural
//! Networks for Image Recognition", ISICS 2016).
//!
//! # Example
//!
//! One test digit from end to end: train a LeNet for a few iterations on the bundled MNIST, write
//! it to a model file and read it back, compute the digit's input gradient, make its
//! gradient-sign (FGSM) image and predict both. The same as a program, with a picture of the
//! gradient's signs: `cargo run --release --example fgsm_one_digit` (and `train_few_iterations`,
//! `attack_committee`).
//!
//! ```
//! use advmnist::attacks::{distortion::distortion_per_pixel, fgsm};
//! use advmnist::data::{default_data_dir, load_mnist};
//! use advmnist::models::file::{load_model, save_model};
//! use advmnist::models::{Classifier, DropoutRates};
//! use advmnist::train::{self, TrainConfig, TrainOptions, TrainState};
//! use ndarray::s;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let data = load_mnist(&default_data_dir())?; // the bundled mnist/ folder, or $ADVMNIST_DATA
//!
//! // Caffe's LeNet recipe, cut to 60 iterations of 32 images (the study trains 10,000 of 64).
//! let config = TrainConfig {
//!     iterations: 60,
//!     batch: 32,
//!     ..TrainConfig::lenet(DropoutRates::NONE, 1)
//! };
//! let state = TrainState::new(config.seed); // xavier weights drawn from the seed
//! let trained = train::train(&config, &data, state, &TrainOptions::default(), |_| {})?;
//!
//! // A model file is safetensors, with PyTorch's tensor names: PyTorch and numpy read it too.
//! let folder = tempfile::tempdir()?;
//! let path = folder.path().join("lenet.safetensors");
//! let meta = train::model_meta(&config, &data, trained.iteration); // seed, data hash, ...
//! save_model(&path, &trained.net, &meta)?;
//! let (model, read) = load_model(&path)?;
//! assert_eq!(read.iterations, 60);
//!
//! // Test image 0 (a 7) as a batch of one, (N, C, H, W) = (1, 1, 28, 28), pixels in [0, 1].
//! let x = data.test.images.slice(s![0..1, .., .., ..]);
//! let label = &data.test.labels[0..1];
//! let model: &dyn Classifier = &model; // what every attack sees of a model
//!
//! // The image's cross-entropy loss and its gradient dL/dx, by LeNet's own backward pass.
//! let (loss, gradient) = model.input_gradient(x, label);
//! assert_eq!(gradient.shape(), &[1, 1, 28, 28]);
//!
//! // FGSM (the study's Eq. 1): x' = clip(x + eps sign(dL/dx), 0, 1), here with eps = 0.1.
//! let adversarial = fgsm::fgsm(model, x, label, 0.1);
//! let (loss_after, _) = model.input_gradient(adversarial.view(), label);
//! let distortion = distortion_per_pixel(x, adversarial.view());
//! let (before, after) = (model.predict(x)[0], model.predict(adversarial.view())[0]);
//! println!("label {}: predicted {before}, loss {:.3}", label[0], loss[0]);
//! println!("FGSM: predicted {after}, loss {:.3}, distortion {distortion:.4}", loss_after[0]);
//! assert!(loss_after[0] > loss[0]); // the step climbs the loss
//! // Most pixels sit at 0 or 1, where clipping to [0, 1] absorbs the step: distortion < eps.
//! assert!(distortion > 0.0 && distortion < 0.1);
//! # Ok(())
//! # }
//! ```
//!
//! # The modules
//!
//! What it does: reads MNIST (`data`), trains LeNet as Caffe's example does and the study's
//! denoising autoencoder (`train`, `optim`), with every layer's forward and backward pass
//! written out (`layers`, on the fast paths of `kernels`); attacks the trained models with
//! gradient-sign and Gaussian noise (`attacks`) through preprocessing defences and committees
//! (`defences`, `models`); measures error against distortion, reproduces the study's tables and
//! figures and runs its human study (`experiments`); checks its own gradients (`audit`),
//! measures its speed (`bench`) and lays the results out as files (`report`). The command line
//! (`main.rs`, `cli/`) is a thin shell over this library.
//!
//! # Layers
//!
//! Every top-level module sits on a layer, and data flows one way, upwards: a module may use
//! modules of its own layer or of lower ones, never a higher one, and the modules of one layer
//! may not use each other in a circle. [`LAYERS`] is the table, the one place it is written
//! (the binary sits above it all, at [`BINARY_LAYER`]). The integration test `layering` reads
//! every `crate::` and `super::` path under `src/` and fails on a path that climbs, on a
//! circle, on a module missing from the table, on an import in `models/params.rs` (the seam
//! every network and optimiser shares imports nothing of the crate), and on code outside a
//! test that uses `testutil`. Test code (a `#[cfg(test)] mod` block) may use its own layer,
//! lower ones, and `testutil`.

pub mod attacks;
pub mod audit;
pub mod bench;
pub mod certify;
pub mod data;
pub mod defences;
pub mod experiments;
pub mod hashing;
pub mod io_safety;
pub mod kernels;
pub mod layers;
pub mod limits;
pub mod models;
pub mod optim;
pub mod report;
pub mod rng;
pub mod statistics;
pub mod testutil;
pub mod train;

/// The layer of every top-level module, lowest first (see "Layers" above). A new module must
/// be added here; the `layering` integration test enforces the table.
pub const LAYERS: &[(&str, u8)] = &[
    ("data", 0),
    ("rng", 0),
    ("hashing", 0),
    ("io_safety", 0),
    ("limits", 0),
    ("statistics", 0),
    ("kernels", 1),
    ("layers", 2),
    ("defences", 2),
    ("models", 3),
    ("optim", 4),
    ("attacks", 4),
    ("certify", 4),
    ("train", 5),
    ("audit", 5),
    ("experiments", 6),
    ("bench", 6),
    ("report", 7),
    ("testutil", TESTS_ONLY),
];

/// The layer of the binary (`src/main.rs`, `src/cli/`): above every module of the library,
/// so it may use any of them but `testutil`.
pub const BINARY_LAYER: u8 = 8;

/// The place of `testutil` in [`LAYERS`]: on no layer, for test code only. It serves the tests
/// of every layer from the kernels up, so it may itself use only layers 0 and 1
/// ([`TESTUTIL_USES_UP_TO`]).
pub const TESTS_ONLY: u8 = u8::MAX;

/// The highest layer `testutil` may use.
pub const TESTUTIL_USES_UP_TO: u8 = 1;

/// Keeps glibc's allocator from returning large blocks to the kernel after every use.
///
/// A training step allocates and frees the same few multi-megabyte activation buffers every
/// iteration. By default glibc serves blocks above its mmap threshold with fresh `mmap`s and
/// unmaps them on `free`, so each iteration page-faults its buffers back in (measured with
/// `perf record` on `advmnist bench`: about 15% of the time in page faults and their locks).
/// Raising the mmap and trim thresholds makes freed blocks stay in the heap for reuse. Only
/// speed changes, never a result. A no-op off glibc.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before any other thread runs.
    unsafe {
        // 32 MiB is the largest mmap threshold every glibc accepts (HEAP_MAX_SIZE / 2 on 64-bit
        // systems); every per-iteration buffer is smaller. Only if that call succeeds is the
        // trim threshold raised too: on its own it would freeze the mmap threshold at 128 KiB.
        if libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1 {
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        }
    }
}
