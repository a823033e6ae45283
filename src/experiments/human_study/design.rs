//! The study's design (section 4.2): the conditions, and which images each subject sees.
//!
//! 205 images per subject: 15 clean test digits; 15 at each of the six gradient-sign levels
//! [`GRADIENT_SIGN_EPS`]; 15 at each of the six Gaussian levels [`GAUSSIAN_SIGMA`]; and 10 hard
//! digits, one per class. The study's hard digits were USPS digits (5 per class, one drawn per
//! subject), which cannot be bundled here; instead each class's [`HARD_PER_CLASS`] MNIST test
//! digits that reference models most disagree on form its pool ([`hard_digit_pool`]), and one
//! per class is drawn per subject, as the study drew from its 5 USPS digits.
//!
//! A subject's set is a function of `(seed, hard pool, subject id)` alone ([`subject_set`]):
//! the 195 noisy and clean digits are distinct test images drawn from the 10,000 outside the
//! hard pool, and all 205 are shuffled, from one seeded stream.

use crate::attacks::Noise;
use crate::data::{Dataset, CLASSES};
use crate::hashing::{sha256_hex, Sha256Stream};
use crate::layers::softmax_xent::softmax;
use crate::models::lenet::LeNet;
use crate::models::Classifier;
use crate::rng::{stream, Purpose};
use ndarray::{s, Axis};
use rand_chacha::rand_core::RngCore;
use serde::{Deserialize, Serialize};

/// Clean test digits per subject (section 4.2).
pub const CLEAN_IMAGES: usize = 15;
/// Images per noise level per subject (section 4.2).
pub const PER_LEVEL: usize = 15;
/// The study's gradient-sign levels (section 4.2).
pub const GRADIENT_SIGN_EPS: [f64; 6] = [0.07, 0.14, 0.21, 0.28, 0.34, 0.40];
/// The study's Gaussian levels, matched to the gradient-sign ones in distortion (section 4.2).
pub const GAUSSIAN_SIGMA: [f64; 6] = [0.09, 0.18, 0.27, 0.36, 0.45, 0.54];
/// Hard digits per class in the pool; the study had 5 USPS digits per class (section 4.2).
pub const HARD_PER_CLASS: usize = 5;
/// 15 + 6 x 15 + 6 x 15 + 10.
pub const IMAGES_PER_SUBJECT: usize =
    CLEAN_IMAGES + PER_LEVEL * (GRADIENT_SIGN_EPS.len() + GAUSSIAN_SIGMA.len()) + CLASSES;

/// What was done to an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseKind {
    /// A clean test digit (level 0).
    Clean,
    /// Fast gradient sign, `clip(x + eps sign(dL/dx))`, level eps.
    GradientSign,
    /// `clip(x + sigma Z)`, level sigma.
    Gaussian,
    /// A clean digit that reference models disagree on (the study's USPS "human adversarial
    /// noise"), level 0.
    Hard,
}

impl NoiseKind {
    /// The perturbation that makes images of this kind: `attacks`' FGSM or Gaussian noise; none
    /// for clean and hard digits.
    pub fn noise(self) -> Option<Noise> {
        match self {
            NoiseKind::GradientSign => Some(Noise::Fgsm),
            NoiseKind::Gaussian => Some(Noise::Gaussian),
            NoiseKind::Clean | NoiseKind::Hard => None,
        }
    }

    /// The name in the page's data and the results files.
    pub fn name(self) -> &'static str {
        match self {
            NoiseKind::Clean => "clean",
            NoiseKind::GradientSign => "gradient_sign",
            NoiseKind::Gaussian => "gaussian",
            NoiseKind::Hard => "hard",
        }
    }
}

/// One noise type at one level: the unit every accuracy is computed over.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    pub noise: NoiseKind,
    pub level: f64,
}

/// The 14 conditions in report order: clean, six gradient-sign levels, six Gaussian levels, hard.
pub fn conditions() -> Vec<Condition> {
    let mut c = vec![Condition {
        noise: NoiseKind::Clean,
        level: 0.0,
    }];
    c.extend(GRADIENT_SIGN_EPS.iter().map(|&level| Condition {
        noise: NoiseKind::GradientSign,
        level,
    }));
    c.extend(GAUSSIAN_SIGMA.iter().map(|&level| Condition {
        noise: NoiseKind::Gaussian,
        level,
    }));
    c.push(Condition {
        noise: NoiseKind::Hard,
        level: 0.0,
    });
    c
}

/// Levels compare exactly: every level is one of the constants above, written and read back
/// through JSON, which round-trips f64 exactly.
pub(super) fn same_condition(a: Condition, noise: NoiseKind, level: f64) -> bool {
    a.noise == noise && a.level == level
}

/// One image shown to a subject.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    /// Index in the MNIST test set (t10k), from 0.
    pub image: usize,
    /// The true label (never shown).
    pub label: u8,
    pub noise: NoiseKind,
    pub level: f64,
}

/// What every subject of one study shares: it decides every subject's images.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StudyDesign {
    /// Seed of the subject sets and of the Gaussian noise.
    pub seed: u64,
    /// [`weights_sha256`] of the model the gradient-sign images are made on.
    pub model_sha256: String,
    /// Per class, the test indices of its hard digits (a subject sees one of each class).
    pub hard_pool: Vec<Vec<usize>>,
}

impl StudyDesign {
    /// A short name for the design: the first 16 hex digits of the SHA-256 of its JSON. The
    /// page keys its local storage with it, and `human-report` recomputes it to catch edits.
    pub fn id(&self) -> String {
        let json = serde_json::to_string(self).expect("plain data");
        sha256_hex(json.as_bytes())[..16].to_string()
    }
}

/// A subject's images, in the order shown, and the seed of their Gaussian noise.
#[derive(Clone, Debug, PartialEq)]
pub struct SubjectSet {
    pub subject: u32,
    pub trials: Vec<Trial>,
    pub noise_seed: u64,
}

/// SHA-256 of a model's weights: each tensor's name, then its values as little-endian f32, in
/// `LeNet::parameters` order. Names a model independently of its file's metadata.
pub fn weights_sha256(net: &LeNet<f32>) -> String {
    let mut h = Sha256Stream::new();
    for p in net.parameters() {
        h.update(p.name.as_bytes());
        for v in p.data.iter() {
            h.update(v.to_le_bytes());
        }
    }
    h.hex()
}

/// A uniform draw from `0..bound` by multiply-shift (Lemire): `(u64 * bound) >> 64`. Its bias,
/// below `bound / 2^64`, is immaterial here, and unlike `rand`'s range sampling it is written
/// down, so the sets stay the same whatever `rand` version is linked.
fn below(rng: &mut impl RngCore, bound: usize) -> usize {
    ((rng.next_u64() as u128 * bound as u128) >> 64) as usize
}

/// Fisher-Yates with [`below`].
fn shuffle<T>(rng: &mut impl RngCore, v: &mut [T]) {
    for i in (1..v.len()).rev() {
        v.swap(i, below(rng, i + 1));
    }
}

/// Subject `subject`'s 205 images, in the order shown, from the stream
/// `(seed, HumanStudy, subject)`: first 195 distinct test indices outside the hard pool
/// (a partial Fisher-Yates over them), dealt 15 to clean, then 15 to each gradient-sign level,
/// then 15 to each Gaussian level; then one hard digit per class, from its pool; then the seed
/// of the Gaussian noise; then a shuffle of all 205.
pub fn subject_set(design: &StudyDesign, labels: &[u8], subject: u32) -> SubjectSet {
    let mut rng = stream(design.seed, Purpose::HumanStudy, subject as u64);
    let hard: std::collections::HashSet<usize> =
        design.hard_pool.iter().flatten().copied().collect();
    let mut candidates: Vec<usize> = (0..labels.len()).filter(|i| !hard.contains(i)).collect();
    let drawn = IMAGES_PER_SUBJECT - CLASSES;
    assert!(
        candidates.len() >= drawn,
        "a study needs at least {drawn} test images outside the hard pool"
    );
    for i in 0..drawn {
        let j = i + below(&mut rng, candidates.len() - i);
        candidates.swap(i, j);
    }
    let mut picked = candidates[..drawn].iter().copied();
    let mut trials = Vec::with_capacity(IMAGES_PER_SUBJECT);
    for c in conditions() {
        if c.noise == NoiseKind::Hard {
            continue;
        }
        let count = if c.noise == NoiseKind::Clean {
            CLEAN_IMAGES
        } else {
            PER_LEVEL
        };
        for image in picked.by_ref().take(count) {
            trials.push(Trial {
                image,
                label: labels[image],
                noise: c.noise,
                level: c.level,
            });
        }
    }
    for pool in &design.hard_pool {
        let image = pool[below(&mut rng, pool.len())];
        trials.push(Trial {
            image,
            label: labels[image],
            noise: NoiseKind::Hard,
            level: 0.0,
        });
    }
    let noise_seed = rng.next_u64();
    shuffle(&mut rng, &mut trials);
    SubjectSet {
        subject,
        trials,
        noise_seed,
    }
}

/// Per class, the `per_class` test digits the `models` most disagree on: disagreement is
/// `1 - (votes of the most voted class) / models`, ties broken by the lower mean probability
/// of the true class, then by the lower index. With one model every digit has disagreement 0,
/// so the pool is the digits that model finds least likely to be what they are.
pub fn hard_digit_pool(
    models: &[&dyn Classifier],
    test: &Dataset,
    per_class: usize,
) -> Vec<Vec<usize>> {
    assert!(!models.is_empty(), "the hard digits need a reference model");
    let n = test.len();
    let mut votes = vec![[0u32; CLASSES]; n];
    let mut p_true = vec![0.0f64; n];
    // Chunks keep LeNet's activations small (conv1 alone holds 46 KB per image).
    const CHUNK: usize = 500;
    for model in models {
        for start in (0..n).step_by(CHUNK) {
            let end = (start + CHUNK).min(n);
            let logits = model.logits(test.images.slice(s![start..end, .., .., ..]));
            let probs = softmax(logits.view());
            for (row, p) in probs.axis_iter(Axis(0)).enumerate() {
                let i = start + row;
                let best = crate::models::lenet::argmax_rows(p.insert_axis(Axis(0)))[0];
                votes[i][best as usize] += 1;
                p_true[i] += p[test.labels[i] as usize] as f64 / models.len() as f64;
            }
        }
    }
    let disagreement =
        |i: usize| 1.0 - *votes[i].iter().max().unwrap() as f64 / models.len() as f64;
    (0..CLASSES as u8)
        .map(|class| {
            let mut members: Vec<usize> = (0..n).filter(|&i| test.labels[i] == class).collect();
            members.sort_by(|&a, &b| {
                disagreement(b)
                    .total_cmp(&disagreement(a))
                    .then(p_true[a].total_cmp(&p_true[b]))
                    .then(a.cmp(&b))
            });
            members.truncate(per_class);
            members
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiply_shift_stays_below_its_bound_and_shuffles_are_permutations() {
        let mut rng = stream(9, Purpose::HumanStudy, 0);
        assert!((0..1000).all(|_| below(&mut rng, 7) < 7));
        let mut v: Vec<usize> = (0..50).collect();
        shuffle(&mut rng, &mut v);
        assert_ne!(v, (0..50).collect::<Vec<_>>());
        v.sort();
        assert_eq!(v, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn each_noisy_kind_is_made_by_its_noise() {
        assert_eq!(NoiseKind::GradientSign.noise(), Some(Noise::Fgsm));
        assert_eq!(NoiseKind::Gaussian.noise(), Some(Noise::Gaussian));
        assert_eq!(NoiseKind::Clean.noise(), None);
        assert_eq!(NoiseKind::Hard.noise(), None);
        // The names in the page's data and the results files.
        for (kind, name) in [
            (NoiseKind::Clean, "clean"),
            (NoiseKind::GradientSign, "gradient_sign"),
            (NoiseKind::Gaussian, "gaussian"),
            (NoiseKind::Hard, "hard"),
        ] {
            assert_eq!(kind.name(), name);
            assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{name}\""));
        }
    }
}
