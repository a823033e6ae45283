//! Low-level kernels, each fast path beside the naive loop it is tested against:
//! GEMM (`matrixmultiply`) and im2col/col2im for convolutions, and a direct convolution for
//! conv1's shape (`direct`) and one for
//! output rows of 8 that keeps the GEMM path's bits (`conv_fma`, conv2); `fresh` allocates outputs
//! without a zero-filling pass of their own; `scratch` keeps each thread's working buffers;
//! `transpose` turns a weight into the layout `matrixmultiply` packs fastest.

pub mod conv_fma;
pub mod direct;
pub mod fresh;
pub mod gemm;
pub mod im2col;
pub mod logistic;
pub mod parallel;
pub mod scratch;
pub mod transpose;
