//! The human perception study (the study's sections 4.2 and 5.4, Figure 8): which images each
//! subject sees ([`subject_set`]), how they are made ([`render_subject`]), how subjects' result
//! files are checked ([`load_results`]), and how humans and LeNet models are scored and
//! summarised ([`analyse`]). The page itself and the report files are drawn by `report::human`.
//!
//! # The design
//! A subject's 205 images are a function of `(seed, hard pool, subject id)` alone
//! ([`subject_set`]); their pixels are then a function of the set, the test images and the
//! model the adversarial images are made on ([`render_subject`]), so `human-report` regenerates
//! exactly the images a subject saw. `design.rs` holds the study's conditions and the sets,
//! `images.rs` the pixels (made by `attacks::Perturbation`, as a sweep's), `results.rs` the
//! results files and the scores.
//!
//! # Statistics (section 5.4)
//! Each subject's (or model's) accuracy per noise type and level, in percent; then across
//! subjects (or models) the mean, the sample standard deviation and the 95% Student-t
//! confidence interval of the mean, as [`crate::statistics`] computes and explains them.

mod design;
mod images;
mod results;

pub use design::{
    conditions, hard_digit_pool, subject_set, weights_sha256, Condition, NoiseKind, StudyDesign,
    SubjectSet, Trial, CLEAN_IMAGES, GAUSSIAN_SIGMA, GRADIENT_SIGN_EPS, HARD_PER_CLASS,
    IMAGES_PER_SUBJECT, PER_LEVEL,
};
pub use images::{make_study, render_subject, to_batch, to_display, Pixels, Study};
pub use results::{
    accuracy_pct, analyse, check_results, human_scores, load_results, model_scores, Answer,
    ConditionScores, GroupScores, HumanAnalysis, LoadedSubject, NamedModel, ResultsError,
    SubjectResults, RESULTS_FORMAT,
};

use crate::data::Mnist;
use crate::models::lenet::{DropoutRates, LeNet};

/// Training iterations of a reference LeNet (Caffe's `lenet_solver.prototxt`; the study's 10,000).
pub const REFERENCE_ITERATIONS: u64 = 10_000;
/// Models the study compared humans with (Figure 8).
pub const REFERENCE_MODELS: u64 = 20;

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
