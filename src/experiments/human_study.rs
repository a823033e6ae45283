//! The human perception study (the study's sections 4.2 and 5.4, Figure 8): which images each
//! subject sees, how they are made, how subjects' result files are checked, and how humans and
//! LeNet models are scored and summarised. The page itself and the report files are drawn by
//! `report::human`.
//!
//! # The images a subject sees (section 4.2)
//! 205 images: 15 clean test digits; 15 at each of the six gradient-sign levels
//! [`GRADIENT_SIGN_EPS`]; 15 at each of the six Gaussian levels [`GAUSSIAN_SIGMA`]; and 10 hard
//! digits, one per class. The study's hard digits were USPS digits (5 per class, one drawn per
//! subject), which cannot be bundled here; instead each class's [`HARD_PER_CLASS`] MNIST test
//! digits that reference models most disagree on form its pool ([`hard_digit_pool`]), and one
//! per class is drawn per subject, as the study drew from its 5 USPS digits.
//!
//! A subject's set is a function of `(seed, hard pool, subject id)` alone ([`subject_set`]):
//! the 195 noisy and clean digits are distinct test images drawn from the 10,000 outside the
//! hard pool, and all 205 are shuffled, from one seeded stream. The pixels are then a function
//! of the set, the test images and the model the adversarial images are made on
//! ([`render_subject`]), so `human-report` regenerates exactly the images a subject saw.
//!
//! # What is shown is what is scored
//! A page shows 8-bit grey levels, so every perturbed image is rounded to the nearest multiple
//! of 1/255 ([`to_display`]) after clipping to [0, 1] and checking (`attacks::validate`). Models
//! are scored on those same rounded images. Clean MNIST digits are already 8-bit, so rounding
//! leaves them unchanged.
//!
//! # Statistics (section 5.4)
//! Each subject's (or model's) accuracy per noise type and level, in percent; then across
//! subjects (or models) the mean, the sample standard deviation (divisor n - 1: the subjects
//! are a sample of people, and the SD estimates the population's), and the 95% confidence
//! interval of the mean, `mean +- t(0.975, n - 1) * sd / sqrt(n)` with Student's t: the SD is
//! estimated from few subjects, so the normal 1.96 would make the interval too narrow (with 5
//! subjects, t is 2.776). The interval is reported as computed; it may reach past 0 or 100,
//! where the figure clips it to the axis.

use crate::attacks::fgsm::{gradient_sign, perturb};
use crate::attacks::gaussian::standard_normal_like;
use crate::attacks::{validate, InvalidPerturbation};
use crate::data::{Dataset, Mnist, CLASSES};
use crate::hashing::{sha256_hex, Sha256Stream};
use crate::layers::softmax_xent::softmax;
use crate::models::lenet::{DropoutRates, LeNet};
use crate::models::Classifier;
use crate::rng::{stream, Purpose};
use ndarray::{s, Array4, Axis};
use rand_chacha::rand_core::RngCore;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

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
/// The `format` field of a subject's results file.
pub const RESULTS_FORMAT: &str = "advmnist-human-study-results";
/// Training iterations of a reference LeNet (Caffe's `lenet_solver.prototxt`; the study's 10,000).
pub const REFERENCE_ITERATIONS: u64 = 10_000;
/// Models the study compared humans with (Figure 8).
pub const REFERENCE_MODELS: u64 = 20;

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
fn same_condition(a: Condition, noise: NoiseKind, level: f64) -> bool {
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

/// The grey level a page shows for a pixel in [0, 1]: the nearest of 0..=255. Inverse of
/// `data::pixel_to_unit` on MNIST's own 8-bit pixels.
pub fn to_display(x: f32) -> u8 {
    (x.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// 28 x 28 grey levels, row by row.
pub type Pixels = Vec<u8>;

/// The images of `set`, in its order, as shown: gradient-sign images are made on `attacker`
/// (the study's model for the page and for the transfer scores; each model itself for its
/// white-box scores). Gaussian noise comes from `set.noise_seed`, image `k` of the set's
/// Gaussian trials drawing stream `k`, so it is the same whoever the attacker is.
pub fn render_subject(
    attacker: &dyn Classifier,
    test: &Dataset,
    set: &SubjectSet,
) -> Result<Vec<Pixels>, InvalidPerturbation> {
    let gather = |noise: NoiseKind| -> (Vec<usize>, Array4<f32>, Vec<u8>) {
        let positions: Vec<usize> = (0..set.trials.len())
            .filter(|&k| set.trials[k].noise == noise)
            .collect();
        let mut x = Array4::zeros((positions.len(), 1, 28, 28));
        for (row, &k) in positions.iter().enumerate() {
            x.index_axis_mut(Axis(0), row)
                .assign(&test.images.index_axis(Axis(0), set.trials[k].image));
        }
        let labels = positions.iter().map(|&k| set.trials[k].label).collect();
        (positions, x, labels)
    };
    let mut out: Vec<Option<Array4<f32>>> = vec![None; set.trials.len()];
    for noise in [
        NoiseKind::Clean,
        NoiseKind::Hard,
        NoiseKind::GradientSign,
        NoiseKind::Gaussian,
    ] {
        let (positions, x, labels) = gather(noise);
        if positions.is_empty() {
            continue;
        }
        let direction = match noise {
            NoiseKind::GradientSign => Some(gradient_sign(attacker, x.view(), &labels)),
            NoiseKind::Gaussian => Some(standard_normal_like(x.view(), set.noise_seed)),
            _ => None,
        };
        for (row, &k) in positions.iter().enumerate() {
            let clean = x.slice(s![row..row + 1, .., .., ..]);
            let level = set.trials[k].level as f32;
            let image = match &direction {
                None => clean.to_owned(),
                Some(d) => {
                    let p = perturb(clean, d.slice(s![row..row + 1, .., .., ..]), level);
                    // Gaussian noise is unbounded before clipping: only the range is checked.
                    let bound = (noise == NoiseKind::GradientSign).then_some(level);
                    validate(clean, p.view(), bound)?;
                    p
                }
            };
            out[k] = Some(image);
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
    Array4::from_shape_vec((images.len(), 1, 28, 28), flat).expect("28 x 28 pixels each")
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

/// The one place this module trains: a standard LeNet (Caffe's recipe, no dropout) with the
/// given seed, as `advmnist train --seed S --iters N` makes it. `progress(iteration)` after
/// each update. (Kept to this one function so that changes to the training API touch one place.)
pub fn train_reference_lenet(
    data: &Mnist,
    seed: u64,
    iterations: u64,
    mut progress: impl FnMut(u64),
) -> Result<LeNet<f32>, crate::train::TrainError> {
    use crate::train::{train, Event, TrainConfig, TrainOptions, TrainState};
    let mut cfg = TrainConfig::lenet(DropoutRates::NONE, seed);
    cfg.iterations = iterations;
    let options = TrainOptions {
        checkpoint: None,
        checkpoint_every: 0,
        eval_every: 0,
    };
    let state = train(&cfg, data, TrainState::new(seed), &options, |e| {
        if let Event::Iteration { iteration, .. } = e {
            progress(iteration)
        }
    })?;
    Ok(state.net)
}

// ---------------------------------------------------------------------------------------------
// Results files

/// One answer in a results file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    /// Index in the MNIST test set, from 0.
    pub image: usize,
    pub noise: NoiseKind,
    pub level: f64,
    /// The true label, as the page recorded it.
    pub label: u8,
    /// The subject's answer; checked to be 0-9 (kept wide here so that the check, not the
    /// parser, reports it).
    pub answer: i64,
    /// Milliseconds from the image appearing to the answer.
    pub response_ms: f64,
}

/// A subject's results file, as the page writes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectResults {
    pub format: String,
    pub study_id: String,
    pub study: StudyDesign,
    pub subject: u32,
    /// In the order shown.
    pub answers: Vec<Answer>,
}

/// Everything wrong a set of results files can be. Each message names the file.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a results file of the human study: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("{path}: answer {position} (image {image}): the answer {answer} is not a digit 0-9")]
    AnswerOutOfRange {
        path: PathBuf,
        position: usize,
        image: usize,
        answer: i64,
    },
    #[error("{path}: answer {position}: image {image} is not one of subject {subject}'s images")]
    UnknownImage {
        path: PathBuf,
        position: usize,
        image: usize,
        subject: u32,
    },
    #[error("{path}: answer {position}: image {image} {reason}")]
    WrongImage {
        path: PathBuf,
        position: usize,
        image: usize,
        reason: String,
    },
    #[error("{path}: subject {subject} again: {first} holds the same subject")]
    DuplicateSubject {
        path: PathBuf,
        subject: u32,
        first: PathBuf,
    },
    #[error("{path}: from another study ({found}) than {first} ({expected}): the seed, the model or the hard digits differ")]
    OtherStudy {
        path: PathBuf,
        found: String,
        expected: String,
        first: PathBuf,
    },
    #[error("no results files given")]
    Empty,
}

/// A checked results file and the set it answers.
#[derive(Clone, Debug)]
pub struct LoadedSubject {
    pub path: PathBuf,
    pub results: SubjectResults,
    pub set: SubjectSet,
}

/// Parses and checks one results file against the set its subject's id regenerates.
pub fn check_results(
    path: &Path,
    text: &str,
    labels: &[u8],
) -> Result<LoadedSubject, ResultsError> {
    let malformed = |reason: String| ResultsError::Malformed {
        path: path.into(),
        reason,
    };
    let r: SubjectResults = serde_json::from_str(text).map_err(|e| malformed(e.to_string()))?;
    if r.format != RESULTS_FORMAT {
        return Err(malformed(format!(
            "format is '{}', expected '{RESULTS_FORMAT}'",
            r.format
        )));
    }
    if r.study.id() != r.study_id {
        return Err(malformed(format!(
            "study_id {} does not match its study (which gives {}): the file was edited",
            r.study_id,
            r.study.id()
        )));
    }
    if r.study.hard_pool.len() != CLASSES
        || r.study
            .hard_pool
            .iter()
            .flatten()
            .any(|&i| i >= labels.len())
        || r.study.hard_pool.iter().any(|p| p.is_empty())
    {
        return Err(malformed(format!(
            "its hard pool must list, for each of the {CLASSES} classes, test images below {}",
            labels.len()
        )));
    }
    if r.subject == 0 {
        return Err(malformed("subject ids start at 1".into()));
    }
    let set = subject_set(&r.study, labels, r.subject);
    if r.answers.len() != set.trials.len() {
        return Err(malformed(format!(
            "{} answers, subject {} has {} images",
            r.answers.len(),
            r.subject,
            set.trials.len()
        )));
    }
    let by_image: HashMap<usize, &Trial> = set.trials.iter().map(|t| (t.image, t)).collect();
    let mut seen = HashMap::new();
    for (position, a) in r.answers.iter().enumerate() {
        let position = position + 1;
        let Some(trial) = by_image.get(&a.image) else {
            return Err(ResultsError::UnknownImage {
                path: path.into(),
                position,
                image: a.image,
                subject: r.subject,
            });
        };
        let wrong = |reason: String| ResultsError::WrongImage {
            path: path.into(),
            position,
            image: a.image,
            reason,
        };
        if let Some(first) = seen.insert(a.image, position) {
            return Err(wrong(format!("was already answered at answer {first}")));
        }
        if !same_condition(
            Condition {
                noise: trial.noise,
                level: trial.level,
            },
            a.noise,
            a.level,
        ) {
            return Err(wrong(format!(
                "is {} at level {} in the set, the file says {} at level {}",
                trial.noise.name(),
                trial.level,
                a.noise.name(),
                a.level
            )));
        }
        if a.label != trial.label {
            return Err(wrong(format!(
                "has label {}, the file says {}",
                trial.label, a.label
            )));
        }
        if !(0..=9).contains(&a.answer) {
            return Err(ResultsError::AnswerOutOfRange {
                path: path.into(),
                position,
                image: a.image,
                answer: a.answer,
            });
        }
        if !(a.response_ms.is_finite() && a.response_ms >= 0.0) {
            return Err(wrong(format!(
                "has response time {} ms, not a time",
                a.response_ms
            )));
        }
    }
    Ok(LoadedSubject {
        path: path.into(),
        results: r,
        set,
    })
}

/// Reads and checks every file: each on its own ([`check_results`]), then together (one study,
/// each subject once).
pub fn load_results(paths: &[PathBuf], labels: &[u8]) -> Result<Vec<LoadedSubject>, ResultsError> {
    if paths.is_empty() {
        return Err(ResultsError::Empty);
    }
    let mut loaded: Vec<LoadedSubject> = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|source| ResultsError::Io {
            path: path.clone(),
            source,
        })?;
        let subject = check_results(path, &text, labels)?;
        if let Some(first) = loaded.first() {
            if first.results.study != subject.results.study {
                return Err(ResultsError::OtherStudy {
                    path: path.clone(),
                    found: subject.results.study_id.clone(),
                    expected: first.results.study_id.clone(),
                    first: first.path.clone(),
                });
            }
        }
        if let Some(other) = loaded
            .iter()
            .find(|l| l.results.subject == subject.results.subject)
        {
            return Err(ResultsError::DuplicateSubject {
                path: path.clone(),
                subject: subject.results.subject,
                first: other.path.clone(),
            });
        }
        loaded.push(subject);
    }
    Ok(loaded)
}

// ---------------------------------------------------------------------------------------------
// Statistics

/// `t` with `P(T <= t) = p` for Student's t with `df` degrees of freedom, `p` in (0.5, 1).
/// Bisection on the CDF, written through the regularised incomplete beta function:
/// `P(T > t) = I_{df/(df+t^2)}(df/2, 1/2) / 2` for `t >= 0`.
pub fn student_t_quantile(p: f64, df: f64) -> f64 {
    assert!(p > 0.5 && p < 1.0 && df > 0.0);
    let upper_tail = |t: f64| 0.5 * regularized_incomplete_beta(df / (df + t * t), df / 2.0, 0.5);
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while upper_tail(hi) > 1.0 - p {
        hi *= 2.0;
    }
    // 200 halvings reach the f64 resolution of any bracket.
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if upper_tail(mid) > 1.0 - p {
            lo = mid
        } else {
            hi = mid
        }
    }
    0.5 * (lo + hi)
}

/// `ln Gamma(x)`, Lanczos approximation (g = 7, 9 terms; relative error below 1e-15).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Gamma(x) Gamma(1 - x) = pi / sin(pi x).
        std::f64::consts::PI.ln() - (std::f64::consts::PI * x).sin().ln() - ln_gamma(1.0 - x)
    } else {
        let x = x - 1.0;
        let mut a = G[0];
        let t = x + 7.5;
        for (i, g) in G.iter().enumerate().skip(1) {
            a += g / (x + i as f64);
        }
        0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
    }
}

/// `I_x(a, b)` by its continued fraction (Numerical Recipes, `betai`/`betacf`, modified Lentz).
fn regularized_incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    // The fraction converges fast for x < (a + 1) / (a + b + 2); otherwise use I_x(a,b) = 1 - I_{1-x}(b,a).
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_continued_fraction(x, a, b) / a
    } else {
        1.0 - front * beta_continued_fraction(1.0 - x, b, a) / b
    }
}

fn beta_continued_fraction(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        for aa in [
            m * (b - m) * x / ((a + m2 - 1.0) * (a + m2)),
            -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0)),
        ] {
            d = 1.0 + aa * d;
            if d.abs() < TINY {
                d = TINY;
            }
            c = 1.0 + aa / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            h *= d * c;
        }
        if (d * c - 1.0).abs() < 1e-16 {
            break;
        }
    }
    h
}

/// Mean, sample SD and 95% Student-t confidence interval of one group's accuracies.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    /// Divisor n - 1; `None` for a single value.
    pub sd: Option<f64>,
    /// `mean -+ t(0.975, n-1) sd / sqrt(n)`; `None` for a single value.
    pub ci95_low: Option<f64>,
    pub ci95_high: Option<f64>,
}

/// Summarises `values` (at least one).
pub fn summarise(values: &[f64]) -> Summary {
    assert!(!values.is_empty(), "a summary of nothing");
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return Summary {
            n,
            mean,
            sd: None,
            ci95_low: None,
            ci95_high: None,
        };
    }
    let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    let half = student_t_quantile(0.975, (n - 1) as f64) * sd / (n as f64).sqrt();
    Summary {
        n,
        mean,
        sd: Some(sd),
        ci95_low: Some(mean - half),
        ci95_high: Some(mean + half),
    }
}

/// One group's accuracies at one condition: per member (subject or model), and summarised.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupScores {
    /// (member name, accuracy %, images).
    pub members: Vec<(String, f64, usize)>,
    pub summary: Summary,
}

fn group(members: Vec<(String, f64, usize)>) -> GroupScores {
    let values: Vec<f64> = members.iter().map(|m| m.1).collect();
    GroupScores {
        summary: summarise(&values),
        members,
    }
}

pub use crate::models::lenet::accuracy_pct;

/// Humans' scores at each of [`conditions`]: each subject's accuracy over their images of
/// that condition, with the mean response time.
pub fn human_scores(subjects: &[LoadedSubject]) -> Vec<(Condition, GroupScores, f64)> {
    conditions()
        .into_iter()
        .map(|c| {
            let mut times = Vec::new();
            let members = subjects
                .iter()
                .map(|s| {
                    let (answers, labels): (Vec<u8>, Vec<u8>) = s
                        .results
                        .answers
                        .iter()
                        .filter(|a| same_condition(c, a.noise, a.level))
                        .map(|a| {
                            times.push(a.response_ms);
                            (a.answer as u8, a.label)
                        })
                        .unzip();
                    (
                        format!("subject {}", s.results.subject),
                        accuracy_pct(&answers, &labels),
                        labels.len(),
                    )
                })
                .collect();
            let mean_ms = times.iter().sum::<f64>() / times.len().max(1) as f64;
            (c, group(members), mean_ms)
        })
        .collect()
}

pub use super::NamedModel;

/// Models' scores at each of [`conditions`], on the images of all `sets` pooled: white-box
/// (each model's gradient-sign images made on its own gradient) and transfer (the very images
/// the subjects saw, made on `source`). For the other noise types the two coincide.
pub fn model_scores(
    models: &[NamedModel],
    source: &dyn Classifier,
    test: &Dataset,
    sets: &[SubjectSet],
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<(Condition, GroupScores, GroupScores)>, InvalidPerturbation> {
    // Per model, per condition: (right, total) for white-box and transfer.
    let n_conditions = conditions().len();
    let mut white = vec![vec![(0usize, 0usize); n_conditions]; models.len()];
    let mut transfer = white.clone();
    let index_of = |t: &Trial| {
        conditions()
            .iter()
            .position(|&c| same_condition(c, t.noise, t.level))
            .expect("every trial is of a condition")
    };
    let total = sets.len() * models.len();
    let mut done = 0;
    for set in sets {
        let seen = to_batch(&render_subject(source, test, set)?);
        for (m, model) in models.iter().enumerate() {
            let own = to_batch(&render_subject(model.model, test, set)?);
            for (batch, tally) in [(&own, &mut white[m]), (&seen, &mut transfer[m])] {
                let predicted = model.model.predict(batch.view());
                for (t, p) in set.trials.iter().zip(predicted) {
                    let cell = &mut tally[index_of(t)];
                    cell.0 += (p == t.label) as usize;
                    cell.1 += 1;
                }
            }
            done += 1;
            progress(done, total);
        }
    }
    let scores = |tally: &Vec<Vec<(usize, usize)>>, c: usize| {
        group(
            models
                .iter()
                .enumerate()
                .map(|(m, model)| {
                    let (right, n) = tally[m][c];
                    (
                        model.name.clone(),
                        100.0 * right as f64 / n.max(1) as f64,
                        n,
                    )
                })
                .collect(),
        )
    };
    Ok(conditions()
        .into_iter()
        .enumerate()
        .map(|(c, condition)| (condition, scores(&white, c), scores(&transfer, c)))
        .collect())
}

/// The whole analysis, as `human.json` holds it.
#[derive(Clone, Debug, Serialize)]
pub struct HumanAnalysis {
    pub study_id: String,
    pub study: StudyDesign,
    /// (subject, results file).
    pub subjects: Vec<(u32, String)>,
    pub models: Vec<String>,
    /// The model the subjects' gradient-sign images were made on (its name among `models`, if
    /// it is one of them).
    pub source_model: String,
    pub conditions: Vec<ConditionScores>,
}

/// Everything reported at one condition.
#[derive(Clone, Debug, Serialize)]
pub struct ConditionScores {
    pub noise: NoiseKind,
    pub level: f64,
    pub humans: GroupScores,
    pub human_mean_response_ms: f64,
    /// Each model on images made on its own gradient (white-box; the study's setting).
    pub models_white_box: GroupScores,
    /// Each model on the images the subjects saw (made on the source model: a transfer attack
    /// for every other model).
    pub models_transfer: GroupScores,
}

/// Humans and models, condition by condition.
pub fn analyse(
    subjects: &[LoadedSubject],
    models: &[NamedModel],
    source: (&str, &dyn Classifier),
    test: &Dataset,
    progress: impl FnMut(usize, usize),
) -> Result<HumanAnalysis, InvalidPerturbation> {
    let first = &subjects.first().expect("at least one subject").results;
    let sets: Vec<SubjectSet> = subjects.iter().map(|s| s.set.clone()).collect();
    let humans = human_scores(subjects);
    let machines = model_scores(models, source.1, test, &sets, progress)?;
    let mut by_subject: BTreeMap<u32, String> = BTreeMap::new();
    for s in subjects {
        by_subject.insert(s.results.subject, s.path.display().to_string());
    }
    Ok(HumanAnalysis {
        study_id: first.study_id.clone(),
        study: first.study.clone(),
        subjects: by_subject.into_iter().collect(),
        models: models.iter().map(|m| m.name.clone()).collect(),
        source_model: source.0.to_string(),
        conditions: humans
            .into_iter()
            .zip(machines)
            .map(|((c, h, ms), (_, white, transfer))| ConditionScores {
                noise: c.noise,
                level: c.level,
                humans: h,
                human_mean_response_ms: ms,
                models_white_box: white,
                models_transfer: transfer,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn student_t_quantiles_match_tables() {
        // qt(0.975, df) in R 4.3: 12.706205, 4.302653, 2.776445, 2.093024, 1.984217; df -> inf: 1.959964.
        for (df, want) in [
            (1.0, 12.706_204_736),
            (2.0, 4.302_652_730),
            (4.0, 2.776_445_105),
            (19.0, 2.093_024_054),
            (100.0, 1.983_971_519),
            (1e7, 1.959_964_2),
        ] {
            let got = student_t_quantile(0.975, df);
            assert!(
                (got - want).abs() < 1e-6,
                "t(0.975, {df}): got {got}, want {want}"
            );
        }
    }

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
}
