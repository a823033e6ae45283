//! Matrix transpose into a new standard-layout array, in parallel bands, and its naive twin.
//!
//! Why it exists: `matrixmultiply` packs each operand before multiplying, and it packs a
//! right-hand operand `B (k, n)` with plain copies of 8 contiguous elements only when B's rows
//! are contiguous; a dense layer's `W^T` view (W stored `(O, I)` row-major) has contiguous
//! columns instead, so it is gathered element by element. For inference of many images through
//! fixed weights (the autoencoder's reconstruction), transposing each weight once per call and
//! multiplying by the row-major `W^T` is faster than packing the transposed view once per chunk
//! (docs/performance.md, "The autoencoder's workloads on the AMD EPYC"). A transpose moves values and
//! computes nothing, so every product gives the same bits either way.
//!
//! The naive twin (ndarray's `as_standard_layout` of the transposed view) writes the output
//! row by row on one thread, each row a column of the input read across every input row; here
//! bands of the output are filled side by side.

use crate::kernels::parallel::min_pieces_per_job;
use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;

/// Output rows per parallel piece: 64 rows of a 1000-column output are 256 KB, inside L2, and
/// the 64 columns they read from each source row are 4 cache lines.
pub const ROWS_PER_PIECE: usize = 64;

/// `a^T`, shape `(cols, rows)`, in standard (row-major) layout. The output is cut into pieces of
/// [`ROWS_PER_PIECE`] rows, filled side by side; each piece reads a band of `a`'s columns.
pub fn transpose<T: Copy + Default + Send + Sync>(a: ArrayView2<T>) -> Array2<T> {
    let (rows, cols) = a.dim();
    let mut out = Array2::<T>::default((cols, rows));
    out.axis_chunks_iter_mut(Axis(0), ROWS_PER_PIECE)
        .into_par_iter()
        .zip(a.axis_chunks_iter(Axis(1), ROWS_PER_PIECE).into_par_iter())
        .with_min_len(min_pieces_per_job())
        .for_each(|(mut o, band)| o.assign(&band.t()));
    out
}

/// The naive twin of [`transpose`].
pub fn transpose_naive<T: Copy>(a: ArrayView2<T>) -> Array2<T> {
    a.t().as_standard_layout().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::random_array;
    use ndarray::Ix2;

    /// Shapes below, at and across the piece size, including ragged edges and a strided input.
    #[test]
    fn tiled_transpose_equals_the_naive_one() {
        for &(r, c) in &[(1, 1), (3, 5), (64, 64), (65, 63), (100, 784), (784, 1000)] {
            let a = random_array::<f32, Ix2>((r, c), 3);
            let t = transpose(a.view());
            assert_eq!(t.dim(), (c, r));
            assert!(t.is_standard_layout());
            assert_eq!(t, transpose_naive(a.view()), "{r} x {c}");
            assert_eq!(transpose(a.t()), a, "{r} x {c}, transposed view");
        }
    }
}
