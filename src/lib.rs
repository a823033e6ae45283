//! advmnist: a hand-written LeNet on MNIST, with hand-written backward passes, for studying
//! adversarial robustness (Uličný, Lundström, Byttner, "Robustness of Deep Convolutional Neural
//! Networks for Image Recognition", ISICS 2016).
//!
//! Data flows one way: `data` -> `models` (built from `layers`, which are built on `kernels`)
//! -> `attacks` -> `experiments` -> `report`. The command line (`main.rs`) is a thin shell.

pub mod data;
pub mod kernels;
pub mod layers;
pub mod scalar;
pub mod testutil;
pub mod models;
pub mod optim;
pub mod train;
pub mod attacks;
pub mod experiments;
pub mod report;
pub mod bench;
