//! Experiments: compositions of models, attacks and evaluation (the study's figures and tables).
//! They compute; `report` lays their results out.

pub mod human_study;
pub mod reproduce;
pub mod show;
pub mod sweep;
