//! Low-level kernels, each fast path beside the naive loop it is tested against:
//! GEMM (`matrixmultiply`) and im2col/col2im for convolutions; `fresh` allocates outputs
//! without a zero-filling pass of their own; `scratch` keeps each thread's working buffers.

pub mod fresh;
pub mod gemm;
pub mod im2col;
pub mod parallel;
pub mod scratch;
