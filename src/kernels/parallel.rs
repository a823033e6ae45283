//! The fixed partitions every parallel loop uses.
//!
//! Rayon runs the pieces of a partition on however many threads there are, but the pieces
//! themselves are fixed sizes, never derived from the thread count. Each piece is computed the
//! same way on any thread, and wherever pieces are summed (weight gradients over a batch) the
//! sum runs afterwards in piece order. So every result is bit-identical whatever the thread
//! count. (llm.c's `matmul_backward` makes the same choice: no two threads write one place.)

/// Images per task when a layer's work is split over the batch and then summed (the
/// convolutions' weight gradients): also the granularity of the fixed-order reduction.
pub const IMAGES_PER_SUM: usize = 8;

/// Rows per task when a dense layer's GEMM is split by rows of its output. Each row is a
/// separate set of dot products, so the split changes no arithmetic; 16 rows amortise the
/// packing of the shared operand while leaving a batch of 64 four tasks to share out.
pub const ROWS_PER_TASK: usize = 16;
