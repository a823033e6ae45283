//! Experiments: compositions of models, attacks and evaluation (the study's figures and tables).
//! They compute; `report` lays their results out.

pub mod advtrain_diagnostics;
pub mod evaluate;
pub mod explain;
pub mod human_study;
pub mod perturbed_digits;
pub mod reproduce;
pub mod sweep;

use crate::models::Classifier;

/// A model to evaluate, with the name it gets in the rows of sweeps and reports.
pub struct NamedModel<'a> {
    pub name: String,
    pub model: &'a dyn Classifier,
}
