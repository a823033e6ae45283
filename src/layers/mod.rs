//! The layers, each with its `forward` and `backward` side by side, its cache as a named struct
//! and its tests (finite differences, hand-worked cases, fast path against naive loop).
//! Layers know nothing of models or experiments.

pub mod conv;
pub mod dense;
pub mod dlr;
pub mod dropout;
pub mod maxpool;
pub mod relu;
pub mod sigmoid;
pub mod sigmoid_xent;
pub mod softmax_xent;
