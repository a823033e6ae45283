//! Low-level kernels, each fast path beside the naive loop it is tested against:
//! GEMM (`matrixmultiply`) and im2col/col2im for convolutions.

pub mod gemm;
pub mod im2col;
pub mod parallel;
