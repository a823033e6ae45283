//! Error-versus-distortion sweeps (the study's section 4.1 and Figures 3 and 4): for each of
//! `levels` noise levels evenly spaced from 0 to `max` (0 included), perturb every test image,
//! measure the average distortion per pixel actually applied, and record each model's error.
//!
//! # Example
//!
//! A quickly trained LeNet swept by FGSM from eps 0 to 0.2, and its error read off at one
//! distortion, as Table 2 reads it.
//!
//! ```
//! use advmnist::data::{default_data_dir, load_mnist};
//! use advmnist::experiments::sweep::{levels, sweep, Noise, SweepConfig};
//! use advmnist::experiments::NamedModel;
//! use advmnist::models::DropoutRates;
//! use advmnist::train::{self, TrainConfig, TrainOptions, TrainState};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let data = load_mnist(&default_data_dir())?;
//! let config = TrainConfig {
//!     iterations: 40,
//!     batch: 32,
//!     ..TrainConfig::lenet(DropoutRates::NONE, 1)
//! };
//! let state = TrainState::new(config.seed);
//! let net = train::train(&config, &data, state, &TrainOptions::default(), |_| {})?.net;
//!
//! // FGSM at eps 0, 0.1 and 0.2 on 100 test images; the error read off at distortion 0.03.
//! let models = [NamedModel { name: "lenet-40".into(), model: &net }];
//! let cfg = SweepConfig {
//!     noise: Noise::Fgsm,
//!     levels: levels(3, 0.2),
//!     seed: 0,
//!     at: vec![0.03],
//! };
//! let result = sweep(&models, None, &data.test.subset(0..100), &cfg, |_done, _total| {})?;
//! for r in &result.rows {
//!     println!(
//!         "eps {:.1}: distortion {:.4}, error {:.1}%",
//!         r.level, r.distortion, r.error_pct
//!     );
//! }
//! assert_eq!(result.rows.len(), 3);
//! assert_eq!(result.rows[0].distortion, 0.0); // eps 0 is the clean set
//! assert!(result.rows[2].distortion > result.rows[1].distortion);
//! assert!(result.rows[2].error_pct > result.rows[1].error_pct);
//! assert!(result.rows[1].error_pct > result.rows[0].error_pct);
//! println!("at distortion 0.03: {:?}%", result.at[0].error_pct);
//! assert!(result.at[0].error_pct.is_some());
//! # Ok(())
//! # }
//! ```
//!
//! # Directions, white-box and transfer
//!
//! Gradient-sign sweeps need one input-gradient pass per image: the sign pattern of the clean
//! image does not depend on eps, so every level reuses it ([`crate::attacks::fgsm::perturb`]).
//! Gaussian sweeps reuse one standard-normal field per image at every sigma (common random
//! numbers). PGD recomputes its gradient at every step of every level, so it costs
//! `steps` gradient passes per level.
//!
//! Without a source model each model is attacked through its own gradient (white-box); with
//! `source`, every model is evaluated on the examples crafted on the source (transfer).

use crate::attacks::distortion::distortion_per_pixel;
use crate::attacks::{InvalidPerturbation, Perturbation};
use crate::data::Dataset;
use crate::models::lenet::error_pct;
use serde::{Deserialize, Serialize};

pub use super::NamedModel;
pub use crate::attacks::Noise;

/// Levels `max * i / (levels - 1)` for `i` in `0..levels`: evenly spaced, 0 and `max` included.
/// Kept in f64 for the reports (0.05, not 0.05000000074505806); the perturbation itself is
/// applied in f32, the images' precision.
pub fn levels(count: usize, max: f64) -> Vec<f64> {
    assert!(count >= 2, "a sweep needs at least two levels");
    (0..count)
        .map(|i| max * i as f64 / (count - 1) as f64)
        .collect()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepRow {
    pub noise: String,
    pub level: f64,
    pub distortion: f64,
    pub model: String,
    pub error_pct: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AtRow {
    pub model: String,
    pub distortion: f64,
    /// `None` when the distortion lies outside the swept range.
    pub error_pct: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SweepResult {
    pub noise: String,
    pub rows: Vec<SweepRow>,
    pub at: Vec<AtRow>,
    pub wall_s: f64,
}

pub struct SweepConfig {
    pub noise: Noise,
    pub levels: Vec<f64>,
    /// Seed of the Gaussian noise and of PGD's random start.
    pub seed: u64,
    /// Distortions at which to report each model's error by interpolation (Table 2).
    pub at: Vec<f64>,
}

/// Runs a sweep. `progress(done, total)` is called after each (level, model) evaluation.
pub fn sweep(
    models: &[NamedModel<'_>],
    source: Option<&NamedModel<'_>>,
    test: &Dataset,
    cfg: &SweepConfig,
    mut progress: impl FnMut(usize, usize),
) -> Result<SweepResult, InvalidPerturbation> {
    let started = std::time::Instant::now();
    let x = test.images.view();
    let total = cfg.levels.len() * models.len();
    let mut rows = Vec::with_capacity(total);
    let mut done = 0;
    // The perturbation direction of each attacked model (or of the source): computed once.
    let attackers: Vec<&NamedModel<'_>> = match source {
        Some(s) => vec![s],
        None => models.iter().collect(),
    };
    let perturbations: Vec<Perturbation<'_>> = attackers
        .iter()
        .map(|a| Perturbation::new(cfg.noise, a.model, x, &test.labels, cfg.seed))
        .collect();
    for &nominal in &cfg.levels {
        let level = nominal as f32;
        for (a, perturbation) in perturbations.iter().enumerate() {
            let perturbed = perturbation.at(level)?;
            let distortion = distortion_per_pixel(x, perturbed.view());
            // Transfer: all models on the source's examples; white-box: each on its own.
            let victims: Vec<&NamedModel<'_>> = if source.is_some() {
                models.iter().collect()
            } else {
                vec![&models[a]]
            };
            for victim in victims {
                let error_pct = error_pct(&victim.model.predict(perturbed.view()), &test.labels);
                rows.push(SweepRow {
                    noise: cfg.noise.name().into(),
                    level: nominal,
                    distortion,
                    model: victim.name.clone(),
                    error_pct,
                });
                done += 1;
                progress(done, total);
            }
        }
    }
    let at = models
        .iter()
        .flat_map(|m| {
            let curve: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r.model == m.name)
                .map(|r| (r.distortion, r.error_pct))
                .collect();
            cfg.at.iter().map(move |&d| AtRow {
                model: m.name.clone(),
                distortion: d,
                error_pct: interpolate(&curve, d),
            })
        })
        .collect();
    Ok(SweepResult {
        noise: cfg.noise.name().into(),
        rows,
        at,
        wall_s: started.elapsed().as_secs_f64(),
    })
}

/// Linear interpolation of `y` at `x` along a curve given in sweep order (distortion grows with
/// the level); the first segment that brackets `x` is used. `None` outside the curve's range.
pub fn interpolate(curve: &[(f64, f64)], x: f64) -> Option<f64> {
    curve.windows(2).find_map(|w| {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        let (lo, hi) = (x0.min(x1), x0.max(x1));
        if x < lo || x > hi {
            None
        } else if x1 == x0 {
            Some(y0)
        } else {
            Some(y0 + (y1 - y0) * (x - x0) / (x1 - x0))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_include_both_ends() {
        assert_eq!(levels(5, 2.0), vec![0.0, 0.5, 1.0, 1.5, 2.0]);
        assert_eq!(levels(11, 0.5)[1], 0.05); // reported as written, not as the f32 0.05000000074505806
    }

    #[test]
    fn interpolation_hand_worked() {
        // Between (0.05, 10%) and (0.15, 30%): at 0.1 -> 20%.
        let curve = [(0.0, 1.0), (0.05, 10.0), (0.15, 30.0)];
        assert!((interpolate(&curve, 0.1).unwrap() - 20.0).abs() < 1e-12);
        assert_eq!(interpolate(&curve, 0.0), Some(1.0));
        assert_eq!(interpolate(&curve, 0.2), None);
    }
}
