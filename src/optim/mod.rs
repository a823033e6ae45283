//! Optimisation: Caffe's SGD with momentum and its learning-rate policies.

pub mod lr;
pub mod sgd;
