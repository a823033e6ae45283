//! Experiments: compositions of models, attacks and evaluation (the study's figures and tables).
//! They compute; `report` lays their results out.

pub mod show;
pub mod sweep;
