//! Experiments: compositions of models, attacks and evaluation (the study's figures and tables).

pub mod human_study;
pub mod sweep;
