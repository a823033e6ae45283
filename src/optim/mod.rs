//! Optimisation: Caffe's SGD with momentum, its Nesterov solver, and its learning-rate policies.
//! Both solvers work on any network through `models::params::Parameters`.

pub mod lr;
pub mod nesterov;
pub mod sgd;
