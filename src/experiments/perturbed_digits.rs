//! The data of `advmnist show`'s figures. [`PerturbedDigits`] (the study's Figure 1, with the
//! gradient): test digits clean and perturbed at each level, the model's verdict on each, each
//! digit's input gradient and its sign. [`ReconstructedDigits`] (`show --dae`): test digits
//! clean, corrupted as the autoencoder was trained, and rebuilt by it. Computed here, where the
//! model is called; `report::digits_png` only lays them out.

use crate::attacks::distortion::distortion_per_pixel;
use crate::attacks::{InvalidPerturbation, Noise, Perturbation};
use crate::data::IMAGE_SIDE;
use crate::layers::softmax_xent::softmax;
use crate::models::gradient::sign;
use crate::models::lenet::argmax_rows;
use crate::models::Classifier;
use ndarray::{Array4, ArrayView4};
use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq)]
pub struct ShowConfig {
    pub noise: Noise,
    /// eps or sigma of each perturbed column, left to right; each finite and >= 0.
    pub levels: Vec<f32>,
    /// Seed of the Gaussian noise (`attacks::gaussian::standard_normal_like`); FGSM ignores it.
    pub seed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ShowError {
    #[error("no noise levels given: the figure needs at least one (e.g. 0.1,0.2)")]
    NoLevels,
    #[error("noise level {level} is invalid: a level must be a finite number >= 0")]
    BadLevel { level: f32 },
    #[error("{path}: the figure is a PNG image, so the output file name must end in .png")]
    NotPng { path: PathBuf },
    #[error("cannot show these images: {reason}")]
    BadImages { reason: String },
    #[error("{noise} noise at {symbol} = {level}: {source}")]
    InvalidPerturbation {
        noise: &'static str,
        symbol: &'static str,
        level: f32,
        source: InvalidPerturbation,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: drawing the figure failed: {reason}")]
    Draw { path: PathBuf, reason: String },
}

/// The model's verdict on one image.
pub struct Verdict {
    pub class: u8,
    /// Softmax probability of `class`.
    pub confidence: f32,
}

/// One column of digits: the clean set or one perturbed set.
pub struct Column {
    pub header: String,
    /// Average distortion per pixel over the digits shown; `None` for the clean column.
    pub distortion: Option<f64>,
    pub images: Array4<f32>,    // (N, 1, 28, 28)
    pub verdicts: Vec<Verdict>, // (N)
}

/// Everything the Figure 1 picture shows, computed before any drawing.
pub struct PerturbedDigits {
    pub noise: Noise,
    pub labels: Vec<u8>,        // (N): true labels
    pub columns: Vec<Column>,   // clean, then one per level
    pub gradient: Array4<f32>,  // (N, 1, 28, 28): dL/dX, each image divided by its max |dL/dX|
    pub max_gradient: Vec<f32>, // (N): each image's max |dL/dX| before scaling
    pub sign: Array4<f32>,      // (N, 1, 28, 28): sign(dL/dX) in {-1, 0, +1}
}

fn verdicts(model: &dyn Classifier, x: ArrayView4<f32>) -> Vec<Verdict> {
    let logits = model.logits(x);
    let probabilities = softmax(logits.view());
    // The class is taken from the logits, as `Classifier::predict` does, so ties break the
    // same way.
    argmax_rows(logits.view())
        .into_iter()
        .enumerate()
        .map(|(n, class)| Verdict {
            class,
            confidence: probabilities[[n, class as usize]],
        })
        .collect()
}

pub fn check_inputs(
    images: ArrayView4<f32>,
    labels: &[u8],
    cfg: &ShowConfig,
) -> Result<(), ShowError> {
    if cfg.levels.is_empty() {
        return Err(ShowError::NoLevels);
    }
    if let Some(&level) = cfg.levels.iter().find(|l| !(l.is_finite() && **l >= 0.0)) {
        return Err(ShowError::BadLevel { level });
    }
    let (n, c, h, w) = images.dim();
    if n == 0 || (c, h, w) != (1, IMAGE_SIDE, IMAGE_SIDE) || labels.len() != n {
        return Err(ShowError::BadImages {
            reason: format!(
                "images have shape {:?} and there are {} labels; expected (N, 1, 28, 28) with N > 0 and one label per image",
                images.shape(),
                labels.len()
            ),
        });
    }
    if let Some(i) = labels.iter().position(|&l| l > 9) {
        return Err(ShowError::BadImages {
            reason: format!("label {} of image {i} is not a digit 0..=9", labels[i]),
        });
    }
    Ok(())
}

/// Everything the figure shows, for `images (N,1,28,28)` with their true `labels`: each
/// perturbed set made by [`Perturbation`] and checked, each verdict, the gradient and its sign.
pub fn perturbed_digits(
    model: &dyn Classifier,
    images: ArrayView4<f32>,
    labels: &[u8],
    cfg: &ShowConfig,
) -> Result<PerturbedDigits, ShowError> {
    check_inputs(images, labels, cfg)?;
    let (_, gradient) = model.input_gradient(images, labels);
    let sign_pattern = gradient.mapv(sign);
    // Gaussian: one standard-normal field per digit, scaled by each sigma (common random
    // numbers, as in the sweep): the columns show the same noise growing.
    let perturbation = Perturbation::new(cfg.noise, model, images, labels, cfg.seed);
    let symbol = cfg.noise.level_symbol();
    let mut columns = vec![Column {
        header: "clean".into(),
        distortion: None,
        images: images.to_owned(),
        verdicts: verdicts(model, images),
    }];
    for &level in &cfg.levels {
        let perturbed =
            perturbation
                .at(level)
                .map_err(|source| ShowError::InvalidPerturbation {
                    noise: cfg.noise.name(),
                    symbol,
                    level,
                    source,
                })?;
        columns.push(Column {
            header: format!("{symbol}={level}"),
            distortion: Some(distortion_per_pixel(images, perturbed.view())),
            verdicts: verdicts(model, perturbed.view()),
            images: perturbed,
        });
    }
    let mut scaled = gradient;
    let mut max_gradient = Vec::with_capacity(labels.len());
    for mut g in scaled.outer_iter_mut() {
        let max = g.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        // An all-zero gradient (a saturated softmax can underflow to it) is drawn all white.
        if max > 0.0 {
            g.mapv_inplace(|v| v / max);
        }
        max_gradient.push(max);
    }
    Ok(PerturbedDigits {
        noise: cfg.noise,
        labels: labels.to_vec(),
        columns,
        gradient: scaled,
        max_gradient,
        sign: sign_pattern,
    })
}

/// The data of `advmnist show --dae`: test digits clean, corrupted as the autoencoder was
/// trained (input dropout, kept pixels scaled by `1/(1-p)`), and reconstructed.
pub struct ReconstructedDigits {
    pub labels: Vec<u8>, // (N): true labels
    /// Columns left to right, each a header and images `(N,1,28,28)`: clean, corrupted, the
    /// reconstruction of the corrupted digits, the reconstruction of the clean digits.
    pub columns: Vec<(String, Array4<f32>)>,
    /// Mean reconstruction cross-entropy (nats per image) of the clean and corrupted digits
    /// against the clean ones.
    pub loss_clean: f32,
}

/// Builds [`ReconstructedDigits`]; image `n`'s dropout mask comes from
/// `stream(seed, Dropout, n)`.
pub fn reconstructed_digits(
    dae: &crate::models::Autoencoder,
    images: ArrayView4<f32>,
    labels: &[u8],
    corruption: f64,
    seed: u64,
) -> Result<ReconstructedDigits, ShowError> {
    use crate::rng::{stream, Purpose};
    let (n, c, h, w) = images.dim();
    if n == 0 || (c, h, w) != (1, IMAGE_SIDE, IMAGE_SIDE) || labels.len() != n {
        return Err(ShowError::BadImages {
            reason: format!(
                "images have shape {:?}; expected (N, 1, 28, 28)",
                images.shape()
            ),
        });
    }
    if !(0.0..1.0).contains(&corruption) {
        return Err(ShowError::BadImages {
            reason: format!("the dropout rate {corruption} is outside [0, 1)"),
        });
    }
    let mut rngs: Vec<_> = (0..n as u64)
        .map(|i| stream(seed, Purpose::Dropout, i))
        .collect();
    let corrupted = if corruption > 0.0 {
        crate::layers::dropout::forward(images, corruption, &mut rngs).0
    } else {
        images.to_owned()
    };
    let columns = vec![
        ("clean".to_string(), images.to_owned()),
        (format!("dropout {corruption}"), corrupted.clone()),
        (
            "rebuilt (corrupted)".to_string(),
            dae.reconstruct(corrupted.view()),
        ),
        ("rebuilt (clean)".to_string(), dae.reconstruct(images)),
    ];
    Ok(ReconstructedDigits {
        labels: labels.to_vec(),
        columns,
        loss_clean: dae.reconstruction_loss(images),
    })
}
