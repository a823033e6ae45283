//! Models built from the layers: LeNet, and its model files.

pub mod file;
pub mod lenet;

pub use lenet::{DropoutRates, LeNet};
