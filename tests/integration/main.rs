//! The integration tests, as one test binary. Each file was its own binary, and each binary is
//! linked against the library with the release profile's LTO: measured on 2 cores after a
//! change to the library, `cargo test --release` took 13 min 55 s with 20 binaries, and 9 min
//! 23 s as one (4 min 20 s to build, 5 min 3 s to run). One part: `cargo test --release --test
//! integration reliability::`.

mod advtrain;
mod advtrain_report;
mod attacks;
mod audit;
mod bench_report;
mod browser;
mod cli;
mod committee;
mod committee_cli;
mod common;
mod data;
mod defences;
mod evaluate;
mod explain;
mod faults;
mod fuzz_parsers;
mod gradients;
mod human_study;
mod layering;
mod lenet;
mod model_file;
mod online;
mod reliability;
mod reproduce;
mod show;
mod train;
