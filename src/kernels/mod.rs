//! Low-level kernels, each fast path beside the naive loop it is tested against, and every
//! SIMD path of the crate: `isa`, the one place the CPU is asked which vector instructions it
//! has, and the switch (`ADVMNIST_KERNELS`) that forces a narrower level; `scalar`, the element
//! type and what each type (f32, f64) picks; GEMM (`gemm`, `matrixmultiply`) and im2col/col2im
//! for convolutions (`im2col`); a direct convolution for conv1's shape (`direct`), and for
//! output rows of 8 a forward pass (`conv_fma`), a weight gradient (`conv_wgrad`) and an input
//! gradient (`conv_igrad`) that keep the GEMM path's bits (conv2), and a dense layer's forward
//! product that reads its weights unpacked with the GEMM's bits (`dense_fma`); the weight gradient summed over max-pool windows
//! (`window_sums`); the logistic function (`logistic`); `par_build` builds new arrays in
//! parallel pieces without a zero-filling pass of their own; `parallel` holds the fixed
//! partitions; `scratch` keeps each thread's working buffers; `transpose` turns a weight into
//! the layout `matrixmultiply` packs fastest.

pub mod conv_fma;
pub mod conv_igrad;
pub mod conv_wgrad;
pub mod dense_fma;
pub mod direct;
pub mod gemm;
pub mod im2col;
pub mod isa;
pub mod logistic;
pub mod par_build;
pub mod parallel;
pub mod scalar;
pub mod scratch;
pub mod transpose;
pub mod window_sums;
