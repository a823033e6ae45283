//! The images a subject sees, made as a sweep makes its images: each noisy trial by
//! [`attacks::Perturbation`](crate::attacks::Perturbation), at its own level.
//!
//! # What is shown is what is scored
//! A page shows 8-bit grey levels, so every perturbed image is rounded to the nearest multiple
//! of 1/255 ([`to_display`]) after clipping to [0, 1] and checking (`attacks::validate`). Models
//! are scored on those same rounded images. Clean MNIST digits are already 8-bit, so rounding
//! leaves them unchanged.

use super::design::{
    hard_digit_pool, subject_set, weights_sha256, NoiseKind, StudyDesign, SubjectSet,
    HARD_PER_CLASS,
};
use crate::attacks::{InvalidPerturbation, Perturbation};
use crate::data::Dataset;
use crate::data::IMAGE_SIDE;
use crate::models::lenet::LeNet;
use crate::models::Classifier;
use ndarray::{s, Array4, Axis};

/// The grey level a page shows for a pixel in [0, 1]: the nearest of 0..=255. Inverse of
/// `data::pixel_to_unit` on MNIST's own 8-bit pixels.
pub fn to_display(x: f32) -> u8 {
    (x.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// 28 x 28 grey levels, row by row.
pub type Pixels = Vec<u8>;

/// The images of `set`, in its order, as shown: gradient-sign images are made on `attacker`
/// (the study's model for the page and for the transfer scores; each model itself for its
/// white-box scores). The trials of each kind are perturbed together, in the set's order, each
/// at its own level; Gaussian noise comes from `set.noise_seed`, image `k` of the set's
/// Gaussian trials drawing stream `k`, so it is the same whoever the attacker is.
pub fn render_subject(
    attacker: &dyn Classifier,
    test: &Dataset,
    set: &SubjectSet,
) -> Result<Vec<Pixels>, InvalidPerturbation> {
    let mut out: Vec<Option<Array4<f32>>> = vec![None; set.trials.len()];
    for kind in [
        NoiseKind::Clean,
        NoiseKind::Hard,
        NoiseKind::GradientSign,
        NoiseKind::Gaussian,
    ] {
        let positions: Vec<usize> = (0..set.trials.len())
            .filter(|&k| set.trials[k].noise == kind)
            .collect();
        if positions.is_empty() {
            continue;
        }
        let mut x = Array4::zeros((positions.len(), 1, IMAGE_SIDE, IMAGE_SIDE));
        for (row, &k) in positions.iter().enumerate() {
            x.index_axis_mut(Axis(0), row)
                .assign(&test.images.index_axis(Axis(0), set.trials[k].image));
        }
        let images = match kind.noise() {
            None => x,
            Some(noise) => {
                let labels: Vec<u8> = positions.iter().map(|&k| set.trials[k].label).collect();
                let levels: Vec<f32> = positions
                    .iter()
                    .map(|&k| set.trials[k].level as f32)
                    .collect();
                Perturbation::new(noise, attacker, x.view(), &labels, set.noise_seed)
                    .at_levels(&levels)?
            }
        };
        for (row, &k) in positions.iter().enumerate() {
            out[k] = Some(images.slice(s![row..row + 1, .., .., ..]).to_owned());
        }
    }
    Ok(out
        .into_iter()
        .map(|image| {
            image
                .expect("every trial is of one of the four kinds")
                .iter()
                .map(|&v| to_display(v))
                .collect()
        })
        .collect())
}

/// Pixels as a `(N, 1, 28, 28)` batch in [0, 1], as a model sees them.
pub fn to_batch(images: &[Pixels]) -> Array4<f32> {
    let flat: Vec<f32> = images
        .iter()
        .flatten()
        .map(|&p| crate::data::pixel_to_unit(p))
        .collect();
    Array4::from_shape_vec((images.len(), 1, IMAGE_SIDE, IMAGE_SIDE), flat)
        .expect("28 x 28 pixels each")
}

/// A study as the page carries it: the design, and each offered subject's images.
pub struct Study {
    pub design: StudyDesign,
    pub subjects: Vec<(SubjectSet, Vec<Pixels>)>,
}

/// Makes the study for subjects `1..=subjects`: the hard pool from `reference` models, the
/// adversarial images on `model`. `progress(done, total)` after each subject.
pub fn make_study(
    model: &LeNet<f32>,
    reference: &[&dyn Classifier],
    test: &Dataset,
    seed: u64,
    subjects: u32,
    mut progress: impl FnMut(u32, u32),
) -> Result<Study, InvalidPerturbation> {
    let design = StudyDesign {
        seed,
        model_sha256: weights_sha256(model),
        hard_pool: hard_digit_pool(reference, test, HARD_PER_CLASS),
    };
    let mut sets = Vec::new();
    for subject in 1..=subjects {
        let set = subject_set(&design, &test.labels, subject);
        let images = render_subject(model, test, &set)?;
        sets.push((set, images));
        progress(subject, subjects);
    }
    Ok(Study {
        design,
        subjects: sets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_rounding_is_the_inverse_of_pixel_to_unit() {
        for p in 0..=255u8 {
            assert_eq!(to_display(crate::data::pixel_to_unit(p)), p);
        }
        // 0.07 * 255 = 17.85 -> 18; out-of-range values clip.
        assert_eq!(
            [to_display(0.07), to_display(-0.2), to_display(1.3)],
            [18, 0, 255]
        );
    }

    /// Each trial's image is the perturbation of its kind's trials, taken together in the set's
    /// order (one gradient pass, one Gaussian stream per position), at the trial's own level:
    /// the images as they were made before `attacks::Perturbation` made them.
    #[test]
    fn each_trial_is_its_kinds_perturbation_at_its_own_level() {
        use crate::attacks::{fgsm, gaussian};
        use crate::rng::{stream, Purpose};
        let net = LeNet::<f32>::xavier(&mut stream(4, Purpose::Init, 0));
        let images = crate::testutil::random_array::<f32, ndarray::Ix4>(
            (300, 1, IMAGE_SIDE, IMAGE_SIDE),
            11,
        )
        .mapv(|v| v.abs().min(1.0));
        let labels: Vec<u8> = (0..300).map(|i| (i % 10) as u8).collect();
        let test = Dataset { images, labels };
        let design = StudyDesign {
            seed: 3,
            model_sha256: String::new(),
            hard_pool: (0..10).map(|class| vec![class]).collect(),
        };
        let set = subject_set(&design, &test.labels, 1);
        let shown = render_subject(&net, &test, &set).unwrap();
        for kind in [NoiseKind::GradientSign, NoiseKind::Gaussian] {
            let positions: Vec<usize> = (0..set.trials.len())
                .filter(|&k| set.trials[k].noise == kind)
                .collect();
            let x = test.images.select(
                Axis(0),
                &positions
                    .iter()
                    .map(|&k| set.trials[k].image)
                    .collect::<Vec<_>>(),
            );
            let y: Vec<u8> = positions.iter().map(|&k| set.trials[k].label).collect();
            let direction = match kind {
                NoiseKind::GradientSign => fgsm::gradient_sign(&net, x.view(), &y),
                _ => gaussian::standard_normal_like(x.view(), set.noise_seed),
            };
            for (row, &k) in positions.iter().enumerate() {
                let one = s![row..row + 1, .., .., ..];
                let level = set.trials[k].level as f32;
                let want: Pixels = fgsm::perturb(x.slice(one), direction.slice(one), level)
                    .iter()
                    .map(|&v| to_display(v))
                    .collect();
                assert_eq!(shown[k], want, "{kind:?} trial {k} at level {level}");
            }
        }
    }
}
