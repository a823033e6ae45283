//! Subjects' results files, checked against the sets their ids regenerate, and the scores of
//! humans and LeNet models at each condition (section 5.4, Figure 8), summarised across
//! subjects or models by [`crate::statistics`].

use super::design::{
    conditions, same_condition, subject_set, Condition, NoiseKind, StudyDesign, SubjectSet, Trial,
};
use super::images::{render_subject, to_batch};
use crate::attacks::InvalidPerturbation;
use crate::data::{Dataset, CLASSES};
use crate::models::Classifier;
use crate::statistics::{summarise_percentages, Summary};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The `format` field of a subject's results file.
pub const RESULTS_FORMAT: &str = "advmnist-human-study-results";

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

/// One group's accuracies at one condition: per member (subject or model), and summarised.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupScores {
    /// (member name, accuracy %, images).
    pub members: Vec<(String, f64, usize)>,
    pub summary: Summary,
}

fn group(members: Vec<(String, f64, usize)>) -> GroupScores {
    let values: Vec<f64> = members.iter().map(|m| m.1).collect();
    let images: Vec<usize> = members.iter().map(|m| m.2).collect();
    GroupScores {
        summary: summarise_percentages(&values, &images),
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

pub use crate::experiments::NamedModel;

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
