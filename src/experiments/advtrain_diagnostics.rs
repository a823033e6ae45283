//! Diagnostics of a staged adversarial-training run, without training: what each snapshot
//! gains and loses, how its examples transfer between snapshots, how far its gradient moves
//! from stage to stage, and what each adversarial training set looked like.
//!
//! The questions (docs/adversarial-training.md, "Diagnostics"): does stage 1 gain anything over
//! the natural model, and does the gain fade; does each snapshot resist the examples of the
//! snapshots before it (the sets it trained on) more than its own; does the scale of Eq. 3's
//! second step (`c` times the gradient at `X_R`) drift as the snapshots change.
//!
//! Every figure is measured here, from the snapshot files and the training images:
//! - per snapshot: the clean error; its own-gradient FGSM error at average distortion per
//!   pixel 0.1 and 0.2 (interpolated along a sweep, as Table 2); Gaussian error at 0.1; PGD
//!   error at 0.1 (fewer images: PGD costs `steps` gradients per image and level); the share
//!   of input-gradient signs it shares with the snapshot before it;
//! - the transfer matrix: snapshot k's error at distortion 0.1 on gradient-sign examples made
//!   by snapshot j (the diagonal is the own-gradient attack);
//! - per adversarial training set, made again with Eq. 3 exactly as the stage made it (its
//!   SHA-256 checked against the record): its mean distortion per pixel, that of the sign step
//!   `X_R` alone, the median over images of the largest gradient entry at `X_R`, and how far
//!   the second step moved the pixels.

use crate::attacks::distortion::distortion_per_pixel;
use crate::attacks::fgsm;
use crate::data::Dataset;
use crate::experiments::sweep::{self, Noise, SweepConfig, SweepResult};
use crate::experiments::NamedModel;
use crate::models::{Classifier, LeNet};
use crate::train::adversarial::{gradient_step, images_sha256, ADVERSARIAL_CHUNK};
use ndarray::{s, Array4, ArrayView4, Axis};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The distortions at which errors are read off the sweeps: the study's Table 2 columns.
pub const DISTORTIONS: [f64; 2] = [0.1, 0.2];

/// What the diagnostics measure on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The first N test images of every sweep but PGD's.
    pub test_images: usize,
    /// The first N test images of the PGD sweeps.
    pub pgd_images: usize,
    /// Levels of every sweep, evenly spaced from 0 (gradient sign and PGD up to eps 0.5,
    /// Gaussian up to sigma 1, as `reproduce`'s sweeps).
    pub levels: usize,
    pub pgd_steps: usize,
    /// Seed of the Gaussian draws and PGD's random starts.
    pub seed: u64,
}

impl Settings {
    /// The 10,000 test images, PGD on the first 2,000, 21 levels, 10 PGD steps.
    pub fn standard(seed: u64) -> Self {
        Settings {
            test_images: 10_000,
            pgd_images: 2_000,
            levels: 21,
            pgd_steps: 10,
            seed,
        }
    }
}

/// One snapshot's figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotDiagnostics {
    pub stage: usize,
    pub clean_error_pct: f64,
    /// Own-gradient FGSM error (%) at distortion 0.1 and 0.2 (`None`: beyond the sweep).
    pub fgsm_pct: [Option<f64>; 2],
    /// Gaussian-noise error (%) at distortion 0.1.
    pub gaussian_pct: Option<f64>,
    /// PGD error (%) at distortion 0.1, on the first `pgd_images` test images.
    pub pgd_pct: Option<f64>,
    /// The share of input-gradient entries (over the test images' pixels) whose sign equals
    /// the previous snapshot's, `sign(0) = 0` counted as a sign of its own; `None` for
    /// snapshot 0.
    pub sign_agreement_with_previous: Option<f64>,
}

/// One adversarial training set, made again from its snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SetDiagnostics {
    pub from_snapshot: usize,
    pub images: usize,
    /// Whether the set made again has the SHA-256 the run recorded (`None`: no record given).
    pub same_as_recorded: Option<bool>,
    /// Mean distortion per pixel of the set (`X'` against `X`).
    pub distortion: f64,
    /// Mean distortion per pixel of the sign step alone (`X_R` against `X`).
    pub sign_step_distortion: f64,
    /// The median over images of `max |grad_X L(theta, X_R, y)|`: `c` times it is how far the
    /// second step moves the median image's most sensitive pixel before clipping.
    pub median_largest_gradient: f64,
    /// Mean `|X' - X_R|` per pixel: what the second step moved, clipping included.
    pub second_step_mean_change: f64,
    /// The median over images of `max |X' - X_R|`.
    pub second_step_median_largest_change: f64,
}

/// Everything the diagnostics measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Diagnostics {
    pub settings: Settings,
    /// Eq. 3's eps and c of the run.
    pub eps: f32,
    pub c: f32,
    pub snapshots: Vec<SnapshotDiagnostics>,
    /// `transfer_pct[k][j]`: snapshot k's error (%) at distortion 0.1 on gradient-sign
    /// examples made by snapshot j.
    pub transfer_pct: Vec<Vec<Option<f64>>>,
    pub sets: Vec<SetDiagnostics>,
    /// Own-gradient FGSM error against distortion, one curve per snapshot: `(distortion,
    /// error %)`.
    pub fgsm_curves: Vec<Vec<(f64, f64)>>,
}

/// A training set to diagnose: the images a stage's snapshot made examples of, and the
/// SHA-256 the run recorded for them.
pub struct TrainingSet<'a> {
    pub images: ArrayView4<'a, f32>,
    pub labels: &'a [u8],
    /// Per stage k = 1..K, the recorded SHA-256 of the set snapshot k - 1 made.
    pub recorded: Vec<Option<String>>,
}

/// Progress: `(what, done, total)` in units of the step named.
pub type Progress<'a> = &'a mut dyn FnMut(&str, usize, usize);

/// The diagnostics of `snapshots` (snapshot 0 first), on `test` and, for the adversarial sets,
/// on `train` (the training images each stage's examples were made of), with Eq. 3's `eps` and
/// `c`.
pub fn diagnose(
    snapshots: &[LeNet<f32>],
    test: &Dataset,
    train: &TrainingSet<'_>,
    (eps, c): (f32, f32),
    settings: &Settings,
    progress: Progress<'_>,
) -> Result<Diagnostics, crate::attacks::InvalidPerturbation> {
    assert!(!snapshots.is_empty(), "at least the natural snapshot");
    let named: Vec<NamedModel<'_>> = snapshots
        .iter()
        .enumerate()
        .map(|(k, net)| NamedModel {
            name: format!("snapshot {k}"),
            model: net as &dyn Classifier,
        })
        .collect();
    let test_set = test.subset(0..settings.test_images.min(test.len()));
    let pgd_set = test.subset(0..settings.pgd_images.min(test.len()));
    let cfg = |noise: Noise, max: f64, at: Vec<f64>| SweepConfig {
        noise,
        levels: sweep::levels(settings.levels, max),
        seed: settings.seed,
        at,
    };
    let at_of = |r: &SweepResult, model: &str, d: f64| {
        r.at.iter()
            .find(|a| a.model == model && a.distortion == d)
            .and_then(|a| a.error_pct)
    };
    const FGSM_MAX: f64 = crate::experiments::reproduce::plan::FGSM_MAX;
    const GAUSSIAN_MAX: f64 = crate::experiments::reproduce::plan::GAUSSIAN_MAX;

    // The transfer matrix, one sweep per source: every snapshot judges the source's examples.
    let k_count = snapshots.len();
    let mut transfer = vec![vec![None; k_count]; k_count];
    let mut fgsm_pct = vec![[None, None]; k_count];
    let mut fgsm_curves = vec![Vec::new(); k_count];
    for (j, source) in named.iter().enumerate() {
        let what = format!("gradient sign crafted on snapshot {j}");
        let r = sweep::sweep(
            &named,
            Some(source),
            &test_set,
            &cfg(Noise::Fgsm, FGSM_MAX, DISTORTIONS.to_vec()),
            |d, t| progress(&what, d, t),
        )?;
        for (k, victim) in named.iter().enumerate() {
            transfer[k][j] = at_of(&r, &victim.name, DISTORTIONS[0]);
        }
        fgsm_pct[j] = DISTORTIONS.map(|d| at_of(&r, &source.name, d));
        fgsm_curves[j] = r
            .rows
            .iter()
            .filter(|row| row.model == source.name)
            .map(|row| (row.distortion, row.error_pct))
            .collect();
    }
    let gaussian = sweep::sweep(
        &named,
        None,
        &test_set,
        &cfg(Noise::Gaussian, GAUSSIAN_MAX, vec![DISTORTIONS[0]]),
        |d, t| progress("Gaussian noise", d, t),
    )?;
    let pgd = sweep::sweep(
        &named,
        None,
        &pgd_set,
        &cfg(
            Noise::Pgd {
                steps: settings.pgd_steps,
                random_start: true,
            },
            FGSM_MAX,
            vec![DISTORTIONS[0]],
        ),
        |d, t| progress("PGD", d, t),
    )?;

    // Gradient signs, snapshot after snapshot.
    let x = test_set.images.view();
    let mut previous: Option<Array4<f32>> = None;
    let mut rows = Vec::with_capacity(k_count);
    for (k, net) in snapshots.iter().enumerate() {
        progress("gradient signs", k, k_count);
        let (_, g) = net.input_gradient(x, &test_set.labels);
        let agreement = previous
            .as_ref()
            .map(|p| sign_agreement(p.view(), g.view()));
        let clean = crate::models::lenet::error_pct(&net.predict(x), &test_set.labels);
        rows.push(SnapshotDiagnostics {
            stage: k,
            clean_error_pct: clean,
            fgsm_pct: fgsm_pct[k],
            gaussian_pct: at_of(&gaussian, &named[k].name, DISTORTIONS[0]),
            pgd_pct: at_of(&pgd, &named[k].name, DISTORTIONS[0]),
            sign_agreement_with_previous: agreement,
        });
        previous = Some(g);
    }

    // The adversarial training sets, made again.
    let mut sets = Vec::new();
    for (k, net) in snapshots.iter().enumerate().take(k_count - 1) {
        progress("adversarial training sets", k, k_count - 1);
        let recorded = train.recorded.get(k).cloned().flatten();
        sets.push(set_diagnostics(
            net,
            train.images,
            train.labels,
            (eps, c),
            k,
            recorded.as_deref(),
        ));
    }
    Ok(Diagnostics {
        settings: settings.clone(),
        eps,
        c,
        snapshots: rows,
        transfer_pct: transfer,
        sets,
        fgsm_curves,
    })
}

/// The share of entries whose signs are equal (`sign(0) = 0`, so a zero agrees only with a
/// zero).
pub fn sign_agreement(a: ArrayView4<f32>, b: ArrayView4<f32>) -> f64 {
    assert_eq!(a.dim(), b.dim(), "gradients of the same images");
    let sign = |v: f32| (v > 0.0) as i8 - (v < 0.0) as i8;
    let same = ndarray::Zip::from(&a)
        .and(&b)
        .fold(0usize, |n, &p, &q| n + (sign(p) == sign(q)) as usize);
    same as f64 / a.len().max(1) as f64
}

/// Per image of one piece: its `X_R`, `X'`, and the largest gradient entry at `X_R`.
struct Piece {
    x_r: Array4<f32>,
    x_adv: Array4<f32>,
    largest_gradient: Vec<f32>,
}

/// Eq. 3 on one piece, as `train::adversarial` computes it (`fgsm`, then one input gradient at
/// `X_R` and `gradient_step`), keeping what the diagnostics need.
fn piece(net: &LeNet<f32>, x: ArrayView4<f32>, labels: &[u8], eps: f32, c: f32) -> Piece {
    let x_r = fgsm::fgsm(net, x, labels, eps);
    let (_, g) = net.input_gradient(x_r.view(), labels);
    let x_adv = gradient_step(x_r.view(), g.view(), c);
    let largest_gradient = g
        .outer_iter()
        .map(|gi| gi.iter().fold(0.0f32, |m, v| m.max(v.abs())))
        .collect();
    Piece {
        x_r,
        x_adv,
        largest_gradient,
    }
}

/// The median of `values` (the mean of the two middle ones for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    assert!(!values.is_empty(), "a median of nothing");
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The set snapshot `from` makes of `x` with Eq. 3, made again in the pieces a stage uses
/// (so its bytes, and so its SHA-256, are the stage's), and measured.
fn set_diagnostics(
    net: &LeNet<f32>,
    x: ArrayView4<f32>,
    labels: &[u8],
    (eps, c): (f32, f32),
    from: usize,
    recorded: Option<&str>,
) -> SetDiagnostics {
    let n = x.dim().0;
    let pieces: Vec<Piece> = x
        .axis_chunks_iter(Axis(0), ADVERSARIAL_CHUNK)
        .into_par_iter()
        .enumerate()
        .map(|(i, xi)| {
            let start = i * ADVERSARIAL_CHUNK;
            piece(net, xi, &labels[start..start + xi.dim().0], eps, c)
        })
        .collect();
    let mut x_adv = Array4::<f32>::zeros(x.raw_dim());
    let (mut sign_sum, mut adv_sum, mut step_sum) = (0.0f64, 0.0f64, 0.0f64);
    let mut largest_gradient = Vec::with_capacity(n);
    let mut largest_change = Vec::with_capacity(n);
    for (i, p) in pieces.iter().enumerate() {
        let start = i * ADVERSARIAL_CHUNK;
        let m = p.x_r.dim().0;
        let xi = x.slice(s![start..start + m, .., .., ..]);
        x_adv
            .slice_mut(s![start..start + m, .., .., ..])
            .assign(&p.x_adv);
        // Sums of |difference| per pixel; divided by all pixels at the end.
        let pixels = xi.len() as f64;
        sign_sum += distortion_per_pixel(xi, p.x_r.view()) * pixels;
        adv_sum += distortion_per_pixel(xi, p.x_adv.view()) * pixels;
        step_sum += distortion_per_pixel(p.x_r.view(), p.x_adv.view()) * pixels;
        largest_gradient.extend(p.largest_gradient.iter().map(|&v| v as f64));
        for (a, b) in p.x_r.outer_iter().zip(p.x_adv.outer_iter()) {
            let change = ndarray::Zip::from(&a)
                .and(&b)
                .fold(0.0f32, |m, &u, &v| m.max((u - v).abs()));
            largest_change.push(change as f64);
        }
    }
    let total = x.len().max(1) as f64;
    SetDiagnostics {
        from_snapshot: from,
        images: n,
        same_as_recorded: recorded.map(|h| images_sha256(x_adv.view()) == h),
        distortion: adv_sum / total,
        sign_step_distortion: sign_sum / total,
        median_largest_gradient: median(largest_gradient),
        second_step_mean_change: step_sum / total,
        second_step_median_largest_change: median(largest_change),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::IMAGE_SIDE;
    use crate::rng::{stream, Purpose};
    use crate::train::adversarial::adversarial_examples;

    #[test]
    fn sign_agreement_counts_equal_signs_with_zero_its_own_sign() {
        let a = Array4::from_shape_vec((1, 1, 1, 4), vec![1.0, -2.0, 0.0, 0.0]).unwrap();
        let b = Array4::from_shape_vec((1, 1, 1, 4), vec![3.0, 2.0, 0.0, -1.0]).unwrap();
        assert_eq!(sign_agreement(a.view(), b.view()), 0.5);
        assert_eq!(sign_agreement(a.view(), a.view()), 1.0);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    /// The set made again is the one `train::adversarial` makes (its hash matches), and the
    /// measures are those of the arrays, computed directly.
    #[test]
    fn a_set_made_again_is_the_stage_s_set_and_its_measures_are_direct() {
        let net = LeNet::<f32>::xavier(&mut stream(9, Purpose::Init, 0));
        // More than one piece, the last one partial.
        let n = ADVERSARIAL_CHUNK + 7;
        let x =
            crate::testutil::random_array::<f32, ndarray::Ix4>((n, 1, IMAGE_SIDE, IMAGE_SIDE), 2)
                .mapv(f32::abs)
                .mapv(|v| v.min(1.0));
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let (eps, c) = (0.25, 0.2);
        let made = adversarial_examples(&net, x.view(), &labels, eps, c);
        let hash = images_sha256(made.view());
        let d = set_diagnostics(&net, x.view(), &labels, (eps, c), 0, Some(&hash));
        assert_eq!(d.same_as_recorded, Some(true));
        assert_eq!(
            set_diagnostics(&net, x.view(), &labels, (eps, c), 0, Some("0")).same_as_recorded,
            Some(false)
        );
        let x_r = fgsm::fgsm(&net, x.view(), &labels, eps);
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
        assert!(close(
            d.distortion,
            distortion_per_pixel(x.view(), made.view())
        ));
        assert!(close(
            d.sign_step_distortion,
            distortion_per_pixel(x.view(), x_r.view())
        ));
        assert!(close(
            d.second_step_mean_change,
            distortion_per_pixel(x_r.view(), made.view())
        ));
        let (_, g) = net.input_gradient(x_r.view(), &labels);
        let largest: Vec<f64> = g
            .outer_iter()
            .map(|gi| gi.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64)))
            .collect();
        assert_eq!(d.median_largest_gradient, median(largest));
        let changes: Vec<f64> = x_r
            .outer_iter()
            .zip(made.outer_iter())
            .map(|(a, b)| {
                a.iter()
                    .zip(b.iter())
                    .fold(0.0f64, |m, (u, v)| m.max((u - v).abs() as f64))
            })
            .collect();
        assert_eq!(d.second_step_median_largest_change, median(changes));
        assert!(
            d.second_step_mean_change > 0.0,
            "the second step moved something"
        );
        assert_eq!(d.images, n);
    }
}
